//! The collector: a durable JetStream pull consumer on `RESULTS` that writes results to
//! ClickHouse in batches.
//!
//! A batch closes at `max_batch` results or after `max_wait`, whichever comes first. A
//! message is acked only after the INSERT holding its row succeeded; while ClickHouse
//! fails, the batch is retried with backoff and nothing new is fetched (backpressure: at
//! most one batch is in memory). A message that is not a result is acked and counted,
//! since no retry can make it readable. Each batch also fills the per-type tables
//! ([`typed`]).
//!
//! The crate also holds the OONI-style half of the pipeline ([`intake`]): the submission
//! API for software probes, the disk queue, the fastpath, the S3 archive and
//! [`reprocess`]. See docs/FASTPATH.md.

pub mod archive;
pub mod fastpath;
pub mod fingerprints;
pub mod intake;
pub mod queue;
pub mod recency;
pub mod reprocess;
pub mod source;
pub mod testlists;
pub mod typed;
pub mod uid;

pub use intake::{serve_intake, start_intake, IntakeConfig, Limits};
pub use reprocess::{reprocess, ReprocessConfig};

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::AckKind;
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use vantage_core::nats as names;
use vantage_platform::store::unix_now;
use vantage_platform::store::{ResultRow, Store, StoreError};

use crate::typed::TypedRows;

/// Where rows go. The ClickHouse implementation is [`vantage_platform::store::Store`].
pub trait Sink: Send + Sync {
    fn insert(
        &self,
        rows: &[ResultRow],
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send;

    /// The per-type rows of the same results (after `insert` succeeded).
    fn insert_typed(
        &self,
        _rows: &TypedRows,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }
}

impl Sink for Store {
    async fn insert(&self, rows: &[ResultRow]) -> Result<(), StoreError> {
        self.insert_results(rows).await
    }

    async fn insert_typed(&self, rows: &TypedRows) -> Result<(), StoreError> {
        rows.insert(self).await
    }
}

/// The per-type rows of results (their raw JSON read once more).
pub fn typed_rows(rows: &[ResultRow]) -> TypedRows {
    let mut typed = TypedRows::default();
    for row in rows {
        typed.push_row(row);
    }
    typed
}

#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    #[error("cannot open the {stream} stream's consumer {durable}: {source}; has the operator (or `vantage collector`) declared the stream?")]
    Consumer {
        stream: String,
        durable: String,
        /// Reading the stream or creating the consumer failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot fetch from JetStream: {source}")]
    Fetch {
        #[source]
        source: async_nats::jetstream::consumer::pull::BatchError,
    },
    #[error("cannot fetch from JetStream: fetcher stopped: {source}")]
    Fetcher {
        #[source]
        source: tokio::task::JoinError,
    },
}

#[derive(Clone, Default)]
pub struct Metrics {
    pub stored: Counter,
    pub batches: Counter,
    pub malformed: Counter,
    pub insert_failures: Counter,
    /// Pulls that ended in an error (no stream or consumer leader during a NATS node's
    /// failover, a lost connection); the fetcher backs off after each.
    pub fetch_errors: Counter,
    pub last_batch_rows: Gauge,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "stored",
            "Results stored in ClickHouse",
            self.stored.clone(),
        );
        registry.register("batches", "INSERT batches", self.batches.clone());
        registry.register(
            "malformed",
            "Messages that were not results (acked, dropped)",
            self.malformed.clone(),
        );
        registry.register(
            "insert_failures",
            "Failed INSERTs (retried)",
            self.insert_failures.clone(),
        );
        registry.register(
            "fetch_errors",
            "Pulls from the RESULTS consumer that failed (retried with backoff)",
            self.fetch_errors.clone(),
        );
        registry.register(
            "last_batch_rows",
            "Rows in the last batch",
            self.last_batch_rows.clone(),
        );
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub max_batch: usize,
    pub max_wait: Duration,
    /// How long JetStream waits for an ack before it redelivers (after a collector
    /// died). While an INSERT is retried, the batch's messages are kept in progress.
    pub ack_wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_batch: 5_000,
            max_wait: Duration::from_millis(500),
            ack_wait: Duration::from_secs(30),
        }
    }
}

/// Turn message payloads into rows; payloads that are not results come back as `None`.
pub fn rows_of<'a>(
    payloads: impl Iterator<Item = &'a [u8]>,
    inserted_at: u32,
) -> Vec<Option<ResultRow>> {
    payloads
        .map(|p| ResultRow::from_payload(p, inserted_at))
        .collect()
}

/// Consume forever.
pub async fn run<S: Sink>(
    js: async_nats::jetstream::Context,
    sink: S,
    cfg: Config,
    metrics: Metrics,
) -> Result<(), CollectorError> {
    let consumer_err =
        |source: Box<dyn std::error::Error + Send + Sync>| CollectorError::Consumer {
            stream: names::RESULTS_STREAM.into(),
            durable: names::COLLECTOR_DURABLE.into(),
            source,
        };
    let stream = js
        .get_stream(names::RESULTS_STREAM)
        .await
        .map_err(|e| consumer_err(Box::new(e)))?;
    // Create or update: the operator declares the consumer; the collector's own batch
    // size and ack wait apply to it.
    let consumer: async_nats::jetstream::consumer::Consumer<pull::Config> = stream
        .create_consumer(pull::Config {
            durable_name: Some(names::COLLECTOR_DURABLE.into()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: cfg.ack_wait,
            max_ack_pending: i64::try_from(cfg.max_batch * 4).unwrap_or(i64::MAX),
            ..Default::default()
        })
        .await
        .map_err(|e| consumer_err(Box::new(e)))?;
    tracing::info!(ack_wait = ?cfg.ack_wait, max_batch = cfg.max_batch, max_wait = ?cfg.max_wait, "collector consuming");
    // Two stages: the fetcher pulls and parses the next batch while the writer INSERTs
    // the current one. The channel holds one batch, so at most three are in memory.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(1);
    let fetch_metrics = metrics.clone();
    let fetcher = tokio::spawn(async move {
        let mut backoff = FETCH_BACKOFF_MIN;
        loop {
            let (batch, failed) = fetch(&consumer, &cfg, &fetch_metrics).await?;
            if failed && batch.messages.is_empty() {
                // A pull that fails at once (no consumer leader while a NATS node dies)
                // would otherwise spin: wait, longer each time, until one succeeds.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(FETCH_BACKOFF_MAX);
                continue;
            }
            backoff = FETCH_BACKOFF_MIN;
            if batch.messages.is_empty() {
                continue;
            }
            if tx.send(batch).await.is_err() {
                return Ok(());
            }
        }
    });
    while let Some(batch) = rx.recv().await {
        write(&sink, batch, &cfg, &metrics).await;
    }
    match fetcher.await {
        Ok(r) => r,
        Err(source) => Err(CollectorError::Fetcher { source }),
    }
}

/// Fetched messages, the rows of those that are results, and their per-type rows.
struct Batch {
    messages: Vec<async_nats::jetstream::Message>,
    rows: Vec<ResultRow>,
    typed: TypedRows,
}

/// The fetcher's wait after a failed pull, doubled per failure in a row up to the max.
const FETCH_BACKOFF_MIN: Duration = Duration::from_millis(50);
const FETCH_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Pull up to `max_batch` messages (waiting at most `max_wait`) and parse them; and
/// whether the pull ended in an error.
async fn fetch(
    consumer: &async_nats::jetstream::consumer::Consumer<pull::Config>,
    cfg: &Config,
    metrics: &Metrics,
) -> Result<(Batch, bool), CollectorError> {
    let mut batch = consumer
        .batch()
        .max_messages(cfg.max_batch)
        .expires(cfg.max_wait)
        .messages()
        .await
        .map_err(|source| CollectorError::Fetch { source })?;
    let mut messages = Vec::with_capacity(cfg.max_batch);
    let mut failed = false;
    while let Some(next) = batch.next().await {
        match next {
            Ok(m) => messages.push(m),
            Err(e) => {
                metrics.fetch_errors.inc();
                tracing::warn!(error = %e, "fetch error");
                failed = true;
                break;
            }
        }
    }
    let rows: Vec<ResultRow> = rows_of(messages.iter().map(|m| m.payload.as_ref()), unix_now())
        .into_iter()
        .flatten()
        .collect();
    let malformed = messages.len() - rows.len();
    if malformed > 0 {
        metrics.malformed.inc_by(malformed as u64);
        tracing::warn!(malformed, "dropped messages that are not results");
    }
    let typed = typed_rows(&rows);
    Ok((
        Batch {
            messages,
            rows,
            typed,
        },
        failed,
    ))
}

/// INSERT a batch until it succeeds, then ack its messages.
async fn write<S: Sink>(sink: &S, batch: Batch, cfg: &Config, metrics: &Metrics) {
    let Batch {
        messages,
        rows,
        typed,
    } = batch;
    let mut delay = Duration::from_millis(200);
    // Both INSERTs or a retry of both: a row stored twice collapses (ReplacingMergeTree).
    while let Err(e) = async {
        sink.insert(&rows).await?;
        sink.insert_typed(&typed).await
    }
    .await
    {
        metrics.insert_failures.inc();
        tracing::warn!(error = %e, rows = rows.len(), retry_in = ?delay, "INSERT failed; nothing acked, retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2)
            .min(Duration::from_secs(10))
            .min(cfg.ack_wait / 2);
        // Still working on them: no redelivery while this collector lives.
        for m in &messages {
            if let Err(e) = m.ack_with(AckKind::Progress).await {
                tracing::debug!(error = %e, "progress ack failed");
            }
        }
    }
    for m in &messages {
        if let Err(e) = m.ack().await {
            tracing::warn!(error = %e, "ack failed; the message will be redelivered and deduplicated");
        }
    }
    metrics.stored.inc_by(rows.len() as u64);
    metrics.batches.inc();
    metrics
        .last_batch_rows
        .set(i64::try_from(rows.len()).unwrap_or(i64::MAX));
    tracing::debug!(rows = rows.len(), "batch stored");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_become_rows_and_junk_is_flagged() {
        let ping = br#"{"result_id":"r1","fw":5020,"lts":-1,"msm_id":1000001,"prb_id":7,"timestamp":1700000000,"type":"ping","af":4,
            "from":"127.0.0.1","src_addr":"127.0.0.1","dst_addr":"127.0.0.1","dst_name":"localhost","proto":"ICMP","size":48,"step":60,
            "ttl":64,"sent":3,"rcvd":2,"dup":0,"min":0.05,"avg":0.06,"max":0.07,"result":[{"rtt":0.05},{"rtt":0.07},{"x":"*"}]}"#;
        let rows = rows_of([&ping[..], b"garbage"].into_iter(), 42);
        let row = rows[0].as_ref().expect("row");
        assert_eq!(
            (row.msm_id, row.prb_id, row.sent, row.rcvd),
            (1_000_001, 7, 3, 2)
        );
        assert_eq!((row.rtt_min, row.rtt_avg, row.rtt_max), (0.05, 0.06, 0.07));
        assert_eq!(row.timestamp, 1_700_000_000);
        assert_eq!(row.inserted_at, 42);
        assert!(row.raw.contains("\"result_id\":\"r1\""));
        assert!(rows[1].is_none());
    }
}

/// Run the collector process: bind to the layout, migrate, serve metrics, consume.
pub async fn serve(
    nats_url: &str,
    store: Store,
    cfg: Config,
    metrics_addr: std::net::SocketAddr,
) -> Result<(), ServeError> {
    // The operator declares the stream and this consumer; the collector binds to them.
    let bus = vantage_platform::bus::Bus::attach(nats_url, "vantage-collector").await?;
    let version = store.migrate().await?;
    tracing::info!(version, "ClickHouse schema is current");
    let mut registry = Registry::with_prefix("vantage_collector");
    let metrics = Metrics::default();
    metrics.register(&mut registry);
    let health = vantage_platform::obs::Health::default();
    let h = health.clone();
    tokio::spawn(async move {
        if let Err(e) = vantage_platform::obs::serve(metrics_addr, registry, h).await {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
    health.set_ready(true);
    run(bus.js, store, cfg, metrics).await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Bus(#[from] vantage_platform::bus::BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Collector(#[from] CollectorError),
}
