//! The pure core, in process, single-threaded: (1) ingest and match, (6) render.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context as _, Result};
use serde_json::{json, Value};

use karo::core::jobs::{build_job, JobInput, Skeleton};
use karo::core::matching::{alert_name_matches, Evaluation};
use karo::core::plan::Reactions;
use karo::core::reaction::{compile, CompiledReaction};
use karo::core::render::Renderer;
use karo::daemon::index::{Entry, ReactionIndex};
use karo::model::alert::{parse_notification, Notification};
use karo::model::config::{JobDefaults, Policy};
use karo::model::crd::AlertReaction;

use crate::alloc_count::live_after;
use crate::report::Report;
use crate::stats::{self, median, throughput};

/// AlertReactions loaded for (1).
pub const REACTIONS: usize = 10_000;
/// Distinct `alertName`s among them: 100 reactions share each name.
pub const ALERT_NAMES: usize = 100;
/// Alerts per notification, as the issue asks.
pub const SIZES: [usize; 3] = [1, 100, 1000];
/// Timed rounds per figure (index and scan interleaved); the median is reported.
const ROUNDS: usize = 5;
const ROUND_BUDGET: Duration = Duration::from_millis(200);

pub fn alert_name(i: usize) -> String {
    format!("Alert{:03}", i % ALERT_NAMES)
}

/// The order of a reaction's matchers, which decides how many of them run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The failing `team` matcher last: every matcher runs (the regex included).
    FailingLast,
    /// The failing `team` matcher first: one string comparison per reaction.
    FailingFirst,
}

impl Order {
    fn describe(self) -> &'static str {
        match self {
            Order::FailingLast => "every matcher runs",
            Order::FailingFirst => "failing matcher first",
        }
    }
}

/// Reaction `i` of the 10 000: alert name `Alert<i % 100>`, three matchers of
/// which two hold for the benchmark's alerts and one (`team`) does not, so that
/// nothing matches.
pub fn reaction_json(i: usize, order: Order) -> Value {
    let mut matchers = vec![
        json!({"name": "severity", "operator": "=~", "value": "critical|page"}),
        json!({"name": "namespace", "operator": "!=", "value": "kube-system"}),
        json!({"name": "team", "operator": "=", "value": format!("team-{i}")}),
    ];
    if order == Order::FailingFirst {
        matchers.rotate_right(1);
    }
    json!({
        "metadata": {
            "name": format!("r-{i:05}"),
            "namespace": "bench",
            "uid": format!("00000000-0000-0000-0000-{i:012}"),
            "generation": 1,
        },
        "spec": {
            "alertName": alert_name(i),
            "matchers": matchers,
            "actions": [{
                "name": "remediate",
                "image": "busybox:1.36",
                "command": ["sh", "-c"],
                "args": ["echo {{labels.instance}}: {{annotations.summary}}"],
            }],
        },
    })
}

/// An alert as Alertmanager 0.25 sends it (with its fingerprint).
pub fn alert_json(k: usize, name: &str, team: &str) -> Value {
    json!({
        "status": "firing",
        "labels": {
            "alertname": name,
            "instance": format!("node-{k}.prod.example:9100"),
            "job": "node",
            "namespace": "prod",
            "severity": "critical",
            "team": team,
        },
        "annotations": {
            "summary": format!("Disk of node-{k} is 93% full"),
            "runbook_url": "https://runbooks.example.com/disk-full",
        },
        "startsAt": "2026-11-26T10:00:00.123456789Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=disk",
        "fingerprint": format!("{:016x}", (k as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
    })
}

/// A notification as Alertmanager 0.25 sends it.
pub fn notification_json(alerts: Vec<Value>) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=~\".*\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "karo",
        "groupLabels": {},
        "commonLabels": {"job": "node", "namespace": "prod", "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    })
}

/// Bodies of `size` alerts each, 1000 alerts in all (at least one body).
fn bodies(size: usize) -> Vec<Vec<u8>> {
    let count = (1000 / size).max(1);
    (0..count)
        .map(|b| {
            let alerts = (0..size)
                .map(|j| {
                    let k = b * size + j;
                    alert_json(k, &alert_name(k), "nobody")
                })
                .collect();
            serde_json::to_vec(&notification_json(alerts)).expect("serialising a notification")
        })
        .collect()
}

/// The 10 000 reactions, compiled as the controller compiles them.
pub fn compiled_reactions(renderer: &Renderer, order: Order) -> Result<Vec<Arc<CompiledReaction>>> {
    let policy = Policy::default();
    (0..REACTIONS)
        .map(|i| {
            let ar: AlertReaction = serde_json::from_value(reaction_json(i, order))?;
            let c = compile(&ar, renderer, &policy).map_err(|e| anyhow!("reaction {i}: {e}"))?;
            Ok(Arc::new(c))
        })
        .collect()
}

fn index_of(reactions: &[Arc<CompiledReaction>]) -> ReactionIndex {
    let index = ReactionIndex::default();
    index.replace_all(
        reactions
            .iter()
            .map(|r| {
                (
                    (r.namespace.clone(), r.name.clone()),
                    Entry::Ready(r.clone()),
                )
            })
            .collect(),
    );
    index
}

fn parse(body: &[u8]) -> Notification {
    parse_notification(body, jiff::Timestamp::now()).expect("a valid benchmark body")
}

/// The webhook's path: parse, look the alert name up in the index, evaluate the
/// matchers (and `triggerOn`) of each reaction found through the alert name's
/// match table, as `plan` does. Returns (alerts, matches).
#[inline(never)]
fn ingest_index(index: &ReactionIndex, body: &[u8]) -> (u64, u64) {
    let n = parse(body);
    let mut matched = 0;
    let mut evaluation = Evaluation::default();
    for alert in &n.alerts {
        let Some(group) = index.for_alert(alert.alert_name()) else {
            continue;
        };
        for (r, failing) in group.evaluate(alert, &mut evaluation) {
            if failing.is_none() && r.spec.trigger_on.contains(&alert.status) {
                matched += 1;
            }
        }
    }
    (n.alerts.len() as u64, matched)
}

/// The earlier implementation's path: every reaction for every alert, the alert
/// name compared first (a label lookup per reaction, as Go's
/// `alert.Labels["alertname"] != r.Spec.AlertName`), then the matchers.
#[inline(never)]
fn ingest_scan(all: &[Arc<CompiledReaction>], body: &[u8]) -> (u64, u64) {
    let n = parse(body);
    let mut matched = 0;
    for alert in &n.alerts {
        for r in all {
            if alert_name_matches(&r.spec.alert_name, alert)
                && r.matchers.matches(alert)
                && r.spec.trigger_on.contains(&alert.status)
            {
                matched += 1;
            }
        }
    }
    (n.alerts.len() as u64, matched)
}

/// Parsing alone, to separate its share.
#[inline(never)]
fn ingest_parse_only(body: &[u8]) -> (u64, u64) {
    let n = parse(body);
    (black_box(&n).alerts.len() as u64, 0)
}

/// The loop `--profile ingest` runs (under callgrind): index path, 100-alert bodies.
#[inline(never)]
pub fn profile_ingest_loop(index: &ReactionIndex, bodies: &[Vec<u8>], rounds: usize) -> u64 {
    let mut alerts = 0;
    for _ in 0..rounds {
        for b in bodies {
            alerts += black_box(ingest_index(index, b)).0;
        }
    }
    alerts
}

/// `KARO_BENCH_PROFILE_ROUNDS` rounds (default 2) of 1000 alerts, with the
/// failing matcher last (or first with `KARO_BENCH_PROFILE_ORDER=first`).
pub fn profile_ingest() -> Result<()> {
    let renderer = Renderer::new();
    let order = match std::env::var("KARO_BENCH_PROFILE_ORDER").as_deref() {
        Ok("first") => Order::FailingFirst,
        _ => Order::FailingLast,
    };
    let reactions = compiled_reactions(&renderer, order)?;
    let index = index_of(&reactions);
    let bodies = bodies(100);
    let rounds = std::env::var("KARO_BENCH_PROFILE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2);
    let alerts = profile_ingest_loop(&index, &bodies, rounds);
    println!("profiled {alerts} alerts through the index path");
    Ok(())
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

pub fn ingest_and_match(report: &mut Report) -> Result<()> {
    for order in [Order::FailingLast, Order::FailingFirst] {
        ingest_and_match_with(report, order)?;
    }
    Ok(())
}

fn ingest_and_match_with(report: &mut Report, order: Order) -> Result<()> {
    let renderer = Renderer::new();
    let started = Instant::now();
    let rss_before = rss_kib();
    let reactions = compiled_reactions(&renderer, order)?;
    let index = index_of(&reactions);
    let compiled_in = started.elapsed();

    // The setup finds exactly what it should, through both paths.
    let probe = serde_json::to_vec(&notification_json(vec![alert_json(
        5,
        &alert_name(5),
        "team-5",
    )]))?;
    ensure!(
        ingest_index(&index, &probe) == (1, 1),
        "index path: the probe alert should match reaction 5 only"
    );
    ensure!(
        ingest_scan(&reactions, &probe) == (1, 1),
        "scan path: the probe alert should match reaction 5 only"
    );

    let mut per_alert = Vec::new();
    for size in SIZES {
        let bodies = bodies(size);
        let mut cursor = 0usize;
        let mut next = || {
            cursor = (cursor + 1) % bodies.len();
            &bodies[cursor]
        };
        // Warm-up (every regex's cache made), untimed.
        for b in &bodies {
            black_box(ingest_index(&index, b));
        }
        let (mut idx, mut scan, mut parse_only) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            idx.push(throughput(ROUND_BUDGET, || {
                let (a, m) = ingest_index(&index, next());
                assert_eq!(m, 0, "no benchmark alert matches");
                a
            }));
            scan.push(throughput(ROUND_BUDGET, || {
                let (a, m) = ingest_scan(&reactions, next());
                assert_eq!(m, 0, "no benchmark alert matches");
                a
            }));
            parse_only.push(throughput(ROUND_BUDGET / 2, || ingest_parse_only(next()).0));
        }
        let (idx, scan, parse_only) = (median(&idx), median(&scan), median(&parse_only));
        let ratio = idx / scan;
        report.row(
            format!(
                "1 ingest+match, {size} alert(s)/notification, {}",
                order.describe()
            ),
            format!("{} (1 core)", stats::rate(idx)),
            format!("scan: {}", stats::rate(scan)),
            stats::ratio(ratio),
            "≥ 20x scan; ≥ 100 000/s".into(),
            stats::yes_no(ratio >= 20.0 && idx >= 100_000.0),
        );
        // Time per alert: parsing, and matching alone (parse subtracted).
        per_alert.push(format!(
            "{size}/notification: parse {:.1} µs, match {:.1} µs (index) vs {:.1} µs (scan)",
            1e6 / parse_only,
            (1.0 / idx - 1.0 / parse_only) * 1e6,
            (1.0 / scan - 1.0 / parse_only) * 1e6,
        ));
    }
    report.note(format!(
        "(1) {}: {REACTIONS} reactions ({ALERT_NAMES} alert names, so 100 reactions to evaluate per alert; matchers `severity=~\"critical|page\"`, `namespace!=\"kube-system\"`, `team=\"team-<i>\"`, the `team` one failing {}) compiled and indexed in {}{}; per alert: {}",
        order.describe(),
        match order {
            Order::FailingLast => "and last",
            Order::FailingFirst => "and first",
        },
        stats::dur(compiled_in),
        // The first set measured only: the second reuses the first's freed memory.
        match order {
            Order::FailingLast => format!(
                " (this process's RSS grew by {})",
                stats::mib(rss_kib().saturating_sub(rss_before))
            ),
            Order::FailingFirst => String::new(),
        },
        per_alert.join("; "),
    ));
    Ok(())
}

/// An action whose 10 strings are templates, or the same action with 10 plain
/// strings of about the same length.
fn render_reaction(templated: bool) -> Value {
    let strings: [(&str, &str); 10] = [
        ("{{labels.instance}}", "node-7.prod.example:9100"),
        ("{{annotations.summary}}", "Disk of node-7 is 93% full"),
        ("--severity={{labels.severity}}", "--severity=critical"),
        ("{{lower labels.namespace}}", "prod"),
        ("{{default labels.pod \"none\"}}", "none"),
        ("{{fingerprint}}", "0123456789abcdef"),
        ("{{status}}", "firing"),
        ("{{alert.startsAt}}", "2026-11-26T10:00:00.123456789Z"),
        (
            "{{json labels}}",
            "{\"alertname\":\"Render\",\"job\":\"node\"}",
        ),
        ("{{group.receiver}}", "karo"),
    ];
    let pick = |i: usize| {
        if templated {
            strings[i].0
        } else {
            strings[i].1
        }
    };
    json!({
        "metadata": {"name": "render", "namespace": "bench", "uid": "00000000-0000-0000-0000-00000000beef", "generation": 1},
        "spec": {
            "alertName": "Render",
            "actions": [{
                "name": "remediate",
                "image": "registry.example.com/ops/tool:1.4",
                "command": ["/bin/sh", "-c"],
                "args": (0..8).map(pick).collect::<Vec<_>>(),
                "env": [
                    {"name": "ALERT_LABELS", "value": pick(8)},
                    {"name": "RECEIVER", "value": pick(9)},
                ],
            }],
        },
    })
}

struct RenderFixture {
    renderer: Renderer,
    skeleton: Skeleton,
    defaults: JobDefaults,
    notification: Notification,
}

impl RenderFixture {
    fn new() -> Result<Self> {
        let renderer = Renderer::new();
        let skeleton = Skeleton::builtin().map_err(anyhow::Error::msg)?;
        let body = serde_json::to_vec(&notification_json(vec![alert_json(7, "Render", "ops")]))?;
        Ok(RenderFixture {
            renderer,
            skeleton,
            defaults: JobDefaults::default(),
            notification: parse(&body),
        })
    }

    fn reaction(&self, templated: bool) -> Result<CompiledReaction> {
        let ar: AlertReaction = serde_json::from_value(render_reaction(templated))?;
        compile(&ar, &self.renderer, &Policy::default()).map_err(|e| anyhow!("{e}"))
    }

    #[inline(never)]
    fn build(&self, reaction: &CompiledReaction) -> k8s_openapi::api::batch::v1::Job {
        build_job(&JobInput {
            reaction,
            source: &reaction.sources[0],
            alert: &self.notification.alerts[0],
            notification: &self.notification,
            renderer: &self.renderer,
            skeleton: &self.skeleton,
            defaults: &self.defaults,
        })
        .expect("the benchmark Job renders")
    }
}

/// The loop `--profile render` runs (under callgrind).
#[inline(never)]
pub fn profile_render_loop(n: usize) -> Result<usize> {
    let f = RenderFixture::new()?;
    let reaction = f.reaction(true)?;
    for _ in 0..n {
        black_box(f.build(&reaction));
    }
    Ok(n)
}

pub fn render(report: &mut Report) -> Result<()> {
    let f = RenderFixture::new()?;
    let templated = f.reaction(true)?;
    let plain = f.reaction(false)?;
    // Check the fixture: the templated Job carries the rendered values.
    let job = f.build(&templated);
    let args = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers[0].args.clone().unwrap_or_default())
        .context("the rendered Job has a container")?;
    ensure!(
        args.first().map(String::as_str) == Some("node-7.prod.example:9100"),
        "rendered args: {args:?}"
    );
    for _ in 0..100 {
        black_box(f.build(&templated));
        black_box(f.build(&plain));
    }
    let (mut t, mut p) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        t.push(throughput(ROUND_BUDGET, || {
            black_box(f.build(&templated));
            1
        }));
        p.push(throughput(ROUND_BUDGET, || {
            black_box(f.build(&plain));
            1
        }));
    }
    let (t, p) = (median(&t), median(&p));
    report.row(
        "6 render (build_job), 10 templated strings".into(),
        format!("{} Jobs (1 core)", stats::rate(t)),
        format!("10 plain strings: {}", stats::rate(p)),
        stats::ratio(t / p),
        "—".into(),
        "—".into(),
    );
    report.note(format!(
        "(6) {:.1} µs per Job with 10 templated strings, {:.1} µs with plain ones: {:.2} µs per template string; both include the ~20 templated strings of the built-in Job skeleton (templates/job.yaml)",
        1e6 / t,
        1e6 / p,
        (1e6 / t - 1e6 / p) / 10.0
    ));
    Ok(())
}

/// What the memory of 10 000 compiled reactions is made of (heap bytes, counted
/// by the benchmark's allocator), as a lead for (4).
pub fn memory_of_reactions(report: &mut Report) -> Result<()> {
    let renderer = Renderer::new();
    let (reactions, compiled) = live_after(|| compiled_reactions(&renderer, Order::FailingLast));
    let reactions = reactions?;
    let notification = parse(&bodies(1)[0]);
    let alert = &notification.alerts[0];
    // Every matcher runs (the regex included): each regex makes its search cache.
    let ((), first_use) = live_after(|| {
        for r in &reactions {
            black_box(r.matchers.matches(alert));
        }
    });
    let (regexes, regex_compiled) = live_after(|| {
        (0..REACTIONS)
            .map(|_| regex::Regex::new("^(?s:critical|page)$"))
            .collect::<Result<Vec<_>, _>>()
    });
    let regexes = regexes?;
    let ((), regex_first_use) = live_after(|| {
        for r in &regexes {
            black_box(r.is_match("critical"));
        }
    });
    let kib = |b: i64| b as f64 / 1024.0;
    report.note(format!(
        "(4) heap of {REACTIONS} compiled reactions (3 matchers, 1 action each), counted in process: {:.1} MiB compiled, {:.1} MiB more once each has matched ({:.1} KiB per reaction); for scale, one `regex::Regex` of `^(?s:critical|page)$` built on its own takes {:.1} KiB, +{:.1} KiB of search cache after its first match",
        kib(compiled) / 1024.0,
        kib(first_use) / 1024.0,
        kib(compiled + first_use) / REACTIONS as f64,
        kib(regex_compiled) / REACTIONS as f64,
        kib(regex_first_use) / REACTIONS as f64,
    ));
    Ok(())
}
