//! Waiting: for a condition to hold, and for a server child to answer on its port.
//!
//! Every timeout here only guards against hangs: a test never asserts how fast
//! something happened.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use super::process::{free_port, Proc};

/// Hang guard for anything that should happen "soon".
pub const SOON: Duration = Duration::from_secs(60);

/// Attempts when another process takes a port between `free_port()` and the bind.
const PORT_ATTEMPTS: usize = 3;

/// Polls `check` until it returns true.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(timeout, || {
        let fut = check();
        async move { fut.await.then_some(()) }
    })
    .await
}

/// Polls `check` until it returns `Some`, and returns that value.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("condition still false after {timeout:?} (hang guard)");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// How to tell that a server is ready: `GET <url>` answers 200.
pub struct Probe {
    url: String,
    bearer: Option<String>,
}

impl Probe {
    pub fn get(url: impl Into<String>) -> Probe {
        Probe {
            url: url.into(),
            bearer: None,
        }
    }

    /// Sends `Authorization: Bearer <token>`.
    pub fn bearer(mut self, token: &str) -> Probe {
        self.bearer = Some(token.to_string());
        self
    }

    /// Polls until the server is ready, for at most `timeout`; fails at once, with the
    /// end of its log, if `proc` exits first.
    pub async fn wait(&self, proc: &mut Proc, timeout: Duration) -> Result<()> {
        // The loopback servers with TLS (kube-apiserver) have self-signed certificates.
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(5))
            .build()?;
        let waited =
            wait_until(timeout, || {
                let exited = proc.exited();
                let mut get = http.get(&self.url);
                if let Some(token) = &self.bearer {
                    get = get.bearer_auth(token);
                }
                let sent = get.send();
                async move {
                    exited || matches!(sent.await, Ok(r) if r.status() == reqwest::StatusCode::OK)
                }
            })
            .await;
        proc.check_running()?;
        waited.map_err(|e| {
            anyhow!(
                "{} at {} not ready ({e}); last lines of {}:\n{}",
                proc.name(),
                self.url,
                proc.log_path().display(),
                proc.log_tail(40)
            )
        })
    }
}

/// Starts a server child on a free loopback port and waits until it is ready; when
/// another process took that port first, starts it again on another one.
/// `launch(port, attempt)` spawns the child and says how to tell that it is ready;
/// `T` is anything else the caller wants back from the attempt that succeeded.
pub async fn start_on_free_port<T>(
    timeout: Duration,
    mut launch: impl FnMut(u16, usize) -> Result<(Proc, Probe, T)>,
) -> Result<(Proc, u16, T)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port();
        let (mut proc, probe, extra) = launch(port, attempt)?;
        match probe.wait(&mut proc, timeout).await {
            Ok(()) => return Ok((proc, port, extra)),
            Err(e) if attempt < PORT_ATTEMPTS && lost_port_race(&proc.log_tail(20)) => {
                eprintln!(
                    "karo tests: a port of {} was taken, retrying: {e:#}",
                    proc.name()
                );
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether a startup failure was a lost race for a port (worth retrying on another).
fn lost_port_race(log: &str) -> bool {
    log.to_ascii_lowercase().contains("address already in use")
}
