//! Structure-safe Handlebars rendering of Job specs.
//!
//! A reaction's `actions` and `jobTemplate` are JSON trees whose strings are
//! templates. Each string is parsed once, as a template of its own, before any
//! alert is seen; rendering replaces that one string with its output, which is
//! never parsed as YAML or JSON and never rendered again. Whatever an alert's
//! labels contain (`{{...}}`, quotes, newlines, `: `, `$(...)`), it lands verbatim
//! inside the string where the template put it and cannot add fields, volumes,
//! containers or commands. Object keys are not templates, and numbers, booleans
//! and nulls pass through untouched, so the tree's shape is fixed by the manifest.
//!
//! Sizes are bounded: a string of a tree is at most `MAX_TEMPLATE_LENGTH` bytes,
//! and the output of a tree's templates for one alert at most what the caller
//! allows (`MAX_RENDER_OUTPUT_BYTES` for a Job): a template that repeats itself over
//! big labels stops with an error as soon as it passes the limit, before it has
//! allocated more.
//!
//! Handlebars runs in strict mode (a missing variable is an error;
//! `{{default labels.team "none"}}` tolerates absence) with no HTML escaping.
//! Karo's helpers are in `helpers`, the static check of templates in `check`.

mod check;
mod helpers;

use check::Validator;
use helpers::{FnHelper, HelperSpec, BUILTIN_HELPERS, KARO_HELPERS};
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, Weak};

use handlebars::{Context, Handlebars, RenderContext, RenderErrorReason, Renderable, Template};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::model::alert::{Alert, Notification};
use crate::model::crd::limits::{MAX_RENDER_OUTPUT_BYTES, MAX_TEMPLATE_LENGTH};
use crate::model::error::FieldError;

pub(crate) type HbError = handlebars::RenderError;

/// Why a template could not be compiled, validated or rendered. Every variant
/// names the field path of the string that holds the template.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    #[error("{}invalid template: {message}", prefix(.field))]
    Parse { field: String, message: String },
    #[error("{}unknown variable `{name}`", prefix(.field))]
    UnknownVariable { field: String, name: String },
    #[error("{}unknown helper `{name}`", prefix(.field))]
    UnknownHelper { field: String, name: String },
    #[error("{}{message}", prefix(.field))]
    InvalidArguments { field: String, message: String },
    #[error("{}{what} are not supported", prefix(.field))]
    Unsupported { field: String, what: &'static str },
    #[error("{}{message}", prefix(.field))]
    Render { field: String, message: String },
    /// A template longer than Karo's limit.
    #[error("{}{message}", prefix(.field))]
    TooLong { field: String, message: String },
}

fn prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

impl RenderError {
    /// The path of the string whose template failed, e.g. `spec.actions[0].args[1]`.
    pub fn field(&self) -> &str {
        match self {
            RenderError::Parse { field, .. }
            | RenderError::UnknownVariable { field, .. }
            | RenderError::UnknownHelper { field, .. }
            | RenderError::InvalidArguments { field, .. }
            | RenderError::Unsupported { field, .. }
            | RenderError::Render { field, .. }
            | RenderError::TooLong { field, .. } => field,
        }
    }

    /// The error as a field problem: the template's path and what is wrong.
    pub fn field_error(&self) -> FieldError {
        let text = self.to_string();
        let reason = text
            .strip_prefix(&prefix(self.field()))
            .unwrap_or(&text)
            .to_string();
        FieldError::new(self.field(), reason)
    }

    /// `InvalidTemplate` for errors found before any alert (the `Ready` condition's
    /// reason), `RenderFailed` for errors while rendering an alert.
    pub fn reason(&self) -> &'static str {
        match self {
            RenderError::Render { .. } => "RenderFailed",
            _ => "InvalidTemplate",
        }
    }
}

/// The configured Handlebars registry: strict, unescaped, with Karo's helpers.
pub struct Renderer {
    registry: Handlebars<'static>,
    /// Every helper a template may call; Karo's own with their arity.
    helpers: BTreeMap<&'static str, Option<HelperSpec>>,
    /// The valid trees compiled so far, shared by the reactions that have them.
    trees: Mutex<SharedTrees>,
}

/// Valid compiled trees by a digest of their field and text, held weakly: a
/// tree lives as long as a reaction uses it.
#[derive(Default)]
struct SharedTrees {
    trees: HashMap<[u8; 16], Weak<Node>>,
    /// Entries after the last sweep of dead ones.
    swept: usize,
}

impl Renderer {
    pub fn new() -> Self {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        let mut helpers: BTreeMap<_, _> = BUILTIN_HELPERS.iter().map(|&n| (n, None)).collect();
        for &spec in KARO_HELPERS {
            registry.register_helper(spec.name, Box::new(FnHelper(spec)));
            helpers.insert(spec.name, Some(spec));
        }
        Renderer {
            registry,
            helpers,
            trees: Mutex::default(),
        }
    }

    /// [`TemplateTree::compile`] and [`TemplateTree::validate`] of `tree`, shared:
    /// every reaction whose tree at `field` has the same text gets the one copy
    /// compiled and validated first (10 000 reactions made from one manifest
    /// hold one compiled action between them).
    pub fn compile_shared(&self, tree: &Value, field: &str) -> Result<TemplateTree, RenderError> {
        let mut digest = Sha256::new();
        digest.update(field.as_bytes());
        digest.update([0]);
        digest.update(tree.to_string().as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest.finalize()[..16]);
        if let Some(root) = self.shared_trees().trees.get(&key).and_then(Weak::upgrade) {
            return Ok(TemplateTree { root });
        }
        let compiled = TemplateTree::compile(tree, field)?;
        compiled.validate(self)?;
        let mut trees = self.shared_trees();
        trees.trees.insert(key, Arc::downgrade(&compiled.root));
        if trees.trees.len() > 2 * trees.swept + 64 {
            trees.trees.retain(|_, t| t.strong_count() > 0);
            trees.swept = trees.trees.len();
        }
        Ok(compiled)
    }

    fn shared_trees(&self) -> std::sync::MutexGuard<'_, SharedTrees> {
        match self.trees.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        }
    }

    /// Renders one template; its output may take `budget` bytes at most, and what
    /// it takes is subtracted.
    fn render_template(
        &self,
        template: &Template,
        context: &Context,
        field: &str,
        multiline: bool,
        budget: &mut Budget,
    ) -> Result<String, RenderError> {
        let mut rc = RenderContext::new(None);
        let mut out = LimitedOutput {
            text: String::new(),
            limit: budget.left,
            exceeded: false,
        };
        let rendered = template.render(&self.registry, context, &mut rc, &mut out);
        if out.exceeded {
            return Err(budget.exceeded(field));
        }
        rendered.map_err(|e| RenderError::Render {
            field: field.to_owned(),
            message: runtime_message(&e, multiline),
        })?;
        budget.left -= out.text.len();
        Ok(out.text)
    }
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("helpers", &self.helpers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// How many bytes of output the templates rendered for one alert may still produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    limit: usize,
    left: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Budget { limit, left: limit }
    }

    /// What one Job's templates may produce together.
    pub fn job() -> Self {
        Self::new(MAX_RENDER_OUTPUT_BYTES)
    }

    fn exceeded(&self, field: &str) -> RenderError {
        RenderError::Render {
            field: field.to_owned(),
            message: format!(
                "the rendered output exceeds the limit of {} bytes for one Job (a template repeats too much, or over too big labels)",
                self.limit
            ),
        }
    }
}

/// Handlebars' output, refused past `limit` bytes: rendering stops there.
struct LimitedOutput {
    text: String,
    limit: usize,
    exceeded: bool,
}

impl handlebars::Output for LimitedOutput {
    fn write(&mut self, seg: &str) -> Result<(), std::io::Error> {
        if self.text.len() + seg.len() > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other("the output limit is reached"));
        }
        self.text.push_str(seg);
        Ok(())
    }
}

/// A JSON tree (an action, a `jobTemplate`, the Job skeleton) whose strings are
/// templates, compiled once and rendered for each alert. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TemplateTree {
    root: Arc<Node>,
}

#[derive(Debug)]
enum Node {
    /// Anything that is not a template: numbers, booleans, nulls, strings without `{{`.
    Value(Value),
    Template(Box<CompiledString>),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

#[derive(Debug)]
struct CompiledString {
    field: String,
    template: Template,
    multiline: bool,
}

impl TemplateTree {
    /// Parses every string of `tree`. `field` prefixes the paths in error messages,
    /// e.g. `spec.actions[0]` or `spec.jobTemplate`. The first bad template is the
    /// error; [`TemplateTree::check`] reports them all.
    pub fn compile(tree: &Value, field: &str) -> Result<Self, RenderError> {
        let mut errors = Vec::new();
        let root = compile_node(tree, field, &mut errors);
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(TemplateTree {
                root: Arc::new(root),
            }),
        }
    }

    /// Every problem of every string in `tree`: parse errors, then static errors.
    pub fn check(tree: &Value, field: &str, renderer: &Renderer) -> Vec<RenderError> {
        let mut errors = Vec::new();
        let root = compile_node(tree, field, &mut errors);
        errors.extend(validate_node(&root, renderer));
        errors
    }

    /// Checks every template against the context all templates get: variables
    /// must exist (keys of labels and annotations excepted, they vary by alert),
    /// helpers must exist. The first problem is the error.
    pub fn validate(&self, renderer: &Renderer) -> Result<(), RenderError> {
        match validate_node(&self.root, renderer).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Like [`TemplateTree::validate`], reporting every string that has a problem.
    pub fn validate_all(&self, renderer: &Renderer) -> Vec<RenderError> {
        validate_node(&self.root, renderer)
    }

    /// The tree with every template string replaced by its output for `ctx`; the
    /// output may be one Job's worth ([`Budget::job`]).
    pub fn render(&self, renderer: &Renderer, ctx: &Value) -> Result<Value, RenderError> {
        self.render_within(renderer, ctx, &mut Budget::job())
    }

    /// [`TemplateTree::render`], the output of every template taken from `budget`.
    pub fn render_within(
        &self,
        renderer: &Renderer,
        ctx: &Value,
        budget: &mut Budget,
    ) -> Result<Value, RenderError> {
        let context = Context::from(ctx.clone());
        render_node(&self.root, renderer, &context, budget)
    }
}

/// Renders one template string.
pub fn render_str(renderer: &Renderer, template: &str, ctx: &Value) -> Result<String, RenderError> {
    if !template.contains("{{") {
        return Ok(template.to_owned());
    }
    let compiled = compile_string(template, "")?;
    renderer.render_template(
        &compiled.template,
        &Context::from(ctx.clone()),
        "",
        compiled.multiline,
        &mut Budget::job(),
    )
}

/// The context every template is rendered with.
pub fn context(
    alert: &Alert,
    notification: &Notification,
    reaction_name: &str,
    reaction_namespace: &str,
    action_name: &str,
) -> Value {
    serde_json::json!({
        "alert": alert.to_json(),
        "labels": alert.labels,
        "annotations": alert.annotations,
        "status": alert.status.as_str(),
        "fingerprint": alert.fingerprint,
        "group": {
            "receiver": notification.receiver,
            "groupKey": notification.group_key,
            "groupLabels": notification.group_labels,
            "commonLabels": notification.common_labels,
            "commonAnnotations": notification.common_annotations,
            "externalURL": notification.external_url,
        },
        "reaction": {"name": reaction_name, "namespace": reaction_namespace},
        "action": {"name": action_name},
        "run": run_context("", "Pending", "", "", serde_json::json!([])),
    })
}

/// The `run` of the template context.
pub fn run_context(name: &str, phase: &str, reason: &str, message: &str, jobs: Value) -> Value {
    serde_json::json!({
        "name": name,
        "phase": phase,
        "reason": reason,
        "message": message,
        "jobs": jobs,
    })
}

/// A valid DNS-1123 label made from `s`: lower-case, every run of characters
/// other than `[a-z0-9]` turned into one `-`, no `-` at either end, at most
/// `max_len` (1 to 63) characters, never empty (`x` when nothing is left).
pub fn dns1123_label(s: &str, max_len: usize) -> String {
    let max_len = max_len.clamp(1, 63);
    let mut out = String::with_capacity(s.len().min(max_len));
    let mut pending_dash = false;
    for c in s.chars().flat_map(char::to_lowercase) {
        if !(c.is_ascii_lowercase() || c.is_ascii_digit()) {
            pending_dash = true;
            continue;
        }
        let needed = if pending_dash && !out.is_empty() {
            2
        } else {
            1
        };
        if out.len() + needed > max_len {
            break;
        }
        if needed == 2 {
            out.push('-');
        }
        out.push(c);
        pending_dash = false;
    }
    if out.is_empty() {
        out.push('x');
    }
    out
}

// ---------------------------------------------------------------------------
// Compiling and rendering trees

fn compile_node(value: &Value, field: &str, errors: &mut Vec<RenderError>) -> Node {
    match value {
        Value::String(s) if s.len() > MAX_TEMPLATE_LENGTH => {
            errors.push(RenderError::TooLong {
                field: field.to_owned(),
                message: format!(
                    "the string is {} bytes long, more than the limit of {MAX_TEMPLATE_LENGTH}",
                    s.len()
                ),
            });
            Node::Value(Value::Null)
        }
        Value::String(s) if s.contains("{{") => match compile_string(s, field) {
            Ok(c) => Node::Template(Box::new(c)),
            Err(e) => {
                errors.push(e);
                Node::Value(Value::Null)
            }
        },
        Value::Array(items) => Node::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| compile_node(v, &format!("{field}[{i}]"), errors))
                .collect(),
        ),
        Value::Object(map) => Node::Object(
            map.iter()
                .map(|(k, v)| {
                    let path = if field.is_empty() {
                        k.clone()
                    } else {
                        format!("{field}.{k}")
                    };
                    (k.clone(), compile_node(v, &path, errors))
                })
                .collect(),
        ),
        other => Node::Value(other.clone()),
    }
}

fn compile_string(source: &str, field: &str) -> Result<CompiledString, RenderError> {
    if let Some(message) = go_template_hint(source) {
        return Err(RenderError::Parse {
            field: field.to_owned(),
            message,
        });
    }
    let template = Template::compile(source).map_err(|e| RenderError::Parse {
        field: field.to_owned(),
        message: parse_message(&e, source),
    })?;
    Ok(CompiledString {
        field: field.to_owned(),
        template,
        multiline: source.contains('\n'),
    })
}

/// Manifests written for the earlier Go Karo use Go's template syntax
/// (`{{ .Labels.instance }}`, `{{ index .Annotations "summary" }}`), which
/// Handlebars would read as something else or refuse: the Handlebars spelling to
/// write instead, for the first such expression.
pub fn go_template_hint(source: &str) -> Option<String> {
    static GO: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let go = GO
        .get_or_init(|| {
            regex::Regex::new(
                r#"\{\{-?\s*(index\s+)?\.([A-Z][A-Za-z]*)((?:\.[A-Za-z0-9_]+)*)(?:\s+"([^"]*)")?\s*-?\}\}"#,
            )
            .ok()
        })
        .as_ref()?;
    let found = go.captures(source)?;
    let root = match found.get(2).map_or("", |m| m.as_str()) {
        "Labels" => "labels",
        "Annotations" => "annotations",
        "Status" => "status",
        "Fingerprint" => "fingerprint",
        "StartsAt" => "alert.startsAt",
        "EndsAt" => "alert.endsAt",
        "GeneratorURL" => "alert.generatorURL",
        "CommonLabels" => "group.commonLabels",
        "CommonAnnotations" => "group.commonAnnotations",
        "GroupLabels" => "group.groupLabels",
        "ExternalURL" => "group.externalURL",
        "Receiver" => "group.receiver",
        other => {
            let mut c = other.chars();
            return Some(format!(
                "`{}` is Go template syntax (the earlier Karo's); Karo's templates are Handlebars: write `{{{{{}}}}}` without the leading dot",
                &found[0],
                c.next().map(|f| f.to_ascii_lowercase().to_string() + c.as_str()).unwrap_or_default()
            ));
        }
    };
    let rest = found.get(3).map_or("", |m| m.as_str());
    let key = found
        .get(4)
        .map(|k| format!(".{}", k.as_str()))
        .unwrap_or_default();
    Some(format!(
        "`{}` is Go template syntax (the earlier Karo's); Karo's templates are Handlebars: write `{{{{{root}{rest}{key}}}}}`",
        &found[0]
    ))
}

fn render_node(
    node: &Node,
    renderer: &Renderer,
    context: &Context,
    budget: &mut Budget,
) -> Result<Value, RenderError> {
    Ok(match node {
        Node::Value(v) => v.clone(),
        Node::Template(c) => Value::String(renderer.render_template(
            &c.template,
            context,
            &c.field,
            c.multiline,
            budget,
        )?),
        Node::Array(items) => Value::Array(
            items
                .iter()
                .map(|n| render_node(n, renderer, context, budget))
                .collect::<Result<_, _>>()?,
        ),
        Node::Object(entries) => {
            let mut map = Map::new();
            for (k, n) in entries {
                map.insert(k.clone(), render_node(n, renderer, context, budget)?);
            }
            Value::Object(map)
        }
    })
}

fn validate_node(node: &Node, renderer: &Renderer) -> Vec<RenderError> {
    let mut errors = Vec::new();
    collect_validation_errors(node, renderer, &mut errors);
    errors
}

fn collect_validation_errors(node: &Node, renderer: &Renderer, errors: &mut Vec<RenderError>) {
    match node {
        Node::Value(_) => {}
        Node::Template(c) => {
            let mut v = Validator::new(&renderer.helpers, &c.field);
            if let Err(e) = v.template(&c.template) {
                errors.push(e);
            }
        }
        Node::Array(items) => items
            .iter()
            .for_each(|n| collect_validation_errors(n, renderer, errors)),
        Node::Object(entries) => entries
            .iter()
            .for_each(|(_, n)| collect_validation_errors(n, renderer, errors)),
    }
}

/// A one-line parse error. The crate's own message spans several lines and, for a
/// template that simply stops too early, lists every rule the parser expected.
fn parse_message(e: &handlebars::TemplateError, source: &str) -> String {
    let reason = e.reason().to_string();
    let Some((line, col)) = e.pos() else {
        return reason;
    };
    let last_line = source.split('\n').count();
    let end_col = source.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    if line == last_line && col >= end_col {
        format!("line {line}, column {col}: the template ends inside an unclosed `{{{{` tag or `{{{{#block}}}}`")
    } else {
        format!("line {line}, column {col}: {reason}")
    }
}

fn runtime_message(e: &HbError, multiline: bool) -> String {
    let mut message = match e.reason() {
        RenderErrorReason::MissingVariable(Some(path)) => {
            format!("variable `{path}` does not exist (use `default` to allow it to be missing)")
        }
        RenderErrorReason::MissingVariable(None) => {
            "a variable used does not exist (use `default` to allow it to be missing)".to_owned()
        }
        RenderErrorReason::HelperNotFound(name) => format!("unknown helper `{name}`"),
        other => other.to_string(),
    };
    if multiline {
        if let (Some(line), Some(col)) = (e.line_no, e.column_no) {
            let _ = write!(message, " (line {line}, column {col})");
        }
    }
    message
}

// ---------------------------------------------------------------------------
// Static validation
