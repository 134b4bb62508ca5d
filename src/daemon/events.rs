//! Kubernetes Events (`events.k8s.io/v1`) on AlertReactions, created by a
//! background task from a bounded queue, off the webhook's path. Each Event is
//! its own object: folding repeats into a series, as kube's `Recorder` does,
//! turns a burst into updates of one hot object, which costs the API server far
//! more than the Jobs themselves. Bursts are bounded per notification
//! ([`NotificationEvents`]); when the queue is full (an alert storm), further Events are
//! dropped and counted, and the log has them all.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::core::reaction::CompiledReaction;
use crate::daemon::metrics::{ErrorKind, Metrics};

/// Events waiting to be published.
const QUEUE: usize = 1024;
/// Events created at once.
const IN_FLIGHT: usize = 4;
/// Events published one by one per reaction and reason in one notification.
const EVENTS_PER_REASON: usize = 5;

type Item = (Event, ObjectReference);

/// The queue's sending side: what the executor and the status owner hold.
#[derive(Clone)]
pub struct EventSender {
    tx: mpsc::Sender<Item>,
    metrics: Arc<Metrics>,
}

/// The one task that creates Events.
pub struct EventPublisher {
    client: Client,
    /// `reportingInstance`: the pod name.
    instance: String,
    metrics: Arc<Metrics>,
    rx: mpsc::Receiver<Item>,
}

/// A bounded queue and its publisher.
pub fn channel(
    client: Client,
    instance: String,
    metrics: Arc<Metrics>,
) -> (EventSender, EventPublisher) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (
        EventSender {
            tx,
            metrics: metrics.clone(),
        },
        EventPublisher {
            client,
            instance,
            metrics,
            rx,
        },
    )
}

impl EventSender {
    /// Queues an Event; when the queue is full it is dropped and counted.
    pub fn publish(&self, event: Event, reference: ObjectReference) {
        if self.tx.try_send((event, reference)).is_err() {
            self.metrics.error(ErrorKind::Event);
            debug!("Event queue full; Event dropped");
        }
    }

    /// Queues an Event about a reaction, its note cut to the API's limit.
    pub fn about(&self, reaction: &CompiledReaction, type_: EventType, reason: &str, note: String) {
        self.about_ref(reaction.object_ref(), type_, reason, note);
    }

    /// Queues an Event about the object `reference` names.
    pub fn about_ref(
        &self,
        reference: ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(truncate(note, 1024)),
            action: reason.to_string(),
            secondary: None,
        };
        self.publish(event, reference);
    }
}

impl EventPublisher {
    /// Publishes queued Events until `stop` fires (or its sender is dropped);
    /// then takes no more and publishes those still queued, so the Events of the
    /// last notifications outlive a shutdown.
    pub async fn run(self, stop: oneshot::Receiver<()>) {
        let EventPublisher {
            client,
            instance,
            metrics,
            rx,
        } = self;
        futures::stream::unfold((rx, Some(stop)), |(mut rx, mut stop)| async move {
            let item = match stop.as_mut() {
                Some(signal) => tokio::select! {
                    item = rx.recv() => item,
                    _ = signal => {
                        rx.close();
                        stop = None;
                        debug!(queued = rx.len(), "publishing the Events still queued");
                        rx.recv().await
                    }
                },
                None => rx.recv().await,
            };
            item.map(|item| (item, (rx, stop)))
        })
        .for_each_concurrent(IN_FLIGHT, |(event, reference)| {
            let (client, instance, metrics) = (client.clone(), instance.clone(), metrics.clone());
            async move {
                if let Err(e) = create(client, &instance, &event, &reference).await {
                    metrics.error(ErrorKind::Event);
                    warn!(error = %e, reason = %event.reason, "cannot publish Event");
                }
            }
        })
        .await;
    }
}

async fn create(
    client: Client,
    instance: &str,
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
        reporting_instance: Some(instance.to_string()),
        ..Default::default()
    };
    Api::<KubeEvent>::namespaced(client, &namespace)
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

/// Events of one notification. A storm of alerts must not become a storm of
/// Events: per reaction and reason, the first few are published one by one and
/// the rest are summed up in one more.
pub struct NotificationEvents {
    sender: EventSender,
    counts: Mutex<BTreeMap<EventKey, EventCount>>,
}

/// Namespace, name and reason.
type EventKey = (String, String, &'static str);
/// How many, for which reaction, of which type.
type EventCount = (usize, Arc<CompiledReaction>, EventType);

impl NotificationEvents {
    pub fn new(sender: EventSender) -> Self {
        NotificationEvents {
            sender,
            counts: Mutex::default(),
        }
    }

    /// Publishes without holding up the webhook's answer.
    pub fn publish(
        &self,
        reaction: &Arc<CompiledReaction>,
        type_: EventType,
        reason: &'static str,
        note: String,
    ) {
        let n = {
            let mut counts = match self.counts.lock() {
                Ok(c) => c,
                Err(p) => p.into_inner(),
            };
            let entry = counts
                .entry((reaction.namespace.clone(), reaction.name.clone(), reason))
                .or_insert((0, reaction.clone(), type_));
            entry.0 += 1;
            entry.0
        };
        if n <= EVENTS_PER_REASON {
            self.sender.about(reaction, type_, reason, note);
        }
    }

    /// One summary Event per reaction and reason that went over the budget.
    pub fn finish(self) {
        let counts = match self.counts.into_inner() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        for ((_, _, reason), (n, reaction, type_)) in counts {
            if n > EVENTS_PER_REASON {
                let more = n - EVENTS_PER_REASON;
                self.sender.about(
                    &reaction,
                    type_,
                    reason,
                    format!("{more} more {reason} events for this notification ({n} in all); see Karo's log for each Job"),
                );
            }
        }
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
