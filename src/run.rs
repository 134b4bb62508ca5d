//! `karo run`: the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tracing::info;

use crate::config::{self, Config, Overrides};
use crate::context::{Context, Runtime};
use crate::jobs::Skeleton;
use crate::metrics::Metrics;
use crate::reload::{self, ConfigSource};
use crate::render::Renderer;
use crate::{controller, telemetry, webhook};

/// Builds what a configuration implies (the Job skeleton), validating it whole.
pub fn prepare(config: Config, renderer: &Renderer) -> Result<Runtime, String> {
    let skeleton = match &config.job_template_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!("key `jobTemplateFile`: cannot read {}: {e}", path.display())
            })?;
            Skeleton::parse(&text, &path.display().to_string())?
        }
        None => Skeleton::builtin()?,
    };
    skeleton.validate(renderer)?;
    Ok(Runtime { config, skeleton })
}

/// Loads the configuration, connects to the API server, and serves until stopped.
pub async fn run(config_file: Option<PathBuf>, overrides: Overrides) -> anyhow::Result<()> {
    let file = config::config_file(config_file.as_deref())?;
    let config = config::load(file.as_deref(), &overrides)?;
    telemetry::init(&config.log_level, config.log_format)?;
    let renderer = Renderer::new();
    let runtime = prepare(config, &renderer).map_err(anyhow::Error::msg)?;
    let port = runtime.config.http.port;

    let client = kube::Client::try_default()
        .await
        .context("cannot configure a Kubernetes client (in-cluster or KUBECONFIG)")?;
    let metrics = Metrics::new().context("cannot register metrics")?;
    metrics.config_last_reload_successful.set(1);
    metrics
        .config_last_reload_success_timestamp
        .set(jiff::Timestamp::now().as_millisecond() as f64 / 1000.0);
    let source = ConfigSource { file, overrides };
    let ctx = Context::new(client, runtime, metrics, source);
    reload::spawn_watcher(ctx.clone()).map_err(anyhow::Error::msg)?;
    reload::spawn_sighup(ctx.clone()).map_err(anyhow::Error::msg)?;

    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    info!(%addr, version = env!("CARGO_PKG_VERSION"), "karo listening");

    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let tls = &ctx.runtime().config.webhook.tls;
    let https = match (tls.enabled, &tls.cert_file, &tls.key_file) {
        (true, Some(cert), Some(key)) => {
            let server_config = crate::tls::server_config(cert, key).map_err(anyhow::Error::msg)?;
            let addr = SocketAddr::from(([0, 0, 0, 0], ctx.runtime().config.webhook.port));
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            info!(%addr, "karo listening for HTTPS");
            let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
            Some(tokio::spawn(webhook::serve(
                ctx.clone(),
                listener,
                Some(acceptor),
                stop_rx.clone(),
            )))
        }
        _ => None,
    };
    let mut https = https;
    let watch = tokio::spawn(controller::run(ctx.clone()));
    tokio::spawn(crate::status::run(ctx.clone()));
    tokio::spawn(crate::events::run(ctx.clone()));
    let mut serve = tokio::spawn(webhook::serve(ctx.clone(), listener, None, stop_rx));
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
    ctx.set_synced(false);
    let _ = stop.send(true);
    let _ = serve.await;
    if let Some(handle) = https {
        let _ = handle.await;
    }
    // Counters of the last requests, not yet written.
    crate::status::flush(&ctx).await;
    info!("stopped");
    Ok(())
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
