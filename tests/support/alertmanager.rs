//! A real Alertmanager on loopback, and the configurations the tests give it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use super::bins;
use super::process::{run_output, Proc, TestDir};
use super::ready::{start_on_free_port, Probe};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A `prometheus-alertmanager` process, without clustering, with its own config and
/// storage. Killed on drop.
pub struct Alertmanager {
    // Field order matters: the process is killed before its dir is removed.
    proc: Proc,
    url: String,
    dir: TestDir,
}

impl Alertmanager {
    pub async fn start(config: &AlertmanagerConfig) -> Alertmanager {
        Alertmanager::try_start(config)
            .await
            .unwrap_or_else(|e| panic!("starting Alertmanager: {e:#}"))
    }

    async fn try_start(config: &AlertmanagerConfig) -> Result<Alertmanager> {
        let bin = bins::alertmanager()?;
        let dir = TestDir::new("alertmanager")?;
        let config_file = dir.path().join("alertmanager.yml");
        fs::write(&config_file, config.yaml())?;
        let (proc, _, url) = start_on_free_port(READY_TIMEOUT, |port, attempt| {
            let url = format!("http://127.0.0.1:{port}");
            let mut cmd = Command::new(&bin);
            cmd.arg(format!("--config.file={}", config_file.display()))
                .arg(format!(
                    "--storage.path={}",
                    dir.path().join(format!("data-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=");
            let proc = Proc::spawn("alertmanager", cmd, &dir.path().join("alertmanager.log"))?;
            Ok((proc, Probe::get(format!("{url}/-/ready")), url))
        })
        .await?;
        Ok(Alertmanager { proc, url, dir })
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `http://127.0.0.1:<port>`: its API and UI.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `GET /api/v2/silences`: every silence, expired ones included.
    pub async fn silences(&self) -> Vec<Value> {
        self.get_json("/api/v2/silences").await
    }

    /// `GET /api/v2/alerts`: the alerts that have not ended, with their state
    /// (`active`, `suppressed` with `silencedBy`, `unprocessed`).
    pub async fn alerts(&self) -> Vec<Value> {
        self.get_json("/api/v2/alerts").await
    }

    async fn get_json(&self, path: &str) -> Vec<Value> {
        let url = format!("{}{path}", self.url);
        let resp = reqwest::Client::new()
            .get(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        resp.json()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: not a JSON list: {e}"))
    }

    /// `amtool --alertmanager.url=<url> -o json <args>` (Alertmanager's own client;
    /// `tests/platform/setup.sh` installs it): its JSON output.
    pub fn amtool(&self, args: &[&str]) -> Value {
        let mut cmd = Command::new(bins::amtool().unwrap_or_else(|e| panic!("{e:#}")));
        cmd.arg(format!("--alertmanager.url={}", self.url))
            .args(["-o", "json"])
            .args(args);
        let out = run_output(cmd, None).expect("running amtool");
        assert!(
            out.status.success(),
            "amtool {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "amtool {}: not JSON ({e}): {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Posts a firing alert (`startsAt` and `endsAt` left to Alertmanager).
    /// `alertname` is a label.
    pub async fn fire(&self, labels: &[(&str, &str)], annotations: &[(&str, &str)]) {
        self.post_alert(alert(labels, annotations)).await;
    }

    /// Posts a firing alert that started at `starts_at`: for Alertmanager, a new
    /// occurrence when it differs from the earlier one's.
    pub async fn fire_starting(
        &self,
        starts_at: &str,
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
    ) {
        let mut alert = alert(labels, annotations);
        alert["startsAt"] = json!(starts_at);
        self.post_alert(alert).await;
    }

    /// Resolves the alert with these labels (`endsAt` now). `startsAt` equals `endsAt`
    /// so Alertmanager keeps the earlier `startsAt` of the firing alert.
    pub async fn resolve(&self, labels: &[(&str, &str)], annotations: &[(&str, &str)]) {
        let now = jiff::Timestamp::now().to_string();
        let mut alert = alert(labels, annotations);
        alert["startsAt"] = json!(now);
        alert["endsAt"] = json!(now);
        self.post_alert(alert).await;
    }

    /// `POST /api/v2/alerts` with one alert.
    async fn post_alert(&self, alert: Value) {
        self.post_alerts(&json!([alert]))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    async fn post_alerts(&self, alerts: &Value) -> Result<()> {
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
}

fn alert(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Value {
    json!({"labels": to_map(labels), "annotations": to_map(annotations)})
}

fn to_map(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect()
}

/// An Alertmanager configuration: one route to one receiver, `karo`, whose webhooks
/// are Karo's. Built as data, so that every test states only what it changes.
#[derive(Clone, Debug)]
pub struct AlertmanagerConfig {
    group_by: Vec<String>,
    repeat_interval: String,
    urls: Vec<String>,
    send_resolved: bool,
    http_config: Map<String, Value>,
}

impl AlertmanagerConfig {
    /// Every alert, grouped by `alertname`, to the webhook at `url`: at once
    /// (`group_wait` 0s, `group_interval` 1s), again after an hour, resolved ones too.
    pub fn webhook(url: &str) -> AlertmanagerConfig {
        AlertmanagerConfig {
            urls: vec![url.to_string()],
            ..AlertmanagerConfig::nowhere()
        }
    }

    /// A receiver without webhooks: Alertmanager runs and notifies nobody.
    pub fn nowhere() -> AlertmanagerConfig {
        AlertmanagerConfig {
            group_by: vec!["alertname".to_string()],
            repeat_interval: "1h".to_string(),
            urls: Vec::new(),
            send_resolved: true,
            http_config: Map::new(),
        }
    }

    /// Every notification goes to `url` as well, with the same settings.
    pub fn and_webhook(mut self, url: &str) -> AlertmanagerConfig {
        self.urls.push(url.to_string());
        self
    }

    pub fn group_by(mut self, labels: &[&str]) -> AlertmanagerConfig {
        self.group_by = labels.iter().map(|l| l.to_string()).collect();
        self
    }

    pub fn repeat_interval(mut self, interval: &str) -> AlertmanagerConfig {
        self.repeat_interval = interval.to_string();
        self
    }

    /// Resolved alerts are not sent.
    pub fn firing_only(mut self) -> AlertmanagerConfig {
        self.send_resolved = false;
        self
    }

    /// `http_config.basic_auth` of the webhooks.
    pub fn basic_auth(mut self, username: &str, password: &str) -> AlertmanagerConfig {
        self.http_config.insert(
            "basic_auth".into(),
            json!({"username": username, "password": password}),
        );
        self
    }

    /// `http_config.authorization.credentials_file` (a bearer token) of the webhooks.
    pub fn bearer_token_file(mut self, path: &Path) -> AlertmanagerConfig {
        self.http_config.insert(
            "authorization".into(),
            json!({"credentials_file": PathBuf::from(path)}),
        );
        self
    }

    /// `http_config.tls_config.ca_file` of the webhooks.
    pub fn ca_file(mut self, path: &Path) -> AlertmanagerConfig {
        self.http_config
            .insert("tls_config".into(), json!({"ca_file": PathBuf::from(path)}));
        self
    }

    /// `alertmanager.yml`.
    pub fn yaml(&self) -> String {
        let webhooks: Vec<Value> = self
            .urls
            .iter()
            .map(|url| {
                let mut webhook = json!({"url": url, "send_resolved": self.send_resolved});
                if !self.http_config.is_empty() {
                    webhook["http_config"] = Value::Object(self.http_config.clone());
                }
                webhook
            })
            .collect();
        let mut receiver = json!({"name": "karo"});
        if !webhooks.is_empty() {
            receiver["webhook_configs"] = Value::Array(webhooks);
        }
        let config = json!({
            "route": {
                "receiver": "karo",
                "group_by": self.group_by,
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": self.repeat_interval,
            },
            "receivers": [receiver],
        });
        serde_yaml::to_string(&config).expect("an Alertmanager config as YAML")
    }
}
