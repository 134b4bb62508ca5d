//! What a phase cost (API server requests, CPU), and how notifications and
//! direct Job creations are delivered and counted.

use super::*;

/// What a phase cost, measured from outside: the API server's request counters
/// (`apiserver_request_total`, by verb, resource and code) and the CPU time of
/// each process.
pub(super) struct Probe {
    pub(super) requests: std::collections::BTreeMap<String, f64>,
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
/// Karo answers 5xx (the deterministic Job names make that safe).
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

/// One direct create, retried like Karo's webhook would be on a retryable error.
pub(super) async fn create_job(api: &Api<Job>, job: &Job) -> (Duration, Created) {
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
