//! `concurrencyPolicy: Forbid` and `cooldown` are decided atomically per reaction:
//! many alerts of one notification, or the same notification given to two replicas at
//! once, never get more than one Job past the gate.

use serde_json::{json, Value};

use super::{answered_runs, labels, names, owner_run, reaction};
use crate::support::karo_lib::{AlertReactionRun, RunPhase};
use crate::support::karo_process::KaroProcess;
use crate::support::runs::{phase, phases, reason, recorded_jobs, wait_runs_decided};
use crate::support::scenario::Scenario;
use crate::support::webhook::{alert, firing, notification};

#[tokio::test]
async fn forbid_and_cooldown_under_concurrency() {
    let (s, a) = Scenario::build("concurrency")
        .reaction(&reaction(
            "forbid-one",
            "ForbidOne",
            "  concurrencyPolicy: Forbid\n",
        ))
        .reaction(&reaction(
            "forbid-two",
            "ForbidTwo",
            "  concurrencyPolicy: Forbid\n",
        ))
        .reaction(&reaction("cool", "Cool", "  cooldown: 1h\n"))
        .start()
        .await;
    // A second replica on the same namespace: both accept webhooks, one leads.
    let b = s.start_karo("").await;

    // (a) Ten alerts of a Forbid reaction in one notification: one Job.
    let ten = firing(
        (0..10).map(|i| labels("ForbidOne", &format!("i{i}"))),
        "2026-06-20T00:00:00Z",
    );
    let body = a.notify_ok(&ten).await;
    assert_eq!(body["created"], 10, "{body}");
    let runs = wait_runs_decided(&s, "forbid-one", 10).await;
    assert_eq!(names(&runs), answered_runs(&body));
    one_ran_others_skipped(&s, "forbid-one", &runs, "Concurrency").await;

    // (b) The same notification of five alerts to both replicas at once.
    let five = firing(
        (0..5).map(|i| labels("ForbidTwo", &format!("i{i}"))),
        "2026-06-20T00:00:00Z",
    );
    let runs = both_at_once(&a, &b, &five, 5).await;
    let decided = wait_runs_decided(&s, "forbid-two", 5).await;
    assert_eq!(names(&decided), runs);
    one_ran_others_skipped(&s, "forbid-two", &decided, "Concurrency").await;

    // (c) One alert (one fingerprint), five occurrences in one notification, to both
    // replicas at once: the first to start puts the others in cooldown.
    let starts = [
        "2026-06-20T00:00:00Z",
        "2026-06-20T00:01:00Z",
        "2026-06-20T00:02:00Z",
        "2026-06-20T00:03:00Z",
        "2026-06-20T00:04:00Z",
    ];
    let occurrences: Vec<Value> = starts
        .iter()
        .map(|t| alert(labels("Cool", "i1"), json!({}), t))
        .collect();
    let runs = both_at_once(&a, &b, &notification(occurrences), 5).await;
    let decided = wait_runs_decided(&s, "cool", 5).await;
    assert_eq!(names(&decided), runs);
    let fingerprints: Vec<&str> = decided
        .iter()
        .map(|r| r.spec.alert.fingerprint.as_str())
        .collect();
    assert!(
        fingerprints.iter().all(|f| *f == fingerprints[0]),
        "{fingerprints:?}"
    );
    one_ran_others_skipped(&s, "cool", &decided, "Cooldown").await;

    // Nothing more came of it: one Job per reaction.
    assert_eq!(s.wait_jobs(3).await.len(), 3);
}

/// Posts `notification` to both replicas at the same time; checks that together
/// they created each of the `n` Runs once (the other answer: deduplicated) and
/// returns the Run names, sorted.
async fn both_at_once(
    a: &KaroProcess,
    b: &KaroProcess,
    notification: &Value,
    n: usize,
) -> Vec<String> {
    let (from_a, from_b) = tokio::join!(a.notify_ok(notification), b.notify_ok(notification));
    let created = from_a["created"].as_u64().expect("created") as usize
        + from_b["created"].as_u64().expect("created") as usize;
    let deduplicated = from_a["deduplicated"].as_u64().expect("deduplicated") as usize
        + from_b["deduplicated"].as_u64().expect("deduplicated") as usize;
    assert_eq!(created, n, "{from_a} {from_b}");
    assert_eq!(deduplicated, n, "{from_a} {from_b}");
    let runs = answered_runs(&from_a);
    assert_eq!(runs.len(), n, "{from_a}");
    assert_eq!(runs, answered_runs(&from_b));
    runs
}

/// Exactly one of the reaction's `runs` started (Running, with its one Job) and
/// every other one was Skipped for `why`, with no Job.
async fn one_ran_others_skipped(
    s: &Scenario,
    reaction: &str,
    runs: &[AlertReactionRun],
    why: &str,
) {
    let counted = phases(runs);
    let running: Vec<&AlertReactionRun> = runs
        .iter()
        .filter(|r| phase(r) == RunPhase::Running)
        .collect();
    assert_eq!(running.len(), 1, "{reaction}: {counted:?}");
    let skipped: Vec<&AlertReactionRun> = runs
        .iter()
        .filter(|r| phase(r) == RunPhase::Skipped)
        .collect();
    assert_eq!(skipped.len(), runs.len() - 1, "{reaction}: {counted:?}");
    for run in &skipped {
        assert_eq!(reason(run), why, "{:?}", run.status);
        assert!(recorded_jobs(run).is_empty(), "{:?}", run.status);
    }
    let jobs = s.jobs_of(reaction).await;
    assert_eq!(jobs.len(), 1, "Jobs of {reaction}");
    assert_eq!(
        Some(owner_run(&jobs[0], runs)),
        running[0].metadata.name.clone(),
        "the Job of {reaction} belongs to its running Run"
    );
    assert_eq!(
        recorded_jobs(running[0]),
        vec![jobs[0].metadata.name.clone().expect("name")]
    );
}
