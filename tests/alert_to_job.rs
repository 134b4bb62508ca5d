//! From alert to Job against a real kube-apiserver and a real Alertmanager 0.25.

mod common;
mod support;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::Api;
use serde_json::{json, Value};

use common::*;
use support::{wait_until, webhook_config, Alertmanager, ControlPlane};

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

#[tokio::test]
async fn alertmanager_delivery_creates_rendered_job() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("delivery").await;
    let ar = apply_reaction(cp, &ns, ECHO_REACTION).await;
    let karo = start_karo(cp, &ns, "").await;
    wait_ready_condition(cp, &ns, "disk-cleanup", "True").await;
    let am = Alertmanager::start(&webhook_config(&karo.webhook()))
        .await
        .expect("alertmanager");
    am.fire(
        &[
            ("alertname", "DiskFull"),
            ("severity", "critical"),
            ("instance", "node-7:9100"),
            ("mountpoint", "/var"),
        ],
        &[("summary", "disk 97% full")],
    )
    .await;

    let jobs = wait_jobs(cp, &ns, 1).await;
    let job = &jobs[0];
    let c = container(job);
    assert_eq!(
        c.args.as_deref(),
        Some(&["echo cleaning /var on node-7:9100: disk 97% full".to_string()][..])
    );
    assert_eq!(
        c.command.as_deref(),
        Some(&["sh".to_string(), "-c".to_string()][..])
    );
    let env = c.env.as_ref().expect("env");
    assert_eq!(env[0].name, "INSTANCE");
    assert_eq!(env[0].value.as_deref(), Some("node-7:9100"));

    let name = job.metadata.name.as_deref().expect("name");
    assert!(name.starts_with("disk-cleanup-clean-"), "{name}");
    assert!(name.len() <= 63);
    let owner = &job.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(owner.kind, "AlertReaction");
    assert_eq!(owner.name, "disk-cleanup");
    assert_eq!(Some(owner.uid.as_str()), ar.metadata.uid.as_deref());
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
    let spec = job.spec.as_ref().expect("spec");
    assert_eq!(spec.ttl_seconds_after_finished, Some(300));
    assert_eq!(
        spec.template
            .spec
            .as_ref()
            .and_then(|p| p.restart_policy.as_deref()),
        Some("Never")
    );

    wait_trigger_count(cp, &ns, "disk-cleanup", 1).await;
    let status = reaction(cp, &ns, "disk-cleanup")
        .await
        .status
        .expect("status");
    assert!(status.last_triggered.is_some());
    assert_eq!(status.last_jobs_created.len(), 1);
    assert_eq!(status.last_jobs_created[0].name, name);
    assert_eq!(status.last_jobs_created[0].action_name, "clean");
    wait_event(cp, &ns, "Triggered", name).await;

    // `kubectl get jobs -l karo/alert-name=...` works as the earlier implementation's users expect.
    let out = cp.kubectl(&[
        "get",
        "jobs",
        "-n",
        &ns,
        "-l",
        "karo/alert-name=DiskFull",
        "-o",
        "name",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(name));
}

#[tokio::test]
async fn repeated_notifications_create_one_job_and_a_new_occurrence_another() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("repeat").await;
    apply_reaction(cp, &ns, ECHO_REACTION).await;
    let karo = start_karo(cp, &ns, "").await;
    wait_ready_condition(cp, &ns, "disk-cleanup", "True").await;
    // Alertmanager repeats the notification every second.
    let config =
        webhook_config(&karo.webhook()).replace("repeat_interval: 1h", "repeat_interval: 1s");
    let am = Alertmanager::start(&config).await.expect("alertmanager");
    let labels = [
        ("alertname", "DiskFull"),
        ("severity", "page"),
        ("instance", "db-1"),
        ("mountpoint", "/data"),
    ];
    am.fire(&labels, &[("summary", "full")]).await;
    wait_jobs(cp, &ns, 1).await;
    // Several more deliveries of the same occurrence arrive…
    let url = karo.url().to_string();
    wait_until(SOON, || {
        let url = url.clone();
        async move { metric(&url, "webhook_requests_total{code=\"200\"}").await >= 4.0 }
    })
    .await
    .expect("Alertmanager kept repeating");
    assert!(metric(&url, "karo_jobs_deduplicated_total").await >= 3.0);
    // …and still exactly one Job.
    assert_eq!(jobs(cp, &ns).await.len(), 1);
    wait_event(cp, &ns, "Deduplicated", "repeated delivery").await;
    wait_trigger_count(cp, &ns, "disk-cleanup", 1).await;

    // Resolved: nothing (triggerOn defaults to firing). Fired again: a new occurrence.
    am.resolve(&labels, &[("summary", "full")]).await;
    wait_until(SOON, || {
        let url = url.clone();
        async move { metric(&url, "karo_alerts_received_total{status=\"resolved\"}").await >= 1.0 }
    })
    .await
    .expect("resolved notification delivered");
    assert_eq!(jobs(cp, &ns).await.len(), 1);
    let later = jiff::Timestamp::now().to_string();
    am.post_alerts(&json!([{
        "labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "annotations": {"summary": "full again"},
        "startsAt": later,
    }]))
    .await
    .expect("fire again");
    wait_jobs(cp, &ns, 2).await;
    wait_trigger_count(cp, &ns, "disk-cleanup", 2).await;
}

#[tokio::test]
async fn two_karo_replicas_create_each_job_once() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("replicas").await;
    apply_reaction(cp, &ns, ECHO_REACTION).await;
    let a = start_karo(cp, &ns, "").await;
    let b = start_karo(cp, &ns, "").await;
    wait_ready_condition(cp, &ns, "disk-cleanup", "True").await;
    // Alertmanager sends every notification to both replicas.
    let config = format!(
        "{}  - url: '{}'\n    send_resolved: true\n",
        webhook_config(&a.webhook()),
        b.webhook()
    );
    let am = Alertmanager::start(&config).await.expect("alertmanager");
    for i in 0..5 {
        am.fire(
            &[
                ("alertname", "DiskFull"),
                ("severity", "critical"),
                ("instance", &format!("node-{i}")),
                ("mountpoint", "/"),
            ],
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
    wait_jobs(cp, &ns, 10).await;
    wait_trigger_count(cp, &ns, "disk-cleanup", 10).await;
    // Nothing more arrives later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(jobs(cp, &ns).await.len(), 10);
    assert_eq!(
        reaction(cp, &ns, "disk-cleanup")
            .await
            .status
            .and_then(|s| s.trigger_count),
        Some(10)
    );
}

#[tokio::test]
async fn resolved_triggers_only_when_asked() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("resolved").await;
    apply_reaction(
        cp,
        &ns,
        r#"
metadata: {name: on-firing}
spec:
  alertName: Flappy
  actions: [{name: a, image: busybox, command: ["true"]}]
"#,
    )
    .await;
    apply_reaction(
        cp,
        &ns,
        r#"
metadata: {name: on-both}
spec:
  alertName: Flappy
  triggerOn: [firing, resolved]
  actions: [{name: a, image: busybox, command: ["echo", "{{status}}"]}]
"#,
    )
    .await;
    let karo = start_karo(cp, &ns, "").await;
    wait_ready_condition(cp, &ns, "on-firing", "True").await;
    wait_ready_condition(cp, &ns, "on-both", "True").await;
    let mut resolved = alert(
        json!({"alertname": "Flappy"}),
        json!({}),
        "2026-02-01T00:00:00Z",
    );
    resolved["status"] = json!("resolved");
    resolved["endsAt"] = json!("2026-02-01T00:05:00Z");
    let (code, body) = post_json(&karo.webhook(), &notification(vec![resolved])).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["created"], 1, "{body}");
    let jobs = wait_jobs(cp, &ns, 1).await;
    assert_eq!(
        jobs[0]
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("karo.io/reaction"))
            .map(String::as_str),
        Some("on-both")
    );
    assert_eq!(
        container(&jobs[0]).command.as_deref(),
        Some(&["echo".to_string(), "resolved".to_string()][..])
    );
}

#[tokio::test]
async fn hostile_label_values_stay_inside_their_string() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("hostile").await;
    apply_reaction(
        cp,
        &ns,
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
    .await;
    let karo = start_karo(cp, &ns, "").await;
    wait_ready_condition(cp, &ns, "hostile", "True").await;
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
        let (code, body) = post_json(&karo.webhook(), &n).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["created"], 2, "payload {payload:?}: {body}");
    }
    let jobs = wait_jobs(cp, &ns, 10).await;
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
        let pod = job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod");
        assert_eq!(pod.containers.len(), 1, "no container added");
        assert!(pod.volumes.is_none(), "no volume added");
        assert!(pod.init_containers.is_none());
        let c = &pod.containers[0];
        if labels["karo.io/action"] == "act" {
            assert_eq!(
                c.command.as_deref(),
                Some(&["sh".to_string(), "-c".to_string()][..])
            );
            let args = c.args.as_ref().expect("args");
            assert_eq!(args.len(), 2);
            assert_eq!(args[1], *payload, "verbatim");
            let quoted = format!("'{}'", payload.replace('\'', "'\\''"));
            assert_eq!(args[0], format!("echo {quoted}"));
        } else {
            assert_eq!(
                c.command.as_deref(),
                Some(&["echo".to_string(), payload.clone()][..])
            );
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
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("broken").await;
    for (name, body) in [
        (
            "bad-regex",
            r#"
  matchers: [{name: severity, operator: "=~", value: "(unclosed"}]
  actions: [{name: a, image: busybox}]"#,
        ),
        (
            "bad-block",
            r#"
  actions: [{name: a, image: busybox, args: ["{{#if labels.x}}never closed"]}]"#,
        ),
        (
            "bad-variable",
            r#"
  actions: [{name: a, image: busybox, args: ["ok", "{{nosuchthing}}"]}]"#,
        ),
        (
            "good",
            r#"
  actions: [{name: a, image: busybox, args: ["{{labels.alertname}}"]}]"#,
        ),
    ] {
        apply_reaction(
            cp,
            &ns,
            &format!("metadata: {{name: {name}}}\nspec:\n  alertName: Shared{body}\n"),
        )
        .await;
    }
    let karo = start_karo(cp, &ns, "").await;
    let (reason, message) = wait_ready_condition(cp, &ns, "bad-regex", "False").await;
    assert_eq!(reason, "InvalidMatcher");
    assert!(message.contains("spec.matchers[0]"), "{message}");
    let (reason, message) = wait_ready_condition(cp, &ns, "bad-block", "False").await;
    assert_eq!(reason, "InvalidTemplate");
    assert!(message.contains("spec.actions[0].args[0]"), "{message}");
    let (reason, message) = wait_ready_condition(cp, &ns, "bad-variable", "False").await;
    assert_eq!(reason, "InvalidTemplate");
    assert!(message.contains("spec.actions[0].args[1]"), "{message}");
    assert!(message.contains("nosuchthing"), "{message}");
    wait_ready_condition(cp, &ns, "good", "True").await;
    let out = cp.kubectl(&["get", "ar", "-n", &ns]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("bad-regex") && l.contains("False")),
        "{table}"
    );

    let n = notification(vec![alert(
        json!({"alertname": "Shared", "severity": "x"}),
        json!({}),
        "2026-04-01T00:00:00Z",
    )]);
    let (code, body) = post_json(&karo.webhook(), &n).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["matched"], 1, "{body}");
    let jobs = wait_jobs(cp, &ns, 1).await;
    assert_eq!(
        jobs[0].metadata.labels.as_ref().expect("labels")["karo.io/reaction"],
        "good"
    );
}

#[tokio::test]
async fn bad_bodies_get_4xx_and_create_nothing() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("badbody").await;
    apply_reaction(
        cp,
        &ns,
        r#"
metadata: {name: any}
spec:
  alertName: TestAlert
  actions: [{name: a, image: busybox}]
"#,
    )
    .await;
    let karo = start_karo(cp, &ns, "").await;
    wait_ready_condition(cp, &ns, "any", "True").await;
    let url = karo.webhook();
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
            br#"{"alerts": [{"labels": {"alertname": "TestAlert"}}]}"#.to_vec(),
            415,
        ),
    ];
    for (what, ct, body, want) in cases {
        let (code, resp) = post(&url, ct, body).await;
        assert_eq!(code, want, "{what}: {resp}");
        assert!(
            resp.get("error")
                .and_then(Value::as_str)
                .is_some_and(|e| !e.is_empty()),
            "{what}: {resp}"
        );
    }
    // 10 MB announced: refused from the headers alone, before any of the body is read.
    let (code, head) = raw_request(karo.url(), "POST /webhook HTTP/1.1\r\nHost: karo\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n").await;
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
        .post(&url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    // The server answers 413 and closes; the client may see the answer or the closed connection.
    if let Ok(resp) = sent {
        assert_eq!(resp.status().as_u16(), 413);
    }
    let resp = reqwest::get(&url).await.expect("GET");
    assert_eq!(resp.status().as_u16(), 405);
    // Still serving, and nothing was created by any of it.
    let (code, body) = post(
        &url,
        "application/json",
        r#"{"alerts": [{"labels": {"alertname": "TestAlert"}}]}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["created"], 1);
    let jobs = wait_jobs(cp, &ns, 1).await;
    assert_eq!(jobs.len(), 1);
}

/// Sends raw bytes and returns the status code and head of the response.
async fn raw_request(base: &str, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
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
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("examples").await;
    let client = cp.client().await;
    apply_reaction(cp, &ns, include_str!("fixtures/seed-jobtemplate.yaml")).await;
    apply_reaction(cp, &ns, include_str!("fixtures/legacy-actions.yaml")).await;
    // The earlier implementation's manifest mounts a hostPath volume: allowed by policy here.
    let karo = start_karo(cp, &ns, "policy:\n  allowHostPath: true\n").await;
    wait_ready_condition(cp, &ns, "high-cpu-reaction", "True").await;
    let legacy: karo::crd::AlertReaction =
        serde_yaml::from_str(include_str!("fixtures/legacy-actions.yaml")).expect("legacy");
    let legacy_name = legacy.metadata.name.clone().expect("name");
    wait_ready_condition(cp, &ns, &legacy_name, "True").await;

    // The seed's own troubleshooting request, then the seed's alert.
    let (code, body) = post(
        &karo.webhook(),
        "application/json",
        r#"{"alerts": [{"labels": {"alertname": "TestAlert"}}]}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["received"], 1);
    assert_eq!(body["matched"], 0);
    let (code, body) = post(
        &karo.webhook(),
        "application/json",
        r#"{"alerts": [{"labels": {"alertname": "HighCPUUsage"}}]}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["created"], 1, "{body}");
    let jobs_api: Api<Job> = Api::namespaced(client.clone(), &ns);
    let seed_jobs = jobs_api
        .list(&ListParams::default().labels("karo.io/reaction=high-cpu-reaction"))
        .await
        .expect("list")
        .items;
    assert_eq!(seed_jobs.len(), 1);
    let c = container(&seed_jobs[0]);
    assert_eq!(c.name, "cpu-investigation");
    assert_eq!(c.image.as_deref(), Some("busybox:1.35"));
    assert_eq!(
        c.command.as_deref(),
        Some(&["sh".to_string(), "-c".to_string()][..])
    );
    assert!(c.args.as_ref().expect("args")[0]
        .contains("kubectl top pods --all-namespaces --sort-by=cpu"));

    // The legacy manifest: fire an alert that satisfies its matchers.
    let fixture_alert: Value =
        serde_json::from_str(include_str!("fixtures/legacy-alert.json")).expect("alert fixture");
    let (code, body) = post_json(&karo.webhook(), &notification(vec![fixture_alert])).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["created"].as_u64(),
        Some(legacy.spec.actions.len() as u64),
        "{body}"
    );
    let legacy_jobs = jobs_api
        .list(&ListParams::default().labels(&format!("karo.io/reaction={legacy_name}")))
        .await
        .expect("list")
        .items;
    assert_eq!(legacy_jobs.len(), legacy.spec.actions.len());
    for job in &legacy_jobs {
        let action_name = &job.metadata.labels.as_ref().expect("labels")["karo.io/action"];
        let action = legacy
            .spec
            .actions
            .iter()
            .find(|a| &a.name == action_name)
            .expect("action");
        let pod = job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod");
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
                if let Some(r) = &from.secret_key_ref {
                    let s = got
                        .value_from
                        .as_ref()
                        .and_then(|v| v.secret_key_ref.as_ref())
                        .expect("secretKeyRef passed through");
                    assert_eq!(s.name, r.name);
                    assert_eq!(s.key, r.key);
                    assert!(got.value.is_none(), "secret value never copied");
                }
                if let Some(r) = &from.config_map_key_ref {
                    let s = got
                        .value_from
                        .as_ref()
                        .and_then(|v| v.config_map_key_ref.as_ref())
                        .expect("configMapKeyRef passed through");
                    assert_eq!(s.name, r.name);
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
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("gates").await;
    for (name, extra) in [
        ("suspended", "suspend: true"),
        ("dry", "dryRun: true"),
        ("cool", "cooldown: 1h"),
        ("forbid", "concurrencyPolicy: Forbid"),
    ] {
        apply_reaction(
            cp,
            &ns,
            &format!("metadata: {{name: {name}}}\nspec:\n  alertName: Gate\n  {extra}\n  actions: [{{name: a, image: busybox}}]\n"),
        )
        .await;
    }
    let karo = start_karo(cp, &ns, "").await;
    for name in ["suspended", "dry", "cool", "forbid"] {
        wait_ready_condition(cp, &ns, name, "True").await;
    }
    let send = |starts: &str, instance: &str| {
        notification(vec![alert(
            json!({"alertname": "Gate", "instance": instance}),
            json!({}),
            starts,
        )])
    };
    let (code, body) = post_json(&karo.webhook(), &send("2026-05-01T00:00:00Z", "i1")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["matched"], 4);
    assert_eq!(body["created"], 2, "{body}"); // cool, forbid
    assert_eq!(body["skipped"], 1, "{body}"); // suspended
    assert_eq!(body["dryRun"], 1, "{body}");
    wait_jobs(cp, &ns, 2).await;
    wait_event(cp, &ns, "Skipped", "suspended").await;
    wait_event(cp, &ns, "Skipped", "Dry run").await;

    // Same alert, new occurrence: cooldown skips; the first forbid Job is still active.
    let (code, body) = post_json(&karo.webhook(), &send("2026-05-01T00:10:00Z", "i1")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["created"], 0, "{body}");
    assert_eq!(body["skipped"], 3, "{body}");
    wait_event(cp, &ns, "Skipped", "cooldown").await;
    wait_event(cp, &ns, "Skipped", "concurrency").await;
    // A different alert (fingerprint) is not in cooldown; forbid still blocks.
    let (_, body) = post_json(&karo.webhook(), &send("2026-05-01T00:10:00Z", "i2")).await;
    assert_eq!(body["created"], 1, "{body}");
    // Once the forbid Job completes, a new one may start.
    let jobs_api: Api<Job> = Api::namespaced(cp.client().await, &ns);
    for job in jobs_api
        .list(&ListParams::default().labels("karo.io/reaction=forbid"))
        .await
        .expect("list")
        .items
    {
        let name = job.metadata.name.clone().expect("name");
        let patch = json!({"status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}});
        jobs_api
            .patch_status(
                &name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .expect("complete job");
    }
    let (_, body) = post_json(&karo.webhook(), &send("2026-05-01T00:20:00Z", "i3")).await;
    assert_eq!(body["created"], 2, "{body}"); // cool (new fingerprint) and forbid
    wait_jobs(cp, &ns, 5).await;
    // The repeated first occurrence is a duplicate, not a new run.
    let (_, body) = post_json(&karo.webhook(), &send("2026-05-01T00:00:00Z", "i1")).await;
    assert_eq!(body["deduplicated"], 2, "{body}");
}

#[tokio::test]
async fn api_server_outage_is_retried_by_alertmanager_and_creates_the_job_once() {
    // An API server of its own: this test stops it.
    let mut cp = ControlPlane::start().await.expect("control plane");
    cp.install_crd().await;
    let ns = cp.namespace("outage").await;
    apply_reaction(&cp, &ns, ECHO_REACTION).await;
    let karo = start_karo(&cp, &ns, "").await;
    wait_ready_condition(&cp, &ns, "disk-cleanup", "True").await;
    let am = Alertmanager::start(&webhook_config(&karo.webhook()))
        .await
        .expect("alertmanager");

    cp.stop_apiserver();
    am.fire(
        &[
            ("alertname", "DiskFull"),
            ("severity", "critical"),
            ("instance", "node-1"),
            ("mountpoint", "/"),
        ],
        &[("summary", "during the outage")],
    )
    .await;
    // Karo cannot create the Job and says so with a 5xx, which Alertmanager retries.
    let url = karo.url().to_string();
    wait_until(SOON, || {
        let url = url.clone();
        async move { metric(&url, "webhook_requests_total{code=\"500\"}").await >= 1.0 }
    })
    .await
    .expect("Karo answered 500 while the API server was down");

    cp.start_apiserver().await;
    let jobs = wait_jobs(&cp, &ns, 1).await;
    assert_eq!(
        container(&jobs[0]).args.as_ref().expect("args")[0],
        "echo cleaning / on node-1: during the outage"
    );
    wait_until(SOON, || {
        let url = url.clone();
        async move { metric(&url, "webhook_requests_total{code=\"200\"}").await >= 1.0 }
    })
    .await
    .expect("Alertmanager's retry succeeded");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(jobs_count(&cp, &ns).await, 1);
}

async fn jobs_count(cp: &ControlPlane, ns: &str) -> usize {
    jobs(cp, ns).await.len()
}

#[tokio::test]
async fn a_notification_of_1000_alerts_is_answered_with_every_job() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("thousand").await;
    apply_reaction(
        cp,
        &ns,
        r#"
metadata: {name: bulk}
spec:
  alertName: Bulk
  actions: [{name: a, image: busybox, args: ["{{labels.i}}"]}]
"#,
    )
    .await;
    let karo = start_karo(cp, &ns, "").await;
    wait_ready_condition(cp, &ns, "bulk", "True").await;
    let n = notification(
        (0..1000)
            .map(|i| {
                alert(
                    json!({"alertname": "Bulk", "i": i.to_string()}),
                    json!({}),
                    "2026-07-01T00:00:00Z",
                )
            })
            .collect(),
    );
    let started = std::time::Instant::now();
    let (code, body) = post_json(&karo.webhook(), &n).await;
    eprintln!("1000 alerts answered in {:?}", started.elapsed());
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["created"], 1000);
    assert_eq!(jobs_count(cp, &ns).await, 1000);
    wait_trigger_count(cp, &ns, "bulk", 1000).await;
    // The same notification again: all deduplicated.
    let (code, body) = post_json(&karo.webhook(), &n).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["deduplicated"], 1000);
    assert_eq!(body["created"], 0);
}

#[tokio::test]
async fn sigterm_stops_karo_cleanly() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("sigterm").await;
    let mut karo = start_karo(cp, &ns, "").await;
    let status = karo
        .process
        .terminate(Duration::from_secs(60))
        .expect("karo exited after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", karo.process.log_text());
    let log = karo.process.log_text();
    assert!(log.contains("finishing requests in flight"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}
