//! The HTTP surface: the Alertmanager webhook, health, readiness and metrics.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::alert;
use crate::auth::{self, AuthError};
use crate::context::Context;
use crate::reactor;

/// How long requests in flight may take to finish on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Resp = Response<Full<Bytes>>;

/// Serves HTTP (or, with `tls`, HTTPS) on `listener` until `shutdown` turns true;
/// then stops accepting and lets requests in flight finish, for at most
/// `SHUTDOWN_GRACE`.
pub async fn serve(
    ctx: Arc<Context>,
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
        let ctx = ctx.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(ctx, stream, peer, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(ctx, stream, peer, watcher).await,
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

async fn serve_connection<I>(ctx: Arc<Context>, io: I, peer: SocketAddr, watcher: Watcher)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = Duration::from_secs(ctx.runtime().config.http.header_read_timeout_seconds);
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(route(&ctx, req, peer).await) }
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

fn respond(status: StatusCode, body: serde_json::Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn text(status: StatusCode, body: String, content_type: &'static str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn error(status: StatusCode, message: impl Into<String>) -> Resp {
    respond(status, json!({ "error": message.into() }))
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}"),
    );
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// Whether `path` is the webhook path or `<webhook path>/<receiver>`.
fn is_webhook_path(base: &str, path: &str) -> bool {
    match path.strip_prefix(base) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('/')
            .is_some_and(|r| !r.is_empty() && !r.contains('/')),
        None => false,
    }
}

async fn route(ctx: &Arc<Context>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    let path = req.uri().path().to_string();
    let runtime = ctx.runtime();
    match path.as_str() {
        "/health" | "/healthz" => match *req.method() {
            Method::GET | Method::HEAD => respond(StatusCode::OK, json!({"status": "ok"})),
            _ => method_not_allowed("GET"),
        },
        "/readyz" => match *req.method() {
            Method::GET | Method::HEAD => {
                if ctx.is_ready() {
                    respond(StatusCode::OK, json!({"status": "ready"}))
                } else {
                    respond(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"status": "not ready", "reason": "AlertReaction cache not synced"}),
                    )
                }
            }
            _ => method_not_allowed("GET"),
        },
        "/metrics" => match *req.method() {
            Method::GET | Method::HEAD => match ctx.metrics.encode() {
                Ok(body) => text(StatusCode::OK, body, "text/plain; version=0.0.4"),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            },
            _ => method_not_allowed("GET"),
        },
        "/-/reload" => match *req.method() {
            Method::POST | Method::PUT => {
                if let Err(resp) = authenticate(ctx, &req) {
                    return *resp;
                }
                match crate::reload::reload(ctx, "HTTP request").await {
                    Ok(r) => respond(
                        StatusCode::OK,
                        json!({"status": "reloaded", "changed": r.changed, "restartRequired": r.restart_required}),
                    ),
                    Err(e) => error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("reload failed, the running configuration stays: {e}"),
                    ),
                }
            }
            _ => method_not_allowed("POST"),
        },
        p if is_webhook_path(&runtime.config.webhook.path, p) => {
            let started = Instant::now();
            let resp = webhook(ctx, req, peer).await;
            ctx.metrics
                .request_duration
                .observe(started.elapsed().as_secs_f64());
            ctx.metrics
                .webhook_requests
                .with_label_values(&[resp.status().as_str()])
                .inc();
            resp
        }
        _ => error(StatusCode::NOT_FOUND, format!("no such path: {path}")),
    }
}

/// 401 with a challenge unless the request carries the configured credentials.
fn authenticate(ctx: &Context, req: &Request<Incoming>) -> Result<(), Box<Resp>> {
    let auth = &ctx.runtime().config.webhook.auth;
    let header = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
    match ctx.authenticator.check(auth, header) {
        Ok(()) => Ok(()),
        Err(e) => {
            ctx.metrics
                .auth_failures
                .with_label_values(&[e.kind()])
                .inc();
            if let AuthError::Unavailable { .. } = e {
                ctx.metrics.error("auth_config");
                warn!(error = %e, "cannot check webhook credentials");
            } else {
                debug!(error = %e, "webhook request refused");
            }
            let mut r = error(StatusCode::UNAUTHORIZED, format!("unauthorized: {e}"));
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(auth::challenge(auth.kind)),
            );
            Err(Box::new(r))
        }
    }
}

async fn webhook(ctx: &Arc<Context>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    if req.method() != Method::POST {
        return method_not_allowed("POST");
    }
    if let Err(resp) = authenticate(ctx, &req) {
        return *resp;
    }
    if let Some(ct) = req.headers().get(CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let mime = ct.split(';').next().unwrap_or("").trim();
        if mime != "application/json" && !mime.ends_with("+json") {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("content type must be application/json, got {mime:?}"),
            );
        }
    }
    let runtime = ctx.runtime();
    let limit = runtime.config.webhook.max_body_bytes;
    let body_timeout = Duration::from_secs(runtime.config.http.body_read_timeout_seconds);
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body of {} bytes exceeds webhook.maxBodyBytes ({limit})",
                declared.unwrap_or_default()
            ),
        );
    }
    if !ctx.is_ready() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the AlertReaction cache has not synced yet",
        );
    }
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    let body = Limited::new(req.into_body(), limit_usize);
    let bytes = match tokio::time::timeout(body_timeout, body.collect()).await {
        Err(_) => return error(StatusCode::REQUEST_TIMEOUT, "timed out reading the body"),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body exceeds webhook.maxBodyBytes ({limit})"),
            )
        }
        Ok(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    let notification = match alert::parse_notification(&bytes, jiff::Timestamp::now()) {
        Ok(n) => n,
        Err(e) => {
            ctx.metrics.error("bad_request");
            info!(peer = %peer, error = %e, "rejected webhook body");
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let summary = reactor::handle(ctx, notification).await;
    let status = if summary.retry {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    respond(status, serde_json::to_value(&summary).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::is_webhook_path;

    #[test]
    fn webhook_paths() {
        assert!(is_webhook_path("/webhook", "/webhook"));
        assert!(is_webhook_path("/webhook", "/webhook/team-a"));
        assert!(!is_webhook_path("/webhook", "/webhook/"));
        assert!(!is_webhook_path("/webhook", "/webhookx"));
        assert!(!is_webhook_path("/webhook", "/webhook/a/b"));
        assert!(!is_webhook_path("/webhook", "/other"));
    }
}
