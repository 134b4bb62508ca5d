//! AlertReactionRuns against a real kube-apiserver and etcd and real `karo run`
//! processes: the guarantees a Run gives over the whole life of an alert. By concern:
//!
//! - `exactly_once`: a redelivery after the Job is gone creates nothing; a Karo killed
//!   between its Runs and their Jobs loses nothing and doubles nothing; a Job of the
//!   previous release is adopted by the Run of its occurrence.
//! - `retention`: unseen and resolved Runs are deleted, the history limit holds, and a
//!   Run whose occurrence is still delivered stays.
//! - `concurrency`: Forbid and cooldown across many alerts of one notification and
//!   across two replicas given the same notification.
//! - `failover`: the leader killed, the other replica takes the Lease and does the work.
//! - `guard_rails`: approval with `karo approve`/`karo reject` as users with and
//!   without the chart's `karo-approver` role, its timeout and the resolved alert;
//!   `budget.maxRunsPerHour` per key across two replicas and a failover;
//!   `budget.suspendAfterFailures` through a restart of every replica until `karo resume`.
//!
//! Here: the helpers they share.

mod concurrency;
mod exactly_once;
mod failover;
mod guard_rails;
mod retention;

use serde_json::{json, Value};

use crate::support::karo_lib::AlertReactionRun;

/// A reaction `name` to `alert_name` with one busybox action `a`; `spec` holds more
/// lines of the spec (indented, or empty).
fn reaction(name: &str, alert_name: &str, spec: &str) -> String {
    format!(
        "metadata: {{name: {name}}}\nspec:\n  alertName: {alert_name}\n{spec}  actions: [{{name: a, image: busybox, command: [\"true\"]}}]\n"
    )
}

/// Labels of alert `alert_name` on `instance`.
fn labels(alert_name: &str, instance: &str) -> Value {
    json!({"alertname": alert_name, "instance": instance})
}

/// The Run names a webhook answer reports, sorted.
fn answered_runs(body: &Value) -> Vec<String> {
    let mut runs: Vec<String> = body["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("runs in the answer: {body}"))
        .iter()
        .map(|r| r.as_str().expect("a Run name").to_string())
        .collect();
    runs.sort();
    runs
}

/// The names of `runs`, sorted.
fn names(runs: &[AlertReactionRun]) -> Vec<String> {
    let mut names: Vec<String> = runs
        .iter()
        .map(|r| r.metadata.name.clone().expect("a Run has a name"))
        .collect();
    names.sort();
    names
}

/// The name of the Run that owns a Job (its controller owner of kind
/// AlertReactionRun), checking the owner's UID.
fn owner_run(job: &k8s_openapi::api::batch::v1::Job, runs: &[AlertReactionRun]) -> String {
    let owner = job
        .metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.iter().find(|o| o.kind == "AlertReactionRun"))
        .unwrap_or_else(|| panic!("Job {:?} not owned by a Run", job.metadata.name));
    let run = runs
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(owner.name.as_str()))
        .unwrap_or_else(|| panic!("the Run {} owning a Job does not exist", owner.name));
    assert_eq!(
        run.metadata.uid.as_deref(),
        Some(owner.uid.as_str()),
        "owner UID of Job {:?}",
        job.metadata.name
    );
    owner.name.clone()
}
