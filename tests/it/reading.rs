//! Reading what users write, and writing what every reader reads the same:
//!
//! - `karo validate` and `karo render` read manifests as kubectl does (YAML 1.1:
//!   `010` is 8, `on` is true), checked against the real kubectl, and the API
//!   server's refusals of such values are Karo's too, field by field.
//! - `helm template charts/karo … | karo validate -` checks the chart's ConfigMap
//!   (`config.yaml`, `job.yaml`) and the reactions under its policy, with Helm 3
//!   and 4.
//! - The YAML Karo commits and prints reads the same in serde_yaml, PyYAML and
//!   Go's yaml (v2, kubectl's, and v3).
//!
//! Needs kubectl, Helm, python3 with PyYAML, and go with Debian's yaml sources:
//! `eval "$(bash tests/platform/setup.sh)"` first.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::support::bins::{helm3, helm4, karo_bin, kubectl};
use crate::support::files::{documents, read, repo_path, stderr, stdout, succeeded};
use crate::support::karo_lib::read_manifests;
use crate::support::karo_process::karo_command as karo;
use crate::support::process::run_output;
use crate::support::{ControlPlane, TestDir};

fn fixture(name: &str) -> String {
    format!("tests/fixtures/cli/reading/{name}")
}

/// What kubectl reads from a manifest file: each object, as the JSON it sends to
/// the API server. `kubectl patch --local` with an empty patch prints them
/// unchanged, with no server.
fn kubectl_reads(file: &str) -> Vec<Value> {
    let mut cmd = Command::new(kubectl().expect("kubectl"));
    cmd.args([
        "patch", "--local", "--type", "merge", "-p", "{}", "-o", "json", "-f",
    ])
    .arg(repo_path(file))
    .env("KUBECONFIG", "/dev/null");
    let out = run_output(cmd, None).expect("running kubectl");
    let text = succeeded(&out, &format!("kubectl patch --local -f {file}"));
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Value>()
        .map(|v| v.expect("kubectl prints JSON"))
        .collect()
}

/// What Karo reads from a manifest file.
fn karo_reads(file: &str) -> Vec<Value> {
    read_manifests(&read(repo_path(file)))
        .unwrap_or_else(|(at, why)| panic!("{file}: {at}: {why}"))
        .into_iter()
        .map(|d| d.value)
        .collect()
}

/// What a YAML 1.2 reader (serde_yaml, which Karo used for manifests before)
/// reads from a file.
/// Tagged scalars (`!!str 010`, `!custom x`) are left out: serde_yaml reads
/// those its own way.
fn yaml12_reads(file: &str) -> Vec<Value> {
    let text = read(repo_path(file));
    let untagged: Vec<&str> = text.lines().filter(|l| !l.contains('!')).collect();
    documents(&untagged.join("\n"))
}

#[test]
fn every_kind_of_plain_scalar_reads_as_kubectl_reads_it() {
    let file = fixture("scalars.yaml");
    let kubectl = kubectl_reads(&file);
    let karo = karo_reads(&file);
    assert_eq!(
        karo, kubectl,
        "Karo's reading of {file} (left) is not kubectl's (right)"
    );
    let values = &kubectl[0]["values"];
    // kubectl's YAML 1.1, which a YAML 1.2 reader does not share.
    assert_eq!(values["octal"], 8);
    assert_eq!(values["underscores"], 1000);
    assert_eq!(values["bools"][2], true, "on");
    assert_eq!(values["bools"][4], true, "y");
    assert_eq!(values["keys"]["true"], 1, "the key `on`");
    assert_eq!(values["keys"]["false"], 2, "the key `n`");
    assert_eq!(values["quoted"], json!(["010", "0x1F", "on", "y"]));
    let yaml12 = &yaml12_reads(&file)[0]["values"];
    assert_eq!(yaml12["octal"], "010");
    assert_eq!(yaml12["underscores"], "1_000");
    assert_eq!(yaml12["bools"][2], "on");
}

#[test]
fn a_reaction_with_yaml_1_1_numbers_and_booleans_renders_as_kubectl_reads_it() {
    let file = fixture("yaml11.yaml");
    let kubectl = kubectl_reads(&file);
    assert_eq!(karo_reads(&file), kubectl);
    let spec = &kubectl[0]["spec"];
    assert_eq!(spec["budget"]["maxRunsPerHour"], 8);
    assert_eq!(spec["dryRun"], true);
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["matchers"][0]["value"], "on");
    assert_eq!(spec["jobTemplate"]["spec"]["backoffLimit"], 31);
    // A YAML 1.2 reader has `maxRunsPerHour: "010"` and `dryRun: "yes"`, which the
    // API server would never hold.
    let yaml12 = &yaml12_reads(&file)[0]["spec"];
    assert_eq!(yaml12["budget"]["maxRunsPerHour"], "010");
    assert_eq!(yaml12["dryRun"], "yes");

    // Valid, with a note on the octal number.
    let out = karo(&["validate", &file]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains(
            "spec.budget.maxRunsPerHour: kubectl reads the unquoted 010 as the octal number 8"
        ),
        "{}",
        stderr(&out)
    );

    // The Jobs rendered from the file are those rendered from kubectl's JSON.
    let dir = TestDir::new("reading").expect("temp dir");
    let as_json = dir.path().join("kubectl.json");
    std::fs::write(&as_json, serde_json::to_string(&kubectl[0]).expect("JSON")).expect("write");
    let render = |reactions: &str| {
        let out = karo(&[
            "render",
            "-f",
            reactions,
            "--alerts",
            &fixture("payload.json"),
            "--received-at",
            "2026-11-20T12:00:00Z",
        ]);
        succeeded(&out, &format!("karo render -f {reactions}"))
    };
    let from_yaml = render(&file);
    assert_eq!(from_yaml, render(&as_json.display().to_string()));
    let job = &documents(&from_yaml)[0];
    assert_eq!(job["spec"]["backoffLimit"], 31);
    assert_eq!(job["spec"]["activeDeadlineSeconds"], 1000);
    assert_eq!(job["spec"]["ttlSecondsAfterFinished"], 12);
}

/// The fields of the problems the API server finds with a manifest, from
/// `kubectl create --dry-run=server`'s message.
fn server_refuses(cp: &ControlPlane, file: &str) -> String {
    let out = cp.kubectl(&[
        "create",
        "--dry-run=server",
        "-n",
        "default",
        "-f",
        &repo_path(file).display().to_string(),
    ]);
    assert!(!out.status.success(), "the API server accepted {file}");
    stderr(&out)
}

#[tokio::test]
async fn unquoted_booleans_and_numbers_in_string_fields_are_refused_as_the_api_server_refuses_them()
{
    let file = fixture("yaml11-strings.yaml");
    let out = karo(&["validate", &file]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    for (field, written) in [
        ("spec.matchers[0].value", "on"),
        ("spec.matchers[1].value", "010"),
        ("spec.actions[0].env[0].value", "yes"),
    ] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!(") {field}: ")))
            .unwrap_or_else(|| panic!("no problem at {field} in:\n{text}"));
        assert!(
            line.contains(&format!("kubectl reads the unquoted `{written}`")),
            "{line}"
        );
    }

    // The API server (1.20) names the same fields, without the list indices, and
    // the same kinds of value.
    let cp = ControlPlane::shared();
    cp.install_crd().await;
    let refused = server_refuses(cp, &file);
    for needle in [
        "spec.matchers.value in body must be of type string: \"boolean\"",
        "spec.matchers.value in body must be of type string: \"integer\"",
        "spec.actions.env.value in body must be of type string: \"boolean\"",
    ] {
        assert!(refused.contains(needle), "{needle} not in {refused}");
    }
    // Quoted, the same values are strings: both accept them.
    let quoted = read(repo_path(&file))
        .replace("value: on", "value: \"on\"")
        .replace("value: 010", "value: \"010\"")
        .replace("value: yes", "value: \"yes\"");
    let dir = TestDir::new("reading-quoted").expect("temp dir");
    let fixed = dir.path().join("quoted.yaml");
    std::fs::write(&fixed, quoted).expect("write");
    let fixed = fixed.display().to_string();
    succeeded(&karo(&["validate", &fixed]), "karo validate (quoted)");
    succeeded(
        &cp.kubectl(&["create", "--dry-run=server", "-n", "default", "-f", &fixed]),
        "kubectl create --dry-run=server (quoted)",
    );
}

// ---------------------------------------------------------------------------
// `helm template … | karo validate -`

#[derive(Clone, Copy, Debug)]
enum Helm {
    V3,
    V4,
}

impl Helm {
    /// `helm template my-operator charts/karo <args>`, with Helm's homes in a temp dir.
    fn template(self, args: &[&str]) -> String {
        static HOME: OnceLock<TestDir> = OnceLock::new();
        let home = HOME
            .get_or_init(|| TestDir::new("reading-helm").expect("helm home"))
            .path()
            .join(format!("{self:?}"));
        let bin = match self {
            Helm::V3 => helm3(),
            Helm::V4 => helm4(),
        }
        .unwrap_or_else(|e| panic!("{e:#}"));
        let chart = repo_path("charts/karo").display().to_string();
        let mut cmd = Command::new(bin);
        cmd.args(["template", "my-operator", &chart, "-n", "ops"])
            .args(args)
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env_remove("KUBECONFIG");
        let out = run_output(cmd, None).expect("running helm");
        succeeded(&out, &format!("{self:?} helm template {}", args.join(" ")))
    }
}

/// `karo validate -` with `stdin`.
fn validate_stdin(stdin: &str) -> Output {
    let mut cmd = Command::new(karo_bin());
    cmd.current_dir(repo_path(""))
        .env_remove("KARO_CONFIG")
        .args(["validate", "-"]);
    run_output(cmd, Some(stdin.as_bytes())).expect("running karo")
}

#[test]
fn helm_template_piped_into_validate_checks_the_config_map_and_reactions_under_its_policy() {
    let reactions = read(repo_path(&fixture("chart-reactions.yaml")));
    for helm in [Helm::V3, Helm::V4] {
        // The reaction mounts a hostPath volume: valid only under the chart's
        // `config.policy.allowHostPath`.
        let stream = helm.template(&["--set", "config.policy.allowHostPath=true"]) + &reactions;
        let out = validate_stdin(&stream);
        assert!(
            out.status.success(),
            "{helm:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        assert!(
            stderr(&out)
                .contains("reactions are checked under the policy of -: doc 3 (ConfigMap karo)"),
            "{}",
            stderr(&out)
        );
        // `karo render` takes the ConfigMap's configuration too: its policy and
        // its `dryRun`.
        let stream = helm.template(&[
            "--set",
            "config.policy.allowHostPath=true",
            "--set",
            "config.dryRun=true",
        ]) + &reactions;
        let mut cmd = Command::new(karo_bin());
        cmd.current_dir(repo_path(""))
            .env_remove("KARO_CONFIG")
            .args([
                "render",
                "-f",
                "-",
                "--alerts",
                &fixture("chart-payload.json"),
            ]);
        let out = run_output(cmd, Some(stream.as_bytes())).expect("running karo");
        let log = stderr(&out);
        assert!(out.status.success(), "{helm:?}: {log}");
        assert!(
            log.contains("the configuration is that of -: doc 3 (ConfigMap karo)"),
            "{log}"
        );
        assert!(log.contains("dry run by the config's dryRun"), "{log}");

        // Under the default policy, the same reaction is refused.
        let stream = helm.template(&[]) + &reactions;
        let out = validate_stdin(&stream);
        assert_eq!(out.status.code(), Some(1), "{helm:?}: {}", stdout(&out));
        assert!(
            stdout(&out).contains("spec.volumes[0].hostPath"),
            "{}",
            stdout(&out)
        );

        // A config value the chart's schema lets through and Karo refuses, and a
        // Job skeleton with an unknown variable: each named with the ConfigMap
        // and the key.
        let broken_job = repo_path(&fixture("broken-job.yaml")).display().to_string();
        let stream = helm.template(&[
            "--set",
            "config.runs.retention=9999d",
            "--set-file",
            &format!("jobTemplate={broken_job}"),
        ]) + &reactions;
        let out = validate_stdin(&stream);
        assert_eq!(out.status.code(), Some(1), "{helm:?}: {}", stdout(&out));
        let text = stdout(&out);
        for needle in [
            "-: doc 3 (ConfigMap karo) config.yaml runs.retention: must be a duration",
            "-: doc 3 (ConfigMap karo) job.yaml metadata.labels.karo.io/reaction: unknown variable `reaction.nme`",
        ] {
            assert!(text.contains(needle), "{helm:?}: {needle:?} not in:\n{text}");
        }
    }
}

// ---------------------------------------------------------------------------
// The YAML Karo commits and prints, in other languages' parsers

/// PyYAML's reading (`yaml.safe_load_all`) of each document, as JSON; a value
/// JSON cannot hold (a date) becomes `{"python": "<type>: <value>"}`, so that
/// it differs from any string.
fn pyyaml_reads(text: &str) -> Result<Vec<Value>, String> {
    const SCRIPT: &str = r#"
import json, sys, yaml
def plain(x):
    if isinstance(x, dict):
        return {(k if isinstance(k, str) else "python key " + repr(k)): plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [plain(v) for v in x]
    if x is None or isinstance(x, (str, bool, int, float)):
        return x
    return {"python": type(x).__name__ + ": " + str(x)}
docs = [plain(d) for d in yaml.safe_load_all(sys.stdin.read()) if d is not None]
print(json.dumps(docs))
"#;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", SCRIPT]);
    let out = run_output(cmd, Some(text.as_bytes())).expect("running python3");
    if !out.status.success() {
        return Err(stderr(&out));
    }
    serde_json::from_str(&stdout(&out)).map_err(|e| e.to_string())
}

/// The Go program in `tests/fixtures/cli/reading/goyaml`, built once with
/// Debian's go and yaml sources (offline, GOPATH mode; Go caches the build).
fn goyaml() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let bin = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("karo-goyaml");
        let mut cmd = Command::new("go");
        cmd.current_dir(repo_path(&fixture("goyaml")))
            .args(["build", "-o"])
            .arg(&bin)
            .arg(".")
            .env("GOPATH", "/usr/share/gocode")
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .env("GOPROXY", "off");
        let out = run_output(cmd, None).expect("running go (tests/platform/setup.sh installs it)");
        succeeded(&out, "go build of tests/fixtures/cli/reading/goyaml");
        bin
    })
}

/// Go's yaml (`v2`, kubectl's reader, or `v3`) reading of each document.
fn go_reads(text: &str, version: &str) -> Result<Vec<Value>, String> {
    let mut cmd = Command::new(goyaml());
    cmd.arg(version);
    let out = run_output(cmd, Some(text.as_bytes())).expect("running goyaml");
    if !out.status.success() {
        return Err(stderr(&out));
    }
    serde_json::from_str(&stdout(&out)).map_err(|e| e.to_string())
}

/// Numbers compared by value: 8 and 8.0 are the same number in every reader.
fn numbers_as_floats(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_floats).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), numbers_as_floats(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The first place where `a` and `b` differ.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x
            .keys()
            .chain(y.keys().filter(|k| !x.contains_key(*k)))
            .find_map(|k| {
                first_difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                )
            }),
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (a, b))| first_difference(a, b, &format!("{path}[{i}]"))),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} vs {b}")),
    }
}

/// Whether serde_yaml (Karo's meaning), PyYAML and Go's yaml v2 and v3 read
/// `text` alike; the differences otherwise.
fn readers_disagree(name: &str, text: &str) -> Vec<String> {
    let serde: Vec<Value> = serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{name}: serde_yaml: {e}")))
        .filter(|v| !v.is_null())
        .collect();
    let serde = numbers_as_floats(&Value::Array(serde));
    let mut out = Vec::new();
    for (reader, read) in [
        ("PyYAML", pyyaml_reads(text)),
        ("Go yaml.v2 (kubectl)", go_reads(text, "v2")),
        ("Go yaml.v3", go_reads(text, "v3")),
    ] {
        match read {
            Err(e) => out.push(format!("{name}: {reader} cannot read it: {e}")),
            Ok(docs) => {
                if let Some(d) =
                    first_difference(&serde, &numbers_as_floats(&Value::Array(docs)), "")
                {
                    out.push(format!("{name}: serde_yaml vs {reader}: {d}"));
                }
            }
        }
    }
    out
}

fn files(dir: &str, exts: &[&str]) -> Vec<(String, String)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(repo_path(dir))
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| (p.display().to_string(), read(&p)))
        .collect()
}

#[test]
fn the_readers_catch_strings_that_read_as_something_else() {
    // What serde_yaml printed before: plain `on`, `y`, `1_000`, a timestamp, `=`.
    let unquoted = "a: [on, y, 1_000, 2026-11-20T12:00:00Z, =, '0755']\n";
    let found = readers_disagree("serde_yaml's output", unquoted);
    for reader in ["PyYAML", "Go yaml.v2"] {
        assert!(
            found.iter().any(|f| f.contains(reader)),
            "{reader} not in {found:#?}"
        );
    }
    let value =
        json!({"a": ["on", "y", "1_000", "2026-11-20T12:00:00Z", "=", "0755", "1e3", "0o17"]});
    let printed = crate::support::karo_lib::yaml_value_to_string(&value);
    assert_eq!(
        readers_disagree("Karo's output", &printed),
        Vec::<String>::new()
    );
}

#[test]
fn the_yaml_karo_commits_and_prints_reads_the_same_in_pyyaml_and_go() {
    let mut texts = Vec::new();
    texts.extend(files("config/crd", &["yaml"]));
    texts.extend(files("charts/karo/crds", &["yaml"]));
    texts.extend(files("examples", &["yaml", "yml"]));
    texts.extend(files("templates", &["yaml"]));
    texts.extend(files("charts/karo/files", &["yaml"]));
    // What `karo render` prints for each example (cli::golden_render_of_every_example
    // holds them equal) and for a reaction of YAML 1.1 values.
    texts.extend(files("tests/fixtures/cli/golden", &["yaml"]));
    let rendered = succeeded(
        &karo(&[
            "render",
            "-f",
            &fixture("yaml11.yaml"),
            "--alerts",
            &fixture("payload.json"),
            "--received-at",
            "2026-11-20T12:00:00Z",
        ]),
        "karo render",
    );
    texts.push(("karo render yaml11.yaml".into(), rendered));
    texts.push(("karo crd".into(), succeeded(&karo(&["crd"]), "karo crd")));
    texts.push(("helm template (Helm 3)".into(), Helm::V3.template(&[])));
    texts.push((
        "helm template (Helm 4, everything on)".into(),
        Helm::V4.template(&[
            "-f",
            &repo_path("tests/fixtures/chart/values-full.yaml")
                .display()
                .to_string(),
        ]),
    ));
    let mut differences = Vec::new();
    for (name, text) in &texts {
        differences.extend(readers_disagree(name, text));
    }
    assert!(
        differences.is_empty(),
        "{} of {} texts read differently:\n{}",
        differences.len(),
        texts.len(),
        differences.join("\n")
    );
}
