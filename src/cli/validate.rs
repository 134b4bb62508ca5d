//! `karo validate`: every problem of AlertReaction manifests and Karo config
//! files, each with the file and the path inside it. A reaction is checked part
//! by part, so that one bad field does not hide the others, with the same rules
//! (`reaction::check_*`) and finally the same verdict (`reaction::compile`) as
//! the daemon.

use std::collections::BTreeSet;
use std::path::PathBuf;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResourceExt;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::cli::config_check::{check_config, is_alertmanager_config, looks_like_config};
use crate::cli::config_map::{self, karo_config_map};
use crate::cli::inputs::{
    collect_inputs, deserialize_at, doc_location, explain_reading, is_reaction, join, kind_of,
    octal_readings, parse_documents, parse_own_file, parse_reaction, read_text, Problem,
};
use crate::core::matching::MatcherSet;
use crate::core::reaction;
use crate::core::render::{RenderError, Renderer, TemplateTree};
use crate::model::config::{Overrides, Policy};
use crate::model::crd::{
    Action, AlertReaction, AlertReactionSpec, AlertStatus, JobTemplate, Matcher, Volume,
};
use crate::model::error::FieldError;

/// The `apiVersion` of an AlertReaction.
const API_VERSION: &str = "karo.io/v1alpha1";

/// Every problem of one AlertReaction document: fields that do not deserialise
/// (each part of the spec on its own, so that one bad field does not hide the
/// others), unknown fields the API server would drop, every matcher, every
/// template, and the checks `reaction::compile` makes. A reaction with no problem
/// compiles, and so is Ready in the cluster under the same `policy`.
pub fn check_reaction(doc: &Value, renderer: &Renderer, policy: &Policy) -> Vec<FieldError> {
    let mut problems = Vec::new();
    match doc.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        Some(other) => problems.push(FieldError::new(
            "apiVersion",
            format!("must be {API_VERSION}, found {other:?}"),
        )),
        None => problems.push(FieldError::new(
            "apiVersion",
            format!("required field is missing (must be {API_VERSION})"),
        )),
    }
    if let Some(schema) = crd_schema() {
        unknown_fields(doc, &schema, "", &mut problems);
    }
    match doc.get("metadata") {
        Some(meta) => match deserialize_at::<ObjectMeta>(meta, "metadata") {
            Ok(m) if m.name.as_deref().unwrap_or("").is_empty() => problems.push(FieldError::new(
                "metadata.name",
                "required field is missing",
            )),
            Ok(_) => {}
            Err(p) => problems.push(p),
        },
        None => problems.push(FieldError::new("metadata", "required field is missing")),
    }
    let spec = match doc.get("spec") {
        Some(Value::Object(spec)) => spec,
        Some(_) => {
            problems.push(FieldError::new("spec", "must be a mapping"));
            return problems;
        }
        None => {
            problems.push(FieldError::new("spec", "required field is missing"));
            return problems;
        }
    };
    let before_parts = problems.len();

    let matchers: Vec<(usize, Matcher)> = elements(spec, "matchers", &mut problems);
    let actions = raw_elements::<Action>(spec, "actions", &mut problems);
    let on_success = raw_elements::<Action>(spec, "onSuccess", &mut problems);
    let on_failure = raw_elements::<Action>(spec, "onFailure", &mut problems);
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
    for key in [
        "matchers",
        "actions",
        "onSuccess",
        "onFailure",
        "volumes",
        "triggerOn",
        "jobTemplate",
    ] {
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
        if let Err(e) = reaction::check_alert_name(&rest.alert_name) {
            problems.push(e.field);
        }
        if let Some(Err(e)) = rest.cooldown.as_deref().map(reaction::check_cooldown) {
            problems.push(e.field);
        }
        if let Err(e) = reaction::check_closing(rest) {
            problems.push(e.field);
        }
    }
    if let Err(e) = reaction::check_has_sources(!actions.is_empty(), job_template.is_some()) {
        problems.push(e.field);
    }

    // Matchers: every one, at its position in the manifest.
    let compiled: Vec<Matcher> = matchers.iter().map(|(_, m)| m.clone()).collect();
    if let Err(errors) = MatcherSet::compile_all(&compiled) {
        for e in errors {
            let index = matchers.get(e.index).map_or(e.index, |(i, _)| *i);
            problems.push(FieldError::new(
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
            problems.push(e.field);
        }
    }
    for (list, entries, reserve_job) in [
        ("actions", &actions, job_template.is_some()),
        ("onSuccess", &on_success, false),
        ("onFailure", &on_failure, false),
    ] {
        let mut names = BTreeSet::new();
        for (i, raw, action) in entries {
            let field = format!("spec.{list}[{i}]");
            let tree = match action {
                Some(a) => {
                    if let Err(e) = reaction::validate_action_in(&context, list, *i, a, policy) {
                        problems.push(e.field);
                    }
                    if let Err(e) =
                        reaction::check_action_name_in(list, *i, &a.name, &mut names, reserve_job)
                    {
                        problems.push(e.field);
                    }
                    serde_json::to_value(a).unwrap_or_else(|_| (*raw).clone())
                }
                None => (*raw).clone(),
            };
            problems.extend(
                TemplateTree::check(&tree, &field, renderer)
                    .iter()
                    .map(RenderError::field_error),
            );
        }
    }
    if let Some((raw, jt)) = &job_template {
        let tree = match jt {
            Some(jt) => {
                if let Err(e) = reaction::validate_job_template(&jt.spec, policy) {
                    problems.push(e.field);
                }
                serde_json::to_value(jt).unwrap_or_else(|_| (*raw).clone())
            }
            None => (*raw).clone(),
        };
        problems.extend(
            TemplateTree::check(&tree, "spec.jobTemplate", renderer)
                .iter()
                .map(RenderError::field_error),
        );
    }

    // The daemon's own verdict, in case it checks something the above does not.
    if parts_ok {
        match parse_reaction(doc) {
            Ok(ar) => {
                if let Err(e) = reaction::compile(&ar, renderer, policy) {
                    let p = e.field;
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
    problems: &mut Vec<FieldError>,
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
    problems: &mut Vec<FieldError>,
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
            problems.push(FieldError::new(format!("spec.{key}"), "must be a list"));
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
fn unknown_fields(value: &Value, schema: &Value, path: &str, out: &mut Vec<FieldError>) {
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
                        out.push(FieldError::new(
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

/// What `karo validate` found.
#[derive(Debug, Default)]
pub struct Validation {
    pub problems: Vec<Problem>,
    /// Documents and files that were not checked, and why.
    pub notes: Vec<String>,
    /// Files that held at least one AlertReaction or a Karo config.
    pub files_checked: usize,
}

/// Validates AlertReaction manifests and Karo config files, read as kubectl
/// reads them. Reactions are checked under `policy` (that of the configuration
/// `karo run` would load), unless the inputs hold Karo's ConfigMap (`helm
/// template` output): its `config.yaml` and Job skeleton are checked, and
/// reactions are checked under its policy.
pub fn validate(
    paths: &[PathBuf],
    renderer: &Renderer,
    policy: &Policy,
    overrides: &Overrides,
) -> Validation {
    let (inputs, problems) = collect_inputs(paths);
    let mut out = Validation {
        problems,
        ..Default::default()
    };
    let mut files = Vec::new();
    for input in inputs {
        let read = read_text(&input.path).and_then(|text| {
            parse_documents(&text)
                .map(|docs| (text, docs))
                .map_err(|(location, reason)| Problem::new(&input.path, location, reason))
        });
        match read {
            Ok((text, docs)) => files.push((input, text, docs)),
            Err(p) => {
                out.problems.push(p);
                out.files_checked += 1;
            }
        }
    }

    // Karo's ConfigMaps first: the first valid one is the configuration the
    // reactions are checked under.
    let mut policy = policy.clone();
    let mut in_effect: Option<String> = None;
    let mut config_maps = BTreeSet::new();
    for (fi, (input, _, docs)) in files.iter().enumerate() {
        for doc in docs {
            let Some(cm) = karo_config_map(doc) else {
                continue;
            };
            config_maps.insert((fi, doc.number));
            let checked = config_map::check(&cm, doc, renderer, overrides);
            out.problems.extend(
                checked.problems.into_iter().map(|p| {
                    Problem::new(&input.path, join_place(&cm.location, &p.path), p.reason)
                }),
            );
            out.notes.extend(checked.notes);
            if let Some(snapshot) = checked.snapshot {
                match &in_effect {
                    None => {
                        policy = snapshot.config.policy;
                        in_effect = Some(format!("{}: {}", input.path.display(), cm.location));
                    }
                    Some(first) => out.notes.push(format!(
                        "{}: {}: another Karo ConfigMap; reactions are checked under the first, {first}",
                        input.path.display(),
                        cm.location
                    )),
                }
            }
        }
    }
    if let Some(first) = &in_effect {
        out.notes
            .push(format!("reactions are checked under the policy of {first}"));
    }

    for (fi, (input, text, docs)) in files.iter().enumerate() {
        let path = &input.path;
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
                // Karo reads its config file itself, by YAML 1.2.
                match parse_own_file(text) {
                    Ok(own) => out.problems.extend(
                        check_config(path, &own, renderer)
                            .into_iter()
                            .map(|p| Problem::new(path, p.path, p.reason)),
                    ),
                    Err((location, reason)) => {
                        out.problems.push(Problem::new(path, location, reason))
                    }
                }
                continue;
            }
        }
        for doc in docs {
            if config_maps.contains(&(fi, doc.number)) {
                checked = true;
            } else if is_reaction(&doc.value) {
                checked = true;
                let location = doc_location(doc);
                out.problems.extend(
                    check_reaction(&doc.value, renderer, &policy)
                        .into_iter()
                        .map(|p| {
                            let p = explain_reading(doc, p);
                            Problem::new(path, join_place(&location, &p.path), p.reason)
                        }),
                );
                for (field, written, read) in octal_readings(doc) {
                    out.notes.push(format!(
                        "{}: {} {field}: kubectl reads the unquoted {written} as the octal number {read} (YAML 1.1)",
                        path.display(),
                        location
                    ));
                }
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

/// A document's place and a path inside it: `doc 1 (name) spec.matchers[0]`.
fn join_place(location: &str, path: &str) -> String {
    if path.is_empty() {
        location.to_string()
    } else {
        format!("{location} {path}")
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

    fn paths(problems: &[FieldError]) -> Vec<&str> {
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

    /// Problems of a config file with `yaml` as its content.
    fn config_problems(yaml: &str) -> Vec<FieldError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        check_config(&path, &doc(yaml), &renderer())
    }

    #[test]
    fn config_problems_name_their_keys() {
        let p = config_problems(
            "webhook:\n  pth: /x\n  path: hooks\nhttp:\n  port: eighty\nlogFormat: xml\n",
        );
        let got = paths(&p);
        for want in ["webhook.pth", "http.port", "logFormat"] {
            assert!(got.contains(&want), "{want} not in {p:#?}");
        }
    }

    #[test]
    fn problems_of_the_checks_karo_run_makes_keep_their_keys() {
        let p = config_problems("webhook:\n  path: /hooks/\n  maxBodyBytes: 0\n");
        assert_eq!(
            paths(&p),
            vec!["webhook.path", "webhook.maxBodyBytes"],
            "{p:#?}"
        );
    }
}
