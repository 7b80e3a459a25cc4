//! Connection history end to end on the local stack (`NATS_URL`, `CLICKHOUSE_URL`;
//! SKIPPED without them, a failure under CI=true): session records put into and
//! deleted from a scratch KV bucket (as controllers do) become `connect` and
//! `disconnect` rows in `probe_connections`, once each, also when the operator starts
//! again and replays the bucket.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, stream};
use serde_json::json;
use vantage_operator::connections::ConnectionLog;
use vantage_operator::probes::Sessions;
use vantage_platform::store::Store;

fn session(probe: u32, controller: &str, since_ms: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({"v": 1, "probe_id": probe, "controller": controller,
                               "address": "192.0.2.7", "connected_since_ms": since_ms}))
    .expect("json")
}

async fn rows(store: &Store) -> Vec<String> {
    let sql = format!(
        "SELECT prb_id, event, toUInt32(timestamp), controller FROM {}.probe_connections FINAL \
         ORDER BY prb_id, timestamp, event",
        store.database()
    );
    let out = store
        .fetch_formatted(&sql, "TabSeparated")
        .await
        .expect("query");
    String::from_utf8_lossy(&out)
        .lines()
        .map(str::to_owned)
        .collect()
}

async fn wait_rows(store: &Store, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = rows(store).await;
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Follow `kv` into `store` until the returned tasks are aborted (an operator run).
fn operator(kv: kv::Store, store: Store) -> [tokio::task::JoinHandle<()>; 2] {
    let log = ConnectionLog::default();
    [
        tokio::spawn(log.clone().write_loop(store, Duration::from_millis(200))),
        tokio::spawn(Sessions::default().follow(kv, log)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_become_connection_history() {
    let Some(nats) = vantage_testkit::stack_var("NATS_URL", "sessions_become_connection_history")
    else {
        return;
    };
    let Some(ch) =
        vantage_testkit::stack_var("CLICKHOUSE_URL", "sessions_become_connection_history")
    else {
        return;
    };
    let store = Store::new(&ch, &vantage_testkit::unique("vantage_test_conn_")).expect("store");
    store.migrate().await.expect("migrate");
    let js = jetstream::new(async_nats::connect(&nats).await.expect("connect to NATS"));
    let bucket = vantage_testkit::unique("vantage-test-sessions-");
    let kv = js
        .create_key_value(kv::Config {
            bucket: bucket.clone(),
            history: 1,
            storage: stream::StorageType::Memory,
            ..Default::default()
        })
        .await
        .expect("bucket");

    let run = operator(kv.clone(), store.clone());
    kv.put("probe.7", session(7, "c1", 1_700_000_000_000).into())
        .await
        .expect("put");
    // The same session again (a delivery update): no new row.
    kv.put("probe.7", session(7, "c1", 1_700_000_000_000).into())
        .await
        .expect("put");
    kv.put("probe.8", session(8, "c2", 1_700_000_100_000).into())
        .await
        .expect("put");
    tokio::time::sleep(Duration::from_millis(300)).await;
    kv.delete("probe.7").await.expect("delete");
    let got = wait_rows(&store, 3).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], "7\tconnect\t1700000000\tc1");
    assert!(got[1].starts_with("7\tdisconnect\t"), "{got:?}");
    assert!(
        got[1].ends_with("\tc1"),
        "the controller of the session it ends: {got:?}"
    );
    assert_eq!(got[2], "8\tconnect\t1700000100\tc2");

    // The operator starts again and replays the bucket: nothing new.
    for task in run {
        task.abort();
    }
    let run = operator(kv.clone(), store.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rows(&store).await, got);
    // A reconnection is a new row.
    kv.put("probe.7", session(7, "c2", 1_700_000_200_000).into())
        .await
        .expect("put");
    let again = wait_rows(&store, 4).await;
    assert_eq!(again.len(), 4, "{again:?}");
    assert!(
        again.contains(&"7\tconnect\t1700000200\tc2".to_owned()),
        "{again:?}"
    );
    for task in run {
        task.abort();
    }
    js.delete_key_value(&bucket).await.expect("delete bucket");
    store
        .execute(&format!("DROP DATABASE {}", store.database()))
        .await
        .expect("drop");
}
