//! Credentials rotated through the real kubelet, and two replicas behind one
//! Service.
//!
//! - The basic-auth password Secret changed: once the kubelet has updated the
//!   mounted file, the new password is accepted and the old one refused, with no
//!   restart.
//! - `replicaCount: 2`: the same notification delivered several times through the
//!   Service (kube-proxy spreads the connections) creates each Run once, and the
//!   elected replica each Job once.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::ByteString;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{json, Value};

use super::{
    create_reaction, karo_in_namespace, pod_ready, restarts, runs_of, wait_run_phase, POD_GUARD,
};
use crate::support::cluster::Cluster;
use crate::support::karo_lib::RunPhase;
use crate::support::ready::{wait_for, wait_until};
use crate::support::webhook::{firing, post_json};

const REACTION: &str = r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {name: echo}
spec:
  alertName: Echo
  actions:
    - name: echo
      image: IMAGE
      command: ["echo", "{{labels.n}}"]
"#;

/// The status of a webhook POST with basic auth as `password`.
async fn post_as(url: &str, password: &str, body: &Value) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/webhook"))
        .basic_auth("alertmanager", Some(password))
        .json(body)
        .send()
        .await
        .expect("POST /webhook")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_rotated_password_is_accepted_and_the_old_one_refused_without_a_restart() {
    let (ns, url) = karo_in_namespace(
        "rotate",
        &[
            "--set",
            "webhook.auth.type=basic",
            "--set",
            "webhook.auth.username=alertmanager",
            "--set",
            "webhook.auth.password=first-password",
        ],
    )
    .await;
    create_reaction(&ns, REACTION).await;
    let body = firing(
        [json!({"alertname": "Echo", "n": "1"})],
        "2026-06-01T00:00:00Z",
    );
    assert_eq!(post_as(&url, "first-password", &body).await, 200);
    assert_eq!(post_as(&url, "second-password", &body).await, 401);

    let secrets: Api<Secret> = Api::namespaced(Cluster::get().client().await, &ns);
    let rotated = json!({"data": {"password": ByteString(b"second-password".to_vec())}});
    secrets
        .patch(
            "karo-webhook-auth",
            &PatchParams::default(),
            &Patch::Merge(&rotated),
        )
        .await
        .expect("rotating the password");
    wait_until(POD_GUARD, || async {
        post_as(&url, "second-password", &body).await == 200
    })
    .await
    .expect("the new password accepted once the kubelet updated the file");
    assert_eq!(post_as(&url, "first-password", &body).await, 401);
    assert_eq!(restarts(&ns).await, 0);
}

#[tokio::test]
async fn two_replicas_behind_the_service_create_each_job_once() {
    let (ns, url) = karo_in_namespace("replicas", &["--set", "replicaCount=2"]).await;
    let pods: Api<Pod> = Api::namespaced(Cluster::get().client().await, &ns);
    wait_until(POD_GUARD, || async {
        pods.list(&ListParams::default().labels("app.kubernetes.io/name=karo"))
            .await
            .is_ok_and(|l| l.items.iter().filter(|p| pod_ready(p)).count() == 2)
    })
    .await
    .expect("two Ready replicas");
    create_reaction(&ns, REACTION).await;
    // Both replicas see the reaction before the deliveries.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let notification = firing(
        (1..=3).map(|n| json!({"alertname": "Echo", "n": n.to_string()})),
        "2026-06-01T00:00:00Z",
    );
    let hook = format!("{url}/webhook");
    let deliveries = (0..6).map(|_| post_json(&hook, &notification));
    let answers = futures::future::join_all(deliveries).await;
    let (mut created, mut deduplicated) = (0, 0);
    for (code, body) in &answers {
        assert_eq!(*code, 200, "{body}");
        created += body["created"].as_u64().unwrap_or(0);
        deduplicated += body["deduplicated"].as_u64().unwrap_or(0);
    }
    // Each occurrence has one Run, whichever replica created it; the other
    // deliveries found it.
    assert_eq!((created, deduplicated), (3, 15), "{answers:?}");
    assert_eq!(runs_of(&ns, "echo").await.len(), 3);

    // The elected replica creates the Runs' Jobs: three, never more.
    let jobs: Api<Job> = Api::namespaced(Cluster::get().client().await, &ns);
    let names: BTreeSet<String> = wait_for(POD_GUARD, || async {
        let names: BTreeSet<String> = jobs
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .collect();
        assert!(names.len() <= 3, "{names:?}");
        (names.len() == 3).then_some(names)
    })
    .await
    .expect("the three Jobs");
    for run in runs_of(&ns, "echo").await {
        let run_name = run.metadata.name.clone().expect("Run name");
        let done = wait_run_phase(&ns, &run_name, RunPhase::Succeeded).await;
        let status = done.status.expect("the Run's status");
        assert_eq!(status.jobs.len(), 1);
        assert!(names.contains(&status.jobs[0].name), "{names:?}");
    }
    assert_eq!(
        jobs.list(&ListParams::default())
            .await
            .expect("Jobs")
            .items
            .len(),
        3
    );
}
