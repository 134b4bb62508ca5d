//! `karo render`: AlertReaction manifests and an Alertmanager payload in, the
//! Jobs `karo run` would create out. The reactions are compiled as the
//! controller compiles them and the notification is planned by the daemon's own
//! [`plan::plan`], with the same renderer, skeleton and Job defaults; the log
//! explains the plan alert by alert.

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use serde_json::Value;

use crate::cli::config_map::{self, karo_config_map};
use crate::cli::inputs::{
    collect_inputs, doc_location, doc_name, explain_reading, is_reaction, kind_of, octal_readings,
    parse_reaction, read_documents, stdin_text, Input, Problem, STDIN,
};
use crate::core::closing;
use crate::core::matching::ANNOTATION_PREFIX;
use crate::core::plan::{self, Candidate, Decision, DryRunBy, Gates, ReactionTable, Step};
use crate::core::reaction::{self, CompiledReaction, Invalid};
use crate::core::render::Renderer;
use crate::core::run;
use crate::core::snapshot::Snapshot;
use crate::model::alert::{parse_notification, Alert, Notification};
use crate::model::config::{self, Overrides, Policy};
use crate::model::error::FieldError;
use crate::model::run::{AlertReactionRun, AlertReactionRunStatus, JobPhase, RunJob, RunPhase};

/// The UID given to a reaction whose manifest has none (`metadata.uid`). Job
/// names hash the reaction's UID, so offline names are deterministic but differ
/// from the cluster's unless the manifest carries the real UID (as `kubectl get
/// alertreaction NAME -o yaml` prints it).
pub const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";

/// Why a reaction from a manifest is not used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// It does not compile, as the controller would find.
    #[error("{0}")]
    Invalid(Invalid),
    /// It cannot even be read as an AlertReaction.
    #[error("InvalidSpec: {0} (`karo validate` lists every problem)")]
    Unreadable(FieldError),
}

/// A reaction read from a manifest, compiled as the controller compiles it.
#[derive(Debug)]
pub struct LoadedReaction {
    /// `namespace/name`.
    pub label: String,
    /// `file: doc n (name)`.
    pub origin: String,
    /// `spec.alertName`, when the manifest got that far.
    pub alert_name: Option<String>,
    pub compiled: Result<Arc<CompiledReaction>, LoadError>,
}

/// Reads AlertReactions from `inputs`. Documents of other kinds are skipped
/// with a note; a reaction without `metadata.namespace` gets `namespace`, and one
/// without `metadata.uid` gets [`PLACEHOLDER_UID`].
pub fn load_reactions(
    inputs: &[Input],
    namespace: &str,
    renderer: &Renderer,
    policy: &Policy,
    log: &mut Vec<String>,
) -> Result<Vec<LoadedReaction>, Vec<Problem>> {
    let mut reactions = Vec::new();
    let mut problems = Vec::new();
    for input in inputs {
        let docs = match read_documents(&input.path) {
            Ok(d) => d,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        for doc in docs {
            let origin = format!("{}: {}", input.path.display(), doc_location(&doc));
            if !is_reaction(&doc.value) {
                if karo_config_map(&doc).is_some() {
                    continue;
                }
                log.push(format!(
                    "note: {origin}: not an AlertReaction ({}), skipped",
                    kind_of(&doc.value).map_or("no kind".to_string(), |k| format!("kind {k}"))
                ));
                continue;
            }
            let alert_name = doc
                .value
                .pointer("/spec/alertName")
                .and_then(Value::as_str)
                .map(str::to_string);
            let (label, compiled) = match parse_reaction(&doc.value) {
                Ok(mut ar) => {
                    let meta = &mut ar.metadata;
                    if meta.namespace.as_deref().unwrap_or("").is_empty() {
                        meta.namespace = Some(namespace.to_string());
                    }
                    if meta.uid.as_deref().unwrap_or("").is_empty() {
                        meta.uid = Some(PLACEHOLDER_UID.to_string());
                    }
                    let label = format!(
                        "{}/{}",
                        meta.namespace.as_deref().unwrap_or(namespace),
                        meta.name.as_deref().unwrap_or("?")
                    );
                    let compiled = reaction::compile(&ar, renderer, policy)
                        .map(Arc::new)
                        .map_err(LoadError::Invalid);
                    (label, compiled)
                }
                Err(p) => (
                    format!("{namespace}/{}", doc_name(&doc.value)),
                    Err(LoadError::Unreadable(explain_reading(&doc, p))),
                ),
            };
            for (field, written, read) in octal_readings(&doc) {
                log.push(format!(
                    "note: {origin} {field}: kubectl reads the unquoted {written} as the octal number {read} (YAML 1.1)"
                ));
            }
            reactions.push(LoadedReaction {
                label,
                origin,
                alert_name,
                compiled,
            });
        }
    }
    if problems.is_empty() {
        Ok(reactions)
    } else {
        Err(problems)
    }
}

/// What `karo render` produced.
#[derive(Debug, Default)]
pub struct Rendering {
    /// The Jobs `karo run` would create (and those a dry run renders), in order.
    pub jobs: Vec<Job>,
    /// For stderr: which reactions matched which alerts, and why the others did not.
    pub log: Vec<String>,
    /// Something went wrong: an invalid reaction, a Job that failed to render.
    pub failed: bool,
}

/// Plans the notification against the valid reactions with the daemon's own
/// [`plan::plan`], and explains the plan: for every alert and every reaction,
/// whether it matched and, if not, why; the Jobs the daemon would create (and
/// those a dry run renders).
pub fn evaluate(
    reactions: &[LoadedReaction],
    notification: &Notification,
    snapshot: &Snapshot,
    renderer: &Renderer,
) -> Rendering {
    let mut out = Rendering::default();
    for r in reactions {
        if let Err(e) = &r.compiled {
            out.failed = true;
            out.log
                .push(format!("error: {}: reaction invalid: {e}", r.origin));
        }
    }
    let table = ReactionTable::new(
        reactions
            .iter()
            .filter_map(|r| r.compiled.as_ref().ok().cloned()),
    );
    let plan = plan::plan(notification, &table, renderer, snapshot);
    let total = notification.alerts.len();
    for (ai, (alert, alert_plan)) in notification.alerts.iter().zip(plan.alerts).enumerate() {
        out.log.push(format!(
            "alert {}/{total} {} ({}, fingerprint {})",
            ai + 1,
            if alert.alert_name().is_empty() {
                "<no alertname>"
            } else {
                alert.alert_name()
            },
            alert.status.as_str(),
            alert.fingerprint
        ));
        let mut candidates = alert_plan.candidates;
        for r in reactions {
            let line = match &r.compiled {
                Err(_) => match &r.alert_name {
                    Some(wanted) if wanted != alert.alert_name() => {
                        alert_name_differs(wanted, alert)
                    }
                    _ => "not considered: the reaction is invalid (see above)".to_string(),
                },
                Ok(c) => match candidates
                    .iter()
                    .position(|cand| Arc::ptr_eq(&cand.reaction, c))
                {
                    Some(i) => explain(
                        candidates.swap_remove(i),
                        alert,
                        &Later {
                            notification,
                            snapshot,
                            renderer,
                        },
                        &mut out,
                    ),
                    None => alert_name_differs(&c.spec.alert_name, alert),
                },
            };
            out.log.push(format!("  {}: {line}", r.label));
        }
    }
    if total == 0 {
        out.log
            .push("the notification has no alerts: nothing to render".to_string());
    }
    out
}

fn alert_name_differs(wanted: &str, alert: &Alert) -> String {
    format!(
        "no match: alertname differs (the reaction is for {wanted:?}, the alert is {:?})",
        alert.alert_name()
    )
}

/// What rendering the Jobs that follow a Run's outcome needs.
struct Later<'a> {
    notification: &'a Notification,
    snapshot: &'a Snapshot,
    renderer: &'a Renderer,
}

/// One reaction's decision for one alert, as a line; its Jobs go to `out`.
fn explain(candidate: Candidate, alert: &Alert, later: &Later, out: &mut Rendering) -> String {
    let c = &candidate.reaction;
    let actions = match candidate.decision {
        Decision::NoMatch { matcher } => {
            return match (c.matchers.iter().nth(matcher), c.spec.matchers.get(matcher)) {
                (Some(m), Some(spec)) => {
                    let actual = match spec.name.strip_prefix(ANNOTATION_PREFIX) {
                        Some(key) => alert.annotations.get(key),
                        None => alert.labels.get(&spec.name),
                    };
                    let actual = match actual {
                        Some(v) => format!("{}={v:?}", spec.name),
                        None => format!("{} is absent, so \"\"", spec.name),
                    };
                    format!("no match: matcher {m} failed ({actual})")
                }
                _ => "no match: a matcher failed".to_string(),
            };
        }
        Decision::NotTriggered => {
            let on: Vec<&str> = c.spec.trigger_on.iter().map(|s| s.as_str()).collect();
            return format!(
                "no match: status {} is not in triggerOn [{}]",
                alert.status.as_str(),
                on.join(", ")
            );
        }
        Decision::Matched { actions } => actions,
    };
    let mut parts = Vec::new();
    let mut gated = Gates::default();
    let mut run_actions = Vec::new();
    for action in actions {
        let name = action.job_name;
        match action.step {
            Step::Suspended => parts.push(format!(
                "Job {name} not printed: the reaction is suspended, the daemon renders and creates nothing"
            )),
            Step::RenderFailed(e) => {
                out.failed = true;
                parts.push(format!("action {:?}: render failed: {e}", action.action));
            }
            Step::DryRun { job, by } => {
                let by = match by {
                    DryRunBy::Reaction => "spec.dryRun",
                    DryRunBy::Config => "the config's dryRun",
                };
                let run = crate::core::jobs::run_name_for(c, alert, true);
                parts.push(format!(
                    "Job {name} of Run {run} (dry run by {by}: the daemon records the Run and creates no Job)"
                ));
                out.jobs.push(with_run_uid(*job));
            }
            Step::Create { job, gates } => {
                parts.push(format!("Job {name} of Run {}", run_of(&job)));
                if let Ok(a) = run::run_action(&action.action, &job) {
                    run_actions.push(a);
                }
                out.jobs.push(with_run_uid(*job));
                gated = gates;
            }
        }
    }
    if !run_actions.is_empty() {
        let run = run::build_run(c, alert, later.notification, run_actions);
        parts.extend(closing_steps(c, &run, later, out));
    }
    let mut line = format!("matched: {}", parts.join("; "));
    let mut gates = Vec::new();
    if gated.cooldown.is_some() {
        gates.push(format!(
            "cooldown {}",
            c.spec.cooldown.as_deref().unwrap_or("")
        ));
    }
    if gated.forbid {
        gates.push("concurrencyPolicy Forbid".to_string());
    }
    if let Some(max) = gated.max_runs_per_hour {
        gates.push(format!("budget.maxRunsPerHour {max}"));
    }
    if !gates.is_empty() {
        line.push_str(&format!(
            " [{} depend on the reaction's Runs in the cluster: not checked offline]",
            gates.join(" and ")
        ));
    }
    line
}

/// What follows the Jobs of `run`: its silence, cancellation, verification,
/// and the `onSuccess` / `onFailure` Jobs (printed too), rendered as the daemon
/// renders them when the Run ends that way.
fn closing_steps(
    reaction: &CompiledReaction,
    run: &AlertReactionRun,
    later: &Later,
    out: &mut Rendering,
) -> Vec<String> {
    let closing = &run.spec.closing;
    let mut parts = Vec::new();
    if let Some(timeout) = &closing.approval_timeout {
        parts.push(format!(
            "its Jobs wait for approval (karo approve), Rejected if nobody decides within {timeout}"
        ));
    }
    if let Some(n) = reaction
        .spec
        .budget
        .as_ref()
        .and_then(|b| b.suspend_after_failures)
    {
        parts.push(format!("{n} failed Runs in a row stop the reaction"));
    }
    if let Some(d) = &closing.silence_duration {
        parts.push(format!(
            "while its Jobs run, an Alertmanager silence on the alert's labels (at most {d})"
        ));
    }
    if closing.cancel_on_resolved {
        parts.push("if the alert resolves first, its active Jobs are deleted (Cancelled)".into());
    }
    if let Some(within) = &closing.verify_within {
        parts.push(format!(
            "after its Jobs succeed: Remediated if the alert resolves within {within}, else Ineffective"
        ));
    }
    for (phase, when) in [
        (
            RunPhase::Succeeded,
            "onSuccess (Run Succeeded or Remediated)",
        ),
        (RunPhase::Failed, "onFailure (Run Failed or Ineffective)"),
    ] {
        let status = AlertReactionRunStatus {
            phase: Some(phase),
            reason: Some(
                if phase == RunPhase::Failed {
                    "JobFailed"
                } else {
                    "JobsSucceeded"
                }
                .into(),
            ),
            jobs: run
                .spec
                .actions
                .iter()
                .map(|a| RunJob {
                    action: a.name.clone(),
                    name: a.job_name.clone(),
                    phase: if phase == RunPhase::Failed {
                        JobPhase::Failed
                    } else {
                        JobPhase::Succeeded
                    },
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        for f in closing::follow_up_jobs(reaction, run, &status, later.renderer, later.snapshot) {
            match f.job {
                Ok(job) => {
                    parts.push(format!("{when}: Job {}", f.job_name));
                    out.jobs.push(with_run_uid(job));
                }
                Err(e) => {
                    out.failed = true;
                    parts.push(format!("{when}: action {:?}: render failed: {e}", f.action));
                }
            }
        }
    }
    parts
}

/// The Run that owns a planned Job (its name; the API server gives its UID).
fn run_of(job: &Job) -> String {
    job.metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.first())
        .map_or_else(String::new, |o| o.name.clone())
}

/// The Job as printed: its owner, the Run, gets the placeholder UID.
fn with_run_uid(mut job: Job) -> Job {
    for owner in job.metadata.owner_references.iter_mut().flatten() {
        if owner.uid.is_empty() {
            owner.uid = PLACEHOLDER_UID.to_string();
        }
    }
    job
}

/// Everything `karo render` needs.
#[derive(Debug, Clone)]
pub struct RenderRequest {
    pub files: Vec<PathBuf>,
    /// The Alertmanager payload file; `-` is standard input.
    pub alerts: PathBuf,
    /// `--config`; as for `karo run`, `KARO_CONFIG` or the default file otherwise.
    pub config: Option<PathBuf>,
    pub overrides: Overrides,
    /// For reactions whose manifest names no namespace.
    pub namespace: String,
    /// Stands in for a missing `startsAt`, as the time of receipt does in the daemon.
    pub received_at: jiff::Timestamp,
}

/// `karo render`: reads the configuration, the payload and the reactions, and
/// evaluates them.
pub fn render(req: &RenderRequest) -> Rendering {
    let mut out = Rendering::default();
    let fail = |mut out: Rendering, message: String| {
        out.log.push(format!("error: {message}"));
        out.failed = true;
        out
    };
    let renderer = Renderer::new();
    let (inputs, problems) = collect_inputs(&req.files);
    if !problems.is_empty() {
        for p in problems {
            out.log.push(format!("error: {p}"));
        }
        out.failed = true;
        return out;
    }
    let snapshot = match config_map_snapshot(&inputs, &renderer, &req.overrides, &mut out.log) {
        Ok(Some(s)) => s,
        Ok(None) => {
            let config = match config::load(req.config.as_deref(), &req.overrides) {
                Ok(c) => c,
                Err(e) => return fail(out, e.to_string()),
            };
            match Snapshot::prepare(config, &renderer) {
                Ok(s) => s,
                Err(e) => return fail(out, format!("invalid configuration: {e}")),
            }
        }
        Err(()) => {
            out.failed = true;
            return out;
        }
    };
    if req.alerts.as_os_str() == STDIN && req.files.iter().any(|f| f.as_os_str() == STDIN) {
        return fail(
            out,
            "standard input (-) can be the reactions or the alerts, not both".into(),
        );
    }
    let body = if req.alerts.as_os_str() == STDIN {
        stdin_text()
            .map(String::into_bytes)
            .map_err(std::io::Error::other)
    } else {
        std::fs::read(&req.alerts)
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return fail(out, format!("{}: cannot read: {e}", req.alerts.display())),
    };
    let notification = match parse_notification(&body, req.received_at) {
        Ok(n) => n,
        Err(e) => {
            return fail(
                out,
                format!(
                    "{}: not an Alertmanager notification: {e}",
                    req.alerts.display()
                ),
            )
        }
    };
    let mut log = Vec::new();
    let reactions = load_reactions(
        &inputs,
        &req.namespace,
        &renderer,
        &snapshot.config.policy,
        &mut log,
    );
    out.log.extend(log);
    let reactions = match reactions {
        Ok(r) => r,
        Err(problems) => {
            for p in problems {
                out.log.push(format!("error: {p}"));
            }
            out.failed = true;
            return out;
        }
    };
    if reactions.is_empty() {
        return fail(out, "no AlertReaction in the given files".to_string());
    }
    out.log.push(format!(
        "{} AlertReaction(s), {} alert(s) in {}",
        reactions.len(),
        notification.alerts.len(),
        req.alerts.display()
    ));
    let evaluated = evaluate(&reactions, &notification, &snapshot, &renderer);
    out.jobs = evaluated.jobs;
    out.log.extend(evaluated.log);
    out.failed |= evaluated.failed;
    out
}

/// The configuration of the first Karo ConfigMap among the inputs (`helm
/// template` output), in place of the one `karo run` would read from files;
/// `Err` when it has problems (in `log`).
fn config_map_snapshot(
    inputs: &[Input],
    renderer: &Renderer,
    overrides: &Overrides,
    log: &mut Vec<String>,
) -> Result<Option<Snapshot>, ()> {
    for input in inputs {
        // Unreadable files are reported when the reactions are read.
        let Ok(docs) = read_documents(&input.path) else {
            continue;
        };
        for doc in &docs {
            let Some(cm) = karo_config_map(doc) else {
                continue;
            };
            let checked = config_map::check(&cm, doc, renderer, overrides);
            let origin = format!("{}: {}", input.path.display(), cm.location);
            log.extend(checked.notes.iter().map(|n| format!("note: {n}")));
            for p in &checked.problems {
                let at = if p.path.is_empty() {
                    String::new()
                } else {
                    format!(" {}", p.path)
                };
                log.push(format!("error: {origin}{at}: {}", p.reason));
            }
            return match checked.snapshot {
                Some(s) => {
                    log.push(format!(
                        "note: the configuration is that of {origin} (config.yaml and its Job skeleton)"
                    ));
                    Ok(Some(s))
                }
                None => Err(()),
            };
        }
    }
    Ok(None)
}

/// The Jobs as YAML documents (`---` before each), or as a JSON `List`.
pub fn format_jobs(jobs: &[Job], json: bool) -> Result<String, FormatError> {
    if json {
        let list = serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": jobs,
        });
        Ok(serde_json::to_string_pretty(&list)? + "\n")
    } else {
        let mut s = String::new();
        for job in jobs {
            s.push_str("---\n");
            // Quoted where kubectl or PyYAML would read a string as something else.
            s.push_str(&crate::model::yaml::to_string(job)?);
        }
        Ok(s)
    }
}

/// Why the Jobs could not be printed.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Yaml(#[from] serde_yaml::Error),
}
