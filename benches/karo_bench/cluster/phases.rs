//! The measured phases: (2) alert to Job, (3) duplicate storm, (5) reload and
//! (4) memory with 10 000 reactions.

use super::*;

impl Bench {
    /// (2): 1000 distinct matching alerts in notifications of `n`, through Karo and
    /// directly, each in a fresh namespace.
    pub(super) async fn alert_to_job(
        &mut self,
        karo: &Karo,
        n: usize,
        karo_ns: &str,
        report: &mut Report,
    ) -> Result<bool> {
        let alert = format!("E2E{n}");
        // Karo creates the Jobs of one notification `maxConcurrentCreates` at a time,
        // and IN_FLIGHT notifications are handled at once: the direct client gets
        // the same number of creates in flight.
        let per_notification = Limits::default().max_concurrent_creates.max(1);
        let concurrency = IN_FLIGHT * n.min(per_notification);
        let alerts: Vec<Value> = (0..JOBS)
            .map(|k| pure::alert_json(k, &alert, "ops"))
            .collect();
        let bodies: Vec<Vec<u8>> = alerts
            .chunks(n)
            .map(|c| serde_json::to_vec(&pure::notification_json(c.to_vec())))
            .collect::<Result<_, _>>()?;

        // Direct: the Jobs are built beforehand; only their creation is timed.
        let ns = self.cp.namespace(&format!("direct-{n}")).await;
        let ar = self.create_reaction(&ns, &alert).await?;
        let jobs = self.build_jobs(&ar, &bodies)?;
        ensure!(jobs.len() == JOBS, "built {} Jobs", jobs.len());
        let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let before = Probe::take(self, Some(karo)).await;
        let t0 = Instant::now();
        let results: Vec<(Duration, Created)> = stream::iter(jobs.iter())
            .map(|job| create_job(&api, job))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let direct = t0.elapsed();
        let direct_cost = before.diff(&Probe::take(self, Some(karo)).await);
        let failed = results
            .iter()
            .filter(|(_, c)| matches!(c, Created::Failed(_)))
            .count();
        if failed > 0 {
            report.fail(format!(
                "(2) direct, {n}/notification: {failed} creates failed"
            ));
        }
        let listed = self.count_jobs(&ns).await?;
        if listed != JOBS {
            report.fail(format!(
                "(2) direct, {n}/notification: {listed} Jobs, not {JOBS}"
            ));
        }
        let direct_latencies: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
        self.settle().await;

        // Through Karo.
        let ns = karo_ns;
        self.create_reaction(ns, &alert).await?;
        self.wait_loaded(karo, self.loaded).await?;
        let hook = format!("{}/webhook", karo.url());
        let before = Probe::take(self, Some(karo)).await;
        let (deliveries, through_karo, tail) = self
            .deliver_all(&hook, bodies, &format!("e2e-karo-{n}"))
            .await;
        let karo_cost = before.diff(&Probe::take(self, Some(karo)).await);
        let undelivered = deliveries.iter().filter(|d| !d.ok).count();
        let retries: usize = deliveries.iter().map(|d| d.attempts - 1).sum();
        if undelivered > 0 {
            report.fail(format!(
                "(2) karo, {n}/notification: {undelivered} notifications never answered 200"
            ));
        }
        let listed = self.count_jobs(ns).await?;
        if listed != JOBS {
            report.fail(format!(
                "(2) karo, {n}/notification: {listed} Jobs, not {JOBS}"
            ));
        }
        let latencies = all_latencies(&deliveries);
        let ratio = through_karo.as_secs_f64() / direct.as_secs_f64();
        report.row(
            format!("2 alert→Job, {JOBS} Jobs, {n} alert(s)/notification"),
            format!(
                "{} ({}); webhook p50 {} / p99 {}",
                stats::dur(through_karo),
                stats::rate(JOBS as f64 / through_karo.as_secs_f64()),
                stats::dur(percentile(&latencies, 50.0)),
                stats::dur(percentile(&latencies, 99.0)),
            ),
            format!(
                "direct, {concurrency} in flight: {} ({})",
                stats::dur(direct),
                stats::rate(JOBS as f64 / direct.as_secs_f64())
            ),
            stats::ratio(ratio),
            "≤ 1.25x".into(),
            stats::yes_no(ratio <= 1.25),
        );
        report.note(format!(
            "(2) {n}/notification: {} notifications, {IN_FLIGHT} in flight (≤ {} creates in flight in Karo); Karo: created {}, deduplicated {}, failed {}, {retries} retried deliveries; direct create latency p50 {} / p99 {}",
            JOBS.div_ceil(n),
            concurrency,
            count(&deliveries, "created"),
            count(&deliveries, "deduplicated"),
            count(&deliveries, "failed"),
            stats::dur(percentile(&direct_latencies, 50.0)),
            stats::dur(percentile(&direct_latencies, 99.0)),
        ));
        report.note(format!(
            "(2) {n}/notification, while Karo worked and until the API server was quiet again ({} after Karo's last answer): {karo_cost}",
            settled(tail)
        ));
        report.note(format!(
            "(2) {n}/notification, while the direct client worked: {direct_cost}"
        ));
        Ok(tail.is_some())
    }

    /// (3): the same notification 1000 times; exactly one Job.
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

        // Direct: the same Job created 1000 times (one 201, then 409s).
        let ns = self.cp.namespace("storm-direct").await;
        let ar = self.create_reaction(&ns, alert).await?;
        let job = self
            .build_jobs(&ar, std::slice::from_ref(&body))?
            .pop()
            .context("one Job")?;
        let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        let before = Probe::take(self, Some(karo)).await;
        let pprof = self.profile_apiserver("storm-direct", 3);
        let t0 = Instant::now();
        let results: Vec<(Duration, Created)> = stream::iter(0..STORM)
            .map(|_| create_job(&api, &job))
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
            .filter(|(_, c)| *c == Created::AlreadyExists)
            .count();
        let direct_failed: Vec<&String> = results
            .iter()
            .filter_map(|(_, c)| match c {
                Created::Failed(e) => Some(e),
                _ => None,
            })
            .collect();
        if let Some(e) = direct_failed.first() {
            report.fail(format!(
                "(3) direct: {} creates failed, e.g. {e}",
                direct_failed.len()
            ));
        }
        let direct_latencies: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
        self.settle().await;

        // Through Karo.
        let ns = karo_ns;
        self.create_reaction(ns, alert).await?;
        self.wait_loaded(karo, self.loaded).await?;
        let hook = format!("{}/webhook", karo.url());
        let before = Probe::take(self, Some(karo)).await;
        let bodies = (0..STORM).map(|_| body.clone()).collect();
        let (deliveries, through_karo, tail) = self.deliver_all(&hook, bodies, "storm-karo").await;
        let karo_cost = before.diff(&Probe::take(self, Some(karo)).await);
        let listed = self.count_jobs(ns).await?;
        let created = count(&deliveries, "created");
        let deduplicated = count(&deliveries, "deduplicated");
        let undelivered = deliveries.iter().filter(|d| !d.ok).count();
        let exactly_one = listed == 1 && created == 1 && undelivered == 0;
        if !exactly_one {
            report.fail(format!(
                "(3) storm: {listed} Jobs listed, {created} created, {deduplicated} deduplicated, {undelivered} undelivered (expected exactly one Job)"
            ));
        }
        let latencies = all_latencies(&deliveries);
        let karo_rps = STORM as f64 / through_karo.as_secs_f64();
        let direct_rps = STORM as f64 / direct.as_secs_f64();
        report.row(
            format!("3 duplicate storm, same notification × {STORM}"),
            format!(
                "{} req ({listed} Job); p50 {} / p99 {}",
                stats::rate(karo_rps),
                stats::dur(percentile(&latencies, 50.0)),
                stats::dur(percentile(&latencies, 99.0)),
            ),
            format!(
                "direct create of the same Job ({direct_conflicts} × 409): {} req",
                stats::rate(direct_rps)
            ),
            stats::ratio(karo_rps / direct_rps),
            "exactly 1 Job".into(),
            stats::yes_no(exactly_one),
        );
        report.note(format!(
            "(3) {IN_FLIGHT} deliveries in flight on both sides; Karo answered created {created}, deduplicated {deduplicated}; direct create latency p50 {} / p99 {}",
            stats::dur(percentile(&direct_latencies, 50.0)),
            stats::dur(percentile(&direct_latencies, 99.0)),
        ));
        report.note(format!(
            "(3) while Karo worked and until the API server was quiet again ({} after Karo's last answer): {karo_cost}",
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
