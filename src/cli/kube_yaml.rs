//! Manifests as kubectl reads them. kubectl turns YAML into JSON with
//! sigs.k8s.io/yaml on go-yaml v2, that is by YAML 1.1's rules: an unquoted `on`,
//! `yes` or `y` is a boolean, `010` the octal 8, `0x1F` hex, `1_000` a thousand,
//! `1e3` the integer 1000 once in JSON; quoted and block scalars are strings. The
//! API server gets that JSON, so Karo checks that, not what a YAML 1.2 reader
//! would make of the file. Aliases and merge keys (`<<`) are expanded, mapping
//! keys become strings (`on:` is the key `"true"`), as kubectl does.
//!
//! Karo's own files (its config, the Job skeleton) are read by Karo, with YAML
//! 1.2 (serde_yaml): they are not read here.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use base64::Engine;
use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::model::yaml::{resolve_plain, Plain};

/// One document of a stream as kubectl reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeDocument {
    /// 1-based position in the stream, empty documents counted.
    pub number: usize,
    pub value: Value,
    /// The unquoted scalars kubectl reads as something other than the string
    /// written (`on` as true, `010` as 8), by field path (`spec.budget.maxRunsPerHour`).
    pub plain: BTreeMap<String, String>,
}

/// Why a stream cannot be read, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

impl ReadError {
    fn at(mark: Marker, reason: impl Into<String>) -> Self {
        ReadError {
            line: mark.line(),
            column: mark.col() + 1,
            reason: reason.into(),
        }
    }
}

/// More values than this, counting those an alias repeats, is a "billion
/// laughs" stream: refused, as go-yaml refuses excessive aliasing.
const MAX_NODES: usize = 10_000_000;

/// Every document of `text` (empty ones too, as `null`), as kubectl reads it.
pub fn read_stream(text: &str) -> Result<Vec<KubeDocument>, ReadError> {
    let mut reader = Reader {
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        keys: HashMap::new(),
        plain: BTreeMap::new(),
        nodes: 0,
    };
    let mut docs = Vec::new();
    loop {
        let (event, mark) = reader.next()?;
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => return Ok(docs),
            Event::DocumentStart => {
                reader.anchors.clear();
                reader.keys.clear();
                let value = reader.node("")?;
                docs.push(KubeDocument {
                    number: docs.len() + 1,
                    value,
                    plain: std::mem::take(&mut reader.plain),
                });
            }
            _ => return Err(ReadError::at(mark, "unexpected content between documents")),
        }
    }
}

struct Reader<'a> {
    parser: Parser<std::str::Chars<'a>>,
    /// Anchored values, with their size in values.
    anchors: HashMap<usize, (Value, usize)>,
    /// Anchored scalars as mapping keys.
    keys: HashMap<usize, Result<String, String>>,
    plain: BTreeMap<String, String>,
    nodes: usize,
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn size(value: &Value) -> usize {
    match value {
        Value::Array(a) => 1 + a.iter().map(size).sum::<usize>(),
        Value::Object(m) => 1 + m.values().map(size).sum::<usize>(),
        _ => 1,
    }
}

const TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// A scalar's value for kubectl, and its text when kubectl reads it as
/// something else than that string.
fn scalar(
    text: &str,
    style: TScalarStyle,
    tag: Option<&Tag>,
    mark: Marker,
) -> Result<(Plain, Option<String>), ReadError> {
    let core_tag = tag
        .filter(|t| t.handle == TAG_PREFIX)
        .map(|t| t.suffix.as_str());
    match (tag, core_tag) {
        (None, _) if style == TScalarStyle::Plain => {
            let resolved = resolve_plain(text);
            Ok((resolved, (resolved != Plain::Str).then(|| text.to_string())))
        }
        (None, _) => Ok((Plain::Str, None)),
        (Some(_), Some(want @ ("int" | "float" | "bool" | "null"))) => {
            let resolved = resolve_plain(text);
            match (want, resolved) {
                ("int", Plain::Int(_) | Plain::Uint(_))
                | ("float", Plain::Float(_))
                | ("bool", Plain::Bool(_))
                | ("null", Plain::Null) => Ok((resolved, None)),
                ("float", Plain::Int(i)) => Ok((Plain::Float(i as f64), None)),
                _ => Err(ReadError::at(
                    mark,
                    format!("cannot decode `{text}` as a !!{want}"),
                )),
            }
        }
        // Any other tag, `!!str` and `!!binary` (decoded by the caller) included,
        // leaves the text a string.
        _ => Ok((Plain::Str, None)),
    }
}

/// The JSON kubectl makes of a scalar (go-yaml's value through `json.Marshal`):
/// a float without fraction is an integer, infinity and NaN are refused.
fn json(plain: Plain, text: String, mark: Marker) -> Result<Value, ReadError> {
    Ok(match plain {
        Plain::Null => Value::Null,
        Plain::Bool(b) => Value::Bool(b),
        Plain::Int(i) => Value::from(i),
        Plain::Uint(u) => Value::from(u),
        Plain::Float(f) if !f.is_finite() => {
            return Err(ReadError::at(
                mark,
                format!(
                    "`{text}` is not a number JSON can hold (kubectl: json: unsupported value)"
                ),
            ))
        }
        Plain::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Value::from(f as i64),
        Plain::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        Plain::Merge | Plain::Str => Value::String(text),
    })
}

/// A mapping key as sigs.k8s.io/yaml turns it into a JSON key.
fn key_text(plain: Plain, text: &str) -> Result<String, String> {
    match plain {
        Plain::Str | Plain::Merge => Ok(text.to_string()),
        Plain::Bool(b) => Ok(b.to_string()),
        Plain::Int(i) => Ok(i.to_string()),
        Plain::Float(f) => Ok(go_format_g32(f)),
        Plain::Uint(_) => Err(format!(
            "the key `{text}` is an integer too large for kubectl (unsupported map key of type uint64)"
        )),
        Plain::Null => Err(format!(
            "the key `{text}` is null to kubectl (unsupported map key); quote it"
        )),
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)`, as sigs.k8s.io/yaml writes a
/// float key.
fn go_format_g32(f: f64) -> String {
    let f = f as f32;
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

impl Reader<'_> {
    fn next(&mut self) -> Result<(Event, Marker), ReadError> {
        self.parser.next_token().map_err(|e| ReadError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            reason: e.info().to_string(),
        })
    }

    fn peek_end(&mut self) -> Result<bool, ReadError> {
        match self.parser.peek() {
            Ok((Event::SequenceEnd | Event::MappingEnd, _)) => {
                self.next()?;
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e) => Err(ReadError {
                line: e.marker().line(),
                column: e.marker().col() + 1,
                reason: e.info().to_string(),
            }),
        }
    }

    fn count(&mut self, n: usize, mark: Marker) -> Result<(), ReadError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(ReadError::at(
                mark,
                "too many values once aliases are expanded (excessive aliasing)",
            ));
        }
        Ok(())
    }

    fn anchor(&mut self, id: usize, value: &Value) {
        if id > 0 {
            self.anchors.insert(id, (value.clone(), size(value)));
        }
    }

    /// One node, at `path`.
    fn node(&mut self, path: &str) -> Result<Value, ReadError> {
        let (event, mark) = self.next()?;
        self.count(1, mark)?;
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let (plain, misread) = scalar(&text, style, tag.as_ref(), mark)?;
                if let Some(t) = misread {
                    let value = json(plain, text.clone(), mark)?;
                    if serde_json::to_string(&value).ok().as_deref() != Some(t.as_str()) {
                        self.plain.insert(path.to_string(), t);
                    }
                }
                if anchor > 0 {
                    self.keys.insert(anchor, key_text(plain, &text));
                }
                let value = if tag
                    .as_ref()
                    .is_some_and(|t| t.handle == TAG_PREFIX && t.suffix == "binary")
                {
                    let compact: String = text.split_whitespace().collect();
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(compact)
                        .map_err(|_| {
                            ReadError::at(mark, "!!binary value contains invalid base64 data")
                        })?;
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                } else {
                    json(plain, text, mark)?
                };
                self.anchor(anchor, &value);
                Ok(value)
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((value, n)) => {
                    let (value, n) = (value.clone(), *n);
                    self.count(n, mark)?;
                    Ok(value)
                }
                None => Err(ReadError::at(mark, "an alias to an unknown anchor")),
            },
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                while !self.peek_end()? {
                    let item = self.node(&format!("{path}[{}]", items.len()))?;
                    items.push(item);
                }
                let value = Value::Array(items);
                self.anchor(anchor, &value);
                Ok(value)
            }
            Event::MappingStart(anchor, _) => {
                let value = Value::Object(self.mapping(path)?);
                self.anchor(anchor, &value);
                Ok(value)
            }
            _ => Err(ReadError::at(mark, "expected a value")),
        }
    }

    fn mapping(&mut self, path: &str) -> Result<Map<String, Value>, ReadError> {
        let mut map = Map::new();
        let mut explicit = BTreeSet::new();
        while !self.peek_end()? {
            let (event, mark) = self.next()?;
            let key = match event {
                Event::Scalar(text, style, anchor, tag) => {
                    let (plain, _) = scalar(&text, style, tag.as_ref(), mark)?;
                    let key = key_text(plain, &text);
                    if anchor > 0 {
                        self.keys.insert(anchor, key.clone());
                        if let Ok(k) = &key {
                            self.anchors.insert(anchor, (Value::String(k.clone()), 1));
                        }
                    }
                    if plain == Plain::Merge {
                        let merged = self.node(path)?;
                        merge(&mut map, merged).map_err(|why| ReadError::at(mark, why))?;
                        continue;
                    }
                    key
                }
                Event::Alias(id) => self
                    .keys
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| Err("a mapping key must be a scalar".to_string())),
                _ => Err("a mapping key must be a scalar (kubectl cannot read this key)".into()),
            }
            .map_err(|why| ReadError::at(mark, why))?;
            if !explicit.insert(key.clone()) {
                return Err(ReadError::at(
                    mark,
                    format!(
                        "duplicate key {key:?} (kubectl keeps the last value and drops the others without a word)"
                    ),
                ));
            }
            let value = self.node(&child(path, &key))?;
            map.insert(key, value);
        }
        Ok(map)
    }
}

/// A merge key's value into `map`, as go-yaml v2 merges: a mapping's keys
/// replace those before it; of a list of mappings, the earlier win.
fn merge(map: &mut Map<String, Value>, merged: Value) -> Result<(), String> {
    let want = "a merge key (<<) takes a mapping or a list of mappings";
    match merged {
        Value::Object(m) => map.extend(m),
        Value::Array(items) => {
            for item in items.into_iter().rev() {
                match item {
                    Value::Object(m) => map.extend(m),
                    _ => return Err(want.into()),
                }
            }
        }
        _ => return Err(want.into()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> KubeDocument {
        let mut docs = read_stream(text).unwrap();
        assert_eq!(docs.len(), 1, "{docs:?}");
        docs.remove(0)
    }

    #[test]
    fn yaml_1_1_scalars_as_kubectl_reads_them() {
        let doc = one(
            "a: 010\nb: 0x1F\nc: 1_000\nd: +12\ne: [yes, no, on, off, y, n, tRue]\n\
             f: [~, null, '']\ng: 1e3\nh: 08\ni: 1:30\nj: '010'\nk: \"on\"\nl: |\n  on\n\
             m: !!str 010\nn2: !!int \"013\"\no: 1.5\np: 2001-12-14\n",
        );
        assert_eq!(
            doc.value,
            json!({
                "a": 8, "b": 31, "c": 1000, "d": 12,
                "e": [true, false, true, false, true, false, "tRue"],
                "f": [null, null, ""], "g": 1000, "h": 8, "i": "1:30", "j": "010",
                "k": "on", "l": "on\n", "m": "010", "n2": 11, "o": 1.5, "p": "2001-12-14",
            })
        );
        assert_eq!(doc.plain.get("a").map(String::as_str), Some("010"));
        assert_eq!(doc.plain.get("e[2]").map(String::as_str), Some("on"));
        assert!(!doc.plain.contains_key("o"), "{:?}", doc.plain);
        assert!(!doc.plain.contains_key("j"), "{:?}", doc.plain);
    }

    #[test]
    fn keys_aliases_and_merges() {
        let doc = one(
            "base: &b {p: 1, q: 2}\nm:\n  r: 0\n  <<: *b\n  q: 3\n  on: 1\n  010: 2\n  1.5: 3\n  1e3: 5\n  1e7: 6\n  n: 7\n\
             s: &s [x]\nt: *s\n",
        );
        assert_eq!(
            doc.value,
            json!({
                "base": {"p": 1, "q": 2},
                "m": {"r": 0, "p": 1, "q": 3, "true": 1, "8": 2, "1.5": 3, "1000": 5, "1e+07": 6, "false": 7},
                "s": ["x"], "t": ["x"],
            })
        );
    }

    #[test]
    fn streams_and_errors() {
        let docs = read_stream("a: 1\n---\n---\nb: 2\n").unwrap();
        let numbers: Vec<usize> = docs.iter().map(|d| d.number).collect();
        assert_eq!(numbers, [1, 2, 3]);
        assert!(docs[1].value.is_null());
        assert!(read_stream("").unwrap().is_empty());
        for (bad, why) in [
            ("a: [1,\n", "node content"),
            ("a: 1\na: 2\n", "duplicate key \"a\""),
            ("a: .inf\n", "not a number JSON can hold"),
            ("~: 1\n", "null"),
            ("a: !!int x\n", "cannot decode"),
            ("a: *nope\n", "unknown anchor"),
        ] {
            let e = read_stream(bad).unwrap_err();
            assert!(e.reason.contains(why), "{bad:?}: {e:?}");
            assert!(e.line >= 1 && e.column >= 1, "{e:?}");
        }
    }

    #[test]
    fn excessive_aliasing_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            let list = [prev.as_str(); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{list}]\n"));
        }
        let e = read_stream(&text).unwrap_err();
        assert!(e.reason.contains("aliasing"), "{e:?}");
    }
}
