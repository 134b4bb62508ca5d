//! Security and safety against the real API server and a real Alertmanager 0.25:
//! webhook auth and TLS, hostile input, storm limits, policy.

mod common;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::*;
use support::{bins, free_port, wait_until, Alertmanager, ControlPlane, TestDir};

const REACTION: &str = r#"
metadata: {name: secured}
spec:
  alertName: Secured
  actions: [{name: a, image: busybox, args: ["{{labels.n}}"]}]
"#;

fn am_config(url: &str, http_config: &str) -> String {
    format!(
        "route:
  receiver: karo
  group_by: [alertname, n]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
- name: karo
  webhook_configs:
  - url: '{url}'
    send_resolved: false
{http_config}"
    )
}

/// Writes a file the way a Secret volume update replaces it: a new file renamed over the old.
fn replace_file(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

async fn fire(am: &Alertmanager, n: &str) {
    am.fire(&[("alertname", "Secured"), ("n", n)], &[]).await;
}

#[tokio::test]
async fn basic_auth_as_in_the_seed_and_password_rotation() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("basic").await;
    apply_reaction(cp, &ns, REACTION).await;
    let secrets = TestDir::new("auth").expect("dir");
    let password = secrets.path().join("password");
    std::fs::write(&password, "secret\n").expect("write");
    let karo = start_karo(
        cp,
        &ns,
        &format!(
            "webhook:\n  auth:\n    type: basic\n    username: alertmanager\n    passwordFile: {}\n",
            password.display()
        ),
    )
    .await;
    wait_ready_condition(cp, &ns, "secured", "True").await;
    let url = karo.url().to_string();

    // The seed's Alertmanager example, verbatim apart from the URL.
    let seed_auth = "    http_config:\n      basic_auth:\n        username: 'alertmanager'\n        password: 'secret'\n";
    let good = Alertmanager::start(&am_config(&karo.webhook(), seed_auth))
        .await
        .expect("alertmanager");
    fire(&good, "1").await;
    wait_jobs(cp, &ns, 1).await;

    // Wrong password: 401, nothing created.
    let wrong = "    http_config:\n      basic_auth:\n        username: 'alertmanager'\n        password: 'guess'\n";
    let bad = Alertmanager::start(&am_config(&karo.webhook(), wrong))
        .await
        .expect("alertmanager");
    fire(&bad, "2").await;
    wait_until(SOON, || {
        let url = url.clone();
        async move { metric(&url, "webhook_requests_total{code=\"401\"}").await >= 1.0 }
    })
    .await
    .expect("401 answered");
    assert!(metric(&url, "karo_webhook_auth_failures_total{reason=\"wrong\"}").await >= 1.0);
    // Health, readiness and metrics stay open.
    for path in ["/healthz", "/health", "/readyz", "/metrics"] {
        let r = reqwest::get(format!("{url}{path}")).await.expect("get");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let r = reqwest::Client::new()
        .post(karo.webhook())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Basic")));
    assert_eq!(jobs(cp, &ns).await.len(), 1);

    // The Secret changes: the new password works, the old one is refused, no restart.
    replace_file(&password, "rotated\n");
    let rotated = "    http_config:\n      basic_auth:\n        username: 'alertmanager'\n        password: 'rotated'\n";
    let new_am = Alertmanager::start(&am_config(&karo.webhook(), rotated))
        .await
        .expect("alertmanager");
    fire(&new_am, "3").await;
    wait_jobs(cp, &ns, 2).await;
    let failures = metric(&url, "karo_webhook_auth_failures_total{reason=\"wrong\"}").await;
    fire(&good, "4").await;
    wait_until(SOON, || {
        let url = url.clone();
        async move {
            metric(&url, "karo_webhook_auth_failures_total{reason=\"wrong\"}").await > failures
        }
    })
    .await
    .expect("old password refused");
    assert_eq!(jobs(cp, &ns).await.len(), 2);
}

#[tokio::test]
async fn bearer_token_from_credentials_file() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("bearer").await;
    apply_reaction(cp, &ns, REACTION).await;
    let secrets = TestDir::new("bearer").expect("dir");
    let token = secrets.path().join("token");
    std::fs::write(&token, "s3cr3t-t0ken").expect("write");
    let am_token = secrets.path().join("am-token");
    std::fs::write(&am_token, "s3cr3t-t0ken").expect("write");
    let karo = start_karo(
        cp,
        &ns,
        &format!(
            "webhook:\n  auth:\n    type: bearer\n    tokenFile: {}\n",
            token.display()
        ),
    )
    .await;
    wait_ready_condition(cp, &ns, "secured", "True").await;
    let http_config = format!(
        "    http_config:\n      authorization:\n        credentials_file: {}\n",
        am_token.display()
    );
    let am = Alertmanager::start(&am_config(&karo.webhook(), &http_config))
        .await
        .expect("alertmanager");
    fire(&am, "1").await;
    wait_jobs(cp, &ns, 1).await;
    let r = reqwest::Client::new()
        .post(karo.webhook())
        .header("content-type", "application/json")
        .header("authorization", "Bearer wrong")
        .body(r#"{"alerts": [{"labels": {"alertname": "Secured", "n": "x"}}]}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer")));
    assert_eq!(jobs(cp, &ns).await.len(), 1);
}

/// A CA, and a server certificate for localhost with the given serial.
fn make_certs(dir: &Path, serial: u32) {
    let openssl = bins::openssl().expect("openssl");
    let run = |args: &[&str]| {
        let out = Command::new(&openssl)
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if !dir.join("ca.crt").exists() {
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=karo-test-ca",
        ]);
    }
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("ext");
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "new.key",
        "-out",
        "new.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "new.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-set_serial",
        &serial.to_string(),
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "new.crt",
    ]);
    // Key first, then certificate, each by rename, as a Secret update replaces files.
    std::fs::rename(dir.join("new.key"), dir.join("tls.key")).expect("key");
    std::fs::rename(dir.join("new.crt"), dir.join("tls.crt")).expect("crt");
}

/// The serial of the certificate a new TLS connection sees.
fn served_serial(port: u16, ca: &Path) -> String {
    let openssl = bins::openssl().expect("openssl");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "echo | {o} s_client -connect 127.0.0.1:{port} -servername localhost -CAfile {ca} 2>/dev/null | {o} x509 -noout -serial",
            o = openssl.display(),
            ca = ca.display()
        ))
        .output()
        .expect("s_client");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn https_webhook_with_live_certificate_renewal() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("tls").await;
    apply_reaction(cp, &ns, REACTION).await;
    let certs = TestDir::new("certs").expect("dir");
    make_certs(certs.path(), 1001);
    let port = free_port();
    let karo = start_karo(
        cp,
        &ns,
        &format!(
            "webhook:\n  port: {port}\n  tls:\n    enabled: true\n    certFile: {d}/tls.crt\n    keyFile: {d}/tls.key\n",
            d = certs.path().display()
        ),
    )
    .await;
    wait_ready_condition(cp, &ns, "secured", "True").await;
    let ca = certs.path().join("ca.crt");
    let http_config = format!(
        "    http_config:\n      tls_config:\n        ca_file: {}\n",
        ca.display()
    );
    let am = Alertmanager::start(&am_config(
        &format!("https://localhost:{port}/webhook"),
        &http_config,
    ))
    .await
    .expect("alertmanager");
    fire(&am, "1").await;
    wait_jobs(cp, &ns, 1).await;
    assert_eq!(served_serial(port, &ca), "serial=03E9");

    make_certs(certs.path(), 1002);
    assert_eq!(
        served_serial(port, &ca),
        "serial=03EA",
        "new connections see the renewed certificate"
    );
    fire(&am, "2").await;
    wait_jobs(cp, &ns, 2).await;
    // The plain HTTP listener keeps serving too.
    let r = reqwest::get(format!("{}/readyz", karo.url()))
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn a_slow_client_does_not_hold_the_server() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("slow").await;
    apply_reaction(cp, &ns, REACTION).await;
    let karo = start_karo(
        cp,
        &ns,
        "http:\n  headerReadTimeoutSeconds: 2\n  bodyReadTimeoutSeconds: 2\n",
    )
    .await;
    wait_ready_condition(cp, &ns, "secured", "True").await;
    let addr = karo.url().trim_start_matches("http://").to_string();

    // One byte per second of request headers.
    let slow_addr = addr.clone();
    let slow = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(&slow_addr)
            .await
            .expect("connect");
        let request = b"POST /webhook HTTP/1.1\r\nHost: karo\r\nContent-Type: application/json\r\n";
        for b in request.iter().cycle().take(120) {
            if s.write_all(&[*b]).await.is_err() {
                return true; // closed by the server
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut buf = [0u8; 512];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
            {
                if n == 0 || String::from_utf8_lossy(&buf[..n]).contains("408") {
                    return true;
                }
            }
        }
        false
    });
    // Meanwhile, another client is served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, body) = post(
        &karo.webhook(),
        "application/json",
        r#"{"alerts": [{"labels": {"alertname": "Secured", "n": "fast"}}]}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["created"], 1);
    assert!(
        slow.await.expect("slow client"),
        "the slow connection was closed by the timeout"
    );

    // A slow body: headers at once, then one byte per second.
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    s.write_all(b"POST /webhook HTTP/1.1\r\nHost: karo\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..60 {
        let _ = s.write_all(b" ").await;
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => continue,
        }
    }
    let head = String::from_utf8_lossy(&got);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert_eq!(jobs(cp, &ns).await.len(), 1);
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn hostile_payloads_keep_memory_bounded() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("hostile-payloads").await;
    apply_reaction(cp, &ns, REACTION).await;
    let karo = start_karo(cp, &ns, "").await;
    wait_ready_condition(cp, &ns, "secured", "True").await;
    let hook = karo.webhook();
    let idle = peak_rss_kib(karo.process.pid());

    // 10 000 alerts (none matching): answered, nothing created.
    let many = notification(
        (0..10_000)
            .map(|i| {
                alert(
                    json!({"alertname": "Other", "i": i.to_string()}),
                    json!({}),
                    "2026-09-01T00:00:00Z",
                )
            })
            .collect(),
    );
    let (code, body) = post_json(&hook, &many).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["received"], 10_000);
    // Deeply nested JSON.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (code, _) = post(&hook, "application/json", deep).await;
    assert_eq!(code, 400);
    let deep_obj = format!(
        r#"{{"alerts": [{{"labels": {}}}]}}"#,
        "{\"a\":".repeat(5000) + "1" + &"}".repeat(5000)
    );
    let (code, _) = post(&hook, "application/json", deep_obj).await;
    assert_eq!(code, 400);
    // 1 MB label values on a matching alert: the Job is created, its labels valid.
    let big = "x".repeat(1024 * 1024);
    let (code, body) = post_json(
        &hook,
        &notification(vec![alert(
            json!({"alertname": "Secured", "n": big}),
            json!({"note": big}),
            "2026-09-01T00:00:00Z",
        )]),
    )
    .await;
    assert_eq!(
        code,
        200,
        "{}",
        body.to_string().chars().take(300).collect::<String>()
    );
    // Invalid UTF-8.
    let mut bad = br#"{"alerts": [{"labels": {"alertname": "Secured", "n": ""#.to_vec();
    bad.extend([0xff, 0xfe, 0xc0]);
    bad.extend(br#""}}]}"#);
    let (code, _) = post(&hook, "application/json", bad).await;
    assert_eq!(code, 400);
    // Still alive and serving.
    let r = reqwest::get(format!("{}/healthz", karo.url()))
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    let peak = peak_rss_kib(karo.process.pid());
    eprintln!("karo peak RSS: idle {idle} KiB, after hostile payloads {peak} KiB");
    assert!(peak < 512 * 1024, "peak RSS {peak} KiB");
}

#[tokio::test]
async fn an_alert_storm_is_cut_off_by_max_jobs_per_minute() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("storm").await;
    apply_reaction(cp, &ns, REACTION).await;
    let karo = start_karo(cp, &ns, "limits:\n  maxJobsPerMinute: 50\n").await;
    wait_ready_condition(cp, &ns, "secured", "True").await;
    let storm = notification(
        (0..500)
            .map(|i| {
                alert(
                    json!({"alertname": "Secured", "n": i.to_string()}),
                    json!({}),
                    "2026-10-01T00:00:00Z",
                )
            })
            .collect(),
    );
    let (code, body) = post_json(&karo.webhook(), &storm).await;
    // Skipping on purpose is not worth a retry: 200.
    assert_eq!(code, 200);
    assert_eq!(body["created"], 50, "{}", body["created"]);
    assert_eq!(body["skipped"], 450);
    assert_eq!(jobs(cp, &ns).await.len(), 50);
    assert_eq!(
        metric(karo.url(), "karo_jobs_skipped_total{reason=\"rate_limit\"}").await,
        450.0
    );
    wait_event(cp, &ns, "Skipped", "maxJobsPerMinute").await;
}

#[tokio::test]
async fn policy_refusals_name_the_field_and_create_nothing() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("policy").await;
    let cases = [
        ("host-path", "  volumes: [{name: h, hostPath: {path: /var/run}}]\n  actions: [{name: a, image: busybox, volumeMounts: [{name: h, mountPath: /h}]}]", "spec.volumes[0].hostPath"),
        ("template-host-path", "  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{name: c, image: busybox}]\n          volumes: [{name: h, hostPath: {path: /}}]", "spec.jobTemplate.spec.template.spec.volumes[0].hostPath"),
        ("service-account", "  actions: [{name: a, image: busybox, serviceAccount: cluster-admin-sa}]", "spec.actions[0].serviceAccount"),
        ("template-service-account", "  jobTemplate:\n    spec:\n      template:\n        spec:\n          serviceAccountName: cluster-admin-sa\n          containers: [{name: c, image: busybox}]", "spec.jobTemplate.spec.template.spec.serviceAccountName"),
        ("privileged", "  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{name: c, image: busybox, securityContext: {privileged: true}}]", "spec.jobTemplate.spec.template.spec.containers[0].securityContext.privileged"),
    ];
    for (name, body, _) in &cases {
        apply_reaction(
            cp,
            &ns,
            &format!("metadata: {{name: {name}}}\nspec:\n  alertName: Policy\n{body}\n"),
        )
        .await;
    }
    apply_reaction(cp, &ns, "metadata: {name: allowed}\nspec:\n  alertName: Policy\n  actions: [{name: a, image: busybox, serviceAccount: remediator}]\n").await;
    let karo = start_karo(cp, &ns, "policy:\n  allowedServiceAccounts: [remediator]\n").await;
    for (name, _, field) in &cases {
        let (reason, message) = wait_ready_condition(cp, &ns, name, "False").await;
        assert_eq!(reason, "PolicyViolation", "{name}");
        assert!(message.contains(field), "{name}: {message}");
    }
    wait_ready_condition(cp, &ns, "allowed", "True").await;
    let (code, body) = post_json(
        &karo.webhook(),
        &notification(vec![alert(
            json!({"alertname": "Policy"}),
            json!({}),
            "2026-10-02T00:00:00Z",
        )]),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["matched"], 1, "{body}");
    let jobs = wait_jobs(cp, &ns, 1).await;
    assert_eq!(
        jobs[0].metadata.labels.as_ref().expect("labels")["karo.io/reaction"],
        "allowed"
    );
    let v: Value = serde_json::to_value(&jobs[0]).expect("json");
    assert_eq!(
        v["spec"]["template"]["spec"]["serviceAccountName"],
        "remediator"
    );
}
