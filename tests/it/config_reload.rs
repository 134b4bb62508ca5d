//! Live configuration against a running Karo and the real API server: the
//! ConfigMap volume update exactly as the kubelet does it, SIGHUP, POST /-/reload.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

use crate::support::karo_lib::DEFAULT_SKELETON;
use crate::support::karo_process::{karo_command, KaroProcess};
use crate::support::scenario::{ttl, Scenario};
use crate::support::webhook::{firing, post_json};
use crate::support::TestDir;

/// A directory laid out like a mounted ConfigMap volume:
/// `..<ts>/<key>`, `..data -> ..<ts>`, `<key> -> ..data/<key>`.
struct ConfigMapDir {
    dir: TestDir,
    generation: AtomicUsize,
}

impl ConfigMapDir {
    fn new(files: &[(&str, &str)]) -> ConfigMapDir {
        let dir = TestDir::new("configmap").expect("dir");
        let d = ConfigMapDir {
            dir,
            generation: AtomicUsize::new(0),
        };
        d.update(files);
        d
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self) -> PathBuf {
        self.path().join("config.yaml")
    }

    /// The kubelet's atomic update: write a new timestamped directory, point a
    /// temporary symlink at it, rename that over `..data`, delete the old directory.
    fn update(&self, files: &[(&str, &str)]) {
        let root = self.path();
        let n = self.generation.fetch_add(1, Ordering::SeqCst);
        let ts = format!("..2026_11_26_10_00_00.{n:06}");
        std::fs::create_dir(root.join(&ts)).expect("ts dir");
        for (key, content) in files {
            std::fs::write(root.join(&ts).join(key), content).expect("write key");
        }
        let old = std::fs::read_link(root.join("..data")).ok();
        symlink(&ts, root.join("..data_tmp")).expect("tmp link");
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap ..data");
        for (key, _) in files {
            let link = root.join(key);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(format!("..data/{key}"), &link).expect("key link");
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(root.join(old)).expect("remove old ts dir");
        }
    }
}

/// The series that counts reloads with `result` (`success` or `failure`).
fn reloads(result: &str) -> String {
    format!("karo_config_reloads_total{{result=\"{result}\"}}")
}

const LAST_RELOAD_SUCCESSFUL: &str = "karo_config_last_reload_successful";

/// Waits until Karo counts at least `at_least` reloads with `result`.
async fn wait_reloads(karo: &KaroProcess, result: &str, at_least: f64) {
    karo.wait_metric(&reloads(result), |n| n >= at_least).await;
}

/// A scenario with the reaction `live`, which every alert `Live` triggers.
async fn live(prefix: &str) -> Scenario {
    Scenario::build(prefix)
        .reaction(
            r#"
metadata: {name: live}
spec:
  alertName: Live
  actions: [{name: a, image: busybox, args: ["{{labels.n}}"]}]
"#,
        )
        .create()
        .await
}

/// The reaction `live`, and Karo reading its config, `extra` after `namespaces`, from
/// a ConfigMap volume; returns once `live` is Ready.
async fn live_from_configmap(prefix: &str, extra: &str) -> (Scenario, ConfigMapDir, KaroProcess) {
    let s = live(prefix).await;
    let cm = ConfigMapDir::new(&[("config.yaml", &s.karo_config(extra))]);
    let config = cm.config().to_string_lossy().to_string();
    let karo = KaroProcess::start(s.cp().kubeconfig(), &["--config", &config], &[])
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    s.wait_ready("live", "True").await;
    (s, cm, karo)
}

/// Alert `n`: a new occurrence of `Live` each.
async fn fire(karo: &KaroProcess, n: u32) -> Value {
    karo.notify_ok(&firing(
        [json!({"alertname": "Live", "n": n.to_string()})],
        &format!("2026-08-01T00:00:{n:02}Z"),
    ))
    .await
}

/// The name of the one Job a webhook answer reports.
fn created_job(body: &Value) -> &str {
    body["jobs"][0].as_str().expect("job name")
}

#[tokio::test]
async fn configmap_updates_take_effect_without_restart() {
    let (s, cm, karo) = live_from_configmap("live", "").await;
    let base = s.karo_config("");

    let body = fire(&karo, 1).await;
    assert_eq!(body["created"], 1, "{body}");
    s.wait_job(created_job(&body)).await;

    // dryRun: the next alert creates no Job, only the Run that records it.
    cm.update(&[("config.yaml", &format!("{base}dryRun: true\n"))]);
    wait_reloads(&karo, "success", 1.0).await;
    let body = fire(&karo, 2).await;
    assert_eq!(body["created"], 0, "{body}");
    assert_eq!(body["dryRun"], 1, "{body}");
    assert_eq!(s.runs().await.len(), 2);
    assert_eq!(s.jobs().await.len(), 1);

    // A new ttlSecondsAfterFinished appears on the next Job.
    cm.update(&[(
        "config.yaml",
        &format!("{base}jobDefaults:\n  ttlSecondsAfterFinished: 42\n"),
    )]);
    wait_reloads(&karo, "success", 2.0).await;
    let body = fire(&karo, 3).await;
    assert_eq!(body["created"], 1, "{body}");
    assert_eq!(ttl(&s.wait_job(created_job(&body)).await), Some(42));

    // A new Job template file, shipped in the same ConfigMap, is used for the next Job.
    let skeleton = DEFAULT_SKELETON.replace(
        "app.kubernetes.io/managed-by: karo\n    karo.io/reaction",
        "app.kubernetes.io/managed-by: karo\n    team: \"{{default labels.team \\\"platform\\\"}}\"\n    karo.io/reaction",
    );
    assert!(skeleton.contains("team:"), "the skeleton edit applied");
    let template_path = cm.path().join("job.yaml");
    cm.update(&[
        (
            "config.yaml",
            &format!("{base}jobTemplateFile: {}\n", template_path.display()),
        ),
        ("job.yaml", &skeleton),
    ]);
    wait_reloads(&karo, "success", 3.0).await;
    let body = fire(&karo, 4).await;
    assert_eq!(body["created"], 1, "{body}");
    let job = s.wait_job(created_job(&body)).await;
    assert_eq!(
        job.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("team"))
            .map(String::as_str),
        Some("platform")
    );
    // The default TTL is back (the new config no longer sets 42).
    assert_eq!(ttl(&job), Some(300));
}

#[tokio::test]
async fn broken_updates_are_refused_and_the_running_config_stays() {
    let defaults = "jobDefaults:\n  ttlSecondsAfterFinished: 77\n";
    let (s, cm, karo) = live_from_configmap("broken-config", defaults).await;
    let good = s.karo_config(defaults);
    assert_eq!(karo.metric(LAST_RELOAD_SUCCESSFUL).await, 1.0);

    let empty = tempfile::NamedTempFile::new().expect("empty password file");
    let broken = [
        format!("{good}webhook: [unclosed\n"),
        format!(
            "{good}webhook:\n  auth: {{type: basic, username: am, passwordFile: /nonexistent/password}}\n"
        ),
        format!(
            "{good}webhook:\n  auth: {{type: basic, username: am, passwordFile: {}}}\n",
            empty.path().display()
        ),
        format!("{good}dryRun: maybe\n"),
        format!("{good}webhook:\n  path: no-leading-slash\n"),
        format!("{good}jobDefaults:\n  backoffLimit: -3\n"),
        // Labels Kubernetes refuses would make every Job fail.
        good.replace(
            "jobDefaults:\n",
            "jobDefaults:\n  labels: {\"team name\": sre}\n",
        ),
        format!("{good}logLevel: \"off\"\n"),
        format!("{good}jobTemplateFile: /nonexistent/job.yaml\n"),
        format!("{good}unknownKey: 1\n"),
    ];
    for (i, content) in broken.iter().enumerate() {
        cm.update(&[("config.yaml", content)]);
        wait_reloads(&karo, "failure", (i + 1) as f64).await;
        assert_eq!(karo.metric(LAST_RELOAD_SUCCESSFUL).await, 0.0);
        // The running config keeps working: the next alert still creates its Job,
        // with the running defaults.
        let body = fire(&karo, 10 + i as u32).await;
        assert_eq!(body["created"], 1, "after {content:?}: {body}");
    }
    for job in s.wait_jobs(broken.len()).await {
        assert_eq!(ttl(&job), Some(77));
    }
    let log = karo.log_text();
    assert!(log.contains("configuration reload failed"), "{log}");
    for why in [
        "jobDefaults.labels.team name",
        "enables no log output",
        "webhook.auth.passwordFile",
    ] {
        assert!(log.contains(why), "{why:?} not in the log:\n{log}");
    }

    // Fixing the file makes the next reload succeed.
    cm.update(&[("config.yaml", &good.replace("77", "78"))]);
    wait_reloads(&karo, "success", 1.0).await;
    assert_eq!(karo.metric(LAST_RELOAD_SUCCESSFUL).await, 1.0);
    let body = fire(&karo, 30).await;
    assert_eq!(ttl(&s.wait_job(created_job(&body)).await), Some(78));
}

#[tokio::test]
async fn sighup_and_http_reload_and_restart_only_settings() {
    let s = live("sighup").await;
    let karo = s.start_karo("").await;
    s.wait_ready("live", "True").await;
    let file = karo.config_path();
    let reload = format!("{}/-/reload", karo.url());

    // POST /-/reload: a new webhook port and namespace list are reported as needing a
    // restart and keep their running values; dryRun takes effect.
    std::fs::write(
        &file,
        format!(
            "namespaces: [{}, other]\nwebhook:\n  port: 1\ndryRun: true\n",
            s.ns
        ),
    )
    .expect("write");
    let (code, body) = post_json(&reload, &json!({})).await;
    assert_eq!(code, 200, "{body}");
    let restart: Vec<&str> = body["restartRequired"]
        .as_array()
        .expect("restartRequired")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(restart.contains(&"webhook.port"), "{body}");
    assert!(restart.contains(&"namespaces"), "{body}");
    // Still serving on the old port, and dry run is on.
    let body = fire(&karo, 1).await;
    assert_eq!(body["dryRun"], 1, "{body}");

    // A broken file through /-/reload: 500 with the reason, the running config stays.
    std::fs::write(&file, "logLevel: [\n").expect("write");
    let (code, body) = post_json(&reload, &json!({})).await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("reload failed"),
        "{body}"
    );

    // SIGHUP: dry run off again, and the log level follows the config live.
    std::fs::write(&file, s.karo_config("logLevel: warn\n")).expect("write");
    let before = karo.metric(&reloads("success")).await;
    karo.signal(libc::SIGHUP);
    wait_reloads(&karo, "success", before + 1.0).await;
    let body = fire(&karo, 2).await;
    assert_eq!(body["created"], 1, "{body}");
    let name = created_job(&body);
    // At warn, neither the Run nor the Job creation is logged at info level (the
    // runner counts the trigger, the dry run's and this one, after it would log).
    s.wait_job(name).await;
    s.wait_trigger_count("live", 2).await;
    assert!(
        !karo.log_text().contains(name),
        "info lines are off at warn"
    );
}

/// Karo does not start on credentials files it could never read: the error names
/// the key and the file, before Karo answers any request with 401 for its own
/// trouble.
#[test]
fn karo_run_refuses_credentials_files_that_are_missing_or_empty() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").expect("empty file");
    for (file, why) in [
        (dir.path().join("missing"), "cannot read"),
        (empty, "is empty"),
    ] {
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "webhook:\n  auth: {{type: basic, username: am, passwordFile: {}}}\n",
                file.display()
            ),
        )
        .expect("config");
        let out = karo_command(&["run", "--config", &config.to_string_lossy()]);
        assert!(!out.status.success(), "karo run started with {file:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("webhook.auth.passwordFile") && err.contains(why),
            "{err}"
        );
    }
}
