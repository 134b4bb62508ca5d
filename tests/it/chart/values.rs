//! The chart's values: every parameter of the seed's table and of the chart README is in
//! values.yaml with its default and documented in values.schema.json; `config` in the
//! schema names exactly Karo's settings; wrong values fail with a message naming them;
//! `helm lint --strict` is clean with every value set, with Helm 3 and Helm 4.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{chart, fixture, strs, value_sets, HELMS};
use crate::support::files::{read, repo_path, yaml};
use crate::support::karo_lib::Config;
use crate::support::TestDir;

/// Checks every row of a `| `param` | description | default |` table against
/// values.yaml and values.schema.json; returns the parameters.
fn check_parameter_table(table: &str, source: &str) -> Vec<String> {
    let values = yaml(&read(repo_path("charts/karo/values.yaml")));
    let schema: Value =
        serde_json::from_str(&read(repo_path("charts/karo/values.schema.json"))).expect("schema");
    let mut params = Vec::new();
    for line in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let param = cells[0].trim_matches('`');
        let default = cells[cells.len() - 1];
        let actual = param
            .split('.')
            .try_fold(&values, |v, key| v.get(key))
            .unwrap_or_else(|| panic!("{source}: {param} is not in values.yaml"));
        if default == "See values.yaml" {
            assert!(!actual.is_null(), "{source}: {param}");
        } else {
            assert_eq!(
                actual,
                &yaml(default.trim_matches('`')),
                "{source}: default of {param}"
            );
        }
        let documented = param
            .split('.')
            .try_fold(&schema, |s, key| s["properties"].get(key))
            .unwrap_or_else(|| panic!("{source}: {param} is not in values.schema.json"));
        assert!(documented["description"].is_string(), "{source}: {param}");
        params.push(param.to_string());
    }
    params
}

#[test]
fn every_seed_parameter_is_in_values_yaml_with_its_default_and_in_the_schema() {
    let params = check_parameter_table(&read(fixture("seed-parameters.md")), "seed table");
    assert_eq!(params.len(), 31, "rows of the seed's table");
    // The chart's own README documents every value, with its default.
    let documented =
        check_parameter_table(&read(repo_path("charts/karo/README.md")), "chart README");
    for param in &params {
        assert!(documented.contains(param), "chart README lacks {param}");
    }
    fn leaves(v: &Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(o) if !o.is_empty() => {
                for (k, child) in o {
                    leaves(child, &format!("{prefix}{k}."), out);
                }
            }
            _ => out.push(prefix.trim_end_matches('.').to_string()),
        }
    }
    let mut all = Vec::new();
    leaves(
        &yaml(&read(repo_path("charts/karo/values.yaml"))),
        "",
        &mut all,
    );
    for leaf in all {
        assert!(
            documented
                .iter()
                .any(|d| leaf == *d || leaf.starts_with(&format!("{d}."))),
            "chart README does not document {leaf}"
        );
    }
}

#[test]
fn wrong_values_fail_with_a_message_naming_them() {
    let dir = TestDir::new("bad-values").expect("temp dir");
    let cases = [
        ("replicaCount: \"two\"\n", &["replicaCount", "integer"][..]),
        ("service:\n  port: http\n", &["port", "integer"]),
        ("webhook:\n  auth:\n    type: digest\n", &["type"]),
        ("config:\n  logFormat: xml\n", &["logFormat"]),
        // Keys the chart sets from its own values may not be set in `config`.
        ("config:\n  webhook:\n    path: /x\n", &["path"]),
        ("config:\n  http:\n    port: 9000\n", &["port"]),
        ("config:\n  namespces: [a]\n", &["namespces"]),
        (
            "webhook:\n  auth:\n    type: basic\n    password: p\n",
            &["webhook.auth.username"],
        ),
        (
            "service:\n  targetPort: 9443\n",
            &["webhook.port and service.targetPort must differ"],
        ),
        (
            "webhook:\n  auth:\n    type: bearer\n",
            &["webhook.auth.token or webhook.auth.existingSecret"],
        ),
        ("config:\n  runs:\n    retention: 1 day\n", &["retention"]),
        (
            "config:\n  runs:\n    retentionAfterResolved: 1.5h\n",
            &["retentionAfterResolved"],
        ),
        (
            "config:\n  runs:\n    historyLimit: -1\n",
            &["historyLimit"],
        ),
        (
            "config:\n  runs:\n    historyLimit: \"100\"\n",
            &["historyLimit"],
        ),
        (
            "config:\n  leaderElection:\n    leaseDuration: 15\n",
            &["leaseDuration"],
        ),
        (
            "config:\n  leaderElection:\n    leaseName: Karo_Lease\n",
            &["leaseName"],
        ),
        (
            "config:\n  leaderElection:\n    namespace: Monitoring\n",
            &["namespace"],
        ),
        (
            "config:\n  leaderElection:\n    renewEvery: 5s\n",
            &["renewEvery"],
        ),
    ];
    for (i, (values, needles)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("values-{i}.yaml"));
        std::fs::write(&file, values).expect("writing values");
        let file = file.display().to_string();
        for helm in HELMS {
            let out = helm.run(&["template", "x", &chart(), "-f", &file]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{helm:?} accepted {values:?}");
            for needle in *needles {
                assert!(
                    stderr.contains(needle),
                    "{helm:?} on {values:?}: {needle:?} not in {stderr}"
                );
            }
        }
    }
}

#[test]
fn helm_lint_is_clean_with_both_helm_versions() {
    let chart = chart();
    for helm in HELMS {
        for (name, args) in value_sets() {
            let mut all = vec!["lint", "--strict", chart.as_str()];
            all.extend(strs(&args));
            let out = helm.run(&all);
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && !text.contains("[WARNING]") && !text.contains("[ERROR]"),
                "{helm:?} lint with {name} values:\n{text}"
            );
        }
    }
}

/// `config` in values.schema.json names exactly Karo's settings, minus those the chart
/// sets from its own values.
#[test]
fn config_schema_lists_every_karo_setting() {
    fn daemon_keys(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        for (k, child) in v.as_object().expect("an object") {
            let path = format!("{prefix}{k}");
            match child {
                Value::Object(o)
                    if !o.is_empty() && !["labels", "annotations"].contains(&k.as_str()) =>
                {
                    daemon_keys(child, &format!("{path}."), out)
                }
                _ => {
                    out.insert(path);
                }
            }
        }
    }
    fn schema_keys(s: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        for (k, child) in s["properties"].as_object().expect("properties") {
            let path = format!("{prefix}{k}");
            if child.get("properties").is_some() {
                schema_keys(child, &format!("{path}."), out);
            } else {
                out.insert(path);
            }
        }
    }
    let owned_by_chart = [
        "http.port",
        "webhook.path",
        "webhook.port",
        "webhook.tls.enabled",
        "webhook.tls.certFile",
        "webhook.tls.keyFile",
        "webhook.auth.type",
        "webhook.auth.username",
        "webhook.auth.passwordFile",
        "webhook.auth.tokenFile",
        "jobTemplateFile",
    ];
    let mut daemon = BTreeSet::new();
    daemon_keys(
        &serde_json::to_value(Config::default()).expect("config as JSON"),
        "",
        &mut daemon,
    );
    for key in owned_by_chart {
        assert!(daemon.remove(key), "Karo has no setting {key}");
    }
    let schema: Value =
        serde_json::from_str(&read(repo_path("charts/karo/values.schema.json"))).expect("schema");
    let mut chart = BTreeSet::new();
    schema_keys(&schema["properties"]["config"], "", &mut chart);
    assert_eq!(chart, daemon, "config keys: chart schema vs Karo");
}
