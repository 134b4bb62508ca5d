//! Two replicas, the one that leads killed: the other accepts the alerts, takes the
//! Lease once it expires, and creates every Job exactly once.

use super::{answered_runs, labels, names, owner_run, reaction};
use crate::support::karo_lib::RunPhase;
use crate::support::runs::{recorded_jobs, sigkill, wait_leader};
use crate::support::scenario::Scenario;
use crate::support::webhook::firing;

#[tokio::test]
async fn failover() {
    let config = "leaderElection: {leaseDuration: 5s}\n";
    let (s, first) = Scenario::build("failover")
        .reaction(&reaction("fix", "Failover", ""))
        .config(config)
        .start()
        .await;
    let second = s.start_karo(config).await;
    let leader = wait_leader(&[&first, &second]).await;
    let (leader, survivor) = if leader == 0 {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(survivor.metric("karo_leader").await, 0.0);

    // The leader dies without handing the Lease over.
    sigkill(leader);
    let body = survivor
        .notify_ok(&firing(
            ["i1", "i2", "i3"].map(|i| labels("Failover", i)),
            "2026-06-30T00:00:00Z",
        ))
        .await;
    assert_eq!(body["created"], 3, "{body}");
    let runs = answered_runs(&body);

    // The survivor takes the Lease and does the work, once.
    survivor.wait_metric("karo_leader", |v| v == 1.0).await;
    let jobs = s.wait_jobs(3).await;
    for run in &runs {
        let run = s.wait_run_phase(run, RunPhase::Running).await;
        assert_eq!(recorded_jobs(&run).len(), 1, "{:?}", run.status);
    }
    let all = s.wait_runs(3).await;
    assert_eq!(names(&all), runs);
    let mut owners: Vec<String> = jobs.iter().map(|j| owner_run(j, &all)).collect();
    owners.sort();
    assert_eq!(owners, runs, "one Job per Run");
    assert!(survivor
        .log_text()
        .contains("leading: following AlertReactionRuns"));
    assert_eq!(s.jobs().await.len(), 3);
}
