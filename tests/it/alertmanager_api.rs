//! Karo's Alertmanager client (`karo::daemon::alertmanager`) against a real
//! Alertmanager (0.25 from Debian): the silence Karo keeps for a Run is made once on
//! the alert's exact labels, read back through the API (and `amtool` when it is
//! there) and expired idempotently; label values with quotes and backslashes round
//! trip; whether an alert fires follows Alertmanager's alerts; basic auth
//! credentials and a custom CA come from files; an unreachable or silent server is
//! an error naming the URL.

use std::process::Command;
use std::time::Duration;

use jiff::Timestamp;
use karo::daemon::alertmanager::{AlertmanagerClient, AlertmanagerError, SilenceRequest};
use karo::model::config::{AlertmanagerConfig, AuthType};
use serde_json::{json, Value};

use crate::support::alertmanager::AlertmanagerConfig as AmYaml;
use crate::support::certs::make_certs;
use crate::support::process::run_output;
use crate::support::{bins, free_port, wait_until, Proc, TestDir, SOON};

/// bcrypt (cost 4) of `s3cret`, made once with Python's `crypt` module: the tests
/// need no bcrypt tool. Alertmanager checks it, so a wrong constant fails the test.
const PASSWORD: &str = "s3cret";
const PASSWORD_BCRYPT: &str = "$2b$04$6wwW7qYFJURMhlJ47tFgFO3AJZ9fg0TTvbjYUQ3bkETMzlGbSMzcW";

/// An Alertmanager started here rather than with `support::alertmanager`, because
/// some tests give it a `--web.config.file` (basic auth, TLS). Killed on drop.
struct Am {
    // Field order: the process is killed before its dir is removed.
    _proc: Proc,
    url: String,
    dir: TestDir,
    /// What the readiness probe and the test's own requests send.
    basic_auth: Option<(String, String)>,
}

impl Am {
    async fn plain() -> Am {
        Am::start(None, None).await
    }

    async fn start(web_config: Option<Value>, basic_auth: Option<(&str, &str)>) -> Am {
        let bin = bins::alertmanager().expect("Alertmanager (tests/platform/setup.sh)");
        let dir = TestDir::new("am-api").expect("temp dir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, AmYaml::nowhere().yaml()).expect("writing alertmanager.yml");
        let scheme = match &web_config {
            Some(w) if w.get("tls_server_config").is_some() => "https",
            _ => "http",
        };
        let web_file = dir.path().join("web.yml");
        if let Some(w) = &web_config {
            std::fs::write(&web_file, serde_yaml::to_string(w).expect("web config"))
                .expect("writing web.yml");
        }
        let basic_auth = basic_auth.map(|(u, p)| (u.to_string(), p.to_string()));
        for attempt in 1..=3 {
            let port = free_port();
            let url = format!("{scheme}://127.0.0.1:{port}");
            let mut cmd = Command::new(&bin);
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.path={}",
                    dir.path().join(format!("data-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=");
            if web_config.is_some() {
                cmd.arg(format!("--web.config.file={}", web_file.display()));
            }
            let log = dir.path().join(format!("alertmanager-{attempt}.log"));
            let mut proc = Proc::spawn("alertmanager", cmd, &log).expect("starting Alertmanager");
            let probe = raw_client();
            let ready_url = format!("{url}/-/ready");
            let auth = basic_auth.clone();
            let ready = wait_until(SOON, || {
                let exited = proc.exited();
                let mut get = probe.get(&ready_url);
                if let Some((u, p)) = &auth {
                    get = get.basic_auth(u, Some(p));
                }
                let sent = get.send();
                async move { exited || matches!(sent.await, Ok(r) if r.status() == 200) }
            })
            .await;
            if ready.is_ok() && !proc.exited() {
                return Am {
                    _proc: proc,
                    url,
                    dir,
                    basic_auth,
                };
            }
            let tail = proc.log_tail(30);
            assert!(
                tail.contains("address already in use") && attempt < 3,
                "Alertmanager did not start at {url}:\n{tail}"
            );
        }
        unreachable!("the loop returns or panics")
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = raw_client().request(method, format!("{}{path}", self.url));
        if let Some((u, p)) = &self.basic_auth {
            r = r.basic_auth(u, Some(p));
        }
        r
    }

    /// `GET /api/v2/silence/{id}`, read without Karo's client.
    async fn silence(&self, id: &str) -> Value {
        let resp = self
            .request(reqwest::Method::GET, &format!("/api/v2/silence/{id}"))
            .send()
            .await
            .expect("GET silence");
        assert_eq!(resp.status(), 200, "GET silence {id}");
        resp.json().await.expect("a silence")
    }

    /// Every silence Alertmanager holds, expired ones included.
    async fn silences(&self) -> Vec<Value> {
        self.request(reqwest::Method::GET, "/api/v2/silences")
            .send()
            .await
            .expect("GET silences")
            .json()
            .await
            .expect("silences")
    }

    /// `POST /api/v2/alerts` with one alert.
    async fn post_alert(&self, alert: Value) {
        let resp = self
            .request(reqwest::Method::POST, "/api/v2/alerts")
            .json(&json!([alert]))
            .send()
            .await
            .expect("POST alerts");
        assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    }

    /// The fingerprint Alertmanager gives the listed alert with these labels.
    async fn fingerprint(&self, labels: &Value) -> String {
        let alerts: Vec<Value> = self
            .request(reqwest::Method::GET, "/api/v2/alerts")
            .send()
            .await
            .expect("GET alerts")
            .json()
            .await
            .expect("alerts");
        alerts
            .iter()
            .find(|a| &a["labels"] == labels)
            .and_then(|a| a["fingerprint"].as_str())
            .unwrap_or_else(|| panic!("no alert {labels} in {alerts:?}"))
            .to_string()
    }
}

/// A client for the tests' own requests (Alertmanager's self-signed TLS included).
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

fn client_for(config: AlertmanagerConfig) -> AlertmanagerClient {
    AlertmanagerClient::new(&config)
        .expect("a client")
        .expect("a url gives a client")
}

fn client(url: &str) -> AlertmanagerClient {
    client_for(AlertmanagerConfig {
        url: Some(url.to_string()),
        ..Default::default()
    })
}

/// A whole second an hour from now: Alertmanager keeps milliseconds.
fn in_an_hour() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second() + 3600).expect("a timestamp")
}

fn silence_request(labels: &[(&str, &str)], run: &str) -> SilenceRequest {
    SilenceRequest {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ends_at: in_an_hour(),
        comment: format!("Karo: AlertReactionRun {run} is remediating this alert"),
        marker: run.to_string(),
    }
}

fn label_map(labels: &[(&str, &str)]) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect(),
    )
}

/// The silence's matchers as `name -> value`, each checked to be an exact equality.
fn exact_matchers(silence: &Value) -> Value {
    let matchers = silence["matchers"].as_array().expect("matchers");
    for m in matchers {
        assert_eq!(m["isEqual"], true, "{m}");
        assert_eq!(m["isRegex"], false, "{m}");
    }
    Value::Object(
        matchers
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().expect("name").to_string(),
                    m["value"].clone(),
                )
            })
            .collect(),
    )
}

#[tokio::test]
async fn a_runs_silence_is_made_once_on_exact_labels_and_expired_idempotently() {
    let am = Am::plain().await;
    let karo = client(&am.url);
    let labels = [
        ("alertname", "KaroSilenceTest"),
        ("instance", "db-1:9100"),
        ("job", "node"),
    ];
    let req = silence_request(&labels, "team-a/disk-full-3f2a");

    let id = karo.ensure_silence(&req).await.expect("a silence");
    let silence = am.silence(&id).await;
    assert_eq!(silence["status"]["state"], "active", "{silence}");
    assert_eq!(silence["createdBy"], "karo");
    assert_eq!(silence["comment"], req.comment.as_str());
    assert_eq!(exact_matchers(&silence), label_map(&labels));
    let ends_at: Timestamp = silence["endsAt"]
        .as_str()
        .expect("endsAt")
        .parse()
        .expect("a timestamp");
    assert_eq!(ends_at, req.ends_at);

    // amtool, Alertmanager's own client, sees the same silence.
    match bins::amtool() {
        Ok(amtool) => {
            let mut cmd = Command::new(amtool);
            cmd.arg(format!("--alertmanager.url={}", am.url))
                .args(["-o", "json", "silence", "query"])
                .arg("alertname=KaroSilenceTest");
            let out = run_output(cmd, None).expect("amtool");
            assert!(out.status.success(), "{out:?}");
            let listed: Vec<Value> = serde_json::from_slice(&out.stdout).expect("amtool's JSON");
            assert_eq!(listed.len(), 1, "{listed:?}");
            assert_eq!(listed[0]["id"], id.as_str());
            assert_eq!(listed[0]["createdBy"], "karo");
            assert_eq!(listed[0]["comment"], req.comment.as_str());
        }
        Err(e) => eprintln!("amtool check skipped: {e:#}"),
    }

    // Again, as after a restart or a retried step: the same silence, not a second one.
    let again = karo.ensure_silence(&req).await.expect("a silence");
    assert_eq!(again, id);
    assert_eq!(am.silences().await.len(), 1);

    // Another Run on the same labels has its own silence.
    let other_run = silence_request(&labels, "team-a/disk-full-77c1");
    let other = karo.ensure_silence(&other_run).await.expect("a silence");
    assert_ne!(other, id);
    assert_eq!(am.silences().await.len(), 2);

    karo.expire_silence(&id).await.expect("expired");
    assert_eq!(am.silence(&id).await["status"]["state"], "expired");
    assert_eq!(am.silence(&other).await["status"]["state"], "active");
    // Expiring twice is fine, and so is a silence Alertmanager never had (0.25
    // answers 500 "silence not found" for it).
    karo.expire_silence(&id).await.expect("expired again");
    karo.expire_silence("2c3e9d0f-5b1a-4c8e-9f6d-0a1b2c3d4e5f")
        .await
        .expect("an unknown silence");
    // An expired silence is not reused: the Run gets a new one.
    let renewed = karo.ensure_silence(&req).await.expect("a silence");
    assert_ne!(renewed, id);
    assert_eq!(am.silence(&renewed).await["status"]["state"], "active");

    // A refusal carries the URL, the status and Alertmanager's words.
    let err = karo
        .expire_silence("not-a-uuid")
        .await
        .expect_err("not a silence ID");
    let text = err.to_string();
    assert!(
        matches!(err, AlertmanagerError::Status { status: 422, .. }),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}/api/v2/silence/not-a-uuid", am.url)),
        "{text}"
    );
    assert!(text.contains("uuid"), "{text}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn label_values_with_quotes_and_backslashes_round_trip() {
    let am = Am::plain().await;
    let karo = client(&am.url);
    let name = r#"Disk "Full" \ Alert"#;
    let labels = [
        ("alertname", name),
        ("path", r#"C:\data\"quoted"\"#),
        ("note", "two\nlines"),
    ];
    let req = silence_request(&labels, "ns/quoted-1");
    let id = karo.ensure_silence(&req).await.expect("a silence");
    assert_eq!(exact_matchers(&am.silence(&id).await), label_map(&labels));
    // Found again through the escaped filter: one silence, the same ID.
    assert_eq!(karo.ensure_silence(&req).await.expect("a silence"), id);
    assert_eq!(am.silences().await.len(), 1);

    am.post_alert(json!({"labels": label_map(&labels)})).await;
    let fingerprint = am.fingerprint(&label_map(&labels)).await;
    assert!(karo
        .alert_firing(&fingerprint, name)
        .await
        .expect("alerts listed"));
}

#[tokio::test]
async fn an_alert_fires_until_alertmanager_holds_it_resolved() {
    let am = Am::plain().await;
    let karo = client(&am.url);
    let labels = json!({"alertname": "KaroFiringTest", "instance": "web-1"});
    let neighbour = json!({"alertname": "KaroFiringTest", "instance": "web-2"});
    am.post_alert(json!({"labels": labels})).await;
    am.post_alert(json!({"labels": neighbour})).await;
    let fingerprint = am.fingerprint(&labels).await;
    let other = am.fingerprint(&neighbour).await;

    assert!(karo
        .alert_firing(&fingerprint, "KaroFiringTest")
        .await
        .expect("alerts"));
    assert!(!karo
        .alert_firing("0123456789abcdef", "KaroFiringTest")
        .await
        .expect("alerts"));
    assert!(!karo
        .alert_firing(&fingerprint, "SomethingElse")
        .await
        .expect("alerts"));

    // Silenced by Karo's own silence, it still fires.
    let silence = silence_request(
        &[("alertname", "KaroFiringTest"), ("instance", "web-1")],
        "ns/firing-1",
    );
    karo.ensure_silence(&silence).await.expect("a silence");
    assert!(karo
        .alert_firing(&fingerprint, "KaroFiringTest")
        .await
        .expect("alerts"));

    // Resolved: posted again with `endsAt` in the past.
    let past = Timestamp::from_second(Timestamp::now().as_second() - 60)
        .expect("a timestamp")
        .to_string();
    am.post_alert(json!({"labels": labels, "startsAt": past, "endsAt": past}))
        .await;
    assert!(!karo
        .alert_firing(&fingerprint, "KaroFiringTest")
        .await
        .expect("alerts"));
    assert!(karo
        .alert_firing(&other, "KaroFiringTest")
        .await
        .expect("alerts"));
}

#[tokio::test]
async fn basic_auth_credentials_are_read_from_their_file_at_every_request() {
    let web = json!({"basic_auth_users": {"karo": PASSWORD_BCRYPT}});
    let am = Am::start(Some(web), Some(("karo", PASSWORD))).await;
    let password_file = am.dir.path().join("password");
    std::fs::write(&password_file, "wrong\n").expect("password file");
    let karo = client_for(AlertmanagerConfig {
        url: Some(am.url.clone()),
        auth: karo::model::config::AuthConfig {
            kind: AuthType::Basic,
            username: Some("karo".into()),
            password_file: Some(password_file.clone()),
            token_file: None,
        },
        ..Default::default()
    });
    let req = silence_request(&[("alertname", "KaroAuthTest")], "ns/auth-1");

    let err = karo.ensure_silence(&req).await.expect_err("wrong password");
    assert!(
        matches!(err, AlertmanagerError::Status { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&am.url), "{err}");
    // Without credentials at all: refused too.
    let anonymous = client(&am.url);
    let err = anonymous
        .ensure_silence(&req)
        .await
        .expect_err("no credentials");
    assert!(
        matches!(err, AlertmanagerError::Status { status: 401, .. }),
        "{err}"
    );

    // The Secret is rotated: the same client sends the new password.
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password file");
    let id = karo.ensure_silence(&req).await.expect("authenticated");
    assert_eq!(am.silence(&id).await["createdBy"], "karo");
    assert!(karo
        .alert_firing("0123456789abcdef", "KaroAuthTest")
        .await
        .is_ok());
    karo.expire_silence(&id).await.expect("expired");

    // A file that cannot be read is an error naming it; nothing is sent.
    std::fs::remove_file(&password_file).expect("removing the password");
    let err = karo
        .ensure_silence(&req)
        .await
        .expect_err("no password file");
    assert!(matches!(err, AlertmanagerError::File { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&password_file.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn https_alertmanager_is_trusted_through_the_configured_ca() {
    let certs = TestDir::new("am-api-certs").expect("temp dir");
    make_certs(certs.path(), 1);
    let web = json!({"tls_server_config": {
        "cert_file": certs.path().join("tls.crt"),
        "key_file": certs.path().join("tls.key"),
    }});
    let am = Am::start(Some(web), None).await;
    assert!(am.url.starts_with("https://"));
    let req = silence_request(&[("alertname", "KaroTlsTest")], "ns/tls-1");

    // The built-in roots do not know this CA.
    let err = client(&am.url)
        .ensure_silence(&req)
        .await
        .expect_err("an unknown CA");
    assert_eq!(err.kind(), "unreachable", "{err}");
    assert!(err.to_string().contains(&am.url), "{err}");

    let mut config = AlertmanagerConfig {
        url: Some(am.url.clone()),
        ..Default::default()
    };
    config.tls.ca_file = Some(certs.path().join("ca.crt"));
    let id = client_for(config.clone())
        .ensure_silence(&req)
        .await
        .expect("trusted through caFile");
    assert_eq!(am.silence(&id).await["status"]["state"], "active");

    config.tls.ca_file = None;
    config.tls.insecure_skip_verify = true;
    let same = client_for(config)
        .ensure_silence(&req)
        .await
        .expect("no verification");
    assert_eq!(same, id);
}

#[tokio::test]
async fn an_unreachable_or_silent_alertmanager_is_an_error_naming_the_url() {
    // Nothing listens on a port just freed: the connection is refused.
    let url = format!("http://127.0.0.1:{}", free_port());
    let karo = client(&url);
    let req = silence_request(&[("alertname", "KaroDownTest")], "ns/down-1");
    let err = karo.ensure_silence(&req).await.expect_err("refused");
    assert_eq!(err.kind(), "unreachable", "{err}");
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(text.contains(&format!("{url}/api/v2/silences")), "{text}");
    let err = karo
        .expire_silence("2c3e9d0f-5b1a-4c8e-9f6d-0a1b2c3d4e5f")
        .await;
    assert!(err.expect_err("refused").to_string().contains(&url));
    let err = karo.alert_firing("0123456789abcdef", "KaroDownTest").await;
    assert!(err.expect_err("refused").to_string().contains(&url));

    // A server that accepts the connection and never answers: the configured
    // timeout ends the request.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let port = listener.local_addr().expect("its address").port();
    let url = format!("http://127.0.0.1:{port}");
    let silent = client_for(AlertmanagerConfig {
        url: Some(url.clone()),
        timeout_seconds: 1,
        ..Default::default()
    });
    let err = silent.ensure_silence(&req).await.expect_err("no answer");
    assert_eq!(err.kind(), "timeout", "{err}");
    assert!(err.to_string().contains(&url), "{err}");
    drop(listener);
}
