//! A remediation that acts: the restart-deployment example, its Job running
//! `kubectl rollout restart` as the ServiceAccount of the example's RBAC, restarts a
//! Deployment; the Deployment controller rolls out a new ReplicaSet.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use super::{create_reaction, karo_in_namespace, notify, succeeded_job, POD_GUARD};
use crate::support::cluster::{Cluster, TOOLS_IMAGE};
use crate::support::files::{read, repo_path};
use crate::support::ready::wait_for;
use crate::support::webhook::firing;

async fn replica_sets(api: &Api<ReplicaSet>) -> usize {
    api.list(&ListParams::default().labels("app=web"))
        .await
        .map(|l| l.items.len())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_restart_example_restarts_a_deployment() {
    let (ns, url) = karo_in_namespace("restart", &[]).await;
    let cluster = Cluster::get();
    let client = cluster.client().await;

    let web: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web", "image": TOOLS_IMAGE, "command": ["sleep", "3600"]
                }]}
            }
        }
    }))
    .expect("Deployment");
    Api::<Deployment>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &web)
        .await
        .expect("creating the Deployment");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    wait_for(POD_GUARD, || async {
        (replica_sets(&sets).await == 1).then_some(())
    })
    .await
    .expect("the Deployment's first ReplicaSet");

    // The example as published, with the image of this cluster, and its RBAC.
    let rbac = repo_path("examples/restart-deployment-rbac.yaml");
    cluster.kubectl_ok(&["-n", &ns, "apply", "-f", &rbac.display().to_string()]);
    let example = read(repo_path("examples/restart-deployment.yaml"))
        .replace("bitnami/kubectl:1.30", "IMAGE");
    create_reaction(&ns, &example).await;

    let body = notify(
        &url,
        &firing(
            [json!({
                "alertname": "KubeDeploymentReplicasMismatch",
                "deployment": "web",
                "namespace": ns,
            })],
            "2026-06-01T00:00:00Z",
        ),
    )
    .await;
    assert_eq!(body["created"], 1, "{body}");

    let job = succeeded_job(&ns, "restart-deployment-restart-").await;
    let name = job.metadata.name.expect("Job name");
    let log = cluster.kubectl_ok(&["-n", &ns, "logs", &format!("job/{name}")]);
    assert!(log.contains("deployment.apps/web restarted"), "{log}");
    wait_for(POD_GUARD, || async {
        (replica_sets(&sets).await == 2).then_some(())
    })
    .await
    .expect("a new ReplicaSet after the restart");
}
