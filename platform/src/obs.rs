//! Logging and the metrics/health endpoint.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

/// Initialise `tracing` from `RUST_LOG` (default `info`). Safe to call twice.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: logs in files stay greppable.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}

/// Whether a component is ready; `/healthz` answers 503 until it is set. Components may
/// add named details (a data source's version and last error, say): `/healthz` then
/// answers JSON `{"status": "ok"|"starting", "detail": {name: value}}` instead of `ok`.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    detail: Arc<Mutex<BTreeMap<String, serde_json::Value>>>,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    /// Set (or replace) the detail shown under `name`.
    pub fn set_detail(&self, name: &str, value: serde_json::Value) {
        if let Ok(mut d) = self.detail.lock() {
            d.insert(name.to_owned(), value);
        }
    }
    /// The details, as `/healthz` shows them.
    pub fn detail(&self) -> BTreeMap<String, serde_json::Value> {
        self.detail.lock().map(|d| d.clone()).unwrap_or_default()
    }
}

#[derive(Clone)]
struct ObsState {
    registry: Arc<Mutex<Registry>>,
    health: Health,
}

/// Serve `/metrics` (Prometheus text format) and `/healthz` on `addr` until the task is dropped.
pub async fn serve(addr: SocketAddr, registry: Registry, health: Health) -> std::io::Result<()> {
    let state = ObsState {
        registry: Arc::new(Mutex::new(registry)),
        health,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics and /healthz");
    axum::serve(listener, app).await
}

async fn metrics(State(state): State<ObsState>) -> impl IntoResponse {
    let mut body = String::new();
    let encoded = match state.registry.lock() {
        Ok(registry) => prometheus_client::encoding::text::encode(&mut body, &registry).is_ok(),
        Err(_) => false,
    };
    if !encoded {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            String::new(),
        );
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

async fn healthz(State(state): State<ObsState>) -> axum::response::Response {
    let ready = state.health.is_ready();
    let (status, word) = if ready {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    };
    let detail = state.health.detail();
    if detail.is_empty() {
        return (status, word).into_response();
    }
    (
        status,
        axum::Json(serde_json::json!({ "status": word, "detail": detail })),
    )
        .into_response()
}
