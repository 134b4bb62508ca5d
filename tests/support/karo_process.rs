//! The `karo` binary under test: `karo run` as a daemon, and one-shot commands.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use super::bins::karo_bin;
use super::files::repo_path;
use super::process::{run_output, Proc, TestDir};
use super::ready::{start_on_free_port, wait_for, Probe, SOON};
use super::webhook::{metric, post, post_json};

/// Hang guard for startup (watches sync against a local API server in well under that).
const KARO_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A `karo run` process with a free HTTP port. Killed on drop.
pub struct KaroProcess {
    // Field order matters: the process is killed before its dirs are removed.
    proc: Proc,
    url: String,
    _dir: TestDir,
    /// Holds `config.yaml` when Karo was started with `start_with_config`.
    config: Option<TestDir>,
}

impl KaroProcess {
    /// Starts `karo run --http-port <free> <args>` with `KUBECONFIG=<kubeconfig>`
    /// (and `KARO_HTTP__PORT=<port>`) plus `env`, and waits until `/readyz` is 200.
    pub async fn start(
        kubeconfig: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<KaroProcess> {
        let dir = TestDir::new("karo")?;
        let (proc, _, url) = start_on_free_port(KARO_READY_TIMEOUT, |port, _| {
            let mut cmd = Command::new(karo_bin());
            cmd.current_dir(dir.path())
                .arg("run")
                .arg("--http-port")
                .arg(port.to_string())
                .args(args)
                .env("KUBECONFIG", kubeconfig)
                .env("KARO_HTTP__PORT", port.to_string());
            if !env.iter().any(|(k, _)| *k == "RUST_LOG") {
                cmd.env("RUST_LOG", "info,karo=debug");
            }
            // Plain text, so that tests can search the log.
            cmd.env("NO_COLOR", "1");
            cmd.envs(env.iter().copied());
            let proc = Proc::spawn("karo", cmd, &dir.path().join("karo.log"))?;
            let url = format!("http://127.0.0.1:{port}");
            Ok((proc, Probe::get(format!("{url}/readyz")), url))
        })
        .await?;
        Ok(KaroProcess {
            proc,
            url,
            _dir: dir,
            config: None,
        })
    }

    /// Starts `karo run --config <file>` with `config` as that file, in a directory of
    /// its own (Karo watches the file's directory).
    pub async fn start_with_config(kubeconfig: &Path, config: &str) -> Result<KaroProcess> {
        let dir = TestDir::new("karo-config")?;
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, config)?;
        let path = file.to_string_lossy().to_string();
        let mut karo = KaroProcess::start(kubeconfig, &["--config", &path], &[]).await?;
        karo.config = Some(dir);
        Ok(karo)
    }

    /// The config file given to `start_with_config`.
    pub fn config_path(&self) -> PathBuf {
        self.config
            .as_ref()
            .expect("Karo was started with start_with_config")
            .path()
            .join("config.yaml")
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `127.0.0.1:<port>`, for raw TCP.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// The URL of the webhook on the HTTP port.
    pub fn webhook(&self) -> String {
        format!("{}/webhook", self.url)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Everything Karo printed so far (stdout and stderr).
    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// Posts `body` to the webhook; returns the status code and the body of the answer.
    pub async fn post(&self, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        post(&self.webhook(), content_type, body).await
    }

    /// Posts a JSON notification to the webhook.
    pub async fn notify(&self, notification: &Value) -> (u16, Value) {
        post_json(&self.webhook(), notification).await
    }

    /// Posts a notification that Karo must accept (200); returns its summary.
    pub async fn notify_ok(&self, notification: &Value) -> Value {
        let (code, body) = self.notify(notification).await;
        assert_eq!(code, 200, "{body}");
        body
    }

    /// The sum of the samples of `name` (a metric name, or a prefix of a series).
    pub async fn metric(&self, name: &str) -> f64 {
        metric(&self.url, name).await
    }

    /// Waits until `accept` holds for `metric(name)`; returns that value.
    pub async fn wait_metric(&self, name: &str, accept: impl Fn(f64) -> bool) -> f64 {
        wait_for(SOON, || async {
            let value = self.metric(name).await;
            accept(value).then_some(value)
        })
        .await
        .unwrap_or_else(|e| panic!("{name} never reached the expected value: {e}"))
    }

    /// Sends `signal` (for example `libc::SIGHUP`).
    pub fn signal(&self, signal: libc::c_int) {
        self.proc.signal(signal);
    }

    /// SIGTERM, then waits up to `timeout` for a graceful exit; SIGKILL after that.
    /// Returns the exit status of a graceful exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.proc.signal(libc::SIGTERM);
        let status = self.proc.wait_exit(timeout);
        self.proc.kill();
        status
    }
}

/// Runs `karo <args>` to completion from the repository root, with no config file
/// from the environment (the built-in defaults, as on a workstation).
pub fn karo_command(args: &[&str]) -> Output {
    let mut cmd = Command::new(karo_bin());
    cmd.current_dir(repo_path(""))
        .env_remove("KARO_CONFIG")
        .args(args);
    run_output(cmd, None).expect("running karo")
}
