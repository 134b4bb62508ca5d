//! Retention of finished Runs, with short windows: a Run whose occurrence is no longer
//! delivered goes after `runs.retention`, a resolved one after
//! `runs.retentionAfterResolved`, the oldest resolved ones beyond `runs.historyLimit`;
//! a Run whose occurrence is still delivered stays, however long it has been finished.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{json, Value};

use super::{answered_runs, labels, reaction};
use crate::support::karo_lib::{AlertReactionRun, RunPhase};
use crate::support::ready::{wait_for, wait_until};
use crate::support::runs::{complete_job, recorded_jobs, run_opt, wait_run_gone};
use crate::support::scenario::Scenario;
use crate::support::webhook::{alert, firing, notification};

/// `runs.retention` of the first scenario.
const RETENTION: Duration = Duration::from_secs(20);
/// Hang guard for a deletion: the windows, a sweep period (at most 60 s) and slack.
const DELETED_WITHIN: Duration = Duration::from_secs(150);

#[tokio::test]
async fn retention() {
    tokio::join!(unseen_resolved_and_delivered(), history_limit());
}

/// Three finished Runs of one reaction: one never delivered again (deleted after
/// `retention`), one delivered every few seconds (kept for longer than `retention`),
/// one resolved (deleted after `retentionAfterResolved`).
async fn unseen_resolved_and_delivered() {
    let (s, karo) = Scenario::build("retention")
        .reaction(&reaction("fix", "Kept", ""))
        .config("runs: {retention: 20s, retentionAfterResolved: 5s, historyLimit: 2}\n")
        .start()
        .await;
    let starts = "2026-06-10T00:00:00Z";
    let occurrence = |instance: &str| firing([labels("Kept", instance)], starts);
    let mut by_instance = Vec::new();
    for instance in ["unseen", "delivered", "resolved"] {
        let body = karo.notify_ok(&occurrence(instance)).await;
        assert_eq!(body["created"], 1, "{body}");
        by_instance.push(answered_runs(&body).remove(0));
    }
    let [unseen, delivered, resolved] = <[String; 3]>::try_from(by_instance).expect("3 Runs");
    // The resolved Run finishes last, strictly later (completion times have seconds):
    // among the two newest, the history limit keeps it, and only its resolution can
    // delete it.
    let mut older = Vec::new();
    for run in [&unseen, &delivered] {
        older.push(complete(&s, run).await);
    }
    next_second(older.into_iter().max().expect("two completions")).await;
    complete(&s, &resolved).await;

    // The resolved notification of one occurrence.
    karo.notify_ok(&resolved_notification("Kept", "resolved", starts))
        .await;
    wait_until(DELETED_WITHIN, || async {
        match run_opt(&s, &resolved).await {
            Some(run) => run.status.and_then(|st| st.resolved_at).is_some(),
            None => true,
        }
    })
    .await
    .unwrap_or_else(|e| panic!("the resolved Run never marked resolved: {e}"));

    // Alertmanager keeps delivering one occurrence (every few seconds here, its
    // repeat_interval in real life), never the two others.
    let finished = Instant::now();
    let mut resolved_gone = None;
    let mut unseen_gone = None;
    let mut every = tokio::time::interval(Duration::from_secs(2));
    loop {
        every.tick().await;
        let body = karo.notify_ok(&occurrence("delivered")).await;
        assert_eq!(body["deduplicated"], 1, "{body}");
        assert_eq!(answered_runs(&body), vec![delivered.clone()], "{body}");
        let kept = run_opt(&s, &delivered).await;
        assert!(
            kept.as_ref()
                .is_some_and(|r| phase_is(r, RunPhase::Succeeded)),
            "the delivered Run was deleted or changed after {:?}: {kept:?}",
            finished.elapsed()
        );
        let unseen_exists = run_opt(&s, &unseen).await.is_some();
        if resolved_gone.is_none() && run_opt(&s, &resolved).await.is_none() {
            resolved_gone = Some(finished.elapsed());
            // Deleted for its resolution: the unseen Run, as old, is still there.
            assert!(unseen_exists, "the unseen Run went before the resolved one");
        }
        if unseen_gone.is_none() && !unseen_exists {
            unseen_gone = Some(finished.elapsed());
        }
        // Delivered for well over `retention` past its end, and the others are gone.
        if finished.elapsed() > RETENTION + RETENTION / 2
            && resolved_gone.is_some()
            && unseen_gone.is_some()
        {
            break;
        }
        assert!(
            finished.elapsed() < DELETED_WITHIN,
            "hang guard: unseen deleted {unseen_gone:?}, resolved deleted {resolved_gone:?}; Runs {:?}",
            s.runs()
                .await
                .iter()
                .map(|r| (r.metadata.name.clone(), r.status.clone()))
                .collect::<Vec<_>>()
        );
    }
    let kept = run_opt(&s, &delivered).await.expect("the delivered Run");
    let status = kept.status.expect("status");
    assert!(status.last_seen.is_some(), "{status:?}");
    assert!(status.resolved_at.is_none(), "{status:?}");
    let log = karo.log_text();
    assert!(
        deleted_for(&log, &resolved, "retentionAfterResolved"),
        "the resolved Run's deletion in the log:\n{log}"
    );
    assert!(
        deleted_for(&log, &unseen, "not delivered for runs.retention"),
        "the unseen Run's deletion in the log:\n{log}"
    );
    assert_eq!(s.runs().await.len(), 1);
}

/// With long windows and `historyLimit: 2`: of four finished, resolved Runs the two
/// oldest go; an older finished Run that is not resolved and still delivered stays.
async fn history_limit() {
    let (s, karo) = Scenario::build("history")
        .reaction(&reaction("fix", "History", ""))
        .config("runs: {retention: 1h, retentionAfterResolved: 1h, historyLimit: 2}\n")
        .start()
        .await;
    let starts = "2026-06-11T00:00:00Z";
    let instances = ["u", "r1", "r2", "r3", "r4"];
    let body = karo
        .notify_ok(&firing(instances.map(|i| labels("History", i)), starts))
        .await;
    assert_eq!(body["created"], 5, "{body}");
    s.wait_jobs(5).await;
    let mut names = Vec::new();
    for instance in instances {
        names.push(run_name(&s, "History", instance).await);
    }
    let [u, r1, r2, r3, r4] = <[String; 5]>::try_from(names).expect("5 Runs");

    // Finished in two waves, the second strictly later (completion times have
    // seconds): u, r1 and r2 are older than r3 and r4.
    let mut first_wave = Vec::new();
    for run in [&u, &r1, &r2] {
        first_wave.push(complete(&s, run).await);
    }
    let latest = first_wave.iter().max().copied().expect("three completions");
    next_second(latest).await;
    for run in [&r3, &r4] {
        let done = complete(&s, run).await;
        assert!(
            done.as_second() > latest.as_second(),
            "{done} after {latest}"
        );
    }

    // r1..r4 resolve; u is delivered again.
    let resolved: Vec<Value> = ["r1", "r2", "r3", "r4"]
        .iter()
        .map(|i| resolved_alert("History", i, starts))
        .collect();
    karo.notify_ok(&notification(resolved)).await;
    let again = karo
        .notify_ok(&firing([labels("History", "u")], starts))
        .await;
    assert_eq!(again["deduplicated"], 1, "{again}");

    wait_run_gone(&s, &r1, DELETED_WITHIN).await;
    wait_run_gone(&s, &r2, DELETED_WITHIN).await;
    for (name, resolved) in [(&r3, true), (&r4, true), (&u, false)] {
        let run = run_opt(&s, name)
            .await
            .unwrap_or_else(|| panic!("Run {name} deleted"));
        let status = run.status.expect("status");
        assert_eq!(status.phase, Some(RunPhase::Succeeded), "{status:?}");
        assert_eq!(status.resolved_at.is_some(), resolved, "{name}: {status:?}");
    }
    assert_eq!(s.runs().await.len(), 3);
    let log = karo.log_text();
    assert!(
        deleted_for(&log, &r1, "historyLimit") && deleted_for(&log, &r2, "historyLimit"),
        "r1 and r2 deleted for the history limit:\n{log}"
    );
}

/// Marks the Run's Job Complete and waits until the Run succeeded; returns its
/// completion time.
async fn complete(s: &Scenario, run: &str) -> Timestamp {
    let running = s.wait_run_phase(run, RunPhase::Running).await;
    for job in recorded_jobs(&running) {
        complete_job(s, &job).await;
    }
    let done = s.wait_run_phase(run, RunPhase::Succeeded).await;
    done.status
        .and_then(|st| st.completion_time)
        .expect("completionTime")
        .0
}

/// Waits until the clock is past the second of `t`.
async fn next_second(t: Timestamp) {
    wait_until(Duration::from_secs(10), || async {
        Timestamp::now().as_second() > t.as_second()
    })
    .await
    .expect("the clock moves on");
}

/// The name of the Run of alert `alert_name` on `instance` (by its labels).
async fn run_name(s: &Scenario, alert_name: &str, instance: &str) -> String {
    wait_for(Duration::from_secs(60), || async {
        s.runs()
            .await
            .into_iter()
            .find(|r| {
                r.spec.alert.labels.get("alertname").map(String::as_str) == Some(alert_name)
                    && r.spec.alert.labels.get("instance").map(String::as_str) == Some(instance)
            })
            .and_then(|r| r.metadata.name)
    })
    .await
    .unwrap_or_else(|e| panic!("no Run of {alert_name} on {instance}: {e}"))
}

fn phase_is(run: &AlertReactionRun, phase: RunPhase) -> bool {
    run.status.as_ref().and_then(|s| s.phase) == Some(phase)
}

/// The alert on `instance`, resolved now.
fn resolved_alert(alert_name: &str, instance: &str, starts: &str) -> Value {
    let mut a = alert(labels(alert_name, instance), json!({}), starts);
    a["status"] = json!("resolved");
    a["endsAt"] = json!(Timestamp::now().to_string());
    a
}

fn resolved_notification(alert_name: &str, instance: &str, starts: &str) -> Value {
    let mut n = notification(vec![resolved_alert(alert_name, instance, starts)]);
    n["status"] = json!("resolved");
    n
}

/// Whether Karo's log says it deleted the Run `run` for a reason containing `why`.
fn deleted_for(log: &str, run: &str, why: &str) -> bool {
    log.lines().any(|l| {
        l.contains("Run deleted by retention")
            && l.contains(&format!("run={run}"))
            && l.contains(why)
    })
}
