//! What the Run tests do to a namespace besides alerting: finish, fail or delete a Job
//! as the Job controller or a person would (the test control planes run no controller
//! manager, so Jobs never finish on their own), hold Job creations back with a
//! ResourceQuota, wait for Runs to be decided or deleted, and tell which of several
//! Karo processes leads.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::karo_lib::{AlertReactionRun, RunPhase};
use super::karo_process::KaroProcess;
use super::ready::{wait_for, SOON};
use super::scenario::Scenario;

/// Writes the Job's status as the Job controller does when its pod succeeded:
/// condition `Complete`, `succeeded: 1`.
pub async fn complete_job(s: &Scenario, name: &str) {
    let status = json!({"status": {
        "conditions": [{"type": "Complete", "status": "True"}],
        "succeeded": 1,
    }});
    jobs_api(s)
        .await
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("completing Job {name}: {e}"));
}

/// Writes the Job's status as the Job controller does when its pod failed past its
/// backoff limit: condition `Failed` (reason `BackoffLimitExceeded`), `failed: 1`.
pub async fn fail_job(s: &Scenario, name: &str) {
    let status = json!({"status": {
        "conditions": [{
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
        }],
        "failed": 1,
    }});
    jobs_api(s)
        .await
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap_or_else(|e| panic!("failing Job {name}: {e}"));
}

/// Deletes the Job as `kubectl delete job` does.
pub async fn delete_job(s: &Scenario, name: &str) {
    jobs_api(s)
        .await
        .delete(name, &DeleteParams::background())
        .await
        .unwrap_or_else(|e| panic!("deleting Job {name}: {e}"));
}

/// Whether a Job named `name` exists in the namespace.
pub async fn job_exists(s: &Scenario, name: &str) -> bool {
    match jobs_api(s).await.get_opt(name).await {
        Ok(found) => found.is_some(),
        Err(e) => panic!("reading Job {name}: {e}"),
    }
}

async fn jobs_api(s: &Scenario) -> Api<Job> {
    Api::namespaced(s.cp().client().await, &s.ns)
}

/// The Run named `name`, if it exists.
pub async fn run_opt(s: &Scenario, name: &str) -> Option<AlertReactionRun> {
    let api: Api<AlertReactionRun> = Api::namespaced(s.cp().client().await, &s.ns);
    api.get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("reading Run {name}: {e}"))
}

/// Waits (at most `timeout`, a hang guard) until the Run `name` is gone.
pub async fn wait_run_gone(s: &Scenario, name: &str, timeout: Duration) {
    wait_for(timeout, || async move {
        run_opt(s, name).await.is_none().then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("Run {name} never deleted: {e}"));
}

/// The phase of a Run (`Pending` while it has no status yet).
pub fn phase(run: &AlertReactionRun) -> RunPhase {
    run.status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or(RunPhase::Pending)
}

/// A status word of a Run (`reason`), or "".
pub fn reason(run: &AlertReactionRun) -> &str {
    run.status
        .as_ref()
        .and_then(|s| s.reason.as_deref())
        .unwrap_or("")
}

/// How many Runs are in each phase.
pub fn phases(runs: &[AlertReactionRun]) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for run in runs {
        *out.entry(phase(run).as_str()).or_default() += 1;
    }
    out
}

/// Waits until the reaction `reaction` has exactly `n` Runs, none of them `Pending`
/// any more (each decided: started, skipped or ended); returns them.
pub async fn wait_runs_decided(s: &Scenario, reaction: &str, n: usize) -> Vec<AlertReactionRun> {
    let waited = wait_for(SOON, || async move {
        let runs = s.runs_of(reaction).await;
        assert!(
            runs.len() <= n,
            "expected {n} Runs of {reaction}, found {}",
            runs.len()
        );
        (runs.len() == n && runs.iter().all(|r| phase(r) != RunPhase::Pending)).then_some(runs)
    })
    .await;
    match waited {
        Ok(runs) => runs,
        Err(e) => {
            let runs = s.runs_of(reaction).await;
            panic!(
                "{n} decided Runs of {reaction} never in {}: {e}; phases now {:?}",
                s.ns,
                phases(&runs)
            )
        }
    }
}

/// The Job names a Run's status records.
pub fn recorded_jobs(run: &AlertReactionRun) -> Vec<String> {
    run.status
        .as_ref()
        .map(|s| s.jobs.iter().map(|j| j.name.clone()).collect())
        .unwrap_or_default()
}

/// Creates (or updates) the ResourceQuota `jobs` allowing `n` Jobs in the
/// namespace, and writes its status as the quota controller would (the test
/// control planes run none): `hard` as the spec, `used` the Jobs that exist. With
/// `n` 0 the API server refuses every Job with 403 "exceeded quota".
pub async fn set_job_quota(s: &Scenario, n: usize) {
    let api: Api<ResourceQuota> = Api::namespaced(s.cp().client().await, &s.ns);
    let hard = json!({"count/jobs.batch": n.to_string()});
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "jobs", "namespace": s.ns},
        "spec": {"hard": hard},
    }))
    .expect("a ResourceQuota");
    match api
        .get_opt("jobs")
        .await
        .expect("reading the ResourceQuota")
    {
        None => {
            api.create(&PostParams::default(), &quota)
                .await
                .expect("creating the ResourceQuota");
        }
        Some(_) => {
            api.patch(
                "jobs",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"hard": hard}})),
            )
            .await
            .expect("raising the ResourceQuota");
        }
    }
    let used = s.jobs().await.len().to_string();
    let status = json!({"status": {"hard": hard, "used": {"count/jobs.batch": used}}});
    api.patch_status("jobs", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("writing the ResourceQuota's status");
}

/// Waits until exactly one of `karos` reports `karo_leader` 1; returns its index.
pub async fn wait_leader(karos: &[&KaroProcess]) -> usize {
    wait_for(SOON, || async {
        let mut leaders = Vec::new();
        for (i, karo) in karos.iter().enumerate() {
            if karo.metric("karo_leader").await == 1.0 {
                leaders.push(i);
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    })
    .await
    .unwrap_or_else(|e| panic!("never exactly one leader among {} Karos: {e}", karos.len()))
}

/// Kills `karo` with SIGKILL (no graceful stop: the Lease stays held until it
/// expires) and reaps it.
pub fn sigkill(karo: KaroProcess) {
    // Dropping a KaroProcess kills its process with SIGKILL and reaps it.
    drop(karo);
}
