//! Notifications a real Alertmanager delivers: the Run of the occurrence, owned by its
//! reaction, and the Job it creates, rendered from the alert and owned by the Run;
//! repeated notifications of one occurrence find its Run (one Job) and a new occurrence
//! gets another; two Karo replicas create each Run and Job once; a Run that an API
//! server outage prevents is created once Alertmanager retries.

use std::time::Duration;

use serde_json::{json, Value};

use super::strings;
use crate::support::alertmanager::{Alertmanager, AlertmanagerConfig};
use crate::support::karo_lib::{JobPhase, RunPhase};
use crate::support::ready::wait_until;
use crate::support::scenario::{
    assert_owned_by, first_container, owner, pod_spec, Scenario, ScenarioBuilder,
};
use crate::support::webhook::{alert, notification, post_json};
use crate::support::SOON;

const ECHO_REACTION: &str = r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata:
  name: disk-cleanup
spec:
  alertName: DiskFull
  matchers:
    - name: severity
      operator: "=~"
      value: "critical|page"
  actions:
    - name: clean
      image: busybox:1.36
      command: ["sh", "-c"]
      args:
        - "echo cleaning {{labels.mountpoint}} on {{labels.instance}}: {{annotations.summary}}"
      env:
        - name: INSTANCE
          valueFrom:
            alertRef:
              fieldPath: labels.instance
"#;

/// The labels of a DiskFull alert, which ECHO_REACTION matches with severity
/// `critical` or `page`.
fn disk_full<'a>(
    severity: &'a str,
    instance: &'a str,
    mountpoint: &'a str,
) -> [(&'a str, &'a str); 4] {
    [
        ("alertname", "DiskFull"),
        ("severity", severity),
        ("instance", instance),
        ("mountpoint", mountpoint),
    ]
}

/// A scenario with ECHO_REACTION.
fn echo_scenario(prefix: &str) -> ScenarioBuilder {
    Scenario::build(prefix).reaction(ECHO_REACTION)
}

#[tokio::test]
async fn alertmanager_delivery_creates_rendered_job() {
    let (s, karo) = echo_scenario("delivery").start().await;
    let uid = s.reaction("disk-cleanup").await.metadata.uid;
    let am = Alertmanager::start(&AlertmanagerConfig::webhook(&karo.webhook())).await;
    am.fire(
        &disk_full("critical", "node-7:9100", "/var"),
        &[("summary", "disk 97% full")],
    )
    .await;

    let jobs = s.wait_jobs(1).await;
    let job = &jobs[0];
    let c = first_container(job);
    assert_eq!(
        c.args,
        Some(strings(&[
            "echo cleaning /var on node-7:9100: disk 97% full"
        ]))
    );
    assert_eq!(c.command, Some(strings(&["sh", "-c"])));
    let env = c.env.as_ref().expect("env");
    assert_eq!(env[0].name, "INSTANCE");
    assert_eq!(env[0].value.as_deref(), Some("node-7:9100"));

    let name = job.metadata.name.as_deref().expect("name");
    assert!(name.starts_with("disk-cleanup-clean-"), "{name}");
    assert!(name.len() <= 63);
    // The occurrence's Run owns the Job; the reaction owns the Run.
    let runs = s.runs().await;
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_owned_by(job, run);
    let run_name = run.metadata.name.as_deref().expect("name");
    assert!(run_name.starts_with("disk-cleanup-"), "{run_name}");
    let run_owner = &run.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(run_owner.kind, "AlertReaction");
    assert_eq!(run_owner.name, "disk-cleanup");
    assert_eq!(Some(&run_owner.uid), uid.as_ref());
    assert_eq!(run_owner.controller, Some(true));
    assert_eq!(run.spec.reaction.name, "disk-cleanup");
    assert_eq!(Some(&run.spec.reaction.uid), uid.as_ref());
    assert_eq!(run.spec.alert.labels["mountpoint"], "/var");
    assert_eq!(run.spec.alert.annotations["summary"], "disk 97% full");
    assert_eq!(run.spec.notification.receiver, "karo");
    assert_eq!(run.spec.actions.len(), 1);
    assert_eq!(run.spec.actions[0].name, "clean");
    assert_eq!(run.spec.actions[0].job_name, name);
    let run_labels = run.metadata.labels.as_ref().expect("labels");
    for k in [
        "app.kubernetes.io/managed-by",
        "karo.io/reaction",
        "karo.io/alertname",
        "karo.io/fingerprint",
    ] {
        assert_eq!(
            run_labels.get(k),
            job.metadata.labels.as_ref().expect("labels").get(k),
            "label {k}"
        );
    }
    assert!(run_labels.contains_key("karo.io/occurrence"));
    let status = s
        .wait_run_phase(run_name, RunPhase::Running)
        .await
        .status
        .expect("status");
    assert!(status.start_time.is_some());
    assert_eq!(status.jobs.len(), 1);
    assert_eq!(status.jobs[0].name, name);
    assert_eq!(status.jobs[0].action, "clean");
    assert_eq!(status.jobs[0].phase, JobPhase::Running);

    let labels = job.metadata.labels.as_ref().expect("labels");
    for (k, v) in [
        ("app.kubernetes.io/managed-by", "karo"),
        ("karo.io/reaction", "disk-cleanup"),
        ("karo.io/action", "clean"),
        ("karo.io/alertname", "DiskFull"),
        ("karo/alert-name", "DiskFull"),
        ("karo/action-name", "clean"),
        ("karo/owner", "disk-cleanup"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    assert_eq!(labels.get("karo.io/fingerprint").map(String::len), Some(16));
    let ann = job.metadata.annotations.as_ref().expect("annotations");
    assert_eq!(
        ann.get("karo.io/alert-status").map(String::as_str),
        Some("firing")
    );
    assert_eq!(
        ann.get("karo.io/receiver").map(String::as_str),
        Some("karo")
    );
    assert!(ann.contains_key("karo.io/alert-starts-at"));
    assert!(ann.contains_key("karo.io/generator-url"));
    let alert_labels: Value =
        serde_json::from_str(&ann["karo.io/alert-labels"]).expect("alert labels JSON");
    assert_eq!(alert_labels["mountpoint"], "/var");
    assert_eq!(
        job.spec.as_ref().expect("spec").ttl_seconds_after_finished,
        Some(300)
    );
    assert_eq!(pod_spec(job).restart_policy.as_deref(), Some("Never"));

    s.wait_trigger_count("disk-cleanup", 1).await;
    let status = s.reaction("disk-cleanup").await.status.expect("status");
    assert!(status.last_triggered.is_some());
    assert_eq!(status.last_jobs_created.len(), 1);
    assert_eq!(status.last_jobs_created[0].name, name);
    assert_eq!(status.last_jobs_created[0].action_name, "clean");
    s.wait_event("Triggered", name).await;

    // `kubectl get jobs -l karo/alert-name=...` works as the earlier implementation's users expect.
    let listed = s.kubectl_get(&["jobs", "-l", "karo/alert-name=DiskFull", "-o", "name"]);
    assert!(listed.contains(name));
}

#[tokio::test]
async fn repeated_notifications_create_one_job_and_a_new_occurrence_another() {
    let (s, karo) = echo_scenario("repeat").start().await;
    // Alertmanager repeats the notification every second.
    let am =
        Alertmanager::start(&AlertmanagerConfig::webhook(&karo.webhook()).repeat_interval("1s"))
            .await;
    let labels = disk_full("page", "db-1", "/data");
    am.fire(&labels, &[("summary", "full")]).await;
    s.wait_jobs(1).await;
    let run = s.wait_runs(1).await.remove(0);
    let run_name = run.metadata.name.clone().expect("name");
    // Several more deliveries of the same occurrence arrive (Alertmanager kept
    // repeating)…
    karo.wait_metric("webhook_requests_total{code=\"200\"}", |v| v >= 4.0)
        .await;
    assert!(karo.metric("karo_jobs_deduplicated_total").await >= 3.0);
    // …and still exactly one Run and one Job; the Run says it was seen again.
    assert_eq!(s.runs().await.len(), 1);
    assert_eq!(s.jobs().await.len(), 1);
    s.wait_event("Deduplicated", "repeated delivery").await;
    s.wait_event("Deduplicated", &run_name).await;
    wait_until(SOON, || async {
        let status = s.run(&run_name).await.status;
        status.is_some_and(|st| st.last_seen.is_some())
    })
    .await
    .expect("the Run records its repeated delivery (lastSeen)");
    s.wait_trigger_count("disk-cleanup", 1).await;

    // Resolved: nothing (triggerOn defaults to firing). Fired again: a new occurrence.
    am.resolve(&labels, &[("summary", "full")]).await;
    karo.wait_metric("karo_alerts_received_total{status=\"resolved\"}", |v| {
        v >= 1.0
    })
    .await;
    // The firing Run records that its alert resolved.
    wait_until(SOON, || async {
        let status = s.run(&run_name).await.status;
        status.is_some_and(|st| st.resolved_at.is_some())
    })
    .await
    .expect("the Run records the resolution (resolvedAt)");
    assert_eq!(s.runs().await.len(), 1);
    assert_eq!(s.jobs().await.len(), 1);
    let later = jiff::Timestamp::now().to_string();
    am.fire_starting(&later, &labels, &[("summary", "full again")])
        .await;
    s.wait_jobs(2).await;
    s.wait_runs(2).await;
    s.wait_trigger_count("disk-cleanup", 2).await;
}

#[tokio::test]
async fn two_karo_replicas_create_each_job_once() {
    let (s, a) = echo_scenario("replicas").start().await;
    let b = s.start_karo("").await;
    // Alertmanager sends every notification to both replicas.
    let am =
        Alertmanager::start(&AlertmanagerConfig::webhook(&a.webhook()).and_webhook(&b.webhook()))
            .await;
    for i in 0..5 {
        am.fire(
            &disk_full("critical", &format!("node-{i}"), "/"),
            &[("summary", "x")],
        )
        .await;
    }
    // And the same notification posted to both at once, many times.
    let n = notification(
        (0..5)
            .map(|i| {
                alert(
                    json!({"alertname": "DiskFull", "severity": "critical", "instance": format!("direct-{i}"), "mountpoint": "/"}),
                    json!({"summary": "y"}),
                    "2026-01-01T00:00:00Z",
                )
            })
            .collect(),
    );
    let mut posts = Vec::new();
    for _ in 0..5 {
        for url in [a.webhook(), b.webhook()] {
            let n = n.clone();
            posts.push(tokio::spawn(async move { post_json(&url, &n).await.0 }));
        }
    }
    for p in posts {
        assert_eq!(p.await.expect("post"), 200);
    }
    let jobs = s.wait_jobs(10).await;
    s.wait_trigger_count("disk-cleanup", 10).await;
    // One Run per occurrence, each owning its one Job.
    let runs = s.runs().await;
    assert_eq!(runs.len(), 10);
    for job in &jobs {
        let run = runs
            .iter()
            .find(|r| r.metadata.name.as_ref() == Some(&owner(job).name))
            .expect("the Job's Run");
        assert_owned_by(job, run);
    }
    // One replica follows the Runs.
    assert_eq!(
        a.metric("karo_leader").await + b.metric("karo_leader").await,
        1.0
    );
    // Nothing more arrives later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.runs().await.len(), 10);
    assert_eq!(s.jobs().await.len(), 10);
    assert_eq!(
        s.reaction("disk-cleanup")
            .await
            .status
            .and_then(|s| s.trigger_count),
        Some(10)
    );
}

#[tokio::test]
async fn api_server_outage_is_retried_by_alertmanager_and_creates_the_job_once() {
    // An API server of its own: this test stops it.
    let (mut s, karo) = echo_scenario("outage").own_control_plane().start().await;
    let am = Alertmanager::start(&AlertmanagerConfig::webhook(&karo.webhook())).await;

    s.own_cp().stop_apiserver();
    am.fire(
        &disk_full("critical", "node-1", "/"),
        &[("summary", "during the outage")],
    )
    .await;
    // Karo cannot create the Run and says so with a 5xx, which Alertmanager retries.
    karo.wait_metric("webhook_requests_total{code=\"500\"}", |v| v >= 1.0)
        .await;

    s.own_cp().start_apiserver().await;
    let jobs = s.wait_jobs(1).await;
    assert_eq!(
        first_container(&jobs[0]).args.as_ref().expect("args")[0],
        "echo cleaning / on node-1: during the outage"
    );
    // Alertmanager's retry succeeded.
    karo.wait_metric("webhook_requests_total{code=\"200\"}", |v| v >= 1.0)
        .await;
    let runs = s.runs().await;
    assert_eq!(runs.len(), 1);
    assert_owned_by(&jobs[0], &runs[0]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.runs().await.len(), 1);
    assert_eq!(s.jobs().await.len(), 1);
}
