//! Against the real local API server (etcd + kube-apiserver 1.20 on loopback) and
//! the release `karo` binary: (2) alert to Job and (2b) the API writes of a Run's
//! life, (3) duplicate storm, (4) memory, (5) reload; (8) replicas behind a
//! round-robin proxy (`scale.rs`) and (9) the latency of 1000-alert notifications
//! (`latency.rs`), each with a control plane of its own. Every Karo figure has its
//! baseline measured here, in the same run.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use futures::{stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::Value;

use karo::core::jobs::{build_job, JobInput, Skeleton};
use karo::core::reaction::compile;
use karo::core::render::Renderer;
use karo::core::run::{build_run, job_to_create, run_action};
use karo::model::alert::parse_notification;
use karo::model::config::{JobDefaults, Limits, Policy};
use karo::model::crd::AlertReaction;
use karo::model::run::{AlertReactionRun, RunPhase};

use crate::pure;
use crate::report::Report;
use crate::stats::{self, percentile};
use crate::support::{free_port, wait_until, ControlPlane, Proc, TestDir};

/// Occurrences (Runs, each with one Job) of (2), per variant.
const JOBS: usize = 1000;
/// Notifications in flight at once, as a busy Alertmanager would send them.
const IN_FLIGHT: usize = 8;
/// Alerts per notification in (2).
const E2E_SIZES: [usize; 3] = [1, 10, 100];
/// Rounds of (2) per size, each its direct baseline then Karo, one after the other
/// (direct, Karo, direct, Karo, ...), in fresh namespaces; (2b) follows the first
/// round only (its write counts do not vary, and each (2b) takes about 50 s). A round
/// is about 15 to 40 s, so (2) is about 5 to 6 minutes in all.
const E2E_ROUNDS: usize = 3;
/// Deliveries of the same notification in (3).
const STORM: usize = 1000;
/// ConfigMap swaps (and direct reloads) in (5).
const SWAPS: usize = 20;
/// `reload::DEBOUNCE` (private in src/reload.rs).
const DEBOUNCE: Duration = Duration::from_millis(200);
/// AlertReactions created at once when loading 10 000 of them for (4).
const CREATE_CONCURRENCY: usize = 64;
/// Between phases, the API server is let settle (Karo creates the Jobs, writes
/// statuses and publishes Events after answering the webhook), for at most this long.
const SETTLE_MAX: Duration = Duration::from_secs(30);
/// Hang guard; nothing is asserted about time.
const HANG_GUARD: Duration = Duration::from_secs(300);

/// Job statuses patched at once in (2b), standing in for the Job controller.
const FINISH_CONCURRENCY: usize = 32;

mod count;
mod large;
mod latency;
mod phases;
mod probe;
mod process;
mod scale;

use count::Counter;
pub use large::run as large_notifications;
pub use latency::run as big_notification_latency;
use phases::E2eRound;
use probe::*;
pub use process::karo_bin;
use process::*;
pub use scale::run as replicas;

struct Bench {
    cp: ControlPlane,
    client: kube::Client,
    http: reqwest::Client,
    /// For the API server's own `/metrics`.
    apiserver_http: reqwest::Client,
    renderer: Renderer,
    skeleton: Skeleton,
    /// The namespaces the first Karo watches: one per variant of (2), one for (3).
    karo_namespaces: Vec<String>,
    /// AlertReactions created so far in them.
    loaded: usize,
}

pub async fn run(report: &mut Report) -> Result<()> {
    let begun = Instant::now();
    let cp = ControlPlane::start().await?;
    cp.install_crd().await;
    report.note(format!(
        "control plane: etcd 3.4 + kube-apiserver 1.20 on loopback, started with the CRD in {}",
        stats::dur(begun.elapsed())
    ));
    let mut b = Bench::new(cp).await?;
    // Namespaces are fixed at Karo's start, so they are made first: one per round
    // of each size of (2).
    for n in E2E_SIZES {
        for r in 0..E2E_ROUNDS {
            let ns = b.cp.namespace(&format!("karo-{n}-{r}")).await;
            b.karo_namespaces.push(ns);
        }
    }
    let ns = b.cp.namespace("storm-karo").await;
    b.karo_namespaces.push(ns);

    let config = config_yaml("/webhook", &b.karo_namespaces);
    let cm = ConfigMapDir::new(&[("config.yaml", &config)])?;
    let mut karo = b.start_karo(&cm.config()).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle, idle_rss) = memory(karo.pid())?;
    report.note(format!(
        "(4) idle: `karo run` started, synced, no AlertReaction: VmHWM {}, VmRSS {}",
        stats::mib(idle),
        stats::mib(idle_rss)
    ));

    // A Karo whose background work (Events) still loads the API server after
    // SETTLE_MAX would disturb the next baseline: it is replaced by a fresh one
    // (same config), which drops that backlog.
    let mut during = 0;
    let mut restarts = 0;
    for (i, n) in E2E_SIZES.into_iter().enumerate() {
        let mut rounds: Vec<E2eRound> = Vec::new();
        for r in 0..E2E_ROUNDS {
            let ns = b.karo_namespaces[i * E2E_ROUNDS + r].clone();
            let (round, settled) = b.alert_to_job(&karo, n, &ns, r, report).await?;
            rounds.push(round);
            during = during.max(memory(karo.pid())?.0);
            if !settled {
                restarts += 1;
                karo = b
                    .restart_karo(karo, &cm, &format!("karo-e2e-{restarts}"), report)
                    .await?;
            }
        }
        phases::alert_to_job_row(n, &rounds, report);
    }
    let ns = b.karo_namespaces[E2E_SIZES.len() * E2E_ROUNDS].clone();
    if !b.storm(&karo, &ns, report).await? {
        restarts += 1;
        karo = b
            .restart_karo(karo, &cm, &format!("karo-e2e-{restarts}"), report)
            .await?;
    }
    b.reload(&karo, &cm, report).await?;
    karo.stop("karo-e2e");

    let loaded = b.memory_10k(report).await?;

    report.row(
        "4 peak RSS (VmHWM), idle".into(),
        stats::mib(idle),
        "idle (itself)".into(),
        stats::ratio(1.0),
        "< 30 MiB".into(),
        stats::yes_no(idle < 30 * 1024),
    );
    report.row(
        format!("4 peak RSS, {} AlertReactions cached", pure::REACTIONS),
        stats::mib(loaded),
        format!("idle: {}", stats::mib(idle)),
        stats::ratio(loaded as f64 / idle as f64),
        "< 100 MiB".into(),
        stats::yes_no(loaded < 100 * 1024),
    );
    report.row(
        "4 peak RSS during (2) and before (max over its Karo processes)".into(),
        stats::mib(during),
        format!("idle: {}", stats::mib(idle)),
        stats::ratio(during as f64 / idle as f64),
        "—".into(),
        "—".into(),
    );
    report.note(format!(
        "cluster part (control plane start, (2) to (5)) took {}",
        stats::dur(begun.elapsed())
    ));
    Ok(())
}

impl Bench {
    /// The benchmark's clients of `cp`, no Karo namespace yet.
    async fn new(cp: ControlPlane) -> Result<Bench> {
        Ok(Bench {
            client: cp.client().await,
            cp,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .timeout(Duration::from_secs(120))
                .build()?,
            apiserver_http: reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .timeout(Duration::from_secs(30))
                .build()?,
            renderer: Renderer::new(),
            skeleton: Skeleton::builtin().map_err(anyhow::Error::msg)?,
            karo_namespaces: Vec::new(),
            loaded: 0,
        })
    }

    /// Stops `karo` (keeping its log as `<name>.log`), waits for the API server to
    /// settle, and starts a new Karo with the same config, its reactions loaded.
    async fn restart_karo(
        &self,
        karo: Karo,
        cm: &ConfigMapDir,
        name: &str,
        report: &mut Report,
    ) -> Result<Karo> {
        karo.stop(name);
        let quiet = self.settle().await;
        report.note(format!(
            "Karo was still loading the API server {} after its last answer or its last Job: replaced by a fresh process (log {name}.log); the API server was quiet {} after the old one stopped",
            stats::dur(SETTLE_MAX),
            settled(quiet)
        ));
        let karo = self.start_karo(&cm.config()).await?;
        self.wait_loaded(&karo, self.loaded).await?;
        Ok(karo)
    }

    /// `karo run --config <file>`, ready (its cache synced).
    async fn start_karo(&self, config: &Path) -> Result<Karo> {
        Karo::start(self.cp.kubeconfig(), config, &self.http).await
    }

    async fn create_reaction(&mut self, namespace: &str, alert: &str) -> Result<AlertReaction> {
        let api: Api<AlertReaction> = Api::namespaced(self.client.clone(), namespace);
        let created = api
            .create(&PostParams::default(), &e2e_reaction(namespace, alert)?)
            .await
            .with_context(|| format!("creating the reaction in {namespace}"))?;
        if self.karo_namespaces.iter().any(|n| n == namespace) {
            self.loaded += 1;
        }
        Ok(created)
    }

    /// With `KARO_BENCH_PPROF` set: a CPU profile of the API server over the next
    /// `seconds`, saved as `target/karo-bench/apiserver-<name>.pprof` (read it with
    /// `go tool pprof -top`). Await the handle after the phase.
    fn profile_apiserver(&self, name: &str, seconds: u64) -> Option<tokio::task::JoinHandle<()>> {
        std::env::var_os("KARO_BENCH_PPROF")?;
        let http = self.apiserver_http.clone();
        let url = format!("{}/debug/pprof/profile?seconds={seconds}", self.cp.url());
        let token = self.cp.token().to_string();
        let path = logs_dir().join(format!("apiserver-{name}.pprof"));
        Some(tokio::spawn(async move {
            let body = async {
                http.get(url)
                    .bearer_auth(token)
                    .timeout(Duration::from_secs(seconds + 30))
                    .send()
                    .await?
                    .bytes()
                    .await
            }
            .await;
            if let Ok(bytes) = body {
                let _ = std::fs::create_dir_all(logs_dir());
                let _ = std::fs::write(path, bytes);
            }
        }))
    }

    /// Posts every body to `hook`, `IN_FLIGHT` at a time, while the API server is
    /// profiled as `profile`. Returns the deliveries and the time from the first
    /// post to the last answer.
    async fn deliver_all(
        &self,
        hook: &str,
        bodies: Vec<Vec<u8>>,
        profile: &str,
    ) -> (Vec<Delivery>, Duration) {
        let pprof = self.profile_apiserver(profile, 3);
        let t0 = Instant::now();
        let deliveries: Vec<Delivery> = stream::iter(bodies)
            .map(|body| deliver(&self.http, hook, body))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let elapsed = t0.elapsed();
        if let Some(p) = pprof {
            let _ = p.await;
        }
        (deliveries, elapsed)
    }

    /// Waits until the API server has been quiet (fewer than 5 requests in a
    /// second) and returns how long that took; `None` if it was still busy after
    /// `SETTLE_MAX`.
    async fn settle(&self) -> Option<Duration> {
        let total = |p: Probe| p.requests.values().sum::<f64>();
        let t0 = Instant::now();
        let mut last = total(Probe::take(self, None).await);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = total(Probe::take(self, None).await);
            if now - last < 5.0 {
                return Some(t0.elapsed().saturating_sub(Duration::from_secs(1)));
            }
            if t0.elapsed() > SETTLE_MAX {
                return None;
            }
            last = now;
        }
    }

    /// Waits until Karo has compiled `want` reactions.
    async fn wait_loaded(&self, karo: &Karo, want: usize) -> Result<()> {
        let (http, url, want) = (&self.http, karo.url(), want as f64);
        wait_until(HANG_GUARD, || async move {
            metric(http, url, "karo_reactions_loaded")
                .await
                .is_ok_and(|n| n >= want)
        })
        .await
        .with_context(|| format!("karo never loaded {want} reactions"))
    }

    async fn count_jobs(&self, namespace: &str) -> Result<usize> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.list(&ListParams::default()).await?.items.len())
    }

    /// The Runs in `namespace`, by phase (`Pending` for a Run without status).
    async fn count_runs(
        &self,
        namespace: &str,
    ) -> Result<std::collections::BTreeMap<&'static str, usize>> {
        let api: Api<AlertReactionRun> = Api::namespaced(self.client.clone(), namespace);
        let mut phases = std::collections::BTreeMap::new();
        for run in api.list(&ListParams::default()).await?.items {
            let phase = run.status.and_then(|s| s.phase).unwrap_or_default();
            *phases.entry(phase.as_str()).or_insert(0) += 1;
        }
        Ok(phases)
    }

    /// The Runs Karo would create for `bodies` (one per alert, carrying its Job),
    /// built like Karo builds them (`build_job`, `run_action`, `build_run`) for
    /// the reaction `ar` as read back from the API server.
    fn build_runs(&self, ar: &AlertReaction, bodies: &[Vec<u8>]) -> Result<Vec<AlertReactionRun>> {
        let reaction =
            compile(ar, &self.renderer, &Policy::default()).map_err(|e| anyhow!("{e}"))?;
        let defaults = JobDefaults::default();
        let source = &reaction.sources[0];
        let mut runs = Vec::new();
        for body in bodies {
            let notification = parse_notification(body, jiff::Timestamp::now())?;
            for alert in &notification.alerts {
                let job = build_job(&JobInput {
                    reaction: &reaction,
                    source,
                    alert,
                    notification: &notification,
                    renderer: &self.renderer,
                    skeleton: &self.skeleton,
                    defaults: &defaults,
                })?;
                let action = run_action(&source.action_name, &job)?;
                runs.push(build_run(&reaction, alert, &notification, vec![action]));
            }
        }
        Ok(runs)
    }
}
