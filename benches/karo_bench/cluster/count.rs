//! Objects counted as the API server streams them (a watch, not a poll that
//! would load the API server while Karo is measured), with the moment the count
//! last changed.

use std::collections::HashSet;
use std::fmt::Debug;

use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{oneshot, watch};

use super::*;

/// How many objects of one namespace and kind satisfy a predicate, kept up to
/// date by a watch until dropped.
pub(super) struct Counter {
    state: watch::Receiver<(usize, Instant)>,
    task: tokio::task::JoinHandle<()>,
}

impl Counter {
    /// Watches `api` and counts the objects for which `pred` holds; returns
    /// once the initial list is in.
    pub(super) async fn start<K>(api: Api<K>, pred: fn(&K) -> bool) -> Result<Counter>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let (tx, state) = watch::channel((0usize, Instant::now()));
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut matching: HashSet<String> = HashSet::new();
            let mut events =
                std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
            while let Some(event) = events.next().await {
                match event {
                    Ok(Event::Apply(o) | Event::InitApply(o)) => {
                        if pred(&o) {
                            matching.insert(o.name_any());
                        } else {
                            matching.remove(&o.name_any());
                        }
                    }
                    Ok(Event::Delete(o)) => {
                        matching.remove(&o.name_any());
                    }
                    Ok(Event::InitDone) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Init) | Err(_) => {}
                }
                if matching.len() != tx.borrow().0 {
                    tx.send_replace((matching.len(), Instant::now()));
                }
            }
        });
        tokio::time::timeout(HANG_GUARD, ready_rx)
            .await
            .context("the watch never listed")?
            .context("the watch ended")?;
        Ok(Counter { state, task })
    }

    /// Waits until at least `want` objects count; returns the moment the count
    /// changed to what it is then (`want`, unless more came at once).
    pub(super) async fn reached(&mut self, want: usize) -> Result<Instant> {
        let waited = tokio::time::timeout(HANG_GUARD, self.state.wait_for(|(n, _)| *n >= want))
            .await
            .map(|r| r.map(|seen| seen.1));
        match waited {
            Ok(Ok(at)) => Ok(at),
            Ok(Err(_)) => bail!("the watch ended with {} of {want} objects", self.count()),
            Err(_) => bail!(
                "only {} of {want} objects after {}",
                self.count(),
                stats::dur(HANG_GUARD)
            ),
        }
    }

    pub(super) fn count(&self) -> usize {
        self.state.borrow().0
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
