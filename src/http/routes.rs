//! Request routing: health, readiness, metrics, reload and the webhook.

use std::net::SocketAddr;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use crate::http::edge::Edge;
use crate::http::reply::{error, method_not_allowed, respond, text, Resp};
use crate::http::webhook::webhook;

pub async fn route(edge: &Edge, req: Request<Incoming>, peer: SocketAddr) -> Resp {
    let path = req.uri().path().to_string();
    let snapshot = edge.snapshot();
    match path.as_str() {
        "/health" | "/healthz" => match *req.method() {
            Method::GET | Method::HEAD => respond(StatusCode::OK, json!({"status": "ok"})),
            _ => method_not_allowed("GET"),
        },
        "/readyz" => match *req.method() {
            Method::GET | Method::HEAD => {
                if edge.readiness.is_ready() {
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
            Method::GET | Method::HEAD => match edge.metrics.encode() {
                Ok(body) => text(StatusCode::OK, body, "text/plain; version=0.0.4"),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            },
            _ => method_not_allowed("GET"),
        },
        "/-/reload" => match *req.method() {
            Method::POST | Method::PUT => {
                if let Err(resp) = edge.authenticate(&snapshot, &req) {
                    return *resp;
                }
                match edge.reloader.reload("HTTP request").await {
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
        p if is_webhook_path(&snapshot.config.webhook.path, p) => {
            let started = Instant::now();
            let resp = webhook(edge, snapshot.clone(), req, peer).await;
            edge.metrics
                .request_duration
                .observe(started.elapsed().as_secs_f64());
            edge.metrics
                .webhook_requests
                .with_label_values(&[resp.status().as_str()])
                .inc();
            resp
        }
        _ => error(StatusCode::NOT_FOUND, format!("no such path: {path}")),
    }
}

/// Whether `path` is the webhook path or `<webhook path>/<receiver>`.
pub fn is_webhook_path(base: &str, path: &str) -> bool {
    match path.strip_prefix(base) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('/')
            .is_some_and(|r| !r.is_empty() && !r.contains('/')),
        None => false,
    }
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
