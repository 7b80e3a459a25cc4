//! vantage on a replicated, sharded ClickHouse cluster: two shards of two replicas and one
//! ZooKeeper, started by `e2e/stack/clickhouse-cluster.sh up` (its env file gives
//! `CLICKHOUSE_URLS`, `CLICKHOUSE_CLUSTER` and `CH_CLUSTER_DIR`). Run through
//! `e2e/cluster/clickhouse-tests.sh`; without the cluster the tests print SKIPPED (under
//! `CI=true` they fail instead). They stop and start cluster nodes, so they run one at a
//! time (`--test-threads=1`).
//!
//! Real processes throughout: the cluster, a private `nats-server` (vantage-testkit), the
//! `vantage` binary, and a publisher that sends RIPE Atlas results as controllers do.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use vantage_core::nats as names;
use vantage_platform::bus::{Bus, Retention};
use vantage_testkit::NatsServer;

use vantage_testkit::{ch_cluster as cluster, ch_post as post, ChCluster as Cluster};

fn number(url: &str, sql: &str) -> Option<usize> {
    post(url, sql).ok()?.trim().parse().ok()
}

/// Poll until `sql` on `url` returns at least `at_least` or `timeout` passes.
fn wait_count(url: &str, sql: &str, at_least: usize, timeout: Duration) -> usize {
    let start = Instant::now();
    loop {
        let n = number(url, sql).unwrap_or(0);
        if n >= at_least || start.elapsed() > timeout {
            return n;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `e2e/stack/clickhouse-cluster.sh <args>` (stop-node N, start-node N, ...).
fn ctl(args: &[&str]) {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../e2e/stack/clickhouse-cluster.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .expect("run clickhouse-cluster.sh");
    assert!(
        out.status.success(),
        "clickhouse-cluster.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn vantage(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vantage"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env_remove("CLICKHOUSE_CLUSTER")
        .output()
        .expect("run vantage")
}

fn databases_named(c: &Cluster, db: &str) -> Vec<usize> {
    c.urls
        .iter()
        .map(|u| {
            number(
                u,
                &format!("SELECT count() FROM system.databases WHERE name = '{db}'"),
            )
            .expect("node answers")
        })
        .collect()
}

#[test]
fn ch_cluster_bad_input_is_refused_before_anything_is_created() {
    let Some(c) = cluster("ch_cluster_bad_input_is_refused_before_anything_is_created") else {
        return;
    };
    let db = vantage_testkit::unique("vclu_bad_");
    let url = c.urls[0].as_str();

    // A cluster the servers do not know.
    let out = vantage(&[
        "migrate",
        "--clickhouse-url",
        url,
        "--clickhouse-db",
        &db,
        "--clickhouse-cluster",
        "no_such_cluster",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown cluster is refused");
    for want in [
        "--clickhouse-cluster",
        "CLICKHOUSE_CLUSTER",
        "no_such_cluster",
        &c.name,
    ] {
        assert!(err.contains(want), "the error names {want}: {err}");
    }
    assert_eq!(databases_named(&c, &db), [0, 0, 0, 0], "nothing created");

    // The API refuses the same name at start instead of serving.
    let out = vantage(&[
        "api",
        "--listen",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--clickhouse-url",
        url,
        "--clickhouse-db",
        &db,
        "--clickhouse-cluster",
        "no_such_cluster",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the API refuses an unknown cluster");
    assert!(
        err.contains("no_such_cluster") && err.contains("--clickhouse-cluster"),
        "the API's error names the setting: {err}"
    );

    // A name that is not an identifier.
    let out = vantage(&[
        "migrate",
        "--clickhouse-url",
        url,
        "--clickhouse-db",
        &db,
        "--clickhouse-cluster",
        "a-b",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--clickhouse-cluster"),
        "{err}"
    );

    // ZooKeeper unreachable: refused, nothing created; once it is back, the schema is made.
    ctl(&["stop-zookeeper"]);
    let out = vantage(&[
        "migrate",
        "--clickhouse-url",
        url,
        "--clickhouse-db",
        &db,
        "--clickhouse-cluster",
        &c.name,
    ]);
    ctl(&["start-zookeeper"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "no ZooKeeper, no cluster schema");
    for want in ["ZooKeeper", "--clickhouse-cluster", "CLICKHOUSE_CLUSTER"] {
        assert!(err.contains(want), "the error names {want}: {err}");
    }
    assert_eq!(databases_named(&c, &db), [0, 0, 0, 0], "nothing created");

    let start = Instant::now();
    let out = loop {
        let out = vantage(&[
            "migrate",
            "--clickhouse-url",
            url,
            "--clickhouse-db",
            &db,
            "--clickhouse-cluster",
            &c.name,
        ]);
        if out.status.success() || start.elapsed() > Duration::from_secs(60) {
            break out;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(
        out.status.success(),
        "migrate after ZooKeeper is back: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Idempotent: again from another node changes nothing.
    let again = vantage(&[
        "migrate",
        "--clickhouse-url",
        &c.urls[3],
        "--clickhouse-db",
        &db,
        "--clickhouse-cluster",
        &c.name,
    ]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "schema version 6"
    );
    for u in &c.urls {
        assert_eq!(
            number(u, &format!("SELECT count() FROM {db}.schema_migrations")),
            Some(6),
            "{u}: one ledger row per migration, replicated to every node"
        );
        let engines = post(
            u,
            &format!(
                "SELECT name, engine FROM system.tables WHERE database = '{db}' AND name LIKE 'results%' ORDER BY name"
            ),
        )
        .expect("tables");
        assert_eq!(
            engines, "results\tDistributed\nresults_local\tReplicatedReplacingMergeTree\n",
            "{u}"
        );
    }
    for u in &c.urls {
        let _ = post(u, &format!("DROP DATABASE IF EXISTS {db}"));
    }
}

const RESULTS: usize = 3_000;
const MSMS: usize = 8;

fn result(i: usize) -> (u64, String) {
    let msm = 1_000_001 + (i % MSMS) as u64;
    let body = serde_json::json!({
        "fw": 5020, "result_id": format!("clu-{i}"), "msm_id": msm, "prb_id": 1 + i % 50,
        "timestamp": 1_795_000_000 + i, "type": "ping", "af": 4, "from": "192.0.2.1",
        "src_addr": "192.0.2.1", "dst_addr": "198.51.100.7", "dst_name": "198.51.100.7",
        "proto": "ICMP", "sent": 3, "rcvd": 3, "min": 1.0, "avg": 1.5, "max": 2.0,
        "result": [{"rtt": 1.0}, {"rtt": 1.5}, {"rtt": 2.0}],
    })
    .to_string();
    (msm, body)
}

fn collector(nats: &NatsServer, c: &Cluster, db: &str, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_vantage"))
        .args([
            "collector",
            "--nats-url",
            &nats.url(),
            "--clickhouse-url",
            &c.urls[0],
        ])
        .args(["--clickhouse-cluster", &c.name, "--clickhouse-db", db])
        .args(["--max-batch", "200", "--max-wait-ms", "100"])
        .args(["--ack-wait-secs", "3", "--metrics-addr", "127.0.0.1:0"])
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("start vantage collector")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_cluster_collector_stores_every_result_once_through_replica_and_shard_outages() {
    let Some(c) =
        cluster("ch_cluster_collector_stores_every_result_once_through_replica_and_shard_outages")
    else {
        return;
    };
    let nats = NatsServer::start().expect("nats-server (make setup)");
    let db = vantage_testkit::unique("vclu_ingest_");
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("collector.log");
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    let bus = Bus::open(&nats.url(), "cluster-test", Retention::default())
        .await
        .expect("declare the stream");

    // Results arrive steadily for about 25 s, over 8 measurements (both shards).
    let js = bus.js.clone();
    let publisher = tokio::spawn(async move {
        for i in 0..RESULTS {
            let (msm, body) = result(i);
            let mut headers = async_nats::HeaderMap::new();
            let id = format!("clu-{i}");
            headers.insert("Nats-Msg-Id", id.as_str());
            js.publish_with_headers(names::result_subject("ping", msm), headers, body.into())
                .await
                .expect("publish")
                .await
                .expect("stream ack");
            if i % 12 == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    let mut col = collector(&nats, &c, &db, &log);
    let entry = c.urls[0].clone();
    let rows = format!("SELECT count() FROM {db}.results");
    let r = rows.clone();
    let seen = tokio::task::block_in_place(|| wait_count(&entry, &r, 300, Duration::from_secs(60)));
    assert!(
        seen >= 300,
        "the collector stores results ({seen} rows); log: {}",
        logs()
    );

    // One replica of each shard killed (node 2: shard 1, node 3: shard 2) during ingest.
    ctl(&["stop-node", "2"]);
    ctl(&["stop-node", "3"]);
    let r = rows.clone();
    let more =
        tokio::task::block_in_place(|| wait_count(&entry, &r, seen + 500, Duration::from_secs(60)));
    assert!(
        more >= seen + 500,
        "ingest goes on with one replica per shard ({seen} -> {more}); log: {}",
        logs()
    );
    // Queries through Distributed answer on the living nodes, from both shards.
    for u in [&c.urls[0], &c.urls[3]] {
        let per_shard = post(
            u,
            &format!(
                "SELECT count() > 0 FROM {db}.results GROUP BY intHash64(msm_id) % 2 ORDER BY 1"
            ),
        );
        assert_eq!(
            per_shard.as_deref(),
            Ok("1\n1\n"),
            "{u} answers from both shards"
        );
        assert!(
            number(u, &format!("SELECT count() FROM {db}.results FINAL")).is_some(),
            "{u} FINAL"
        );
    }
    ctl(&["start-node", "2"]);
    ctl(&["start-node", "3"]);

    // Shard 2's whole replica set restarted: its INSERTs fail meanwhile and are retried.
    ctl(&["stop-node", "3"]);
    ctl(&["stop-node", "4"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    ctl(&["start-node", "3"]);
    ctl(&["start-node", "4"]);

    publisher.await.expect("publisher");
    let uniq = format!("SELECT uniqExact(result_id) FROM {db}.results");
    let stored = tokio::task::block_in_place(|| {
        wait_count(&entry, &uniq, RESULTS, Duration::from_secs(120))
    });
    let _ = col.kill();
    let _ = col.wait();
    assert_eq!(stored, RESULTS, "every result id stored; log: {}", logs());
    assert!(
        logs().contains("INSERT failed"),
        "the shard outage was felt and retried"
    );

    // Exactly once through Distributed: FINAL collapses redelivered and retried copies
    // (a copy always lands on the shard of its msm_id, where its twin is).
    assert_eq!(
        number(&entry, &format!("SELECT count() FROM {db}.results FINAL")),
        Some(RESULTS)
    );
    assert_eq!(
        number(
            &entry,
            &format!("SELECT count() FROM (SELECT result_id, count() AS n FROM {db}.results FINAL GROUP BY result_id HAVING n > 1)")
        ),
        Some(0)
    );
    // Every measurement lives on one shard, and the replicas of a shard converge.
    let local = |u: &str| number(u, &format!("SELECT count() FROM {db}.results_local FINAL"));
    let msms = |u: &str| {
        number(
            u,
            &format!("SELECT uniqExact(msm_id) FROM {db}.results_local"),
        )
    };
    // Restarted replicas catch up from their twins: wait until each shard's two agree.
    let start = Instant::now();
    let per_node = tokio::task::block_in_place(|| loop {
        let n: Vec<usize> = c.urls.iter().map(|u| local(u).unwrap_or(0)).collect();
        if (n[0] == n[1] && n[2] == n[3] && n[0] + n[2] == RESULTS)
            || start.elapsed() > Duration::from_secs(60)
        {
            break n;
        }
        std::thread::sleep(Duration::from_millis(300));
    });
    let (s1, s2) = (per_node[0], per_node[2]);
    assert_eq!(
        per_node,
        [s1, s1, s2, s2],
        "the replicas of each shard hold the same rows"
    );
    assert_eq!(s1 + s2, RESULTS, "the shards split the results");
    assert!(s1 > 0 && s2 > 0, "both shards hold results ({s1}, {s2})");
    assert_eq!(
        msms(&c.urls[0]).unwrap_or(0) + msms(&c.urls[2]).unwrap_or(0),
        MSMS,
        "no measurement on two shards"
    );
    for u in &c.urls {
        let _ = post(u, &format!("DROP DATABASE IF EXISTS {db}"));
    }
}
