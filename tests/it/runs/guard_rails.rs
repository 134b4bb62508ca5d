//! Guard rails against a real kube-apiserver, real `karo run` replicas and the real
//! `karo` command line run as users the API server authenticates by token:
//!
//! - `spec.approval`: a Run waits `AwaitingApproval`; `karo approve` / `karo reject`
//!   work for a user bound to the chart's `karo-approver` ClusterRole and are refused
//!   for one without it; no decision before the timeout rejects the Run; the alert's
//!   resolved notification while it waits cancels it. Only an approved Run has a Job.
//! - `spec.budget.maxRunsPerHour` with `key`: two replicas given the same flood of
//!   alerts start exactly the budget per key; a new leader after a SIGKILL counts
//!   the Runs in the API server and starts no more.
//! - `spec.budget.suspendAfterFailures`: failed Runs in a row stop the reaction
//!   (Ready=False, no Run for new alerts), through a SIGKILL of every replica, until
//!   `karo resume`; failures before the resume no longer count.

use std::path::Path;
use std::process::{Command, Output};

use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

use super::{answered_runs, labels, names, owner_run, reaction};
use crate::support::bins::{helm3, karo_bin};
use crate::support::files::{documents, repo_path, stderr, stdout, succeeded};
use crate::support::karo_lib::{AlertReaction, AlertReactionRun, RunPhase};
use crate::support::karo_process::KaroProcess;
use crate::support::process::run_output;
use crate::support::runs::{
    fail_job, phase, phases, reason, recorded_jobs, sigkill, wait_leader, wait_runs_decided,
};
use crate::support::scenario::{assert_owned_by, Scenario};
use crate::support::webhook::{alert, firing, notification};
use crate::support::{wait_until, TestDir, SOON};

/// Lease short enough for a test that kills the leader.
const FAST_LEASE: &str = "leaderElection: {leaseDuration: 5s}\n";

#[tokio::test]
async fn approve_and_reject_with_the_chart_approver_role() {
    // retentionAfterResolved 4s: the leader's sweep, which exports the gauge of
    // Runs waiting for approval, runs every second (nothing here resolves).
    let (s, karo) = Scenario::build("approval")
        .reaction(&reaction(
            "gated",
            "Gated",
            "  approval: {required: true, timeout: 1h}\n",
        ))
        .config("runs: {retentionAfterResolved: 4s}\n")
        .start()
        .await;
    bind_approver(&s, "alice").await;

    let body = karo
        .notify_ok(&firing(
            ["i1", "i2"].map(|i| labels("Gated", i)),
            "2026-07-01T00:00:00Z",
        ))
        .await;
    assert_eq!(body["created"], 2, "{body}");
    let runs = answered_runs(&body);
    let (approved, rejected) = (runs[0].as_str(), runs[1].as_str());

    // Both wait for a person: asked for, deadline an hour later, no Job.
    let mut waiting = Vec::new();
    for name in [approved, rejected] {
        let run = s.wait_run_phase(name, RunPhase::AwaitingApproval).await;
        let status = run.status.as_ref().expect("status");
        assert_eq!(reason(&run), "ApprovalRequired", "{status:?}");
        let message = status.message.as_deref().unwrap_or("");
        assert!(
            message.contains(&format!("karo approve -n {} {name}", s.ns)),
            "{message}"
        );
        let approval = status.approval.as_ref().expect("status.approval");
        let requested = approval.requested_at.as_ref().expect("requestedAt").0;
        let deadline = approval.deadline.as_ref().expect("deadline").0;
        assert_eq!(deadline.duration_since(requested).as_secs(), 3600);
        assert_eq!(approval.decision, None);
        assert!(
            status.start_time.is_none() && status.jobs.is_empty(),
            "{status:?}"
        );
        s.wait_event("AwaitingApproval", name).await;
        waiting.push(run);
    }
    karo.wait_metric("karo_approvals_total{result=\"requested\"}", |v| v == 2.0)
        .await;
    wait_awaiting(&karo, 2).await;
    assert!(s.jobs().await.is_empty(), "no Job before a decision");

    // mallory has no role: refused, with the role to ask for, and nothing changes.
    for (verb, name) in [("approve", approved), ("reject", rejected)] {
        let out = karo_as(
            &s.cp().user_kubeconfig("mallory"),
            &[verb, name, "-n", &s.ns],
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("forbidden") && err.contains("karo-approver"),
            "{err}"
        );
    }
    for before in &waiting {
        let name = before.metadata.name.as_deref().expect("name");
        let now = s.run(name).await;
        assert_eq!(
            now.metadata.resource_version, before.metadata.resource_version,
            "a refused decision changed Run {name}"
        );
        assert!(
            !annotated(&now, "karo.io/approval"),
            "{:?}",
            now.metadata.annotations
        );
        assert_eq!(phase(&now), RunPhase::AwaitingApproval);
    }
    assert!(s.jobs().await.is_empty(), "no Job after refused decisions");

    // alice, bound to karo-approver, approves one: it runs its Job, once.
    let out = karo_as(
        &s.cp().user_kubeconfig("alice"),
        &["approve", approved, "-n", &s.ns, "--reason", "disk is full"],
    );
    let said = succeeded(&out, "karo approve as alice");
    assert!(said.contains("approved by alice"), "{said}");
    let run = s.wait_run_phase(approved, RunPhase::Running).await;
    let status = run.status.as_ref().expect("status");
    let approval = status.approval.as_ref().expect("status.approval");
    assert_eq!(
        approval.decision.as_deref(),
        Some("Approved"),
        "{approval:?}"
    );
    assert_eq!(approval.by.as_deref(), Some("alice"), "{approval:?}");
    assert_eq!(approval.reason.as_deref(), Some("disk is full"));
    assert!(approval.decided_at.is_some(), "{approval:?}");
    let jobs = s.wait_jobs_of("gated", 1).await;
    assert_owned_by(&jobs[0], &run);
    assert_eq!(
        recorded_jobs(&run),
        vec![jobs[0].metadata.name.clone().expect("name")]
    );
    s.wait_event("Approved", "approved by alice").await;

    // ... and rejects the other: it ends Rejected without a Job.
    let out = karo_as(
        &s.cp().user_kubeconfig("alice"),
        &[
            "reject",
            rejected,
            "-n",
            &s.ns,
            "--reason",
            "not during the freeze",
        ],
    );
    let said = succeeded(&out, "karo reject as alice");
    assert!(said.contains("rejected by alice"), "{said}");
    let run = s.wait_run_phase(rejected, RunPhase::Rejected).await;
    let status = run.status.as_ref().expect("status");
    assert_eq!(reason(&run), "Rejected", "{status:?}");
    assert!(
        status
            .message
            .as_deref()
            .unwrap_or("")
            .contains("rejected by alice: not during the freeze"),
        "{status:?}"
    );
    let approval = status.approval.as_ref().expect("status.approval");
    assert_eq!(
        approval.decision.as_deref(),
        Some("Rejected"),
        "{approval:?}"
    );
    assert_eq!(approval.by.as_deref(), Some("alice"), "{approval:?}");
    assert!(status.completion_time.is_some() && status.jobs.is_empty());

    // A decided Run is not decided again.
    let out = karo_as(
        &s.cp().user_kubeconfig("alice"),
        &["approve", rejected, "-n", &s.ns],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("not AwaitingApproval"),
        "{}",
        stderr(&out)
    );

    karo.wait_metric("karo_approvals_total{result=\"approved\"}", |v| v == 1.0)
        .await;
    karo.wait_metric("karo_approvals_total{result=\"rejected\"}", |v| v == 1.0)
        .await;
    wait_awaiting(&karo, 0).await;
    // One trigger (the approved Run); the one Job is the approved Run's.
    s.wait_trigger_count("gated", 1).await;
    let all = s.runs().await;
    let jobs = s.jobs().await;
    assert_eq!(jobs.len(), 1, "{:?}", phases(&all));
    assert_eq!(owner_run(&jobs[0], &all), approved);
}

#[tokio::test]
async fn no_decision_before_the_timeout_rejects_the_run() {
    let (s, karo) = Scenario::build("approval-timeout")
        .reaction(&reaction(
            "gated",
            "GatedBriefly",
            "  approval: {required: true, timeout: 3s}\n",
        ))
        .start()
        .await;
    let body = karo
        .notify_ok(&firing(
            [labels("GatedBriefly", "i1")],
            "2026-07-02T00:00:00Z",
        ))
        .await;
    let name = answered_runs(&body).remove(0);

    let run = s.wait_run_phase(&name, RunPhase::Rejected).await;
    let status = run.status.as_ref().expect("status");
    assert_eq!(reason(&run), "ApprovalTimeout", "{status:?}");
    let approval = status.approval.as_ref().expect("status.approval");
    let requested = approval.requested_at.as_ref().expect("requestedAt").0;
    let deadline = approval.deadline.as_ref().expect("deadline").0;
    assert_eq!(deadline.duration_since(requested).as_secs(), 3);
    // Not rejected before its deadline (the times as recorded, in seconds).
    let completed = status.completion_time.as_ref().expect("completionTime").0;
    assert!(
        completed >= deadline,
        "completed {completed}, deadline {deadline}"
    );
    assert_eq!(approval.decision, None, "{approval:?}");
    assert!(
        status.jobs.is_empty() && status.start_time.is_none(),
        "{status:?}"
    );
    s.wait_event("AwaitingApproval", &name).await;
    karo.wait_metric("karo_approvals_total{result=\"requested\"}", |v| v == 1.0)
        .await;
    karo.wait_metric("karo_approvals_total{result=\"expired\"}", |v| v == 1.0)
        .await;

    // Too late to approve.
    let out = karo_as(s.cp().kubeconfig(), &["approve", &name, "-n", &s.ns]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("is Rejected, not AwaitingApproval"),
        "{}",
        stderr(&out)
    );
    assert!(s.jobs().await.is_empty(), "a rejected Run has no Job");
    assert_eq!(phase(&s.run(&name).await), RunPhase::Rejected);
}

#[tokio::test]
async fn the_resolved_alert_cancels_a_run_waiting_for_approval() {
    let (s, karo) = Scenario::build("approval-resolved")
        .reaction(&reaction(
            "gated",
            "GatedResolved",
            "  approval: {required: true, timeout: 1h}\n",
        ))
        .start()
        .await;
    let starts = "2026-07-03T00:00:00Z";
    let body = karo
        .notify_ok(&firing([labels("GatedResolved", "i1")], starts))
        .await;
    let name = answered_runs(&body).remove(0);
    s.wait_run_phase(&name, RunPhase::AwaitingApproval).await;

    let mut resolved = alert(labels("GatedResolved", "i1"), json!({}), starts);
    resolved["status"] = json!("resolved");
    resolved["endsAt"] = json!(jiff::Timestamp::now().to_string());
    let mut resolved = notification(vec![resolved]);
    resolved["status"] = json!("resolved");
    karo.notify_ok(&resolved).await;

    let run = s.wait_run_phase(&name, RunPhase::Cancelled).await;
    let status = run.status.as_ref().expect("status");
    assert_eq!(reason(&run), "AlertResolved", "{status:?}");
    assert!(status.resolved_at.is_some(), "{status:?}");
    let approval = status.approval.as_ref().expect("status.approval");
    assert_eq!(approval.decision, None, "{approval:?}");
    assert!(
        status.jobs.is_empty() && status.start_time.is_none(),
        "{status:?}"
    );
    karo.wait_metric("karo_approvals_total{result=\"cancelled\"}", |v| v == 1.0)
        .await;
    let out = karo_as(s.cp().kubeconfig(), &["approve", &name, "-n", &s.ns]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(s.jobs().await.is_empty(), "a cancelled Run has no Job");
}

#[tokio::test]
async fn a_run_waiting_for_approval_holds_its_place_under_forbid_and_the_budget() {
    let (s, karo) = Scenario::build("approval-gates")
        .reaction(&reaction(
            "gated",
            "GatedForbid",
            "  approval: {required: true, timeout: 1h}\n  concurrencyPolicy: Forbid\n  budget: {maxRunsPerHour: 1}\n",
        ))
        .start()
        .await;
    // Two notifications, one after the other: the first Run waits for approval
    // before the second arrives.
    let first = karo
        .notify_ok(&firing(
            [labels("GatedForbid", "i1")],
            "2026-07-04T00:00:00Z",
        ))
        .await;
    let first = answered_runs(&first).remove(0);
    s.wait_run_phase(&first, RunPhase::AwaitingApproval).await;
    let second = karo
        .notify_ok(&firing(
            [labels("GatedForbid", "i2")],
            "2026-07-04T00:00:01Z",
        ))
        .await;
    let second = answered_runs(&second).remove(0);
    let run = s.wait_run_phase(&second, RunPhase::Skipped).await;
    assert!(
        ["Concurrency", "Budget"].contains(&reason(&run)),
        "the waiting Run holds its place: {:?}",
        run.status
    );
    // Approving the first runs exactly one Job.
    let out = karo_as(s.cp().kubeconfig(), &["approve", &first, "-n", &s.ns]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let run = s.wait_run_phase(&first, RunPhase::Running).await;
    assert_eq!(recorded_jobs(&run).len(), 1, "{:?}", run.status);
    assert_eq!(s.jobs().await.len(), 1, "one Job in all");
}

#[tokio::test]
async fn the_hourly_budget_holds_per_key_across_two_replicas_and_a_failover() {
    let (s, a) = Scenario::build("budget")
        .reaction(&reaction(
            "flood",
            "Flood",
            "  budget: {maxRunsPerHour: 3, key: [instance]}\n",
        ))
        .config(FAST_LEASE)
        .start()
        .await;
    let b = s.start_karo(FAST_LEASE).await;
    let leader = wait_leader(&[&a, &b]).await;

    // Twenty distinct alerts, ten on each instance, to both replicas at once.
    let flood = |devices: std::ops::Range<usize>| {
        firing(
            devices.map(|d| {
                let mut l = labels("Flood", if d % 2 == 0 { "db-1" } else { "db-2" });
                l["device"] = json!(format!("d{d}"));
                l
            }),
            "2026-07-04T00:00:00Z",
        )
    };
    let twenty = flood(0..20);
    let (from_a, from_b) = tokio::join!(a.notify_ok(&twenty), b.notify_ok(&twenty));
    let created =
        from_a["created"].as_u64().expect("created") + from_b["created"].as_u64().expect("created");
    assert_eq!(created, 20, "{from_a} {from_b}");
    assert_eq!(answered_runs(&from_a), answered_runs(&from_b));

    let runs = wait_runs_decided(&s, "flood", 20).await;
    assert_eq!(names(&runs), answered_runs(&from_a));
    let started = budget_held(&runs, 3);
    let jobs = s.wait_jobs_of("flood", 6).await;
    let mut owners: Vec<String> = jobs.iter().map(|j| owner_run(j, &runs)).collect();
    owners.sort();
    assert_eq!(
        owners, started,
        "one Job per started Run, none for the others"
    );

    // The leader dies; the survivor leads with nothing in memory and counts the
    // Runs in the API server: four more alerts, two per instance, start nothing.
    let (dead, survivor) = if leader == 0 { (a, b) } else { (b, a) };
    sigkill(dead);
    let body = survivor.notify_ok(&flood(20..24)).await;
    assert_eq!(body["created"], 4, "{body}");
    survivor.wait_metric("karo_leader", |v| v == 1.0).await;
    let runs = wait_runs_decided(&s, "flood", 24).await;
    assert_eq!(budget_held(&runs, 3), started);
    assert_eq!(s.jobs().await.len(), 6);
}

#[tokio::test]
async fn failures_in_a_row_stop_the_reaction_through_restarts_until_resumed() {
    let (s, mut a) = Scenario::build("failure-budget")
        .reaction(&reaction(
            "fragile",
            "Fragile",
            "  budget: {suspendAfterFailures: 2}\n",
        ))
        .config(FAST_LEASE)
        .start()
        .await;
    let mut b = s.start_karo(FAST_LEASE).await;
    bind_approver(&s, "alice").await;
    let fire = |instance: &str| firing([labels("Fragile", instance)], "2026-07-05T00:00:00Z");

    // Two Runs, each with its Job; both Jobs fail at the same moment.
    let body = a
        .notify_ok(&firing(
            ["i1", "i2"].map(|i| labels("Fragile", i)),
            "2026-07-05T00:00:00Z",
        ))
        .await;
    assert_eq!(body["created"], 2, "{body}");
    let mut jobs = Vec::new();
    for name in answered_runs(&body) {
        let run = s.wait_run_phase(&name, RunPhase::Running).await;
        let job = recorded_jobs(&run).remove(0);
        s.wait_job(&job).await;
        jobs.push(job);
    }
    tokio::join!(fail_job(&s, &jobs[0]), fail_job(&s, &jobs[1]));
    for name in answered_runs(&body) {
        s.wait_run_phase(&name, RunPhase::Failed).await;
    }

    // The reaction stops.
    let (why, message) = s.wait_ready("fragile", "False").await;
    assert_eq!(why, "FailureBudgetExhausted", "{message}");
    assert!(message.contains("karo resume"), "{message}");
    let stopped = s.reaction("fragile").await;
    let exhausted_at = stopped
        .status
        .as_ref()
        .and_then(|st| st.failure_budget_exhausted_at.clone())
        .expect("status.failureBudgetExhaustedAt");
    s.wait_event("FailureBudgetExhausted", "2 Runs in a row failed")
        .await;
    for karo in [&a, &b] {
        karo.wait_metric("karo_reactions_failure_budget_exhausted", |v| v == 1.0)
            .await;
    }
    no_run_for_a_new_alert(&s, &[&a, &b], &fire("i3"), 2).await;

    // Every replica killed and started again: still stopped.
    a.kill();
    b.kill();
    a.restart().await.unwrap_or_else(|e| panic!("{e:#}"));
    b.restart().await.unwrap_or_else(|e| panic!("{e:#}"));
    for karo in [&a, &b] {
        karo.wait_metric("karo_reactions_failure_budget_exhausted", |v| v == 1.0)
            .await;
    }
    no_run_for_a_new_alert(&s, &[&a, &b], &fire("i4"), 2).await;
    let (why, _) = s.wait_ready("fragile", "False").await;
    assert_eq!(why, "FailureBudgetExhausted");

    // An approver may not resume it (that patches the reaction)...
    let out = karo_as(
        &s.cp().user_kubeconfig("alice"),
        &["resume", "fragile", "-n", &s.ns],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("forbidden") && err.contains("karo-approver ClusterRole does not grant it"),
        "{err}"
    );
    let refused = s.reaction("fragile").await;
    assert!(
        !refused
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("karo.io/resumed-at"),
        "a refused resume changed the reaction"
    );

    // ... whoever may edit it does.
    let out = karo_as(s.cp().kubeconfig(), &["resume", "fragile", "-n", &s.ns]);
    let said = succeeded(&out, "karo resume");
    assert!(said.contains("resumed at"), "{said}");
    let resumed = s.reaction("fragile").await;
    let resumed_at: jiff::Timestamp = resumed
        .metadata
        .annotations
        .as_ref()
        .and_then(|n| n.get("karo.io/resumed-at"))
        .expect("annotation karo.io/resumed-at")
        .parse()
        .expect("a timestamp");
    assert!(
        resumed_at >= exhausted_at.0,
        "{resumed_at} {exhausted_at:?}"
    );
    s.wait_ready("fragile", "True").await;
    for karo in [&a, &b] {
        karo.wait_metric("karo_reactions_failure_budget_exhausted", |v| v == 0.0)
            .await;
    }

    // A new alert runs again; its failure alone (the earlier ones no longer count)
    // does not stop the reaction; a second one in a row does.
    let first = fail_one(&s, &b, &fire("i5")).await;
    wait_failed_runs(&s, 3, &first).await;
    let status = s.reaction("fragile").await.status.expect("status");
    assert_eq!(
        status.failure_budget_exhausted_at.as_ref(),
        Some(&exhausted_at),
        "one failure after the resume exhausted the budget again"
    );
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(ready.status, "True", "{ready:?}");

    let second = fail_one(&s, &a, &fire("i6")).await;
    wait_failed_runs(&s, 4, &second).await;
    let (why, _) = s.wait_ready("fragile", "False").await;
    assert_eq!(why, "FailureBudgetExhausted");
    let again = s
        .reaction("fragile")
        .await
        .status
        .and_then(|st| st.failure_budget_exhausted_at)
        .expect("status.failureBudgetExhaustedAt");
    assert!(
        again.0 >= resumed_at,
        "{again:?} before the resume {resumed_at}"
    );
    assert_eq!(s.runs_of("fragile").await.len(), 4);
    assert_eq!(s.jobs_of("fragile").await.len(), 4);
}

/// Sends `notification` (one alert) to `karo`, waits for its Run to run its Job,
/// fails the Job and waits for the Run to be Failed; returns the Run's name.
async fn fail_one(s: &Scenario, karo: &KaroProcess, notification: &Value) -> String {
    let body = karo.notify_ok(notification).await;
    assert_eq!(body["created"], 1, "{body}");
    let name = answered_runs(&body).remove(0);
    let run = s.wait_run_phase(&name, RunPhase::Running).await;
    let job = recorded_jobs(&run).remove(0);
    s.wait_job(&job).await;
    fail_job(s, &job).await;
    s.wait_run_phase(&name, RunPhase::Failed).await;
    name
}

/// Waits until the reaction `fragile` counts `n` failed Runs, the last `run`.
async fn wait_failed_runs(s: &Scenario, n: i64, run: &str) {
    let reactions: Api<AlertReaction> = Api::namespaced(s.cp().client().await, &s.ns);
    wait_until(SOON, || async {
        let status = reactions.get("fragile").await.ok().and_then(|r| r.status);
        status.is_some_and(|st| {
            st.failed_runs == Some(n) && st.last_run.is_some_and(|r| r.name == run)
        })
    })
    .await
    .unwrap_or_else(|e| panic!("failed Run {n} ({run}) never counted: {e}"));
}

/// Every started Run (Running, its Job recorded) is one of at most `max` per
/// instance, and exactly `max` per instance started; every other Run was Skipped
/// for the budget, with no Job. Returns the names of the started Runs, sorted.
fn budget_held(runs: &[AlertReactionRun], max: usize) -> Vec<String> {
    let mut started = Vec::new();
    for instance in ["db-1", "db-2"] {
        let of: Vec<&AlertReactionRun> = runs
            .iter()
            .filter(|r| r.spec.alert.labels.get("instance").map(String::as_str) == Some(instance))
            .collect();
        let counted = phases(&of.iter().map(|r| (*r).clone()).collect::<Vec<_>>());
        let running: Vec<&&AlertReactionRun> = of
            .iter()
            .filter(|r| phase(r) == RunPhase::Running)
            .collect();
        assert_eq!(running.len(), max, "{instance}: {counted:?}");
        for run in &running {
            assert_eq!(recorded_jobs(run).len(), 1, "{:?}", run.status);
            started.push(run.metadata.name.clone().expect("name"));
        }
        for run in of.iter().filter(|r| phase(r) != RunPhase::Running) {
            assert_eq!(phase(run), RunPhase::Skipped, "{instance}: {counted:?}");
            assert_eq!(reason(run), "Budget", "{:?}", run.status);
            let message = run
                .status
                .as_ref()
                .and_then(|st| st.message.as_deref())
                .unwrap_or("");
            assert!(
                message.contains(&format!("instance=\"{instance}\""))
                    && message.contains("maxRunsPerHour: 3"),
                "{message}"
            );
            assert!(recorded_jobs(run).is_empty(), "{:?}", run.status);
        }
    }
    started.sort();
    started
}

/// `notification` to each of `karos`: no reaction matches (the stopped one is not
/// Ready), no Run is created; the reaction still has `runs` Runs.
async fn no_run_for_a_new_alert(
    s: &Scenario,
    karos: &[&KaroProcess],
    notification: &Value,
    runs: usize,
) {
    for karo in karos {
        let body = karo.notify_ok(notification).await;
        assert_eq!(body["matched"], 0, "{body}");
        assert_eq!(body["created"], 0, "{body}");
        assert_eq!(body["runs"], json!([]), "{body}");
    }
    assert_eq!(s.runs_of("fragile").await.len(), runs);
}

/// Waits until `karo` (the only replica, watching one namespace) exports `n` Runs
/// waiting for approval: `karo_runs_awaiting_approval`, without or with labels.
async fn wait_awaiting(karo: &KaroProcess, n: usize) {
    wait_until(SOON, || async {
        let labelled = karo.metric("karo_runs_awaiting_approval{").await;
        let plain = karo.metric("karo_runs_awaiting_approval ").await;
        labelled + plain == n as f64
    })
    .await
    .unwrap_or_else(|e| panic!("karo_runs_awaiting_approval never {n}: {e}"));
}

/// Runs `karo <args>` with `kubeconfig` as the user's KUBECONFIG (no config file).
fn karo_as(kubeconfig: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(karo_bin());
    cmd.current_dir(repo_path(""))
        .env_remove("KARO_CONFIG")
        .env("KUBECONFIG", kubeconfig)
        .args(args);
    run_output(cmd, None).expect("running karo")
}

/// Applies the chart's `karo-approver` ClusterRole, as `helm template` renders it
/// with `rbac.approver.create` (that object alone), and binds it to `user` in the
/// scenario's namespace.
async fn bind_approver(s: &Scenario, user: &str) {
    let home = TestDir::new("helm-home").expect("helm home");
    let chart = repo_path("charts/karo").display().to_string();
    let mut helm = Command::new(helm3().unwrap_or_else(|e| panic!("{e:#}")));
    helm.args(["template", "karo", &chart, "-n", "karo-system"])
        .args(["--show-only", "templates/rbac.yaml"])
        .args(["--set", "rbac.approver.create=true"])
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .env_remove("KUBECONFIG");
    let rendered = succeeded(
        &run_output(helm, None).expect("running helm"),
        "helm template",
    );
    let role = documents(&rendered)
        .into_iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "karo-approver")
        .unwrap_or_else(|| panic!("no ClusterRole karo-approver in:\n{rendered}"));
    succeeded(
        &s.cp().kubectl_with_stdin(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=karo-tests",
                "-f",
                "-",
            ],
            Some(role.to_string().as_bytes()),
        ),
        "applying the karo-approver ClusterRole",
    );
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("karo-approver-{user}"), "namespace": s.ns},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "karo-approver",
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .expect("a RoleBinding");
    Api::<RoleBinding>::namespaced(s.cp().client().await, &s.ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap_or_else(|e| panic!("binding karo-approver to {user}: {e}"));
    // The binding takes effect once the API server's RBAC cache has it.
    wait_until(SOON, || async {
        let out = s.cp().kubectl(&[
            "auth",
            "can-i",
            "patch",
            "alertreactionruns.karo.io",
            "-n",
            &s.ns,
            "--as",
            user,
        ]);
        stdout(&out).trim() == "yes"
    })
    .await
    .unwrap_or_else(|e| panic!("{user} never allowed to patch Runs: {e}"));
}

/// Whether the Run carries the annotation `name`.
fn annotated(run: &AlertReactionRun, name: &str) -> bool {
    run.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(name))
}
