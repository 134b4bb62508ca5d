//! Alerts on Karo and its dashboard: the chart's PrometheusRule passes promtool and its
//! Grafana dashboard shows Karo's metrics; every metric they name is one Karo exports.

use std::process::Command;

use serde_json::Value;

use super::Helm;
use crate::support::bins;
use crate::support::files::succeeded;
use crate::support::karo_lib::Metrics;
use crate::support::process::run_output;
use crate::support::TestDir;

/// Metric names in a PromQL expression (identifiers followed by a selector).
fn metric_names(expr: &str) -> Vec<String> {
    let re = regex::Regex::new(r"([a-z_][a-z0-9_]*)\{").expect("regex");
    re.captures_iter(expr)
        .map(|c| c[1].to_string())
        .filter(|n| n != "by")
        .collect()
}

/// Every series name Karo exports, histogram series included.
fn karo_series() -> Vec<String> {
    let text = Metrics::new().expect("metrics").encode().expect("encode");
    let mut names: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("# TYPE "))
        .flat_map(|l| {
            let mut parts = l.split_whitespace().skip(2);
            let name = parts.next().unwrap_or("").to_string();
            let kind = parts.next().unwrap_or("");
            if kind == "histogram" {
                vec![
                    format!("{name}_bucket"),
                    format!("{name}_sum"),
                    format!("{name}_count"),
                ]
            } else {
                vec![name]
            }
        })
        .collect();
    names.push("up".to_string());
    names
}

/// The one object `templates/<template>` renders with monitoring and `feature` on.
fn monitoring_object(feature: &str, template: &str) -> Value {
    let mut docs = Helm::V3.render(&[
        "--set",
        "monitoring.enabled=true",
        "--set",
        &format!("monitoring.{feature}.enabled=true"),
        "-s",
        &format!("templates/{template}"),
    ]);
    assert_eq!(docs.len(), 1);
    docs.remove(0)
}

#[test]
fn prometheus_rule_passes_promtool_and_uses_karos_metrics() {
    let rule = &monitoring_object("prometheusRule", "prometheusrule.yaml");
    assert_eq!(rule["kind"], "PrometheusRule");
    let groups = &rule["spec"]["groups"];
    let alerts: Vec<&str> = groups[0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for wanted in [
        "KaroDown",
        "KaroWebhookRequestsFailing",
        "KaroJobCreationFailing",
        "KaroConfigReloadFailed",
        "KaroWebhookAuthFailures",
        "KaroRunsAwaitingApproval",
        "KaroFailureBudgetExhausted",
    ] {
        assert!(alerts.contains(&wanted), "{wanted} missing: {alerts:?}");
    }
    let series = karo_series();
    for r in groups[0]["rules"].as_array().expect("rules") {
        let expr = r["expr"].as_str().expect("expr");
        assert!(expr.contains("job=\"karo\""), "{expr}");
        for name in metric_names(expr) {
            assert!(
                series.contains(&name),
                "{name} is not a Karo metric ({expr})"
            );
        }
    }
    let dir = TestDir::new("rules").expect("dir");
    let file = dir.path().join("karo-rules.yaml");
    std::fs::write(
        &file,
        serde_yaml::to_string(&serde_json::json!({ "groups": groups })).expect("yaml"),
    )
    .expect("write");
    let mut cmd = Command::new(bins::promtool().expect("promtool"));
    cmd.args(["check", "rules"]).arg(&file);
    let out = succeeded(
        &run_output(cmd, None).expect("promtool"),
        "promtool check rules",
    );
    assert!(out.contains("SUCCESS: 8 rules found"), "{out}");
}

#[test]
fn grafana_dashboard_shows_karos_metrics() {
    let cm = &monitoring_object("grafanaDashboard", "dashboard.yaml");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: Value =
        serde_json::from_str(cm["data"]["karo.json"].as_str().expect("karo.json")).expect("JSON");
    assert_eq!(dashboard["uid"], "karo-overview");
    let series = karo_series();
    let mut used = std::collections::BTreeSet::new();
    let mut titles = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        titles.push(panel["title"].as_str().unwrap_or("").to_string());
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for name in metric_names(expr) {
                assert!(
                    series.contains(&name),
                    "{name} is not a Karo metric ({expr})"
                );
                used.insert(name);
            }
        }
    }
    for name in [
        "karo_alerts_received_total",
        "alert_reactions_total",
        "jobs_created_total",
        "karo_jobs_deduplicated_total",
        "karo_jobs_skipped_total",
        "errors_total",
        "karo_webhook_request_duration_seconds_bucket",
        "karo_config_last_reload_successful",
    ] {
        assert!(used.contains(name), "the dashboard does not show {name}");
    }
    assert!(titles.iter().any(|t| t == "Webhook latency"), "{titles:?}");
}
