//! Closing the loop on a Run: its Alertmanager silence, cancellation when the
//! alert resolves (`onResolved: Cancel`), verification that the fix worked
//! (`verify`), and the `onSuccess` / `onFailure` Jobs after the outcome.
//!
//! Every step is recorded on the Run before the next is taken and is safe to
//! repeat: the silence is found again by the Run's name in its comment, the
//! follow-up Jobs have deterministic names, so a restart or a new leader does
//! nothing twice.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use super::ctx::{create_job, finish_at, log_tail, ours, write_status, Created, Ctx, RunError};
use crate::core::closing::{self, VerifyStep};
use crate::core::reaction::{object_ref, FollowUp};
use crate::core::run;
use crate::daemon::index::Entry;
use crate::daemon::metrics::ErrorKind;
use crate::daemon::status::StatusDelta;
use crate::model::run::{
    AlertReactionRun, AlertReactionRunStatus, JobPhase, RunJob, RunPhase, RunSilence, SilenceState,
};

/// A Run waiting on Alertmanager, or on its follow-up Jobs, looks again this often.
const RETRY: Duration = Duration::from_secs(15);
/// How long past `verify.within` Karo keeps asking an Alertmanager that does not answer.
const ASK_GRACE: Duration = Duration::from_secs(300);

/// Creates the Run's silence when its Jobs start and expires it when they end;
/// the outcome goes to `next.silence`. Never fails the Run: a silence that
/// cannot be created is recorded, one that cannot be expired yet is tried again.
pub(super) async fn silence(
    ctx: &Ctx,
    run: &AlertReactionRun,
    phase: RunPhase,
    next: &mut AlertReactionRunStatus,
) {
    let ns = run.namespace().unwrap_or_default();
    let name = run.name_any();
    match next.silence.as_ref().map(|s| (s.state, s.id.clone())) {
        None if matches!(phase, RunPhase::Running | RunPhase::AwaitingApproval) => {
            let Some(mut plan) = closing::silence_for(run, Timestamp::now()) else {
                return;
            };
            if phase == RunPhase::AwaitingApproval {
                plan.comment = format!(
                    "Awaiting approval: karo approve -n {ns} {name} (or karo reject). {}",
                    plan.comment
                );
            }
            let outcome = match ctx.runner.alertmanager() {
                Ok(Some(am)) => am.ensure_silence(&plan).await.map_err(|e| e.to_string()),
                Ok(None) => Err("no Alertmanager is configured (alertmanager.url)".to_string()),
                Err(e) => Err(e.to_string()),
            };
            next.silence = Some(match outcome {
                Ok(id) => {
                    info!(namespace = %ns, run = %name, silence = %id, "alert silenced while the Run's Jobs run");
                    event(
                        ctx,
                        run,
                        EventType::Normal,
                        "Silenced",
                        format!("Silenced the alert in Alertmanager ({id}) while Run {name} runs"),
                    );
                    RunSilence {
                        id: Some(id),
                        state: SilenceState::Active,
                        message: None,
                    }
                }
                Err(why) => {
                    ctx.runner.metrics.error(ErrorKind::Api);
                    warn!(namespace = %ns, run = %name, error = %why, "cannot silence the alert; the remediation goes on");
                    event(
                        ctx,
                        run,
                        EventType::Warning,
                        "SilenceFailed",
                        format!("Cannot silence the alert for Run {name}: {why}"),
                    );
                    RunSilence {
                        id: None,
                        state: SilenceState::Failed,
                        message: Some(why),
                    }
                }
            });
        }
        Some((SilenceState::Active, Some(id))) if closing::silence_ends(phase) => {
            let outcome = match ctx.runner.alertmanager() {
                Ok(Some(am)) => am.expire_silence(&id).await.map_err(|e| e.to_string()),
                Ok(None) => Err("no Alertmanager is configured (alertmanager.url)".to_string()),
                Err(e) => Err(e.to_string()),
            };
            let Some(s) = next.silence.as_mut() else {
                return;
            };
            match outcome {
                Ok(()) => {
                    info!(namespace = %ns, run = %name, silence = %id, phase = phase.as_str(), "silence expired");
                    s.state = SilenceState::Expired;
                    s.message = None;
                }
                Err(why) => {
                    ctx.runner.metrics.error(ErrorKind::Api);
                    warn!(namespace = %ns, run = %name, silence = %id, error = %why, "cannot expire the silence yet; retrying");
                    s.message = Some(format!("cannot expire it yet: {why}"));
                }
            }
        }
        _ => {}
    }
}

/// Whether the Run still has a silence to expire.
fn silence_pending(status: &AlertReactionRunStatus) -> bool {
    status
        .silence
        .as_ref()
        .is_some_and(|s| s.state == SilenceState::Active && s.id.is_some())
}

/// How often a Run with `onResolved: Cancel` whose own silence mutes its alert
/// asks Alertmanager whether the alert still fires (see `resolved_while_silenced`).
pub(super) const SILENCED_POLL: Duration = Duration::from_secs(10);

/// Whether the Run must ask Alertmanager itself to see its alert resolve: it
/// cancels on resolve, has not seen it, and its silence is active.
pub(super) fn polls_alertmanager(run: &AlertReactionRun, status: &AlertReactionRunStatus) -> bool {
    run.spec.closing.cancel_on_resolved && status.resolved_at.is_none() && silence_pending(status)
}

/// `onResolved: Cancel` while the Run's silence is active. Alertmanager mutes the
/// alert's resolved notification with the silence like any other (and then drops
/// it), so the webhook never hears of the resolve: ask the alerts API instead.
/// The time the alert was found resolved, or `None` (still firing, or no answer:
/// asked again at the next look).
pub(super) async fn resolved_while_silenced(
    ctx: &Ctx,
    run: &AlertReactionRun,
    status: &AlertReactionRunStatus,
) -> Option<Time> {
    if !polls_alertmanager(run, status) {
        return None;
    }
    match still_firing(ctx, run).await {
        Some(false) => {
            info!(namespace = %run.namespace().unwrap_or_default(), run = %run.name_any(), "the silenced alert no longer fires in Alertmanager");
            Some(Time(Timestamp::now()))
        }
        _ => None,
    }
}

/// The alert resolved while the Run's Jobs ran (`onResolved: Cancel`): deletes
/// the Jobs still active (their pods with them) and ends the Run `Cancelled`.
/// `None` when there is nothing to cancel: every Job was created and has
/// finished (the resolve was seen after the Jobs ended, for example by a Karo
/// that was down meanwhile); the Run then takes its Jobs' outcome.
pub(super) async fn cancel(
    ctx: &Ctx,
    run: &AlertReactionRun,
    status: &AlertReactionRunStatus,
) -> Result<Option<Action>, RunError> {
    let ns = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let api: Api<Job> = Api::namespaced(ctx.runner.client.clone(), &ns);
    // Each action's recorded Job, and the Job itself unless its outcome is recorded.
    let mut found = Vec::with_capacity(run.spec.actions.len());
    for action in &run.spec.actions {
        let recorded = status.jobs.iter().find(|j| j.name == action.job_name);
        let job = match recorded.filter(|r| r.phase.is_finished()) {
            Some(_) => None,
            None => api
                .get_opt(&action.job_name)
                .await?
                .filter(|j| ours(j, run)),
        };
        found.push((action, recorded, job));
    }
    let finished = |recorded: Option<&RunJob>, job: &Option<Job>| {
        recorded.is_some_and(|r| r.phase.is_finished())
            || job
                .as_ref()
                .is_some_and(|j| run::job_state(j).phase.is_finished())
    };
    if !found.is_empty() && found.iter().all(|(_, r, j)| finished(*r, j)) {
        return Ok(None);
    }
    let mut jobs = Vec::new();
    let mut deleted = 0usize;
    for (action, recorded, job) in found {
        if let Some(r) = recorded.filter(|r| r.phase.is_finished()) {
            jobs.push(r.clone());
            continue;
        }
        let state = job.as_ref().map(run::job_state);
        match state {
            Some(s) if s.phase.is_finished() => jobs.push(s.record(&action.name, &action.job_name)),
            _ => {
                if job.is_some() {
                    match api
                        .delete(&action.job_name, &DeleteParams::background())
                        .await
                    {
                        Ok(_) => deleted += 1,
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                if job.is_some() || recorded.is_some() {
                    jobs.push(RunJob {
                        action: action.name.clone(),
                        name: action.job_name.clone(),
                        phase: JobPhase::Cancelled,
                        start_time: state
                            .and_then(|s| s.start)
                            .or_else(|| recorded.and_then(|r| r.start_time.clone())),
                        completion_time: Some(Time(Timestamp::now())),
                        reason: Some("AlertResolved".into()),
                        message: Some("deleted when the alert resolved".into()),
                        log: None,
                    });
                }
            }
        }
    }
    let mut next = status.clone();
    next.jobs = jobs;
    let resolved = status
        .resolved_at
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    finish_at(
        &mut next,
        RunPhase::Cancelled,
        "AlertResolved",
        format!("the alert resolved at {resolved}; {deleted} active Job(s) deleted"),
    );
    silence(ctx, run, RunPhase::Cancelled, &mut next).await;
    if !write_status(ctx, run, next.clone()).await? {
        return Ok(Some(Action::requeue(Duration::from_millis(200))));
    }
    info!(namespace = %ns, run = %name, deleted, "Run cancelled: the alert resolved");
    ctx.record_outcome(run, &next, StatusDelta::default());
    Ok(Some(after_write(&next)))
}

/// Asks Alertmanager whether the Run's alert fires: `None` without an
/// Alertmanager configured, else its answer or why there is none.
async fn ask_firing(ctx: &Ctx, run: &AlertReactionRun) -> Option<Result<bool, String>> {
    let am = match ctx.runner.alertmanager() {
        Ok(Some(am)) => am,
        Ok(None) => return None,
        Err(e) => return Some(Err(e.to_string())),
    };
    let alertname = run
        .spec
        .alert
        .labels
        .get("alertname")
        .cloned()
        .unwrap_or_default();
    Some(
        am.alert_firing(&run.spec.alert.fingerprint, &alertname)
            .await
            .map_err(|e| e.to_string()),
    )
}

/// Whether Alertmanager has the Run's alert firing; `None` without an
/// Alertmanager or an answer.
async fn still_firing(ctx: &Ctx, run: &AlertReactionRun) -> Option<bool> {
    match ask_firing(ctx, run).await? {
        Ok(firing) => Some(firing),
        Err(e) => {
            ctx.runner.metrics.error(ErrorKind::Api);
            warn!(namespace = %run.namespace().unwrap_or_default(), run = %run.name_any(), error = %e, "cannot ask Alertmanager whether the alert still fires; asking again later");
            None
        }
    }
}

/// A `Verifying` Run: `Remediated` once the alert resolved, `Ineffective` when
/// it still fires after `verify.within` (asked of Alertmanager when one is
/// configured, for receivers that do not send resolved notifications).
pub(super) async fn verifying(
    ctx: &Ctx,
    run: &AlertReactionRun,
    status: &AlertReactionRunStatus,
) -> Result<Action, RunError> {
    let now = Timestamp::now();
    let deadline = status.verify_deadline.as_ref().map_or(now, |t| t.0);
    let within = run.spec.closing.verify_within.clone().unwrap_or_default();
    let resolved = status.resolved_at.as_ref().map(|t| t.0);
    let (phase, reason, message) = match closing::verify_step(now, resolved, deadline) {
        // The Run's silence muted the alert while the Jobs ran, and with it a
        // resolved notification sent then: ask Alertmanager meanwhile too.
        VerifyStep::Wait(left) if status.silence.as_ref().is_some_and(|s| s.id.is_some()) => {
            match still_firing(ctx, run).await {
                Some(false) => (
                    RunPhase::Remediated,
                    "AlertResolved",
                    "Alertmanager no longer has the alert firing".to_string(),
                ),
                _ => return Ok(Action::requeue(left.min(SILENCED_POLL))),
            }
        }
        VerifyStep::Wait(left) => return Ok(Action::requeue(left)),
        VerifyStep::Remediated => (
            RunPhase::Remediated,
            "AlertResolved",
            "the alert resolved after the Jobs succeeded".to_string(),
        ),
        VerifyStep::AskAlertmanager => {
            match ask_firing(ctx, run).await {
                Some(Ok(false)) => (
                    RunPhase::Remediated,
                    "AlertResolved",
                    "Alertmanager no longer has the alert firing".to_string(),
                ),
                Some(Ok(true)) => (
                    RunPhase::Ineffective,
                    "StillFiring",
                    format!("the alert still fires {within} after the Jobs succeeded"),
                ),
                Some(Err(why))
                    if now.duration_since(deadline).unsigned_abs() < ASK_GRACE =>
                {
                    ctx.runner.metrics.error(ErrorKind::Api);
                    warn!(namespace = %run.namespace().unwrap_or_default(), run = %run.name_any(), error = %why, "cannot ask Alertmanager whether the alert still fires; retrying");
                    return Ok(Action::requeue(RETRY));
                }
                Some(Err(why)) => (
                    RunPhase::Ineffective,
                    "StillFiring",
                    format!(
                        "no resolved notification within {within} after the Jobs succeeded, and Alertmanager could not be asked: {why}"
                    ),
                ),
                None => (
                    RunPhase::Ineffective,
                    "StillFiring",
                    format!("no resolved notification within {within} after the Jobs succeeded"),
                ),
            }
        }
    };
    let mut next = status.clone();
    finish_at(&mut next, phase, reason, message);
    if !write_status(ctx, run, next.clone()).await? {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    ctx.record_outcome(run, &next, StatusDelta::default());
    Ok(after_write(&next))
}

/// A finished Run: expires a silence still active, then creates the
/// `onSuccess` / `onFailure` Jobs it was accepted with, once, and follows them.
pub(super) async fn after_outcome(
    ctx: &Ctx,
    run: &AlertReactionRun,
    status: &AlertReactionRunStatus,
) -> Result<Action, RunError> {
    let phase = status.phase.unwrap_or_default();
    let mut next = status.clone();
    silence(ctx, run, phase, &mut next).await;
    let names = match FollowUp::after(phase) {
        Some(FollowUp::OnSuccess) => &run.spec.closing.on_success,
        Some(FollowUp::OnFailure) => &run.spec.closing.on_failure,
        None => &Vec::new(),
    };
    let mut created = Vec::new();
    if next.follow_up.len() < names.len() {
        match create_follow_ups(ctx, run, &mut next).await? {
            Some(jobs) => created = jobs,
            None => return Ok(Action::requeue(RETRY)),
        }
    } else {
        follow(ctx, run, &mut next).await?;
    }
    if next == *status {
        return Ok(after_write(&next));
    }
    if !write_status(ctx, run, next.clone()).await? {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let ns = run.namespace().unwrap_or_default();
    let which = FollowUp::after(phase).map_or("", FollowUp::as_str);
    for job in &created {
        ctx.runner.metrics.jobs_created.inc();
        info!(namespace = %ns, run = %run.name_any(), job = %job, "{which} Job created");
        event(
            ctx,
            run,
            EventType::Normal,
            "FollowUp",
            format!(
                "Created Job {job} ({which}) after Run {} ended {}",
                run.name_any(),
                phase.as_str()
            ),
        );
    }
    Ok(after_write(&next))
}

/// Creates the follow-up Jobs not recorded yet into `next.follow_up`: the
/// names of those created now, or `None` to try again later (the reaction is
/// not Ready here, or the API server refused for a passing reason).
async fn create_follow_ups(
    ctx: &Ctx,
    run: &AlertReactionRun,
    next: &mut AlertReactionRunStatus,
) -> Result<Option<Vec<String>>, RunError> {
    let runner = &ctx.runner;
    let ns = run.namespace().unwrap_or_default();
    let key = (ns.clone(), run.spec.reaction.name.clone());
    let reaction = match runner.index.get(&key) {
        Some(Entry::Ready(r)) if r.uid == run.spec.reaction.uid => r,
        _ => return Ok(None),
    };
    let snapshot = runner.snapshots.borrow().clone();
    let uid = run.uid().unwrap_or_default();
    let api: Api<Job> = Api::namespaced(runner.client.clone(), &ns);
    let mut created = Vec::new();
    for planned in closing::follow_up_jobs(&reaction, run, next, &runner.renderer, &snapshot) {
        if next.follow_up.iter().any(|j| j.name == planned.job_name) {
            continue;
        }
        let failed = |reason: &str, message: String| RunJob {
            action: planned.action.clone(),
            name: planned.job_name.clone(),
            phase: JobPhase::Failed,
            reason: Some(reason.into()),
            message: Some(message),
            ..Default::default()
        };
        let job = match planned.job {
            Ok(job) => job,
            Err(e) => {
                next.follow_up.push(failed("RenderFailed", e.to_string()));
                continue;
            }
        };
        let action = match run::run_action(&planned.action, &job) {
            Ok(a) => a,
            Err(e) => {
                next.follow_up.push(failed("InvalidJob", e.to_string()));
                continue;
            }
        };
        match create_job(&api, run, &uid, &action).await {
            Created::Job(job) => {
                next.follow_up
                    .push(run::job_state(&job).record(&planned.action, &planned.job_name));
                created.push(planned.job_name.clone());
            }
            Created::Refused(reason, message) => {
                runner.metrics.error(ErrorKind::JobRejected);
                next.follow_up.push(failed(reason, message));
            }
            Created::Retry(e) => {
                runner.metrics.error(ErrorKind::Api);
                warn!(namespace = %ns, run = %run.name_any(), error = %e, "cannot create the follow-up Jobs yet; retrying");
                return Ok(None);
            }
        }
    }
    Ok(Some(created))
}

/// Brings the follow-up Jobs' phases in `next` up to date.
async fn follow(
    ctx: &Ctx,
    run: &AlertReactionRun,
    next: &mut AlertReactionRunStatus,
) -> Result<(), RunError> {
    let ns = run.namespace().unwrap_or_default();
    for j in next.follow_up.iter_mut().filter(|j| !j.phase.is_finished()) {
        let job = ctx
            .jobs
            .get(&ObjectRef::new(&j.name).within(&ns))
            .map(|j| (*j).clone());
        let job = match job {
            Some(job) => Some(job),
            None => {
                let api: Api<Job> = Api::namespaced(ctx.runner.client.clone(), &ns);
                api.get_opt(&j.name).await?
            }
        };
        match job.filter(|job| ours(job, run)) {
            Some(job) => {
                *j = run::job_state(&job).record(&j.action, &j.name);
                if j.phase == JobPhase::Failed {
                    j.log = log_tail(&ctx.runner.client, &ns, &j.name).await;
                }
            }
            None => {
                j.phase = JobPhase::Lost;
                j.reason = Some("JobDeleted".into());
                j.message = Some("the Job was deleted before its outcome was seen".into());
            }
        }
    }
    Ok(())
}

/// What to wait for after a status write: nothing more, or the silence still
/// to expire and follow-up Jobs still running.
fn after_write(status: &AlertReactionRunStatus) -> Action {
    if silence_pending(status) && closing::silence_ends(status.phase.unwrap_or_default()) {
        Action::requeue(RETRY)
    } else if status.follow_up.iter().any(|j| !j.phase.is_finished()) {
        Action::requeue(Duration::from_secs(30))
    } else {
        Action::await_change()
    }
}

pub(super) fn event(
    ctx: &Ctx,
    run: &AlertReactionRun,
    kind: EventType,
    reason: &str,
    note: String,
) {
    ctx.runner.events.about_ref(
        object_ref(
            &run.namespace().unwrap_or_default(),
            &run.spec.reaction.name,
            Some(run.spec.reaction.uid.clone()),
        ),
        kind,
        reason,
        note,
    );
}
