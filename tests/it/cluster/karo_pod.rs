//! The chart installed with Helm, Karo running as a pod from its own image with its
//! ServiceAccount and both CRDs, a real Alertmanager delivering to Karo's Service, and
//! the Job of the alert's Run running its pod to completion.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;

use super::{
    create_reaction, helm_install, karo_pod, restarts, runs_of, service_url, succeeded_job,
    wait_run_phase, POD_GUARD,
};
use crate::support::alertmanager::{Alertmanager, AlertmanagerConfig};
use crate::support::cluster::{karo_image, Cluster};
use crate::support::karo_lib::RunPhase;
use crate::support::ready::wait_until;

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

    // The chart's crds/: both CRDs are there and served.
    for crd in ["alertreactions.karo.io", "alertreactionruns.karo.io"] {
        wait_until(POD_GUARD, || async {
            Api::<CustomResourceDefinition>::all(client.clone())
                .get(crd)
                .await
                .ok()
                .and_then(|c| c.status?.conditions)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
        })
        .await
        .unwrap_or_else(|e| panic!("CRD {crd} not established after helm install: {e}"));
    }

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
    create_reaction(&ns, REACTION).await;
    let url = service_url(&client, &ns).await;
    let am = Alertmanager::start(&AlertmanagerConfig::webhook(&format!("{url}/webhook"))).await;
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
    let job = succeeded_job(&ns, "disk-cleanup-clean-").await;
    let name = job.metadata.name.clone().expect("Job name");
    let job_logs = cluster.kubectl_ok(&["-n", &ns, "logs", &format!("job/{name}")]);
    assert_eq!(job_logs.trim(), "cleaning /var on node-7");

    // It is the Job of the alert's Run, which owns it and recorded its success.
    let runs = runs_of(&ns, "disk-cleanup").await;
    assert_eq!(runs.len(), 1);
    let run = runs[0].metadata.name.clone().expect("Run name");
    let owner = &job.metadata.owner_references.as_ref().expect("an owner")[0];
    assert_eq!(
        (owner.kind.as_str(), &owner.name),
        ("AlertReactionRun", &run)
    );
    let done = wait_run_phase(&ns, &run, RunPhase::Succeeded).await;
    let status = done.status.expect("the Run's status");
    assert_eq!(status.jobs.len(), 1);
    assert_eq!(status.jobs[0].name, name);

    // Karo itself never restarted meanwhile.
    assert_eq!(restarts(&ns).await, 0);
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
