//! AlertReactionRuns on the real cluster, Karo installed by its chart as a pod: the
//! Run follows the Job's pod to its outcome (the Job's reason and the tail of the
//! failed container's log), keeps the occurrence after the Job's TTL deleted the
//! Job (a redelivery runs nothing), and retries a Job that a ResourceQuota refuses
//! until the quota allows it, while Alertmanager got its 200 at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::{
    create_reaction, events_about, job_created, karo_in_namespace, notify, runs_of, wait_run,
    wait_run_phase, POD_GUARD,
};
use crate::support::cluster::Cluster;
use crate::support::karo_lib::{AlertReaction, AlertReactionRun, JobPhase, RunPhase};
use crate::support::ready::{wait_for, wait_until};
use crate::support::webhook::firing;

/// One reaction, two alerts: the command says `labels.say` and exits with
/// `labels.code`; no retry of a failed pod.
const OUTCOME: &str = r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {name: outcome}
spec:
  alertName: Outcome
  backoffLimit: 0
  actions:
    - name: work
      image: IMAGE
      command: ["sh", "-c", "echo {{labels.say}}; exit {{labels.code}}"]
"#;

const ONCE: &str = r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {name: once}
spec:
  alertName: Once
  ttlSecondsAfterFinished: 3
  actions:
    - name: echo
      image: IMAGE
      command: ["echo", "ran once"]
"#;

const QUOTA_REACTION: &str = r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {name: quota}
spec:
  alertName: Quota
  actions:
    - name: echo
      image: IMAGE
      command: ["echo", "finally"]
"#;

/// `body[key]` as a list of strings.
fn names(body: &Value, key: &str) -> Vec<String> {
    body[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {body}"))
        .iter()
        .map(|v| v.as_str().expect("a name").to_string())
        .collect()
}

fn name_of(run: &AlertReactionRun) -> String {
    run.metadata.name.clone().expect("a Run name")
}

/// The Jobs owned by the Run `run` (label `karo.io/run`).
async fn jobs_of_run(namespace: &str, run: &str) -> Vec<Job> {
    Api::<Job>::namespaced(Cluster::get().client().await, namespace)
        .list(&ListParams::default().labels(&format!("karo.io/run={run}")))
        .await
        .expect("listing Jobs")
        .items
}

/// The Job is owned by the Run (kind AlertReactionRun, its name and UID).
fn assert_owned_by(job: &Job, run: &AlertReactionRun) {
    let owners = job.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0].kind, "AlertReactionRun");
    assert_eq!(owners[0].name, name_of(run));
    assert_eq!(Some(&owners[0].uid), run.metadata.uid.as_ref());
}

#[tokio::test]
async fn a_run_records_a_succeeded_and_a_failed_job_with_its_reason_and_log() {
    let (ns, url) = karo_in_namespace("outcome", &[]).await;
    let cluster = Cluster::get();
    create_reaction(&ns, OUTCOME).await;
    let posted = Instant::now();
    let body = notify(
        &url,
        &firing(
            [
                json!({"alertname": "Outcome", "say": "all-fine", "code": "0"}),
                json!({"alertname": "Outcome", "say": "boom-details", "code": "3"}),
            ],
            "2026-06-01T00:00:00Z",
        ),
    )
    .await;
    assert_eq!(body["created"], 2, "{body}");
    assert_eq!(names(&body, "runs").len(), 2, "{body}");
    assert_eq!(names(&body, "jobs").len(), 2, "{body}");

    // One Run per alert, told apart by the alert's labels.
    let runs: BTreeMap<String, String> = runs_of(&ns, "outcome")
        .await
        .iter()
        .map(|r| (r.spec.alert.labels["code"].clone(), name_of(r)))
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let mut run_names = names(&body, "runs");
    run_names.sort();
    let mut listed: Vec<String> = runs.values().cloned().collect();
    listed.sort();
    assert_eq!(run_names, listed);

    // The succeeding Job: the Run Succeeded, with the Job's times and a duration.
    let ok = wait_run_phase(&ns, &runs["0"], RunPhase::Succeeded).await;
    let to_succeeded = posted.elapsed();
    let st = ok.status.as_ref().expect("the Run's status");
    assert_eq!(st.reason.as_deref(), Some("JobsSucceeded"), "{st:?}");
    assert_eq!(st.jobs.len(), 1, "{st:?}");
    assert_eq!(st.jobs[0].phase, JobPhase::Succeeded, "{st:?}");
    assert_eq!(st.jobs[0].action, "work");
    assert!(st.jobs[0].log.is_none(), "no log kept of a success: {st:?}");
    let (start, end) = (
        st.start_time.as_ref().expect("startTime"),
        st.completion_time.as_ref().expect("completionTime"),
    );
    assert!(end.0 >= start.0, "{st:?}");
    assert!(
        st.jobs[0].start_time.is_some() && st.jobs[0].completion_time.is_some(),
        "the Job's times: {st:?}"
    );
    let duration = st.duration.clone().expect("duration");
    assert!(!duration.is_empty());
    let ok_job = job_created(&ns, &st.jobs[0].name).await;
    assert_owned_by(&ok_job, &ok);
    let ok_log = cluster.kubectl_ok(&["-n", &ns, "logs", &format!("job/{}", st.jobs[0].name)]);
    assert_eq!(ok_log.trim(), "all-fine");

    // The failing Job (exit 3, backoffLimit 0): Failed with the Job's reason and
    // the end of the container's log.
    let failed = wait_run_phase(&ns, &runs["3"], RunPhase::Failed).await;
    let to_failed = posted.elapsed();
    let fst = failed.status.as_ref().expect("the Run's status");
    assert_eq!(
        fst.reason.as_deref(),
        Some("BackoffLimitExceeded"),
        "{fst:?}"
    );
    assert_eq!(fst.jobs.len(), 1, "{fst:?}");
    let job = &fst.jobs[0];
    assert_eq!(job.phase, JobPhase::Failed, "{fst:?}");
    assert_eq!(
        job.reason.as_deref(),
        Some("BackoffLimitExceeded"),
        "{fst:?}"
    );
    let log = job
        .log
        .clone()
        .expect("the failed container's log on the Run");
    assert!(log.contains("boom-details"), "{log:?}");
    assert!(log.len() <= 2048, "{}", log.len());
    assert!(
        fst.completion_time.is_some() && fst.duration.is_some(),
        "{fst:?}"
    );
    let message = fst.message.clone().unwrap_or_default();
    assert!(message.contains(&job.name), "{message}");
    assert_owned_by(&job_created(&ns, &job.name).await, &failed);

    // The reaction counts both, and names the Run that finished last.
    let reactions: Api<AlertReaction> = Api::namespaced(cluster.client().await, &ns);
    let counted = wait_until(POD_GUARD, || async {
        reactions
            .get("outcome")
            .await
            .ok()
            .and_then(|r| r.status)
            .is_some_and(|s| s.succeeded_runs == Some(1) && s.failed_runs == Some(1))
    })
    .await;
    let reaction = reactions.get("outcome").await.expect("the reaction");
    let rs = reaction.status.clone().expect("reaction status");
    assert!(
        counted.is_ok(),
        "not one succeeded and one failed Run: {rs:?}"
    );
    assert_eq!(rs.trigger_count, Some(2), "{rs:?}");
    let last = rs.last_run.clone().expect("lastRun");
    let phase_of = |name: &str| {
        if name == runs["0"] {
            "Succeeded"
        } else {
            "Failed"
        }
    };
    assert!(
        runs.values().any(|n| *n == last.name),
        "lastRun {last:?} of {runs:?}"
    );
    assert_eq!(last.phase, phase_of(&last.name), "{last:?}");
    // The one that completed later, when their completion times differ.
    let failed_end = fst.completion_time.clone().expect("completionTime");
    if end.0 != failed_end.0 {
        let later = if end.0 > failed_end.0 {
            &runs["0"]
        } else {
            &runs["3"]
        };
        assert_eq!(&last.name, later, "{last:?}");
    }

    // Events on the reaction: Succeeded (Normal) and Failed (Warning) with the log.
    let events = wait_for(POD_GUARD, || async {
        let events = events_about(&ns, "outcome").await;
        let has = |reason: &str| events.iter().any(|e| e.reason.as_deref() == Some(reason));
        (has("Succeeded") && has("Failed")).then_some(events)
    })
    .await
    .expect("Events Succeeded and Failed on the reaction");
    let event = |reason: &str| {
        events
            .iter()
            .find(|e| e.reason.as_deref() == Some(reason))
            .expect("the Event")
    };
    let succeeded = event("Succeeded");
    assert_eq!(succeeded.type_.as_deref(), Some("Normal"));
    assert!(
        succeeded
            .message
            .as_deref()
            .unwrap_or("")
            .contains(&runs["0"]),
        "{succeeded:?}"
    );
    let failed_event = event("Failed");
    assert_eq!(failed_event.type_.as_deref(), Some("Warning"));
    let note = failed_event.message.clone().unwrap_or_default();
    assert!(
        note.contains(&runs["3"]) && note.contains("boom-details"),
        "{note}"
    );

    // kubectl get arr: the printer columns, one row per Run with its phase.
    let table = cluster.kubectl_ok(&["-n", &ns, "get", "arr"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "REACTION", "ALERT", "PHASE", "STARTED", "DURATION", "AGE"],
        "{table}"
    );
    assert_eq!(lines.len(), 3, "{table}");
    for (code, phase) in [("0", "Succeeded"), ("3", "Failed")] {
        let row = lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(runs[code].as_str()))
            .unwrap_or_else(|| panic!("no row for {}:\n{table}", runs[code]));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells.len(), 7, "every column filled:\n{table}");
        assert_eq!(&cells[1..4], ["outcome", "Outcome", phase], "{table}");
    }

    // kubectl describe arr: the phase and the log tail.
    let described = cluster.kubectl_ok(&["-n", &ns, "describe", "arr", &runs["3"]]);
    assert!(
        described
            .lines()
            .any(|l| l.trim_start().starts_with("Phase:") && l.contains("Failed")),
        "{described}"
    );
    assert!(described.contains("boom-details"), "{described}");
    assert!(described.contains("BackoffLimitExceeded"), "{described}");

    // kubectl get karo: the category lists the reaction and its Runs (a fresh
    // discovery cache, so the category is looked up on this cluster).
    let cache = tempfile::tempdir().expect("a kubectl cache dir");
    let cache_dir = format!("--cache-dir={}", cache.path().display());
    let karo = cluster.kubectl_ok(&["-n", &ns, &cache_dir, "get", "karo"]);
    assert!(karo.contains("alertreaction.karo.io/outcome"), "{karo}");
    for run in runs.values() {
        assert!(
            karo.contains(&format!("alertreactionrun.karo.io/{run}")),
            "{karo}"
        );
    }
    eprintln!(
        "outcome: Succeeded seen after {to_succeeded:?} (Run duration {duration}), Failed \
         seen after {to_failed:?} (Run duration {})",
        fst.duration.as_deref().unwrap_or("?")
    );
}

#[tokio::test]
async fn a_redelivery_after_the_job_ttl_deleted_the_job_runs_nothing() {
    let (ns, url) = karo_in_namespace("ttl-redelivery", &[]).await;
    let client = Cluster::get().client().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    create_reaction(&ns, ONCE).await;
    let first = firing([json!({"alertname": "Once"})], "2026-06-01T00:00:00Z");
    let body = notify(&url, &first).await;
    assert_eq!(
        (body["created"].clone(), body["deduplicated"].clone()),
        (json!(1), json!(0)),
        "{body}"
    );
    let run = names(&body, "runs").remove(0);
    let job = names(&body, "jobs").remove(0);

    // The Job runs, the Run records the success, the TTL controller deletes the Job.
    let succeeded = wait_run_phase(&ns, &run, RunPhase::Succeeded).await;
    assert_eq!(
        succeeded.status.as_ref().expect("the Run's status").jobs[0].name,
        job
    );
    let ttl_deleted = Instant::now();
    wait_until(POD_GUARD, || async {
        matches!(jobs.get_opt(&job).await, Ok(None))
    })
    .await
    .expect("the finished Job deleted after its TTL");
    let ttl_wait = ttl_deleted.elapsed();
    let pods_of_job = ListParams::default().labels(&format!("job-name={job}"));
    wait_until(POD_GUARD, || async {
        pods.list(&pods_of_job)
            .await
            .is_ok_and(|l| l.items.is_empty())
    })
    .await
    .expect("the Job's pod deleted with it");

    // The Run keeps the outcome of the Job that is gone.
    let kept = wait_run_phase(&ns, &run, RunPhase::Succeeded).await;
    let st = kept.status.as_ref().expect("the Run's status");
    assert_eq!(st.jobs[0].phase, JobPhase::Succeeded, "{st:?}");

    // Watch the old Job's name and its pods from now until the end.
    let window = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (stop, samples, jobs, pods, job) = (
            stop.clone(),
            samples.clone(),
            jobs.clone(),
            pods.clone(),
            job.clone(),
        );
        let pods_of_job = pods_of_job.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if let Ok(Some(j)) = jobs.get_opt(&job).await {
                    seen.push(format!("Job {:?}", j.metadata.creation_timestamp));
                }
                if let Ok(l) = pods.list(&pods_of_job).await {
                    seen.extend(l.items.iter().map(|p| format!("pod {:?}", p.metadata.name)));
                }
                samples.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            seen
        })
    };

    // The same notification again: a duplicate, nothing created, the Run seen again.
    let again = notify(&url, &first).await;
    assert_eq!(
        (again["created"].clone(), again["deduplicated"].clone()),
        (json!(0), json!(1)),
        "{again}"
    );
    assert_eq!(names(&again, "runs"), std::slice::from_ref(&run), "{again}");
    // A new startsAt is a new occurrence: a new Run and its Job run to the end,
    // while the old Job never came back.
    let later = firing([json!({"alertname": "Once"})], "2026-06-01T01:00:00Z");
    let body = notify(&url, &later).await;
    assert_eq!(body["created"], 1, "{body}");
    let second = names(&body, "runs").remove(0);
    assert_ne!(second, run);
    let second_job = names(&body, "jobs").remove(0);
    assert_ne!(second_job, job);
    wait_run_phase(&ns, &second, RunPhase::Succeeded).await;
    stop.store(true, Ordering::SeqCst);
    let window = window.elapsed();
    let seen = watcher.await.expect("the watcher");
    assert!(seen.is_empty(), "the old Job came back: {seen:?}");
    let samples = samples.load(Ordering::SeqCst);
    assert!(samples >= 2, "the old Job's name looked at {samples} times");
    let all_runs = runs_of(&ns, "once").await;
    assert_eq!(all_runs.len(), 2, "{all_runs:?}");
    // The Run says it was seen again, and is still the record of the one run.
    let seen = wait_run(&ns, &run, "seen again", |r| {
        r.status.as_ref().is_some_and(|s| s.last_seen.is_some())
    })
    .await;
    let st = seen.status.as_ref().expect("the Run's status");
    assert_eq!(st.phase, Some(RunPhase::Succeeded), "{st:?}");
    assert!(
        st.last_seen.as_ref().expect("lastSeen").0
            >= st.completion_time.as_ref().expect("completionTime").0,
        "{st:?}"
    );

    eprintln!(
        "ttl-redelivery: Job {job} deleted by its TTL {ttl_wait:?} after the Run Succeeded; \
         the old Job's name looked at {samples} times over {window:?}, never back"
    );
}

/// `count/jobs.batch` of the quota `jobs` as the quota controller sees it: Karo's
/// Jobs are refused by admission only once the quota's status is computed.
async fn quota_hard(quotas: &Api<ResourceQuota>) -> Option<String> {
    let q = quotas.get("jobs").await.ok()?;
    let hard = q.status?.hard?;
    hard.get("count/jobs.batch").map(|v| v.0.clone())
}

#[tokio::test]
async fn a_job_refused_by_a_quota_is_retried_until_the_quota_is_raised() {
    let (ns, url) = karo_in_namespace("quota", &[]).await;
    let client = Cluster::get().client().await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns);
    let quota: ResourceQuota = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "jobs"},
        "spec": {"hard": {"count/jobs.batch": "0"}},
    }))
    .expect("ResourceQuota");
    quotas
        .create(&PostParams::default(), &quota)
        .await
        .expect("creating the quota");
    wait_until(POD_GUARD, || async {
        quota_hard(&quotas).await.as_deref() == Some("0")
    })
    .await
    .expect("the quota controller computed the quota");
    create_reaction(&ns, QUOTA_REACTION).await;

    // Alertmanager gets its 200 at once: the Run is the hand-off.
    let body = notify(
        &url,
        &firing([json!({"alertname": "Quota"})], "2026-06-01T00:00:00Z"),
    )
    .await;
    assert_eq!(body["created"], 1, "{body}");
    let run = names(&body, "runs").remove(0);

    // The API server refuses the Job ("exceeded quota"): the Run retries and says so.
    let refused = wait_run(&ns, &run, "retried twice", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.attempts.unwrap_or(0) >= 2)
    })
    .await;
    let st = refused.status.as_ref().expect("the Run's status");
    assert_eq!(st.reason.as_deref(), Some("Retrying"), "{st:?}");
    assert_eq!(st.phase, Some(RunPhase::Pending), "{st:?}");
    assert!(
        st.message
            .as_deref()
            .unwrap_or("")
            .contains("exceeded quota"),
        "{st:?}"
    );
    assert!(jobs_of_run(&ns, &run).await.is_empty());

    // The quota raised: the next attempt creates the Job, which runs to the end.
    let raised_at = Instant::now();
    let raise = json!({"spec": {"hard": {"count/jobs.batch": Quantity("10".into())}}});
    quotas
        .patch("jobs", &PatchParams::default(), &Patch::Merge(&raise))
        .await
        .expect("raising the quota");
    let done = wait_run_phase(&ns, &run, RunPhase::Succeeded).await;
    let to_succeeded = raised_at.elapsed();
    let st = done.status.as_ref().expect("the Run's status");
    let attempts = st.attempts.expect("the attempts kept on the finished Run");
    assert!(attempts >= 2, "{st:?}");
    assert_eq!(st.jobs.len(), 1, "{st:?}");
    assert_eq!(st.jobs[0].phase, JobPhase::Succeeded, "{st:?}");
    let jobs = jobs_of_run(&ns, &run).await;
    assert_eq!(jobs.len(), 1, "exactly one Job: {jobs:?}");
    assert_eq!(jobs[0].metadata.name.as_ref(), Some(&st.jobs[0].name));
    assert_owned_by(&jobs[0], &done);
    let all: Vec<Job> = Api::<Job>::namespaced(client, &ns)
        .list(&ListParams::default())
        .await
        .expect("Jobs")
        .items;
    assert_eq!(all.len(), 1, "exactly one Job in the namespace");
    eprintln!(
        "quota: {attempts} refused attempts (at the check: {}); Succeeded {to_succeeded:?} \
         after the quota was raised",
        refused
            .status
            .as_ref()
            .expect("the Run's status")
            .attempts
            .unwrap_or(0)
    );
}
