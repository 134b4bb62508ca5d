//! `spec.approval`: an admitted Run waits `AwaitingApproval` until a person
//! decides with `karo approve` / `karo reject` (the `karo.io/approval`
//! annotation on the Run, so RBAC on patching Runs is the permission), and is
//! `Rejected` when nobody decides before `approval.timeout`. A resolved alert
//! while it waits cancels it. The request, the decision, who made it and when
//! are recorded on the Run; with `silence` on, Alertmanager shows a silence
//! whose comment says the Run awaits approval.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::ResourceExt;
use std::time::Duration;
use tracing::info;

use super::closing::{event, silence};
use super::ctx::{finish_at, write_status, Ctx, RunError};
use crate::core::closing::{approval_deadline, approval_step, ApprovalStep};
use crate::daemon::status::StatusDelta;
use crate::model::run::{AlertReactionRun, AlertReactionRunStatus, RunApproval, RunPhase};

/// What the approval gate decided for a Run about to create its Jobs.
pub(super) enum Gate {
    /// No approval needed, or approved (the decision is on the Run): go on.
    Proceed,
    /// Waiting, or ended: this is what the reconcile returns.
    Done(Action),
}

/// Decides whether `run` may create its Jobs; a decision is recorded on the Run
/// before any Job is created.
pub(super) async fn gate(
    ctx: &Ctx,
    run: &AlertReactionRun,
    status: &mut AlertReactionRunStatus,
) -> Result<Gate, RunError> {
    if run.spec.closing.approval_timeout.is_none() {
        return Ok(Gate::Proceed);
    }
    if status.approval.as_ref().and_then(|a| a.decision.as_deref()) == Some("Approved") {
        return Ok(Gate::Proceed);
    }
    let ns = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let now = Timestamp::now();
    let phase = status.phase.unwrap_or_default();
    if phase != RunPhase::AwaitingApproval {
        let deadline = approval_deadline(&run.spec.closing, now).unwrap_or(now);
        let mut next = status.clone();
        next.phase = Some(RunPhase::AwaitingApproval);
        next.reason = Some("ApprovalRequired".into());
        next.message = Some(format!(
            "waiting for `karo approve -n {ns} {name}` or `karo reject -n {ns} {name}` until {deadline}"
        ));
        next.approval = Some(RunApproval {
            requested_at: Some(Time(now)),
            deadline: Some(Time(deadline)),
            ..Default::default()
        });
        silence(ctx, run, RunPhase::AwaitingApproval, &mut next).await;
        if !write_status(ctx, run, next).await? {
            return Ok(Gate::Done(Action::requeue(Duration::from_millis(200))));
        }
        ctx.runner
            .metrics
            .approvals
            .with_label_values(&["requested"])
            .inc();
        info!(namespace = %ns, run = %name, "Run awaits approval");
        event(
            ctx,
            run,
            EventType::Warning,
            "AwaitingApproval",
            format!(
                "Run {name} waits for approval until {deadline}: karo approve -n {ns} {name} (or karo reject)"
            ),
        );
        let wait = deadline.duration_since(now).unsigned_abs();
        return Ok(Gate::Done(Action::requeue(
            wait.max(Duration::from_millis(100)),
        )));
    }
    let deadline = status
        .approval
        .as_ref()
        .and_then(|a| a.deadline.as_ref())
        .map_or(now, |t| t.0);
    let step = approval_step(
        run.annotations(),
        status.resolved_at.is_some(),
        deadline,
        now,
    );
    let (end, reason, message, result) = match step {
        ApprovalStep::Wait(left) => return Ok(Gate::Done(Action::requeue(left))),
        ApprovalStep::Approved { by, reason } => {
            // Recorded before any Job exists: once a Job exists the gate is not
            // asked again, so a decision kept only for the write that follows the
            // Jobs would be lost if that write lost a race.
            let mut next = status.clone();
            let approval = next.approval.get_or_insert_with(Default::default);
            approval.decision = Some("Approved".into());
            approval.by = Some(by.clone());
            approval.decided_at = Some(Time(now));
            approval.reason = (!reason.is_empty()).then_some(reason);
            if !write_status(ctx, run, next).await? {
                return Ok(Gate::Done(Action::requeue(Duration::from_millis(200))));
            }
            ctx.runner
                .metrics
                .approvals
                .with_label_values(&["approved"])
                .inc();
            info!(namespace = %ns, run = %name, by = %by, "Run approved");
            event(
                ctx,
                run,
                EventType::Normal,
                "Approved",
                format!("Run {name} approved by {by}"),
            );
            // The write wakes the Run, which then creates its Jobs.
            return Ok(Gate::Done(Action::await_change()));
        }
        ApprovalStep::Rejected { by, reason } => {
            let approval = status.approval.get_or_insert_with(Default::default);
            approval.decision = Some("Rejected".into());
            approval.by = Some(by.clone());
            approval.decided_at = Some(Time(now));
            approval.reason = (!reason.is_empty()).then(|| reason.clone());
            let why = if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            };
            (
                RunPhase::Rejected,
                "Rejected",
                format!("rejected by {by}{why}"),
                "rejected",
            )
        }
        ApprovalStep::TimedOut => (
            RunPhase::Rejected,
            "ApprovalTimeout",
            format!("nobody approved it before {deadline}"),
            "expired",
        ),
        ApprovalStep::Resolved => (
            RunPhase::Cancelled,
            "AlertResolved",
            "the alert resolved while the Run waited for approval".to_string(),
            "cancelled",
        ),
    };
    let mut next = status.clone();
    finish_at(&mut next, end, reason, message);
    silence(ctx, run, end, &mut next).await;
    if !write_status(ctx, run, next.clone()).await? {
        return Ok(Gate::Done(Action::requeue(Duration::from_millis(200))));
    }
    ctx.runner
        .metrics
        .approvals
        .with_label_values(&[result])
        .inc();
    ctx.record_outcome(run, &next, StatusDelta::default());
    Ok(Gate::Done(Action::await_change()))
}
