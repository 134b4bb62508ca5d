//! The AlertReaction counters (`triggerCount`, `lastTriggered`, `lastJobsCreated`),
//! written in the background. Deltas for the same reaction that arrive while a
//! write is in flight are merged into the next one, so a burst of notifications
//! costs a few status writes, not one per notification; each write is a read and
//! a replace with optimistic concurrency, so no increment of another writer
//! (another replica) is lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::Api;
use tokio::sync::Notify;
use tracing::warn;

use crate::context::Context;
use crate::crd::{AlertReaction, JobReference};
use crate::reaction::CompiledReaction;

/// What one or more notifications add to a reaction's status.
#[derive(Debug, Default, Clone)]
pub struct StatusDelta {
    pub triggers: i64,
    /// The Jobs of the latest trigger (replaces `lastJobsCreated` when not empty).
    pub jobs: Vec<JobReference>,
}

impl StatusDelta {
    fn merge(&mut self, later: StatusDelta) {
        self.triggers += later.triggers;
        if !later.jobs.is_empty() {
            self.jobs = later.jobs;
        }
    }
}

type Key = (String, String, String);

/// Pending status updates by reaction (namespace, name, uid).
#[derive(Default)]
pub struct StatusWriter {
    pending: Mutex<HashMap<Key, (Arc<CompiledReaction>, StatusDelta)>>,
    wake: Notify,
}

impl StatusWriter {
    /// Queues a delta; the writer task picks it up at once or after the write in flight.
    pub fn add(&self, reaction: Arc<CompiledReaction>, delta: StatusDelta) {
        let key = (
            reaction.namespace.clone(),
            reaction.name.clone(),
            reaction.uid.clone(),
        );
        let mut pending = match self.pending.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        };
        match pending.get_mut(&key) {
            Some((_, d)) => d.merge(delta),
            None => {
                pending.insert(key, (reaction, delta));
            }
        }
        drop(pending);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<(Arc<CompiledReaction>, StatusDelta)> {
        let mut pending = match self.pending.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        };
        pending.drain().map(|(_, v)| v).collect()
    }
}

/// Writes pending deltas until the process ends.
pub async fn run(ctx: Arc<Context>) {
    loop {
        ctx.status.wake.notified().await;
        flush(&ctx).await;
    }
}

/// Writes everything pending now. A delta whose write fails for a reason worth
/// retrying (the API server is away) is queued again, so the count is kept.
pub async fn flush(ctx: &Arc<Context>) {
    let batch = ctx.status.take();
    if batch.is_empty() {
        return;
    }
    let writes = batch.into_iter().map(|(reaction, delta)| {
        let ctx = ctx.clone();
        async move {
            match record(&ctx, &reaction, &delta).await {
                Ok(()) => None,
                Err(e) => {
                    ctx.metrics.error("status_update");
                    warn!(reaction = %reaction.name, namespace = %reaction.namespace, error = %e, "cannot update AlertReaction status");
                    let gone = matches!(&e, kube::Error::Api(s) if s.code == 404);
                    (!gone).then_some((reaction, delta))
                }
            }
        }
    });
    let failed: Vec<_> = futures::future::join_all(writes)
        .await
        .into_iter()
        .flatten()
        .collect();
    if !failed.is_empty() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (reaction, delta) in failed {
            ctx.status.add(reaction, delta);
        }
    }
}

/// Adds a delta to the reaction's status: read, add, replace with the
/// resourceVersion read; a conflicting writer makes it read again.
async fn record(
    ctx: &Context,
    reaction: &CompiledReaction,
    delta: &StatusDelta,
) -> Result<(), kube::Error> {
    let api: Api<AlertReaction> = Api::namespaced(ctx.client.clone(), &reaction.namespace);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut current = api.get_status(&reaction.name).await?;
        if current.metadata.uid.as_deref() != Some(reaction.uid.as_str()) {
            return Ok(()); // deleted and recreated meanwhile
        }
        let status = current.status.get_or_insert_with(Default::default);
        if delta.triggers > 0 {
            status.trigger_count = Some(status.trigger_count.unwrap_or(0) + delta.triggers);
            status.last_triggered = Some(Time(jiff::Timestamp::now()));
        }
        if !delta.jobs.is_empty() {
            status.last_jobs_created = delta.jobs.clone();
        }
        match api
            .replace_status(&reaction.name, &PostParams::default(), &current)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_merge() {
        let job = |n: &str| JobReference {
            name: n.into(),
            namespace: "ns".into(),
            action_name: "a".into(),
            created_at: Time(jiff::Timestamp::UNIX_EPOCH),
        };
        let mut d = StatusDelta {
            triggers: 2,
            jobs: vec![job("a")],
        };
        d.merge(StatusDelta {
            triggers: 3,
            jobs: vec![],
        });
        assert_eq!(d.triggers, 5);
        assert_eq!(d.jobs[0].name, "a");
        d.merge(StatusDelta {
            triggers: 0,
            jobs: vec![job("b")],
        });
        assert_eq!(d.jobs[0].name, "b");
    }
}
