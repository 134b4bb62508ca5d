//! Helpers shared by the alert-to-Job integration tests: a Karo scoped to one
//! namespace, reactions from YAML, Jobs and Events read back.

#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::Api;
use serde_json::Value;

use karo::crd::AlertReaction;

use crate::support::{wait_for, ControlPlane, KaroProcess};

/// Hang guard for anything that should happen "soon".
pub const SOON: Duration = Duration::from_secs(60);

/// A running Karo that watches only `namespace`, with its config file kept alive.
pub struct Karo {
    pub process: KaroProcess,
    pub config: tempfile::NamedTempFile,
}

impl Karo {
    pub fn url(&self) -> &str {
        self.process.url()
    }

    pub fn webhook(&self) -> String {
        format!("{}/webhook", self.process.url())
    }
}

/// Starts `karo run` against `cp`, watching `namespace`, with `extra` YAML appended
/// to its config file.
pub async fn start_karo(cp: &ControlPlane, namespace: &str, extra: &str) -> Karo {
    let mut config = tempfile::NamedTempFile::new().expect("temp config file");
    let yaml = format!("namespaces: [{namespace}]\n{extra}");
    std::fs::write(config.path(), yaml).expect("writing config");
    let path = config.path().to_string_lossy().to_string();
    let process = KaroProcess::start(cp.kubeconfig(), &["--config", &path], &[])
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let _ = &mut config;
    Karo { process, config }
}

/// Creates an AlertReaction from YAML in `namespace`.
pub async fn apply_reaction(cp: &ControlPlane, namespace: &str, yaml: &str) -> AlertReaction {
    let mut ar: AlertReaction = serde_yaml::from_str(yaml).expect("reaction YAML");
    ar.metadata.namespace = Some(namespace.to_string());
    let api: Api<AlertReaction> = Api::namespaced(cp.client().await, namespace);
    api.create(&PostParams::default(), &ar)
        .await
        .unwrap_or_else(|e| panic!("creating reaction: {e}"))
}

pub async fn reaction(cp: &ControlPlane, namespace: &str, name: &str) -> AlertReaction {
    let api: Api<AlertReaction> = Api::namespaced(cp.client().await, namespace);
    api.get(name).await.expect("reading reaction")
}

/// Waits until the reaction's `Ready` condition has `status`; returns its message.
pub async fn wait_ready_condition(
    cp: &ControlPlane,
    namespace: &str,
    name: &str,
    status: &str,
) -> (String, String) {
    let api: Api<AlertReaction> = Api::namespaced(cp.client().await, namespace);
    wait_for(SOON, || {
        let api = api.clone();
        async move {
            let ar = api.get(name).await.ok()?;
            let c = ar
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (c.status == status).then_some((c.reason, c.message))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("reaction {name} never Ready={status}: {e}"))
}

pub async fn jobs(cp: &ControlPlane, namespace: &str) -> Vec<Job> {
    let api: Api<Job> = Api::namespaced(cp.client().await, namespace);
    api.list(&ListParams::default())
        .await
        .expect("listing jobs")
        .items
}

/// Waits until exactly `n` Jobs exist (never returns early with more).
pub async fn wait_jobs(cp: &ControlPlane, namespace: &str, n: usize) -> Vec<Job> {
    wait_for(SOON, || async move {
        let j = jobs(cp, namespace).await;
        assert!(j.len() <= n, "expected {n} Jobs, found {}", j.len());
        (j.len() == n).then_some(j)
    })
    .await
    .unwrap_or_else(|e| panic!("waiting for {n} Jobs in {namespace}: {e}"))
}

pub async fn events(cp: &ControlPlane, namespace: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(cp.client().await, namespace);
    api.list(&ListParams::default())
        .await
        .expect("listing events")
        .items
}

/// Waits for an Event with `reason` whose note contains `needle`.
pub async fn wait_event(cp: &ControlPlane, namespace: &str, reason: &str, needle: &str) -> Event {
    wait_for(SOON, || async move {
        events(cp, namespace).await.into_iter().find(|e| {
            e.reason.as_deref() == Some(reason) && e.note.as_deref().unwrap_or("").contains(needle)
        })
    })
    .await
    .unwrap_or_else(|e| panic!("no {reason} event containing {needle:?}: {e}"))
}

pub async fn wait_trigger_count(cp: &ControlPlane, namespace: &str, name: &str, n: i64) {
    let api: Api<AlertReaction> = Api::namespaced(cp.client().await, namespace);
    wait_for(SOON, || {
        let api = api.clone();
        async move {
            let got = api.get(name).await.ok()?.status?.trigger_count;
            (got == Some(n)).then_some(())
        }
    })
    .await
    .unwrap_or_else(|e| panic!("triggerCount of {name} never {n}: {e}"));
}

/// Posts a notification; returns (status code, body as JSON or string).
pub async fn post(url: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("posting to karo");
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (code, body)
}

pub async fn post_json(url: &str, body: &Value) -> (u16, Value) {
    post(url, "application/json", body.to_string()).await
}

/// A notification as Alertmanager 0.25 sends it.
pub fn notification(alerts: Vec<Value>) -> Value {
    serde_json::json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"x\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "karo",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    })
}

pub fn alert(labels: Value, annotations: Value, starts_at: &str) -> Value {
    serde_json::json!({
        "status": "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph",
    })
}

/// The first container of a Job's pod.
pub fn container(job: &Job) -> &k8s_openapi::api::core::v1::Container {
    &job.spec
        .as_ref()
        .expect("job spec")
        .template
        .spec
        .as_ref()
        .expect("pod spec")
        .containers[0]
}

pub async fn metric(url: &str, name: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
