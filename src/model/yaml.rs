//! YAML as other tools read it. Kubernetes users' YAML is read by kubectl, whose
//! reader (sigs.k8s.io/yaml on go-yaml v2) follows YAML 1.1: an unquoted `on` is a
//! boolean, `010` the octal 8, `1_000` a thousand. [`resolve_plain`] is that
//! reading of one plain scalar. [`to_string`] writes YAML that kubectl, PyYAML and
//! YAML 1.2 parsers (serde_yaml) all read back as the same JSON value: a string
//! that any of them would take for something else is quoted.

use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;
use serde_json::{Map, Number, Value};

/// What kubectl (go-yaml v2) makes of an unquoted, untagged scalar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plain {
    Null,
    Bool(bool),
    Int(i64),
    /// Above `i64::MAX`, as go-yaml keeps it (a `uint64`).
    Uint(u64),
    Float(f64),
    /// `<<`, the merge key.
    Merge,
    Str,
}

/// go-yaml v2's `resolve` for an untagged plain scalar (resolve.go): the YAML 1.1
/// booleans and nulls by their spelling, then for text that starts with a digit
/// or a sign an integer as Go's `strconv.ParseInt(text, 0, 64)` reads it once
/// every `_` is removed (`0x` hex, `0o` and a leading `0` octal, `0b` binary),
/// then a float. Sexagesimal `1:30` and timestamps stay strings.
pub fn resolve_plain(text: &str) -> Plain {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Plain::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Plain::Bool(false)
        }
        "" | "~" | "null" | "Null" | "NULL" => return Plain::Null,
        ".nan" | ".NaN" | ".NAN" => return Plain::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Plain::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Plain::Float(f64::NEG_INFINITY),
        "<<" => return Plain::Merge,
        _ => {}
    }
    match text.as_bytes()[0] {
        b'.' => go_parse_float(text).map_or(Plain::Str, Plain::Float),
        b'0'..=b'9' | b'+' | b'-' => {
            let plain = text.replace('_', "");
            if let Some(n) = go_parse_int(&plain) {
                return n;
            }
            if yaml_style_float().is_some_and(|re| re.is_match(&plain)) {
                if let Some(f) = plain.parse::<f64>().ok().filter(|f| f.is_finite()) {
                    return Plain::Float(f);
                }
            }
            Plain::Str
        }
        _ => Plain::Str,
    }
}

/// go-yaml's `yamlStyleFloat`.
fn yaml_style_float() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$").ok())
        .as_ref()
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint(s, 0, 64)`.
fn go_parse_int(s: &str) -> Option<Plain> {
    let (negative, unsigned) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let signed = unsigned.len() != s.len();
    let lower = unsigned.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u128::from_str_radix(digits, radix).ok()?;
    let value = if negative {
        -i128::try_from(magnitude).ok()?
    } else {
        i128::try_from(magnitude).ok()?
    };
    if let Ok(i) = i64::try_from(value) {
        return Some(Plain::Int(i));
    }
    // ParseUint takes no sign.
    if signed {
        return None;
    }
    u64::try_from(value).ok().map(Plain::Uint)
}

/// Go's `strconv.ParseFloat(s, 64)` for text that starts with `.`: decimal, `_`
/// only between digits, an out-of-range result refused.
fn go_parse_float(s: &str) -> Option<f64> {
    let bytes = s.as_bytes();
    let underscores_ok = bytes.iter().enumerate().all(|(i, b)| {
        *b != b'_'
            || (i > 0
                && bytes[i - 1].is_ascii_digit()
                && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
    });
    if !underscores_ok
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    s.replace('_', "")
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
}

/// What PyYAML's YAML 1.1 resolver (`yaml.resolver.Resolver`) makes of a plain
/// scalar: whether it is anything but a string.
fn pyyaml_resolves(text: &str) -> bool {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    let re = RE.get_or_init(|| {
        let patterns = [
            // bool
            r"yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF",
            // float
            r"[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?",
            r"\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?",
            r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*",
            r"[-+]?\.(?:inf|Inf|INF)",
            r"\.(?:nan|NaN|NAN)",
            // int
            r"[-+]?0b[0-1_]+",
            r"[-+]?0[0-7_]+",
            r"[-+]?(?:0|[1-9][0-9_]*)",
            r"[-+]?0x[0-9a-fA-F_]+",
            r"[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+",
            // merge, null, value
            r"<<",
            r"~|null|Null|NULL|",
            r"=",
            // timestamp
            r"[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]",
            r"[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?",
        ];
        Regex::new(&format!("^(?:{})$", patterns.join("|"))).ok()
    });
    // Without the pattern, every string counts as one PyYAML might misread.
    re.as_ref().is_none_or(|re| re.is_match(text))
}

/// Whether a YAML 1.2 reader (serde_yaml, as Karo reads its own files) takes
/// the plain scalar for a string.
fn yaml12_string(text: &str) -> bool {
    matches!(
        serde_yaml::from_str::<serde_yaml::Value>(text),
        Ok(serde_yaml::Value::String(s)) if s == text
    )
}

/// Characters YAML lets stand as they are; the rest must be escaped (in a
/// double-quoted scalar). NEL, LS and PS are line breaks to YAML 1.1 readers.
fn printable(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

/// Whether `s` can be written unquoted and reads back as this string in YAML
/// 1.1 (kubectl, PyYAML) and 1.2 alike.
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let indicator = "-?:,[]{}#&*!|>'\"%@`".contains(first);
    let dash_word = first == '-' && s.chars().nth(1).is_some_and(|c| c != ' ');
    (!indicator || dash_word)
        && s.chars().all(printable)
        && !s.ends_with([' ', ':'])
        && !s.starts_with(' ')
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.starts_with("---")
        && !s.starts_with("...")
        && resolve_plain(s) == Plain::Str
        && !pyyaml_resolves(s)
        && yaml12_string(s)
}

/// `s` as a single- or double-quoted scalar.
fn quoted(s: &str, out: &mut String) {
    if s.chars().all(printable) {
        out.push('\'');
        out.push_str(&s.replace('\'', "''"));
        out.push('\'');
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            '\u{85}' => out.push_str("\\N"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if printable(c) => out.push(c),
            c if (c as u32) <= 0xff => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{:04x}", c as u32)),
        }
    }
    out.push('"');
}

/// A multi-line string as a literal block (`|`), when one can hold it exactly:
/// printable lines without trailing blanks, the first not indented. `indent` is
/// that of its lines.
fn literal(s: &str, indent: usize, out: &mut String) -> bool {
    let body = s.trim_end_matches('\n');
    let trailing = s.len() - body.len();
    let lines: Vec<&str> = body.split('\n').collect();
    let fits = !body.trim().is_empty()
        && body.chars().all(|c| c == '\n' || c == '\t' || printable(c))
        && lines.iter().all(|l| !l.ends_with([' ', '\t']))
        && lines
            .iter()
            .find(|l| !l.is_empty())
            .is_some_and(|l| !l.starts_with([' ', '\t']));
    if !fits {
        return false;
    }
    out.push_str(match trailing {
        0 => "|-",
        1 => "|",
        _ => "|+",
    });
    out.push('\n');
    for line in &lines {
        if !line.is_empty() {
            out.push_str(&" ".repeat(indent));
            out.push_str(line);
        }
        out.push('\n');
    }
    for _ in 1..trailing {
        out.push('\n');
    }
    true
}

fn number(n: &Number) -> String {
    if n.is_f64() {
        let s = n.to_string();
        if s.contains(['.', 'e', 'E']) {
            // PyYAML reads `1e+21` as a float only with a dot: `1.0e+21`.
            match s.split_once(['e', 'E']) {
                Some((m, e)) if !m.contains('.') => {
                    let sign = if e.starts_with(['-', '+']) { "" } else { "+" };
                    format!("{m}.0e{sign}{e}")
                }
                Some((m, e)) if !e.starts_with(['-', '+']) => format!("{m}e+{e}"),
                _ => s,
            }
        } else {
            format!("{s}.0")
        }
    } else {
        n.to_string()
    }
}

/// A scalar after `key:` or `- ` (with its line break). `indent` is that of a
/// literal block's lines.
fn scalar(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(n)),
        Value::String(s) => {
            if s.contains('\n') {
                if literal(s, indent, out) {
                    return;
                }
                quoted(s, out);
            } else if plain_ok(s) {
                out.push_str(s);
            } else {
                quoted(s, out);
            }
        }
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
    out.push('\n');
}

fn key(k: &str, out: &mut String) {
    if plain_ok(k) {
        out.push_str(k);
    } else if k.contains('\n') {
        // Never a literal block: a key is one line.
        out.push('"');
        out.push_str(
            &k.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n"),
        );
        out.push('"');
    } else {
        quoted(k, out);
    }
}

fn is_collection(value: &Value) -> bool {
    match value {
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        _ => false,
    }
}

/// A mapping at `indent`; its first key goes on the current line when
/// `inline` (after `- `).
fn mapping(map: &Map<String, Value>, indent: usize, inline: bool, out: &mut String) {
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 || !inline {
            out.push_str(&" ".repeat(indent));
        }
        key(k, out);
        out.push(':');
        match v {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                mapping(m, indent + 2, false, out);
            }
            // A sequence in a mapping is not indented further (as kubectl prints it).
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                sequence(a, indent, false, out);
            }
            _ => {
                out.push(' ');
                scalar(v, indent + 2, out);
            }
        }
    }
}

fn sequence(items: &[Value], indent: usize, inline: bool, out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 || !inline {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str("- ");
        match item {
            Value::Object(m) if is_collection(item) => mapping(m, indent + 2, true, out),
            Value::Array(a) if is_collection(item) => sequence(a, indent + 2, true, out),
            _ => scalar(item, indent + 2, out),
        }
    }
}

/// One YAML document (no `---`) for a JSON value.
pub fn value_to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => mapping(m, 0, false, &mut out),
        Value::Array(a) if !a.is_empty() => sequence(a, 0, false, &mut out),
        _ => scalar(value, 2, &mut out),
    }
    out
}

/// `value` as one YAML document (no `---`) that serde_yaml, kubectl (go-yaml
/// v2) and PyYAML read back as the same value: the strings any of them would
/// take for a boolean, a number, a date or null (`on`, `0755`, `1e3`, `y`,
/// `2026-11-20T12:00:00Z`) are quoted.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_yaml::Error> {
    let value =
        serde_json::to_value(value).map_err(<serde_yaml::Error as serde::ser::Error>::custom)?;
    Ok(value_to_string(&value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_scalars_read_as_go_yaml_v2_reads_them() {
        for (text, want) in [
            ("010", Plain::Int(8)),
            ("-010", Plain::Int(-8)),
            ("0x1F", Plain::Int(31)),
            ("+0x1F", Plain::Int(31)),
            ("0x_1F", Plain::Int(31)),
            ("1_000", Plain::Int(1000)),
            ("+12", Plain::Int(12)),
            ("0o17", Plain::Int(15)),
            ("0b101", Plain::Int(5)),
            ("08", Plain::Float(8.0)),
            ("1e3", Plain::Float(1000.0)),
            (".5", Plain::Float(0.5)),
            ("9223372036854775808", Plain::Uint(9223372036854775808)),
            ("yes", Plain::Bool(true)),
            ("on", Plain::Bool(true)),
            ("y", Plain::Bool(true)),
            ("N", Plain::Bool(false)),
            ("off", Plain::Bool(false)),
            ("~", Plain::Null),
            ("Null", Plain::Null),
            ("<<", Plain::Merge),
            ("tRue", Plain::Str),
            ("1:30", Plain::Str),
            ("2001-12-14", Plain::Str),
            ("1e400", Plain::Str),
            ("0x", Plain::Str),
            ("-", Plain::Str),
            ("1.2.3", Plain::Str),
        ] {
            assert_eq!(resolve_plain(text), want, "{text}");
        }
    }

    #[test]
    fn strings_other_readers_misread_are_quoted() {
        for s in [
            "on",
            "y",
            "N",
            "yes",
            "0755",
            "1e3",
            "1_000",
            "0o17",
            "0b101",
            "1:30",
            "=",
            "<<",
            "2026-11-20T12:00:00Z",
            "2001-12-14",
            "null",
            "~",
            "",
            " x",
            "x ",
            "-",
            "- x",
            "a: b",
            "a #b",
            "@x",
            "`x`",
            "'",
            ".5",
            "+12",
            "0X1F",
            "1__0",
            "0.1_5",
            "---",
        ] {
            let text = value_to_string(&json!({ "k": s }));
            assert!(
                text.starts_with("k: '") || text.starts_with("k: \""),
                "{s:?}: {text}"
            );
            let back: Value = serde_yaml::from_str(&text).unwrap();
            assert_eq!(back, json!({ "k": s }), "{text}");
        }
        for s in [
            "-c",
            "busybox:1.36",
            "karo",
            "a-b",
            "app.kubernetes.io/name",
            "12e",
            "1.2.3",
        ] {
            assert_eq!(value_to_string(&json!({ "k": s })), format!("k: {s}\n"));
        }
    }

    #[test]
    fn layout_and_round_trip() {
        let value = json!({
            "a": {"b": [1, 2.5, true, null], "c": []},
            "d": [{"e": "x", "f": {"g": "h"}}, ["i", "j"], {}],
            "k": "line 1\nline 2\n",
            "l": "no newline\nat the end",
            "m": "two\n\n",
            "n": " leading\nspace",
            "o": "tab\there\u{85}\u{7f}",
            "on": "key quoted",
            "p": 1e21,
        });
        let text = value_to_string(&value);
        assert!(text.contains("a:\n  b:\n  - 1\n  - 2.5\n"), "{text}");
        assert!(
            text.contains("d:\n- e: x\n  f:\n    g: h\n- - i\n  - j\n- {}\n"),
            "{text}"
        );
        assert!(text.contains("k: |\n  line 1\n  line 2\n"), "{text}");
        assert!(text.contains("l: |-\n"), "{text}");
        assert!(text.contains("'on': key quoted"), "{text}");
        assert!(text.contains("p: 1.0e+21"), "{text}");
        let back: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(back, value, "{text}");
    }
}
