//! Karo's regex matchers against Alertmanager 0.25's, character for character:
//! alerts with a table of label values are posted to a real Alertmanager, and for
//! each pattern of a table the alerts Alertmanager selects
//! (`GET /api/v2/alerts?filter=v=~"PATTERN"`) must be those Karo's matcher
//! (`karo::core::matching`, as the daemon compiles it) selects. Patterns
//! Alertmanager refuses (400) Karo refuses too.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use karo::core::matching::CompiledMatcher;
use karo::model::alert::Alert;
use karo::model::crd::{MatchOperator, Matcher};
use serde_json::Value;

use crate::support::alertmanager::{Alertmanager, AlertmanagerConfig};
use crate::support::ready::wait_for;
use crate::support::SOON;

/// Label values: Unicode digits and letters, newlines, case, spaces, empty, and
/// what Rust's and Go's syntaxes read differently.
const VALUES: &[&str] = &[
    "123",
    "\u{663}",         // ARABIC-INDIC DIGIT THREE
    "\u{661}\u{662}3", // Arabic-Indic digits and an ASCII one
    "line1\nline2",
    "a\n",
    "MiXeD",
    "mixed",
    "\u{212a}", // KELVIN SIGN, folds to k
    "k",
    "\u{17f}", // LATIN SMALL LETTER LONG S, folds to s
    "café",
    "CAFÉ",
    "αβγ",
    "日本",
    "with space",
    " leading",
    "\u{a0}", // NO-BREAK SPACE
    "\u{b}",  // VERTICAL TAB
    "tab\t",
    "",
    "a{,3}",
    "aaa",
    "<x>",
    "a.b",
    "axb",
    "&",
    "x_y",
    "foo-bar",
    "A",
    "\u{1c5}", // LATIN CAPITAL LETTER D WITH SMALL LETTER Z WITH CARON (titlecase)
];

/// Patterns both accept; the selected alerts must be the same.
const ACCEPTED: &[&str] = &[
    r"\d+",
    r"\d",
    r"[0-9]+",
    r"\D+",
    r"\w+",
    r"\W+",
    r"\s",
    r".*\s.*",
    r"\S+",
    r"[\d\s]+",
    r"[^\w]+",
    r".*",
    r".+",
    r".*\n.*",
    r"(?s).*",
    r"(?s).+",
    r"line1.line2",
    r"(?s)line1.line2",
    r"line1\nline2",
    r"a$",
    r"(?m)a$",
    r"(?m)a$\n",
    r"^a\n",
    r"(?i)mixed",
    r"(?i)MIXED",
    r"(?i)k",
    r"(?i)s",
    r"(?i)\x{17f}",
    r"(?i)café",
    r"(?i)\w",
    r"[[:alpha:]]+",
    r"[[:word:]]+",
    r"[[:space:]]",
    r"[[:^alpha:]]+",
    r"\pL+",
    r"\p{L}+",
    r"\p{Greek}+",
    r"\p{Han}+",
    r"\PL+",
    r"\p{Lu}.*",
    r"\p{Lt}",
    r"\pN+",
    r"\p{Nd}+",
    r"(?i)\p{Lu}+",
    r"a{,3}",
    r"a{3}",
    r"a{1,}",
    r"\<x\>",
    r"\Qa.b\E",
    r"a.b",
    r"a\.b",
    r"[a&&b]",
    r"[&]",
    r"caf\b.*",
    r".*\bé",
    r"caf\B.*",
    r"\x41",
    r"\x{41}",
    r"\101",
    r"\_",
    r"x\_y",
    r"[^a]+",
    r"[^\n]+",
    r"",
    r"(a|b)+",
    r"(?U)a+",
    r"(?P<name>\w+)-bar",
    r".{3}",
    r"[\pL\pN]+",
    r"[^\PL]+",
    r"\p{^Greek}+",
    r"[[a]",
    r"\z",
    r"a\z",
    r"\Aa",
    r"(?i)a(?-i)A",
];

/// Patterns Alertmanager refuses with 400.
const REFUSED: &[&str] = &[
    "(",
    ")",
    "a**",
    "a{2}{3}",
    "(?<n>x)",
    "(?x)a",
    r"\p{Letter}",
    r"\p{greek}",
    r"\Z",
    r"\C",
    r"\8",
    r"\1",
    "x{1001}",
    "(a{1000}){1000}",
    r"\Qabc",
    "[z-a]",
    "[[:foo:]]",
    "(?P=n)",
    "a\\",
    "[a",
];

const ALERT_NAME: &str = "RegexParity";

/// The filter expression that makes Alertmanager compile `pattern` for label `v`.
fn filter(pattern: &str) -> String {
    let escaped = pattern
        .replace('\\', r"\\")
        .replace('\n', r"\n")
        .replace('"', "\\\"");
    format!("v=~\"{escaped}\"")
}

/// `GET /api/v2/alerts?filter=...`: the rows selected, or the status code of a refusal.
async fn alertmanager_selects(am: &Alertmanager, pattern: &str) -> Result<BTreeSet<usize>, u16> {
    let url = format!("{}/api/v2/alerts", am.url());
    let resp = reqwest::Client::new()
        .get(&url)
        .query(&[
            ("filter", filter(pattern)),
            ("filter", format!("alertname=\"{ALERT_NAME}\"")),
        ])
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    if !resp.status().is_success() {
        return Err(resp.status().as_u16());
    }
    let alerts: Vec<Value> = resp.json().await.expect("a JSON list of alerts");
    Ok(alerts
        .iter()
        .filter_map(|a| a["labels"]["row"].as_str()?.parse().ok())
        .collect())
}

fn karo_matcher(pattern: &str) -> Result<CompiledMatcher, String> {
    CompiledMatcher::compile(&Matcher {
        name: "v".into(),
        operator: MatchOperator::RegexMatch,
        value: pattern.into(),
    })
    .map_err(|e| e.to_string())
}

fn rows() -> Vec<Alert> {
    VALUES
        .iter()
        .enumerate()
        .map(|(i, v)| Alert {
            labels: BTreeMap::from([
                ("alertname".to_string(), ALERT_NAME.to_string()),
                ("row".to_string(), i.to_string()),
                ("v".to_string(), v.to_string()),
            ]),
            ..Alert::default()
        })
        .collect()
}

async fn alertmanager_with_rows() -> Alertmanager {
    let am = Alertmanager::start(&AlertmanagerConfig::nowhere()).await;
    for alert in rows() {
        let labels: Vec<(&str, &str)> = alert
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        am.fire(&labels, &[]).await;
    }
    let all: BTreeSet<usize> = (0..VALUES.len()).collect();
    let seen = wait_for(SOON, || async {
        let seen = alertmanager_selects(&am, ".*|(?s).*")
            .await
            .unwrap_or_default();
        (seen.len() == VALUES.len()).then_some(seen)
    })
    .await
    .unwrap_or_else(|e| panic!("Alertmanager never held every row: {e}"));
    assert_eq!(seen, all);
    am
}

#[tokio::test]
async fn karo_selects_what_alertmanager_selects_for_every_pattern() {
    let am = alertmanager_with_rows().await;
    let rows = rows();
    let mut disagreements = Vec::new();
    for pattern in ACCEPTED {
        let theirs = alertmanager_selects(&am, pattern).await;
        let ours = karo_matcher(pattern).map(|m| {
            rows.iter()
                .enumerate()
                .filter(|(_, a)| m.matches(a))
                .map(|(i, _)| i)
                .collect::<BTreeSet<_>>()
        });
        match (&theirs, &ours) {
            (Ok(t), Ok(o)) if t == o => {}
            _ => {
                let show = |set: &BTreeSet<usize>| {
                    format!("{:?}", set.iter().map(|i| VALUES[*i]).collect::<Vec<_>>())
                };
                disagreements.push(format!(
                    "{pattern:?}: Alertmanager {}, Karo {}",
                    theirs
                        .as_ref()
                        .map_or_else(|e| format!("refused ({e})"), show),
                    ours.as_ref()
                        .map_or_else(|e| format!("refused ({e})"), show),
                ));
            }
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[tokio::test]
async fn patterns_alertmanager_refuses_karo_refuses() {
    let am = alertmanager_with_rows().await;
    let mut disagreements = Vec::new();
    for pattern in REFUSED {
        let theirs = alertmanager_selects(&am, pattern).await;
        let ours = karo_matcher(pattern);
        match (&theirs, &ours) {
            (Err(400), Err(message)) => {
                assert!(
                    message.contains(&format!("invalid regular expression {pattern:?}: ")),
                    "{message}"
                );
            }
            _ => disagreements.push(format!(
                "{pattern:?}: Alertmanager {theirs:?}, Karo {:?}",
                ours.as_ref().map(|_| "accepts")
            )),
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// Where Karo is stricter than Alertmanager, on purpose: a value that closes the
/// group Alertmanager anchors it in (Alertmanager then matches unanchored), and a
/// pattern past Karo's compiled size limit.
#[tokio::test]
async fn karo_refuses_what_alertmanager_would_unanchor_or_what_costs_too_much() {
    let am = alertmanager_with_rows().await;
    // `^(?:a)|(b)$`: any value that starts with `a` or ends with `b`.
    let unanchored = alertmanager_selects(&am, "a)|(b").await.expect("accepted");
    assert!(unanchored.contains(&VALUES.iter().position(|v| *v == "a.b").unwrap_or(0)));
    let err = karo_matcher("a)|(b").expect_err("refused");
    assert!(
        err.contains("closes the group Alertmanager anchors it in"),
        "{err}"
    );

    let costly = r"(?:\pL{100}){10}";
    alertmanager_selects(&am, costly)
        .await
        .expect("Alertmanager accepts it");
    let err = karo_matcher(costly).expect_err("refused");
    assert!(err.contains("exceeds the compiled size limit"), "{err}");
}
