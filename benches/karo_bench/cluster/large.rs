//! (7) Large notifications in parallel: `CLIENTS` clients each post
//! `PER_CLIENT` notifications of about `BODY_MIB` MiB (many alerts with long
//! annotations, matching no reaction, so that what is measured is reading,
//! parsing and matching, not API writes), retrying a 503 after 100 ms as
//! Alertmanager retries. Karo's peak RSS (VmHWM) against its idle RSS, with
//! `http.maxConcurrentNotifications` at its default and raised to `CLIENTS`.

use bytes::Bytes;
use karo::model::config::HttpConfig;

use super::*;

/// Clients posting at once, as many busy Alertmanager groups flushing together.
const CLIENTS: usize = 64;
/// Notifications each client posts, one after another.
const PER_CLIENT: usize = 4;
/// Size of each notification, in MiB (below the 4 MiB `webhook.maxBodyBytes`).
const BODY_MIB: usize = 3;
/// Distinct bodies (the clients share them, so the bench's own memory stays small).
const BODIES: usize = 8;

/// What a run of (7) measured.
struct Outcome {
    idle: u64,
    peak: u64,
    accepted: usize,
    refused: usize,
    took: Duration,
}

pub async fn run(report: &mut Report) -> Result<()> {
    let begun = Instant::now();
    let cp = ControlPlane::start().await?;
    cp.install_crd().await;
    let client = cp.client().await;
    let ns = cp.namespace("large").await;
    let api: Api<AlertReaction> = Api::namespaced(client, &ns);
    api.create(&PostParams::default(), &e2e_reaction(&ns, "Large")?)
        .await
        .context("creating the reaction")?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .timeout(Duration::from_secs(120))
        .build()?;
    let bodies: Vec<Bytes> = (0..BODIES).map(|i| Bytes::from(large_body(i))).collect();
    let size = bodies.iter().map(Bytes::len).sum::<usize>() / bodies.len();
    let default_limit = HttpConfig::default().max_concurrent_notifications;
    for (name, limit) in [("default", default_limit), ("raised", CLIENTS)] {
        let config = format!(
            "{}http:\n  maxConcurrentNotifications: {limit}\n",
            config_yaml("/webhook", std::slice::from_ref(&ns))
        );
        let cm = ConfigMapDir::new(&[("config.yaml", &config)])?;
        let karo = Karo::start(cp.kubeconfig(), &cm.config(), &http).await?;
        let outcome = measure(&karo, &http, &bodies).await;
        karo.stop(&format!("karo-large-{name}"));
        let o = outcome?;
        let total = CLIENTS * PER_CLIENT;
        if o.accepted != total {
            report.failures.push(format!(
                "(7) {name}: {} of {total} notifications answered 200",
                o.accepted
            ));
        }
        report.note(format!(
            "(7) {name}, maxConcurrentNotifications {limit}: {total} notifications of {:.1} MiB from {CLIENTS} clients in {}; {} answers 503 retried; idle VmHWM {}",
            size as f64 / (1024.0 * 1024.0),
            stats::dur(o.took),
            o.refused,
            stats::mib(o.idle),
        ));
        report.row(
            format!(
                "7 peak RSS, {CLIENTS} clients × {BODY_MIB} MiB notifications, maxConcurrentNotifications {limit} ({name})"
            ),
            stats::mib(o.peak),
            format!("idle: {}", stats::mib(o.idle)),
            stats::ratio(o.peak as f64 / o.idle as f64),
            "—".into(),
            "—".into(),
        );
    }
    report.note(format!(
        "(7) large notifications took {} with its control plane",
        stats::dur(begun.elapsed())
    ));
    Ok(())
}

async fn measure(karo: &Karo, http: &reqwest::Client, bodies: &[Bytes]) -> Result<Outcome> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle, _) = memory(karo.pid())?;
    let hook = format!("{}/webhook", karo.url());
    let t0 = Instant::now();
    let results: Vec<Result<(usize, usize)>> = stream::iter(0..CLIENTS)
        .map(|c| {
            let hook = hook.clone();
            async move {
                let (mut accepted, mut refused) = (0, 0);
                for n in 0..PER_CLIENT {
                    let body = bodies[(c + n) % bodies.len()].clone();
                    loop {
                        let resp = http
                            .post(&hook)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await?;
                        match resp.status().as_u16() {
                            503 => {
                                refused += 1;
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            200 => {
                                accepted += 1;
                                break;
                            }
                            code => bail!("answer {code}: {}", resp.text().await?),
                        }
                    }
                }
                Ok((accepted, refused))
            }
        })
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    let took = t0.elapsed();
    let (peak, _) = memory(karo.pid())?;
    let (mut accepted, mut refused) = (0, 0);
    for r in results {
        let (a, f) = r?;
        accepted += a;
        refused += f;
    }
    Ok(Outcome {
        idle,
        peak,
        accepted,
        refused,
        took,
    })
}

/// A notification of about `BODY_MIB` MiB: alerts with long annotations, as a big
/// alert group with verbose descriptions, under an alert name no reaction has.
fn large_body(seed: usize) -> Vec<u8> {
    let text = "x".repeat(900);
    let alerts: Vec<Value> = (0..BODY_MIB * 1000)
        .map(|i| {
            serde_json::json!({
                "status": "firing",
                "labels": {
                    "alertname": "Unmatched",
                    "instance": format!("node-{seed}-{i}:9100"),
                    "severity": "critical",
                },
                "annotations": {"description": text},
                "startsAt": "2026-12-01T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example:9090/graph",
                "fingerprint": format!("{seed:04x}{i:012x}"),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"Unmatched\", seed=\"{seed}\"}}"),
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "karo",
        "groupLabels": {"alertname": "Unmatched"},
        "commonLabels": {"alertname": "Unmatched"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": alerts,
    }))
    .unwrap_or_default()
}
