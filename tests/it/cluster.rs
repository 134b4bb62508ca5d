//! On the real single-node cluster (`tests/platform/cluster`): the chart installed
//! with Helm, Karo running as a pod from its own image with its ServiceAccount, a
//! real Alertmanager delivering to Karo's Service, and the Job Karo creates running
//! its pod to completion.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, PostParams};

use crate::support::alertmanager::{Alertmanager, AlertmanagerConfig};
use crate::support::bins;
use crate::support::cluster::{karo_image, Cluster, TOOLS_IMAGE};
use crate::support::files::{repo_path, succeeded};
use crate::support::karo_lib::AlertReaction;
use crate::support::process::run_output;
use crate::support::ready::{wait_for, wait_until};

/// Pods start in seconds here; this only guards against a hang.
const POD_GUARD: Duration = Duration::from_secs(180);

/// `helm install karo charts/karo` into `namespace` on the cluster, with Karo's
/// image as `make image` tags it.
fn helm_install(cluster: &Cluster, namespace: &str, extra: &[&str]) {
    let image = karo_image();
    let (repository, tag) = image.rsplit_once(':').expect("image reference with a tag");
    let mut cmd = Command::new(bins::helm3().expect("helm 3"));
    cmd.args(["install", "karo"])
        .arg(repo_path("charts/karo"))
        .args(["--namespace", namespace, "--kubeconfig"])
        .arg(cluster.kubeconfig())
        .args(["--set", &format!("image.repository={repository}")])
        .args(["--set", &format!("image.tag={tag}")])
        .args(["--set", "image.pullPolicy=Never"])
        .args(extra)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("karo-helm/cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("karo-helm/config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("karo-helm/data"),
        )
        .env_remove("KUBECONFIG");
    succeeded(
        &run_output(cmd, None).expect("running helm"),
        "helm install",
    );
}

/// Waits until the Deployment's pod is Ready; returns it.
async fn karo_pod(client: &kube::Client, namespace: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    wait_for(POD_GUARD, || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/name=karo"))
                .await
                .ok()?;
            list.items.into_iter().find(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
        }
    })
    .await
    .unwrap_or_else(|e| panic!("Karo's pod in {namespace} is not Ready: {e}"))
}

const REACTION: &str = r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {name: disk-cleanup}
spec:
  alertName: DiskFull
  actions:
    - name: clean
      image: IMAGE
      command: ["sh", "-c", "echo cleaning {{labels.mountpoint}} on {{labels.instance}}"]
"#;

#[tokio::test]
async fn karo_in_a_pod_from_its_image_runs_the_job_of_an_alert() {
    let cluster = Cluster::get();
    cluster.import_karo_image();
    let ns = cluster.namespace("karo-pod").await;
    let client = cluster.client().await;
    helm_install(cluster, &ns, &[]);

    // Karo runs from its image, with the chart's security settings, and its
    // in-cluster configuration works: the watch syncs and /readyz passes.
    let pod = karo_pod(&client, &ns).await;
    let spec = pod.spec.as_ref().expect("pod spec");
    assert_eq!(spec.service_account_name.as_deref(), Some("karo"));
    let container = &spec.containers[0];
    assert_eq!(container.image.as_deref(), Some(karo_image().as_str()));
    let security = container
        .security_context
        .as_ref()
        .expect("securityContext");
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.run_as_user, Some(65532));
    let pod_name = pod.metadata.name.clone().expect("pod name");
    let logs = cluster.kubectl_ok(&["-n", &ns, "logs", &pod_name]);
    assert!(logs.contains("AlertReaction cache synced"), "{logs}");

    // A reaction in Karo's namespace, and a real Alertmanager sending to the Service.
    let mut reaction: AlertReaction =
        serde_yaml::from_str(&REACTION.replace("IMAGE", TOOLS_IMAGE)).expect("reaction");
    reaction.metadata.namespace = Some(ns.clone());
    Api::<AlertReaction>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &reaction)
        .await
        .expect("creating the AlertReaction");
    let service = Api::<Service>::namespaced(client.clone(), &ns)
        .get("karo")
        .await
        .expect("Karo's Service");
    let cluster_ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("a ClusterIP");
    let am = Alertmanager::start(&AlertmanagerConfig::webhook(&format!(
        "http://{cluster_ip}:8080/webhook"
    )))
    .await;
    am.fire(
        &[
            ("alertname", "DiskFull"),
            ("instance", "node-7"),
            ("mountpoint", "/var"),
        ],
        &[],
    )
    .await;

    // The Job runs to completion on the node, and its log is the rendered command.
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let job = wait_for(POD_GUARD, || {
        let jobs = jobs.clone();
        async move {
            let list = jobs.list(&ListParams::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|j| j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) >= 1)
        }
    })
    .await
    .unwrap_or_else(|e| {
        let pods = cluster.kubectl(&["-n", &ns, "get", "jobs,pods", "-o", "wide"]);
        panic!(
            "no Job completed: {e}\n{}\n{}",
            String::from_utf8_lossy(&pods.stdout),
            cluster.kubectl_ok(&["-n", &ns, "logs", &pod_name])
        )
    });
    let name = job.metadata.name.clone().expect("Job name");
    assert!(name.starts_with("disk-cleanup-clean-"), "{name}");
    let job_logs = cluster.kubectl_ok(&["-n", &ns, "logs", &format!("job/{name}")]);
    assert_eq!(job_logs.trim(), "cleaning /var on node-7");

    // Karo itself never restarted meanwhile.
    let pod = Api::<Pod>::namespaced(client.clone(), &ns)
        .get(&pod_name)
        .await
        .expect("Karo's pod");
    let restarts = pod
        .status
        .and_then(|s| s.container_statuses)
        .map(|cs| cs.iter().map(|c| c.restart_count).sum::<i32>());
    assert_eq!(restarts, Some(0));
    wait_until(Duration::from_secs(30), || async {
        Api::<Deployment>::namespaced(client.clone(), &ns)
            .get("karo")
            .await
            .ok()
            .and_then(|d| d.status)
            .and_then(|s| s.available_replicas)
            == Some(1)
    })
    .await
    .expect("the Deployment is available");
}
