//! The files `karo render` and `karo validate` read: paths and directories,
//! multi-document YAML read as kubectl reads it (`kube_yaml`), and
//! deserialisation that names the field that failed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cli::kube_yaml::read_stream;
use crate::model::crd::AlertReaction;
use crate::model::error::FieldError;
use crate::model::yaml::{resolve_plain, Plain};

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
    pub fn new(file: &Path, location: impl Into<String>, reason: impl Into<String>) -> Self {
        Problem {
            file: file.display().to_string(),
            location: location.into(),
            reason: reason.into(),
        }
    }
}

/// A file to read, and whether it was named on the command line (rather than
/// found while scanning a directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub path: PathBuf,
    pub named: bool,
}

/// The path that names standard input, as kubectl reads it (`-f -`).
pub const STDIN: &str = "-";

/// Standard input, read once: every later read gets the same text.
pub fn stdin_text() -> Result<String, String> {
    static TEXT: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map(|_| text)
            .map_err(|e| e.to_string())
    })
    .clone()
}

/// The files behind `paths` (`-` is standard input): files as given, directories scanned (recursively,
/// in name order) for `*.yaml` and `*.yml`.
pub fn collect_inputs(paths: &[PathBuf]) -> (Vec<Input>, Vec<Problem>) {
    let mut inputs = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        if path.as_os_str() == STDIN {
            inputs.push(Input {
                path: path.clone(),
                named: true,
            });
        } else if path.is_dir() {
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

/// One YAML document of a file, as kubectl reads it (`kube_yaml`).
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 1-based position in the file.
    pub number: usize,
    pub value: Value,
    /// The unquoted scalars kubectl reads as something other than the string
    /// written (`on` as true, `010` as 8), by field path.
    pub plain: BTreeMap<String, String>,
}

/// The text of `path` (`-` is standard input).
pub fn read_text(path: &Path) -> Result<String, Problem> {
    if path.as_os_str() == STDIN {
        stdin_text().map_err(|e| Problem::new(path, "", format!("cannot read standard input: {e}")))
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| Problem::new(path, "", format!("cannot read: {e}")))
    }
}

/// Every non-empty YAML document of `path`. A syntax error is one problem with
/// its line and column; documents before it are not returned.
pub fn read_documents(path: &Path) -> Result<Vec<Document>, Problem> {
    let text = read_text(path)?;
    parse_documents(&text).map_err(|(location, reason)| Problem::new(path, location, reason))
}

/// Parses multi-document YAML as kubectl does (YAML 1.1 scalars); the error is
/// (location, reason).
pub fn parse_documents(text: &str) -> Result<Vec<Document>, (String, String)> {
    let docs = read_stream(text).map_err(|e| {
        (
            format!("line {} column {}", e.line, e.column),
            format!("invalid YAML: {}", e.reason),
        )
    })?;
    Ok(docs
        .into_iter()
        .filter(|d| !d.value.is_null())
        .map(|d| Document {
            number: d.number,
            value: d.value,
            plain: d.plain,
        })
        .collect())
}

/// A single YAML document as Karo reads its own files (YAML 1.2, serde_yaml):
/// a Karo config file is read by Karo, not by kubectl.
pub fn parse_own_file(text: &str) -> Result<Value, (String, String)> {
    serde_yaml::from_str(text).map_err(|e| yaml_error(&e))
}

/// `error` with, when it is about a value written unquoted that kubectl reads
/// as a boolean, a number or null, what kubectl read and how to write a string.
pub(crate) fn explain_reading(doc: &Document, mut error: FieldError) -> FieldError {
    if let Some(text) = doc.plain.get(&error.path) {
        if error.reason.starts_with("invalid type") {
            let read = match resolve_plain(text) {
                Plain::Bool(b) => format!("the boolean {b}"),
                Plain::Null => "null".to_string(),
                Plain::Int(_) | Plain::Uint(_) | Plain::Float(_) => {
                    match doc.value.pointer(&json_pointer(&error.path)) {
                        Some(v) => format!("the number {v}"),
                        None => "a number".to_string(),
                    }
                }
                Plain::Merge | Plain::Str => return error,
            };
            error.reason = format!(
                "{} (kubectl reads the unquoted `{text}` as {read}, by YAML 1.1 rules; \
                 quote it for the string: \"{text}\")",
                error.reason
            );
        }
    }
    error
}

/// Unquoted numbers with a leading zero, which kubectl reads as octal: `010`
/// is 8. Each as (field path, what was written, the value kubectl reads).
pub(crate) fn octal_readings(doc: &Document) -> Vec<(String, String, String)> {
    doc.plain
        .iter()
        .filter(|(_, text)| {
            let digits = text.trim_start_matches(['-', '+']).replace('_', "");
            digits.len() > 1
                && digits.starts_with('0')
                && digits.bytes().all(|b| b.is_ascii_digit())
                && matches!(resolve_plain(text), Plain::Int(_))
        })
        .map(|(path, text)| {
            let read = doc
                .value
                .pointer(&json_pointer(path))
                .map_or_else(|| "?".to_string(), ToString::to_string);
            (path.clone(), text.clone(), read)
        })
        .collect()
}

/// `spec.matchers[0].value` as a JSON pointer, `/spec/matchers/0/value`.
fn json_pointer(path: &str) -> String {
    let mut out = String::new();
    for part in path.split('.') {
        let (name, indices) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            out.push('/');
            out.push_str(&name.replace('~', "~0").replace('/', "~1"));
        }
        for index in indices.split('[').filter(|i| !i.is_empty()) {
            out.push('/');
            out.push_str(index.trim_end_matches(']'));
        }
    }
    out
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

pub(crate) fn kind_of(value: &Value) -> Option<&str> {
    value.get("kind").and_then(Value::as_str)
}

pub(crate) fn is_reaction(value: &Value) -> bool {
    kind_of(value) == Some("AlertReaction")
}

pub(crate) fn doc_name(value: &Value) -> String {
    value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

pub(crate) fn doc_location(doc: &Document) -> String {
    format!("doc {} ({})", doc.number, doc_name(&doc.value))
}

pub(crate) fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty() || path == ".") {
        (_, true) => prefix.to_string(),
        (true, false) => path.to_string(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// Deserialises `value` as `T`; an error names the field (`prefix` + the path
/// inside `value`).
pub(crate) fn deserialize_at<T: DeserializeOwned>(
    value: &Value,
    prefix: &str,
) -> Result<T, FieldError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = join(prefix, &e.path().to_string());
        let reason = e.inner().to_string();
        // `missing field `x`` is about the field, not the mapping around it.
        match reason
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            Some(field) => FieldError::new(join(&path, field), "required field is missing"),
            None => FieldError::new(path, reason),
        }
    })
}

/// An AlertReaction from a manifest, with the first problem and its field path.
pub fn parse_reaction(value: &Value) -> Result<AlertReaction, FieldError> {
    deserialize_at(value, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_and_syntax_errors() {
        let docs = parse_documents("a: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
        let (at, why) = parse_documents("a: [1,\n").unwrap_err();
        assert!(at.starts_with("line "), "{at}");
        assert!(why.starts_with("invalid YAML"), "{why}");
    }
}
