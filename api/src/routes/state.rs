//! What the handlers share: the state ([`AppState`]), the counters ([`Metrics`]) and
//! the request helpers every API family uses (query parameters, link base, path ids).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::catalog::Catalog;
use crate::error::ApiError;
use crate::live::Live;
use crate::rows::Rows;

/// Counters the API serves on /metrics.
#[derive(Clone, Default)]
pub struct Metrics {
    /// Answers by route and status code.
    pub requests: Family<Vec<(String, String)>, Counter>,
    /// Bytes of result bodies streamed.
    pub result_bytes: Counter,
    /// Measurements created.
    pub created: Counter,
    /// Requests refused for a missing or unknown API key.
    pub refused_keys: Counter,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "requests",
            "Answers by route and status",
            self.requests.clone(),
        );
        registry.register(
            "result_bytes",
            "Bytes of result bodies streamed",
            self.result_bytes.clone(),
        );
        registry.register(
            "measurements_created",
            "Measurements created through the API",
            self.created.clone(),
        );
        registry.register(
            "refused_keys",
            "Requests refused for a missing or unknown API key",
            self.refused_keys.clone(),
        );
    }
}

/// What the handlers share.
pub struct AppState {
    pub catalog: Arc<dyn Catalog>,
    pub rows: Arc<dyn Rows>,
    pub live: Option<Arc<dyn Live>>,
    /// The RIPE Atlas streaming API (`GET /stream/`); `None` answers 503.
    pub stream: Option<Arc<crate::stream::Hub>>,
    /// `http` or `https`, for links when `public_url` is not set.
    pub scheme: &'static str,
    /// The API's public URL (scheme and host) for links; default from the Host header.
    pub public_url: Option<String>,
    /// How long `POST /api/v2/measurements/` waits for the operator to give ids.
    pub create_timeout: Duration,
    /// Most probes one measurement may request; more is refused with 400.
    pub max_requested: u32,
    pub metrics: Metrics,
    /// The web console's files ([`crate::console::EmbeddedAssets`] in `vantage api`).
    pub console: Arc<dyn crate::console::Assets>,
    /// The locate engines for `/api/v1/locate/...`; `None` answers 503 (`--engines-url`).
    pub engines: Option<crate::engines::Engines>,
}

/// The state extractor of every handler.
pub(crate) type St = State<Arc<AppState>>;
/// The query string, with its rejection kept so that [`params`] answers it RIPE-style.
pub(crate) type Params = Result<Query<BTreeMap<String, String>>, QueryRejection>;

/// The query parameters, or a 400 naming what is malformed.
pub(crate) fn params(q: Params) -> Result<BTreeMap<String, String>, ApiError> {
    q.map(|Query(m)| m).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the query string is malformed: {e}"),
        )
    })
}

/// Scheme and host for links: `public_url`, else the request's Host header.
pub(crate) fn base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &state.public_url {
        return u.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("{}://{host}", state.scheme)
}

/// A path id; a non-numeric one is a 404, as on RIPE Atlas.
pub(crate) fn parse_id(what: &str, id: &str) -> Result<u64, ApiError> {
    id.parse().map_err(|_| {
        ApiError::not_found(format!(
            "{what} {id:?} does not exist: ids are positive integers"
        ))
    })
}
