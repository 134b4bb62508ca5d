//! Karo's metrics, linted by the real `promtool`, after traffic has exercised them.

use std::process::Command;

use serde_json::json;

use crate::support::bins;
use crate::support::files::succeeded;
use crate::support::process::run_output;
use crate::support::scenario::Scenario;
use crate::support::webhook::firing;

#[tokio::test]
async fn metrics_pass_promtool_check_metrics() {
    let (_s, karo) = Scenario::build("metrics")
        .reaction(
            "metadata: {name: m}\nspec:\n  alertName: M\n  actions: [{name: a, image: busybox}]\n",
        )
        .start()
        .await;
    let n = firing([json!({"alertname": "M"})], "2026-01-02T00:00:00Z");
    karo.notify(&n).await;
    karo.notify(&n).await;
    karo.post("application/json", "not json").await;

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
    assert_eq!(karo.metric("jobs_created_total").await, 1.0);
    assert_eq!(karo.metric("karo_jobs_deduplicated_total").await, 1.0);
    assert_eq!(karo.metric("alert_reactions_total").await, 1.0);
    assert_eq!(
        karo.metric("webhook_requests_total{code=\"400\"}").await,
        1.0
    );
    assert_eq!(karo.metric("karo_reactions_loaded").await, 1.0);

    let mut promtool = Command::new(bins::promtool().expect("promtool"));
    promtool.args(["check", "metrics"]);
    let out = run_output(promtool, Some(text.as_bytes())).expect("promtool");
    succeeded(&out, "promtool check metrics");
}
