//! Matching alerts against an `AlertReaction`'s matchers, with Prometheus and
//! Alertmanager semantics.
//!
//! - A label or annotation the alert does not have is the empty string, so
//!   `severity!="critical"` and `severity=""` both match an alert without `severity`.
//! - Regular expressions are Alertmanager's: Go's RE2 syntax, fully anchored as
//!   `^(?:value)$` (`.` does not match a newline; `\d`, `\w`, `\s` and `\b` are
//!   ASCII), refused when Alertmanager refuses them, with Go's reason (`re2`).
//! - Karo's own limits: the name and value lengths of
//!   [`limits`](crate::model::crd::limits), and a compiled size per regex.
//!
//! The reaction's `alertName` is not part of a [`MatcherSet`]: the reactor finds
//! reactions through an index keyed by alert name and checks it with
//! [`alert_name_matches`].

use std::fmt;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use regex::{Regex, RegexBuilder};

use crate::model::alert::Alert;
use crate::model::crd::limits::{
    MAX_MATCHER_NAME_LENGTH, MAX_MATCHER_VALUE_LENGTH, MAX_REGEX_COMPILED_BYTES,
};
use crate::model::crd::{MatchOperator, Matcher};

mod re2;

/// Prefix of a matcher `name` that selects an annotation instead of a label.
pub const ANNOTATION_PREFIX: &str = "annotations.";

/// A matcher that is wrong, naming its place in the `AlertReaction`.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("spec.matchers[{index}].{field}: {message}")]
pub struct MatcherError {
    /// Position in `spec.matchers`.
    pub index: usize,
    /// The matcher's field that is wrong: `name` or `value`.
    pub field: &'static str,
    pub message: String,
}

impl MatcherError {
    /// The `Ready` condition's reason.
    pub fn reason(&self) -> &'static str {
        "InvalidMatcher"
    }
}

/// What a matcher looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Label(String),
    Annotation(String),
}

impl Target {
    /// The target's value in `alert`; `""` when absent.
    fn value_in<'a>(&self, alert: &'a Alert) -> &'a str {
        match self {
            Target::Label(name) => alert.labels.get(name),
            Target::Annotation(key) => alert.annotations.get(key),
        }
        .map_or("", String::as_str)
    }
}

/// A matcher ready to test alerts: its regular expression is compiled once.
#[derive(Clone, Debug)]
pub struct CompiledMatcher {
    name: String,
    target: Target,
    operator: MatchOperator,
    value: String,
    /// Shared with every matcher of the same pattern, and so is its pool of
    /// search caches: a `Regex` clone would make a pool of its own (about 2 KiB
    /// before its first search, and a cache after it).
    regex: Option<Arc<Regex>>,
}

impl CompiledMatcher {
    /// Compiles one matcher. Errors carry index 0; [`MatcherSet::compile`] sets the
    /// matcher's real position.
    pub fn compile(m: &Matcher) -> Result<Self, MatcherError> {
        Self::compile_at(m, 0)
    }

    fn compile_at(m: &Matcher, index: usize) -> Result<Self, MatcherError> {
        let error = |field, message: String| MatcherError {
            index,
            field,
            message,
        };
        let target = match m.name.strip_prefix(ANNOTATION_PREFIX) {
            Some("") => {
                return Err(error(
                    "name",
                    format!("annotation key missing after {ANNOTATION_PREFIX:?}"),
                ))
            }
            Some(key) => Target::Annotation(key.to_owned()),
            None if m.name.is_empty() => return Err(error("name", "must not be empty".into())),
            None => Target::Label(m.name.clone()),
        };
        if m.name.len() > MAX_MATCHER_NAME_LENGTH {
            return Err(error(
                "name",
                format!(
                    "is {} bytes long, more than the limit of {MAX_MATCHER_NAME_LENGTH}",
                    m.name.len()
                ),
            ));
        }
        if m.value.len() > MAX_MATCHER_VALUE_LENGTH {
            return Err(error(
                "value",
                format!(
                    "is {} bytes long, more than the limit of {MAX_MATCHER_VALUE_LENGTH}",
                    m.value.len()
                ),
            ));
        }
        let regex = match m.operator {
            MatchOperator::Equal | MatchOperator::NotEqual => None,
            MatchOperator::RegexMatch | MatchOperator::RegexNotMatch => {
                Some(anchored_regex(&m.value).map_err(|e| error("value", e.message(&m.value)))?)
            }
        };
        Ok(CompiledMatcher {
            name: m.name.clone(),
            target,
            operator: m.operator,
            value: m.value.clone(),
            regex,
        })
    }

    /// A matcher on the `alertname` label, for callers that want `alertName` checked
    /// together with the other matchers.
    pub fn alert_name(name: &str) -> Self {
        CompiledMatcher {
            name: "alertname".to_owned(),
            target: Target::Label("alertname".to_owned()),
            operator: MatchOperator::Equal,
            value: name.to_owned(),
            regex: None,
        }
    }

    pub fn matches(&self, alert: &Alert) -> bool {
        self.matches_value(self.target.value_in(alert))
    }

    /// Whether the matcher holds for `actual`, its target's value in an alert.
    fn matches_value(&self, actual: &str) -> bool {
        match (self.operator, &self.regex) {
            (MatchOperator::Equal, _) => actual == self.value,
            (MatchOperator::NotEqual, _) => actual != self.value,
            (MatchOperator::RegexMatch, Some(re)) => re.is_match(actual),
            (MatchOperator::RegexNotMatch, Some(re)) => !re.is_match(actual),
            // compile_at always sets a regex for the regex operators.
            (MatchOperator::RegexMatch | MatchOperator::RegexNotMatch, None) => false,
        }
    }
}

/// Shown as Alertmanager prints matchers: `severity=~"crit.*"`.
impl fmt::Display for CompiledMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.operator.as_str(), self.value)
    }
}

/// All of a reaction's matchers; an alert matches when every one holds.
#[derive(Clone, Debug, Default)]
pub struct MatcherSet(Vec<CompiledMatcher>);

impl MatcherSet {
    /// Compiles `spec.matchers`; the first wrong matcher is the error.
    pub fn compile(ms: &[Matcher]) -> Result<Self, MatcherError> {
        ms.iter()
            .enumerate()
            .map(|(i, m)| CompiledMatcher::compile_at(m, i))
            .collect::<Result<_, _>>()
            .map(MatcherSet)
    }

    /// Compiles `spec.matchers`, reporting every wrong matcher.
    pub fn compile_all(ms: &[Matcher]) -> Result<Self, Vec<MatcherError>> {
        let mut compiled = Vec::with_capacity(ms.len());
        let mut errors = Vec::new();
        for (i, m) in ms.iter().enumerate() {
            match CompiledMatcher::compile_at(m, i) {
                Ok(c) => compiled.push(c),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(MatcherSet(compiled))
        } else {
            Err(errors)
        }
    }

    pub fn matches(&self, alert: &Alert) -> bool {
        self.0.iter().all(|m| m.matches(alert))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &CompiledMatcher> {
        self.0.iter()
    }
}

/// The matchers of every reaction of one alert name, evaluated together: an alert
/// looks each distinct label or annotation up once, and each distinct matcher
/// (name, operator, value) runs at most once whichever reactions share it. A
/// reaction's matchers run cheapest first (equality before regular expressions);
/// the matcher reported as failing is still the first failing one in the order
/// written.
#[derive(Debug, Default)]
pub struct MatchTable {
    /// Distinct targets, each looked up once per alert.
    targets: Vec<Target>,
    /// Distinct matchers, cheapest first.
    matchers: Vec<SharedMatcher>,
    /// Per reaction, its matchers in the order written: indexes into `matchers`.
    reactions: Vec<Box<[u32]>>,
    /// Per reaction, (index into `matchers`, position written), cheapest first.
    by_cost: Vec<Box<[(u32, u32)]>>,
}

#[derive(Debug)]
struct SharedMatcher {
    /// Index into `MatchTable::targets`.
    target: u32,
    matcher: CompiledMatcher,
}

/// One alert's looked-up values and the matcher results known so far, kept
/// between the reactions of a [`MatchTable`]; reused from alert to alert.
#[derive(Debug, Default)]
pub struct Evaluation<'a> {
    values: Vec<&'a str>,
    /// Per distinct matcher: `UNKNOWN`, `HOLDS` or `FAILS`.
    results: Vec<u8>,
}

const UNKNOWN: u8 = 0;
const HOLDS: u8 = 1;
const FAILS: u8 = 2;

impl MatchTable {
    /// The table of `sets`, one per reaction, in the order given.
    pub fn new<'s>(sets: impl IntoIterator<Item = &'s MatcherSet>) -> Self {
        let sets: Vec<&MatcherSet> = sets.into_iter().collect();
        let mut targets: Vec<Target> = Vec::new();
        // Distinct matchers, in order of first appearance.
        let mut distinct: Vec<&CompiledMatcher> = Vec::new();
        let mut seen: HashMap<(&str, MatchOperator, &str), usize> = HashMap::new();
        let mut written: Vec<Vec<usize>> = Vec::with_capacity(sets.len());
        for set in &sets {
            let ids = set
                .iter()
                .map(|m| {
                    *seen
                        .entry((m.name.as_str(), m.operator, m.value.as_str()))
                        .or_insert_with(|| {
                            distinct.push(m);
                            distinct.len() - 1
                        })
                })
                .collect();
            written.push(ids);
        }
        // Cheapest first; a stable sort keeps the order of appearance otherwise.
        let mut order: Vec<usize> = (0..distinct.len()).collect();
        order.sort_by_key(|&i| distinct[i].regex.is_some());
        let mut rank = vec![0u32; distinct.len()];
        let mut matchers = Vec::with_capacity(distinct.len());
        for (r, &i) in order.iter().enumerate() {
            rank[i] = index_u32(r);
            let m = distinct[i];
            let target = match targets.iter().position(|t| *t == m.target) {
                Some(t) => t,
                None => {
                    targets.push(m.target.clone());
                    targets.len() - 1
                }
            };
            matchers.push(SharedMatcher {
                target: index_u32(target),
                matcher: m.clone(),
            });
        }
        let reactions: Vec<Box<[u32]>> = written
            .iter()
            .map(|ids| ids.iter().map(|&i| rank[i]).collect())
            .collect();
        let by_cost = reactions
            .iter()
            .map(|ids| {
                let mut pairs: Vec<(u32, u32)> = ids
                    .iter()
                    .enumerate()
                    .map(|(pos, &m)| (m, index_u32(pos)))
                    .collect();
                pairs.sort_unstable();
                pairs.into_boxed_slice()
            })
            .collect();
        MatchTable {
            targets,
            matchers,
            reactions,
            by_cost,
        }
    }

    /// Readies `evaluation` for `alert`: its values looked up, no result known.
    pub fn start<'a>(&self, alert: &'a Alert, evaluation: &mut Evaluation<'a>) {
        evaluation.values.clear();
        evaluation
            .values
            .extend(self.targets.iter().map(|t| t.value_in(alert)));
        evaluation.results.clear();
        evaluation.results.resize(self.matchers.len(), UNKNOWN);
    }

    /// The position in `spec.matchers` of the first matcher of reaction
    /// `reaction` that fails for the alert `evaluation` was started with, or
    /// `None` when all hold.
    pub fn first_failing(&self, reaction: usize, evaluation: &mut Evaluation) -> Option<usize> {
        let by_cost = self.by_cost.get(reaction)?;
        let (_, failing) = by_cost.iter().find(|&&(m, _)| !self.holds(m, evaluation))?;
        // Some matcher fails: report the first one written, which may come
        // before the cheaper one found.
        let failing = *failing as usize;
        let written = self.reactions.get(reaction)?;
        Some(
            written[..failing]
                .iter()
                .position(|&m| !self.holds(m, evaluation))
                .unwrap_or(failing),
        )
    }

    fn holds(&self, m: u32, evaluation: &mut Evaluation) -> bool {
        let i = m as usize;
        match evaluation.results.get(i) {
            Some(&HOLDS) => true,
            Some(&FAILS) => false,
            _ => {
                let Some(shared) = self.matchers.get(i) else {
                    return false;
                };
                let actual = evaluation
                    .values
                    .get(shared.target as usize)
                    .copied()
                    .unwrap_or("");
                let holds = shared.matcher.matches_value(actual);
                if let Some(r) = evaluation.results.get_mut(i) {
                    *r = if holds { HOLDS } else { FAILS };
                }
                holds
            }
        }
    }

    /// Distinct matchers in the table.
    pub fn distinct_matchers(&self) -> usize {
        self.matchers.len()
    }
}

/// Reactions are bounded far below `u32::MAX` matchers; saturate rather than wrap.
fn index_u32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Whether the alert's `alertname` label equals a reaction's `spec.alertName`.
pub fn alert_name_matches(alert_name: &str, alert: &Alert) -> bool {
    alert.alert_name() == alert_name
}

/// Why a matcher's regular expression is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RegexError {
    /// Alertmanager (Go's parser) refuses it.
    Go(re2::GoError),
    /// It closes the group Alertmanager wraps it in (`a)|(b`), which would
    /// unanchor the match.
    EscapesAnchors,
    /// Compiled, it would take more than Karo's limit.
    TooBig(usize),
    /// Rust's regex refuses what Go accepts: nothing known does.
    Rust(String),
}

impl RegexError {
    fn message(&self, value: &str) -> String {
        match self {
            RegexError::Go(e) if e.expr == wrap(value) => {
                format!("invalid regular expression {value:?}: {}", e.code)
            }
            RegexError::Go(e) => format!("invalid regular expression {value:?}: {e}"),
            RegexError::EscapesAnchors => format!(
                "invalid regular expression {value:?}: it closes the group Alertmanager anchors it in (^(?:...)$), so the match would no longer be anchored; write \\) for a literal parenthesis"
            ),
            RegexError::TooBig(limit) => format!(
                "regular expression {value:?} exceeds the compiled size limit of {limit} bytes; use fewer or smaller repetitions"
            ),
            RegexError::Rust(message) => {
                format!("invalid regular expression {value:?}: {message}")
            }
        }
    }
}

/// The pattern Alertmanager compiles for a matcher's value.
fn wrap(value: &str) -> String {
    format!("^(?:{value})$")
}

/// Compiles `value` as Alertmanager does: Go's syntax and meaning, anchored as
/// `^(?:value)$`, where `.` does not match a newline (Prometheus 3 adds `(?s)`,
/// Alertmanager does not).
///
/// A value that closes the wrapping group (`a)|(b`) compiles in Alertmanager to
/// an unanchored match; Karo refuses it rather than match what the manifest does
/// not appear to say.
///
/// The compiled size is bounded ([`MAX_REGEX_COMPILED_BYTES`]), and so is the
/// lazy DFA's cache: a pattern such as `(?:\pL{100}){10}` is refused instead of
/// taking megabytes.
///
/// Compiled regexes are shared: thousands of reactions often use the same few
/// patterns (`critical|page`), and share one `Regex`: its automaton and its
/// pool of search caches.
fn anchored_regex(value: &str) -> Result<Arc<Regex>, RegexError> {
    static SHARED: OnceLock<Mutex<HashMap<String, Arc<Regex>>>> = OnceLock::new();
    let shared = SHARED.get_or_init(Default::default);
    if let Some(re) = lock(shared).get(value) {
        return Ok(re.clone());
    }
    let rust = re2::translate(&wrap(value)).map_err(RegexError::Go)?;
    if re2::translate(value).is_err() {
        return Err(RegexError::EscapesAnchors);
    }
    let re = RegexBuilder::new(&rust)
        .size_limit(MAX_REGEX_COMPILED_BYTES)
        .dfa_size_limit(MAX_REGEX_COMPILED_BYTES)
        .build()
        .map(Arc::new)
        .map_err(|e| match e {
            regex::Error::CompiledTooBig(limit) => RegexError::TooBig(limit),
            other => RegexError::Rust(regex_error_message(&other)),
        })?;
    let mut cache = lock(shared);
    // Bounded: patterns of deleted reactions are not tracked, so start over
    // rather than grow without end.
    if cache.len() >= SHARED_REGEX_LIMIT {
        cache.clear();
    }
    cache.insert(value.to_string(), re.clone());
    Ok(re)
}

/// Distinct patterns kept in the shared cache.
const SHARED_REGEX_LIMIT: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The regex crate's syntax errors span several lines (pattern, caret, reason);
/// a status message wants the reason alone.
fn regex_error_message(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("error: "))
        .map_or_else(
            || text.split_whitespace().collect::<Vec<_>>().join(" "),
            str::to_owned,
        )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn matcher(name: &str, op: &str, value: &str) -> Matcher {
        let operator = match op {
            "=" => MatchOperator::Equal,
            "!=" => MatchOperator::NotEqual,
            "=~" => MatchOperator::RegexMatch,
            "!~" => MatchOperator::RegexNotMatch,
            other => panic!("operator {other}"),
        };
        Matcher {
            name: name.into(),
            operator,
            value: value.into(),
        }
    }

    fn alert(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Alert {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        Alert {
            labels: map(labels),
            annotations: map(annotations),
            ..Alert::default()
        }
    }

    #[test]
    fn single_matchers() {
        let prod1 = alert(
            &[
                ("alertname", "HighCPU"),
                ("env", "prod-1"),
                ("severity", "critical"),
            ],
            &[("summary", "CPU is high\non node-1"), ("runbook", "")],
        );
        let bare = alert(&[("alertname", "HighCPU")], &[]);
        let xprod = alert(&[("env", "xprod-1")], &[]);
        let ab = alert(&[("v", "ab")], &[]);
        let a = alert(&[("v", "a")], &[]);
        let multiline = alert(&[("v", "line1\nline2")], &[]);

        #[rustfmt::skip]
        let cases: &[(&str, &str, &str, &Alert, bool)] = &[
            // equality
            ("severity", "=", "critical", &prod1, true),
            ("severity", "=", "Critical", &prod1, false),
            ("severity", "=", "crit", &prod1, false),
            ("severity", "!=", "critical", &prod1, false),
            ("severity", "!=", "warning", &prod1, true),
            // anchoring
            ("env", "=~", "prod-.*", &prod1, true),
            ("env", "=~", "prod-.*", &xprod, false),
            ("env", "=~", "prod", &prod1, false),
            ("env", "!~", "prod-.*", &xprod, true),
            ("env", "!~", "prod-.*", &prod1, false),
            ("v", "=~", "a|b", &ab, false),
            ("v", "=~", "a|b", &a, true),
            ("v", "!~", "a|b", &ab, true),
            // a missing label is the empty string
            ("severity", "!=", "critical", &bare, true),
            ("severity", "!~", "crit.*", &bare, true),
            ("severity", "=", "", &bare, true),
            ("severity", "=", "", &prod1, false),
            ("severity", "!=", "", &bare, false),
            ("severity", "=~", ".*", &bare, true),
            ("severity", "=~", ".+", &bare, false),
            ("severity", "!~", ".+", &bare, true),
            ("severity", "=", "critical", &bare, false),
            ("severity", "=~", "crit.*", &bare, false),
            // annotations
            ("annotations.summary", "=~", "CPU is high.*", &prod1, false),
            ("annotations.summary", "=~", "(?s)CPU is high.*", &prod1, true),
            ("annotations.summary", "=", "CPU is high", &prod1, false),
            ("annotations.summary", "!=", "x", &bare, true),
            ("annotations.summary", "=", "", &bare, true),
            ("annotations.runbook", "=", "", &prod1, true),
            ("annotations.alertname", "=", "HighCPU", &prod1, false),
            // a label is not an annotation
            ("summary", "=~", ".+", &prod1, false),
            // `.` does not match a newline, as in Alertmanager
            ("v", "=~", "line1.line2", &multiline, false),
            ("v", "=~", "line1.*", &multiline, false),
            ("v", "=~", "(?s)line1.*", &multiline, true),
            ("v", "=~", "line1\\nline2", &multiline, true),
            ("v", "=~", "line2", &multiline, false),
            ("v", "=", "line1\nline2", &multiline, true),
            // regex features
            ("severity", "=~", "(?i)CRITICAL", &prod1, true),
            ("severity", "=~", "warning|critical", &prod1, true),
            ("severity", "=~", "", &bare, true),
            ("severity", "=~", "", &prod1, false),
        ];
        for (name, op, value, alert, expected) in cases {
            let m = CompiledMatcher::compile(&matcher(name, op, value)).unwrap();
            assert_eq!(
                m.matches(alert),
                *expected,
                "{name}{op}{value:?} against {:?} / {:?}",
                alert.labels,
                alert.annotations
            );
        }
    }

    #[test]
    fn all_matchers_must_hold() {
        let set = MatcherSet::compile(&[
            matcher("severity", "=~", "critical|warning"),
            matcher("env", "!=", "staging"),
            matcher("annotations.runbook_url", "=~", "https://.+"),
        ])
        .unwrap();
        assert_eq!(set.len(), 3);
        let ok = alert(
            &[("severity", "warning")],
            &[("runbook_url", "https://runbooks/x")],
        );
        assert!(set.matches(&ok));
        let staging = alert(
            &[("severity", "warning"), ("env", "staging")],
            &[("runbook_url", "https://runbooks/x")],
        );
        assert!(!set.matches(&staging));
        let no_runbook = alert(&[("severity", "warning")], &[]);
        assert!(!set.matches(&no_runbook));
        let info = alert(&[("severity", "info")], &[("runbook_url", "https://r")]);
        assert!(!set.matches(&info));
    }

    #[test]
    fn empty_set_matches_everything() {
        let set = MatcherSet::compile(&[]).unwrap();
        assert!(set.is_empty());
        assert!(set.matches(&Alert::default()));
    }

    #[test]
    fn alert_name_is_checked_separately() {
        let a = alert(&[("alertname", "HighCPU")], &[]);
        assert!(alert_name_matches("HighCPU", &a));
        assert!(!alert_name_matches("HighCpu", &a));
        assert!(!alert_name_matches("HighCPU", &Alert::default()));
        assert!(CompiledMatcher::alert_name("HighCPU").matches(&a));
        assert!(!CompiledMatcher::alert_name("Other").matches(&a));
    }

    #[test]
    fn invalid_regex_names_index_and_field() {
        let err = MatcherSet::compile(&[
            matcher("a", "=", "("),
            matcher("b", "=~", "x"),
            matcher("c", "!~", "("),
        ])
        .unwrap_err();
        assert_eq!(err.index, 2);
        assert_eq!(err.field, "value");
        assert_eq!(err.reason(), "InvalidMatcher");
        assert_eq!(
            err.to_string(),
            r#"spec.matchers[2].value: invalid regular expression "(": missing closing )"#
        );
    }

    #[test]
    fn a_regex_cannot_escape_its_anchors() {
        let err = CompiledMatcher::compile(&matcher("v", "=~", "a)|(b")).unwrap_err();
        assert_eq!(err.index, 0);
        assert!(
            err.to_string().starts_with(
                r#"spec.matchers[0].value: invalid regular expression "a)|(b": it closes the group Alertmanager anchors it in"#
            ),
            "{err}"
        );
    }

    #[test]
    fn regexes_read_as_alertmanager_reads_them() {
        let v = |value: &str| alert(&[("v", value)], &[]);
        #[rustfmt::skip]
        let cases: &[(&str, &str, bool)] = &[
            // Perl classes and word boundaries are ASCII in Go.
            (r"\d+", "123", true),
            (r"\d+", "\u{663}", false),
            (r"\w+", "café", false),
            (r"\w+", "cafe_1", true),
            (r"\s", "\u{a0}", false),
            (r"\s", "\u{b}", false),
            (r"[[:space:]]", "\u{b}", true),
            (r".*\bé", "x é", false),
            (r"a\bé", "aé", true),
            (r"\pL+", "café", true),
            (r"\p{Greek}+", "αβγ", true),
            // Case folding, as Go folds.
            (r"(?i)k", "\u{212a}", true),
            (r"(?i)\w", "\u{17f}", true),
            (r"\W", "\u{17f}", true),
            // Literals Rust would read otherwise.
            (r"a{,3}", "a{,3}", true),
            (r"a{,3}", "aaa", false),
            (r"\<x\>", "<x>", true),
            (r"\Qa.b\E", "a.b", true),
            (r"\Qa.b\E", "axb", false),
            (r"[a&&b]", "&", true),
            (r"\101", "A", true),
            // Anchors inside the value.
            (r"(?m)a$", "a", true),
            ("a$\n", "a\n", false),
            (r"^a", "a", true),
        ];
        for (pattern, value, expected) in cases {
            let m = CompiledMatcher::compile(&matcher("v", "=~", pattern))
                .unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert_eq!(
                m.matches(&v(value)),
                *expected,
                "{pattern} against {value:?}"
            );
        }
    }

    #[test]
    fn regexes_alertmanager_refuses_are_refused_with_gos_reason() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("a**", "invalid nested repetition operator: `**`"),
            ("(?<n>x)", "invalid or unsupported Perl syntax: `(?<`"),
            ("(?x)a b", "invalid or unsupported Perl syntax: `(?x`"),
            (r"\p{Letter}", r"invalid character class range: `\p{Letter}`"),
            (r"\z\Z", r"invalid escape sequence: `\Z`"),
            ("x{1001}", "invalid repeat count: `{1001}`"),
            ("(a{1000}){1000}", "invalid repeat count: `{1000}`"),
            (r"\Qabc", "missing closing )"),
            ("a\\", "missing closing )"),
        ];
        for (pattern, reason) in cases {
            let err = CompiledMatcher::compile(&matcher("v", "=~", pattern)).unwrap_err();
            assert_eq!(
                err.message,
                format!("invalid regular expression {pattern:?}: {reason}"),
                "{pattern}"
            );
        }
    }

    #[test]
    fn a_costly_regex_is_refused_by_its_compiled_size() {
        let err = CompiledMatcher::compile(&matcher("v", "=~", r"(?:\pL{100}){10}")).unwrap_err();
        assert_eq!(err.field, "value");
        assert_eq!(
            err.message,
            format!(
                r#"regular expression "(?:\\pL{{100}}){{10}}" exceeds the compiled size limit of {MAX_REGEX_COMPILED_BYTES} bytes; use fewer or smaller repetitions"#
            )
        );
        // Big, but within the limit.
        for ok in [
            r"\pL{10}",
            r".{500}",
            r"(?:[a-z0-9-]{1,63}\.){1,4}example\.com",
        ] {
            CompiledMatcher::compile(&matcher("v", "=~", ok))
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn names_and_values_are_bounded() {
        let long_value = "a".repeat(MAX_MATCHER_VALUE_LENGTH + 1);
        let err = CompiledMatcher::compile(&matcher("v", "=", &long_value)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "spec.matchers[0].value: is 4097 bytes long, more than the limit of {MAX_MATCHER_VALUE_LENGTH}"
            )
        );
        let long_name = "n".repeat(MAX_MATCHER_NAME_LENGTH + 1);
        let err = CompiledMatcher::compile(&matcher(&long_name, "=", "")).unwrap_err();
        assert_eq!(err.field, "name");
        let at_limit = "a".repeat(MAX_MATCHER_VALUE_LENGTH);
        CompiledMatcher::compile(&matcher("v", "=", &at_limit)).expect("at the limit");
    }

    #[test]
    fn invalid_names() {
        let err = MatcherSet::compile(&[matcher("x", "=", ""), matcher("", "=", "")]).unwrap_err();
        assert_eq!(err.to_string(), "spec.matchers[1].name: must not be empty");
        let err = MatcherSet::compile(&[matcher("annotations.", "=", "")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"spec.matchers[0].name: annotation key missing after "annotations.""#
        );
    }

    #[test]
    fn compile_all_reports_every_error() {
        let errs = MatcherSet::compile_all(&[
            matcher("a", "=~", "["),
            matcher("b", "=", "ok"),
            matcher("", "=", ""),
        ])
        .unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| (e.index, e.field)).collect();
        assert_eq!(fields, [(0, "value"), (2, "name")]);
    }

    #[test]
    fn a_match_table_reports_what_each_reaction_reports_alone() {
        let sets: Vec<MatcherSet> = [
            vec![
                matcher("severity", "=~", "critical|page"),
                matcher("namespace", "!=", "kube-system"),
                matcher("team", "=", "a"),
            ],
            vec![
                matcher("team", "=", "b"),
                matcher("severity", "=~", "critical|page"),
                matcher("namespace", "!=", "kube-system"),
            ],
            vec![
                matcher("severity", "=~", "warn.*"),
                matcher("team", "=", "a"),
                matcher("annotations.summary", "!~", ".*disk.*"),
            ],
            vec![],
            vec![
                matcher("namespace", "=", ""),
                matcher("severity", "!=", "critical"),
            ],
        ]
        .iter()
        .map(|ms| MatcherSet::compile(ms).unwrap())
        .collect();
        let table = MatchTable::new(&sets);
        assert_eq!(table.distinct_matchers(), 8, "shared matchers counted once");
        let alerts = [
            alert(
                &[
                    ("severity", "critical"),
                    ("namespace", "prod"),
                    ("team", "a"),
                ],
                &[],
            ),
            alert(
                &[("severity", "critical"), ("namespace", "kube-system")],
                &[],
            ),
            alert(
                &[("severity", "warning"), ("team", "a")],
                &[("summary", "disk full")],
            ),
            alert(
                &[("severity", "warning"), ("team", "a")],
                &[("summary", "cpu")],
            ),
            alert(&[("team", "b")], &[]),
            Alert::default(),
        ];
        let mut evaluation = Evaluation::default();
        for a in &alerts {
            table.start(a, &mut evaluation);
            for (i, set) in sets.iter().enumerate() {
                let alone = set.iter().position(|m| !m.matches(a));
                assert_eq!(
                    table.first_failing(i, &mut evaluation),
                    alone,
                    "reaction {i} against {:?} / {:?}",
                    a.labels,
                    a.annotations
                );
            }
        }
    }

    #[test]
    fn display_is_alertmanager_style() {
        let m = CompiledMatcher::compile(&matcher("severity", "=~", "crit.*")).unwrap();
        assert_eq!(m.to_string(), r#"severity=~"crit.*""#);
    }
}
