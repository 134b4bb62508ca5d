//! Whether a matching alert creates a Job: resolved alerts trigger only the reactions
//! that ask for them (`triggerOn`); `suspend` and `dryRun` create no Run; `cooldown`
//! and `concurrencyPolicy: Forbid` end the occurrence's Run `Skipped` with the reason;
//! a repeated occurrence is deduplicated onto the Runs it has.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{json, Value};

use super::{reaction, strings};
use crate::support::karo_lib::{AlertStatus, RunPhase};
use crate::support::ready::{wait_for, SOON};
use crate::support::scenario::{assert_owned_by, first_container, Scenario};
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
    // The Run of the resolved occurrence, and none for the reaction that only fires.
    assert!(s.runs_of("on-firing").await.is_empty());
    let runs = s.runs_of("on-both").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].spec.alert.status, AlertStatus::Resolved);
    assert_eq!(body["runs"][0].as_str(), runs[0].metadata.name.as_deref());
    assert_owned_by(&job, &runs[0]);
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
    let first = karo.notify_ok(&send("2026-05-01T00:00:00Z", "i1")).await;
    assert_eq!(first["matched"], 4);
    assert_eq!(first["created"], 2, "{first}"); // the Runs of cool and forbid
    assert_eq!(first["skipped"], 1, "{first}"); // suspended: no Run
    assert_eq!(first["dryRun"], 1, "{first}"); // a Run that records it, no Job
    let (cool_1, forbid_1) = (run_of(&first, "cool"), run_of(&first, "forbid"));
    assert_eq!(s.runs().await.len(), 3);
    assert_skipped(&s, &run_of(&first, "dry"), "DryRun").await;
    s.wait_jobs(2).await;
    s.wait_run_phase(&cool_1, RunPhase::Running).await;
    s.wait_run_phase(&forbid_1, RunPhase::Running).await;
    s.wait_event("Skipped", "suspended").await;
    s.wait_event("Skipped", "Dry run").await;

    // Same alert, new occurrence: each gated reaction gets its Run, which the runner
    // skips: cooldown for cool, and the first forbid Run still runs (its Job is active).
    let body = karo.notify_ok(&send("2026-05-01T00:10:00Z", "i1")).await;
    assert_eq!(body["created"], 2, "{body}");
    assert_eq!(body["skipped"], 1, "{body}"); // suspended
    assert_skipped(&s, &run_of(&body, "cool"), "Cooldown").await;
    assert_skipped(&s, &run_of(&body, "forbid"), "Concurrency").await;
    s.wait_event("Skipped", "cooldown").await;
    s.wait_event("Skipped", "concurrency").await;
    // A different alert (fingerprint) is not in cooldown; forbid still blocks.
    let body = karo.notify_ok(&send("2026-05-01T00:10:00Z", "i2")).await;
    assert_eq!(body["created"], 2, "{body}");
    s.wait_run_phase(&run_of(&body, "cool"), RunPhase::Running)
        .await;
    assert_skipped(&s, &run_of(&body, "forbid"), "Concurrency").await;
    s.wait_jobs(3).await;
    assert_eq!(s.jobs_of("forbid").await.len(), 1);

    // Once the forbid Job completes, its Run succeeds and a new one may start.
    let jobs_api: Api<Job> = Api::namespaced(s.cp().client().await, &s.ns);
    for job in s.jobs_of("forbid").await {
        let name = job.metadata.name.clone().expect("name");
        let patch = json!({"status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}});
        jobs_api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("complete job");
    }
    s.wait_run_phase(&forbid_1, RunPhase::Succeeded).await;
    let body = karo.notify_ok(&send("2026-05-01T00:20:00Z", "i3")).await;
    assert_eq!(body["created"], 2, "{body}"); // cool (new fingerprint) and forbid
    s.wait_run_phase(&run_of(&body, "cool"), RunPhase::Running)
        .await;
    s.wait_run_phase(&run_of(&body, "forbid"), RunPhase::Running)
        .await;
    s.wait_jobs(5).await;
    assert_eq!(s.runs().await.len(), 12);

    // The repeated first occurrence is a duplicate, not a new run: the same Runs.
    let body = karo.notify_ok(&send("2026-05-01T00:00:00Z", "i1")).await;
    assert_eq!(body["deduplicated"], 3, "{body}");
    assert_eq!(body["created"], 0, "{body}");
    assert_eq!(body["dryRun"], 0, "{body}");
    assert_eq!(names(&body["runs"]), names(&first["runs"]), "{body}");
    assert_eq!(s.runs().await.len(), 12);
    assert_eq!(s.jobs().await.len(), 5);
    // Four occurrences, each counted once in dry run, the repeated one not again.
    s.wait_trigger_count("dry", 4).await;
    assert_eq!(s.jobs_of("dry").await.len(), 0);
}

/// The names in a list of the webhook's answer, sorted.
fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// The name of the Run of `reaction` that a webhook answer reports.
fn run_of(body: &Value, reaction: &str) -> String {
    let runs: Vec<&str> = body["runs"]
        .as_array()
        .expect("runs in the answer")
        .iter()
        .filter_map(Value::as_str)
        .filter(|r| r.strip_prefix(reaction).is_some_and(|h| h.starts_with('-')))
        .collect();
    assert_eq!(runs.len(), 1, "one Run of {reaction}: {body}");
    runs[0].to_string()
}

/// Waits until the Run `name` is Skipped, and checks its reason and that it created
/// no Job.
async fn assert_skipped(s: &Scenario, name: &str, reason: &str) {
    let run = s.wait_run_phase(name, RunPhase::Skipped).await;
    let status = run.status.expect("status");
    assert_eq!(status.reason.as_deref(), Some(reason), "{status:?}");
    assert!(status.jobs.is_empty(), "{status:?}");
    assert!(status.start_time.is_none(), "{status:?}");
}

/// Alerts Alertmanager left out of a notification (`truncatedAlerts`, its
/// receiver's `max_alerts`) never reach Karo: it counts them, logs them and says so
/// on the reactions of the notification's alert name, and still handles the rest.
#[tokio::test]
async fn truncated_alerts_are_counted_logged_and_evented() {
    let (s, karo) = Scenario::build("truncated")
        .reaction(&reaction(
            "crowded",
            "Crowded",
            "",
            r#", command: ["true"]"#,
        ))
        .start()
        .await;
    let mut n = notification(vec![alert(
        json!({"alertname": "Crowded", "instance": "i1"}),
        json!({}),
        "2026-02-02T00:00:00Z",
    )]);
    n["truncatedAlerts"] = json!(7);
    n["groupKey"] = json!("{}:{alertname=\"Crowded\"}");
    let body = karo.notify_ok(&n).await;
    assert_eq!(
        body["created"], 1,
        "the alerts that came are handled: {body}"
    );
    assert_eq!(karo.metric("karo_alerts_truncated_total").await, 7.0);
    let event = s.wait_event("AlertsTruncated", "left 7 alert(s) out").await;
    assert_eq!(
        event.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("crowded"),
        "{event:?}"
    );
    assert!(
        karo.log_text()
            .contains("Alertmanager left alerts out of this notification"),
        "{}",
        karo.log_text()
    );
    // A notification with nothing left out adds nothing.
    let mut whole = notification(vec![alert(
        json!({"alertname": "Crowded", "instance": "i2"}),
        json!({}),
        "2026-02-02T00:00:00Z",
    )]);
    whole["truncatedAlerts"] = json!(0);
    karo.notify_ok(&whole).await;
    assert_eq!(karo.metric("karo_alerts_truncated_total").await, 7.0);
}

/// A burst of occurrences of one reaction: the first Events of each reason are
/// published one by one, the rest of the window are summed up in one Event that
/// names the latest, so a storm costs a few Event writes, not one per Job.
#[tokio::test]
async fn a_burst_of_occurrences_gives_a_few_events_and_one_summary() {
    const OCCURRENCES: usize = 20;
    let (s, karo) = Scenario::build("burst")
        .reaction(&reaction("bursty", "Bursty", "", ""))
        .start()
        .await;
    for i in 0..OCCURRENCES {
        let body = karo
            .notify_ok(&firing(
                [json!({"alertname": "Bursty", "instance": format!("i{i}")})],
                "2026-03-01T00:00:00Z",
            ))
            .await;
        assert_eq!(body["created"], 1, "{body}");
    }
    let jobs = s.wait_jobs(OCCURRENCES).await;
    // Every Run of the burst records its start and its Job.
    for run in s.wait_runs(OCCURRENCES).await {
        let name = run.metadata.name.clone().unwrap_or_default();
        let run = s.wait_run_phase(&name, RunPhase::Running).await;
        let recorded = run.status.map(|st| st.jobs.len());
        assert_eq!(recorded, Some(1), "{name}");
    }
    // Each Event stands for one Job, or for the number of Jobs its summary folded.
    let stands_for = |note: &str| -> usize {
        if note.contains("Triggered Events in 10 s") {
            note.split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{note}"))
        } else {
            1
        }
    };
    let triggered = wait_for(SOON, || async {
        let notes: Vec<String> = s
            .list::<Event>(&ListParams::default())
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Triggered"))
            .filter_map(|e| e.note)
            .collect();
        let total: usize = notes.iter().map(|n| stands_for(n)).sum();
        assert!(total <= OCCURRENCES, "{notes:#?}");
        (total == OCCURRENCES).then_some(notes)
    })
    .await
    .unwrap_or_else(|e| panic!("the Triggered Events never stood for {OCCURRENCES} Jobs: {e}"));
    let summaries: Vec<&String> = triggered.iter().filter(|n| stands_for(n) > 1).collect();
    assert!(
        !summaries.is_empty() && triggered.len() - summaries.len() <= 5 * summaries.len(),
        "at most 5 Events one by one per 10 s window, then a summary: {triggered:#?}"
    );
    // A summary names the latest Job it folded, one of this reaction's.
    for note in summaries {
        assert!(
            jobs.iter()
                .any(|j| note.contains(j.metadata.name.as_deref().unwrap_or("?"))),
            "{note}"
        );
    }
}
