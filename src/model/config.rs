//! Karo's configuration: built-in defaults, then the config file, then
//! `KARO_<KEY>` environment variables (`__` between levels) and the seed's
//! `LOG_LEVEL` / `WEBHOOK_PORT`, then command-line flags. Later layers win.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Yaml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::model::duration;
use crate::model::error::FieldError;

/// The longest duration a setting takes.
const MAX_DURATION: Duration = Duration::from_secs(365 * 86400);

/// Where the config file is looked for when neither `--config` nor `KARO_CONFIG` names one.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/karo/config.yaml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// `trace`, `debug`, `info`, `warn`, `error`, or a tracing filter directive.
    pub log_level: String,
    pub log_format: LogFormat,
    pub http: HttpConfig,
    pub webhook: WebhookConfig,
    /// Namespaces whose AlertReactions are watched; empty means all.
    pub namespaces: Vec<String>,
    /// Render and record every Job, create none.
    pub dry_run: bool,
    pub job_defaults: JobDefaults,
    /// A Handlebars Job skeleton that replaces the built-in `templates/job.yaml`.
    pub job_template_file: Option<PathBuf>,
    pub limits: Limits,
    pub policy: Policy,
    pub runs: RunsConfig,
    pub leader_election: LeaderElection,
    pub alertmanager: AlertmanagerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: "info".into(),
            log_format: LogFormat::Text,
            http: HttpConfig::default(),
            webhook: WebhookConfig::default(),
            namespaces: Vec::new(),
            dry_run: false,
            job_defaults: JobDefaults::default(),
            job_template_file: None,
            limits: Limits::default(),
            policy: Policy::default(),
            runs: RunsConfig::default(),
            leader_election: LeaderElection::default(),
            alertmanager: AlertmanagerConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Port of the plain HTTP listener (webhook, health, metrics, reload).
    pub port: u16,
    /// A connection is closed when its request headers (on a new connection: its
    /// TLS handshake and first request headers) are not complete within this.
    pub header_read_timeout_seconds: u64,
    /// A request whose body has not arrived within this gets 408.
    pub body_read_timeout_seconds: u64,
    /// A connection with no request in progress for this long is closed. Longer than
    /// the 5 minutes Alertmanager keeps an idle connection, so that Alertmanager closes
    /// first and never sends on a connection Karo is closing.
    pub idle_timeout_seconds: u64,
    /// Connections open at once, per listener; beyond it new connections wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
    /// Webhook requests whose notification is being read or handled at once; beyond
    /// it the webhook answers 503 before reading the body (Alertmanager retries).
    pub max_concurrent_notifications: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            port: 8080,
            header_read_timeout_seconds: 10,
            body_read_timeout_seconds: 30,
            idle_timeout_seconds: 360,
            max_connections: 1024,
            max_concurrent_notifications: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Path of the webhook; `<path>/<receiver>` is served too.
    pub path: String,
    /// Port of the HTTPS webhook listener (with `tls.enabled`).
    pub port: u16,
    /// Bodies larger than this are refused with 413.
    pub max_body_bytes: u64,
    pub tls: TlsConfig,
    pub auth: AuthConfig,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            path: "/webhook".into(),
            port: 9443,
            max_body_bytes: 4 * 1024 * 1024,
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TlsConfig {
    pub enabled: bool,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AuthConfig {
    #[serde(rename = "type")]
    pub kind: AuthType,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthType {
    #[default]
    None,
    Basic,
    Bearer,
}

/// Defaults applied to every Job unless its reaction or template sets them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct JobDefaults {
    pub ttl_seconds_after_finished: Option<i32>,
    pub backoff_limit: Option<i32>,
    pub active_deadline_seconds: Option<i64>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Default for JobDefaults {
    fn default() -> Self {
        JobDefaults {
            ttl_seconds_after_finished: Some(300),
            backoff_limit: None,
            active_deadline_seconds: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Limits {
    /// Global circuit breaker: at most this many Jobs per minute (0: unlimited).
    pub max_jobs_per_minute: u32,
    /// Job creations of one notification in flight at once.
    pub max_concurrent_creates: usize,
    /// How long any call to the Kubernetes API may wait for its answer before it
    /// fails (and is retried); read at start.
    pub api_timeout_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_jobs_per_minute: 0,
            max_concurrent_creates: 32,
            api_timeout_seconds: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Policy {
    /// Whether reactions may mount `hostPath` volumes (a Job with a hostPath
    /// volume can read or write the node, so this is opt-in).
    pub allow_host_path: bool,
    /// Service accounts Jobs may run as; empty means any.
    pub allowed_service_accounts: Vec<String>,
    /// Whether Jobs may run privileged containers.
    pub allow_privileged: bool,
}

/// How long finished AlertReactionRuns are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RunsConfig {
    /// A finished Run whose occurrence has not been delivered for this long is
    /// deleted. Longer than Alertmanager's `repeat_interval` (4h by default), so a
    /// redelivered alert always finds its Run.
    pub retention: String,
    /// A finished Run is deleted this long after its alert's resolved notification.
    pub retention_after_resolved: String,
    /// Finished Runs kept per reaction; the oldest beyond it are deleted, except
    /// those whose occurrence is still delivered.
    pub history_limit: u32,
}

impl Default for RunsConfig {
    fn default() -> Self {
        RunsConfig {
            retention: "24h".into(),
            retention_after_resolved: "1h".into(),
            history_limit: 100,
        }
    }
}

impl RunsConfig {
    pub fn retention(&self) -> Duration {
        duration::parse(&self.retention).unwrap_or(Duration::from_secs(86400))
    }

    pub fn retention_after_resolved(&self) -> Duration {
        duration::parse(&self.retention_after_resolved).unwrap_or(Duration::from_secs(3600))
    }
}

/// The Lease that elects the replica following Runs to their outcome (every
/// replica accepts webhooks). Needs a restart to change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct LeaderElection {
    /// Name of the `coordination.k8s.io` Lease.
    pub lease_name: String,
    /// Its namespace; by default the pod's (`POD_NAMESPACE`), else the first
    /// watched namespace, else `default`.
    pub namespace: Option<String>,
    /// How long a leader that stopped renewing keeps the Lease.
    pub lease_duration: String,
}

impl Default for LeaderElection {
    fn default() -> Self {
        LeaderElection {
            lease_name: "karo".into(),
            namespace: None,
            lease_duration: "15s".into(),
        }
    }
}

impl LeaderElection {
    pub fn lease_duration(&self) -> Duration {
        duration::parse(&self.lease_duration).unwrap_or(Duration::from_secs(15))
    }
}

/// Alertmanager's API, for the silences Karo keeps while a Run is active and for
/// asking whether an alert still fires. Without `url`, those features are off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AlertmanagerConfig {
    /// Base URL, `http(s)://host:port` plus Alertmanager's route prefix, if any.
    pub url: Option<String>,
    /// Credentials Karo sends; the files are read at every request, so a rotated
    /// Secret needs no restart.
    pub auth: AuthConfig,
    pub tls: ClientTlsConfig,
    /// Each request (connecting included) gives up after this long.
    pub timeout_seconds: u64,
}

/// The longest `alertmanager.timeoutSeconds`.
const MAX_ALERTMANAGER_TIMEOUT_SECONDS: u64 = 300;

impl Default for AlertmanagerConfig {
    fn default() -> Self {
        AlertmanagerConfig {
            url: None,
            auth: AuthConfig::default(),
            tls: ClientTlsConfig::default(),
            timeout_seconds: 10,
        }
    }
}

impl AlertmanagerConfig {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }
}

/// How Karo checks the certificate of a server it calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ClientTlsConfig {
    /// PEM bundle of CAs trusted besides the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (testing only: anyone on the path can impersonate
    /// the server).
    pub insecure_skip_verify: bool,
}

/// Settings given on the command line; they form the last layer.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpOverride>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HttpOverride {
    pub port: u16,
}

/// The error of loading a config: every problem, each naming its key and, where
/// figment knows it, the layer the value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<FieldError>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration: ")?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            if p.path.is_empty() {
                write!(f, "{}", p.reason)?;
            } else {
                write!(f, "key `{}`: {}", p.path, p.reason)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// A problem with the configuration as a whole (a file that is missing).
    pub fn whole(reason: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![FieldError::new("", reason)],
        }
    }

    pub fn from_figment(e: figment::Error) -> Self {
        let problems = e
            .into_iter()
            .map(|err| {
                let source = err
                    .metadata
                    .as_ref()
                    .map(|m| {
                        let mut s = format!(" (from {}", m.name);
                        if let Some(src) = &m.source {
                            s.push_str(&format!(" {src}"));
                        }
                        s.push(')');
                        s
                    })
                    .unwrap_or_default();
                FieldError::new(err.path.join("."), format!("{}{source}", err.kind))
            })
            .collect();
        ConfigError { problems }
    }
}

/// Builds the layered configuration: defaults, the config file (when given),
/// environment variables, then command-line overrides.
pub fn figment(file: Option<&Path>, overrides: &Overrides) -> Figment {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = file {
        fig = fig.merge(Yaml::file_exact(path));
    }
    fig.merge(
        Env::prefixed("KARO_")
            .filter(|k| is_setting_variable(k.as_str()))
            .split("__")
            .map(|k| camel_case_key(k.as_str()).into())
            .lowercase(false),
    )
    .merge(
        Env::raw()
            .only(&["LOG_LEVEL"])
            .map(|_| "logLevel".into())
            .lowercase(false),
    )
    .merge(
        Env::raw()
            .only(&["WEBHOOK_PORT"])
            .map(|_| "webhook.port".into())
            .lowercase(false),
    )
    .merge(Serialized::defaults(overrides))
}

/// The config file to read: `--config`, else `KARO_CONFIG`, else the default
/// location, which alone may be absent.
pub fn config_file(flag: Option<&Path>) -> Result<Option<PathBuf>, ConfigError> {
    let named = flag
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("KARO_CONFIG").map(PathBuf::from));
    match named {
        Some(path) if path.exists() => Ok(Some(path)),
        Some(path) => Err(ConfigError::whole(format!(
            "config file {} does not exist",
            path.display()
        ))),
        None => {
            let default = PathBuf::from(DEFAULT_CONFIG_FILE);
            Ok(default.exists().then_some(default))
        }
    }
}

/// Loads and validates the configuration.
pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let path = config_file(file)?;
    let config: Config = figment(path.as_deref(), overrides)
        .extract()
        .map_err(ConfigError::from_figment)?;
    config.validate()?;
    Ok(config)
}

/// The config's top-level keys. Other `KARO_*` variables are not Karo's settings:
/// Kubernetes itself sets `KARO_SERVICE_HOST`, `KARO_PORT` and the like in every
/// pod of a namespace with a Service named `karo`.
const TOP_LEVEL_KEYS: [&str; 13] = [
    "logLevel",
    "logFormat",
    "http",
    "webhook",
    "namespaces",
    "dryRun",
    "jobDefaults",
    "jobTemplateFile",
    "limits",
    "policy",
    "runs",
    "leaderElection",
    "alertmanager",
];

/// Top-level keys that are sections of further keys: only `KARO_<SECTION>__<KEY>`
/// sets them. A bare `KARO_<SECTION>` is someone else's variable (Karo's own test
/// platform exports `KARO_ALERTMANAGER`, the path of the Alertmanager binary).
const SECTIONS: [&str; 8] = [
    "http",
    "webhook",
    "jobDefaults",
    "limits",
    "policy",
    "runs",
    "leaderElection",
    "alertmanager",
];

/// Whether `KARO_<key>` (`key` without the prefix) is one of Karo's settings.
fn is_setting_variable(key: &str) -> bool {
    let top = camel_case_key(top_segment(key));
    TOP_LEVEL_KEYS.contains(&top.as_str())
        && (key.contains("__") || !SECTIONS.contains(&top.as_str()))
}

fn top_segment(key: &str) -> &str {
    key.split("__").next().unwrap_or(key)
}

/// `WEBHOOK__MAX_BODY_BYTES` -> `webhook.maxBodyBytes`: env keys arrive
/// upper-case with `.` between levels; YAML keys are camelCase.
fn camel_case_key(key: &str) -> String {
    key.split('.')
        .map(|part| {
            let mut out = String::new();
            let mut upper = false;
            for c in part.chars() {
                if c == '_' {
                    upper = true;
                } else if upper {
                    out.extend(c.to_uppercase());
                    upper = false;
                } else {
                    out.extend(c.to_lowercase());
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join(".")
}

impl Config {
    /// Checks values that types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if !self.webhook.path.starts_with('/') {
            problems.push(FieldError::new(
                "webhook.path",
                format!("must start with `/`, got {:?}", self.webhook.path),
            ));
        }
        if self.webhook.path.len() > 1 && self.webhook.path.ends_with('/') {
            problems.push(FieldError::new("webhook.path", "must not end with `/`"));
        }
        // Bounded above too: a huge timeout or limit would overflow a deadline
        // or hold memory without end.
        let counts = [
            ("webhook.maxBodyBytes", self.webhook.max_body_bytes, 1 << 30),
            (
                "limits.maxConcurrentCreates",
                self.limits.max_concurrent_creates as u64,
                1024,
            ),
            (
                "limits.apiTimeoutSeconds",
                self.limits.api_timeout_seconds,
                3600,
            ),
            (
                "http.headerReadTimeoutSeconds",
                self.http.header_read_timeout_seconds,
                3600,
            ),
            (
                "http.bodyReadTimeoutSeconds",
                self.http.body_read_timeout_seconds,
                3600,
            ),
            (
                "http.idleTimeoutSeconds",
                self.http.idle_timeout_seconds,
                3600,
            ),
            (
                "http.maxConnections",
                self.http.max_connections as u64,
                65536,
            ),
            (
                "http.maxConcurrentNotifications",
                self.http.max_concurrent_notifications as u64,
                1024,
            ),
        ];
        for (key, value, max) in counts {
            if value == 0 {
                problems.push(FieldError::new(key, "must be greater than 0"));
            } else if value > max {
                problems.push(FieldError::new(
                    key,
                    format!("must be at most {max}, got {value}"),
                ));
            }
        }
        let durations = [
            ("runs.retention", &self.runs.retention),
            (
                "runs.retentionAfterResolved",
                &self.runs.retention_after_resolved,
            ),
            (
                "leaderElection.leaseDuration",
                &self.leader_election.lease_duration,
            ),
        ];
        for (key, value) in durations {
            match duration::parse(value) {
                Some(d) if d >= Duration::from_secs(1) && d <= MAX_DURATION => {}
                _ => problems.push(FieldError::new(
                    key,
                    format!("must be a duration from 1s to 365d such as `30s`, `10m` or `24h`, got {value:?}"),
                )),
            }
        }
        if self.leader_election.lease_name.is_empty() {
            problems.push(FieldError::new(
                "leaderElection.leaseName",
                "must not be empty",
            ));
        }
        match tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            Err(e) => problems.push(FieldError::new(
                "logLevel",
                format!("{:?} is not a level or filter: {e}", self.log_level),
            )),
            // Karo's errors would go unseen: `error` is the least.
            Ok(f) if f.max_level_hint() == Some(tracing_subscriber::filter::LevelFilter::OFF) => {
                problems.push(FieldError::new(
                    "logLevel",
                    format!(
                        "{:?} enables no log output at all; `error` is the quietest level",
                        self.log_level
                    ),
                ))
            }
            Ok(_) => {}
        }
        if self.webhook.tls.enabled
            && (self.webhook.tls.cert_file.is_none() || self.webhook.tls.key_file.is_none())
        {
            problems.push(FieldError::new(
                "webhook.tls",
                "`certFile` and `keyFile` are required when `enabled` is true",
            ));
        }
        check_auth("webhook.auth", &self.webhook.auth, &mut problems);
        check_alertmanager(&self.alertmanager, &mut problems);
        // Kubernetes refuses a Job whose labels or annotations are malformed:
        // every Job would fail.
        for (k, v) in &self.job_defaults.labels {
            let key = format!("jobDefaults.labels.{k}");
            if let Err(why) = check_qualified_name(k) {
                problems.push(FieldError::new(key.clone(), format!("the key {why}")));
            }
            if let Err(why) = check_label_value(v) {
                problems.push(FieldError::new(key, format!("the value {v:?} {why}")));
            }
        }
        for k in self.job_defaults.annotations.keys() {
            if let Err(why) = check_qualified_name(k) {
                problems.push(FieldError::new(
                    format!("jobDefaults.annotations.{k}"),
                    format!("the key {why}"),
                ));
            }
        }
        if let Some(v) = self.job_defaults.ttl_seconds_after_finished {
            if v < 0 {
                problems.push(FieldError::new(
                    "jobDefaults.ttlSecondsAfterFinished",
                    "must not be negative",
                ));
            }
        }
        if let Some(v) = self.job_defaults.backoff_limit {
            if v < 0 {
                problems.push(FieldError::new(
                    "jobDefaults.backoffLimit",
                    "must not be negative",
                ));
            }
        }
        if let Some(v) = self.job_defaults.active_deadline_seconds {
            if v <= 0 {
                problems.push(FieldError::new(
                    "jobDefaults.activeDeadlineSeconds",
                    "must be greater than 0",
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

impl Config {
    /// The files the configuration names, as the daemon needs them now: the
    /// credentials files in use readable and not empty (read at every request,
    /// a missing one would make every request fail), the Alertmanager CA a
    /// certificate. Checked when `karo run` starts and at every reload (a
    /// reload that fails keeps the running configuration); not by `karo
    /// validate`, which checks files written for another machine.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        for (key, auth) in [
            ("webhook.auth", &self.webhook.auth),
            ("alertmanager.auth", &self.alertmanager.auth),
        ] {
            let file = match auth.kind {
                AuthType::None => None,
                AuthType::Basic => auth
                    .password_file
                    .as_ref()
                    .map(|p| (format!("{key}.passwordFile"), p)),
                AuthType::Bearer => auth
                    .token_file
                    .as_ref()
                    .map(|p| (format!("{key}.tokenFile"), p)),
            };
            if let Some((key, path)) = file {
                match std::fs::read(path) {
                    Err(e) => problems.push(FieldError::new(
                        key,
                        format!("cannot read {}: {e}", path.display()),
                    )),
                    Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => {
                        problems.push(FieldError::new(key, format!("{} is empty", path.display())))
                    }
                    Ok(_) => {}
                }
            }
        }
        if let Some(path) = &self.alertmanager.tls.ca_file {
            match std::fs::read(path) {
                Err(e) => problems.push(FieldError::new(
                    "alertmanager.tls.caFile",
                    format!("cannot read {}: {e}", path.display()),
                )),
                Ok(pem)
                    if !pem
                        .windows(PEM_CERTIFICATE.len())
                        .any(|w| w == PEM_CERTIFICATE) =>
                {
                    problems.push(FieldError::new(
                        "alertmanager.tls.caFile",
                        format!("{} holds no PEM certificate", path.display()),
                    ))
                }
                Ok(_) => {}
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// A label or annotation key as Kubernetes accepts it: an optional DNS
/// subdomain prefix and `/`, then a name of at most 63 characters.
pub fn check_qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if p.is_empty() || p.len() > 253 || !p.split('.').all(label_ok) {
            return Err(format!(
                "has the prefix {p:?}, which is not a DNS subdomain (lower-case letters, digits, '-' and '.')"
            ));
        }
    }
    if name.is_empty() {
        return Err("has no name".into());
    }
    check_label_value(name).map_err(|why| format!("has a name that {why}"))
}

/// A label value as Kubernetes accepts it: empty, or at most 63 of
/// `[A-Za-z0-9._-]`, beginning and ending with a letter or digit.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > 63 {
        return Err(format!(
            "is {} characters long, at most 63 are allowed",
            value.len()
        ));
    }
    let inner_ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let ends_ok = value
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphanumeric)
        && value
            .as_bytes()
            .last()
            .is_some_and(u8::is_ascii_alphanumeric);
    if inner_ok && ends_ok {
        Ok(())
    } else {
        Err("may hold only letters, digits, '-', '_' and '.', and must begin and end with a letter or digit".into())
    }
}

/// The keys an auth `type` needs, under `key` (`webhook.auth`).
fn check_auth(key: &str, auth: &AuthConfig, problems: &mut Vec<FieldError>) {
    match auth.kind {
        AuthType::None => {}
        AuthType::Basic => {
            if auth.username.as_deref().unwrap_or("").is_empty() {
                problems.push(FieldError::new(
                    format!("{key}.username"),
                    "required when `type` is basic",
                ));
            }
            if auth.password_file.is_none() {
                problems.push(FieldError::new(
                    format!("{key}.passwordFile"),
                    "required when `type` is basic",
                ));
            }
        }
        AuthType::Bearer => {
            if auth.token_file.is_none() {
                problems.push(FieldError::new(
                    format!("{key}.tokenFile"),
                    "required when `type` is bearer",
                ));
            }
        }
    }
}

fn check_alertmanager(am: &AlertmanagerConfig, problems: &mut Vec<FieldError>) {
    if let Some(raw) = &am.url {
        if let Err(reason) = check_http_url(raw) {
            problems.push(FieldError::new("alertmanager.url", reason));
        }
    }
    check_auth("alertmanager.auth", &am.auth, problems);
    if !(1..=MAX_ALERTMANAGER_TIMEOUT_SECONDS).contains(&am.timeout_seconds) {
        problems.push(FieldError::new(
            "alertmanager.timeoutSeconds",
            format!(
                "must be from 1 to {MAX_ALERTMANAGER_TIMEOUT_SECONDS}, got {}",
                am.timeout_seconds
            ),
        ));
    }
}

const PEM_CERTIFICATE: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// An http or https URL with a host, no credentials (they would end up in logs
/// and errors), and no query or fragment (API paths are appended to it).
pub(crate) fn check_http_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| {
        format!("must be an http or https URL such as `http://alertmanager:9093`, got {raw:?}: {e}")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http or https URL, got scheme `{}`",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("must name a host, got {raw:?}"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials: set `alertmanager.auth`".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("must have no query or fragment, got {raw:?}"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn env_keys_become_camel_case_paths() {
        assert_eq!(
            camel_case_key("WEBHOOK.MAX_BODY_BYTES"),
            "webhook.maxBodyBytes"
        );
        assert_eq!(camel_case_key("LOG_LEVEL"), "logLevel");
        assert_eq!(
            camel_case_key("JOB_DEFAULTS.TTL_SECONDS_AFTER_FINISHED"),
            "jobDefaults.ttlSecondsAfterFinished"
        );
    }

    #[test]
    fn layers_override_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "config.yaml",
                "logLevel: debug\nwebhook:\n  path: /hooks\nhttp:\n  port: 9000\n",
            )?;
            jail.set_env("KARO_HTTP__PORT", "9100");
            // Set by Kubernetes for a Service named `karo`; not a setting.
            jail.set_env("KARO_SERVICE_HOST", "10.0.0.1");
            jail.set_env("KARO_PORT", "tcp://10.0.0.1:8080");
            jail.set_env("WEBHOOK_PORT", "9555");
            let path = jail.directory().join("config.yaml");
            let c = load(Some(&path), &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.log_level, "debug");
            assert_eq!(c.webhook.path, "/hooks");
            assert_eq!(c.http.port, 9100);
            assert_eq!(c.webhook.port, 9555);
            let o = Overrides {
                http: Some(HttpOverride { port: 9200 }),
                ..Default::default()
            };
            let c = load(Some(&path), &o).map_err(|e| e.to_string())?;
            assert_eq!(c.http.port, 9200);
            Ok(())
        });
    }

    #[test]
    fn seed_env_variables_and_flags() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("config.yaml", "logLevel: debug\nwebhook:\n  port: 9000\n")?;
            let path = jail.directory().join("config.yaml");
            jail.set_env("LOG_LEVEL", "warn");
            jail.set_env("WEBHOOK_PORT", "9443");
            let c = load(Some(&path), &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.log_level, "warn");
            assert_eq!(c.webhook.port, 9443);
            // KARO_ variables are more specific than the seed's names.
            jail.set_env("KARO_LOG_LEVEL", "error");
            jail.set_env("KARO_DRY_RUN", "true");
            jail.set_env("KARO_JOB_DEFAULTS__TTL_SECONDS_AFTER_FINISHED", "60");
            let c = load(Some(&path), &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.log_level, "warn", "LOG_LEVEL is merged after KARO_");
            assert!(c.dry_run);
            assert_eq!(c.job_defaults.ttl_seconds_after_finished, Some(60));
            let flags = Overrides {
                log_level: Some("trace".into()),
                dry_run: Some(false),
                ..Default::default()
            };
            let c = load(Some(&path), &flags).map_err(|e| e.to_string())?;
            assert_eq!(c.log_level, "trace");
            assert!(!c.dry_run);
            Ok(())
        });
    }

    #[test]
    fn invalid_values_name_key_and_source() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("KARO_DRY_RUN", "maybe");
            let err = load(None, &Overrides::default())
                .err()
                .ok_or("expected an error")?
                .to_string();
            assert!(err.contains("dryRun"), "{err}");
            assert!(err.contains("environment"), "{err}");
            jail.clear_env();
            jail.create_file("config.yaml", "webhook:\n  path: hooks\n")?;
            let path = jail.directory().join("config.yaml");
            let err = load(Some(&path), &Overrides::default())
                .err()
                .ok_or("expected an error")?
                .to_string();
            assert!(err.contains("webhook.path"), "{err}");
            let err = load(
                Some(&jail.directory().join("missing.yaml")),
                &Overrides::default(),
            )
            .err()
            .ok_or("expected an error")?
            .to_string();
            assert!(err.contains("does not exist"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn sample_config_lists_the_defaults() {
        figment::Jail::expect_with(|_| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/config.yaml");
            let c = load(Some(&path), &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c, Config::default());
            Ok(())
        });
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("config.yaml", "webhook:\n  pth: /x\n")?;
            let path = jail.directory().join("config.yaml");
            let err = load(Some(&path), &Overrides::default())
                .err()
                .ok_or("expected an error")?;
            let msg = err.to_string();
            assert!(msg.contains("pth"), "{msg}");
            assert!(msg.contains("config.yaml"), "{msg}");
            Ok(())
        });
    }

    #[test]
    fn a_bare_section_variable_is_not_a_setting() {
        let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
        for key in TOP_LEVEL_KEYS {
            assert_eq!(
                defaults[key].is_object(),
                SECTIONS.contains(&key),
                "{key} is a section exactly when its value has keys"
            );
        }
        assert!(!is_setting_variable("ALERTMANAGER"));
        assert!(!is_setting_variable("WEBHOOK"));
        assert!(is_setting_variable("ALERTMANAGER__URL"));
        assert!(is_setting_variable("DRY_RUN"));
        assert!(!is_setting_variable("SERVICE_HOST"));
        figment::Jail::expect_with(|jail| {
            // As `tests/platform/setup.sh` exports it.
            jail.set_env("KARO_ALERTMANAGER", "/usr/bin/prometheus-alertmanager");
            jail.set_env("KARO_ALERTMANAGER__TIMEOUT_SECONDS", "30");
            let c = load(None, &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.alertmanager.timeout_seconds, 30);
            assert_eq!(c.alertmanager.url, None);
            Ok(())
        });
    }

    #[test]
    fn alertmanager_is_off_by_default_and_set_by_file_or_environment() {
        let d = Config::default().alertmanager;
        assert_eq!(d.url, None);
        assert_eq!(d.auth.kind, AuthType::None);
        assert_eq!(d.timeout_seconds, 10);
        assert!(!d.tls.insecure_skip_verify);
        figment::Jail::expect_with(|jail| {
            jail.create_file("password", "s3cret\n")?;
            jail.create_file(
                "config.yaml",
                "alertmanager:\n  url: https://am.example:9093/am\n  auth:\n    type: basic\n    username: karo\n    passwordFile: password\n  tls:\n    insecureSkipVerify: true\n  timeoutSeconds: 3\n",
            )?;
            let path = jail.directory().join("config.yaml");
            let c = load(Some(&path), &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(
                c.alertmanager.url.as_deref(),
                Some("https://am.example:9093/am")
            );
            assert_eq!(c.alertmanager.auth.kind, AuthType::Basic);
            assert_eq!(c.alertmanager.auth.password_file, Some("password".into()));
            assert!(c.alertmanager.tls.insecure_skip_verify);
            assert_eq!(c.alertmanager.timeout(), Duration::from_secs(3));
            jail.set_env("KARO_ALERTMANAGER__URL", "http://other:9093");
            jail.set_env("KARO_ALERTMANAGER__TIMEOUT_SECONDS", "20");
            let c = load(Some(&path), &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.alertmanager.url.as_deref(), Some("http://other:9093"));
            assert_eq!(c.alertmanager.timeout_seconds, 20);
            Ok(())
        });
    }

    /// The keys of the problems `validate` finds in `config`.
    fn problem_keys(config: &Config) -> Vec<String> {
        match config.validate() {
            Ok(()) => Vec::new(),
            Err(e) => e.problems.into_iter().map(|p| p.path).collect(),
        }
    }

    #[test]
    fn alertmanager_problems_name_their_key() {
        // What `karo validate` finds, then what the daemon finds of the files.
        let with = |f: &dyn Fn(&mut AlertmanagerConfig)| {
            let mut c = Config::default();
            f(&mut c.alertmanager);
            let mut keys = problem_keys(&c);
            if let Err(e) = c.check_files() {
                keys.extend(e.problems.into_iter().map(|p| p.path));
            }
            keys
        };
        let url = vec!["alertmanager.url".to_string()];
        for bad in [
            "",
            "alertmanager:9093",
            "ftp://alertmanager:9093",
            "http://",
            "http://user:pass@alertmanager:9093",
            "http://alertmanager:9093/?x=1",
            "unix:///run/am.sock",
        ] {
            assert_eq!(with(&|a| a.url = Some(bad.into())), url, "{bad:?}");
        }
        for good in ["http://127.0.0.1:9093", "https://am.monitoring.svc/prefix/"] {
            assert_eq!(
                with(&|a| a.url = Some(good.into())),
                Vec::<String>::new(),
                "{good}"
            );
        }
        assert_eq!(
            with(&|a| a.auth.kind = AuthType::Basic),
            [
                "alertmanager.auth.username",
                "alertmanager.auth.passwordFile"
            ]
        );
        assert_eq!(
            with(&|a| a.auth.kind = AuthType::Bearer),
            ["alertmanager.auth.tokenFile"]
        );
        assert_eq!(
            with(&|a| {
                a.auth.kind = AuthType::Bearer;
                a.auth.token_file = Some("/nonexistent/token".into());
            }),
            ["alertmanager.auth.tokenFile"]
        );
        assert_eq!(
            with(&|a| a.tls.ca_file = Some("/nonexistent/ca.pem".into())),
            ["alertmanager.tls.caFile"]
        );
        for t in [0, 301] {
            assert_eq!(
                with(&|a| a.timeout_seconds = t),
                ["alertmanager.timeoutSeconds"]
            );
        }
        assert_eq!(with(&|a| a.timeout_seconds = 300), Vec::<String>::new());
    }

    #[test]
    fn alertmanager_files_must_be_readable_and_the_ca_a_certificate() {
        let dir = tempfile::tempdir().expect("temp dir");
        let token = dir.path().join("token");
        std::fs::write(&token, "t\n").expect("token");
        let not_pem = dir.path().join("ca.txt");
        std::fs::write(&not_pem, "hello").expect("ca");
        let pem = dir.path().join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("ca");
        let mut c = Config::default();
        c.alertmanager.url = Some("https://am:9093".into());
        c.alertmanager.auth.kind = AuthType::Bearer;
        c.alertmanager.auth.token_file = Some(token);
        c.alertmanager.tls.ca_file = Some(pem);
        assert_eq!(problem_keys(&c), Vec::<String>::new());
        assert!(c.check_files().is_ok());
        c.alertmanager.tls.ca_file = Some(not_pem.clone());
        let err = c.check_files().expect_err("an error");
        assert_eq!(err.problems[0].path, "alertmanager.tls.caFile");
        assert!(
            err.problems[0].reason.contains(&*not_pem.to_string_lossy()),
            "{err}"
        );
    }

    #[test]
    fn job_default_labels_and_annotations_kubernetes_refuses_are_refused() {
        let mut c = Config::default();
        for (k, v) in [
            ("team", "sre"),
            ("example.com/owner", "a.b_c-1"),
            ("empty", ""),
        ] {
            c.job_defaults.labels.insert(k.into(), v.into());
        }
        c.job_defaults.annotations.insert(
            "example.com/runbook".into(),
            "https://x/y?z=1 any text".into(),
        );
        assert_eq!(problem_keys(&c), Vec::<String>::new());
        let mut bad = Config::default();
        for (k, v) in [
            ("has space", "x"),
            ("Example.com/x", "x"),
            ("ok", "-leading"),
            ("long", &"x".repeat(64)),
        ] {
            bad.job_defaults.labels.insert(k.into(), v.into());
        }
        bad.job_defaults
            .annotations
            .insert("/no-prefix".into(), "x".into());
        let err = bad.validate().expect_err("refused");
        let keys: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            keys,
            [
                "jobDefaults.labels.Example.com/x",
                "jobDefaults.labels.has space",
                "jobDefaults.labels.long",
                "jobDefaults.labels.ok",
                "jobDefaults.annotations./no-prefix",
            ],
            "{err}"
        );
    }

    #[test]
    fn huge_timeouts_and_limits_are_refused() {
        let mut c = Config::default();
        c.http.header_read_timeout_seconds = u64::MAX;
        c.http.body_read_timeout_seconds = 3601;
        c.http.idle_timeout_seconds = 3601;
        c.http.max_connections = usize::MAX;
        c.http.max_concurrent_notifications = 1025;
        c.webhook.max_body_bytes = u64::MAX;
        c.limits.max_concurrent_creates = usize::MAX;
        assert_eq!(
            problem_keys(&c),
            [
                "webhook.maxBodyBytes",
                "limits.maxConcurrentCreates",
                "http.headerReadTimeoutSeconds",
                "http.bodyReadTimeoutSeconds",
                "http.idleTimeoutSeconds",
                "http.maxConnections",
                "http.maxConcurrentNotifications"
            ]
        );
        c.http.header_read_timeout_seconds = 3600;
        c.http.body_read_timeout_seconds = 3600;
        c.http.idle_timeout_seconds = 3600;
        c.http.max_connections = 65536;
        c.http.max_concurrent_notifications = 1024;
        c.webhook.max_body_bytes = 1 << 30;
        c.limits.max_concurrent_creates = 1024;
        assert_eq!(problem_keys(&c), Vec::<String>::new());
        c.http.idle_timeout_seconds = 0;
        c.http.max_connections = 0;
        c.http.max_concurrent_notifications = 0;
        assert_eq!(
            problem_keys(&c),
            [
                "http.idleTimeoutSeconds",
                "http.maxConnections",
                "http.maxConcurrentNotifications"
            ]
        );
    }

    #[test]
    fn connection_bounds_come_from_file_and_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "config.yaml",
                "http:\n  idleTimeoutSeconds: 120\n  maxConnections: 10\n",
            )?;
            jail.set_env("KARO_HTTP__MAX_CONCURRENT_NOTIFICATIONS", "4");
            let path = jail.directory().join("config.yaml");
            let c = load(Some(&path), &Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(c.http.idle_timeout_seconds, 120);
            assert_eq!(c.http.max_connections, 10);
            assert_eq!(c.http.max_concurrent_notifications, 4);
            assert_eq!(c.http.header_read_timeout_seconds, 10);
            Ok(())
        });
    }

    #[test]
    fn a_log_level_that_enables_nothing_is_refused() {
        for quiet in ["off", "karo=off", "off,karo=off"] {
            let c = Config {
                log_level: quiet.into(),
                ..Config::default()
            };
            assert_eq!(problem_keys(&c), ["logLevel"], "{quiet}");
        }
        for fine in ["error", "info,kube=warn", "karo=debug"] {
            let c = Config {
                log_level: fine.into(),
                ..Config::default()
            };
            assert_eq!(problem_keys(&c), Vec::<String>::new(), "{fine}");
        }
    }

    #[test]
    fn credentials_files_in_use_must_be_there_and_not_empty() {
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("empty");
        let missing = dir.path().join("missing");
        let mut c = Config::default();
        c.webhook.auth.kind = AuthType::Basic;
        c.webhook.auth.username = Some("alertmanager".into());
        c.webhook.auth.password_file = Some(missing.clone());
        c.alertmanager.url = Some("http://am:9093".into());
        c.alertmanager.auth.kind = AuthType::Bearer;
        c.alertmanager.auth.token_file = Some(empty);
        // The file is not read offline (karo validate), only by the daemon.
        assert_eq!(problem_keys(&c), Vec::<String>::new());
        let err = c.check_files().expect_err("refused");
        let keys: Vec<&str> = err.problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            keys,
            ["webhook.auth.passwordFile", "alertmanager.auth.tokenFile"]
        );
        assert!(err.problems[0].reason.contains("cannot read"), "{err}");
        assert!(err.problems[1].reason.contains("is empty"), "{err}");
        // Not in use: not checked.
        c.webhook.auth.kind = AuthType::None;
        c.alertmanager.auth.kind = AuthType::None;
        assert!(c.check_files().is_ok());
    }
}
