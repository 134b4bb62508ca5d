//! The HTTP server's bounds, against the `karo` binary: a connection that sends
//! nothing, part of the HTTP/2 preface or a request head too slowly is closed
//! (plain and under TLS); an idle keep-alive connection is kept past the header
//! timeout and closed after the idle timeout; connections beyond
//! `http.maxConnections` wait until one closes; notifications beyond
//! `http.maxConcurrentNotifications` get 503 and, retried as Alertmanager does, all
//! land; an HTTP/2 client opening more streams than allowed has the extra refused.
//!
//! Every wait is a hang guard; nothing asserts how fast anything happened.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::certs::make_certs;
use crate::support::scenario::{Scenario, ScenarioBuilder};
use crate::support::webhook::{bare_alert, metric};
use crate::support::{free_port, TestDir, SOON};

/// Long enough for a connection under test to have been served if it were going
/// to be; used only to show that something did not happen.
const QUIET: Duration = Duration::from_secs(2);

fn scenario(prefix: &str, config: &str) -> ScenarioBuilder {
    Scenario::build(prefix)
        .reaction("metadata: {name: busy}\nspec:\n  alertName: Busy\n  actions: [{name: a, image: busybox}]\n")
        .config(config)
}

/// Reads until the peer closes the connection (EOF or reset); returns what arrived.
/// Panics if it is still open after `SOON`.
async fn read_until_closed<S: AsyncRead + Unpin>(stream: &mut S, what: &str) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(SOON, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: still open after {SOON:?}");
    got
}

/// A complete `GET /healthz` on an open HTTP/1.1 connection; returns the status.
async fn get_health(stream: &mut TcpStream) -> u16 {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: karo\r\n\r\n")
        .await
        .expect("write");
    read_status(stream).await
}

/// The status of the next HTTP/1 response (head and the JSON body Karo sends).
async fn read_status(stream: &mut TcpStream) -> u16 {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"}")) {
        let n = tokio::time::timeout(SOON, stream.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        assert!(n > 0, "closed before answering: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&got);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head}"))
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/2 frame: length, type, flags, stream id, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Request headers in HPACK without the dynamic table: `:method` (2 = GET, 3 =
/// POST from the static table), `:scheme http`, `:path`, `:authority karo`.
fn h2_request(method_index: u8, path: &str) -> Vec<u8> {
    let mut block = vec![0x80 | method_index, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 4]);
    block.extend_from_slice(b"karo");
    block
}

/// Reads one HTTP/2 frame: (type, flags, stream, payload); `None` once closed.
async fn read_h2_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    tokio::time::timeout(SOON, stream.read_exact(&mut head))
        .await
        .expect("a frame or the end (hang guard)")
        .ok()?;
    let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], id, payload))
}

const SETTINGS: u8 = 0x4;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Opens an HTTP/2 connection with prior knowledge: preface, SETTINGS both ways,
/// and the ACK of the server's. Returns the server's settings.
async fn h2_connect(addr: &str) -> (TcpStream, Vec<(u16, u32)>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(H2_PREFACE).await.expect("preface");
    s.write_all(&h2_frame(SETTINGS, 0, 0, &[]))
        .await
        .expect("settings");
    let settings = loop {
        let (kind, flags, _, payload) = read_h2_frame(&mut s).await.expect("server settings");
        if kind == SETTINGS && flags & ACK == 0 {
            break payload
                .chunks(6)
                .map(|c| {
                    (
                        u16::from_be_bytes([c[0], c[1]]),
                        u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                    )
                })
                .collect::<Vec<_>>();
        }
    };
    // Its settings (the stream limit among them) apply once acknowledged.
    s.write_all(&h2_frame(SETTINGS, ACK, 0, &[]))
        .await
        .expect("ack");
    (s, settings)
}

#[tokio::test]
async fn connections_without_a_timely_request_are_closed() {
    let (_s, karo) = scenario("silent", "http:\n  headerReadTimeoutSeconds: 2\n")
        .start()
        .await;
    let addr = karo.addr();

    // Connects and sends nothing.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    assert!(read_until_closed(&mut silent, "silent").await.is_empty());

    // Part of the HTTP/2 preface: protocol detection never completes.
    let mut partial = TcpStream::connect(addr).await.expect("connect");
    partial.write_all(&H2_PREFACE[..10]).await.expect("write");
    read_until_closed(&mut partial, "partial preface").await;

    // The whole preface and SETTINGS, then no request.
    let (mut h2, _) = h2_connect(addr).await;
    let mut goaway = false;
    while let Some((kind, ..)) = read_h2_frame(&mut h2).await {
        goaway |= kind == GOAWAY;
    }
    assert!(goaway, "an HTTP/2 connection is closed with a GOAWAY");

    // A slowloris: a request head trickling in, a header line every 300 ms, never
    // complete. Sending does not keep it open.
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"POST /webhook HTTP/1.1\r\nHost: karo\r\n")
        .await
        .expect("write");
    let trickle = tokio::time::timeout(SOON, async {
        for i in 0u64.. {
            if slow
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
            let mut buf = [0u8; 1024];
            // Closed (EOF or reset) ends it; otherwise wait and send more.
            match tokio::time::timeout(Duration::from_millis(300), slow.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(trickle.is_ok(), "a trickled request head is still open");

    // The bound is on slowness, not on serving: a prompt request is answered.
    let mut prompt = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(get_health(&mut prompt).await, 200);
}

#[tokio::test]
async fn idle_connections_outlive_the_header_timeout_and_close_after_the_idle_timeout() {
    let (_s, karo) = scenario(
        "idle",
        "http:\n  headerReadTimeoutSeconds: 1\n  idleTimeoutSeconds: 4\n",
    )
    .start()
    .await;
    let addr = karo.addr();

    // HTTP/1 keep-alive: still usable after longer than the header timeout between
    // requests (hyper's own header timeout used to close it then) ...
    let mut h1 = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(get_health(&mut h1).await, 200);
    tokio::time::sleep(QUIET).await;
    assert_eq!(get_health(&mut h1).await, 200);
    // ... and closed once idle.
    assert!(read_until_closed(&mut h1, "idle HTTP/1").await.is_empty());

    // HTTP/2 with no stream open: a GOAWAY, then closed.
    let (mut h2, _) = h2_connect(addr).await;
    h2.write_all(&h2_frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &h2_request(2, "/healthz"),
    ))
    .await
    .expect("request");
    let mut answered = false;
    let mut goaway = false;
    while let Some((kind, _, id, _)) = read_h2_frame(&mut h2).await {
        answered |= kind == HEADERS && id == 1;
        goaway |= kind == GOAWAY;
    }
    assert!(answered, "the request on stream 1 was answered");
    assert!(goaway, "the idle HTTP/2 connection got a GOAWAY");
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let (_s, karo) = scenario("maxconn", "http:\n  maxConnections: 2\n")
        .start()
        .await;
    let addr = karo.addr();
    let mut first = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(get_health(&mut first).await, 200);
    let mut second = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(get_health(&mut second).await, 200);

    // The third connects (the kernel's backlog takes it) but is not served.
    let mut third = TcpStream::connect(addr).await.expect("connect");
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: karo\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(QUIET, third.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served while two were open"
    );
    // One closes: the third is accepted and answered.
    drop(first);
    assert_eq!(read_status(&mut third).await, 200);
    // Open now: the second and the third; a scrape needs a slot of its own.
    drop(second);
    let open = metric(karo.url(), "karo_http_connections_open{listener=\"http\"}").await;
    assert_eq!(open, 2.0);
}

#[tokio::test]
async fn notifications_beyond_the_limit_get_503_and_retried_all_land() {
    let (s, karo) = scenario("maxnotif", "http:\n  maxConcurrentNotifications: 2\n")
        .start()
        .await;
    let addr = karo.addr();
    // Two notifications whose bodies are slow to arrive hold both places.
    let mut held = Vec::new();
    for n in 0..2 {
        let body = bare_alert(json!({"alertname": "Busy", "n": format!("held-{n}")})).to_string();
        let mut c = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /webhook HTTP/1.1\r\nHost: karo\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).await.expect("head");
        c.write_all(&body.as_bytes()[..5]).await.expect("body");
        held.push((c, body));
    }
    // Every one of ten more is refused while they hold, with a Retry-After, before
    // its body is read; retried as Alertmanager does, each lands once there is room.
    let client = reqwest::Client::new();
    let refused_once = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let senders: Vec<_> = (0..10)
        .map(|n| {
            let client = client.clone();
            let url = karo.webhook();
            let refused_once = refused_once.clone();
            tokio::spawn(async move {
                let body = bare_alert(json!({"alertname": "Busy", "n": format!("retried-{n}")}))
                    .to_string();
                let mut refused = false;
                for _ in 0..600 {
                    let resp = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("post");
                    match resp.status().as_u16() {
                        503 => {
                            assert_eq!(
                                resp.headers().get("retry-after").map(|v| v.as_bytes()),
                                Some(&b"1"[..])
                            );
                            let text = resp.text().await.unwrap_or_default();
                            assert!(text.contains("maxConcurrentNotifications"), "{text}");
                            if !refused {
                                refused = true;
                                refused_once.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        code => return code,
                    }
                }
                panic!("never accepted");
            })
        })
        .collect();
    let counted = karo
        .wait_metric("karo_webhook_notifications_refused_total", |v| v >= 10.0)
        .await;
    assert!(counted >= 10.0);
    assert!(
        crate::support::wait_until(SOON, || async {
            refused_once.load(std::sync::atomic::Ordering::SeqCst) == 10
        })
        .await
        .is_ok(),
        "every sender was refused while both places were held"
    );
    // A large body is refused too, and the 503 reaches its client (the body is
    // read and dropped rather than the connection reset under it).
    let big = bare_alert(json!({"alertname": "Busy", "pad": "p".repeat(1 << 20)})).to_string();
    let resp = client
        .post(karo.webhook())
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("the answer to a large refused body");
    assert_eq!(resp.status().as_u16(), 503);
    // The two held bodies complete: handled, 200; then the retries land.
    for (c, body) in &mut held {
        c.write_all(&body.as_bytes()[5..]).await.expect("rest");
        assert_eq!(read_status(c).await, 200);
    }
    for sender in senders {
        assert_eq!(sender.await.expect("sender"), 200);
    }
    assert_eq!(s.runs().await.len(), 12);
    s.wait_jobs(12).await;
}

#[tokio::test]
async fn http2_streams_beyond_the_limit_are_refused() {
    let (_s, karo) = scenario("h2streams", "http:\n  maxConcurrentNotifications: 1024\n")
        .start()
        .await;
    let (mut h2, settings) = h2_connect(karo.addr()).await;
    // SETTINGS_MAX_CONCURRENT_STREAMS (3) and SETTINGS_MAX_HEADER_LIST_SIZE (6).
    let limit = settings
        .iter()
        .find(|(id, _)| *id == 3)
        .map(|(_, v)| *v)
        .expect("the server announces a stream limit");
    assert_eq!(limit, 100);
    assert!(settings.iter().any(|(id, v)| *id == 6 && *v <= 64 * 1024));
    // One stream more than allowed, each a webhook request whose body never comes.
    let mut burst = Vec::new();
    for i in 0..=limit {
        burst.extend(h2_frame(
            HEADERS,
            END_HEADERS,
            2 * i + 1,
            &h2_request(3, "/webhook"),
        ));
    }
    h2.write_all(&burst).await.expect("streams");
    let over = 2 * limit + 1;
    let reset = loop {
        let (kind, _, id, payload) = read_h2_frame(&mut h2)
            .await
            .expect("connection open while streams are in progress");
        if kind == RST_STREAM {
            break (
                id,
                u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
            );
        }
        assert_ne!(kind, GOAWAY, "the connection was closed instead");
    };
    // REFUSED_STREAM (7), for the stream over the limit only.
    assert_eq!(reset, (over, 7));
}

#[tokio::test]
async fn tls_connections_without_a_timely_request_are_closed() {
    let certs = TestDir::new("certs").expect("dir");
    make_certs(certs.path(), 1);
    let port = free_port();
    let (_s, _karo) = scenario(
        "tlssilent",
        &format!(
            "http:\n  headerReadTimeoutSeconds: 2\nwebhook:\n  port: {port}\n  tls:\n    enabled: true\n    certFile: {d}/tls.crt\n    keyFile: {d}/tls.key\n",
            d = certs.path().display()
        ),
    )
    .start()
    .await;
    let addr = format!("127.0.0.1:{port}");

    // No handshake at all.
    let mut silent = TcpStream::connect(&addr).await.expect("connect");
    assert!(read_until_closed(&mut silent, "silent TLS")
        .await
        .is_empty());

    // A completed handshake (HTTP/2 and HTTP/1.1 offered), then nothing.
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(certs.path().join("ca.crt")).expect("ca");
    for cert in rustls_pemfile_certs(&ca) {
        roots.add(cert).expect("root");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(&addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    read_until_closed(&mut tls, "silent after the TLS handshake").await;
    let _ = tls.shutdown().await;
}

/// The certificates of a PEM bundle.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .expect("PEM")
}
