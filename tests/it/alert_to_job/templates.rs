//! How a reaction's spec becomes a Job: label values from the alert stay inside their
//! strings (no injected YAML, shell or template); reactions whose matchers or templates
//! are broken are not Ready and do not stop the others; the seed's and the earlier
//! implementation's examples produce the Jobs they describe.

use serde_json::{json, Value};

use super::{reaction, strings};
use crate::support::karo_lib::AlertReaction;
use crate::support::scenario::{assert_owned_by, first_container, owner, pod_spec, Scenario};
use crate::support::webhook::{alert, bare_alert, firing, notification};

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
        // One Run for the occurrence, with the action's Job and the jobTemplate's.
        assert_eq!(body["created"], 1, "payload {payload:?}: {body}");
        assert_eq!(
            body["jobs"].as_array().map(Vec::len),
            Some(2),
            "payload {payload:?}: {body}"
        );
    }
    let jobs = s.wait_jobs(10).await;
    let runs = s.runs().await;
    assert_eq!(runs.len(), 5);
    for job in &jobs {
        let run = runs
            .iter()
            .find(|r| r.metadata.name.as_ref() == Some(&owner(job).name))
            .expect("the Job's Run");
        assert_owned_by(job, run);
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
async fn seed_and_legacy_examples_produce_expected_jobs() {
    let legacy_yaml = include_str!("../../fixtures/legacy-actions.yaml");
    // The earlier implementation's manifest mounts a hostPath volume: allowed by policy here.
    let (s, karo) = Scenario::build("examples")
        .reaction(include_str!("../../fixtures/seed-jobtemplate.yaml"))
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
    let seed_jobs = s.wait_jobs_of("high-cpu-reaction", 1).await;
    let c = first_container(&seed_jobs[0]);
    assert_eq!(c.name, "cpu-investigation");
    assert_eq!(c.image.as_deref(), Some("busybox:1.35"));
    assert_eq!(c.command, Some(strings(&["sh", "-c"])));
    assert!(c.args.as_ref().expect("args")[0]
        .contains("kubectl top pods --all-namespaces --sort-by=cpu"));

    // The legacy manifest: fire an alert that satisfies its matchers.
    let fixture_alert: Value =
        serde_json::from_str(include_str!("../../fixtures/legacy-alert.json"))
            .expect("alert fixture");
    let body = karo.notify_ok(&notification(vec![fixture_alert])).await;
    // One Run for the alert, with a Job for each action.
    assert_eq!(body["created"], 1, "{body}");
    assert_eq!(
        body["jobs"].as_array().map(Vec::len),
        Some(legacy.spec.actions.len()),
        "{body}"
    );
    let legacy_jobs = s
        .wait_jobs_of(&legacy_name, legacy.spec.actions.len())
        .await;
    let legacy_runs = s.runs_of(&legacy_name).await;
    assert_eq!(legacy_runs.len(), 1);
    for job in &legacy_jobs {
        assert_owned_by(job, &legacy_runs[0]);
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
