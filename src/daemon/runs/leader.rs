//! Leader election on a `coordination.k8s.io` Lease: one replica at a time
//! follows Runs. The Lease is released on shutdown, so the next replica takes
//! over at once rather than after the Lease expires.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::{info, warn};

/// Where the Lease is and who asks for it.
#[derive(Debug, Clone)]
pub struct LeaseSpec {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    pub duration: Duration,
}

/// Holds or waits for the Lease until `stop` turns true, publishing whether
/// this replica leads on `leading`.
pub async fn elect(
    client: Client,
    lease: LeaseSpec,
    leading: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let secs = lease.duration.as_secs().max(1);
    let grace = (secs / 3).clamp(1, 5);
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), lease.name.clone())
            .with_namespace(lease.namespace.clone())
            .with_identity(lease.identity.clone())
            .with_duration(secs)
            .with_grace(grace)
            .build()
            .await;
        match built {
            Ok(m) => break m,
            Err(e) => {
                warn!(namespace = %lease.namespace, lease = %lease.name, error = %e, "cannot set up the Lease; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    };
    info!(namespace = %lease.namespace, lease = %lease.name, identity = %lease.identity, "waiting for the Lease");
    loop {
        tokio::select! {
            changed = manager.changed() => match changed {
                Ok(is_leader) => {
                    let _ = leading.send(is_leader);
                }
                Err(e) => {
                    // Not renewed: act as if lost, before the Lease can expire.
                    warn!(error = %e, "cannot renew the Lease");
                    let _ = leading.send(false);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = stop.changed() => {
                let _ = leading.send(false);
                if let Err(e) = manager.release().await {
                    warn!(error = %e, "cannot release the Lease");
                }
                return;
            }
        }
    }
}
