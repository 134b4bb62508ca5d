//! Deletes finished Runs that retention lets go (`core::run::expired`): not
//! delivered for `runs.retention`, resolved more than
//! `runs.retentionAfterResolved` ago, or beyond `runs.historyLimit` per reaction.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::DeleteParams;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::core::run::{self, Expiry, Kept, Retention};
use crate::core::snapshot::Snapshot;
use crate::daemon::metrics::{ErrorKind, Metrics};
use crate::model::run::{AlertReactionRun, RunPhase};

/// Sweeps the Runs in `store` until aborted.
pub async fn sweep(
    client: Client,
    store: Store<AlertReactionRun>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    metrics: Arc<Metrics>,
    scope: String,
) {
    // Not waiting for the store to be ready: until it is, it is empty and
    // nothing is deleted.
    loop {
        let retention = {
            let config = &snapshots.borrow().config;
            Retention {
                retention: config.runs.retention(),
                after_resolved: config.runs.retention_after_resolved(),
                history_limit: config.runs.history_limit as usize,
            }
        };
        let every = (retention.retention.min(retention.after_resolved) / 4)
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let runs: Vec<Arc<AlertReactionRun>> = store.state();
        export_waiting(&runs, &metrics, &scope);
        let kept: Vec<Kept> = runs.iter().map(|r| kept(r)).collect();
        for (name, why) in run::expired(&kept, Timestamp::now(), &retention) {
            let Some(r) = runs.iter().find(|r| r.name_any() == name) else {
                continue;
            };
            let ns = r.namespace().unwrap_or_default();
            let api: Api<AlertReactionRun> = Api::namespaced(client.clone(), &ns);
            let params = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: r.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {
                    info!(namespace = %ns, run = %name, reaction = %r.spec.reaction.name, reason = expiry_text(why), "Run deleted by retention")
                }
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                    debug!(namespace = %ns, run = %name, "Run gone or replaced before retention")
                }
                Err(e) => {
                    metrics.error(ErrorKind::Api);
                    warn!(namespace = %ns, run = %name, error = %e, "cannot delete Run")
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// Exports how many Runs of `scope` wait for approval, and the longest wait.
fn export_waiting(runs: &[Arc<AlertReactionRun>], metrics: &Metrics, scope: &str) {
    let now = Timestamp::now();
    let (mut waiting, mut oldest) = (0i64, 0f64);
    for r in runs {
        let status = r.status.as_ref();
        if status.and_then(|s| s.phase) != Some(RunPhase::AwaitingApproval) {
            continue;
        }
        let since = status
            .and_then(|s| s.approval.as_ref())
            .and_then(|a| a.requested_at.as_ref())
            .map_or(now, |t| t.0);
        waiting += 1;
        oldest = oldest.max(now.duration_since(since).as_secs_f64().max(0.0));
    }
    metrics.set_awaiting(scope, waiting, oldest);
}

fn kept(r: &AlertReactionRun) -> Kept {
    let status = r.status.clone().unwrap_or_default();
    Kept {
        name: r.name_any(),
        reaction_uid: r.spec.reaction.uid.clone(),
        finished: status.phase.is_some_and(|p| p.is_finished()),
        created: r
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or_else(Timestamp::now, |t| t.0),
        last_seen: status.last_seen.map(|t| t.0),
        resolved_at: status.resolved_at.map(|t| t.0),
        completed: status.completion_time.map(|t| t.0),
    }
}

fn expiry_text(e: Expiry) -> &'static str {
    match e {
        Expiry::Unseen => "not delivered for runs.retention",
        Expiry::Resolved => "resolved longer than runs.retentionAfterResolved ago",
        Expiry::History => "beyond runs.historyLimit",
    }
}
