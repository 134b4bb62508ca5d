//! Watches AlertReactions, compiles each generation once into the index the
//! executor reads, and hands the `Ready` condition to the status owner. A new
//! configuration snapshot (a reload) compiles every cached reaction again, as a
//! new policy may change which are valid.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::DeserializeGuard;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::core::reaction::{self, Invalid, InvalidReason};
use crate::core::render::Renderer;
use crate::core::snapshot::Snapshot;
use crate::daemon::events;
use crate::daemon::index::{Entry, ObjectKey, ReactionIndex};
use crate::daemon::metrics::{ErrorKind, Metrics};
use crate::daemon::readiness::Readiness;
use crate::daemon::status::{ReadyUpdate, StatusHandle};
use crate::model::crd::AlertReaction;

type Guarded = DeserializeGuard<AlertReaction>;

/// The longest `Ready` message written, in bytes.
const READY_MESSAGE_BYTES: usize = 2048;

/// What the controller works with.
pub struct Controller {
    pub client: Client,
    pub index: Arc<ReactionIndex>,
    pub renderer: Arc<Renderer>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub status: StatusHandle,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
}

impl Controller {
    /// Runs until the process ends; the watch restarts with backoff on errors.
    pub async fn run(mut self) {
        // Restart-only: the namespaces of the configuration at start.
        let namespaces = self.snapshots.borrow().config.namespaces.clone();
        let apis: Vec<Api<Guarded>> = if namespaces.is_empty() {
            vec![Api::all(self.client.clone())]
        } else {
            namespaces
                .iter()
                .map(|ns| Api::namespaced(self.client.clone(), ns))
                .collect()
        };
        let total = apis.len();
        let streams = apis.into_iter().enumerate().map(|(i, api)| {
            watcher(api, watcher::Config::default())
                .default_backoff()
                .map_ok(move |e| (i, e))
                .boxed()
        });
        let mut events = futures::stream::select_all(streams);
        // The initial list keeps what each object's verdict needs, not the object.
        let mut pending: Vec<Vec<(ObjectKey, Entry, Shown)>> =
            (0..total).map(|_| Vec::new()).collect();
        let mut synced = vec![false; total];
        loop {
            let event = tokio::select! {
                event = events.next() => match event {
                    Some(event) => event,
                    None => return,
                },
                changed = self.snapshots.changed() => {
                    if changed.is_ok() {
                        self.recompile_all();
                        continue;
                    }
                    return;
                }
            };
            let (i, event) = match event {
                Ok(e) => e,
                Err(e) => {
                    self.metrics.error(ErrorKind::Watch);
                    warn!(error = %e, "AlertReaction watch failed; retrying");
                    continue;
                }
            };
            match event {
                Event::Init => pending[i].clear(),
                Event::InitApply(obj) => {
                    let (key, entry) = self.evaluate(&obj);
                    pending[i].push((key, entry, Shown::of(&obj)));
                }
                Event::InitDone => {
                    let batch = std::mem::take(&mut pending[i]);
                    // Keep the entries of the other watched namespaces.
                    let mut entries: Vec<(ObjectKey, Entry)> = self
                        .index
                        .keys()
                        .into_iter()
                        .filter(|k| !batch_covers(&namespaces, i, &k.0))
                        .filter_map(|k| self.index.get(&k).map(|e| (k, e)))
                        .collect();
                    entries.extend(batch.iter().map(|(k, e, _)| (k.clone(), e.clone())));
                    self.index.replace_all(entries);
                    for (key, entry, shown) in batch {
                        self.report(key, shown, &entry);
                    }
                    synced[i] = true;
                    if synced.iter().all(|s| *s) && !self.readiness.is_ready() {
                        info!("AlertReaction cache synced");
                        self.readiness.set_synced();
                    }
                    self.update_gauges();
                }
                Event::Apply(obj) => {
                    let (key, entry) = self.evaluate(&obj);
                    self.index.upsert(key.clone(), entry.clone());
                    self.report(key, Shown::of(&obj), &entry);
                    self.update_gauges();
                }
                Event::Delete(obj) => {
                    let key = (obj.namespace().unwrap_or_default(), obj.name_any());
                    debug!(namespace = %key.0, name = %key.1, "AlertReaction deleted");
                    self.index.remove(&key);
                    self.update_gauges();
                }
            }
        }
    }

    fn update_gauges(&self) {
        let (ready, invalid) = self.index.counts();
        self.metrics.reactions_loaded.set(ready as i64);
        self.metrics.reactions_invalid.set(invalid as i64);
        self.metrics
            .reactions_stopped
            .set(self.index.stopped() as i64);
    }

    /// Compiles a reaction unless this generation is compiled already.
    fn evaluate(&self, obj: &Guarded) -> (ObjectKey, Entry) {
        let key = (obj.namespace().unwrap_or_default(), obj.name_any());
        let uid = obj.uid().unwrap_or_default();
        let generation = obj.meta().generation.unwrap_or_default();
        // A failure budget exhausted or resumed changes readiness without a new
        // generation.
        let stopped = matches!(&obj.0, Ok(ar) if reaction::failure_budget_exhausted(ar).is_some());
        if let Some(existing) = self.index.get(&key) {
            if existing.uid() == uid
                && existing.generation() == generation
                && existing.stopped() == stopped
            {
                return (key, existing);
            }
        }
        let entry = match &obj.0 {
            Ok(ar) => self.compile(Arc::new(ar.clone()), uid, generation),
            Err(e) => Entry::Invalid {
                uid,
                generation,
                error: Invalid::new(
                    InvalidReason::InvalidSpec,
                    "",
                    format!("cannot read the AlertReaction: {e}"),
                ),
                object: None,
            },
        };
        if let Entry::Invalid { error, .. } = &entry {
            warn!(namespace = %key.0, name = %key.1, reason = error.reason.as_str(), "AlertReaction is not Ready: {}", error.field);
        }
        (key, entry)
    }

    fn compile(&self, object: Arc<AlertReaction>, uid: String, generation: i64) -> Entry {
        let snapshot = self.snapshots.borrow().clone();
        match reaction::compile(&object, &self.renderer, &snapshot.config.policy) {
            Ok(c) => Entry::Ready(Arc::new(c)),
            Err(error) => Entry::Invalid {
                uid,
                generation,
                error,
                object: Some(object),
            },
        }
    }

    /// Hands the `Ready` condition to the status owner when it differs from
    /// what the object shows.
    fn report(&self, key: ObjectKey, shown: Shown, entry: &Entry) {
        let Shown {
            uid,
            generation,
            ready: previous,
            observed,
        } = shown;
        let condition = ready_condition(entry, generation, previous.as_ref());
        let unchanged = observed == Some(generation)
            && previous
                .as_ref()
                .is_some_and(|p| same_condition(p, &condition));
        if !unchanged {
            self.status.set_ready(
                key,
                ReadyUpdate {
                    uid,
                    generation,
                    condition,
                },
            );
        }
    }

    /// Validates every cached reaction again (after a configuration change, e.g.
    /// a new policy) and reports those whose readiness changed.
    fn recompile_all(&self) {
        for key in self.index.keys() {
            let Some(old) = self.index.get(&key) else {
                continue;
            };
            let object = match &old {
                Entry::Ready(r) => Arc::new(r.to_resource()),
                Entry::Invalid {
                    object: Some(o), ..
                } => o.clone(),
                Entry::Invalid { object: None, .. } => continue,
            };
            let uid = object.metadata.uid.clone();
            let generation = old.generation();
            let new = self.compile(object, old.uid().to_string(), generation);
            let before = ready_condition(&old, generation, None);
            let after = ready_condition(&new, generation, None);
            self.index.upsert(key.clone(), new);
            if !same_condition(&before, &after) {
                self.status.set_ready(
                    key,
                    ReadyUpdate {
                        uid,
                        generation,
                        condition: after,
                    },
                );
            }
        }
        self.update_gauges();
    }
}

/// What an AlertReaction shows of its verdict: all that [`Controller::report`]
/// needs of the object.
struct Shown {
    uid: Option<String>,
    generation: i64,
    ready: Option<Condition>,
    observed: Option<i64>,
}

impl Shown {
    fn of(obj: &Guarded) -> Self {
        let status = obj.0.as_ref().ok().and_then(|ar| ar.status.as_ref());
        Shown {
            uid: obj.uid(),
            generation: obj.meta().generation.unwrap_or_default(),
            ready: status.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned()),
            observed: status.and_then(|s| s.observed_generation),
        }
    }
}

/// Whether watch `i` is the one responsible for namespace `ns`.
fn batch_covers(namespaces: &[String], i: usize, ns: &str) -> bool {
    namespaces.is_empty() || namespaces.get(i).is_some_and(|n| n == ns)
}

fn same_condition(a: &Condition, b: &Condition) -> bool {
    (&a.status, &a.reason, &a.message, a.observed_generation)
        == (&b.status, &b.reason, &b.message, b.observed_generation)
}

/// The `Ready` condition for an index entry.
fn ready_condition(entry: &Entry, generation: i64, previous: Option<&Condition>) -> Condition {
    let (status, reason, message) = match entry {
        Entry::Ready(r) => (
            "True",
            "Valid",
            format!(
                "{} Job source(s) for alert {}",
                r.sources.len(),
                r.spec.alert_name
            ),
        ),
        // Bounded: the message may quote what the reaction's author wrote.
        Entry::Invalid { error, .. } => (
            "False",
            error.reason.as_str(),
            events::truncate(error.message(), READY_MESSAGE_BYTES),
        ),
    };
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Time(jiff::Timestamp::now()),
    };
    Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: Some(generation),
        last_transition_time,
    }
}
