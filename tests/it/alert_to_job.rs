//! From alert to Job against a real kube-apiserver and a real Alertmanager 0.25.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};

use crate::support::alertmanager::{Alertmanager, AlertmanagerConfig};
use crate::support::karo_lib::AlertReaction;
use crate::support::scenario::{first_container, pod_spec, Scenario, ScenarioBuilder};
use crate::support::webhook::{alert, bare_alert, firing, notification, post_json};
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

/// A reaction `name` to `alert_name` with one busybox action, `a`: `spec` holds more
/// lines of the spec (indented, or empty), `action` more fields of the action
/// (`, key: value`, or empty).
fn reaction(name: &str, alert_name: &str, spec: &str, action: &str) -> String {
    format!(
        "metadata: {{name: {name}}}\nspec:\n  alertName: {alert_name}\n{spec}  actions: [{{name: a, image: busybox{action}}}]\n"
    )
}

/// A scenario with ECHO_REACTION.
fn echo_scenario(prefix: &str) -> ScenarioBuilder {
    Scenario::build(prefix).reaction(ECHO_REACTION)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
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
    let owner = &job.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(owner.kind, "AlertReaction");
    assert_eq!(owner.name, "disk-cleanup");
    assert_eq!(Some(owner.uid.as_str()), uid.as_deref());
    assert_eq!(owner.controller, Some(true));

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
    // Several more deliveries of the same occurrence arrive (Alertmanager kept
    // repeating)…
    karo.wait_metric("webhook_requests_total{code=\"200\"}", |v| v >= 4.0)
        .await;
    assert!(karo.metric("karo_jobs_deduplicated_total").await >= 3.0);
    // …and still exactly one Job.
    assert_eq!(s.jobs().await.len(), 1);
    s.wait_event("Deduplicated", "repeated delivery").await;
    s.wait_trigger_count("disk-cleanup", 1).await;

    // Resolved: nothing (triggerOn defaults to firing). Fired again: a new occurrence.
    am.resolve(&labels, &[("summary", "full")]).await;
    karo.wait_metric("karo_alerts_received_total{status=\"resolved\"}", |v| {
        v >= 1.0
    })
    .await;
    assert_eq!(s.jobs().await.len(), 1);
    let later = jiff::Timestamp::now().to_string();
    am.fire_starting(&later, &labels, &[("summary", "full again")])
        .await;
    s.wait_jobs(2).await;
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
    s.wait_jobs(10).await;
    s.wait_trigger_count("disk-cleanup", 10).await;
    // Nothing more arrives later.
    tokio::time::sleep(Duration::from_secs(2)).await;
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
async fn hostile_label_values_stay_inside_their_string() {
    let (s, karo) = Scenario::build("hostile")
        .reaction(
            r#"
metadata: {name: hostile}
spec:
  alertName: Evil
  actions:
    - name: act
      image: busybox
      command: ["sh", "-c"]
      args: ["echo {{shellQuote labels.payload}}", "{{labels.payload}}"]
  jobTemplate:
    metadata:
      labels:
        payload: "{{labels.payload}}"
    spec:
      template:
        spec:
          containers:
            - name: c
              image: busybox
              command: ["echo", "{{labels.payload}}"]
"#,
        )
        .start()
        .await;
    let payloads = [
        "{{annotations.secret}}".to_string(),
        "it's a \"quoted\" value".to_string(),
        "x\n  hostPath:\n    path: /\nvolumes: [{name: h, hostPath: {path: /}}]".to_string(),
        "$(id) `id` ; rm -rf /".to_string(),
        "a".repeat(300),
    ];
    for (i, payload) in payloads.iter().enumerate() {
        let n = notification(vec![alert(
            json!({"alertname": "Evil", "payload": payload, "n": i.to_string()}),
            json!({"secret": "do-not-render"}),
            "2026-03-01T00:00:00Z",
        )]);
        let body = karo.notify_ok(&n).await;
        assert_eq!(body["created"], 2, "payload {payload:?}: {body}");
    }
    let jobs = s.wait_jobs(10).await;
    for job in &jobs {
        let labels = job.metadata.labels.as_ref().expect("labels");
        let i: usize = serde_json::from_str::<Value>(
            &job.metadata.annotations.as_ref().expect("ann")["karo.io/alert-labels"],
        )
        .expect("json")["n"]
            .as_str()
            .expect("n")
            .parse()
            .expect("index");
        let payload = &payloads[i];
        let pod = pod_spec(job);
        assert_eq!(pod.containers.len(), 1, "no container added");
        assert!(pod.volumes.is_none(), "no volume added");
        assert!(pod.init_containers.is_none());
        let c = &pod.containers[0];
        if labels["karo.io/action"] == "act" {
            assert_eq!(c.command, Some(strings(&["sh", "-c"])));
            let args = c.args.as_ref().expect("args");
            assert_eq!(args.len(), 2);
            assert_eq!(args[1], *payload, "verbatim");
            let quoted = format!("'{}'", payload.replace('\'', "'\\''"));
            assert_eq!(args[0], format!("echo {quoted}"));
        } else {
            assert_eq!(c.command, Some(vec!["echo".to_string(), payload.clone()]));
            assert!(c.args.is_none());
            // A label value from the alert is made a valid label value.
            let v = &labels["payload"];
            assert!(
                v.len() <= 63
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "{v:?}"
            );
        }
        assert!(!serde_json::to_string(job)
            .expect("json")
            .contains("do-not-render"));
        let name = job.metadata.name.as_deref().expect("name");
        assert!(name.len() <= 63);
    }
}

#[tokio::test]
async fn broken_reactions_are_not_ready_and_do_not_stop_others() {
    let shared = |name: &str, action: &str| reaction(name, "Shared", "", action);
    let (s, karo) = Scenario::build("broken")
        .refused_reaction(&reaction(
            "bad-regex",
            "Shared",
            r#"  matchers: [{name: severity, operator: "=~", value: "(unclosed"}]
"#,
            "",
        ))
        .refused_reaction(&shared(
            "bad-block",
            r#", args: ["{{#if labels.x}}never closed"]"#,
        ))
        .refused_reaction(&shared(
            "bad-variable",
            r#", args: ["ok", "{{nosuchthing}}"]"#,
        ))
        .reaction(&shared("good", r#", args: ["{{labels.alertname}}"]"#))
        .start()
        .await;
    let (reason, message) = s.wait_ready("bad-regex", "False").await;
    assert_eq!(reason, "InvalidMatcher");
    assert!(message.contains("spec.matchers[0]"), "{message}");
    let (reason, message) = s.wait_ready("bad-block", "False").await;
    assert_eq!(reason, "InvalidTemplate");
    assert!(message.contains("spec.actions[0].args[0]"), "{message}");
    let (reason, message) = s.wait_ready("bad-variable", "False").await;
    assert_eq!(reason, "InvalidTemplate");
    assert!(message.contains("spec.actions[0].args[1]"), "{message}");
    assert!(message.contains("nosuchthing"), "{message}");
    let table = s.kubectl_get(&["ar"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("bad-regex") && l.contains("False")),
        "{table}"
    );

    let n = firing(
        [json!({"alertname": "Shared", "severity": "x"})],
        "2026-04-01T00:00:00Z",
    );
    let body = karo.notify_ok(&n).await;
    assert_eq!(body["matched"], 1, "{body}");
    s.wait_one_job_of("good").await;
}

#[tokio::test]
async fn bad_bodies_get_4xx_and_create_nothing() {
    let (s, karo) = Scenario::build("badbody")
        .reaction(&reaction("any", "TestAlert", "", ""))
        .start()
        .await;
    let test_alert = bare_alert(json!({"alertname": "TestAlert"})).to_string();
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        (
            "not json",
            "application/json",
            b"this is not json".to_vec(),
            400,
        ),
        ("empty", "application/json", Vec::new(), 400),
        (
            "wrong types",
            "application/json",
            br#"{"alerts": [{"labels": {"alertname": 5}}]}"#.to_vec(),
            400,
        ),
        (
            "alerts not a list",
            "application/json",
            br#"{"alerts": {"labels": {}}}"#.to_vec(),
            400,
        ),
        (
            "top level array",
            "application/json",
            br#"[{"labels": {"alertname": "TestAlert"}}]"#.to_vec(),
            400,
        ),
        (
            "bad status",
            "application/json",
            br#"{"alerts": [{"status": "burning", "labels": {"alertname": "TestAlert"}}]}"#
                .to_vec(),
            400,
        ),
        (
            "form",
            "application/x-www-form-urlencoded",
            test_alert.clone().into_bytes(),
            415,
        ),
    ];
    for (what, ct, body, want) in cases {
        let (code, resp) = karo.post(ct, body).await;
        assert_eq!(code, want, "{what}: {resp}");
        assert!(
            resp.get("error")
                .and_then(Value::as_str)
                .is_some_and(|e| !e.is_empty()),
            "{what}: {resp}"
        );
    }
    // 10 MB announced: refused from the headers alone, before any of the body is read.
    let (code, head) = raw_request(karo.addr(), "POST /webhook HTTP/1.1\r\nHost: karo\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n").await;
    assert_eq!(code, 413, "{head}");
    // 10 MB sent chunked, with no length announced: refused once the limit is passed.
    let big = {
        let mut big = br#"{"alerts": [{"labels": {"alertname": "TestAlert", "x": ""#.to_vec();
        big.extend(std::iter::repeat_n(b'a', 10 * 1024 * 1024));
        big.extend(br#""}}]}"#);
        big
    };
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let sent = reqwest::Client::new()
        .post(karo.webhook())
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    // The server answers 413 and closes; the client may see the answer or the closed connection.
    if let Ok(resp) = sent {
        assert_eq!(resp.status().as_u16(), 413);
    }
    let resp = reqwest::get(karo.webhook()).await.expect("GET");
    assert_eq!(resp.status().as_u16(), 405);
    // Still serving, and nothing was created by any of it.
    let (code, body) = karo.post("application/json", test_alert).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["created"], 1);
    let jobs = s.wait_jobs(1).await;
    assert_eq!(jobs.len(), 1);
}

/// Sends raw bytes to `addr` and returns the status code and head of the response.
async fn raw_request(addr: &str, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(SOON, stream.read(&mut buf))
            .await
            .expect("answer")
            .expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head)
}

#[tokio::test]
async fn seed_and_legacy_examples_produce_expected_jobs() {
    let legacy_yaml = include_str!("../fixtures/legacy-actions.yaml");
    // The earlier implementation's manifest mounts a hostPath volume: allowed by policy here.
    let (s, karo) = Scenario::build("examples")
        .reaction(include_str!("../fixtures/seed-jobtemplate.yaml"))
        .reaction(legacy_yaml)
        .config("policy:\n  allowHostPath: true\n")
        .start()
        .await;
    let legacy: AlertReaction = serde_yaml::from_str(legacy_yaml).expect("legacy");
    let legacy_name = legacy.metadata.name.clone().expect("name");

    // The seed's own troubleshooting request, then the seed's alert.
    let body = karo
        .notify_ok(&bare_alert(json!({"alertname": "TestAlert"})))
        .await;
    assert_eq!(body["received"], 1);
    assert_eq!(body["matched"], 0);
    let body = karo
        .notify_ok(&bare_alert(json!({"alertname": "HighCPUUsage"})))
        .await;
    assert_eq!(body["created"], 1, "{body}");
    let seed_jobs = s.jobs_of("high-cpu-reaction").await;
    assert_eq!(seed_jobs.len(), 1);
    let c = first_container(&seed_jobs[0]);
    assert_eq!(c.name, "cpu-investigation");
    assert_eq!(c.image.as_deref(), Some("busybox:1.35"));
    assert_eq!(c.command, Some(strings(&["sh", "-c"])));
    assert!(c.args.as_ref().expect("args")[0]
        .contains("kubectl top pods --all-namespaces --sort-by=cpu"));

    // The legacy manifest: fire an alert that satisfies its matchers.
    let fixture_alert: Value =
        serde_json::from_str(include_str!("../fixtures/legacy-alert.json")).expect("alert fixture");
    let body = karo.notify_ok(&notification(vec![fixture_alert])).await;
    assert_eq!(
        body["created"].as_u64(),
        Some(legacy.spec.actions.len() as u64),
        "{body}"
    );
    let legacy_jobs = s.jobs_of(&legacy_name).await;
    assert_eq!(legacy_jobs.len(), legacy.spec.actions.len());
    for job in &legacy_jobs {
        let action_name = &job.metadata.labels.as_ref().expect("labels")["karo.io/action"];
        let action = legacy
            .spec
            .actions
            .iter()
            .find(|a| &a.name == action_name)
            .expect("action");
        let pod = pod_spec(job);
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some(action.image.as_str()));
        assert_eq!(pod.service_account_name, action.service_account);
        assert_eq!(
            pod.volumes.as_ref().map(Vec::len).unwrap_or(0),
            legacy.spec.volumes.len()
        );
        for (i, e) in action.env.iter().enumerate() {
            let got = &c.env.as_ref().expect("env")[i];
            assert_eq!(got.name, e.name);
            if let Some(from) = &e.value_from {
                let passed = got.value_from.as_ref();
                if let Some(r) = &from.secret_key_ref {
                    let s = passed.and_then(|v| v.secret_key_ref.as_ref());
                    let s = s.expect("secretKeyRef passed through");
                    assert_eq!((&s.name, &s.key), (&r.name, &r.key));
                    assert!(got.value.is_none(), "secret value never copied");
                }
                if let Some(r) = &from.config_map_key_ref {
                    let s = passed.and_then(|v| v.config_map_key_ref.as_ref());
                    assert_eq!(s.expect("configMapKeyRef passed through").name, r.name);
                }
                if from.alert_ref.is_some() {
                    assert!(got.value.is_some());
                }
            }
        }
        if let Some(r) = &action.resources {
            let got = c.resources.as_ref().expect("resources");
            assert_eq!(
                got.limits.as_ref().map(|l| l.len()).unwrap_or(0),
                r.limits.len()
            );
        }
        assert_eq!(
            c.volume_mounts.as_ref().map(Vec::len).unwrap_or(0),
            action.volume_mounts.len()
        );
    }
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
    // Karo cannot create the Job and says so with a 5xx, which Alertmanager retries.
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
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.jobs().await.len(), 1);
}

#[tokio::test]
async fn a_notification_of_1000_alerts_is_answered_with_every_job() {
    let (s, karo) = Scenario::build("thousand")
        .reaction(&reaction("bulk", "Bulk", "", r#", args: ["{{labels.i}}"]"#))
        .start()
        .await;
    let n = firing(
        (0..1000).map(|i| json!({"alertname": "Bulk", "i": i.to_string()})),
        "2026-07-01T00:00:00Z",
    );
    let started = std::time::Instant::now();
    let (code, body) = karo.notify(&n).await;
    eprintln!("1000 alerts answered in {:?}", started.elapsed());
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["created"], 1000);
    assert_eq!(s.jobs().await.len(), 1000);
    s.wait_trigger_count("bulk", 1000).await;
    // The same notification again: all deduplicated.
    let body = karo.notify_ok(&n).await;
    assert_eq!(body["deduplicated"], 1000);
    assert_eq!(body["created"], 0);
}

#[tokio::test]
async fn sigterm_stops_karo_cleanly() {
    let (_s, mut karo) = Scenario::build("sigterm").start().await;
    let status = karo
        .terminate(Duration::from_secs(60))
        .expect("karo exited after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", karo.log_text());
    let log = karo.log_text();
    assert!(log.contains("finishing requests in flight"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}
