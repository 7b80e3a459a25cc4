//! The collector is killed mid-stream, then ClickHouse is down for 30 s, while results
//! keep arriving: in the end every result id is stored exactly once.
//!
//! Real processes throughout: a private `nats-server` and `clickhouse-server`
//! (vantage-testkit, so the shared stack is not disturbed), the `vantage collector`
//! binary, and a publisher that sends RIPE Atlas results the way controllers do.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use vantage_core::nats as names;
use vantage_platform::bus::{Bus, Retention};
use vantage_testkit::{ClickHouseServer, NatsServer};

const RESULTS: usize = 3_000;
const DB: &str = "chaos";

fn result(i: usize) -> String {
    serde_json::json!({
        "fw": 5020, "result_id": format!("chaos-{i}"), "msm_id": 1_000_001, "prb_id": 1 + i % 50,
        "timestamp": 1_795_000_000 + i, "type": "ping", "af": 4, "from": "192.0.2.1",
        "src_addr": "192.0.2.1", "dst_addr": "198.51.100.7", "dst_name": "198.51.100.7",
        "proto": "ICMP", "sent": 3, "rcvd": 3, "min": 1.0, "avg": 1.5, "max": 2.0,
        "result": [{"rtt": 1.0}, {"rtt": 1.5}, {"rtt": 2.0}],
    })
    .to_string()
}

fn collector(nats: &NatsServer, ch: &ClickHouseServer, log: &std::path::Path) -> Child {
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
            &ch.url(),
        ])
        .args([
            "--clickhouse-db",
            DB,
            "--max-batch",
            "200",
            "--max-wait-ms",
            "100",
        ])
        .args(["--ack-wait-secs", "3", "--metrics-addr", "127.0.0.1:0"])
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("start vantage collector")
}

fn count(ch: &ClickHouseServer, sql: &str) -> Option<usize> {
    ch.query(sql)?.trim().parse().ok()
}

/// Poll the number `sql` returns until it reaches `at_least` or `timeout` passes.
fn wait_count(ch: &ClickHouseServer, sql: &str, at_least: usize, timeout: Duration) -> usize {
    let start = Instant::now();
    loop {
        let n = count(ch, sql).unwrap_or(0);
        if n >= at_least || start.elapsed() > timeout {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_rows(ch: &ClickHouseServer, at_least: usize, timeout: Duration) -> usize {
    wait_count(
        ch,
        &format!("SELECT count() FROM {DB}.results"),
        at_least,
        timeout,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_kill_and_clickhouse_outage_store_every_result_exactly_once() {
    let nats = NatsServer::start().expect("nats-server (make setup)");
    let mut ch = ClickHouseServer::start().expect("clickhouse-server (make setup)");
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("collector.log");
    let bus = Bus::open(&nats.url(), "chaos-test", Retention::default())
        .await
        .expect("declare the stream");

    // Results arrive steadily for about 20 s, as controllers publish them.
    let js = bus.js.clone();
    let publisher = tokio::spawn(async move {
        for i in 0..RESULTS {
            let mut headers = async_nats::HeaderMap::new();
            let id = format!("chaos-{i}");
            headers.insert("Nats-Msg-Id", id.as_str());
            js.publish_with_headers(
                names::result_subject("ping", 1_000_001),
                headers,
                result(i).into(),
            )
            .await
            .expect("publish")
            .await
            .expect("stream ack");
            if i % 15 == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });

    let mut c = collector(&nats, &ch, &log);
    let seen = tokio::task::block_in_place(|| wait_rows(&ch, 300, Duration::from_secs(30)));
    assert!(
        seen >= 300,
        "the collector stores results before the kill ({seen} rows); log: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Killed mid-stream: its fetched, unacked batch comes back to the next one.
    c.kill().expect("kill collector");
    c.wait().expect("reap collector");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut c = collector(&nats, &ch, &log);
    let before_outage =
        tokio::task::block_in_place(|| wait_rows(&ch, seen + 300, Duration::from_secs(30)));
    assert!(
        before_outage > seen,
        "the restarted collector stores results"
    );

    // ClickHouse down for 30 s while results keep coming.
    ch.kill();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(
        c.try_wait().expect("collector status").is_none(),
        "the collector waits out the outage"
    );
    ch.restart().expect("restart clickhouse-server");

    publisher.await.expect("publisher");
    let stored = tokio::task::block_in_place(|| {
        wait_count(
            &ch,
            &format!("SELECT uniqExact(result_id) FROM {DB}.results"),
            RESULTS,
            Duration::from_secs(90),
        )
    });
    let _ = c.kill();
    let _ = c.wait();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(stored, RESULTS, "every result id stored; log: {logs}");
    assert!(
        logs.contains("INSERT failed"),
        "the outage was felt and retried"
    );
    // Exactly once: duplicates from redelivery collapse (ReplacingMergeTree), and no
    // result is stored under a wrong id.
    ch.query(&format!("OPTIMIZE TABLE {DB}.results FINAL"))
        .expect("optimize");
    assert_eq!(
        count(&ch, &format!("SELECT count() FROM {DB}.results")),
        Some(RESULTS)
    );
    assert_eq!(
        count(
            &ch,
            &format!(
                "SELECT count() FROM {DB}.results WHERE result_id LIKE 'chaos-%' AND rcvd = 3"
            )
        ),
        Some(RESULTS)
    );
}
