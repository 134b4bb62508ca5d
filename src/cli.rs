//! The command line: `karo run` (the default), `karo crd`, `karo version`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{HttpOverride, Overrides};

/// Kubernetes Alert Reaction Operator: turns Prometheus alerts into Kubernetes Jobs.
#[derive(Parser, Debug)]
#[command(name = "karo", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator (the default).
    Run(RunArgs),
    /// Print the AlertReaction CustomResourceDefinition as YAML.
    Crd,
    /// Print Karo's version.
    Version,
}

#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// Config file (default: $KARO_CONFIG, else /etc/karo/config.yaml if present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Port of the HTTP listener (overrides `http.port`).
    #[arg(long, global = true)]
    pub http_port: Option<u16>,
    /// Log level or filter (overrides `logLevel`).
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// Render and record Jobs without creating them (overrides `dryRun`).
    #[arg(long, global = true)]
    pub dry_run: bool,
}

impl RunArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            log_level: self.log_level.clone(),
            dry_run: self.dry_run.then_some(true),
            http: self.http_port.map(|port| HttpOverride { port }),
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) => match crate::crd::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot serialise the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Version) => {
            println!("karo {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

fn run(args: RunArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::run::run(args.config.clone(), args.overrides())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
