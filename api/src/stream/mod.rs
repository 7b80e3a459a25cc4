//! `GET /stream/`: the RIPE Atlas streaming API over WebSocket, as ripe-atlas-cousteau's
//! `AtlasStream` speaks it. Messages are JSON arrays `[type, payload]`; clients send
//! `atlas_subscribe`/`atlas_unsubscribe`, the server answers `atlas_subscribed`,
//! `atlas_unsubscribed`, `atlas_error` and streams `atlas_result`, `atlas_probestatus`
//! and `atlas_metadata`.
//!
//! * [`protocol`]: the messages, the subscription parameters and their checks.
//! * [`results`]: live results from NATS fanned out, the ClickHouse backlog joined
//!   without gap or duplicate.
//! * [`events`]: probe connects/disconnects (NATS KV `vantage-sessions`) and
//!   measurement events (the Measurement reflector).
//! * [`session`]: one client: its bounded queue and the slow-consumer rule.
//! * [`metrics`]: clients, slow clients dropped, messages sent.
//!
//! The [`Hub`] is in the router's state (`AppState::stream`); without it the route
//! answers 503.

pub mod events;
pub mod metrics;
pub mod protocol;
pub mod results;
pub mod session;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

pub use metrics::StreamMetrics;

use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::rows::Rows;
use metrics::Kind;
use results::{ResultSub, Topics};

/// Limits of the streaming API.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// Frames queued for one client before it counts as slow and is dropped.
    pub queue: usize,
    /// Live results held per subscription while its backlog is sent.
    pub pending: usize,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// The backlog covers this far back.
    pub backlog_window: Duration,
    /// At most this many backlog results per subscription.
    pub backlog_limit: usize,
    /// How often the Measurement reflector is checked for metadata events.
    pub metadata_poll: Duration,
    /// When the backlog is read a second time, for results the collector stored late.
    pub catch_up: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            queue: 1024,
            pending: 4096,
            max_subscriptions: 64,
            backlog_window: Duration::from_secs(3600),
            backlog_limit: 10_000,
            metadata_poll: Duration::from_secs(1),
            catch_up: Duration::from_secs(5),
        }
    }
}

/// What the streaming API shares across clients.
pub struct Hub {
    pub config: StreamConfig,
    pub metrics: StreamMetrics,
    nats: Option<async_nats::Client>,
    rows: Arc<dyn Rows>,
    catalog: Arc<dyn Catalog>,
    public_url: Option<String>,
    scheme: &'static str,
    pub(crate) results: Topics,
    pub(crate) events: Arc<events::Events>,
}

impl Hub {
    /// A hub; [`Hub::start`] starts its background watches.
    pub fn new(
        config: StreamConfig,
        nats: Option<async_nats::Client>,
        rows: Arc<dyn Rows>,
        catalog: Arc<dyn Catalog>,
        public_url: Option<String>,
        scheme: &'static str,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            metrics: StreamMetrics::default(),
            results: Topics::new(nats.clone()),
            nats,
            rows,
            catalog,
            public_url,
            scheme,
            events: Arc::new(events::Events::default()),
        })
    }

    /// Start following probe sessions (with NATS) and measurement changes.
    pub fn start(self: &Arc<Self>) {
        if let Some(nats) = &self.nats {
            tokio::spawn(events::watch_sessions(
                nats.clone(),
                self.events.clone(),
                self.catalog.clone(),
            ));
        }
        tokio::spawn(events::watch_measurements(
            self.catalog.clone(),
            self.events.clone(),
            self.config.metadata_poll,
        ));
    }

    pub fn has_nats(&self) -> bool {
        self.nats.is_some()
    }

    /// NATS subscriptions for live results held now.
    pub async fn live_topics(&self) -> usize {
        self.results.open_topics().await
    }

    fn base(&self, headers: &HeaderMap) -> String {
        if let Some(u) = &self.public_url {
            return u.trim_end_matches('/').to_owned();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("{}://{host}", self.scheme)
    }

    /// Send the backlog of `sub` (it is subscribed and gated), open its gate, and read
    /// the backlog again after `catch_up` for results stored late.
    async fn send_backlog(&self, sub: &ResultSub) {
        let sql = results::backlog_sql(
            self.rows.database(),
            &sub.filter,
            self.config.backlog_window.as_secs(),
            self.config.backlog_limit,
        );
        let mut sent = HashSet::new();
        match self.rows.fetch(sql.clone()).await {
            Ok(rows) => {
                for (identity, frame) in rows
                    .iter()
                    .filter_map(|row| row.get("raw").and_then(|r| r.as_str()))
                    .filter_map(|raw| results::backlog_frame(raw, &sub.filter))
                {
                    if sent.insert(identity)
                        && !sub.client().push_wait(Kind::Result, frame.into()).await
                    {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "stream backlog query failed");
                sub.client().error(&format!(
                    "sendBacklog: the backlog is unavailable ({e}); live results follow"
                ));
            }
        }
        if !sub.open_after(sent).await {
            return;
        }
        tokio::time::sleep(self.config.catch_up).await;
        if let Ok(rows) = self.rows.fetch(sql).await {
            for (identity, frame) in rows
                .iter()
                .filter_map(|row| row.get("raw").and_then(|r| r.as_str()))
                .filter_map(|raw| results::backlog_frame(raw, &sub.filter))
            {
                if sub.claim(&identity) && !sub.client().push_wait(Kind::Result, frame.into()).await
                {
                    return;
                }
            }
        }
        sub.stop_tracking();
    }
}

/// `GET /stream/`: upgrade to the streaming protocol.
pub async fn upgrade(
    State(state): State<Arc<crate::routes::AppState>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some(hub) = state.stream.clone() else {
        return ApiError::unavailable("the streaming API is off in this server").into_response();
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("/stream/ speaks the RIPE Atlas streaming protocol over WebSocket ({e}); connect with a WebSocket client such as ripe-atlas-cousteau's AtlasStream"),
            )
            .into_response()
        }
    };
    let base = hub.base(&headers);
    // Small socket buffers: clients send little, and what waits for a client is bounded
    // by its queue (axum's defaults, 128 KiB each way, cost 1,000 clients 250 MiB).
    ws.max_message_size(64 << 10)
        .read_buffer_size(4 << 10)
        .write_buffer_size(16 << 10)
        .on_upgrade(move |socket| session::run(hub, socket, base))
}
