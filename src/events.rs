//! Kubernetes Events on AlertReactions, published one at a time by a single
//! task. The kube `Recorder` folds repeats into one Event object per reason and
//! note; concurrent updates of that one object make the API server retry, so a
//! queue keeps them in order and off the webhook's path. When the queue is full
//! (an alert storm), further Events are dropped and counted; the log has them all.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::Event;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::context::Context;

/// Events waiting to be published.
const QUEUE: usize = 1024;

type Item = (Event, ObjectReference);

pub struct EventQueue {
    tx: mpsc::Sender<Item>,
    rx: Mutex<Option<mpsc::Receiver<Item>>>,
}

impl Default for EventQueue {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        EventQueue {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl EventQueue {
    /// Queues an Event; `false` when the queue is full and it was dropped.
    pub fn publish(&self, event: Event, reference: ObjectReference) -> bool {
        self.tx.try_send((event, reference)).is_ok()
    }
}

/// Publishes queued Events until the process ends.
pub async fn run(ctx: Arc<Context>) {
    let rx = match ctx.events.rx.lock() {
        Ok(mut r) => r.take(),
        Err(p) => p.into_inner().take(),
    };
    let Some(mut rx) = rx else {
        debug!("the Event publisher runs already");
        return;
    };
    while let Some((event, reference)) = rx.recv().await {
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            ctx.metrics.error("event");
            warn!(error = %e, reason = %event.reason, "cannot publish Event");
        }
    }
}
