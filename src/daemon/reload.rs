//! Live configuration: the config file (and the Job template file it names) is
//! watched, and `SIGHUP` or `POST /-/reload` reload too. A new configuration is
//! loaded and validated whole before it replaces the running one; an invalid one
//! is refused and the running one stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::core::render::Renderer;
use crate::core::snapshot::{Snapshot, SnapshotError};
use crate::daemon::metrics::Metrics;
use crate::daemon::telemetry::{self, TelemetryError};
use crate::model::config::{self, Config, ConfigError, Overrides};

/// Events closer together than this are one change (a ConfigMap update is
/// several renames in a row).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Where the configuration comes from, kept for reloads.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The config file, if there is one.
    pub file: Option<PathBuf>,
    pub overrides: Overrides,
}

/// What a reload did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Reloaded {
    /// Whether anything changed.
    pub changed: bool,
    /// Keys whose new value only takes effect after a restart (old value kept).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub restart_required: Vec<String>,
}

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("config file {} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Snapshot(#[from] SnapshotError),
    #[error("{0}")]
    LogLevel(#[from] TelemetryError),
    #[error("{what}: {source}")]
    Setup {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The one owner of the configuration in effect: builds each new snapshot and
/// publishes it; readers subscribe to the channel.
pub struct Reloader {
    source: ConfigSource,
    snapshots: watch::Sender<Arc<Snapshot>>,
    renderer: Arc<Renderer>,
    metrics: Arc<Metrics>,
    /// Reloads run one at a time.
    lock: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(
        source: ConfigSource,
        first: Snapshot,
        renderer: Arc<Renderer>,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.config_last_reload_successful.set(1);
        metrics
            .config_last_reload_success_timestamp
            .set(jiff::Timestamp::now().as_millisecond() as f64 / 1000.0);
        Reloader {
            source,
            snapshots: watch::Sender::new(Arc::new(first)),
            renderer,
            metrics,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// A receiver of every snapshot from now on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.subscribe()
    }

    /// Reloads now. Serialised: concurrent triggers run one after another.
    pub async fn reload(&self, trigger: &str) -> Result<Reloaded, ReloadError> {
        let _guard = self.lock.lock().await;
        let result = self.load_and_publish();
        let m = &self.metrics;
        match &result {
            Ok(r) => {
                m.config_reloads.with_label_values(&["success"]).inc();
                m.config_last_reload_successful.set(1);
                m.config_last_reload_success_timestamp
                    .set(jiff::Timestamp::now().as_millisecond() as f64 / 1000.0);
                if r.changed {
                    info!(trigger, restart_required = ?r.restart_required, "configuration reloaded");
                }
            }
            Err(e) => {
                m.config_reloads.with_label_values(&["failure"]).inc();
                m.config_last_reload_successful.set(0);
                error!(trigger, error = %e, "configuration reload failed; the running configuration stays");
            }
        }
        result
    }

    fn load_and_publish(&self) -> Result<Reloaded, ReloadError> {
        let source = &self.source;
        if let Some(file) = &source.file {
            if !file.exists() {
                return Err(ReloadError::Missing(file.clone()));
            }
        }
        let mut new = config::figment(source.file.as_deref(), &source.overrides)
            .extract::<Config>()
            .map_err(ConfigError::from_figment)?;
        new.validate()?;
        new.check_files()?;
        let current = self.snapshots.borrow().clone();
        let restart_required = keep_restart_only(&current.config, &mut new);
        for key in &restart_required {
            warn!(key = %key, "this setting changes only on restart; the running value stays");
        }
        let snapshot = Snapshot::prepare(new, &self.renderer)?;
        let changed = snapshot != *current;
        if snapshot.config.log_level != current.config.log_level {
            telemetry::set_level(&snapshot.config.log_level)?;
        }
        if changed {
            self.snapshots.send_replace(Arc::new(snapshot));
        }
        Ok(Reloaded {
            changed,
            restart_required,
        })
    }

    /// The files whose content makes up the configuration.
    fn watched_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.source.file.iter().cloned().collect();
        if let Some(t) = &self.snapshots.borrow().config.job_template_file {
            files.push(t.clone());
        }
        files
    }

    /// Watches the directories of the config file and the Job template file. The
    /// directory, not the file: Kubernetes updates a mounted ConfigMap by swapping
    /// the `..data` symlink, which a watch on the old file never sees.
    pub fn spawn_watcher(self: &Arc<Self>) -> Result<(), ReloadError> {
        if self.source.file.is_none() {
            return Ok(());
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                let _ = tx.send(());
            }
        })
        .map_err(|e| ReloadError::Setup {
            what: "cannot watch the config file",
            source: std::io::Error::other(e),
        })?;
        let mut dirs: Vec<PathBuf> = Vec::new();
        watch_dirs(&mut watcher, &mut dirs, &self.watched_files());
        let this = self.clone();
        tokio::spawn(async move {
            let mut last = digest(&this.watched_files());
            while rx.recv().await.is_some() {
                // Debounce: wait until the burst of events is over.
                loop {
                    match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                if digest(&this.watched_files()) == last {
                    continue;
                }
                let _ = this.reload("file change").await;
                // A new Job template file may live elsewhere.
                watch_dirs(&mut watcher, &mut dirs, &this.watched_files());
                last = digest(&this.watched_files());
            }
        });
        Ok(())
    }

    /// Reloads on `SIGHUP`.
    pub fn spawn_sighup(self: &Arc<Self>) -> Result<(), ReloadError> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).map_err(|source| ReloadError::Setup {
            what: "cannot handle SIGHUP",
            source,
        })?;
        let this = self.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = this.reload("SIGHUP").await;
            }
        });
        Ok(())
    }
}

/// Watches the directories of `files` not watched yet.
fn watch_dirs(
    watcher: &mut notify::RecommendedWatcher,
    dirs: &mut Vec<PathBuf>,
    files: &[PathBuf],
) {
    for f in files {
        let dir = f
            .parent()
            .map(Path::to_path_buf)
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        if !dirs.contains(&dir) {
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => dirs.push(dir),
                Err(e) => warn!(dir = %dir.display(), error = %e, "cannot watch directory"),
            }
        }
    }
}

/// A digest of the files' contents (an unreadable file counts as its error).
fn digest(files: &[PathBuf]) -> Vec<u8> {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        match std::fs::read(f) {
            Ok(bytes) => h.update(&bytes),
            Err(e) => h.update(e.to_string().as_bytes()),
        }
    }
    h.finalize().to_vec()
}

/// Settings fixed at startup keep their running values; returns their keys.
fn keep_restart_only(current: &Config, new: &mut Config) -> Vec<String> {
    let mut keys = Vec::new();
    if new.http.port != current.http.port {
        keys.push("http.port".to_string());
        new.http.port = current.http.port;
    }
    if new.webhook.port != current.webhook.port {
        keys.push("webhook.port".to_string());
        new.webhook.port = current.webhook.port;
    }
    if new.webhook.tls.enabled != current.webhook.tls.enabled {
        keys.push("webhook.tls.enabled".to_string());
        new.webhook.tls.enabled = current.webhook.tls.enabled;
    }
    if new.webhook.tls.cert_file != current.webhook.tls.cert_file
        || new.webhook.tls.key_file != current.webhook.tls.key_file
    {
        // The files' content is watched; their paths are fixed at startup.
        keys.push("webhook.tls.certFile/keyFile".to_string());
        new.webhook.tls.cert_file = current.webhook.tls.cert_file.clone();
        new.webhook.tls.key_file = current.webhook.tls.key_file.clone();
    }
    if new.namespaces != current.namespaces {
        keys.push("namespaces".to_string());
        new.namespaces = current.namespaces.clone();
    }
    if new.limits.api_timeout_seconds != current.limits.api_timeout_seconds {
        // The Kubernetes client is built once, at startup.
        keys.push("limits.apiTimeoutSeconds".to_string());
        new.limits.api_timeout_seconds = current.limits.api_timeout_seconds;
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_only_settings_keep_running_values() {
        let current = Config::default();
        let mut new = Config::default();
        new.http.port = 9999;
        new.namespaces = vec!["a".into()];
        new.dry_run = true;
        let keys = keep_restart_only(&current, &mut new);
        assert_eq!(
            keys,
            vec!["http.port".to_string(), "namespaces".to_string()]
        );
        assert_eq!(new.http.port, current.http.port);
        assert!(new.namespaces.is_empty());
        assert!(new.dry_run, "other settings change");
    }
}
