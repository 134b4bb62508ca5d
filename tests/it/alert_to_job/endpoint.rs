//! The webhook endpoint itself: bodies it cannot take get a 4xx and create nothing (bad
//! JSON, wrong content type, too large, wrong method); a notification of 1000 alerts is
//! answered with every Run, and gets every Job; SIGTERM stops Karo cleanly.

use std::time::Duration;

use serde_json::{json, Value};

use super::reaction;
use crate::support::scenario::Scenario;
use crate::support::webhook::{bare_alert, firing};
use crate::support::SOON;

#[tokio::test]
async fn bad_bodies_get_4xx_and_create_nothing() {
    let (s, karo) = Scenario::build("badbody")
        .reaction(&reaction("any", "TestAlert", "", ""))
        .start()
        .await;
    let test_alert = bare_alert(json!({"alertname": "TestAlert"})).to_string();
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        (
            "not json",
            "application/json",
            b"this is not json".to_vec(),
            400,
        ),
        ("empty", "application/json", Vec::new(), 400),
        (
            "wrong types",
            "application/json",
            br#"{"alerts": [{"labels": {"alertname": 5}}]}"#.to_vec(),
            400,
        ),
        (
            "alerts not a list",
            "application/json",
            br#"{"alerts": {"labels": {}}}"#.to_vec(),
            400,
        ),
        (
            "top level array",
            "application/json",
            br#"[{"labels": {"alertname": "TestAlert"}}]"#.to_vec(),
            400,
        ),
        (
            "bad status",
            "application/json",
            br#"{"alerts": [{"status": "burning", "labels": {"alertname": "TestAlert"}}]}"#
                .to_vec(),
            400,
        ),
        (
            "form",
            "application/x-www-form-urlencoded",
            test_alert.clone().into_bytes(),
            415,
        ),
    ];
    for (what, ct, body, want) in cases {
        let (code, resp) = karo.post(ct, body).await;
        assert_eq!(code, want, "{what}: {resp}");
        assert!(
            resp.get("error")
                .and_then(Value::as_str)
                .is_some_and(|e| !e.is_empty()),
            "{what}: {resp}"
        );
    }
    // 10 MB announced: refused from the headers alone, before any of the body is read.
    let (code, head) = raw_request(karo.addr(), "POST /webhook HTTP/1.1\r\nHost: karo\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n").await;
    assert_eq!(code, 413, "{head}");
    // 10 MB sent chunked, with no length announced: refused once the limit is passed.
    let big = {
        let mut big = br#"{"alerts": [{"labels": {"alertname": "TestAlert", "x": ""#.to_vec();
        big.extend(std::iter::repeat_n(b'a', 10 * 1024 * 1024));
        big.extend(br#""}}]}"#);
        big
    };
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let sent = reqwest::Client::new()
        .post(karo.webhook())
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    // The server answers 413 and closes; the client may see the answer or the closed connection.
    if let Ok(resp) = sent {
        assert_eq!(resp.status().as_u16(), 413);
    }
    let resp = reqwest::get(karo.webhook()).await.expect("GET");
    assert_eq!(resp.status().as_u16(), 405);
    // Still serving, and nothing was created by any of it.
    let (code, body) = karo.post("application/json", test_alert).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["created"], 1, "{body}");
    assert_eq!(s.runs().await.len(), 1);
    s.wait_jobs(1).await;
}

/// Sends raw bytes to `addr` and returns the status code and head of the response.
async fn raw_request(addr: &str, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(SOON, stream.read(&mut buf))
            .await
            .expect("answer")
            .expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head)
}

#[tokio::test]
async fn a_notification_of_1000_alerts_is_answered_with_every_job() {
    let (s, karo) = Scenario::build("thousand")
        .reaction(&reaction("bulk", "Bulk", "", r#", args: ["{{labels.i}}"]"#))
        .start()
        .await;
    let n = firing(
        (0..1000).map(|i| json!({"alertname": "Bulk", "i": i.to_string()})),
        "2026-07-01T00:00:00Z",
    );
    let started = std::time::Instant::now();
    let (code, body) = karo.notify(&n).await;
    eprintln!("1000 alerts answered in {:?}", started.elapsed());
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["created"], 1000);
    // Answered once every occurrence has its Run; the runner creates the Jobs.
    assert_eq!(s.runs().await.len(), 1000);
    s.wait_jobs(1000).await;
    s.wait_trigger_count("bulk", 1000).await;
    // The same notification again: all deduplicated, onto the same Runs.
    let again = karo.notify_ok(&n).await;
    assert_eq!(again["deduplicated"], 1000);
    assert_eq!(again["created"], 0);
    let names = |b: &Value| -> std::collections::BTreeSet<String> {
        b["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(names(&again), names(&body));
    assert_eq!(names(&body).len(), 1000);
    assert_eq!(s.runs().await.len(), 1000);
    assert_eq!(s.jobs().await.len(), 1000);
}

#[tokio::test]
async fn sigterm_stops_karo_cleanly() {
    let (_s, mut karo) = Scenario::build("sigterm").start().await;
    let status = karo
        .terminate(Duration::from_secs(60))
        .expect("karo exited after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", karo.log_text());
    let log = karo.log_text();
    assert!(log.contains("finishing requests in flight"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}
