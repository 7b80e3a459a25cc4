//! Geolocation as RIPE IPmap does it: one world dataset ([`world`]), isolated engines
//! scoring candidate cities 1..=10 ([`engine`]), a reducer summing weighted scores
//! ([`reducer`]) and an HTTP API ([`api`]). See `docs/GEOLOCATION.md`.

pub mod api;
pub mod engine;
pub mod eval;
pub mod geo;
pub mod reducer;
pub mod world;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use api::{router, Api};
pub use engine::{Candidate, Engine};
pub use reducer::{EngineConfig, Locator};
pub use world::World;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("world dataset: {0}")]
    Dataset(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Engine(String),
    #[error("store: {0}")]
    Store(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server stopped: {0}")]
    Serve(#[source] std::io::Error),
}

pub(crate) fn check_db_name(db: &str) -> Result<(), Error> {
    if db.is_empty() || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::Config(format!(
            "database name {db:?} is not a plain identifier; use letters, digits and _"
        )));
    }
    Ok(())
}

/// ClickHouse for RTTs (`results`) and crowdsourced reports (`geo_crowdsource`).
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub database: String,
}

/// How `vantage engines` runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The API (`/api/v1/...`).
    pub listen: SocketAddr,
    /// `/metrics` and `/healthz`.
    pub metrics_addr: SocketAddr,
    /// Engines, weights and switches (from `GeolocationEngine` resources).
    pub engines: Vec<EngineConfig>,
    /// Without it RTT engines have no data and crowdsourced reports stay in memory.
    pub clickhouse: Option<ClickHouseConfig>,
    /// A worlds file (gzip TSV) instead of the embedded one.
    pub worlds_path: Option<PathBuf>,
    /// Probe locations for the RTT engines (probe id → lat, lon).
    pub probe_locations: engine::latency::ProbeLocations,
    /// Ping results older than this are not used.
    pub rtt_max_age: Duration,
    /// Cached answers older than this are computed again.
    pub cache_max_age: Duration,
    /// The most addresses one batch may ask for.
    pub max_batch: usize,
    /// How long one engine may take.
    pub engine_timeout: Duration,
}

impl Config {
    pub fn new(listen: SocketAddr, metrics_addr: SocketAddr) -> Self {
        Self {
            listen,
            metrics_addr,
            engines: EngineConfig::builtins(),
            clickhouse: None,
            worlds_path: None,
            probe_locations: Default::default(),
            rtt_max_age: Duration::from_secs(7 * 86_400),
            cache_max_age: Duration::from_secs(3600),
            max_batch: 1000,
            engine_timeout: Duration::from_secs(5),
        }
    }
}

/// Build the engines a configuration names.
pub async fn build_locator(
    config: &Config,
) -> Result<(Locator, Option<Arc<engine::crowd::Crowdsourced>>), Error> {
    use engine::latency::{ClickHouseRtts, Latency, LatencyKind, RttSource, StaticRtts};
    let world = match &config.worlds_path {
        Some(path) => Arc::new(World::from_gzip(&std::fs::read(path).map_err(|e| {
            Error::Dataset(format!("cannot read {}: {e}", path.display()))
        })?)?),
        None => World::embedded()?,
    };
    let rtts: Arc<dyn RttSource> = match &config.clickhouse {
        Some(ch) => Arc::new(ClickHouseRtts::new(
            &ch.url,
            &ch.database,
            config.probe_locations.clone(),
            u32::try_from(config.rtt_max_age.as_secs()).unwrap_or(u32::MAX),
        )?),
        None => {
            tracing::warn!("no ClickHouse: the RTT engines have no measurements to read");
            Arc::new(StaticRtts::default())
        }
    };
    let crowd_store: Arc<dyn engine::crowd::CrowdStore> = match &config.clickhouse {
        Some(ch) => {
            let store = engine::crowd::ClickHouseCrowdStore::new(&ch.url, &ch.database)?;
            store.ensure_table().await?;
            Arc::new(store)
        }
        None => Arc::new(engine::crowd::MemoryCrowdStore::default()),
    };
    let crowd = Arc::new(engine::crowd::Crowdsourced::new(
        crowd_store,
        Default::default(),
    ));
    let mut engines: Vec<(Arc<dyn Engine>, EngineConfig)> = Vec::new();
    let mut crowd_used = false;
    for cfg in &config.engines {
        let engine: Arc<dyn Engine> = match (cfg.name.as_str(), &cfg.http_endpoint) {
            (name, Some(endpoint)) => Arc::new(engine::external::HttpEngine::new(name, endpoint, config.engine_timeout)?),
            ("single-radius", None) => Arc::new(Latency::new(LatencyKind::SingleRadius, rtts.clone())),
            ("latency", None) => Arc::new(Latency::new(LatencyKind::Cbg, rtts.clone())),
            ("anycast", None) => Arc::new(Latency::new(LatencyKind::Anycast, rtts.clone())),
            ("reverse-dns", None) => Arc::new(engine::rdns::ReverseDns::new(
                engine::rdns::Rules::embedded()?,
                Arc::new(engine::rdns::HickoryPtr::from_system()?),
            )),
            ("crowdsourced", None) => {
                crowd_used = true;
                crowd.clone()
            }
            (other, None) => {
                return Err(Error::Config(format!(
                    "engine {other:?} is not built in (single-radius, latency, anycast, reverse-dns, crowdsourced) and has no http_endpoint"
                )))
            }
        };
        engines.push((engine, cfg.clone()));
    }
    let locator = Locator {
        world,
        engines,
        engine_timeout: config.engine_timeout,
    };
    Ok((locator, crowd_used.then_some(crowd)))
}

/// Serve the geolocation API on `config.listen` and `/metrics` + `/healthz` on
/// `config.metrics_addr`, until the process stops.
pub async fn serve(config: Config) -> Result<(), Error> {
    let mut registry = prometheus_client::registry::Registry::with_prefix("vantage_engines");
    let health = vantage_platform::obs::Health::default();
    let (locator, crowd) = build_locator(&config).await?;
    tracing::info!(
        cities = locator.world.len(),
        airports = locator.world.airport_count(),
        version = locator.world.version(),
        engines = ?locator.engine_names(),
        "world loaded"
    );
    let api = Arc::new(Api::new(
        locator,
        crowd,
        config.cache_max_age,
        config.max_batch,
        &mut registry,
    ));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    let metrics_addr = config.metrics_addr;
    let obs_health = health.clone();
    tokio::spawn(async move {
        if let Err(e) = vantage_platform::obs::serve(metrics_addr, registry, obs_health).await {
            tracing::error!(error = %e, %metrics_addr, "metrics endpoint stopped");
        }
    });
    health.set_ready(true);
    tracing::info!(addr = %config.listen, "serving the geolocation API");
    axum::serve(listener, router(api))
        .await
        .map_err(Error::Serve)
}
