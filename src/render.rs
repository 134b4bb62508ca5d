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
//! Handlebars runs in strict mode (a missing variable is an error;
//! `{{default labels.team "none"}}` tolerates absence) with no HTML escaping.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use handlebars::template::{BlockParam, HelperTemplate, Parameter, TemplateElement};
use handlebars::{
    Context, Handlebars, Helper, HelperDef, Path, PathAndJson, PathSeg, RenderContext,
    RenderErrorReason, Renderable, ScopedJson, StringOutput, Template,
};
use serde_json::{Map, Value};

use crate::alert::{Alert, Notification};

type HbError = handlebars::RenderError;

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
            | RenderError::Render { field, .. } => field,
        }
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

/// Helpers that the `handlebars` crate registers itself.
const BUILTIN_HELPERS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte",
    "and", "or", "not", "len",
];

type HelperFn = fn(&'static str, &[PathAndJson<'_>]) -> Result<Value, HbError>;

/// One of Karo's helpers, with the number of arguments it takes so that a wrong
/// call is found by the static check rather than by the first alert.
#[derive(Clone, Copy)]
struct HelperSpec {
    name: &'static str,
    f: HelperFn,
    min: usize,
    max: usize,
    usage: &'static str,
}

impl HelperSpec {
    fn check_arity(&self, got: usize) -> Result<(), String> {
        if (self.min..=self.max).contains(&got) {
            Ok(())
        } else {
            Err(format!(
                "helper `{}` takes {}, got {got}",
                self.name, self.usage
            ))
        }
    }
}

const fn spec(
    name: &'static str,
    f: HelperFn,
    min: usize,
    max: usize,
    usage: &'static str,
) -> HelperSpec {
    HelperSpec {
        name,
        f,
        min,
        max,
        usage,
    }
}

/// Karo's helpers. None of the crate's built-ins covers these.
const KARO_HELPERS: &[HelperSpec] = &[
    spec(
        "default",
        helper_default,
        2,
        2,
        "2 arguments (value, fallback)",
    ),
    spec("lower", helper_lower, 1, 1, "1 argument"),
    spec("upper", helper_upper, 1, 1, "1 argument"),
    spec("trunc", helper_trunc, 2, 2, "2 arguments (string, length)"),
    spec(
        "replace",
        helper_replace,
        3,
        3,
        "3 arguments (string, old, new)",
    ),
    spec("json", helper_json, 1, 1, "1 argument"),
    spec("quote", helper_quote, 1, 1, "1 argument"),
    spec("shellQuote", helper_shell_quote, 1, 1, "1 argument"),
    spec(
        "dns1123",
        helper_dns1123,
        1,
        2,
        "1 or 2 arguments (string, max length)",
    ),
    spec("now", helper_now, 0, 0, "no arguments"),
];

/// The configured Handlebars registry: strict, unescaped, with Karo's helpers.
pub struct Renderer {
    registry: Handlebars<'static>,
    /// Every helper a template may call; Karo's own with their arity.
    helpers: BTreeMap<&'static str, Option<HelperSpec>>,
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
        Renderer { registry, helpers }
    }

    fn render_template(
        &self,
        template: &Template,
        context: &Context,
        field: &str,
        multiline: bool,
    ) -> Result<String, RenderError> {
        let mut rc = RenderContext::new(None);
        let mut out = StringOutput::new();
        template
            .render(&self.registry, context, &mut rc, &mut out)
            .map_err(|e| RenderError::Render {
                field: field.to_owned(),
                message: runtime_message(&e, multiline),
            })?;
        out.into_string().map_err(|e| RenderError::Render {
            field: field.to_owned(),
            message: e.to_string(),
        })
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

    /// The tree with every template string replaced by its output for `ctx`.
    pub fn render(&self, renderer: &Renderer, ctx: &Value) -> Result<Value, RenderError> {
        let context = Context::from(ctx.clone());
        render_node(&self.root, renderer, &context)
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

fn render_node(node: &Node, renderer: &Renderer, context: &Context) -> Result<Value, RenderError> {
    Ok(match node {
        Node::Value(v) => v.clone(),
        Node::Template(c) => {
            Value::String(renderer.render_template(&c.template, context, &c.field, c.multiline)?)
        }
        Node::Array(items) => Value::Array(
            items
                .iter()
                .map(|n| render_node(n, renderer, context))
                .collect::<Result<_, _>>()?,
        ),
        Node::Object(entries) => {
            let mut map = Map::new();
            for (k, n) in entries {
                map.insert(k.clone(), render_node(n, renderer, context)?);
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

/// What is known about a value of the template context.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// Fixed keys.
    Object(&'static [(&'static str, Shape)]),
    /// Any keys, string values (labels, annotations).
    Map,
    Str,
    /// Nothing known (inside `#each` over an object, results of `lookup`...).
    Any,
}

const ALERT_SHAPE: &[(&str, Shape)] = &[
    ("status", Shape::Str),
    ("labels", Shape::Map),
    ("annotations", Shape::Map),
    ("startsAt", Shape::Str),
    ("endsAt", Shape::Str),
    ("generatorURL", Shape::Str),
    ("fingerprint", Shape::Str),
];

const GROUP_SHAPE: &[(&str, Shape)] = &[
    ("receiver", Shape::Str),
    ("groupKey", Shape::Str),
    ("groupLabels", Shape::Map),
    ("commonLabels", Shape::Map),
    ("commonAnnotations", Shape::Map),
    ("externalURL", Shape::Str),
];

const CONTEXT_SHAPE: &[(&str, Shape)] = &[
    ("alert", Shape::Object(ALERT_SHAPE)),
    ("labels", Shape::Map),
    ("annotations", Shape::Map),
    ("status", Shape::Str),
    ("fingerprint", Shape::Str),
    ("group", Shape::Object(GROUP_SHAPE)),
    (
        "reaction",
        Shape::Object(&[("name", Shape::Str), ("namespace", Shape::Str)]),
    ),
    ("action", Shape::Object(&[("name", Shape::Str)])),
];

/// The context value of one block level: the root, or the inside of `#each`/`#with`.
struct Scope {
    shape: Shape,
    block_params: Vec<(String, Shape)>,
}

/// Walks a template's syntax tree as Handlebars would evaluate it, tracking what
/// the current context is, so that typos are found before any alert arrives.
struct Validator<'a> {
    helpers: &'a BTreeMap<&'static str, Option<HelperSpec>>,
    field: &'a str,
    scopes: Vec<Scope>,
}

impl<'a> Validator<'a> {
    fn new(helpers: &'a BTreeMap<&'static str, Option<HelperSpec>>, field: &'a str) -> Self {
        Validator {
            helpers,
            field,
            scopes: vec![Scope {
                shape: Shape::Object(CONTEXT_SHAPE),
                block_params: Vec::new(),
            }],
        }
    }

    fn unknown_variable(&self, name: &str) -> RenderError {
        RenderError::UnknownVariable {
            field: self.field.to_owned(),
            name: name.to_owned(),
        }
    }

    fn unsupported(&self, what: &'static str) -> RenderError {
        RenderError::Unsupported {
            field: self.field.to_owned(),
            what,
        }
    }

    fn template(&mut self, template: &Template) -> Result<(), RenderError> {
        template.elements.iter().try_for_each(|e| self.element(e))
    }

    fn element(&mut self, element: &TemplateElement) -> Result<(), RenderError> {
        match element {
            TemplateElement::RawString(_) | TemplateElement::Comment(_) => Ok(()),
            TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                self.expression(ht).map(|_| ())
            }
            TemplateElement::HelperBlock(ht) => self.block(ht),
            TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => {
                Err(self.unsupported("partials"))
            }
            _ => Err(self.unsupported("decorators")),
        }
    }

    /// `{{name params...}}`: a variable or a helper call. Returns the shape of its value.
    fn expression(&mut self, ht: &HelperTemplate) -> Result<Shape, RenderError> {
        let name_only = ht.params.is_empty() && ht.hash.is_empty();
        match &ht.name {
            // Handlebars tries a helper of that name first, as here.
            Parameter::Path(path) if name_only => match helper_name(path) {
                Some(name) if self.helpers.contains_key(name) => {
                    self.helper(name, 0).map(|_| Shape::Any)
                }
                _ => self.path(path),
            },
            Parameter::Subexpression(sub) => {
                self.expression_element(sub.as_element())?;
                self.arguments(ht)
            }
            Parameter::Literal(_) if name_only => Ok(Shape::Any),
            name => {
                let name = name.as_name().unwrap_or_default();
                self.helper(name, ht.params.len())?;
                self.arguments(ht)
            }
        }
    }

    fn expression_element(&mut self, element: &TemplateElement) -> Result<Shape, RenderError> {
        match element {
            TemplateElement::Expression(ht) | TemplateElement::HtmlExpression(ht) => {
                self.expression(ht)
            }
            _ => Err(self.unsupported("subexpressions of this kind")),
        }
    }

    /// The helper must exist and, if it is Karo's, get as many arguments as it takes.
    fn helper(&self, name: &str, args: usize) -> Result<(), RenderError> {
        match self.helpers.get(name) {
            None => Err(RenderError::UnknownHelper {
                field: self.field.to_owned(),
                name: name.to_owned(),
            }),
            Some(Some(spec)) => {
                spec.check_arity(args)
                    .map_err(|message| RenderError::InvalidArguments {
                        field: self.field.to_owned(),
                        message,
                    })
            }
            Some(None) => Ok(()),
        }
    }

    fn arguments(&mut self, ht: &HelperTemplate) -> Result<Shape, RenderError> {
        for p in ht.params.iter().chain(ht.hash.values()) {
            self.parameter(p)?;
        }
        Ok(Shape::Any)
    }

    fn parameter(&mut self, p: &Parameter) -> Result<Shape, RenderError> {
        match p {
            Parameter::Path(path) => self.path(path),
            Parameter::Subexpression(sub) => self.expression_element(sub.as_element()),
            Parameter::Name(name) => self.named_path(&[name.as_str()], name),
            _ => Ok(Shape::Any),
        }
    }

    /// `{{#helper params}}...{{else}}...{{/helper}}`.
    fn block(&mut self, ht: &HelperTemplate) -> Result<(), RenderError> {
        let name = ht.name.as_name().unwrap_or_default().to_owned();
        self.helper(&name, ht.params.len())?;
        let mut shapes = Vec::with_capacity(ht.params.len());
        for p in &ht.params {
            shapes.push(self.parameter(p)?);
        }
        for p in ht.hash.values() {
            self.parameter(p)?;
        }
        let param_shape = shapes.first().copied().unwrap_or(Shape::Any);

        // `#each` and `#with` change the context (and `../` counts them); the
        // other helpers render their block in the current one.
        let inner = match name.as_str() {
            "each" => {
                let item = match param_shape {
                    Shape::Map => Shape::Str,
                    _ => Shape::Any,
                };
                let names = block_param_names(ht.block_param.as_ref());
                let mut block_params = Vec::new();
                if let Some(first) = names.first() {
                    block_params.push((first.clone(), item));
                }
                if let Some(second) = names.get(1) {
                    block_params.push((second.clone(), Shape::Str));
                }
                Some(Scope {
                    shape: item,
                    block_params,
                })
            }
            "with" => Some(Scope {
                shape: param_shape,
                block_params: block_param_names(ht.block_param.as_ref())
                    .into_iter()
                    .take(1)
                    .map(|n| (n, param_shape))
                    .collect(),
            }),
            _ => None,
        };
        if let Some(template) = &ht.template {
            if name == "raw" {
                // Its content is text, not template.
            } else if let Some(scope) = inner {
                self.scopes.push(scope);
                let result = self.template(template);
                self.scopes.pop();
                result?;
            } else {
                self.template(template)?;
            }
        }
        if let Some(inverse) = &ht.inverse {
            self.template(inverse)?;
        }
        Ok(())
    }

    fn path(&self, path: &Path) -> Result<Shape, RenderError> {
        match path {
            Path::Local((_, name, raw)) => {
                if name == "root" {
                    Ok(Shape::Object(CONTEXT_SHAPE))
                } else if self.scopes.len() > 1 {
                    // `@index`, `@key`, `@first`, `@last` inside `#each`.
                    Ok(Shape::Any)
                } else {
                    Err(self.unknown_variable(raw))
                }
            }
            Path::Relative((segs, raw)) => {
                let mut ruled = 0;
                let mut named = Vec::with_capacity(segs.len());
                for seg in segs {
                    match seg {
                        PathSeg::Named(n) => named.push(n.as_str()),
                        // `@root` or `../` in the middle of a path: beyond what
                        // this check models, so left to render time.
                        _ if !named.is_empty() => return Ok(Shape::Any),
                        _ => ruled += 1,
                    }
                }
                if ruled == 0 {
                    return self.named_path(&named, raw);
                }
                // Only `@root` or a run of `../` precede the names.
                let base = if raw.trim_start().starts_with("@root") {
                    Shape::Object(CONTEXT_SHAPE)
                } else {
                    let depth = self.scopes.len() - 1;
                    if ruled > depth {
                        return Err(self.unknown_variable(raw));
                    }
                    self.scopes[depth - ruled].shape
                };
                self.walk(base, &named, raw)
            }
        }
    }

    /// A path of plain names: a block parameter, or relative to the current context.
    fn named_path(&self, named: &[&str], raw: &str) -> Result<Shape, RenderError> {
        if let Some((first, rest)) = named.split_first() {
            let param = self
                .scopes
                .iter()
                .rev()
                .flat_map(|s| s.block_params.iter())
                .find(|(n, _)| n == first);
            if let Some((_, shape)) = param {
                return self.walk(*shape, rest, raw);
            }
        }
        let current = self.scopes.last().map_or(Shape::Any, |s| s.shape);
        self.walk(current, named, raw)
    }

    fn walk(&self, mut shape: Shape, names: &[&str], raw: &str) -> Result<Shape, RenderError> {
        for name in names {
            shape = match shape {
                Shape::Object(fields) => fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, s)| *s)
                    .ok_or_else(|| self.unknown_variable(raw))?,
                Shape::Map => Shape::Str,
                Shape::Str => return Err(self.unknown_variable(raw)),
                Shape::Any => Shape::Any,
            };
        }
        Ok(shape)
    }
}

/// The name of a helper called without arguments (`{{now}}`), if the path could be one.
fn helper_name(path: &Path) -> Option<&str> {
    match path {
        Path::Relative((segs, raw)) => match segs.as_slice() {
            [PathSeg::Named(n)] if n == raw => Some(n.as_str()),
            _ => None,
        },
        Path::Local(_) => None,
    }
}

fn block_param_names(bp: Option<&BlockParam>) -> Vec<String> {
    let name = |p: &Parameter| p.as_name().unwrap_or_default().to_owned();
    match bp {
        Some(BlockParam::Single(p)) => vec![name(p)],
        Some(BlockParam::Pair((a, b))) => vec![name(a), name(b)],
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------------------
// Helpers

/// A helper that computes a value from its arguments. Returning a value rather
/// than writing text lets helpers nest: `{{upper (default labels.team "ops")}}`.
struct FnHelper(HelperSpec);

impl HelperDef for FnHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, HbError> {
        let spec = &self.0;
        spec.check_arity(h.params().len()).map_err(helper_error)?;
        (spec.f)(spec.name, h.params()).map(ScopedJson::Derived)
    }
}

fn helper_error(message: String) -> HbError {
    RenderErrorReason::Other(message).into()
}

/// The `i`th argument. Arity is checked before a helper runs; this keeps the
/// helpers free of indexing that could panic.
fn arg<'a, 'rc>(
    name: &'static str,
    params: &'a [PathAndJson<'rc>],
    i: usize,
) -> Result<&'a PathAndJson<'rc>, HbError> {
    params
        .get(i)
        .ok_or_else(|| RenderErrorReason::ParamNotFoundForIndex(name, i).into())
}

/// The argument's value; a missing variable is an error, as strict mode wants.
fn present<'a>(p: &'a PathAndJson<'_>) -> Result<&'a Value, HbError> {
    if p.is_value_missing() {
        Err(HbError::strict_error(p.relative_path()))
    } else {
        Ok(p.value())
    }
}

/// A value as text: strings as they are, `null` as nothing, the rest as JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn text_arg(p: &PathAndJson<'_>) -> Result<String, HbError> {
    present(p).map(text)
}

fn int_arg(name: &str, p: &PathAndJson<'_>) -> Result<i64, HbError> {
    let v = present(p)?;
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .ok_or_else(|| helper_error(format!("helper `{name}` needs an integer, got {v}")))
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// `{{default value fallback}}`: `value` unless it is missing, null or empty.
fn helper_default(name: &'static str, params: &[PathAndJson<'_>]) -> Result<Value, HbError> {
    let value = arg(name, params, 0)?;
    if !value.is_value_missing() && !is_empty(value.value()) {
        return Ok(value.value().clone());
    }
    present(arg(name, params, 1)?).cloned()
}

fn helper_lower(name: &'static str, params: &[PathAndJson<'_>]) -> Result<Value, HbError> {
    Ok(Value::String(
        text_arg(arg(name, params, 0)?)?.to_lowercase(),
    ))
}

fn helper_upper(name: &'static str, params: &[PathAndJson<'_>]) -> Result<Value, HbError> {
    Ok(Value::String(
        text_arg(arg(name, params, 0)?)?.to_uppercase(),
    ))
}

/// `{{trunc s n}}`: the first `n` characters; a negative `n` keeps the last `-n`.
fn helper_trunc(name: &'static str, params: &[PathAndJson<'_>]) -> Result<Value, HbError> {
    let s = text_arg(arg(name, params, 0)?)?;
    let n = int_arg(name, arg(name, params, 1)?)?;
    let len = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX);
    let out = if n >= 0 {
        s.chars().take(len).collect()
    } else {
        let count = s.chars().count();
        s.chars().skip(count.saturating_sub(len)).collect()
    };
    Ok(Value::String(out))
}

fn helper_replace(name: &'static str, params: &[PathAndJson<'_>]) -> Result<Value, HbError> {
    let s = text_arg(arg(name, params, 0)?)?;
    let from = text_arg(arg(name, params, 1)?)?;
    let to = text_arg(arg(name, params, 2)?)?;
    Ok(Value::String(s.replace(&from, &to)))
}

/// `{{json v}}`: `v` as compact JSON.
fn helper_json(name: &'static str, params: &[PathAndJson<'_>]) -> Result<Value, HbError> {
    Ok(Value::String(present(arg(name, params, 0)?)?.to_string()))
}

/// `{{quote s}}`: `s` as a double-quoted JSON string.
fn helper_quote(name: &'static str, params: &[PathAndJson<'_>]) -> Result<Value, HbError> {
    Ok(Value::String(
        Value::String(text_arg(arg(name, params, 0)?)?).to_string(),
    ))
}

/// `{{shellQuote s}}`: `s` as one word for a POSIX shell.
fn helper_shell_quote(name: &'static str, params: &[PathAndJson<'_>]) -> Result<Value, HbError> {
    let s = text_arg(arg(name, params, 0)?)?;
    Ok(Value::String(format!("'{}'", s.replace('\'', r"'\''"))))
}

/// `{{dns1123 s}}` or `{{dns1123 s max}}`: see [`dns1123_label`].
fn helper_dns1123(name: &'static str, params: &[PathAndJson<'_>]) -> Result<Value, HbError> {
    let s = text_arg(arg(name, params, 0)?)?;
    let max = match params.get(1) {
        Some(p) => usize::try_from(int_arg(name, p)?).unwrap_or(0),
        None => 63,
    };
    Ok(Value::String(dns1123_label(&s, max)))
}

/// `{{now}}`: the current time, RFC 3339 in UTC.
fn helper_now(_: &'static str, _: &[PathAndJson<'_>]) -> Result<Value, HbError> {
    Ok(Value::String(jiff::Timestamp::now().to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::alert::parse_notification;

    fn renderer() -> Renderer {
        Renderer::new()
    }

    fn sample_context() -> Value {
        let body = br#"{
          "receiver": "karo", "groupKey": "{}:{alertname=\"HighCPU\"}", "externalURL": "http://am:9093",
          "groupLabels": {"alertname": "HighCPU"}, "commonLabels": {"alertname": "HighCPU"},
          "commonAnnotations": {"summary": "CPU high"},
          "alerts": [{
            "status": "firing",
            "labels": {"alertname": "HighCPU", "instance": "node-1:9100", "severity": "critical", "empty": ""},
            "annotations": {"summary": "CPU high", "description": "line 1\nline 2"},
            "startsAt": "2024-05-06T07:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom/graph", "fingerprint": "0123456789abcdef"
          }]
        }"#;
        let received = jiff::Timestamp::UNIX_EPOCH;
        let n = parse_notification(body, received).unwrap();
        context(&n.alerts[0], &n, "cpu-reaction", "ops", "restart")
    }

    fn render(template: &str) -> Result<String, RenderError> {
        render_str(&renderer(), template, &sample_context())
    }

    fn ok(template: &str) -> String {
        render(template).unwrap_or_else(|e| panic!("{template}: {e}"))
    }

    #[test]
    fn context_has_the_documented_fields() {
        let ctx = sample_context();
        assert_eq!(ctx["alert"]["status"], "firing");
        assert_eq!(ctx["alert"]["labels"]["severity"], "critical");
        assert_eq!(ctx["alert"]["generatorURL"], "http://prom/graph");
        assert_eq!(ctx["labels"]["instance"], "node-1:9100");
        assert_eq!(ctx["annotations"]["summary"], "CPU high");
        assert_eq!(ctx["status"], "firing");
        assert_eq!(ctx["fingerprint"], "0123456789abcdef");
        assert_eq!(ctx["group"]["receiver"], "karo");
        assert_eq!(ctx["group"]["externalURL"], "http://am:9093");
        assert_eq!(ctx["group"]["commonAnnotations"]["summary"], "CPU high");
        assert_eq!(
            ctx["reaction"],
            json!({"name": "cpu-reaction", "namespace": "ops"})
        );
        assert_eq!(ctx["action"], json!({"name": "restart"}));
    }

    /// The static check's model of the context must be the context.
    #[test]
    fn context_shape_matches_context() {
        fn same(value: &Value, shape: Shape, path: &str) {
            match (shape, value) {
                (Shape::Object(fields), Value::Object(map)) => {
                    let keys: Vec<_> = map.keys().map(String::as_str).collect();
                    let mut expected: Vec<_> = fields.iter().map(|(k, _)| *k).collect();
                    expected.sort_unstable();
                    let mut keys = keys;
                    keys.sort_unstable();
                    assert_eq!(keys, expected, "keys of {path}");
                    for (k, s) in fields {
                        same(&map[*k], *s, &format!("{path}.{k}"));
                    }
                }
                (Shape::Map, Value::Object(map)) => {
                    assert!(map.values().all(Value::is_string), "{path}")
                }
                (Shape::Str, Value::String(_)) => {}
                (s, v) => panic!("{path}: {s:?} vs {v}"),
            }
        }
        same(&sample_context(), Shape::Object(CONTEXT_SHAPE), "");
    }

    #[test]
    fn plain_variables() {
        assert_eq!(ok("{{labels.severity}}"), "critical");
        assert_eq!(ok("{{alert.labels.instance}}"), "node-1:9100");
        assert_eq!(ok("{{status}}/{{alert.status}}"), "firing/firing");
        assert_eq!(
            ok("{{group.receiver}} {{reaction.namespace}}/{{reaction.name}} {{action.name}}"),
            "karo ops/cpu-reaction restart"
        );
        assert_eq!(ok("{{annotations.description}}"), "line 1\nline 2");
        assert_eq!(ok("no template"), "no template");
        assert_eq!(
            ok("{{#each labels}}{{@key}}={{this}};{{/each}}"),
            "alertname=HighCPU;empty=;instance=node-1:9100;severity=critical;"
        );
    }

    #[test]
    fn no_html_escaping() {
        let ctx = json!({"labels": {"x": "<a href=\"x\">&'</a>"}});
        assert_eq!(
            render_str(&renderer(), "{{labels.x}} {{{labels.x}}}", &ctx).unwrap(),
            "<a href=\"x\">&'</a> <a href=\"x\">&'</a>"
        );
    }

    #[test]
    fn helper_default_tolerates_absence() {
        assert_eq!(ok(r#"{{default labels.team "none"}}"#), "none");
        assert_eq!(ok(r#"{{default labels.severity "none"}}"#), "critical");
        assert_eq!(ok(r#"{{default labels.empty "none"}}"#), "none");
        assert_eq!(ok(r#"{{default labels.team labels.severity}}"#), "critical");
        assert_eq!(ok(r#"{{upper (default labels.team "ops")}}"#), "OPS");
        assert_eq!(
            ok(r#"{{default labels.team (default annotations.team "nobody")}}"#),
            "nobody"
        );
        // Both missing: nothing to fall back on.
        let e = render("{{default labels.team labels.owner}}").unwrap_err();
        assert!(e.to_string().contains("labels.owner"), "{e}");
        let e = render("{{default labels.team}}").unwrap_err();
        assert!(e.to_string().contains("takes 2 arguments"), "{e}");
    }

    #[test]
    fn helpers_case_trunc_replace() {
        assert_eq!(ok("{{lower \"MiXeD Ünï\"}}"), "mixed ünï");
        assert_eq!(ok("{{upper labels.severity}}"), "CRITICAL");
        assert_eq!(ok("{{trunc labels.instance 4}}"), "node");
        assert_eq!(ok("{{trunc labels.instance 100}}"), "node-1:9100");
        assert_eq!(ok("{{trunc labels.instance -4}}"), "9100");
        assert_eq!(ok("{{trunc \"héllo\" 2}}"), "hé");
        assert_eq!(ok("{{trunc labels.instance 0}}"), "");
        assert_eq!(ok(r#"{{replace labels.instance ":" "_"}}"#), "node-1_9100");
        assert_eq!(ok(r#"{{replace "a.b.c" "." ""}}"#), "abc");
        let e = render("{{trunc labels.instance \"x\"}}").unwrap_err();
        assert!(e.to_string().contains("needs an integer"), "{e}");
    }

    #[test]
    fn helpers_json_quote_shell_quote() {
        assert_eq!(ok("{{json labels.severity}}"), r#""critical""#);
        assert_eq!(
            ok("{{json group.groupLabels}}"),
            r#"{"alertname":"HighCPU"}"#
        );
        let alert: Value = serde_json::from_str(&ok("{{json alert}}")).unwrap();
        assert_eq!(alert, sample_context()["alert"]);
        assert_eq!(ok("{{json 3}}"), "3");
        assert_eq!(
            ok("{{quote annotations.description}}"),
            r#""line 1\nline 2""#
        );
        assert_eq!(ok(r#"{{quote "say \"hi\""}}"#), r#""say \"hi\"""#);
        assert_eq!(ok("{{shellQuote labels.severity}}"), "'critical'");
        let ctx = json!({"labels": {"x": "it's $(id) `x`"}});
        assert_eq!(
            render_str(&renderer(), "{{shellQuote labels.x}}", &ctx).unwrap(),
            r"'it'\''s $(id) `x`'"
        );
    }

    #[test]
    fn helper_dns1123() {
        assert_eq!(ok("{{dns1123 labels.instance}}"), "node-1-9100");
        assert_eq!(ok("{{dns1123 \"--Hello__World..--\"}}"), "hello-world");
        assert_eq!(ok("{{dns1123 \"!!!\"}}"), "x");
        assert_eq!(ok("{{dns1123 \"\"}}"), "x");
        assert_eq!(ok("{{dns1123 \"abc-def\" 4}}"), "abc");
        let long = "a".repeat(100);
        assert_eq!(
            render_str(&renderer(), "{{dns1123 s}}", &json!({"s": long}))
                .unwrap()
                .len(),
            63
        );
    }

    #[test]
    fn dns1123_label_is_always_valid() {
        let re = regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").unwrap();
        let inputs = [
            "",
            "-",
            "A",
            "Ab-Cd",
            "a--b",
            "--a--",
            "ÄÖÜ",
            "x.y/z",
            "İstanbul",
            "a b c",
            "0123456789012345678901234567890123456789012345678901234567890-23456",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-b",
        ];
        for s in inputs {
            for max in [1, 2, 5, 63, 64, 1000] {
                let out = dns1123_label(s, max);
                assert!(re.is_match(&out), "{s:?} max {max} -> {out:?}");
                assert!(out.len() <= max.clamp(1, 63), "{s:?} max {max} -> {out:?}");
            }
        }
        assert_eq!(
            dns1123_label(
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-b",
                63
            )
            .len(),
            62
        );
    }

    #[test]
    fn helper_now_is_rfc3339_utc() {
        let s = ok("{{now}}");
        assert!(s.ends_with('Z'), "{s}");
        s.parse::<jiff::Timestamp>().unwrap();
    }

    #[test]
    fn builtin_helpers_still_work() {
        assert_eq!(
            ok(r#"{{#if (eq labels.severity "critical")}}page{{else}}mail{{/if}}"#),
            "page"
        );
        assert_eq!(ok("{{#if labels.team}}t{{else}}no team{{/if}}"), "no team");
        assert_eq!(ok(r#"{{lookup labels "severity"}}"#), "critical");
        assert_eq!(
            ok("{{#with alert}}{{labels.severity}}{{/with}}"),
            "critical"
        );
    }

    #[test]
    fn strict_mode_missing_variable_errors_with_field_path() {
        let tree = json!({"args": ["echo", "{{labels.team}}"]});
        let t = TemplateTree::compile(&tree, "spec.actions[0]").unwrap();
        t.validate(&renderer()).unwrap();
        let e = t.render(&renderer(), &sample_context()).unwrap_err();
        assert_eq!(e.field(), "spec.actions[0].args[1]");
        assert_eq!(e.reason(), "RenderFailed");
        assert_eq!(
            e.to_string(),
            "spec.actions[0].args[1]: variable `labels.team` does not exist (use `default` to allow it to be missing)"
        );
        let e = render("{{lower labels.team}}").unwrap_err();
        assert!(
            e.to_string().contains("`labels.team` does not exist"),
            "{e}"
        );
    }

    #[test]
    fn unclosed_block_is_a_parse_error_at_compile() {
        let tree = json!({"spec": {"template": {"spec": {"containers": [{"command": ["sh", "-c", "{{#if labels.x}}y"]}]}}}});
        let e = TemplateTree::compile(&tree, "spec.jobTemplate").unwrap_err();
        assert_eq!(e.reason(), "InvalidTemplate");
        assert_eq!(
            e.field(),
            "spec.jobTemplate.spec.template.spec.containers[0].command[2]"
        );
        assert!(matches!(e, RenderError::Parse { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with(
                "spec.jobTemplate.spec.template.spec.containers[0].command[2]: invalid template: "
            ),
            "{e}"
        );
        for bad in ["{{labels.x", "{{#if x}}a{{/each}}", "{{}}"] {
            let e = TemplateTree::compile(&json!([bad]), "f").unwrap_err();
            assert!(matches!(e, RenderError::Parse { .. }), "{bad}: {e:?}");
            assert!(!e.to_string().contains('\n'), "{bad}: {e}");
        }
    }

    fn validate(template: &str) -> Result<(), RenderError> {
        TemplateTree::compile(&json!({"s": template}), "spec.actions[0]")?.validate(&renderer())
    }

    #[test]
    fn static_validation_accepts_the_context() {
        let good = [
            "{{labels.anything}}",
            "{{annotations.anything}}",
            "{{alert.labels.x}} {{alert.annotations.y}} {{alert.status}} {{alert.startsAt}} {{alert.endsAt}} {{alert.generatorURL}} {{alert.fingerprint}}",
            "{{status}} {{fingerprint}}",
            "{{group.receiver}} {{group.groupKey}} {{group.groupLabels.a}} {{group.commonLabels.b}} {{group.commonAnnotations.c}} {{group.externalURL}}",
            "{{reaction.name}} {{reaction.namespace}} {{action.name}}",
            "{{labels.[with space]}} {{this.labels.x}} {{./status}} {{@root.alert.status}}",
            r#"{{default labels.team "none"}} {{now}} {{json alert}} {{dns1123 (lower labels.x) 20}}"#,
            "{{#each labels}}{{@key}}={{this}} {{@index}} {{../status}} {{@root.reaction.name}}{{else}}none{{/each}}",
            "{{#each labels as |value name|}}{{name}}={{value}}{{/each}}",
            "{{#each alert}}{{@key}}{{this.whatever}}{{/each}}",
            "{{#with alert}}{{labels.x}} {{status}} {{../action.name}}{{/with}}",
            "{{#with alert as |a|}}{{a.annotations.x}}{{/with}}",
            "{{#with labels}}{{team}}{{/with}}",
            "{{#if labels.x}}{{labels.x}}{{else if annotations.y}}{{annotations.y}}{{else}}-{{/if}}",
            "{{#unless (eq status \"firing\")}}resolved{{/unless}}",
            "{{{{raw}}}}{{not.checked}}{{{{/raw}}}}",
            "{{! a comment }} \\{{escaped}}",
            r#"{{lookup labels "x"}} {{len labels}}"#,
        ];
        for t in good {
            if let Err(e) = validate(t) {
                panic!("{t}: {e}");
            }
        }
    }

    #[test]
    fn static_validation_rejects_mistakes() {
        let cases = [
            ("{{foo}}", "spec.actions[0].s: unknown variable `foo`"),
            (
                "{{alert.nope}}",
                "spec.actions[0].s: unknown variable `alert.nope`",
            ),
            (
                "{{labels.x.y}}",
                "spec.actions[0].s: unknown variable `labels.x.y`",
            ),
            (
                "{{status.x}}",
                "spec.actions[0].s: unknown variable `status.x`",
            ),
            (
                "{{group.labels}}",
                "spec.actions[0].s: unknown variable `group.labels`",
            ),
            (
                "{{reaction.uid}}",
                "spec.actions[0].s: unknown variable `reaction.uid`",
            ),
            (
                "{{Labels.x}}",
                "spec.actions[0].s: unknown variable `Labels.x`",
            ),
            ("{{@index}}", "spec.actions[0].s: unknown variable `@index`"),
            (
                "{{../status}}",
                "spec.actions[0].s: unknown variable `../status`",
            ),
            ("{{lower foo}}", "spec.actions[0].s: unknown variable `foo`"),
            (
                r#"{{default foo "x"}}"#,
                "spec.actions[0].s: unknown variable `foo`",
            ),
            (
                "{{#if foo}}x{{/if}}",
                "spec.actions[0].s: unknown variable `foo`",
            ),
            (
                "{{#if labels.x}}{{else}}{{nope}}{{/if}}",
                "spec.actions[0].s: unknown variable `nope`",
            ),
            (
                "{{#each labels}}{{this.x}}{{/each}}",
                "spec.actions[0].s: unknown variable `this.x`",
            ),
            (
                "{{#with alert}}{{nope}}{{/with}}",
                "spec.actions[0].s: unknown variable `nope`",
            ),
            (
                "{{#each labels}}{{../nope}}{{/each}}",
                "spec.actions[0].s: unknown variable `../nope`",
            ),
            (
                "{{#each labels}}x{{else}}{{@key}}{{/each}}",
                "spec.actions[0].s: unknown variable `@key`",
            ),
            (
                "{{frobnicate labels.x}}",
                "spec.actions[0].s: unknown helper `frobnicate`",
            ),
            (
                "{{upper (frobnicate labels.x)}}",
                "spec.actions[0].s: unknown helper `frobnicate`",
            ),
            (
                "{{#frob}}x{{/frob}}",
                "spec.actions[0].s: unknown helper `frob`",
            ),
            (
                "{{#alert}}{{status}}{{/alert}}",
                "spec.actions[0].s: unknown helper `alert`",
            ),
            (
                "{{lower}}",
                "spec.actions[0].s: helper `lower` takes 1 argument, got 0",
            ),
            (
                "{{trunc labels.x}}",
                "spec.actions[0].s: helper `trunc` takes 2 arguments (string, length), got 1",
            ),
            (
                "{{now 1}}",
                "spec.actions[0].s: helper `now` takes no arguments, got 1",
            ),
            (
                "{{upper (lower)}}",
                "spec.actions[0].s: helper `lower` takes 1 argument, got 0",
            ),
            (
                "{{#if labels.x}}{{default labels.y}}{{/if}}",
                "spec.actions[0].s: helper `default` takes 2 arguments (value, fallback), got 1",
            ),
            (
                "{{> partial}}",
                "spec.actions[0].s: partials are not supported",
            ),
            (
                "{{#> partial}}x{{/partial}}",
                "spec.actions[0].s: partials are not supported",
            ),
        ];
        for (t, expected) in cases {
            let e = validate(t).expect_err(t);
            assert_eq!(e.to_string(), expected, "{t}");
            assert_eq!(e.reason(), "InvalidTemplate");
        }
    }

    #[test]
    fn check_reports_every_problem() {
        let tree = json!({
            "command": ["{{foo}}", "ok {{labels.x}}", "{{#if x}}"],
            "env": [{"name": "A", "value": "{{nope bar}}"}]
        });
        let errors = TemplateTree::check(&tree, "spec.actions[1]", &renderer());
        let fields: Vec<_> = errors.iter().map(RenderError::field).collect();
        assert_eq!(
            fields,
            [
                "spec.actions[1].command[2]",
                "spec.actions[1].command[0]",
                "spec.actions[1].env[0].value",
            ]
        );
        let t = TemplateTree::compile(&json!(["{{a}}", "{{b}}"]), "x").unwrap();
        assert_eq!(t.validate_all(&renderer()).len(), 2);
    }

    fn hostile_values() -> Vec<String> {
        vec![
            "{{annotations.secret}}".to_owned(),
            "{{#each alert}}{{/each}}".to_owned(),
            r#"a "quoted" 'value'"#.to_owned(),
            "x\n  hostPath:\n    path: /".to_owned(),
            "$(id) `id` ; rm -rf /".to_owned(),
            "key: value\n- item\n{\"json\": true}".to_owned(),
            "<script>&amp;</script>".to_owned(),
            "é".repeat(300),
        ]
    }

    #[test]
    fn hostile_label_values_stay_in_their_string() {
        let tree = json!({
            "metadata": {"name": "job-{{dns1123 labels.evil}}", "labels": {"{{labels.evil}}": "k"}},
            "spec": {
                "containers": [{
                    "name": "c",
                    "image": "busybox",
                    "command": ["sh", "-c", "echo {{shellQuote labels.evil}}"],
                    "args": ["{{labels.evil}}", "--flag={{labels.evil}}"],
                    "env": [{"name": "E", "value": "{{labels.evil}}"}],
                    "ports": [{"containerPort": 8080}],
                    "tty": false
                }],
                "volumes": []
            }
        });
        let t = TemplateTree::compile(&tree, "spec.jobTemplate").unwrap();
        t.validate(&renderer()).unwrap();
        for evil in hostile_values() {
            let ctx = json!({
                "labels": {"evil": evil},
                "annotations": {"secret": "SECRET"},
                "alert": {"x": 1},
            });
            let out = t.render(&renderer(), &ctx).unwrap();
            let c = &out["spec"]["containers"][0];
            assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 1);
            assert_eq!(out["spec"]["volumes"], json!([]));
            assert_eq!(c.as_object().unwrap().len(), 7);
            assert_eq!(c["args"], json!([evil, format!("--flag={evil}")]));
            assert_eq!(c["env"], json!([{"name": "E", "value": evil}]));
            assert_eq!(c["ports"], json!([{"containerPort": 8080}]));
            assert_eq!(c["tty"], json!(false));
            let expected = format!("echo '{}'", evil.replace('\'', r"'\''"));
            assert_eq!(c["command"], json!(["sh", "-c", expected]));
            // Keys are not templates.
            assert_eq!(out["metadata"]["labels"], json!({"{{labels.evil}}": "k"}));
            assert_eq!(out["spec"].as_object().unwrap().len(), 2);
            assert!(!out.to_string().contains("SECRET"), "{evil}");
        }
    }

    #[test]
    fn rendered_output_is_not_rendered_again() {
        let ctx = json!({"labels": {"x": "{{labels.y}}", "y": "SECOND"}});
        let t = TemplateTree::compile(
            &json!({"a": "{{labels.x}}", "b": ["{{labels.x}}{{labels.x}}"]}),
            "f",
        )
        .unwrap();
        let out = t.render(&renderer(), &ctx).unwrap();
        assert_eq!(
            out,
            json!({"a": "{{labels.y}}", "b": ["{{labels.y}}{{labels.y}}"]})
        );
        assert_eq!(
            render_str(&renderer(), "{{labels.x}}", &ctx).unwrap(),
            "{{labels.y}}"
        );
    }

    #[test]
    fn non_strings_and_plain_strings_pass_through() {
        let tree = json!({"n": 1, "f": 1.5, "b": true, "z": null, "s": "plain $(x) }}", "a": [[], {}], "{{k}}": "v"});
        let t = TemplateTree::compile(&tree, "").unwrap();
        t.validate(&renderer()).unwrap();
        assert_eq!(t.render(&renderer(), &json!({})).unwrap(), tree);
    }

    #[test]
    fn field_paths_without_prefix() {
        let t = TemplateTree::compile(&json!({"a": {"b": ["x", "{{zz}}"]}}), "").unwrap();
        let e = t.validate(&renderer()).unwrap_err();
        assert_eq!(e.to_string(), "a.b[1]: unknown variable `zz`");
        let e = render_str(&renderer(), "{{zz}}", &json!({})).unwrap_err();
        assert!(
            e.to_string().starts_with("variable `zz` does not exist"),
            "{e}"
        );
        let e = render_str(&renderer(), "{{#if}}", &json!({})).unwrap_err();
        assert!(e.to_string().starts_with("invalid template: "), "{e}");
    }

    #[test]
    fn multiline_runtime_errors_have_a_position() {
        let e = render("#!/bin/sh\necho {{labels.nope}}\n").unwrap_err();
        assert!(e.to_string().contains("(line 2, column 6)"), "{e}");
    }

    #[test]
    fn template_tree_is_shareable() {
        fn assert_shareable<T: Send + Sync + Clone + 'static>() {}
        assert_shareable::<TemplateTree>();
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Renderer>();
    }
}
