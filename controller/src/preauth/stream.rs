//! A TCP stream that fails once the grace time is over while its connection has not
//! authenticated: russh's session then ends, whatever phase it is in (waiting for the
//! client's identification line, key exchange, or authentication attempts).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::Ticket;

pub struct GraceStream<S> {
    inner: S,
    ticket: Arc<Ticket>,
    deadline: Pin<Box<Sleep>>,
    expired: bool,
}

impl<S> GraceStream<S> {
    pub fn new(inner: S, ticket: Arc<Ticket>) -> Self {
        let deadline = Box::pin(tokio::time::sleep(ticket.grace()));
        Self {
            inner,
            ticket,
            deadline,
            expired: false,
        }
    }

    /// `Err` once the grace time is over and the connection has not authenticated; polling
    /// the deadline also wakes the session's pending read or write when it passes.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.ticket.is_authenticated() {
            return Ok(());
        }
        if self.expired || self.deadline.as_mut().poll(cx).is_ready() {
            if !self.expired {
                self.expired = true;
                self.ticket.timed_out();
            }
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "not authenticated within the grace time",
            ));
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GraceStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GraceStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
