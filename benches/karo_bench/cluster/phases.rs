//! The measured phases: (2) alert to Job, (2b) the writes of a Run's life, (3)
//! duplicate storm, (5) reload and (4) memory with 10 000 reactions.

use std::collections::HashSet;

use super::*;

/// Where (2b) starts from: the probe taken before the first post, the direct
/// client's writes, and, when not every Job existed by the hang guard, the Job
/// count still running with the time of the first post.
pub(super) struct LifeStart<'a> {
    before: &'a Probe,
    direct_writes: &'a RunWrites,
    late: Option<(Counter, Instant)>,
}

/// What one round of (2) measured.
pub(super) struct E2eRound {
    /// The direct client's time for every Run and Job.
    direct: Duration,
    /// From the first post until every Job existed; `None` past the hang guard.
    karo: Option<Duration>,
    /// Jobs seen by then.
    seen: usize,
    /// From the first post until the last answer.
    answered: Duration,
    /// Every webhook attempt's latency.
    latencies: Vec<Duration>,
    /// Occurrences in flight in the direct client.
    concurrency: usize,
}

/// The row of (2) for `n` alerts per notification: the median of the rounds and
/// their range, Karo's time against the direct client's of the same round.
pub(super) fn alert_to_job_row(n: usize, rounds: &[E2eRound], report: &mut Report) {
    let Some(first) = rounds.first() else {
        return;
    };
    let direct: Vec<Duration> = rounds.iter().map(|r| r.direct).collect();
    let direct_rates: Vec<f64> = direct
        .iter()
        .map(|d| JOBS as f64 / d.as_secs_f64())
        .collect();
    let answered: Vec<Duration> = rounds.iter().map(|r| r.answered).collect();
    let latencies: Vec<Duration> = rounds
        .iter()
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    let webhook = format!(
        "last answer {}; webhook p50 {} / p99 {} ({} posts)",
        stats::dur_range(&answered),
        stats::dur(percentile(&latencies, 50.0)),
        stats::dur(percentile(&latencies, 99.0)),
        latencies.len(),
    );
    let hung: Vec<String> = rounds
        .iter()
        .enumerate()
        .filter(|(_, r)| r.karo.is_none())
        .map(|(i, r)| format!("round {}: only {} of {JOBS} Jobs", i + 1, r.seen))
        .collect();
    // A round past the hang guard counts as the hang guard: a lower bound.
    let karo: Vec<Duration> = rounds
        .iter()
        .map(|r| r.karo.unwrap_or(HANG_GUARD))
        .collect();
    let karo_rates: Vec<f64> = karo.iter().map(|d| JOBS as f64 / d.as_secs_f64()).collect();
    let ratios: Vec<f64> = rounds
        .iter()
        .zip(&karo)
        .map(|(r, k)| k.as_secs_f64() / r.direct.as_secs_f64())
        .collect();
    let (median_ratio, ..) = stats::median_range(&ratios);
    let karo_figure = if hung.is_empty() {
        format!(
            "{} ({}) until every Job exists; {webhook}",
            stats::dur_range(&karo),
            stats::rate_range(&karo_rates),
        )
    } else {
        format!(
            "{} ({}) until every Job exists, {} past the {} hang guard ({}), counted as {}; {webhook}",
            stats::dur_range(&karo),
            stats::rate_range(&karo_rates),
            hung.len(),
            stats::dur(HANG_GUARD),
            hung.join(", "),
            stats::dur(HANG_GUARD),
        )
    };
    report.row(
        format!(
            "2 alert→Job, {JOBS} Runs + Jobs, {n} alert(s)/notification, median (min–max) of {} rounds",
            rounds.len()
        ),
        karo_figure,
        format!(
            "direct Run then Job, {} in flight: {} ({})",
            first.concurrency,
            stats::dur_range(&direct),
            stats::rate_range(&direct_rates),
        ),
        format!(
            "{}{}",
            if hung.is_empty() { "" } else { "≥ " },
            stats::ratio_range(&ratios)
        ),
        "≤ 1.25x".into(),
        stats::yes_no(hung.is_empty() && median_ratio <= 1.25),
    );
}

impl Bench {
    /// (2) and (2b), round `round` (from 0): 1000 distinct matching alerts in
    /// notifications of `n`, directly and then through Karo, each in a fresh
    /// namespace; in the first round, Karo's Jobs are then finished and the API
    /// writes of the Runs' whole life counted (2b). Returns what the round measured
    /// and whether the API server settled after Karo's work.
    pub(super) async fn alert_to_job(
        &mut self,
        karo: &Karo,
        n: usize,
        karo_ns: &str,
        round: usize,
        report: &mut Report,
    ) -> Result<(E2eRound, bool)> {
        // Each round its own alert name: the reactions of the earlier rounds (in
        // namespaces Karo still watches) do not match its alerts.
        let alert = format!("E2E{n}R{round}");
        let tag = format!("{n}/notification, round {}", round + 1);
        // Karo's webhook creates the Runs of one notification `maxConcurrentCreates`
        // at a time, and IN_FLIGHT notifications are handled at once: the direct
        // client gets the same number of occurrences in flight.
        let per_notification = Limits::default().max_concurrent_creates.max(1);
        let concurrency = IN_FLIGHT * n.min(per_notification);
        let alerts: Vec<Value> = (0..JOBS)
            .map(|k| pure::alert_json(k, &alert, "ops"))
            .collect();
        let bodies: Vec<Vec<u8>> = alerts
            .chunks(n)
            .map(|c| serde_json::to_vec(&pure::notification_json(c.to_vec())))
            .collect::<Result<_, _>>()?;

        // Direct: the Runs are built beforehand; only the creation of each Run and
        // then of its Job is timed.
        let ns = self.cp.namespace(&format!("direct-{n}-{round}")).await;
        let ar = self.create_reaction(&ns, &alert).await?;
        let runs = self.build_runs(&ar, &bodies)?;
        ensure!(runs.len() == JOBS, "built {} Runs", runs.len());
        let runs_api: Api<AlertReactionRun> = Api::namespaced(self.client.clone(), &ns);
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let before = Probe::take(self, Some(karo)).await;
        let t0 = Instant::now();
        let results: Vec<(Duration, Created, Option<Created>)> = stream::iter(runs.iter())
            .map(|run| create_occurrence(&runs_api, &jobs_api, run))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let direct = t0.elapsed();
        let after = Probe::take(self, Some(karo)).await;
        let direct_cost = before.diff(&after);
        let direct_writes = RunWrites::of(&writes(&before, &after));
        let failed = results
            .iter()
            .filter(|(_, r, j)| *r != Created::Yes || *j != Some(Created::Yes))
            .count();
        if failed > 0 {
            report.fail(format!("(2) direct, {tag}: {failed} occurrences failed"));
        }
        let listed = self.count_jobs(&ns).await?;
        if listed != JOBS {
            report.fail(format!("(2) direct, {tag}: {listed} Jobs, not {JOBS}"));
        }
        let direct_latencies: Vec<Duration> = results.iter().map(|(d, ..)| *d).collect();
        self.settle().await;

        // Through Karo: from the first post until every Job exists.
        let ns = karo_ns;
        self.create_reaction(ns, &alert).await?;
        self.wait_loaded(karo, self.loaded).await?;
        // The reaction's Ready condition is written before the window opens.
        self.settle().await;
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let mut jobs_seen = Counter::start(jobs_api.clone(), |_| true).await?;
        let hook = format!("{}/webhook", karo.url());
        let before = Probe::take(self, Some(karo)).await;
        let t0 = Instant::now();
        let (deliveries, answered) = self
            .deliver_all(&hook, bodies, &format!("e2e-karo-{n}-{round}"))
            .await;
        let at_answers = Probe::take(self, Some(karo)).await;
        let jobs_at = jobs_seen.reached(JOBS).await;
        let undelivered = deliveries.iter().filter(|d| !d.ok).count();
        let retries: usize = deliveries.iter().map(|d| d.attempts - 1).sum();
        if undelivered > 0 {
            report.fail(format!(
                "(2) karo, {tag}: {undelivered} notifications never answered 200"
            ));
        }
        let measured = E2eRound {
            direct,
            karo: jobs_at
                .as_ref()
                .ok()
                .map(|at| at.saturating_duration_since(t0)),
            seen: jobs_seen.count(),
            answered,
            latencies: all_latencies(&deliveries),
            concurrency,
        };
        let summary = format!(
            "Karo answered created {}, deduplicated {}, failed {}, {retries} retried deliveries",
            count(&deliveries, "created"),
            count(&deliveries, "deduplicated"),
            count(&deliveries, "failed"),
        );
        if round > 0 {
            // Only the first round goes on to (2b); here the Runs stay Running.
            drop(jobs_seen);
            let tail = self.settle().await;
            let listed = self.count_jobs(ns).await?;
            let run_count: usize = self.count_runs(ns).await?.values().sum();
            if run_count != JOBS || listed != JOBS {
                report.fail(format!(
                    "(2) karo, {tag}: {listed} Jobs and {run_count} Runs, not {JOBS}"
                ));
            }
            report.note(format!(
                "(2) {tag}: direct {}, Karo {} until every Job exists ({}), last answer {}; {summary}; the API server quiet {} after",
                stats::dur(direct),
                measured.karo.map_or_else(|| format!("> {}", stats::dur(HANG_GUARD)), stats::dur),
                if measured.karo.is_some() { format!("{JOBS} Jobs") } else { format!("{} Jobs", measured.seen) },
                stats::dur(answered),
                settled(tail),
            ));
            return Ok((measured, tail.is_some()));
        }
        // Past the hang guard, the count goes on while (2b) finishes the Jobs
        // that exist (the Runs' outcome only ever helps Karo).
        let late = jobs_at.is_err().then_some((jobs_seen, t0));
        // Every Run's status says Running (the runner writes it after the Job):
        // (2b) then starts from Runs whose Jobs are all followed.
        let running = match &jobs_at {
            Ok(_) => {
                let runs_api: Api<AlertReactionRun> = Api::namespaced(self.client.clone(), ns);
                let mut running = Counter::start(runs_api, |r| {
                    matches!(
                        r.status.as_ref().and_then(|s| s.phase),
                        Some(RunPhase::Running | RunPhase::Succeeded)
                    )
                })
                .await?;
                running
                    .reached(JOBS)
                    .await
                    .map(|at| at.saturating_duration_since(t0))
            }
            Err(_) => Err(anyhow!("not every Job exists")),
        };
        let jobs_done = Probe::take(self, Some(karo)).await;
        let karo_cost = before.diff(&jobs_done);
        let listed = self.count_jobs(ns).await?;
        let runs = self.count_runs(ns).await?;
        let run_count: usize = runs.values().sum();
        if run_count != JOBS || (jobs_at.is_ok() && listed != JOBS) {
            report.fail(format!(
                "(2) karo, {tag}: {listed} Jobs and {run_count} Runs, not {JOBS}"
            ));
        }
        report.note(format!(
            "(2) {tag}: direct {}, Karo {} until every Job exists, last answer {}; {} notifications, {IN_FLIGHT} in flight (≤ {concurrency} Run creates in flight in Karo's webhook); {summary}; Runs by phase once the Jobs existed: {runs:?}; direct Run + Job latency p50 {} / p99 {}",
            stats::dur(direct),
            measured.karo.map_or_else(|| format!("> {}", stats::dur(HANG_GUARD)), stats::dur),
            stats::dur(answered),
            JOBS.div_ceil(n),
            stats::dur(percentile(&direct_latencies, 50.0)),
            stats::dur(percentile(&direct_latencies, 99.0)),
        ));
        let early = RunWrites::of(&writes(&before, &at_answers));
        report.note(format!(
            "(2) {tag}, writes by the last webhook answer ({}): {:.0} POST alertreactionruns, {:.0} POST jobs (the runner already at work), {:.0} other (Run status {:.0}, reaction status {:.0}, Events {:.0})",
            stats::dur(answered),
            early.runs,
            early.jobs,
            early.total() - early.runs - early.jobs,
            early.run_status,
            early.reaction_status,
            early.events,
        ));
        report.note(format!(
            "(2) {tag}, from the first post until every Run was Running ({}): {karo_cost}",
            match running {
                Ok(d) => stats::dur(d),
                Err(e) => format!("{e:#}"),
            }
        ));
        report.note(format!(
            "(2) {tag}, while the direct client worked: {direct_cost}"
        ));

        let start = LifeStart {
            before: &before,
            direct_writes: &direct_writes,
            late,
        };
        let settled = self.run_life(karo, ns, n, start, report).await?;
        Ok((measured, settled))
    }

    /// (2b): every Job of `ns` marked finished as the Job controller would, until
    /// every Run is `Succeeded`; then the writes since `before` (the first post)
    /// per occurrence. Returns whether the API server settled.
    async fn run_life(
        &self,
        karo: &Karo,
        ns: &str,
        n: usize,
        start: LifeStart<'_>,
        report: &mut Report,
    ) -> Result<bool> {
        let LifeStart {
            before,
            direct_writes,
            late,
        } = start;
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let runs_api: Api<AlertReactionRun> = Api::namespaced(self.client.clone(), ns);
        let mut succeeded = Counter::start(runs_api, |r| {
            r.status.as_ref().and_then(|s| s.phase) == Some(RunPhase::Succeeded)
        })
        .await?;
        // A Job controller completing every Job it sees: all of them at once when
        // they all exist, else each as it appears.
        let t0 = Instant::now();
        let mut finished: HashSet<String> = HashSet::new();
        let mut failed: Vec<anyhow::Error> = Vec::new();
        while finished.len() < JOBS && t0.elapsed() < HANG_GUARD {
            let names: Vec<String> = jobs_api
                .list(&ListParams::default().match_any())
                .await?
                .items
                .into_iter()
                .filter_map(|j| j.metadata.name)
                .filter(|name| !finished.contains(name))
                .collect();
            let patched: Vec<(String, Result<()>)> = stream::iter(names)
                .map(|name| async {
                    let r = finish_job(&jobs_api, &name).await;
                    (name, r)
                })
                .buffer_unordered(FINISH_CONCURRENCY)
                .collect()
                .await;
            for (name, r) in patched {
                match r {
                    Ok(()) => {
                        finished.insert(name);
                    }
                    Err(e) => failed.push(e),
                }
            }
            if finished.len() < JOBS {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        let patched_in = t0.elapsed();
        if let (Some(e), true) = (failed.first(), finished.len() < JOBS) {
            report.fail(format!(
                "(2b) {n}/notification: {} Job status patches failed, e.g. {e:#}",
                failed.len()
            ));
        }
        if let Some((mut jobs_seen, first_post)) = late {
            match jobs_seen.reached(JOBS).await {
                Ok(at) => report.note(format!(
                    "(2) {n}/notification: every Job existed {} after the first post, while (2b) finished the Jobs as they appeared",
                    stats::dur(at.saturating_duration_since(first_post))
                )),
                Err(e) => report.fail(format!(
                    "(2) karo, {n}/notification: not every Job was created: {e:#}"
                )),
            }
        }
        let all = succeeded.reached(JOBS).await;
        let seen = succeeded.count();
        drop(succeeded);
        let tail = self.settle().await;
        let end = Probe::take(self, Some(karo)).await;
        let succeeded_in = match all {
            Ok(at) => at.saturating_duration_since(t0),
            Err(e) => {
                report.fail(format!(
                    "(2b) {n}/notification: {seen} of {JOBS} Runs Succeeded: {e:#}"
                ));
                return Ok(tail.is_some());
            }
        };
        let life = RunWrites::of(&writes(before, &end));
        let window = end.at.saturating_duration_since(before.at);
        let per = life.total() / JOBS as f64;
        let direct_per = direct_writes.total() / JOBS as f64;
        let refused = if life.refused >= 1.0 {
            format!(", of which {:.0} refused (not 2xx)", life.refused)
        } else {
            String::new()
        };
        report.row(
            format!("2b writes per occurrence over a Run's life, {n} alert(s)/notification"),
            format!(
                "{}{refused}; leases apart: {:.2}/s",
                life.per(JOBS),
                life.leases / window.as_secs_f64().max(1e-3)
            ),
            format!("direct: {direct_per:.2} (Run, Job)"),
            stats::ratio(per / direct_per.max(1e-9)),
            "3 (Run, Job, one status write)".into(),
            stats::yes_no(per <= 3.0 + 0.5 / JOBS as f64),
        );
        report.note(format!(
            "(2b) {n}/notification: the {} Jobs marked Complete ({FINISH_CONCURRENCY} status PATCHes in flight, {:.0} PATCH jobs/status, the benchmark's own and not counted) in {}; every Run Succeeded {} after the first status patch; the API server quiet {} after; window from the first post {} ({:.0} lease writes)",
            finished.len(),
            life.bench,
            stats::dur(patched_in),
            stats::dur(succeeded_in),
            settled(tail),
            stats::dur(window),
            life.leases,
        ));
        report.note(format!(
            "(2b) {n}/notification, from the first post until quiet after the last Run Succeeded: {}",
            before.diff(&end)
        ));
        Ok(tail.is_some())
    }

    /// (3): the same notification 1000 times; exactly one Run and one Job.
    pub(super) async fn storm(
        &mut self,
        karo: &Karo,
        karo_ns: &str,
        report: &mut Report,
    ) -> Result<bool> {
        let alert = "Storm";
        let body = serde_json::to_vec(&pure::notification_json(vec![pure::alert_json(
            424_242, alert, "ops",
        )]))?;

        // Direct: the same Run created 1000 times (one 201, then 409s); the create
        // that made it creates its Job.
        let ns = self.cp.namespace("storm-direct").await;
        let ar = self.create_reaction(&ns, alert).await?;
        let run = self
            .build_runs(&ar, std::slice::from_ref(&body))?
            .pop()
            .context("one Run")?;
        let runs_api: Api<AlertReactionRun> = Api::namespaced(self.client.clone(), &ns);
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let before = Probe::take(self, Some(karo)).await;
        let pprof = self.profile_apiserver("storm-direct", 3);
        let t0 = Instant::now();
        let results: Vec<(Duration, Created, Option<Created>)> = stream::iter(0..STORM)
            .map(|_| create_occurrence(&runs_api, &jobs_api, &run))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let direct = t0.elapsed();
        let direct_cost = before.diff(&Probe::take(self, Some(karo)).await);
        if let Some(p) = pprof {
            let _ = p.await;
        }
        let direct_conflicts = results
            .iter()
            .filter(|(_, c, _)| *c == Created::AlreadyExists)
            .count();
        let direct_failed: Vec<&String> = results
            .iter()
            .filter_map(|(_, r, j)| match (r, j) {
                (Created::Failed(e), _) | (_, Some(Created::Failed(e))) => Some(e),
                _ => None,
            })
            .collect();
        if let Some(e) = direct_failed.first() {
            report.fail(format!(
                "(3) direct: {} creates failed, e.g. {e}",
                direct_failed.len()
            ));
        }
        let direct_jobs = self.count_jobs(&ns).await?;
        if direct_jobs != 1 {
            report.fail(format!("(3) direct: {direct_jobs} Jobs, not 1"));
        }
        let direct_latencies: Vec<Duration> = results.iter().map(|(d, ..)| *d).collect();
        self.settle().await;

        // Through Karo.
        let ns = karo_ns;
        self.create_reaction(ns, alert).await?;
        self.wait_loaded(karo, self.loaded).await?;
        self.settle().await;
        let mut jobs_seen =
            Counter::start(Api::<Job>::namespaced(self.client.clone(), ns), |_| true).await?;
        let hook = format!("{}/webhook", karo.url());
        let before = Probe::take(self, Some(karo)).await;
        let bodies = (0..STORM).map(|_| body.clone()).collect();
        let (deliveries, through_karo) = self.deliver_all(&hook, bodies, "storm-karo").await;
        if let Err(e) = jobs_seen.reached(1).await {
            report.fail(format!("(3) storm: no Job: {e:#}"));
        }
        drop(jobs_seen);
        let tail = self.settle().await;
        let karo_cost = before.diff(&Probe::take(self, Some(karo)).await);
        let listed = self.count_jobs(ns).await?;
        let runs: usize = self.count_runs(ns).await?.values().sum();
        let created = count(&deliveries, "created");
        let deduplicated = count(&deliveries, "deduplicated");
        let undelivered = deliveries.iter().filter(|d| !d.ok).count();
        let exactly_one = listed == 1 && runs == 1 && created == 1 && undelivered == 0;
        if !exactly_one {
            report.fail(format!(
                "(3) storm: {runs} Runs and {listed} Jobs listed, {created} created, {deduplicated} deduplicated, {undelivered} undelivered (expected exactly one Run and one Job)"
            ));
        }
        let latencies = all_latencies(&deliveries);
        let karo_rps = STORM as f64 / through_karo.as_secs_f64();
        let direct_rps = STORM as f64 / direct.as_secs_f64();
        report.row(
            format!("3 duplicate storm, same notification × {STORM}"),
            format!(
                "{} req ({runs} Run, {listed} Job); p50 {} / p99 {}",
                stats::rate(karo_rps),
                stats::dur(percentile(&latencies, 50.0)),
                stats::dur(percentile(&latencies, 99.0)),
            ),
            format!(
                "direct create of the same Run ({direct_conflicts} × 409), its Job once: {} req",
                stats::rate(direct_rps)
            ),
            stats::ratio(karo_rps / direct_rps),
            "exactly 1 Run and 1 Job".into(),
            stats::yes_no(exactly_one),
        );
        report.note(format!(
            "(3) {IN_FLIGHT} deliveries in flight on both sides; Karo answered created {created}, deduplicated {deduplicated}; direct create latency p50 {} / p99 {}",
            stats::dur(percentile(&direct_latencies, 50.0)),
            stats::dur(percentile(&direct_latencies, 99.0)),
        ));
        report.note(format!(
            "(3) while Karo worked and until the API server was quiet again ({} after Karo's Job existed): {karo_cost}",
            settled(tail)
        ));
        report.note(format!("(3) while the direct client worked: {direct_cost}"));
        Ok(tail.is_some())
    }

    /// (5): `..data` swap to the new config in effect, observed from outside: the
    /// swap moves the webhook to a new path, and the new path answers `GET` with
    /// 405 (a webhook path) instead of 404 once the new config is in effect.
    pub(super) async fn reload(
        &self,
        karo: &Karo,
        cm: &ConfigMapDir,
        report: &mut Report,
    ) -> Result<()> {
        let url = karo.url();
        let mut swaps = Vec::new();
        for k in 0..SWAPS {
            let path = format!("/swap-{k}");
            let t0 = Instant::now();
            cm.update(&[("config.yaml", &config_yaml(&path, &self.karo_namespaces))])?;
            self.wait_path(url, &path).await?;
            swaps.push(t0.elapsed());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Baseline: the same swap followed at once by POST /-/reload, which skips the
        // debounce; the file watcher's own (redundant) reload is let pass before the next.
        let mut direct = Vec::new();
        for k in 0..SWAPS {
            let path = format!("/direct-{k}");
            cm.update(&[("config.yaml", &config_yaml(&path, &self.karo_namespaces))])?;
            let t0 = Instant::now();
            let r = self
                .http
                .post(format!("{url}/-/reload"))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await?;
            ensure!(r.status().as_u16() == 200, "POST /-/reload: {}", r.status());
            self.wait_path(url, &path).await?;
            direct.push(t0.elapsed());
            tokio::time::sleep(DEBOUNCE + Duration::from_millis(300)).await;
        }
        let p50 = percentile(&swaps, 50.0);
        let floor = DEBOUNCE + percentile(&direct, 50.0);
        report.row(
            format!("5 reload, `..data` swap → in effect, p50 of {SWAPS}"),
            format!(
                "{} (p99 {})",
                stats::dur(p50),
                stats::dur(percentile(&swaps, 99.0))
            ),
            format!(
                "debounce {} + POST /-/reload p50 {} = {}",
                stats::dur(DEBOUNCE),
                stats::dur(percentile(&direct, 50.0)),
                stats::dur(floor)
            ),
            stats::ratio(p50.as_secs_f64() / floor.as_secs_f64()),
            "< 1 s".into(),
            stats::yes_no(p50 < Duration::from_secs(1)),
        );
        Ok(())
    }

    /// Polls until `GET <path>` is 405, i.e. `path` is the webhook path now.
    async fn wait_path(&self, url: &str, path: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.http.get(format!("{url}{path}")).send().await?;
            if r.status().as_u16() == 405 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{path} never became the webhook path");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// (4): 10 000 AlertReactions in the API server, then a fresh `karo run` that
    /// lists and compiles them all; its peak RSS once they are loaded and the
    /// resulting status writes have calmed down. Returns VmHWM in KiB.
    pub(super) async fn memory_10k(&mut self, report: &mut Report) -> Result<u64> {
        let ns = self.cp.namespace("mem-10k").await;
        let api: Api<AlertReaction> = Api::namespaced(self.client.clone(), &ns);
        let t0 = Instant::now();
        let results: Vec<Result<()>> = stream::iter(0..pure::REACTIONS)
            .map(|i| {
                let api = api.clone();
                let ns = ns.clone();
                async move {
                    let mut ar: AlertReaction =
                        serde_json::from_value(pure::reaction_json(i, pure::Order::FailingLast))?;
                    ar.metadata.namespace = Some(ns);
                    ar.metadata.uid = None;
                    ar.metadata.generation = None;
                    let mut last = None;
                    for _ in 0..10 {
                        match api.create(&PostParams::default(), &ar).await {
                            Ok(_) => return Ok(()),
                            Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
                            Err(e) => last = Some(e),
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(anyhow!("creating reaction {i}: {last:?}"))
                }
            })
            .buffer_unordered(CREATE_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        let created_in = t0.elapsed();

        let dir = TestDir::new("bench-config")?;
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, config_yaml("/webhook", std::slice::from_ref(&ns)))?;
        let t0 = Instant::now();
        let karo = self.start_karo(&config).await?;
        self.wait_loaded(&karo, pure::REACTIONS).await?;
        let loaded_in = t0.elapsed();
        let (at_loaded, _) = memory(karo.pid())?;
        // The peak may come after the load (the Ready conditions are written
        // then): sample until VmHWM has not moved for 3 s (at most 60 s).
        let (mut hwm, mut rss) = memory(karo.pid())?;
        let mut still_since = Instant::now();
        let stop = Instant::now() + Duration::from_secs(60);
        while still_since.elapsed() < Duration::from_secs(3) && Instant::now() < stop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let (h, r) = memory(karo.pid())?;
            if h != hwm {
                still_since = Instant::now();
            }
            (hwm, rss) = (h, r);
        }
        report.note(format!(
            "(4) {} AlertReactions created ({CREATE_CONCURRENCY} in flight) in {}; a new `karo run` was ready with all {} loaded after {}; VmHWM {} at that moment, {} after settling (VmRSS then {})",
            pure::REACTIONS,
            stats::dur(created_in),
            pure::REACTIONS,
            stats::dur(loaded_in),
            stats::mib(at_loaded),
            stats::mib(hwm),
            stats::mib(rss),
        ));
        karo.stop("karo-10k");
        keep_log(&self.cp.apiserver_log(), "kube-apiserver");
        Ok(hwm)
    }
}
