//! What the tests send to Karo's webhook, and read from its `/metrics`.

use std::time::Duration;

use serde_json::{json, Value};

/// Posts `body`; returns the status code and the answer (JSON, or else a string).
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

/// The sum of the samples of `name` (a metric name, or a prefix of a series) that
/// Karo at `url` exports.
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

/// A notification as Alertmanager 0.25 sends it.
pub fn notification(alerts: Vec<Value>) -> Value {
    json!({
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

/// A firing alert of a notification.
pub fn alert(labels: Value, annotations: Value, starts_at: &str) -> Value {
    json!({
        "status": "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph",
    })
}

/// A notification of firing alerts without annotations, one for each set of labels,
/// all started at `starts_at`.
pub fn firing(labels: impl IntoIterator<Item = Value>, starts_at: &str) -> Value {
    notification(
        labels
            .into_iter()
            .map(|labels| alert(labels, json!({}), starts_at))
            .collect(),
    )
}

/// The shortest request Karo accepts, as the README's troubleshooting section sends
/// it: one alert with only labels.
pub fn bare_alert(labels: Value) -> Value {
    json!({"alerts": [{"labels": labels}]})
}
