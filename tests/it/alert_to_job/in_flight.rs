//! A notification Karo has begun to handle is handled to the end: when its client
//! goes away before the answer (Alertmanager gives up after its timeout), and when
//! Karo is told to stop meanwhile. A fault proxy between Karo and the API server
//! holds the Run's creation back until the test lets it through.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::reaction;
use crate::support::fault_proxy::FaultProxy;
use crate::support::karo_process::KaroProcess;
use crate::support::ready::wait_for;
use crate::support::scenario::{assert_owned_by, Scenario};
use crate::support::webhook::{firing, post_json};
use crate::support::SOON;

const REACTION: &str = "restart";
const ALERT: &str = "InFlight";

#[tokio::test]
async fn a_notification_whose_client_goes_away_is_handled_to_the_end() {
    let (s, proxy, karo) = karo_behind_proxy("client-gone").await;
    proxy.stall();
    let mut client = send_notification(&karo, &notification()).await;
    // Karo is handling it: the alert is counted, and the Run's creation waits for
    // the API server.
    karo.wait_metric("karo_alerts_received_total", |n| n >= 1.0)
        .await;
    // The client waits a second for the answer (none can come while the API server
    // is cut off), then gives up and closes the connection.
    let mut buf = [0u8; 1024];
    let answered = tokio::time::timeout(Duration::from_secs(1), client.read(&mut buf)).await;
    if let Ok(read) = answered {
        let got = read.map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
        panic!("Karo answered while the API server was cut off: {got:?}");
    }
    let peer = client.local_addr().expect("the client's address");
    drop(client);
    // Karo saw the client go (its HTTP server ends the connection) before the API
    // server answers.
    wait_log(&karo, |line| {
        line.contains("connection closed") && line.contains(&format!("peer={peer}"))
    })
    .await;
    proxy.release();

    let run = s.wait_runs(1).await.remove(0);
    let run_name = run.metadata.name.clone().expect("a Run has a name");
    // Recorded as a created Run, as if the client had waited.
    karo.wait_metric("karo_runs_created_total", |n| n >= 1.0)
        .await;
    wait_log(&karo, |line| {
        line.contains("Run created") && line.contains(&format!("run={run_name}"))
    })
    .await;
    // The leader follows the Run: its one Job.
    let job = s.wait_one_job_of(REACTION).await;
    assert_owned_by(&job, &run);
    // Exactly once.
    assert_eq!(s.runs().await.len(), 1);
    assert_eq!(karo.metric("karo_runs_created_total").await, 1.0);
    assert_eq!(karo.metric("karo_alerts_received_total").await, 1.0);
}

#[tokio::test]
async fn a_notification_in_flight_at_shutdown_is_handled_to_the_end() {
    // Nothing of the stop (the server's graceful stop, the wait for notifications
    // being handled, the Lease's release) cuts the handling short, and Karo still
    // exits cleanly once the API server answers again.
    let (s, proxy, mut karo) = karo_behind_proxy("stopping").await;
    proxy.stall();
    let webhook = karo.webhook();
    // The client waits for the answer.
    let answer = tokio::spawn(async move { post_json(&webhook, &notification()).await });
    karo.wait_metric("karo_alerts_received_total", |n| n >= 1.0)
        .await;
    karo.signal(libc::SIGTERM);
    wait_log(&karo, |line| {
        line.contains("shutting down: finishing requests in flight")
    })
    .await;
    // Let the shutdown go as far as it can without the API server.
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.release();

    let (code, body) = answer.await.expect("the client's task");
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["created"], 1, "{body}");
    let status = karo
        .wait_exit(Duration::from_secs(90))
        .expect("Karo exited after SIGTERM");
    let log = karo.log_text();
    assert!(status.success(), "{status:?}\n{log}");
    assert!(log.contains("stopped"), "{log}");
    let runs = s.runs().await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(body["runs"], json!([runs[0].metadata.name]), "{body}");
}

/// A namespace with the reaction `REACTION` to `ALERT`, and Karo watching it through
/// a fault proxy in front of the API server; returns once Karo is ready (its cache
/// synced) and the reaction Ready.
async fn karo_behind_proxy(prefix: &str) -> (Scenario, FaultProxy, KaroProcess) {
    let s = Scenario::build(prefix)
        .reaction(&reaction(REACTION, ALERT, "", ""))
        .create()
        .await;
    let proxy = FaultProxy::in_front_of(s.cp()).unwrap_or_else(|e| panic!("{e:#}"));
    // Debug: the log says when a connection to the webhook ends.
    let config = s.karo_config("logLevel: \"info,karo=debug\"\n");
    let karo = KaroProcess::start_with_config(proxy.kubeconfig(), &config)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    s.wait_ready(REACTION, "True").await;
    (s, proxy, karo)
}

fn notification() -> Value {
    firing(
        [json!({"alertname": ALERT, "instance": "a"})],
        "2026-07-01T00:00:00Z",
    )
}

/// Posts `notification` to Karo's webhook on a connection of its own and returns
/// that connection, the answer unread.
async fn send_notification(karo: &KaroProcess, notification: &Value) -> TcpStream {
    let body = notification.to_string();
    let request = format!(
        "POST /webhook HTTP/1.1\r\nHost: karo\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(karo.addr()).await.expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the notification");
    stream
}

/// Waits until a line of Karo's log satisfies `matches`.
async fn wait_log(karo: &KaroProcess, matches: impl Fn(&str) -> bool) {
    wait_for(SOON, || async {
        karo.log_text().lines().any(&matches).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("no such line in Karo's log: {e}\n{}", karo.log_text()));
}
