//! Executes a notification's plan: for every action the plan says to create,
//! check the gates against the cluster, take from the global Job budget, create
//! the Job; then record what happened (the summary the webhook answers, the
//! reaction's counters, Events, metrics).
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
use kube::api::PostParams;
use kube::runtime::events::EventType;
use kube::{Api, Client};
use serde::Serialize;
use tracing::{info, warn};

use crate::core::plan::{self, ActionPlan, Decision, Gates, Step};
use crate::core::reaction::CompiledReaction;
use crate::core::render::Renderer;
use crate::core::snapshot::Snapshot;
use crate::daemon::events::{EventSender, NotificationEvents};
use crate::daemon::gate::{gate, Gate};
use crate::daemon::index::ReactionIndex;
use crate::daemon::limits::RateLimiter;
use crate::daemon::metrics::{ErrorKind, Metrics, SkipReason};
use crate::daemon::status::{StatusDelta, StatusHandle};
use crate::model::alert::{Alert, Notification};
use crate::model::crd::JobReference;

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

/// What happened to one action of one matched alert.
#[derive(Debug, Clone)]
enum Outcome {
    Created(JobReference),
    Deduplicated(String),
    Skipped,
    DryRun(String),
    Failed { retryable: bool, message: String },
}

/// Why a Job was not created.
#[derive(Debug, thiserror::Error)]
enum CreateError {
    #[error("cannot list Jobs: {0}")]
    List(#[source] kube::Error),
    #[error("cannot create Job {job}: {source}")]
    Create {
        job: String,
        #[source]
        source: kube::Error,
    },
}

impl CreateError {
    /// Worth a retry by Alertmanager: the API server was unreachable, overloaded
    /// or failed; not when it judged the Job invalid or forbidden.
    fn retryable(&self) -> bool {
        match self {
            CreateError::List(_) => true,
            CreateError::Create { source, .. } => match source {
                kube::Error::Api(s) => s.code >= 500 || s.code == 429 || s.code == 409,
                _ => true,
            },
        }
    }

    /// The `errors_total` label.
    fn kind(&self) -> ErrorKind {
        if self.retryable() {
            ErrorKind::Api
        } else {
            ErrorKind::JobRejected
        }
    }
}

/// What the executor works with: the narrow handles of the daemon's parts.
pub struct Executor {
    pub client: Client,
    pub index: Arc<ReactionIndex>,
    pub renderer: Arc<Renderer>,
    pub status: StatusHandle,
    pub events: EventSender,
    pub metrics: Arc<Metrics>,
    /// The global Job creation budget (`limits.maxJobsPerMinute`).
    pub rate: RateLimiter,
}

/// One action carried out: for which reaction and alert, and what happened.
struct Executed {
    reaction: Arc<CompiledReaction>,
    alert: usize,
    /// The action's position in the reaction.
    position: usize,
    outcome: Outcome,
}

/// The outcomes of one reaction for one alert, in action order.
type OccurrenceOutcomes = (Arc<CompiledReaction>, Vec<(usize, Outcome)>);

/// One action to execute, with the alert and reaction it belongs to.
struct Task {
    reaction: Arc<CompiledReaction>,
    alert: usize,
    position: usize,
    action: ActionPlan,
}

impl Executor {
    /// Handles one notification under one configuration snapshot (that of the
    /// request). Never fails as a whole: each Job's fate is in the summary.
    pub async fn handle(&self, notification: Notification, snapshot: &Snapshot) -> Summary {
        let plan = plan::plan(&notification, self.index.as_ref(), &self.renderer, snapshot);
        let m = &self.metrics;
        let mut summary = Summary {
            received: notification.alerts.len(),
            ..Default::default()
        };
        let mut tasks = Vec::new();
        for (ai, (alert, alert_plan)) in notification.alerts.iter().zip(plan.alerts).enumerate() {
            m.alerts_received
                .with_label_values(&[alert.status.as_str()])
                .inc();
            for candidate in alert_plan.candidates {
                let Decision::Matched { actions } = candidate.decision else {
                    continue;
                };
                summary.matched += 1;
                m.alerts_matched.inc();
                for (position, action) in actions.into_iter().enumerate() {
                    tasks.push(Task {
                        reaction: candidate.reaction.clone(),
                        alert: ai,
                        position,
                        action,
                    });
                }
            }
        }

        let limit = snapshot.config.limits.max_concurrent_creates.max(1);
        let events = NotificationEvents::new(self.events.clone());
        let results: Vec<Executed> = futures::stream::iter(tasks)
            .map(|task| {
                let alert = &notification.alerts[task.alert];
                let events = &events;
                async move {
                    let outcome = self
                        .execute(snapshot, &task.reaction, alert, task.action, events)
                        .await;
                    Executed {
                        reaction: task.reaction,
                        alert: task.alert,
                        position: task.position,
                        outcome,
                    }
                }
            })
            .buffer_unordered(limit)
            .collect()
            .await;
        events.finish();
        self.record(results, &mut summary);
        summary
    }

    /// Tallies the outcomes into the summary and queues one status update per
    /// reaction, covering every occurrence it handled here.
    fn record(&self, results: Vec<Executed>, summary: &mut Summary) {
        let mut occurrences: BTreeMap<(String, String, usize), OccurrenceOutcomes> =
            BTreeMap::new();
        for Executed {
            reaction,
            alert,
            position,
            outcome,
        } in results
        {
            match &outcome {
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
            let key = (reaction.namespace.clone(), reaction.name.clone(), alert);
            occurrences
                .entry(key)
                .or_insert_with(|| (reaction, Vec::new()))
                .1
                .push((position, outcome));
        }
        let mut per_reaction: BTreeMap<(String, String), (Arc<CompiledReaction>, StatusDelta)> =
            BTreeMap::new();
        for ((ns, name, _), (reaction, mut outcomes)) in occurrences {
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
                let (_, delta) = per_reaction
                    .entry((ns, name))
                    .or_insert_with(|| (reaction, StatusDelta::default()));
                if counts {
                    delta.triggers += 1;
                    self.metrics.alert_reactions.inc();
                }
                delta.jobs.extend(created);
            }
        }
        // Written in the background, coalesced with other notifications' updates
        // of the same reaction: the answer does not wait for it.
        for (reaction, delta) in per_reaction.into_values() {
            self.status.add(&reaction, delta);
        }
    }

    /// Carries out one action's step.
    async fn execute(
        &self,
        snapshot: &Snapshot,
        reaction: &Arc<CompiledReaction>,
        alert: &Alert,
        action: ActionPlan,
        events: &NotificationEvents,
    ) -> Outcome {
        let ActionPlan {
            action,
            job_name,
            step,
        } = action;
        let m = &self.metrics;
        match step {
            Step::Suspended => self.skip(
                events,
                reaction,
                &action,
                alert,
                &job_name,
                SkipReason::Suspended,
                "the reaction is suspended",
            ),
            Step::RenderFailed(e) => {
                m.render_failures.inc();
                m.error(ErrorKind::Render);
                warn!(reaction = %reaction.name, namespace = %reaction.namespace, action = %action, fingerprint = %alert.fingerprint, error = %e, "cannot render Job");
                events.publish(
                    reaction,
                    EventType::Warning,
                    "Failed",
                    format!(
                        "Cannot render the Job of action {action:?} for alert {}: {e}",
                        alert.fingerprint
                    ),
                );
                Outcome::Failed {
                    retryable: false,
                    message: format!("{}/{}: {e}", reaction.namespace, reaction.name),
                }
            }
            Step::DryRun { job, .. } => {
                m.jobs_dry_run.inc();
                let yaml = serde_yaml::to_string(&job).unwrap_or_default();
                info!(reaction = %reaction.name, namespace = %reaction.namespace, action = %action, fingerprint = %alert.fingerprint, job = %job_name, "dry run: Job rendered, not created\n{yaml}");
                events.publish(
                    reaction,
                    EventType::Normal,
                    "Skipped",
                    format!(
                        "Dry run: Job {job_name} rendered for alert {}, not created",
                        alert.fingerprint
                    ),
                );
                Outcome::DryRun(job_name)
            }
            Step::Create { job, gates } => {
                match self
                    .create(snapshot, reaction, alert, &action, &job, gates, events)
                    .await
                {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        let retryable = e.retryable();
                        m.error(e.kind());
                        warn!(reaction = %reaction.name, namespace = %reaction.namespace, action = %action, fingerprint = %alert.fingerprint, job = %job_name, error = %e, retryable, "cannot create Job");
                        if !retryable {
                            events.publish(
                                reaction,
                                EventType::Warning,
                                "Failed",
                                capitalized(&e.to_string()),
                            );
                        }
                        Outcome::Failed {
                            retryable,
                            message: format!("{}/{}: {e}", reaction.namespace, reaction.name),
                        }
                    }
                }
            }
        }
    }

    /// Gates, budget, create.
    #[allow(clippy::too_many_arguments)]
    async fn create(
        &self,
        snapshot: &Snapshot,
        reaction: &Arc<CompiledReaction>,
        alert: &Alert,
        action: &str,
        job: &Job,
        gates: Gates,
        events: &NotificationEvents,
    ) -> Result<Outcome, CreateError> {
        let name = job.metadata.name.clone().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.client.clone(), &reaction.namespace);
        if gates.any() {
            match gate(&api, reaction, gates, action, alert, &name)
                .await
                .map_err(CreateError::List)?
            {
                Gate::Proceed => {}
                Gate::Exists => return Ok(self.deduplicated(events, reaction, action, alert, name)),
                Gate::Skip(reason, why) => {
                    return Ok(self.skip(events, reaction, action, alert, &name, reason, &why))
                }
            }
        }
        let now = std::time::Instant::now();
        let limit = snapshot.config.limits.max_jobs_per_minute;
        if !self.rate.try_acquire(limit, now) {
            return Ok(self.skip(
                events,
                reaction,
                action,
                alert,
                &name,
                SkipReason::RateLimit,
                &format!("limits.maxJobsPerMinute ({limit}) reached"),
            ));
        }
        let pp = PostParams {
            field_manager: Some("karo".into()),
            ..Default::default()
        };
        let result = api.create(&pp, job).await;
        if result.is_err() {
            self.rate.release(now);
        }
        match result {
            Ok(created) => {
                self.metrics.jobs_created.inc();
                info!(reaction = %reaction.name, namespace = %reaction.namespace, action = %action, fingerprint = %alert.fingerprint, job = %name, "Job created");
                events.publish(
                    reaction,
                    EventType::Normal,
                    "Triggered",
                    format!(
                        "Created Job {name} for alert {} ({})",
                        alert.alert_name(),
                        alert.fingerprint
                    ),
                );
                Ok(Outcome::Created(JobReference {
                    name,
                    namespace: reaction.namespace.clone(),
                    action_name: action.to_string(),
                    created_at: created
                        .metadata
                        .creation_timestamp
                        .unwrap_or_else(|| Time(jiff::Timestamp::now())),
                }))
            }
            Err(kube::Error::Api(status))
                if status.code == 409 && status.reason == "AlreadyExists" =>
            {
                Ok(self.deduplicated(events, reaction, action, alert, name))
            }
            Err(source) => Err(CreateError::Create { job: name, source }),
        }
    }

    fn deduplicated(
        &self,
        events: &NotificationEvents,
        reaction: &Arc<CompiledReaction>,
        action: &str,
        alert: &Alert,
        job: String,
    ) -> Outcome {
        self.metrics.jobs_deduplicated.inc();
        let note = format!(
            "Job {job} exists already for alert {} (repeated delivery)",
            alert.fingerprint
        );
        let message = "Job exists already: deduplicated";
        self.report(
            events,
            (reaction, action, alert, &job),
            "Deduplicated",
            note,
            message,
        );
        Outcome::Deduplicated(job)
    }

    #[allow(clippy::too_many_arguments)]
    fn skip(
        &self,
        events: &NotificationEvents,
        reaction: &Arc<CompiledReaction>,
        action: &str,
        alert: &Alert,
        job: &str,
        reason: SkipReason,
        why: &str,
    ) -> Outcome {
        self.metrics.skipped(reason);
        let reason = reason.label();
        let note = format!(
            "Skipped Job {job} for alert {} ({reason}): {why}",
            alert.fingerprint
        );
        let message = format!("Job skipped ({reason}): {why}");
        self.report(
            events,
            (reaction, action, alert, job),
            "Skipped",
            note,
            &message,
        );
        Outcome::Skipped
    }

    /// Logs an action that created nothing, and publishes it as a Normal Event.
    fn report(
        &self,
        events: &NotificationEvents,
        (reaction, action, alert, job): (&Arc<CompiledReaction>, &str, &Alert, &str),
        event_reason: &'static str,
        note: String,
        message: &str,
    ) {
        info!(reaction = %reaction.name, namespace = %reaction.namespace, action = %action, fingerprint = %alert.fingerprint, job = %job, "{message}");
        events.publish(reaction, EventType::Normal, event_reason, note);
    }
}

/// `cannot create Job x: …` as an Event note: `Cannot create Job x: …`.
fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
