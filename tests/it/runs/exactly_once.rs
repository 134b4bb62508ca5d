//! Exactly once for as long as the alert lives: the Run, not the Job, is the record of
//! an occurrence. A redelivery after the Job was deleted creates nothing; Runs accepted
//! by a Karo that dies before their Jobs get each Job once from the next one; a Job of
//! the previous release (owned by the reaction) is adopted, not created again.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

use super::{answered_runs, labels, names, owner_run, reaction};
use crate::support::karo_lib::{JobPhase, RunPhase};
use crate::support::karo_process::karo_command;
use crate::support::ready::{wait_for, SOON};
use crate::support::runs::{
    complete_job, delete_job, job_exists, recorded_jobs, set_job_quota, sigkill,
};
use crate::support::scenario::Scenario;
use crate::support::webhook::firing;
use crate::support::TestDir;

#[tokio::test]
async fn redelivery_after_job_deleted() {
    let (s, karo) = Scenario::build("redeliver")
        .reaction(&reaction("fix", "Redeliver", ""))
        .start()
        .await;
    let first = firing([labels("Redeliver", "i1")], "2026-06-01T00:00:00Z");
    let body = karo.notify_ok(&first).await;
    assert_eq!(body["created"], 1, "{body}");
    let run = answered_runs(&body).remove(0);
    let job = body["jobs"][0].as_str().expect("a Job name").to_string();
    s.wait_run_phase(&run, RunPhase::Running).await;
    assert_eq!(
        s.wait_jobs(1).await[0].metadata.name.as_deref(),
        Some(&*job)
    );

    // The Job deleted by hand (as its TTL would): the Run records it lost.
    delete_job(&s, &job).await;
    let failed = s.wait_run_phase(&run, RunPhase::Failed).await;
    let status = failed.status.expect("status");
    assert_eq!(status.reason.as_deref(), Some("JobDeleted"), "{status:?}");
    assert_eq!(status.jobs.len(), 1, "{status:?}");
    assert_eq!(status.jobs[0].name, job);
    assert_eq!(status.jobs[0].phase, JobPhase::Lost, "{status:?}");
    assert!(status.last_seen.is_none(), "{status:?}");

    // Alertmanager delivers the same occurrence again: the same Run, seen again.
    let again = karo.notify_ok(&first).await;
    assert_eq!(again["created"], 0, "{again}");
    assert_eq!(again["deduplicated"], 1, "{again}");
    assert_eq!(answered_runs(&again), vec![run.clone()], "{again}");
    let seen = s.run(&run).await.status.expect("status");
    assert!(
        seen.last_seen.is_some(),
        "lastSeen after a redelivery: {seen:?}"
    );
    assert_eq!(seen.phase, Some(RunPhase::Failed), "{seen:?}");

    // A new occurrence (new startsAt) of the same alert: a new Run and a new Job. Once
    // the runner has created that Job, it has also handled the redelivered Run.
    let next = karo
        .notify_ok(&firing([labels("Redeliver", "i1")], "2026-06-01T01:00:00Z"))
        .await;
    assert_eq!(next["created"], 1, "{next}");
    let next_run = answered_runs(&next).remove(0);
    assert_ne!(next_run, run);
    s.wait_run_phase(&next_run, RunPhase::Running).await;
    let jobs = s.wait_jobs(1).await;
    let next_job = jobs[0].metadata.name.clone().expect("name");
    assert_ne!(next_job, job, "the new occurrence has a Job of its own");
    assert_eq!(owner_run(&jobs[0], &s.runs().await), next_run);
    assert!(!job_exists(&s, &job).await, "the deleted Job came back");
    let runs = s.runs().await;
    assert_eq!(names(&runs), sorted(vec![run.clone(), next_run]));
    let old = s.run(&run).await.status.expect("status");
    assert_eq!(old.phase, Some(RunPhase::Failed), "{old:?}");
    assert_eq!(old.jobs[0].phase, JobPhase::Lost, "{old:?}");
}

#[tokio::test]
async fn crash_between_run_and_jobs() {
    let config = "leaderElection: {leaseDuration: 5s}\n";
    let s = Scenario::build("crash")
        .reaction(&reaction("fix", "Crash", ""))
        .create()
        .await;
    // No Job may be created: the API server refuses them with 403 "exceeded quota",
    // a refusal worth retrying.
    set_job_quota(&s, 0).await;
    let a = s.start_karo(config).await;
    s.wait_ready("fix", "True").await;
    let body = a
        .notify_ok(&firing(
            ["i1", "i2", "i3"].map(|i| labels("Crash", i)),
            "2026-06-02T00:00:00Z",
        ))
        .await;
    assert_eq!(body["created"], 3, "{body}");
    let runs = answered_runs(&body);
    // Every Run has been tried and refused: accepted, without Jobs.
    wait_for(SOON, || async {
        let runs = s.runs().await;
        (runs.len() == 3
            && runs.iter().all(|r| {
                r.status.as_ref().is_some_and(|st| {
                    st.attempts.unwrap_or(0) >= 1
                        && st.reason.as_deref() == Some("Retrying")
                        && st.phase == Some(RunPhase::Pending)
                })
            }))
        .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("the Runs never showed a refused attempt: {e}"));
    assert!(s.jobs().await.is_empty());
    let message = s.run(&runs[0]).await.status.expect("status").message;
    assert!(
        message.as_deref().unwrap_or("").contains("exceeded quota"),
        "{message:?}"
    );

    // Killed, no goodbye: the Lease stays with the dead process until it expires.
    sigkill(a);
    set_job_quota(&s, 10).await;
    let b = s.start_karo(config).await;
    let jobs = s.wait_jobs(3).await;
    for run in &runs {
        let run = s.wait_run_phase(run, RunPhase::Running).await;
        let status = run.status.as_ref().expect("status");
        assert!(status.attempts.unwrap_or(0) >= 1, "{status:?}");
        assert_eq!(recorded_jobs(&run).len(), 1, "{status:?}");
    }
    // Each Run owns exactly one of the Jobs, the one it records.
    let all = s.runs().await;
    let mut owners: Vec<String> = jobs.iter().map(|j| owner_run(j, &all)).collect();
    owners.sort();
    assert_eq!(owners, runs);
    for job in &jobs {
        let name = job.metadata.name.clone().expect("name");
        assert!(all.iter().any(|r| recorded_jobs(r) == vec![name.clone()]));
    }
    b.wait_metric("karo_leader", |v| v == 1.0).await;
    assert_eq!(s.jobs().await.len(), 3);
}

#[tokio::test]
async fn upgrade_path() {
    let s = Scenario::build("upgrade")
        .reaction(&reaction("fix", "Upgrade", ""))
        .create()
        .await;
    let notification = firing([labels("Upgrade", "i1")], "2026-06-03T00:00:00Z");
    let reaction_uid = s.reaction("fix").await.metadata.uid.clone().expect("uid");

    // The Job as the previous release created it for this occurrence: `karo render` of
    // the reaction as the cluster has it, owned by the reaction, without karo.io/run.
    let mut old = rendered_job(&s, "fix", &notification).await;
    let job_name = old["metadata"]["name"].as_str().expect("name").to_string();
    old["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "karo.io/v1alpha1",
        "kind": "AlertReaction",
        "name": "fix",
        "uid": reaction_uid,
        "controller": true,
    }]);
    let labels_of_old = old["metadata"]["labels"]
        .as_object_mut()
        .expect("Job labels");
    assert!(labels_of_old.remove("karo.io/run").is_some());
    assert!(labels_of_old.contains_key("karo.io/occurrence"));
    let old: Job = serde_json::from_value(old).expect("a Job");
    let jobs_api: Api<Job> = Api::namespaced(s.cp().client().await, &s.ns);
    jobs_api
        .create(&PostParams::default(), &old)
        .await
        .expect("creating the earlier release's Job");

    // The new release starts and the occurrence is delivered again.
    let karo = s.start_karo("").await;
    s.wait_ready("fix", "True").await;
    let body = karo.notify_ok(&notification).await;
    assert_eq!(body["created"], 1, "{body}");
    assert_eq!(body["jobs"], json!([job_name]), "{body}");
    let run = answered_runs(&body).remove(0);
    let adopted = s.wait_run_phase(&run, RunPhase::Running).await;
    assert_eq!(recorded_jobs(&adopted), vec![job_name.clone()]);
    let jobs = s.jobs().await;
    assert_eq!(jobs.len(), 1, "no second Job");
    let owners = jobs[0]
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default();
    assert_eq!(owners.len(), 1);
    assert_eq!(
        owners[0].kind, "AlertReaction",
        "the adopted Job is left as it was"
    );

    // Its outcome is the Run's.
    complete_job(&s, &job_name).await;
    let done = s.wait_run_phase(&run, RunPhase::Succeeded).await;
    let status = done.status.expect("status");
    assert_eq!(status.jobs[0].name, job_name);
    assert_eq!(status.jobs[0].phase, JobPhase::Succeeded, "{status:?}");
    assert_eq!(s.jobs().await.len(), 1);
}

/// A Job with the Run's Job name that belongs to someone else is neither adopted
/// nor counted as a duplicate: the Run fails with `JobConflict`, naming the Job and
/// its owner, and the foreign Job is left alone.
#[tokio::test]
async fn a_job_name_taken_by_someone_else_is_reported_not_deduplicated() {
    let s = Scenario::build("conflict")
        .reaction(&reaction("fix", "Conflict", ""))
        .create()
        .await;
    let notification = firing([labels("Conflict", "i1")], "2026-06-04T00:00:00Z");
    let job_name = rendered_job(&s, "fix", &notification).await["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    // Someone else's Job under that name: no owner, another image.
    let foreign: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name, "labels": {"team": "other"}},
        "spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "theirs", "image": "busybox", "command": ["true"]}],
        }}},
    }))
    .expect("a Job");
    let jobs_api: Api<Job> = Api::namespaced(s.cp().client().await, &s.ns);
    jobs_api
        .create(&PostParams::default(), &foreign)
        .await
        .expect("creating the foreign Job");

    let karo = s.start_karo("").await;
    s.wait_ready("fix", "True").await;
    let body = karo.notify_ok(&notification).await;
    assert_eq!(body["created"], 1, "{body}");
    assert_eq!(body["deduplicated"], 0, "{body}");
    let run = answered_runs(&body).remove(0);
    let failed = s.wait_run_phase(&run, RunPhase::Failed).await;
    let status = failed.status.expect("status");
    assert_eq!(status.reason.as_deref(), Some("JobConflict"), "{status:?}");
    assert!(
        status.jobs[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains(&job_name) && m.contains("belongs to")),
        "{status:?}"
    );
    assert_eq!(karo.metric("karo_jobs_deduplicated_total").await, 0.0);
    // The foreign Job is left as it was.
    let jobs = s.jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].metadata.owner_references, None,
        "{:?}",
        jobs[0].metadata
    );
    assert_eq!(
        jobs[0].metadata.labels.as_ref().and_then(|l| l.get("team")),
        Some(&"other".to_string())
    );
}

/// The one Job `karo render` prints for `notification` and the reaction `name` as
/// the cluster has it (its UID included, so the Job name is the daemon's).
async fn rendered_job(s: &Scenario, name: &str, notification: &Value) -> Value {
    let reaction = s.reaction(name).await;
    let dir = TestDir::new("render").expect("temp dir");
    let reaction_file = dir.path().join("reaction.yaml");
    let alerts_file = dir.path().join("alerts.json");
    std::fs::write(
        &reaction_file,
        serde_yaml::to_string(&reaction).expect("reaction YAML"),
    )
    .expect("writing the reaction");
    std::fs::write(&alerts_file, notification.to_string()).expect("writing the alerts");
    let out = karo_command(&[
        "render",
        "-f",
        &reaction_file.to_string_lossy(),
        "--alerts",
        &alerts_file.to_string_lossy(),
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "karo render: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("karo render -o json");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    list["items"][0].clone()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn trigger_count_is_exact_when_one_action_is_retried() {
    // Two actions; the quota lets one Job in and refuses the other (403 "exceeded
    // quota", retried) until it is raised. The occurrence counts once.
    let s = Scenario::build("retried-action")
        .reaction(
            "metadata: {name: two}\nspec:\n  alertName: Retried\n  actions:\n  - {name: a, image: busybox}\n  - {name: b, image: busybox}\n",
        )
        .create()
        .await;
    set_job_quota(&s, 1).await;
    let karo = s.start_karo("").await;
    s.wait_ready("two", "True").await;
    let body = karo
        .notify_ok(&firing([labels("Retried", "i1")], "2026-06-05T00:00:00Z"))
        .await;
    assert_eq!(body["created"], 1, "{body}");
    let run = answered_runs(&body).remove(0);
    // One Job in, the other refused at least once.
    wait_for(SOON, || async {
        let st = s.run(&run).await.status?;
        (st.attempts.unwrap_or(0) >= 1).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("the second Job was never refused: {e}"));
    assert_eq!(s.jobs().await.len(), 1);

    set_job_quota(&s, 10).await;
    s.wait_jobs(2).await;
    let run = s.wait_run_phase(&run, RunPhase::Running).await;
    assert_eq!(recorded_jobs(&run).len(), 2);
    // Counted once, and both Jobs are the trigger's.
    wait_for(SOON, || async {
        let status = s.reaction("two").await.status?;
        (status.last_jobs_created.len() == 2).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("lastJobsCreated never had both Jobs: {e}"));
    let status = s.reaction("two").await.status.expect("status");
    assert_eq!(status.trigger_count, Some(1), "{status:?}");
}
