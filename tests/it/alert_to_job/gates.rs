//! Whether a matching alert creates a Job: resolved alerts trigger only the reactions
//! that ask for them (`triggerOn`); `suspend`, `dryRun`, `cooldown` and
//! `concurrencyPolicy: Forbid` skip, and a repeated occurrence is deduplicated.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::{reaction, strings};
use crate::support::scenario::{first_container, Scenario};
use crate::support::webhook::{alert, firing, notification};

#[tokio::test]
async fn resolved_triggers_only_when_asked() {
    let (s, karo) = Scenario::build("resolved")
        .reaction(&reaction(
            "on-firing",
            "Flappy",
            "",
            r#", command: ["true"]"#,
        ))
        .reaction(&reaction(
            "on-both",
            "Flappy",
            "  triggerOn: [firing, resolved]\n",
            r#", command: ["echo", "{{status}}"]"#,
        ))
        .start()
        .await;
    let mut resolved = alert(
        json!({"alertname": "Flappy"}),
        json!({}),
        "2026-02-01T00:00:00Z",
    );
    resolved["status"] = json!("resolved");
    resolved["endsAt"] = json!("2026-02-01T00:05:00Z");
    let body = karo.notify_ok(&notification(vec![resolved])).await;
    assert_eq!(body["created"], 1, "{body}");
    let job = s.wait_one_job_of("on-both").await;
    assert_eq!(
        first_container(&job).command,
        Some(strings(&["echo", "resolved"]))
    );
}

#[tokio::test]
async fn suspend_dry_run_cooldown_and_forbid() {
    let gate = |name: &str, extra: &str| reaction(name, "Gate", &format!("  {extra}\n"), "");
    let (s, karo) = Scenario::build("gates")
        .reaction(&gate("suspended", "suspend: true"))
        .reaction(&gate("dry", "dryRun: true"))
        .reaction(&gate("cool", "cooldown: 1h"))
        .reaction(&gate("forbid", "concurrencyPolicy: Forbid"))
        .start()
        .await;
    let send = |starts: &str, instance: &str| {
        firing([json!({"alertname": "Gate", "instance": instance})], starts)
    };
    let body = karo.notify_ok(&send("2026-05-01T00:00:00Z", "i1")).await;
    assert_eq!(body["matched"], 4);
    assert_eq!(body["created"], 2, "{body}"); // cool, forbid
    assert_eq!(body["skipped"], 1, "{body}"); // suspended
    assert_eq!(body["dryRun"], 1, "{body}");
    s.wait_jobs(2).await;
    s.wait_event("Skipped", "suspended").await;
    s.wait_event("Skipped", "Dry run").await;

    // Same alert, new occurrence: cooldown skips; the first forbid Job is still active.
    let body = karo.notify_ok(&send("2026-05-01T00:10:00Z", "i1")).await;
    assert_eq!(body["created"], 0, "{body}");
    assert_eq!(body["skipped"], 3, "{body}");
    s.wait_event("Skipped", "cooldown").await;
    s.wait_event("Skipped", "concurrency").await;
    // A different alert (fingerprint) is not in cooldown; forbid still blocks.
    let (_, body) = karo.notify(&send("2026-05-01T00:10:00Z", "i2")).await;
    assert_eq!(body["created"], 1, "{body}");
    // Once the forbid Job completes, a new one may start.
    let jobs_api: Api<Job> = Api::namespaced(s.cp().client().await, &s.ns);
    for job in s.jobs_of("forbid").await {
        let name = job.metadata.name.clone().expect("name");
        let patch = json!({"status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}});
        jobs_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("complete job");
    }
    let (_, body) = karo.notify(&send("2026-05-01T00:20:00Z", "i3")).await;
    assert_eq!(body["created"], 2, "{body}"); // cool (new fingerprint) and forbid
    s.wait_jobs(5).await;
    // The repeated first occurrence is a duplicate, not a new run.
    let (_, body) = karo.notify(&send("2026-05-01T00:00:00Z", "i1")).await;
    assert_eq!(body["deduplicated"], 2, "{body}");
}
