//! Sustained ingest, JetStream to ClickHouse, next to the raw limit, in one run.
//!
//!   cargo run --release -p vantage-collector --example bench_ingest -- [results]
//!
//! Private NATS and ClickHouse servers (vantage-testkit) so that nothing else shares
//! them. With `results` RIPE Atlas ping results (about 500 bytes each):
//! 1. publish: the load generator alone, publishing as controllers do (JetStream
//!    publish with a `Nats-Msg-Id`, acks awaited, 512 in flight);
//! 2. draining that backlog: the raw limit (a bare JetStream pull consume plus an
//!    INSERT of rows built beforehand: no parsing, no processing; acked and pipelined
//!    like the collector) next to `vantage_collector::run`, which also parses each
//!    result and writes its typed row (`ping_results`);
//! 3. sustained: the load generator publishing new results while each consumer runs,
//!    until every row is queryable; with the collector's ingest lag per result (publish
//!    to INSERT done), p50 and p99.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::jetstream::consumer::{pull, AckPolicy};
use futures::StreamExt;
use vantage_collector::typed::TypedRows;
use vantage_collector::{Config, Metrics, Sink};
use vantage_core::nats as names;
use vantage_platform::bus::{Bus, Retention};
use vantage_platform::store::{ResultRow, Store, StoreError};
use vantage_testkit::{ClickHouseServer, NatsServer};

const IN_FLIGHT: usize = 512;

fn payload(i: usize, tag: &str) -> Vec<u8> {
    let rtt = 10.0 + (i % 97) as f64 * 0.37;
    serde_json::json!({
        "fw": 5020, "lts": 12, "mver": "2.6.2", "result_id": format!("{tag}-{i}"),
        "msm_id": 1_000_000 + (i % 1000) as u64, "prb_id": 10_000 + (i % 10_000) as u64,
        "timestamp": 1_795_000_000 + (i / 1000) as u64, "type": "ping", "af": 4,
        "from": "192.0.2.17", "src_addr": "192.168.1.17", "dst_addr": "193.0.14.129",
        "dst_name": "k.root-servers.net", "proto": "ICMP", "ttl": 56, "size": 48, "step": 240,
        "sent": 3, "rcvd": 3, "dup": 0, "min": rtt, "avg": rtt + 0.2, "max": rtt + 0.4,
        "result": [{"rtt": rtt}, {"rtt": rtt + 0.2}, {"rtt": rtt + 0.4}],
    })
    .to_string()
    .into_bytes()
}

/// Publish `payloads`, `IN_FLIGHT` acks outstanding; stamps each publish in `sent`.
async fn publish(
    js: &async_nats::jetstream::Context,
    payloads: &[Vec<u8>],
    tag: &str,
    sent: Option<&Mutex<Vec<Option<Instant>>>>,
) -> Result<Duration> {
    let start = Instant::now();
    let mut acks = futures::stream::FuturesUnordered::new();
    for (i, p) in payloads.iter().enumerate() {
        if acks.len() >= IN_FLIGHT {
            if let Some(r) = acks.next().await {
                r?;
            }
        }
        let mut headers = async_nats::HeaderMap::new();
        let id = format!("{tag}-{i}");
        headers.insert("Nats-Msg-Id", id.as_str());
        if let Some(sent) = sent {
            if let Ok(mut s) = sent.lock() {
                s[i] = Some(Instant::now());
            }
        }
        let ack = js
            .publish_with_headers(
                names::result_subject("ping", 1_000_000 + (i % 1000) as u64),
                headers,
                p.clone().into(),
            )
            .await?;
        acks.push(async move { ack.await.map(|_| ()).map_err(anyhow::Error::from) });
    }
    while let Some(r) = acks.next().await {
        r?;
    }
    Ok(start.elapsed())
}

async fn count(store: &Store) -> Result<u64> {
    let out = store
        .fetch_formatted(
            &format!("SELECT count() FROM {}.results", store.database()),
            "TSV",
        )
        .await?;
    Ok(String::from_utf8_lossy(&out).trim().parse().unwrap_or(0))
}

async fn wait_for_rows(store: &Store, n: u64, start: Instant) -> Result<Duration> {
    loop {
        if count(store).await? >= n {
            return Ok(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The raw limit: pull, INSERT rows built beforehand (taken by stream sequence, no
/// parsing), ack; fetching the next batch while the current one is inserted, as the
/// collector does. Runs until aborted.
async fn raw_consume(
    js: async_nats::jetstream::Context,
    store: Store,
    rows: Arc<Mutex<Vec<Option<ResultRow>>>>,
) -> Result<()> {
    let stream = js.get_stream(names::RESULTS_STREAM).await?;
    let consumer: async_nats::jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(
            "raw",
            pull::Config {
                durable_name: Some("raw".into()),
                ack_policy: AckPolicy::Explicit,
                max_ack_pending: 20_000,
                ..Default::default()
            },
        )
        .await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<async_nats::jetstream::Message>>(1);
    let fetcher = tokio::spawn(async move {
        loop {
            let mut batch = consumer
                .batch()
                .max_messages(5_000)
                .expires(Duration::from_millis(500))
                .messages()
                .await?;
            let mut msgs = Vec::new();
            while let Some(m) = batch.next().await {
                msgs.push(m.map_err(|e| anyhow::anyhow!("{e}"))?);
            }
            if !msgs.is_empty() && tx.send(msgs).await.is_err() {
                return Ok::<_, anyhow::Error>(());
            }
        }
    });
    while let Some(msgs) = rx.recv().await {
        let batch: Vec<ResultRow> = {
            let mut all = rows.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            msgs.iter()
                .filter_map(|m| m.info().ok().map(|i| i.stream_sequence))
                .filter_map(|seq| all.get_mut(usize::try_from(seq).ok()? - 1)?.take())
                .collect()
        };
        store.insert_results(&batch).await?;
        for m in &msgs {
            m.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    fetcher.await??;
    Ok(())
}

/// A sink that notes when each result's INSERT finished.
struct Timed {
    store: Store,
    sent: Arc<Mutex<Vec<Option<Instant>>>>,
    lags: Arc<Mutex<Vec<Duration>>>,
    tag: &'static str,
}

impl Sink for Timed {
    async fn insert(&self, rows: &[ResultRow]) -> Result<(), StoreError> {
        self.store.insert_results(rows).await?;
        let now = Instant::now();
        let prefix = format!("{}-", self.tag);
        if let (Ok(sent), Ok(mut lags)) = (self.sent.lock(), self.lags.lock()) {
            for r in rows {
                let i = r
                    .result_id
                    .strip_prefix(&prefix)
                    .and_then(|i| i.parse::<usize>().ok());
                if let Some(t) = i.and_then(|i| sent.get(i).copied().flatten()) {
                    lags.push(now - t);
                }
            }
        }
        Ok(())
    }

    async fn insert_typed(&self, rows: &TypedRows) -> Result<(), StoreError> {
        rows.insert(&self.store).await
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()
        .context("the argument is the number of results")?
        .unwrap_or(200_000);
    let nats = NatsServer::start()?;
    let ch = ClickHouseServer::start()?;
    let retention = Retention {
        results_max_bytes: 4 << 30,
        ..Retention::default()
    };
    let bus = Bus::open(&nats.url(), "bench-ingest", retention).await?;
    let raw_store = Store::new(&ch.url(), "bench_raw")?;
    let e2e_store = Store::new(&ch.url(), "bench_e2e")?;
    raw_store.migrate().await?;
    e2e_store.migrate().await?;
    println!(
        "{n} ping results of ~{} bytes; private nats-server and clickhouse-server; {} cores",
        payload(0, "a").len(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // Every payload of the run, in stream order: backlog, raw sustained, collector sustained.
    let a: Vec<Vec<u8>> = (0..n).map(|i| payload(i, "a")).collect();
    let b: Vec<Vec<u8>> = (0..n).map(|i| payload(i, "b")).collect();
    let c: Vec<Vec<u8>> = (0..n).map(|i| payload(i, "c")).collect();
    let prebuilt: Vec<Option<ResultRow>> =
        vantage_collector::rows_of(a.iter().chain(b.iter()).map(Vec::as_slice), 1)
            .into_iter()
            .collect();
    let prebuilt = Arc::new(Mutex::new(prebuilt));

    let t_pub = publish(&bus.js, &a, "a", None).await?;
    let pub_rate = n as f64 / t_pub.as_secs_f64();
    println!("1. publish, the load generator alone:        {pub_rate:>7.0} results/s");

    let start = Instant::now();
    let raw = tokio::spawn(raw_consume(
        bus.js.clone(),
        raw_store.clone(),
        prebuilt.clone(),
    ));
    let raw_backlog = n as f64
        / wait_for_rows(&raw_store, n as u64, start)
            .await?
            .as_secs_f64();
    let start = Instant::now();
    publish(&bus.js, &b, "b", None).await?;
    let raw_sustained = n as f64
        / wait_for_rows(&raw_store, 2 * n as u64, start)
            .await?
            .as_secs_f64();
    raw.abort();

    let sent = Arc::new(Mutex::new(vec![None; n]));
    let lags = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let sink = Timed {
        store: e2e_store.clone(),
        sent: sent.clone(),
        lags: lags.clone(),
        tag: "c",
    };
    let start = Instant::now();
    let collector = tokio::spawn(vantage_collector::run(
        bus.js.clone(),
        sink,
        Config::default(),
        Metrics::default(),
    ));
    let backlog = 2.0 * n as f64
        / wait_for_rows(&e2e_store, 2 * n as u64, start)
            .await?
            .as_secs_f64();
    let start = Instant::now();
    publish(&bus.js, &c, "c", Some(&sent)).await?;
    let sustained = n as f64
        / wait_for_rows(&e2e_store, 3 * n as u64, start)
            .await?
            .as_secs_f64();
    collector.abort();
    let mut lags = lags
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    lags.sort();
    println!("                                   raw limit   collector   ratio");
    println!(
        "2. draining a backlog:              {raw_backlog:>7.0}/s   {backlog:>7.0}/s   {:.2}",
        backlog / raw_backlog
    );
    println!(
        "3. sustained, publishing meanwhile: {raw_sustained:>7.0}/s   {sustained:>7.0}/s   {:.2}",
        sustained / raw_sustained
    );
    println!(
        "   collector ingest lag (publish to INSERT done): p50 {:.0} ms, p99 {:.0} ms",
        pct(&lags, 0.5).as_secs_f64() * 1e3,
        pct(&lags, 0.99).as_secs_f64() * 1e3,
    );
    Ok(())
}
