//! The AlertReaction and AlertReactionRun CRDs against a real kube-apiserver, the
//! committed CRD files and `karo crd`, and the hygiene of the test platform itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{json, Value};

use crate::support::alertmanager::{Alertmanager, AlertmanagerConfig};
use crate::support::files::{documents, read, repo_path, succeeded, yaml};
use crate::support::karo_lib::{crd_yaml, run_crd_yaml, AlertReaction};
use crate::support::karo_process::karo_command;
use crate::support::process::{pid_alive, remove_stale_dirs};
use crate::support::scenario::Scenario;
use crate::support::{wait_until, ControlPlane, Proc, TestDir};

const HANG_GUARD: Duration = Duration::from_secs(60);

/// A fixture manifest as JSON, with its namespace set to `namespace`.
fn fixture(name: &str, namespace: &str) -> Value {
    let mut manifest = yaml(&read(repo_path(&format!("tests/fixtures/{name}"))));
    manifest["metadata"]["namespace"] = json!(namespace);
    manifest
}

fn dynamic_api(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, namespace, &ApiResource::erase::<AlertReaction>(&()))
}

#[tokio::test]
async fn karo_crd_output_applies_and_kubectl_shows_the_printer_columns() {
    // An API server of its own, so that the CRD is new to it.
    let cp = ControlPlane::start().await.expect("control plane");

    // Both CRDs, in one stream.
    let crd = succeeded(&karo_command(&["crd"]), "karo crd");
    succeeded(
        &cp.kubectl_with_stdin(&["apply", "-f", "-"], Some(crd.as_bytes())),
        "kubectl apply -f - (karo crd)",
    );
    succeeded(
        &cp.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/alertreactions.karo.io",
            "crd/alertreactionruns.karo.io",
        ]),
        "kubectl wait --for=condition=Established",
    );

    let ns = cp.namespace("printer-columns").await;
    let client = cp.client().await;
    let typed = Api::<AlertReaction>::namespaced(client, &ns);
    wait_until(HANG_GUARD, || async {
        typed.list(&Default::default()).await.is_ok()
    })
    .await
    .expect("the AlertReaction resource is served");

    let legacy = fixture("legacy-actions.yaml", &ns).to_string();
    succeeded(
        &cp.kubectl_with_stdin(&["apply", "-n", &ns, "-f", "-"], Some(legacy.as_bytes())),
        "kubectl apply (legacy-actions.yaml)",
    );

    let table = succeeded(&cp.kubectl(&["get", "ar", "-n", &ns]), "kubectl get ar");
    eprintln!("kubectl get ar:\n{table}");
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "ALERT",
            "ACTIONS",
            "READY",
            "LAST",
            "TRIGGERED",
            "TRIGGERS",
            "AGE"
        ],
        "header of `kubectl get ar`:\n{table}"
    );
    // The API server prints the first match of a printer column's JSONPath only, so
    // ACTIONS shows the first action, not every one.
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row.get(..3),
        Some(&["disk-pressure-cleanup", "NodeDiskPressure", "cleanup"][..]),
        "first row of `kubectl get ar`:\n{table}"
    );

    // A Run as Karo records it, before its status is written.
    let run = json!({
        "apiVersion": "karo.io/v1alpha1",
        "kind": "AlertReactionRun",
        "metadata": {"name": "disk-pressure-cleanup-0123456789", "namespace": ns},
        "spec": {
            "reaction": {"name": "disk-pressure-cleanup", "uid": "0c0ffee0-0000-4000-8000-000000000000", "generation": 1},
            "alert": {"status": "firing", "labels": {"alertname": "NodeDiskPressure"}, "startsAt": "2026-12-02T10:00:00Z", "fingerprint": "0123456789abcdef"},
            "notification": {"receiver": "karo"},
        },
    })
    .to_string();
    succeeded(
        &cp.kubectl_with_stdin(&["apply", "-n", &ns, "-f", "-"], Some(run.as_bytes())),
        "kubectl apply (an AlertReactionRun)",
    );
    let table = succeeded(&cp.kubectl(&["get", "arr", "-n", &ns]), "kubectl get arr");
    eprintln!("kubectl get arr:\n{table}");
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "REACTION", "ALERT", "PHASE", "STARTED", "DURATION", "AGE"],
        "header of `kubectl get arr`:\n{table}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row.get(..3),
        Some(
            &[
                "disk-pressure-cleanup-0123456789",
                "disk-pressure-cleanup",
                "NodeDiskPressure"
            ][..]
        ),
        "first row of `kubectl get arr`:\n{table}"
    );

    // The `karo` category: reactions and their Runs in one listing.
    let listed = succeeded(
        &cp.kubectl(&["get", "karo", "-n", &ns, "-o", "name"]),
        "kubectl get karo",
    );
    let mut names: Vec<&str> = listed.lines().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "alertreaction.karo.io/disk-pressure-cleanup",
            "alertreactionrun.karo.io/disk-pressure-cleanup-0123456789",
        ],
        "kubectl get karo:\n{listed}"
    );
}

/// Applies a fixture and checks that its spec survives the API server and the
/// `AlertReaction` type: equal to what was written, plus the CRD's defaults.
async fn assert_round_trip(fixture_name: &str) {
    let s = Scenario::build(&format!(
        "round-trip-{}",
        fixture_name.trim_end_matches(".yaml")
    ))
    .create()
    .await;
    let ns = &s.ns;
    let client = s.cp().client().await;
    let manifest = fixture(fixture_name, ns);
    let name = manifest["metadata"]["name"]
        .as_str()
        .expect("fixture has a name")
        .to_string();

    let object: DynamicObject = serde_json::from_value(manifest.clone()).expect("a k8s object");
    dynamic_api(client.clone(), ns)
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("the API server rejected {fixture_name}: {e}"));

    let mut expected = manifest["spec"].clone();
    let spec = expected.as_object_mut().expect("spec is an object");
    spec.entry("triggerOn").or_insert(json!(["firing"]));
    spec.entry("concurrencyPolicy").or_insert(json!("Allow"));

    // What the server stored (pruning would show here)...
    let stored = dynamic_api(client.clone(), ns)
        .get(&name)
        .await
        .expect("get as DynamicObject");
    assert_eq!(
        stored.data["spec"], expected,
        "{fixture_name}: the API server changed the spec"
    );
    // ...and what Karo's type makes of it.
    let reaction = Api::<AlertReaction>::namespaced(client, ns)
        .get(&name)
        .await
        .expect("get as AlertReaction");
    let read_back = serde_json::to_value(&reaction.spec).expect("spec serialises");
    assert_eq!(
        read_back, expected,
        "{fixture_name}: AlertReactionSpec lost or changed a field"
    );
}

#[tokio::test]
async fn seed_job_template_reaction_round_trips() {
    assert_round_trip("seed-jobtemplate.yaml").await;
}

#[tokio::test]
async fn legacy_actions_reaction_round_trips() {
    assert_round_trip("legacy-actions.yaml").await;
}

/// Creates an AlertReaction `name` with `spec` and returns the API server's error
/// message.
async fn rejection(name: &str, spec: Value) -> String {
    let s = Scenario::build("rejected").create().await;
    let manifest = json!({
        "apiVersion": "karo.io/v1alpha1",
        "kind": "AlertReaction",
        "metadata": {"name": name, "namespace": s.ns},
        "spec": spec,
    });
    let object: DynamicObject = serde_json::from_value(manifest).expect("a k8s object");
    match dynamic_api(s.cp().client().await, &s.ns)
        .create(&PostParams::default(), &object)
        .await
    {
        Ok(_) => panic!("the API server accepted an invalid AlertReaction"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "expected 422 Invalid: {status:?}");
            status.message
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn api_server_rejects_an_unknown_matcher_operator() {
    let message = rejection(
        "double-equals",
        json!({
            "alertName": "HighCPUUsage",
            "matchers": [{"name": "severity", "operator": "==", "value": "critical"}],
            "actions": [{"name": "a", "image": "busybox"}]
        }),
    )
    .await;
    // kube-apiserver 1.20 leaves the index out of the path ("spec.matchers.operator");
    // later versions write "spec.matchers[0].operator". Both name the field.
    assert!(
        message.contains("spec.matchers[0].operator") || message.contains("spec.matchers.operator"),
        "message should name the field: {message}"
    );
    assert!(
        message.contains("Unsupported value") && message.contains(r#""==""#),
        "message should name the rejected value: {message}"
    );
}

#[tokio::test]
async fn api_server_rejects_a_reaction_without_alert_name() {
    let message = rejection(
        "no-alert-name",
        json!({"actions": [{"name": "a", "image": "busybox"}]}),
    )
    .await;
    assert!(
        message.contains("spec.alertName"),
        "message should name the field: {message}"
    );
}

/// `Err` with a message saying how to fix it, if `path` is not exactly `generated`.
fn crd_drift(path: &Path, generated: &str) -> Result<(), String> {
    let committed = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}; run `make crd`", path.display()))?;
    if committed == generated {
        return Ok(());
    }
    let (committed_lines, generated_lines): (Vec<&str>, Vec<&str>) =
        (committed.lines().collect(), generated.lines().collect());
    let line = committed_lines
        .iter()
        .zip(&generated_lines)
        .position(|(c, g)| c != g)
        .unwrap_or(committed_lines.len().min(generated_lines.len()));
    Err(format!(
        "{} is not what `karo crd` generates (first difference at line {}: committed {:?}, \
         generated {:?}); run `make crd` and commit the result",
        path.display(),
        line + 1,
        committed_lines
            .get(line)
            .copied()
            .unwrap_or("<end of file>"),
        generated_lines
            .get(line)
            .copied()
            .unwrap_or("<end of file>"),
    ))
}

/// Each CRD Karo generates, with the name of its committed files.
fn generated_crds() -> [(&'static str, String); 2] {
    [
        (
            "karo.io_alertreactions.yaml",
            crd_yaml().expect("AlertReaction CRD serialises"),
        ),
        (
            "karo.io_alertreactionruns.yaml",
            run_crd_yaml().expect("AlertReactionRun CRD serialises"),
        ),
    ]
}

#[test]
fn committed_crd_files_match_the_generated_crds() {
    let mut drifts = Vec::new();
    for (file, generated) in generated_crds() {
        for dir in ["config/crd", "charts/karo/crds"] {
            if let Err(drift) = crd_drift(&repo_path(&format!("{dir}/{file}")), &generated) {
                drifts.push(drift);
            }
        }
    }
    assert!(drifts.is_empty(), "{}", drifts.join("\n"));
    // Nothing else in those folders: a CRD Karo no longer generates would be
    // installed by the chart and `kubectl apply -f config/crd/` all the same.
    for dir in ["config/crd", "charts/karo/crds"] {
        let mut files: Vec<String> = std::fs::read_dir(repo_path(dir))
            .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort();
        let mut expected: Vec<String> = generated_crds()
            .iter()
            .map(|(file, _)| file.to_string())
            .collect();
        expected.sort();
        assert_eq!(files, expected, "files in {dir}");
    }
}

/// `karo crd` prints both CRDs as one YAML stream, AlertReaction first; `karo crd
/// <plural>` prints one, exactly as generated (what `make crd` writes).
#[test]
fn karo_crd_prints_both_crds_and_each_by_its_plural() {
    let [(_, reactions), (_, runs)] = generated_crds();
    let both = succeeded(&karo_command(&["crd"]), "karo crd");
    let docs = documents(&both);
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        names,
        ["alertreactions.karo.io", "alertreactionruns.karo.io"],
        "documents of `karo crd`"
    );
    assert_eq!(docs, [yaml(&reactions), yaml(&runs)]);
    for (plural, generated) in [("alertreactions", &reactions), ("alertreactionruns", &runs)] {
        let one = succeeded(
            &karo_command(&["crd", plural]),
            &format!("karo crd {plural}"),
        );
        assert_eq!(&one, generated, "karo crd {plural}");
    }
    let out = karo_command(&["crd", "jobs"]);
    assert!(!out.status.success(), "karo crd jobs should fail");
}

#[test]
fn drift_check_catches_a_hand_edit() {
    let generated = crd_yaml().expect("CRD serialises");
    let dir = TestDir::new("crd-drift").expect("temp dir");
    let copy = dir.path().join("karo.io_alertreactions.yaml");

    std::fs::write(&copy, &generated).expect("write copy");
    assert_eq!(crd_drift(&copy, &generated), Ok(()));

    let original = "The alert's `alertname` label must equal this.";
    assert!(
        generated.contains(original),
        "the description to edit is gone"
    );
    let edited = generated.replacen(original, "Edited by hand.", 1);
    std::fs::write(&copy, edited).expect("write edited copy");
    let drift = crd_drift(&copy, &generated).expect_err("a hand edit is drift");
    assert!(drift.contains("make crd"), "{drift}");
    assert!(drift.contains("Edited by hand."), "{drift}");
}

/// `kill(pid, 0)` fails with ESRCH: no such process, not even a zombie.
fn assert_reaped(pid: u32, what: &str) {
    // SAFETY: signal 0 only checks for existence.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert!(
        rc == -1 && errno == Some(libc::ESRCH),
        "{what} (pid {pid}) still exists"
    );
}

#[tokio::test]
async fn platform_processes_and_dirs_are_gone_after_drop() {
    let cp = ControlPlane::start().await.expect("control plane");
    let am = Alertmanager::start(&AlertmanagerConfig::nowhere()).await;
    let etcd = cp.etcd_pid();
    let apiserver = cp.apiserver_pid().expect("apiserver running");
    let alertmanager = am.pid();
    let dirs = [cp.dir().to_path_buf(), am.dir().to_path_buf()];
    for (pid, what) in [
        (etcd, "etcd"),
        (apiserver, "kube-apiserver"),
        (alertmanager, "alertmanager"),
    ] {
        assert!(pid_alive(pid), "{what} should be running");
    }
    for dir in &dirs {
        assert!(dir.is_dir(), "{} should exist", dir.display());
    }

    drop(cp);
    drop(am);

    // Drop killed and reaped them.
    for (pid, what) in [
        (etcd, "etcd"),
        (apiserver, "kube-apiserver"),
        (alertmanager, "alertmanager"),
    ] {
        assert_reaped(pid, what);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
    for dir in &dirs {
        assert!(!dir.exists(), "{} was not removed", dir.display());
    }
}

/// Runs this test binary's `platform_helper` in `mode` and returns the helper process
/// and the file it reports to.
fn start_helper(mode: &str, dir: &TestDir) -> (Proc, PathBuf) {
    let report = dir.path().join(format!("{mode}.report"));
    let mut cmd = Command::new(std::env::current_exe().expect("test binary path"));
    // The test's full name in this binary, for `--exact`.
    cmd.args([
        "crd::platform_helper",
        "--exact",
        "--ignored",
        "--nocapture",
    ])
    .env("KARO_TEST_HELPER", mode)
    .env("KARO_TEST_HELPER_REPORT", &report);
    let helper = Proc::spawn(
        &format!("helper ({mode})"),
        cmd,
        &dir.path().join(format!("{mode}.log")),
    )
    .expect("starting the helper");
    (helper, report)
}

async fn read_report(helper: &mut Proc, report: &Path) -> Vec<String> {
    wait_until(Duration::from_secs(180), || {
        let done = report.exists() || helper.exited();
        async move { done }
    })
    .await
    .expect("the helper reports");
    let text = std::fs::read_to_string(report)
        .unwrap_or_else(|_| panic!("no report from the helper:\n{}", helper.log_tail(40)));
    text.split_whitespace().map(str::to_string).collect()
}

/// The test binary is killed outright (no unwinding, no atexit): its children die
/// with it (PDEATHSIG), and the next test binary removes its dirs.
#[tokio::test]
async fn children_die_when_the_test_binary_is_killed() {
    let dir = TestDir::new("helper-kill").expect("temp dir");
    let (mut helper, report) = start_helper("hold", &dir);
    let report = read_report(&mut helper, &report).await;
    let (alertmanager, am_dir) = (report[0].parse::<u32>().expect("pid"), &report[1]);
    assert!(pid_alive(alertmanager), "alertmanager should be running");

    helper.kill();
    wait_until(HANG_GUARD, || async { !pid_alive(alertmanager) })
        .await
        .expect("alertmanager died with the killed test binary");

    assert!(Path::new(am_dir).exists(), "nothing could remove it yet");
    remove_stale_dirs();
    assert!(
        !Path::new(am_dir).exists(),
        "stale dir {am_dir} was not removed"
    );
}

/// The shared control plane lives in a static, which is never dropped: it is stopped
/// and its dir removed when the test binary exits.
#[tokio::test]
async fn shared_control_plane_stops_when_the_test_binary_exits() {
    let dir = TestDir::new("helper-exit").expect("temp dir");
    let (mut helper, report) = start_helper("shared", &dir);
    let report = read_report(&mut helper, &report).await;
    let status = helper.wait_exit(HANG_GUARD).expect("the helper exits");
    assert!(status.success(), "helper failed:\n{}", helper.log_tail(40));

    // The helper's exit hook killed and reaped them.
    for (pid, what) in [(&report[0], "etcd"), (&report[1], "kube-apiserver")] {
        assert_reaped(pid.parse().expect("pid"), what);
    }
    assert!(
        !Path::new(&report[2]).exists(),
        "{} was not removed at exit",
        report[2]
    );
}

/// Not a test: started by the two tests above, in a separate process.
#[tokio::test]
#[ignore = "run by other tests with KARO_TEST_HELPER set"]
async fn platform_helper() {
    let (Ok(mode), Some(report)) = (
        std::env::var("KARO_TEST_HELPER"),
        std::env::var_os("KARO_TEST_HELPER_REPORT"),
    ) else {
        return;
    };
    match mode.as_str() {
        "hold" => {
            let am = Alertmanager::start(&AlertmanagerConfig::nowhere()).await;
            write_report(&report, &format!("{} {}", am.pid(), am.dir().display()));
            // Until the parent test kills this process.
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        "shared" => {
            let cp = ControlPlane::shared();
            write_report(
                &report,
                &format!(
                    "{} {} {}",
                    cp.etcd_pid(),
                    cp.apiserver_pid().expect("apiserver running"),
                    cp.dir().display()
                ),
            );
        }
        other => panic!("unknown helper mode {other}"),
    }
}

/// Written whole or not at all: the parent polls for the file.
fn write_report(path: &std::ffi::OsStr, text: &str) {
    let partial = PathBuf::from(format!("{}.partial", Path::new(path).display()));
    std::fs::write(&partial, text).expect("write report");
    std::fs::rename(&partial, path).expect("rename report");
}
