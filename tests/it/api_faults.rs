//! The API server stops answering: a fault proxy between Karo and the API server
//! holds every byte back. No call of Karo's waits for the answer without end
//! (`limits.apiTimeoutSeconds`), so the webhook answers a 5xx that Alertmanager
//! retries, and a stop ends; and the Events queued when Karo is stopped are still
//! published once the API server answers again.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use serde_json::{json, Value};

use crate::support::fault_proxy::FaultProxy;
use crate::support::karo_process::KaroProcess;
use crate::support::ready::wait_for;
use crate::support::scenario::Scenario;
use crate::support::webhook::firing;
use crate::support::SOON;

/// A reaction `name` to `alert` with one busybox action; `spec` adds lines.
fn reaction(name: &str, alert: &str, spec: &str) -> String {
    format!(
        "metadata: {{name: {name}}}\nspec:\n  alertName: {alert}\n{spec}  actions: [{{name: a, image: busybox}}]\n"
    )
}

/// Karo watching the scenario's namespace through `proxy`, `extra` in its config;
/// returns once every reaction named in `ready` is Ready.
async fn karo_behind(s: &Scenario, proxy: &FaultProxy, extra: &str, ready: &[&str]) -> KaroProcess {
    let karo = KaroProcess::start_with_config(proxy.kubeconfig(), &s.karo_config(extra))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    for name in ready {
        s.wait_ready(name, "True").await;
    }
    karo
}

#[tokio::test]
async fn a_call_the_api_server_does_not_answer_fails_and_the_webhook_answers_5xx() {
    let s = Scenario::build("api-timeout")
        .reaction(&reaction("restart", "Stalled", ""))
        .create()
        .await;
    let proxy = FaultProxy::in_front_of(s.cp()).unwrap_or_else(|e| panic!("{e:#}"));
    let karo = karo_behind(&s, &proxy, "limits: {apiTimeoutSeconds: 2}\n", &["restart"]).await;
    let notification = firing([json!({"alertname": "Stalled"})], "2026-07-01T00:00:00Z");

    proxy.stall();
    // Without a timeout the Run's creation waits for the API server as long as it
    // stays away, and so does Alertmanager's request. With it, the call fails and
    // the answer says to retry.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let answer = client
        .post(karo.webhook())
        .json(&notification)
        .send()
        .await
        .expect("Karo answers while the API server does not");
    let code = answer.status().as_u16();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    assert!((500..600).contains(&code), "{code}: {body}");
    assert!(karo.metric("errors_total{kind=\"api\"}").await >= 1.0);

    // Alertmanager's retry, once the API server answers again: one Run, one Job.
    proxy.release();
    let body = wait_for(SOON, || async {
        let (code, body) = karo.notify(&notification).await;
        (code == 200).then_some(body)
    })
    .await
    .unwrap_or_else(|e| panic!("the retry never succeeded: {e}\n{}", karo.log_text()));
    assert_eq!(body["matched"], 1, "{body}");
    s.wait_one_job_of("restart").await;
    assert_eq!(s.runs().await.len(), 1);
    assert_eq!(s.jobs().await.len(), 1);
}

#[tokio::test]
async fn karo_stops_while_the_api_server_does_not_answer() {
    // The stop releases the Lease and writes what is queued: each call ends at its
    // timeout, so the process ends although the API server never answers again.
    let s = Scenario::build("api-stop")
        .reaction(&reaction("restart", "Stop", ""))
        .create()
        .await;
    let proxy = FaultProxy::in_front_of(s.cp()).unwrap_or_else(|e| panic!("{e:#}"));
    let mut karo = karo_behind(&s, &proxy, "limits: {apiTimeoutSeconds: 2}\n", &["restart"]).await;
    // It leads (the Lease is its own), so the stop has a Lease to hand over.
    karo.wait_metric("karo_leader", |v| v == 1.0).await;
    proxy.stall();
    karo.signal(libc::SIGTERM);
    let status = karo.wait_exit(Duration::from_secs(120));
    let log = karo.log_text();
    let status = status.unwrap_or_else(|| panic!("Karo never stopped\n{log}"));
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("stopped"), "{log}");
}

#[tokio::test]
async fn events_queued_at_shutdown_are_published() {
    // Suspended reactions: the notification's answer needs no API call, and each
    // reaction gets a `Skipped` Event, queued while the API server is cut off.
    const REACTIONS: usize = 12;
    let mut builder = Scenario::build("events-drain");
    for i in 0..REACTIONS {
        builder = builder.reaction(&reaction(&format!("r{i}"), "Drain", "  suspend: true\n"));
    }
    let s = builder.create().await;
    let proxy = FaultProxy::in_front_of(s.cp()).unwrap_or_else(|e| panic!("{e:#}"));
    let names: Vec<String> = (0..REACTIONS).map(|i| format!("r{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut karo = karo_behind(&s, &proxy, "", &names).await;

    proxy.stall();
    let body = karo
        .notify_ok(&firing(
            [json!({"alertname": "Drain"})],
            "2026-07-01T00:00:00Z",
        ))
        .await;
    assert_eq!(body["skipped"], REACTIONS, "{body}");
    karo.signal(libc::SIGTERM);
    wait_for(SOON, || async {
        karo.log_text().contains("shutting down").then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", karo.log_text()));
    // The stop goes as far as it can without the API server, then it answers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.release();
    let status = karo.wait_exit(Duration::from_secs(120));
    let log = karo.log_text();
    let status = status.unwrap_or_else(|| panic!("Karo never stopped\n{log}"));
    assert!(status.success(), "{status:?}\n{log}");

    let events: Api<Event> = Api::namespaced(s.cp().client().await, &s.ns);
    let skipped: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Skipped"))
        .collect();
    assert_eq!(skipped.len(), REACTIONS, "{skipped:#?}\n{log}");
}
