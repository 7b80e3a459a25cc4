//! One connection's state, shared by the IO wrapper (which sees bytes arrive), the
//! service wrapper (which sees requests start, bodies end and responses end) and the
//! watchdog (which closes the connection when the current phase outlasts its limit).
//!
//! Phases: `Headers` (from accept, or from the first byte of a later request, to the
//! request's dispatch), `Body` (dispatch to the end of the request body), `Handling`
//! (handler and response; not bounded), `Idle` (end of response to the next byte).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use axum::Router;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::Service;

use super::limits::HttpLimits;
use super::metrics::CloseReason;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Headers,
    Body,
    Handling,
    Idle,
}

struct Current {
    phase: Phase,
    since: Instant,
    /// Requests dispatched so far; ties body and response ends to their request.
    seq: u64,
    /// The current request's response has been sent (its body may still be coming).
    responded: bool,
}

/// Counts a connection in the open gauge while it lives.
pub(super) struct OpenGuard(Gauge);

impl OpenGuard {
    pub(super) fn new(open: &Gauge) -> Self {
        open.inc();
        Self(open.clone())
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub(super) struct ConnState {
    current: Mutex<Current>,
    /// Wakes the watchdog when the phase changes.
    changed: Notify,
    _open: OpenGuard,
}

impl ConnState {
    pub(super) fn new(open: OpenGuard) -> Self {
        Self {
            current: Mutex::new(Current {
                phase: Phase::Headers,
                since: Instant::now(),
                seq: 0,
                responded: false,
            }),
            changed: Notify::new(),
            _open: open,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Current> {
        // The critical sections cannot panic; a poisoned lock still holds a valid state.
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enter(&self, c: &mut Current, phase: Phase) {
        c.phase = phase;
        c.since = Instant::now();
        // A permit is kept if the watchdog is not waiting yet: no change is missed.
        self.changed.notify_one();
    }

    /// Bytes arrived: an idle connection starts its next request's headers.
    fn on_read(&self) {
        let mut c = self.lock();
        if c.phase == Phase::Idle {
            self.enter(&mut c, Phase::Headers);
        }
    }

    /// Headers parsed, request dispatched; returns the request's number.
    fn request_started(&self, body_done: bool) -> u64 {
        let mut c = self.lock();
        c.seq += 1;
        c.responded = false;
        self.enter(
            &mut c,
            if body_done {
                Phase::Handling
            } else {
                Phase::Body
            },
        );
        c.seq
    }

    fn body_done(&self, seq: u64) {
        let mut c = self.lock();
        if c.seq == seq && c.phase == Phase::Body {
            let next = if c.responded {
                Phase::Idle
            } else {
                Phase::Handling
            };
            self.enter(&mut c, next);
        }
    }

    fn response_done(&self, seq: u64) {
        let mut c = self.lock();
        if c.seq == seq && !c.responded {
            c.responded = true;
            // With the request body still coming, the body limit keeps bounding it.
            if c.phase == Phase::Handling {
                self.enter(&mut c, Phase::Idle);
            }
        }
    }

    pub(super) fn phase(&self) -> (Phase, Instant) {
        let c = self.lock();
        (c.phase, c.since)
    }
}

/// Resolves with the limit broken once the current phase outlasts it; never otherwise.
pub(super) async fn watchdog(state: &ConnState, limits: &HttpLimits) -> CloseReason {
    loop {
        let (phase, since) = state.phase();
        let (limit, reason) = match phase {
            Phase::Headers => (limits.header_timeout, CloseReason::header_timeout),
            Phase::Idle => (limits.idle_timeout, CloseReason::idle_timeout),
            Phase::Body => (limits.body_timeout, CloseReason::body_timeout),
            Phase::Handling => {
                // Not bounded; wait for the next phase.
                state.changed.notified().await;
                continue;
            }
        };
        let deadline = since + limit;
        if Instant::now() >= deadline {
            return reason;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = state.changed.notified() => {}
        }
    }
}

/// The connection's byte stream, telling the state when bytes arrive.
pub(super) struct TrackedIo<T> {
    inner: T,
    state: Arc<ConnState>,
}

impl<T> TrackedIo<T> {
    pub(super) fn new(inner: T, state: Arc<ConnState>) -> Self {
        Self { inner, state }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.on_read();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The router as a hyper service, telling the state when requests start and end.
pub(super) struct ConnService {
    router: Router,
    state: Arc<ConnState>,
}

impl ConnService {
    pub(super) fn new(router: Router, state: Arc<ConnState>) -> Self {
        Self { router, state }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let seq = self.state.request_started(req.body().is_end_stream());
        let state = self.state.clone();
        let req = req.map(|inner| RequestBody {
            inner,
            state: state.clone(),
            seq,
        });
        let mut router = self.router.clone();
        Box::pin(async move {
            let resp = match router.call(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            Ok(resp.map(|inner| ResponseBody { inner, state, seq }))
        })
    }
}

/// A request body that tells the state when it ends.
pub(super) struct RequestBody {
    inner: Incoming,
    state: Arc<ConnState>,
    seq: u64,
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.state.body_done(self.seq);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that tells the state when it is sent (or dropped).
pub struct ResponseBody {
    inner: axum::body::Body,
    state: Arc<ConnState>,
    seq: u64,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) {
            self.state.response_done(self.seq);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.state.response_done(self.seq);
    }
}
