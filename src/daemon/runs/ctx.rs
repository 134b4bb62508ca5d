//! What every step of a Run's reconcile works with: the runner's handles
//! (`Runner`), one leadership term's state (`Ctx`), and the API calls the
//! steps share: creating a Run's Job, reading a failed pod's log, writing the
//! Run's status with the resourceVersion read, and recording an outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{RoundMode, SignedDuration, Timestamp, TimestampRound, Unit};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, LogParams, PostParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::core::jobs::{self, LABEL_REACTION};
use crate::core::reaction::{object_ref, CompiledReaction};
use crate::core::render::Renderer;
use crate::core::run::{self, RunView};
use crate::core::snapshot::Snapshot;
use crate::daemon::alertmanager::{AlertmanagerClient, AlertmanagerError};
use crate::daemon::events::EventSender;
use crate::daemon::executor::retryable;
use crate::daemon::index::{Entry, ReactionIndex};
use crate::daemon::limits::RateLimiter;
use crate::daemon::metrics::{ErrorKind, Metrics, SkipReason};
use crate::daemon::runs::gatekeeper::Gatekeeper;
use crate::daemon::status::{StatusDelta, StatusHandle};
use crate::model::config::AlertmanagerConfig;
use crate::model::crd::RunReference;
use crate::model::duration;
use crate::model::run::{AlertReactionRun, AlertReactionRunStatus, RunAction, RunPhase};

/// The longest a failed container's log or message kept on the Run.
const LOG_TAIL_BYTES: usize = 2048;

/// What the runner works with.
pub struct Runner {
    pub client: Client,
    pub renderer: Arc<Renderer>,
    pub index: Arc<ReactionIndex>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub status: StatusHandle,
    pub events: EventSender,
    pub metrics: Arc<Metrics>,
    /// The global Job creation budget (`limits.maxJobsPerMinute`).
    pub rate: RateLimiter,
    /// The Alertmanager client of the configuration in force, made once per change.
    pub alertmanager: std::sync::Mutex<Option<(AlertmanagerConfig, Option<AlertmanagerClient>)>>,
}

/// One namespace's (or all namespaces') reconciler state for a leadership term.
pub struct Ctx {
    /// Run UID to when its Job creation may be tried again.
    pub(super) backoff: std::sync::Mutex<HashMap<String, std::time::Instant>>,
    /// Run UID to the resourceVersion this replica's last status write replaced:
    /// a Run the cache still shows at that version is known to be stale.
    pub(super) replaced: std::sync::Mutex<HashMap<String, String>>,
    pub(super) runner: Arc<Runner>,
    pub(super) gatekeeper: Arc<Gatekeeper>,
    pub(super) store: Store<AlertReactionRun>,
    /// Karo's Jobs, from a watch: a reconcile reads them without an API call.
    pub(super) jobs: Store<Job>,
}

/// Why a reconcile stopped early; the Run is looked at again with backoff.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
}

/// Runs remembered in [`Ctx::replaced`] at most; past it the memory is dropped
/// (which costs at most a refused write each).
const REPLACED_MAX: usize = 10_000;

impl Ctx {
    fn replaced_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        match self.replaced.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        }
    }

    /// Whether the cache shows `run` as it was before this replica's last status
    /// write: reading it would lead to a write refused with 409, so the reconcile
    /// waits for the watch to bring the written version.
    pub(super) fn is_stale(&self, run: &AlertReactionRun) -> bool {
        let uid = run.uid().unwrap_or_default();
        let mut replaced = self.replaced_map();
        match (replaced.get(&uid), &run.metadata.resource_version) {
            (Some(old), Some(rv)) if old == rv => true,
            (Some(_), _) => {
                replaced.remove(&uid);
                false
            }
            (None, _) => false,
        }
    }

    fn remember_replaced(&self, run: &AlertReactionRun) {
        let (Some(uid), Some(rv)) = (run.uid(), run.metadata.resource_version.clone()) else {
            return;
        };
        let mut replaced = self.replaced_map();
        if replaced.len() >= REPLACED_MAX {
            replaced.clear();
        }
        replaced.insert(uid, rv);
    }

    fn backoff_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, std::time::Instant>> {
        match self.backoff.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        }
    }

    /// How long the Run `uid` still waits before its next attempt, if at all.
    pub(super) fn backoff_left(&self, uid: &str) -> Option<Duration> {
        let mut backoff = self.backoff_map();
        let until = *backoff.get(uid)?;
        let now = std::time::Instant::now();
        if until > now {
            Some(until - now)
        } else {
            backoff.remove(uid);
            None
        }
    }

    pub(super) fn set_backoff(&self, uid: &str, wait: Duration) {
        self.backoff_map()
            .insert(uid.to_string(), std::time::Instant::now() + wait);
    }
}

/// What creating one Job gave.
pub(super) enum Created {
    Job(Box<Job>),
    /// Refused for good: reason and message.
    Refused(&'static str, String),
    /// Refused for a passing reason.
    Retry(kube::Error),
}

/// Ends `status` in `phase` now: completion time, duration, reason, message.
pub(super) fn finish_at(
    status: &mut AlertReactionRunStatus,
    phase: RunPhase,
    reason: &str,
    message: String,
) {
    let now = Timestamp::now();
    status.phase = Some(phase);
    status.completion_time = Some(Time(now));
    if let Some(start) = &status.start_time {
        let took = now.duration_since(start.0).unsigned_abs();
        status.duration = Some(duration::format(Duration::from_secs(took.as_secs())));
    }
    status.reason = Some(reason.to_string());
    status.message = (!message.is_empty()).then_some(message);
}

impl Runner {
    /// Takes one unit of `limits.maxJobsPerMinute` per Job, or says why not.
    pub(super) fn take_budget(&self, jobs: usize) -> Option<(SkipReason, String)> {
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

/// Owned by this Run, or by its reaction (a Job of an earlier release).
pub(super) fn ours(job: &Job, run: &AlertReactionRun) -> bool {
    let run_uid = run.uid().unwrap_or_default();
    job.owner_references()
        .iter()
        .any(|o| o.uid == run_uid || o.uid == run.spec.reaction.uid)
}

pub(super) async fn create_job(
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

/// The end of the newest pod's failed container: its termination message, else
/// the last lines of its log.
pub(super) async fn log_tail(client: &Client, ns: &str, job: &str) -> Option<String> {
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
pub(super) async fn write_status(
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
        Ok(_) => {
            ctx.remember_replaced(run);
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

impl Ctx {
    /// Metrics, the Event and the reaction's counters (with `delta`) of a Run
    /// that just finished.
    pub(super) fn record_outcome(
        &self,
        run: &AlertReactionRun,
        status: &AlertReactionRunStatus,
        mut delta: StatusDelta,
    ) {
        let runner = &self.runner;
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
        self.gatekeeper.record(
            &run.spec.reaction.uid,
            &ns,
            RunView {
                name: name.clone(),
                fingerprint: run.spec.alert.fingerprint.clone(),
                budget_key: self.budget_key(run),
                phase,
                started: status.start_time.as_ref().map(|t| t.0),
            },
        );
        let took = status.duration.as_deref().unwrap_or("?");
        let (event_type, note) = if phase.is_success() {
            delta.succeeded += 1;
            let how = match phase {
                RunPhase::Remediated => "remediated the alert",
                _ => "succeeded",
            };
            (EventType::Normal, format!("Run {name} {how} in {took}"))
        } else if phase.is_failure() {
            delta.failed += 1;
            let mut note = format!(
                "Run {name} {}: {}",
                match phase {
                    RunPhase::Ineffective => "was ineffective",
                    _ => "failed",
                },
                status.message.as_deref().unwrap_or("a Job failed")
            );
            if let Some(log) = status.jobs.iter().find_map(|j| j.log.as_deref()) {
                note.push_str(&format!("; log: {}", run::tail(log, 400)));
            }
            (EventType::Warning, note)
        } else {
            (
                EventType::Normal,
                format!(
                    "Run {name} {}: {}",
                    phase.as_str().to_lowercase(),
                    status.message.as_deref().unwrap_or_default()
                ),
            )
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
        if phase.is_failure() {
            self.check_failure_budget(run, status, &mut delta);
        }
        delta.last_run = Some(RunReference {
            name,
            phase: phase.as_str().into(),
            completion_time: status
                .completion_time
                .clone()
                .unwrap_or_else(|| Time(Timestamp::now())),
        });
        runner.status.add_to(
            (ns, run.spec.reaction.name.clone()),
            run.spec.reaction.uid.clone(),
            delta,
        );
    }
}

impl Ctx {
    /// After a failed Run: stops the reaction (through its status) when
    /// `budget.suspendAfterFailures` Runs in a row have failed.
    fn check_failure_budget(
        &self,
        run: &AlertReactionRun,
        status: &AlertReactionRunStatus,
        delta: &mut StatusDelta,
    ) {
        let ns = run.namespace().unwrap_or_default();
        let key = (ns.clone(), run.spec.reaction.name.clone());
        let Some(Entry::Ready(reaction)) = self.runner.index.get(&key) else {
            return;
        };
        if reaction.uid != run.spec.reaction.uid {
            return;
        }
        let Some(limit) = reaction
            .spec
            .budget
            .as_ref()
            .and_then(|b| b.suspend_after_failures)
        else {
            return;
        };
        let name = run.name_any();
        let now = Timestamp::now();
        let this = (
            status.completion_time.as_ref().map_or(now, |t| t.0),
            status.phase.unwrap_or_default(),
        );
        let stored = self.store.state();
        let failures = failures_with(stored.iter().map(|r| &**r), &reaction, &name, this);
        if failures >= limit as usize {
            delta.exhausted_at = Some(Time(second_after(now)));
            exhausted(&self.runner, &reaction, failures, limit, &name);
            return;
        }
        // The watch store may not hold yet the outcome of another Run this
        // leader has just ended (two Jobs failing at once: each Run's check would
        // see one failure). Both outcomes are in the API server before their
        // checks, so asking it there, the later of two such checks sees both;
        // worth asking only when enough Runs are unfinished in the store.
        let unfinished = stored
            .iter()
            .filter(|r| {
                r.spec.reaction.uid == reaction.uid
                    && r.namespace().as_deref() == Some(ns.as_str())
                    && r.name_any() != name
                    && !r
                        .status
                        .as_ref()
                        .and_then(|s| s.phase)
                        .is_some_and(|p| p.is_finished())
            })
            .count();
        if failures + unfinished < limit as usize {
            return;
        }
        let runner = self.runner.clone();
        tokio::spawn(async move {
            let api: Api<AlertReactionRun> = Api::namespaced(runner.client.clone(), &ns);
            let selector = format!(
                "{LABEL_REACTION}={}",
                jobs::sanitize_label_value(&reaction.name)
            );
            let listed = match api.list(&ListParams::default().labels(&selector)).await {
                Ok(list) => list.items,
                Err(e) => {
                    runner.metrics.error(ErrorKind::Api);
                    warn!(namespace = %ns, reaction = %reaction.name, error = %e, "cannot list the reaction's Runs to count its failures in a row");
                    return;
                }
            };
            let failures = failures_with(listed.iter(), &reaction, &name, this);
            if failures >= limit as usize {
                runner.status.add_to(
                    (ns, reaction.name.clone()),
                    reaction.uid.clone(),
                    StatusDelta {
                        exhausted_at: Some(Time(second_after(Timestamp::now()))),
                        ..Default::default()
                    },
                );
                exhausted(&runner, &reaction, failures, limit, &name);
            }
        });
    }

    /// The Run's budget key under its reaction's `budget.key` as it is now.
    pub(super) fn budget_key(&self, run: &AlertReactionRun) -> String {
        let key = (
            run.namespace().unwrap_or_default(),
            run.spec.reaction.name.clone(),
        );
        match self.runner.index.get(&key) {
            Some(Entry::Ready(r)) => run::budget_key(
                &run.spec.alert.labels,
                r.spec
                    .budget
                    .as_ref()
                    .map(|b| b.key.as_slice())
                    .unwrap_or_default(),
            ),
            _ => String::new(),
        }
    }
}

/// How many Runs of `reaction` failed in a row, from `runs` (the store's or the
/// API server's) with the Run `name` as it just ended (`this`: its completion
/// time and phase).
fn failures_with<'a>(
    runs: impl Iterator<Item = &'a AlertReactionRun>,
    reaction: &CompiledReaction,
    name: &str,
    this: (Timestamp, RunPhase),
) -> usize {
    let mut finished: Vec<(Timestamp, RunPhase)> = runs
        .filter(|r| {
            r.spec.reaction.uid == reaction.uid
                && r.namespace().as_deref() == Some(reaction.namespace.as_str())
                && r.name_any() != name
        })
        .filter_map(|r| {
            let s = r.status.as_ref()?;
            let phase = s.phase.filter(|p| p.is_finished())?;
            Some((s.completion_time.as_ref()?.0, phase))
        })
        .collect();
    finished.push(this);
    // Completion times are kept in whole seconds: a Run that ended in the second
    // of the resume, after it, counts (as may one that ended just before it).
    let since = reaction.resumed_at.map(|at| {
        let second = at
            .round(
                TimestampRound::new()
                    .smallest(Unit::Second)
                    .mode(RoundMode::Trunc),
            )
            .unwrap_or(at);
        second
            .checked_sub(SignedDuration::from_nanos(1))
            .unwrap_or(second)
    });
    run::failures_in_a_row(&finished, since)
}

/// The time to record as `failureBudgetExhaustedAt`: `now` rounded up to a whole
/// second. The status keeps whole seconds and a resume counts when it is not
/// earlier (`karo.io/resumed-at` has nanoseconds): rounded down, a budget
/// exhausted again in the second of a resume would not stop the reaction.
fn second_after(now: Timestamp) -> Timestamp {
    now.round(
        TimestampRound::new()
            .smallest(Unit::Second)
            .mode(RoundMode::Ceil),
    )
    .unwrap_or(now)
}

/// Logs and publishes that the reaction's failure budget is exhausted.
fn exhausted(
    runner: &Runner,
    reaction: &CompiledReaction,
    failures: usize,
    limit: u32,
    last: &str,
) {
    let ns = &reaction.namespace;
    info!(namespace = %ns, reaction = %reaction.name, failures, "failure budget exhausted: the reaction stops until resumed");
    runner.events.about_ref(
        reaction.object_ref(),
        EventType::Warning,
        "FailureBudgetExhausted",
        format!(
            "{failures} Runs in a row failed (budget.suspendAfterFailures: {limit}), the last {last}; the reaction is stopped until resumed: karo resume -n {ns} {}",
            reaction.name
        ),
    );
}

impl Runner {
    /// The Alertmanager client of the configuration in force (`None` without
    /// `alertmanager.url`), made again when the configuration changes.
    pub fn alertmanager(&self) -> Result<Option<AlertmanagerClient>, AlertmanagerError> {
        let config = self.snapshots.borrow().config.alertmanager.clone();
        let mut cache = match self.alertmanager.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some((made_for, client)) = cache.as_ref() {
            if *made_for == config {
                return Ok(client.clone());
            }
        }
        let client = AlertmanagerClient::new(&config)?;
        *cache = Some((config, client.clone()));
        Ok(client)
    }
}
