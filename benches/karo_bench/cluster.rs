//! Against the real local API server (etcd + kube-apiserver 1.20 on loopback) and
//! the release `karo` binary: (2) alert to Job, (3) duplicate storm, (4) memory,
//! (5) reload. Every Karo figure has its baseline measured here, in the same run.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use futures::{stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams, PostParams};
use serde_json::Value;

use karo::core::jobs::{build_job, JobInput, Skeleton};
use karo::core::reaction::compile;
use karo::core::render::Renderer;
use karo::model::alert::parse_notification;
use karo::model::config::{JobDefaults, Limits, Policy};
use karo::model::crd::AlertReaction;

use crate::pure;
use crate::report::Report;
use crate::stats::{self, percentile};
use crate::support::{free_port, wait_until, ControlPlane, Proc, TestDir};

/// Jobs of (2), per variant.
const JOBS: usize = 1000;
/// Notifications in flight at once, as a busy Alertmanager would send them.
const IN_FLIGHT: usize = 8;
/// Alerts per notification in (2).
const E2E_SIZES: [usize; 3] = [1, 10, 100];
/// Deliveries of the same notification in (3).
const STORM: usize = 1000;
/// ConfigMap swaps (and direct reloads) in (5).
const SWAPS: usize = 20;
/// `reload::DEBOUNCE` (private in src/reload.rs).
const DEBOUNCE: Duration = Duration::from_millis(200);
/// AlertReactions created at once when loading 10 000 of them for (4).
const CREATE_CONCURRENCY: usize = 64;
/// Between phases, the API server is let settle (Karo publishes its Events after
/// answering the webhook), for at most this long.
const SETTLE_MAX: Duration = Duration::from_secs(30);
/// Hang guard; nothing is asserted about time.
const HANG_GUARD: Duration = Duration::from_secs(300);

/// The `karo` binary to measure: `KARO_BENCH_BIN` (the Makefile copies the
/// `cargo build --release` binary there, so that it is exactly the shipped build),
/// else the one Cargo built for this bench (release profile, but its dependencies'
/// features unified with the dev-dependencies').
pub fn karo_bin() -> PathBuf {
    std::env::var_os("KARO_BENCH_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(crate::support::karo_bin)
}

/// A `karo run` process (as `KaroProcess` in tests/support starts one, with the
/// binary of [`karo_bin`]). Killed on drop.
pub struct Karo {
    // Field order matters: the process is killed before its dir is removed.
    proc: Proc,
    url: String,
    _dir: TestDir,
}

impl Karo {
    /// Starts `karo run --http-port <free> --config <config>` and waits until
    /// `/readyz` is 200 (the AlertReaction cache has synced).
    async fn start(kubeconfig: &Path, config: &Path, http: &reqwest::Client) -> Result<Karo> {
        let dir = TestDir::new("bench-karo")?;
        let port = free_port();
        let mut cmd = std::process::Command::new(karo_bin());
        cmd.current_dir(dir.path())
            .arg("run")
            .arg("--http-port")
            .arg(port.to_string())
            .arg("--config")
            .arg(config)
            .env("KUBECONFIG", kubeconfig)
            .env("NO_COLOR", "1");
        let mut proc = Proc::spawn("karo", cmd, &dir.path().join("karo.log"))?;
        let url = format!("http://127.0.0.1:{port}");
        let readyz = format!("{url}/readyz");
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            proc.check_running()?;
            if let Ok(r) = http.get(&readyz).send().await {
                if r.status().as_u16() == 200 {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("karo not ready; its log:\n{}", proc.log_tail(40));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Karo {
            proc,
            url,
            _dir: dir,
        })
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// SIGTERM, a graceful exit within 10 s, else SIGKILL; its log is kept as
    /// `target/karo-bench/<name>.log`.
    fn stop(mut self, name: &str) {
        self.proc.signal(libc::SIGTERM);
        self.proc.wait_exit(Duration::from_secs(10));
        self.proc.kill();
        keep_log(self.proc.log_path(), name);
    }
}

/// Where the logs (and profiles) of the last run are kept.
fn logs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/karo-bench")
}

fn keep_log(from: &Path, name: &str) {
    let dir = logs_dir();
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::copy(from, dir.join(format!("{name}.log")));
}

/// A reaction with one action, for (2) and (3). Each variant has its own alert
/// name, so that its alerts match its own reaction only.
fn e2e_reaction(namespace: &str, alert_name: &str) -> Result<AlertReaction> {
    let mut ar: AlertReaction = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "e2e"},
        "spec": {
            "alertName": alert_name,
            "matchers": [{"name": "severity", "operator": "=~", "value": "critical|page"}],
            "actions": [{
                "name": "remediate",
                "image": "busybox:1.36",
                "command": ["sh", "-c"],
                "args": ["echo {{labels.instance}}: {{annotations.summary}}"],
            }],
        },
    }))?;
    ar.metadata.namespace = Some(namespace.to_string());
    Ok(ar)
}

/// Karo's config: the defaults, the given webhook path, and the namespaces it
/// watches (Karo's own, so that the direct baselines' reactions are not its).
fn config_yaml(webhook_path: &str, namespaces: &[String]) -> String {
    format!(
        "logLevel: info\nnamespaces: [{}]\nwebhook:\n  path: {webhook_path}\n",
        namespaces.join(", ")
    )
}

/// A directory laid out like a mounted ConfigMap volume, updated as the kubelet
/// does (the same steps as `ConfigMapDir` in tests/it/config_reload.rs).
struct ConfigMapDir {
    dir: TestDir,
    generation: AtomicUsize,
}

impl ConfigMapDir {
    fn new(files: &[(&str, &str)]) -> Result<ConfigMapDir> {
        let d = ConfigMapDir {
            dir: TestDir::new("bench-configmap")?,
            generation: AtomicUsize::new(0),
        };
        d.update(files)?;
        Ok(d)
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// Writes `..<ts>/`, points `..data_tmp` at it, renames that over `..data`,
    /// removes the old `..<ts>/`.
    fn update(&self, files: &[(&str, &str)]) -> Result<()> {
        let root = self.dir.path();
        let n = self.generation.fetch_add(1, Ordering::SeqCst);
        let ts = format!("..2026_11_26_10_00_00.{n:06}");
        std::fs::create_dir(root.join(&ts))?;
        for (key, content) in files {
            std::fs::write(root.join(&ts).join(key), content)?;
        }
        let old = std::fs::read_link(root.join("..data")).ok();
        symlink(&ts, root.join("..data_tmp"))?;
        std::fs::rename(root.join("..data_tmp"), root.join("..data"))?;
        for (key, _) in files {
            let link = root.join(key);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(format!("..data/{key}"), &link)?;
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(root.join(old))?;
        }
        Ok(())
    }
}

/// (VmHWM, VmRSS) of a process, in KiB.
fn memory(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// The sum of a metric's samples in Karo's `/metrics`.
async fn metric(http: &reqwest::Client, url: &str, name: &str) -> Result<f64> {
    let text = http
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The fields after the parenthesised command name; utime and stime are the
    // 14th and 15th of the whole line.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz.max(1.0)
}

/// What a phase cost, measured from outside: the API server's request counters
/// (`apiserver_request_total`, by verb, resource and code) and the CPU time of
/// each process.
struct Probe {
    requests: std::collections::BTreeMap<String, f64>,
    cpu: Vec<(&'static str, f64)>,
}

impl Probe {
    async fn take(b: &Bench, karo: Option<&Karo>) -> Probe {
        let mut pids: Vec<(&'static str, u32)> = vec![
            ("kube-apiserver", b.cp.apiserver_pid().unwrap_or(0)),
            ("etcd", b.cp.etcd_pid()),
            ("bench client", std::process::id()),
        ];
        if let Some(k) = karo {
            pids.insert(0, ("karo", k.pid()));
        }
        let cpu = pids.into_iter().map(|(n, p)| (n, cpu_seconds(p))).collect();
        let mut requests = std::collections::BTreeMap::new();
        let text = async {
            b.apiserver_http
                .get(format!("{}/metrics", b.cp.url()))
                .bearer_auth(b.cp.token())
                .send()
                .await?
                .text()
                .await
        }
        .await
        .unwrap_or_default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let label = |name: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                    .map(|v| v.trim_end_matches('"').to_string())
                    .unwrap_or_default()
            };
            let (verb, resource, sub, code) = (
                label("verb"),
                label("resource"),
                label("subresource"),
                label("code"),
            );
            if verb == "WATCH" || resource.is_empty() {
                continue;
            }
            let sub = if sub.is_empty() {
                String::new()
            } else {
                format!("/{sub}")
            };
            let key = format!("{verb} {resource}{sub} {code}");
            *requests.entry(key).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
        }
        Probe { requests, cpu }
    }

    /// `POST jobs 201 ×1000, ...; CPU karo 1.2 s, ...` between `self` and `later`.
    fn diff(&self, later: &Probe) -> String {
        let mut reqs: Vec<(String, f64)> = later
            .requests
            .iter()
            .map(|(k, v)| (k.clone(), v - self.requests.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, d)| *d >= 1.0)
            .collect();
        reqs.sort_by(|a, b| b.1.total_cmp(&a.1));
        let reqs: Vec<String> = reqs.iter().map(|(k, d)| format!("{k} ×{d:.0}")).collect();
        let cpu: Vec<String> = later
            .cpu
            .iter()
            .map(|(name, t)| {
                let before = self
                    .cpu
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(0.0, |(_, b)| *b);
                format!("{name} {:.1} s", t - before)
            })
            .collect();
        format!("API requests {}; CPU {}", reqs.join(", "), cpu.join(", "))
    }
}

/// How long the API server took to calm down, for the notes.
fn settled(tail: Option<Duration>) -> String {
    match tail {
        Some(d) => stats::dur(d),
        None => format!("still busy after {}", stats::dur(SETTLE_MAX)),
    }
}

/// What one notification's delivery came to, Alertmanager-style: retried while
/// Karo answers 5xx (the deterministic Job names make that safe).
#[derive(Default)]
struct Delivery {
    /// Latency of every attempt.
    latencies: Vec<Duration>,
    /// The last answer's summary.
    summary: Value,
    attempts: usize,
    ok: bool,
}

async fn deliver(http: &reqwest::Client, hook: &str, body: Vec<u8>) -> Delivery {
    let mut d = Delivery::default();
    while d.attempts < 20 {
        d.attempts += 1;
        let t = Instant::now();
        let sent = http
            .post(hook)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let answer = match sent {
            Ok(r) => {
                let code = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                Some((code, text))
            }
            Err(_) => None,
        };
        d.latencies.push(t.elapsed());
        if let Some((code, text)) = answer {
            d.summary = serde_json::from_str(&text).unwrap_or(Value::String(text));
            if code == 200 {
                d.ok = true;
                return d;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d
}

fn count(deliveries: &[Delivery], key: &str) -> u64 {
    deliveries
        .iter()
        .filter_map(|d| d.summary.get(key)?.as_u64())
        .sum()
}

#[derive(Debug, PartialEq, Eq)]
enum Created {
    Yes,
    AlreadyExists,
    Failed(String),
}

/// One direct create, retried like Karo's webhook would be on a retryable error.
async fn create_job(api: &Api<Job>, job: &Job) -> (Duration, Created) {
    let pp = PostParams {
        field_manager: Some("karo".into()),
        ..Default::default()
    };
    let t = Instant::now();
    let mut last = String::new();
    for _ in 0..20 {
        match api.create(&pp, job).await {
            Ok(_) => return (t.elapsed(), Created::Yes),
            Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
                return (t.elapsed(), Created::AlreadyExists)
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (t.elapsed(), Created::Failed(last))
}

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
    let mut b = Bench {
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
    };
    // Namespaces are fixed at Karo's start, so they are made first.
    for n in E2E_SIZES {
        let ns = b.cp.namespace(&format!("karo-{n}")).await;
        b.karo_namespaces.push(ns);
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
        let ns = b.karo_namespaces[i].clone();
        let settled = b.alert_to_job(&karo, n, &ns, report).await?;
        during = during.max(memory(karo.pid())?.0);
        if !settled {
            restarts += 1;
            karo = b
                .restart_karo(karo, &cm, &format!("karo-e2e-{restarts}"), report)
                .await?;
        }
    }
    let ns = b.karo_namespaces[E2E_SIZES.len()].clone();
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
            "Karo was still loading the API server {} after its last answer: replaced by a fresh process (log {name}.log); the API server was quiet {} after the old one stopped",
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

    /// Waits until the API server has been quiet (fewer than 5 requests in a
    /// second) and returns how long that took; `None` if it was still busy after
    /// `SETTLE_MAX`.
    /// Posts every body to `hook`, `IN_FLIGHT` at a time, while the API server is
    /// profiled as `profile`; then waits for the API server to settle. Returns the
    /// deliveries, the time they took, and the settling tail.
    async fn deliver_all(
        &self,
        hook: &str,
        bodies: Vec<Vec<u8>>,
        profile: &str,
    ) -> (Vec<Delivery>, Duration, Option<Duration>) {
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
        (deliveries, elapsed, self.settle().await)
    }

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

    /// The Jobs Karo would create for `bodies`, built with Karo's own `build_job`
    /// for the reaction `ar` as read back from the API server.
    fn build_jobs(&self, ar: &AlertReaction, bodies: &[Vec<u8>]) -> Result<Vec<Job>> {
        let reaction =
            compile(ar, &self.renderer, &Policy::default()).map_err(|e| anyhow!("{e}"))?;
        let defaults = JobDefaults::default();
        let mut jobs = Vec::new();
        for body in bodies {
            let notification = parse_notification(body, jiff::Timestamp::now())?;
            for alert in &notification.alerts {
                jobs.push(build_job(&JobInput {
                    reaction: &reaction,
                    source: &reaction.sources[0],
                    alert,
                    notification: &notification,
                    renderer: &self.renderer,
                    skeleton: &self.skeleton,
                    defaults: &defaults,
                })?);
            }
        }
        Ok(jobs)
    }

    /// (2): 1000 distinct matching alerts in notifications of `n`, through Karo and
    /// directly, each in a fresh namespace.
    async fn alert_to_job(
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
        let latencies: Vec<Duration> = deliveries
            .iter()
            .flat_map(|d| d.latencies.iter().copied())
            .collect();
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
    async fn storm(&mut self, karo: &Karo, karo_ns: &str, report: &mut Report) -> Result<bool> {
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
        let latencies: Vec<Duration> = deliveries
            .iter()
            .flat_map(|d| d.latencies.iter().copied())
            .collect();
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
    async fn reload(&self, karo: &Karo, cm: &ConfigMapDir, report: &mut Report) -> Result<()> {
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
    async fn memory_10k(&mut self, report: &mut Report) -> Result<u64> {
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
