//! The one owner of the AlertReaction status. The controller hands it the
//! `Ready` condition of each generation, the executor and the runner the
//! counters (`triggerCount`, `lastTriggered`, `lastJobsCreated`, `lastRun`,
//! `succeededRuns`, `failedRuns`); one task writes both.
//!
//! Updates for the same reaction that arrive while a write is in flight are
//! merged into the next one, so a burst of notifications costs a few status
//! writes, not one per notification. The condition is a merge patch of the two
//! fields the controller decides; the counters are a read and a replace with
//! optimistic concurrency, so no increment of another writer (another replica)
//! is lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::core::reaction::{object_ref, CompiledReaction};
use crate::daemon::events::EventSender;
use crate::daemon::index::ObjectKey;
use crate::daemon::metrics::{ErrorKind, Metrics};
use crate::model::crd::{AlertReaction, JobReference, RunReference};

/// Status writes in flight at once.
const WRITERS: usize = 8;

/// What one or more notifications add to a reaction's counters.
#[derive(Debug, Default, Clone)]
pub struct StatusDelta {
    pub triggers: i64,
    /// The Jobs of the latest trigger (replaces `lastJobsCreated` when not empty).
    pub jobs: Vec<JobReference>,
    /// Runs that ended `Succeeded`.
    pub succeeded: i64,
    /// Runs that ended `Failed`.
    pub failed: i64,
    /// The Run that finished last.
    pub last_run: Option<RunReference>,
    /// `budget.suspendAfterFailures` was reached at this time.
    pub exhausted_at: Option<Time>,
}

impl StatusDelta {
    fn merge(&mut self, later: StatusDelta) {
        self.triggers += later.triggers;
        self.succeeded += later.succeeded;
        self.failed += later.failed;
        if !later.jobs.is_empty() {
            self.jobs = later.jobs;
        }
        if later.last_run.is_some() {
            self.last_run = later.last_run;
        }
        if later.exhausted_at.is_some() {
            self.exhausted_at = later.exhausted_at;
        }
    }
}

/// `lastJobsCreated` holds at most this many Jobs.
const LAST_JOBS: usize = 10;

/// The `Ready` condition of one generation, to write.
#[derive(Debug, Clone)]
pub struct ReadyUpdate {
    pub uid: Option<String>,
    pub generation: i64,
    pub condition: Condition,
}

/// Counters to add, for the reaction with this UID.
#[derive(Debug, Clone)]
struct Counts {
    uid: String,
    delta: StatusDelta,
}

#[derive(Debug, Default)]
struct Pending {
    ready: Option<ReadyUpdate>,
    counts: Option<Counts>,
}

impl Pending {
    /// Adds `later` on top of what is queued; a recreated reaction (another
    /// UID) starts afresh.
    fn add_counts(&mut self, later: Counts) {
        match &mut self.counts {
            Some(c) if c.uid == later.uid => c.delta.merge(later.delta),
            _ => self.counts = Some(later),
        }
    }

    /// Puts `earlier` (a write that failed) under what was queued since.
    fn requeue_counts(&mut self, earlier: Counts) {
        self.counts = match self.counts.take() {
            Some(later) if later.uid != earlier.uid => Some(later),
            Some(later) => {
                let mut c = earlier;
                c.delta.merge(later.delta);
                Some(c)
            }
            None => Some(earlier),
        };
    }
}

#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<ObjectKey, Pending>>,
    wake: Notify,
    /// The last `Ready` verdict this replica wrote on each reaction, and how often.
    ready_writes: Mutex<HashMap<ObjectKey, ReadyWrites>>,
}

/// A replica writes the same `Ready` verdict on the same generation of a
/// reaction at most this many times: more means another writer keeps
/// overwriting it.
const SAME_READY_WRITES: u32 = 3;

/// The verdict last written on one reaction and how many times.
struct ReadyWrites {
    uid: Option<String>,
    generation: i64,
    condition: Condition,
    count: u32,
}

/// Whether to write a `Ready` verdict that the object does not show.
#[derive(Debug, PartialEq, Eq)]
enum ReadyWrite {
    Write,
    /// The bound is reached now: report the disagreement once.
    StopNow,
    /// Reached before.
    Stop,
}

impl Shared {
    fn update(&self, key: ObjectKey, f: impl FnOnce(&mut Pending)) {
        let mut pending = match self.pending.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        };
        f(pending.entry(key).or_default());
        drop(pending);
        self.wake.notify_one();
    }

    /// Counts a write of `ready` on `key`: the same verdict on the same
    /// generation again, or a new one (which starts the count afresh).
    fn count_ready_write(&self, key: &ObjectKey, ready: &ReadyUpdate) -> ReadyWrite {
        let mut writes = match self.ready_writes.lock() {
            Ok(w) => w,
            Err(w) => w.into_inner(),
        };
        match writes.get_mut(key) {
            Some(w)
                if w.uid == ready.uid
                    && w.generation == ready.generation
                    && same_verdict(&w.condition, &ready.condition) =>
            {
                w.count = w.count.saturating_add(1);
                match w.count {
                    n if n <= SAME_READY_WRITES => ReadyWrite::Write,
                    n if n == SAME_READY_WRITES + 1 => ReadyWrite::StopNow,
                    _ => ReadyWrite::Stop,
                }
            }
            _ => {
                writes.insert(
                    key.clone(),
                    ReadyWrites {
                        uid: ready.uid.clone(),
                        generation: ready.generation,
                        condition: ready.condition.clone(),
                        count: 1,
                    },
                );
                ReadyWrite::Write
            }
        }
    }

    fn forget_ready(&self, key: &ObjectKey) {
        let mut writes = match self.ready_writes.lock() {
            Ok(w) => w,
            Err(w) => w.into_inner(),
        };
        writes.remove(key);
    }

    fn take(&self) -> Vec<(ObjectKey, Pending)> {
        let mut pending = match self.pending.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        };
        pending.drain().collect()
    }
}

/// Queues status updates for the owner; cheap to clone.
#[derive(Clone, Default)]
pub struct StatusHandle {
    shared: Arc<Shared>,
}

impl StatusHandle {
    /// The `Ready` condition to write (replaces one not yet written).
    pub fn set_ready(&self, key: ObjectKey, update: ReadyUpdate) {
        self.shared.update(key, |p| p.ready = Some(update));
    }

    /// Counters to add to the reaction's status.
    pub fn add(&self, reaction: &CompiledReaction, delta: StatusDelta) {
        self.add_to(
            (reaction.namespace.clone(), reaction.name.clone()),
            reaction.uid.clone(),
            delta,
        );
    }

    /// Counters to add to the status of the reaction `key` with this UID.
    pub fn add_to(&self, key: ObjectKey, uid: String, delta: StatusDelta) {
        self.shared
            .update(key, |p| p.add_counts(Counts { uid, delta }));
    }
}

/// The task that writes what the handles queue.
#[derive(Clone)]
pub struct StatusOwner {
    client: Client,
    metrics: Arc<Metrics>,
    events: EventSender,
    handle: StatusHandle,
}

impl StatusOwner {
    pub fn new(client: Client, metrics: Arc<Metrics>, events: EventSender) -> Self {
        StatusOwner {
            client,
            metrics,
            events,
            handle: StatusHandle::default(),
        }
    }

    pub fn handle(&self) -> StatusHandle {
        self.handle.clone()
    }

    /// Writes queued updates until the process ends.
    pub async fn run(self) {
        loop {
            self.handle.shared.wake.notified().await;
            self.flush().await;
        }
    }

    /// Writes everything queued now. Writes that fail for a reason worth
    /// retrying (the API server is away) are queued again, so no count and no
    /// condition is lost.
    pub async fn flush(&self) {
        let batch = self.handle.shared.take();
        if batch.is_empty() {
            return;
        }
        let failed: Vec<(ObjectKey, Pending)> = futures::stream::iter(batch)
            .map(|(key, pending)| async move {
                let mut again = Pending::default();
                if let Some(ready) = pending.ready {
                    if let Err(e) = self.write_ready(&key, &ready).await {
                        self.metrics.error(ErrorKind::StatusUpdate);
                        warn!(namespace = %key.0, reaction = %key.1, error = %e, "cannot write the Ready condition");
                        again.ready = (!gone(&e)).then_some(ready);
                    }
                }
                if let Some(counts) = pending.counts {
                    if let Err(e) = self.add_counts(&key, &counts).await {
                        self.metrics.error(ErrorKind::StatusUpdate);
                        warn!(namespace = %key.0, reaction = %key.1, error = %e, "cannot update AlertReaction status");
                        again.counts = (!gone(&e)).then_some(counts);
                    }
                }
                (again.ready.is_some() || again.counts.is_some()).then_some((key, again))
            })
            .buffer_unordered(WRITERS)
            .filter_map(|f| async move { f })
            .collect()
            .await;
        if !failed.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for (key, again) in failed {
                self.handle.shared.update(key, |p| {
                    // A condition queued since is newer than the one that failed.
                    if p.ready.is_none() {
                        p.ready = again.ready;
                    }
                    if let Some(counts) = again.counts {
                        p.requeue_counts(counts);
                    }
                });
            }
        }
    }

    /// Merge-patches `observedGeneration` and the `Ready` condition, and
    /// publishes a Warning Event when the reaction is not Ready.
    ///
    /// The object is read first, and the patch carries the resourceVersion read:
    /// a verdict about a reaction that was deleted, recreated (another UID) or
    /// changed since (a newer generation) is dropped, since the watch brings the
    /// newer object, which is judged on its own. So a reload that judges the cached
    /// reactions again cannot bring back a deleted reaction's status nor put an
    /// older generation's verdict over a newer one.
    ///
    /// The same verdict on the same generation is written at most
    /// [`SAME_READY_WRITES`] times: when another writer (a replica under another
    /// configuration or version, as in a rolling change) keeps overwriting it, the
    /// two stop after a few rounds instead of fighting without end, and the
    /// disagreement is logged and counted.
    async fn write_ready(
        &self,
        key @ (namespace, name): &ObjectKey,
        ready: &ReadyUpdate,
    ) -> Result<(), kube::Error> {
        let api: Api<AlertReaction> = Api::namespaced(self.client.clone(), namespace);
        let current = match api.get_status(name).await {
            Ok(current) => current,
            Err(e) if gone(&e) => {
                self.handle.shared.forget_ready(key);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let generation = current.metadata.generation.unwrap_or_default();
        if ready.uid.is_some() && current.metadata.uid != ready.uid {
            debug!(namespace = %namespace, name = %name, "reaction recreated since it was judged; its own verdict follows");
            return Ok(());
        }
        if generation > ready.generation {
            debug!(namespace = %namespace, name = %name, judged = ready.generation, generation, "a newer generation exists; its own verdict follows");
            return Ok(());
        }
        let status = current.status.as_ref();
        let shown = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        let observed = status.and_then(|s| s.observed_generation);
        if observed == Some(ready.generation)
            && shown.is_some_and(|c| same_verdict(c, &ready.condition))
        {
            return Ok(());
        }
        match self.handle.shared.count_ready_write(key, ready) {
            ReadyWrite::Write => {}
            ReadyWrite::Stop => return Ok(()),
            ReadyWrite::StopNow => {
                self.metrics.error(ErrorKind::StatusDisagreement);
                let theirs = shown.map_or_else(
                    || "no Ready condition".to_string(),
                    |c| format!("Ready={} ({})", c.status, c.reason),
                );
                warn!(
                    namespace = %namespace,
                    name = %name,
                    generation = ready.generation,
                    ours = %format!("Ready={} ({})", ready.condition.status, ready.condition.reason),
                    theirs = %theirs,
                    "another writer keeps overwriting this reaction's Ready condition; this replica stops writing it. Do all replicas run the same configuration and version?"
                );
                return Ok(());
            }
        }
        // A merge patch of these two fields leaves the counters untouched; the
        // resourceVersion makes it apply only to the object just read.
        let patch = json!({
            "metadata": { "resourceVersion": current.metadata.resource_version },
            "status": {
                "observedGeneration": ready.generation,
                "conditions": [ready.condition],
            }
        });
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let condition = &ready.condition;
        if condition.status == "False" {
            let event = Event {
                type_: EventType::Warning,
                reason: condition.reason.clone(),
                note: Some(condition.message.chars().take(1024).collect()),
                action: "Validate".into(),
                secondary: None,
            };
            self.events
                .publish(event, object_ref(namespace, name, ready.uid.clone()));
        }
        Ok(())
    }

    /// Adds counters to the reaction's status: read, add, replace with the
    /// resourceVersion read; a conflicting writer makes it read again.
    async fn add_counts(
        &self,
        (namespace, name): &ObjectKey,
        counts: &Counts,
    ) -> Result<(), kube::Error> {
        let api: Api<AlertReaction> = Api::namespaced(self.client.clone(), namespace);
        let delta = &counts.delta;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut current = api.get_status(name).await?;
            if current.metadata.uid.as_deref() != Some(counts.uid.as_str()) {
                return Ok(()); // deleted and recreated meanwhile
            }
            let status = current.status.get_or_insert_with(Default::default);
            if delta.triggers > 0 {
                status.trigger_count = Some(status.trigger_count.unwrap_or(0) + delta.triggers);
                status.last_triggered = Some(Time(jiff::Timestamp::now()));
            }
            if !delta.jobs.is_empty() {
                status.last_jobs_created = delta.jobs.iter().take(LAST_JOBS).cloned().collect();
            }
            if delta.succeeded > 0 {
                status.succeeded_runs = Some(status.succeeded_runs.unwrap_or(0) + delta.succeeded);
            }
            if delta.failed > 0 {
                status.failed_runs = Some(status.failed_runs.unwrap_or(0) + delta.failed);
            }
            if let Some(run) = &delta.last_run {
                status.last_run = Some(run.clone());
            }
            if let Some(at) = &delta.exhausted_at {
                status.failure_budget_exhausted_at = Some(at.clone());
            }
            match api
                .replace_status(name, &PostParams::default(), &current)
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 && attempt < 20 => {
                    tokio::time::sleep(Duration::from_millis(5 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The object is gone: nothing to write any more.
fn gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Two `Ready` conditions say the same (the transition time aside).
fn same_verdict(a: &Condition, b: &Condition) -> bool {
    (&a.status, &a.reason, &a.message) == (&b.status, &b.reason, &b.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: &str) -> JobReference {
        JobReference {
            name: n.into(),
            namespace: "ns".into(),
            action_name: "a".into(),
            created_at: Time(jiff::Timestamp::UNIX_EPOCH),
        }
    }

    fn ready(uid: &str, generation: i64, status: &str) -> ReadyUpdate {
        ReadyUpdate {
            uid: Some(uid.into()),
            generation,
            condition: Condition {
                type_: "Ready".into(),
                status: status.into(),
                reason: "R".into(),
                message: String::new(),
                observed_generation: Some(generation),
                last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            },
        }
    }

    #[test]
    fn the_same_verdict_is_written_a_bounded_number_of_times_a_new_one_starts_afresh() {
        let shared = Shared::default();
        let key = ("ns".to_string(), "r".to_string());
        let verdicts: Vec<ReadyWrite> = (0..6)
            .map(|_| shared.count_ready_write(&key, &ready("u", 1, "True")))
            .collect();
        assert_eq!(
            verdicts,
            [
                ReadyWrite::Write,
                ReadyWrite::Write,
                ReadyWrite::Write,
                ReadyWrite::StopNow,
                ReadyWrite::Stop,
                ReadyWrite::Stop
            ]
        );
        // Another verdict (a reload), generation or reaction: written again.
        for other in [
            ready("u", 1, "False"),
            ready("u", 2, "False"),
            ready("v", 2, "False"),
        ] {
            assert_eq!(shared.count_ready_write(&key, &other), ReadyWrite::Write);
        }
        shared.forget_ready(&key);
        assert_eq!(
            shared.count_ready_write(&key, &ready("v", 2, "False")),
            ReadyWrite::Write
        );
    }

    #[test]
    fn deltas_merge() {
        let mut d = StatusDelta {
            triggers: 2,
            jobs: vec![job("a")],
            ..Default::default()
        };
        d.merge(StatusDelta {
            triggers: 3,
            failed: 1,
            ..Default::default()
        });
        assert_eq!(d.failed, 1);
        assert_eq!(d.triggers, 5);
        assert_eq!(d.jobs[0].name, "a");
        d.merge(StatusDelta {
            jobs: vec![job("b")],
            ..Default::default()
        });
        assert_eq!(d.jobs[0].name, "b");
    }

    fn counts(uid: &str, triggers: i64, jobs: &[&str]) -> Counts {
        Counts {
            uid: uid.into(),
            delta: StatusDelta {
                triggers,
                jobs: jobs.iter().map(|n| job(n)).collect(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn counts_of_one_reaction_add_up_and_a_recreated_one_starts_afresh() {
        let mut p = Pending::default();
        p.add_counts(counts("u1", 2, &["a"]));
        p.add_counts(counts("u1", 3, &[]));
        assert_eq!(p.counts.as_ref().map(|c| c.delta.triggers), Some(5));
        p.add_counts(counts("u2", 1, &["b"]));
        let c = p.counts.as_ref().expect("queued");
        assert_eq!((c.uid.as_str(), c.delta.triggers), ("u2", 1));
    }

    #[test]
    fn a_failed_write_goes_back_under_later_counts() {
        let mut p = Pending::default();
        p.add_counts(counts("u1", 1, &["later"]));
        p.requeue_counts(counts("u1", 4, &["earlier"]));
        let c = p.counts.as_ref().expect("queued");
        assert_eq!(c.delta.triggers, 5);
        assert_eq!(
            c.delta.jobs[0].name, "later",
            "the latest trigger's Jobs win"
        );
        // Counts of a deleted reaction do not replace its successor's.
        p.requeue_counts(counts("old", 7, &[]));
        assert_eq!(p.counts.as_ref().map(|c| c.uid.as_str()), Some("u1"));
    }
}
