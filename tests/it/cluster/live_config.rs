//! Live configuration through the real kubelet: `helm upgrade` changes the chart's
//! ConfigMap, the kubelet updates the mounted volume, and Karo applies the new
//! configuration without a restart (its reload metric and log say so).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::json;

use super::{
    create_reaction, helm, job_created, karo_in_namespace, karo_pod, notify, restarts, runs_of,
    POD_GUARD,
};
use crate::support::cluster::Cluster;
use crate::support::files::repo_path;
use crate::support::ready::wait_for;
use crate::support::webhook::{firing, metric};

const REACTION: &str = r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {name: live}
spec:
  alertName: Live
  actions:
    - name: echo
      image: IMAGE
      command: ["echo", "{{labels.step}}"]
"#;

/// Successful reloads so far, from Karo's metrics.
async fn reloads(url: &str) -> f64 {
    metric(url, "karo_config_reloads_total{result=\"success\"}").await
}

/// `helm upgrade` of the release with one more `--set`; waits until Karo has
/// reloaded once more.
async fn upgrade(ns: &str, url: &str, set: &str) {
    let before = reloads(url).await;
    let chart = repo_path("charts/karo").display().to_string();
    helm(
        Cluster::get(),
        &[
            "upgrade",
            "karo",
            &chart,
            "-n",
            ns,
            "--reuse-values",
            "--set",
            set,
        ],
    );
    wait_for(POD_GUARD, || async {
        (reloads(url).await > before).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("Karo did not reload after --set {set}: {e}"));
}

#[tokio::test]
async fn helm_upgrade_reaches_karo_through_the_kubelet_without_a_restart() {
    let (ns, url) = karo_in_namespace("live", &[]).await;
    let cluster = Cluster::get();
    let client = cluster.client().await;
    let pod = karo_pod(&client, &ns).await;
    let pod_name = pod.metadata.name.expect("pod name");
    create_reaction(&ns, REACTION).await;
    let alert = |step: &str| {
        firing(
            [json!({"alertname": "Live", "step": step})],
            &format!("2026-06-01T00:0{}:00Z", step.len()),
        )
    };

    // A jobDefaults value: the next Job carries it.
    upgrade(&ns, &url, "config.jobDefaults.ttlSecondsAfterFinished=77").await;
    let body = notify(&url, &alert("one")).await;
    assert_eq!(body["created"], 1, "{body}");
    // The elected replica creates the Run's Job after the webhook answered.
    let name = body["jobs"][0].as_str().expect("a Job name").to_string();
    let job = job_created(&ns, &name).await;
    assert_eq!(
        job.spec.and_then(|s| s.ttl_seconds_after_finished),
        Some(77)
    );

    // dryRun: the next alert creates nothing.
    upgrade(&ns, &url, "config.dryRun=true").await;
    let body = notify(&url, &alert("three")).await;
    assert_eq!(
        (body["created"].clone(), body["dryRun"].clone()),
        (json!(0), json!(1)),
        "{body}"
    );
    // The dry run is recorded in a Run of its own, which creates no Job.
    assert_eq!(runs_of(&ns, "live").await.len(), 2);

    // The same pod all along, never restarted; its log tells of the reloads.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let listed = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=karo"))
        .await
        .expect("Karo's pods");
    assert_eq!(listed.items.len(), 1);
    let pod = &listed.items[0];
    assert_eq!(pod.metadata.name.as_deref(), Some(pod_name.as_str()));
    assert_eq!(restarts(&ns).await, 0);
    let log = cluster.kubectl_ok(&["-n", &ns, "logs", &pod_name]);
    assert!(log.contains("configuration reloaded"), "{log}");
}
