//! Results download of one measurement with many results: the API's
//! `/api/v2/measurements/{id}/results/` next to reading the same rows straight from
//! ClickHouse (HTTP `FORMAT TabSeparatedRaw`, and `clickhouse-client` when installed),
//! time to first byte and full download, side by side in one run.
//!
//! ```text
//! source /tmp/vantage-stack/env
//! cargo run --release -p vantage-api --example bench_results -- [rows, default 1000000] [runs, default 3]
//! ```
//! Rows are inserted once into the database `vantage_bench_api` (kept for later runs).
//! `CLICKHOUSE_TCP_PORT` (default 19000, the stack's) is where `clickhouse-client` connects.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;
use vantage_api::catalog::EmptyCatalog;
use vantage_api::rows::ClickHouseRows;
use vantage_api::{router, AppState, Metrics};
use vantage_platform::store::{ResultRow, Store};

const DB: &str = "vantage_bench_api";
const MSM: u64 = 7_000_001;

/// A RIPE Atlas ping result of realistic size (3 packets).
fn row(i: u64) -> ResultRow {
    let prb = u32::try_from(i % 1000).unwrap_or(0) + 1;
    let ts = 1_714_521_600 + u32::try_from(i / 1000).unwrap_or(0) * 240;
    let rtt = 10.0 + (i % 97) as f64 / 10.0;
    let raw = json!({"result_id": format!("0190{i:028x}"), "fw": 5020, "lts": -1, "msm_id": MSM, "prb_id": prb,
        "timestamp": ts, "type": "ping", "af": 4, "from": "198.51.100.7", "src_addr": "192.168.1.7",
        "dst_addr": "192.0.2.9", "dst_name": "example.net", "proto": "ICMP", "size": 48, "ttl": 57, "step": 240,
        "sent": 3, "rcvd": 3, "dup": 0, "min": rtt, "avg": rtt + 0.2, "max": rtt + 0.4,
        "result": [{"rtt": rtt}, {"rtt": rtt + 0.2}, {"rtt": rtt + 0.4}]});
    let env = match vantage_core::result::Envelope::from_value(raw) {
        Ok(e) => e,
        Err(e) => panic!("bad fixture: {e}"),
    };
    match ResultRow::from_envelope(&env, 1_714_521_600) {
        Some(r) => r,
        None => panic!("bad fixture: not a result row"),
    }
}

struct Timing {
    ttfb: Duration,
    total: Duration,
    bytes: u64,
}

/// Send `req` to `addr` and read the body, timing the first byte and the end.
async fn timed(addr: SocketAddr, req: hyper::Request<Full<Bytes>>) -> anyhow::Result<Timing> {
    let started = Instant::now();
    let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await?);
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let resp = send.send_request(req).await?;
    anyhow::ensure!(resp.status().is_success(), "status {}", resp.status());
    let mut body = resp.into_body();
    let mut ttfb = None;
    let mut bytes = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if !data.is_empty() && ttfb.is_none() {
                ttfb = Some(started.elapsed());
            }
            bytes += data.len() as u64;
        }
    }
    Ok(Timing {
        ttfb: ttfb.unwrap_or_default(),
        total: started.elapsed(),
        bytes,
    })
}

fn clickhouse_client(sql: &str, port: &str) -> anyhow::Result<Timing> {
    use std::io::Read;
    let started = Instant::now();
    let mut child = std::process::Command::new("clickhouse-client")
        .args(["--port", port, "--query", sql])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut out = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut ttfb, mut bytes) = (None, 0u64);
    loop {
        let n = out.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ttfb.get_or_insert_with(|| started.elapsed());
        bytes += n as u64;
    }
    anyhow::ensure!(child.wait()?.success(), "clickhouse-client failed");
    Ok(Timing {
        ttfb: ttfb.unwrap_or_default(),
        total: started.elapsed(),
        bytes,
    })
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
        .unwrap_or(3)
        .max(1);
    let url = std::env::var("CLICKHOUSE_URL")
        .map_err(|_| anyhow::anyhow!("set CLICKHOUSE_URL (source /tmp/vantage-stack/env)"))?;
    let tcp_port = std::env::var("CLICKHOUSE_TCP_PORT").unwrap_or_else(|_| "19000".into());
    let store = Store::new(&url, DB)?;
    store.migrate().await?;

    let count_sql = format!("SELECT count() FROM {DB}.results FINAL WHERE msm_id = {MSM}");
    let have: u64 = String::from_utf8(store.fetch_formatted(&count_sql, "TSV").await?)?
        .trim()
        .parse()?;
    if have != rows {
        println!("inserting {rows} results for measurement {MSM} (had {have}) ...");
        store
            .execute(&format!("DROP TABLE IF EXISTS {DB}.results"))
            .await?;
        store
            .execute(&format!("DROP TABLE IF EXISTS {DB}.schema_migrations"))
            .await?;
        store.migrate().await?;
        let started = Instant::now();
        let mut i = 0;
        while i < rows {
            let batch: Vec<ResultRow> = (i..(i + 50_000).min(rows)).map(row).collect();
            store.insert_results(&batch).await?;
            i += batch.len() as u64;
        }
        store
            .execute(&format!("OPTIMIZE TABLE {DB}.results FINAL"))
            .await?;
        println!("inserted in {:.1} s", started.elapsed().as_secs_f64());
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api_addr = listener.local_addr()?;
    let state = Arc::new(AppState {
        catalog: Arc::new(EmptyCatalog),
        rows: Arc::new(ClickHouseRows::new(&url, DB)),
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
    tokio::spawn(async move { axum::serve(listener, router(state)).await });

    let ch_addr: SocketAddr = {
        let hostport = url.trim_start_matches("http://").trim_end_matches('/');
        tokio::net::lookup_host(hostport)
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("cannot resolve {hostport}"))?
    };
    let sql = format!("SELECT raw FROM {DB}.results FINAL WHERE msm_id = {MSM}");
    let api_req = || {
        hyper::Request::get(format!("/api/v2/measurements/{MSM}/results/"))
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
    };
    let ch_req = || {
        hyper::Request::post("/?default_format=TabSeparatedRaw")
            .header("host", "localhost")
            .body(Full::new(Bytes::from(format!(
                "{sql} FORMAT TabSeparatedRaw"
            ))))
    };
    let has_client = std::process::Command::new("clickhouse-client")
        .arg("--version")
        .output()
        .is_ok();

    let mut results: Vec<(&str, Vec<Timing>)> = vec![
        ("api /results/ (JSON array)", vec![]),
        ("ClickHouse HTTP TabSeparatedRaw", vec![]),
    ];
    if has_client {
        results.push(("clickhouse-client TabSeparatedRaw", vec![]));
    }
    // Warm the page cache once, then alternate.
    timed(ch_addr, ch_req()?).await?;
    for _ in 0..runs {
        results[0].1.push(timed(api_addr, api_req()?).await?);
        results[1].1.push(timed(ch_addr, ch_req()?).await?);
        if has_client {
            let t = tokio::task::block_in_place(|| {
                clickhouse_client(&format!("{sql} FORMAT TabSeparatedRaw"), &tcp_port)
            })?;
            results[2].1.push(t);
        }
    }

    println!("{rows} results of one measurement, median of {runs} runs, 2-core machine, ClickHouse 18.16");
    println!(
        "{:<36} {:>10} {:>10} {:>10} {:>12}",
        "reader", "TTFB ms", "total s", "MB", "results/s"
    );
    let mut medians = Vec::new();
    for (name, ts) in &results {
        let ttfb = median(ts.iter().map(|t| t.ttfb).collect());
        let total = median(ts.iter().map(|t| t.total).collect());
        let mb = ts.last().map_or(0, |t| t.bytes) as f64 / 1e6;
        println!(
            "{name:<36} {:>10.1} {:>10.2} {:>10.1} {:>12.0}",
            ttfb.as_secs_f64() * 1e3,
            total.as_secs_f64(),
            mb,
            rows as f64 / total.as_secs_f64()
        );
        medians.push((ttfb, total));
    }
    let (api_ttfb, api_total) = medians[0];
    for (i, (name, _)) in results.iter().enumerate().skip(1) {
        let (ttfb, total) = medians[i];
        println!(
            "ratio api / {name}: TTFB {:.2}, full download {:.2}",
            api_ttfb.as_secs_f64() / ttfb.as_secs_f64(),
            api_total.as_secs_f64() / total.as_secs_f64()
        );
    }
    Ok(())
}
