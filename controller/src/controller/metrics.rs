//! The controller's counters (`vantage_controller_*`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::by_reason::ByReason;
use crate::feed::FeedMetrics;
use crate::preauth::PreAuthMetrics;

/// Counters of a controller.
#[derive(Clone, Default)]
pub struct ControllerMetrics {
    pub connected: Gauge,
    pub results: Counter,
    pub schedules_sent: Counter,
    /// Connected probes whose first schedule is not delivered yet.
    pub awaiting_schedule: Gauge,
    /// The probe's command channel could not be opened (the probe gets no schedule).
    pub command_channel_failures: Counter,
    pub feed: FeedMetrics,
    /// Watches (assignments, drain, firmware) that failed, ended or stalled (crate::stall) and were started again.
    pub watch_restarts: ByReason,
    /// Dropped input, by reason (malformed, too_long, wrong_probe, bad_id).
    pub dropped: ByReason,
    /// Refused logins and requests, by reason.
    pub refused: ByReason,
    /// Connections that have not authenticated, and those dropped before they did.
    pub preauth: PreAuthMetrics,
}

impl ControllerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connected_probes",
            "Probes with a live session",
            self.connected.clone(),
        );
        registry.register(
            "results",
            "Results published to JetStream",
            self.results.clone(),
        );
        registry.register(
            "schedules_sent",
            "Schedules sent to probes",
            self.schedules_sent.clone(),
        );
        registry.register(
            "awaiting_schedule",
            "Connected probes whose first schedule is not delivered yet",
            self.awaiting_schedule.clone(),
        );
        registry.register(
            "command_channel_failures",
            "Command channels (forwarded-tcpip) that could not be opened",
            self.command_channel_failures.clone(),
        );
        self.feed.register(registry);
        registry.register(
            "watch_restarts",
            "NATS KV watches that failed, ended or stalled and were started again, by watch",
            self.watch_restarts.0.clone(),
        );
        registry.register(
            "dropped",
            "Input from probes dropped, by reason",
            self.dropped.0.clone(),
        );
        registry.register(
            "refused",
            "Refused logins and requests, by reason",
            self.refused.0.clone(),
        );
        self.preauth.register(registry);
    }
    pub(super) fn drop_one(&self, reason: &str) {
        self.dropped.count(reason);
    }
    pub(super) fn refuse(&self, reason: &str) {
        self.refused.count(reason);
    }
}
