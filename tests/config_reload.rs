//! Live configuration against a running Karo and the real API server: the
//! ConfigMap volume update exactly as the kubelet does it, SIGHUP, POST /-/reload.

mod common;
mod support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use common::*;
use support::{wait_until, ControlPlane, KaroProcess, TestDir};

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

async fn reloads(url: &str, result: &str) -> f64 {
    metric(
        url,
        &format!("karo_config_reloads_total{{result=\"{result}\"}}"),
    )
    .await
}

async fn wait_reloads(url: &str, result: &str, at_least: f64) {
    let url = url.to_string();
    let result = result.to_string();
    wait_until(SOON, || {
        let url = url.clone();
        let result = result.clone();
        async move { reloads(&url, &result).await >= at_least }
    })
    .await
    .unwrap_or_else(|e| panic!("no {result} reload #{at_least}: {e}"));
}

const REACTION: &str = r#"
metadata: {name: live}
spec:
  alertName: Live
  actions: [{name: a, image: busybox, args: ["{{labels.n}}"]}]
"#;

fn fire(n: u32) -> serde_json::Value {
    notification(vec![alert(
        json!({"alertname": "Live", "n": n.to_string()}),
        json!({}),
        &format!("2026-08-01T00:00:{n:02}Z"),
    )])
}

async fn start(cp: &ControlPlane, cm: &ConfigMapDir) -> KaroProcess {
    let config = cm.config().to_string_lossy().to_string();
    KaroProcess::start(cp.kubeconfig(), &["--config", &config], &[])
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

#[tokio::test]
async fn configmap_updates_take_effect_without_restart() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("live").await;
    apply_reaction(cp, &ns, REACTION).await;
    let base = format!("namespaces: [{ns}]\n");
    let cm = ConfigMapDir::new(&[("config.yaml", &base)]);
    let karo = start(cp, &cm).await;
    let url = karo.url().to_string();
    let hook = format!("{url}/webhook");
    wait_ready_condition(cp, &ns, "live", "True").await;

    let (_, body) = post_json(&hook, &fire(1)).await;
    assert_eq!(body["created"], 1, "{body}");

    // dryRun: the next alert creates nothing.
    cm.update(&[("config.yaml", &format!("{base}dryRun: true\n"))]);
    wait_reloads(&url, "success", 1.0).await;
    let (_, body) = post_json(&hook, &fire(2)).await;
    assert_eq!(body["created"], 0, "{body}");
    assert_eq!(body["dryRun"], 1, "{body}");
    assert_eq!(jobs(cp, &ns).await.len(), 1);

    // A new ttlSecondsAfterFinished appears on the next Job.
    cm.update(&[(
        "config.yaml",
        &format!("{base}jobDefaults:\n  ttlSecondsAfterFinished: 42\n"),
    )]);
    wait_reloads(&url, "success", 2.0).await;
    let (_, body) = post_json(&hook, &fire(3)).await;
    assert_eq!(body["created"], 1, "{body}");
    let name = body["jobs"][0].as_str().expect("job name").to_string();
    let job = jobs(cp, &ns)
        .await
        .into_iter()
        .find(|j| j.metadata.name.as_deref() == Some(name.as_str()))
        .expect("job");
    assert_eq!(
        job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished),
        Some(42)
    );

    // A new Job template file, shipped in the same ConfigMap, is used for the next Job.
    let skeleton = karo::jobs::DEFAULT_SKELETON.replace(
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
    wait_reloads(&url, "success", 3.0).await;
    let (_, body) = post_json(&hook, &fire(4)).await;
    assert_eq!(body["created"], 1, "{body}");
    let name = body["jobs"][0].as_str().expect("job name").to_string();
    let job = jobs(cp, &ns)
        .await
        .into_iter()
        .find(|j| j.metadata.name.as_deref() == Some(name.as_str()))
        .expect("job");
    assert_eq!(
        job.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("team"))
            .map(String::as_str),
        Some("platform")
    );
    // The default TTL is back (the new config no longer sets 42).
    assert_eq!(
        job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished),
        Some(300)
    );
}

#[tokio::test]
async fn broken_updates_are_refused_and_the_running_config_stays() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("broken-config").await;
    apply_reaction(cp, &ns, REACTION).await;
    let good = format!("namespaces: [{ns}]\njobDefaults:\n  ttlSecondsAfterFinished: 77\n");
    let cm = ConfigMapDir::new(&[("config.yaml", &good)]);
    let karo = start(cp, &cm).await;
    let url = karo.url().to_string();
    let hook = format!("{url}/webhook");
    wait_ready_condition(cp, &ns, "live", "True").await;
    assert_eq!(
        metric(&url, "karo_config_last_reload_successful").await,
        1.0
    );

    let broken = [
        format!("{good}webhook: [unclosed\n"),
        format!("{good}dryRun: maybe\n"),
        format!("{good}webhook:\n  path: no-leading-slash\n"),
        format!("{good}jobDefaults:\n  backoffLimit: -3\n"),
        format!("{good}jobTemplateFile: /nonexistent/job.yaml\n"),
        format!("{good}unknownKey: 1\n"),
    ];
    for (i, content) in broken.iter().enumerate() {
        cm.update(&[("config.yaml", content)]);
        wait_reloads(&url, "failure", (i + 1) as f64).await;
        assert_eq!(
            metric(&url, "karo_config_last_reload_successful").await,
            0.0
        );
        // The running config keeps working: the next alert still creates its Job,
        // with the running defaults.
        let (code, body) = post_json(&hook, &fire(10 + i as u32)).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["created"], 1, "after {content:?}: {body}");
    }
    for job in jobs(cp, &ns).await {
        assert_eq!(
            job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished),
            Some(77)
        );
    }
    let log = karo.log_text();
    assert!(log.contains("configuration reload failed"), "{log}");

    // Fixing the file makes the next reload succeed.
    cm.update(&[("config.yaml", &good.replace("77", "78"))]);
    wait_reloads(&url, "success", 1.0).await;
    assert_eq!(
        metric(&url, "karo_config_last_reload_successful").await,
        1.0
    );
    let (_, body) = post_json(&hook, &fire(30)).await;
    let name = body["jobs"][0].as_str().expect("job").to_string();
    let job = jobs(cp, &ns)
        .await
        .into_iter()
        .find(|j| j.metadata.name.as_deref() == Some(name.as_str()))
        .expect("job");
    assert_eq!(
        job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished),
        Some(78)
    );
}

#[tokio::test]
async fn sighup_and_http_reload_and_restart_only_settings() {
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let ns = cp.namespace("sighup").await;
    apply_reaction(cp, &ns, REACTION).await;
    let dir = TestDir::new("plain-config").expect("dir");
    let file = dir.path().join("karo.yaml");
    let base = format!("namespaces: [{ns}]\n");
    std::fs::write(&file, &base).expect("write");
    let config = file.to_string_lossy().to_string();
    let karo = KaroProcess::start(cp.kubeconfig(), &["--config", &config], &[])
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let url = karo.url().to_string();
    let hook = format!("{url}/webhook");
    wait_ready_condition(cp, &ns, "live", "True").await;

    // POST /-/reload: a new webhook port and namespace list are reported as needing a
    // restart and keep their running values; dryRun takes effect.
    std::fs::write(
        &file,
        format!("namespaces: [{ns}, other]\nwebhook:\n  port: 1\ndryRun: true\n"),
    )
    .expect("write");
    let (code, body) = post_json(&format!("{url}/-/reload"), &json!({})).await;
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
    let (code, body) = post_json(&hook, &fire(1)).await;
    assert_eq!(code, 200);
    assert_eq!(body["dryRun"], 1, "{body}");

    // A broken file through /-/reload: 500 with the reason, the running config stays.
    std::fs::write(&file, "logLevel: [\n").expect("write");
    let (code, body) = post_json(&format!("{url}/-/reload"), &json!({})).await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("reload failed"),
        "{body}"
    );

    // SIGHUP: dry run off again, and the log level follows the config live.
    std::fs::write(&file, format!("{base}logLevel: warn\n")).expect("write");
    let before = reloads(&url, "success").await;
    karo.signal(libc::SIGHUP);
    wait_reloads(&url, "success", before + 1.0).await;
    let (_, body) = post_json(&hook, &fire(2)).await;
    assert_eq!(body["created"], 1, "{body}");
    let name = body["jobs"][0].as_str().expect("job").to_string();
    // At warn, the creation is not logged at info level.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !karo.log_text().contains(&name),
        "info lines are off at warn"
    );
}
