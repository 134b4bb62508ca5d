//! The Helm chart (`charts/karo`) with the real Helm 3.17 and Helm 4.1, against a real
//! kube-apiserver, and the plain manifests in `config/rbac` and `config/manager`, kept
//! in sync with the chart. By concern:
//!
//! - `values`: values.yaml, values.schema.json and the README's parameter tables agree;
//!   wrong values fail; `helm lint` is clean.
//! - `rendering`: what the templates render for the README's commands and examples, and
//!   which settings roll the pods.
//! - `config_map`: the rendered ConfigMap is a config Karo loads, with the values set.
//! - `rbac`: the rules rendered in the cluster-wide and the namespaced form, and the
//!   leader-election Role for the Lease the rendered config names.
//! - `install`: the rendering accepted by the API server, the NOTES' receiver accepted by
//!   Alertmanager, and `helm install`, `upgrade` and `uninstall` with both Helm versions.
//! - `service_account`: Karo running with the release's ServiceAccount, RBAC, ConfigMap
//!   and Secrets: the alert-to-Job flow, and no more permissions than it needs.
//! - `plain_manifests`: `config/rbac` and `config/manager` match the chart and apply.
//! - `monitoring`: the PrometheusRule and the Grafana dashboard use Karo's metrics.
//!
//! Here: the helpers they share (Helm, the rendered objects, Karo's config, the
//! ServiceAccount's token and permissions).

mod config_map;
mod install;
mod monitoring;
mod plain_manifests;
mod rbac;
mod rendering;
mod service_account;
mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

use crate::support::bins;
use crate::support::files::{documents, repo_path, succeeded};
use crate::support::karo_lib::{load_config_file, Config, Overrides};
use crate::support::process::run_output;
use crate::support::{ControlPlane, TestDir};

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

/// What `karo run --config <file>` makes of a config file.
fn load_config(text: &str) -> Config {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), text).expect("writing config");
    load_config_file(Some(file.path()), &Overrides::default())
        .unwrap_or_else(|e| panic!("karo rejects the config: {e}\n{text}"))
}

/// The chart's AlertReactionRun CRD (`crds/`), for a release installed with
/// `--skip-crds` into a control plane that has the AlertReaction CRD already:
/// `kubectl auth can-i` resolves `alertreactionruns.karo.io` only once it is served.
fn install_run_crd(cp: &ControlPlane) {
    let file = repo_path("charts/karo/crds/karo.io_alertreactionruns.yaml")
        .display()
        .to_string();
    succeeded(
        &cp.kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=karo-tests",
            "-f",
            &file,
        ]),
        "applying the chart's AlertReactionRun CRD",
    );
    succeeded(
        &cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/alertreactionruns.karo.io",
        ]),
        "waiting for the AlertReactionRun CRD",
    );
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
