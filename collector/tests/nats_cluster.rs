//! Against a three-node NATS JetStream cluster (`e2e/stack/nats-cluster.sh up`, then
//! `source $VANTAGE_CLUSTER_DIR/env`; `e2e/cluster/nats-tests.sh` does all of it):
//!
//! * the RESULTS stream's leader is killed during ingest through the collector's own
//!   consume loop (`vantage_collector::run`, durable pull consumer, explicit acks) with
//!   results published as the controller publishes them (`Nats-Msg-Id` = result id,
//!   retried until acked): no result is lost and none is in the stream twice;
//! * two collectors (two consume loops on their own connections) on the one durable
//!   consumer split the results and store each once; again with the RESULTS leader
//!   killed midway: nothing lost, at most the unacked window stored twice;
//! * the schedules bucket's leader is killed while schedules change: a watcher that
//!   follows the bucket as the controller's feed does misses no change;
//! * a client given all three URLs while one node is down starts and works.
//!
//! Each test kills a node and starts it again, so the cluster is whole at the end.
//! Without `NATS_CLUSTER_URL` the tests print SKIPPED (and fail under `CI=true`).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use vantage_collector::{Config, Metrics, Sink};
use vantage_core::nats as names;
use vantage_platform::bus::{Bus, Retention};
use vantage_platform::store::{ResultRow, StoreError};

/// One test at a time: each kills a node, and two dead nodes would leave no quorum.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Cluster {
    url: String,
    script: String,
    dir: String,
}

fn cluster(test: &str) -> Option<Cluster> {
    let Some(url) = vantage_testkit::stack_var("NATS_CLUSTER_URL", test) else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "  ({test} needs the three-node cluster: run e2e/cluster/nats-tests.sh)"
        );
        return None;
    };
    let var = |v: &str| {
        std::env::var(v).unwrap_or_else(|_| {
            panic!("{v} is unset: source $VANTAGE_CLUSTER_DIR/env written by e2e/stack/nats-cluster.sh up")
        })
    };
    Some(Cluster {
        url,
        script: var("NATS_CLUSTER_SCRIPT"),
        dir: var("VANTAGE_CLUSTER_DIR"),
    })
}

impl Cluster {
    async fn run(&self, args: &[&str]) {
        let status = tokio::process::Command::new("bash")
            .arg(&self.script)
            .args(args)
            .env("VANTAGE_CLUSTER_DIR", &self.dir)
            .status()
            .await
            .expect("run nats-cluster.sh");
        assert!(status.success(), "nats-cluster.sh {args:?} failed");
    }
    /// Wait until every node is up and current, so that killing one keeps a quorum.
    async fn whole(&self) {
        self.run(&["wait-healthy"]).await;
    }
    /// SIGKILL `node`; the guard starts it again, also when the test fails.
    async fn kill(&self, node: &str) -> Killed {
        self.run(&["kill", node]).await;
        Killed {
            script: self.script.clone(),
            dir: self.dir.clone(),
            node: node.to_owned(),
            restarted: false,
        }
    }

    async fn bus(&self, name: &str) -> Bus {
        let retention = Retention {
            replicas: 3,
            dedup_window: Duration::from_secs(120),
            results_max_bytes: 1 << 30,
            ..Retention::default()
        };
        tokio::time::timeout(
            Duration::from_secs(60),
            Bus::open(&self.url, name, retention),
        )
        .await
        .expect("Bus::open within 60 s")
        .expect("declare the layout with 3 replicas")
    }
}

/// A killed node, started again by [`Killed::restart`] or on drop.
struct Killed {
    script: String,
    dir: String,
    node: String,
    restarted: bool,
}

impl Killed {
    async fn restart(mut self) {
        self.restarted = true;
        let status = tokio::process::Command::new("bash")
            .arg(&self.script)
            .args(["start", &self.node])
            .env("VANTAGE_CLUSTER_DIR", &self.dir)
            .status()
            .await
            .expect("run nats-cluster.sh start");
        assert!(
            status.success(),
            "nats-cluster.sh start {} failed",
            self.node
        );
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if !self.restarted {
            let _ = std::process::Command::new("bash")
                .arg(&self.script)
                .args(["start", &self.node])
                .env("VANTAGE_CLUSTER_DIR", &self.dir)
                .status();
        }
    }
}

/// The RAFT leader of a stream, asked until the cluster names one.
async fn leader(js: &jetstream::Context, stream: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = js.get_stream(stream).await {
            if let Ok(info) = s.info().await {
                assert_eq!(info.config.num_replicas, 3, "{stream} has 3 replicas");
                if let Some(l) = info.cluster.as_ref().and_then(|c| c.leader.clone()) {
                    return l;
                }
            }
        }
        assert!(Instant::now() < deadline, "{stream}: no leader after 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn run_tag() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64 % 1_000_000_000)
        .unwrap_or(1)
}

/// The collector's sink, in memory: every row it was given, in order.
#[derive(Clone, Default)]
struct Memory(Arc<Mutex<Vec<ResultRow>>>);

impl Sink for Memory {
    async fn insert(&self, rows: &[ResultRow]) -> Result<(), StoreError> {
        self.0
            .lock()
            .expect("sink lock")
            .extend(rows.iter().cloned());
        Ok(())
    }
}

impl Memory {
    /// (rows stored, distinct ids) of measurement `msm`.
    fn counts(&self, msm: u64) -> (usize, usize) {
        let rows = self.0.lock().expect("sink lock");
        let ours: Vec<&str> = rows
            .iter()
            .filter(|r| r.msm_id == msm)
            .map(|r| r.result_id.as_str())
            .collect();
        let distinct: HashSet<&str> = ours.iter().copied().collect();
        (ours.len(), distinct.len())
    }
}

fn ping(result_id: &str, msm: u64, prb: u32) -> Vec<u8> {
    format!(
        r#"{{"result_id":"{result_id}","fw":5020,"lts":-1,"msm_id":{msm},"prb_id":{prb},"timestamp":1700000000,"type":"ping","af":4,"from":"127.0.0.1","src_addr":"127.0.0.1","dst_addr":"127.0.0.1","dst_name":"localhost","proto":"ICMP","size":48,"step":60,"ttl":64,"sent":3,"rcvd":3,"dup":0,"min":0.05,"avg":0.06,"max":0.07,"result":[{{"rtt":0.05}},{{"rtt":0.06}},{{"rtt":0.07}}]}}"#
    )
    .into_bytes()
}

/// Publish as the controller does (`Nats-Msg-Id` = result id), retrying until the stream
/// acks: a publish whose ack was lost in the failover is sent again and deduplicated.
/// Returns when it was acked.
async fn publish(js: &jetstream::Context, subject: &str, id: &str, payload: Vec<u8>) -> Instant {
    let first = Instant::now();
    let mut tries = 0u32;
    loop {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        let sent = async {
            js.publish_with_headers(subject.to_owned(), headers, payload.clone().into())
                .await?
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        };
        match tokio::time::timeout(Duration::from_secs(5), sent).await {
            Ok(Ok(_)) => return Instant::now(),
            failed => {
                tries += 1;
                assert!(
                    first.elapsed() < Duration::from_secs(45),
                    "{id}: not acked after {tries} tries in {:?}, last: {failed:?}",
                    first.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Messages of `subject` in the stream (an ephemeral consumer's pending count). Right
/// after a node died the stream may still be electing a leader and the JetStream API
/// times out; asked again for up to 45 s, as the publishers retry.
async fn stored_in_stream(js: &jetstream::Context, subject: &str) -> u64 {
    let first = Instant::now();
    loop {
        let asked = async {
            let stream = js
                .get_stream(names::RESULTS_STREAM)
                .await
                .map_err(|e| e.to_string())?;
            let mut c = stream
                .create_consumer(consumer::pull::Config {
                    filter_subject: subject.to_owned(),
                    inactive_threshold: Duration::from_secs(10),
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            c.info()
                .await
                .map(|i| i.num_pending)
                .map_err(|e| e.to_string())
        };
        match asked.await {
            Ok(n) => return n,
            Err(e) => {
                assert!(
                    first.elapsed() < Duration::from_secs(45),
                    "the RESULTS stream cannot be counted for {:?}: {e}",
                    first.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cluster_results_survive_the_stream_leader_dying() {
    let Some(cluster) = cluster("nats_cluster_results_survive_the_stream_leader_dying") else {
        return;
    };
    let _serial = SERIAL.lock().await;
    cluster.whole().await;
    let bus = cluster.bus("vantage-cluster-test").await;
    let js = bus.js.clone();
    let tag = run_tag();
    let msm = 5_000_000_000 + tag;
    let subject = names::result_subject("ping", msm);
    let total: usize = std::env::var("NATS_CLUSTER_RESULTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);

    // The collector's consume loop, with its durable consumer, into memory.
    let sink = Memory::default();
    let collector = tokio::spawn(vantage_collector::run(
        js.clone(),
        sink.clone(),
        Config {
            max_batch: 500,
            max_wait: Duration::from_millis(200),
            ack_wait: Duration::from_secs(10),
        },
        Metrics::default(),
    ));

    let old = leader(&js, names::RESULTS_STREAM).await;
    let started = Instant::now();
    let (tx, mut acks) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let mut publishers = Vec::new();
    let lanes = 16;
    for lane in 0..lanes {
        let js = js.clone();
        let subject = subject.clone();
        let tx = tx.clone();
        publishers.push(tokio::spawn(async move {
            for i in (lane..total).step_by(lanes) {
                let id = format!("cl{tag}-{i}");
                let at = publish(&js, &subject, &id, ping(&id, msm, 1 + i as u32)).await;
                let _ = tx.send(at);
            }
        }));
    }
    drop(tx);
    // Kill the stream leader once a third is in.
    let mut acked = 0usize;
    let mut killed_at = None;
    let mut killed = None;
    // Failover as the publishers see it: the longest pause between two acks.
    let mut last_ack: Option<Instant> = None;
    let mut longest_pause = Duration::ZERO;
    while let Some(at) = acks.recv().await {
        acked += 1;
        if let Some(prev) = last_ack {
            longest_pause = longest_pause.max(at.saturating_duration_since(prev));
        }
        last_ack = Some(last_ack.map_or(at, |p| p.max(at)));
        if acked == total / 3 && killed_at.is_none() {
            killed = Some(cluster.kill(&old).await);
            killed_at = Some(Instant::now());
            eprintln!("killed RESULTS leader {old} after {acked} acked results");
        }
    }
    for p in publishers {
        p.await.expect("publisher");
    }
    let published_in = started.elapsed();
    let killed_at = killed_at.expect("the leader was killed");
    let new = leader(&js, names::RESULTS_STREAM).await;
    let leader_after = killed_at.elapsed();
    assert_ne!(new, old, "a new leader took over");

    // Every result reaches the sink.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (rows, distinct) = loop {
        let (rows, distinct) = sink.counts(msm);
        if distinct >= total || Instant::now() > deadline {
            break (rows, distinct);
        }
        assert!(
            !collector.is_finished(),
            "the collector's consume loop ended"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let in_stream = stored_in_stream(&js, &subject).await;
    killed.expect("the leader was killed").restart().await;
    collector.abort();
    eprintln!(
        "RESULTS leader {old} -> {new}: {total} results published in {:.2} s ({:.0}/s), \
         longest pause between acks {longest_pause:?}, new leader named within {leader_after:?} of the kill; \
         {:.0}/s outside the pause; in the stream {in_stream}, delivered to the sink {rows} \
         ({distinct} distinct)",
        published_in.as_secs_f64(),
        total as f64 / published_in.as_secs_f64(),
        total as f64 / (published_in.saturating_sub(longest_pause)).as_secs_f64().max(0.001),
    );
    assert_eq!(distinct, total, "no result lost on the way to the sink");
    assert_eq!(
        in_stream, total as u64,
        "every result is in the stream exactly once"
    );
    // At-least-once delivery: a batch whose ack was lost in the failover comes again and
    // collapses in ClickHouse (ReplacingMergeTree on result_id); say how many did.
    if rows > distinct {
        eprintln!(
            "{} rows redelivered to the sink (deduplicated by ClickHouse)",
            rows - distinct
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cluster_schedule_changes_survive_the_bucket_leader_dying() {
    let Some(cluster) = cluster("nats_cluster_schedule_changes_survive_the_bucket_leader_dying")
    else {
        return;
    };
    let _serial = SERIAL.lock().await;
    cluster.whole().await;
    let bus = cluster.bus("vantage-cluster-test").await;
    let kv = bus.schedules.clone();
    let js = bus.js.clone();
    let stream = format!("KV_{}", names::SCHEDULES_BUCKET);
    let tag = run_tag();
    let total = 600usize;
    let start = kv
        .status()
        .await
        .expect("bucket status")
        .info
        .state
        .last_sequence
        + 1;

    // The controller's feed: watch from a revision, resume after the last one seen.
    let seen: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let restarts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let watcher = {
        let kv = kv.clone();
        let seen = seen.clone();
        let restarts = restarts.clone();
        let prefix = format!("cluster{tag}.");
        tokio::spawn(async move {
            let mut next = start;
            loop {
                if let Ok(mut watch) = kv.watch_all_from_revision(next).await {
                    while let Some(Ok(entry)) = watch.next().await {
                        next = entry.revision + 1;
                        if entry.key.starts_with(&prefix) {
                            let v = std::str::from_utf8(&entry.value)
                                .ok()
                                .and_then(|s| s.parse().ok())
                                .unwrap_or(0);
                            seen.lock().expect("seen").insert(entry.key.clone(), v);
                        }
                    }
                }
                restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let old = leader(&js, &stream).await;
    let started = Instant::now();
    let mut killed = None;
    let mut slowest = Duration::ZERO;
    for i in 0..total {
        // Half new keys, half changes of one key: the watcher must see every key and the
        // last value of the changed one.
        let (key, value) = if i % 2 == 0 {
            (format!("cluster{tag}.probe{i}"), i as u64)
        } else {
            (format!("cluster{tag}.changed"), i as u64)
        };
        let t = Instant::now();
        let mut tries = 0u32;
        loop {
            match tokio::time::timeout(
                Duration::from_secs(5),
                kv.put(&key, value.to_string().into()),
            )
            .await
            {
                Ok(Ok(_)) => break,
                failed => {
                    tries += 1;
                    assert!(
                        t.elapsed() < Duration::from_secs(45),
                        "{key}: put failed {tries} times in {:?}, last: {failed:?}",
                        t.elapsed()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        slowest = slowest.max(t.elapsed());
        if i == total / 3 {
            killed = Some(cluster.kill(&old).await);
            eprintln!("killed {stream} leader {old} after {i} changes");
        }
    }
    let written_in = started.elapsed();
    let new = leader(&js, &stream).await;
    assert_ne!(new, old, "a new leader took over");

    let expected_keys = total / 2 + 1;
    let last_change = (total - 1) as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (keys, changed) = loop {
        let (keys, changed) = {
            let seen = seen.lock().expect("seen");
            (
                seen.len(),
                seen.get(&format!("cluster{tag}.changed")).copied(),
            )
        };
        if (keys >= expected_keys && changed == Some(last_change)) || Instant::now() > deadline {
            break (keys, changed);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    killed.expect("the leader was killed").restart().await;
    watcher.abort();
    eprintln!(
        "{stream} leader {old} -> {new}: {total} changes in {:.2} s, slowest put {slowest:?}; \
         watcher saw {keys} keys (want {expected_keys}), last value {changed:?}, restarted {} times",
        written_in.as_secs_f64(),
        restarts.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(keys, expected_keys, "the watcher saw every key");
    assert_eq!(
        changed,
        Some(last_change),
        "the watcher saw the last change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cluster_a_client_starts_with_one_node_down() {
    let Some(cluster) = cluster("nats_cluster_a_client_starts_with_one_node_down") else {
        return;
    };
    let _serial = SERIAL.lock().await;
    cluster.whole().await;
    // The layout exists (an R3 stream cannot be created with a node down).
    let watcher = cluster.bus("vantage-cluster-test").await;
    // Take down the node of the first URL, so the client must go past it (in the order
    // it tries them, which async-nats shuffles).
    let killed = cluster.kill("n1").await;
    // Wait until every stream n1 led has a new leader: the client below then starts
    // with a node down, not while the cluster is still electing.
    let down_at = Instant::now();
    for stream in [
        names::RESULTS_STREAM.to_owned(),
        format!("KV_{}", names::SCHEDULES_BUCKET),
        format!("KV_{}", names::ASSIGNMENTS_BUCKET),
        format!("KV_{}", names::SESSIONS_BUCKET),
        format!("KV_{}", names::META_BUCKET),
    ] {
        let l = leader(&watcher.js, &stream).await;
        assert_ne!(l, "n1", "{stream} has a live leader");
    }
    eprintln!(
        "every stream has a live leader {:?} after n1 died",
        down_at.elapsed()
    );
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        // async-nats tries the servers in a shuffled order: several fresh clients make
        // it likely that some try the dead one first.
        for _ in 0..6 {
            let c = vantage_platform::bus::connect(&cluster.url, "vantage-cluster-test").await?;
            c.flush().await?;
            assert_ne!(
                c.server_info().server_name,
                "n1",
                "connected to a live node"
            );
        }
        let bus = Bus::attach(&cluster.url, "vantage-cluster-test").await?;
        eprintln!("6 connections and attached in {:?}", started.elapsed());
        let tag = run_tag();
        let key = format!("cluster{tag}.one-down");
        bus.schedules.put(&key, "up".into()).await?;
        eprintln!("first KV put done at {:?}", started.elapsed());
        // A KV read may be answered by a replica a moment behind (direct get): ask again.
        let mut got = None;
        for _ in 0..50 {
            got = bus.schedules.get(&key).await?;
            if got.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let subject = names::result_subject("ping", 6_000_000_000 + tag);
        let id = format!("down{tag}");
        publish(&bus.js, &subject, &id, ping(&id, 6_000_000_000 + tag, 1)).await;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((got, bus.client.server_info()))
    })
    .await;
    let took = started.elapsed();
    killed.restart().await;
    let (got, info) = result
        .expect("the client worked within 60 s with n1 down")
        .expect("attach, put, get, publish");
    eprintln!(
        "with n1 down: attached to {} and wrote a KV key and a result in {took:?}",
        info.server_name
    );
    assert_eq!(got.as_deref(), Some(&b"up"[..]));
    assert_ne!(info.server_name, "n1", "connected to a live node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cluster_more_replicas_than_servers_is_an_error_naming_the_flag() {
    let Some(cluster) =
        cluster("nats_cluster_more_replicas_than_servers_is_an_error_naming_the_flag")
    else {
        return;
    };
    let _serial = SERIAL.lock().await;
    cluster.whole().await;
    let retention = Retention {
        replicas: 5,
        results_max_bytes: 1 << 30,
        ..Retention::default()
    };
    let err = match tokio::time::timeout(
        Duration::from_secs(30),
        Bus::open(&cluster.url, "vantage-cluster-test", retention),
    )
    .await
    .expect("an answer within 30 s")
    {
        Ok(_) => panic!("five replicas on three servers must be refused"),
        Err(e) => e.to_string(),
    };
    eprintln!("five replicas: {err}");
    assert!(err.contains("--nats-replicas"), "{err}");
    assert!(err.contains("NATS_REPLICAS"), "{err}");
    // The stream is unchanged, if it was there (a fresh cluster: not created).
    let js = jetstream::new(
        vantage_platform::bus::connect(&cluster.url, "vantage-cluster-test")
            .await
            .expect("connect"),
    );
    if let Ok(mut s) = js.get_stream(names::RESULTS_STREAM).await {
        let info = s.info().await.expect("RESULTS info");
        assert_eq!(info.config.num_replicas, 3, "RESULTS keeps its 3 replicas");
    }
}

/// The sink of one of several consume loops: which loop stored each result of `msm`.
#[derive(Clone)]
struct Shared {
    lane: usize,
    msm: u64,
    /// result id -> rows stored by each loop.
    stored: Arc<Mutex<BTreeMap<String, [u32; 2]>>>,
}

impl Sink for Shared {
    async fn insert(&self, rows: &[ResultRow]) -> Result<(), StoreError> {
        let mut stored = self.stored.lock().expect("sink lock");
        for r in rows.iter().filter(|r| r.msm_id == self.msm) {
            stored.entry(r.result_id.clone()).or_default()[self.lane] += 1;
        }
        Ok(())
    }
}

/// Per loop: (rows stored, ids stored more than once by any loop, ids seen).
fn shares(stored: &Mutex<BTreeMap<String, [u32; 2]>>) -> ([u64; 2], usize, usize) {
    let stored = stored.lock().expect("sink lock");
    let mut rows = [0u64; 2];
    let mut twice = 0;
    for per_loop in stored.values() {
        rows[0] += u64::from(per_loop[0]);
        rows[1] += u64::from(per_loop[1]);
        if per_loop[0] + per_loop[1] > 1 {
            twice += 1;
        }
    }
    (rows, twice, stored.len())
}

/// Publish ids `0..total` of `msm` as the controller does, 16 at a time; each ack's
/// instant is sent on the returned channel.
fn publish_all(
    js: &jetstream::Context,
    tag: u64,
    msm: u64,
    total: usize,
) -> (
    Vec<tokio::task::JoinHandle<()>>,
    tokio::sync::mpsc::UnboundedReceiver<Instant>,
) {
    let subject = names::result_subject("ping", msm);
    let (tx, acks) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let lanes = 16;
    let publishers = (0..lanes)
        .map(|lane| {
            let js = js.clone();
            let subject = subject.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                for i in (lane..total).step_by(lanes) {
                    let id = format!("two{tag}-{msm}-{i}");
                    let at = publish(&js, &subject, &id, ping(&id, msm, 1 + i as u32)).await;
                    let _ = tx.send(at);
                }
            })
        })
        .collect();
    (publishers, acks)
}

/// Wait until `total` distinct ids of the sink are stored (or 60 s passed); both loops
/// must still be running.
async fn drained(
    stored: &Mutex<BTreeMap<String, [u32; 2]>>,
    total: usize,
    loops: &[tokio::task::JoinHandle<Result<(), vantage_collector::CollectorError>>],
) -> ([u64; 2], usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, distinct) = shares(stored);
        if distinct >= total || Instant::now() > deadline {
            // Anything still in flight lands now (a redelivery would come later still).
            tokio::time::sleep(Duration::from_millis(500)).await;
            return shares(stored);
        }
        for (i, l) in loops.iter().enumerate() {
            assert!(!l.is_finished(), "consume loop {i} ended");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two collectors (two consume loops, each on its own connection as two processes would
/// be) on the one durable consumer split the results between them and store each one
/// once; then the same while the RESULTS stream's leader is killed: nothing is lost, and
/// what is stored twice is at most the unacked window a failover redelivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_cluster_two_collectors_share_one_durable_consumer_without_duplicates() {
    let Some(cluster) =
        cluster("nats_cluster_two_collectors_share_one_durable_consumer_without_duplicates")
    else {
        return;
    };
    let _serial = SERIAL.lock().await;
    cluster.whole().await;
    let bus = cluster.bus("vantage-cluster-test").await;
    let js = bus.js.clone();
    let tag = run_tag();
    let total = 4000usize;
    let cfg = Config {
        max_batch: 250,
        max_wait: Duration::from_millis(200),
        ack_wait: Duration::from_secs(10),
    };
    // The durable consumer's window of unacked messages, shared by both loops.
    let window = cfg.max_batch * 4;

    for (phase, msm) in [(1, 7_000_000_000 + tag), (2, 8_000_000_000 + tag)] {
        let stored: Arc<Mutex<BTreeMap<String, [u32; 2]>>> = Arc::default();
        let mut loops = Vec::new();
        let mut clients = Vec::new();
        for lane in 0..2 {
            let client = vantage_platform::bus::connect(
                &cluster.url,
                &format!("vantage-cluster-collector-{lane}"),
            )
            .await
            .expect("connect a collector");
            loops.push(tokio::spawn(vantage_collector::run(
                jetstream::new(client.clone()),
                Shared {
                    lane,
                    msm,
                    stored: stored.clone(),
                },
                cfg,
                Metrics::default(),
            )));
            clients.push(client);
        }
        let old = leader(&js, names::RESULTS_STREAM).await;
        let started = Instant::now();
        let (publishers, mut acks) = publish_all(&js, tag, msm, total);
        let mut acked = 0usize;
        let mut killed = None;
        while acks.recv().await.is_some() {
            acked += 1;
            if phase == 2 && acked == total / 3 && killed.is_none() {
                killed = Some(cluster.kill(&old).await);
                eprintln!("phase 2: killed RESULTS leader {old} after {acked} acked results");
            }
        }
        for p in publishers {
            p.await.expect("publisher");
        }
        let (rows, twice, distinct) = drained(&stored, total, &loops).await;
        let took = started.elapsed();
        if let Some(k) = killed {
            k.restart().await;
            let new = leader(&js, names::RESULTS_STREAM).await;
            assert_ne!(new, old, "phase 2: a new leader took over");
        }
        for l in &loops {
            l.abort();
        }
        for c in clients {
            let _ = c.drain().await;
        }
        // Their last pull requests live on in the server until they expire: results of
        // the next phase would go to them and come back only after ack_wait.
        tokio::time::sleep(cfg.max_wait * 3).await;
        let share = |n: u64| n as f64 / total as f64;
        eprintln!(
            "phase {phase}{}: {total} results in {:.2} s; loop 0 stored {} ({:.0} %), loop 1 {} ({:.0} %); \
             {distinct} distinct, {twice} stored more than once",
            if phase == 2 { " (RESULTS leader killed)" } else { "" },
            took.as_secs_f64(),
            rows[0],
            100.0 * share(rows[0]),
            rows[1],
            100.0 * share(rows[1]),
        );
        assert_eq!(distinct, total, "phase {phase}: every result stored");
        if phase == 1 {
            assert_eq!(twice, 0, "phase 1: no result stored twice");
            assert_eq!(
                rows[0] + rows[1],
                total as u64,
                "phase 1: one row per result"
            );
            for (lane, n) in rows.iter().enumerate() {
                assert!(
                    share(*n) >= 0.2,
                    "phase 1: loop {lane} stored {n} of {total}: both loops take a real share"
                );
            }
        } else {
            // A batch whose ack was lost in the failover comes again (and collapses in
            // ClickHouse); never more than the unacked window, never the whole run as
            // when each loop had a consumer of its own.
            assert!(
                twice <= window,
                "phase 2: {twice} results stored twice, more than the unacked window {window}"
            );
            for (lane, n) in rows.iter().enumerate() {
                assert!(*n > 0, "phase 2: loop {lane} stored nothing");
            }
        }
    }
}
