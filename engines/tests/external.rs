//! An external engine written in Python joins over HTTP (engines/tests/external_engine.py).

use std::process::Stdio;
use std::time::Duration;

use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, BufReader};

use futures::future::BoxFuture;
use futures::FutureExt;
use vantage_engines::engine::external::{EngineLabel, ExternalMetrics, HttpEngine};
use vantage_engines::engine::Scope;
use vantage_engines::reducer::Scored;
use vantage_engines::{Candidate, Engine, EngineConfig, Locator, World};

/// Start engines/tests/external_engine.py; its port.
async fn start_python() -> (tokio::process::Child, u16) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/external_engine.py");
    let mut child = match tokio::process::Command::new("python3")
        .arg(script)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("python3 is needed for this test: {e}"),
    };
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("engine started in time")
        .expect("read")
        .expect("a line");
    let port: u16 = first
        .trim_start_matches("listening ")
        .parse()
        .expect("port");
    (child, port)
}

#[tokio::test]
async fn python_engine_speaks_the_protocol() {
    let (mut child, port) = start_python().await;
    let world = World::embedded().expect("world");
    let engine = HttpEngine::new(
        "py-test",
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_secs(5),
    )
    .expect("engine");
    assert_eq!(engine.name(), "py-test");

    let by_id = engine
        .locate("193.0.14.129".parse().expect("ip"), &world)
        .await
        .expect("locate");
    let ids: Vec<(u32, u8)> = by_id.iter().map(|c| (c.city_id, c.score)).collect();
    assert_eq!(ids, vec![(2759794, 8), (2747891, 3)]);

    // By coordinates, mapped to the nearest city; the zero score is dropped.
    let by_point = engine
        .locate("8.8.8.8".parse().expect("ip"), &world)
        .await
        .expect("locate");
    assert_eq!(by_point.len(), 1, "{by_point:?}");
    let city = world.city(by_point[0].city_id).expect("city");
    assert_eq!(city.country, "DE");
    assert_eq!(by_point[0].score, 6);

    child.kill().await.expect("kill");

    // A dead engine is an error, not a panic.
    let gone = HttpEngine::new(
        "gone",
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_millis(500),
    )
    .expect("engine");
    assert!(gone
        .locate("8.8.8.8".parse().expect("ip"), &world)
        .await
        .is_err());
    assert!(HttpEngine::new("tls", "https://example.net/", Duration::from_secs(1)).is_err());
}

/// A city-scoped engine with a fixed answer.
struct Fixed(Vec<Candidate>);

impl Engine for Fixed {
    fn name(&self) -> &str {
        "latency"
    }
    fn locate<'a>(
        &'a self,
        _: std::net::IpAddr,
        _: &'a World,
    ) -> BoxFuture<'a, Result<Vec<Candidate>, vantage_engines::Error>> {
        futures::future::ready(Ok(self.0.clone())).boxed()
    }
}

const AMSTERDAM: u32 = 2759794;
const ROTTERDAM: u32 = 2747891;
const UTRECHT: u32 = 2745912;
const ANTWERP: u32 = 2803138;
const FRANKFURT: u32 = 2925533;

#[tokio::test]
async fn a_country_scoped_python_engine_votes_for_every_named_city_of_its_country() {
    let (mut child, port) = start_python().await;
    let world = World::embedded().expect("world");
    let metrics = ExternalMetrics::default();
    let endpoint = format!("http://127.0.0.1:{port}/");
    let engine = HttpEngine::new("py-cc", &endpoint, Duration::from_secs(5))
        .expect("engine")
        .with_metrics(metrics.clone())
        .with_scope(Scope::Country);
    assert_eq!(engine.scope(), Scope::Country);
    let target: std::net::IpAddr = "2.1.2.3".parse().expect("ip");

    // {"country": "NL"} and {"country": "BE"} become their most populous cities; "ZZ"
    // is no country of the world: dropped and counted.
    let got = engine.locate(target, &world).await.expect("locate");
    let named: Vec<(&str, &str, u8)> = got
        .iter()
        .map(|c| {
            let city = world.city(c.city_id).expect("city");
            (city.country.as_str(), city.name.as_str(), c.score)
        })
        .collect();
    let biggest = |cc: &str| {
        world
            .cities()
            .iter()
            .filter(|c| c.country == cc)
            .max_by_key(|c| c.population)
            .map(|c| c.id)
    };
    assert_eq!(
        got.iter().map(|c| Some(c.city_id)).collect::<Vec<_>>(),
        vec![biggest("NL"), biggest("BE")]
    );
    assert_eq!(named[0].0, "NL", "{named:?}");
    assert_eq!(named[0].2, 6, "{named:?}");
    assert_eq!(
        (named.len(), named[1].0, named[1].2),
        (2, "BE", 2),
        "{named:?}"
    );
    let dropped = |name: &str| {
        metrics
            .dropped_candidates
            .get_or_create(&EngineLabel {
                engine: name.to_owned(),
            })
            .get()
    };
    assert_eq!(dropped("py-cc"), 1);

    // The same answer from a city-scoped engine names no city: every candidate dropped.
    let city_scoped = HttpEngine::new("py-city", &endpoint, Duration::from_secs(5))
        .expect("engine")
        .with_metrics(metrics.clone());
    assert!(city_scoped
        .locate(target, &world)
        .await
        .expect("locate")
        .is_empty());
    assert_eq!(dropped("py-city"), 3);

    // In the reducer the NL vote goes to every NL city the latency engine named (not to
    // Amsterdam, which it did not name), the BE vote to Antwerp, none to Frankfurt.
    assert_ne!(biggest("BE"), Some(ANTWERP), "Antwerp is not BE's stand-in");
    let latency = Fixed(vec![
        Candidate {
            city_id: ROTTERDAM,
            score: 7,
        },
        Candidate {
            city_id: ANTWERP,
            score: 8,
        },
        Candidate {
            city_id: UTRECHT,
            score: 4,
        },
        Candidate {
            city_id: FRANKFURT,
            score: 3,
        },
    ]);
    let engines: Vec<(Arc<dyn Engine>, EngineConfig)> = vec![
        (Arc::new(latency), EngineConfig::new("latency", 1.0, true)),
        (Arc::new(engine), EngineConfig::new("py-cc", 1.0, true)),
    ];
    let locator = Locator::new(world.clone(), engines, Duration::from_secs(5));
    let located = locator.locate(target, None).await;
    let partial = located
        .partials
        .iter()
        .find(|p| p.engine == "py-cc")
        .expect("py-cc partial");
    assert_eq!(
        (partial.scope, partial.error.as_deref()),
        (Scope::Country, None)
    );
    let sums: Vec<(u32, f64)> = located
        .scored
        .iter()
        .map(|s: &Scored| (s.city_id, s.score))
        .collect();
    assert_eq!(
        sums,
        vec![
            (ROTTERDAM, 13.0),
            (UTRECHT, 10.0),
            (ANTWERP, 10.0),
            (FRANKFURT, 3.0)
        ],
        "NL +6 on Rotterdam and Utrecht, BE +2 on Antwerp; NL's cities first (7 + 6 \
         against BE's 8 + 2)"
    );
    assert!(located.scored.iter().all(|s| s.city_id != AMSTERDAM));
    assert!(located.scored.iter().all(|s| s.scope == Scope::City));
    child.kill().await.expect("kill");
}
