//! The console's reads of one measurement with many results: the summary
//! (`/api/vantage/v1/measurements/{id}/summary`), the per-probe rows (`/probes`) and
//! `latest/`, through the API's router, next to `latest/`'s former query
//! (`argMax(raw, timestamp)` over FINAL) run straight on ClickHouse; and the probe map
//! (`/api/vantage/v1/probes/map`) of 10,000 probes, plain and gzip.
//!
//! ```text
//! source /tmp/vantage-stack/env
//! cargo run --release -p vantage-api --example bench_summary -- [rows, default 1000000] [runs, default 5]
//! ```
//! Rows (1,000 probes, one ping result each every 240 s) are inserted once with
//! `INSERT … SELECT FROM numbers(rows)` into `results` and `ping_results` of the
//! database `vantage_bench_summary` (kept for later runs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use futures::StreamExt;
use http_body_util::BodyExt;
use tower::ServiceExt;
use vantage_api::catalog::{EmptyCatalog, FixedCatalog};
use vantage_api::rows::{ClickHouseRows, Rows};
use vantage_api::{router, AppState, Metrics};
use vantage_platform::store::Store;

const DB: &str = "vantage_bench_summary";
const MSM: u64 = 8_000_001;

fn insert_sql(rows: u64) -> [String; 2] {
    let ts = "toUInt32(1714521600 + intDiv(number, 1000) * 240)";
    let prb = "toUInt32(number % 1000 + 1)";
    let raw = format!(
        "concat('{{\"result_id\":\"', toString(number), '\",\"fw\":5020,\"msm_id\":{MSM},\"prb_id\":', toString({prb}), \
         ',\"timestamp\":', toString({ts}), ',\"type\":\"ping\",\"af\":4,\"from\":\"198.51.100.7\",\"src_addr\":\"192.168.1.7\",\
         \"dst_addr\":\"192.0.2.9\",\"dst_name\":\"example.net\",\"proto\":\"ICMP\",\"size\":48,\"ttl\":57,\"step\":240,\"sent\":3,\
         \"rcvd\":3,\"dup\":0,\"min\":10.1,\"avg\":10.3,\"max\":10.5,\"result\":[{{\"rtt\":10.1}},{{\"rtt\":10.3}},{{\"rtt\":10.5}}]}}')"
    );
    let rtt = "10 + (number % 97) / 10";
    [
        format!(
            "INSERT INTO {DB}.results (result_id, msm_id, prb_id, type, timestamp, af, sent, rcvd, rtt_min, rtt_avg, rtt_max, raw, inserted_at) \
             SELECT toString(number), {MSM}, {prb}, 'ping', toDateTime({ts}), 4, 3, 3, {rtt}, {rtt} + 0.2, {rtt} + 0.4, {raw}, now() \
             FROM numbers({rows})"
        ),
        format!(
            "INSERT INTO {DB}.ping_results (result_id, msm_id, prb_id, timestamp, af, sent, rcvd, loss, rtts, rtt_min, rtt_avg, rtt_max, inserted_at) \
             SELECT toString(number), {MSM}, {prb}, toDateTime({ts}), 4, 3, if(number % 50 = 0, 0, 3), if(number % 50 = 0, 100, 0), \
             [{rtt}, {rtt} + 0.2, {rtt} + 0.4], {rtt}, {rtt} + 0.2, {rtt} + 0.4, now() FROM numbers({rows})"
        ),
    ]
}

/// GET `uri` through the router; (time to the whole body, body bytes).
async fn get(app: &axum::Router, uri: &str) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty())?)
        .await?;
    anyhow::ensure!(resp.status().is_success(), "{uri}: {}", resp.status());
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok((started.elapsed(), bytes.len()))
}

/// `n` located probes with tags, for the map.
fn many_probes(n: u32) -> anyhow::Result<FixedCatalog> {
    let probes = (1..=n)
        .map(|id| {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "vantage.dev/v1alpha1", "kind": "Probe", "metadata": {"name": format!("probe-{id}")},
                "spec": {"id": id, "public_key": "ssh-ed25519 AAAA", "country_code": "NL", "asn_v4": 64500 + id % 100,
                         "tags": ["home", "nat"], "location": {"latitude": f64::from(id % 180) - 90.0, "longitude": f64::from(id % 360) - 180.0}},
                "status": {"connected": id % 3 != 0, "lastSeen": "2024-05-01T12:00:00Z",
                           "systemTags": ["system-ipv4-works", "system-ipv4-capable"]},
            }))
            .map(Arc::new)
        })
        .collect::<Result<_, _>>()?;
    Ok(FixedCatalog {
        probes,
        ..FixedCatalog::default()
    })
}

/// GET the probe map of 10,000 probes, plain and gzip.
async fn probe_map(runs: usize, url: &str) -> anyhow::Result<()> {
    let app = router(Arc::new(AppState {
        catalog: Arc::new(many_probes(10_000)?),
        rows: Arc::new(ClickHouseRows::new(url, DB)),
        live: None,
        stream: None,
        scheme: "http",
        public_url: None,
        create_timeout: Duration::from_secs(1),
        max_requested: 1000,
        metrics: Metrics::default(),
        console: Arc::new(vantage_api::console::EmbeddedAssets),
        engines: None,
    }));
    for gzip in [false, true] {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..runs {
            let mut req = Request::get("/api/vantage/v1/probes/map");
            if gzip {
                req = req.header("accept-encoding", "gzip");
            }
            let started = Instant::now();
            let resp = app.clone().oneshot(req.body(Body::empty())?).await?;
            size = resp.into_body().collect().await?.to_bytes().len();
            times.push(started.elapsed());
        }
        println!(
            "  {:<70} {:>8.1} ms  {size} bytes",
            format!(
                "/api/vantage/v1/probes/map, 10,000 probes{}",
                if gzip { ", gzip" } else { "" }
            ),
            median(times).as_secs_f64() * 1e3
        );
    }
    Ok(())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let runs: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(5)
        .max(1);
    let url = std::env::var("CLICKHOUSE_URL")
        .map_err(|_| anyhow::anyhow!("CLICKHOUSE_URL is unset: source the stack's env first"))?;
    let store = Store::new(&url, DB)?;
    store.migrate().await?;
    let have = String::from_utf8(
        store
            .fetch_formatted(
                &format!("SELECT count() FROM {DB}.results WHERE msm_id = {MSM}"),
                "TabSeparated",
            )
            .await?,
    )?;
    if have.trim().parse::<u64>().unwrap_or(0) != rows {
        println!("inserting {rows} results ...");
        store
            .execute(&format!("TRUNCATE TABLE {DB}.results"))
            .await?;
        store
            .execute(&format!("TRUNCATE TABLE {DB}.ping_results"))
            .await?;
        let started = Instant::now();
        for sql in insert_sql(rows) {
            store.execute(&sql).await?;
        }
        store
            .execute(&format!("OPTIMIZE TABLE {DB}.results FINAL"))
            .await?;
        println!("inserted in {:?}", started.elapsed());
    }
    let rows_impl = Arc::new(ClickHouseRows::new(&url, DB));
    let app = router(Arc::new(AppState {
        catalog: Arc::new(EmptyCatalog),
        rows: rows_impl.clone(),
        live: None,
        stream: None,
        scheme: "http",
        public_url: None,
        create_timeout: Duration::from_secs(1),
        max_requested: 1000,
        metrics: Metrics::default(),
        console: Arc::new(vantage_api::console::EmbeddedAssets),
        engines: None,
    }));
    println!("{rows} results of measurement {MSM}, 1000 probes; median of {runs} runs:");
    for uri in [
        format!("/api/vantage/v1/measurements/{MSM}/summary"),
        format!("/api/vantage/v1/measurements/{MSM}/summary?buckets=1000"),
        format!("/api/vantage/v1/measurements/{MSM}/summary?prb_id=7"),
        format!("/api/vantage/v1/measurements/{MSM}/probes?limit=1000"),
        format!("/api/v2/measurements/{MSM}/latest/"),
    ] {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..runs {
            let (t, n) = get(&app, &uri).await?;
            times.push(t);
            size = n;
        }
        println!(
            "  {uri:<70} {:>8.1} ms  {size} bytes",
            median(times).as_secs_f64() * 1e3
        );
    }
    // The former latest/ query, straight on ClickHouse.
    let old = format!(
        "SELECT argMax(raw, timestamp) FROM {DB}.results FINAL WHERE msm_id = {MSM} GROUP BY prb_id ORDER BY prb_id"
    );
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let mut s = rows_impl.stream(old.clone(), "TabSeparatedRaw");
        let mut n = 0;
        while let Some(chunk) = s.next().await {
            n += chunk?.len();
        }
        times.push(started.elapsed());
        size = n;
    }
    println!(
        "  {:<70} {:>8.1} ms  {size} bytes",
        "former latest/ query (argMax over FINAL), ClickHouse only",
        median(times).as_secs_f64() * 1e3
    );
    probe_map(runs, &url).await
}
