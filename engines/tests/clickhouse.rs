//! The ClickHouse-backed parts against a real ClickHouse 18.16: the crowdsourced store
//! (`geo_crowdsource`, created idempotently) and RTTs read from `results`.
//! Needs `CLICKHOUSE_URL` (e.g. http://127.0.0.1:8123); skipped when it is unset.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use vantage_engines::engine::crowd::{
    unix_now, ClickHouseCrowdStore, CrowdPolicy, CrowdStore, Crowdsourced, Report,
};
use vantage_engines::engine::latency::{ClickHouseRtts, RttSource};
use vantage_platform::store::{ResultRow, Store};

fn url() -> Option<String> {
    vantage_testkit::stack_var("CLICKHOUSE_URL", "ClickHouse tests of vantage-engines")
}

fn database(tag: &str) -> String {
    format!(
        "vantage_engines_test_{tag}_{}_{}",
        std::process::id(),
        unix_now()
    )
}

#[tokio::test]
async fn crowdsource_store_round_trip() {
    let Some(url) = url() else { return };
    let db = database("crowd");
    let store = ClickHouseCrowdStore::new(&url, &db).expect("store");
    store.ensure_table().await.expect("create");
    store
        .ensure_table()
        .await
        .expect("create again (idempotent)");
    let now = unix_now();
    let rep = |ip: &str, user: &str, city_id: u32, lat: f64, lon: f64| Report {
        ip: ip.into(),
        user: user.into(),
        city_id,
        latitude: lat,
        longitude: lon,
        reported_at: now - 5,
    };
    for user in ["ann", "ben"] {
        store
            .add(rep("193.0.14.129", user, 2759794, 52.374, 4.8897))
            .await
            .expect("add");
    }
    for _ in 0..20 {
        store
            .add(rep("193.0.14.129", "eve", 2925533, 50.1155, 8.6842))
            .await
            .expect("add");
    }
    store
        .add(rep("8.8.8.8", "ann", 5375480, 37.386, -122.0838))
        .await
        .expect("add");
    let got = store.reports_for("193.0.14.129").await.expect("read");
    assert_eq!(got.len(), 22);
    assert!(got.iter().all(|r| r.reported_at == now - 5));
    let near_ann = store.reports_near_user("ann").await.expect("read");
    assert_eq!(near_ann.len(), 23);

    let engine = Crowdsourced::new(Arc::new(store), CrowdPolicy::default());
    let ip: IpAddr = "193.0.14.129".parse().expect("ip");
    let scores = engine.scores(ip, now).await.expect("scores");
    assert_eq!(scores[0].city_id, 2759794, "{scores:?}");

    let client = clickhouse::Client::default().with_url(&url);
    client
        .query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute()
        .await
        .expect("drop");
}

#[tokio::test]
async fn rtts_from_results() {
    let Some(url) = url() else { return };
    let db = database("rtt");
    let store = Store::new(&url, &db).expect("store");
    store.migrate().await.expect("migrate");
    let now = unix_now();
    let row = |prb_id: u32, dst: &str, min: f64, rcvd: u32| ResultRow {
        result_id: format!("r-{prb_id}-{dst}-{min}"),
        msm_id: 1_000_001,
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
        rcvd,
        rtt_min: min,
        rtt_avg: min,
        rtt_max: min,
        raw: "{}".into(),
        inserted_at: now,
    };
    store
        .insert_results(&[
            row(1, "193.0.14.129", 0.9, 3),
            row(1, "193.0.14.129", 0.7, 3),
            row(2, "193.0.14.129", 6.5, 3),
            row(3, "193.0.14.129", 1.0, 0), // nothing received: no RTT
            row(4, "193.0.14.129", 2.0, 3), // no known location
            row(1, "8.8.8.8", 12.0, 3),
        ])
        .await
        .expect("insert");
    let mut locations = HashMap::new();
    locations.insert(1, (52.37, 4.89));
    locations.insert(2, (50.11, 8.68));
    locations.insert(3, (48.85, 2.35));
    let rtts =
        ClickHouseRtts::new(&url, &db, Arc::new(RwLock::new(locations)), 86_400).expect("rtts");
    let got = rtts
        .rtts("193.0.14.129".parse().expect("ip"))
        .await
        .expect("read");
    let summary: Vec<(u32, f64)> = got.iter().map(|r| (r.probe_id, r.rtt_ms)).collect();
    assert_eq!(summary, vec![(1, 0.7), (2, 6.5)]);

    let client = clickhouse::Client::default().with_url(&url);
    client
        .query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute()
        .await
        .expect("drop");
}

/// An engine that counts its runs and always names Amsterdam.
struct Counting(Arc<std::sync::atomic::AtomicUsize>);

impl vantage_engines::Engine for Counting {
    fn name(&self) -> &str {
        "counting"
    }
    fn locate<'a>(
        &'a self,
        _ip: IpAddr,
        _world: &'a vantage_engines::World,
    ) -> futures::future::BoxFuture<
        'a,
        Result<Vec<vantage_engines::Candidate>, vantage_engines::Error>,
    > {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async {
            Ok(vec![vantage_engines::Candidate {
                city_id: 2759794,
                score: 7,
            }])
        })
    }
}

#[tokio::test]
async fn answers_are_cached_in_clickhouse_until_their_max_age() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use vantage_engines::cache::{AnswerStore, ClickHouseAnswers};
    use vantage_engines::{Api, EngineConfig, Locator, World};

    let Some(url) = url() else { return };
    let db = database("answers");
    let store = Arc::new(ClickHouseAnswers::new(&url, &db).expect("store"));
    store.ensure_table().await.expect("create");
    store
        .ensure_table()
        .await
        .expect("create again (idempotent)");
    let world = World::embedded().expect("world");
    let runs = Arc::new(AtomicUsize::new(0));
    // A fresh API (empty memory cache) over the same store, as after a restart.
    let api = |max_age: Duration| {
        let engines: Vec<(Arc<dyn vantage_engines::Engine>, EngineConfig)> = vec![(
            Arc::new(Counting(runs.clone())),
            EngineConfig::new("counting", 1.0, true),
        )];
        let mut registry = prometheus_client::registry::Registry::default();
        Api::new(
            Locator::new(world.clone(), engines, Duration::from_secs(5)),
            None,
            max_age,
            100,
            &mut registry,
        )
        .with_answer_store(store.clone())
    };
    let ip: IpAddr = "193.0.14.129".parse().expect("ip");
    // Locate, then wait for the answer's background write, as a long-lived API would.
    let locate = |max_age: Duration, only: Option<std::collections::HashSet<String>>| {
        let api = api(max_age);
        async move {
            let answer = api.locate(ip, only.as_ref()).await;
            api.flush().await;
            answer
        }
    };
    let first = locate(Duration::from_secs(3600), None).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(first.scored[0].city_id, 2759794);

    let again = locate(Duration::from_secs(3600), None).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1, "answered from ClickHouse");
    assert_eq!(again, first);

    // Older than the max age: located (measured) again, and stored anew.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    locate(Duration::from_secs(1), None).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "stale answer located again");
    locate(Duration::from_secs(1), None).await;
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the new answer is fresh");

    // A forget (accepted crowdsourced report) makes stored answers stale.
    store
        .forget(ip, vantage_engines::cache::now_ms() + 1)
        .await
        .expect("forget");
    locate(Duration::from_secs(3600), None).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "forgotten answer located again"
    );

    // Another engine filter is another key.
    let only: std::collections::HashSet<String> = ["counting".to_owned()].into();
    locate(Duration::from_secs(3600), Some(only)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 4);

    let client = clickhouse::Client::default().with_url(&url);
    client
        .query(&format!("DROP DATABASE IF EXISTS {db}"))
        .execute()
        .await
        .expect("drop");
}
