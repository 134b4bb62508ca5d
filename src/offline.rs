//! `karo render` and `karo validate`: the daemon's pure path, run on files.
//!
//! `render` takes AlertReaction manifests and an Alertmanager payload and builds
//! the Jobs exactly as `karo run` does: `reaction::compile`, the reactor's three
//! matching checks (alert name, matchers, `triggerOn`), then `jobs::build_job`
//! with the same renderer, skeleton and Job defaults. `validate` reports every
//! problem of AlertReaction manifests and Karo config files, each with the file
//! and the path inside it.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::Serialized;
use figment::Figment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResourceExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::alert::{self, Alert, Notification};
use crate::config::{self, Config, Overrides, Policy};
use crate::context::Runtime;
use crate::crd::{
    Action, AlertReaction, AlertReactionSpec, AlertStatus, ConcurrencyPolicy, JobTemplate, Matcher,
    Volume, JOB_TEMPLATE_ACTION,
};
use crate::jobs::{self, JobInput};
use crate::matching::{self, MatcherSet, ANNOTATION_PREFIX};
use crate::reaction::{self, CompiledReaction, Invalid};
use crate::render::{RenderError, Renderer, TemplateTree};
use crate::run;

/// The UID given to a reaction whose manifest has none (`metadata.uid`). Job
/// names hash the reaction's UID, so offline names are deterministic but differ
/// from the cluster's unless the manifest carries the real UID (as `kubectl get
/// alertreaction NAME -o yaml` prints it).
pub const PLACEHOLDER_UID: &str = "00000000-0000-0000-0000-000000000000";

/// The `apiVersion` of an AlertReaction.
const API_VERSION: &str = "karo.io/v1alpha1";

// ---------------------------------------------------------------------------
// Problems and files

/// One problem: the file, the place inside it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// `doc 2 (name) spec.matchers[1].value`, a config key path, `line 3 column 7`,
    /// or empty for the file as a whole.
    pub location: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.location.is_empty() {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file, self.location, self.reason)
        }
    }
}

impl Problem {
    fn new(file: &Path, location: impl Into<String>, reason: impl Into<String>) -> Self {
        Problem {
            file: file.display().to_string(),
            location: location.into(),
            reason: reason.into(),
        }
    }
}

/// A problem at a field path inside one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// `spec.actions[0].args[2]`; empty for the document as a whole.
    pub path: String,
    pub reason: String,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

fn field_problem(path: impl Into<String>, reason: impl Into<String>) -> FieldProblem {
    FieldProblem {
        path: path.into(),
        reason: reason.into(),
    }
}

/// A file to read, and whether it was named on the command line (rather than
/// found while scanning a directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub path: PathBuf,
    pub named: bool,
}

/// The files behind `paths`: files as given, directories scanned (recursively,
/// in name order) for `*.yaml` and `*.yml`.
pub fn collect_inputs(paths: &[PathBuf]) -> (Vec<Input>, Vec<Problem>) {
    let mut inputs = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        if path.is_dir() {
            scan_dir(path, &mut inputs, &mut problems);
        } else if path.exists() {
            inputs.push(Input {
                path: path.clone(),
                named: true,
            });
        } else {
            problems.push(Problem::new(path, "", "no such file or directory"));
        }
    }
    (inputs, problems)
}

fn scan_dir(dir: &Path, inputs: &mut Vec<Input>, problems: &mut Vec<Problem>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(Problem::new(dir, "", format!("cannot read directory: {e}")));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            scan_dir(&path, inputs, problems);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            inputs.push(Input { path, named: false });
        }
    }
}

/// One YAML document of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 1-based position in the file.
    pub number: usize,
    pub value: Value,
}

/// Every non-empty YAML document of `path`. A syntax error is one problem with
/// its line and column; documents before it are not returned.
pub fn read_documents(path: &Path) -> Result<Vec<Document>, Problem> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Problem::new(path, "", format!("cannot read: {e}")))?;
    parse_documents(&text).map_err(|(location, reason)| Problem::new(path, location, reason))
}

/// Parses multi-document YAML; the error is (location, reason).
pub fn parse_documents(text: &str) -> Result<Vec<Document>, (String, String)> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(de).map_err(|e| yaml_error(&e))?;
        if !value.is_null() {
            docs.push(Document {
                number: i + 1,
                value,
            });
        }
    }
    Ok(docs)
}

fn yaml_error(e: &serde_yaml::Error) -> (String, String) {
    let message = e.to_string();
    match e.location() {
        Some(l) => {
            let suffix = format!(" at line {} column {}", l.line(), l.column());
            let reason = message
                .strip_suffix(&suffix)
                .unwrap_or(&message)
                .to_string();
            (
                format!("line {} column {}", l.line(), l.column()),
                format!("invalid YAML: {reason}"),
            )
        }
        None => (String::new(), format!("invalid YAML: {message}")),
    }
}

fn kind_of(value: &Value) -> Option<&str> {
    value.get("kind").and_then(Value::as_str)
}

fn is_reaction(value: &Value) -> bool {
    kind_of(value) == Some("AlertReaction")
}

fn doc_name(value: &Value) -> String {
    value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

fn doc_location(doc: &Document) -> String {
    format!("doc {} ({})", doc.number, doc_name(&doc.value))
}

// ---------------------------------------------------------------------------
// Deserialisation with field paths

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty() || path == ".") {
        (_, true) => prefix.to_string(),
        (true, false) => path.to_string(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// Deserialises `value` as `T`; an error names the field (`prefix` + the path
/// inside `value`).
fn deserialize_at<T: DeserializeOwned>(value: &Value, prefix: &str) -> Result<T, FieldProblem> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = join(prefix, &e.path().to_string());
        let reason = e.inner().to_string();
        // `missing field `x`` is about the field, not the mapping around it.
        match reason
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            Some(field) => field_problem(join(&path, field), "required field is missing"),
            None => field_problem(path, reason),
        }
    })
}

/// An AlertReaction from a manifest, with the first problem and its field path.
pub fn parse_reaction(value: &Value) -> Result<AlertReaction, FieldProblem> {
    deserialize_at(value, "")
}

/// `Invalid` messages start with the field they are about: `spec.x[0].y: reason`.
fn split_invalid(message: &str) -> FieldProblem {
    match message.split_once(": ") {
        Some((path, reason))
            if !path.is_empty() && !path.contains(' ') && path.starts_with("spec") =>
        {
            field_problem(path, reason)
        }
        _ => field_problem("spec", message),
    }
}

fn render_problem(e: &RenderError) -> FieldProblem {
    let text = e.to_string();
    let field = e.field();
    let reason = text
        .strip_prefix(&format!("{field}: "))
        .unwrap_or(&text)
        .to_string();
    field_problem(field, reason)
}

// ---------------------------------------------------------------------------
// Checking an AlertReaction

/// Every problem of one AlertReaction document: fields that do not deserialise
/// (each part of the spec on its own, so that one bad field does not hide the
/// others), unknown fields the API server would drop, every matcher, every
/// template, and the checks `reaction::compile` makes. A reaction with no problem
/// compiles, and so is Ready in the cluster under the same `policy`.
pub fn check_reaction(doc: &Value, renderer: &Renderer, policy: &Policy) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    match doc.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        Some(other) => problems.push(field_problem(
            "apiVersion",
            format!("must be {API_VERSION}, found {other:?}"),
        )),
        None => problems.push(field_problem(
            "apiVersion",
            format!("required field is missing (must be {API_VERSION})"),
        )),
    }
    if let Some(schema) = crd_schema() {
        unknown_fields(doc, &schema, "", &mut problems);
    }
    match doc.get("metadata") {
        Some(meta) => match deserialize_at::<ObjectMeta>(meta, "metadata") {
            Ok(m) if m.name.as_deref().unwrap_or("").is_empty() => {
                problems.push(field_problem("metadata.name", "required field is missing"))
            }
            Ok(_) => {}
            Err(p) => problems.push(p),
        },
        None => problems.push(field_problem("metadata", "required field is missing")),
    }
    let spec = match doc.get("spec") {
        Some(Value::Object(spec)) => spec,
        Some(_) => {
            problems.push(field_problem("spec", "must be a mapping"));
            return problems;
        }
        None => {
            problems.push(field_problem("spec", "required field is missing"));
            return problems;
        }
    };
    let before_parts = problems.len();

    let matchers: Vec<(usize, Matcher)> = elements(spec, "matchers", &mut problems);
    let actions = raw_elements::<Action>(spec, "actions", &mut problems);
    let volumes: Vec<(usize, Volume)> = elements(spec, "volumes", &mut problems);
    let _: Vec<(usize, AlertStatus)> = elements(spec, "triggerOn", &mut problems);
    let job_template = match spec.get("jobTemplate") {
        None | Some(Value::Null) => None,
        Some(v) => match deserialize_at::<JobTemplate>(v, "spec.jobTemplate") {
            Ok(jt) => Some((v, Some(jt))),
            Err(p) => {
                problems.push(p);
                Some((v, None))
            }
        },
    };
    let mut rest = spec.clone();
    for key in ["matchers", "actions", "volumes", "triggerOn", "jobTemplate"] {
        rest.remove(key);
    }
    let rest: Option<AlertReactionSpec> = match deserialize_at(&Value::Object(rest), "spec") {
        Ok(r) => Some(r),
        Err(p) => {
            problems.push(p);
            None
        }
    };
    let parts_ok = problems.len() == before_parts;

    if let Some(rest) = &rest {
        if rest.alert_name.is_empty() {
            problems.push(field_problem("spec.alertName", "must not be empty"));
        }
        if let Some(c) = &rest.cooldown {
            if reaction::parse_duration(c).is_none() {
                problems.push(field_problem(
                    "spec.cooldown",
                    format!("{c:?} is not a duration such as 30s, 10m or 1h"),
                ));
            }
        }
    }
    if actions.is_empty() && job_template.is_none() {
        problems.push(field_problem(
            "spec",
            "needs `actions` or `jobTemplate` (neither is set)",
        ));
    }

    // Matchers: every one, at its position in the manifest.
    let compiled: Vec<Matcher> = matchers.iter().map(|(_, m)| m.clone()).collect();
    if let Err(errors) = MatcherSet::compile_all(&compiled) {
        for e in errors {
            let index = matchers.get(e.index).map_or(e.index, |(i, _)| *i);
            problems.push(field_problem(
                format!("spec.matchers[{index}].{}", e.field),
                e.message,
            ));
        }
    }

    // Volumes, then each action and the jobTemplate, against the volumes that parsed.
    let context = AlertReactionSpec {
        volumes: volumes.iter().map(|(_, v)| v.clone()).collect(),
        ..Default::default()
    };
    if volumes.len()
        == spec
            .get("volumes")
            .and_then(Value::as_array)
            .map_or(0, Vec::len)
    {
        if let Err(e) = reaction::validate_volumes(&context, policy) {
            problems.push(split_invalid(&e.message));
        }
    }
    let mut names = BTreeSet::new();
    for (i, raw, action) in &actions {
        let field = format!("spec.actions[{i}]");
        let tree = match action {
            Some(a) => {
                if let Err(e) = reaction::validate_action(&context, *i, a, policy) {
                    problems.push(split_invalid(&e.message));
                }
                if !a.name.is_empty() && !names.insert(a.name.clone()) {
                    problems.push(field_problem(
                        format!("{field}.name"),
                        format!("{:?} is used by another action", a.name),
                    ));
                }
                if job_template.is_some() && a.name == JOB_TEMPLATE_ACTION {
                    problems.push(field_problem(
                        format!("{field}.name"),
                        format!("the action name {JOB_TEMPLATE_ACTION:?} is reserved for the jobTemplate Job"),
                    ));
                }
                serde_json::to_value(a).unwrap_or_else(|_| (*raw).clone())
            }
            None => (*raw).clone(),
        };
        problems.extend(
            TemplateTree::check(&tree, &field, renderer)
                .iter()
                .map(render_problem),
        );
    }
    if let Some((raw, jt)) = &job_template {
        let tree = match jt {
            Some(jt) => {
                if let Err(e) = reaction::validate_job_template(&jt.spec, policy) {
                    problems.push(split_invalid(&e.message));
                }
                serde_json::to_value(jt).unwrap_or_else(|_| (*raw).clone())
            }
            None => (*raw).clone(),
        };
        problems.extend(
            TemplateTree::check(&tree, "spec.jobTemplate", renderer)
                .iter()
                .map(render_problem),
        );
    }

    // The daemon's own verdict, in case it checks something the above does not.
    if parts_ok {
        match parse_reaction(doc) {
            Ok(ar) => {
                if let Err(e) = reaction::compile(&ar, renderer, policy) {
                    let p = split_invalid(&e.message);
                    if !problems.contains(&p) {
                        problems.push(p);
                    }
                }
            }
            Err(p) => {
                if !problems.contains(&p) {
                    problems.push(p);
                }
            }
        }
    }
    problems
}

/// `spec.<key>[]`, each element deserialised on its own; bad ones are problems.
fn elements<T: DeserializeOwned>(
    spec: &Map<String, Value>,
    key: &str,
    problems: &mut Vec<FieldProblem>,
) -> Vec<(usize, T)> {
    raw_elements(spec, key, problems)
        .into_iter()
        .filter_map(|(i, _, t)| t.map(|t| (i, t)))
        .collect()
}

/// Like [`elements`], keeping each element's manifest value too.
fn raw_elements<'a, T: DeserializeOwned>(
    spec: &'a Map<String, Value>,
    key: &str,
    problems: &mut Vec<FieldProblem>,
) -> Vec<(usize, &'a Value, Option<T>)> {
    match spec.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let parsed = match deserialize_at::<T>(item, &format!("spec.{key}[{i}]")) {
                    Ok(t) => Some(t),
                    Err(p) => {
                        problems.push(p);
                        None
                    }
                };
                (i, item, parsed)
            })
            .collect(),
        Some(_) => {
            problems.push(field_problem(format!("spec.{key}"), "must be a list"));
            Vec::new()
        }
    }
}

/// The CRD's OpenAPI schema, as the API server uses it to prune unknown fields.
fn crd_schema() -> Option<Value> {
    let crd = AlertReaction::crd();
    let version = crd.spec.versions.first()?;
    let schema = version.schema.as_ref()?.open_api_v3_schema.as_ref()?;
    serde_json::to_value(schema).ok()
}

/// Fields the schema does not know: the API server silently drops them, so a
/// typo (`matcher:` for `matchers:`) would change what the reaction does.
fn unknown_fields(value: &Value, schema: &Value, path: &str, out: &mut Vec<FieldProblem>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            let Some(Value::Object(props)) = schema.get("properties") else {
                return;
            };
            for (k, v) in map {
                let p = join(path, k);
                // The schema leaves out what every object has.
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match props.get(k) {
                    Some(s) => unknown_fields(v, s, &p, out),
                    None => {
                        let known: Vec<&str> = props.keys().map(String::as_str).collect();
                        out.push(field_problem(
                            p,
                            format!(
                                "unknown field (the API server drops it); known fields here: {}",
                                known.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    unknown_fields(v, s, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Checking a Karo config file

/// The config's keys with their defaults; a mapping with no keys is free-form.
fn config_defaults() -> Value {
    serde_json::to_value(Config::default()).unwrap_or(Value::Null)
}

/// Whether a mapping looks like a Karo config: most of its top-level keys are
/// Karo's (a Helm values file shares `webhook`, say, but little else).
fn looks_like_config(value: &Value) -> bool {
    let defaults = config_defaults();
    value.as_object().is_some_and(|m| {
        let known = m
            .keys()
            .filter(|k| defaults.get(k.as_str()).is_some())
            .count();
        known > 0 && known * 2 > m.len()
    })
}

/// Whether a mapping looks like an Alertmanager configuration.
fn is_alertmanager_config(value: &Value) -> bool {
    value.get("route").is_some() || value.get("receivers").is_some()
}

/// Every problem of a Karo config file: unknown keys at any depth, each value
/// of the wrong type, [`Config::validate`], and the Job template file
/// (`run::prepare`). Values come through `config::figment`, environment
/// variables included, as `karo run` reads them.
pub fn check_config(path: &Path, doc: &Value, renderer: &Renderer) -> Vec<FieldProblem> {
    let mut problems = Vec::new();
    let defaults = config_defaults();
    if !doc.is_object() {
        return vec![field_problem("", "a Karo config file must be a mapping")];
    }
    unknown_keys(doc, &defaults, "", &mut problems);
    let extracted = config::figment(Some(path), &Overrides::default()).extract::<Config>();
    let config = match extracted {
        Ok(c) => c,
        Err(e) => {
            // Extraction stops at the first error: try each value on its own, then
            // go on with the values that are fine, so later checks still run.
            let mut leaves = Vec::new();
            known_leaves(doc, &defaults, "", &mut leaves);
            let mut good = Figment::from(Serialized::defaults(Config::default()));
            for (key, value) in leaves {
                let fig = Figment::from(Serialized::defaults(Config::default()))
                    .merge(Serialized::default(&key, &value));
                match fig.extract::<Config>() {
                    Ok(_) => good = good.merge(Serialized::default(&key, &value)),
                    Err(e) => {
                        for err in e {
                            let at = if err.path.is_empty() {
                                key.clone()
                            } else {
                                err.path.join(".")
                            };
                            problems.push(field_problem(at, err.kind.to_string()));
                        }
                    }
                }
            }
            if problems.is_empty() {
                // Not from a value of the file (an environment variable, say).
                problems.extend(split_config_message(
                    config::ConfigError::from_figment(e).message(),
                ));
                return problems;
            }
            match good.extract::<Config>() {
                Ok(c) => c,
                Err(_) => return problems,
            }
        }
    };
    if let Err(e) = config.validate() {
        problems.extend(split_config_message(e.message()));
    }
    let template_file = config.job_template_file.clone();
    if let Err(message) = run::prepare(config, renderer) {
        let detailed = template_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok().map(|t| (f, t)))
            .and_then(|(f, text)| {
                let value: Value = serde_yaml::from_str(&text).ok()?;
                let errors = TemplateTree::check(&value, "", renderer);
                (!errors.is_empty()).then(|| {
                    errors
                        .iter()
                        .map(|e| {
                            let p = render_problem(e);
                            field_problem(
                                "jobTemplateFile",
                                format!("{}: {}: {}", f.display(), p.path, p.reason),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            });
        match detailed {
            Some(d) => problems.extend(d),
            None => problems.extend(split_config_message(&message)),
        }
    }
    problems
}

/// Config messages are `key `a.b`: reason`, several joined by `; `.
fn split_config_message(message: &str) -> Vec<FieldProblem> {
    let mut parts: Vec<String> = Vec::new();
    for piece in message.split("; ") {
        match parts.last_mut() {
            Some(last) if !piece.starts_with("key `") => {
                last.push_str("; ");
                last.push_str(piece);
            }
            _ => parts.push(piece.to_string()),
        }
    }
    parts
        .into_iter()
        .map(|part| {
            let parsed = part.strip_prefix("key `").and_then(|r| r.split_once("`: "));
            match parsed {
                Some((key, reason)) => field_problem(key, reason),
                None => field_problem("", part),
            }
        })
        .collect()
}

fn unknown_keys(value: &Value, defaults: &Value, path: &str, out: &mut Vec<FieldProblem>) {
    let (Some(map), Some(known)) = (value.as_object(), defaults.as_object()) else {
        return;
    };
    if known.is_empty() {
        return; // free-form, like jobDefaults.labels
    }
    for (k, v) in map {
        let p = join(path, k);
        match known.get(k) {
            Some(d) => unknown_keys(v, d, &p, out),
            None => {
                let names: Vec<&str> = known.keys().map(String::as_str).collect();
                out.push(field_problem(
                    p,
                    format!("unknown key (known keys here: {})", names.join(", ")),
                ));
            }
        }
    }
}

/// The known keys of `value` that hold a value (not a section of further keys).
fn known_leaves(value: &Value, defaults: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    let (Some(map), Some(known)) = (value.as_object(), defaults.as_object()) else {
        return;
    };
    for (k, v) in map {
        let p = join(path, k);
        match known.get(k) {
            Some(Value::Object(d)) if !d.is_empty() && v.is_object() => {
                known_leaves(v, &Value::Object(d.clone()), &p, out)
            }
            Some(_) => out.push((p, v.clone())),
            None => {}
        }
    }
}

// ---------------------------------------------------------------------------
// karo validate

/// What `karo validate` found.
#[derive(Debug, Default)]
pub struct Validation {
    pub problems: Vec<Problem>,
    /// Documents and files that were not checked, and why.
    pub notes: Vec<String>,
    /// Files that held at least one AlertReaction or a Karo config.
    pub files_checked: usize,
}

/// Validates AlertReaction manifests and Karo config files. Reactions are
/// checked under `policy` (that of the configuration `karo run` would load).
pub fn validate(paths: &[PathBuf], renderer: &Renderer, policy: &Policy) -> Validation {
    let (inputs, problems) = collect_inputs(paths);
    let mut out = Validation {
        problems,
        ..Default::default()
    };
    for input in inputs {
        let path = &input.path;
        let docs = match read_documents(path) {
            Ok(docs) => docs,
            Err(p) => {
                out.problems.push(p);
                out.files_checked += 1;
                continue;
            }
        };
        let mut checked = false;
        if docs.len() == 1 && kind_of(&docs[0].value).is_none() && docs[0].value.is_object() {
            let doc = &docs[0].value;
            if is_alertmanager_config(doc) && !looks_like_config(doc) {
                out.notes.push(format!(
                    "{}: an Alertmanager configuration, skipped (`amtool check-config` checks it)",
                    path.display()
                ));
                continue;
            }
            if looks_like_config(doc) || input.named {
                out.files_checked += 1;
                out.problems.extend(
                    check_config(path, doc, renderer)
                        .into_iter()
                        .map(|p| Problem::new(path, p.path, p.reason)),
                );
                continue;
            }
        }
        for doc in &docs {
            if is_reaction(&doc.value) {
                checked = true;
                let location = doc_location(doc);
                out.problems.extend(
                    check_reaction(&doc.value, renderer, policy)
                        .into_iter()
                        .map(|p| {
                            let at = if p.path.is_empty() {
                                location.clone()
                            } else {
                                format!("{location} {}", p.path)
                            };
                            Problem::new(path, at, p.reason)
                        }),
                );
            } else {
                out.notes.push(format!(
                    "{}: {}: {}, skipped",
                    path.display(),
                    doc_location(doc),
                    match kind_of(&doc.value) {
                        Some(kind) => format!("kind {kind}, not an AlertReaction"),
                        None => "neither an AlertReaction nor a Karo config".to_string(),
                    }
                ));
            }
        }
        if checked {
            out.files_checked += 1;
        } else if docs.is_empty() {
            out.notes
                .push(format!("{}: empty, skipped", path.display()));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// karo render

/// A reaction read from a manifest, compiled as the controller compiles it.
#[derive(Debug)]
pub struct LoadedReaction {
    /// `namespace/name`.
    pub label: String,
    /// `file: doc n (name)`.
    pub origin: String,
    /// `spec.alertName`, when the manifest got that far.
    pub alert_name: Option<String>,
    pub compiled: Result<CompiledReaction, String>,
}

/// Reads AlertReactions from `inputs`. Documents of other kinds are skipped
/// with a note; a reaction without `metadata.namespace` gets `namespace`, and one
/// without `metadata.uid` gets [`PLACEHOLDER_UID`].
pub fn load_reactions(
    inputs: &[Input],
    namespace: &str,
    renderer: &Renderer,
    policy: &Policy,
    log: &mut Vec<String>,
) -> Result<Vec<LoadedReaction>, Vec<Problem>> {
    let mut reactions = Vec::new();
    let mut problems = Vec::new();
    for input in inputs {
        let docs = match read_documents(&input.path) {
            Ok(d) => d,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        for doc in docs {
            let origin = format!("{}: {}", input.path.display(), doc_location(&doc));
            if !is_reaction(&doc.value) {
                log.push(format!(
                    "note: {origin}: not an AlertReaction ({}), skipped",
                    kind_of(&doc.value).map_or("no kind".to_string(), |k| format!("kind {k}"))
                ));
                continue;
            }
            let alert_name = doc
                .value
                .pointer("/spec/alertName")
                .and_then(Value::as_str)
                .map(str::to_string);
            let (label, compiled) = match parse_reaction(&doc.value) {
                Ok(mut ar) => {
                    let meta = &mut ar.metadata;
                    if meta.namespace.as_deref().unwrap_or("").is_empty() {
                        meta.namespace = Some(namespace.to_string());
                    }
                    if meta.uid.as_deref().unwrap_or("").is_empty() {
                        meta.uid = Some(PLACEHOLDER_UID.to_string());
                    }
                    let label = format!(
                        "{}/{}",
                        meta.namespace.as_deref().unwrap_or(namespace),
                        meta.name.as_deref().unwrap_or("?")
                    );
                    let compiled = reaction::compile(&ar, renderer, policy)
                        .map_err(|e: Invalid| e.to_string());
                    (label, compiled)
                }
                Err(p) => (
                    format!("{namespace}/{}", doc_name(&doc.value)),
                    Err(format!(
                        "InvalidSpec: {p} (`karo validate` lists every problem)"
                    )),
                ),
            };
            reactions.push(LoadedReaction {
                label,
                origin,
                alert_name,
                compiled,
            });
        }
    }
    if problems.is_empty() {
        Ok(reactions)
    } else {
        Err(problems)
    }
}

/// What `karo render` produced.
#[derive(Debug, Default)]
pub struct Rendering {
    /// The Jobs `karo run` would create (and those a dry run renders), in order.
    pub jobs: Vec<Job>,
    /// For stderr: which reactions matched which alerts, and why the others did not.
    pub log: Vec<String>,
    /// Something went wrong: an invalid reaction, a Job that failed to render.
    pub failed: bool,
}

/// Matches every alert against every reaction, as the reactor does, and builds
/// the Jobs of the matches with `jobs::build_job`.
///
/// The three checks are the reactor's (`reactor::handle`): the index lookup by
/// `alertName`, `matchers.matches`, then `triggerOn`. A suspended reaction's Job
/// is built (a render failure is one) but not returned, as the daemon creates
/// nothing for it; a dry-run reaction's Job is returned.
pub fn evaluate(
    reactions: &[LoadedReaction],
    notification: &Notification,
    runtime: &Runtime,
    renderer: &Renderer,
) -> Rendering {
    let mut out = Rendering::default();
    for r in reactions {
        if let Err(e) = &r.compiled {
            out.failed = true;
            out.log
                .push(format!("error: {}: reaction invalid: {e}", r.origin));
        }
    }
    let total = notification.alerts.len();
    for (ai, alert) in notification.alerts.iter().enumerate() {
        out.log.push(format!(
            "alert {}/{total} {} ({}, fingerprint {})",
            ai + 1,
            if alert.alert_name().is_empty() {
                "<no alertname>"
            } else {
                alert.alert_name()
            },
            alert.status.as_str(),
            alert.fingerprint
        ));
        for r in reactions {
            let line = evaluate_one(r, alert, notification, runtime, renderer, &mut out);
            out.log.push(format!("  {}: {line}", r.label));
        }
    }
    if total == 0 {
        out.log
            .push("the notification has no alerts: nothing to render".to_string());
    }
    out
}

fn evaluate_one(
    r: &LoadedReaction,
    alert: &Alert,
    notification: &Notification,
    runtime: &Runtime,
    renderer: &Renderer,
    out: &mut Rendering,
) -> String {
    let wanted = match &r.compiled {
        Ok(c) => Some(c.spec.alert_name.as_str()),
        Err(_) => r.alert_name.as_deref(),
    };
    if let Some(wanted) = wanted {
        if !matching::alert_name_matches(wanted, alert) {
            return format!(
                "no match: alertname differs (the reaction is for {wanted:?}, the alert is {:?})",
                alert.alert_name()
            );
        }
    }
    let c = match &r.compiled {
        Ok(c) => c,
        Err(_) => return "not considered: the reaction is invalid (see above)".to_string(),
    };
    if !c.matchers.matches(alert) {
        let failed = c
            .matchers
            .iter()
            .zip(&c.spec.matchers)
            .find(|(m, _)| !m.matches(alert));
        return match failed {
            Some((m, spec)) => {
                let actual = match spec.name.strip_prefix(ANNOTATION_PREFIX) {
                    Some(key) => alert.annotations.get(key),
                    None => alert.labels.get(&spec.name),
                };
                let actual = match actual {
                    Some(v) => format!("{}={v:?}", spec.name),
                    None => format!("{} is absent, so \"\"", spec.name),
                };
                format!("no match: matcher {m} failed ({actual})")
            }
            None => "no match: a matcher failed".to_string(),
        };
    }
    if !c.spec.trigger_on.contains(&alert.status) {
        let on: Vec<&str> = c.spec.trigger_on.iter().map(|s| s.as_str()).collect();
        return format!(
            "no match: status {} is not in triggerOn [{}]",
            alert.status.as_str(),
            on.join(", ")
        );
    }

    let mut parts = Vec::new();
    for source in &c.sources {
        let built = jobs::build_job(&JobInput {
            reaction: c,
            source,
            alert,
            notification,
            renderer,
            skeleton: &runtime.skeleton,
            defaults: &runtime.config.job_defaults,
        });
        let job = match built {
            Ok(job) => job,
            Err(e) => {
                out.failed = true;
                parts.push(format!(
                    "action {:?}: render failed: {e}",
                    source.action_name
                ));
                continue;
            }
        };
        let name = job.metadata.name.clone().unwrap_or_default();
        if c.spec.suspend {
            parts.push(format!(
                "Job {name} not printed: the reaction is suspended, the daemon creates nothing"
            ));
        } else if c.spec.dry_run || runtime.config.dry_run {
            let by = if c.spec.dry_run {
                "spec.dryRun"
            } else {
                "the config's dryRun"
            };
            parts.push(format!(
                "Job {name} (dry run by {by}: the daemon renders it and creates nothing)"
            ));
            out.jobs.push(job);
        } else {
            parts.push(format!("Job {name}"));
            out.jobs.push(job);
        }
    }
    let mut line = format!("matched: {}", parts.join("; "));
    let mut gates = Vec::new();
    if let Some(cd) = &c.spec.cooldown {
        gates.push(format!("cooldown {cd}"));
    }
    if c.spec.concurrency_policy == ConcurrencyPolicy::Forbid {
        gates.push("concurrencyPolicy Forbid".to_string());
    }
    if !gates.is_empty() && !c.spec.suspend {
        line.push_str(&format!(
            " [{} depend on the Jobs in the cluster: not checked offline]",
            gates.join(" and ")
        ));
    }
    line
}

/// Everything `karo render` needs.
#[derive(Debug, Clone)]
pub struct RenderRequest {
    pub files: Vec<PathBuf>,
    /// The Alertmanager payload file; `-` is standard input.
    pub alerts: PathBuf,
    /// `--config`; as for `karo run`, `KARO_CONFIG` or the default file otherwise.
    pub config: Option<PathBuf>,
    pub overrides: Overrides,
    /// For reactions whose manifest names no namespace.
    pub namespace: String,
    /// Stands in for a missing `startsAt`, as the time of receipt does in the daemon.
    pub received_at: jiff::Timestamp,
}

/// `karo render`: reads the configuration, the payload and the reactions, and
/// evaluates them.
pub fn render(req: &RenderRequest) -> Rendering {
    let mut out = Rendering::default();
    let fail = |mut out: Rendering, message: String| {
        out.log.push(format!("error: {message}"));
        out.failed = true;
        out
    };
    let renderer = Renderer::new();
    let config = match config::load(req.config.as_deref(), &req.overrides) {
        Ok(c) => c,
        Err(e) => return fail(out, e.to_string()),
    };
    let runtime = match run::prepare(config, &renderer) {
        Ok(r) => r,
        Err(e) => return fail(out, format!("invalid configuration: {e}")),
    };
    let body = if req.alerts.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
    } else {
        std::fs::read(&req.alerts)
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => return fail(out, format!("{}: cannot read: {e}", req.alerts.display())),
    };
    let notification = match alert::parse_notification(&body, req.received_at) {
        Ok(n) => n,
        Err(e) => {
            return fail(
                out,
                format!(
                    "{}: not an Alertmanager notification: {e}",
                    req.alerts.display()
                ),
            )
        }
    };
    let (inputs, problems) = collect_inputs(&req.files);
    if !problems.is_empty() {
        for p in problems {
            out.log.push(format!("error: {p}"));
        }
        out.failed = true;
        return out;
    }
    let mut log = Vec::new();
    let reactions = load_reactions(
        &inputs,
        &req.namespace,
        &renderer,
        &runtime.config.policy,
        &mut log,
    );
    out.log.extend(log);
    let reactions = match reactions {
        Ok(r) => r,
        Err(problems) => {
            for p in problems {
                out.log.push(format!("error: {p}"));
            }
            out.failed = true;
            return out;
        }
    };
    if reactions.is_empty() {
        return fail(out, "no AlertReaction in the given files".to_string());
    }
    out.log.push(format!(
        "{} AlertReaction(s), {} alert(s) in {}",
        reactions.len(),
        notification.alerts.len(),
        req.alerts.display()
    ));
    let evaluated = evaluate(&reactions, &notification, &runtime, &renderer);
    out.jobs = evaluated.jobs;
    out.log.extend(evaluated.log);
    out.failed |= evaluated.failed;
    out
}

/// The Jobs as YAML documents (`---` before each), or as a JSON `List`.
pub fn format_jobs(jobs: &[Job], json: bool) -> Result<String, String> {
    if json {
        let list = serde_json::json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": jobs,
        });
        serde_json::to_string_pretty(&list)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string())
    } else {
        let mut s = String::new();
        for job in jobs {
            s.push_str("---\n");
            s.push_str(&serde_yaml::to_string(job).map_err(|e| e.to_string())?);
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renderer() -> Renderer {
        Renderer::new()
    }

    fn doc(yaml: &str) -> Value {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn paths(problems: &[FieldProblem]) -> Vec<&str> {
        problems.iter().map(|p| p.path.as_str()).collect()
    }

    const GOOD: &str = r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {name: ok, namespace: ops}
spec:
  alertName: DiskFull
  matchers:
    - {name: severity, operator: "=~", value: "critical|page"}
  actions:
    - name: clean
      image: busybox
      args: ["clean {{labels.mountpoint}}"]
"#;

    #[test]
    fn a_good_reaction_has_no_problem() {
        let p = check_reaction(&doc(GOOD), &renderer(), &Policy::default());
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let bad = r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {name: bad}
spec:
  matcher: []
  cooldown: soon
  matchers:
    - {name: severity, operator: "=~", value: "(crit"}
    - {name: env, operator: "==", value: prod}
    - {name: team, operator: "!~", value: "a[b"}
  actions:
    - name: one
      image: busybox
      args: ["ok", "{{labels.x}}", "{{lables.x}}"]
    - name: two
      image: busybox
      command: ["{{#if labels.a}}unclosed"]
"#;
        let p = check_reaction(&doc(bad), &renderer(), &Policy::default());
        let got = paths(&p);
        for want in [
            "spec.matcher",
            "spec.alertName",
            "spec.matchers[0].value",
            "spec.matchers[1].operator",
            "spec.matchers[2].value",
            "spec.actions[0].args[2]",
            "spec.actions[1].command[0]",
        ] {
            assert!(got.contains(&want), "{want} not in {p:#?}");
        }
        let op = p
            .iter()
            .find(|p| p.path == "spec.matchers[1].operator")
            .unwrap();
        assert!(op.reason.contains("=="), "{op:?}");
    }

    #[test]
    fn policy_and_structure_problems() {
        let bad = r#"
apiVersion: karo.io/v1alpha1
kind: AlertReaction
metadata: {name: bad}
spec:
  alertName: X
  cooldown: soon
  volumes:
    - {name: host, hostPath: {path: /var}}
  actions:
    - {name: a, image: ""}
    - name: a
      image: busybox
      volumeMounts: [{name: missing, mountPath: /x}]
"#;
        let p = check_reaction(&doc(bad), &renderer(), &Policy::default());
        let got = paths(&p);
        for want in [
            "spec.cooldown",
            "spec.volumes[0].hostPath",
            "spec.actions[0].image",
            "spec.actions[1].name",
            "spec.actions[1].volumeMounts[0].name",
        ] {
            assert!(got.contains(&want), "{want} not in {p:#?}");
        }
    }

    #[test]
    fn config_problems_name_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let yaml = "webhook:\n  pth: /x\n  path: hooks\nhttp:\n  port: eighty\nlogFormat: xml\n";
        std::fs::write(&path, yaml).unwrap();
        let p = check_config(&path, &doc(yaml), &renderer());
        let got = paths(&p);
        for want in ["webhook.pth", "http.port", "logFormat"] {
            assert!(got.contains(&want), "{want} not in {p:#?}");
        }
    }

    #[test]
    fn config_validate_messages_split() {
        let p = split_config_message("key `a.b`: x; y; key `c`: z");
        assert_eq!(
            p,
            vec![field_problem("a.b", "x; y"), field_problem("c", "z")]
        );
    }

    #[test]
    fn multi_document_yaml_and_syntax_errors() {
        let docs = parse_documents("a: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        let (at, why) = parse_documents("a: [1,\n").unwrap_err();
        assert!(at.starts_with("line "), "{at}");
        assert!(why.starts_with("invalid YAML"), "{why}");
    }
}
