//! Karo's metrics, linted by the real `promtool`, after traffic has exercised them:
//! a Run created, its repeated delivery, its Job created and succeeded, a bad body.

use std::process::Command;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::support::bins;
use crate::support::files::succeeded;
use crate::support::karo_lib::RunPhase;
use crate::support::process::run_output;
use crate::support::scenario::Scenario;
use crate::support::webhook::firing;

#[tokio::test]
async fn metrics_pass_promtool_check_metrics() {
    let (s, karo) = Scenario::build("metrics")
        .reaction(
            "metadata: {name: m}\nspec:\n  alertName: M\n  actions: [{name: a, image: busybox}]\n",
        )
        .start()
        .await;
    let n = firing([json!({"alertname": "M"})], "2026-01-02T00:00:00Z");
    let first = karo.notify_ok(&n).await;
    // The runner creates the Job (and counts it once its Run says so).
    let job = s.wait_jobs(1).await.remove(0);
    karo.wait_metric("jobs_created_total", |v| v >= 1.0).await;
    // A repeated delivery, a bad body.
    karo.notify_ok(&n).await;
    karo.post("application/json", "not json").await;
    // Completed, the Job's Run succeeds and is measured.
    let jobs_api: Api<Job> = Api::namespaced(s.cp().client().await, &s.ns);
    let complete =
        json!({"status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}});
    jobs_api
        .patch_status(
            job.metadata.name.as_deref().expect("name"),
            &PatchParams::default(),
            &Patch::Merge(&complete),
        )
        .await
        .expect("complete the Job");
    let run = first["runs"][0].as_str().expect("the Run");
    s.wait_run_phase(run, RunPhase::Succeeded).await;
    karo.wait_metric("karo_runs_total{phase=\"Succeeded\"}", |v| v >= 1.0)
        .await;

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
    assert_eq!(karo.metric("karo_runs_created_total").await, 1.0);
    assert_eq!(karo.metric("karo_jobs_deduplicated_total").await, 1.0);
    assert_eq!(karo.metric("alert_reactions_total").await, 1.0);
    assert_eq!(karo.metric("karo_run_duration_seconds_count").await, 1.0);
    assert_eq!(karo.metric("karo_leader").await, 1.0);
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
