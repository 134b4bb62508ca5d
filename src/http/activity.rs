//! What one connection is doing, for its timeouts: whether a request is in
//! progress, since when it has had none, and whether the next request's head has
//! begun to arrive. The IO wrapper notes reads, the service notes requests from the
//! moment their head is parsed until their response body has been sent, and the
//! connection's driver (`server`) turns that into a deadline.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use hyper::Version;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The timeouts of one connection, read from the configuration when it is accepted.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From accept to the first request's complete head (TLS handshake included),
    /// and, in HTTP/1, from the first byte of a later request to its complete head.
    pub header: Duration,
    /// With no request in progress.
    pub idle: Duration,
}

/// Why a connection is due to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// No complete request head within the header timeout of the accept.
    NoRequest,
    /// An HTTP/1 request head begun but not complete within the header timeout.
    SlowHead,
    /// No request in progress for the idle timeout.
    Idle,
}

impl Expiry {
    pub fn reason(self) -> &'static str {
        match self {
            Expiry::NoRequest => "no request within http.headerReadTimeoutSeconds",
            Expiry::SlowHead => "request headers not complete within http.headerReadTimeoutSeconds",
            Expiry::Idle => "idle for http.idleTimeoutSeconds",
        }
    }
}

#[derive(Debug)]
struct State {
    /// Requests whose head arrived and whose response body is not yet sent.
    active: usize,
    /// Since when no request has been in progress (the accept, at first).
    idle_since: Instant,
    /// The protocol of the last request; `None` until the first one.
    version: Option<Version>,
    /// When bytes first arrived while no request was in progress.
    read_while_idle: Option<Instant>,
}

/// Shared by a connection's IO, its service and its driver.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<State>,
    /// Wakes the driver when the deadline may have moved.
    changed: Notify,
}

impl Activity {
    pub fn new(accepted: Instant) -> Arc<Activity> {
        Arc::new(Activity {
            state: Mutex::new(State {
                active: 0,
                idle_since: accepted,
                version: None,
                read_while_idle: None,
            }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        }
    }

    /// Completes when something happened that may move the deadline.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// A request's head has been parsed: the connection is busy until the guard
    /// (carried by the response body) is dropped.
    pub fn begin(self: &Arc<Self>, version: Version) -> RequestGuard {
        {
            let mut s = self.lock();
            s.active += 1;
            s.version = Some(version);
            s.read_while_idle = None;
        }
        self.changed.notify_one();
        RequestGuard {
            activity: self.clone(),
        }
    }

    fn read(&self) {
        let mut s = self.lock();
        if s.active == 0 && s.read_while_idle.is_none() {
            s.read_while_idle = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// When the connection is due to be closed, and why; `None` while a request is
    /// in progress (the body read timeout and the handling bound it).
    pub fn deadline(&self, timeouts: Timeouts) -> Option<(Instant, Expiry)> {
        let s = self.lock();
        if s.active > 0 {
            return None;
        }
        Some(match (s.version, s.read_while_idle) {
            (None, _) => (s.idle_since + timeouts.header, Expiry::NoRequest),
            // An HTTP/1 client that starts a request has the header timeout to finish
            // its head. In HTTP/2, frames between requests (PING, SETTINGS) are not a
            // request: only the idle timeout applies.
            (Some(v), Some(first_byte)) if v < Version::HTTP_2 => {
                (first_byte + timeouts.header, Expiry::SlowHead)
            }
            _ => (s.idle_since + timeouts.idle, Expiry::Idle),
        })
    }

    /// After a graceful close has begun at `since`: when to stop waiting for the
    /// client, unless a request is still in progress.
    pub fn close_deadline(&self, since: Instant, grace: Duration) -> Option<Instant> {
        let s = self.lock();
        (s.active == 0).then(|| s.idle_since.max(since) + grace)
    }
}

/// Held while a request is in progress.
#[derive(Debug)]
pub struct RequestGuard {
    activity: Arc<Activity>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        {
            let mut s = self.activity.lock();
            s.active = s.active.saturating_sub(1);
            if s.active == 0 {
                s.idle_since = Instant::now();
                s.read_while_idle = None;
            }
        }
        self.activity.changed.notify_one();
    }
}

/// A response body that keeps its request counted until hyper has sent it.
pub struct TrackedBody {
    body: Full<Bytes>,
    _request: RequestGuard,
}

impl TrackedBody {
    pub fn new(body: Full<Bytes>, request: RequestGuard) -> Self {
        TrackedBody {
            body,
            _request: request,
        }
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's byte stream, noting when bytes arrive.
pub struct Watched<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I> Watched<I> {
    pub fn new(io: I, activity: Arc<Activity>) -> Self {
        Watched { io, activity }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.read();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_secs(10),
        idle: Duration::from_secs(360),
    };

    /// The deadline's reason, and whether it falls within `from + after` to `to + after`.
    fn due(a: &Activity, from: Instant, to: Instant, after: Duration) -> Option<Expiry> {
        let (at, why) = a.deadline(T)?;
        assert!(at >= from + after && at <= to + after, "{why:?}");
        Some(why)
    }

    #[test]
    fn deadlines_follow_requests() {
        let accepted = Instant::now();
        let a = Activity::new(accepted);
        // Nothing yet: the first request's head is due within the header timeout.
        assert_eq!(
            due(&a, accepted, accepted, T.header),
            Some(Expiry::NoRequest)
        );
        a.read();
        assert_eq!(
            due(&a, accepted, accepted, T.header),
            Some(Expiry::NoRequest)
        );
        let guard = a.begin(Version::HTTP_11);
        assert_eq!(a.deadline(T), None);
        let before = Instant::now();
        drop(guard);
        let after = Instant::now();
        assert_eq!(due(&a, before, after, T.idle), Some(Expiry::Idle));
        // HTTP/1: the next request's first byte starts the header timeout.
        let before = Instant::now();
        a.read();
        let after = Instant::now();
        assert_eq!(due(&a, before, after, T.header), Some(Expiry::SlowHead));

        // HTTP/2: bytes between requests (a PING) do not.
        let h2 = Activity::new(accepted);
        let stream = h2.begin(Version::HTTP_2);
        let before = Instant::now();
        drop(stream);
        let after = Instant::now();
        h2.read();
        assert_eq!(due(&h2, before, after, T.idle), Some(Expiry::Idle));
        // Two streams: busy until both are done.
        let (s1, s2) = (h2.begin(Version::HTTP_2), h2.begin(Version::HTTP_2));
        drop(s1);
        assert_eq!(h2.deadline(T), None);
        assert_eq!(h2.close_deadline(accepted, T.header), None);
        drop(s2);
        assert!(h2.deadline(T).is_some());
        assert!(h2.close_deadline(accepted, T.header).is_some());
    }
}
