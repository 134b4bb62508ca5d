//! The plain manifests in `config/rbac` and `config/manager`, for users without Helm:
//! they are what the chart renders, and they apply and grant the chart's permissions.

use std::path::PathBuf;

use serde_json::Value;

use super::{
    assert_permissions, contains, load_config, object, of_kind, pod_spec,
    service_account_kubeconfig, Helm,
};
use crate::support::files::{documents, read, repo_path, succeeded};
use crate::support::karo_lib::Config;
use crate::support::{ControlPlane, TestDir};

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
    // Leader election: the same Role for the same Lease, in karo-system.
    let plain_lease_role = object(&plain, "Role", "karo-leader-election");
    let chart_lease_role = object(&chart, "Role", "karo-leader-election");
    assert_eq!(plain_lease_role["metadata"]["namespace"], "karo-system");
    assert_eq!(plain_lease_role["rules"], chart_lease_role["rules"]);
    let plain_lease_binding = object(&plain, "RoleBinding", "karo-leader-election");
    let chart_lease_binding = object(&chart, "RoleBinding", "karo-leader-election");
    assert_eq!(plain_lease_binding["metadata"]["namespace"], "karo-system");
    for key in ["roleRef", "subjects"] {
        assert_eq!(plain_lease_binding[key], chart_lease_binding[key], "{key}");
    }
    assert_eq!(of_kind(&plain, "Role").len(), of_kind(&chart, "Role").len());
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
        yes delete jobs.batch -n default
        yes list alertreactions.karo.io --all-namespaces
        yes patch alertreactions.karo.io --subresource=status -n default
        yes create alertreactionruns.karo.io -n default
        yes patch alertreactionruns.karo.io --subresource=status -n default
        yes get pods --subresource=log -n default
        yes create leases.coordination.k8s.io -n karo-system
        yes update leases.coordination.k8s.io/karo -n karo-system
        no update leases.coordination.k8s.io/other -n karo-system
        no create leases.coordination.k8s.io -n default
        no list secrets --all-namespaces
        no create pods -n default
        ",
    );
}
