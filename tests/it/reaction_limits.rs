//! No AlertReaction can exhaust Karo, against a real kube-apiserver: the CRD's
//! schema refuses too many matchers or actions and too long values and templates,
//! naming the field; what a schema cannot bound (a regex's compiled size, a Job
//! rendered from big labels), Karo refuses for that reaction or that alert alone,
//! and the other reactions keep working.

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{json, Value};

use crate::support::karo_lib::AlertReaction;
use crate::support::karo_process::karo_command;
use crate::support::scenario::Scenario;
use crate::support::webhook::firing;
use crate::support::TestDir;

/// Creates an AlertReaction with `spec` and returns the API server's 422 message.
async fn rejection(s: &Scenario, name: &str, spec: Value) -> String {
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "karo.io/v1alpha1",
        "kind": "AlertReaction",
        "metadata": {"name": name, "namespace": s.ns},
        "spec": spec,
    }))
    .expect("a k8s object");
    let api: Api<DynamicObject> = Api::namespaced_with(
        s.cp().client().await,
        &s.ns,
        &ApiResource::erase::<AlertReaction>(&()),
    );
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => panic!("the API server accepted {name}"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "expected 422 Invalid: {status:?}");
            status.message
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// kube-apiserver 1.20 leaves indexes out of a path (`spec.matchers.value`); later
/// versions write them (`spec.matchers[0].value`).
fn names_field(message: &str, indexed: &str) -> bool {
    let bare: String = {
        let mut out = String::new();
        let mut skip = false;
        for c in indexed.chars() {
            match c {
                '[' => skip = true,
                ']' => skip = false,
                c if !skip => out.push(c),
                _ => {}
            }
        }
        out
    };
    message.contains(indexed) || message.contains(&bare)
}

#[tokio::test]
async fn api_server_refuses_oversized_reactions_naming_the_field() {
    let s = Scenario::build("limits-schema").create().await;
    let action = json!({"name": "a", "image": "busybox"});
    let matcher = json!({"name": "severity", "operator": "=", "value": "critical"});

    let message = rejection(
        &s,
        "many-matchers",
        json!({"alertName": "A", "matchers": vec![matcher.clone(); 65], "actions": [action]}),
    )
    .await;
    assert!(names_field(&message, "spec.matchers"), "{message}");
    assert!(message.contains("at most 64 items"), "{message}");

    let actions: Vec<Value> = (0..33)
        .map(|i| json!({"name": format!("a{i}"), "image": "busybox"}))
        .collect();
    let message = rejection(
        &s,
        "many-actions",
        json!({"alertName": "A", "actions": actions}),
    )
    .await;
    assert!(names_field(&message, "spec.actions"), "{message}");
    assert!(message.contains("at most 32 items"), "{message}");

    let message = rejection(
        &s,
        "long-value",
        json!({
            "alertName": "A",
            "matchers": [{"name": "severity", "operator": "=~", "value": "a".repeat(4097)}],
            "actions": [{"name": "a", "image": "busybox"}],
        }),
    )
    .await;
    assert!(names_field(&message, "spec.matchers[0].value"), "{message}");
    assert!(message.contains("at most 4096"), "{message}");

    let message = rejection(
        &s,
        "long-arg",
        json!({
            "alertName": "A",
            "actions": [{"name": "a", "image": "busybox", "args": ["x".repeat(32 * 1024 + 1)]}],
        }),
    )
    .await;
    assert!(
        names_field(&message, "spec.actions[0].args[0]"),
        "{message}"
    );
    assert!(message.contains("at most 32768"), "{message}");

    // At the limits, the same reaction is stored.
    let api: Api<AlertReaction> = Api::namespaced(s.cp().client().await, &s.ns);
    let at_limits: AlertReaction = serde_json::from_value(json!({
        "apiVersion": "karo.io/v1alpha1",
        "kind": "AlertReaction",
        "metadata": {"name": "at-limits", "namespace": s.ns},
        "spec": {
            "alertName": "A",
            "matchers": vec![json!({"name": "v", "operator": "=", "value": "a".repeat(4096)}); 64],
            "actions": [{"name": "a", "image": "busybox", "args": ["x".repeat(32 * 1024)]}],
        },
    }))
    .expect("reaction");
    api.create(&PostParams::default(), &at_limits)
        .await
        .expect("a reaction at the limits is stored");
}

const COSTLY: &str = r#"
metadata: {name: costly}
spec:
  alertName: Shared
  matchers: [{name: instance, operator: "=~", value: '(?:\pL{100}){10}'}]
  actions: [{name: a, image: busybox}]
"#;

const GOOD: &str = r#"
metadata: {name: good}
spec:
  alertName: Shared
  matchers: [{name: instance, operator: "=~", value: 'db-\d+'}]
  actions: [{name: a, image: busybox, args: ["{{labels.instance}}"]}]
"#;

#[tokio::test]
async fn a_too_costly_regex_is_not_ready_and_the_other_reactions_still_run() {
    let (s, karo) = Scenario::build("limits-regex")
        .refused_reaction(COSTLY)
        .reaction(GOOD)
        .start()
        .await;
    let (reason, message) = s.wait_ready("costly", "False").await;
    assert_eq!(reason, "InvalidMatcher");
    assert!(message.starts_with("spec.matchers[0].value: "), "{message}");
    assert!(
        message.contains("exceeds the compiled size limit of 1048576 bytes"),
        "{message}"
    );

    let body = karo
        .notify_ok(&firing(
            [json!({"alertname": "Shared", "instance": "db-1"})],
            "2026-05-01T00:00:00Z",
        ))
        .await;
    assert_eq!(body["matched"], 1, "{body}");
    let job = s.wait_one_job_of("good").await;
    let args = job
        .spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers[0].args.clone());
    assert_eq!(args.flatten(), Some(vec!["db-1".to_string()]));

    // `karo validate` gives the same verdict, without a cluster.
    let dir = TestDir::new("limits-validate").expect("temp dir");
    let file = dir.path().join("costly.yaml");
    std::fs::write(
        &file,
        format!("apiVersion: karo.io/v1alpha1\nkind: AlertReaction\n{COSTLY}"),
    )
    .expect("writing the manifest");
    let out = karo_command(&["validate", &file.display().to_string()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("spec.matchers[0].value: regular expression")
            && stdout.contains("exceeds the compiled size limit of 1048576 bytes"),
        "{stdout}"
    );
}

const EXPLODES: &str = r#"
metadata: {name: explodes}
spec:
  alertName: Big
  actions:
    - name: a
      image: busybox
      args: ["{{#each labels}}{{#each ../labels}}{{this}}{{/each}}{{/each}}"]
"#;

const SMALL: &str = r#"
metadata: {name: small}
spec:
  alertName: Big
  actions: [{name: a, image: busybox, args: ["{{labels.alertname}}"]}]
"#;

#[tokio::test]
async fn a_job_too_big_to_render_fails_its_occurrence_and_the_others_run() {
    let (s, karo) = Scenario::build("limits-render")
        .reaction(EXPLODES)
        .reaction(SMALL)
        .start()
        .await;
    // 110 labels of 400 bytes, every label for every label: 4.8 MB.
    let mut labels = serde_json::Map::new();
    labels.insert("alertname".into(), json!("Big"));
    for i in 0..110 {
        labels.insert(format!("l{i:02}"), json!("x".repeat(400)));
    }
    let body = karo
        .notify_ok(&firing([Value::Object(labels)], "2026-05-01T00:00:00Z"))
        .await;
    assert_eq!(body["matched"], 2, "{body}");
    assert_eq!(body["failed"], 1, "{body}");
    let errors = body["errors"].to_string();
    assert!(
        errors.contains("explodes")
            && errors.contains(
                "spec.actions[0].args[0]: the rendered output exceeds the limit of 4194304 bytes"
            ),
        "{body}"
    );
    s.wait_one_job_of("small").await;
    assert!(s.jobs_of("explodes").await.is_empty());
    // The reaction itself stays Ready: an alert with fewer labels renders.
    s.wait_ready("explodes", "True").await;
}
