//! The production CBG calibration against a real ClickHouse: the anchoring mesh's
//! pings in `results` (msm_id 100000 + anchor) fitted to every probe's bestline.
//! Needs `CLICKHOUSE_URL` (e.g. http://127.0.0.1:8123); skipped when it is unset.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use vantage_engines::engine::calibration::{Bestline, CalibrationSource, PHYSICS_MS_PER_KM};
use vantage_engines::engine::calibration_store::{ClickHouseCalibration, ANCHOR_MESH};
use vantage_engines::geo;
use vantage_platform::store::{ResultRow, Store};

fn url() -> Option<String> {
    vantage_testkit::stack_var("CLICKHOUSE_URL", "calibration_clickhouse (vantage-engines)")
}

fn unix_now() -> u32 {
    vantage_engines::engine::crowd::unix_now()
}

/// Probes 1 (Amsterdam, 4 ms behind its last mile) and 2 (Madrid, 1 ms); anchors 10
/// (Frankfurt), 11 (Paris), 12 (London); probe 3 has no location.
fn places() -> HashMap<u32, (f64, f64)> {
    [
        (1, (52.37, 4.89)),
        (2, (40.42, -3.70)),
        (10, (50.11, 8.68)),
        (11, (48.85, 2.35)),
        (12, (51.51, -0.13)),
    ]
    .into_iter()
    .collect()
}

#[tokio::test]
async fn the_mesh_in_results_calibrates_probes() {
    let Some(url) = url() else { return };
    let db = vantage_testkit::unique("vantage_engines_test_calibration_");
    let store = Store::new(&url, &db).expect("store");
    store.migrate().await.expect("migrate");
    let now = unix_now();
    let at = places();
    // Probe 3 (no location in the table) pings from Amsterdam too.
    let km = |probe: u32, anchor: u32| {
        let (a, b) = (at.get(&probe).copied().unwrap_or(at[&1]), at[&anchor]);
        geo::distance_km(a.0, a.1, b.0, b.1)
    };
    // A ping of `anchor` by `probe`: its access delay plus the path at `stretch` times
    // light in fibre.
    let mut n = 0;
    let mut ping = |kind: &str,
                    msm_id: u64,
                    prb_id: u32,
                    anchor: u32,
                    access: f64,
                    stretch: f64,
                    rcvd: u32,
                    age_s: u32| {
        n += 1;
        let rtt = access + km(prb_id, anchor) * PHYSICS_MS_PER_KM * stretch;
        ResultRow {
            result_id: format!("cal-{n}"),
            msm_id,
            prb_id,
            kind: kind.into(),
            timestamp: now - age_s,
            af: 4,
            fw: 5020,
            from_addr: String::new(),
            src_addr: String::new(),
            dst_addr: format!("192.0.2.{anchor}"),
            dst_name: format!("anchor-{anchor}"),
            sent: 3,
            rcvd,
            rtt_min: rtt,
            rtt_avg: rtt + 1.0,
            rtt_max: rtt + 2.0,
            raw: "{}".into(),
            inserted_at: now,
        }
    };
    let mesh = |anchor: u32| ANCHOR_MESH + u64::from(anchor);
    let rows = vec![
        // Probe 1: 4 ms access, its path to Frankfurt straight, the others longer.
        ping("ping", mesh(10), 1, 10, 4.0, 1.0, 3, 60),
        ping("ping", mesh(10), 1, 10, 4.0, 1.6, 3, 120), // a slower ping: the least counts
        ping("ping", mesh(11), 1, 11, 4.0, 1.4, 3, 60),
        ping("ping", mesh(12), 1, 12, 4.0, 1.7, 3, 60),
        // Probe 2: 1 ms access, its path to Paris straight.
        ping("ping", mesh(10), 2, 10, 1.0, 1.3, 3, 60),
        ping("ping", mesh(11), 2, 11, 1.0, 1.0, 3, 60),
        ping("ping", mesh(12), 2, 12, 1.0, 1.5, 3, 60),
        // Anchor 10 pings anchor 11 (the anchors' own mesh), 0.2 ms access.
        ping("ping", mesh(11), 10, 11, 0.2, 1.0, 3, 60),
        // Rows that would lower probe 1's intercept were they read:
        ping("ping", mesh(10), 1, 10, 2.0, 1.0, 0, 60), // nothing received
        ping("ping", mesh(10), 1, 10, 3.0, 1.0, 3, 2 * 86_400), // older than max_age
        ping("traceroute", mesh(10), 1, 10, 2.5, 1.0, 3, 60), // not a ping
        ping("ping", 1_000_001, 1, 10, 1.5, 1.0, 3, 60), // not the mesh
        // A probe without a location: not calibrated.
        ping("ping", mesh(10), 3, 10, 1.0, 1.0, 3, 60),
    ];
    store.insert_results(&rows).await.expect("insert");

    let cal = ClickHouseCalibration::new(
        &url,
        &db,
        Arc::new(RwLock::new(at.clone())),
        Duration::from_secs(86_400),
        Duration::from_secs(600),
    )
    .expect("calibration");
    let got = cal.calibration().await.expect("calibration");
    assert_eq!(got.len(), 3, "probes 1, 2 and anchor 10: {got:?}");
    let l1 = got.line(1);
    assert!((l1.intercept_ms - 4.0).abs() < 1e-6, "probe 1: {l1:?}");
    assert_eq!(l1.samples, 3, "one least RTT per anchor: {l1:?}");
    assert!((l1.ms_per_km - PHYSICS_MS_PER_KM).abs() < 1e-9, "{l1:?}");
    let l2 = got.line(2);
    assert!((l2.intercept_ms - 1.0).abs() < 1e-6, "probe 2: {l2:?}");
    let l10 = got.line(10);
    assert!((l10.intercept_ms - 0.2).abs() < 1e-6, "anchor 10: {l10:?}");
    assert_eq!(l10.samples, 1);
    assert_eq!(got.line(3), Bestline::PHYSICS);
    // A target answering probe 1 in 4 + 5 ms: the calibrated disc is light in fibre's
    // for 5 ms (~500 km), not for 9 ms (~900 km).
    assert!(
        (l1.max_km(9.0) - geo::radius_km(5.0)).abs() < 1e-6,
        "{l1:?}"
    );

    assert_eq!(cal.metrics().probes(), 3);
    assert_eq!(cal.metrics().refresh_failures(), 0);
    assert_eq!(cal.metrics().physics(), 0);
    assert!(cal.metrics().age_seconds().is_some());
    // Cached: the same calibration, not fitted again.
    let again = cal.calibration().await.expect("calibration");
    assert!(Arc::ptr_eq(&got, &again));

    let client = clickhouse::Client::default().with_url(&url);
    client
        .query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute()
        .await
        .expect("drop");
}

/// `build_engines` with ClickHouse: the `latency` engine (CBG) is calibrated from the
/// mesh, single-radius is not, and the calibration counts into the engines' metrics.
#[tokio::test]
async fn engines_built_with_clickhouse_calibrate_cbg() {
    use vantage_engines::engine::latency::{cbg, ClickHouseRtts, RttSource};
    use vantage_engines::engine::posterior::cbg_posterior;
    use vantage_engines::{build_engines, ClickHouseConfig, Config, EngineConfig};

    let Some(url) = url() else { return };
    let db = vantage_testkit::unique("vantage_engines_test_calibrated_cbg_");
    let store = Store::new(&url, &db).expect("store");
    store.migrate().await.expect("migrate");
    let now = unix_now();
    let at = places();
    let km = |a: (f64, f64), b: (f64, f64)| geo::distance_km(a.0, a.1, b.0, b.1);
    let access: HashMap<u32, f64> = [(1, 4.0), (2, 1.0), (10, 0.2), (11, 0.3), (12, 0.2)]
        .into_iter()
        .collect();
    // The target: Brussels, 0.5 ms behind its own last mile.
    let target = (50.85, 4.35);
    let target_ip = "198.51.100.7";
    let row = |n: usize, msm_id: u64, prb_id: u32, dst: &str, rtt: f64| ResultRow {
        result_id: format!("wired-{n}"),
        msm_id,
        prb_id,
        kind: "ping".into(),
        timestamp: now - 60,
        af: 4,
        fw: 5020,
        from_addr: String::new(),
        src_addr: String::new(),
        dst_addr: dst.into(),
        dst_name: dst.into(),
        sent: 3,
        rcvd: 3,
        rtt_min: rtt,
        rtt_avg: rtt,
        rtt_max: rtt,
        raw: "{}".into(),
        inserted_at: now,
    };
    let mut rows = Vec::new();
    for probe in [1, 2, 10, 11, 12] {
        for anchor in [10, 11, 12] {
            if probe != anchor {
                let rtt = access[&probe]
                    + access[&anchor]
                    + km(at[&probe], at[&anchor]) * PHYSICS_MS_PER_KM * 1.1;
                rows.push(row(
                    rows.len(),
                    ANCHOR_MESH + u64::from(anchor),
                    probe,
                    &format!("192.0.2.{anchor}"),
                    rtt,
                ));
            }
        }
        let rtt = access[&probe] + 0.5 + km(at[&probe], target) * PHYSICS_MS_PER_KM * 1.2;
        rows.push(row(rows.len(), 1_000_001, probe, target_ip, rtt));
    }
    store.insert_results(&rows).await.expect("insert");

    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut config = Config::new(addr, addr);
    config.clickhouse = Some(ClickHouseConfig {
        url: url.clone(),
        database: db.clone(),
        cluster: None,
    });
    config.probe_locations = Arc::new(RwLock::new(at.clone()));
    let (world, engines) = build_engines(&config).await.expect("engines");
    let calibration = engines.calibration().expect("calibrated with ClickHouse");
    let cbg_engine = engines
        .build(&EngineConfig::new("latency", 1.0, true))
        .expect("latency");
    let ip = target_ip.parse().expect("ip");
    let got = cbg_engine.locate(ip, &world).await.expect("locate");

    // What calibrated and plain CBG make of the same RTTs.
    let rtts = ClickHouseRtts::new(&url, &db, config.probe_locations.clone(), 86_400)
        .expect("rtts")
        .rtts(ip)
        .await
        .expect("rtts");
    assert_eq!(rtts.len(), 5);
    let cal = calibration.calibration().await.expect("calibration");
    assert_eq!(cal.len(), 5, "{cal:?}");
    // Probe 1's access (4 ms) and the anchors' (0.2 ms), and the 10 % detour on its
    // nearest anchor's path, which no anchor can tell from access delay.
    let nearest = [10, 11, 12]
        .map(|a| km(at[&1], at[&a]))
        .into_iter()
        .fold(f64::INFINITY, f64::min);
    let expected = 4.2 + 0.1 * nearest * PHYSICS_MS_PER_KM;
    let l1 = cal.line(1);
    assert!(
        (l1.intercept_ms - expected).abs() < 1e-6,
        "{l1:?} {expected}"
    );
    let calibrated = cbg_posterior(&world, &rtts, &cal);
    let plain = cbg(&world, &rtts);
    assert!(!calibrated.is_empty());
    assert_ne!(calibrated, plain, "the calibration must change the answer");
    assert_eq!(got, calibrated);
    assert_eq!(engines.calibration_metrics().probes(), 5);
    assert_eq!(engines.calibration_metrics().physics(), 0);

    let client = clickhouse::Client::default().with_url(&url);
    client
        .query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute()
        .await
        .expect("drop");
}

/// No ClickHouse needed: a store that cannot be reached is a counted failure, and
/// CBG gets physics, not an error.
#[tokio::test]
async fn an_unreachable_store_gives_physics() {
    let cal = ClickHouseCalibration::new(
        "http://127.0.0.1:1",
        "vantage",
        Arc::new(RwLock::new(places())),
        Duration::from_secs(86_400),
        Duration::from_secs(600),
    )
    .expect("calibration");
    let got = cal.calibration().await.expect("physics, not an error");
    assert!(got.is_empty());
    assert_eq!(cal.metrics().refresh_failures(), 1);
    assert_eq!(cal.metrics().physics(), 1);
    assert_eq!(cal.metrics().age_seconds(), None);

    let bad = ClickHouseCalibration::new(
        "http://127.0.0.1:1",
        "vantage; DROP TABLE results",
        Arc::new(RwLock::new(places())),
        Duration::from_secs(86_400),
        Duration::from_secs(600),
    );
    let Err(e) = bad else {
        panic!("a database name that is not an identifier was accepted");
    };
    assert!(e.to_string().contains("letters, digits and _"), "{e}");
}
