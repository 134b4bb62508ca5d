//! Kubernetes Events (`events.k8s.io/v1`) on AlertReactions, created by a
//! background task from a bounded queue, off the webhook's path. Each Event is
//! its own object: folding repeats into a series, as kube's `Recorder` does,
//! turns a burst into updates of one hot object, which costs the API server far
//! more than the Jobs themselves.
//!
//! Bursts are bounded per object and reason over time ([`Coalescer`]): in any
//! [`WINDOW`], the first [`BURST`] Events of one reason about one reaction are
//! published one by one, and the rest become one summary Event at the window's
//! end, whether they came in one notification or in many. At the rate of a
//! person's alerts every Event is published as it comes; in a storm, Events
//! cost a handful of writes per reaction and window instead of one or two per
//! occurrence. When the queue is full, further Events are dropped and counted;
//! the log has them all.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::core::reaction::CompiledReaction;
use crate::daemon::metrics::{ErrorKind, Metrics};

/// Events waiting to be published.
const QUEUE: usize = 1024;
/// Events created at once.
const IN_FLIGHT: usize = 4;
/// Events of one reason about one object published one by one per [`WINDOW`].
const BURST: u32 = 5;
/// The window of [`BURST`]; the rest of a window's Events are summed up at its end.
const WINDOW: Duration = Duration::from_secs(10);

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
    /// then takes no more and publishes those still queued, and the summaries of
    /// the open windows, so the Events of the last notifications outlive a
    /// shutdown.
    pub async fn run(self, stop: oneshot::Receiver<()>) {
        let EventPublisher {
            client,
            instance,
            metrics,
            mut rx,
        } = self;
        // What the coalescer lets through, to the writers.
        let (out, ready) = mpsc::channel::<Item>(QUEUE);
        let gather = async move {
            let mut coalescer = Coalescer::default();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut stop = stop;
            let mut stopping = false;
            loop {
                tokio::select! {
                    item = rx.recv() => match item {
                        Some(item) => {
                            if let Some(item) = coalescer.offer(item, Instant::now()) {
                                if out.send(item).await.is_err() {
                                    return;
                                }
                            }
                        }
                        None => break,
                    },
                    _ = tick.tick() => {
                        for item in coalescer.due(Instant::now()) {
                            if out.send(item).await.is_err() {
                                return;
                            }
                        }
                    }
                    _ = &mut stop, if !stopping => {
                        stopping = true;
                        rx.close();
                        debug!(queued = rx.len(), "publishing the Events still queued");
                    }
                }
            }
            for item in coalescer.drain() {
                if out.send(item).await.is_err() {
                    return;
                }
            }
        };
        let publish = futures::stream::unfold(ready, |mut ready| async move {
            ready.recv().await.map(|item| (item, ready))
        })
        .for_each_concurrent(IN_FLIGHT, |(event, reference)| {
            let (client, instance, metrics) = (client.clone(), instance.clone(), metrics.clone());
            async move {
                if let Err(e) = create(client, &instance, &event, &reference).await {
                    metrics.error(ErrorKind::Event);
                    warn!(error = %e, reason = %event.reason, "cannot publish Event");
                }
            }
        });
        futures::join!(gather, publish);
    }
}

/// The object an Event is about (namespace, name, UID), its reason and type.
type WindowKey = (String, String, String, String, bool);

/// Per object and reason: the window open now and what it folded.
struct Window {
    opened: Instant,
    published: u32,
    folded: u32,
    /// The latest folded Event, the model of the summary.
    last: Option<Item>,
}

/// Lets through the first [`BURST`] Events of one reason about one object in
/// each [`WINDOW`] and folds the rest into one summary at the window's end.
#[derive(Default)]
struct Coalescer {
    windows: HashMap<WindowKey, Window>,
}

impl Coalescer {
    /// The Event to publish now, if `item` is not folded into a summary.
    fn offer(&mut self, item: Item, now: Instant) -> Option<Item> {
        let (event, reference) = &item;
        let key = (
            reference.namespace.clone().unwrap_or_default(),
            reference.name.clone().unwrap_or_default(),
            reference.uid.clone().unwrap_or_default(),
            event.reason.clone(),
            matches!(event.type_, EventType::Warning),
        );
        let window = self.windows.entry(key).or_insert(Window {
            opened: now,
            published: 0,
            folded: 0,
            last: None,
        });
        if window.published < BURST && window.folded == 0 {
            window.published += 1;
            Some(item)
        } else {
            window.folded += 1;
            window.last = Some(item);
            None
        }
    }

    /// The summaries of the windows that closed by `now`; closed windows that
    /// folded nothing are forgotten.
    fn due(&mut self, now: Instant) -> Vec<Item> {
        let mut summaries = Vec::new();
        self.windows.retain(|_, w| {
            if now.duration_since(w.opened) < WINDOW {
                return true;
            }
            summaries.extend(summary(w));
            false
        });
        summaries
    }

    /// The summaries of every open window (at shutdown).
    fn drain(&mut self) -> Vec<Item> {
        self.windows
            .drain()
            .filter_map(|(_, w)| summary(&w))
            .collect()
    }
}

/// One Event that stands for the Events a window folded.
fn summary(window: &Window) -> Option<Item> {
    let (event, reference) = window.last.as_ref()?;
    let n = window.folded;
    let latest = event.note.as_deref().unwrap_or_default();
    let note = if n == 1 {
        latest.to_string()
    } else {
        format!(
            "{n} {} Events in {} s after the first {}, folded into this one (Karo's log has each); the latest: {latest}",
            event.reason,
            WINDOW.as_secs(),
            window.published,
        )
    };
    Some((
        Event {
            type_: event.type_,
            reason: event.reason.clone(),
            note: Some(truncate(note, 1024)),
            action: event.action.clone(),
            secondary: event.secondary.clone(),
        },
        reference.clone(),
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, reason: &str, note: &str) -> Item {
        (
            Event {
                type_: EventType::Normal,
                reason: reason.into(),
                note: Some(note.into()),
                action: reason.into(),
                secondary: None,
            },
            ObjectReference {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
        )
    }

    fn notes(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|(e, r)| {
                format!(
                    "{} {}: {}",
                    r.name.as_deref().unwrap_or_default(),
                    e.reason,
                    e.note.as_deref().unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn a_burst_is_published_one_by_one_then_summed_up_at_the_windows_end() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        let mut now_published = Vec::new();
        for i in 0..12 {
            now_published.extend(c.offer(item("r", "Triggered", &format!("Job j{i}")), t0));
        }
        assert_eq!(now_published.len(), BURST as usize);
        assert_eq!(notes(&now_published)[0], "r Triggered: Job j0");
        // Another reason and another reaction have windows of their own.
        assert!(c.offer(item("r", "Succeeded", "Job j0"), t0).is_some());
        assert!(c.offer(item("other", "Triggered", "Job k0"), t0).is_some());
        assert!(c.due(t0 + WINDOW / 2).is_empty());
        let summaries = c.due(t0 + WINDOW);
        assert_eq!(summaries.len(), 1, "{:?}", notes(&summaries));
        let note = &notes(&summaries)[0];
        assert!(
            note.starts_with("r Triggered: 7 Triggered Events in 10 s after the first 5")
                && note.ends_with("the latest: Job j11"),
            "{note}"
        );
        // A new window publishes again.
        assert!(c
            .offer(item("r", "Triggered", "Job j12"), t0 + WINDOW)
            .is_some());
    }

    #[test]
    fn one_folded_event_is_published_as_it_was_and_shutdown_publishes_open_windows() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        for i in 0..=BURST {
            let _ = c.offer(item("r", "Skipped", &format!("cooldown {i}")), t0);
        }
        let _ = c.offer(item("q", "Skipped", "alone"), t0);
        let drained = c.drain();
        assert_eq!(notes(&drained), vec!["r Skipped: cooldown 5".to_string()]);
        assert!(c.due(t0 + WINDOW * 2).is_empty());
    }
}
