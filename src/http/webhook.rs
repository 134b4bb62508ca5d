//! `POST <webhook.path>[/<receiver>]`: credentials, content type and size are
//! checked, the body is parsed into a notification, and the executor handles
//! it. 400 for a body that is not a notification (nothing is created), 500 when
//! a Job could not be created for a reason worth Alertmanager's retry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, StatusCode};
use tracing::info;

use crate::core::snapshot::Snapshot;
use crate::daemon::metrics::ErrorKind;
use crate::http::edge::Edge;
use crate::http::reply::{error, method_not_allowed, respond, Resp};
use crate::model::alert::parse_notification;

pub async fn webhook(
    edge: &Edge,
    snapshot: Arc<Snapshot>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Resp {
    if req.method() != Method::POST {
        return method_not_allowed("POST");
    }
    if let Err(resp) = edge.authenticate(&snapshot, &req) {
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
    let limit = snapshot.config.webhook.max_body_bytes;
    let body_timeout = Duration::from_secs(snapshot.config.http.body_read_timeout_seconds);
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
    if !edge.readiness.is_ready() {
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
    let notification = match parse_notification(&bytes, jiff::Timestamp::now()) {
        Ok(n) => n,
        Err(e) => {
            edge.metrics.error(ErrorKind::BadRequest);
            info!(peer = %peer, error = %e, "rejected webhook body");
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    // Handled to the end even if the client goes away meanwhile: its Runs,
    // counters and Events are recorded, and Alertmanager's retry finds them.
    let executor = edge.executor.clone();
    let handling = edge
        .in_flight
        .spawn(async move { executor.handle(notification, &snapshot).await });
    let summary = match handling.await {
        Ok(summary) => summary,
        Err(e) => {
            edge.metrics.error(ErrorKind::Api);
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("handling the notification failed: {e}"),
            );
        }
    };
    let status = if summary.retry {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    respond(status, serde_json::to_value(&summary).unwrap_or_default())
}
