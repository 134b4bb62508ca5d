//! Executes a notification's plan on the webhook's path: every matched alert
//! occurrence gets its AlertReactionRun, carrying the Jobs to create, rendered;
//! then what happened is recorded (the summary the webhook answers, Events,
//! metrics). The Runs' Jobs are created by the runner (`daemon::runs`), which
//! follows them to their outcome.
//!
//! Exactly once: a Run's name is derived from the reaction and the alert
//! occurrence, so a repeated delivery (Alertmanager repeat or retry, an HA peer,
//! another Karo replica) asks for a Run that exists and gets 409: a duplicate,
//! recorded on the Run as `lastSeen`. No state is shared beside the API server.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, Client};
use serde::Serialize;
use serde_json::json;
use tracing::{debug, info, warn};

use crate::core::jobs;
use crate::core::plan::{self, ActionPlan, Decision, Step};
use crate::core::reaction::CompiledReaction;
use crate::core::render::Renderer;
use crate::core::run::{self as runs};
use crate::core::snapshot::Snapshot;
use crate::daemon::events::EventSender;
use crate::daemon::index::ReactionIndex;
use crate::daemon::metrics::{ErrorKind, Metrics, SkipReason};
use crate::daemon::status::{StatusDelta, StatusHandle};
use crate::model::alert::{Alert, Notification};
use crate::model::crd::AlertStatus;
use crate::model::run::{AlertReactionRun, RunAction};

/// The JSON summary of a notification, as the webhook answers it.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Alerts in the notification.
    pub received: usize,
    /// Alert and reaction pairs that matched.
    pub matched: usize,
    /// Runs created (occurrences accepted for the first time).
    pub created: usize,
    /// Occurrences whose Run existed already (a repeated delivery).
    pub deduplicated: usize,
    pub skipped: usize,
    pub dry_run: usize,
    pub failed: usize,
    /// Names of the Runs created or found.
    pub runs: Vec<String>,
    /// Names of the Jobs those Runs create, and of the Jobs rendered in dry run.
    pub jobs: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Some Run could not be created for a reason worth retrying.
    #[serde(skip)]
    pub retry: bool,
}

/// What happened to one occurrence's Run, or to one action that needs none.
#[derive(Debug, Clone)]
enum Outcome {
    Created {
        run: String,
        jobs: Vec<String>,
    },
    /// A Run recorded in dry run: its Jobs rendered, none created.
    DryRun {
        run: String,
        jobs: Vec<String>,
    },
    Deduplicated {
        run: String,
        jobs: Vec<String>,
    },
    Skipped,
    Failed {
        retryable: bool,
        message: String,
    },
}

/// Worth a retry by Alertmanager: the API server was unreachable, overloaded
/// or failed; not when it judged the object invalid or forbidden.
pub fn retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code >= 500
                || s.code == 429
                || s.code == 409
                || s.code == 401
                || (s.code == 403 && s.message.contains("exceeded quota"))
        }
        _ => true,
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
}

/// One thing to do for the notification: create a Run, or report an action
/// that needs none.
enum Task {
    Run {
        reaction: Arc<CompiledReaction>,
        run: Box<AlertReactionRun>,
        alert: usize,
    },
    Report {
        reaction: Arc<CompiledReaction>,
        alert: usize,
        action: ActionPlan,
    },
}

impl Executor {
    /// Handles one notification under one configuration snapshot (that of the
    /// request). Never fails as a whole: each occurrence's fate is in the summary.
    pub async fn handle(&self, notification: Notification, snapshot: &Snapshot) -> Summary {
        self.truncated(&notification);
        let plan = plan::plan(&notification, self.index.as_ref(), &self.renderer, snapshot);
        let m = &self.metrics;
        let mut summary = Summary {
            received: notification.alerts.len(),
            ..Default::default()
        };
        let mut tasks = Vec::new();
        let mut resolved = Vec::new();
        for (ai, (alert, alert_plan)) in notification.alerts.iter().zip(plan.alerts).enumerate() {
            m.alerts_received
                .with_label_values(&[alert.status.as_str()])
                .inc();
            for candidate in alert_plan.candidates {
                let reaction = candidate.reaction;
                let actions = match candidate.decision {
                    Decision::NoMatch { .. } => continue,
                    Decision::NotTriggered => {
                        if alert.status == AlertStatus::Resolved {
                            resolved.push((reaction, ai));
                        }
                        continue;
                    }
                    Decision::Matched { actions } => actions,
                };
                if alert.status == AlertStatus::Resolved {
                    resolved.push((reaction.clone(), ai));
                }
                summary.matched += 1;
                m.alerts_matched.inc();
                let mut run_actions: Vec<RunAction> = Vec::new();
                let mut dry_run = false;
                for action in actions {
                    match &action.step {
                        Step::Create { job, .. } | Step::DryRun { job, .. } => {
                            match runs::run_action(&action.action, job) {
                                Ok(a) => {
                                    dry_run |= matches!(action.step, Step::DryRun { .. });
                                    run_actions.push(a);
                                }
                                Err(e) => tasks.push(Task::Report {
                                    reaction: reaction.clone(),
                                    alert: ai,
                                    action: ActionPlan {
                                        step: Step::RenderFailed(jobs::BuildError::Invalid {
                                            field: format!("Job {}", action.job_name),
                                            message: e.to_string(),
                                        }),
                                        ..action
                                    },
                                }),
                            }
                        }
                        _ => tasks.push(Task::Report {
                            reaction: reaction.clone(),
                            alert: ai,
                            action,
                        }),
                    }
                }
                if !run_actions.is_empty() {
                    let mut run = runs::build_run(&reaction, alert, &notification, run_actions);
                    if dry_run {
                        run = runs::dry_run(run, &reaction, alert);
                    }
                    tasks.push(Task::Run {
                        reaction,
                        run: Box::new(run),
                        alert: ai,
                    });
                }
            }
        }

        let limit = snapshot.config.limits.max_concurrent_creates.max(1);
        let events = &self.events;
        let retention = snapshot.config.runs.retention();
        let results: Vec<(Arc<CompiledReaction>, Outcome)> = futures::stream::iter(tasks)
            .map(|task| {
                let notification = &notification;
                async move {
                    match task {
                        Task::Run {
                            reaction,
                            run,
                            alert,
                        } => {
                            let alert = &notification.alerts[alert];
                            let outcome = self
                                .create_run(&reaction, *run, alert, events, retention)
                                .await;
                            (reaction, outcome)
                        }
                        Task::Report {
                            reaction,
                            alert,
                            action,
                        } => {
                            let alert = &notification.alerts[alert];
                            let outcome = self.report(&reaction, alert, action, events);
                            (reaction, outcome)
                        }
                    }
                }
            })
            .buffer_unordered(limit)
            .collect()
            .await;
        self.record(results, &mut summary);
        for (retry, message) in self.mark_resolved(&notification, resolved, limit).await {
            summary.retry |= retry;
            summary.errors.push(message);
        }
        summary
    }

    /// Alerts Alertmanager left out (`truncatedAlerts`, its receiver's
    /// `max_alerts`) never reach Karo: counted, logged, and an Event on each
    /// reaction for the notification's alert names, so nobody takes the silence
    /// for "nothing matched".
    fn truncated(&self, notification: &Notification) {
        let n = notification.truncated_alerts;
        if n == 0 {
            return;
        }
        self.metrics.alerts_truncated.inc_by(n);
        warn!(
            truncated = n,
            receiver = %notification.receiver,
            group_key = %notification.group_key,
            "Alertmanager left alerts out of this notification (max_alerts): Karo never sees them"
        );
        let mut names: Vec<&str> = notification
            .alerts
            .iter()
            .map(Alert::alert_name)
            .chain(
                notification
                    .group_labels
                    .get("alertname")
                    .map(String::as_str),
            )
            .filter(|a| !a.is_empty())
            .collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let group = plan::Reactions::for_alert(self.index.as_ref(), name);
            for reaction in group.iter().flat_map(|g| g.reactions()) {
                self.events.about(
                    reaction,
                    EventType::Warning,
                    "AlertsTruncated",
                    format!(
                        "Alertmanager left {n} alert(s) out of a notification of group {} (the receiver's max_alerts); Karo never saw them",
                        notification.group_key
                    ),
                );
            }
        }
    }

    /// Tallies the outcomes into the summary; a Run recorded in dry run counts
    /// as a trigger here, once per occurrence (other Runs count when their Jobs
    /// are created).
    fn record(&self, results: Vec<(Arc<CompiledReaction>, Outcome)>, summary: &mut Summary) {
        let mut dry: BTreeMap<(String, String), (Arc<CompiledReaction>, i64)> = BTreeMap::new();
        for (reaction, outcome) in results {
            match outcome {
                Outcome::Created { run, jobs } => {
                    summary.created += 1;
                    summary.runs.push(run);
                    summary.jobs.extend(jobs);
                }
                Outcome::Deduplicated { run, jobs } => {
                    summary.deduplicated += 1;
                    summary.runs.push(run);
                    summary.jobs.extend(jobs);
                }
                Outcome::Skipped => summary.skipped += 1,
                Outcome::DryRun { run, jobs } => {
                    summary.dry_run += jobs.len();
                    summary.runs.push(run);
                    summary.jobs.extend(jobs);
                    // One trigger per occurrence, as a Run counts when it starts.
                    let key = (reaction.namespace.clone(), reaction.name.clone());
                    dry.entry(key).or_insert_with(|| (reaction.clone(), 0)).1 += 1;
                }
                Outcome::Failed { retryable, message } => {
                    summary.failed += 1;
                    summary.retry |= retryable;
                    summary.errors.push(message);
                }
            }
        }
        for (reaction, n) in dry.into_values() {
            self.metrics.alert_reactions.inc_by(n as u64);
            self.status.add(
                &reaction,
                StatusDelta {
                    triggers: n,
                    ..Default::default()
                },
            );
        }
    }

    /// Creates the Run of one occurrence; an existing one is a repeated delivery.
    async fn create_run(
        &self,
        reaction: &Arc<CompiledReaction>,
        run: AlertReactionRun,
        alert: &Alert,
        events: &EventSender,
        retention: std::time::Duration,
    ) -> Outcome {
        let name = run.metadata.name.clone().unwrap_or_default();
        let job_names: Vec<String> = run
            .spec
            .actions
            .iter()
            .map(|a| a.job_name.clone())
            .collect();
        let api: Api<AlertReactionRun> = Api::namespaced(self.client.clone(), &reaction.namespace);
        let pp = PostParams {
            field_manager: Some("karo".into()),
            ..Default::default()
        };
        match api.create(&pp, &run).await {
            Ok(_) if runs::is_dry_run(&run) => {
                self.metrics.runs_created.inc();
                for action in &run.spec.actions {
                    self.metrics.jobs_dry_run.inc();
                    let yaml = serde_yaml::to_string(&action.job).unwrap_or_default();
                    info!(reaction = %reaction.name, namespace = %reaction.namespace, action = %action.name, fingerprint = %alert.fingerprint, run = %name, job = %action.job_name, "dry run: Job rendered, not created\n{yaml}");
                    events.about(
                        reaction,
                        EventType::Normal,
                        "Skipped",
                        format!(
                            "Dry run: Job {} rendered for alert {}, not created (Run {name})",
                            action.job_name, alert.fingerprint
                        ),
                    );
                }
                Outcome::DryRun {
                    run: name,
                    jobs: job_names,
                }
            }
            Ok(_) => {
                self.metrics.runs_created.inc();
                info!(reaction = %reaction.name, namespace = %reaction.namespace, fingerprint = %alert.fingerprint, run = %name, jobs = ?job_names, "Run created");
                Outcome::Created {
                    run: name,
                    jobs: job_names,
                }
            }
            Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
                self.metrics.jobs_deduplicated.inc();
                info!(reaction = %reaction.name, namespace = %reaction.namespace, fingerprint = %alert.fingerprint, run = %name, "Run exists already: repeated delivery");
                events.about(
                    reaction,
                    EventType::Normal,
                    "Deduplicated",
                    format!(
                        "Run {name} exists already for alert {} (repeated delivery)",
                        alert.fingerprint
                    ),
                );
                if let Err(e) = self.refresh_seen(&api, &name, retention).await {
                    warn!(run = %name, error = %e, "cannot record the repeated delivery on the Run (lastSeen)");
                }
                Outcome::Deduplicated {
                    run: name,
                    jobs: job_names,
                }
            }
            Err(e) => {
                let retryable = retryable(&e);
                self.metrics.error(if retryable {
                    ErrorKind::Api
                } else {
                    ErrorKind::JobRejected
                });
                warn!(reaction = %reaction.name, namespace = %reaction.namespace, fingerprint = %alert.fingerprint, run = %name, error = %e, retryable, "cannot create Run");
                if !retryable {
                    events.about(
                        reaction,
                        EventType::Warning,
                        "Failed",
                        format!("Cannot create Run {name}: {e}"),
                    );
                }
                Outcome::Failed {
                    retryable,
                    message: format!(
                        "{}/{}: cannot create Run {name}: {e}",
                        reaction.namespace, reaction.name
                    ),
                }
            }
        }
    }

    /// Records a repeated delivery as the Run's `lastSeen`, at most every few
    /// minutes (and always the first time).
    async fn refresh_seen(
        &self,
        api: &Api<AlertReactionRun>,
        name: &str,
        retention: std::time::Duration,
    ) -> Result<(), kube::Error> {
        let current = api.get(name).await?;
        let now = jiff::Timestamp::now();
        let refresh = jiff::SignedDuration::try_from(runs::seen_refresh(retention))
            .unwrap_or(jiff::SignedDuration::MAX);
        let stale = current
            .status
            .as_ref()
            .and_then(|s| s.last_seen.as_ref())
            .is_none_or(|t| now.duration_since(t.0) >= refresh);
        if stale {
            let patch = json!({"status": {"lastSeen": Time(now)}});
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Ok(())
    }

    /// Marks the Runs of resolved occurrences (their firing Run) with the time
    /// the alert ended: it cancels or verifies them (`onResolved`, `verify`), and
    /// retention keeps them `runs.retentionAfterResolved` more. Answered before
    /// the webhook replies, so a mark that fails for a passing reason is
    /// delivered again: the errors, each with whether it is worth a retry.
    async fn mark_resolved(
        &self,
        notification: &Notification,
        resolved: Vec<(Arc<CompiledReaction>, usize)>,
        limit: usize,
    ) -> Vec<(bool, String)> {
        let marks = resolved.into_iter().map(|(reaction, ai)| {
            let alert = &notification.alerts[ai];
            let firing = Alert {
                status: AlertStatus::Firing,
                ..alert.clone()
            };
            let ended = alert
                .ends_at
                .parse::<jiff::Timestamp>()
                .ok()
                .filter(|t| t.as_second() > 0)
                .unwrap_or_else(jiff::Timestamp::now);
            (
                reaction.namespace.clone(),
                jobs::run_name(&reaction, &firing),
                Time(ended),
            )
        });
        futures::stream::iter(marks)
            .map(|(ns, name, ended)| async move {
                let api: Api<AlertReactionRun> = Api::namespaced(self.client.clone(), &ns);
                let patch = json!({"status": {"resolvedAt": ended}});
                match api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {
                        debug!(namespace = %ns, run = %name, "Run marked resolved");
                        None
                    }
                    // No Run: the occurrence was not reacted to (or is long gone).
                    Err(kube::Error::Api(s)) if s.code == 404 => None,
                    Err(e) => {
                        self.metrics.error(ErrorKind::Api);
                        warn!(namespace = %ns, run = %name, error = %e, "cannot mark the Run resolved");
                        Some((
                            retryable(&e),
                            format!("cannot mark Run {ns}/{name} resolved: {e}"),
                        ))
                    }
                }
            })
            .buffer_unordered(limit)
            .filter_map(futures::future::ready)
            .collect()
            .await
    }

    /// Records an action that needs no Run: suspended, dry run, not renderable.
    fn report(
        &self,
        reaction: &Arc<CompiledReaction>,
        alert: &Alert,
        action: ActionPlan,
        events: &EventSender,
    ) -> Outcome {
        let ActionPlan {
            action,
            job_name,
            step,
        } = action;
        let m = &self.metrics;
        match step {
            Step::Suspended => {
                m.skipped(SkipReason::Suspended);
                info!(reaction = %reaction.name, namespace = %reaction.namespace, action = %action, fingerprint = %alert.fingerprint, job = %job_name, "Job skipped (suspended): the reaction is suspended");
                events.about(
                    reaction,
                    EventType::Normal,
                    "Skipped",
                    format!(
                        "Skipped Job {job_name} for alert {} (suspended): the reaction is suspended",
                        alert.fingerprint
                    ),
                );
                Outcome::Skipped
            }
            Step::RenderFailed(e) => {
                m.render_failures.inc();
                m.error(ErrorKind::Render);
                warn!(reaction = %reaction.name, namespace = %reaction.namespace, action = %action, fingerprint = %alert.fingerprint, error = %e, "cannot render Job");
                events.about(
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
            // Creates and dry runs go into the occurrence's Run.
            Step::Create { .. } | Step::DryRun { .. } => Outcome::Skipped,
        }
    }
}
