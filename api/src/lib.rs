//! vantage's data API (`vantage api`).
//!
//! * A RIPE Atlas API v2 subset: `GET /api/v2/measurements/` (filters, pages),
//!   `/measurements/{id}/`, `/results/` (streamed from ClickHouse), `/latest/`,
//!   `/api/v2/probes/`, `/probes/{id}/`, and `POST /api/v2/measurements/`, which creates
//!   a Measurement resource in the namespace of the API key (a labelled Secret);
//!   `DELETE /api/v2/measurements/{id}/` stops it and `POST .../participation-requests/`
//!   adds or removes probes (the creating key only). Bodies over
//!   [`body_limit::MAX_BODY_BYTES`] get 413; creations past a key's rate get 429
//!   ([`rate_limit`]).
//! * Live results per measurement as server-sent events, from NATS.
//! * `GET /stream/`: the RIPE Atlas streaming API over WebSocket (results with backlog,
//!   probe status, measurement metadata), in [`stream`].
//! * OONI-style `GET /api/v1/measurements` and `/api/v1/aggregation` over `fastpath`.
//! * The console's own routes under `/api/vantage/v1/` (probe map, a probe's results,
//!   measurements and connection history, a measurement's aggregates from [`summary`]).
//! * The web console itself ([`console`], embedded at build time) at `/`, `/probes`, ...
//!   and geolocation proxied to `vantage engines` ([`engines`], `--engines-url`).
//! * `/api/openapi.json`, built from the same route table as the router.
//! * HTTPS with rustls, or HTTP for local use, on `vantage_platform::http::serve`
//!   (connection limits); `/metrics` and `/healthz` on their own port.

pub mod body_limit;
pub mod catalog;
pub mod console;
pub mod engines;
pub mod error;
pub mod live;
pub mod ooni;
pub mod rate_limit;
pub mod ripe;
pub mod routes;
pub mod rows;
pub mod stream;
pub mod summary;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use routes::{router, AppState, Metrics};
/// Default of `--max-requested`: the most probes one measurement may request.
pub use vantage_core::definition::DEFAULT_MAX_REQUESTED;

/// TLS certificate chain and key, PEM files.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How `vantage api` runs.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub clickhouse_url: String,
    pub clickhouse_db: String,
    /// NATS for live results; none turns the stream routes off.
    pub nats_url: Option<String>,
    /// HTTPS when set, HTTP otherwise.
    pub tls: Option<TlsFiles>,
    /// Public URL for links (`next`, `result`); default from the Host header.
    pub public_url: Option<String>,
    /// How long a creation waits for the operator to give ids.
    pub create_timeout: Duration,
    /// Most probes one measurement may request (`--max-requested`).
    pub max_requested: u32,
    /// Connection limits (`--http-*`).
    pub http: vantage_platform::http::HttpLimits,
    /// Measurement creations per API key (`--rate-limit-*`).
    pub rate_limit: rate_limit::RateLimit,
    /// `vantage engines` for the console's geolocation (`--engines-url`); none answers 503.
    pub engines_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}; choose a free address with --listen")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot reach the Kubernetes API: {0}; set KUBECONFIG or run in a pod with a service account")]
    Kube(#[source] kube::Error),
    #[error(transparent)]
    NatsUrl(vantage_platform::bus::BusError),
    #[error("cannot connect to NATS at {url}: {source}; check --nats-url")]
    Nats {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("database name {name:?} is not a plain identifier; use letters, digits and _ (--clickhouse-db, CLICKHOUSE_DB)")]
    BadDatabase { name: String },
    #[error(transparent)]
    Engines(#[from] engines::EnginesError),
    #[error("the API server stopped: {0}")]
    Serve(#[source] std::io::Error),
}

/// Run the API until the process ends.
pub async fn serve(config: Config) -> Result<(), Error> {
    let db = &config.clickhouse_db;
    if db.is_empty() || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::BadDatabase { name: db.clone() });
    }
    let engines = config
        .engines_url
        .as_deref()
        .map(engines::Engines::new)
        .transpose()?;
    if !console::EmbeddedAssets::built() {
        tracing::warn!("this binary was built without the console (console/dist was missing): its pages answer 503; build it with `make console`, then rebuild");
    }
    let mut registry = prometheus_client::registry::Registry::with_prefix("vantage_api");
    let metrics = Metrics::default();
    metrics.register(&mut registry);
    let http_metrics = vantage_platform::http::HttpMetrics::default();
    http_metrics.register(&mut registry);
    let health = vantage_platform::obs::Health::default();

    let client = kube::Client::try_default().await.map_err(Error::Kube)?;
    let catalog = Arc::new(catalog::KubeCatalog::start(client));
    let nats = match &config.nats_url {
        Some(url) => {
            let servers = vantage_platform::bus::parse_nats_urls(url).map_err(Error::NatsUrl)?;
            let nc = async_nats::ConnectOptions::new()
                .name("vantage-api")
                // NATS permissions give the API only its own reply inbox (KV watches).
                .custom_inbox_prefix(vantage_platform::bus::inbox_prefix("vantage-api"))
                .connect(servers)
                .await
                .map_err(|source| Error::Nats {
                    url: url.clone(),
                    source,
                })?;
            Some(nc)
        }
        None => None,
    };
    let live: Option<Arc<dyn live::Live>> = nats
        .clone()
        .map(|nc| Arc::new(live::NatsLive(nc)) as Arc<dyn live::Live>);
    let rows: Arc<dyn rows::Rows> = Arc::new(rows::ClickHouseRows::new(&config.clickhouse_url, db));
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let hub = stream::Hub::new(
        stream::StreamConfig::default(),
        nats,
        rows.clone(),
        catalog.clone(),
        config.public_url.clone(),
        scheme,
    );
    hub.metrics.register(&mut registry);
    hub.start();
    let state = Arc::new(AppState {
        catalog: catalog.clone(),
        rows,
        live,
        stream: Some(hub),
        scheme,
        public_url: config.public_url.clone(),
        create_timeout: config.create_timeout,
        max_requested: config.max_requested,
        metrics,
        console: Arc::new(console::EmbeddedAssets),
        engines,
    });
    let limiter = rate_limit::CreationLimiter::new(config.rate_limit);
    limiter.register(&mut registry);
    limiter.spawn_cleanup();
    let app = router(state).layer(axum::middleware::from_fn_with_state(
        limiter,
        rate_limit::limit_creations,
    ));

    let metrics_addr = config.metrics_addr;
    let obs_health = health.clone();
    tokio::spawn(async move {
        if let Err(e) = vantage_platform::obs::serve(metrics_addr, registry, obs_health).await {
            tracing::error!(error = %e, %metrics_addr, "metrics endpoint stopped");
        }
    });
    // Ready once the reflectors listed everything.
    let ready_health = health.clone();
    tokio::spawn(async move {
        use catalog::Catalog;
        while !catalog.ready() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ready_health.set_ready(true);
    });

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    use vantage_platform::http;
    match &config.tls {
        Some(files) => {
            let tls = tls::Tls::new(tls::server_config(&files.cert, &files.key)?);
            tracing::info!(addr = %config.listen, limits = ?config.http, "serving the data API over HTTPS");
            http::serve(listener, app, config.http, tls, http_metrics)
                .await
                .map_err(Error::Serve)
        }
        None => {
            tracing::info!(addr = %config.listen, limits = ?config.http, "serving the data API over HTTP");
            http::serve(listener, app, config.http, http::PlainTcp, http_metrics)
                .await
                .map_err(Error::Serve)
        }
    }
}
