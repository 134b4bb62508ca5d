//! Closing the loop, decided without a cluster: what a Run keeps of its
//! reaction's `onResolved`, `silence` and `verify`; the silence Karo asks
//! Alertmanager for; when a `Verifying` Run ends and how; and the `onSuccess` /
//! `onFailure` Jobs of an outcome, rendered with the Run as `run`.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use serde_json::{json, Value};

use crate::core::jobs::{self, BuildError, JobInput};
use crate::core::reaction::{CompiledReaction, FollowUp};
use crate::core::render::{self, Renderer};
use crate::core::snapshot::Snapshot;
use crate::model::alert::{Alert, Notification};
use crate::model::duration;
use crate::model::run::{
    AlertReactionRun, AlertReactionRunStatus, RunClosing, RunPhase, ANNOTATION_APPROVAL,
    ANNOTATION_APPROVAL_BY, ANNOTATION_APPROVAL_REASON,
};

/// The silence a Run asks Alertmanager for.
#[derive(Debug, Clone, PartialEq)]
pub struct SilencePlan {
    /// The alert's labels: one exact matcher each.
    pub labels: BTreeMap<String, String>,
    pub ends_at: Timestamp,
    /// Names the Run and the reaction; contains `marker`.
    pub comment: String,
    /// Finds the silence again after a restart: `karo run <namespace>/<name>`.
    pub marker: String,
}

/// The silence of `run`, if its reaction asked for one.
pub fn silence_for(run: &AlertReactionRun, now: Timestamp) -> Option<SilencePlan> {
    let text = run.spec.closing.silence_duration.as_deref()?;
    let length = duration::parse(text).unwrap_or(Duration::from_secs(3600));
    let ends_at = now
        .checked_add(jiff::SignedDuration::try_from(length).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX);
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let name = run.metadata.name.as_deref().unwrap_or_default();
    let marker = format!("karo run {ns}/{name}");
    let mut comment = format!(
        "Remediating: {marker} of AlertReaction {}. Expired when its Jobs end.",
        run.spec.reaction.name
    );
    if let Some(extra) = run.spec.closing.silence_comment.as_deref() {
        comment.push(' ');
        comment.push_str(extra);
    }
    Some(SilencePlan {
        labels: run.spec.alert.labels.clone(),
        ends_at,
        comment,
        marker,
    })
}

/// What a `Verifying` Run does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyStep {
    /// The alert resolved: the fix worked.
    Remediated,
    /// The time is up and no resolved notification came: ask Alertmanager
    /// whether the alert still fires (without one, it is `Ineffective`).
    AskAlertmanager,
    /// Look again after this long.
    Wait(Duration),
}

/// The next step of a `Verifying` Run that must resolve by `deadline`.
pub fn verify_step(
    now: Timestamp,
    resolved_at: Option<Timestamp>,
    deadline: Timestamp,
) -> VerifyStep {
    if resolved_at.is_some() {
        return VerifyStep::Remediated;
    }
    if now >= deadline {
        return VerifyStep::AskAlertmanager;
    }
    VerifyStep::Wait(
        deadline
            .duration_since(now)
            .unsigned_abs()
            .max(Duration::from_millis(100)),
    )
}

/// When a Run whose Jobs succeeded at `now` stops verifying.
pub fn verify_deadline(closing: &RunClosing, now: Timestamp) -> Option<Timestamp> {
    let within = duration::parse(closing.verify_within.as_deref()?)?;
    Some(
        now.checked_add(jiff::SignedDuration::try_from(within).ok()?)
            .unwrap_or(Timestamp::MAX),
    )
}

/// The Run as the templates of `onSuccess` and `onFailure` see it: `run.name`,
/// `run.phase`, `run.reason`, `run.message` and `run.jobs` (each with `action`,
/// `name`, `phase`, `reason`, `message`, `log`).
pub fn run_value(name: &str, status: &AlertReactionRunStatus) -> Value {
    let jobs: Vec<Value> = status
        .jobs
        .iter()
        .map(|j| {
            json!({
                "action": j.action,
                "name": j.name,
                "phase": format!("{:?}", j.phase),
                "reason": j.reason.clone().unwrap_or_default(),
                "message": j.message.clone().unwrap_or_default(),
                "log": j.log.clone().unwrap_or_default(),
            })
        })
        .collect();
    render::run_context(
        name,
        status.phase.unwrap_or_default().as_str(),
        status.reason.as_deref().unwrap_or_default(),
        status.message.as_deref().unwrap_or_default(),
        Value::Array(jobs),
    )
}

/// One Job to run after an outcome.
#[derive(Debug)]
pub struct FollowUpJob {
    /// The action's name in `onSuccess`/`onFailure`.
    pub action: String,
    /// Its deterministic Job name.
    pub job_name: String,
    pub job: Result<Job, BuildError>,
}

/// The Jobs to run after `run` ended with `status`: the `onSuccess` or
/// `onFailure` actions the Run was accepted with (its phase decides; other
/// phases run nothing), rendered from `reaction` as it is now.
pub fn follow_up_jobs(
    reaction: &CompiledReaction,
    run: &AlertReactionRun,
    status: &AlertReactionRunStatus,
    renderer: &Renderer,
    snapshot: &Snapshot,
) -> Vec<FollowUpJob> {
    let Some(which) = FollowUp::after(status.phase.unwrap_or_default()) else {
        return Vec::new();
    };
    let (names, sources) = match which {
        FollowUp::OnSuccess => (&run.spec.closing.on_success, &reaction.on_success),
        FollowUp::OnFailure => (&run.spec.closing.on_failure, &reaction.on_failure),
    };
    let alert = Alert::from(&run.spec.alert);
    let notification = Notification::from(&run.spec.notification);
    let name = run.metadata.name.as_deref().unwrap_or_default();
    names
        .iter()
        .map(|action| {
            let job_name =
                jobs::job_name(reaction, &format!("{}/{action}", which.as_str()), &alert);
            let job = match sources.iter().find(|s| &s.action_name == action) {
                Some(source) => {
                    let input = JobInput {
                        reaction,
                        source,
                        alert: &alert,
                        notification: &notification,
                        renderer,
                        skeleton: &snapshot.skeleton,
                        defaults: &snapshot.config.job_defaults,
                    };
                    jobs::build_job_with_run(&input, run_value(name, status))
                }
                None => Err(BuildError::Invalid {
                    field: format!("spec.{}", which.as_str()),
                    message: format!("the reaction has no action {action:?} any more"),
                }),
            };
            FollowUpJob {
                action: action.clone(),
                job_name,
                job,
            }
        })
        .collect()
}

/// Whether the phase ends the silence: everything but `Pending`,
/// `AwaitingApproval` and `Running`.
pub fn silence_ends(phase: RunPhase) -> bool {
    !matches!(
        phase,
        RunPhase::Pending | RunPhase::AwaitingApproval | RunPhase::Running
    )
}

/// What an approval decision does to a Run `AwaitingApproval`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalStep {
    /// Approved: create the Jobs.
    Approved { by: String, reason: String },
    /// Rejected by a person.
    Rejected { by: String, reason: String },
    /// Nobody decided before the deadline.
    TimedOut,
    /// The alert resolved while the Run waited.
    Resolved,
    /// Look again after this long (or when the Run changes).
    Wait(Duration),
}

/// The next step of a Run waiting for approval until `deadline`, given its
/// annotations (`karo.io/approval`, `-by`, `-reason`) and whether the alert
/// resolved. A decision made before the deadline counts even if Karo sees it late.
pub fn approval_step(
    annotations: &BTreeMap<String, String>,
    resolved: bool,
    deadline: Timestamp,
    now: Timestamp,
) -> ApprovalStep {
    let by = annotations
        .get(ANNOTATION_APPROVAL_BY)
        .cloned()
        .unwrap_or_else(|| "unknown".into());
    let reason = annotations
        .get(ANNOTATION_APPROVAL_REASON)
        .cloned()
        .unwrap_or_default();
    match annotations
        .get(ANNOTATION_APPROVAL)
        .map(|d| d.to_ascii_lowercase())
    {
        Some(d) if d == "approved" => return ApprovalStep::Approved { by, reason },
        Some(d) if d == "rejected" => return ApprovalStep::Rejected { by, reason },
        _ => {}
    }
    if resolved {
        return ApprovalStep::Resolved;
    }
    if now >= deadline {
        return ApprovalStep::TimedOut;
    }
    ApprovalStep::Wait(
        deadline
            .duration_since(now)
            .unsigned_abs()
            .max(Duration::from_millis(100)),
    )
}

/// When a Run that starts waiting at `now` is `Rejected` without a decision.
pub fn approval_deadline(closing: &RunClosing, now: Timestamp) -> Option<Timestamp> {
    let timeout = duration::parse(closing.approval_timeout.as_deref()?)?;
    Some(
        now.checked_add(jiff::SignedDuration::try_from(timeout).ok()?)
            .unwrap_or(Timestamp::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::reaction;
    use crate::model::config::{Config, Policy};
    use crate::model::crd::AlertReaction;
    use crate::model::run::{JobPhase, RunJob};

    fn reaction(extra: Value) -> CompiledReaction {
        let mut spec = json!({
            "alertName": "Disk",
            "actions": [{"name": "clean", "image": "busybox", "command": ["true"]}],
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        let mut ar = AlertReaction::new("disk", serde_json::from_value(spec).expect("spec"));
        ar.metadata.namespace = Some("ops".into());
        ar.metadata.uid = Some("uid-1".into());
        reaction::compile(&ar, &Renderer::new(), &Policy::default()).expect("compiles")
    }

    fn run_of(r: &CompiledReaction) -> AlertReactionRun {
        let alert = Alert {
            labels: BTreeMap::from([
                ("alertname".to_string(), "Disk".to_string()),
                ("instance".to_string(), "db-\"1\"".to_string()),
            ]),
            starts_at: "2026-01-01T00:00:00Z".into(),
            fingerprint: "f1".into(),
            ..Default::default()
        };
        crate::core::run::build_run(r, &alert, &Notification::default(), Vec::new())
    }

    fn failed() -> AlertReactionRunStatus {
        AlertReactionRunStatus {
            phase: Some(RunPhase::Failed),
            reason: Some("BackoffLimitExceeded".into()),
            jobs: vec![RunJob {
                action: "clean".into(),
                name: "disk-clean-1".into(),
                phase: JobPhase::Failed,
                log: Some("disk still full".into()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_run_keeps_what_the_reaction_asked_for() {
        let r = reaction(json!({
            "onResolved": "Cancel",
            "silence": {"comment": "see runbook"},
            "verify": {"within": "5m"},
        }));
        let run = run_of(&r);
        assert!(run.spec.closing.cancel_on_resolved);
        assert_eq!(run.spec.closing.silence_duration.as_deref(), Some("1h"));
        assert_eq!(run.spec.closing.verify_within.as_deref(), Some("5m"));

        let off = reaction(json!({"silence": {"enabled": false}}));
        assert!(run_of(&off).spec.closing.is_empty());
    }

    #[test]
    fn the_silence_is_on_the_exact_labels_and_names_the_run() {
        let r = reaction(json!({"silence": {"duration": "30m", "comment": "see runbook"}}));
        let run = run_of(&r);
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let plan = silence_for(&run, now).expect("a silence");
        assert_eq!(plan.labels, run.spec.alert.labels);
        assert_eq!(plan.ends_at.to_string(), "2026-01-01T00:30:00Z");
        let name = run.metadata.name.clone().expect("name");
        assert_eq!(plan.marker, format!("karo run ops/{name}"));
        assert!(plan.comment.contains(&plan.marker), "{}", plan.comment);
        assert!(plan.comment.contains("AlertReaction disk"));
        assert!(plan.comment.ends_with("see runbook"));
        assert_eq!(silence_for(&run_of(&reaction(json!({}))), now), None);
    }

    #[test]
    fn verifying_ends_remediated_on_resolve_else_asks_at_the_deadline() {
        let t = |s: &str| s.parse::<Timestamp>().expect("time");
        let deadline = t("2026-01-01T00:05:00Z");
        assert_eq!(
            verify_step(t("2026-01-01T00:01:00Z"), None, deadline),
            VerifyStep::Wait(Duration::from_secs(240))
        );
        assert_eq!(
            verify_step(
                t("2026-01-01T00:01:00Z"),
                Some(t("2026-01-01T00:00:30Z")),
                deadline
            ),
            VerifyStep::Remediated
        );
        assert_eq!(
            verify_step(t("2026-01-01T00:05:00Z"), None, deadline),
            VerifyStep::AskAlertmanager
        );
        let closing = RunClosing {
            verify_within: Some("5m".into()),
            ..Default::default()
        };
        assert_eq!(
            verify_deadline(&closing, t("2026-01-01T00:00:00Z")),
            Some(deadline)
        );
        assert_eq!(verify_deadline(&RunClosing::default(), deadline), None);
    }

    #[test]
    fn on_failure_jobs_see_the_run_and_have_their_own_names() {
        let r = reaction(json!({
            "onFailure": [{"name": "page", "image": "curl",
                "args": ["{{run.name}} {{run.phase}} {{run.reason}} {{#each run.jobs}}{{this.log}}{{/each}}"]}],
            "onSuccess": [{"name": "note", "image": "curl", "args": ["ok"]}],
        }));
        let run = run_of(&r);
        let snapshot = Snapshot::prepare(Config::default(), &Renderer::new()).expect("snapshot");
        let jobs = follow_up_jobs(&r, &run, &failed(), &Renderer::new(), &snapshot);
        assert_eq!(jobs.len(), 1, "onFailure only");
        let page = &jobs[0];
        assert_eq!(page.action, "page");
        assert!(
            page.job_name.starts_with("disk-onfailure-page-"),
            "{}",
            page.job_name
        );
        let job = page.job.as_ref().expect("renders");
        let args = serde_json::to_string(&job.spec).expect("json");
        let name = run.metadata.name.clone().expect("name");
        assert!(
            args.contains(&format!(
                "{name} Failed BackoffLimitExceeded disk still full"
            )),
            "{args}"
        );
        // The same outcome names the same Job: a restart creates nothing twice.
        let again = follow_up_jobs(&r, &run, &failed(), &Renderer::new(), &snapshot);
        assert_eq!(again[0].job_name, page.job_name);

        let mut cancelled = failed();
        cancelled.phase = Some(RunPhase::Cancelled);
        assert!(follow_up_jobs(&r, &run, &cancelled, &Renderer::new(), &snapshot).is_empty());
        let mut remediated = failed();
        remediated.phase = Some(RunPhase::Remediated);
        let note = follow_up_jobs(&r, &run, &remediated, &Renderer::new(), &snapshot);
        assert_eq!(note.len(), 1);
        assert!(note[0].job_name.starts_with("disk-onsuccess-note-"));
    }

    #[test]
    fn durations_that_do_not_parse_name_their_field() {
        for (extra, field) in [
            (json!({"verify": {"within": "soon"}}), "spec.verify.within"),
            (json!({"verify": {"within": "0s"}}), "spec.verify.within"),
            (
                json!({"silence": {"duration": "1 hour"}}),
                "spec.silence.duration",
            ),
        ] {
            let mut spec = json!({
                "alertName": "Disk",
                "actions": [{"name": "clean", "image": "busybox"}],
            });
            if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
                s.extend(e.clone());
            }
            let ar = AlertReaction::new("disk", serde_json::from_value(spec).expect("spec"));
            let e =
                reaction::compile(&ar, &Renderer::new(), &Policy::default()).expect_err("refused");
            assert_eq!(e.field.path, field, "{extra}: {}", e.message());
        }
    }

    #[test]
    fn approval_waits_for_a_decision_the_resolve_or_the_deadline() {
        let t = |s: &str| s.parse::<Timestamp>().expect("time");
        let deadline = t("2026-01-01T01:00:00Z");
        let now = t("2026-01-01T00:10:00Z");
        let mut notes = BTreeMap::new();
        assert_eq!(
            approval_step(&notes, false, deadline, now),
            ApprovalStep::Wait(Duration::from_secs(3000))
        );
        assert_eq!(
            approval_step(&notes, true, deadline, now),
            ApprovalStep::Resolved
        );
        assert_eq!(
            approval_step(&notes, false, deadline, deadline),
            ApprovalStep::TimedOut
        );
        notes.insert(ANNOTATION_APPROVAL.to_string(), "Approved".to_string());
        notes.insert(ANNOTATION_APPROVAL_BY.to_string(), "alice".to_string());
        assert_eq!(
            approval_step(&notes, true, deadline, deadline),
            ApprovalStep::Approved {
                by: "alice".into(),
                reason: String::new()
            }
        );
        notes.insert(ANNOTATION_APPROVAL.to_string(), "rejected".to_string());
        notes.insert(
            ANNOTATION_APPROVAL_REASON.to_string(),
            "not now".to_string(),
        );
        assert_eq!(
            approval_step(&notes, false, deadline, now),
            ApprovalStep::Rejected {
                by: "alice".into(),
                reason: "not now".into()
            }
        );
        // Anything else is no decision.
        notes.insert(ANNOTATION_APPROVAL.to_string(), "maybe".to_string());
        assert!(matches!(
            approval_step(&notes, false, deadline, now),
            ApprovalStep::Wait(_)
        ));
        let closing = RunClosing {
            approval_timeout: Some("1h".into()),
            ..Default::default()
        };
        assert_eq!(
            approval_deadline(&closing, t("2026-01-01T00:00:00Z")),
            Some(deadline)
        );
    }

    #[test]
    fn main_actions_see_the_run_pending() {
        let r = reaction(json!({
            "actions": [{"name": "clean", "image": "busybox", "args": ["{{run.name}}:{{run.phase}}"]}],
        }));
        let run = run_of(&r);
        let alert = Alert::from(&run.spec.alert);
        let snapshot = Snapshot::prepare(Config::default(), &Renderer::new()).expect("snapshot");
        let job = jobs::build_job(&JobInput {
            reaction: &r,
            source: &r.sources[0],
            alert: &alert,
            notification: &Notification::default(),
            renderer: &Renderer::new(),
            skeleton: &snapshot.skeleton,
            defaults: &snapshot.config.job_defaults,
        })
        .expect("renders");
        let args = serde_json::to_string(&job.spec).expect("json");
        let name = run.metadata.name.clone().expect("name");
        assert!(args.contains(&format!("{name}:Pending")), "{args}");
    }
}
