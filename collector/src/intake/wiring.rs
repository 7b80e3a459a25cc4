//! Wiring: starts the intake process (migrations, disk queue, fastpath worker, archive
//! uploader, fingerprint reloader, test lists and check-in recency, metrics endpoint,
//! submission API on `vantage_platform::http::serve` with its connection limits) and
//! holds the handles of the running intake.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use serde_json::Value;
use tokio::sync::{mpsc, Mutex};
use vantage_platform::http::{DeclaredLimit, HttpLimits, HttpMetrics, PlainTcp};
use vantage_platform::store::{Store, StoreError};

use super::http::{router, Inner, Limits, Order};
use super::metrics::IntakeMetrics;
use super::worker::{fastpath_worker, Queued};
use crate::archive::{open_s3, Archive, ArchiveError, S3Config, UploadSummary};
use crate::fingerprints::Fingerprints;
use crate::queue::Queue;
use crate::source::{follow, Dataset, Follow, Snapshot, SourceMetrics, SourceSpec, Watched};
use crate::testlists::TestLists;

/// Everything the intake needs.
#[derive(Clone, Debug)]
pub struct IntakeConfig {
    /// Where the submission API listens (`127.0.0.1:0` picks a port).
    pub listen: SocketAddr,
    /// Where `/metrics` and `/healthz` listen; `None` serves none.
    pub metrics_addr: Option<SocketAddr>,
    pub queue_dir: PathBuf,
    /// Where the fingerprints come from (`--fingerprints-url`): a directory holding
    /// OONI's two CSVs, a git repository or an HTTPS URL.
    pub fingerprints: SourceSpec,
    /// How often the fingerprint source is read again.
    pub fingerprints_reload: Duration,
    pub clickhouse_url: String,
    pub clickhouse_db: String,
    /// `--clickhouse-cluster`: the schema is on this ClickHouse cluster (`None`: one node).
    pub clickhouse_cluster: Option<String>,
    pub s3: S3Config,
    /// How often the uploader archives the queue (OONI: hourly).
    pub upload_interval: Duration,
    /// How long an open report (from `POST /report` or a check-in) is kept; checked hourly.
    pub report_ttl: Duration,
    pub limits: Limits,
    /// Fastpath rows per INSERT at most, and how long a batch waits to fill.
    pub fastpath_batch: usize,
    pub fastpath_wait: Duration,
    /// Connection limits of the submission API (`--http-*`).
    pub http: HttpLimits,
    /// Citizen Lab test lists for the check-in API (`--test-lists`); `None`: no URLs.
    pub test_lists: Option<crate::source::SourceSpec>,
    /// How often the test lists are read again.
    pub test_lists_reload: Duration,
    /// web_connectivity test helpers (oohelperd) the check-in advertises (`--test-helper`).
    pub test_helpers: Vec<String>,
}

impl IntakeConfig {
    /// Defaults for everything but the addresses, paths and backends.
    pub fn new(
        queue_dir: PathBuf,
        fingerprints: impl Into<SourceSpec>,
        clickhouse_url: &str,
        clickhouse_db: &str,
        s3: S3Config,
    ) -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            metrics_addr: None,
            queue_dir,
            fingerprints: fingerprints.into(),
            fingerprints_reload: Duration::from_secs(300),
            clickhouse_url: clickhouse_url.to_owned(),
            clickhouse_db: clickhouse_db.to_owned(),
            clickhouse_cluster: None,
            s3,
            upload_interval: Duration::from_secs(3600),
            report_ttl: Duration::from_secs(48 * 3600),
            limits: Limits::default(),
            fastpath_batch: 1_000,
            fastpath_wait: Duration::from_millis(200),
            http: HttpLimits::default(),
            test_lists: None,
            test_lists_reload: Duration::from_secs(300),
            test_helpers: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("disk queue {path}: {source}")]
    Queue {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("{kind} from {spec}: {reason}; fix the path (--fingerprints-url, --test-lists-url) or the files")]
    Source {
        kind: &'static str,
        spec: String,
        reason: String,
    },
    #[error("the submission API stopped: server returned")]
    Returned,
    #[error("the submission API stopped: {source}")]
    Serve {
        #[source]
        source: std::io::Error,
    },
    #[error("the submission API stopped: {source}")]
    Task {
        #[source]
        source: tokio::task::JoinError,
    },
}

/// A running intake (for tests and embedding): its address and handles.
pub struct Intake {
    pub addr: SocketAddr,
    pub metrics: IntakeMetrics,
    pub queue: Queue,
    pub archive: Archive,
    pub fingerprints: Watched<Fingerprints>,
    upload_lock: Arc<Mutex<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Intake {
    /// Run one upload round now (it does not overlap the periodic one).
    pub async fn upload_now(&self) -> Result<UploadSummary, ArchiveError> {
        upload_round(&self.upload_lock, &self.archive, &self.queue, &self.metrics).await
    }

    /// Wait until the server stops (it does not on its own).
    pub async fn wait(mut self) -> Result<(), IntakeError> {
        let r = (&mut self.server).await;
        self.stop();
        match r {
            Ok(Ok(())) => Err(IntakeError::Returned),
            Ok(Err(source)) => Err(IntakeError::Serve { source }),
            Err(source) => Err(IntakeError::Task { source }),
        }
    }

    /// Stop every task.
    pub fn stop(&self) {
        self.server.abort();
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn upload_round(
    lock: &Mutex<()>,
    archive: &Archive,
    queue: &Queue,
    metrics: &IntakeMetrics,
) -> Result<UploadSummary, ArchiveError> {
    let _guard = lock.lock().await;
    match archive.upload_once(queue).await {
        Ok(s) => {
            metrics.archived_objects.inc_by(s.objects as u64);
            metrics.archived_measurements.inc_by(s.measurements as u64);
            Ok(s)
        }
        Err(e) => {
            metrics.upload_failures.inc();
            Err(e)
        }
    }
}

/// Start the intake: migrate, open the queue, start the fastpath, uploader, fingerprint
/// reloader and metrics, and serve the API. Measurements still queued from an earlier
/// run are scored again first (the fastpath table replaces rows by key).
pub async fn start_intake(cfg: IntakeConfig) -> Result<Intake, IntakeError> {
    let store = Store::new(&cfg.clickhouse_url, &cfg.clickhouse_db)?
        .with_cluster(cfg.clickhouse_cluster.as_deref())?;
    let version = store.migrate().await?;
    tracing::info!(version, "ClickHouse schema is current");
    let queue = Queue::open(&cfg.queue_dir)
        .await
        .map_err(|source| IntakeError::Queue {
            path: cfg.queue_dir.clone(),
            source,
        })?;
    let health = vantage_platform::obs::Health::default();
    let source_metrics = SourceMetrics::default();
    let sources_cache = cfg.queue_dir.join("sources");
    check_local::<Fingerprints>(&cfg.fingerprints)?;
    let (fingerprints, task) = follow(
        Follow {
            spec: cfg.fingerprints.clone(),
            every: cfg.fingerprints_reload,
            cache_dir: sources_cache.clone(),
        },
        Fingerprints::built_in,
        source_metrics.clone(),
        health.clone(),
    )
    .await;
    let mut tasks = vec![task];
    let s3 = open_s3(&cfg.s3)?;
    let archive = Archive {
        s3,
        bucket: cfg.s3.bucket.clone(),
        store: store.clone(),
    };
    let metrics = IntakeMetrics::default();

    // When each URL was last measured per country: seeded from fastpath, fed by the worker.
    let recency = crate::recency::Recency::default();
    match recency.seed(&store).await {
        Ok(n) => tracing::info!(pairs = n, "check-in recency seeded from fastpath"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot seed the check-in recency from fastpath; URLs measured before this start count as never measured")
        }
    }
    let (tx, rx) = mpsc::channel::<Queued>(cfg.fastpath_batch.max(1) * 4);
    tasks.push(tokio::spawn(fastpath_worker(
        rx,
        fingerprints.clone(),
        store.clone(),
        cfg.fastpath_batch.max(1),
        cfg.fastpath_wait,
        metrics.clone(),
        recency.clone(),
    )));
    // Replay what an earlier run queued but did not archive, in uid order.
    let leftover = queue.list().await.map_err(|source| IntakeError::Queue {
        path: cfg.queue_dir.clone(),
        source,
    })?;
    if !leftover.is_empty() {
        tracing::info!(
            measurements = leftover.len(),
            "scoring measurements left in the queue"
        );
    }
    let mut order = Order::default();
    for uid in leftover {
        let item = match queue.get(&uid).await {
            Ok(Some(line)) => serde_json::from_slice::<Value>(&line).ok(),
            _ => None,
        };
        let _ = tx.send((order.next_seq, item)).await;
        order.next_seq += 1;
    }
    let order = std::sync::Mutex::new(order);

    // Open reports are files; a check-in or `POST /report` flood must not fill the disk.
    {
        let (queue, metrics, ttl) = (queue.clone(), metrics.clone(), cfg.report_ttl);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600).min(ttl));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match queue.expire_reports(ttl).await {
                    Ok(0) => {}
                    Ok(n) => {
                        metrics.reports_expired.inc_by(n as u64);
                        tracing::info!(reports = n, "expired open reports");
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot expire open reports"),
                }
            }
        }));
    }

    let upload_lock = Arc::new(Mutex::new(()));
    {
        let (lock, archive, queue, metrics) = (
            upload_lock.clone(),
            archive.clone(),
            queue.clone(),
            metrics.clone(),
        );
        let every = cfg.upload_interval;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = upload_round(&lock, &archive, &queue, &metrics).await {
                    tracing::warn!(error = %e, "upload failed; the files stay queued for the next round");
                }
            }
        }));
    }

    let http_metrics = HttpMetrics::default();
    let checkin = super::checkin::CheckInState {
        lists: match &cfg.test_lists {
            None => Watched::new(TestLists::default()),
            Some(spec) => {
                check_local::<TestLists>(spec)?;
                let (lists, task) = follow(
                    Follow {
                        spec: spec.clone(),
                        every: cfg.test_lists_reload,
                        cache_dir: sources_cache.clone(),
                    },
                    TestLists::default,
                    source_metrics.clone(),
                    health.clone(),
                )
                .await;
                tasks.push(task);
                lists
            }
        },
        recency,
        test_helpers: cfg.test_helpers.clone(),
        metrics: super::checkin::CheckInMetrics::default(),
    };
    if let Some(addr) = cfg.metrics_addr {
        let mut registry = Registry::with_prefix("vantage_intake");
        metrics.register(&mut registry);
        checkin.metrics.register(&mut registry);
        source_metrics.register(&mut registry);
        http_metrics.register(&mut registry);
        let h = health.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = vantage_platform::obs::serve(addr, registry, h).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        }));
    }

    let inner = Inner {
        queue: queue.clone(),
        limits: cfg.limits,
        order,
        fastpath: tx,
        archive: archive.clone(),
        metrics: metrics.clone(),
        checkin,
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| IntakeError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| IntakeError::Listen {
            addr: cfg.listen,
            source,
        })?;
    // A declared length over the limit gets 413 before the body is read.
    let declared = DeclaredLimit {
        max_bytes: u64::try_from(cfg.limits.max_body).unwrap_or(u64::MAX),
        too_large: declared_too_large,
    };
    let app = router(inner).layer(axum::middleware::from_fn_with_state(
        declared,
        vantage_platform::http::refuse_declared_over,
    ));
    let http = cfg.http;
    let server = tokio::spawn(async move {
        vantage_platform::http::serve(listener, app, http, PlainTcp, http_metrics).await
    });
    health.set_ready(true);
    tracing::info!(%addr, queue = %cfg.queue_dir.display(), bucket = %cfg.s3.bucket, "intake serving");
    Ok(Intake {
        addr,
        metrics,
        queue,
        archive,
        fingerprints,
        upload_lock,
        tasks,
        server,
    })
}

/// A local source must be usable at start (a typo in a path should not start an intake
/// on the built-in set); remote sources fall back to their cached copy or the built-in
/// set instead (`source::follow`).
fn check_local<T: Dataset>(spec: &SourceSpec) -> Result<(), IntakeError> {
    let SourceSpec::Path(path) = spec else {
        return Ok(());
    };
    let err = |reason: String| IntakeError::Source {
        kind: T::KIND,
        spec: spec.to_string(),
        reason,
    };
    let snapshot = Snapshot::read_path(path).map_err(|e| err(e.to_string()))?;
    T::from_snapshot(&snapshot).map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// The intake's `413` for a declared body length over `--max-body`, in its own (OONI)
/// error shape, `{"error": reason}`.
fn declared_too_large(declared: u64, max: u64) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        axum::Json(serde_json::json!({
            "error": format!("body exceeds {max} bytes ({declared} declared)")
        })),
    )
        .into_response()
}

/// Run the intake until it fails: submission API, disk queue, fastpath, uploader, and
/// `/metrics` + `/healthz`.
pub async fn serve_intake(cfg: IntakeConfig) -> Result<(), IntakeError> {
    start_intake(cfg).await?.wait().await
}
