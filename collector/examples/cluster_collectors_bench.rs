//! One collector vs two collectors on the one durable consumer of a three-node NATS
//! JetStream cluster: results/s drained, side by side, in one run.
//!
//!   e2e/stack/nats-cluster.sh up && set -a && . $VANTAGE_CLUSTER_DIR/env && set +a
//!   cargo run --release -p vantage-collector --example cluster_collectors_bench -- [results] [rounds]
//!
//! Each round publishes `results` RIPE Atlas ping results (default 100,000, ~500 bytes) as
//! controllers do (JetStream publish with `Nats-Msg-Id` = result id, ack awaited, 512 in
//! flight) while no collector runs, then starts 1 or 2 copies of the collector's consume
//! loop (`vantage_collector::run`, production's `Config::default()`, the durable consumer
//! `collector`, explicit acks), each on its own NATS connection as two collector
//! processes would be, and times them until every result of the round is stored. Rounds
//! alternate 1, 2, 1, 2, ... (`rounds` of each, default 2).
//!
//! The sink is the real ClickHouse store (`results` and `ping_results`, a fresh database)
//! when `CLICKHOUSE_URL` is set, else an in-memory sink; `BENCH_SINK=memory` forces the
//! latter. Env: `NATS_CLUSTER_URL` (or `NATS_URL`), `NATS_REPLICAS` (3),
//! `VANTAGE_CLUSTER_DIR` and `VANTAGE_STACK_DIR` (pid files, for the CPU used by the
//! nats-servers and clickhouse-server), `BENCH_KEEP_DB=1` (keep the ClickHouse database;
//! it is dropped at the end otherwise).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use vantage_collector::typed::TypedRows;
use vantage_collector::{Config, Metrics, Sink};
use vantage_core::nats as names;
use vantage_platform::bus::{Bus, Retention};
use vantage_platform::store::{ResultRow, Store, StoreError};

const IN_FLIGHT: usize = 512;
/// Clock ticks per second of /proc/<pid>/stat and /proc/stat (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

fn payload(id: &str, i: usize) -> Vec<u8> {
    let rtt = 10.0 + (i % 97) as f64 * 0.37;
    serde_json::json!({
        "fw": 5020, "lts": 12, "mver": "2.6.2", "result_id": id,
        "msm_id": 9_000_000 + (i % 1000) as u64, "prb_id": 10_000 + (i % 10_000) as u64,
        "timestamp": 1_795_000_000 + (i / 1000) as u64, "type": "ping", "af": 4,
        "from": "192.0.2.17", "src_addr": "192.168.1.17", "dst_addr": "193.0.14.129",
        "dst_name": "k.root-servers.net", "proto": "ICMP", "ttl": 56, "size": 48, "step": 240,
        "sent": 3, "rcvd": 3, "dup": 0, "min": rtt, "avg": rtt + 0.2, "max": rtt + 0.4,
        "result": [{"rtt": rtt}, {"rtt": rtt + 0.2}, {"rtt": rtt + 0.4}],
    })
    .to_string()
    .into_bytes()
}

/// Publish as controllers do (`Nats-Msg-Id` = result id, ack awaited), `IN_FLIGHT` acks
/// outstanding.
async fn publish(js: &async_nats::jetstream::Context, prefix: &str, n: usize) -> Result<Duration> {
    let start = Instant::now();
    let mut acks = futures::stream::FuturesUnordered::new();
    for i in 0..n {
        if acks.len() >= IN_FLIGHT {
            if let Some(r) = acks.next().await {
                r?;
            }
        }
        let id = format!("{prefix}{i}");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        let ack = js
            .publish_with_headers(
                names::result_subject("ping", 9_000_000 + (i % 1000) as u64),
                headers,
                payload(&id, i).into(),
            )
            .await
            .with_context(|| format!("publish {id}"))?;
        acks.push(async move { ack.await.map(|_| ()).map_err(anyhow::Error::from) });
    }
    while let Some(r) = acks.next().await {
        r?;
    }
    Ok(start.elapsed())
}

/// What the loops of a round stored: distinct ids of the round and rows per loop.
struct Tally {
    prefix: String,
    seen: Mutex<HashSet<String>>,
    rows: [AtomicU64; 2],
}

/// The collector's sink in the bench: ClickHouse or nothing, then the tally. A batch
/// counts once both of its INSERTs (results, then per-type rows) are done.
#[derive(Clone)]
struct BenchSink {
    store: Option<Store>,
    lane: usize,
    tally: Arc<Tally>,
    pending: Arc<Mutex<Vec<String>>>,
}

impl Sink for BenchSink {
    async fn insert(&self, rows: &[ResultRow]) -> Result<(), StoreError> {
        if let Some(store) = &self.store {
            store.insert_results(rows).await?;
        }
        if let Ok(mut p) = self.pending.lock() {
            p.clear();
            p.extend(
                rows.iter()
                    .filter(|r| r.result_id.starts_with(&self.tally.prefix))
                    .map(|r| r.result_id.clone()),
            );
        }
        Ok(())
    }

    async fn insert_typed(&self, rows: &TypedRows) -> Result<(), StoreError> {
        if let Some(store) = &self.store {
            rows.insert(store).await?;
        }
        if let (Ok(mut p), Ok(mut seen)) = (self.pending.lock(), self.tally.seen.lock()) {
            self.tally.rows[self.lane].fetch_add(p.len() as u64, Ordering::Relaxed);
            seen.extend(p.drain(..));
        }
        Ok(())
    }
}

/// CPU ticks (user + system) of a process, from /proc/<pid>/stat.
fn proc_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The pids of the services: the cluster's nats-servers, the stack's clickhouse-server.
fn service_pids() -> Vec<(String, String)> {
    let mut pids = Vec::new();
    let read = |f: String| std::fs::read_to_string(f).ok().map(|s| s.trim().to_owned());
    if let Ok(dir) = std::env::var("VANTAGE_CLUSTER_DIR") {
        for n in ["n1", "n2", "n3"] {
            if let Some(p) = read(format!("{dir}/pids/{n}.pid")) {
                pids.push((n.to_owned(), p));
            }
        }
    }
    if let Ok(dir) = std::env::var("VANTAGE_STACK_DIR") {
        if let Some(p) = read(format!("{dir}/pids/clickhouse.pid")) {
            pids.push(("clickhouse".to_owned(), p));
        }
    }
    pids
}

#[derive(Clone, Copy)]
struct Cpu {
    bench: u64,
    nats: u64,
    clickhouse: u64,
}

fn cpu(services: &[(String, String)]) -> Cpu {
    let mut c = Cpu {
        bench: proc_ticks("self").unwrap_or(0),
        nats: 0,
        clickhouse: 0,
    };
    for (name, pid) in services {
        let t = proc_ticks(pid).unwrap_or(0);
        if name == "clickhouse" {
            c.clickhouse += t;
        } else {
            c.nats += t;
        }
    }
    c
}

/// The durable consumer's (pending, unacked) messages.
async fn backlog(js: &async_nats::jetstream::Context) -> Result<(u64, usize)> {
    let stream = js.get_stream(names::RESULTS_STREAM).await?;
    let mut c: async_nats::jetstream::consumer::PullConsumer =
        match stream.get_consumer(names::COLLECTOR_DURABLE).await {
            Ok(c) => c,
            Err(_) => return Ok((0, 0)),
        };
    let info = c.info().await?;
    Ok((info.num_pending, info.num_ack_pending))
}

struct Round {
    collectors: usize,
    published: f64,
    drained: f64,
    rows: [u64; 2],
    twice: u64,
    cpu_s: [f64; 3],
}

/// Start `k` consume loops, each on its own connection; run until `n` results with
/// `prefix` are stored (or, with `n` = 0, until the durable consumer has nothing pending
/// or unacked); stop them once nothing is unacked.
async fn drain(
    url: &str,
    js: &async_nats::jetstream::Context,
    store: &Option<Store>,
    k: usize,
    prefix: &str,
    n: usize,
) -> Result<(Duration, Arc<Tally>)> {
    let tally = Arc::new(Tally {
        prefix: prefix.to_owned(),
        seen: Mutex::new(HashSet::with_capacity(n)),
        rows: [AtomicU64::new(0), AtomicU64::new(0)],
    });
    let mut loops = Vec::new();
    let mut clients = Vec::new();
    for lane in 0..k {
        let client =
            vantage_platform::bus::connect(url, &format!("bench-collector-{lane}")).await?;
        clients.push(client.clone());
        loops.push(tokio::spawn(vantage_collector::run(
            async_nats::jetstream::new(client),
            BenchSink {
                store: store.clone(),
                lane,
                tally: tally.clone(),
                pending: Arc::default(),
            },
            Config::default(),
            Metrics::default(),
        )));
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(600);
    loop {
        let done = if n == 0 {
            backlog(js).await? == (0, 0)
        } else {
            tally.seen.lock().map(|s| s.len()).unwrap_or(0) >= n
        };
        if done {
            break;
        }
        for l in &loops {
            if l.is_finished() {
                bail!("a consume loop ended before the round was stored");
            }
        }
        if Instant::now() > deadline {
            bail!("round {prefix}: not stored within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(if n == 0 { 200 } else { 5 })).await;
    }
    let took = start.elapsed();
    // Stop once every ack has reached the consumer, so that nothing is redelivered into
    // the next round.
    let settle = Instant::now() + Duration::from_secs(30);
    while backlog(js).await?.1 > 0 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for l in &loops {
        l.abort();
    }
    for c in clients {
        let _ = c.drain().await;
    }
    // A stopped loop's last pull request lives on in the server until it expires
    // (max_wait): results published before then would go to it and come back only after
    // ack_wait.
    tokio::time::sleep(Config::default().max_wait + Duration::from_millis(500)).await;
    Ok((took, tally))
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()
        .context("the first argument is the number of results per round, e.g. 100000")?
        .unwrap_or(100_000);
    let rounds: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()
        .context("the second argument is the number of rounds of each, e.g. 2")?
        .unwrap_or(2);
    let url = std::env::var("NATS_CLUSTER_URL")
        .or_else(|_| std::env::var("NATS_URL"))
        .context(
            "set NATS_CLUSTER_URL to the cluster's URLs: e2e/stack/nats-cluster.sh up, then \
             `set -a; . $VANTAGE_CLUSTER_DIR/env; set +a`",
        )?;
    let replicas: usize = match std::env::var("NATS_REPLICAS") {
        Ok(v) => v
            .parse()
            .with_context(|| format!("NATS_REPLICAS={v}: want a number (1 or 3)"))?,
        Err(_) => 3,
    };
    let retention = Retention {
        replicas,
        results_max_bytes: 4 << 30,
        ..Retention::default()
    };
    let bus = Bus::open(&url, "bench-collectors", retention)
        .await
        .context("declare the layout on the cluster")?;
    let js = bus.js.clone();
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let memory = std::env::var("BENCH_SINK").is_ok_and(|s| s == "memory");
    let store = match std::env::var("CLICKHOUSE_URL") {
        Ok(ch) if !memory => {
            let db = format!("bench_collectors_{run}");
            let store = Store::new(&ch, &db).context("CLICKHOUSE_URL")?;
            store.migrate().await.context("create the bench database")?;
            Some(store)
        }
        _ => None,
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let sink = match &store {
        Some(s) => format!(
            "ClickHouse ({}: results + ping_results, as the collector writes them)",
            s.database()
        ),
        None => "in memory (no INSERT)".to_owned(),
    };
    println!(
        "cluster_collectors_bench: {n} ping results per round, {rounds} rounds each of 1 and 2 \
         collectors; RESULTS with {replicas} replicas on {url}; sink {sink}; {cores} cores"
    );
    let services = service_pids();

    // Whatever the durable consumer still holds (other runs) goes first.
    let (_, before) = drain(&url, &js, &store, 1, "", 0).await?;
    let leftover = before.rows[0].load(Ordering::Relaxed);
    if leftover > 0 {
        println!("drained {leftover} results left in the durable consumer from before");
    }

    let mut results: Vec<Round> = Vec::new();
    for round in 0..2 * rounds {
        let k = 1 + round % 2;
        let prefix = format!("cb{run}-{round}-");
        let published = n as f64 / publish(&js, &prefix, n).await?.as_secs_f64();
        // The consumer's leader may hold a replica of the stream a moment behind.
        let waited = Instant::now();
        loop {
            let (pending, unacked) = backlog(&js).await?;
            if pending >= n as u64 && unacked == 0 {
                break;
            }
            if waited.elapsed() > Duration::from_secs(10) {
                bail!(
                    "10 s after publishing {n} the durable consumer has {pending} pending and \
                     {unacked} delivered but unacked (to a stopped loop's pull request?)"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = cpu(&services);
        let (took, tally) = drain(&url, &js, &store, k, &prefix, n).await?;
        let after = cpu(&services);
        let rows = [
            tally.rows[0].load(Ordering::Relaxed),
            tally.rows[1].load(Ordering::Relaxed),
        ];
        let distinct = tally.seen.lock().map(|s| s.len()).unwrap_or(0) as u64;
        let r = Round {
            collectors: k,
            published,
            drained: n as f64 / took.as_secs_f64(),
            rows,
            twice: (rows[0] + rows[1]).saturating_sub(distinct),
            cpu_s: [
                (after.bench - before.bench) as f64 / TICKS,
                (after.nats - before.nats) as f64 / TICKS,
                (after.clickhouse - before.clickhouse) as f64 / TICKS,
            ],
        };
        println!(
            "round {}: {k} collector{}: published {:>6.0}/s, drained {:>6.0}/s in {:.2} s; rows per \
             collector {:?}, stored twice {}; CPU s: bench {:.2}, nats-servers {:.2}, clickhouse \
             {:.2}",
            round + 1,
            if k == 1 { " " } else { "s" },
            r.published,
            r.drained,
            took.as_secs_f64(),
            &r.rows[..k],
            r.twice,
            r.cpu_s[0],
            r.cpu_s[1],
            r.cpu_s[2],
        );
        results.push(r);
    }

    let mean = |k: usize, f: &dyn Fn(&Round) -> f64| {
        let v: Vec<f64> = results
            .iter()
            .filter(|r| r.collectors == k)
            .map(f)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let rate = [mean(1, &|r| r.drained), mean(2, &|r| r.drained)];
    let cpu_per = |k: usize| {
        let cpu = mean(k, &|r| r.cpu_s.iter().sum());
        (n as f64 / cpu.max(1e-9), mean(k, &|r| r.cpu_s[0]))
    };
    let (per_cpu1, bench1) = cpu_per(1);
    let (per_cpu2, bench2) = cpu_per(2);
    println!();
    println!("                                          1 collector   2 collectors   2 / 1");
    println!(
        "results/s drained (mean of {rounds})         {:>9.0}      {:>9.0}     {:.2}",
        rate[0],
        rate[1],
        rate[1] / rate[0].max(1e-9)
    );
    println!(
        "per core of this machine ({cores} cores)       {:>9.0}      {:>9.0}",
        rate[0] / cores as f64,
        rate[1] / cores as f64
    );
    println!(
        "results per CPU-second (bench+nats+CH)   {:>9.0}      {:>9.0}     {:.2}",
        per_cpu1,
        per_cpu2,
        per_cpu2 / per_cpu1.max(1e-9)
    );
    println!(
        "CPU s per round: collectors (this process) {:>7.2}      {:>9.2}",
        bench1, bench2
    );
    println!(
        "                 nats-servers              {:>7.2}      {:>9.2}",
        mean(1, &|r| r.cpu_s[1]),
        mean(2, &|r| r.cpu_s[1])
    );
    if store.is_some() {
        println!(
            "                 clickhouse-server         {:>7.2}      {:>9.2}",
            mean(1, &|r| r.cpu_s[2]),
            mean(2, &|r| r.cpu_s[2])
        );
    }
    println!(
        "published as controllers do: {:.0}/s (mean)",
        results.iter().map(|r| r.published).sum::<f64>() / results.len().max(1) as f64
    );
    println!();
    println!(
        "On {cores} cores the three nats-servers, {}both consume loops and the publisher share \
         the same cores: the 2 / 1 ratio shows contention for them more than the capacity a \
         second collector adds on a node of its own. Results per CPU-second is the cost figure \
         that carries over.",
        if store.is_some() {
            "clickhouse-server, "
        } else {
            ""
        }
    );
    println!("Left out:");
    if store.is_none() {
        println!(
            "  - ClickHouse: no INSERT (results, ping_results) and its latency, which the \
             collector's fetch/INSERT pipelining overlaps; set CLICKHOUSE_URL to include it"
        );
    }
    println!(
        "  - separate processes and hosts: both loops run in this process on one 2-thread \
         tokio runtime (each on its own NATS connection); all traffic is loopback"
    );
    println!(
        "  - the controllers' SSH intake and spool: the bench publishes directly, 512 acks in \
         flight, while no collector runs (a backlog is drained, not a steady stream)"
    );
    println!("  - the collector's metrics endpoint and its migrations at start");
    println!(
        "  - a steady state: a round ends with a partial batch, which waits up to max_wait \
         ({:?}) for more (fewer results per round weigh this more)",
        Config::default().max_wait
    );
    if let Some(store) = &store {
        let db = store.database().to_owned();
        let out = store
            .fetch_formatted(&format!("SELECT count() FROM {db}.results"), "TSV")
            .await?;
        let stored: u64 = String::from_utf8_lossy(&out).trim().parse().unwrap_or(0);
        let published = (2 * rounds * n) as u64 + leftover;
        println!(
            "ClickHouse {db}.results holds {stored} rows for {published} results published \
             (with {leftover} left from before)"
        );
        if std::env::var("BENCH_KEEP_DB").is_ok_and(|v| v == "1") {
            println!("kept {db} (BENCH_KEEP_DB=1)");
        } else {
            store
                .execute(&format!("DROP DATABASE IF EXISTS {db}"))
                .await?;
        }
        if stored < published {
            bail!("{db}.results holds {stored} rows, fewer than the {published} results published");
        }
    }
    Ok(())
}
