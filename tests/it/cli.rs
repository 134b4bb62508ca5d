//! `karo render` and `karo validate`, run as the binary a user runs.
//!
//! Golden files: `tests/fixtures/cli/golden/<case>.yaml` hold what `karo render`
//! prints for each example under `examples/` with its sample payload. After an
//! intended change of the output, regenerate them and review the diff:
//!
//! ```text
//! KARO_UPDATE_GOLDEN=1 cargo test --test it cli::golden
//! ```
//!
//! The tests that need the platform (a kube-apiserver, Alertmanager) find it as the
//! other integration tests do: `eval "$(bash tests/platform/setup.sh)"` first.

use std::process::Output;

use k8s_openapi::api::batch::v1::Job;
use kube::api::PostParams;
use kube::Api;
use serde_json::Value;

use crate::support::files::{documents, read, repo_path, stderr, stdout};
use crate::support::karo_lib::PLACEHOLDER_UID;
use crate::support::karo_process::karo_command as karo;
use crate::support::scenario::{assert_owned_by, owner, Scenario};

/// Stands in for a missing `startsAt`, so that every golden is reproducible.
const RECEIVED_AT: &str = "2026-11-20T12:00:00Z";

fn render(reactions: &[&str], payload: &str, extra: &[&str]) -> Output {
    let mut args = vec!["render"];
    for r in reactions {
        args.extend(["-f", r]);
    }
    args.extend(["--alerts", payload, "--received-at", RECEIVED_AT]);
    args.extend(extra);
    karo(&args)
}

/// Runs a `karo render` that must fail with exit code 1; returns its stdout and
/// stderr.
fn failed_render(reactions: &[&str], payload: &str) -> (String, String) {
    let out = render(reactions, payload, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    (stdout(&out), stderr(&out))
}

// ---------------------------------------------------------------------------
// Golden tests on the examples

/// (golden name, reaction, payload, Jobs expected).
const EXAMPLES: &[(&str, &str, &str, usize)] = &[
    (
        "high-cpu-reaction",
        "examples/high-cpu-reaction.yaml",
        "examples/payloads/high-cpu.json",
        1,
    ),
    (
        "disk-cleanup",
        "examples/disk-cleanup.yaml",
        "examples/payloads/disk-cleanup.json",
        2,
    ),
    (
        "restart-deployment",
        "examples/restart-deployment.yaml",
        "examples/payloads/restart-deployment.json",
        1,
    ),
    (
        "shell-diagnostics",
        "examples/shell-diagnostics.yaml",
        "examples/payloads/shell-diagnostics.json",
        1,
    ),
    (
        "resolved-notify",
        "examples/resolved-notify.yaml",
        "examples/payloads/resolved-notify.json",
        1,
    ),
    (
        "test-alert",
        "examples/test-alert.yaml",
        "examples/payloads/test-alert.json",
        1,
    ),
    (
        "guard-rails",
        "examples/guard-rails.yaml",
        "examples/payloads/guard-rails.json",
        1,
    ),
    // The restart, then its onSuccess and its onFailure Job.
    (
        "closing-the-loop",
        "examples/closing-the-loop.yaml",
        "examples/payloads/closing-the-loop.json",
        3,
    ),
];

#[test]
fn golden_render_of_every_example() {
    let update = std::env::var_os("KARO_UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut mismatches = Vec::new();
    for (name, reaction, payload, n) in EXAMPLES {
        let out = render(&[reaction], payload, &[]);
        assert!(
            out.status.success(),
            "karo render {reaction} failed:\n{}",
            stderr(&out)
        );
        let text = stdout(&out);
        assert_eq!(documents(&text).len(), *n, "Jobs of {reaction}:\n{text}");
        let golden = repo_path(&format!("tests/fixtures/cli/golden/{name}.yaml"));
        if update {
            std::fs::write(&golden, &text).expect("writing golden");
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!("{}: {e} (KARO_UPDATE_GOLDEN=1 writes it)", golden.display())
        });
        if expected != text {
            mismatches.push(format!(
                "--- {} (expected)\n{expected}\n+++ actual\n{text}",
                golden.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "karo render output differs from the goldens (KARO_UPDATE_GOLDEN=1 regenerates them):\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn render_explains_matches_and_misses() {
    let out = render(
        &["examples/disk-cleanup.yaml"],
        "examples/payloads/disk-cleanup.json",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("default/disk-cleanup: matched: Job disk-cleanup-cleanup-"),
        "{err}"
    );
    assert!(
        err.contains(r#"no match: matcher severity=~"critical|page" failed (severity="warning")"#),
        "{err}"
    );

    let out = render(
        &["tests/fixtures/cli/render/behaviours.yaml"],
        "tests/fixtures/cli/render/payload.json",
        &[],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let jobs = documents(&stdout(&out));
    let names: Vec<&str> = jobs
        .iter()
        .filter_map(|j| j.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("plain-echo-"), "{names:?}");
    // dryRun: rendered and printed; the file's namespace is used.
    assert!(names[1].starts_with("rehearsal-echo-"), "{names:?}");
    assert_eq!(jobs[1]["metadata"]["namespace"], "staging");
    assert_eq!(jobs[0]["metadata"]["namespace"], "default");
    // Each Job is owned by its Run, whose UID only the API server gives: the
    // documented placeholder.
    for job in &jobs {
        let owner = &job["metadata"]["ownerReferences"];
        assert_eq!(owner.as_array().map(Vec::len), Some(1), "{job}");
        assert_eq!(owner[0]["kind"], "AlertReactionRun", "{job}");
        assert_eq!(owner[0]["uid"], PLACEHOLDER_UID, "{job}");
        assert_eq!(owner[0]["controller"], true, "{job}");
        assert_eq!(
            owner[0]["name"], job["metadata"]["labels"]["karo.io/run"],
            "{job}"
        );
    }
    let plain = format!(
        "default/plain: matched: Job {} of Run {}",
        names[0],
        jobs[0]["metadata"]["ownerReferences"][0]["name"]
            .as_str()
            .unwrap_or("?")
    );
    assert!(err.contains(&plain), "{plain:?} not in:\n{err}");
    // The file's UID is used: the Job and Run names hash it, so without it they differ.
    let without_uid = tempfile::tempdir().expect("temp dir");
    let manifest = without_uid.path().join("behaviours.yaml");
    let text = read(repo_path("tests/fixtures/cli/render/behaviours.yaml"));
    assert!(text.contains("uid: 6f1c1d2e-0000-4000-8000-000000000001"));
    std::fs::write(
        &manifest,
        text.replace("  uid: 6f1c1d2e-0000-4000-8000-000000000001\n", ""),
    )
    .expect("writing the manifest");
    let out = render(
        &[manifest.to_str().expect("utf-8 path")],
        "tests/fixtures/cli/render/payload.json",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let placeholder_jobs = documents(&stdout(&out));
    assert_eq!(placeholder_jobs[0], jobs[0], "plain has no UID either way");
    for field in ["/metadata/name", "/metadata/ownerReferences/0/name"] {
        assert_ne!(
            placeholder_jobs[1].pointer(field),
            jobs[1].pointer(field),
            "{field} of rehearsal"
        );
    }
    for needle in [
        "default/suspended: matched: Job suspended-echo-",
        "the reaction is suspended",
        "staging/rehearsal: matched: Job rehearsal-echo-",
        "dry run by spec.dryRun",
        r#"default/only-critical: no match: matcher severity="critical" failed (severity="warning")"#,
        "default/on-resolved: no match: status firing is not in triggerOn [resolved]",
        r#"default/other-alert: no match: alertname differs (the reaction is for "SomethingElse""#,
        "not an AlertReaction (kind Namespace), skipped",
    ] {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }
}

#[test]
fn render_is_reproducible_and_prints_json_too() {
    let (files, payload) = (["examples/"], "examples/payloads/restart-deployment.json");
    let a = render(&files, payload, &[]);
    let b = render(&files, payload, &[]);
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(stdout(&a), stdout(&b));
    let yaml = documents(&stdout(&a));
    assert_eq!(yaml.len(), 1, "{}", stdout(&a));

    let json = render(&files, payload, &["-o", "json"]);
    assert!(json.status.success(), "{}", stderr(&json));
    let list: Value = serde_json::from_slice(&json.stdout).expect("JSON output");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().map(Vec::as_slice), Some(&yaml[..]));
}

#[test]
fn render_fails_on_errors() {
    let payload = "tests/fixtures/cli/render/payload.json";
    // A template that needs a label the alert lacks: strict mode fails the render.
    let (out, err) = failed_render(&["tests/fixtures/cli/render/needs-team.yaml"], payload);
    assert!(err.contains("render failed"), "{err}");
    assert!(err.contains("labels.team"), "{err}");
    assert!(out.is_empty());

    // An invalid reaction among valid ones: the others still render, exit 1.
    let (out, err) = failed_render(
        &[
            "tests/fixtures/cli/render/invalid.yaml",
            "tests/fixtures/cli/render/behaviours.yaml",
        ],
        payload,
    );
    assert!(
        err.contains("reaction invalid: InvalidMatcher: spec.matchers[0].value"),
        "{err}"
    );
    assert_eq!(documents(&out).len(), 2);

    // Not an Alertmanager payload.
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"alerts": "none"}"#).expect("writing payload");
    let (_, err) = failed_render(
        &["examples/test-alert.yaml"],
        bad.to_str().expect("utf-8 path"),
    );
    assert!(err.contains("field `alerts`"), "{err}");

    // No such file.
    let (_, err) = failed_render(
        &["examples/no-such-reaction.yaml"],
        "examples/payloads/test-alert.json",
    );
    assert!(err.contains("no such file or directory"), "{err}");
}

// ---------------------------------------------------------------------------
// karo validate

#[test]
fn validate_accepts_the_examples() {
    let out = karo(&["validate", "examples/"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.trim_end().ends_with("files valid"), "{text}");
    // The Alertmanager config is recognised and left to amtool.
    assert!(
        stderr(&out).contains("alertmanager.yml: an Alertmanager configuration, skipped"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validate_lists_every_problem_with_its_path() {
    let out = karo(&["validate", "tests/fixtures/cli/broken/"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    let reactions = "tests/fixtures/cli/broken/reactions.yaml";
    let config = "tests/fixtures/cli/broken/config.yaml";
    let expected = [
        // Reactions: document, name and field path.
        (
            format!("{reactions}: doc 1 (many-problems) spec.alertName: "),
            "required field is missing",
        ),
        (
            format!("{reactions}: doc 1 (many-problems) spec.matchers[0].value: "),
            "invalid regular expression \"(critical\"",
        ),
        (
            format!("{reactions}: doc 1 (many-problems) spec.matchers[1].operator: "),
            "unknown variant `==`",
        ),
        (
            format!("{reactions}: doc 1 (many-problems) spec.matchers[2].value: "),
            "invalid regular expression \"ops|[sre\"",
        ),
        (
            format!("{reactions}: doc 1 (many-problems) spec.actions[0].args[4]: "),
            "unknown variable `namspace`",
        ),
        (
            format!("{reactions}: doc 1 (many-problems) spec.actions[1].command[2]: "),
            "unclosed",
        ),
        (
            format!("{reactions}: doc 3 (template-problems) spec.matcher: "),
            "unknown field",
        ),
        (
            format!("{reactions}: doc 3 (template-problems) spec.cooldown: "),
            "not a duration",
        ),
        (
            format!(
                "{reactions}: doc 3 (template-problems) spec.jobTemplate.spec.template.spec.containers[0].args[0]: "
            ),
            "helper `upper` takes 1 argument",
        ),
        (
            format!(
                "{reactions}: doc 3 (template-problems) spec.jobTemplate.spec.template.spec.containers[0].args[1]: "
            ),
            "unknown helper `nosuchhelper`",
        ),
        // Config: the key path.
        (format!("{config}: logFromat: "), "unknown key"),
        (format!("{config}: webhook.path: "), "must start with `/`"),
        (format!("{config}: webhook.maxBodyBytes: "), "invalid type"),
        (
            format!("{config}: webhook.auth.username: "),
            "required when `type` is basic",
        ),
        (
            format!("{config}: webhook.auth.passwordFile: "),
            "required when `type` is basic",
        ),
        (
            format!("{config}: jobDefaults.ttlSecondsAfterFinished: "),
            "must not be negative",
        ),
        // YAML syntax: line and column.
        (
            "tests/fixtures/cli/broken/syntax.yaml: line 10 column 10: ".to_string(),
            "invalid YAML",
        ),
    ];
    for (prefix, reason) in &expected {
        assert!(
            text.lines()
                .any(|l| l.starts_with(prefix.as_str()) && l.contains(reason)),
            "no line `{prefix}...{reason}...` in:\n{text}"
        );
    }
    let problems = text.lines().filter(|l| l.starts_with("tests/")).count();
    assert_eq!(
        problems,
        expected.len(),
        "exactly the expected problems:\n{text}"
    );
    assert!(
        text.trim_end()
            .ends_with(&format!("{problems} problems in 3 files checked")),
        "{text}"
    );
    // The ConfigMap in the middle is not an AlertReaction.
    assert!(
        stderr(&out)
            .contains("doc 2 (not-a-reaction): kind ConfigMap, not an AlertReaction, skipped"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validate_checks_reactions_against_the_configured_policy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let reaction = dir.path().join("host.yaml");
    std::fs::write(
        &reaction,
        "apiVersion: karo.io/v1alpha1\nkind: AlertReaction\nmetadata: {name: host}\nspec:\n  alertName: X\n  volumes: [{name: logs, hostPath: {path: /var/log}}]\n  actions: [{name: a, image: busybox, volumeMounts: [{name: logs, mountPath: /logs}]}]\n",
    )
    .expect("writing reaction");
    let path = reaction.to_str().expect("utf-8 path");
    let out = karo(&["validate", path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out)
            .contains("doc 1 (host) spec.volumes[0].hostPath: hostPath volumes are not allowed"),
        "{}",
        stdout(&out)
    );
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "policy:\n  allowHostPath: true\n").expect("writing config");
    let out = karo(&[
        "--config",
        config.to_str().expect("utf-8 path"),
        "validate",
        path,
    ]);
    assert!(out.status.success(), "{}", stdout(&out));
}

// ---------------------------------------------------------------------------
// karo render and the daemon build the same Jobs

/// What of a Job must be the same either way. The API server adds defaults to the
/// pod spec and, from the Job's own name and UID, a selector and two template
/// labels: those are left out.
fn comparable(job: &Job) -> Value {
    let mut v = serde_json::to_value(job).expect("Job as JSON");
    let spec = &mut v["spec"];
    if let Some(s) = spec.as_object_mut() {
        s.remove("selector");
    }
    if let Some(labels) = spec
        .pointer_mut("/template/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove("controller-uid");
        labels.remove("job-name");
    }
    serde_json::json!({
        "name": v["metadata"]["name"],
        "namespace": v["metadata"]["namespace"],
        "labels": v["metadata"]["labels"],
        "annotations": v["metadata"]["annotations"],
        "ownerReferences": v["metadata"]["ownerReferences"],
        "spec": v["spec"],
    })
}

#[tokio::test]
async fn render_builds_the_jobs_the_daemon_creates() {
    let cases = [
        (
            "examples/disk-cleanup.yaml",
            "disk-cleanup",
            "examples/payloads/disk-cleanup.json",
        ),
        (
            "examples/shell-diagnostics.yaml",
            "host-diagnostics",
            "examples/payloads/shell-diagnostics.json",
        ),
    ];
    let mut scenario = Scenario::build("render-vs-daemon");
    for (file, _, _) in &cases {
        scenario = scenario.reaction(&read(repo_path(file)));
    }
    let (s, karo_daemon) = scenario.start().await;

    let dir = tempfile::tempdir().expect("temp dir");
    let jobs_api: Api<Job> = Api::namespaced(s.cp().client().await, &s.ns);
    let mut total = 0;
    for (_, name, payload) in &cases {
        let body: Value = serde_json::from_str(&read(repo_path(payload))).expect("payload JSON");
        let (code, summary) = karo_daemon.notify(&body).await;
        assert_eq!(code, 200, "{summary}");

        // The reaction as the API server has it: its real UID and namespace.
        let stored = s.reaction(name).await;
        let manifest = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&manifest, serde_yaml::to_string(&stored).expect("YAML"))
            .expect("writing the reaction");
        let config = karo_daemon.config_path();
        let config = config.to_str().expect("utf-8 path");
        let out = render(
            &[manifest.to_str().expect("utf-8 path")],
            payload,
            &["--config", config],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let rendered: Vec<Job> = serde_yaml::Deserializer::from_str(&stdout(&out))
            .map(|d| <Job as serde::Deserialize>::deserialize(d).expect("a Job"))
            .collect();
        assert!(!rendered.is_empty(), "{}", stderr(&out));
        total += rendered.len();
        for job in rendered {
            let job_name = job.metadata.name.clone().expect("a name");
            assert!(
                summary["jobs"]
                    .as_array()
                    .is_some_and(|j| j.contains(&job_name.as_str().into())),
                "{job_name} not in {summary}"
            );
            // The runner creates it, after the answer.
            let created = s.wait_job(&job_name).await;
            // Owned by the same Run: the daemon's with the UID the API server gave
            // it, the rendered one with the placeholder.
            let run = s.run(&owner(&created).name).await;
            assert_owned_by(&created, &run);
            assert_eq!(owner(&job).name, owner(&created).name, "{job_name}");
            assert_eq!(owner(&job).uid, PLACEHOLDER_UID, "{job_name}");
            assert!(
                summary["runs"]
                    .as_array()
                    .is_some_and(|r| r.contains(&owner(&job).name.as_str().into())),
                "{} not in {summary}",
                owner(&job).name
            );
            // Let the API server default the rendered Job the same way (dry run,
            // under another name, since this one exists).
            let mut candidate = job.clone();
            candidate.metadata.name = None;
            candidate.metadata.generate_name = Some("dry-run-".into());
            let pp = PostParams {
                dry_run: true,
                ..Default::default()
            };
            let mut defaulted = jobs_api
                .create(&pp, &candidate)
                .await
                .unwrap_or_else(|e| panic!("dry run of the rendered {job_name}: {e}"));
            defaulted.metadata.name = job.metadata.name.clone();
            for o in defaulted.metadata.owner_references.iter_mut().flatten() {
                o.uid = run.metadata.uid.clone().expect("the Run's UID");
            }
            assert_eq!(
                comparable(&defaulted),
                comparable(&created),
                "karo render and the daemon differ for {job_name}"
            );
        }
    }
    assert_eq!(s.jobs().await.len(), total, "no other Job was created");
}

#[test]
fn validate_checks_the_closing_the_loop_fields() {
    let out = karo(&["validate", "tests/fixtures/cli/closing/broken.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    for needle in [
        "spec.verify.within: \"soon\" is not a duration",
        "spec.onFailure[0].image: must not be empty",
        "spec.onFailure[0].args[0]: unknown variable `run.nope`",
        "3 problems in 1 file checked",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
}

/// `-` is standard input, as with `kubectl apply -f -`: for `karo validate` and for
/// `karo render`'s reactions or its alerts, never both at once.
#[test]
fn standard_input_is_read_for_dash() {
    let with_stdin = |args: &[&str], input: &[u8]| {
        let mut cmd = std::process::Command::new(crate::support::bins::karo_bin());
        cmd.current_dir(repo_path(""))
            .env_remove("KARO_CONFIG")
            .args(args);
        crate::support::process::run_output(cmd, Some(input)).expect("running karo")
    };
    let valid = read("examples/closing-the-loop.yaml");
    let out = with_stdin(&["validate", "-"], valid.as_bytes());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("1 file valid"), "{}", stdout(&out));

    let broken = read("tests/fixtures/cli/closing/broken.yaml");
    let out = with_stdin(&["validate", "-"], broken.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("-: doc 1 (bad) spec.verify.within"),
        "{}",
        stdout(&out)
    );

    // The same Jobs from standard input as from the file.
    let from_file = render(
        &["examples/guard-rails.yaml"],
        "examples/payloads/guard-rails.json",
        &[],
    );
    let reactions = read("examples/guard-rails.yaml");
    let from_stdin = with_stdin(
        &[
            "render",
            "-f",
            "-",
            "--alerts",
            "examples/payloads/guard-rails.json",
            "--received-at",
            RECEIVED_AT,
        ],
        reactions.as_bytes(),
    );
    assert!(from_stdin.status.success(), "{}", stderr(&from_stdin));
    assert_eq!(stdout(&from_stdin), stdout(&from_file));

    let payload = read("examples/payloads/guard-rails.json");
    let alerts_from_stdin = with_stdin(
        &[
            "render",
            "-f",
            "examples/guard-rails.yaml",
            "--alerts",
            "-",
            "--received-at",
            RECEIVED_AT,
        ],
        payload.as_bytes(),
    );
    assert!(
        alerts_from_stdin.status.success(),
        "{}",
        stderr(&alerts_from_stdin)
    );
    assert_eq!(stdout(&alerts_from_stdin), stdout(&from_file));

    let both = with_stdin(&["render", "-f", "-", "--alerts", "-"], b"");
    assert_eq!(both.status.code(), Some(1));
    assert!(stderr(&both).contains("not both"), "{}", stderr(&both));
}

/// A manifest written for the earlier Go Karo gets the Handlebars spelling of each
/// Go template expression, by `karo validate` and on the reaction's Ready condition.
#[tokio::test]
async fn go_template_syntax_is_refused_with_the_handlebars_spelling() {
    let file = "tests/fixtures/cli/go/earlier-karo.yaml";
    let out = karo(&["validate", file]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    for needle in [
        "spec.actions[0].args[2]: invalid template: `{{ .Labels.deployment }}` is Go template syntax",
        "write `{{labels.deployment}}`",
        "spec.actions[0].args[4]: invalid template: `{{ index .Labels \"namespace\" }}`",
        "write `{{labels.namespace}}`",
    ] {
        assert!(text.contains(needle), "{needle:?} not in:\n{text}");
    }
    // The daemon says the same on the reaction's status.
    let s = Scenario::build("go-syntax")
        .reaction(&read(file))
        .create()
        .await;
    let _karo = s.start_karo("").await;
    let (reason, message) = s.wait_ready("restart-go", "False").await;
    assert_eq!(reason, "InvalidTemplate", "{message}");
    assert!(
        message.contains("write `{{labels.deployment}}`"),
        "{message}"
    );
}
