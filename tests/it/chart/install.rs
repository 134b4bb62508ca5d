//! The chart against the API server: the receiver the NOTES print (from a dry-run
//! install) is a config Alertmanager accepts; every value set renders objects the API
//! server accepts; `helm install`, `upgrade` and `uninstall` with Helm 3 and Helm 4
//! create the CRDs and the release, keep the generated certificate, and roll the pods
//! only when they must.

use std::process::Command;

use serde_json::Value;

use super::{chart, fixture, secret_data, strs, summary, value_sets, Helm, HELMS, RELEASE};
use crate::support::bins;
use crate::support::files::{documents, read, succeeded};
use crate::support::process::run_output;
use crate::support::{ControlPlane, TestDir};

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
    let runs_crd = "crd/alertreactionruns.karo.io";
    succeeded(
        &cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            crd,
            runs_crd,
        ]),
        "the chart's CRDs",
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
    succeeded(
        &cp.kubectl(&[
            "get",
            "-n",
            "monitoring",
            "role/karo-leader-election",
            "rolebinding/karo-leader-election",
        ]),
        "the leader-election Role",
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
            "role/karo-leader-election",
            "rolebinding/karo-leader-election",
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
    succeeded(
        &cp.kubectl(&["get", crd, runs_crd]),
        "the CRDs after uninstall",
    );
}
