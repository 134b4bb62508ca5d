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
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, LogParams, PostParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, reflector, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::{Controller, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::core::jobs::LABEL_MANAGED_BY;
use crate::core::reaction::object_ref;
use crate::core::run::{self, RunView, Verdict};
use crate::core::snapshot::Snapshot;
use crate::daemon::events::EventSender;
use crate::daemon::executor::retryable;
use crate::daemon::index::{Entry, ReactionIndex};
use crate::daemon::limits::RateLimiter;
use crate::daemon::metrics::{ErrorKind, Metrics, SkipReason};
use crate::daemon::runs::gatekeeper::Gatekeeper;
use crate::daemon::runs::retention;
use crate::daemon::status::{StatusDelta, StatusHandle};
use crate::model::crd::{JobReference, RunReference};
use crate::model::duration;
use crate::model::run::{
    AlertReactionRun, AlertReactionRunStatus, JobPhase, RunAction, RunJob, RunPhase,
};

/// The longest a failed container's log or message kept on the Run.
const LOG_TAIL_BYTES: usize = 2048;
/// Runs reconciled at once.
const CONCURRENCY: u16 = 16;
/// A running Run is looked at again at least this often (Jobs adopted from an
/// earlier release are not owned by it, so their changes do not wake it).
const RECHECK: Duration = Duration::from_secs(30);

/// What the runner works with.
pub struct Runner {
    pub client: Client,
    pub index: Arc<ReactionIndex>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub status: StatusHandle,
    pub events: EventSender,
    pub metrics: Arc<Metrics>,
    /// The global Job creation budget (`limits.maxJobsPerMinute`).
    pub rate: RateLimiter,
}

/// One namespace's (or all namespaces') reconciler state for a leadership term.
struct Ctx {
    /// Run UID to when its Job creation may be tried again.
    backoff: std::sync::Mutex<HashMap<String, std::time::Instant>>,
    runner: Arc<Runner>,
    gatekeeper: Arc<Gatekeeper>,
    store: Store<AlertReactionRun>,
    /// Karo's Jobs, from a watch: a reconcile reads them without an API call.
    jobs: Store<Job>,
}

/// Why a reconcile stopped early; the Run is looked at again with backoff.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
}

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
            tasks.push(tokio::spawn(
                reflector(job_writer, watcher(jobs.clone(), managed.clone()))
                    .default_backoff()
                    .touched_objects()
                    .for_each(|_| futures::future::ready(())),
            ));
            let controller = Controller::new(runs, watcher::Config::default())
                .owns(jobs, managed)
                .with_config(controller::Config::default().concurrency(CONCURRENCY));
            let ctx = Arc::new(Ctx {
                backoff: Default::default(),
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

impl Ctx {
    fn backoff(&self) -> std::sync::MutexGuard<'_, HashMap<String, std::time::Instant>> {
        match self.backoff.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        }
    }

    /// How long the Run `uid` still waits before its next attempt, if at all.
    fn backoff_left(&self, uid: &str) -> Option<Duration> {
        let mut backoff = self.backoff();
        let until = *backoff.get(uid)?;
        let now = std::time::Instant::now();
        if until > now {
            Some(until - now)
        } else {
            backoff.remove(uid);
            None
        }
    }

    fn set_backoff(&self, uid: &str, wait: Duration) {
        self.backoff()
            .insert(uid.to_string(), std::time::Instant::now() + wait);
    }
}

fn error_policy(run: Arc<AlertReactionRun>, error: &RunError, ctx: Arc<Ctx>) -> Action {
    ctx.runner.metrics.error(ErrorKind::Api);
    warn!(namespace = %run.namespace().unwrap_or_default(), run = %run.name_any(), error = %error, "cannot reconcile Run; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// What creating one Job gave.
enum Created {
    Job(Box<Job>),
    /// Refused for good: reason and message.
    Refused(&'static str, String),
    /// Refused for a passing reason.
    Retry(kube::Error),
}

async fn reconcile(run: Arc<AlertReactionRun>, ctx: Arc<Ctx>) -> Result<Action, RunError> {
    let status = run.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    if run.metadata.deletion_timestamp.is_some() || phase.is_finished() {
        return Ok(Action::await_change());
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
    if !was_started && found.is_empty() && !retrying_since {
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
            }
        };
        if let Some((reason, why)) = skip {
            return finish_skipped(&ctx, &run, reason, why).await;
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
    let new_phase = run::phase_of(&phases);
    let start = status.start_time.clone().unwrap_or(Time(now));
    let mut next = AlertReactionRunStatus {
        phase: Some(new_phase),
        start_time: Some(start.clone()),
        jobs,
        attempts: status.attempts,
        last_seen: status.last_seen.clone(),
        resolved_at: status.resolved_at.clone(),
        ..Default::default()
    };
    if new_phase.is_finished() {
        next.completion_time = Some(Time(now));
        let took = now.duration_since(start.0).unsigned_abs();
        next.duration = Some(duration::format(Duration::from_secs(took.as_secs())));
        if let Some(failed) = next.jobs.iter().find(|j| j.phase != JobPhase::Succeeded) {
            next.reason = Some(failed.reason.clone().unwrap_or_else(|| "JobFailed".into()));
            next.message = Some(format!(
                "Job {} ({}) failed{}",
                failed.name,
                failed.action,
                failed
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ));
        } else {
            next.reason = Some("JobsSucceeded".into());
        }
    }
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
    if run.status.as_ref() == Some(&next) {
        return Ok(Action::requeue(RECHECK));
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
        record_outcome(&ctx, &run, &next, &mut delta);
    }
    if delta.triggers > 0 || new_phase.is_finished() {
        runner
            .status
            .add_to(reaction_key, run.spec.reaction.uid.clone(), delta);
    }
    Ok(if new_phase.is_finished() {
        Action::await_change()
    } else {
        Action::requeue(RECHECK)
    })
}

impl Runner {
    /// Takes one unit of `limits.maxJobsPerMinute` per Job, or says why not.
    fn take_budget(&self, jobs: usize) -> Option<(SkipReason, String)> {
        let limit = self.snapshots.borrow().config.limits.max_jobs_per_minute;
        let now = std::time::Instant::now();
        for taken in 0..jobs {
            if !self.rate.try_acquire(limit, now) {
                for _ in 0..taken {
                    self.rate.release(now);
                }
                return Some((
                    SkipReason::RateLimit,
                    format!("limits.maxJobsPerMinute ({limit}) reached"),
                ));
            }
        }
        None
    }
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

/// Owned by this Run, or by its reaction (a Job of an earlier release).
fn ours(job: &Job, run: &AlertReactionRun) -> bool {
    let run_uid = run.uid().unwrap_or_default();
    job.owner_references()
        .iter()
        .any(|o| o.uid == run_uid || o.uid == run.spec.reaction.uid)
}

async fn create_job(
    api: &Api<Job>,
    run: &AlertReactionRun,
    uid: &str,
    action: &RunAction,
) -> Created {
    let job = match run::job_to_create(action, uid) {
        Ok(job) => job,
        Err(e) => {
            return Created::Refused("InvalidJob", format!("the stored Job is not valid: {e}"))
        }
    };
    let pp = PostParams {
        field_manager: Some("karo".into()),
        ..Default::default()
    };
    match api.create(&pp, &job).await {
        Ok(job) => Created::Job(Box::new(job)),
        Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
            match api.get(&action.job_name).await {
                Ok(existing) if ours(&existing, run) => Created::Job(Box::new(existing)),
                Ok(existing) => Created::Refused(
                    "JobConflict",
                    format!(
                        "a Job named {} exists and belongs to {}",
                        action.job_name,
                        existing
                            .owner_references()
                            .first()
                            .map(|o| format!("{} {}", o.kind, o.name))
                            .unwrap_or_else(|| "no Karo Run".into())
                    ),
                ),
                Err(e) => Created::Retry(e),
            }
        }
        Err(e) if retryable(&e) => Created::Retry(e),
        Err(e) => Created::Refused("JobRejected", e.to_string()),
    }
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
        action: action.name.clone(),
        name: action.job_name.clone(),
        phase: state.phase,
        start_time: state.start,
        completion_time: state.completion,
        reason: state.reason,
        message: state.message,
        log,
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

/// The end of the newest pod's failed container: its termination message, else
/// the last lines of its log.
async fn log_tail(client: &Client, ns: &str, job: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .ok()?;
    let pod = list
        .items
        .into_iter()
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    let statuses = pod
        .status
        .as_ref()?
        .container_statuses
        .clone()
        .unwrap_or_default();
    let failed = statuses
        .iter()
        .find(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code != 0)
        })
        .or_else(|| statuses.first())?;
    let message = failed
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.message.clone())
        .filter(|m| !m.trim().is_empty());
    if let Some(m) = message {
        return Some(run::tail(&m, LOG_TAIL_BYTES));
    }
    let params = LogParams {
        container: Some(failed.name.clone()),
        tail_lines: Some(40),
        limit_bytes: Some(16 * 1024),
        ..Default::default()
    };
    let log = pods.logs(&pod.name_any(), &params).await.ok()?;
    let log = run::tail(&log, LOG_TAIL_BYTES);
    (!log.is_empty()).then_some(log)
}

/// Writes the Run's status with the resourceVersion read: `false` when another
/// writer changed the Run meanwhile (read again and decide again).
async fn write_status(
    ctx: &Ctx,
    run: &AlertReactionRun,
    status: AlertReactionRunStatus,
) -> Result<bool, kube::Error> {
    let api: Api<AlertReactionRun> = Api::namespaced(
        ctx.runner.client.clone(),
        &run.namespace().unwrap_or_default(),
    );
    let mut next = run.clone();
    next.status = Some(status);
    match api
        .replace_status(&run.name_any(), &PostParams::default(), &next)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
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
    }
}

/// Metrics, the Event and the reaction's counters of a Run that just finished.
fn record_outcome(
    ctx: &Ctx,
    run: &AlertReactionRun,
    status: &AlertReactionRunStatus,
    delta: &mut StatusDelta,
) {
    let runner = &ctx.runner;
    let phase = status.phase.unwrap_or_default();
    let ns = run.namespace().unwrap_or_default();
    let name = run.name_any();
    runner
        .metrics
        .runs
        .with_label_values(&[phase.as_str()])
        .inc();
    if let (Some(start), Some(end)) = (&status.start_time, &status.completion_time) {
        let secs = end.0.duration_since(start.0).as_secs_f64().max(0.0);
        runner.metrics.run_duration.observe(secs);
    }
    ctx.gatekeeper.record(
        &run.spec.reaction.uid,
        &ns,
        RunView {
            name: name.clone(),
            fingerprint: run.spec.alert.fingerprint.clone(),
            phase,
            started: status.start_time.as_ref().map(|t| t.0),
        },
    );
    let (event_type, note) = if phase == RunPhase::Succeeded {
        delta.succeeded += 1;
        (
            EventType::Normal,
            format!(
                "Run {name} succeeded in {}",
                status.duration.as_deref().unwrap_or("?")
            ),
        )
    } else {
        delta.failed += 1;
        let mut note = format!(
            "Run {name} failed: {}",
            status.message.as_deref().unwrap_or("a Job failed")
        );
        if let Some(log) = status.jobs.iter().find_map(|j| j.log.as_deref()) {
            note.push_str(&format!("; log: {}", run::tail(log, 400)));
        }
        (EventType::Warning, note)
    };
    info!(namespace = %ns, reaction = %run.spec.reaction.name, run = %name, phase = phase.as_str(), "Run finished");
    runner.events.about_ref(
        object_ref(
            &ns,
            &run.spec.reaction.name,
            Some(run.spec.reaction.uid.clone()),
        ),
        event_type,
        phase.as_str(),
        note,
    );
    delta.last_run = Some(RunReference {
        name,
        phase: phase.as_str().into(),
        completion_time: status
            .completion_time
            .clone()
            .unwrap_or_else(|| Time(Timestamp::now())),
    });
}
