//! The streaming API (`/stream/`) on a real socket, with NATS (`NATS_URL`) and
//! ClickHouse (`CLICKHOUSE_URL`) from the local stack: the backlog joined to the live
//! stream without gap or duplicate, a slow client dropped, the protocol's errors and
//! unsubscribe, and probe connect/disconnect events from `vantage-sessions`. Each test
//! is skipped (`vantage_testkit::stack_var`: a failure under `CI=true`) when a variable it
//! needs is unset.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use vantage_api::catalog::EmptyCatalog;
use vantage_api::rows::{ClickHouseRows, Rows};
use vantage_api::stream::metrics::Kind;
use vantage_api::stream::{Hub, StreamConfig};
use vantage_api::{router, AppState, Metrics};
use vantage_platform::store::{ResultRow, Store};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn unique() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    u64::from(std::process::id()) * 1000 + (nanos % 1000) as u64
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The API's router with `hub`, on a free port.
async fn serve(hub: Arc<Hub>, rows: Arc<dyn Rows>) -> SocketAddr {
    let state = Arc::new(AppState {
        catalog: Arc::new(EmptyCatalog),
        rows,
        live: None,
        stream: Some(hub),
        scheme: "http",
        public_url: None,
        create_timeout: Duration::from_secs(1),
        max_requested: 1000,
        metrics: Metrics::default(),
        console: Arc::new(vantage_api::console::EmbeddedAssets),
        engines: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = router(state);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn connect(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/stream/"))
        .await
        .expect("websocket");
    ws
}

async fn send(ws: &mut Ws, msg: Value) {
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .expect("send");
}

/// The next `[type, payload]`, or None when the stream ends or `wait` passes.
async fn next(ws: &mut Ws, wait: Duration) -> Option<(String, Value)> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("frames are JSON");
                let name = v[0].as_str().expect("a type").to_owned();
                return Some((name, v[1].clone()));
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) | Err(_) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn result(msm: u64, prb: u32, id: &str, ts: i64, pad: usize) -> Value {
    json!({"result_id": id, "fw": 5020, "lts": -1, "msm_id": msm, "prb_id": prb, "timestamp": ts,
        "type": "ping", "af": 4, "from": "192.0.2.1", "src_addr": "192.0.2.1", "dst_addr": "192.0.2.9",
        "proto": "ICMP", "sent": 1, "rcvd": 1, "min": 1.5, "avg": 1.5, "max": 1.5, "size": 48,
        "result": [{"rtt": 1.5}], "pad": "x".repeat(pad)})
}

fn row(v: &Value) -> ResultRow {
    ResultRow::from_payload(v.to_string().as_bytes(), now() as u32).expect("a result row")
}

#[tokio::test]
async fn backlog_then_live_without_gap_or_duplicate() {
    let test = "backlog_then_live_without_gap_or_duplicate";
    let (Some(ch_url), Some(nats_url)) = (
        vantage_testkit::stack_var("CLICKHOUSE_URL", test),
        vantage_testkit::stack_var("NATS_URL", test),
    ) else {
        return;
    };
    let id = unique();
    let db = format!("vantage_stream_test_{id}");
    let store = Store::new(&ch_url, &db).expect("store");
    store.migrate().await.expect("migrate");
    let msm = 810_000_000 + id;
    let nc = async_nats::connect(nats_url.as_str()).await.expect("nats");

    // Stored before anyone streams: backlog only.
    let old: Vec<Value> = (0..30)
        .map(|i| {
            result(
                msm,
                1 + i % 3,
                &format!("a{i}"),
                now() - 600 + i64::from(i),
                0,
            )
        })
        .collect();
    store
        .insert_results(&old.iter().map(row).collect::<Vec<_>>())
        .await
        .expect("insert");
    // A result of another measurement, which must not appear.
    store
        .insert_results(&[row(&result(msm + 1, 1, "other", now(), 0))])
        .await
        .expect("insert");

    let rows: Arc<dyn Rows> = Arc::new(ClickHouseRows::new(&ch_url, &db));
    let hub = Hub::new(
        StreamConfig {
            catch_up: Duration::from_secs(2),
            ..StreamConfig::default()
        },
        Some(nc.clone()),
        rows.clone(),
        Arc::new(EmptyCatalog),
        None,
        "http",
    );
    let addr = serve(hub.clone(), rows).await;

    // Meanwhile results keep coming: published on NATS, stored by a "collector" that
    // lags 150 ms behind, so some are in both, some only live, some stored late.
    let subject = vantage_core::nats::result_subject("ping", msm);
    let publisher = {
        let (nc, store) = (nc.clone(), Store::new(&ch_url, &db).expect("store"));
        tokio::spawn(async move {
            let mut lagging: Vec<Value> = Vec::new();
            for i in 0..120 {
                let r = result(msm, 1 + i % 3, &format!("b{i}"), now(), 0);
                nc.publish(subject.clone(), r.to_string().into())
                    .await
                    .expect("publish");
                lagging.push(r);
                if lagging.len() > 10 {
                    let due: Vec<Value> = lagging.drain(..lagging.len() - 10).collect();
                    store
                        .insert_results(&due.iter().map(row).collect::<Vec<_>>())
                        .await
                        .expect("insert");
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            nc.flush().await.expect("flush");
            store
                .insert_results(&lagging.iter().map(row).collect::<Vec<_>>())
                .await
                .expect("insert");
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Published before the subscription, stored only after the backlog was read: the
    // catch-up read finds it.
    let late = result(msm, 9, "late", now(), 0);
    nc.publish(
        vantage_core::nats::result_subject("ping", msm),
        late.to_string().into(),
    )
    .await
    .expect("publish");
    nc.flush().await.expect("flush");

    let mut ws = connect(addr).await;
    let params = json!({"stream_type": "result", "msm": msm, "sendBacklog": true});
    send(&mut ws, json!(["atlas_subscribe", params])).await;
    let (name, echoed) = next(&mut ws, Duration::from_secs(10))
        .await
        .expect("an answer");
    assert_eq!((name.as_str(), &echoed), ("atlas_subscribed", &params));
    {
        let store = Store::new(&ch_url, &db).expect("store");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            store.insert_results(&[row(&late)]).await.expect("insert");
        });
    }

    let expected: HashSet<String> = (0..30)
        .map(|i| format!("a{i}"))
        .chain((0..120).map(|i| format!("b{i}")))
        .chain(["late".to_owned()])
        .collect();
    let mut got: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let Some((name, payload)) = next(&mut ws, Duration::from_secs(5)).await else {
            break;
        };
        assert_eq!(name, "atlas_result", "{payload}");
        assert_eq!(payload["msm_id"], msm);
        got.push(payload["result_id"].as_str().expect("id").to_owned());
        let have: HashSet<&String> = got.iter().collect();
        if have.len() == expected.len() {
            break;
        }
    }
    publisher.await.expect("publisher");
    // Past the catch-up read: anything sent twice would be here now.
    while let Some((name, payload)) = next(&mut ws, Duration::from_secs(3)).await {
        assert_eq!(name, "atlas_result");
        got.push(payload["result_id"].as_str().expect("id").to_owned());
    }
    let unique: HashSet<String> = got.iter().cloned().collect();
    assert_eq!(unique.len(), got.len(), "a result was sent twice: {got:?}");
    let missing: Vec<&String> = expected.difference(&unique).collect();
    assert!(missing.is_empty(), "results missing: {missing:?}");
    assert_eq!(unique, expected);
    // The backlog comes first, oldest first.
    assert_eq!(got[0], "a0");
    assert_eq!(hub.metrics.sent_of(Kind::Result), got.len() as u64);

    drop(ws);
    let _ = clickhouse::Client::default()
        .with_url(&ch_url)
        .query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_dropped_with_an_error() {
    let Some(nats_url) = vantage_testkit::stack_var("NATS_URL", "slow stream client test") else {
        return;
    };
    let nc = async_nats::connect(nats_url.as_str()).await.expect("nats");
    let rows: Arc<dyn Rows> = Arc::new(ClickHouseRows::new("http://127.0.0.1:9", "db"));
    let hub = Hub::new(
        StreamConfig {
            queue: 16,
            ..StreamConfig::default()
        },
        Some(nc.clone()),
        rows.clone(),
        Arc::new(EmptyCatalog),
        None,
        "http",
    );
    let addr = serve(hub.clone(), rows).await;
    let msm = 820_000_000 + unique();

    // A client that subscribes and then reads nothing.
    let mut slow = connect(addr).await;
    send(
        &mut slow,
        json!(["atlas_subscribe", {"stream_type": "result", "msm": msm}]),
    )
    .await;
    assert_eq!(
        next(&mut slow, Duration::from_secs(10)).await.map(|f| f.0),
        Some("atlas_subscribed".to_owned())
    );
    // A client that keeps up.
    let mut fast = connect(addr).await;
    send(
        &mut fast,
        json!(["atlas_subscribe", {"stream_type": "result", "msm": msm}]),
    )
    .await;
    assert_eq!(
        next(&mut fast, Duration::from_secs(10)).await.map(|f| f.0),
        Some("atlas_subscribed".to_owned())
    );
    let reader = tokio::spawn(async move {
        let mut n = 0u32;
        while let Some((name, _)) = next(&mut fast, Duration::from_secs(5)).await {
            assert_eq!(name, "atlas_result");
            n += 1;
            if n == 400 {
                break;
            }
        }
        (n, fast)
    });

    // 400 results of 64 KB: far more than the socket buffers and 16 queued frames.
    let subject = vantage_core::nats::result_subject("ping", msm);
    let publisher = {
        let nc = nc.clone();
        tokio::spawn(async move {
            for i in 0..400 {
                let r = result(msm, 1, &format!("s{i}"), now(), 64 << 10);
                nc.publish(subject.clone(), r.to_string().into())
                    .await
                    .expect("publish");
                // At a pace a reading client keeps up with.
                nc.flush().await.expect("flush");
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while hub.metrics.slow_dropped.get() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        hub.metrics.slow_dropped.get(),
        1,
        "the slow client is dropped"
    );

    // What reached the slow client: results, then the error, then the end.
    let mut last = None;
    let mut results = 0;
    while let Some((name, payload)) = next(&mut slow, Duration::from_secs(5)).await {
        if name == "atlas_result" {
            results += 1;
        }
        last = Some((name, payload));
    }
    let (name, payload) = last.expect("frames");
    assert_eq!(name, "atlas_error");
    assert!(
        payload
            .as_str()
            .is_some_and(|s| s.contains("reads too slowly")),
        "{payload}"
    );
    assert!(results < 400, "the slow client got everything: {results}");
    publisher.await.expect("publisher");
    // The client that kept up got every result.
    let (n, _fast) = reader.await.expect("reader");
    assert_eq!(n, 400);
    let deadline = Instant::now() + Duration::from_secs(5);
    while hub.metrics.clients.get() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        hub.metrics.clients.get(),
        1,
        "the slow client's session ended"
    );
}

#[tokio::test]
async fn errors_name_the_field_and_unsubscribe_releases_nats() {
    let Some(nats_url) = vantage_testkit::stack_var("NATS_URL", "stream protocol test") else {
        return;
    };
    let nc = async_nats::connect(nats_url.as_str()).await.expect("nats");
    let rows: Arc<dyn Rows> = Arc::new(ClickHouseRows::new("http://127.0.0.1:9", "db"));
    let hub = Hub::new(
        StreamConfig::default(),
        Some(nc.clone()),
        rows.clone(),
        Arc::new(EmptyCatalog),
        None,
        "http",
    );
    let addr = serve(hub.clone(), rows).await;
    let msm = 830_000_000 + unique();
    let mut ws = connect(addr).await;
    let wait = Duration::from_secs(10);

    send(
        &mut ws,
        json!(["atlas_subscribe", {"stream_type": "result", "msm": msm, "colour": "red"}]),
    )
    .await;
    let (name, payload) = next(&mut ws, wait).await.expect("an answer");
    assert_eq!(name, "atlas_error");
    assert!(
        payload.as_str().is_some_and(|s| s.starts_with("colour:")),
        "{payload}"
    );
    send(
        &mut ws,
        json!(["atlas_subscribe", {"stream_type": "result", "type": "smtp"}]),
    )
    .await;
    let (name, payload) = next(&mut ws, wait).await.expect("an answer");
    assert_eq!(name, "atlas_error");
    assert!(payload.as_str().is_some_and(|s| s.starts_with("type:")));
    assert_eq!(hub.live_topics().await, 0);

    let params = json!({"stream_type": "result", "msm": msm, "prb": 2});
    send(&mut ws, json!(["atlas_subscribe", params])).await;
    assert_eq!(
        next(&mut ws, wait).await,
        Some(("atlas_subscribed".to_owned(), params.clone()))
    );
    assert_eq!(hub.live_topics().await, 1);
    let subject = vantage_core::nats::result_subject("ping", msm);
    for prb in [1, 2] {
        nc.publish(
            subject.clone(),
            result(msm, prb, &format!("p{prb}"), now(), 0)
                .to_string()
                .into(),
        )
        .await
        .expect("publish");
    }
    let (name, payload) = next(&mut ws, wait).await.expect("a result");
    assert_eq!(
        (name.as_str(), payload["prb_id"].as_u64()),
        ("atlas_result", Some(2))
    );

    send(&mut ws, json!(["atlas_unsubscribe", params])).await;
    assert_eq!(
        next(&mut ws, wait).await,
        Some(("atlas_unsubscribed".to_owned(), params.clone()))
    );
    assert_eq!(
        hub.live_topics().await,
        0,
        "the NATS subscription is given back"
    );
    nc.publish(
        subject.clone(),
        result(msm, 2, "late", now(), 0).to_string().into(),
    )
    .await
    .expect("publish");
    assert_eq!(next(&mut ws, Duration::from_millis(500)).await, None);
}

#[tokio::test]
async fn probe_sessions_become_probestatus_events() {
    let Some(nats_url) = vantage_testkit::stack_var("NATS_URL", "probestatus test") else {
        return;
    };
    let nc = async_nats::connect(nats_url.as_str()).await.expect("nats");
    let js = async_nats::jetstream::new(nc.clone());
    let bucket = vantage_core::nats::SESSIONS_BUCKET;
    let kv = match js.get_key_value(bucket).await {
        Ok(kv) => kv,
        Err(_) => js
            .create_key_value(async_nats::jetstream::kv::Config {
                bucket: bucket.to_owned(),
                history: 1,
                ..Default::default()
            })
            .await
            .expect("bucket"),
    };
    let rows: Arc<dyn Rows> = Arc::new(ClickHouseRows::new("http://127.0.0.1:9", "db"));
    let hub = Hub::new(
        StreamConfig::default(),
        Some(nc.clone()),
        rows.clone(),
        Arc::new(EmptyCatalog),
        None,
        "http",
    );
    hub.start();
    let addr = serve(hub.clone(), rows).await;
    let prb = 3_000_000 + (unique() % 1_000_000) as u32;
    let mut ws = connect(addr).await;
    let params = json!({"stream_type": "probestatus", "prb": prb});
    send(&mut ws, json!(["atlas_subscribe", params])).await;
    assert_eq!(
        next(&mut ws, Duration::from_secs(10)).await.map(|f| f.0),
        Some("atlas_subscribed".to_owned())
    );
    // Let the watch start (records before it are the starting state).
    tokio::time::sleep(Duration::from_secs(1)).await;

    let key = vantage_core::nats::probe_key(prb);
    let record = json!({"v": 1, "probe_id": prb, "controller": "ctr-test", "address": "192.0.2.7",
        "connected_since_ms": 1_700_000_000_000i64, "fw": 1});
    kv.put(&key, record.to_string().into()).await.expect("put");
    // Another probe's session is not this subscription's business.
    kv.put(
        vantage_core::nats::probe_key(prb + 1),
        record.to_string().into(),
    )
    .await
    .expect("put");
    let (name, ev) = next(&mut ws, Duration::from_secs(10))
        .await
        .expect("connect");
    assert_eq!(name, "atlas_probestatus");
    assert_eq!(ev["prb_id"], prb);
    assert_eq!(ev["event"], "connect");
    assert_eq!(ev["controller"], "ctr-test");
    assert_eq!(ev["timestamp"], 1_700_000_000);

    kv.delete(&key).await.expect("delete");
    let (name, ev) = next(&mut ws, Duration::from_secs(10))
        .await
        .expect("disconnect");
    assert_eq!(name, "atlas_probestatus");
    assert_eq!(
        (ev["prb_id"].as_u64(), ev["event"].as_str()),
        (Some(u64::from(prb)), Some("disconnect"))
    );
    assert_eq!(ev["controller"], "ctr-test");
    assert!(ev["timestamp"]
        .as_i64()
        .is_some_and(|t| (t - now()).abs() < 60));
    let _ = kv.delete(vantage_core::nats::probe_key(prb + 1)).await;
    assert_eq!(hub.metrics.sent_of(Kind::ProbeStatus), 2);
}
