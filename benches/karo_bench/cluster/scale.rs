//! (8) Replicas: 1, 2 and 3 `karo run` processes with the same config, each on
//! its own port, behind one address that hands each new TCP connection to the next
//! of them in turn (a small round-robin TCP proxy here, as a Service without session
//! affinity would). Every replica accepts webhooks and creates Runs; only the Lease
//! holder runs the runner that creates the Jobs; all share the one API server.
//!
//! Per replica count: `NOTIFICATIONS` notifications of one alert each (distinct
//! fingerprints), `IN_FLIGHT` at a time over a fresh client's connections, timed
//! from the first post until every Run and every Job exists (watches, as in (2)).
//! Then every notification is delivered once more, over new connections and in the
//! reverse order, so that most duplicates land on another replica than the
//! original did: exactly one Run and one Job per alert must remain (a behaviour
//! check). Each replica count runs `ROUNDS` times, interleaved (1, 2, 3, 1, 2, 3,
//! ...), each time with fresh processes, a fresh namespace (its own Lease, as Karo
//! puts the Lease in the first watched namespace) and a fresh proxy.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use super::*;

/// Notifications (one alert each) per round, as in (2).
const NOTIFICATIONS: usize = 1000;
/// Replica counts, in the order each round runs them.
const REPLICAS: [usize; 3] = [1, 2, 3];
/// Rounds of every replica count. A round is about 15 to 25 s, so the part takes
/// about 3 to 4 minutes with its control plane.
const ROUNDS: usize = 3;
/// After the redelivery's last answer, before the Runs and Jobs are listed: a
/// second Job for an alert would be created by then (the first ones all were
/// before the redelivery began).
const AFTER_REDELIVERY: Duration = Duration::from_secs(2);

/// A TCP proxy on `127.0.0.1:<free port>` handing each accepted connection to the
/// next backend in turn and copying bytes both ways. Stops accepting on drop; the
/// connections it made end with their backends.
struct Proxy {
    addr: SocketAddr,
    /// Connections handed to each backend so far.
    connections: Arc<Vec<AtomicUsize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(backends: Vec<SocketAddr>) -> Result<Proxy> {
        ensure!(!backends.is_empty(), "a proxy needs a backend");
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let connections: Arc<Vec<AtomicUsize>> =
            Arc::new(backends.iter().map(|_| AtomicUsize::new(0)).collect());
        let counts = connections.clone();
        let task = tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let i = next % backends.len();
                next += 1;
                counts[i].fetch_add(1, Ordering::Relaxed);
                let backend = backends[i];
                tokio::spawn(async move {
                    let _ = inbound.set_nodelay(true);
                    if let Ok(mut outbound) = TcpStream::connect(backend).await {
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(Proxy {
            addr,
            connections,
            task,
        })
    }

    fn connections(&self) -> Vec<usize> {
        self.connections
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one round of one replica count measured.
struct ScaleRound {
    replicas: usize,
    /// From the first post until every Run existed.
    to_runs: Option<Duration>,
    /// From the first post until every Job existed.
    to_jobs: Option<Duration>,
    /// CPU seconds from the first post until every Job existed.
    apiserver_cpu: f64,
    etcd_cpu: f64,
    karo_cpu: f64,
    /// Every webhook attempt's latency, first delivery.
    latencies: Vec<Duration>,
    exactly_once: bool,
}

pub async fn run(report: &mut Report) -> Result<()> {
    let begun = Instant::now();
    let cp = ControlPlane::start().await?;
    cp.install_crd().await;
    let b = Bench::new(cp).await?;
    let bodies: Vec<Vec<u8>> = (0..NOTIFICATIONS)
        .map(|k| {
            serde_json::to_vec(&pure::notification_json(vec![pure::alert_json(
                k, "Scale", "ops",
            )]))
        })
        .collect::<Result<_, _>>()?;
    let mut rounds: Vec<ScaleRound> = Vec::new();
    for round in 0..ROUNDS {
        for replicas in REPLICAS {
            rounds.push(b.scale_round(replicas, round, &bodies, report).await?);
        }
    }

    let rate = |r: &ScaleRound| r.to_jobs.map(|d| NOTIFICATIONS as f64 / d.as_secs_f64());
    let rates_of = |replicas: usize| -> Vec<f64> {
        rounds
            .iter()
            .filter(|r| r.replicas == replicas)
            .filter_map(rate)
            .collect()
    };
    let (one, ..) = stats::median_range(&rates_of(1));
    for replicas in REPLICAS {
        let these: Vec<&ScaleRound> = rounds.iter().filter(|r| r.replicas == replicas).collect();
        let rates = rates_of(replicas);
        let (median_rate, ..) = stats::median_range(&rates);
        let to_runs: Vec<Duration> = these.iter().filter_map(|r| r.to_runs).collect();
        let to_jobs: Vec<Duration> = these.iter().filter_map(|r| r.to_jobs).collect();
        let apiserver: Vec<f64> = these.iter().map(|r| r.apiserver_cpu).collect();
        // Of one CPU, over the window; the machine has `nproc` of them.
        let busy: Vec<f64> = these
            .iter()
            .filter_map(|r| Some(r.apiserver_cpu / r.to_jobs?.as_secs_f64()))
            .collect();
        let etcd: Vec<f64> = these.iter().map(|r| r.etcd_cpu).collect();
        let karo: Vec<f64> = these.iter().map(|r| r.karo_cpu).collect();
        let latencies: Vec<Duration> = these
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        let incomplete = these.len() - to_jobs.len();
        let secs = |v: &[f64]| {
            let (m, lo, hi) = stats::median_range(v);
            format!("{m:.1} s ({lo:.1}–{hi:.1})")
        };
        let (busy_median, ..) = stats::median_range(&busy);
        report.row(
            format!(
                "8 scale, {replicas} replica(s) behind a round-robin proxy, {NOTIFICATIONS} notifications → Jobs, median (min–max) of {}",
                these.len()
            ),
            format!(
                "{}, {} until every Job exists{}; every Run {}; webhook p50 {} / p99 {}; CPU: kube-apiserver {} ({:.2} CPUs busy), etcd {}, Karo (all replicas) {}",
                stats::rate_range(&rates),
                stats::dur_range(&to_jobs),
                if incomplete > 0 {
                    format!(" ({incomplete} round(s) past the hang guard left out)")
                } else {
                    String::new()
                },
                stats::dur_range(&to_runs),
                stats::dur(percentile(&latencies, 50.0)),
                stats::dur(percentile(&latencies, 99.0)),
                secs(&apiserver),
                busy_median,
                secs(&etcd),
                secs(&karo),
            ),
            if replicas == 1 {
                "1 replica (itself)".into()
            } else {
                format!("1 replica: {}", stats::rate(one))
            },
            stats::ratio(median_rate / one),
            format!("Runs = Jobs = {NOTIFICATIONS} after redelivery"),
            stats::yes_no(incomplete == 0 && these.iter().all(|r| r.exactly_once)),
        );
    }
    report.note(format!(
        "(8) rounds interleaved {}; each a fresh namespace, processes and proxy; {IN_FLIGHT} notifications in flight over keep-alive connections, which the proxy deals out one per replica in turn; the redelivery over new connections in reverse order; CPU from the first post until every Job existed; (8) took {} with its control plane",
        (0..ROUNDS)
            .map(|_| REPLICAS.map(|r| r.to_string()).join(", "))
            .collect::<Vec<_>>()
            .join(", "),
        stats::dur(begun.elapsed())
    ));
    Ok(())
}

/// Replicas' indices whose `karo_leader` is 1.
async fn leaders(http: &reqwest::Client, urls: &[String]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        if metric(http, url, "karo_leader")
            .await
            .is_ok_and(|v| v >= 1.0)
        {
            out.push(i);
        }
    }
    out
}

fn cpu_of(before: &Probe, after: &Probe, name: &str) -> f64 {
    let of = |p: &Probe| {
        p.cpu
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0.0, |(_, s)| *s)
    };
    of(after) - of(before)
}

/// Posts every body to `hook`, `IN_FLIGHT` at a time.
async fn deliver_each(
    http: &reqwest::Client,
    hook: &str,
    bodies: impl Iterator<Item = Vec<u8>>,
) -> Vec<Delivery> {
    stream::iter(bodies)
        .map(|body| deliver(http, hook, body))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await
}

/// A client of its own: new connections, which the proxy deals out afresh.
fn fresh_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .timeout(Duration::from_secs(120))
        .build()?)
}

impl Bench {
    async fn scale_round(
        &self,
        replicas: usize,
        round: usize,
        bodies: &[Vec<u8>],
        report: &mut Report,
    ) -> Result<ScaleRound> {
        let tag = format!("{replicas} replica(s), round {}", round + 1);
        let ns = self
            .cp
            .namespace(&format!("scale-{replicas}-{round}"))
            .await;
        let api: Api<AlertReaction> = Api::namespaced(self.client.clone(), &ns);
        api.create(&PostParams::default(), &e2e_reaction(&ns, "Scale")?)
            .await
            .context("creating the reaction")?;
        let cm = ConfigMapDir::new(&[(
            "config.yaml",
            &config_yaml("/webhook", std::slice::from_ref(&ns)),
        )])?;
        let mut karos = Vec::new();
        for _ in 0..replicas {
            let karo = self.start_karo(&cm.config()).await?;
            self.wait_loaded(&karo, 1).await?;
            karos.push(karo);
        }
        let urls: Vec<String> = karos.iter().map(|k| k.url().to_string()).collect();
        let http = &self.http;
        wait_until(HANG_GUARD, || {
            let urls = &urls;
            async move { leaders(http, urls).await.len() == 1 }
        })
        .await
        .context("no single leader among the replicas")?;
        let leader = leaders(http, &urls).await.first().copied();
        let backends = urls
            .iter()
            .map(|u| {
                u.trim_start_matches("http://")
                    .parse::<SocketAddr>()
                    .with_context(|| format!("{u} is not http://<ip>:<port>"))
            })
            .collect::<Result<Vec<_>>>()?;
        let proxy = Proxy::start(backends).await?;
        let hook = format!("http://{}/webhook", proxy.addr);
        self.settle().await;

        let mut runs_seen = Counter::start(
            Api::<AlertReactionRun>::namespaced(self.client.clone(), &ns),
            |_| true,
        )
        .await?;
        let mut jobs_seen =
            Counter::start(Api::<Job>::namespaced(self.client.clone(), &ns), |_| true).await?;
        let karo_cpu = |karos: &[Karo]| karos.iter().map(|k| cpu_seconds(k.pid())).sum::<f64>();
        let client = fresh_client()?;
        let before = Probe::take(self, None).await;
        let karo_before = karo_cpu(&karos);
        let t0 = Instant::now();
        let first = deliver_each(&client, &hook, bodies.iter().cloned()).await;
        let answered = t0.elapsed();
        let runs_at = runs_seen.reached(NOTIFICATIONS).await;
        let jobs_at = jobs_seen.reached(NOTIFICATIONS).await;
        let after = Probe::take(self, None).await;
        let karo_after = karo_cpu(&karos);
        let first_connections = proxy.connections();

        let client = fresh_client()?;
        let t1 = Instant::now();
        let again = deliver_each(&client, &hook, bodies.iter().rev().cloned()).await;
        let redelivered = t1.elapsed();
        tokio::time::sleep(AFTER_REDELIVERY).await;
        let runs: usize = self.count_runs(&ns).await?.values().sum();
        let jobs = self.count_jobs(&ns).await?;
        let mut created_by: Vec<u64> = Vec::new();
        for url in &urls {
            let n = metric(http, url, "karo_runs_created_total").await;
            created_by.push(n.map_or(0, |n| n as u64));
        }
        let connections = proxy.connections();
        drop(proxy);
        for (i, karo) in karos.into_iter().enumerate() {
            karo.stop(&format!("karo-scale-{replicas}-{i}"));
        }

        let created = count(&first, "created") + count(&again, "created");
        let deduplicated = count(&again, "deduplicated");
        let undelivered =
            first.iter().filter(|d| !d.ok).count() + again.iter().filter(|d| !d.ok).count();
        let retries: usize = first.iter().chain(&again).map(|d| d.attempts - 1).sum();
        let exactly_once = runs == NOTIFICATIONS
            && jobs == NOTIFICATIONS
            && created == NOTIFICATIONS as u64
            && undelivered == 0;
        if !exactly_once {
            report.fail(format!(
                "(8) {tag}: {runs} Runs and {jobs} Jobs listed after the redelivery, {created} created in the answers, {undelivered} notifications never answered 200 (expected {NOTIFICATIONS} of each, all answered)"
            ));
        }
        if let Err(e) = &runs_at {
            report.fail(format!("(8) {tag}: not every Run was created: {e:#}"));
        }
        if let Err(e) = &jobs_at {
            report.fail(format!("(8) {tag}: not every Job was created: {e:#}"));
        }
        let to_runs = runs_at.ok().map(|at| at.saturating_duration_since(t0));
        let to_jobs = jobs_at.ok().map(|at| at.saturating_duration_since(t0));
        let shown = |d: Option<Duration>| d.map_or_else(|| "—".to_string(), stats::dur);
        report.note(format!(
            "(8) {tag}: every Run {}, every Job {}, last answer {}; redelivery of all {NOTIFICATIONS} in {} ({deduplicated} deduplicated); Runs created per replica {created_by:?} (leader: replica {}); connections per replica {first_connections:?} first, {connections:?} with the redelivery's; {retries} retried deliveries; {}",
            shown(to_runs),
            shown(to_jobs),
            stats::dur(answered),
            stats::dur(redelivered),
            leader.map_or_else(|| "?".to_string(), |l| l.to_string()),
            before.diff(&after),
        ));
        Ok(ScaleRound {
            replicas,
            to_runs,
            to_jobs,
            apiserver_cpu: cpu_of(&before, &after, "kube-apiserver"),
            etcd_cpu: cpu_of(&before, &after, "etcd"),
            karo_cpu: karo_after - karo_before,
            latencies: all_latencies(&first),
            exactly_once,
        })
    }
}
