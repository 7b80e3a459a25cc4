//! The HTTP API end to end (in process): IPmap-shaped answers, filters, batches, bad input.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use vantage_engines::engine::crowd::{CrowdPolicy, Crowdsourced, MemoryCrowdStore};
use vantage_engines::engine::latency::{Latency, ProbeRtt, StaticRtts};
use vantage_engines::engine::rdns::{ReverseDns, Rules, StaticPtr};
use vantage_engines::{router, Api, Engine, EngineConfig, Locator, World};

const TARGET: &str = "8.8.4.4";
const ANYCAST: &str = "9.9.9.9";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn app(max_batch: usize) -> axum::Router {
    let world = World::embedded().expect("world");
    let mut rtts = HashMap::new();
    // Probes near Frankfurt, Amsterdam and Paris; the target is in Frankfurt.
    rtts.insert(
        ip(TARGET),
        vec![
            ProbeRtt {
                probe_id: 1,
                latitude: 50.11,
                longitude: 8.68,
                rtt_ms: 0.3,
            },
            ProbeRtt {
                probe_id: 2,
                latitude: 52.37,
                longitude: 4.89,
                rtt_ms: 4.2,
            },
            ProbeRtt {
                probe_id: 3,
                latitude: 48.85,
                longitude: 2.35,
                rtt_ms: 5.5,
            },
        ],
    );
    rtts.insert(
        ip(ANYCAST),
        vec![
            ProbeRtt {
                probe_id: 2,
                latitude: 52.37,
                longitude: 4.89,
                rtt_ms: 0.8,
            },
            ProbeRtt {
                probe_id: 4,
                latitude: 35.69,
                longitude: 139.69,
                rtt_ms: 1.1,
            },
        ],
    );
    let rtts = Arc::new(StaticRtts(rtts));
    let mut ptr = HashMap::new();
    ptr.insert(ip(TARGET), vec!["ae-1.r01.fra02.example.net".to_owned()]);
    let crowd = Arc::new(Crowdsourced::new(
        Arc::new(MemoryCrowdStore::default()),
        CrowdPolicy::default(),
    ));
    let mut engines = Latency::all(rtts);
    let others: Vec<(Arc<dyn Engine>, EngineConfig)> = vec![
        (
            Arc::new(ReverseDns::new(
                Rules::embedded().expect("rules"),
                Arc::new(StaticPtr(ptr)),
            )),
            EngineConfig::new("reverse-dns", 2.0, true),
        ),
        (crowd.clone(), EngineConfig::new("crowdsourced", 1.0, false)),
    ];
    engines.extend(others);
    let locator = Locator::new(world, engines, Duration::from_secs(5));
    let mut registry = prometheus_client::registry::Registry::default();
    router(Arc::new(Api::new(
        locator,
        Some(crowd),
        Duration::from_secs(60),
        max_batch,
        &mut registry,
    )))
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let resp = app
        .clone()
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn locate_answers_like_ipmap() {
    let app = app(100);
    let (status, v) = call(&app, "GET", &format!("/api/v1/locate/{TARGET}/"), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let best = &v["locations"][0];
    assert_eq!(best["cityName"], "Frankfurt am Main", "{v}");
    assert_eq!(best["scope"], "city", "{v}");
    assert_eq!(best["countryCodeAlpha2"], "DE");
    assert!(best["stateAnsiCode"].is_string());
    assert!(best["latitude"].is_f64() && best["longitude"].is_f64());
    for engine in ["single-radius", "latency", "reverse-dns"] {
        assert!(
            best["contributions"][engine]["score"].is_u64(),
            "{engine} in {best}"
        );
    }
    assert!(
        best["contributions"].get("crowdsourced").is_none(),
        "disabled engine"
    );
    assert_eq!(v["anycast"], false);
    // Sorted best first.
    let scores: Vec<f64> = v["locations"]
        .as_array()
        .expect("array")
        .iter()
        .map(|l| l["score"].as_f64().expect("score"))
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));

    let (status, v) = call(&app, "GET", &format!("/api/v1/locate/{TARGET}/best"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["location"]["cityName"], "Frankfurt am Main");

    let (_, v) = call(
        &app,
        "GET",
        &format!("/api/v1/locate/{TARGET}/partials"),
        None,
    )
    .await;
    let engines: Vec<&str> = v["partials"]
        .as_array()
        .expect("partials")
        .iter()
        .map(|p| p["engine"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        engines,
        vec!["single-radius", "latency", "anycast", "reverse-dns"]
    );

    let (status, v) = call(
        &app,
        "GET",
        &format!("/api/v1/locate/{TARGET}/partials/reverse-dns"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v["partial"]["locations"][0]["cityName"],
        "Frankfurt am Main"
    );
    assert_eq!(v["partial"]["weight"], 2.0);

    // ?engines= filter, including an engine that is disabled by default.
    let (_, v) = call(
        &app,
        "GET",
        &format!("/api/v1/locate/{TARGET}/?engines=reverse-dns"),
        None,
    )
    .await;
    let contributions = v["locations"][0]["contributions"].as_object().expect("obj");
    assert_eq!(
        contributions.keys().collect::<Vec<_>>(),
        vec!["reverse-dns"]
    );
    let (status, v) = call(
        &app,
        "GET",
        &format!("/api/v1/locate/{TARGET}/?engines=nope"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"], "unknown_engine");
}

#[tokio::test]
async fn anycast_is_flagged_with_both_sites() {
    let app = app(100);
    let (status, v) = call(&app, "GET", &format!("/api/v1/locate/{ANYCAST}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["anycast"], true, "{v}");
    let (_, v) = call(
        &app,
        "GET",
        &format!("/api/v1/locate/{ANYCAST}/partials/anycast"),
        None,
    )
    .await;
    let countries: Vec<&str> = v["partial"]["locations"]
        .as_array()
        .expect("array")
        .iter()
        .map(|l| l["countryCodeAlpha2"].as_str().unwrap_or(""))
        .collect();
    assert!(
        countries.contains(&"NL") && countries.contains(&"JP"),
        "{countries:?}"
    );
}

#[tokio::test]
async fn bad_input_gets_a_4xx_with_a_reason() {
    let app = app(3);
    for (uri, status, reason) in [
        (
            "/api/v1/locate/not-an-ip/",
            StatusCode::BAD_REQUEST,
            "invalid_ip",
        ),
        (
            "/api/v1/locate/300.1.2.3",
            StatusCode::BAD_REQUEST,
            "invalid_ip",
        ),
        (
            "/api/v1/locate/10.1.2.3/",
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved_address",
        ),
        (
            "/api/v1/locate/192.168.0.1/best",
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved_address",
        ),
        (
            "/api/v1/locate/127.0.0.1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved_address",
        ),
        (
            "/api/v1/locate/100.64.0.1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved_address",
        ),
        (
            "/api/v1/locate/fe80::1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved_address",
        ),
        (
            "/api/v1/locate/fd00::1/partials",
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved_address",
        ),
        (
            "/api/v1/locate/2001:db8::1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved_address",
        ),
        (
            "/api/v1/locate/::ffff:10.0.0.1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved_address",
        ),
        (
            "/api/v1/locate/all?resources=8.8.8.8,1.1.1.1,9.9.9.9,8.8.4.4",
            StatusCode::BAD_REQUEST,
            "batch_too_large",
        ),
        (
            "/api/v1/locate/all",
            StatusCode::BAD_REQUEST,
            "missing_resources",
        ),
        (
            "/api/v1/worlds/?limit=many",
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            "/api/v1/worlds/?search=x&limit=100000",
            StatusCode::BAD_REQUEST,
            "bad_limit",
        ),
        ("/api/v1/worlds/abc", StatusCode::BAD_REQUEST, "invalid_id"),
        ("/api/v1/worlds/1", StatusCode::NOT_FOUND, "unknown_city"),
        (
            "/api/v1/worlds/reverse/91/0",
            StatusCode::BAD_REQUEST,
            "invalid_coordinates",
        ),
        (
            "/api/v1/worlds/reverse/abc/0",
            StatusCode::BAD_REQUEST,
            "invalid_coordinates",
        ),
        ("/api/v1/nothing", StatusCode::NOT_FOUND, "not_found"),
    ] {
        let (got, v) = call(&app, "GET", uri, None).await;
        assert_eq!(
            (got, v["error"].as_str()),
            (status, Some(reason)),
            "{uri}: {v}"
        );
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{uri}"
        );
    }
    // Neither search= nor country=: the largest cities, largest first.
    let (got, v) = call(&app, "GET", "/api/v1/worlds/?limit=3", None).await;
    assert_eq!(got, StatusCode::OK, "{v}");
    let pops: Vec<u64> = v["cities"]
        .as_array()
        .expect("cities")
        .iter()
        .filter_map(|c| c["population"].as_u64())
        .collect();
    assert_eq!(pops.len(), 3, "{v}");
    assert!(pops.windows(2).all(|w| w[0] >= w[1]), "{pops:?}");
    for (body, reason) in [
        (
            json!({"latitude": 52.37, "longitude": 4.89}),
            "missing_user",
        ),
        (
            json!({"user": "u", "latitude": 95.0, "longitude": 4.89}),
            "invalid_location",
        ),
        (json!({"user": "u"}), "invalid_location"),
        (json!({"user": "u", "id": 1.5}), "invalid_location"),
        (json!({"user": "u", "id": -1}), "invalid_location"),
    ] {
        let (got, v) = call(
            &app,
            "POST",
            "/api/v1/crowdsource/8.8.8.8",
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (got, v["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some(reason)),
            "{body}: {v}"
        );
    }
    // A well-formed body naming a city the dataset does not have: 422, like an address
    // that has no location (the document cannot list the dataset's ids).
    let (got, v) = call(
        &app,
        "POST",
        "/api/v1/crowdsource/8.8.8.8",
        Some(json!({"user": "u", "id": 1.0})),
    )
    .await;
    assert_eq!(
        (got, v["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_city"))
    );
    let (got, v) = call(
        &app,
        "POST",
        "/api/v1/crowdsource/10.0.0.1",
        Some(json!({"user": "u", "id": 2759794})),
    )
    .await;
    assert_eq!(
        (got, v["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("reserved_address"))
    );
}

#[tokio::test]
async fn batch_answers_each_address() {
    let app = app(10);
    let (status, v) = call(
        &app,
        "GET",
        &format!("/api/v1/locate/all?resources={TARGET},{ANYCAST},10.0.0.1,bogus"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        v["results"][TARGET]["locations"][0]["cityName"],
        "Frankfurt am Main"
    );
    assert_eq!(v["results"][ANYCAST]["anycast"], true);
    assert_eq!(v["errors"]["10.0.0.1"]["error"], "reserved_address");
    assert_eq!(v["errors"]["bogus"]["error"], "invalid_ip");
}

#[tokio::test]
async fn worlds_endpoints() {
    let app = app(10);
    let (status, v) = call(
        &app,
        "GET",
        "/api/v1/worlds/?search=amsterdam&country=NL",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["cities"][0]["name"], "Amsterdam");
    assert_eq!(v["cities"][0]["id"], 2759794);
    let (_, v) = call(&app, "GET", "/api/v1/worlds/2759794", None).await;
    assert_eq!(v["name"], "Amsterdam");
    assert_eq!(v["timezone"], "Europe/Amsterdam");
    let (_, v) = call(&app, "GET", "/api/v1/worlds/reverse/48.8566/2.3522", None).await;
    // GeoNames lists the arrondissements as places of their own.
    assert!(
        v["city"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("Paris")),
        "{v}"
    );
    assert!(v["distanceKm"].as_f64().is_some_and(|d| d < 2.0));
}

#[tokio::test]
async fn crowdsourced_reports_reach_the_engine() {
    let app = app(10);
    for user in ["ann", "ben", "cat"] {
        let (status, v) = call(
            &app,
            "POST",
            "/api/v1/crowdsource/1.2.3.4/",
            Some(json!({"user": user, "id": 2759794})),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    }
    // One user floods with another place, by coordinates.
    for _ in 0..50 {
        call(
            &app,
            "POST",
            "/api/v1/crowdsource/1.2.3.4",
            Some(json!({"user": "eve", "latitude": 35.69, "longitude": 139.69})),
        )
        .await;
    }
    let (_, v) = call(
        &app,
        "GET",
        "/api/v1/locate/1.2.3.4/?engines=crowdsourced",
        None,
    )
    .await;
    assert_eq!(v["locations"][0]["cityName"], "Amsterdam", "{v}");
}

/// A store whose writes take 300 ms.
struct SlowStore(vantage_engines::cache::MemoryAnswers);

impl vantage_engines::cache::AnswerStore for SlowStore {
    fn get<'a>(
        &'a self,
        ip: IpAddr,
        key: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<Option<vantage_engines::cache::Cached>, vantage_engines::Error>,
    > {
        self.0.get(ip, key)
    }
    fn put<'a>(
        &'a self,
        key: &'a str,
        answer: &'a vantage_engines::reducer::Located,
        answered_ms: u64,
    ) -> futures::future::BoxFuture<'a, Result<(), vantage_engines::Error>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.0.put(key, answer, answered_ms).await
        })
    }
    fn forget(
        &self,
        ip: IpAddr,
        at_ms: u64,
    ) -> futures::future::BoxFuture<'_, Result<(), vantage_engines::Error>> {
        self.0.forget(ip, at_ms)
    }
    fn forgets_since(
        &self,
        since_ms: u64,
    ) -> futures::future::BoxFuture<'_, Result<Vec<(IpAddr, u64)>, vantage_engines::Error>> {
        self.0.forgets_since(since_ms)
    }
}

#[tokio::test]
async fn answers_are_stored_in_the_background_and_flush_waits_for_them() {
    use vantage_engines::cache::AnswerStore;
    let world = World::embedded().expect("world");
    let rtts = StaticRtts(
        [(
            ip(TARGET),
            vec![ProbeRtt {
                probe_id: 1,
                latitude: 50.11,
                longitude: 8.68,
                rtt_ms: 0.3,
            }],
        )]
        .into(),
    );
    let engines = Latency::all(Arc::new(rtts));
    let store = Arc::new(SlowStore(Default::default()));
    let mut registry = prometheus_client::registry::Registry::default();
    let api = Api::new(
        Locator::new(world, engines, Duration::from_secs(5)),
        None,
        Duration::from_secs(3600),
        100,
        &mut registry,
    )
    .with_answer_store(store.clone());
    let started = std::time::Instant::now();
    let answer = api.locate(ip(TARGET), None).await;
    assert!(!answer.scored.is_empty());
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "the locate waited for the store: {:?}",
        started.elapsed()
    );
    let key = api.cache_key(None);
    assert!(store.get(ip(TARGET), &key).await.expect("get").is_none());
    api.flush().await;
    assert!(store.get(ip(TARGET), &key).await.expect("get").is_some());
}

/// An engine with a fixed answer for every address, counting its runs.
struct Fixed {
    name: &'static str,
    scope: vantage_engines::engine::Scope,
    candidates: Vec<(u32, u8)>,
    runs: Arc<std::sync::atomic::AtomicUsize>,
}

impl Engine for Fixed {
    fn name(&self) -> &str {
        self.name
    }
    fn scope(&self) -> vantage_engines::engine::Scope {
        self.scope
    }
    fn locate<'a>(
        &'a self,
        _: IpAddr,
        _: &'a World,
    ) -> futures::future::BoxFuture<
        'a,
        Result<Vec<vantage_engines::Candidate>, vantage_engines::Error>,
    > {
        self.runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let out = self
            .candidates
            .iter()
            .map(|&(city_id, score)| vantage_engines::Candidate { city_id, score })
            .collect();
        Box::pin(futures::future::ready(Ok(out)))
    }
}

const ROTTERDAM: u32 = 2747891;
const UTRECHT: u32 = 2745912;
const BERLIN: u32 = 2950159;
const FRANKFURT: u32 = 2925533;

/// A country-scoped engine voting NL (through Utrecht), a city-scoped one with only
/// weak votes, and a city-scoped one sure of Frankfurt; optionally a BGP table.
fn scoped_app(
    routes: Option<vantage_engines::reducer::RouteTable>,
) -> (axum::Router, Arc<std::sync::atomic::AtomicUsize>) {
    use vantage_engines::engine::Scope;
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let fixed = |name, scope, candidates: &[(u32, u8)]| -> (Arc<dyn Engine>, EngineConfig) {
        (
            Arc::new(Fixed {
                name,
                scope,
                candidates: candidates.to_vec(),
                runs: runs.clone(),
            }),
            EngineConfig::new(name, 1.0, true),
        )
    };
    let engines = vec![
        fixed("registry", Scope::Country, &[(UTRECHT, 3)]),
        fixed(
            "wide",
            Scope::City,
            &[(UTRECHT, 2), (ROTTERDAM, 1), (BERLIN, 2)],
        ),
        fixed("sharp", Scope::City, &[(FRANKFURT, 7)]),
    ];
    let mut locator = Locator::new(
        World::embedded().expect("world"),
        engines,
        Duration::from_secs(5),
    );
    if let Some(r) = routes {
        locator = locator.with_routes(r);
    }
    let mut registry = prometheus_client::registry::Registry::default();
    let api = Api::new(locator, None, Duration::from_secs(60), 10, &mut registry);
    (router(Arc::new(api)), runs)
}

#[tokio::test]
async fn a_country_only_answer_names_no_city() {
    let (app, _) = scoped_app(None);
    let world = World::embedded().expect("world");
    let biggest = world
        .cities()
        .iter()
        .filter(|c| c.country == "NL")
        .max_by_key(|c| c.population)
        .expect("NL cities");
    assert_ne!(biggest.id, UTRECHT);

    // Only the country-scoped engine: NL is known, no city is. The point is NL's most
    // populous city, not the Utrecht the engine used as its stand-in.
    let (status, v) = call(
        &app,
        "GET",
        "/api/v1/locate/193.0.14.129/?engines=registry",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let locations = v["locations"].as_array().expect("locations");
    assert_eq!(locations.len(), 1, "{v}");
    let nl = &locations[0];
    assert_eq!(nl["scope"], "country", "{v}");
    assert_eq!(nl["countryCodeAlpha2"], "NL");
    for field in ["id", "cityName", "stateAnsiCode"] {
        assert!(nl[field].is_null(), "{field} at country scope: {v}");
    }
    assert_eq!(
        (nl["latitude"].as_f64(), nl["longitude"].as_f64()),
        (Some(biggest.latitude), Some(biggest.longitude))
    );
    assert_eq!(nl["score"], 3.0);
    let (_, best) = call(
        &app,
        "GET",
        "/api/v1/locate/193.0.14.129/best?engines=registry",
        None,
    )
    .await;
    assert_eq!(best["location"]["scope"], "country", "{best}");
    assert!(best["location"]["cityName"].is_null(), "{best}");

    // Only weak city votes (2 and 1 of 10): still no city. NL once (Utrecht 2 + 3 and
    // Rotterdam 1 + 3 are both only "NL"), then DE.
    let (_, v) = call(
        &app,
        "GET",
        "/api/v1/locate/193.0.14.129/?engines=wide,registry",
        None,
    )
    .await;
    let got: Vec<(&str, &str, f64)> = v["locations"]
        .as_array()
        .expect("locations")
        .iter()
        .map(|l| {
            (
                l["scope"].as_str().unwrap_or("?"),
                l["countryCodeAlpha2"].as_str().unwrap_or("?"),
                l["score"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![("country", "NL", 5.0), ("country", "DE", 2.0)],
        "{v}"
    );
    assert!(
        v["locations"][0]["contributions"]["wide"].is_object(),
        "{v}"
    );

    // A strong city vote: cities are cities again, with the fields as before; the NL
    // vote nobody backed with a city stands as its country.
    let (_, v) = call(
        &app,
        "GET",
        "/api/v1/locate/193.0.14.129/?engines=sharp,registry",
        None,
    )
    .await;
    let frankfurt = &v["locations"][0];
    assert_eq!(
        (
            &frankfurt["scope"],
            &frankfurt["id"],
            &frankfurt["cityName"],
            &frankfurt["stateAnsiCode"]
        ),
        (
            &json!("city"),
            &json!(FRANKFURT),
            &json!("Frankfurt am Main"),
            &json!("05")
        ),
        "{v}"
    );
    assert_eq!(v["locations"][1]["scope"], "country", "{v}");
    assert_eq!(v["locations"][1]["countryCodeAlpha2"], "NL", "{v}");
    let (_, v) = call(
        &app,
        "GET",
        "/api/v1/locate/193.0.14.129/?engines=sharp,wide",
        None,
    )
    .await;
    let scopes: Vec<&str> = v["locations"]
        .as_array()
        .expect("locations")
        .iter()
        .map(|l| l["scope"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(scopes, vec!["city"; 4], "{v}");
}

#[tokio::test]
async fn unrouted_addresses_get_a_422_without_running_engines() {
    use std::sync::atomic::Ordering;
    use vantage_engines::asn::PrefixTable;
    use vantage_engines::data::DataFiles;
    use vantage_engines::reducer::RouteTable;
    let table = PrefixTable::parse("193.0.0.0/16\t3333\n").expect("table");
    let routes = RouteTable::new(
        Arc::new(DataFiles::fixed("asn-table", table)),
        "/data/ipasn.dat",
    );
    let (app, runs) = scoped_app(Some(routes));
    let (status, v) = call(&app, "GET", "/api/v1/locate/8.8.8.8/", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["error"], "unrouted_address", "{v}");
    let message = v["message"].as_str().expect("message");
    assert!(
        message.contains("no BGP route covers 8.8.8.8") && message.contains("/data/ipasn.dat"),
        "{message}"
    );
    for path in ["best", "partials", "partials/sharp"] {
        let (status, v) = call(&app, "GET", &format!("/api/v1/locate/8.8.8.8/{path}"), None).await;
        assert_eq!(
            (status, &v["error"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &json!("unrouted_address")),
            "{path}: {v}"
        );
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0, "no engine ran");

    // A covered address is located; a reserved one is still reserved_address; the table
    // has no IPv6 route, so it does not judge IPv6 addresses.
    let (status, v) = call(&app, "GET", "/api/v1/locate/193.0.14.129/", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(runs.load(Ordering::SeqCst), 3, "the three engines ran");
    let (status, v) = call(&app, "GET", "/api/v1/locate/2a00:1450::1/", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, v) = call(&app, "GET", "/api/v1/locate/10.0.0.1/", None).await;
    assert_eq!(v["error"], "reserved_address", "{v}");

    // The batch lists the unrouted address under errors.
    let (status, v) = call(
        &app,
        "GET",
        "/api/v1/locate/all?resources=193.0.14.129,8.8.8.8,10.0.0.1",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["results"]["193.0.14.129"]["locations"].is_array(), "{v}");
    assert!(v["results"].get("8.8.8.8").is_none(), "{v}");
    assert_eq!(v["errors"]["8.8.8.8"]["error"], "unrouted_address", "{v}");
    assert_eq!(v["errors"]["10.0.0.1"]["error"], "reserved_address", "{v}");

    // Without an ASN table nothing is checked.
    let (app, _) = scoped_app(None);
    let (status, v) = call(&app, "GET", "/api/v1/locate/8.8.8.8/", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
}
