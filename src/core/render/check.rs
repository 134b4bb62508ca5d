//! The static check of a template: its syntax tree walked as Handlebars would
//! evaluate it, so that unknown variables and helpers and wrong arities are found
//! before any alert arrives.

use std::collections::BTreeMap;

use handlebars::template::{BlockParam, HelperTemplate, Parameter, TemplateElement};
use handlebars::{Path, PathSeg, Template};

use super::helpers::HelperSpec;
use super::*;

/// What is known about a value of the template context.
#[derive(Clone, Copy, Debug)]
pub(super) enum Shape {
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

pub(super) const CONTEXT_SHAPE: &[(&str, Shape)] = &[
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
    ("run", Shape::Object(RUN_SHAPE)),
];

/// `run`: the Run of the occurrence. Its outcome is known to `onSuccess` and
/// `onFailure` only; the Jobs of `actions` see it `Pending`.
const RUN_SHAPE: &[(&str, Shape)] = &[
    ("name", Shape::Str),
    ("phase", Shape::Str),
    ("reason", Shape::Str),
    ("message", Shape::Str),
    ("jobs", Shape::Any),
];

/// The context value of one block level: the root, or the inside of `#each`/`#with`.
struct Scope {
    shape: Shape,
    block_params: Vec<(String, Shape)>,
}

/// Walks a template's syntax tree as Handlebars would evaluate it, tracking what
/// the current context is, so that typos are found before any alert arrives.
pub(super) struct Validator<'a> {
    helpers: &'a BTreeMap<&'static str, Option<HelperSpec>>,
    field: &'a str,
    scopes: Vec<Scope>,
}

impl<'a> Validator<'a> {
    pub(super) fn new(
        helpers: &'a BTreeMap<&'static str, Option<HelperSpec>>,
        field: &'a str,
    ) -> Self {
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

    pub(super) fn template(&mut self, template: &Template) -> Result<(), RenderError> {
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
            Some(Some(spec)) => match spec.arity_error(args) {
                Some(message) => Err(RenderError::InvalidArguments {
                    field: self.field.to_owned(),
                    message,
                }),
                None => Ok(()),
            },
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
