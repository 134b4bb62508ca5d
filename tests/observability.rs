//! Karo's metrics, linted by the real `promtool`, after traffic has exercised them.

mod common;
mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;

use common::*;
use support::{bins, ControlPlane};

#[tokio::test]
async fn metrics_pass_promtool_check_metrics() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("metrics").await;
    apply_reaction(
        cp,
        &ns,
        "metadata: {name: m}\nspec:\n  alertName: M\n  actions: [{name: a, image: busybox}]\n",
    )
    .await;
    let karo = start_karo(cp, &ns, "").await;
    wait_ready_condition(cp, &ns, "m", "True").await;
    let n = notification(vec![alert(
        json!({"alertname": "M"}),
        json!({}),
        "2026-01-02T00:00:00Z",
    )]);
    post_json(&karo.webhook(), &n).await;
    post_json(&karo.webhook(), &n).await;
    post(&karo.webhook(), "application/json", "not json").await;

    let text = reqwest::get(format!("{}/metrics", karo.url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    // The seed's four names, exactly.
    for name in [
        "alert_reactions_total",
        "jobs_created_total",
        "webhook_requests_total",
        "errors_total",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
    assert_eq!(metric(karo.url(), "jobs_created_total").await, 1.0);
    assert_eq!(
        metric(karo.url(), "karo_jobs_deduplicated_total").await,
        1.0
    );
    assert_eq!(metric(karo.url(), "alert_reactions_total").await, 1.0);
    assert_eq!(
        metric(karo.url(), "webhook_requests_total{code=\"400\"}").await,
        1.0
    );
    assert_eq!(metric(karo.url(), "karo_reactions_loaded").await, 1.0);

    let mut child = Command::new(bins::promtool().expect("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
