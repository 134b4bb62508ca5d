//! Karo as the chart deploys it, with the release's ServiceAccount token, ConfigMap and
//! Secrets: the alert-to-Job flow over the default HTTPS webhook, basic auth from the
//! chart's Secret, a namespace list that limits where Karo acts, and RBAC that grants
//! what Karo does (Runs, Jobs, pods' logs, its own Lease) and not more.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use serde_json::{json, Value};

use super::{
    assert_permissions, chart, install_run_crd, load_config, secret_data,
    service_account_kubeconfig, Helm, RELEASE,
};
use crate::support::files::{read, repo_path};
use crate::support::karo_lib::AuthType;
use crate::support::karo_process::KaroProcess;
use crate::support::scenario::Scenario;
use crate::support::webhook::bare_alert;
use crate::support::{free_port, ControlPlane, TestDir};

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
    let mut env: Vec<(String, String)> = vec![
        (
            "KARO_JOB_TEMPLATE_FILE".into(),
            config_dir.join("job.yaml").display().to_string(),
        ),
        // As the Deployment sets it: the namespace of Karo's Lease, where the chart's
        // leader-election Role is.
        ("POD_NAMESPACE".into(), namespace.to_string()),
    ];
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
/// control plane whose AlertReaction CRD is installed already (the AlertReactionRun
/// CRD is installed here).
fn install_release(cp: &ControlPlane, helm: Helm, namespace: &str, args: &[&str]) {
    install_run_crd(cp);
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
            yes create alertreactionruns.karo.io -n {ns}
            yes watch alertreactionruns.karo.io --all-namespaces
            yes delete alertreactionruns.karo.io -n {ns}
            yes patch alertreactionruns.karo.io --subresource=status -n {ns}
            yes create jobs.batch -n {ns}
            yes watch jobs.batch --all-namespaces
            yes delete jobs.batch -n {ns}
            yes list pods -n {ns}
            yes get pods --subresource=log -n {ns}
            yes create events.events.k8s.io -n {ns}
            yes create leases.coordination.k8s.io -n {release_ns}
            yes get leases.coordination.k8s.io/karo -n {release_ns}
            yes update leases.coordination.k8s.io/karo -n {release_ns}
            no get leases.coordination.k8s.io/kube-controller-manager -n {release_ns}
            no update leases.coordination.k8s.io/other -n {release_ns}
            no list leases.coordination.k8s.io -n {release_ns}
            no create leases.coordination.k8s.io -n {ns}
            no get leases.coordination.k8s.io/karo -n {ns}
            no list secrets --all-namespaces
            no get secrets -n {release_ns}
            no get secrets -n {ns}
            no create pods -n {ns}
            no delete pods -n {ns}
            no create pods/exec -n {ns}
            no update jobs.batch -n {ns}
            no delete alertreactions.karo.io -n {ns}
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
            yes create alertreactionruns.karo.io -n {listed}
            yes update alertreactionruns.karo.io --subresource=status -n {listed}
            yes get pods --subresource=log -n {listed}
            yes create leases.coordination.k8s.io -n {release_ns}
            yes patch leases.coordination.k8s.io/karo -n {release_ns}
            no create jobs.batch -n {unlisted}
            no watch alertreactions.karo.io -n {unlisted}
            no create alertreactionruns.karo.io -n {unlisted}
            no get pods --subresource=log -n {unlisted}
            no create jobs.batch -n {release_ns}
            no watch alertreactionruns.karo.io -n {release_ns}
            no list alertreactions.karo.io --all-namespaces
            no list alertreactionruns.karo.io --all-namespaces
            no create leases.coordination.k8s.io -n {listed}
            no get secrets -n {listed}
            no create pods -n {listed}
            "
        ),
    );
}
