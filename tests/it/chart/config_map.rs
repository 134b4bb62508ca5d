//! The ConfigMap is Karo's config: by default Karo's defaults plus TLS and the shipped
//! Job template (a copy of `templates/job.yaml`, one Karo accepts); with values, Karo
//! loads the values that were set and the pod agrees with them; the `jobTemplate` value
//! replaces the shipped skeleton.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::{fixture, karo_container, load_config, object, of_kind, pod_spec, Helm, HELMS};
use crate::support::files::{read, repo_path};
use crate::support::karo_lib::{AuthType, Config, LogFormat, Renderer, Snapshot, TlsConfig};
use crate::support::TestDir;

/// The ConfigMap the chart renders: (config.yaml, job.yaml).
fn rendered_config_map(helm: Helm, args: &[&str]) -> (String, String) {
    let mut all = vec!["-s", "templates/configmap.yaml"];
    all.extend_from_slice(args);
    let docs = helm.render(&all);
    let data = &object(&docs, "ConfigMap", "karo")["data"];
    (
        data["config.yaml"]
            .as_str()
            .expect("config.yaml")
            .to_string(),
        data["job.yaml"].as_str().expect("job.yaml").to_string(),
    )
}

fn chart_tls() -> TlsConfig {
    TlsConfig {
        enabled: true,
        cert_file: Some("/etc/karo/tls/tls.crt".into()),
        key_file: Some("/etc/karo/tls/tls.key".into()),
    }
}

#[test]
fn default_config_map_is_karos_defaults_plus_tls_and_the_shipped_job_template() {
    let skeleton = read(repo_path("templates/job.yaml"));
    assert_eq!(
        read(repo_path("charts/karo/files/job.yaml")),
        skeleton,
        "charts/karo/files/job.yaml must be a copy of templates/job.yaml"
    );
    for helm in HELMS {
        let (config_yaml, job_yaml) = rendered_config_map(helm, &[]);
        let config = load_config(&config_yaml);
        let mut expected = Config::default();
        expected.webhook.tls = chart_tls();
        expected.job_template_file = Some("/etc/karo/config/job.yaml".into());
        assert_eq!(config, expected, "{helm:?}");
        assert_eq!(job_yaml.trim_end(), skeleton.trim_end());

        // The shipped skeleton is one Karo accepts.
        let dir = TestDir::new("skeleton").expect("temp dir");
        let path = dir.path().join("job.yaml");
        std::fs::write(&path, &job_yaml).expect("writing job.yaml");
        let mut config = config;
        config.job_template_file = Some(path);
        Snapshot::prepare(config, &Renderer::new())
            .unwrap_or_else(|e| panic!("karo rejects the chart's job.yaml: {e}"));
    }
}

#[test]
fn config_map_from_values_yields_the_values_that_were_set() {
    for helm in HELMS {
        let (config_yaml, _) = rendered_config_map(helm, &["-f", &fixture("values-config.yaml")]);
        let c = load_config(&config_yaml);
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.namespaces, ["alpha", "beta"]);
        assert!(c.dry_run);
        // From the chart's own values.
        assert_eq!(c.http.port, 8181);
        assert_eq!(c.webhook.path, "/hooks");
        assert_eq!(c.webhook.port, 9444);
        assert_eq!(c.webhook.tls, chart_tls());
        assert_eq!(c.webhook.auth.kind, AuthType::Basic);
        assert_eq!(c.webhook.auth.username.as_deref(), Some("am"));
        assert_eq!(
            c.webhook.auth.password_file.as_deref(),
            Some(Path::new("/etc/karo/auth/password"))
        );
        assert_eq!(c.webhook.auth.token_file, None);
        assert_eq!(
            c.job_template_file.as_deref(),
            Some(Path::new("/etc/karo/config/job.yaml"))
        );
        // From `config`.
        assert_eq!(c.http.header_read_timeout_seconds, 5);
        assert_eq!(c.http.body_read_timeout_seconds, 20);
        assert_eq!(c.webhook.max_body_bytes, 1_048_576);
        assert_eq!(c.job_defaults.ttl_seconds_after_finished, Some(60));
        assert_eq!(c.job_defaults.backoff_limit, Some(2));
        assert_eq!(c.job_defaults.active_deadline_seconds, Some(900));
        assert_eq!(
            c.job_defaults.labels.get("team").map(String::as_str),
            Some("sre")
        );
        assert_eq!(
            c.job_defaults.annotations.get("owner").map(String::as_str),
            Some("oncall")
        );
        assert_eq!(c.limits.max_jobs_per_minute, 50);
        assert_eq!(c.limits.max_concurrent_creates, 8);
        assert!(c.policy.allow_host_path);
        assert_eq!(c.policy.allowed_service_accounts, ["remediator"]);
        assert!(c.policy.allow_privileged);

        // The pod agrees with the config: ports, and the files it names.
        let docs = helm.render(&["-f", &fixture("values-config.yaml")]);
        let deployment = object(&docs, "Deployment", "karo");
        let container = karo_container(deployment);
        assert_eq!(container["ports"][0]["containerPort"], 8181);
        assert_eq!(container["ports"][1]["containerPort"], 9444);
        let volumes = &pod_spec(deployment)["volumes"];
        assert!(volumes
            .as_array()
            .expect("volumes")
            .contains(&json!({"name": "auth", "secret": {"secretName": "am-credentials", "items": [{"key": "pw", "path": "password"}]}})));
        assert!(volumes
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v["secret"]["secretName"] == "my-cert"));
        let service = object(&docs, "Service", "karo");
        assert_eq!(service["spec"]["ports"][1]["port"], 9444);
        // Credentials from an existing Secret: the chart creates none.
        assert!(docs.iter().all(|d| d["kind"] != "Secret"));
        // Namespaced RBAC in the listed namespaces, leader election in the release's.
        let roles: Vec<(&str, &str)> = of_kind(&docs, "Role")
            .iter()
            .map(|r| {
                (
                    r["metadata"]["namespace"].as_str().expect("namespace"),
                    r["metadata"]["name"].as_str().expect("name"),
                )
            })
            .collect();
        assert_eq!(
            roles,
            [
                ("alpha", "karo-default"),
                ("beta", "karo-default"),
                ("default", "karo-leader-election")
            ]
        );
    }
}

/// `config.runs` and `config.leaderElection` reach Karo as set; an empty namespace is
/// left to Karo (the pod's). The Lease's default name is tested in `rbac`.
#[test]
fn runs_and_leader_election_values_reach_karos_config() {
    for helm in HELMS {
        let (config_yaml, _) = rendered_config_map(
            helm,
            &[
                "--set",
                "config.runs.retention=36h",
                "--set",
                "config.runs.retentionAfterResolved=1h30m",
                "--set",
                "config.runs.historyLimit=0",
                "--set",
                "config.leaderElection.leaseDuration=30s",
                "--set",
                "config.leaderElection.namespace=elections",
            ],
        );
        let c = load_config(&config_yaml);
        assert_eq!(c.runs.retention, "36h");
        assert_eq!(c.runs.retention(), Duration::from_secs(36 * 3600));
        assert_eq!(c.runs.retention_after_resolved(), Duration::from_secs(5400));
        assert_eq!(c.runs.history_limit, 0);
        assert_eq!(c.leader_election.lease_name, "karo");
        assert_eq!(c.leader_election.namespace.as_deref(), Some("elections"));
        assert_eq!(c.leader_election.lease_duration(), Duration::from_secs(30));

        let (config_yaml, _) = rendered_config_map(
            helm,
            &[
                "--set",
                "config.leaderElection.leaseName=karo-shared",
                "--set",
                "config.leaderElection.namespace=",
            ],
        );
        let c = load_config(&config_yaml);
        assert_eq!(c.leader_election.lease_name, "karo-shared");
        // Empty: left to Karo, which takes the pod's namespace.
        assert_eq!(c.leader_election.namespace, None);
    }
}

#[test]
fn job_template_value_replaces_the_shipped_skeleton() {
    let dir = TestDir::new("job-template").expect("temp dir");
    let custom = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  labels:\n    team: \"{{default labels.team \\\"none\\\"}}\"\n";
    let path = dir.path().join("my-job.yaml");
    std::fs::write(&path, custom).expect("writing");
    for helm in HELMS {
        let (_, job_yaml) = rendered_config_map(
            helm,
            &["--set-file", &format!("jobTemplate={}", path.display())],
        );
        assert_eq!(job_yaml, custom);
    }
}
