//! The limits one HTTP server enforces on each connection, with their defaults.

use std::time::Duration;

/// Per-connection limits of [`super::serve`]. Each bounds one phase of a connection:
///
/// * `header_timeout`: from accept (including the TLS handshake) to the end of the first
///   request's headers, and from the first byte of each later request on a kept-alive
///   connection to the end of its headers. Past it the connection is closed.
/// * `idle_timeout`: from the end of a response to the first byte of the next request
///   on a kept-alive connection. Past it the connection is closed.
/// * `body_timeout`: from the end of a request's headers to the end of its body (the
///   whole body, however it trickles in). Past it the connection is closed, with the
///   request still being handled. Requests without a body are not bounded by it.
/// * `max_connections`: connections open at once (kept-alive, upgraded and in a TLS
///   handshake included). A connection accepted at the cap is closed at once.
/// * `max_header_bytes`: request line and headers; more is answered `431`.
///
/// The time a handler takes and the time a response takes to send are not bounded here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
}

/// Default of [`HttpLimits::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`HttpLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of [`HttpLimits::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of [`HttpLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default of [`HttpLimits::max_header_bytes`].
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 << 10;
/// The smallest [`HttpLimits::max_header_bytes`] accepted.
pub const MIN_MAX_HEADER_BYTES: usize = 1024;

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

/// A limit that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitsError {
    #[error("the HTTP {what} is zero; give at least 1 (--http-{flag})")]
    Zero {
        what: &'static str,
        flag: &'static str,
    },
    #[error("the HTTP header size limit {got} bytes is below {MIN_MAX_HEADER_BYTES}; raise --http-max-header-bytes")]
    HeaderBytes { got: usize },
}

impl HttpLimits {
    /// Refuse limits that would close every connection.
    pub fn check(&self) -> Result<(), LimitsError> {
        let zero = |what, flag| Err(LimitsError::Zero { what, flag });
        if self.header_timeout.is_zero() {
            return zero("header timeout", "header-timeout-secs");
        }
        if self.idle_timeout.is_zero() {
            return zero("idle timeout", "idle-timeout-secs");
        }
        if self.body_timeout.is_zero() {
            return zero("body timeout", "body-timeout-secs");
        }
        if self.max_connections == 0 {
            return zero("connection limit", "max-connections");
        }
        if self.max_header_bytes < MIN_MAX_HEADER_BYTES {
            return Err(LimitsError::HeaderBytes {
                got: self.max_header_bytes,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_unusable_limits_are_refused_with_the_flag() {
        assert_eq!(HttpLimits::default().check(), Ok(()));
        let e = HttpLimits {
            idle_timeout: Duration::ZERO,
            ..Default::default()
        }
        .check()
        .expect_err("zero idle");
        assert!(e.to_string().contains("--http-idle-timeout-secs"), "{e}");
        let e = HttpLimits {
            max_header_bytes: 100,
            ..Default::default()
        }
        .check()
        .expect_err("tiny headers");
        assert!(e.to_string().contains("--http-max-header-bytes"), "{e}");
    }
}
