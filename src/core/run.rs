//! Runs, decided without a cluster: the Run a matched occurrence gets, whether
//! its gates (cooldown, `concurrencyPolicy: Forbid`) let it start given the
//! reaction's other Runs, the state of a Job as a Run records it, the phase a
//! Run's Jobs add up to, and which finished Runs retention deletes.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde_json::Value;

use crate::core::jobs::{
    self, LABEL_ALERTNAME, LABEL_FINGERPRINT, LABEL_MANAGED_BY, LABEL_OCCURRENCE, LABEL_REACTION,
};
use crate::core::plan::Gates;
use crate::core::reaction::CompiledReaction;
use crate::model::alert::{Alert, Notification};
use crate::model::crd::{AlertReactionSpec, OnResolved};
use crate::model::run::{
    AlertReactionRun, AlertReactionRunSpec, JobPhase, RunAction, RunAlert, RunClosing, RunJob,
    RunNotification, RunPhase, RunReaction,
};

/// The longest label or annotation value a Run's snapshot of the alert keeps.
/// The Jobs are rendered from the whole alert before the Run is built; the
/// snapshot is the record, and must leave room in the object for the Jobs.
pub const SNAPSHOT_VALUE_LIMIT: usize = 4096;

/// `value`, or its first `SNAPSHOT_VALUE_LIMIT` bytes and how much was cut.
fn snapshot_value(value: &str) -> String {
    if value.len() <= SNAPSHOT_VALUE_LIMIT {
        return value.to_string();
    }
    let mut cut = SNAPSHOT_VALUE_LIMIT;
    while !value.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}… ({} bytes in all, cut in this record)",
        &value[..cut],
        value.len()
    )
}

/// The Run of one matched occurrence, with the Jobs it will create.
pub fn build_run(
    reaction: &CompiledReaction,
    alert: &Alert,
    notification: &Notification,
    actions: Vec<RunAction>,
) -> AlertReactionRun {
    let labels = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), "karo".to_string()),
        (
            LABEL_REACTION.to_string(),
            jobs::sanitize_label_value(&reaction.name),
        ),
        (
            LABEL_ALERTNAME.to_string(),
            jobs::sanitize_label_value(alert.alert_name()),
        ),
        (
            LABEL_FINGERPRINT.to_string(),
            jobs::sanitize_label_value(&alert.fingerprint),
        ),
        (LABEL_OCCURRENCE.to_string(), jobs::occurrence_id(alert)),
    ]);
    AlertReactionRun {
        metadata: ObjectMeta {
            name: Some(jobs::run_name(reaction, alert)),
            namespace: Some(reaction.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "karo.io/v1alpha1".into(),
                kind: "AlertReaction".into(),
                name: reaction.name.clone(),
                uid: reaction.uid.clone(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        spec: AlertReactionRunSpec {
            reaction: RunReaction {
                name: reaction.name.clone(),
                uid: reaction.uid.clone(),
                generation: reaction.generation,
            },
            alert: {
                let mut snapshot: RunAlert = alert.into();
                // A missing label or annotation reads as empty anyway; some API
                // servers refuse empty strings in custom resources.
                snapshot.labels.retain(|_, v| !v.is_empty());
                snapshot.annotations.retain(|_, v| !v.is_empty());
                for v in snapshot
                    .labels
                    .values_mut()
                    .chain(snapshot.annotations.values_mut())
                {
                    if v.len() > SNAPSHOT_VALUE_LIMIT {
                        *v = snapshot_value(v);
                    }
                }
                snapshot
            },
            notification: {
                let mut n: RunNotification = notification.into();
                for map in [
                    &mut n.group_labels,
                    &mut n.common_labels,
                    &mut n.common_annotations,
                ] {
                    map.retain(|_, v| !v.is_empty());
                }
                n
            },
            actions,
            closing: run_closing(&reaction.spec),
            dry_run: false,
        },
        status: None,
    }
}

/// How long a silence lasts when `silence.duration` is not given.
pub const DEFAULT_SILENCE: &str = "1h";

/// How long a Run waits for approval when `approval.timeout` is not given.
pub const DEFAULT_APPROVAL_TIMEOUT: &str = "1h";

/// What a Run keeps of its reaction's `onResolved`, `silence` and `verify`.
pub fn run_closing(spec: &AlertReactionSpec) -> RunClosing {
    let silence = spec.silence.as_ref().filter(|s| s.enabled);
    RunClosing {
        cancel_on_resolved: spec.on_resolved == OnResolved::Cancel,
        silence_duration: silence.map(|s| {
            s.duration
                .clone()
                .unwrap_or_else(|| DEFAULT_SILENCE.to_string())
        }),
        silence_comment: silence.and_then(|s| s.comment.clone()),
        verify_within: spec.verify.as_ref().map(|v| v.within.clone()),
        on_success: spec.on_success.iter().map(|a| a.name.clone()).collect(),
        on_failure: spec.on_failure.iter().map(|a| a.name.clone()).collect(),
        approval_timeout: spec.approval.as_ref().filter(|a| a.required).map(|a| {
            a.timeout
                .clone()
                .unwrap_or_else(|| DEFAULT_APPROVAL_TIMEOUT.to_string())
        }),
    }
}

/// The Job of `action` as the Run stores it: everything but the owner's UID.
/// The Run of an occurrence accepted in dry run: its own name
/// ([`jobs::run_name_for`]), its Jobs rendered and never created, and nothing to
/// follow them (no silence, no verification, no follow-ups).
pub fn dry_run(
    mut run: AlertReactionRun,
    reaction: &CompiledReaction,
    alert: &Alert,
) -> AlertReactionRun {
    run.metadata.name = Some(jobs::run_name_for(reaction, alert, true));
    // Also a label: an API server with an older CRD prunes `spec.dryRun`.
    run.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(LABEL_DRY_RUN.to_string(), "true".to_string());
    run.spec.dry_run = true;
    run.spec.closing = RunClosing::default();
    run
}

/// Marks a Run recorded in dry run.
pub const LABEL_DRY_RUN: &str = "karo.io/dry-run";

/// Whether `run` was recorded in dry run: it creates no Job.
pub fn is_dry_run(run: &AlertReactionRun) -> bool {
    run.spec.dry_run
        || run
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.get(LABEL_DRY_RUN).is_some_and(|v| v == "true"))
}

pub fn run_action(action: &str, job: &Job) -> Result<RunAction, serde_json::Error> {
    Ok(RunAction {
        name: action.to_string(),
        job_name: job.metadata.name.clone().unwrap_or_default(),
        job: serde_json::to_value(job)?,
    })
}

/// The Job to create for one of a Run's actions: the stored Job, owned by the
/// Run (now that its UID is known).
pub fn job_to_create(action: &RunAction, run_uid: &str) -> Result<Job, serde_json::Error> {
    let mut job: Job = serde_json::from_value(action.job.clone())?;
    let owners = job.metadata.owner_references.get_or_insert_with(Vec::new);
    for owner in owners.iter_mut() {
        if owner.kind == "AlertReactionRun" {
            owner.uid = run_uid.to_string();
        }
    }
    Ok(job)
}

/// What the gates need to know of another Run of the same reaction.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    pub name: String,
    pub fingerprint: String,
    /// The values of the alert's `budget.key` labels ([`budget_key`]).
    pub budget_key: String,
    /// `Pending` while it has not started.
    pub phase: RunPhase,
    /// When its Jobs were created.
    pub started: Option<Timestamp>,
}

/// Whether a Run may start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    /// Another Run of this alert started within the cooldown.
    Cooldown(String),
    /// Another Run of the reaction is still running (`Forbid`).
    Concurrency(String),
    /// `budget.maxRunsPerHour` Runs of this budget key started within the hour.
    Budget(String),
}

/// The budget key of an alert: the values of the `key` labels, in order (a
/// missing label is the empty string).
pub fn budget_key(labels: &BTreeMap<String, String>, key: &[String]) -> String {
    key.iter()
        .map(|k| format!("{k}={:?}", labels.get(k).map_or("", String::as_str)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Cooldown and `Forbid` for the Run `name` of alert `fingerprint`, against the
/// reaction's other Runs.
pub fn gate(
    name: &str,
    fingerprint: &str,
    budget_key: &str,
    gates: Gates,
    cooldown_text: &str,
    others: &[RunView],
    now: Timestamp,
) -> Verdict {
    let others = || others.iter().filter(|o| o.name != name);
    if let Some(window) = gates.cooldown {
        let window = jiff::SignedDuration::try_from(window).unwrap_or(jiff::SignedDuration::MAX);
        let recent = others().find(|o| {
            o.fingerprint == fingerprint
                && o.phase.started()
                && o.started.is_some_and(|t| now.duration_since(t) < window)
        });
        if let Some(o) = recent {
            return Verdict::Cooldown(format!(
                "Run {} started for this alert less than {cooldown_text} ago",
                o.name
            ));
        }
    }
    if gates.forbid {
        if let Some(o) = others().find(|o| o.phase == RunPhase::Running) {
            return Verdict::Concurrency(format!(
                "Run {} of this reaction is still running (concurrencyPolicy: Forbid)",
                o.name
            ));
        }
    }
    if let Some(max) = gates.max_runs_per_hour {
        let hour = jiff::SignedDuration::from_secs(3600);
        let used = others()
            .filter(|o| {
                o.budget_key == budget_key
                    && o.phase.started()
                    && o.started.is_some_and(|t| now.duration_since(t) < hour)
            })
            .count();
        if used >= max as usize {
            let whose = if budget_key.is_empty() {
                String::new()
            } else {
                format!(" for {budget_key}")
            };
            return Verdict::Budget(format!(
                "{used} Runs started within the last hour{whose} (budget.maxRunsPerHour: {max})"
            ));
        }
    }
    Verdict::Proceed
}

/// How many of a reaction's finished Runs failed in a row, newest first:
/// `Failed` and `Ineffective` count, `Succeeded` and `Remediated` end the row,
/// the others (skipped, cancelled, rejected) are passed over. Only Runs that
/// finished after `since` (a person resumed the reaction) are looked at.
pub fn failures_in_a_row(runs: &[(Timestamp, RunPhase)], since: Option<Timestamp>) -> usize {
    let mut runs: Vec<&(Timestamp, RunPhase)> = runs
        .iter()
        .filter(|(at, _)| since.is_none_or(|s| *at > s))
        .collect();
    runs.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    let mut n = 0;
    for (_, phase) in runs {
        if phase.is_failure() {
            n += 1;
        } else if phase.is_success() {
            break;
        }
    }
    n
}

/// A Job's state as a Run records it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobState {
    pub phase: JobPhase,
    pub start: Option<Time>,
    pub completion: Option<Time>,
    pub reason: Option<String>,
    pub message: Option<String>,
}

impl JobState {
    /// The Job of `action` named `name`, as a Run records it (without a log).
    pub fn record(self, action: &str, name: &str) -> RunJob {
        RunJob {
            action: action.to_string(),
            name: name.to_string(),
            phase: self.phase,
            start_time: self.start,
            completion_time: self.completion,
            reason: self.reason,
            message: self.message,
            log: None,
        }
    }
}

/// Running until the Job has a `Complete` or `Failed` condition.
pub fn job_state(job: &Job) -> JobState {
    let status = job.status.as_ref();
    let start = status
        .and_then(|s| s.start_time.clone())
        .or_else(|| job.metadata.creation_timestamp.clone());
    let conditions = status.and_then(|s| s.conditions.as_ref());
    let finished = conditions.and_then(|cs| {
        cs.iter()
            .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
    });
    match finished {
        Some(c) if c.type_ == "Complete" => JobState {
            phase: JobPhase::Succeeded,
            start,
            completion: status
                .and_then(|s| s.completion_time.clone())
                .or_else(|| c.last_transition_time.clone()),
            reason: None,
            message: None,
        },
        Some(c) => JobState {
            phase: JobPhase::Failed,
            start,
            completion: c.last_transition_time.clone(),
            reason: c.reason.clone().or_else(|| Some("Failed".into())),
            message: c.message.clone(),
        },
        None => JobState {
            phase: JobPhase::Running,
            start,
            completion: None,
            reason: None,
            message: None,
        },
    }
}

/// The phase a started Run's Jobs add up to: `Failed` as soon as one failed or
/// was lost, `Succeeded` when all succeeded, else `Running`.
pub fn phase_of(jobs: &[JobPhase]) -> RunPhase {
    if jobs
        .iter()
        .any(|p| matches!(p, JobPhase::Failed | JobPhase::Lost))
    {
        RunPhase::Failed
    } else if !jobs.is_empty() && jobs.iter().all(|p| *p == JobPhase::Succeeded) {
        RunPhase::Succeeded
    } else {
        RunPhase::Running
    }
}

/// The last `max` bytes of `text`, cut at a line (or character) boundary.
pub fn tail(text: &str, max: usize) -> String {
    let text = text.trim_end();
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let cut = &text[start..];
    match cut.find('\n') {
        Some(i) if i + 1 < cut.len() => cut[i + 1..].to_string(),
        _ => cut.to_string(),
    }
}

/// What retention needs to know of a Run.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    pub name: String,
    pub reaction_uid: String,
    pub finished: bool,
    pub created: Timestamp,
    /// The last delivery recorded (`lastSeen`), if any after the first.
    pub last_seen: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub completed: Option<Timestamp>,
}

impl Kept {
    /// The occurrence's last delivery Karo knows of.
    fn last_delivery(&self) -> Timestamp {
        self.last_seen.map_or(self.created, |s| s.max(self.created))
    }
}

/// Retention settings, in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub retention: Duration,
    pub after_resolved: Duration,
    pub history_limit: usize,
}

/// Why a Run is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Not delivered for `runs.retention`.
    Unseen,
    /// Resolved more than `runs.retentionAfterResolved` ago.
    Resolved,
    /// Beyond `runs.historyLimit` finished Runs of its reaction.
    History,
}

/// The finished Runs to delete now. Unfinished Runs are never deleted, and no
/// rule deletes a Run whose occurrence was delivered within `retention` and has
/// not resolved: a redelivery must find its Run.
pub fn expired(runs: &[Kept], now: Timestamp, r: &Retention) -> Vec<(String, Expiry)> {
    let older = |t: Timestamp, d: Duration| {
        now.duration_since(t)
            > jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX)
    };
    let mut out = Vec::new();
    let mut kept: HashMap<&str, Vec<&Kept>> = HashMap::new();
    for run in runs.iter().filter(|r| r.finished) {
        let delivered = run.last_delivery();
        if older(delivered, r.retention) {
            out.push((run.name.clone(), Expiry::Unseen));
        } else if run
            .resolved_at
            .is_some_and(|t| older(t.max(delivered), r.after_resolved))
        {
            out.push((run.name.clone(), Expiry::Resolved));
        } else {
            kept.entry(&run.reaction_uid).or_default().push(run);
        }
    }
    for (_, mut runs) in kept {
        if runs.len() <= r.history_limit {
            continue;
        }
        // Newest first; beyond the limit, only Runs no longer delivered go.
        runs.sort_by_key(|k| std::cmp::Reverse(k.completed.unwrap_or(k.created)));
        for run in runs.into_iter().skip(r.history_limit) {
            if run.resolved_at.is_some() {
                out.push((run.name.clone(), Expiry::History));
            }
        }
    }
    out
}

/// `lastSeen` is refreshed when it is older than this: at most every five
/// minutes, and often enough that retention never misses a delivery.
pub fn seen_refresh(retention: Duration) -> Duration {
    (retention / 4).min(Duration::from_secs(300))
}

/// A stored Job value's `metadata.name`, for messages.
pub fn stored_job_name(job: &Value) -> &str {
    job.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dry_run_is_another_run_of_the_occurrence_and_says_so_in_a_label_too() {
        let mut ar = crate::model::crd::AlertReaction::new(
            "disk",
            serde_json::from_value(serde_json::json!({
                "alertName": "Disk",
                "silence": {"duration": "1h"},
                "actions": [{"name": "clean", "image": "busybox"}],
            }))
            .unwrap_or_default(),
        );
        ar.metadata.namespace = Some("ops".into());
        ar.metadata.uid = Some("uid-1".into());
        let Ok(r) = crate::core::reaction::compile(
            &ar,
            &crate::core::render::Renderer::new(),
            &crate::model::config::Policy::default(),
        ) else {
            panic!("the reaction compiles");
        };
        let alert = Alert {
            starts_at: "2026-01-01T00:00:00Z".into(),
            fingerprint: "f1".into(),
            ..Default::default()
        };
        let live = build_run(&r, &alert, &Notification::default(), Vec::new());
        let mut dry = dry_run(live.clone(), &r, &alert);
        assert_ne!(dry.metadata.name, live.metadata.name);
        assert!(is_dry_run(&dry) && !is_dry_run(&live));
        assert!(dry.spec.closing.is_empty(), "{:?}", dry.spec.closing);
        assert!(!live.spec.closing.is_empty());
        // An older CRD prunes the field; the label still tells.
        dry.spec.dry_run = false;
        assert!(is_dry_run(&dry));
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn view(name: &str, fp: &str, phase: RunPhase, started: Option<i64>) -> RunView {
        RunView {
            name: name.into(),
            fingerprint: fp.into(),
            budget_key: String::new(),
            phase,
            started: started.map(at),
        }
    }

    #[test]
    fn forbid_blocks_while_another_run_runs() {
        let g = Gates {
            cooldown: None,
            forbid: true,
            max_runs_per_hour: None,
        };
        let others = [view("a", "f1", RunPhase::Running, Some(0))];
        assert!(matches!(
            gate("b", "f2", "", g, "", &others, at(10)),
            Verdict::Concurrency(_)
        ));
        // Its own entry never blocks it.
        assert_eq!(
            gate("a", "f1", "", g, "", &others, at(10)),
            Verdict::Proceed
        );
        let done = [view("a", "f1", RunPhase::Succeeded, Some(0))];
        assert_eq!(gate("b", "f2", "", g, "", &done, at(10)), Verdict::Proceed);
    }

    #[test]
    fn cooldown_counts_started_runs_of_the_same_alert() {
        let g = Gates {
            cooldown: Some(Duration::from_secs(60)),
            forbid: false,
            max_runs_per_hour: None,
        };
        let others = [
            view("a", "f1", RunPhase::Succeeded, Some(0)),
            view("s", "f2", RunPhase::Skipped, None),
        ];
        assert!(matches!(
            gate("b", "f1", "", g, "1m", &others, at(30)),
            Verdict::Cooldown(_)
        ));
        assert_eq!(
            gate("b", "f1", "", g, "1m", &others, at(61)),
            Verdict::Proceed
        );
        assert_eq!(
            gate("b", "f2", "", g, "1m", &others, at(30)),
            Verdict::Proceed
        );
    }

    #[test]
    fn the_budget_counts_runs_started_within_the_hour_per_key() {
        let g = Gates {
            max_runs_per_hour: Some(2),
            ..Gates::default()
        };
        let keyed = |name: &str, key: &str, phase: RunPhase, started: Option<i64>| RunView {
            budget_key: key.into(),
            ..view(name, "f", phase, started)
        };
        let db1 = r#"instance="db-1""#;
        let db2 = r#"instance="db-2""#;
        let others = [
            keyed("a", db1, RunPhase::Succeeded, Some(0)),
            keyed("b", db1, RunPhase::Failed, Some(100)),
            keyed("c", db1, RunPhase::Skipped, None),
            keyed("d", db2, RunPhase::Running, Some(100)),
        ];
        match gate("e", "f", db1, g, "", &others, at(200)) {
            Verdict::Budget(why) => assert!(
                why.contains(r#"2 Runs started within the last hour for instance="db-1""#),
                "{why}"
            ),
            other => panic!("expected the budget to hold, got {other:?}"),
        }
        // Another key has its own budget; an hour later the first one is back.
        assert_eq!(
            gate("e", "f", db2, g, "", &others, at(200)),
            Verdict::Proceed
        );
        assert_eq!(
            gate("e", "f", db1, g, "", &others, at(3601)),
            Verdict::Proceed
        );
        let labels = BTreeMap::from([("instance".to_string(), "db-1".to_string())]);
        assert_eq!(budget_key(&labels, &["instance".to_string()]), db1);
        assert_eq!(
            budget_key(&labels, &["instance".to_string(), "pod".to_string()]),
            r#"instance="db-1",pod="""#
        );
    }

    #[test]
    fn failures_count_in_a_row_since_the_resume() {
        use RunPhase::*;
        let runs = [
            (at(50), Failed),
            (at(40), Skipped),
            (at(30), Ineffective),
            (at(20), Succeeded),
            (at(10), Failed),
        ];
        assert_eq!(failures_in_a_row(&runs, None), 2);
        assert_eq!(failures_in_a_row(&runs, Some(at(35))), 1);
        assert_eq!(failures_in_a_row(&runs[3..], None), 0);
        assert_eq!(failures_in_a_row(&[], None), 0);
    }

    #[test]
    fn phases_add_up() {
        use JobPhase::*;
        assert_eq!(phase_of(&[Succeeded, Succeeded]), RunPhase::Succeeded);
        assert_eq!(phase_of(&[Succeeded, Running]), RunPhase::Running);
        assert_eq!(phase_of(&[Running, Failed]), RunPhase::Failed);
        assert_eq!(phase_of(&[Lost]), RunPhase::Failed);
        assert_eq!(phase_of(&[]), RunPhase::Running);
    }

    #[test]
    fn tails_keep_the_end() {
        assert_eq!(tail("a\nb\nc\n", 100), "a\nb\nc");
        assert_eq!(tail("line one\nline two\nline three", 14), "line three");
        let long = "é".repeat(2000);
        assert!(tail(&long, 2048).len() <= 2048);
    }

    fn kept(name: &str, uid: &str, created: i64) -> Kept {
        Kept {
            name: name.into(),
            reaction_uid: uid.into(),
            finished: true,
            created: at(created),
            last_seen: None,
            resolved_at: None,
            completed: Some(at(created + 1)),
        }
    }

    #[test]
    fn retention_never_forgets_a_delivered_occurrence() {
        let r = Retention {
            retention: Duration::from_secs(100),
            after_resolved: Duration::from_secs(10),
            history_limit: 1,
        };
        let unseen = kept("unseen", "u", 0);
        let mut seen = kept("seen", "u", 0);
        seen.last_seen = Some(at(150));
        let mut resolved = kept("resolved", "u", 140);
        resolved.resolved_at = Some(at(145));
        let mut running = kept("running", "u", 0);
        running.finished = false;
        let mut fresh_resolved = kept("fresh-resolved", "u", 190);
        fresh_resolved.resolved_at = Some(at(195));
        let mut older_resolved = kept("older-resolved", "u", 180);
        older_resolved.resolved_at = Some(at(195));
        let runs = [
            unseen,
            seen,
            resolved,
            running,
            fresh_resolved,
            older_resolved,
        ];
        let mut out = expired(&runs, at(200), &r);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            out,
            vec![
                ("older-resolved".to_string(), Expiry::History),
                ("resolved".to_string(), Expiry::Resolved),
                ("unseen".to_string(), Expiry::Unseen),
            ]
        );
    }

    #[test]
    fn snapshot_values_are_bounded() {
        assert_eq!(snapshot_value("short"), "short");
        let long = "é".repeat(5000);
        let cut = snapshot_value(&long);
        assert!(cut.len() < SNAPSHOT_VALUE_LIMIT + 64, "{}", cut.len());
        assert!(cut.ends_with("(10000 bytes in all, cut in this record)"));
    }

    #[test]
    fn refresh_is_frequent_enough() {
        assert_eq!(
            seen_refresh(Duration::from_secs(86400)),
            Duration::from_secs(300)
        );
        assert_eq!(
            seen_refresh(Duration::from_secs(40)),
            Duration::from_secs(10)
        );
    }
}
