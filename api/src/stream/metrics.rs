//! The streaming counters, served on the API's `/metrics` with the others.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// What a frame carries, for the `messages_sent` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Result,
    ProbeStatus,
    Metadata,
    /// `atlas_subscribed`, `atlas_unsubscribed`, `atlas_error`.
    Control,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Result => "result",
            Kind::ProbeStatus => "probestatus",
            Kind::Metadata => "metadata",
            Kind::Control => "control",
        }
    }
}

type Labels = Vec<(String, String)>;

/// Streaming counters. Clones share the values.
#[derive(Clone, Debug)]
pub struct StreamMetrics {
    /// WebSocket clients connected now.
    pub clients: Gauge,
    /// Clients dropped because they read too slowly.
    pub slow_dropped: Counter,
    /// Frames written to clients, by kind.
    pub sent: Family<Labels, Counter>,
    by_kind: [Counter; 4],
}

impl Default for StreamMetrics {
    fn default() -> Self {
        let sent = Family::<Labels, Counter>::default();
        let by_kind = [
            Kind::Result,
            Kind::ProbeStatus,
            Kind::Metadata,
            Kind::Control,
        ]
        .map(|k| {
            sent.get_or_create(&vec![("type".to_owned(), k.label().to_owned())])
                .clone()
        });
        Self {
            clients: Gauge::default(),
            slow_dropped: Counter::default(),
            sent,
            by_kind,
        }
    }
}

impl StreamMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "stream_clients",
            "WebSocket clients of /stream/ connected now",
            self.clients.clone(),
        );
        registry.register(
            "stream_slow_clients_dropped",
            "Stream clients dropped because they read too slowly",
            self.slow_dropped.clone(),
        );
        registry.register(
            "stream_messages_sent",
            "Stream messages written to clients, by type",
            self.sent.clone(),
        );
    }

    /// Count one frame of `kind` written.
    pub fn sent(&self, kind: Kind) {
        let i = match kind {
            Kind::Result => 0,
            Kind::ProbeStatus => 1,
            Kind::Metadata => 2,
            Kind::Control => 3,
        };
        self.by_kind[i].inc();
    }

    /// Frames of `kind` written so far.
    pub fn sent_of(&self, kind: Kind) -> u64 {
        self.sent
            .get_or_create(&vec![("type".to_owned(), kind.label().to_owned())])
            .get()
    }
}
