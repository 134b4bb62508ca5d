//! What the HTTP edge holds: the daemon's handles it serves requests with.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Request, StatusCode};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::core::snapshot::Snapshot;
use crate::daemon::executor::Executor;
use crate::daemon::metrics::{ErrorKind, Metrics};
use crate::daemon::readiness::Readiness;
use crate::daemon::reload::Reloader;
use crate::http::auth::{self, AuthError, Authenticator};
use crate::http::reply::{error, Resp};

pub struct Edge {
    pub executor: Arc<Executor>,
    pub reloader: Arc<Reloader>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub authenticator: Authenticator,
    /// Notifications being read or handled, one token each (`len()` is their
    /// number, bounded by `http.maxConcurrentNotifications`): the handling is
    /// detached from its connection, so a client that goes away cannot cut it
    /// short; waited for at shutdown.
    pub in_flight: tokio_util::task::TaskTracker,
}

impl Edge {
    /// The configuration in effect now: one snapshot per request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.borrow().clone()
    }

    /// 401 with a challenge unless the request carries the credentials that
    /// `snapshot` configures.
    pub fn authenticate(
        &self,
        snapshot: &Snapshot,
        req: &Request<Incoming>,
    ) -> Result<(), Box<Resp>> {
        let auth = &snapshot.config.webhook.auth;
        let header = req.headers().get(AUTHORIZATION).map(HeaderValue::as_bytes);
        match self.authenticator.check(auth, header) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.metrics
                    .auth_failures
                    .with_label_values(&[e.kind()])
                    .inc();
                if let AuthError::Unavailable { .. } = e {
                    // Karo's own trouble (a credentials file missing, unreadable or
                    // being rewritten): 503, which Alertmanager retries; a 401 would
                    // make it drop the notification.
                    self.metrics.error(ErrorKind::AuthConfig);
                    warn!(error = %e, "cannot check webhook credentials");
                    let mut r = error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("cannot check credentials: {e}"),
                    );
                    r.headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                    return Err(Box::new(r));
                }
                debug!(error = %e, "webhook request refused");
                let mut r = error(StatusCode::UNAUTHORIZED, format!("unauthorized: {e}"));
                r.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(auth::challenge(auth.kind)),
                );
                Err(Box::new(r))
            }
        }
    }
}
