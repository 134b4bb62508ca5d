//! The command line: `karo run` (the default), `karo crd`, `karo render`,
//! `karo validate`, `karo version`, and a person's decisions `karo approve`,
//! `karo reject`, `karo resume`. `crd`, `render` and `validate` work offline,
//! on files, with the pure core; the decisions patch the cluster with the
//! user's kubeconfig (`decide`); `run` is the operator (`crate::operator`),
//! which the binary starts.

pub mod config_check;
pub mod config_map;
pub mod decide;
pub mod inputs;
pub mod kube_yaml;
pub mod render;
pub mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::core::render::Renderer;
use crate::model::config::{self, HttpOverride, Overrides, Policy};

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
    /// Print Karo's CustomResourceDefinitions as YAML (AlertReaction, AlertReactionRun).
    Crd(CrdArgs),
    /// Print the Jobs `karo run` would create for an Alertmanager notification (offline).
    Render(RenderArgs),
    /// Check AlertReaction manifests and Karo config files; report every problem.
    Validate(ValidateArgs),
    /// Approve a Run that waits for approval (`spec.approval`), with your kubeconfig.
    Approve(DecideArgs),
    /// Reject a Run that waits for approval: it ends `Rejected`, nothing runs.
    Reject(DecideArgs),
    /// Resume a reaction stopped by its failure budget (`budget.suspendAfterFailures`).
    Resume(ResumeArgs),
    /// Print Karo's version.
    Version,
}

/// `karo approve` / `karo reject`.
#[derive(Args, Debug, Clone)]
pub struct DecideArgs {
    /// The AlertReactionRun (`kubectl get arr` lists them).
    pub run: String,
    /// Its namespace (default: your kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Why, recorded on the Run.
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `karo resume`.
#[derive(Args, Debug, Clone)]
pub struct ResumeArgs {
    /// The AlertReaction.
    pub reaction: String,
    /// Its namespace (default: your kubeconfig context's).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

#[derive(Args, Debug, Clone, Default)]
pub struct CrdArgs {
    /// Only this CRD (by its plural); both when omitted.
    #[arg(value_enum)]
    pub name: Option<CrdName>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum CrdName {
    Alertreactions,
    Alertreactionruns,
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

/// `karo render`.
#[derive(Args, Debug, Clone)]
#[command(after_help = RENDER_HELP)]
pub struct RenderArgs {
    /// AlertReaction manifests, or directories to scan for *.yaml and *.yml.
    /// Multi-document files are fine; documents of other kinds are skipped.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// The Alertmanager webhook payload (JSON), `-` for standard input.
    #[arg(long, value_name = "FILE")]
    pub alerts: PathBuf,
    /// Output format of the Jobs.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
    /// Namespace of reactions whose manifest names none.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Time of receipt, which stands in for a missing `startsAt` as in the daemon
    /// (RFC 3339; default: now). Set it to make such output reproducible.
    #[arg(long, value_name = "TIME")]
    pub received_at: Option<jiff::Timestamp>,
}

const RENDER_HELP: &str = "\
The Jobs are built exactly as `karo run` builds them: the same validation, the same
matching (alertName, matchers, triggerOn), the same templates, Job skeleton and
jobDefaults, from the configuration `karo run` would read (--config, else
$KARO_CONFIG, else /etc/karo/config.yaml if present, then KARO_* variables), or
from Karo's ConfigMap when the manifests hold it (`helm template` output). The
manifests are read as kubectl reads them (YAML 1.1).
They go to stdout; which reactions matched which alerts, and why the others did not,
goes to stderr. The exit status is 1 on any error: an invalid reaction, a Job that
fails to render, a payload that is not an Alertmanager notification.

Job names hash the reaction's UID. A manifest without metadata.uid gets the
placeholder 00000000-0000-0000-0000-000000000000, so names are reproducible but
differ from the cluster's; render the reaction as the cluster has it
(kubectl get alertreaction NAME -o yaml) to get the names the daemon uses.

A suspended reaction's Jobs are not printed (the daemon creates none); a dry-run
reaction's are. cooldown and concurrencyPolicy depend on the Jobs in the cluster
and are not applied offline.

Example:
  karo render -f examples/restart-deployment.yaml --alerts examples/payloads/restart-deployment.json";

/// `karo validate`.
#[derive(Args, Debug, Clone)]
#[command(after_help = VALIDATE_HELP)]
pub struct ValidateArgs {
    /// AlertReaction manifests and Karo config files, or directories to scan for
    /// *.yaml and *.yml.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

const VALIDATE_HELP: &str = "\
Each file is recognised by its content: documents with `kind: AlertReaction`, or a
Karo config mapping (keys such as webhook, jobDefaults, policy). Every problem is
printed as `<file>: <place>: <reason>`, where the place is the document and the
field (`doc 1 (name) spec.matchers[0].value`) or the config key (`webhook.path`).
Reactions are checked under the policy of the configuration `karo run` would read
(--config, $KARO_CONFIG, /etc/karo/config.yaml), or of Karo's ConfigMap when the
manifests hold it (`helm template charts/karo` output): its config.yaml and the Job
skeleton it names are checked too, each problem named with the ConfigMap and the key.
Manifests are read as kubectl reads them (YAML 1.1: unquoted `on` is a boolean, `010`
is 8); Karo's config files as Karo reads them. Exit status 0 when everything is
valid, 1 otherwise.";

/// How `karo render` prints Jobs.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// YAML documents, `---` before each.
    Yaml,
    /// A JSON `List` of Jobs.
    Json,
}

impl RunArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            log_level: self.log_level.clone(),
            dry_run: self.dry_run.then_some(true),
            http: self.http_port.map(|port| HttpOverride { port }),
        }
    }
}

/// Runs an offline command (every command but `run`).
pub fn offline(command: Command, global: &RunArgs) -> ExitCode {
    match command {
        Command::Crd(args) => {
            let docs = match args.name {
                None => vec![crate::model::crd::crd_yaml(), crate::model::run::crd_yaml()],
                Some(CrdName::Alertreactions) => vec![crate::model::crd::crd_yaml()],
                Some(CrdName::Alertreactionruns) => vec![crate::model::run::crd_yaml()],
            };
            let mut out = Vec::new();
            for doc in docs {
                match doc {
                    Ok(yaml) => out.push(yaml),
                    Err(e) => {
                        eprintln!("error: cannot serialise the CRD: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            print!("{}", out.join("---\n"));
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("karo {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Render(args) => render(&args, global),
        Command::Approve(args) => decide::decide(
            decide::Decision::Approve,
            &args.run,
            args.namespace.as_deref(),
            &args.reason,
        ),
        Command::Reject(args) => decide::decide(
            decide::Decision::Reject,
            &args.run,
            args.namespace.as_deref(),
            &args.reason,
        ),
        Command::Resume(args) => decide::resume(&args.reaction, args.namespace.as_deref()),
        Command::Validate(args) => validate(&args, global),
        Command::Run(_) => {
            eprintln!("error: `karo run` is not an offline command");
            ExitCode::FAILURE
        }
    }
}

fn render(args: &RenderArgs, global: &RunArgs) -> ExitCode {
    let request = render::RenderRequest {
        files: args.files.clone(),
        alerts: args.alerts.clone(),
        config: global.config.clone(),
        overrides: global.overrides(),
        namespace: args.namespace.clone(),
        received_at: args.received_at.unwrap_or_else(jiff::Timestamp::now),
    };
    let rendered = render::render(&request);
    for line in &rendered.log {
        eprintln!("{line}");
    }
    match render::format_jobs(&rendered.jobs, args.output == OutputFormat::Json) {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("error: cannot serialise the Jobs: {e}");
            return ExitCode::FAILURE;
        }
    }
    if rendered.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn validate(args: &ValidateArgs, global: &RunArgs) -> ExitCode {
    let renderer = Renderer::new();
    let mut problems = Vec::new();
    let policy = match config::load(global.config.as_deref(), &global.overrides()) {
        Ok(c) => c.policy,
        Err(e) => {
            problems.push(format!(
                "error: the configuration to check reactions against: {e}"
            ));
            Policy::default()
        }
    };
    let result = validate::validate(&args.paths, &renderer, &policy, &global.overrides());
    for note in &result.notes {
        eprintln!("note: {note}");
    }
    problems.extend(result.problems.iter().map(ToString::to_string));
    for p in &problems {
        println!("{p}");
    }
    let files = result.files_checked;
    let s = if files == 1 { "" } else { "s" };
    if problems.is_empty() {
        println!("{files} file{s} valid");
        ExitCode::SUCCESS
    } else {
        let n = problems.len();
        let ps = if n == 1 { "" } else { "s" };
        println!("{n} problem{ps} in {files} file{s} checked");
        ExitCode::FAILURE
    }
}
