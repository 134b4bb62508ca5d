//! The Helm chart (`charts/karo`) with the real Helm 3.17 and Helm 4.1, against a real
//! kube-apiserver: lint, schema, rendering accepted by the API server, installation,
//! and Karo running with the chart's ServiceAccount, RBAC and ConfigMap. Also the plain
//! manifests in `config/rbac` and `config/manager`, kept in sync with the chart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

use crate::support::bins;
use crate::support::files::{documents, read, repo_path, succeeded, yaml};
use crate::support::karo_lib::{
    load_config_file, AuthType, Config, LogFormat, Metrics, Overrides, Renderer, Snapshot,
    TlsConfig,
};
use crate::support::karo_process::KaroProcess;
use crate::support::process::run_output;
use crate::support::scenario::Scenario;
use crate::support::webhook::bare_alert;
use crate::support::{free_port, ControlPlane, TestDir};

/// The release name the chart README uses.
const RELEASE: &str = "my-operator";

fn chart() -> String {
    repo_path("charts/karo").display().to_string()
}

fn fixture(name: &str) -> String {
    repo_path(&format!("tests/fixtures/chart/{name}"))
        .display()
        .to_string()
}

fn summary(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .map(|d| {
            format!(
                "{}/{}/{}",
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["namespace"].as_str().unwrap_or(""),
                d["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", summary(docs)))
}

/// Whether `actual` has everything `expected` has (objects recursively; the rest equal).
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, v)| a.get(k).is_some_and(|av| contains(av, v))),
        _ => actual == expected,
    }
}

fn pod_spec(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]
}

fn karo_container(deployment: &Value) -> &Value {
    &pod_spec(deployment)["containers"][0]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Helm {
    V3,
    V4,
}

const HELMS: [Helm; 2] = [Helm::V3, Helm::V4];

impl Helm {
    fn bin(self) -> PathBuf {
        match self {
            Helm::V3 => bins::helm3(),
            Helm::V4 => bins::helm4(),
        }
        .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Runs helm with its cache, config and data in a temp dir of this test binary,
    /// never the user's.
    fn run(self, args: &[&str]) -> Output {
        static HOME: OnceLock<TestDir> = OnceLock::new();
        let home = HOME
            .get_or_init(|| TestDir::new("helm-home").expect("helm home"))
            .path()
            .join(format!("{self:?}"));
        let mut cmd = Command::new(self.bin());
        cmd.args(args)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env_remove("KUBECONFIG");
        run_output(cmd, None).expect("running helm")
    }

    fn must(self, args: &[&str]) -> String {
        succeeded(
            &self.run(args),
            &format!("{self:?} helm {}", args.join(" ")),
        )
    }

    /// `helm template <release> charts/karo -n <namespace> <args>`.
    fn template(self, release: &str, namespace: &str, args: &[&str]) -> String {
        let chart = chart();
        let mut all = vec!["template", release, chart.as_str(), "-n", namespace];
        all.extend_from_slice(args);
        self.must(&all)
    }

    fn render(self, args: &[&str]) -> Vec<Value> {
        documents(&self.template(RELEASE, "default", args))
    }
}

/// The value sets the chart is linted and validated with: the defaults, the README's
/// examples, and values that turn everything on.
fn value_sets() -> Vec<(&'static str, Vec<String>)> {
    let file = |name: &str| vec!["-f".to_string(), fixture(name)];
    vec![
        ("default", vec![]),
        ("basic", file("values-basic.yaml")),
        ("security", file("values-security.yaml")),
        ("advanced", file("values-advanced.yaml")),
        ("monitoring", file("values-monitoring.yaml")),
        ("full", file("values-full.yaml")),
        ("existing-secret", file("values-existing-secret.yaml")),
        ("config", file("values-config.yaml")),
    ]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------------
// Values, schema and lint
// ---------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------

#[test]
fn default_install_is_named_for_the_readme_commands() {
    for helm in HELMS {
        let docs = helm.render(&[]);
        // `helm install my-operator karo/karo`, then the README's curl to
        // karo.default.svc.cluster.local:8080/webhook.
        let service = object(&docs, "Service", "karo");
        let ports: Vec<(Value, Value, Value)> = service["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .map(|p| {
                (
                    p["name"].clone(),
                    p["port"].clone(),
                    p["targetPort"].clone(),
                )
            })
            .collect();
        assert_eq!(
            ports,
            vec![
                (json!("http"), json!(8080), json!("http")),
                (json!("webhook"), json!(9443), json!("webhook")),
            ]
        );
        let deployment = object(&docs, "Deployment", "karo");
        // `kubectl get pods -l app.kubernetes.io/name=karo`
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert_eq!(pod_labels["app.kubernetes.io/name"], "karo");
        assert_eq!(pod_labels["app.kubernetes.io/instance"], RELEASE);
        for label in [
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ] {
            assert!(
                deployment["metadata"]["labels"][label].is_string(),
                "{label}"
            );
        }
        assert!(contains(
            &service["spec"]["selector"],
            &json!({"app.kubernetes.io/name": "karo", "app.kubernetes.io/instance": RELEASE})
        ));
        let container = karo_container(deployment);
        assert_eq!(container["image"], "docker.io/dudizimber/karo:latest");
        assert_eq!(
            container["args"],
            json!(["run", "--config", "/etc/karo/config/config.yaml"])
        );
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(
            container["env"][0],
            json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
        );
        // The seed's security defaults.
        assert!(contains(
            &pod_spec(deployment)["securityContext"],
            &json!({"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532})
        ));
        assert!(contains(
            &container["securityContext"],
            &json!({
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "runAsUser": 65532,
            })
        ));
        // The ConfigMap is mounted as a directory (no subPath), so edits reach the pod.
        let mounts = container["volumeMounts"].as_array().expect("mounts");
        assert!(mounts.iter().all(|m| m.get("subPath").is_none()));
        assert!(mounts.contains(
            &json!({"name": "config", "mountPath": "/etc/karo/config", "readOnly": true})
        ));
        assert!(of_kind(&docs, "Ingress").is_empty());
        assert!(of_kind(&docs, "ServiceMonitor").is_empty());
        assert_eq!(of_kind(&docs, "ClusterRole").len(), 1);
        assert!(of_kind(&docs, "Role").is_empty());
        // TLS is on by default, with a certificate the chart generates.
        let tls = object(&docs, "Secret", "karo-webhook-tls");
        assert_eq!(tls["type"], "kubernetes.io/tls");
        for key in ["tls.crt", "tls.key", "ca.crt"] {
            assert!(tls["data"][key].is_string(), "{key}");
        }
    }
}

#[test]
fn seed_examples_configure_the_deployment() {
    for helm in HELMS {
        let basic = helm.render(&["-f", &fixture("values-basic.yaml")]);
        let deployment = object(&basic, "Deployment", "karo");
        let container = karo_container(deployment);
        assert_eq!(container["image"], "docker.io/dudizimber/karo:0.1.0");
        assert_eq!(container["imagePullPolicy"], "IfNotPresent");
        assert_eq!(deployment["spec"]["replicas"], 1);
        assert_eq!(
            container["ports"],
            json!([
                {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                {"name": "webhook", "containerPort": 9443, "protocol": "TCP"},
            ])
        );
        let config = yaml(
            object(&basic, "ConfigMap", "karo")["data"]["config.yaml"]
                .as_str()
                .expect("config.yaml"),
        );
        assert_eq!(config["webhook"]["path"], "/webhook");
        assert_eq!(config["webhook"]["port"], 9443);
        assert_eq!(config["http"]["port"], 8080);

        let security_values = yaml(&read(fixture("values-security.yaml")));
        let security = helm.render(&["-f", &fixture("values-security.yaml")]);
        let deployment = object(&security, "Deployment", "karo");
        assert!(contains(
            &pod_spec(deployment)["securityContext"],
            &security_values["podSecurityContext"]
        ));
        assert!(contains(
            &karo_container(deployment)["securityContext"],
            &security_values["securityContext"]
        ));
        assert_eq!(
            karo_container(deployment)["resources"],
            security_values["resources"]
        );

        let advanced_values = yaml(&read(fixture("values-advanced.yaml")));
        let advanced = helm.render(&["-f", &fixture("values-advanced.yaml")]);
        let deployment = object(&advanced, "Deployment", "karo");
        let env = karo_container(deployment)["env"].as_array().expect("env");
        for var in advanced_values["env"].as_array().expect("env") {
            assert!(env.contains(var), "{var} not in {env:?}");
        }
        for key in ["nodeSelector", "tolerations", "affinity"] {
            assert_eq!(pod_spec(deployment)[key], advanced_values[key], "{key}");
        }

        let monitoring = helm.render(&["-f", &fixture("values-monitoring.yaml")]);
        let monitor = object(&monitoring, "ServiceMonitor", "karo");
        assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
        assert_eq!(
            monitor["metadata"]["labels"]["prometheus"],
            "kube-prometheus"
        );
        assert_eq!(
            monitor["spec"]["endpoints"],
            json!([{"port": "http", "path": "/metrics", "interval": "30s"}])
        );
        let service = object(&monitoring, "Service", "karo");
        assert!(contains(
            &service["metadata"]["labels"],
            &monitor["spec"]["selector"]["matchLabels"]
        ));
    }
}

#[test]
fn everything_on_renders_ingress_auth_named_tls_and_namespaced_rbac() {
    for helm in HELMS {
        let docs = helm.template(RELEASE, "monitoring", &["-f", &fixture("values-full.yaml")]);
        let docs = documents(&docs);

        let ingress = object(&docs, "Ingress", "karo");
        assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
        assert_eq!(
            ingress["spec"]["rules"],
            json!([{
                "host": "karo.example.com",
                "http": {"paths": [{
                    "path": "/webhook",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": "karo", "port": {"name": "http"}}},
                }]},
            }])
        );
        assert_eq!(
            ingress["spec"]["tls"],
            json!([{"hosts": ["karo.example.com"], "secretName": "karo-ingress-tls"}])
        );

        // TLS from the named Secret: nothing generated.
        assert!(docs
            .iter()
            .all(|d| d["metadata"]["name"] != "karo-webhook-tls"));
        let deployment = object(&docs, "Deployment", "karo");
        let volumes = pod_spec(deployment)["volumes"].as_array().expect("volumes");
        assert!(volumes
            .iter()
            .any(|v| v["secret"]["secretName"] == "karo-webhook-cert"));
        assert!(volumes
            .iter()
            .any(|v| v["secret"]["secretName"] == "karo-webhook-auth"
                && v["secret"]["items"] == json!([{"key": "password", "path": "password"}])));

        // Inline basic credentials land in a Secret, not in the ConfigMap.
        let auth = object(&docs, "Secret", "karo-webhook-auth");
        assert_eq!(auth["data"]["password"], "c2VjcmV0"); // "secret"
        let config_map = object(&docs, "ConfigMap", "karo");
        assert!(!config_map.to_string().contains("secret\""));

        let monitor = object(&docs, "ServiceMonitor", "karo");
        assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "15s");
        assert_eq!(monitor["spec"]["endpoints"][0]["scrapeTimeout"], "10s");

        // A namespace list: a Role and RoleBinding in each listed namespace, no
        // ClusterRole.
        assert!(of_kind(&docs, "ClusterRole").is_empty());
        assert!(of_kind(&docs, "ClusterRoleBinding").is_empty());
        let roles: Vec<&str> = of_kind(&docs, "Role")
            .iter()
            .map(|r| r["metadata"]["namespace"].as_str().expect("namespace"))
            .collect();
        assert_eq!(roles, ["team-a", "team-b"]);
        for binding in of_kind(&docs, "RoleBinding") {
            assert_eq!(
                binding["subjects"],
                json!([{"kind": "ServiceAccount", "name": "karo", "namespace": "monitoring"}])
            );
        }
    }
}

/// The Deployment changes (and the pods roll) only for the settings Karo cannot
/// reload: ports, TLS on/off and namespaces. Everything else reaches the running pods
/// through the mounted ConfigMap.
#[test]
fn only_settings_that_need_a_restart_roll_the_pods() {
    let deployment = |set: &[&str]| -> Value {
        let mut args = vec!["-s", "templates/deployment.yaml"];
        for s in set {
            args.extend(["--set", s]);
        }
        Helm::V3.render(&args).remove(0)
    };
    let checksum = |d: &Value| {
        d["spec"]["template"]["metadata"]["annotations"]["checksum/restart-settings"].clone()
    };
    let base = deployment(&[]);
    assert!(checksum(&base).is_string());
    for live in [
        "config.logLevel=debug",
        "config.dryRun=true",
        "config.jobDefaults.ttlSecondsAfterFinished=60",
        "config.limits.maxJobsPerMinute=10",
        "jobTemplate=apiVersion: batch/v1",
    ] {
        assert_eq!(deployment(&[live]), base, "{live} changed the Deployment");
    }
    for restart in [
        "config.namespaces={a}",
        "service.targetPort=8181",
        "webhook.port=9444",
        "webhook.tls.enabled=false",
    ] {
        assert_ne!(
            checksum(&deployment(&[restart])),
            checksum(&base),
            "{restart} must roll the pods"
        );
    }
}

// ---------------------------------------------------------------------------------
// The ConfigMap is Karo's config
// ---------------------------------------------------------------------------------

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

/// What `karo run --config <file>` makes of a config file.
fn load_config(text: &str) -> Config {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), text).expect("writing config");
    load_config_file(Some(file.path()), &Overrides::default())
        .unwrap_or_else(|e| panic!("karo rejects the config: {e}\n{text}"))
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
        // Namespaced RBAC in the listed namespaces.
        let roles: Vec<&str> = of_kind(&docs, "Role")
            .iter()
            .map(|r| r["metadata"]["namespace"].as_str().expect("namespace"))
            .collect();
        assert_eq!(roles, ["alpha", "beta"]);
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

// ---------------------------------------------------------------------------------
// NOTES.txt
// ---------------------------------------------------------------------------------

/// The receiver snippet NOTES.txt prints is a config Alertmanager accepts, with the
/// Service URL and the auth block.
#[tokio::test]
async fn notes_print_a_receiver_alertmanager_accepts() {
    // Helm 3 maps the objects against the API server even in a client-side dry run.
    install_servicemonitor_crd();
    let kubeconfig = ControlPlane::shared().kubeconfig().display().to_string();
    let dir = TestDir::new("notes").expect("temp dir");
    let cases = [
        ("values-full.yaml", "basic_auth:"),
        ("values-existing-secret.yaml", "type: Bearer"),
        ("values-basic.yaml", "url:"),
    ];
    for helm in HELMS {
        for (values, auth) in cases {
            let out = helm.must(&[
                "install",
                RELEASE,
                &chart(),
                "-n",
                "monitoring",
                "--dry-run=client",
                "--kubeconfig",
                &kubeconfig,
                "-f",
                &fixture(values),
            ]);
            let notes = out
                .split_once("NOTES:")
                .unwrap_or_else(|| panic!("no NOTES in {out}"))
                .1;
            // The seed's Alertmanager example, for `helm install my-operator -n monitoring`.
            assert!(
                notes.contains("- url: 'http://karo.monitoring.svc.cluster.local:8080/webhook'"),
                "{notes}"
            );
            assert!(notes.contains(auth), "{values}: {notes}");
            assert!(!notes.contains("password: 'secret'"), "{notes}");
            if values == "values-full.yaml" {
                assert!(notes.contains("username: 'alertmanager'"), "{notes}");
            }
            if values == "values-basic.yaml" {
                assert!(!notes.contains("    http_config:"), "{notes}");
            }
            let receivers: Vec<&str> = notes
                .lines()
                .skip_while(|l| *l != "receivers:")
                .take_while(|l| !l.trim().is_empty())
                .collect();
            assert!(!receivers.is_empty(), "{notes}");
            let config = format!("route:\n  receiver: karo\n{}\n", receivers.join("\n"));
            let file = dir.path().join(format!("{helm:?}-{values}"));
            std::fs::write(&file, &config).expect("writing alertmanager config");
            let mut amtool = Command::new(bins::amtool().expect("amtool"));
            amtool.arg("check-config").arg(&file);
            succeeded(
                &run_output(amtool, None).expect("running amtool"),
                &format!("amtool check-config on\n{config}"),
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// Against the API server
// ---------------------------------------------------------------------------------

/// The Prometheus Operator's ServiceMonitor CRD, reduced to what validation needs,
/// installed once into the shared control plane.
fn install_servicemonitor_crd() {
    static INSTALLED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    if *installed {
        return;
    }
    let cp = ControlPlane::shared();
    let manifest = read(fixture("servicemonitor-crd.yaml"));
    succeeded(
        &cp.kubectl_with_stdin(&["apply", "-f", "-"], Some(manifest.as_bytes())),
        "applying the ServiceMonitor CRD",
    );
    succeeded(
        &cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/servicemonitors.monitoring.coreos.com",
            "crd/prometheusrules.monitoring.coreos.com",
        ]),
        "waiting for the ServiceMonitor and PrometheusRule CRDs",
    );
    *installed = true;
}

#[tokio::test]
async fn rendered_manifests_are_accepted_by_the_api_server() {
    let cp = ControlPlane::shared();
    install_servicemonitor_crd();
    for helm in HELMS {
        for (name, mut args) in value_sets() {
            let ns = cp.namespace(&format!("render-{name}")).await;
            if name == "full" || name == "config" {
                let a = cp.namespace("team-a").await;
                let b = cp.namespace("team-b").await;
                args.extend(["--set".into(), format!("config.namespaces={{{a},{b}}}")]);
            }
            let mut all = vec!["--include-crds"];
            all.extend(strs(&args));
            let manifest = helm.template(RELEASE, &ns, &all);
            let docs = documents(&manifest);
            let out = cp.kubectl_with_stdin(
                &["apply", "--dry-run=server", "-f", "-"],
                Some(manifest.as_bytes()),
            );
            let stdout = succeeded(
                &out,
                &format!("{helm:?} {name}: kubectl apply --dry-run=server"),
            );
            let answered = stdout
                .lines()
                .filter(|l| l.contains("(server dry run)"))
                .count();
            assert_eq!(
                answered,
                docs.len(),
                "{helm:?} {name}: {stdout}\nobjects: {:?}",
                summary(&docs)
            );
        }
    }
}

/// `kubectl get <what> -o json` as admin.
fn get_json(cp: &ControlPlane, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend(["-o", "json"]);
    let out = succeeded(&cp.kubectl(&all), &format!("kubectl {}", all.join(" ")));
    serde_json::from_str(&out).expect("kubectl JSON")
}

/// The decoded data of a Secret.
async fn secret_data(cp: &ControlPlane, namespace: &str, name: &str) -> BTreeMap<String, Vec<u8>> {
    Api::<Secret>::namespaced(cp.client().await, namespace)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("Secret {namespace}/{name}: {e}"))
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, ByteString(v))| (k, v))
        .collect()
}

/// The chart's self-signed certificate chains to its CA and names the Service.
async fn check_generated_certificate(cp: &ControlPlane, namespace: &str) {
    let secret = secret_data(cp, namespace, "karo-webhook-tls").await;
    let dir = TestDir::new("cert").expect("temp dir");
    let (ca, crt) = (dir.path().join("ca.crt"), dir.path().join("tls.crt"));
    std::fs::write(&ca, &secret["ca.crt"]).expect("ca");
    std::fs::write(&crt, &secret["tls.crt"]).expect("crt");
    let openssl = bins::openssl().expect("openssl");
    let mut verify = Command::new(&openssl);
    verify.arg("verify").arg("-CAfile").arg(&ca).arg(&crt);
    succeeded(
        &run_output(verify, None).expect("openssl"),
        "openssl verify",
    );
    let mut text = Command::new(&openssl);
    text.args(["x509", "-noout", "-text", "-in"]).arg(&crt);
    let text = succeeded(&run_output(text, None).expect("openssl"), "openssl x509");
    for name in [
        format!("DNS:karo.{namespace}.svc"),
        format!("DNS:karo.{namespace}.svc.cluster.local"),
    ] {
        assert!(text.contains(&name), "{name} not in\n{text}");
    }
}

/// `helm install` as the README has it, with Helm 3 and Helm 4, on an API server of its
/// own so that the CRD comes from the chart's `crds/`.
#[tokio::test]
async fn helm_install_creates_the_crd_and_the_release_with_helm3_and_helm4() {
    let cp = ControlPlane::start().await.expect("control plane");
    let kubeconfig = cp.kubeconfig().display().to_string();
    let crd = "crd/alertreactions.karo.io";
    assert!(
        !cp.kubectl(&["get", crd]).status.success(),
        "a new API server has no CRD"
    );

    // helm install my-operator karo/karo -n monitoring --create-namespace
    let out = Helm::V3.must(&[
        "install",
        RELEASE,
        &chart(),
        "-n",
        "monitoring",
        "--create-namespace",
        "--kubeconfig",
        &kubeconfig,
    ]);
    assert!(out.contains("STATUS: deployed"), "{out}");
    assert!(
        out.contains("url: 'http://karo.monitoring.svc.cluster.local:8080/webhook'"),
        "{out}"
    );
    succeeded(
        &cp.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", crd]),
        "the chart's CRD",
    );
    for object in [
        "deployment/karo",
        "service/karo",
        "configmap/karo",
        "serviceaccount/karo",
        "secret/karo-webhook-tls",
    ] {
        succeeded(&cp.kubectl(&["get", "-n", "monitoring", object]), object);
    }
    succeeded(
        &cp.kubectl(&[
            "get",
            "clusterrole/karo-monitoring",
            "clusterrolebinding/karo-monitoring",
        ]),
        "cluster RBAC",
    );
    check_generated_certificate(&cp, "monitoring").await;
    let secret = secret_data(&cp, "monitoring", "karo-webhook-tls").await;

    // The release asset: `helm package`, then `helm install my-operator ./karo-0.1.0.tgz`
    // (into `default`), with Helm 4; the CRD exists already and is left alone.
    let dir = TestDir::new("package").expect("temp dir");
    let dest = dir.path().display().to_string();
    Helm::V4.must(&["package", &chart(), "-d", &dest]);
    let tgz = dir.path().join("karo-0.1.0.tgz").display().to_string();
    let out = Helm::V4.must(&["install", RELEASE, &tgz, "--kubeconfig", &kubeconfig]);
    assert!(
        out.contains("url: 'http://karo.default.svc.cluster.local:8080/webhook'"),
        "{out}"
    );
    succeeded(
        &cp.kubectl(&["get", "-n", "default", "deployment/karo"]),
        "Helm 4 release",
    );
    check_generated_certificate(&cp, "default").await;

    // An upgrade that changes a live setting keeps the certificate and the pods.
    let deployment_before = get_json(&cp, &["-n", "monitoring", "deployment/karo"]);
    let restart_checksum = |d: &Value| {
        d["spec"]["template"]["metadata"]["annotations"]["checksum/restart-settings"].clone()
    };
    // `helm upgrade` of the release in `monitoring`, with one value set.
    let upgrade = |helm: Helm, set: &str| {
        helm.must(&[
            "upgrade",
            RELEASE,
            &chart(),
            "-n",
            "monitoring",
            "--set",
            set,
            "--kubeconfig",
            &kubeconfig,
        ])
    };
    for helm in HELMS {
        upgrade(helm, "config.logLevel=debug");
        let after = secret_data(&cp, "monitoring", "karo-webhook-tls").await;
        assert_eq!(after, secret, "{helm:?} upgrade kept the certificate");
        let config = get_json(&cp, &["-n", "monitoring", "configmap/karo"]);
        assert!(config["data"]["config.yaml"]
            .as_str()
            .expect("config")
            .contains("logLevel: debug"));
        let deployment = get_json(&cp, &["-n", "monitoring", "deployment/karo"]);
        assert_eq!(
            restart_checksum(&deployment),
            restart_checksum(&deployment_before)
        );
    }

    // Watching only `monitoring`: a Role there instead of the ClusterRole, and the pods roll.
    upgrade(Helm::V3, "config.namespaces={monitoring}");
    assert!(!cp
        .kubectl(&["get", "clusterrole/karo-monitoring"])
        .status
        .success());
    succeeded(
        &cp.kubectl(&[
            "get",
            "-n",
            "monitoring",
            "role/karo-monitoring",
            "rolebinding/karo-monitoring",
        ]),
        "namespaced RBAC",
    );
    let deployment = get_json(&cp, &["-n", "monitoring", "deployment/karo"]);
    assert_ne!(
        restart_checksum(&deployment),
        restart_checksum(&deployment_before)
    );

    // Uninstall removes the release's objects; Helm never deletes CRDs (nor the
    // AlertReactions in them).
    Helm::V4.must(&["uninstall", RELEASE, "--kubeconfig", &kubeconfig]);
    assert!(!cp
        .kubectl(&["get", "clusterrole/karo-default"])
        .status
        .success());
    assert!(!cp
        .kubectl(&["get", "-n", "default", "deployment/karo"])
        .status
        .success());
    succeeded(&cp.kubectl(&["get", crd]), "the CRD after uninstall");
}

/// A bearer token of `namespace/name` from the TokenRequest API, in a kubeconfig.
async fn service_account_kubeconfig(
    cp: &ControlPlane,
    namespace: &str,
    name: &str,
    dir: &Path,
) -> PathBuf {
    let accounts: Api<ServiceAccount> = Api::namespaced(cp.client().await, namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = accounts
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"))
        .status
        .expect("token status")
        .token;
    let path = dir.join("kubeconfig");
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "karo-test", "cluster": {"server": cp.url(), "insecure-skip-tls-verify": true}}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "karo-test", "user": name, "namespace": namespace}}],
        "current-context": name,
    });
    std::fs::write(
        &path,
        serde_yaml::to_string(&config).expect("kubeconfig YAML"),
    )
    .expect("writing kubeconfig");
    path
}

/// `kubectl auth can-i <args>` for `user`: as admin impersonating it, and with its own
/// token; both must agree.
fn can_i(cp: &ControlPlane, own_kubeconfig: &Path, user: &str, args: &[&str]) -> bool {
    let answer = |out: Output| -> bool {
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        match stdout.as_str() {
            "yes" => true,
            "no" => false,
            _ => panic!(
                "kubectl auth can-i {}: {stdout} {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    };
    let mut impersonated = vec!["auth", "can-i"];
    impersonated.extend_from_slice(args);
    impersonated.extend(["--as", user]);
    let as_admin = answer(cp.kubectl(&impersonated));
    let mut own = Command::new(bins::kubectl().expect("kubectl"));
    own.arg("--kubeconfig")
        .arg(own_kubeconfig)
        .args(["auth", "can-i"])
        .args(args);
    let as_itself = answer(run_output(own, None).expect("running kubectl"));
    assert_eq!(
        as_admin, as_itself,
        "can-i {args:?}: impersonated vs own token"
    );
    as_admin
}

/// Checks `kubectl auth can-i` for `user` (with its own kubeconfig `own`) against a
/// table of one check a line: the expected answer, `yes` or `no`, then the arguments.
fn assert_permissions(cp: &ControlPlane, own: &Path, user: &str, table: &str) {
    for line in table.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut words = line.split_whitespace();
        let allowed = match words.next() {
            Some("yes") => true,
            Some("no") => false,
            _ => panic!("not `yes|no <arguments>`: {line}"),
        };
        let args: Vec<&str> = words.collect();
        assert_eq!(can_i(cp, own, user, &args), allowed, "can-i {args:?}");
    }
}

/// Karo as the chart deploys it, outside the cluster: the release's ConfigMap as its
/// config directory, the release's Secrets as its TLS and auth files, and the
/// ServiceAccount's token as its identity. Paths inside the pod (/etc/karo/...) become
/// paths in a temp dir through Karo's environment overrides.
struct ChartKaro {
    karo: KaroProcess,
    /// The ServiceAccount's own kubeconfig.
    kubeconfig: PathBuf,
    /// The HTTPS webhook port and the CA of its certificate, with TLS on.
    https: Option<(u16, Vec<u8>)>,
    _dir: TestDir,
}

async fn start_chart_karo(cp: &ControlPlane, namespace: &str) -> ChartKaro {
    let dir = TestDir::new("chart-karo").expect("temp dir");
    let kubeconfig = service_account_kubeconfig(cp, namespace, "karo", dir.path()).await;
    let config_map = Api::<ConfigMap>::namespaced(cp.client().await, namespace)
        .get("karo")
        .await
        .expect("the chart's ConfigMap");
    let data = config_map.data.expect("ConfigMap data");
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).expect("config dir");
    for (key, value) in &data {
        std::fs::write(config_dir.join(key), value).expect("writing ConfigMap key");
    }
    let config = load_config(&data["config.yaml"]);
    let write = |data: &BTreeMap<String, Vec<u8>>, key: &str, file: &str| {
        let path = dir.path().join(file);
        std::fs::write(&path, &data[key]).expect("writing a Secret's file");
        path.display().to_string()
    };
    let mut env: Vec<(String, String)> = vec![(
        "KARO_JOB_TEMPLATE_FILE".into(),
        config_dir.join("job.yaml").display().to_string(),
    )];
    let mut https = None;
    if config.webhook.tls.enabled {
        let tls = secret_data(cp, namespace, "karo-webhook-tls").await;
        env.push((
            "KARO_WEBHOOK__TLS__CERT_FILE".into(),
            write(&tls, "tls.crt", "tls.crt"),
        ));
        env.push((
            "KARO_WEBHOOK__TLS__KEY_FILE".into(),
            write(&tls, "tls.key", "tls.key"),
        ));
        let port = free_port();
        env.push(("KARO_WEBHOOK__PORT".into(), port.to_string()));
        https = Some((port, tls["ca.crt"].clone()));
    }
    if config.webhook.auth.kind == AuthType::Basic {
        let auth = secret_data(cp, namespace, "karo-webhook-auth").await;
        env.push((
            "KARO_WEBHOOK__AUTH__PASSWORD_FILE".into(),
            write(&auth, "password", "password"),
        ));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let config_file = config_dir.join("config.yaml").display().to_string();
    let karo = KaroProcess::start(&kubeconfig, &["--config", &config_file], &env)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    ChartKaro {
        karo,
        kubeconfig,
        https,
        _dir: dir,
    }
}

/// The README's troubleshooting request, for `alertname`.
fn minimal_notification(alertname: &str) -> Value {
    bare_alert(json!({"alertname": alertname}))
}

/// The README's AlertReaction (high-cpu-reaction, alert HighCPUUsage).
fn seed_reaction() -> String {
    read(repo_path("tests/fixtures/seed-jobtemplate.yaml"))
}

/// `helm install my-operator charts/karo -n <namespace> --skip-crds <args>`, into a
/// control plane whose CRD is installed already.
fn install_release(cp: &ControlPlane, helm: Helm, namespace: &str, args: &[&str]) {
    let chart = chart();
    let kubeconfig = cp.kubeconfig().display().to_string();
    let mut all = vec![
        "install",
        RELEASE,
        chart.as_str(),
        "-n",
        namespace,
        "--skip-crds",
        "--kubeconfig",
        kubeconfig.as_str(),
    ];
    all.extend_from_slice(args);
    helm.must(&all);
}

#[tokio::test]
async fn karo_with_the_charts_service_account_runs_the_alert_to_job_flow() {
    // The default install's Karo acts in every namespace: on a control plane of its
    // own, where no other test's reactions are.
    let reactions = Scenario::build("chart-reactions")
        .own_control_plane()
        .reaction(&seed_reaction())
        .create()
        .await;
    let cp = reactions.cp();
    let release_ns = cp.namespace("chart-release").await;
    install_release(cp, Helm::V3, &release_ns, &[]);

    let karo = start_chart_karo(cp, &release_ns).await;
    // The Ready condition is written through the status subresource.
    reactions.wait_ready("high-cpu-reaction", "True").await;
    let (code, body) = karo
        .karo
        .notify(&minimal_notification("HighCPUUsage"))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["created"], 1, "{body}");
    let jobs = reactions.wait_jobs(1).await;
    let job = jobs[0].metadata.name.clone().expect("job name");
    reactions.wait_trigger_count("high-cpu-reaction", 1).await;
    reactions.wait_event("Triggered", &job).await;

    // The default install's HTTPS webhook, with the chart's self-signed certificate,
    // verified against its CA under the Service's name.
    let (port, ca) = karo.https.clone().expect("TLS is on by default");
    let host = format!("karo.{release_ns}.svc");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA PEM"))
        .resolve(&host, std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .build()
        .expect("HTTPS client");
    let resp = client
        .post(format!("https://{host}:{port}/webhook"))
        .json(&minimal_notification("HighCPUUsage"))
        .send()
        .await
        .expect("posting over HTTPS");
    assert_eq!(resp.status().as_u16(), 200);
    // A request without `startsAt` is a new occurrence: a second Job.
    reactions.wait_jobs(2).await;
    reactions.wait_trigger_count("high-cpu-reaction", 2).await;

    // Least privilege: what Karo does, and not more.
    let user = format!("system:serviceaccount:{release_ns}:karo");
    let ns = reactions.ns.as_str();
    assert_permissions(
        cp,
        &karo.kubeconfig,
        &user,
        &format!(
            "
            yes watch alertreactions.karo.io --all-namespaces
            yes update alertreactions.karo.io --subresource=status -n {ns}
            yes create jobs.batch -n {ns}
            yes create events.events.k8s.io -n {ns}
            no list secrets --all-namespaces
            no get secrets -n {release_ns}
            no get secrets -n {ns}
            no create pods -n {ns}
            no create pods/exec -n {ns}
            no delete jobs.batch -n {ns}
            no update alertreactions.karo.io -n {ns}
            no create deployments.apps -n {ns}
            no create rolebindings.rbac.authorization.k8s.io -n {ns}
            no get configmaps -n {release_ns}
            "
        ),
    );
}

#[tokio::test]
async fn with_a_namespace_list_karo_acts_only_in_those_namespaces() {
    let reaction = seed_reaction().replace("HighCPUUsage", "ScopedAlert");
    let listed = Scenario::build("listed").reaction(&reaction).create().await;
    let unlisted = Scenario::build("unlisted")
        .reaction(&reaction)
        .create()
        .await;
    let cp = listed.cp();
    let release_ns = cp.namespace("chart-scoped").await;
    install_release(
        cp,
        Helm::V4,
        &release_ns,
        &[
            "--set",
            &format!("config.namespaces={{{}}}", listed.ns),
            "--set",
            "webhook.auth.type=basic,webhook.auth.username=alertmanager,webhook.auth.password=secret",
        ],
    );

    let karo = start_chart_karo(cp, &release_ns).await;
    listed.wait_ready("high-cpu-reaction", "True").await;
    // Basic auth from the chart's Secret: no credentials, no Job.
    let (code, body) = karo.karo.notify(&minimal_notification("ScopedAlert")).await;
    assert_eq!(code, 401, "{body}");
    let resp = reqwest::Client::new()
        .post(karo.karo.webhook())
        .basic_auth("alertmanager", Some("secret"))
        .json(&minimal_notification("ScopedAlert"))
        .send()
        .await
        .expect("posting to karo");
    let code = resp.status().as_u16();
    let body: Value = resp.json().await.expect("JSON summary");
    assert_eq!(code, 200, "{body}");
    // Only the reaction in the listed namespace is Karo's.
    assert_eq!(body["matched"], 1, "{body}");
    assert_eq!(body["created"], 1, "{body}");
    listed.wait_jobs(1).await;
    listed.wait_trigger_count("high-cpu-reaction", 1).await;
    assert!(unlisted.jobs().await.is_empty());

    let user = format!("system:serviceaccount:{release_ns}:karo");
    let (listed, unlisted) = (listed.ns.as_str(), unlisted.ns.as_str());
    assert_permissions(
        cp,
        &karo.kubeconfig,
        &user,
        &format!(
            "
            yes create jobs.batch -n {listed}
            yes watch alertreactions.karo.io -n {listed}
            no create jobs.batch -n {unlisted}
            no watch alertreactions.karo.io -n {unlisted}
            no create jobs.batch -n {release_ns}
            no list alertreactions.karo.io --all-namespaces
            no get secrets -n {listed}
            no create pods -n {listed}
            "
        ),
    );
}

// ---------------------------------------------------------------------------------
// Plain manifests
// ---------------------------------------------------------------------------------

fn plain_manifests() -> Vec<Value> {
    let mut docs = Vec::new();
    for dir in ["config/rbac", "config/manager"] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(repo_path(dir))
            .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        for file in files {
            docs.extend(documents(&read(file)));
        }
    }
    docs
}

/// config/rbac and config/manager are what the chart renders for release `karo` in
/// `karo-system` with TLS off (no Helm to generate a certificate) and a pinned image.
#[test]
fn plain_manifests_match_the_chart() {
    let plain = plain_manifests();
    let chart = documents(&Helm::V3.template(
        "karo",
        "karo-system",
        &[
            "--set",
            "image.tag=0.1.0",
            "--set",
            "webhook.tls.enabled=false",
        ],
    ));
    assert_eq!(of_kind(&plain, "Namespace").len(), 1);
    let plain_role = of_kind(&plain, "ClusterRole")[0];
    assert_eq!(
        plain_role["rules"],
        of_kind(&chart, "ClusterRole")[0]["rules"]
    );
    let plain_binding = of_kind(&plain, "ClusterRoleBinding")[0];
    assert_eq!(
        plain_binding["subjects"],
        of_kind(&chart, "ClusterRoleBinding")[0]["subjects"]
    );
    assert_eq!(
        plain_binding["roleRef"]["name"],
        plain_role["metadata"]["name"]
    );
    let account = object(&plain, "ServiceAccount", "karo");
    assert_eq!(account["metadata"]["namespace"], "karo-system");
    object(&chart, "ServiceAccount", "karo");

    let plain_deployment = object(&plain, "Deployment", "karo");
    let chart_deployment = object(&chart, "Deployment", "karo");
    assert_eq!(pod_spec(plain_deployment), pod_spec(chart_deployment));
    assert_eq!(
        plain_deployment["spec"]["selector"],
        chart_deployment["spec"]["selector"]
    );
    assert!(contains(
        &plain_deployment["spec"]["template"]["metadata"]["labels"],
        &plain_deployment["spec"]["selector"]["matchLabels"]
    ));
    assert_eq!(
        object(&plain, "Service", "karo")["spec"],
        object(&chart, "Service", "karo")["spec"]
    );

    let config_of = |docs: &[Value]| {
        load_config(
            object(docs, "ConfigMap", "karo")["data"]["config.yaml"]
                .as_str()
                .expect("config.yaml"),
        )
    };
    let mut chart_config = config_of(&chart);
    // The chart ships the built-in skeleton as a file; the plain manifests use the
    // built-in one directly.
    chart_config.job_template_file = None;
    assert_eq!(config_of(&plain), chart_config);
    assert_eq!(config_of(&plain), Config::default());
}

/// The README's command for users without Helm works, and the ServiceAccount it binds
/// has the chart's permissions.
#[tokio::test]
async fn plain_manifests_apply_and_grant_least_privilege() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let dirs = ["config/crd/", "config/rbac/", "config/manager/"]
        .map(|d| repo_path(d).display().to_string());
    succeeded(
        &cp.kubectl(&["apply", "-f", &dirs[0], "-f", &dirs[1], "-f", &dirs[2]]),
        "kubectl apply -f config/crd/ -f config/rbac/ -f config/manager/",
    );
    for object in [
        "deployment/karo",
        "service/karo",
        "configmap/karo",
        "serviceaccount/karo",
    ] {
        succeeded(&cp.kubectl(&["get", "-n", "karo-system", object]), object);
    }
    let dir = TestDir::new("plain").expect("temp dir");
    let own = service_account_kubeconfig(cp, "karo-system", "karo", dir.path()).await;
    assert_permissions(
        cp,
        &own,
        "system:serviceaccount:karo-system:karo",
        "
        yes create jobs.batch -n default
        yes list alertreactions.karo.io --all-namespaces
        yes patch alertreactions.karo.io --subresource=status -n default
        no list secrets --all-namespaces
        no create pods -n default
        ",
    );
}

// ---------------------------------------------------------------------------------
// Alerts on Karo and its dashboard
// ---------------------------------------------------------------------------------

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
    assert!(out.contains("SUCCESS: 6 rules found"), "{out}");
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
