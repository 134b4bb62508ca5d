//! Watches AlertReactions, compiles each generation once into the index the
//! webhook reads, and reports validity through the `Ready` condition.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::context::Context;
use crate::crd::AlertReaction;
use crate::index::{Entry, ObjectKey};
use crate::reaction::{self, Invalid};

/// Status writes in flight at once.
const STATUS_WRITERS: usize = 8;

type Guarded = DeserializeGuard<AlertReaction>;

/// Runs until the process ends; the watch restarts with backoff on errors.
pub async fn run(ctx: Arc<Context>) {
    let namespaces = ctx.runtime().config.namespaces.clone();
    let apis: Vec<Api<Guarded>> = if namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(ctx.client.clone(), ns))
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
    let writers = Arc::new(Semaphore::new(STATUS_WRITERS));
    let mut pending: Vec<Vec<(ObjectKey, Entry, Guarded)>> =
        (0..total).map(|_| Vec::new()).collect();
    let mut synced = vec![false; total];
    while let Some(event) = events.next().await {
        let (i, event) = match event {
            Ok(e) => e,
            Err(e) => {
                ctx.metrics.error("watch");
                warn!(error = %e, "AlertReaction watch failed; retrying");
                continue;
            }
        };
        match event {
            Event::Init => pending[i].clear(),
            Event::InitApply(obj) => {
                if let Some((key, entry)) = evaluate(&ctx, &obj) {
                    pending[i].push((key, entry, obj));
                }
            }
            Event::InitDone => {
                let batch = std::mem::take(&mut pending[i]);
                // Keep the entries of the other watched namespaces.
                let mut entries: Vec<(ObjectKey, Entry)> = ctx
                    .index
                    .keys()
                    .into_iter()
                    .filter(|k| !batch_covers(&namespaces, i, &k.0))
                    .filter_map(|k| ctx.index.get(&k).map(|e| (k, e)))
                    .collect();
                entries.extend(batch.iter().map(|(k, e, _)| (k.clone(), e.clone())));
                ctx.index.replace_all(entries);
                for (_, entry, obj) in batch {
                    spawn_status(&ctx, &writers, obj, entry);
                }
                synced[i] = true;
                if synced.iter().all(|s| *s) && !ctx.is_ready() {
                    info!("AlertReaction cache synced");
                    ctx.set_synced(true);
                }
                update_gauges(&ctx);
            }
            Event::Apply(obj) => {
                if let Some((key, entry)) = evaluate(&ctx, &obj) {
                    ctx.index.upsert(key, entry.clone());
                    spawn_status(&ctx, &writers, obj, entry);
                    update_gauges(&ctx);
                }
            }
            Event::Delete(obj) => {
                let key = (obj.namespace().unwrap_or_default(), obj.name_any());
                debug!(namespace = %key.0, name = %key.1, "AlertReaction deleted");
                ctx.index.remove(&key);
                update_gauges(&ctx);
            }
        }
    }
}

/// Whether watch `i` is the one responsible for namespace `ns`.
fn batch_covers(namespaces: &[String], i: usize, ns: &str) -> bool {
    namespaces.is_empty() || namespaces.get(i).is_some_and(|n| n == ns)
}

fn update_gauges(ctx: &Context) {
    let (ready, invalid) = ctx.index.counts();
    ctx.metrics.reactions_loaded.set(ready as i64);
    ctx.metrics.reactions_invalid.set(invalid as i64);
}

/// Compiles a reaction unless this generation is compiled already.
fn evaluate(ctx: &Context, obj: &Guarded) -> Option<(ObjectKey, Entry)> {
    let key = (obj.namespace().unwrap_or_default(), obj.name_any());
    let uid = obj.uid().unwrap_or_default();
    let generation = obj.meta().generation.unwrap_or_default();
    if let Some(existing) = ctx.index.get(&key) {
        if existing.uid() == uid && existing.generation() == generation {
            return Some((key, existing));
        }
    }
    let entry = match &obj.0 {
        Ok(ar) => {
            let runtime = ctx.runtime();
            match reaction::compile(ar, &ctx.renderer, &runtime.config.policy) {
                Ok(c) => Entry::Ready(Arc::new(c)),
                Err(error) => Entry::Invalid {
                    uid,
                    generation,
                    error,
                    object: Some(Arc::new(ar.clone())),
                },
            }
        }
        Err(e) => Entry::Invalid {
            uid,
            generation,
            error: Invalid {
                reason: "InvalidSpec",
                message: format!("cannot read the AlertReaction: {e}"),
            },
            object: None,
        },
    };
    if let Entry::Invalid { error, .. } = &entry {
        warn!(namespace = %key.0, name = %key.1, reason = error.reason, "AlertReaction is not Ready: {}", error.message);
    }
    Some((key, entry))
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
        Entry::Invalid { error, .. } => ("False", error.reason, error.message.clone()),
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

/// Writes the `Ready` condition when it differs from what the object shows.
fn spawn_status(ctx: &Arc<Context>, writers: &Arc<Semaphore>, obj: Guarded, entry: Entry) {
    let generation = obj.meta().generation.unwrap_or_default();
    let (previous, observed) = match &obj.0 {
        Ok(ar) => {
            let status = ar.status.as_ref();
            (
                status.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned()),
                status.and_then(|s| s.observed_generation),
            )
        }
        Err(_) => (None, None),
    };
    let condition = ready_condition(&entry, generation, previous.as_ref());
    let unchanged = observed == Some(generation)
        && previous.as_ref().is_some_and(|p| {
            p.status == condition.status
                && p.reason == condition.reason
                && p.message == condition.message
                && p.observed_generation == condition.observed_generation
        });
    if unchanged {
        return;
    }
    let key = (obj.namespace().unwrap_or_default(), obj.name_any());
    spawn_write_ready(ctx, writers, key, obj.uid(), generation, condition);
}

/// Merge-patches `observedGeneration` and the `Ready` condition, and publishes a
/// Warning Event when the reaction is not Ready.
fn spawn_write_ready(
    ctx: &Arc<Context>,
    writers: &Arc<Semaphore>,
    (namespace, name): ObjectKey,
    uid: Option<String>,
    generation: i64,
    condition: Condition,
) {
    let ctx = ctx.clone();
    let writers = writers.clone();
    let reference = reaction::object_ref(&namespace, &name, uid);
    tokio::spawn(async move {
        let Ok(_permit) = writers.acquire().await else {
            return;
        };
        let api: Api<AlertReaction> = Api::namespaced(ctx.client.clone(), &namespace);
        // A merge patch of the two fields Karo's controller owns leaves the
        // counters (written by the reactor) untouched.
        let patch = json!({
            "status": {
                "observedGeneration": generation,
                "conditions": [condition],
            }
        });
        if let Err(e) = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            ctx.metrics.error("status_update");
            warn!(namespace = %namespace, name = %name, error = %e, "cannot write the Ready condition");
            return;
        }
        if condition.status == "False" {
            let event = KubeEvent {
                type_: EventType::Warning,
                reason: condition.reason.clone(),
                note: Some(condition.message.chars().take(1024).collect()),
                action: "Validate".into(),
                secondary: None,
            };
            if !ctx.events.publish(event, reference) {
                ctx.metrics.error("event");
            }
        }
    });
}

/// Validates every cached reaction again (after a configuration change, e.g. a
/// new policy) and reports those whose readiness changed.
pub fn recompile_all(ctx: &Arc<Context>) {
    let writers = Arc::new(Semaphore::new(STATUS_WRITERS));
    let runtime = ctx.runtime();
    for key in ctx.index.keys() {
        let Some(old) = ctx.index.get(&key) else {
            continue;
        };
        let object = match &old {
            Entry::Ready(r) => Arc::new(r.to_resource()),
            Entry::Invalid {
                object: Some(o), ..
            } => o.clone(),
            Entry::Invalid { object: None, .. } => continue,
        };
        let new = match reaction::compile(&object, &ctx.renderer, &runtime.config.policy) {
            Ok(c) => Entry::Ready(Arc::new(c)),
            Err(error) => Entry::Invalid {
                uid: old.uid().to_string(),
                generation: old.generation(),
                error,
                object: Some(object.clone()),
            },
        };
        let generation = new.generation();
        let before = ready_condition(&old, generation, None);
        let after = ready_condition(&new, generation, None);
        ctx.index.upsert(key.clone(), new);
        if (&before.status, &before.reason, &before.message)
            != (&after.status, &after.reason, &after.message)
        {
            spawn_write_ready(
                ctx,
                &writers,
                key,
                object.metadata.uid.clone(),
                generation,
                after,
            );
        }
    }
    update_gauges(ctx);
}
