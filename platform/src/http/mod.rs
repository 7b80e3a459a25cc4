//! The HTTP server of the API, the intake and the engines' locate API: an axum
//! [`Router`] on hyper's HTTP/1 connections, with per-connection limits against slow
//! and idle clients ([`HttpLimits`]), a cap on open connections, and [`HttpMetrics`].
//!
//! * [`limits`] — the limits and their defaults.
//! * `conn` — one connection's phase (headers, body, handling, idle), tracked by an IO
//!   wrapper and a service wrapper, and the watchdog that closes it past a limit.
//! * [`metrics`] — connections open, accepted and closed by each limit.
//! * [`declared`] — `413` for a declared body length over a limit, before the body.
//!
//! The accept loop only accepts: a TLS handshake (an [`Acceptor`]) runs in the
//! connection's own task, within the header timeout.

mod conn;
pub mod declared;
pub mod limits;
pub mod metrics;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

pub use declared::{refuse_declared_over, DeclaredLimit};
pub use limits::{HttpLimits, LimitsError};
pub use metrics::{CloseReason, HttpMetrics};

use conn::{ConnService, ConnState, OpenGuard, TrackedIo};

/// Turns an accepted TCP connection into the byte stream HTTP runs on (TLS, or none).
pub trait Acceptor: Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Handshake; [`serve`] bounds it by the header timeout.
    fn accept(&self, tcp: TcpStream) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

/// Plain HTTP.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlainTcp;

impl Acceptor for PlainTcp {
    type Io = TcpStream;
    async fn accept(&self, tcp: TcpStream) -> io::Result<TcpStream> {
        Ok(tcp)
    }
}

struct Shared<A> {
    builder: http1::Builder,
    router: Router,
    limits: HttpLimits,
    acceptor: A,
    metrics: HttpMetrics,
}

/// Serve `router` on `listener` until the process ends (an error only for limits that
/// cannot work). At `limits.max_connections` open connections, a newly accepted one is
/// closed at once, without an answer, and counted (`max_connections`): the accept queue
/// keeps moving, and the connections open leave within their own limits.
pub async fn serve<A: Acceptor>(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    acceptor: A,
    metrics: HttpMetrics,
) -> io::Result<()> {
    limits
        .check()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut builder = http1::Builder::new();
    // The header timeout is the watchdog's: hyper's own would also run while idle.
    builder
        .header_read_timeout(None)
        .keep_alive(true)
        .max_header_size(limits.max_header_bytes);
    let shared = Arc::new(Shared {
        builder,
        router,
        limits,
        acceptor,
        metrics,
    });
    let max = i64::try_from(limits.max_connections).unwrap_or(i64::MAX);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors (or a connection reset before accept): wait a
                // little rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        shared.metrics.accepted.inc();
        if shared.metrics.open.get() >= max {
            shared.metrics.close(CloseReason::max_connections);
            tracing::debug!(%peer, "connection limit reached; closing a new connection");
            drop(tcp);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let open = OpenGuard::new(&shared.metrics.open);
        tokio::spawn(connection(shared.clone(), tcp, peer, open));
    }
}

async fn connection<A: Acceptor>(
    shared: Arc<Shared<A>>,
    tcp: TcpStream,
    peer: SocketAddr,
    open: OpenGuard,
) {
    let state = Arc::new(ConnState::new(open));
    let (_, accepted) = state.phase();
    let handshake = tokio::time::timeout_at(
        accepted + shared.limits.header_timeout,
        shared.acceptor.accept(tcp),
    );
    let io = match handshake.await {
        Ok(Ok(io)) => io,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            shared.metrics.close(CloseReason::header_timeout);
            tracing::debug!(%peer, "handshake not done within the header timeout");
            return;
        }
    };
    let io = TokioIo::new(TrackedIo::new(io, state.clone()));
    let conn = shared
        .builder
        .serve_connection(io, ConnService::new(shared.router.clone(), state.clone()))
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        reason = conn::watchdog(&state, &shared.limits) => {
            shared.metrics.close(reason);
            tracing::debug!(%peer, ?reason, "closing a connection past its limit");
        }
    }
}
