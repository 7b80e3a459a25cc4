//! Flags of the HTTP servers (`api`, `intake`, `engines`): connection limits, and the
//! API's per-key creation rate.

use std::time::Duration;

use clap::Args;
use vantage_platform::http::{limits, HttpLimits};

/// Connection limits (`vantage_platform::http::HttpLimits`).
#[derive(Args, Clone, Debug)]
pub struct HttpArgs {
    /// Seconds a client has from connecting (TLS handshake included), or from the first
    /// byte of a later request, to the end of the request headers; then it is closed.
    #[arg(long, env = "VANTAGE_HTTP_HEADER_TIMEOUT_SECS", default_value_t = limits::DEFAULT_HEADER_TIMEOUT.as_secs())]
    http_header_timeout_secs: u64,
    /// Seconds a kept-alive connection may wait between a response and the next request.
    #[arg(long, env = "VANTAGE_HTTP_IDLE_TIMEOUT_SECS", default_value_t = limits::DEFAULT_IDLE_TIMEOUT.as_secs())]
    http_idle_timeout_secs: u64,
    /// Seconds a request body may take to arrive in full (a trickled body is cut).
    #[arg(long, env = "VANTAGE_HTTP_BODY_TIMEOUT_SECS", default_value_t = limits::DEFAULT_BODY_TIMEOUT.as_secs())]
    http_body_timeout_secs: u64,
    /// Connections open at once; one more is closed at once (each takes a file descriptor).
    #[arg(long, env = "VANTAGE_HTTP_MAX_CONNECTIONS", default_value_t = limits::DEFAULT_MAX_CONNECTIONS)]
    http_max_connections: usize,
    /// Largest request line and headers in bytes; more is answered 431.
    #[arg(long, env = "VANTAGE_HTTP_MAX_HEADER_BYTES", default_value_t = limits::DEFAULT_MAX_HEADER_BYTES)]
    http_max_header_bytes: usize,
}

impl HttpArgs {
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(self.http_header_timeout_secs),
            idle_timeout: Duration::from_secs(self.http_idle_timeout_secs),
            body_timeout: Duration::from_secs(self.http_body_timeout_secs),
            max_connections: self.http_max_connections,
            max_header_bytes: self.http_max_header_bytes,
        }
    }
}

/// The API's creation rate per key (`vantage_api::rate_limit::RateLimit`).
#[derive(Args, Clone, Debug)]
pub struct RateLimitArgs {
    /// Creations (measurements and participation requests) per API key per minute;
    /// more get 429 with Retry-After. 0 turns the limit off.
    #[arg(long, env = "VANTAGE_RATE_LIMIT_PER_MINUTE", default_value_t = vantage_api::rate_limit::DEFAULT_PER_MINUTE)]
    rate_limit_per_minute: u32,
    /// Creations one API key may make at once before the per-minute rate applies.
    #[arg(long, env = "VANTAGE_RATE_LIMIT_BURST", default_value_t = vantage_api::rate_limit::DEFAULT_BURST)]
    rate_limit_burst: u32,
}

impl RateLimitArgs {
    pub fn limit(&self) -> vantage_api::rate_limit::RateLimit {
        vantage_api::rate_limit::RateLimit {
            per_minute: self.rate_limit_per_minute,
            burst: self.rate_limit_burst,
        }
    }
}
