//! Accepting connections: HTTP/1 and HTTP/2 on one listener, TLS when
//! configured, and a graceful stop that lets requests in flight finish.
//!
//! Every connection is bounded: at most `http.maxConnections` are open per
//! listener (beyond it new ones wait in the kernel's listen backlog, as Go's
//! `netutil.LimitListener` has them wait, rather than being accepted and closed);
//! one that has not completed its TLS handshake and first request head within
//! `http.headerReadTimeoutSeconds`, whatever the protocol, is closed; so is an
//! HTTP/1 connection whose next request head takes longer than that from its first
//! byte, and any connection with no request in progress for
//! `http.idleTimeoutSeconds`. HTTP/2 connections have a bounded number of streams,
//! header list and flow-control windows, and a peer that stops answering pings is
//! dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus::IntGauge;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::http::activity::{Activity, Expiry, Timeouts, TrackedBody, Watched};
use crate::http::edge::Edge;
use crate::http::routes::route;

/// How long requests in flight may take to finish on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// Once a connection has been asked to close (idle, or shutdown), how long the
/// client has to let it close (an HTTP/2 GOAWAY and its PING round trip) before it
/// is dropped, unless a request is in progress.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// HTTP/2 streams (requests) open at once on one connection; more are refused
/// with REFUSED_STREAM. Alertmanager sends one notification per stream.
const H2_MAX_STREAMS: u32 = 100;
/// Largest HTTP/2 header list accepted (as HTTP/1 bounds its head by its read
/// buffer).
const H2_MAX_HEADER_LIST: u32 = 32 * 1024;
/// HTTP/2 flow-control windows: what a client may send before Karo reads it, per
/// stream and per connection. The connection window bounds the unread request
/// bytes one connection can make Karo hold, whatever its number of streams.
const H2_STREAM_WINDOW: u32 = 1024 * 1024;
const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Largest HTTP/2 frame accepted: the protocol's minimum and default.
const H2_MAX_FRAME: u32 = 16 * 1024;
/// A PING after this long without a frame from the client; no answer within
/// `H2_PING_TIMEOUT` and the connection is dropped (a peer gone without a FIN).
const H2_PING_INTERVAL: Duration = Duration::from_secs(30);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves HTTP (or, with `tls`, HTTPS) on `listener` until `shutdown` turns true;
/// then stops accepting and lets requests in flight finish, for at most
/// `SHUTDOWN_GRACE`.
pub async fn serve(
    edge: Arc<Edge>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = if tls.is_some() { "https" } else { "http" };
    let open = edge.metrics.http_connections.with_label_values(&[name]);
    let slots = Arc::new(Slots::default());
    let connections = TaskTracker::new();
    let mut snapshots = edge.snapshots.clone();
    'accept: loop {
        // At the limit, wait for a connection to close (or for a configuration
        // with a higher limit) before accepting the next.
        loop {
            let limit = edge.snapshot().config.http.max_connections;
            if slots.open.load(Ordering::Acquire) < limit {
                break;
            }
            tokio::select! {
                _ = slots.freed.notified() => {}
                Ok(()) = snapshots.changed() => {}
                _ = shutdown.changed() => break 'accept,
            }
        }
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
        let accepted = Instant::now();
        let slot = Slot::take(&slots, open.clone());
        let edge = edge.clone();
        let tls = tls.clone();
        let stop = shutdown.clone();
        connections.spawn(async move {
            let _slot = slot;
            let snapshot = edge.snapshot();
            let http = &snapshot.config.http;
            let timeouts = Timeouts {
                header: Duration::from_secs(http.header_read_timeout_seconds),
                idle: Duration::from_secs(http.idle_timeout_seconds),
            };
            match tls {
                None => serve_connection(edge, stream, peer, accepted, timeouts, stop).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout_at(accepted + timeouts.header, handshake).await {
                        Ok(Ok(stream)) => {
                            serve_connection(edge, stream, peer, accepted, timeouts, stop).await
                        }
                        Ok(Err(e)) => debug!(peer = %peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(peer = %peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        warn!("requests still in flight after {SHUTDOWN_GRACE:?}; closing them");
    }
}

/// The connections open on one listener.
#[derive(Default)]
struct Slots {
    open: AtomicUsize,
    freed: Notify,
}

/// One open connection; frees its slot when dropped.
struct Slot {
    slots: Arc<Slots>,
    gauge: IntGauge,
}

impl Slot {
    fn take(slots: &Arc<Slots>, gauge: IntGauge) -> Slot {
        slots.open.fetch_add(1, Ordering::AcqRel);
        gauge.inc();
        Slot {
            slots: slots.clone(),
            gauge,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.open.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
        // One waiter, the accept loop; a wake-up with nobody waiting is kept for it.
        self.slots.freed.notify_one();
    }
}

async fn serve_connection<I>(
    edge: Arc<Edge>,
    io: I,
    peer: SocketAddr,
    accepted: Instant,
    timeouts: Timeouts,
    mut shutdown: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new(accepted);
    let io = Watched::new(io, activity.clone());
    let requests = activity.clone();
    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let request = requests.begin(req.version());
        let edge = edge.clone();
        async move {
            let resp = route(&edge, req, peer).await;
            Ok::<_, Infallible>(resp.map(|body| TrackedBody::new(body, request)))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Header and idle timeouts are the driver's below: hyper's own HTTP/1 header
    // timeout also runs between requests, which would make it the idle timeout.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_frame_size(H2_MAX_FRAME)
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    // When the connection was asked to close.
    let mut closing: Option<Instant> = None;
    if *shutdown.borrow_and_update() {
        conn.as_mut().graceful_shutdown();
        closing = Some(Instant::now());
    }
    loop {
        let deadline = match closing {
            None => activity.deadline(timeouts),
            Some(since) => activity
                .close_deadline(since, CLOSE_GRACE)
                .map(|at| (at, Expiry::Idle)),
        };
        let far = Instant::now() + timeouts.idle;
        let sleep = tokio::time::sleep_until(deadline.map_or(far, |(at, _)| at));
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    debug!(peer = %peer, error = %e, "connection closed with an error");
                }
                return;
            }
            _ = activity.changed() => {}
            // A dropped sender means stop, too.
            _ = shutdown.changed(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            _ = sleep, if deadline.is_some() => {
                // The deadline may have moved while asleep: look again.
                let due = match closing {
                    None => activity.deadline(timeouts),
                    Some(since) => activity
                        .close_deadline(since, CLOSE_GRACE)
                        .map(|at| (at, Expiry::Idle)),
                };
                let Some((at, why)) = due else { continue };
                if at > Instant::now() {
                    continue;
                }
                if closing.is_some() {
                    debug!(peer = %peer, "connection did not close in time; dropping it");
                    return;
                }
                debug!(peer = %peer, reason = why.reason(), "closing the connection");
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
        }
    }
}
