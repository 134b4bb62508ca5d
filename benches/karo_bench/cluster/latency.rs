//! (9) Webhook latency of a 1000-alert notification (goal: p99 under 2 s). Karo
//! answers a notification once it has created the Run of each matching alert
//! (`limits.maxConcurrentCreates` at a time), so a notification of 1000 distinct
//! alerts matching one reaction waits for 1000 Runs. `SEQUENTIAL` such
//! notifications are posted one after another, then `PAIRS` times two at once
//! (distinct fingerprints throughout); the latency of every POST is taken client
//! side. The elected runner (the only replica here) creates the Jobs meanwhile, as
//! it would in a cluster, so later posts compete with its backlog.
//!
//! Baseline, measured first in the same run: the same 1000 Runs of a notification
//! created directly (built as Karo builds them), `maxConcurrentCreates` at a time,
//! one notification's worth after another and then two at once, in a namespace no
//! Karo watches.

use super::*;

/// Alerts per notification.
const ALERTS: usize = 1000;
/// Notifications posted one after another.
const SEQUENTIAL: usize = 6;
/// Pairs of notifications posted at once (after the sequential ones).
const PAIRS: usize = 2;
/// The baseline's notifications' worth created one after another, and pairs.
const DIRECT_SEQUENTIAL: usize = 3;
const DIRECT_PAIRS: usize = 2;

/// Notification `i`: alerts `i * ALERTS ..`, all named `alert`.
fn body(i: usize, alert: &str) -> Result<Vec<u8>> {
    let alerts = (i * ALERTS..(i + 1) * ALERTS)
        .map(|k| pure::alert_json(k, alert, "ops"))
        .collect();
    Ok(serde_json::to_vec(&pure::notification_json(alerts))?)
}

/// The objects `api` lists, 500 a page: one list of 20 000 Runs is a long,
/// heavy answer for the API server while the runner still works.
async fn count_paged<K>(api: Api<K>) -> Result<usize>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut total = 0;
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list_metadata(&params).await?;
        total += page.items.len();
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(total),
        }
    }
}

pub async fn run(report: &mut Report) -> Result<()> {
    let begun = Instant::now();
    let cp = ControlPlane::start().await?;
    cp.install_crd().await;
    let mut b = Bench::new(cp).await?;
    let alert = "Big";
    let per_notification = Limits::default().max_concurrent_creates.max(1);

    // Direct.
    let ns = b.cp.namespace("p99-direct").await;
    let ar = b.create_reaction(&ns, alert).await?;
    let runs_api: Api<AlertReactionRun> = Api::namespaced(b.client.clone(), &ns);
    let create_all = |runs: Vec<AlertReactionRun>| {
        let api = runs_api.clone();
        async move {
            let t = Instant::now();
            let made: Vec<Created> = stream::iter(runs.iter())
                .map(|run| {
                    let api = api.clone();
                    async move { create(&api, run).await.0 }
                })
                .buffer_unordered(per_notification)
                .collect()
                .await;
            (
                t.elapsed(),
                made.iter().filter(|c| **c != Created::Yes).count(),
            )
        }
    };
    let mut next = 0;
    let mut direct_one = Vec::new();
    let mut direct_two = Vec::new();
    let mut direct_failed = 0;
    for _ in 0..DIRECT_SEQUENTIAL {
        let runs = b.build_runs(&ar, &[body(next, alert)?])?;
        next += 1;
        let (took, failed) = create_all(runs).await;
        direct_one.push(took);
        direct_failed += failed;
    }
    for _ in 0..DIRECT_PAIRS {
        let x = b.build_runs(&ar, &[body(next, alert)?])?;
        let y = b.build_runs(&ar, &[body(next + 1, alert)?])?;
        next += 2;
        let ((tx, fx), (ty, fy)) = tokio::join!(create_all(x), create_all(y));
        direct_two.extend([tx, ty]);
        direct_failed += fx + fy;
    }
    if direct_failed > 0 {
        report.fail(format!("(9) direct: {direct_failed} Run creations failed"));
    }
    b.settle().await;

    // Through Karo.
    let ns = b.cp.namespace("p99-karo").await;
    b.karo_namespaces.push(ns.clone());
    b.create_reaction(&ns, alert).await?;
    let cm = ConfigMapDir::new(&[(
        "config.yaml",
        &config_yaml("/webhook", std::slice::from_ref(&ns)),
    )])?;
    let karo = b.start_karo(&cm.config()).await?;
    b.wait_loaded(&karo, 1).await?;
    let (http, url) = (&b.http, karo.url());
    wait_until(HANG_GUARD, || async move {
        metric(http, url, "karo_leader")
            .await
            .is_ok_and(|v| v >= 1.0)
    })
    .await
    .context("karo never took the Lease")?;
    b.settle().await;
    let hook = format!("{url}/webhook");
    let before = Probe::take(&b, Some(&karo)).await;
    let t0 = Instant::now();
    let mut one = Vec::new();
    for i in 0..SEQUENTIAL {
        one.push(deliver(&b.http, &hook, body(i, alert)?).await);
    }
    let mut two = Vec::new();
    for p in 0..PAIRS {
        let i = SEQUENTIAL + 2 * p;
        let (x, y) = tokio::join!(
            deliver(&b.http, &hook, body(i, alert)?),
            deliver(&b.http, &hook, body(i + 1, alert)?)
        );
        two.extend([x, y]);
    }
    let took = t0.elapsed();
    let after = Probe::take(&b, Some(&karo)).await;
    let jobs_then = count_paged(Api::<Job>::namespaced(b.client.clone(), &ns)).await?;
    let runs = count_paged(Api::<AlertReactionRun>::namespaced(b.client.clone(), &ns)).await?;
    karo.stop("karo-p99");

    let total = (SEQUENTIAL + 2 * PAIRS) * ALERTS;
    let all: Vec<&Delivery> = one.iter().chain(&two).collect();
    let undelivered = all.iter().filter(|d| !d.ok).count();
    let created: u64 = all
        .iter()
        .filter_map(|d| d.summary.get("created")?.as_u64())
        .sum();
    let retries: usize = all.iter().map(|d| d.attempts - 1).sum();
    if undelivered > 0 || runs != total || created != total as u64 {
        report.fail(format!(
            "(9) {undelivered} notifications never answered 200; {runs} Runs listed and {created} created in the answers, not {total}"
        ));
    }
    for (what, deliveries, direct) in [
        ("one at a time", &one, &direct_one),
        ("two at once", &two, &direct_two),
    ] {
        let latencies = all_latencies(deliveries);
        let p99 = percentile(&latencies, 99.0);
        let (direct_median, ..) =
            stats::median_range(&direct.iter().map(Duration::as_secs_f64).collect::<Vec<_>>());
        report.row(
            format!("9 webhook latency, {ALERTS}-alert notification (1000 Runs), {what}"),
            format!(
                "p50 {} / p99 {} / max {} of {} POSTs",
                stats::dur(percentile(&latencies, 50.0)),
                stats::dur(p99),
                stats::dur(latencies.iter().max().copied().unwrap_or_default()),
                latencies.len(),
            ),
            format!(
                "direct: the {ALERTS} Runs, {per_notification} in flight per notification: {} of {}",
                stats::dur_range(direct),
                direct.len()
            ),
            stats::ratio(p99.as_secs_f64() / direct_median),
            "p99 < 2 s".into(),
            stats::yes_no(p99 < Duration::from_secs(2)),
        );
    }
    report.note(format!(
        "(9) {SEQUENTIAL} notifications of {ALERTS} alerts one after another, then {PAIRS} × 2 at once, in {}; {retries} retried deliveries; the runner had created {jobs_then} of the {total} Jobs by the last answer; {}",
        stats::dur(took),
        before.diff(&after),
    ));
    report.note(format!(
        "(9) took {} with its control plane",
        stats::dur(begun.elapsed())
    ));
    Ok(())
}
