//! The accept loop of both SSH servers: the [`Gate`] decides at accept, the
//! [`GraceStream`] bounds the time to authenticate, russh runs the session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{Gate, GraceStream, Ticket};

/// Accept connections on `listener` forever. `new_handler` makes a session's handler from
/// the peer and its [`Ticket`], which the handler marks
/// [`authenticated`](Ticket::authenticated) when it accepts a key.
///
/// A refused connection is closed at once, before any SSH byte, as OpenSSH does past
/// `MaxStartups`. An accept error (out of file descriptors, say) is counted, and the
/// loop waits a little and goes on: it never ends the server.
pub async fn serve<H, F>(
    listener: &TcpListener,
    config: Arc<russh::server::Config>,
    gate: Arc<Gate>,
    mut new_handler: F,
) -> std::io::Result<()>
where
    H: russh::server::Handler + Send + 'static,
    H::Error: std::fmt::Debug,
    F: FnMut(SocketAddr, Arc<Ticket>) -> H,
{
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                gate.metrics().accept_errors.inc();
                tracing::warn!(error = %e, "cannot accept a connection; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ticket = match gate.admit(peer) {
            Ok(ticket) => ticket,
            Err(rule) => {
                tracing::debug!(%peer, rule = rule.label(), "refused before authentication");
                drop(socket);
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let handler = new_handler(peer, ticket.clone());
        let config = config.clone();
        tokio::spawn(async move {
            let stream = GraceStream::new(socket, ticket);
            match russh::server::run_stream(config, stream, handler).await {
                Ok(session) => {
                    if let Err(e) = session.await {
                        tracing::debug!(%peer, error = ?e, "session ended with an error");
                    }
                }
                Err(e) => tracing::debug!(%peer, error = ?e, "session did not start"),
            }
        });
    }
}
