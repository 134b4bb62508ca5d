//! What a phase cost (API server requests, writes, CPU), and how notifications
//! and direct Run and Job creations are delivered and counted.

use std::collections::BTreeMap;

use super::*;

/// What a phase cost, measured from outside: the API server's request counters
/// (`apiserver_request_total`, by verb, resource and code) and the CPU time of
/// each process.
pub(super) struct Probe {
    pub(super) requests: BTreeMap<String, f64>,
    /// When it was taken.
    pub(super) at: Instant,
    pub(super) cpu: Vec<(&'static str, f64)>,
}

impl Probe {
    pub(super) async fn take(b: &Bench, karo: Option<&Karo>) -> Probe {
        let mut pids: Vec<(&'static str, u32)> = vec![
            ("kube-apiserver", b.cp.apiserver_pid().unwrap_or(0)),
            ("etcd", b.cp.etcd_pid()),
            ("bench client", std::process::id()),
        ];
        if let Some(k) = karo {
            pids.insert(0, ("karo", k.pid()));
        }
        let cpu = pids.into_iter().map(|(n, p)| (n, cpu_seconds(p))).collect();
        let mut requests = BTreeMap::new();
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
        Probe {
            requests,
            cpu,
            at: Instant::now(),
        }
    }

    /// `POST jobs 201 ×1000, ...; CPU karo 1.2 s, ...` between `self` and `later`.
    pub(super) fn diff(&self, later: &Probe) -> String {
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
pub(super) fn settled(tail: Option<Duration>) -> String {
    match tail {
        Some(d) => stats::dur(d),
        None => format!("still busy after {}", stats::dur(SETTLE_MAX)),
    }
}

/// What one notification's delivery came to, Alertmanager-style: retried while
/// Karo answers 5xx (the deterministic Run names make that safe).
#[derive(Default)]
pub(super) struct Delivery {
    /// Latency of every attempt.
    pub(super) latencies: Vec<Duration>,
    /// The last answer's summary.
    pub(super) summary: Value,
    pub(super) attempts: usize,
    pub(super) ok: bool,
}

pub(super) async fn deliver(http: &reqwest::Client, hook: &str, body: Vec<u8>) -> Delivery {
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

/// The latency of every attempt of every delivery.
pub(super) fn all_latencies(deliveries: &[Delivery]) -> Vec<Duration> {
    deliveries
        .iter()
        .flat_map(|d| d.latencies.iter().copied())
        .collect()
}

pub(super) fn count(deliveries: &[Delivery], key: &str) -> u64 {
    deliveries
        .iter()
        .filter_map(|d| d.summary.get(key)?.as_u64())
        .sum()
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Created {
    Yes,
    AlreadyExists,
    Failed(String),
}

/// One direct create, retried like Karo would on a retryable error; the object
/// as created.
pub(super) async fn create<K>(api: &Api<K>, obj: &K) -> (Created, Option<K>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let pp = PostParams {
        field_manager: Some("karo".into()),
        ..Default::default()
    };
    let mut last = String::new();
    for _ in 0..20 {
        match api.create(&pp, obj).await {
            Ok(created) => return (Created::Yes, Some(created)),
            Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => {
                return (Created::AlreadyExists, None)
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (Created::Failed(last), None)
}

/// One occurrence created directly, as Karo's webhook and runner do it: its Run,
/// then (when this call created the Run) the Run's Job, owned by the Run. The
/// time both took, and what became of each.
pub(super) async fn create_occurrence(
    runs: &Api<AlertReactionRun>,
    jobs: &Api<Job>,
    run: &AlertReactionRun,
) -> (Duration, Created, Option<Created>) {
    let t = Instant::now();
    let (made, created) = create(runs, run).await;
    let Some(created) = created else {
        return (t.elapsed(), made, None);
    };
    let uid = created.metadata.uid.clone().unwrap_or_default();
    let mut job_outcome = Created::Yes;
    for action in &run.spec.actions {
        let outcome = match job_to_create(action, &uid) {
            Ok(job) => create(jobs, &job).await.0,
            Err(e) => Created::Failed(e.to_string()),
        };
        if outcome != Created::Yes {
            job_outcome = outcome;
        }
    }
    (t.elapsed(), made, Some(job_outcome))
}

/// Writes (POST, PUT, PATCH, DELETE) to the API server between two probes, by
/// `VERB resource[/subresource]`: (all of them, of which not 2xx).
pub(super) fn writes(before: &Probe, after: &Probe) -> BTreeMap<String, (f64, f64)> {
    let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for (key, v) in &after.requests {
        let d = v - before.requests.get(key).copied().unwrap_or(0.0);
        let mut parts = key.split(' ');
        let (Some(verb), Some(resource), Some(code)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if d < 0.5 || !matches!(verb, "POST" | "PUT" | "PATCH" | "DELETE") {
            continue;
        }
        let e = out.entry(format!("{verb} {resource}")).or_default();
        e.0 += d;
        if !code.starts_with('2') {
            e.1 += d;
        }
    }
    out
}

/// Karo's writes over the life of `occurrences` Runs, by kind, from [`writes`].
pub(super) struct RunWrites {
    pub(super) runs: f64,
    pub(super) jobs: f64,
    pub(super) run_status: f64,
    pub(super) reaction_status: f64,
    pub(super) events: f64,
    /// Every other write of Karo's, by `VERB resource`.
    pub(super) other: Vec<(String, f64)>,
    /// Of all the above, answered other than 2xx (conflicts, mostly).
    pub(super) refused: f64,
    /// Lease renewals: periodic, not per occurrence.
    pub(super) leases: f64,
    /// The benchmark's own (`jobs/status`, standing in for the Job controller).
    pub(super) bench: f64,
}

impl RunWrites {
    pub(super) fn of(writes: &BTreeMap<String, (f64, f64)>) -> RunWrites {
        let mut w = RunWrites {
            runs: 0.0,
            jobs: 0.0,
            run_status: 0.0,
            reaction_status: 0.0,
            events: 0.0,
            other: Vec::new(),
            refused: 0.0,
            leases: 0.0,
            bench: 0.0,
        };
        for (key, &(n, refused)) in writes {
            let (verb, resource) = key.split_once(' ').unwrap_or(("", key));
            let slot = match (verb, resource) {
                (_, "jobs/status") => {
                    w.bench += n;
                    continue;
                }
                (_, "leases") => {
                    w.leases += n;
                    continue;
                }
                ("POST", "alertreactionruns") => &mut w.runs,
                ("POST", "jobs") => &mut w.jobs,
                (_, "alertreactionruns/status") => &mut w.run_status,
                (_, "alertreactions/status") => &mut w.reaction_status,
                (_, "events") => &mut w.events,
                _ => {
                    w.other.push((key.clone(), n));
                    w.refused += refused;
                    continue;
                }
            };
            *slot += n;
            w.refused += refused;
        }
        w
    }

    /// Karo's writes, leases and the benchmark's own excluded.
    pub(super) fn total(&self) -> f64 {
        self.runs
            + self.jobs
            + self.run_status
            + self.reaction_status
            + self.events
            + self.other.iter().map(|(_, n)| n).sum::<f64>()
    }

    /// `6.07: Run 1.00, Job 1.00, ...` per occurrence.
    pub(super) fn per(&self, occurrences: usize) -> String {
        let k = occurrences.max(1) as f64;
        let mut s = format!(
            "{:.2}: Run {:.2}, Job {:.2}, Run status {:.2}, reaction status {:.2}, Events {:.2}",
            self.total() / k,
            self.runs / k,
            self.jobs / k,
            self.run_status / k,
            self.reaction_status / k,
            self.events / k,
        );
        for (key, n) in &self.other {
            s.push_str(&format!(", {key} {:.2}", n / k));
        }
        s
    }
}

/// Marks a Job finished as the Job controller would (its status subresource).
pub(super) async fn finish_job(api: &Api<Job>, name: &str) -> Result<()> {
    let patch = serde_json::json!({
        "status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}
    });
    let mut last = None;
    for _ in 0..10 {
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow!("finishing Job {name}: {last:?}"))
}
