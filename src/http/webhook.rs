//! `POST <webhook.path>[/<receiver>]`: credentials, content type and size are
//! checked, the body is parsed into a notification, and the executor handles
//! it. 400 for a body that is not a notification (nothing is created), 500 when
//! a Job could not be created for a reason worth Alertmanager's retry, 503 with
//! `Retry-After` when `http.maxConcurrentNotifications` are already being read or
//! handled: refused before the body is read, so that memory stays bounded by
//! that many bodies of at most `webhook.maxBodyBytes`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, RETRY_AFTER};
use hyper::{Method, Request, StatusCode, Version};
use tracing::{debug, info};

use crate::core::snapshot::Snapshot;
use crate::daemon::metrics::ErrorKind;
use crate::http::edge::Edge;
use crate::http::reply::{error, method_not_allowed, respond, Resp};
use crate::model::alert::parse_notification;

/// What a 503 for too many notifications at once asks the client to wait, in
/// seconds. Alertmanager retries with its own backoff; other clients may follow it.
const BUSY_RETRY_AFTER: &str = "1";

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
    // Counted from here until the notification has been handled, also when the
    // client goes away meanwhile; over the limit, refused before its body is read.
    let admitted = edge.in_flight.token();
    let max_notifications = snapshot.config.http.max_concurrent_notifications;
    if edge.in_flight.len() > max_notifications {
        drop(admitted);
        edge.metrics.notifications_refused.inc();
        // An HTTP/1 client sends its body whatever the answer; closing with it
        // unread would reset the connection and lose the 503. It is read and
        // dropped as it arrives, bounded as a body is. An HTTP/2 stream is reset
        // after the answer instead, and a client waiting for `100 Continue` sends
        // nothing.
        let expects_continue = req
            .headers()
            .get(EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if req.version() < Version::HTTP_2 && !expects_continue {
            discard(req.into_body(), limit, body_timeout).await;
        }
        debug!(peer = %peer, max_notifications, "webhook busy: notification refused");
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "busy: {max_notifications} notifications are being handled (http.maxConcurrentNotifications); retry later"
            ),
        );
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static(BUSY_RETRY_AFTER));
        return r;
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
    let handling = tokio::spawn(async move {
        let _admitted = admitted;
        executor.handle(notification, &snapshot).await
    });
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

/// Reads a request body to its end and drops it chunk by chunk, for at most
/// `limit` bytes and `timeout`.
async fn discard(mut body: Incoming, limit: u64, timeout: Duration) {
    let mut seen = 0u64;
    let _ = tokio::time::timeout(timeout, async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > limit {
                return;
            }
        }
    })
    .await;
}
