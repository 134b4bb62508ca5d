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
    /// How it was started, for `restart`.
    launch: Launch,
    dir: TestDir,
    /// Holds `config.yaml` when Karo was started with `start_with_config`.
    config: Option<TestDir>,
}

/// What `karo run` is started with besides its port.
struct Launch {
    kubeconfig: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Launch {
    /// `karo run --http-port <port> <args>` in `dir`, logging to `dir/karo.log`.
    fn spawn(&self, dir: &Path, port: u16) -> Result<(Proc, Probe, String)> {
        let mut cmd = Command::new(karo_bin());
        cmd.current_dir(dir)
            .arg("run")
            .arg("--http-port")
            .arg(port.to_string())
            .args(&self.args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KARO_HTTP__PORT", port.to_string());
        if !self.env.iter().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", "info,karo=debug");
        }
        // Plain text, so that tests can search the log.
        cmd.env("NO_COLOR", "1");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let proc = Proc::spawn("karo", cmd, &dir.join("karo.log"))?;
        let url = format!("http://127.0.0.1:{port}");
        Ok((proc, Probe::get(format!("{url}/readyz")), url))
    }
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
        let launch = Launch {
            kubeconfig: kubeconfig.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let (proc, _, url) =
            start_on_free_port(KARO_READY_TIMEOUT, |port, _| launch.spawn(dir.path(), port))
                .await?;
        Ok(KaroProcess {
            proc,
            url,
            launch,
            dir,
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

    /// `start_with_config` on `port` (from `free_port`), for a test that must name
    /// Karo's webhook before Karo starts, as an Alertmanager config does.
    pub async fn start_with_config_on_port(
        kubeconfig: &Path,
        config: &str,
        port: u16,
    ) -> Result<KaroProcess> {
        let config_dir = TestDir::new("karo-config")?;
        let file = config_dir.path().join("config.yaml");
        std::fs::write(&file, config)?;
        let dir = TestDir::new("karo")?;
        let launch = Launch {
            kubeconfig: kubeconfig.to_path_buf(),
            args: vec!["--config".into(), file.to_string_lossy().to_string()],
            env: Vec::new(),
        };
        let (mut proc, probe, url) = launch.spawn(dir.path(), port)?;
        probe.wait(&mut proc, KARO_READY_TIMEOUT).await?;
        Ok(KaroProcess {
            proc,
            url,
            launch,
            dir,
            config: Some(config_dir),
        })
    }

    /// SIGKILL and reap: no graceful stop, the Lease stays held until it expires.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// After `kill`: starts Karo again with the same arguments, config file and
    /// port (as a crashed pod comes back behind its Service), and waits until
    /// `/readyz` is 200. Its output goes on in the same log.
    pub async fn restart(&mut self) -> Result<()> {
        self.proc.kill();
        let port = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .expect("Karo's URL ends with its port");
        let (mut proc, probe, _) = self.launch.spawn(self.dir.path(), port)?;
        let ready = probe.wait(&mut proc, KARO_READY_TIMEOUT).await;
        self.proc = proc;
        ready
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

    /// After a `signal` that stops Karo: waits up to `timeout` for it to exit; SIGKILL
    /// after that. Returns the exit status of an exit within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = self.proc.wait_exit(timeout);
        self.proc.kill();
        status
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
