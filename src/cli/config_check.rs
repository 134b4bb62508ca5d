//! `karo validate` on a Karo config file: unknown keys at any depth, values of
//! the wrong type, the checks `karo run` makes, and the Job template file.

use std::path::Path;

use figment::providers::Serialized;
use figment::Figment;
use serde_json::Value;

use crate::cli::inputs::join;
use crate::core::render::{Renderer, TemplateTree};
use crate::core::snapshot::{Snapshot, SnapshotError};
use crate::model::config::{self, Config, ConfigError, Overrides};
use crate::model::error::FieldError;

/// The config's keys with their defaults; a mapping with no keys is free-form.
fn config_defaults() -> Value {
    serde_json::to_value(Config::default()).unwrap_or(Value::Null)
}

/// Whether a mapping looks like a Karo config: most of its top-level keys are
/// Karo's (a Helm values file shares `webhook`, say, but little else).
pub(crate) fn looks_like_config(value: &Value) -> bool {
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
pub(crate) fn is_alertmanager_config(value: &Value) -> bool {
    value.get("route").is_some() || value.get("receivers").is_some()
}

/// Every problem of a Karo config file: unknown keys at any depth, each value
/// of the wrong type, [`Config::validate`], and the Job template file
/// (`Snapshot::prepare`). Values come through `config::figment`, environment
/// variables included, as `karo run` reads them.
pub fn check_config(path: &Path, doc: &Value, renderer: &Renderer) -> Vec<FieldError> {
    let figment = config::figment(Some(path), &Overrides::default());
    let (mut problems, config) = check_values(doc, figment);
    let Some(config) = config else {
        return problems;
    };
    let template_file = config.job_template_file.clone();
    if let Err(error) = Snapshot::prepare(config, renderer) {
        let detailed = template_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok().map(|t| (f, t)))
            .and_then(|(f, text)| {
                let errors = skeleton_problems(&text, renderer);
                (!errors.is_empty()).then(|| {
                    errors
                        .into_iter()
                        .map(|p| {
                            FieldError::new(
                                "jobTemplateFile",
                                format!("{}: {}: {}", f.display(), p.path, p.reason),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            });
        match detailed {
            Some(d) => problems.extend(d),
            None => problems.push(match &error {
                SnapshotError::ReadTemplate { path, source } => FieldError::new(
                    "jobTemplateFile",
                    format!("cannot read {}: {source}", path.display()),
                ),
                SnapshotError::Skeleton(e) => FieldError::new("", e.to_string()),
            }),
        }
    }
    problems
}

/// Every template problem of a Job skeleton's text, each with its field path.
pub(crate) fn skeleton_problems(text: &str, renderer: &Renderer) -> Vec<FieldError> {
    match serde_yaml::from_str::<Value>(text) {
        Ok(value) => TemplateTree::check(&value, "", renderer)
            .iter()
            .map(|e| e.field_error())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The checks of a config's values (`doc` as written, `figment` as Karo layers
/// it): unknown keys, values of the wrong type, [`Config::validate`]. The config
/// too when it could be extracted.
pub(crate) fn check_values(doc: &Value, figment: Figment) -> (Vec<FieldError>, Option<Config>) {
    let mut problems = Vec::new();
    let defaults = config_defaults();
    if !doc.is_object() {
        return (
            vec![FieldError::new("", "a Karo config file must be a mapping")],
            None,
        );
    }
    unknown_keys(doc, &defaults, "", &mut problems);
    let config = match figment.extract::<Config>() {
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
                            problems.push(FieldError::new(at, err.kind.to_string()));
                        }
                    }
                }
            }
            if problems.is_empty() {
                // Not from a value of the file (an environment variable, say).
                problems.extend(ConfigError::from_figment(e).problems);
                return (problems, None);
            }
            match good.extract::<Config>() {
                Ok(c) => c,
                Err(_) => return (problems, None),
            }
        }
    };
    if let Err(e) = config.validate() {
        problems.extend(e.problems);
    }
    (problems, Some(config))
}

fn unknown_keys(value: &Value, defaults: &Value, path: &str, out: &mut Vec<FieldError>) {
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
                out.push(FieldError::new(
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
