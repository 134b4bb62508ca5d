//! A real Alertmanager on loopback.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};

use super::bins;
use super::process::{free_port, lost_port_race, run_output, Proc, TestDir};
use super::wait_until;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const PORT_ATTEMPTS: usize = 3;

/// A `prometheus-alertmanager` process with its own config and storage. Killed on drop.
pub struct Alertmanager {
    // Field order matters: the process is killed before its dir is removed.
    proc: Proc,
    url: String,
    cluster_address: Option<String>,
    dir: TestDir,
}

impl Alertmanager {
    /// A single Alertmanager, without clustering.
    pub async fn start(config_yaml: &str) -> Result<Alertmanager> {
        Self::start_peer(config_yaml, None, &[]).await
    }

    /// An HA peer: gossip on `cluster_listen` (a loopback `host:port`; `None` disables
    /// clustering) and join `peers` (their cluster addresses).
    pub async fn start_peer(
        config_yaml: &str,
        cluster_listen: Option<&str>,
        peers: &[String],
    ) -> Result<Alertmanager> {
        let mut args = vec![format!(
            "--cluster.listen-address={}",
            cluster_listen.unwrap_or("")
        )];
        args.extend(peers.iter().map(|p| format!("--cluster.peer={p}")));
        Self::start_with_args(config_yaml, &args, cluster_listen).await
    }

    /// Any further flags (for example `--cluster.peer-timeout=1s`, `--log.level=debug`).
    /// `args` must include a `--cluster.listen-address`.
    pub async fn start_with_args(
        config_yaml: &str,
        args: &[String],
        cluster_address: Option<&str>,
    ) -> Result<Alertmanager> {
        let bin = bins::alertmanager()?;
        let dir = TestDir::new("alertmanager")?;
        let config = dir.path().join("alertmanager.yml");
        fs::write(&config, config_yaml)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            let mut cmd = Command::new(&bin);
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.path={}",
                    dir.path().join(format!("data-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .args(args);
            let mut proc = Proc::spawn("alertmanager", cmd, &dir.path().join("alertmanager.log"))?;
            let url = format!("http://127.0.0.1:{port}");
            match wait_ready(&mut proc, &url).await {
                Ok(()) => {
                    return Ok(Alertmanager {
                        proc,
                        url,
                        cluster_address: cluster_address.map(str::to_string),
                        dir,
                    })
                }
                Err(e) if attempt < PORT_ATTEMPTS && lost_port_race(&proc.log_tail(20)) => {
                    eprintln!("karo tests: alertmanager port {port} was taken, retrying: {e:#}");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The gossip address, for `--cluster.peer` of another peer.
    pub fn cluster_address(&self) -> Option<&str> {
        self.cluster_address.as_deref()
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// `amtool` with `--alertmanager.url` set; add the subcommand and run it.
    pub fn amtool(&self) -> Command {
        let mut cmd = Command::new(bins::amtool().expect("amtool"));
        cmd.arg(format!("--alertmanager.url={}", self.url));
        cmd
    }

    /// Runs `amtool <args>` against this Alertmanager and returns its output.
    pub fn amtool_output(&self, args: &[&str]) -> Output {
        let mut cmd = self.amtool();
        cmd.args(args);
        run_output(cmd, None).expect("running amtool")
    }

    /// Posts a firing alert (`endsAt` left to Alertmanager). `alertname` is a label.
    pub async fn fire(&self, labels: &[(&str, &str)], annotations: &[(&str, &str)]) {
        let alert = json!({
            "labels": to_map(labels),
            "annotations": to_map(annotations),
        });
        self.post_alerts(&json!([alert]))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Resolves the alert with these labels (`endsAt` now). `startsAt` equals `endsAt`
    /// so Alertmanager keeps the earlier `startsAt` of the firing alert.
    pub async fn resolve(&self, labels: &[(&str, &str)], annotations: &[(&str, &str)]) {
        let now = jiff::Timestamp::now().to_string();
        let alert = json!({
            "labels": to_map(labels),
            "annotations": to_map(annotations),
            "startsAt": now,
            "endsAt": now,
        });
        self.post_alerts(&json!([alert]))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// `POST /api/v2/alerts` with a JSON array of alerts.
    pub async fn post_alerts(&self, alerts: &Value) -> Result<()> {
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v2/alerts", self.url))
            .json(alerts)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .with_context(|| format!("posting alerts to {}", self.url))?;
        let status = resp.status();
        if !status.is_success() {
            bail!(
                "Alertmanager answered {status} to POST /api/v2/alerts: {}",
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// `GET /api/v2/alerts`: the alerts Alertmanager currently holds.
    pub async fn alerts(&self) -> Result<Value> {
        Ok(reqwest::Client::new()
            .get(format!("{}/api/v2/alerts", self.url))
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

/// A config that sends every alert, grouped by `alertname`, to one webhook at once.
pub fn webhook_config(webhook_url: &str) -> String {
    format!(
        "route:
  receiver: karo
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
- name: karo
  webhook_configs:
  - url: '{webhook_url}'
    send_resolved: true
"
    )
}

fn to_map(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect()
}

async fn wait_ready(proc: &mut Proc, url: &str) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let ready = format!("{url}/-/ready");
    let waited = wait_until(READY_TIMEOUT, || {
        let exited = proc.exited();
        let get = http.get(&ready).send();
        async move {
            exited
                || match get.await {
                    Ok(r) => r.status().is_success(),
                    Err(_) => false,
                }
        }
    })
    .await;
    proc.check_running()?;
    waited.map_err(|e| {
        anyhow!(
            "alertmanager at {url} not ready ({e}); last lines of its log:\n{}",
            proc.log_tail(40)
        )
    })
}
