//! The command line: `karo run` (the default), `karo crd`, `karo version`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Kubernetes Alert Reaction Operator: turns Prometheus alerts into Kubernetes Jobs.
#[derive(Parser, Debug)]
#[command(name = "karo", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the AlertReaction CustomResourceDefinition as YAML.
    Crd,
    /// Print Karo's version.
    Version,
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
        Some(Command::Version) | None => {
            println!("karo {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}
