//! Who writes a reaction's `Ready` condition, and when: replicas that judge a
//! reaction differently (a configuration reaching pods at different times, a
//! rolling upgrade) stop after a few writes instead of fighting; and a verdict on
//! an older generation, as a reload gives while the watch lags, never lands on a
//! newer one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;

use crate::support::fault_proxy::FaultProxy;
use crate::support::karo_lib::AlertReaction;
use crate::support::karo_process::KaroProcess;
use crate::support::ready::wait_for;
use crate::support::scenario::Scenario;
use crate::support::SOON;

/// A reaction whose one action runs as the service account `remediator`.
const REACTION: &str = "metadata: {name: fix}\nspec:\n  alertName: Fix\n  actions: [{name: a, image: busybox, serviceAccount: remediator}]\n";

/// A policy that allows the reaction's service account, or not.
fn policy(allowed: &str) -> String {
    format!("policy:\n  allowedServiceAccounts: [{allowed}]\n")
}

/// What one version of the reaction showed.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    generation: i64,
    observed: Option<i64>,
    ready: Option<(String, String)>,
}

/// Records every version of the reaction `name` the API server shows from now on.
async fn record(s: &Scenario, name: &str) -> Arc<Mutex<Vec<Seen>>> {
    let api: Api<AlertReaction> = Api::namespaced(s.cp().client().await, &s.ns);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    let mut stream = watcher::watch_object(api, name).boxed();
    tokio::spawn(async move {
        while let Some(item) = stream.next().await {
            let Ok(Some(r)) = item else { continue };
            let status = r.status.as_ref();
            let version = Seen {
                generation: r.metadata.generation.unwrap_or_default(),
                observed: status.and_then(|s| s.observed_generation),
                ready: status
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                    .map(|c| (c.status.clone(), c.reason.clone())),
            };
            let mut seen = out.lock().expect("lock");
            if seen.last() != Some(&version) {
                seen.push(version);
            }
        }
    });
    seen
}

fn versions(seen: &Arc<Mutex<Vec<Seen>>>) -> Vec<Seen> {
    seen.lock().expect("lock").clone()
}

#[tokio::test]
async fn replicas_that_judge_a_reaction_differently_stop_after_a_few_writes() {
    let s = Scenario::build("disagree")
        .reaction(REACTION)
        .create()
        .await;
    let seen = record(&s, "fix").await;
    // One replica allows the reaction's service account, the other does not.
    let allows = s.start_karo(&policy("remediator")).await;
    let refuses = s.start_karo(&policy("someone-else")).await;

    // Each writes its verdict a bounded number of times, then one of them sees
    // the other overwrite it once too often, stops, and says so.
    let (karo, other) = wait_for(SOON, || async {
        let a = allows
            .metric("errors_total{kind=\"status_disagreement\"}")
            .await;
        let r = refuses
            .metric("errors_total{kind=\"status_disagreement\"}")
            .await;
        match (a > 0.0, r > 0.0) {
            (true, _) => Some((&allows, &refuses)),
            (_, true) => Some((&refuses, &allows)),
            _ => None,
        }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "no replica stopped: {e}\n{:#?}\n{}\n{}",
            versions(&seen),
            allows.log_text(),
            refuses.log_text()
        )
    });
    assert!(
        karo.log_text().contains("another writer keeps overwriting"),
        "{}",
        karo.log_text()
    );
    // Then nothing more is written: the record stays as it is.
    let settled = versions(&seen);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = versions(&seen);
    assert_eq!(after, settled, "still fighting");
    // At most three writes of each verdict, plus the first version (no status).
    let flips = after.iter().filter(|v| v.ready.is_some()).count();
    assert!(
        (2..=6).contains(&flips),
        "{flips} Ready writes: {after:#?}\n{}\n{}",
        karo.log_text(),
        other.log_text()
    );
    // The replica that stopped still judges and serves: its Ready condition is
    // simply not written.
    let judged =
        karo.metric("karo_reactions_loaded").await + karo.metric("karo_reactions_invalid").await;
    assert_eq!(judged, 1.0);
}

#[tokio::test]
async fn a_reload_does_not_write_an_older_generations_verdict_over_a_newer_one() {
    let s = Scenario::build("stale-verdict")
        .reaction(REACTION)
        .create()
        .await;
    let proxy = FaultProxy::in_front_of(s.cp()).unwrap_or_else(|e| panic!("{e:#}"));
    let karo =
        KaroProcess::start_with_config(proxy.kubeconfig(), &s.karo_config(&policy("remediator")))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    s.wait_ready("fix", "True").await;
    let seen = record(&s, "fix").await;

    // Karo is cut off from the API server; meanwhile the reaction changes
    // (generation 2) and so does Karo's policy, which no longer allows it.
    proxy.stall();
    let api: Api<AlertReaction> = Api::namespaced(s.cp().client().await, &s.ns);
    api.patch(
        "fix",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"cooldown": "5m"}})),
    )
    .await
    .expect("update the reaction");
    std::fs::write(karo.config_path(), s.karo_config(&policy("someone-else")))
        .expect("write the config");
    // The reload judges the reaction it has cached, generation 1, again.
    wait_for(SOON, || async {
        karo.log_text()
            .contains("configuration reloaded")
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", karo.log_text()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.release();

    // Generation 2 gets its own verdict.
    wait_for(SOON, || async {
        versions(&seen)
            .iter()
            .any(|v| v.observed == Some(2) && v.ready.as_ref().is_some_and(|r| r.0 == "False"))
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:#?}\n{}", versions(&seen), karo.log_text()));
    // Never generation 1's verdict under the new policy on the changed object.
    let all = versions(&seen);
    assert!(
        !all.iter().any(|v| v.generation == 2
            && v.observed == Some(1)
            && v.ready.as_ref().is_some_and(|r| r.0 == "False")),
        "{all:#?}"
    );
}
