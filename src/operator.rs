//! `karo run`: loads the configuration, builds the daemon's parts with the
//! handles each needs, serves the HTTP edge, and stops gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::core::render::Renderer;
use crate::core::snapshot::Snapshot;
use crate::daemon::controller::Controller;
use crate::daemon::events;
use crate::daemon::executor::Executor;
use crate::daemon::index::ReactionIndex;
use crate::daemon::limits::RateLimiter;
use crate::daemon::metrics::Metrics;
use crate::daemon::readiness::Readiness;
use crate::daemon::reload::{ConfigSource, Reloader};
use crate::daemon::runs::leader::{self, LeaseSpec};
use crate::daemon::runs::runner::Runner;
use crate::daemon::status::StatusOwner;
use crate::daemon::telemetry;
use crate::http::auth::Authenticator;
use crate::http::edge::Edge;
use crate::http::{server, tls};
use crate::model::config::{self, Overrides};

/// How long `karo run` spends at shutdown publishing the Events still queued.
const EVENTS_GRACE: Duration = Duration::from_secs(10);

/// The longest a response body may pause between bytes.
const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// How long `karo run` waits at shutdown for notifications still being handled.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(30);

/// Loads the configuration, connects to the API server, and serves until stopped.
pub async fn run(config_file: Option<PathBuf>, overrides: Overrides) -> anyhow::Result<()> {
    let file = config::config_file(config_file.as_deref())?;
    let config = config::load(file.as_deref(), &overrides)?;
    config.check_files()?;
    telemetry::init(&config.log_level, config.log_format)?;
    let renderer = Arc::new(Renderer::new());
    let snapshot = Snapshot::prepare(config, &renderer)?;
    let port = snapshot.config.http.port;

    let client = kube_client(Duration::from_secs(
        snapshot.config.limits.api_timeout_seconds,
    ))
    .await?;
    let metrics = Arc::new(Metrics::new().context("cannot register metrics")?);
    let source = ConfigSource { file, overrides };
    let reloader = Arc::new(Reloader::new(
        source,
        snapshot,
        renderer.clone(),
        metrics.clone(),
    ));
    reloader.spawn_watcher()?;
    reloader.spawn_sighup()?;

    let instance = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "karo".into());
    let (event_sender, event_publisher) =
        events::channel(client.clone(), instance.clone(), metrics.clone());
    let status = StatusOwner::new(client.clone(), metrics.clone(), event_sender.clone());
    let index = Arc::new(ReactionIndex::default());
    let readiness = Arc::new(Readiness::default());
    let controller = Controller {
        client: client.clone(),
        index: index.clone(),
        renderer: renderer.clone(),
        snapshots: reloader.subscribe(),
        status: status.handle(),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    };
    let lease = lease_spec(&reloader.subscribe().borrow().config, &instance);
    let runner = Arc::new(Runner {
        client: client.clone(),
        index: index.clone(),
        snapshots: reloader.subscribe(),
        status: status.handle(),
        events: event_sender.clone(),
        metrics: metrics.clone(),
        rate: RateLimiter::default(),
        renderer: renderer.clone(),
        alertmanager: Default::default(),
    });
    let executor = Arc::new(Executor {
        client: client.clone(),
        index,
        renderer,
        status: status.handle(),
        events: event_sender,
        metrics: metrics.clone(),
    });
    let edge = Arc::new(Edge {
        executor,
        reloader: reloader.clone(),
        snapshots: reloader.subscribe(),
        metrics,
        readiness: readiness.clone(),
        authenticator: Authenticator::default(),
        in_flight: tokio_util::task::TaskTracker::new(),
    });

    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    info!(%addr, version = env!("CARGO_PKG_VERSION"), "karo listening");

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let webhook_config = edge.snapshot().config.webhook.clone();
    let tls_config = &webhook_config.tls;
    let mut https = match (
        tls_config.enabled,
        &tls_config.cert_file,
        &tls_config.key_file,
    ) {
        (true, Some(cert), Some(key)) => {
            let server_config = tls::server_config(cert, key)?;
            let addr = SocketAddr::from(([0, 0, 0, 0], webhook_config.port));
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            info!(%addr, "karo listening for HTTPS");
            let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
            Some(tokio::spawn(server::serve(
                edge.clone(),
                listener,
                Some(acceptor),
                stop_rx.clone(),
            )))
        }
        _ => None,
    };
    let watch = tokio::spawn(controller.run());
    let (leading_tx, leading) = tokio::sync::watch::channel(false);
    let election = tokio::spawn(leader::elect(
        client.clone(),
        lease,
        leading_tx,
        stop_rx.clone(),
    ));
    tokio::spawn(runner.run(leading));
    tokio::spawn(status.clone().run());
    let (events_stop, events_stop_rx) = tokio::sync::oneshot::channel();
    let events_done = tokio::spawn(event_publisher.run(events_stop_rx));
    let mut serve = tokio::spawn(server::serve(edge.clone(), listener, None, stop_rx));
    let https_done = async {
        match &mut https {
            Some(handle) => handle.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = https_done => anyhow::bail!("the HTTPS server stopped: {r:?}"),
        _ = shutdown_signal() => {}
        r = watch => anyhow::bail!("the AlertReaction watch stopped: {r:?}"),
        r = &mut serve => anyhow::bail!("the HTTP server stopped: {r:?}"),
    }
    // Not ready any more, so the Service stops sending; requests in flight finish.
    info!("shutting down: finishing requests in flight");
    readiness.set_stopping();
    let _ = stop.send(true);
    let _ = serve.await;
    if let Some(handle) = https {
        let _ = handle.await;
    }
    // Notifications whose client went away are still being handled.
    edge.in_flight.close();
    if tokio::time::timeout(IN_FLIGHT_GRACE, edge.in_flight.wait())
        .await
        .is_err()
    {
        warn!(
            left = edge.in_flight.len(),
            "notifications still being handled after {IN_FLIGHT_GRACE:?}; stopping"
        );
    }
    // Hand the Lease over at once rather than after it expires.
    let _ = election.await;
    // Counters of the last requests, not yet written.
    status.flush().await;
    // Events still queued: published, within a bound.
    let _ = events_stop.send(());
    if tokio::time::timeout(EVENTS_GRACE, events_done)
        .await
        .is_err()
    {
        warn!("Events still queued after {EVENTS_GRACE:?}; stopping");
    }
    info!("stopped");
    Ok(())
}

/// A Kubernetes client (in-cluster, else KUBECONFIG) whose every call fails
/// when the API server has not answered within `timeout`: a stalled API
/// server, or a connection that went dead without closing, fails the call
/// (which its caller retries) instead of holding the webhook, a status writer
/// or the shutdown forever. Watches answer at once and then stream; they are
/// bounded by kube's idle timeout on the stream instead.
async fn kube_client(timeout: Duration) -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::infer()
        .await
        .context("cannot configure a Kubernetes client (in-cluster or KUBECONFIG)")?;
    // A body that stops half-way: longer than a watch's server-side timeout
    // (290 s), so a quiet watch is never cut.
    config.read_timeout = Some(WATCH_READ_TIMEOUT.max(timeout));
    config.reset_reader_on_write = true;
    let builder = kube::client::ClientBuilder::try_from(config)
        .context("cannot configure a Kubernetes client")?;
    Ok(builder
        .with_layer(&tower::timeout::TimeoutLayer::new(timeout))
        .build())
}

/// The Lease: named by the configuration, in the configured namespace, else
/// the pod's, else the first watched one, else `default`; held under a name
/// unique to this process.
fn lease_spec(config: &crate::model::config::Config, instance: &str) -> LeaseSpec {
    let election = &config.leader_election;
    let namespace = election
        .namespace
        .clone()
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|n| !n.is_empty())
        })
        .or_else(|| config.namespaces.first().cloned())
        .unwrap_or_else(|| "default".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    LeaseSpec {
        namespace,
        name: election.lease_name.clone(),
        identity: format!("{instance}_{}_{nanos:08x}", std::process::id()),
        duration: election.lease_duration(),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    match term {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
