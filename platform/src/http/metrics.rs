//! Connection metrics of one HTTP server (`<prefix>_http_*`).

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why the server closed a connection.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CloseReason {
    /// Headers (or the TLS handshake) not complete within the header timeout.
    header_timeout,
    /// No new request within the idle timeout.
    idle_timeout,
    /// A request body not complete within the body timeout.
    body_timeout,
    /// Accepted while `max_connections` were open.
    max_connections,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: CloseReason,
}

/// Connections open, accepted, and closed by each limit.
#[derive(Clone, Debug, Default)]
pub struct HttpMetrics {
    /// Connections open now (also what the connection cap counts).
    pub open: Gauge,
    pub accepted: Counter,
    pub closed: Family<ReasonLabel, Counter>,
}

impl HttpMetrics {
    /// Register as `http_connections_open`, `http_connections_accepted_total` and
    /// `http_connections_closed_total{reason}`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "http_connections_open",
            "HTTP connections open",
            self.open.clone(),
        );
        r.register(
            "http_connections_accepted",
            "HTTP connections accepted",
            self.accepted.clone(),
        );
        r.register(
            "http_connections_closed",
            "HTTP connections the server closed, by limit (header_timeout, idle_timeout, body_timeout, max_connections)",
            self.closed.clone(),
        );
    }

    pub(super) fn close(&self, reason: CloseReason) {
        self.closed.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Connections closed by `reason` so far.
    pub fn closed_by(&self, reason: CloseReason) -> u64 {
        self.closed.get_or_create(&ReasonLabel { reason }).get()
    }
}
