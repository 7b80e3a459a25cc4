//! Geolocation as RIPE IPmap does it: one world dataset ([`world`]), isolated engines
//! scoring candidate cities 1..=10 ([`engine`]), a reducer summing weighted scores
//! ([`reducer`]), the locate service and its answer cache ([`locate`], [`cache`]) and
//! an HTTP API over it ([`api`]). See `docs/GEOLOCATION.md`. The accuracy harness is
//! the unpublished crate `vantage-geo-eval` (`geo-eval/`).

pub mod api;
pub mod asn;
pub mod cache;
pub mod data;
pub mod engine;
pub mod geo;
pub mod geofeed;
pub mod locate;
pub mod openapi;
pub mod reducer;
pub mod resources;
pub mod rir;
pub mod world;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use api::router;
pub use engine::{Candidate, Engine};
pub use locate::Api;
pub use reducer::{EngineConfig, Locator};
pub use world::World;

/// A boxed underlying error (a transport's, a measurer's).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data file (worlds, RIR statistics, ASN table) that cannot be read.
    #[error("cannot read the {data} {}: {source}; {fix}", path.display())]
    ReadFile {
        data: &'static str,
        path: PathBuf,
        fix: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The worlds file is not gzip.
    #[error("world dataset: cannot gunzip the worlds file: {source}; give a gzip TSV built by engines/data/build_worlds.py")]
    Gunzip {
        #[source]
        source: std::io::Error,
    },
    /// A data file whose content is wrong: `problem` says where and what is expected.
    #[error("{data}: {problem}")]
    Dataset { data: &'static str, problem: String },
    /// JSON that does not parse or cannot be written.
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A setting that cannot work: `problem` says which and how to fix it.
    #[error("configuration: {problem}")]
    Config { problem: String },
    /// A ClickHouse read or write that failed.
    #[error("store: {what}: {source}")]
    Store {
        what: String,
        #[source]
        source: clickhouse::error::Error,
    },
    /// A Kubernetes API call that failed.
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// A DNS lookup, or the resolver's configuration, that failed.
    #[error("{what}: {source}")]
    Dns {
        what: String,
        #[source]
        source: hickory_resolver::ResolveError,
    },
    /// `--nats-url` is not a list of NATS URLs.
    #[error(transparent)]
    NatsUrl(vantage_platform::bus::BusError),
    /// `--clickhouse-cluster` / `CLICKHOUSE_CLUSTER` that cannot work (unknown cluster,
    /// ZooKeeper unreachable), found at start before any table is created.
    #[error(transparent)]
    Cluster(vantage_platform::store::StoreError),
    /// NATS cannot be reached.
    #[error("cannot connect to NATS at {url}: {source}; check --nats-url, or run without it (external engines on NATS subjects then stay unavailable)")]
    Nats {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    /// An external engine that failed: `reason` is the metric label (transport,
    /// timeout, status, too_large, malformed), `at` where it answers.
    #[error("external engine {engine} {at}: {problem}")]
    External {
        engine: String,
        at: String,
        reason: &'static str,
        problem: String,
        #[source]
        source: Option<BoxError>,
    },
    /// A one-off measurement that ended without results (no underlying error).
    #[error("single-radius: measurement {name} {problem}")]
    Measurement { name: String, problem: String },
    /// An on-demand measurer (single-radius) that could not measure.
    #[error("measuring {ip}: {source}")]
    Measure {
        ip: std::net::IpAddr,
        #[source]
        source: BoxError,
    },
    /// A lock a thread panicked while holding: the process is in a bad state.
    #[error("{what} lock poisoned: a thread panicked while holding it; restart vantage engines")]
    Poisoned { what: &'static str },
    /// One error handed to several waiters (a shared reading, the embedded world).
    #[error(transparent)]
    Shared(Arc<Error>),
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
        return Err(Error::Config {
            problem: format!(
                "database name {db:?} is not a plain identifier; use letters, digits and _"
            ),
        });
    }
    Ok(())
}

/// A `--clickhouse-cluster` name: `None` or empty is one node; otherwise a plain identifier.
pub(crate) fn cluster_name(cluster: Option<&str>) -> Result<Option<String>, Error> {
    let Some(name) = cluster.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::Config {
            problem: format!(
                "ClickHouse cluster name {name:?} (--clickhouse-cluster / CLICKHOUSE_CLUSTER) is not a plain identifier; use letters, digits and _"
            ),
        });
    }
    Ok(Some(name.to_owned()))
}

/// The client settings of cluster mode, as the platform's store sets them: an INSERT into
/// a Distributed table returns once every shard has the rows, and `IN (SELECT ... FROM
/// <Distributed>)` runs as GLOBAL IN (ClickHouse's default refuses it).
pub(crate) fn cluster_client(client: clickhouse::Client) -> clickhouse::Client {
    client
        .with_setting("insert_distributed_sync", "1")
        .with_setting("distributed_product_mode", "global")
}

/// The DDL that creates one of the engines' own tables: `CREATE DATABASE` and the
/// single-node `create_table` as given, or on a cluster both `ON CLUSTER`, the table as a
/// Replicated `<table>_local` behind a Distributed `<table>` (the platform's
/// `cluster_statements`, sharded by `cityHash64(ip)`).
pub(crate) fn table_ddl(
    db: &str,
    cluster: Option<&str>,
    create_table: String,
) -> Result<Vec<String>, Error> {
    let Some(c) = cluster else {
        return Ok(vec![
            format!("CREATE DATABASE IF NOT EXISTS {db}"),
            create_table,
        ]);
    };
    let [local, distributed] =
        vantage_platform::store::migrations::cluster_statements(&create_table, db, c).ok_or_else(
            || Error::Config {
                problem: format!(
                    "no cluster form for {create_table:?} (--clickhouse-cluster / CLICKHOUSE_CLUSTER); this is a bug in vantage-engines"
                ),
            },
        )?;
    Ok(vec![
        format!("CREATE DATABASE IF NOT EXISTS {db} ON CLUSTER {c}"),
        local,
        distributed,
    ])
}

/// ClickHouse for RTTs (`results`), crowdsourced reports (`geo_crowdsource`) and cached
/// answers (`geo_answers`).
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub database: String,
    /// `--clickhouse-cluster` / `CLICKHOUSE_CLUSTER`: the engines' own tables are created
    /// `ON CLUSTER` as Replicated tables behind Distributed ones of the same names (checked
    /// at start: the cluster must exist and reach ZooKeeper). `None`: one node.
    pub cluster: Option<String>,
}

impl ClickHouseConfig {
    /// Cluster mode: is the cluster known to the server at `url`, and does it reach
    /// ZooKeeper? An error names the setting; nothing is created. One node: nothing to do.
    pub async fn check_cluster(&self) -> Result<(), Error> {
        if self.cluster.is_none() {
            return Ok(());
        }
        vantage_platform::store::Store::new(&self.url, &self.database)
            .and_then(|s| s.with_cluster(self.cluster.as_deref()))
            .map_err(Error::Cluster)?
            .check_cluster()
            .await
            .map_err(Error::Cluster)
    }
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
    /// Ping results older than this are not used (for RTTs to targets and for the
    /// calibration's anchoring-mesh pings alike).
    pub rtt_max_age: Duration,
    /// With ClickHouse, CBG's calibration (every probe's bestline, fitted to its
    /// anchoring-mesh pings) is fitted again at most this often
    /// (`--calibration-refresh-seconds`).
    pub calibration_refresh: Duration,
    /// Cached answers older than this are computed again.
    pub cache_max_age: Duration,
    /// The most addresses one batch may ask for.
    pub max_batch: usize,
    /// How long one engine may take.
    pub engine_timeout: Duration,
    /// Follow `GeolocationEngine` resources in this namespace (the enabled set and
    /// weights); `None`: run `engines` as given (all built-ins by default).
    pub kube_namespace: Option<String>,
    /// NATS, for external engines that answer on a subject.
    pub nats_url: Option<String>,
    /// With Kubernetes and ClickHouse: single-radius measures (one-off ping
    /// Measurements in `kube_namespace`) when no stored RTT is under 10 ms.
    pub active_measurement: bool,
    /// How much single-radius measures.
    pub active: ActiveConfig,
    /// A BGP prefix → origin ASN dump (pyasn or CAIDA prefix2as; `asn::PrefixTable`):
    /// single-radius then asks probes in the target's ASN before the hinted countries,
    /// and a locate of an address no route covers is answered 422 `unrouted_address`.
    pub asn_table: Option<std::path::PathBuf>,
    /// RIR statistics files (`delegated-<rir>-extended-latest`) for the `rir`
    /// engine and as a country hint for single-radius; none: no `rir` engine.
    pub rir_files: Vec<PathBuf>,
    /// RPSL database dumps whose `geofeed:` references (RFC 9632) name geofeeds, read
    /// from `geofeed_dir` (`--geofeed-refs`).
    pub geofeed_refs: Vec<PathBuf>,
    /// The mirror of the referenced geofeed URLs: `<dir>/<host>/<path>` (`--geofeed-dir`).
    pub geofeed_dir: Option<PathBuf>,
    /// Geofeed CSV files read directly (operators' own feeds, `--geofeed-file`).
    pub geofeed_files: Vec<PathBuf>,
    /// Connection limits of the API (`--http-*`).
    pub http: vantage_platform::http::HttpLimits,
}

/// How much active single-radius measures per located address.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveConfig {
    /// On-demand pings at most.
    pub rounds: usize,
    /// Probes per ping.
    pub probes: usize,
    /// Stop once a probe answers faster than this (ms).
    pub enough_rtt_ms: f64,
}

impl Default for ActiveConfig {
    fn default() -> Self {
        Self {
            rounds: 2,
            probes: 10,
            enough_rtt_ms: 10.0,
        }
    }
}

impl Config {
    pub fn new(listen: SocketAddr, metrics_addr: SocketAddr) -> Self {
        Self {
            listen,
            metrics_addr,
            engines: {
                let mut engines = EngineConfig::builtins();
                if !engines.iter().any(|e| e.name == engine::geofeed::NAME) {
                    engines.push(EngineConfig::new(engine::geofeed::NAME, 1.0, true));
                }
                engines
            },
            clickhouse: None,
            worlds_path: None,
            probe_locations: Default::default(),
            rtt_max_age: Duration::from_secs(7 * 86_400),
            calibration_refresh: engine::calibration_store::DEFAULT_REFRESH,
            cache_max_age: Duration::from_secs(3600),
            max_batch: 1000,
            engine_timeout: Duration::from_secs(5),
            kube_namespace: None,
            nats_url: None,
            active_measurement: true,
            active: ActiveConfig::default(),
            asn_table: None,
            rir_files: Vec::new(),
            geofeed_refs: Vec::new(),
            geofeed_dir: None,
            geofeed_files: Vec::new(),
            http: vantage_platform::http::HttpLimits::default(),
        }
    }

    /// The engines to run without Kubernetes: `engines`, less the built-in `rir`
    /// and `geofeed` when there are no files for them to read.
    pub fn static_engines(&self) -> Vec<EngineConfig> {
        self.engines
            .iter()
            .filter(|c| !(c.name == "rir" && !c.is_external() && self.rir_files.is_empty()))
            .filter(|c| {
                !(c.name == engine::geofeed::NAME
                    && !c.is_external()
                    && self.geofeed_sources().is_empty())
            })
            .cloned()
            .collect()
    }

    /// Where geofeeds come from (`--geofeed-refs`, `--geofeed-dir`, `--geofeed-file`).
    pub fn geofeed_sources(&self) -> geofeed::Sources {
        geofeed::Sources {
            refs: self.geofeed_refs.clone(),
            dir: self.geofeed_dir.clone(),
            files: self.geofeed_files.clone(),
        }
    }
}

/// What engines are built from: the shared sources, once per process.
pub struct Engines {
    /// Stored RTTs (ClickHouse `results`).
    rtts: Arc<dyn engine::latency::RttSource>,
    /// What the latency engines read: the stored RTTs, or a source that measures on
    /// demand, shared so that one locate measures once for all three.
    measured_rtts: Arc<dyn engine::latency::RttSource>,
    rdns: Arc<dyn Engine>,
    crowd: Arc<engine::crowd::Crowdsourced>,
    rir: Option<Arc<dyn Engine>>,
    rir_data: Option<Arc<data::DataFiles<rir::Delegations>>>,
    geofeed: Option<Arc<dyn Engine>>,
    geofeed_data: Option<Arc<data::DataFiles<geofeed::Geofeeds>>>,
    geofeed_metrics: engine::geofeed::GeofeedMetrics,
    nats: Option<async_nats::Client>,
    engine_timeout: Duration,
    external_metrics: engine::external::ExternalMetrics,
    /// CBG's per-probe calibration (the anchoring mesh in ClickHouse); none: physics.
    calibration: Option<Arc<dyn engine::calibration::CalibrationSource>>,
    calibration_metrics: engine::calibration_store::CalibrationMetrics,
}

impl Engines {
    pub fn new(
        rtts: Arc<dyn engine::latency::RttSource>,
        rdns: Arc<dyn Engine>,
        crowd: Arc<engine::crowd::Crowdsourced>,
        engine_timeout: Duration,
    ) -> Self {
        Self {
            measured_rtts: rtts.clone(),
            rtts,
            rdns,
            crowd,
            rir: None,
            rir_data: None,
            geofeed: None,
            geofeed_data: None,
            geofeed_metrics: Default::default(),
            nats: None,
            engine_timeout,
            external_metrics: Default::default(),
            calibration: None,
            calibration_metrics: Default::default(),
        }
    }

    /// Calibrate CBG (`latency`) and the on-demand RTT source with per-probe
    /// bestlines; single-radius and anycast stay physics' bounds.
    pub fn with_calibration(
        mut self,
        calibration: Arc<dyn engine::calibration::CalibrationSource>,
    ) -> Self {
        self.calibration = Some(calibration);
        self
    }

    /// The calibration CBG uses, if any.
    pub fn calibration(&self) -> Option<Arc<dyn engine::calibration::CalibrationSource>> {
        self.calibration.clone()
    }

    /// `vantage_engines_calibration_*`.
    pub fn calibration_metrics(&self) -> &engine::calibration_store::CalibrationMetrics {
        &self.calibration_metrics
    }

    /// Registered countries for the `rir` engine.
    pub fn with_rir(mut self, data: Arc<data::DataFiles<rir::Delegations>>) -> Self {
        self.rir = Some(Arc::new(engine::rir::Rir::new(data.clone())));
        self.rir_data = Some(data);
        self
    }

    /// The RIR files, to reload when they change.
    pub fn rir_data(&self) -> Option<Arc<data::DataFiles<rir::Delegations>>> {
        self.rir_data.clone()
    }

    /// Geofeeds for the `geofeed` engine; its claims are checked against `rtts` (the
    /// stored RTTs, so that a check never starts a measurement).
    pub fn with_geofeed(
        mut self,
        data: Arc<data::DataFiles<geofeed::Geofeeds>>,
        rtts: Option<Arc<dyn engine::latency::RttSource>>,
    ) -> Self {
        self.geofeed = Some(Arc::new(
            engine::geofeed::GeofeedEngine::new(data.clone(), rtts)
                .with_metrics(self.geofeed_metrics.clone()),
        ));
        self.geofeed_data = Some(data);
        self
    }

    /// The geofeed files, to reload when they change.
    pub fn geofeed_data(&self) -> Option<Arc<data::DataFiles<geofeed::Geofeeds>>> {
        self.geofeed_data.clone()
    }

    /// `vantage_engines_geofeed_contradicted_total`.
    pub fn geofeed_metrics(&self) -> &engine::geofeed::GeofeedMetrics {
        &self.geofeed_metrics
    }

    /// The `rir` engine, when there are RIR files.
    pub fn rir(&self) -> Option<Arc<dyn Engine>> {
        self.rir.clone()
    }

    /// NATS for external engines on a subject.
    pub fn with_nats(mut self, client: async_nats::Client) -> Self {
        self.nats = Some(client);
        self
    }

    /// An RTT source that measures on demand (active single-radius) for the latency
    /// engines: single-radius, CBG and anycast share each of its readings for a minute.
    pub fn with_measured_rtts(mut self, rtts: Arc<dyn engine::latency::RttSource>) -> Self {
        self.measured_rtts = Arc::new(engine::latency::SharedRtts::new(
            rtts,
            Duration::from_secs(60),
        ));
        self
    }

    /// The stored-RTT source.
    pub fn rtts(&self) -> Arc<dyn engine::latency::RttSource> {
        self.rtts.clone()
    }

    /// The reverse-DNS engine.
    pub fn rdns(&self) -> Arc<dyn Engine> {
        self.rdns.clone()
    }

    pub fn external_metrics(&self) -> &engine::external::ExternalMetrics {
        &self.external_metrics
    }

    pub fn crowd(&self) -> Arc<engine::crowd::Crowdsourced> {
        self.crowd.clone()
    }

    /// The engine a configuration names.
    pub fn build(&self, cfg: &EngineConfig) -> Result<Arc<dyn Engine>, Error> {
        use engine::latency::{Latency, LatencyKind};
        let name = cfg.name.as_str();
        Ok(match (name, &cfg.http_endpoint, &cfg.nats_subject) {
            (_, Some(endpoint), _) => Arc::new(
                engine::external::HttpEngine::new(name, endpoint, self.engine_timeout)?
                    .with_metrics(self.external_metrics.clone())
                    .with_scope(cfg.scope),
            ),
            (_, None, Some(subject)) => {
                let Some(client) = &self.nats else {
                    return Err(Error::Config { problem: format!(
                        "engine {name}: answers on NATS subject {subject:?}, but vantage engines runs without NATS; start it with --nats-url"
                    ) });
                };
                Arc::new(
                    engine::external::NatsEngine::new(
                        name,
                        subject,
                        client.clone(),
                        self.engine_timeout,
                        self.external_metrics.clone(),
                    )?
                    .with_scope(cfg.scope),
                )
            }
            ("single-radius", None, None) => Arc::new(Latency::new(
                LatencyKind::SingleRadius,
                self.measured_rtts.clone(),
            )),
            ("latency", None, None) => {
                let cbg = Latency::new(LatencyKind::Cbg, self.measured_rtts.clone());
                Arc::new(match &self.calibration {
                    Some(calibration) => cbg.with_calibration(calibration.clone()),
                    None => cbg,
                })
            }
            ("anycast", None, None) => Arc::new(Latency::new(
                LatencyKind::Anycast,
                self.measured_rtts.clone(),
            )),
            ("reverse-dns", None, None) => self.rdns.clone(),
            ("crowdsourced", None, None) => self.crowd.clone(),
            ("rir", None, None) => self.rir.clone().ok_or_else(|| Error::Config {
                problem: "engine rir: no RIR files; start vantage engines with --rir-file=<delegated-<rir>-extended-latest> (one per RIR)".into(),
            })?,
            (engine::geofeed::NAME, None, None) => self.geofeed.clone().ok_or_else(|| Error::Config {
                problem: "engine geofeed: no geofeeds; start vantage engines with --geofeed-file=<RFC 8805 CSV>, or --geofeed-refs=<RPSL dump> with --geofeed-dir=<mirror of the referenced URLs>".into(),
            })?,
            (other, None, None) => {
                return Err(Error::Config {
                    problem: format!(
                        "engine {other:?} is not built in ({}) and has no http_endpoint or nats_subject",
                        reducer::BUILTINS.join(", ")
                    ),
                })
            }
        })
    }

    /// Every engine of `configs`; the first that cannot be built is an error.
    pub fn build_all(
        &self,
        configs: &[EngineConfig],
    ) -> Result<Vec<reducer::ConfiguredEngine>, Error> {
        configs
            .iter()
            .map(|c| Ok((self.build(c)?, c.clone())))
            .collect()
    }
}

/// The world and the engine sources a configuration names.
pub async fn build_engines(config: &Config) -> Result<(Arc<World>, Engines), Error> {
    use engine::latency::{ClickHouseRtts, RttSource, StaticRtts};
    if let Some(ch) = &config.clickhouse {
        // Before anything is created: a wrong cluster leaves no half-created schema.
        ch.check_cluster().await?;
    }
    let world = match &config.worlds_path {
        Some(path) => Arc::new(World::from_gzip(&std::fs::read(path).map_err(
            |source| Error::ReadFile {
                data: "worlds file",
                path: path.clone(),
                fix: "check Config::worlds_path, or leave it unset to use the embedded dataset",
                source,
            },
        )?)?),
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
            let store = engine::crowd::ClickHouseCrowdStore::from_config(ch)?;
            store.ensure_table().await?;
            Arc::new(store)
        }
        None => Arc::new(engine::crowd::MemoryCrowdStore::default()),
    };
    let crowd = Arc::new(engine::crowd::Crowdsourced::new(
        crowd_store,
        Default::default(),
    ));
    let rdns: Arc<dyn Engine> = Arc::new(engine::rdns::ReverseDns::new(
        engine::rdns::Rules::embedded()?,
        Arc::new(engine::rdns::HickoryPtr::from_system()?),
    ));
    let mut engines = Engines::new(rtts, rdns, crowd, config.engine_timeout);
    if let Some(ch) = &config.clickhouse {
        let calibration = engine::calibration_store::ClickHouseCalibration::new(
            &ch.url,
            &ch.database,
            config.probe_locations.clone(),
            config.rtt_max_age,
            config.calibration_refresh,
        )?
        .with_metrics(engines.calibration_metrics().clone());
        tracing::info!(
            refresh_s = config.calibration_refresh.as_secs(),
            max_age_s = config.rtt_max_age.as_secs(),
            "CBG calibrated from the anchoring mesh's pings in ClickHouse (fitted on first use; the count of calibrated probes is logged then)"
        );
        engines = engines.with_calibration(Arc::new(calibration));
    }
    if !config.rir_files.is_empty() {
        let data = data::DataFiles::open("rir", config.rir_files.clone(), rir::Delegations::load)?;
        tracing::info!(
            ranges = data.get().len(),
            files = config.rir_files.len(),
            "RIR files loaded"
        );
        engines = engines.with_rir(Arc::new(data));
    }
    let sources = config.geofeed_sources();
    if !sources.is_empty() {
        let for_load = (sources.clone(), world.clone());
        let data = data::DataFiles::open("geofeed", sources.watched(), move |_| {
            let mut feeds = geofeed::Geofeeds::load(&for_load.0)?;
            feeds.resolve(&for_load.1);
            Ok(feeds)
        })?;
        let report = data.get().report().clone();
        tracing::info!(
            entries = report.ok,
            malformed = report.malformed,
            outside_referencing_prefix = report.outside_referencing_prefix,
            no_city = report.no_city,
            references = report.references,
            missing_mirror_files = report.missing_files.len(),
            "geofeeds loaded"
        );
        let rtts = engines.rtts();
        engines = engines.with_geofeed(Arc::new(data), Some(rtts));
    }
    if let Some(url) = &config.nats_url {
        let servers = vantage_platform::bus::parse_nats_urls(url).map_err(Error::NatsUrl)?;
        let client = async_nats::connect(servers)
            .await
            .map_err(|source| Error::Nats {
                url: url.clone(),
                source,
            })?;
        engines = engines.with_nats(client);
    }
    Ok((world, engines))
}

/// Build the engines a configuration names (its static `engines` list).
pub async fn build_locator(
    config: &Config,
) -> Result<(Locator, Option<Arc<engine::crowd::Crowdsourced>>), Error> {
    let (world, engines) = build_engines(config).await?;
    let configs = config.static_engines();
    let built = engines.build_all(&configs)?;
    let crowd_used = configs
        .iter()
        .any(|c| c.name == "crowdsourced" && !c.is_external());
    let locator = Locator::new(world, built, config.engine_timeout);
    Ok((locator, crowd_used.then_some(engines.crowd())))
}

/// Largest request body (crowdsourced reports, a few hundred bytes); a declared length
/// over it gets 413 before the body is read.
pub const MAX_BODY_BYTES: u64 = 64 << 10;

/// Serve the geolocation API on `config.listen` and `/metrics` + `/healthz` on
/// `config.metrics_addr`, until the process stops.
pub async fn serve(config: Config) -> Result<(), Error> {
    let mut registry = prometheus_client::registry::Registry::with_prefix("vantage_engines");
    let http_metrics = vantage_platform::http::HttpMetrics::default();
    http_metrics.register(&mut registry);
    let health = vantage_platform::obs::Health::default();
    let (world, mut engines) = build_engines(&config).await?;
    engines.external_metrics().register(&mut registry);
    engines.geofeed_metrics().register(&mut registry);
    engines.calibration_metrics().register(&mut registry);
    let kube_client = match &config.kube_namespace {
        Some(_) => Some(kube::Client::try_default().await.map_err(|source| Error::Kube {
            what: "cannot reach the Kubernetes API (check KUBECONFIG or the service account, or run with --no-kube: all built-in engines)".into(),
            source,
        })?),
        None => None,
    };
    // The ASN table: probe choice (active single-radius) and the unrouted-address check.
    let asn_table = match &config.asn_table {
        Some(path) => {
            let table = Arc::new(data::DataFiles::open(
                "asn-table",
                vec![path.clone()],
                |paths: &[PathBuf]| asn::PrefixTable::load(&paths[0]),
            )?);
            tracing::info!(routes = table.get().len(), path = %path.display(), "ASN table loaded");
            Some((table, path.display().to_string()))
        }
        None => None,
    };
    let reloadable = data::Reloadable {
        rir: engines.rir_data(),
        asn: asn_table.as_ref().map(|(t, _)| t.clone()),
        geofeed: engines.geofeed_data(),
    };
    if let (Some(client), Some(namespace)) = (&kube_client, &config.kube_namespace) {
        // Probe locations for stored RTTs, and the directory active single-radius chooses from.
        let directory = engine::active::ProbeDirectory::default();
        tokio::spawn(resources::follow_probes(
            client.clone(),
            directory.clone(),
            config.probe_locations.clone(),
        ));
        if let (Some(ch), true) = (&config.clickhouse, config.active_measurement) {
            let results = Arc::new(engine::active::ClickHouseMeasurementResults::new(
                &ch.url,
                &ch.database,
            )?);
            let measurer = engine::active::KubeMeasurer::new(client.clone(), namespace, results);
            // Every round may wait for its results, plus the time to create and schedule.
            let measuring_for = (measurer.wait + Duration::from_secs(30))
                * u32::try_from(config.active.rounds.max(1)).unwrap_or(u32::MAX);
            let measurer = Arc::new(measurer);
            let crowd: Arc<dyn Engine> = engines.crowd();
            let hints = [Some(engines.rdns()), Some(crowd), engines.rir()];
            let mut active =
                engine::active::ActiveRtts::new(engines.rtts(), directory, measurer, world.clone())
                    .with_hint_engines(hints.into_iter().flatten().collect());
            active.rounds = config.active.rounds;
            active.probes_per_request = config.active.probes;
            active.enough_rtt_ms = config.active.enough_rtt_ms;
            active.timeout = measuring_for;
            if let Some((table, _)) = &asn_table {
                active = active.with_asn_lookup(table.clone());
            }
            if let Some(calibration) = engines.calibration() {
                active = active.with_calibration(calibration);
            }
            engines = engines.with_measured_rtts(Arc::new(active));
        }
    }
    // With Kubernetes the set comes from GeolocationEngine resources (empty until listed);
    // without, it is `config.engines`.
    let initial = match &config.kube_namespace {
        Some(_) => Vec::new(),
        None => engines.build_all(&config.static_engines())?,
    };
    let mut locator = Locator::new(world, initial, config.engine_timeout);
    if let Some((table, source)) = asn_table {
        locator = locator.with_routes(reducer::RouteTable::new(table, source));
    }
    tracing::info!(
        cities = locator.world.len(),
        airports = locator.world.airport_count(),
        version = locator.world.version(),
        engines = ?locator.engine_names(),
        "world loaded"
    );
    let mut api = Api::new(
        locator,
        Some(engines.crowd()),
        config.cache_max_age,
        config.max_batch,
        &mut registry,
    );
    // Answers computed with data files since reloaded are not served (the cache key).
    let versions = reloadable.clone();
    api = api.with_data_version(Arc::new(move || versions.version()));
    if let Some(ch) = &config.clickhouse {
        let store = cache::ClickHouseAnswers::from_config(ch)?;
        store.ensure_table().await?;
        api = api.with_answer_store(Arc::new(store));
    }
    let api = Arc::new(api);
    if config.clickhouse.is_some() {
        // Replicas share the answer store: a report another replica accepted drops the
        // answers this one holds in memory within a second.
        api.spawn_forget_sync(locate::FORGET_SYNC_EVERY);
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    let metrics_addr = config.metrics_addr;
    match (config.kube_namespace.clone(), kube_client) {
        (Some(namespace), Some(client)) => {
            let metrics = resources::Metrics::default();
            metrics.register(&mut registry);
            let (engines, api, ready) = (Arc::new(engines), api.clone(), health.clone());
            tokio::spawn(async move {
                let result = resources::follow(client, &namespace, engines, api, metrics, || {
                    ready.set_ready(true)
                })
                .await;
                if let Err(e) = result {
                    tracing::error!(error = %e, "GeolocationEngine follower stopped");
                }
            });
        }
        _ => health.set_ready(true),
    }
    let reloads = data::ReloadMetrics::default();
    reloads.register(&mut registry);
    tokio::spawn(reloadable.watch(data::CHECK_EVERY, reloads));
    let obs_health = health.clone();
    tokio::spawn(async move {
        if let Err(e) = vantage_platform::obs::serve(metrics_addr, registry, obs_health).await {
            tracing::error!(error = %e, %metrics_addr, "metrics endpoint stopped");
        }
    });
    tracing::info!(addr = %config.listen, limits = ?config.http, "serving the geolocation API");
    let declared = vantage_platform::http::DeclaredLimit {
        max_bytes: MAX_BODY_BYTES,
        too_large: api::too_large,
    };
    let app = router(api).layer(axum::middleware::from_fn_with_state(
        declared,
        vantage_platform::http::refuse_declared_over,
    ));
    vantage_platform::http::serve(
        listener,
        app,
        config.http,
        vantage_platform::http::PlainTcp,
        http_metrics,
    )
    .await
    .map_err(Error::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_underlying_error_as_source() {
        use std::error::Error as _;
        let Err(gunzip) = World::from_gzip(b"not gzip") else {
            panic!("not gzip parsed as a world");
        };
        assert!(matches!(gunzip, Error::Gunzip { .. }), "{gunzip:?}");
        let source = gunzip.source().expect("io error as source");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        assert!(gunzip.to_string().contains("build_worlds.py"), "{gunzip}");

        let missing = asn::PrefixTable::load(std::path::Path::new("/nonexistent/asn.tsv"))
            .expect_err("missing file");
        let io = missing
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("io error as source");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert!(
            missing.to_string().contains("/nonexistent/asn.tsv"),
            "{missing}"
        );

        // A shared error shows and chains as the one it wraps.
        let text = missing.to_string();
        let shared = Error::Shared(Arc::new(missing));
        assert_eq!(shared.to_string(), text);
        assert!(shared
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some());
    }

    #[test]
    fn without_rir_files_the_static_set_has_no_rir_engine() {
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let mut cfg = Config::new(addr, addr);
        let names = |c: &Config| -> Vec<String> {
            c.static_engines().into_iter().map(|e| e.name).collect()
        };
        assert!(!names(&cfg).contains(&"rir".to_owned()));
        assert!(!names(&cfg).contains(&"geofeed".to_owned()));
        assert_eq!(names(&cfg).len(), reducer::BUILTINS.len() - 1);
        cfg.rir_files = vec![PathBuf::from("delegated-ripencc-extended-latest")];
        assert_eq!(names(&cfg), reducer::BUILTINS.to_vec());
        cfg.geofeed_files = vec![PathBuf::from("geofeed.csv")];
        assert!(names(&cfg).contains(&"geofeed".to_owned()));
        cfg.geofeed_files.clear();
        cfg.geofeed_refs = vec![PathBuf::from("ripe.db.inetnum.gz")];
        assert!(names(&cfg).contains(&"geofeed".to_owned()));
    }
}
