//! What Kubernetes does with Karo's Jobs: the TTL controller deletes a finished Job
//! after `ttlSecondsAfterFinished`, and the garbage collector deletes the Runs of a
//! deleted AlertReaction, which owns them, and with them their Jobs and pods.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;

use super::{create_reaction, karo_in_namespace, notify, runs_of, succeeded_job, POD_GUARD};
use crate::support::cluster::Cluster;
use crate::support::karo_lib::AlertReaction;
use crate::support::ready::{wait_for, wait_until};
use crate::support::webhook::firing;

const SHORT_LIVED: &str = r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {name: short}
spec:
  alertName: Short
  ttlSecondsAfterFinished: 3
  actions:
    - name: echo
      image: IMAGE
      command: ["echo", "done"]
"#;

const LONG_RUNNING: &str = r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {name: long}
spec:
  alertName: Long
  actions:
    - name: sleep
      image: IMAGE
      command: ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
"#;

#[tokio::test]
async fn finished_jobs_expire_and_a_deleted_reaction_takes_its_jobs_along() {
    let (ns, url) = karo_in_namespace("lifecycle", &[]).await;
    let client = Cluster::get().client().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    create_reaction(&ns, SHORT_LIVED).await;
    create_reaction(&ns, LONG_RUNNING).await;
    let at = "2026-06-01T00:00:00Z";
    let body = notify(
        &url,
        &firing(
            [json!({"alertname": "Short"}), json!({"alertname": "Long"})],
            at,
        ),
    )
    .await;
    assert_eq!(body["created"], 2, "{body}");

    // The short Job completes, then the TTL controller deletes it.
    let short = succeeded_job(&ns, "short-echo-").await;
    assert_eq!(
        short
            .spec
            .as_ref()
            .and_then(|s| s.ttl_seconds_after_finished),
        Some(3)
    );
    let short_name = short.metadata.name.expect("Job name");
    wait_until(POD_GUARD, || async {
        matches!(jobs.get_opt(&short_name).await, Ok(None))
    })
    .await
    .expect("the finished Job deleted after its TTL");

    // The long Job runs; deleting its reaction deletes it and its pod.
    let long = wait_for(POD_GUARD, || async {
        let running = pods
            .list(&ListParams::default().labels("karo.io/reaction=long"))
            .await
            .ok()?
            .items
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        running.and_then(|p| p.metadata.labels?.get("job-name").cloned())
    })
    .await
    .expect("the long Job's pod running");
    let long_runs = runs_of(&ns, "long").await;
    assert_eq!(long_runs.len(), 1);
    let long_job = jobs.get(&long).await.expect("the long Job");
    let owner = &long_job
        .metadata
        .owner_references
        .as_ref()
        .expect("an owner")[0];
    assert_eq!(
        (owner.kind.as_str(), Some(&owner.name)),
        ("AlertReactionRun", long_runs[0].metadata.name.as_ref())
    );
    Api::<AlertReaction>::namespaced(client.clone(), &ns)
        .delete("long", &DeleteParams::default())
        .await
        .expect("deleting the reaction");
    wait_until(POD_GUARD, || async {
        runs_of(&ns, "long").await.is_empty()
            && matches!(jobs.get_opt(&long).await, Ok(None))
            && pods
                .list(&ListParams::default().labels(&format!("job-name={long}")))
                .await
                .is_ok_and(|l| l.items.is_empty())
    })
    .await
    .expect("the garbage collector deleted the Run, its Job and its pod");
}
