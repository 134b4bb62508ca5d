//! Prometheus metrics. The seed's four names are kept exactly
//! (`alert_reactions_total`, `jobs_created_total`, `webhook_requests_total`,
//! `errors_total`); the detail carries the `karo_` prefix.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Owns the registry and every metric Karo exports.
pub struct Metrics {
    registry: Registry,
    /// Alert occurrences that triggered a reaction.
    pub alert_reactions: IntCounter,
    pub jobs_created: IntCounter,
    pub webhook_requests: IntCounterVec,
    pub errors: IntCounterVec,
    pub alerts_received: IntCounterVec,
    pub alerts_matched: IntCounter,
    pub jobs_deduplicated: IntCounter,
    pub jobs_skipped: IntCounterVec,
    pub jobs_dry_run: IntCounter,
    pub render_failures: IntCounter,
    pub request_duration: Histogram,
    pub reactions_loaded: IntGauge,
    pub reactions_invalid: IntGauge,
    pub config_last_reload_successful: IntGauge,
    pub config_last_reload_success_timestamp: Gauge,
    pub config_reloads: IntCounterVec,
    pub auth_failures: IntCounterVec,
    /// AlertReactionRuns created by the webhook (occurrences accepted).
    pub runs_created: IntCounter,
    /// Runs that reached a final phase, by phase.
    pub runs: IntCounterVec,
    pub run_duration: Histogram,
    /// Job creations refused for a passing reason and retried.
    pub job_create_retries: IntCounter,
    /// 1 while this replica holds the Lease and follows Runs.
    pub leader: IntGauge,
    /// Approvals asked for and their outcome (`spec.approval`).
    pub approvals: IntCounterVec,
    /// Alerts Alertmanager left out of notifications (`truncatedAlerts`).
    pub alerts_truncated: IntCounter,
    /// Runs waiting for approval now (the leader's view).
    pub awaiting_approval: IntGauge,
    /// How long the oldest Run waiting for approval has waited.
    pub oldest_approval_wait: Gauge,
    /// Per watched scope (a namespace, or `""` for all): waiting Runs, oldest wait.
    awaiting_by_scope: std::sync::Mutex<std::collections::HashMap<String, (i64, f64)>>,
    /// AlertReactions stopped by their failure budget.
    pub reactions_stopped: IntGauge,
    /// Connections open now, by listener (`http`, `https`).
    pub http_connections: IntGaugeVec,
    /// Webhook requests refused with 503 because `http.maxConcurrentNotifications`
    /// notifications were being handled.
    pub notifications_refused: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let m = Metrics {
            alert_reactions: IntCounter::new(
                "alert_reactions_total",
                "Total number of alert reactions processed (alert occurrences that triggered a reaction).",
            )?,
            jobs_created: IntCounter::new("jobs_created_total", "Total number of jobs created.")?,
            webhook_requests: IntCounterVec::new(
                Opts::new(
                    "webhook_requests_total",
                    "Total number of webhook requests received, by HTTP status code.",
                ),
                &["code"],
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "errors_total",
                    "Total number of errors encountered, by kind.",
                ),
                &["kind"],
            )?,
            alerts_received: IntCounterVec::new(
                Opts::new(
                    "karo_alerts_received_total",
                    "Alerts received in webhook notifications, by alert status.",
                ),
                &["status"],
            )?,
            alerts_matched: IntCounter::new(
                "karo_alerts_matched_total",
                "Alert and reaction pairs that matched.",
            )?,
            jobs_deduplicated: IntCounter::new(
                "karo_jobs_deduplicated_total",
                "Jobs not created because the same Job already existed (repeated notification, retry, HA peer or replica).",
            )?,
            jobs_skipped: IntCounterVec::new(
                Opts::new(
                    "karo_jobs_skipped_total",
                    "Jobs not created on purpose, by reason.",
                ),
                &["reason"],
            )?,
            jobs_dry_run: IntCounter::new(
                "karo_jobs_dry_run_total",
                "Jobs rendered but not created because of dry run.",
            )?,
            render_failures: IntCounter::new(
                "karo_render_failures_total",
                "Jobs that could not be rendered from their templates.",
            )?,
            request_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "karo_webhook_request_duration_seconds",
                    "Time to answer a webhook request.",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )?,
            reactions_loaded: IntGauge::new(
                "karo_reactions_loaded",
                "AlertReactions in the cache that are valid and can fire.",
            )?,
            reactions_invalid: IntGauge::new(
                "karo_reactions_invalid",
                "AlertReactions in the cache that are not Ready.",
            )?,
            config_last_reload_successful: IntGauge::new(
                "karo_config_last_reload_successful",
                "Whether the last configuration reload attempt was successful.",
            )?,
            config_last_reload_success_timestamp: Gauge::new(
                "karo_config_last_reload_success_timestamp_seconds",
                "Timestamp of the last successful configuration reload.",
            )?,
            config_reloads: IntCounterVec::new(
                Opts::new(
                    "karo_config_reloads_total",
                    "Configuration reload attempts, by result.",
                ),
                &["result"],
            )?,
            auth_failures: IntCounterVec::new(
                Opts::new(
                    "karo_webhook_auth_failures_total",
                    "Webhook requests refused for missing or wrong credentials, by reason.",
                ),
                &["reason"],
            )?,
            runs_created: IntCounter::new(
                "karo_runs_created_total",
                "AlertReactionRuns created: alert occurrences accepted by a reaction.",
            )?,
            runs: IntCounterVec::new(
                Opts::new(
                    "karo_runs_total",
                    "AlertReactionRuns that reached a final phase, by phase.",
                ),
                &["phase"],
            )?,
            run_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "karo_run_duration_seconds",
                    "Time from a Run's start (its Jobs created) to its final phase.",
                )
                .buckets(vec![
                    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                ]),
            )?,
            job_create_retries: IntCounter::new(
                "karo_job_create_retries_total",
                "Job creations refused for a passing reason (429, 5xx, quota, connection) and retried.",
            )?,
            leader: IntGauge::new(
                "karo_leader",
                "1 while this replica holds the Lease and follows Runs to their outcome.",
            )?,
            awaiting_approval: IntGauge::new(
                "karo_runs_awaiting_approval",
                "AlertReactionRuns waiting for approval (exported by the leader).",
            )?,
            oldest_approval_wait: Gauge::new(
                "karo_runs_awaiting_approval_oldest_seconds",
                "How long the oldest Run waiting for approval has waited (exported by the leader).",
            )?,
            awaiting_by_scope: Default::default(),
            alerts_truncated: IntCounter::new(
                "karo_alerts_truncated_total",
                "Alerts Alertmanager left out of notifications (truncatedAlerts, its max_alerts): they never reached Karo.",
            )?,
            reactions_stopped: IntGauge::new(
                "karo_reactions_failure_budget_exhausted",
                "AlertReactions stopped by budget.suspendAfterFailures until a person resumes them.",
            )?,
            approvals: IntCounterVec::new(
                Opts::new(
                    "karo_approvals_total",
                    "Runs that waited for approval, by outcome: requested, approved, rejected, expired, cancelled.",
                ),
                &["result"],
            )?,
            http_connections: IntGaugeVec::new(
                Opts::new(
                    "karo_http_connections_open",
                    "Connections open now, by listener; at http.maxConnections new ones wait in the listen backlog.",
                ),
                &["listener"],
            )?,
            notifications_refused: IntCounter::new(
                "karo_webhook_notifications_refused_total",
                "Webhook requests answered 503 because http.maxConcurrentNotifications notifications were being handled (Alertmanager retries them).",
            )?,
            registry,
        };
        m.registry.register(Box::new(m.alert_reactions.clone()))?;
        m.registry.register(Box::new(m.jobs_created.clone()))?;
        m.registry.register(Box::new(m.webhook_requests.clone()))?;
        m.registry.register(Box::new(m.errors.clone()))?;
        m.registry.register(Box::new(m.alerts_received.clone()))?;
        m.registry.register(Box::new(m.alerts_matched.clone()))?;
        m.registry.register(Box::new(m.jobs_deduplicated.clone()))?;
        m.registry.register(Box::new(m.jobs_skipped.clone()))?;
        m.registry.register(Box::new(m.jobs_dry_run.clone()))?;
        m.registry.register(Box::new(m.render_failures.clone()))?;
        m.registry.register(Box::new(m.request_duration.clone()))?;
        m.registry.register(Box::new(m.reactions_loaded.clone()))?;
        m.registry.register(Box::new(m.reactions_invalid.clone()))?;
        m.registry
            .register(Box::new(m.config_last_reload_successful.clone()))?;
        m.registry
            .register(Box::new(m.config_last_reload_success_timestamp.clone()))?;
        m.registry.register(Box::new(m.config_reloads.clone()))?;
        m.registry.register(Box::new(m.auth_failures.clone()))?;
        m.registry.register(Box::new(m.runs_created.clone()))?;
        m.registry.register(Box::new(m.runs.clone()))?;
        m.registry.register(Box::new(m.run_duration.clone()))?;
        m.registry
            .register(Box::new(m.job_create_retries.clone()))?;
        m.registry.register(Box::new(m.leader.clone()))?;
        m.registry.register(Box::new(m.approvals.clone()))?;
        m.registry.register(Box::new(m.alerts_truncated.clone()))?;
        m.registry.register(Box::new(m.awaiting_approval.clone()))?;
        m.registry
            .register(Box::new(m.oldest_approval_wait.clone()))?;
        m.registry.register(Box::new(m.reactions_stopped.clone()))?;
        m.registry.register(Box::new(m.http_connections.clone()))?;
        m.registry
            .register(Box::new(m.notifications_refused.clone()))?;
        for listener in ["http", "https"] {
            m.http_connections.with_label_values(&[listener]);
        }
        for phase in ["Succeeded", "Failed", "Skipped"] {
            m.runs.with_label_values(&[phase]);
        }
        for result in ["requested", "approved", "rejected", "expired", "cancelled"] {
            m.approvals.with_label_values(&[result]);
        }
        // Label values known in advance are exported at zero from the start, so
        // rate() and absent() behave before the first event.
        for status in ["firing", "resolved"] {
            m.alerts_received.with_label_values(&[status]);
        }
        for reason in SkipReason::ALL {
            m.jobs_skipped.with_label_values(&[reason.label()]);
        }
        for result in ["success", "failure"] {
            m.config_reloads.with_label_values(&[result]);
        }
        for kind in ErrorKind::ALL {
            m.errors.with_label_values(&[kind.label()]);
        }
        for reason in ["missing", "malformed", "wrong", "unavailable"] {
            m.auth_failures.with_label_values(&[reason]);
        }
        for code in ["200", "400", "401", "500", "503"] {
            m.webhook_requests.with_label_values(&[code]);
        }
        Ok(m)
    }

    /// The exposition in Prometheus' text format.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    /// Counts an error of one kind.
    pub fn error(&self, kind: ErrorKind) {
        self.errors.with_label_values(&[kind.label()]).inc();
    }

    /// Records the Runs waiting for approval in one watched scope and exports
    /// the totals over every scope.
    pub fn set_awaiting(&self, scope: &str, waiting: i64, oldest_seconds: f64) {
        let mut by_scope = match self.awaiting_by_scope.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        by_scope.insert(scope.to_string(), (waiting, oldest_seconds));
        self.awaiting_approval
            .set(by_scope.values().map(|(n, _)| n).sum());
        self.oldest_approval_wait
            .set(by_scope.values().map(|(_, o)| *o).fold(0.0, f64::max));
    }

    pub fn skipped(&self, reason: SkipReason) {
        self.jobs_skipped.with_label_values(&[reason.label()]).inc();
    }
}

/// The kinds of error Karo counts in `errors_total`; `label` is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The API server was unreachable, overloaded or failed.
    Api,
    /// The API server refused a Job (invalid, forbidden).
    JobRejected,
    /// A Job could not be rendered for an alert.
    Render,
    /// An AlertReaction status could not be written.
    StatusUpdate,
    /// An Event could not be published (or was dropped).
    Event,
    /// The AlertReaction watch failed.
    Watch,
    /// A webhook body was not a valid notification.
    BadRequest,
    /// The webhook's credentials could not be read.
    AuthConfig,
    /// Another writer (a replica under another configuration or version) keeps
    /// overwriting a reaction's `Ready` condition; this replica stopped writing it.
    StatusDisagreement,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::Api,
        ErrorKind::JobRejected,
        ErrorKind::Render,
        ErrorKind::StatusUpdate,
        ErrorKind::Event,
        ErrorKind::Watch,
        ErrorKind::BadRequest,
        ErrorKind::AuthConfig,
        ErrorKind::StatusDisagreement,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Api => "api",
            ErrorKind::JobRejected => "job_rejected",
            ErrorKind::Render => "render",
            ErrorKind::StatusUpdate => "status_update",
            ErrorKind::Event => "event",
            ErrorKind::Watch => "watch",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::AuthConfig => "auth_config",
            ErrorKind::StatusDisagreement => "status_disagreement",
        }
    }
}

/// Why a matched Job is not created; `label` is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    Suspended,
    Cooldown,
    Concurrency,
    RateLimit,
    Budget,
}

impl SkipReason {
    pub const ALL: [SkipReason; 5] = [
        SkipReason::Suspended,
        SkipReason::Cooldown,
        SkipReason::Concurrency,
        SkipReason::RateLimit,
        SkipReason::Budget,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SkipReason::Suspended => "suspended",
            SkipReason::Cooldown => "cooldown",
            SkipReason::Concurrency => "concurrency",
            SkipReason::RateLimit => "rate_limit",
            SkipReason::Budget => "budget",
        }
    }
}
