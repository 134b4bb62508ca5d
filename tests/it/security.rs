//! Security and safety against the real API server and a real Alertmanager 0.25:
//! webhook auth and TLS, hostile input, storm limits, policy.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::alertmanager::{Alertmanager, AlertmanagerConfig};
use crate::support::certs::make_certs;
use crate::support::files::stdout;
use crate::support::karo_lib::RunPhase;
use crate::support::karo_process::KaroProcess;
use crate::support::process::run_output;
use crate::support::ready::wait_for;
use crate::support::scenario::{Scenario, ScenarioBuilder};
use crate::support::webhook::{alert, bare_alert, firing, notification};
use crate::support::{bins, free_port, TestDir, SOON};

/// A scenario with the one reaction these tests fire, `secured`, and `config` for Karo.
fn secured(prefix: &str, config: &str) -> ScenarioBuilder {
    Scenario::build(prefix)
        .reaction(
            r#"
metadata: {name: secured}
spec:
  alertName: Secured
  actions: [{name: a, image: busybox, args: ["{{labels.n}}"]}]
"#,
        )
        .config(config)
}

/// Karo whose webhook requires `auth` (the YAML lines under `webhook.auth`) with the
/// secret `content` in a file, named by `file_key`. Returns the file's directory and
/// path too.
async fn secured_by(
    prefix: &str,
    auth: &str,
    file_key: &str,
    content: &str,
) -> (Scenario, KaroProcess, TestDir, PathBuf) {
    let secrets = TestDir::new(prefix).expect("dir");
    let file = secrets.path().join(file_key);
    std::fs::write(&file, content).expect("write");
    let config = format!(
        "webhook:\n  auth:\n{auth}    {file_key}: {}\n",
        file.display()
    );
    let (s, karo) = secured(prefix, &config).start().await;
    (s, karo, secrets, file)
}

/// Alertmanager sending firing alerts, one notification for each `n`, to `url`.
fn am_config(url: &str) -> AlertmanagerConfig {
    AlertmanagerConfig::webhook(url)
        .group_by(&["alertname", "n"])
        .firing_only()
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

/// Posts `body` to the webhook with `headers` and checks that Karo refuses it with a
/// `WWW-Authenticate` challenge for `scheme`.
async fn assert_challenged(karo: &KaroProcess, headers: &[(&str, &str)], body: &str, scheme: &str) {
    let mut request = reqwest::Client::new()
        .post(karo.webhook())
        .header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let r = request.body(body.to_string()).send().await.expect("post");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(scheme)));
}

#[tokio::test]
async fn basic_auth_as_in_the_seed_and_password_rotation() {
    let (s, karo, _secrets, password) = secured_by(
        "basic",
        "    type: basic\n    username: alertmanager\n",
        "passwordFile",
        "secret\n",
    )
    .await;
    let wrong_password = "karo_webhook_auth_failures_total{reason=\"wrong\"}";

    // The seed's Alertmanager example: basic auth as alertmanager / secret.
    let good =
        Alertmanager::start(&am_config(&karo.webhook()).basic_auth("alertmanager", "secret")).await;
    fire(&good, "1").await;
    s.wait_jobs(1).await;

    // Wrong password: 401, nothing created.
    let bad =
        Alertmanager::start(&am_config(&karo.webhook()).basic_auth("alertmanager", "guess")).await;
    fire(&bad, "2").await;
    karo.wait_metric("webhook_requests_total{code=\"401\"}", |v| v >= 1.0)
        .await;
    assert!(karo.metric(wrong_password).await >= 1.0);
    // Health, readiness and metrics stay open.
    for path in ["/healthz", "/health", "/readyz", "/metrics"] {
        let r = reqwest::get(format!("{}{path}", karo.url()))
            .await
            .expect("get");
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    assert_challenged(&karo, &[], "{}", "Basic").await;
    assert_eq!(s.runs().await.len(), 1);
    assert_eq!(s.jobs().await.len(), 1);

    // The Secret changes: the new password works, the old one is refused, no restart.
    replace_file(&password, "rotated\n");
    let new_am =
        Alertmanager::start(&am_config(&karo.webhook()).basic_auth("alertmanager", "rotated"))
            .await;
    fire(&new_am, "3").await;
    s.wait_jobs(2).await;
    let failures = karo.metric(wrong_password).await;
    fire(&good, "4").await;
    // The old password is refused.
    karo.wait_metric(wrong_password, |v| v > failures).await;
    assert_eq!(s.runs().await.len(), 2);
    assert_eq!(s.jobs().await.len(), 2);
}

#[tokio::test]
async fn credentials_that_cannot_be_read_answer_503_and_alertmanager_retries() {
    // Karo's own trouble, never the sender's: while the credentials file is being
    // rewritten in place (empty) or is gone, the webhook answers 503, which
    // Alertmanager retries, where a 401 would drop the notification.
    let (s, karo, _secrets, password) = secured_by(
        "unreadable",
        "    type: basic\n    username: alertmanager\n",
        "passwordFile",
        "secret\n",
    )
    .await;
    let unavailable = "karo_webhook_auth_failures_total{reason=\"unavailable\"}";
    let am =
        Alertmanager::start(&am_config(&karo.webhook()).basic_auth("alertmanager", "secret")).await;
    for (n, break_it) in [("1", "empty"), ("2", "missing")] {
        let before = karo.metric(unavailable).await;
        match break_it {
            "empty" => std::fs::write(&password, "").expect("truncate"),
            _ => std::fs::remove_file(&password).expect("remove"),
        }
        fire(&am, n).await;
        karo.wait_metric(unavailable, |v| v > before).await;
        assert!(
            karo.metric("webhook_requests_total{code=\"503\"}").await >= 1.0,
            "{break_it}"
        );
        assert_eq!(
            karo.metric("webhook_requests_total{code=\"401\"}").await,
            0.0,
            "{break_it}"
        );
        assert_eq!(s.runs().await.len(), n.parse::<usize>().expect("n") - 1);
        // The rewrite ends: Alertmanager's retry lands.
        replace_file(&password, "secret\n");
        s.wait_jobs(n.parse().expect("n")).await;
    }
    assert_eq!(s.runs().await.len(), 2);
}

#[tokio::test]
async fn bearer_token_from_credentials_file() {
    let (s, karo, secrets, _) =
        secured_by("bearer", "    type: bearer\n", "tokenFile", "s3cr3t-t0ken").await;
    let am_token = secrets.path().join("am-token");
    std::fs::write(&am_token, "s3cr3t-t0ken").expect("write");
    let am = Alertmanager::start(&am_config(&karo.webhook()).bearer_token_file(&am_token)).await;
    fire(&am, "1").await;
    s.wait_jobs(1).await;
    assert_challenged(
        &karo,
        &[("authorization", "Bearer wrong")],
        &bare_alert(json!({"alertname": "Secured", "n": "x"})).to_string(),
        "Bearer",
    )
    .await;
    assert_eq!(s.runs().await.len(), 1);
    assert_eq!(s.jobs().await.len(), 1);
}

/// The serial of the certificate a new TLS connection sees.
fn served_serial(port: u16, ca: &Path) -> String {
    let openssl = bins::openssl().expect("openssl");
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(format!(
        "echo | {o} s_client -connect 127.0.0.1:{port} -servername localhost -CAfile {ca} 2>/dev/null | {o} x509 -noout -serial",
        o = openssl.display(),
        ca = ca.display()
    ));
    stdout(&run_output(cmd, None).expect("s_client"))
        .trim()
        .to_string()
}

#[tokio::test]
async fn https_webhook_with_live_certificate_renewal() {
    let certs = TestDir::new("certs").expect("dir");
    make_certs(certs.path(), 1001);
    let port = free_port();
    let (s, karo) = secured(
        "tls",
        &format!(
            "webhook:\n  port: {port}\n  tls:\n    enabled: true\n    certFile: {d}/tls.crt\n    keyFile: {d}/tls.key\n",
            d = certs.path().display()
        ),
    )
    .start()
    .await;
    let ca = certs.path().join("ca.crt");
    let am =
        Alertmanager::start(&am_config(&format!("https://localhost:{port}/webhook")).ca_file(&ca))
            .await;
    fire(&am, "1").await;
    s.wait_jobs(1).await;
    assert_eq!(served_serial(port, &ca), "serial=03E9");

    make_certs(certs.path(), 1002);
    assert_eq!(
        served_serial(port, &ca),
        "serial=03EA",
        "new connections see the renewed certificate"
    );
    fire(&am, "2").await;
    s.wait_jobs(2).await;
    // The plain HTTP listener keeps serving too.
    let r = reqwest::get(format!("{}/readyz", karo.url()))
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn a_slow_client_does_not_hold_the_server() {
    let (s, karo) = secured(
        "slow",
        "http:\n  headerReadTimeoutSeconds: 2\n  bodyReadTimeoutSeconds: 2\n",
    )
    .start()
    .await;
    let addr = karo.addr().to_string();

    // One byte per second of request headers.
    let slow_addr = addr.clone();
    let slow = tokio::spawn(async move {
        let mut conn = tokio::net::TcpStream::connect(&slow_addr)
            .await
            .expect("connect");
        let request = b"POST /webhook HTTP/1.1\r\nHost: karo\r\nContent-Type: application/json\r\n";
        for b in request.iter().cycle().take(120) {
            if conn.write_all(&[*b]).await.is_err() {
                return true; // closed by the server
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut buf = [0u8; 512];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), conn.read(&mut buf)).await
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
    let body = karo
        .notify_ok(&bare_alert(json!({"alertname": "Secured", "n": "fast"})))
        .await;
    assert_eq!(body["created"], 1);
    assert!(
        slow.await.expect("slow client"),
        "the slow connection was closed by the timeout"
    );

    // A slow body: headers at once, then one byte per second.
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream.write_all(b"POST /webhook HTTP/1.1\r\nHost: karo\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    for _ in 0..60 {
        let _ = stream.write_all(b" ").await;
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
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
    // Only the fast client's alert got its Run, and its Job.
    assert_eq!(s.runs().await.len(), 1);
    s.wait_jobs(1).await;
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
    let (s, karo) = secured("hostile-payloads", "").start().await;
    let idle = peak_rss_kib(karo.pid());

    // 10 000 alerts (none matching): answered, nothing created.
    let many = firing(
        (0..10_000).map(|i| json!({"alertname": "Other", "i": i.to_string()})),
        "2026-09-01T00:00:00Z",
    );
    let body = karo.notify_ok(&many).await;
    assert_eq!(body["received"], 10_000);
    // Deeply nested JSON.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (code, _) = karo.post("application/json", deep).await;
    assert_eq!(code, 400);
    let deep_obj = format!(
        r#"{{"alerts": [{{"labels": {}}}]}}"#,
        "{\"a\":".repeat(5000) + "1" + &"}".repeat(5000)
    );
    let (code, _) = karo.post("application/json", deep_obj).await;
    assert_eq!(code, 400);
    // 1 MB label values on a matching alert: the Job is created, its labels valid.
    let big = "x".repeat(1024 * 1024);
    let (code, body) = karo
        .notify(&notification(vec![alert(
            json!({"alertname": "Secured", "n": big}),
            json!({"note": big}),
            "2026-09-01T00:00:00Z",
        )]))
        .await;
    let head = body.to_string().chars().take(600).collect::<String>();
    assert_eq!(code, 200, "{head}");
    assert_eq!(body["created"], 1, "{head}");
    let job = s.wait_jobs(1).await.remove(0);
    for (k, v) in job.metadata.labels.as_ref().expect("labels") {
        assert!(v.len() <= 63, "label {k} is {} bytes", v.len());
    }
    // Invalid UTF-8.
    let mut bad = br#"{"alerts": [{"labels": {"alertname": "Secured", "n": ""#.to_vec();
    bad.extend([0xff, 0xfe, 0xc0]);
    bad.extend(br#""}}]}"#);
    let (code, _) = karo.post("application/json", bad).await;
    assert_eq!(code, 400);
    // Still alive and serving.
    let r = reqwest::get(format!("{}/healthz", karo.url()))
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    let peak = peak_rss_kib(karo.pid());
    eprintln!("karo peak RSS: idle {idle} KiB, after hostile payloads {peak} KiB");
    assert!(peak < 512 * 1024, "peak RSS {peak} KiB");
}

#[tokio::test]
async fn an_alert_storm_is_cut_off_by_max_jobs_per_minute() {
    let (s, karo) = secured("storm", "limits:\n  maxJobsPerMinute: 50\n")
        .start()
        .await;
    let storm = firing(
        (0..500).map(|i| json!({"alertname": "Secured", "n": i.to_string()})),
        "2026-10-01T00:00:00Z",
    );
    let (code, body) = karo.notify(&storm).await;
    assert_eq!(code, 200);
    // Every occurrence gets its Run; the runner starts 50 of them and skips the rest.
    assert_eq!(body["created"], 500, "{}", body["created"]);
    assert_eq!(body["skipped"], 0);
    let runs = wait_for(SOON, || async {
        let runs = s.runs().await;
        assert_eq!(runs.len(), 500);
        runs.iter()
            .all(|r| {
                r.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(|p| p != RunPhase::Pending)
            })
            .then_some(runs)
    })
    .await
    .expect("every Run started or skipped");
    let (running, skipped): (Vec<_>, Vec<_>) = runs
        .iter()
        .map(|r| r.status.clone().expect("status"))
        .partition(|s| s.phase == Some(RunPhase::Running));
    assert_eq!(running.len(), 50);
    assert_eq!(skipped.len(), 450);
    for status in &skipped {
        assert_eq!(status.phase, Some(RunPhase::Skipped), "{status:?}");
        assert_eq!(status.reason.as_deref(), Some("RateLimit"), "{status:?}");
        assert!(
            status
                .message
                .as_deref()
                .unwrap_or("")
                .contains("maxJobsPerMinute"),
            "{status:?}"
        );
    }
    assert_eq!(s.jobs().await.len(), 50);
    assert_eq!(
        karo.metric("karo_jobs_skipped_total{reason=\"rate_limit\"}")
            .await,
        450.0
    );
    s.wait_event("Skipped", "maxJobsPerMinute").await;
}

#[tokio::test]
async fn policy_refusals_name_the_field_and_create_nothing() {
    let cases = [
        ("host-path", "  volumes: [{name: h, hostPath: {path: /var/run}}]\n  actions: [{name: a, image: busybox, volumeMounts: [{name: h, mountPath: /h}]}]", "spec.volumes[0].hostPath"),
        ("template-host-path", "  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{name: c, image: busybox}]\n          volumes: [{name: h, hostPath: {path: /}}]", "spec.jobTemplate.spec.template.spec.volumes[0].hostPath"),
        ("service-account", "  actions: [{name: a, image: busybox, serviceAccount: cluster-admin-sa}]", "spec.actions[0].serviceAccount"),
        ("template-service-account", "  jobTemplate:\n    spec:\n      template:\n        spec:\n          serviceAccountName: cluster-admin-sa\n          containers: [{name: c, image: busybox}]", "spec.jobTemplate.spec.template.spec.serviceAccountName"),
        ("privileged", "  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{name: c, image: busybox, securityContext: {privileged: true}}]", "spec.jobTemplate.spec.template.spec.containers[0].securityContext.privileged"),
    ];
    let mut scenario = Scenario::build("policy");
    for (name, body, _) in &cases {
        scenario = scenario.refused_reaction(&format!(
            "metadata: {{name: {name}}}\nspec:\n  alertName: Policy\n{body}\n"
        ));
    }
    let (s, karo) = scenario
        .reaction("metadata: {name: allowed}\nspec:\n  alertName: Policy\n  actions: [{name: a, image: busybox, serviceAccount: remediator}]\n")
        .config("policy:\n  allowedServiceAccounts: [remediator]\n")
        .start()
        .await;
    for (name, _, field) in &cases {
        let (reason, message) = s.wait_ready(name, "False").await;
        assert_eq!(reason, "PolicyViolation", "{name}");
        assert!(message.contains(field), "{name}: {message}");
    }
    let body = karo
        .notify_ok(&firing(
            [json!({"alertname": "Policy"})],
            "2026-10-02T00:00:00Z",
        ))
        .await;
    assert_eq!(body["matched"], 1, "{body}");
    let job = s.wait_one_job_of("allowed").await;
    let v: Value = serde_json::to_value(&job).expect("json");
    assert_eq!(
        v["spec"]["template"]["spec"]["serviceAccountName"],
        "remediator"
    );
}
