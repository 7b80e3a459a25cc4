//! Benchmarks for docs/BENCHMARKS.md:
//! reverse-nearest-city lookups per second (R-tree vs a linear scan over the same
//! dataset), registered-country lookups (RIR statistics: load time, binary search vs a
//! linear scan), and locate latency through the HTTP router (uncached with fixture
//! engines, cached p50/p99, batch throughput for 10k cached addresses).
//!
//! With `CLICKHOUSE_URL` set, also locate answered from the ClickHouse answer store
//! (a fresh process: empty memory cache).
//!
//!     cargo run --release -p vantage-engines --example bench_reverse

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;
use vantage_engines::engine::latency::{Latency, ProbeRtt, StaticRtts};
use vantage_engines::engine::rdns::{ReverseDns, Rules, StaticPtr};
use vantage_engines::{router, Api, Engine, EngineConfig, Locator, World};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A point uniform on the sphere.
    fn point(&mut self) -> (f64, f64) {
        let lat = (2.0 * self.unit() - 1.0).asin().to_degrees();
        let lon = 360.0 * self.unit() - 180.0;
        (lat, lon)
    }
}

/// All five RIRs' statistics hold about 300,000 IPv4 and 150,000 IPv6 records: load a
/// file of that size in their format and look addresses up.
fn rir_bench(rng: &mut Rng) -> Result<(), Box<dyn std::error::Error>> {
    use vantage_engines::rir::Delegations;
    const CC: &[&str] = &["NL", "DE", "US", "JP", "BR", "ZA", "IN", "AU"];
    let mut text = String::from("2|bench|1|450000|19830705|20261122|+0000\n");
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    let mut at: u32 = 0x0100_0000;
    for i in 0..300_000u32 {
        let count = 256u32 << (rng.next() % 6);
        text.push_str(&format!(
            "ripencc|{}|ipv4|{}|{count}|20100712|allocated|x\n",
            CC[i as usize % CC.len()],
            Ipv4Addr::from(at)
        ));
        ranges.push((at, at + (count - 1)));
        at += count + 256 * (rng.next() % 4) as u32;
    }
    for i in 0..150_000u128 {
        let prefix = 0x2001_0000_0000_0000_0000_0000_0000_0000u128 + (i << 96);
        text.push_str(&format!(
            "ripencc|{}|ipv6|{}|32|20100712|allocated|x\n",
            CC[i as usize % CC.len()],
            std::net::Ipv6Addr::from(prefix)
        ));
    }
    let t = Instant::now();
    let d = Delegations::parse(&text, "bench")?;
    let load = t.elapsed();
    let span = at - 0x0100_0000;
    let ips: Vec<IpAddr> = (0..1_000_000)
        .map(|_| {
            IpAddr::V4(Ipv4Addr::from(
                0x0100_0000 + (rng.next() % u64::from(span)) as u32,
            ))
        })
        .collect();
    let t = Instant::now();
    let found = ips.iter().filter(|ip| d.country(**ip).is_some()).count();
    let search_rate = ips.len() as f64 / t.elapsed().as_secs_f64();
    let linear_n = 2_000;
    let t = Instant::now();
    let mut disagreements = 0;
    for ip in &ips[..linear_n] {
        let IpAddr::V4(a) = ip else { continue };
        let a = u32::from(*a);
        let linear = ranges.iter().any(|r| r.0 <= a && a <= r.1);
        if linear != d.country(*ip).is_some() {
            disagreements += 1;
        }
    }
    let linear_rate = linear_n as f64 / t.elapsed().as_secs_f64();
    println!(
        "rir: {} records ({:.1} MB of RIR statistics) parsed in {:.0} ms",
        d.len(),
        text.len() as f64 / 1e6,
        load.as_secs_f64() * 1e3
    );
    println!(
        "rir lookup, binary search: {search_rate:>12.0} lookups/s ({found} of {} in a range)",
        ips.len()
    );
    println!("rir lookup, linear scan:   {linear_rate:>12.0} lookups/s ({linear_n} addresses, {disagreements} disagreements)");
    println!(
        "ratio binary search / linear scan: {:>9.0}x",
        search_rate / linear_rate
    );
    Ok(())
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let world = World::embedded()?;
    println!(
        "world: {} cities, {} airports, loaded and indexed in {:.0} ms ({})",
        world.len(),
        world.airport_count(),
        t.elapsed().as_secs_f64() * 1e3,
        world.version()
    );

    // Reverse-nearest-city: R-tree vs linear scan.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let points: Vec<(f64, f64)> = (0..200_000).map(|_| rng.point()).collect();
    let t = Instant::now();
    let mut sum = 0u64;
    for &(lat, lon) in &points {
        sum += u64::from(world.nearest(lat, lon).map_or(0, |(c, _)| c.id));
    }
    let tree_rate = points.len() as f64 / t.elapsed().as_secs_f64();
    let linear_n = 1_000;
    let t = Instant::now();
    let mut mismatches = 0;
    for &(lat, lon) in &points[..linear_n] {
        let a = world.nearest_linear(lat, lon).map(|(_, d)| d);
        let b = world.nearest(lat, lon).map(|(_, d)| d);
        if let (Some(a), Some(b)) = (a, b) {
            if (a - b).abs() > 1e-6 {
                mismatches += 1;
            }
        }
    }
    let linear_rate = linear_n as f64 / t.elapsed().as_secs_f64();
    println!("reverse nearest city, R-tree:      {tree_rate:>12.0} lookups/s ({} points, checksum {sum})", points.len());
    println!("reverse nearest city, linear scan: {linear_rate:>12.1} lookups/s ({linear_n} points, {mismatches} disagreements)");
    println!(
        "ratio R-tree / linear scan:        {:>12.0}x",
        tree_rate / linear_rate
    );

    // Registered country (RIR statistics): load, then binary search vs a linear scan.
    rir_bench(&mut rng)?;

    // Locate through the router, with fixture engines (no network, no ClickHouse).
    let n = 10_000u32;
    let cities: Vec<_> = world
        .cities()
        .iter()
        .filter(|c| c.population > 200_000)
        .collect();
    let mut rtts = HashMap::new();
    let mut ptrs = HashMap::new();
    let ips: Vec<IpAddr> = (0..n)
        .map(|i| IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i * 7)))
        .collect();
    for (i, ip) in ips.iter().enumerate() {
        let c = cities[i % cities.len()];
        let probes = (0..8)
            .map(|k| {
                let o = cities[(i * 31 + k * 97) % cities.len()];
                let d = vantage_engines::geo::distance_km(
                    o.latitude,
                    o.longitude,
                    c.latitude,
                    c.longitude,
                );
                ProbeRtt {
                    probe_id: k as u32,
                    latitude: o.latitude,
                    longitude: o.longitude,
                    rtt_ms: d / 100.0 + 0.5,
                }
            })
            .chain(std::iter::once(ProbeRtt {
                probe_id: 99,
                latitude: c.latitude + 0.05,
                longitude: c.longitude,
                rtt_ms: 0.4,
            }))
            .collect();
        rtts.insert(*ip, probes);
        ptrs.insert(
            *ip,
            vec![format!(
                "ae-1.r01.{}1.example.net",
                vantage_engines::world::normalise(&c.ascii_name)
            )],
        );
    }
    let rtts = Arc::new(StaticRtts(rtts));
    let mut engines = Latency::all(rtts);
    let others: Vec<(Arc<dyn Engine>, EngineConfig)> = vec![(
        Arc::new(ReverseDns::new(
            Rules::embedded()?,
            Arc::new(StaticPtr(ptrs)),
        )),
        EngineConfig::new("reverse-dns", 1.0, true),
    )];
    engines.extend(others);
    let engines_again = engines.clone();
    let locator = Locator::new(world.clone(), engines, Duration::from_secs(5));
    let mut registry = prometheus_client::registry::Registry::default();
    let app = router(Arc::new(Api::new(
        locator,
        None,
        Duration::from_secs(3600),
        1000,
        &mut registry,
    )));

    let get = |uri: String| {
        let app = app.clone();
        async move {
            let t = Instant::now();
            let resp = app.oneshot(Request::get(uri).body(Body::empty())?).await?;
            let status = resp.status();
            let _ = axum::body::to_bytes(resp.into_body(), usize::MAX).await?;
            if status != StatusCode::OK {
                return Err(format!("HTTP {status}").into());
            }
            Ok::<Duration, Box<dyn std::error::Error>>(t.elapsed())
        }
    };
    let uncached_n = 2_000;
    let mut uncached = Vec::new();
    for ip in &ips[..uncached_n] {
        uncached.push(get(format!("/api/v1/locate/{ip}/")).await?);
    }
    uncached.sort();
    // Warm the rest of the cache, then measure cached answers.
    for ip in &ips[uncached_n..] {
        get(format!("/api/v1/locate/{ip}/")).await?;
    }
    let mut cached = Vec::new();
    for ip in ips.iter().cycle().take(20_000) {
        cached.push(get(format!("/api/v1/locate/{ip}/")).await?);
    }
    cached.sort();
    println!("locate uncached (4 engines on fixtures, no active measurement): p50 {} p99 {} ({uncached_n} addresses)",
        us(pct(&uncached, 0.5)), us(pct(&uncached, 0.99)));
    println!(
        "locate cached:   p50 {} p99 {} ({} requests)",
        us(pct(&cached, 0.5)),
        us(pct(&cached, 0.99)),
        cached.len()
    );

    let t = Instant::now();
    for chunk in ips.chunks(1000) {
        let list: Vec<String> = chunk.iter().map(ToString::to_string).collect();
        get(format!("/api/v1/locate/all?resources={}", list.join(","))).await?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "batch, 10k cached addresses in 10 requests of 1000: {:.0} ms, {:.0} addresses/s",
        secs * 1e3,
        f64::from(n) / secs
    );

    let Some(url) = std::env::var("CLICKHOUSE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        println!("(set CLICKHOUSE_URL to measure answers from the ClickHouse answer store)");
        return Ok(());
    };
    let db = format!("vantage_bench_answers_{}", std::process::id());
    let store = Arc::new(vantage_engines::cache::ClickHouseAnswers::new(&url, &db)?);
    store.ensure_table().await?;
    let api_over_store = || {
        let mut registry = prometheus_client::registry::Registry::default();
        Api::new(
            Locator::new(world.clone(), engines_again.clone(), Duration::from_secs(5)),
            None,
            Duration::from_secs(3600),
            1000,
            &mut registry,
        )
        .with_answer_store(store.clone())
    };
    let stored_n = 2_000;
    let first = Arc::new(api_over_store());
    let mut uncached_store = Vec::new();
    for ip in &ips[..stored_n] {
        let t = Instant::now();
        first.locate(*ip, None).await;
        uncached_store.push(t.elapsed());
    }
    uncached_store.sort();
    // The answers are written in the background: wait for them before reading back.
    let t = Instant::now();
    first.flush().await;
    let drained = t.elapsed();
    // As after a restart: the memory cache is empty, ClickHouse answers.
    let app = router(Arc::new(api_over_store()));
    let get = |uri: String| {
        let app = app.clone();
        async move {
            let t = Instant::now();
            let resp = app.oneshot(Request::get(uri).body(Body::empty())?).await?;
            let status = resp.status();
            let _ = axum::body::to_bytes(resp.into_body(), usize::MAX).await?;
            if status != StatusCode::OK {
                return Err(format!("HTTP {status}").into());
            }
            Ok::<Duration, Box<dyn std::error::Error>>(t.elapsed())
        }
    };
    let mut from_store = Vec::new();
    for ip in &ips[..stored_n] {
        from_store.push(get(format!("/api/v1/locate/{ip}/")).await?);
    }
    from_store.sort();
    println!(
        "locate uncached, answer written to ClickHouse in the background: p50 {} p99 {} ({stored_n} addresses; the writes drained {} after the last)",
        us(pct(&uncached_store, 0.5)),
        us(pct(&uncached_store, 0.99)),
        us(drained)
    );
    println!(
        "locate from the ClickHouse answer store (empty memory cache): p50 {} p99 {} ({stored_n} addresses)",
        us(pct(&from_store, 0.5)),
        us(pct(&from_store, 0.99))
    );
    clickhouse::Client::default()
        .with_url(&url)
        .query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute()
        .await?;
    Ok(())
}
