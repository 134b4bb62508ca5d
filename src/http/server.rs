//! Accepting connections: HTTP/1 and HTTP/2 on one listener, TLS when
//! configured, and a graceful stop that lets requests in flight finish.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::http::edge::Edge;
use crate::http::routes::route;

/// How long requests in flight may take to finish on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP (or, with `tls`, HTTPS) on `listener` until `shutdown` turns true;
/// then stops accepting and lets requests in flight finish, for at most
/// `SHUTDOWN_GRACE`.
pub async fn serve(
    edge: Arc<Edge>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let edge = edge.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(edge, stream, peer, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(edge, stream, peer, watcher).await,
                        Ok(Err(e)) => debug!(peer = %peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(peer = %peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        warn!("requests still in flight after {SHUTDOWN_GRACE:?}; closing them");
    }
}

async fn serve_connection<I>(edge: Arc<Edge>, io: I, peer: SocketAddr, watcher: Watcher)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout =
        Duration::from_secs(edge.snapshot().config.http.header_read_timeout_seconds);
    let service = service_fn(move |req| {
        let edge = edge.clone();
        async move { Ok::<_, Infallible>(route(&edge, req, peer).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        debug!(peer = %peer, error = %e, "connection closed with an error");
    }
}
