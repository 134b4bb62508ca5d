//! The `karo run` binary under test.

use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use anyhow::{anyhow, Result};

use super::bins::karo_bin;
use super::process::{free_port, Proc, TestDir};
use super::wait_until;

/// Hang guard for startup (watches sync against a local API server in well under that).
pub const KARO_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A `karo run` process with a free HTTP port. Killed on drop.
pub struct KaroProcess {
    // Field order matters: the process is killed before its dir is removed.
    proc: Proc,
    port: u16,
    url: String,
    dir: TestDir,
}

impl KaroProcess {
    /// Starts `karo run --http-port <free> <args>` with `KUBECONFIG=<kubeconfig>`
    /// (and `KARO_HTTP__PORT=<port>`) plus `env`, and waits until `/readyz` is 200.
    pub async fn start(
        kubeconfig: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<KaroProcess> {
        let mut karo = Self::spawn(kubeconfig, args, env)?;
        karo.wait_ready(KARO_READY_TIMEOUT).await?;
        Ok(karo)
    }

    /// Like `start`, without waiting for readiness.
    pub fn spawn(kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<KaroProcess> {
        let dir = TestDir::new("karo")?;
        let port = free_port();
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
        Ok(KaroProcess {
            proc,
            port,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        })
    }

    /// Waits until `GET /readyz` answers 200; fails at once if the process exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let readyz = format!("{}/readyz", self.url);
        let proc = &mut self.proc;
        let waited = wait_until(timeout, || {
            let exited = proc.exited();
            let get = http.get(&readyz).send();
            async move {
                exited
                    || match get.await {
                        Ok(r) => r.status().as_u16() == 200,
                        Err(_) => false,
                    }
            }
        })
        .await;
        self.proc.check_running()?;
        waited.map_err(|e| {
            anyhow!(
                "karo at {} not ready ({e}); last lines of its log:\n{}",
                self.url,
                self.proc.log_tail(40)
            )
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Karo's working directory (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> &Path {
        self.proc.log_path()
    }

    /// Everything Karo printed so far (stdout and stderr).
    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        wait_until(timeout, || async { self.log_text().contains(needle) })
            .await
            .map_err(|e| {
                anyhow!(
                    "{needle:?} not in karo's log ({e}); last lines:\n{}",
                    self.proc.log_tail(40)
                )
            })
    }

    /// Sends `signal` (for example `libc::SIGTERM`).
    pub fn signal(&self, signal: libc::c_int) {
        self.proc.signal(signal);
    }

    /// `Some(status)` if the process has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.proc.try_exit_status()
    }

    /// SIGTERM, then waits up to `timeout` for a graceful exit; SIGKILL after that.
    /// Returns the exit status of a graceful exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.proc.signal(libc::SIGTERM);
        let status = self.proc.wait_exit(timeout);
        self.proc.kill();
        status
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}
