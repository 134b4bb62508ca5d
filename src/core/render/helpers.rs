//! Karo's Handlebars helpers, each with its arity so that a wrong call is found
//! by the static check rather than by the first alert.

use handlebars::{
    Context, Handlebars, Helper, HelperDef, PathAndJson, RenderContext, RenderErrorReason,
    ScopedJson,
};
use serde_json::Value;

use super::{dns1123_label, HbError};
use crate::model::crd::limits::MAX_RENDERED_JOB_BYTES;

/// Helpers that the `handlebars` crate registers itself.
pub(super) const BUILTIN_HELPERS: &[&str] = &[
    "if", "unless", "each", "with", "lookup", "raw", "log", "eq", "ne", "gt", "gte", "lt", "lte",
    "and", "or", "not", "len",
];

type HelperFn = fn(&'static str, &[PathAndJson<'_>]) -> Result<Value, HbError>;

/// One of Karo's helpers, with the number of arguments it takes so that a wrong
/// call is found by the static check rather than by the first alert.
#[derive(Clone, Copy)]
pub(super) struct HelperSpec {
    pub(super) name: &'static str,
    f: HelperFn,
    min: usize,
    max: usize,
    /// The arguments' names, for messages.
    args: &'static str,
}

impl HelperSpec {
    /// What is wrong with a call of `got` arguments, if anything.
    pub(super) fn arity_error(&self, got: usize) -> Option<String> {
        if (self.min..=self.max).contains(&got) {
            return None;
        }
        let count = match (self.min, self.max) {
            (0, 0) => "no arguments".to_string(),
            (1, 1) => "1 argument".to_string(),
            (min, max) if min == max => format!("{min} arguments"),
            (min, max) => format!("{min} or {max} arguments"),
        };
        let names = if self.args.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.args)
        };
        Some(format!(
            "helper `{}` takes {count}{names}, got {got}",
            self.name
        ))
    }
}

const fn spec(
    name: &'static str,
    f: HelperFn,
    min: usize,
    max: usize,
    args: &'static str,
) -> HelperSpec {
    HelperSpec {
        name,
        f,
        min,
        max,
        args,
    }
}

/// Karo's helpers. None of the crate's built-ins covers these.
pub(super) const KARO_HELPERS: &[HelperSpec] = &[
    spec("default", helper_default, 2, 2, "value, fallback"),
    spec("lower", helper_lower, 1, 1, ""),
    spec("upper", helper_upper, 1, 1, ""),
    spec("trunc", helper_trunc, 2, 2, "string, length"),
    spec("replace", helper_replace, 3, 3, "string, old, new"),
    spec("json", helper_json, 1, 1, ""),
    spec("quote", helper_quote, 1, 1, ""),
    spec("shellQuote", helper_shell_quote, 1, 1, ""),
    spec("dns1123", helper_dns1123, 1, 2, "string, max length"),
    spec("now", helper_now, 0, 0, ""),
];

/// A helper that computes a value from its arguments. Returning a value rather
/// than writing text lets helpers nest: `{{upper (default labels.team "ops")}}`.
pub(super) struct FnHelper(pub(super) HelperSpec);

impl HelperDef for FnHelper {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, HbError> {
        let spec = &self.0;
        if let Some(message) = spec.arity_error(h.params().len()) {
            return Err(helper_error(message));
        }
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
    // Checked before the string is built: `replace` multiplies (an empty `from`
    // inserts `to` between every character).
    let places = if from.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(from.as_str()).count()
    };
    let size = places
        .saturating_mul(to.len())
        .saturating_add(s.len())
        .saturating_sub(places.saturating_mul(from.len()));
    if size > MAX_RENDERED_JOB_BYTES {
        return Err(helper_error(format!(
            "`{name}` would produce {size} bytes, more than the limit of {MAX_RENDERED_JOB_BYTES} for one Job"
        )));
    }
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
