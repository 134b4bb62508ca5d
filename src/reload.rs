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
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::config::{self, Config, Overrides};
use crate::context::Context;
use crate::{controller, run, telemetry};

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

/// Reloads now. Serialised: concurrent triggers run one after another.
pub async fn reload(ctx: &Arc<Context>, trigger: &str) -> Result<Reloaded, String> {
    let _guard = ctx.reload_lock.lock().await;
    let result = load_and_swap(ctx);
    let m = &ctx.metrics;
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
    if matches!(&result, Ok(r) if r.changed) {
        controller::recompile_all(ctx);
    }
    result
}

fn load_and_swap(ctx: &Arc<Context>) -> Result<Reloaded, String> {
    let source = &ctx.config_source;
    if let Some(file) = &source.file {
        if !file.exists() {
            return Err(format!("config file {} does not exist", file.display()));
        }
    }
    let mut new = config::figment(source.file.as_deref(), &source.overrides)
        .extract::<Config>()
        .map_err(|e| config::ConfigError::from_figment(e).to_string())?;
    new.validate().map_err(|e| e.to_string())?;
    let current = ctx.runtime();
    let restart_required = keep_restart_only(&current.config, &mut new);
    for key in &restart_required {
        warn!(key = %key, "this setting changes only on restart; the running value stays");
    }
    let runtime = run::prepare(new, &ctx.renderer)?;
    let changed = runtime.config != current.config || runtime.skeleton != current.skeleton;
    if runtime.config.log_level != current.config.log_level {
        telemetry::set_level(&runtime.config.log_level)?;
    }
    ctx.runtime.store(Arc::new(runtime));
    Ok(Reloaded {
        changed,
        restart_required,
    })
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
    keys
}

/// The files whose content makes up the configuration.
fn watched_files(ctx: &Context) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ctx.config_source.file.iter().cloned().collect();
    if let Some(t) = &ctx.runtime().config.job_template_file {
        files.push(t.clone());
    }
    files
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

/// Watches the directories of the config file and the Job template file. The
/// directory, not the file: Kubernetes updates a mounted ConfigMap by swapping the
/// `..data` symlink, which a watch on the old file never sees.
pub fn spawn_watcher(ctx: Arc<Context>) -> Result<(), String> {
    if ctx.config_source.file.is_none() {
        return Ok(());
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = tx.send(());
        }
    })
    .map_err(|e| format!("cannot watch the config file: {e}"))?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    let watch_dirs =
        |watcher: &mut notify::RecommendedWatcher, dirs: &mut Vec<PathBuf>, files: &[PathBuf]| {
            for f in files {
                let dir = f
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."));
                let dir = if dir.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    dir
                };
                if !dirs.contains(&dir) {
                    match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                        Ok(()) => dirs.push(dir),
                        Err(e) => warn!(dir = %dir.display(), error = %e, "cannot watch directory"),
                    }
                }
            }
        };
    watch_dirs(&mut watcher, &mut dirs, &watched_files(&ctx));
    tokio::spawn(async move {
        let mut last = digest(&watched_files(&ctx));
        while rx.recv().await.is_some() {
            // Debounce: wait until the burst of events is over.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if digest(&watched_files(&ctx)) == last {
                continue;
            }
            let _ = reload(&ctx, "file change").await;
            // A new Job template file may live elsewhere.
            watch_dirs(&mut watcher, &mut dirs, &watched_files(&ctx));
            last = digest(&watched_files(&ctx));
        }
    });
    Ok(())
}

/// Reloads on `SIGHUP`.
pub fn spawn_sighup(ctx: Arc<Context>) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let _ = reload(&ctx, "SIGHUP").await;
        }
    });
    Ok(())
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
