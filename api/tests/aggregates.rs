//! The console's ClickHouse routes against ClickHouse 18.16 (`CLICKHOUSE_URL`, the local
//! stack; skipped with a SKIPPED line without it, and a failure under CI=true): a
//! measurement's summary and per-probe rows for each type, a probe's results and
//! connection history, and `latest/`, on a database of this run with known rows.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use vantage_api::catalog::FixedCatalog;
use vantage_api::rows::ClickHouseRows;
use vantage_api::{router, AppState, Metrics};
use vantage_crd::Probe;
use vantage_platform::store::Store;

fn probe(id: u32) -> Arc<Probe> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "vantage.dev/v1alpha1", "kind": "Probe", "metadata": {"name": format!("probe-{id}")},
            "spec": {"id": id, "public_key": "ssh-ed25519 AAAA"},
        }))
        .expect("probe"),
    )
}

/// One results row (the columns the routes read).
fn result(id: &str, msm: u64, prb: u32, kind: &str, ts: u32) -> String {
    format!(
        "('{id}', {msm}, {prb}, '{kind}', {ts}, '{{\"result_id\":\"{id}\",\"msm_id\":{msm},\"prb_id\":{prb},\"timestamp\":{ts}}}', {ts})"
    )
}

const RESULT_COLUMNS: &str = "(result_id, msm_id, prb_id, type, timestamp, raw, inserted_at)";

async fn fill(store: &Store) {
    let db = store.database();
    let results = [
        result("p1", 101, 1, "ping", 1000),
        result("p2", 101, 1, "ping", 1060),
        result("p3", 101, 2, "ping", 1000),
        result("p4", 101, 2, "ping", 1200),
        // p4 delivered twice (not merged yet): latest/ still answers it once.
        result("p4", 101, 2, "ping", 1200),
        result("d1", 102, 1, "dns", 2000),
        result("d2", 102, 1, "dns", 2010),
        result("d3", 102, 2, "dns", 2020),
        result("d4", 102, 2, "dns", 2030),
        result("t1", 103, 1, "traceroute", 3000),
        result("t2", 103, 2, "traceroute", 3004),
        result("h1", 104, 1, "http", 4000),
        result("h2", 104, 1, "http", 4000),
        result("h3", 104, 2, "http", 4000),
        result("s1", 105, 1, "sslcert", 5000),
        result("s2", 105, 2, "sslcert", 5000),
        result("n1", 106, 1, "ntp", 6000),
        result("n2", 106, 1, "ntp", 6000),
        result("n3", 106, 1, "ntp", 6000),
        // Probe 1 reports for eight measurements in one second (on both shards of a
        // cluster: the results are sharded by measurement).
        result("x208", 208, 1, "ping", 7000),
        result("x207", 207, 1, "ping", 7000),
        result("x206", 206, 1, "ping", 7000),
        result("x205", 205, 1, "ping", 7000),
        result("x204", 204, 1, "ping", 7000),
        result("x203", 203, 1, "ping", 7000),
        result("x202", 202, 1, "ping", 7000),
        result("x201", 201, 1, "ping", 7000),
    ];
    let statements = [
        format!("INSERT INTO {db}.results {RESULT_COLUMNS} VALUES {}", results.join(", ")),
        format!(
            "INSERT INTO {db}.ping_results (result_id, msm_id, prb_id, timestamp, sent, rcvd, loss, rtt_min, rtt_avg, rtt_max) VALUES \
             ('p1', 101, 1, 1000, 3, 3, 0, 10, 12, 14), ('p2', 101, 1, 1060, 3, 0, 100, -1, -1, -1), \
             ('p3', 101, 2, 1000, 3, 3, 0, 20, 22, 24), ('p4', 101, 2, 1200, 4, 3, 25, 30, 31, 32)"
        ),
        format!(
            "INSERT INTO {db}.dns_results (result_id, msm_id, prb_id, timestamp, rcode, rt, error) VALUES \
             ('d1', 102, 1, 2000, 'NOERROR', 10, ''), ('d2', 102, 1, 2010, 'NOERROR', 20, ''), \
             ('d3', 102, 2, 2020, 'SERVFAIL', 30, ''), ('d4', 102, 2, 2030, '', 0, 'timeout')"
        ),
        format!(
            "INSERT INTO {db}.traceroute_hops (result_id, msm_id, prb_id, timestamp, dst_addr, kind, hop, responders, rtts) VALUES \
             ('t1', 103, 1, 3000, '192.0.2.1', 'traceroute', 1, ['10.0.0.1'], [1, 2]), \
             ('t1', 103, 1, 3000, '192.0.2.1', 'traceroute', 2, ['192.0.2.1'], [5, 7]), \
             ('t2', 103, 2, 3004, '192.0.2.1', 'traceroute', 1, ['10.0.0.1'], [3]), \
             ('t2', 103, 2, 3004, '192.0.2.1', 'traceroute', 2, [], [])"
        ),
        format!(
            "INSERT INTO {db}.http_results (result_id, msm_id, prb_id, timestamp, status, rt, ttc, ttfb, error) VALUES \
             ('h1', 104, 1, 4000, 200, 100, 10, 50, ''), ('h2', 104, 1, 4000, 200, 200, 20, 60, ''), \
             ('h3', 104, 2, 4000, 404, 300, 30, 70, '')"
        ),
        format!(
            "INSERT INTO {db}.sslcert_results (result_id, msm_id, prb_id, timestamp, rt, valid_at_measurement, error) VALUES \
             ('s1', 105, 1, 5000, 40, 1, ''), ('s2', 105, 2, 5000, 60, 0, '')"
        ),
        format!(
            // n3 got no reply: -1 is the collector's placeholder, not an offset.
            "INSERT INTO {db}.ntp_results (result_id, msm_id, prb_id, timestamp, replies, offset_avg, rtt_avg, error) VALUES \
             ('n1', 106, 1, 6000, 3, 0.5, 4, ''), ('n2', 106, 1, 6000, 2, 1.5, 6, ''), ('n3', 106, 1, 6000, 0, -1, -1, '')"
        ),
        format!(
            "INSERT INTO {db}.probe_connections (prb_id, event, timestamp, controller, address, inserted_at) VALUES \
             (1, 'connect', 100, 'c1', '192.0.2.7', 1), (1, 'disconnect', 200, 'c1', '192.0.2.7', 1), \
             (1, 'connect', 200, 'c2', '192.0.2.8', 1), (1, 'connect', 200, 'c2', '192.0.2.8', 2), \
             (2, 'connect', 300, 'c1', '192.0.2.9', 1)"
        ),
    ];
    for sql in statements {
        store
            .execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

struct Fixture {
    app: axum::Router,
    store: Store,
}

async fn fixture(test: &str) -> Option<Fixture> {
    let url = vantage_testkit::stack_var("CLICKHOUSE_URL", test)?;
    let db = vantage_testkit::unique("vantage_test_agg_");
    // CLICKHOUSE_CLUSTER set (e2e/cluster/clickhouse-tests.sh): the same SQL on a cluster.
    let store = Store::new(&url, &db)
        .expect("store")
        .with_cluster(std::env::var("CLICKHOUSE_CLUSTER").ok().as_deref())
        .expect("cluster name");
    store.migrate().await.expect("migrate");
    fill(&store).await;
    let state = Arc::new(AppState {
        // Probes 1 and 2, no measurements: the types come from the stored results.
        catalog: Arc::new(FixedCatalog {
            probes: vec![probe(1), probe(2)],
            ..FixedCatalog::default()
        }),
        rows: Arc::new(ClickHouseRows::new(&url, &db)),
        live: None,
        stream: None,
        scheme: "http",
        public_url: None,
        create_timeout: Duration::from_secs(1),
        max_requested: 1000,
        metrics: Metrics::default(),
        console: Arc::new(vantage_api::console::EmbeddedAssets),
        engines: None,
    });
    Some(Fixture {
        app: router(state),
        store,
    })
}

impl Fixture {
    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let req = Request::get(uri)
            .header("host", "api.test")
            .body(Body::empty())
            .expect("request");
        let resp = self.app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{uri}: {e}: {}", String::from_utf8_lossy(&bytes)));
        (status, v)
    }

    async fn drop_db(self) {
        let sql = format!("DROP DATABASE IF EXISTS {}", self.store.database());
        self.store.execute(&sql).await.expect("drop");
    }
}

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-9)
}

/// The `result_id`s of a JSON array of results, in order.
fn result_ids(v: &Value) -> Vec<&str> {
    v.as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["result_id"].as_str())
        .collect()
}

#[tokio::test]
async fn summaries_per_type() {
    let Some(f) = fixture("summaries_per_type").await else {
        return;
    };
    let (st, s) = f
        .get("/api/vantage/v1/measurements/101/summary?buckets=2")
        .await;
    assert_eq!(st, StatusCode::OK, "{s}");
    assert_eq!(s["type"], "ping");
    // p4 twice in `results` (not merged): counted twice until ClickHouse merges it.
    assert_eq!(
        (s["results"].as_u64(), s["probes"].as_u64()),
        (Some(5), Some(2))
    );
    assert_eq!(
        (s["first"].as_u64(), s["last"].as_u64()),
        (Some(1000), Some(1200))
    );
    // 200 s over 2 buckets: 100 s, rounded up to 120 s; buckets start at multiples.
    assert_eq!(s["bucket_seconds"], 120);
    let series = s["series"].as_array().expect("series");
    assert_eq!(series.len(), 2, "{s}");
    let b = &series[0];
    assert_eq!((b["t"].as_u64(), b["n"].as_u64()), (Some(960), Some(3)));
    assert!(
        close(&b["rtt_min"], 10.0) && close(&b["rtt_avg"], 17.0) && close(&b["rtt_max"], 24.0),
        "{b}"
    );
    assert!(close(&b["loss"], 1.0 / 3.0), "{b}");
    let b = &series[1];
    assert_eq!(b["t"], 1200);
    assert!(close(&b["rtt_min"], 30.0) && close(&b["loss"], 0.25), "{b}");
    assert_eq!(s["breakdown"], json!({}));

    // One probe, and a window.
    let (_, s) = f
        .get("/api/vantage/v1/measurements/101/summary?prb_id=1&stop=1059")
        .await;
    assert_eq!(
        (s["results"].as_u64(), s["probes"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(close(&s["series"][0]["rtt_avg"], 12.0), "{s}");
    // A bucket with no replies has no RTTs (null), not zeros.
    let (_, s) = f
        .get("/api/vantage/v1/measurements/101/summary?prb_id=1&start=1060")
        .await;
    assert_eq!(s["series"][0]["rtt_min"], Value::Null, "{s}");
    assert!(close(&s["series"][0]["loss"], 1.0));
    // Nothing in the window: no series.
    let (_, s) = f
        .get("/api/vantage/v1/measurements/101/summary?start=5000")
        .await;
    assert_eq!(
        (s["results"].as_u64(), s["first"].clone()),
        (Some(0), Value::Null)
    );
    assert_eq!(s["series"], json!([]));

    let (_, s) = f.get("/api/vantage/v1/measurements/102/summary").await;
    assert_eq!(s["type"], "dns");
    assert_eq!(
        s["breakdown"],
        json!({"rcodes": [{"rcode": "NOERROR", "n": 2}, {"rcode": "", "n": 1}, {"rcode": "SERVFAIL", "n": 1}]})
    );
    let total_errors: u64 = s["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|b| b["errors"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total_errors, 1);

    let (_, s) = f
        .get("/api/vantage/v1/measurements/103/summary?buckets=1")
        .await;
    assert_eq!(s["type"], "traceroute");
    let b = &s["series"][0];
    assert_eq!(b["n"], 2, "one per result, not per hop: {s}");
    assert!(
        close(&b["rtt_avg"], 6.0) && close(&b["reached"], 0.5),
        "{b}"
    );

    let (_, s) = f
        .get("/api/vantage/v1/measurements/104/summary?buckets=1")
        .await;
    assert_eq!(
        s["breakdown"],
        json!({"status": [{"status": 200, "n": 2}, {"status": 404, "n": 1}]})
    );
    assert!(close(&s["series"][0]["ttfb_avg"], 60.0), "{s}");
    assert_eq!(s["series"][0]["errors"], 0);

    let (_, s) = f.get("/api/vantage/v1/measurements/105/summary").await;
    assert_eq!(s["breakdown"], json!({"valid": 1, "invalid": 1}));
    assert!(close(&s["series"][0]["valid"], 0.5) && close(&s["series"][0]["rt_avg"], 50.0));

    let (_, s) = f
        .get("/api/vantage/v1/measurements/106/summary?buckets=1")
        .await;
    assert!(
        close(&s["series"][0]["offset_avg"], 1.0) && close(&s["series"][0]["rtt_avg"], 5.0),
        "{s}"
    );

    let (st, e) = f.get("/api/vantage/v1/measurements/999/summary").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{e}");
    for (q, param) in [
        ("buckets=0", "buckets"),
        ("buckets=1001", "buckets"),
        ("prb_id=x", "prb_id"),
        ("start=-1", "start"),
        ("bucket=5", "bucket"),
    ] {
        let (st, e) = f
            .get(&format!("/api/vantage/v1/measurements/101/summary?{q}"))
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(
            e["error"]["errors"][0]["source"]["pointer"],
            format!("?{param}"),
            "{q}: {e}"
        );
    }
    f.drop_db().await;
}

#[tokio::test]
async fn per_probe_rows_results_connections_and_latest() {
    let Some(f) = fixture("per_probe_rows_results_connections_and_latest").await else {
        return;
    };
    let (st, v) = f.get("/api/vantage/v1/measurements/101/probes").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (
            rows[0]["prb_id"].as_u64(),
            rows[0]["n"].as_u64(),
            rows[0]["last"].as_u64()
        ),
        (Some(1), Some(2), Some(1060))
    );
    assert!(
        close(&rows[0]["rtt_avg"], 12.0) && close(&rows[0]["loss"], 0.5),
        "{v}"
    );
    let (_, v) = f
        .get("/api/vantage/v1/measurements/102/probes?limit=1")
        .await;
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0]["prb_id"].as_u64(),
            rows[0]["n"].as_u64(),
            rows[0]["last"].as_u64()
        ),
        (Some(1), Some(2), Some(2010))
    );
    assert!(close(&rows[0]["rt_avg"], 15.0), "{v}");
    let (_, v) = f.get("/api/vantage/v1/measurements/103/probes").await;
    assert!(close(&v["rows"][0]["rt_avg"], 6.0), "{v}");
    assert_eq!(
        v["rows"][1]["rt_avg"],
        Value::Null,
        "no answer at the last hop"
    );

    // A probe's newest results, newest first, each once.
    let req = Request::get("/api/vantage/v1/probes/2/results?limit=3")
        .body(Body::empty())
        .expect("request");
    let resp = f.app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let list: Vec<Value> = serde_json::from_slice(&bytes).expect("array");
    let ids: Vec<&str> = list
        .iter()
        .filter_map(|r| r["result_id"].as_str())
        .collect();
    assert_eq!(ids, ["s2", "h3", "t2"]);
    // All of them: the result stored twice (p4) once.
    let (_, v) = f.get("/api/vantage/v1/probes/2/results").await;
    let ids = result_ids(&v);
    assert_eq!(ids, ["s2", "h3", "t2", "d4", "d3", "p4", "p3"]);
    let (st, _) = f.get("/api/vantage/v1/probes/3/results").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Results of one second (x201..x208 at 7000) are cut by the answer's own order
    // (timestamp, then measurement, then result id) on every run: replicas behind one
    // address, reading through different cluster nodes, answer the same page.
    for _ in 0..10 {
        let (_, v) = f.get("/api/vantage/v1/probes/1/results?limit=2").await;
        let ids = result_ids(&v);
        assert_eq!(ids, ["x201", "x202"], "{v}");
    }

    let (st, v) = f.get("/api/vantage/v1/probes/1/connections").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        v,
        json!({"probe": 1, "connections": [
            {"event": "connect", "timestamp": 200, "controller": "c2", "address": "192.0.2.8"},
            {"event": "disconnect", "timestamp": 200, "controller": "c1", "address": "192.0.2.7"},
            {"event": "connect", "timestamp": 100, "controller": "c1", "address": "192.0.2.7"}]})
    );
    let (_, v) = f.get("/api/vantage/v1/probes/1/connections?limit=1").await;
    assert_eq!(v["connections"].as_array().map(Vec::len), Some(1));
    let (st, _) = f.get("/api/vantage/v1/probes/9/connections").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, e) = f.get("/api/vantage/v1/probes/1/connections?limit=0").await;
    assert_eq!(
        (st, e["error"]["errors"][0]["source"]["pointer"].clone()),
        (StatusCode::BAD_REQUEST, json!("?limit"))
    );

    // latest/: the newest result of each probe, once, by probe id.
    let (st, v) = f.get("/api/v2/measurements/101/latest/").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let ids = result_ids(&v);
    assert_eq!(ids, ["p2", "p4"]);
    let (_, v) = f.get("/api/v2/measurements/101/latest/?probe_ids=2").await;
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    // Three results of probe 1 in its newest second: the smallest result id, every time.
    for _ in 0..10 {
        let (_, v) = f.get("/api/v2/measurements/106/latest/").await;
        let ids = result_ids(&v);
        assert_eq!(ids, ["n1"], "{v}");
    }
    f.drop_db().await;
}
