//! Reconciles AlertReactionRuns while this replica leads: gates, Jobs, outcome.
//!
//! A Run without Jobs is admitted (suspension, cooldown, Forbid, the global Job
//! budget) and its Jobs are created from the Job specs it carries, owned by the
//! Run. A refusal worth retrying (429, 5xx, an exhausted quota, no connection)
//! is retried with backoff and counted on the Run; any other refusal fails the
//! Run. Then each change of its Jobs is followed until all succeeded or one
//! failed, and the outcome goes to the Run's status, the reaction's status,
//! Events and metrics, exactly once: the final status is written with the
//! resourceVersion read, so only one writer gets to record it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::{self, Action};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, reflector, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::{Controller, WatchStreamExt};
use kube::{Api, ResourceExt};
use tokio::sync::watch;
use tracing::{debug, info, warn};

pub use super::ctx::Runner;
use super::ctx::{create_job, finish_at, log_tail, ours, write_status, Created, Ctx, RunError};
use crate::core::closing as closing_core;
use crate::core::jobs::LABEL_MANAGED_BY;
use crate::core::reaction::object_ref;
use crate::core::run::{self, Verdict};
use crate::daemon::index::Entry;
use crate::daemon::metrics::{ErrorKind, SkipReason};
use crate::daemon::runs::gatekeeper::Gatekeeper;
use crate::daemon::runs::retention;
use crate::daemon::runs::{approval, closing};
use crate::daemon::status::StatusDelta;
use crate::model::crd::JobReference;
use crate::model::run::{
    AlertReactionRun, AlertReactionRunStatus, JobPhase, RunAction, RunJob, RunPhase,
};

/// Runs reconciled at once.
const CONCURRENCY: u16 = 16;
/// A running Run is looked at again at least this often (Jobs adopted from an
/// earlier release are not owned by it, so their changes do not wake it).
const RECHECK: Duration = Duration::from_secs(30);
/// When a Run the cache shows stale (before this replica's own write) is looked
/// at again, should the watch not bring the newer version first.
const STALE_RECHECK: Duration = Duration::from_secs(1);

impl Runner {
    /// Follows Runs while `leading` is true, until the process ends.
    pub async fn run(self: Arc<Self>, mut leading: watch::Receiver<bool>) {
        loop {
            while !*leading.borrow_and_update() {
                if leading.changed().await.is_err() {
                    return;
                }
            }
            info!("leading: following AlertReactionRuns");
            self.metrics.leader.set(1);
            let work = self.clone().lead();
            tokio::select! {
                _ = work => {}
                _ = async {
                    while *leading.borrow_and_update() {
                        if leading.changed().await.is_err() {
                            break;
                        }
                    }
                } => {}
            }
            self.metrics.leader.set(0);
            info!("no longer leading: stopped following AlertReactionRuns");
        }
    }

    /// One leadership term: a reconciler per watched namespace and retention.
    async fn lead(self: Arc<Self>) {
        let namespaces = self.snapshots.borrow().config.namespaces.clone();
        let gatekeeper = Arc::new(Gatekeeper::default());
        let scopes: Vec<Option<String>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.into_iter().map(Some).collect()
        };
        let mut tasks = Vec::new();
        for ns in scopes {
            let (runs, jobs): (Api<AlertReactionRun>, Api<Job>) = match &ns {
                Some(ns) => (
                    Api::namespaced(self.client.clone(), ns),
                    Api::namespaced(self.client.clone(), ns),
                ),
                None => (Api::all(self.client.clone()), Api::all(self.client.clone())),
            };
            let managed = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}=karo"));
            let (job_store, job_writer) = reflector::store::<Job>();
            // A Job's change wakes its Run only once the store holds it, so the
            // reconcile reads the change it was woken for.
            let (changed, changes) = tokio::sync::mpsc::unbounded_channel::<Job>();
            tasks.push(tokio::spawn(
                reflector(job_writer, watcher(jobs, managed).modify(lighten::<Job>))
                    .default_backoff()
                    .touched_objects()
                    .for_each(move |job| {
                        if let Ok(job) = job {
                            let _ = changed.send(job);
                        }
                        futures::future::ready(())
                    }),
            ));
            let changes = futures::stream::unfold(changes, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|job| (Ok::<Job, watcher::Error>(job), rx))
            });
            let (run_store, run_writer) = reflector::store::<AlertReactionRun>();
            let runs = watcher(runs, watcher::Config::default())
                .modify(lighten::<AlertReactionRun>)
                .default_backoff()
                .reflect(run_writer)
                .applied_objects();
            let controller = Controller::for_stream(runs, run_store)
                .owns_stream(changes)
                .with_config(controller::Config::default().concurrency(CONCURRENCY));
            let ctx = Arc::new(Ctx {
                backoff: Default::default(),
                replaced: Default::default(),
                runner: self.clone(),
                gatekeeper: gatekeeper.clone(),
                store: controller.store(),
                jobs: job_store,
            });
            tasks.push(tokio::spawn(retention::sweep(
                self.client.clone(),
                ctx.store.clone(),
                self.snapshots.clone(),
                self.metrics.clone(),
                ns.clone().unwrap_or_default(),
            )));
            tasks.push(tokio::spawn(async move {
                // Decide nothing before the Jobs that exist are known.
                if ctx.jobs.wait_until_ready().await.is_err() {
                    return;
                }
                controller
                    .run(reconcile, error_policy, ctx)
                    .for_each(|result| async move {
                        if let Err(e) = result {
                            debug!(error = %e, "Run reconcile");
                        }
                    })
                    .await
            }));
        }
        // Aborted when the term ends: dropping the handles would leave them running.
        struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                for t in &self.0 {
                    t.abort();
                }
            }
        }
        let mut guard = AbortOnDrop(tasks);
        futures::future::join_all(guard.0.iter_mut()).await;
    }
}

/// What the caches keep of an object: not its `managedFields`, which no
/// decision reads and which take about as much room as a Run's status.
fn lighten<K: kube::Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

fn error_policy(run: Arc<AlertReactionRun>, error: &RunError, ctx: Arc<Ctx>) -> Action {
    ctx.runner.metrics.error(ErrorKind::Api);
    warn!(namespace = %run.namespace().unwrap_or_default(), run = %run.name_any(), error = %error, "cannot reconcile Run; retrying");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(run: Arc<AlertReactionRun>, ctx: Arc<Ctx>) -> Result<Action, RunError> {
    let mut status = run.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    if run.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // Its own last write is on its way from the watch: acting on the older
    // version would only be refused (409).
    if ctx.is_stale(&run) {
        return Ok(Action::requeue(STALE_RECHECK));
    }
    if phase.is_finished() {
        return closing::after_outcome(&ctx, &run, &status).await;
    }
    if phase == RunPhase::Verifying {
        return closing::verifying(&ctx, &run, &status).await;
    }
    if run::is_dry_run(&run) {
        return finish_dry_run(&ctx, &run).await;
    }
    // Karo's own silence mutes the resolved notification too: ask Alertmanager.
    if let Some(at) = closing::resolved_while_silenced(&ctx, &run, &status).await {
        status.resolved_at = Some(at);
    }
    if status.resolved_at.is_some() && run.spec.closing.cancel_on_resolved {
        if let Some(action) = closing::cancel(&ctx, &run, &status).await? {
            return Ok(action);
        }
    }
    let runner = &ctx.runner;
    let ns = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let uid = run.uid().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(runner.client.clone(), &ns);
    let found = jobs_of(&ctx.jobs, &run);
    let was_started = status.start_time.is_some();
    // A Run whose Job creation is being retried was admitted already; it waits
    // out its backoff (its own status writes wake the controller early).
    let retrying_since = status.attempts.unwrap_or(0) > 0;
    if retrying_since {
        if let Some(wait) = ctx.backoff_left(&uid) {
            return Ok(Action::requeue(wait));
        }
    }
    if !was_started && found.is_empty() && !retrying_since && phase == RunPhase::Pending {
        let key = (ns.clone(), run.spec.reaction.name.clone());
        let reaction = match runner.index.get(&key) {
            Some(Entry::Ready(r)) if r.uid == run.spec.reaction.uid => r,
            _ => {
                // Not (yet) in this replica's cache, or not Ready: look again later.
                debug!(namespace = %ns, run = %name, "the Run's reaction is not Ready here; waiting");
                return Ok(Action::requeue(RECHECK));
            }
        };
        let skip = if reaction.spec.suspend {
            Some((
                SkipReason::Suspended,
                "the reaction is suspended".to_string(),
            ))
        } else {
            match ctx
                .gatekeeper
                .decide(&reaction, &run, &ctx.store, &ctx.jobs)
                .await
            {
                Verdict::Proceed => runner.take_budget(run.spec.actions.len()),
                Verdict::Cooldown(why) => Some((SkipReason::Cooldown, why)),
                Verdict::Concurrency(why) => Some((SkipReason::Concurrency, why)),
                Verdict::Budget(why) => Some((SkipReason::Budget, why)),
            }
        };
        if let Some((reason, why)) = skip {
            return finish_skipped(&ctx, &run, reason, why).await;
        }
    }

    if !was_started && found.is_empty() {
        match approval::gate(&ctx, &run, &mut status).await? {
            approval::Gate::Proceed => {}
            approval::Gate::Done(action) => return Ok(action),
        }
    }

    // Create the Jobs not created yet; follow the others.
    let mut jobs: Vec<RunJob> = Vec::new();
    for action in &run.spec.actions {
        let recorded = status.jobs.iter().find(|j| j.name == action.job_name);
        let job = match found.get(&action.job_name) {
            Some(job) => Some(job.clone()),
            // Recorded, not in the watch (yet, or any more): ask the API server.
            None if recorded.is_some() => jobs_api
                .get_opt(&action.job_name)
                .await?
                .filter(|j| ours(j, &run)),
            None => match create_job(&jobs_api, &run, &uid, action).await {
                Created::Job(job) => Some(*job),
                Created::Refused(reason, message) => {
                    runner.metrics.error(ErrorKind::JobRejected);
                    jobs.push(RunJob {
                        action: action.name.clone(),
                        name: action.job_name.clone(),
                        phase: JobPhase::Failed,
                        reason: Some(reason.into()),
                        message: Some(message),
                        ..Default::default()
                    });
                    continue;
                }
                Created::Retry(e) => return retrying(&ctx, &run, &status, e).await,
            },
        };
        jobs.push(match job {
            Some(job) => observe(&ctx, &ns, action, &job, recorded).await,
            None => lost(action, recorded),
        });
    }

    let now = Timestamp::now();
    let phases: Vec<JobPhase> = jobs.iter().map(|j| j.phase).collect();
    let mut new_phase = run::phase_of(&phases);
    let start = status.start_time.clone().unwrap_or(Time(now));
    let mut next = AlertReactionRunStatus {
        phase: Some(new_phase),
        start_time: Some(start),
        jobs,
        attempts: status.attempts,
        last_seen: status.last_seen.clone(),
        resolved_at: status.resolved_at.clone(),
        silence: status.silence.clone(),
        approval: status.approval.clone(),
        ..Default::default()
    };
    if new_phase == RunPhase::Succeeded {
        if let Some(deadline) = closing_core::verify_deadline(&run.spec.closing, now) {
            new_phase = RunPhase::Verifying;
            next.phase = Some(new_phase);
            next.verify_deadline = Some(Time(deadline));
            next.reason = Some("JobsSucceeded".into());
            next.message = Some(format!(
                "waiting up to {} for the alert to resolve",
                run.spec
                    .closing
                    .verify_within
                    .as_deref()
                    .unwrap_or_default()
            ));
        }
    }
    if new_phase.is_finished() {
        let failed = next.jobs.iter().find(|j| j.phase != JobPhase::Succeeded);
        let (reason, message) = match failed {
            Some(failed) => (
                failed.reason.clone().unwrap_or_else(|| "JobFailed".into()),
                format!(
                    "Job {} ({}) failed{}",
                    failed.name,
                    failed.action,
                    failed
                        .message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
            ),
            None => ("JobsSucceeded".into(), String::new()),
        };
        finish_at(&mut next, new_phase, &reason, message);
    }
    closing::silence(&ctx, &run, new_phase, &mut next).await;
    // Jobs this status write records for the first time (created now, or by a
    // pass whose status write lost a race): counted once, with that write.
    let newly: Vec<JobReference> = next
        .jobs
        .iter()
        .filter(|j| {
            j.phase != JobPhase::Lost && !(j.phase == JobPhase::Failed && j.start_time.is_none())
        })
        .filter(|j| !status.jobs.iter().any(|r| r.name == j.name))
        .map(|j| JobReference {
            name: j.name.clone(),
            namespace: ns.clone(),
            action_name: j.action.clone(),
            created_at: j.start_time.clone().unwrap_or(Time(now)),
        })
        .collect();
    let recheck = if closing::polls_alertmanager(&run, &next) {
        closing::SILENCED_POLL
    } else {
        RECHECK
    };
    if run.status.as_ref() == Some(&next) {
        return Ok(Action::requeue(recheck));
    }
    if !write_status(&ctx, &run, next.clone()).await? {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let reaction_key = (ns.clone(), run.spec.reaction.name.clone());
    let reaction_ref = object_ref(
        &ns,
        &run.spec.reaction.name,
        Some(run.spec.reaction.uid.clone()),
    );
    for job in &newly {
        runner.metrics.jobs_created.inc();
        info!(namespace = %ns, reaction = %run.spec.reaction.name, run = %name, job = %job.name, "Job created");
        runner.events.about_ref(
            reaction_ref.clone(),
            EventType::Normal,
            "Triggered",
            format!(
                "Created Job {} for alert {} ({}), Run {name}",
                job.name,
                run.spec
                    .alert
                    .labels
                    .get("alertname")
                    .map_or("", String::as_str),
                run.spec.alert.fingerprint
            ),
        );
    }
    let mut delta = StatusDelta::default();
    if !was_started {
        runner.metrics.alert_reactions.inc();
        delta.triggers = 1;
        delta.jobs = newly;
    }
    if new_phase.is_finished() {
        ctx.record_outcome(&run, &next, delta);
    } else if delta.triggers > 0 {
        runner
            .status
            .add_to(reaction_key, run.spec.reaction.uid.clone(), delta);
    }
    Ok(match new_phase {
        // The finishing write wakes the Run for what follows the outcome.
        p if p.is_finished() => Action::await_change(),
        RunPhase::Verifying => Action::requeue(Duration::from_millis(100)),
        _ => Action::requeue(recheck),
    })
}

/// The Run's Jobs that exist, by name, from the watch: owned by the Run or, for
/// Jobs of earlier releases, by its reaction.
fn jobs_of(store: &Store<Job>, run: &AlertReactionRun) -> HashMap<String, Job> {
    let ns = run.namespace().unwrap_or_default();
    run.spec
        .actions
        .iter()
        .filter_map(|a| store.get(&ObjectRef::new(&a.job_name).within(&ns)))
        .filter(|j| ours(j, run))
        .map(|j| (j.name_any(), (*j).clone()))
        .collect()
}

/// A Job's state as the Run records it, with the log tail of a failed one.
async fn observe(
    ctx: &Ctx,
    ns: &str,
    action: &RunAction,
    job: &Job,
    recorded: Option<&RunJob>,
) -> RunJob {
    let state = run::job_state(job);
    let log = match (state.phase, recorded.and_then(|r| r.log.clone())) {
        (JobPhase::Failed, Some(log)) => Some(log),
        (JobPhase::Failed, None) => log_tail(&ctx.runner.client, ns, &action.job_name).await,
        _ => None,
    };
    RunJob {
        log,
        ..state.record(&action.name, &action.job_name)
    }
}

/// A Job that was created and is gone: its recorded outcome, or lost.
fn lost(action: &RunAction, recorded: Option<&RunJob>) -> RunJob {
    match recorded {
        Some(r) if r.phase.is_finished() => r.clone(),
        _ => RunJob {
            action: action.name.clone(),
            name: action.job_name.clone(),
            phase: JobPhase::Lost,
            start_time: recorded.and_then(|r| r.start_time.clone()),
            reason: Some("JobDeleted".into()),
            message: Some("the Job was deleted before its outcome was seen".into()),
            ..Default::default()
        },
    }
}

/// Records a refusal worth retrying on the Run and looks again with backoff.
async fn retrying(
    ctx: &Ctx,
    run: &AlertReactionRun,
    status: &AlertReactionRunStatus,
    error: kube::Error,
) -> Result<Action, RunError> {
    let runner = &ctx.runner;
    runner.metrics.job_create_retries.inc();
    runner.metrics.error(ErrorKind::Api);
    let attempts = status.attempts.unwrap_or(0).saturating_add(1);
    warn!(namespace = %run.namespace().unwrap_or_default(), run = %run.name_any(), attempts, error = %error, "cannot create the Run's Jobs yet; retrying");
    let mut next = status.clone();
    next.phase = Some(RunPhase::Pending);
    next.attempts = Some(attempts);
    next.reason = Some("Retrying".into());
    next.message = Some(format!(
        "attempt {attempts} to create the Jobs failed: {error}"
    ));
    let backoff =
        Duration::from_secs(1u64 << attempts.clamp(0, 6) as u32).min(Duration::from_secs(60));
    ctx.set_backoff(&run.uid().unwrap_or_default(), backoff);
    write_status(ctx, run, next).await?;
    Ok(Action::requeue(backoff))
}

/// Ends a Run recorded in dry run: `Skipped`, reason `DryRun`. The webhook has
/// logged, evented and counted it already.
async fn finish_dry_run(ctx: &Ctx, run: &AlertReactionRun) -> Result<Action, RunError> {
    let previous = run.status.clone().unwrap_or_default();
    let jobs: Vec<&str> = run
        .spec
        .actions
        .iter()
        .map(|a| a.job_name.as_str())
        .collect();
    let next = AlertReactionRunStatus {
        phase: Some(RunPhase::Skipped),
        reason: Some("DryRun".into()),
        message: Some(format!(
            "dry run: Job(s) {} rendered, none created",
            jobs.join(", ")
        )),
        completion_time: Some(Time(Timestamp::now())),
        last_seen: previous.last_seen,
        resolved_at: previous.resolved_at,
        ..Default::default()
    };
    if !write_status(ctx, run, next).await? {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    debug!(namespace = %run.namespace().unwrap_or_default(), run = %run.name_any(), "dry-run Run recorded");
    Ok(Action::await_change())
}

/// Ends a Run that may not start.
async fn finish_skipped(
    ctx: &Ctx,
    run: &AlertReactionRun,
    reason: SkipReason,
    why: String,
) -> Result<Action, RunError> {
    let runner = &ctx.runner;
    let now = Time(Timestamp::now());
    let previous = run.status.clone().unwrap_or_default();
    let next = AlertReactionRunStatus {
        phase: Some(RunPhase::Skipped),
        reason: Some(skip_reason_word(reason).into()),
        message: Some(why.clone()),
        completion_time: Some(now),
        last_seen: previous.last_seen,
        resolved_at: previous.resolved_at,
        attempts: previous.attempts,
        ..Default::default()
    };
    if !write_status(ctx, run, next).await? {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let ns = run.namespace().unwrap_or_default();
    let label = reason.label();
    runner.metrics.skipped(reason);
    runner
        .metrics
        .runs
        .with_label_values(&[RunPhase::Skipped.as_str()])
        .inc();
    info!(namespace = %ns, reaction = %run.spec.reaction.name, run = %run.name_any(), reason = label, "Run skipped: {why}");
    runner.events.about_ref(
        object_ref(
            &ns,
            &run.spec.reaction.name,
            Some(run.spec.reaction.uid.clone()),
        ),
        EventType::Normal,
        "Skipped",
        format!(
            "Skipped Run {} for alert {} ({label}): {why}",
            run.name_any(),
            run.spec.alert.fingerprint
        ),
    );
    Ok(Action::await_change())
}

fn skip_reason_word(reason: SkipReason) -> &'static str {
    match reason {
        SkipReason::Suspended => "Suspended",
        SkipReason::Cooldown => "Cooldown",
        SkipReason::Concurrency => "Concurrency",
        SkipReason::RateLimit => "RateLimit",
        SkipReason::Budget => "Budget",
    }
}
