//! The HTTP surface: the Alertmanager webhook, health, readiness and metrics.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::alert;
use crate::context::Context;
use crate::reactor;

/// How long a client may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send its request body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

type Resp = Response<Full<Bytes>>;

/// Serves HTTP on `listener` until the process ends.
pub async fn serve(ctx: Arc<Context>, listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(route(&ctx, req, peer).await) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(peer = %peer, error = %e, "connection closed with an error");
            }
        });
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
            Method::POST | Method::PUT => match crate::reload::reload(ctx, "HTTP request").await {
                Ok(r) => respond(
                    StatusCode::OK,
                    json!({"status": "reloaded", "changed": r.changed, "restartRequired": r.restart_required}),
                ),
                Err(e) => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reload failed, the running configuration stays: {e}"),
                ),
            },
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

async fn webhook(ctx: &Arc<Context>, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    if req.method() != Method::POST {
        return method_not_allowed("POST");
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
    let limit = ctx.runtime().config.webhook.max_body_bytes;
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
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
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
