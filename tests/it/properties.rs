//! Property tests of the attacker-reachable core: payload parsing and rendering.
//! Alert content is arbitrary input (Alertmanager's API accepts unauthenticated
//! alerts by default), so these generate it.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::support::karo_lib::{
    build_job, compile_reaction, fingerprint, job_name, parse_notification, Alert, AlertReaction,
    AlertStatus, JobDefaults, JobInput, Notification, Policy, Renderer, Skeleton,
};

fn now() -> jiff::Timestamp {
    jiff::Timestamp::UNIX_EPOCH
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("alerts".to_string()),
                    Just("labels".to_string()),
                    Just("status".to_string()),
                    Just("startsAt".to_string()),
                    ".{0,8}".prop_map(|s| s)
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const REACTION: &str = r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {name: prop, namespace: default, uid: 1234}
spec:
  alertName: Prop
  actions:
    - name: act
      image: busybox
      command: ["sh", "-c"]
      args: ["echo {{shellQuote labels.v}}", "{{labels.v}}"]
      env: [{name: V, value: "{{annotations.v}}"}]
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: c, image: busybox, command: ["echo", "{{labels.v}}"]}]
"#;

fn notification_with(value: &str, annotation: &str) -> Notification {
    let mut labels = BTreeMap::new();
    labels.insert("alertname".to_string(), "Prop".to_string());
    labels.insert("v".to_string(), value.to_string());
    let mut annotations = BTreeMap::new();
    annotations.insert("v".to_string(), annotation.to_string());
    Notification {
        receiver: "karo".into(),
        alerts: vec![Alert {
            status: AlertStatus::Firing,
            fingerprint: fingerprint(&labels),
            labels,
            annotations,
            starts_at: "2026-01-01T00:00:00Z".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_label_value(s: &str) -> bool {
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && s.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_none_or(|c| c.is_ascii_alphanumeric())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_notification(&bytes, now());
    }

    #[test]
    fn parsing_arbitrary_json_never_panics(value in arb_json()) {
        let body = serde_json::to_vec(&value).unwrap_or_default();
        if let Ok(n) = parse_notification(&body, now()) {
            for a in &n.alerts {
                prop_assert_eq!(a.fingerprint.len(), 16);
                prop_assert!(!a.starts_at.is_empty());
            }
        }
    }

    #[test]
    fn alert_values_stay_inside_their_string(
        value in "\\PC{0,80}|.*\\{\\{.*\\}\\}.*|.*\\n  hostPath:.*|\\$\\(.*\\)",
        annotation in "\\PC{0,40}",
    ) {
        let renderer = Renderer::new();
        let ar: AlertReaction = serde_yaml::from_str(REACTION).expect("reaction");
        let compiled = compile_reaction(&ar, &renderer, &Policy::default()).expect("valid");
        let skeleton = Skeleton::builtin().expect("skeleton");
        let n = notification_with(&value, &annotation);
        for source in &compiled.sources {
            let job = build_job(&JobInput {
                reaction: &compiled,
                source,
                alert: &n.alerts[0],
                notification: &n,
                renderer: &renderer,
                skeleton: &skeleton,
                defaults: &JobDefaults::default(),
            }).expect("builds");
            let name = job.metadata.name.clone().unwrap_or_default();
            prop_assert!(is_dns1123_label(&name), "name {:?}", name);
            for (k, v) in job.metadata.labels.clone().unwrap_or_default() {
                prop_assert!(is_label_value(&v), "label {} = {:?}", k, v);
            }
            let pod = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()).expect("pod");
            prop_assert_eq!(pod.containers.len(), 1);
            prop_assert!(pod.volumes.is_none());
            let c = &pod.containers[0];
            if source.action_name == "act" {
                let args = c.args.clone().unwrap_or_default();
                prop_assert_eq!(args.len(), 2);
                prop_assert_eq!(&args[1], &value);
                prop_assert_eq!(c.command.clone().unwrap_or_default(), vec!["sh".to_string(), "-c".to_string()]);
                let env = c.env.clone().unwrap_or_default();
                prop_assert_eq!(env.len(), 1);
                prop_assert_eq!(env[0].value.clone().unwrap_or_default(), annotation.clone());
            } else {
                prop_assert_eq!(c.command.clone().unwrap_or_default(), vec!["echo".to_string(), value.clone()]);
            }
        }
    }

    #[test]
    fn job_names_are_always_valid(reaction in "[a-z0-9][a-z0-9.-]{0,250}", action in "\\PC{1,100}") {
        let mut ar: AlertReaction = serde_yaml::from_str(REACTION).expect("reaction");
        ar.metadata.name = Some(reaction);
        let compiled = compile_reaction(&ar, &Renderer::new(), &Policy::default()).expect("valid");
        let n = notification_with("x", "y");
        let name = job_name(&compiled, &action, &n.alerts[0]);
        prop_assert!(is_dns1123_label(&name), "{:?}", name);
    }
}
