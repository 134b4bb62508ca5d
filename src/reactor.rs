//! From a notification to Jobs: match every alert against the index, build each
//! Job, apply suspend / dry run / cooldown / concurrency, create, and record.
//!
//! Exactly once: a Job's name is derived from the reaction, the action and the
//! alert occurrence, so a repeated delivery (Alertmanager repeat or retry, an HA
//! peer, another Karo replica) asks for a name that exists and gets 409, which
//! is counted as deduplicated. No state is shared beside the API server.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::Api;
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::alert::{Alert, Notification};
use crate::context::{Context, Runtime};
use crate::crd::{ConcurrencyPolicy, JobReference};
use crate::jobs::{
    self, JobInput, LABEL_ACTION, LABEL_FINGERPRINT, LABEL_OCCURRENCE, LABEL_REACTION,
};
use crate::reaction::CompiledReaction;
use crate::status::StatusDelta;

/// The JSON summary of a notification, as the webhook answers it.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Alerts in the notification.
    pub received: usize,
    /// Alert and reaction pairs that matched.
    pub matched: usize,
    pub created: usize,
    pub deduplicated: usize,
    pub skipped: usize,
    pub dry_run: usize,
    pub failed: usize,
    /// Names of the Jobs created, deduplicated or (in dry run) rendered.
    pub jobs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Some Job could not be created for a reason worth retrying.
    #[serde(skip)]
    pub retry: bool,
}

/// What happened to one Job of one matched alert.
#[derive(Debug, Clone)]
enum Outcome {
    Created(JobReference),
    Deduplicated(String),
    Skipped,
    DryRun(String),
    Failed { retryable: bool, message: String },
}

struct Task {
    reaction: Arc<CompiledReaction>,
    alert: usize,
    source: usize,
}

/// Handles one notification. Never fails as a whole: each Job's fate is in the summary.
pub async fn handle(ctx: &Arc<Context>, notification: Notification) -> Summary {
    let runtime = ctx.runtime();
    let notification = Arc::new(notification);
    let m = &ctx.metrics;
    let mut summary = Summary {
        received: notification.alerts.len(),
        ..Default::default()
    };
    let mut tasks = Vec::new();
    for (ai, alert) in notification.alerts.iter().enumerate() {
        m.alerts_received
            .with_label_values(&[alert.status.as_str()])
            .inc();
        for reaction in ctx.index.lookup(alert.alert_name()) {
            if !reaction.matchers.matches(alert) {
                continue;
            }
            if !reaction.spec.trigger_on.contains(&alert.status) {
                continue;
            }
            summary.matched += 1;
            m.alerts_matched.inc();
            for si in 0..reaction.sources.len() {
                tasks.push(Task {
                    reaction: reaction.clone(),
                    alert: ai,
                    source: si,
                });
            }
        }
    }

    let limit = runtime.config.limits.max_concurrent_creates.max(1);
    let events = Arc::new(Events::default());
    let results: Vec<(Task, Outcome)> = futures::stream::iter(tasks)
        .map(|task| {
            let ctx = ctx.clone();
            let runtime = runtime.clone();
            let notification = notification.clone();
            let events = events.clone();
            async move {
                let outcome = run_task(&ctx, &runtime, &notification, &task, &events).await;
                (task, outcome)
            }
        })
        .buffer_unordered(limit)
        .collect()
        .await;
    if let Ok(events) = Arc::try_unwrap(events) {
        events.finish(ctx);
    }

    // One status update per reaction, covering every occurrence it handled here.
    let mut per_reaction: BTreeMap<(String, String), StatusDelta> = BTreeMap::new();
    // Outcomes by (reaction, alert), in source order, decide whether this process
    // counts the trigger.
    let mut occurrences: BTreeMap<(String, String, usize), Vec<(usize, Outcome)>> = BTreeMap::new();
    for (task, outcome) in &results {
        let key = (
            task.reaction.namespace.clone(),
            task.reaction.name.clone(),
            task.alert,
        );
        occurrences
            .entry(key)
            .or_default()
            .push((task.source, outcome.clone()));
        match outcome {
            Outcome::Created(r) => {
                summary.created += 1;
                summary.jobs.push(r.name.clone());
            }
            Outcome::Deduplicated(name) => {
                summary.deduplicated += 1;
                summary.jobs.push(name.clone());
            }
            Outcome::Skipped => summary.skipped += 1,
            Outcome::DryRun(name) => {
                summary.dry_run += 1;
                summary.jobs.push(name.clone());
            }
            Outcome::Failed { retryable, message } => {
                summary.failed += 1;
                summary.retry |= *retryable;
                summary.errors.push(message.clone());
            }
        }
    }
    let reactions: BTreeMap<(String, String), Arc<CompiledReaction>> = results
        .iter()
        .map(|(t, _)| {
            (
                (t.reaction.namespace.clone(), t.reaction.name.clone()),
                t.reaction.clone(),
            )
        })
        .collect();
    for ((ns, name, _), mut outcomes) in occurrences {
        outcomes.sort_by_key(|(i, _)| *i);
        // The process that created the first Job it attempted counts the trigger:
        // a replica that only deduplicated does not, so the count stays exact.
        let first_attempt = outcomes.iter().find(|(_, o)| {
            matches!(
                o,
                Outcome::Created(_) | Outcome::Deduplicated(_) | Outcome::DryRun(_)
            )
        });
        let counts = matches!(
            first_attempt,
            Some((_, Outcome::Created(_))) | Some((_, Outcome::DryRun(_)))
        );
        let created: Vec<JobReference> = outcomes
            .iter()
            .filter_map(|(_, o)| match o {
                Outcome::Created(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        if counts || !created.is_empty() {
            let delta = per_reaction.entry((ns, name)).or_default();
            if counts {
                delta.triggers += 1;
                m.alert_reactions.inc();
            }
            delta.jobs.extend(created);
        }
    }
    // Recorded in the background, coalesced with other notifications' updates
    // of the same reaction: the answer does not wait for it.
    for (key, delta) in per_reaction {
        if let Some(reaction) = reactions.get(&key) {
            ctx.status.add(reaction.clone(), delta);
        }
    }
    summary
}

async fn run_task(
    ctx: &Arc<Context>,
    runtime: &Runtime,
    notification: &Notification,
    task: &Task,
    events: &Events,
) -> Outcome {
    let reaction = &task.reaction;
    let source = &reaction.sources[task.source];
    let alert = &notification.alerts[task.alert];
    let m = &ctx.metrics;
    // Suspended: nothing is rendered either, so a broken template stays quiet.
    if reaction.spec.suspend {
        return skip(
            ctx,
            events,
            reaction,
            &source.action_name,
            alert,
            &jobs::job_name(reaction, &source.action_name, alert),
            "suspended",
            "the reaction is suspended",
        );
    }
    let job = match jobs::build_job(&JobInput {
        reaction,
        source,
        alert,
        notification,
        renderer: &ctx.renderer,
        skeleton: &runtime.skeleton,
        defaults: &runtime.config.job_defaults,
    }) {
        Ok(job) => job,
        Err(e) => {
            m.render_failures.inc();
            m.error("render");
            let message = format!("{}/{}: {e}", reaction.namespace, reaction.name);
            warn!(reaction = %reaction.name, namespace = %reaction.namespace, action = %source.action_name, fingerprint = %alert.fingerprint, error = %e, "cannot render Job");
            events.publish(
                ctx,
                reaction,
                EventType::Warning,
                "Failed",
                format!(
                    "Cannot render the Job of action {:?} for alert {}: {e}",
                    source.action_name, alert.fingerprint
                ),
            );
            return Outcome::Failed {
                retryable: false,
                message,
            };
        }
    };
    let name = job.metadata.name.clone().unwrap_or_default();

    if reaction.spec.dry_run || runtime.config.dry_run {
        m.jobs_dry_run.inc();
        let yaml = serde_yaml::to_string(&job).unwrap_or_default();
        info!(reaction = %reaction.name, namespace = %reaction.namespace, action = %source.action_name, fingerprint = %alert.fingerprint, job = %name, "dry run: Job rendered, not created\n{yaml}");
        events.publish(
            ctx,
            reaction,
            EventType::Normal,
            "Skipped",
            format!(
                "Dry run: Job {name} rendered for alert {}, not created",
                alert.fingerprint
            ),
        );
        return Outcome::DryRun(name);
    }

    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &reaction.namespace);
    if reaction.cooldown.is_some() || reaction.spec.concurrency_policy == ConcurrencyPolicy::Forbid
    {
        match gate(&jobs_api, reaction, &source.action_name, alert, &name).await {
            Ok(Gate::Proceed) => {}
            Ok(Gate::Exists) => {
                return deduplicated(ctx, events, reaction, &source.action_name, alert, name)
            }
            Ok(Gate::Skip(reason, why)) => {
                return skip(
                    ctx,
                    events,
                    reaction,
                    &source.action_name,
                    alert,
                    &name,
                    reason,
                    &why,
                )
            }
            Err(e) => {
                m.error("api");
                return Outcome::Failed {
                    retryable: true,
                    message: format!(
                        "{}/{}: cannot list Jobs: {e}",
                        reaction.namespace, reaction.name
                    ),
                };
            }
        }
    }

    let now = std::time::Instant::now();
    let limit = runtime.config.limits.max_jobs_per_minute;
    if !ctx.rate.try_acquire(limit, now) {
        return skip(
            ctx,
            events,
            reaction,
            &source.action_name,
            alert,
            &name,
            "rate_limit",
            &format!("limits.maxJobsPerMinute ({limit}) reached"),
        );
    }
    let pp = PostParams {
        field_manager: Some("karo".into()),
        ..Default::default()
    };
    let result = jobs_api.create(&pp, &job).await;
    if result.is_err() {
        ctx.rate.release(now);
    }
    match result {
        Ok(created) => {
            m.jobs_created.inc();
            info!(reaction = %reaction.name, namespace = %reaction.namespace, action = %source.action_name, fingerprint = %alert.fingerprint, job = %name, "Job created");
            events.publish(
                ctx,
                reaction,
                EventType::Normal,
                "Triggered",
                format!(
                    "Created Job {name} for alert {} ({})",
                    alert.alert_name(),
                    alert.fingerprint
                ),
            );
            Outcome::Created(JobReference {
                name,
                namespace: reaction.namespace.clone(),
                action_name: source.action_name.clone(),
                created_at: created
                    .metadata
                    .creation_timestamp
                    .unwrap_or_else(|| Time(jiff::Timestamp::now())),
            })
        }
        Err(kube::Error::Api(status)) if status.code == 409 && status.reason == "AlreadyExists" => {
            deduplicated(ctx, events, reaction, &source.action_name, alert, name)
        }
        Err(e) => {
            let retryable = is_retryable(&e);
            m.error(if retryable { "api" } else { "job_rejected" });
            warn!(reaction = %reaction.name, namespace = %reaction.namespace, action = %source.action_name, fingerprint = %alert.fingerprint, job = %name, error = %e, retryable, "cannot create Job");
            if !retryable {
                events.publish(
                    ctx,
                    reaction,
                    EventType::Warning,
                    "Failed",
                    format!("Cannot create Job {name}: {e}"),
                );
            }
            Outcome::Failed {
                retryable,
                message: format!(
                    "{}/{}: cannot create Job {name}: {e}",
                    reaction.namespace, reaction.name
                ),
            }
        }
    }
}

/// Worth a retry by Alertmanager: the API server was unreachable, overloaded or
/// failed; not when it judged the Job invalid or forbidden.
fn is_retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code >= 500 || s.code == 429 || s.code == 409,
        _ => true,
    }
}

fn deduplicated(
    ctx: &Arc<Context>,
    events: &Events,
    reaction: &Arc<CompiledReaction>,
    action: &str,
    alert: &Alert,
    job: String,
) -> Outcome {
    ctx.metrics.jobs_deduplicated.inc();
    info!(reaction = %reaction.name, namespace = %reaction.namespace, action = %action, fingerprint = %alert.fingerprint, job = %job, "Job exists already: deduplicated");
    events.publish(
        ctx,
        reaction,
        EventType::Normal,
        "Deduplicated",
        format!(
            "Job {job} exists already for alert {} (repeated delivery)",
            alert.fingerprint
        ),
    );
    Outcome::Deduplicated(job)
}

#[allow(clippy::too_many_arguments)]
fn skip(
    ctx: &Arc<Context>,
    events: &Events,
    reaction: &Arc<CompiledReaction>,
    action: &str,
    alert: &Alert,
    job: &str,
    reason: &'static str,
    why: &str,
) -> Outcome {
    ctx.metrics.skipped(reason);
    info!(reaction = %reaction.name, namespace = %reaction.namespace, action = %action, fingerprint = %alert.fingerprint, job = %job, reason, "Job skipped: {why}");
    events.publish(
        ctx,
        reaction,
        EventType::Normal,
        "Skipped",
        format!(
            "Skipped Job {job} for alert {} ({reason}): {why}",
            alert.fingerprint
        ),
    );
    Outcome::Skipped
}

enum Gate {
    Proceed,
    /// The Job of this very occurrence exists: a duplicate delivery.
    Exists,
    Skip(&'static str, String),
}

/// Cooldown and `concurrencyPolicy: Forbid`, decided from the Jobs in the API
/// server. Jobs of the same occurrence do not block: their creation deduplicates.
async fn gate(
    api: &Api<Job>,
    reaction: &CompiledReaction,
    action: &str,
    alert: &Alert,
    name: &str,
) -> Result<Gate, kube::Error> {
    let occurrence = jobs::occurrence_id(alert);
    let reaction_label = jobs::sanitize_label_value(&reaction.name);
    if let Some(window) = reaction.cooldown {
        let selector = format!(
            "{LABEL_REACTION}={reaction_label},{LABEL_FINGERPRINT}={}",
            jobs::sanitize_label_value(&alert.fingerprint)
        );
        let Some(owned) = owned_jobs(api, reaction, &selector, name).await? else {
            return Ok(Gate::Exists);
        };
        let now = jiff::Timestamp::now();
        let window = jiff::SignedDuration::try_from(window).unwrap_or(jiff::SignedDuration::MAX);
        for j in &owned {
            if same_occurrence(j, &occurrence) {
                continue;
            }
            if let Some(t) = &j.metadata.creation_timestamp {
                if now.duration_since(t.0) < window {
                    return Ok(Gate::Skip(
                        "cooldown",
                        format!(
                            "Job {} ran for this alert less than {} ago",
                            j.metadata.name.as_deref().unwrap_or(""),
                            reaction.spec.cooldown.as_deref().unwrap_or("")
                        ),
                    ));
                }
            }
        }
    }
    if reaction.spec.concurrency_policy == ConcurrencyPolicy::Forbid {
        let selector = format!(
            "{LABEL_REACTION}={reaction_label},{LABEL_ACTION}={}",
            jobs::sanitize_label_value(action)
        );
        let Some(owned) = owned_jobs(api, reaction, &selector, name).await? else {
            return Ok(Gate::Exists);
        };
        for j in &owned {
            if !same_occurrence(j, &occurrence) && is_active(j) {
                return Ok(Gate::Skip(
                    "concurrency",
                    format!(
                        "Job {} of this action is still active (concurrencyPolicy: Forbid)",
                        j.metadata.name.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
    }
    Ok(Gate::Proceed)
}

/// The reaction's Jobs that match `selector`, or `None` when the Job `name`
/// itself is among them (a duplicate delivery).
async fn owned_jobs(
    api: &Api<Job>,
    reaction: &CompiledReaction,
    selector: &str,
    name: &str,
) -> Result<Option<Vec<Job>>, kube::Error> {
    let list = api.list(&ListParams::default().labels(selector)).await?;
    let owned: Vec<Job> = list
        .items
        .into_iter()
        .filter(|j| owned_by(j, reaction))
        .collect();
    if owned
        .iter()
        .any(|j| j.metadata.name.as_deref() == Some(name))
    {
        return Ok(None);
    }
    Ok(Some(owned))
}

fn same_occurrence(job: &Job, occurrence: &str) -> bool {
    job.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_OCCURRENCE))
        .is_some_and(|o| o == occurrence)
}

fn owned_by(job: &Job, reaction: &CompiledReaction) -> bool {
    job.metadata
        .owner_references
        .as_ref()
        .is_some_and(|refs| refs.iter().any(|r| r.uid == reaction.uid))
}

/// A Job is active until it has a `Complete` or `Failed` condition.
fn is_active(job: &Job) -> bool {
    let finished = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        });
    !finished
}

/// Events of one notification. A storm of alerts must not become a storm of
/// Events: per reaction and reason, the first few are published one by one and
/// the rest are summed up in one more.
#[derive(Default)]
struct Events {
    counts: std::sync::Mutex<BTreeMap<EventKey, EventCount>>,
}

/// Namespace, name and reason.
type EventKey = (String, String, &'static str);
/// How many, for which reaction, of which type.
type EventCount = (usize, Arc<CompiledReaction>, EventType);

/// Events published one by one per reaction and reason in one notification.
const EVENTS_PER_REASON: usize = 5;

impl Events {
    /// Publishes without holding up the webhook's answer.
    fn publish(
        &self,
        ctx: &Arc<Context>,
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
            spawn_event(ctx, reaction, type_, reason, note);
        }
    }

    /// One summary Event per reaction and reason that went over the budget.
    fn finish(self, ctx: &Arc<Context>) {
        let counts = match self.counts.into_inner() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        for ((_, _, reason), (n, reaction, type_)) in counts {
            if n > EVENTS_PER_REASON {
                let more = n - EVENTS_PER_REASON;
                spawn_event(
                    ctx,
                    &reaction,
                    type_,
                    reason,
                    format!("{more} more {reason} events for this notification ({n} in all); see Karo's log for each Job"),
                );
            }
        }
    }
}

fn spawn_event(
    ctx: &Arc<Context>,
    reaction: &CompiledReaction,
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
    if !ctx.events.publish(event, reaction.object_ref()) {
        ctx.metrics.error("event");
        debug!(reaction = %reaction.name, reason, "Event queue full; Event dropped");
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
