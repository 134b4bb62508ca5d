//! Karo's ConfigMap in a stream of manifests, as the chart renders it
//! (`helm template … | karo validate -`): `config.yaml`, Karo's config file, and
//! the Job skeleton its `jobTemplateFile` names (`job.yaml`), both mounted in the
//! pod from the ConfigMap. Karo reads both itself (YAML 1.2), as `karo run` does.

use std::collections::BTreeMap;

use figment::providers::{Format, Serialized, Yaml};
use figment::Figment;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

use crate::cli::config_check::{check_values, looks_like_config, skeleton_problems};
use crate::cli::inputs::{deserialize_at, doc_name, kind_of, parse_own_file, Document};
use crate::core::jobs::Skeleton;
use crate::core::render::Renderer;
use crate::core::snapshot::Snapshot;
use crate::model::config::{Config, Overrides};
use crate::model::error::FieldError;

/// The key of Karo's config file in its ConfigMap (the chart's
/// `--config /etc/karo/config/config.yaml`).
pub const CONFIG_KEY: &str = "config.yaml";

/// The label the chart puts on everything it renders.
const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "karo");

/// A ConfigMap that holds a Karo config.
#[derive(Debug, Clone)]
pub struct KaroConfigMap {
    pub name: String,
    /// `doc 3 (ConfigMap karo)`.
    pub location: String,
    pub data: BTreeMap<String, Value>,
}

/// Whether `doc` is Karo's ConfigMap: a ConfigMap with a `config.yaml` that is
/// a Karo config, or one the chart labels as Karo's.
pub fn karo_config_map(doc: &Document) -> Option<KaroConfigMap> {
    let value = &doc.value;
    if kind_of(value) != Some("ConfigMap") {
        return None;
    }
    let data = value.get("data")?.as_object()?;
    let config = data.get(CONFIG_KEY)?;
    let labelled = value
        .pointer("/metadata/labels")
        .and_then(|l| l.get(PART_OF.0))
        .and_then(Value::as_str)
        == Some(PART_OF.1);
    let is_config = config
        .as_str()
        .and_then(|text| parse_own_file(text).ok())
        .is_some_and(|v| looks_like_config(&v));
    if !labelled && !is_config {
        return None;
    }
    let name = doc_name(value);
    Some(KaroConfigMap {
        location: format!("doc {} (ConfigMap {name})", doc.number),
        name,
        data: data.clone().into_iter().collect(),
    })
}

/// What checking a Karo ConfigMap found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Each with its place: `config.yaml webhook.path`, `job.yaml spec.template…`,
    /// `data.job.yaml` for the ConfigMap itself.
    pub problems: Vec<FieldError>,
    pub notes: Vec<String>,
    /// The configuration in effect, when there is no problem.
    pub snapshot: Option<Snapshot>,
}

/// `key` then the path inside it.
fn at(key: &str, path: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{key} {path}")
    }
}

/// Checks the ConfigMap's `config.yaml` as `karo validate --config` checks a
/// config file, and the Job skeleton it names when the ConfigMap holds it;
/// `overrides` (the command line's) are layered on top as `karo run` layers them.
pub fn check(
    cm: &KaroConfigMap,
    doc: &Document,
    renderer: &Renderer,
    overrides: &Overrides,
) -> Checked {
    let mut out = Checked::default();
    // As the API server would: every value of `data` a string.
    if let Err(e) = deserialize_at::<ConfigMap>(&doc.value, "") {
        out.problems
            .push(crate::cli::inputs::explain_reading(doc, e));
        return out;
    }
    let Some(text) = cm.data.get(CONFIG_KEY).and_then(Value::as_str) else {
        return out;
    };
    let value = match parse_own_file(text) {
        Ok(v) => v,
        Err((location, reason)) => {
            out.problems
                .push(FieldError::new(at(CONFIG_KEY, &location), reason));
            return out;
        }
    };
    let figment = Figment::from(Serialized::defaults(Config::default()))
        .merge(Yaml::string(text))
        .merge(Serialized::defaults(overrides));
    let (problems, config) = check_values(&value, figment);
    out.problems.extend(
        problems
            .into_iter()
            .map(|p| FieldError::new(at(CONFIG_KEY, &p.path), p.reason)),
    );
    let Some(mut config) = config else {
        return out;
    };
    let skeleton = match config.job_template_file.take() {
        None => builtin(&mut out),
        Some(file) => {
            let key = file.file_name().and_then(|n| n.to_str());
            match key.and_then(|k| cm.data.get(k).map(|v| (k, v))) {
                Some((key, Value::String(text))) => skeleton(key, text, cm, renderer, &mut out),
                // Not a string: refused above, as the API server refuses it.
                Some(_) => None,
                None => {
                    out.notes.push(format!(
                        "{}: {CONFIG_KEY} jobTemplateFile: {} is not a key of this ConfigMap, \
                         so it was not checked; the built-in Job skeleton stands in for it",
                        cm.location,
                        file.display()
                    ));
                    builtin(&mut out)
                }
            }
        }
    };
    if let Some(skeleton) = skeleton.filter(|_| out.problems.is_empty()) {
        out.snapshot = Some(Snapshot { config, skeleton });
    }
    out
}

fn builtin(out: &mut Checked) -> Option<Skeleton> {
    Skeleton::builtin()
        .map_err(|e| out.problems.push(FieldError::new("", e.to_string())))
        .ok()
}

/// The skeleton in `key`, each problem of it in `out` (every string's template
/// on its own, with its path).
fn skeleton(
    key: &str,
    text: &str,
    cm: &KaroConfigMap,
    renderer: &Renderer,
    out: &mut Checked,
) -> Option<Skeleton> {
    let origin = format!("ConfigMap {} {key}", cm.name);
    let parsed = Skeleton::parse(text, &origin).and_then(|s| s.validate(renderer).map(|()| s));
    match parsed {
        Ok(s) => Some(s),
        Err(e) => {
            let each = skeleton_problems(text, renderer);
            if each.is_empty() {
                let reason = e.to_string();
                let reason = reason
                    .strip_prefix(&format!("{origin}: "))
                    .unwrap_or(&reason)
                    .to_string();
                out.problems.push(FieldError::new(key, reason));
            } else {
                out.problems.extend(
                    each.into_iter()
                        .map(|p| FieldError::new(at(key, &p.path), p.reason)),
                );
            }
            None
        }
    }
}
