//! Kubernetes Events (`events.k8s.io/v1`) on AlertReactions, created by a
//! background task from a bounded queue, off the webhook's path. Each Event is
//! its own object: folding repeats into a series, as kube's `Recorder` does,
//! turns a burst into updates of one hot object, which costs the API server far
//! more than the Jobs themselves. Bursts are already bounded per notification
//! (see the reactor); when the queue is full (an alert storm), further Events are
//! dropped and counted, and the log has them all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::runtime::events::{Event, EventType};
use kube::Api;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::context::Context;

/// Events waiting to be published.
const QUEUE: usize = 1024;
/// Events created at once.
const IN_FLIGHT: usize = 4;

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
    let Some(rx) = rx else {
        debug!("the Event publisher runs already");
        return;
    };
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .for_each_concurrent(IN_FLIGHT, |(event, reference)| {
        let ctx = ctx.clone();
        async move {
            if let Err(e) = create(&ctx, &event, &reference).await {
                ctx.metrics.error("event");
                warn!(error = %e, reason = %event.reason, "cannot publish Event");
            }
        }
    })
    .await;
}

async fn create(
    ctx: &Context,
    event: &Event,
    reference: &ObjectReference,
) -> Result<(), kube::Error> {
    let namespace = reference.namespace.clone().unwrap_or_default();
    let name = reference.name.clone().unwrap_or_default();
    let object = KubeEvent {
        metadata: ObjectMeta {
            name: Some(event_name(&name)),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        event_time: Some(MicroTime(jiff::Timestamp::now())),
        action: Some(event.action.clone()),
        reason: Some(event.reason.clone()),
        note: event.note.clone(),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_string(),
        ),
        regarding: Some(reference.clone()),
        reporting_controller: Some(REPORTER.to_string()),
        reporting_instance: Some(ctx.instance.clone()),
        ..Default::default()
    };
    Api::<KubeEvent>::namespaced(ctx.client.clone(), &namespace)
        .create(&PostParams::default(), &object)
        .await
        .map(|_| ())
}

/// `<object>.<hex>` as kubectl names Events: the time in nanoseconds and a
/// per-process sequence number keep names unique across Events and replicas.
fn event_name(object: &str) -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let nanos = jiff::Timestamp::now().as_nanosecond();
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed) & 0xffff;
    let prefix: String = object.chars().take(200).collect();
    format!("{prefix}.{nanos:x}{seq:04x}")
}

/// `reportingController` of Karo's Events.
pub const REPORTER: &str = "karo.io/karo";
