//! The console's routes through the router, with a fixture set of files: the page at
//! each console URL (GET only; API paths keep their JSON 404), assets with their types,
//! cache headers and gzip, the security headers, the 503 of a binary without the
//! console; the probe map (gzip when accepted), a probe's measurements, the `vantage`
//! object and `namespace` filter of measurements; and the geolocation proxy against a
//! stand-in engines server on a real socket.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use vantage_api::catalog::{EmptyCatalog, FixedCatalog};
use vantage_api::console::{Asset, Assets, CSP};
use vantage_api::rows::ClickHouseRows;
use vantage_api::{router, AppState, Metrics};
use vantage_crd::{Measurement, Probe};

/// A built console of three files.
struct Fixture(BTreeMap<&'static str, Asset>);

impl Fixture {
    fn new() -> Self {
        let js = "console.log('vantage');".repeat(40);
        let gz = {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut enc, js.as_bytes()).expect("gzip");
            enc.finish().expect("gzip")
        };
        Self(BTreeMap::from([
            (
                "index.html",
                Asset {
                    bytes: Bytes::from_static(b"<!doctype html><div id=app></div>"),
                    gzip: None,
                    content_type: "text/html; charset=utf-8",
                },
            ),
            (
                "assets/index-abc.js",
                Asset {
                    bytes: Bytes::from(js),
                    gzip: Some(Bytes::from(gz)),
                    content_type: "text/javascript; charset=utf-8",
                },
            ),
            (
                "assets/index-abc.css",
                Asset {
                    bytes: Bytes::from_static(b"body{}"),
                    gzip: None,
                    content_type: "text/css; charset=utf-8",
                },
            ),
        ]))
    }
}

impl Assets for Fixture {
    fn get(&self, path: &str) -> Option<Asset> {
        self.0.get(path).cloned()
    }
}

/// A binary built without the console.
struct NoConsole;

impl Assets for NoConsole {
    fn get(&self, _path: &str) -> Option<Asset> {
        None
    }
}

fn msm(name: &str, ns: &str, id: u64, probes: &[u32]) -> Arc<Measurement> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2024-05-01T12:00:00Z"},
            "spec": {"type": "ping", "target": "192.0.2.1", "probes": [{"type": "area", "value": "WW", "requested": 2}]},
            "status": {"id": id, "state": "Ongoing", "probes": probes, "probeCount": probes.len(), "probesReported": 1,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Scheduled",
                                       "message": "2 probes", "lastTransitionTime": "2024-05-01T12:00:00Z"}]},
        }))
        .expect("measurement"),
    )
}

fn probe(id: u32, located: bool, system_tags: &[&str]) -> Arc<Probe> {
    let mut spec = json!({"id": id, "public_key": "ssh-ed25519 AAAA", "country_code": "NL", "asn_v4": 64500,
                          "tags": ["home"], "anchor": id == 2});
    if located {
        spec["location"] = json!({"latitude": 52.37, "longitude": 4.89});
    }
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "vantage.dev/v1alpha1", "kind": "Probe", "metadata": {"name": format!("probe-{id}")},
            "spec": spec,
            "status": {"connected": true, "systemTags": system_tags},
        }))
        .expect("probe"),
    )
}

fn app(console: Arc<dyn Assets>, engines: Option<&str>) -> axum::Router {
    let catalog = FixedCatalog {
        measurements: vec![
            msm("a", "team-a", 11, &[1, 2]),
            msm("b", "team-b", 12, &[2]),
        ],
        probes: vec![
            probe(2, false, &[]),
            probe(1, true, &["system-ipv4-works", "home"]),
        ],
    };
    router(Arc::new(AppState {
        catalog: Arc::new(catalog),
        rows: Arc::new(ClickHouseRows::new("http://127.0.0.1:9", "db")),
        live: None,
        stream: None,
        scheme: "http",
        public_url: None,
        create_timeout: Duration::from_secs(1),
        max_requested: 1000,
        metrics: Metrics::default(),
        console,
        engines: engines.map(|u| vantage_api::engines::Engines::new(u).expect("engines url")),
    }))
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let (parts, body) = resp.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.expect("body").to_bytes(),
    )
}

fn header_of(h: &HeaderMap, name: header::HeaderName) -> &str {
    h.get(&name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn json_of(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn every_console_url_answers_the_page() {
    let app = app(Arc::new(Fixture::new()), None);
    for uri in [
        "/",
        "/probes",
        "/probes/42",
        "/probes?country=NL&status=1",
        "/measurements",
        "/measurements/new",
        "/measurements/1000001",
        "/measurements?type=ping&page=2",
        "/locate?ip=193.0.14.129",
        "/censorship",
    ] {
        let (st, h, body) = call(&app, "GET", uri, &[]).await;
        assert_eq!(st, StatusCode::OK, "{uri}");
        assert_eq!(&body[..], b"<!doctype html><div id=app></div>", "{uri}");
        assert_eq!(
            header_of(&h, header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
        assert_eq!(header_of(&h, header::CACHE_CONTROL), "no-cache", "{uri}");
        assert_eq!(header_of(&h, header::CONTENT_SECURITY_POLICY), CSP);
        assert_eq!(header_of(&h, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(header_of(&h, header::REFERRER_POLICY), "same-origin");
    }
    // Only GET (and HEAD) serve the page.
    let (st, _, _) = call(&app, "POST", "/measurements/new", &[]).await;
    assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);
    let (st, _, body) = call(&app, "HEAD", "/probes", &[]).await;
    assert_eq!((st, body.len()), (StatusCode::OK, 0));
}

#[tokio::test]
async fn other_paths_keep_the_json_404() {
    let app = app(Arc::new(Fixture::new()), None);
    for uri in [
        "/api/v2/nothing/",
        "/nothing",
        "/probes/1/extra",
        "/index.html",
    ] {
        let (st, h, body) = call(&app, "GET", uri, &[]).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(header_of(&h, header::CONTENT_TYPE), "application/json");
        assert_eq!(json_of(&body)["error"]["code"], 103, "{uri}");
    }
}

#[tokio::test]
async fn assets_are_typed_cached_for_good_and_gzipped_when_accepted() {
    let app = app(Arc::new(Fixture::new()), None);
    let (st, h, body) = call(&app, "GET", "/assets/index-abc.js", &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        header_of(&h, header::CONTENT_TYPE),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        header_of(&h, header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header_of(&h, header::CONTENT_ENCODING), "");
    assert!(body.starts_with(b"console.log"));
    assert_eq!(header_of(&h, header::CONTENT_SECURITY_POLICY), CSP);

    let (st, h, body) = call(
        &app,
        "GET",
        "/assets/index-abc.js",
        &[("accept-encoding", "gzip, br")],
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(header_of(&h, header::CONTENT_ENCODING), "gzip");
    assert_eq!(header_of(&h, header::VARY), "Accept-Encoding");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .expect("gzip");
    assert_eq!(text, "console.log('vantage');".repeat(40));

    // No gzip copy: as it is, whatever the client accepts.
    let (_, h, body) = call(
        &app,
        "GET",
        "/assets/index-abc.css",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(
        (header_of(&h, header::CONTENT_ENCODING), &body[..]),
        ("", &b"body{}"[..])
    );
    assert_eq!(
        header_of(&h, header::CONTENT_TYPE),
        "text/css; charset=utf-8"
    );

    for uri in ["/assets/missing.js", "/assets/../index.html"] {
        let (st, _, _) = call(&app, "GET", uri, &[]).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{uri}");
    }
}

#[tokio::test]
async fn a_binary_without_the_console_says_how_to_build_it() {
    let app = app(Arc::new(NoConsole), None);
    let (st, h, body) = call(&app, "GET", "/probes/3", &[]).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        header_of(&h, header::CONTENT_TYPE),
        "text/html; charset=utf-8"
    );
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("built without the console") && text.contains("make console"),
        "{text}"
    );
    // The API itself still answers.
    let (st, _, _) = call(&app, "GET", "/api/openapi.json", &[]).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test]
async fn probe_map_rows_and_gzip() {
    let app = app(Arc::new(Fixture::new()), None);
    let (st, h, body) = call(&app, "GET", "/api/vantage/v1/probes/map", &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(header_of(&h, header::CONTENT_TYPE), "application/json");
    let plain = json_of(&body);
    assert_eq!(
        plain,
        json!({"count": 2,
               "columns": ["id", "lat", "lon", "status", "is_anchor", "asn_v4", "country_code", "tags"],
               "rows": [[1, 52.37, 4.89, 1, false, 64500, "NL", ["home", "system-ipv4-works"]],
                        [2, null, null, 1, true, 64500, "NL", ["home"]]]})
    );
    let (st, h, body) = call(
        &app,
        "GET",
        "/api/vantage/v1/probes/map",
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(header_of(&h, header::CONTENT_ENCODING), "gzip");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .expect("gzip");
    assert_eq!(serde_json::from_str::<Value>(&text).expect("json"), plain);
    let (st, _, body) = call(&app, "GET", "/api/vantage/v1/probes/map?country=NL", &[]).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        json_of(&body)["error"]["errors"][0]["source"]["pointer"],
        "?country"
    );
}

#[tokio::test]
async fn a_probes_measurements_and_the_vantage_object() {
    let app = app(Arc::new(Fixture::new()), None);
    let (st, _, body) = call(&app, "GET", "/api/vantage/v1/probes/2/measurements", &[]).await;
    assert_eq!(st, StatusCode::OK);
    let ids: Vec<u64> = json_of(&body)["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(ids, [12, 11]);
    let (_, _, body) = call(&app, "GET", "/api/vantage/v1/probes/1/measurements", &[]).await;
    assert_eq!(json_of(&body)["results"].as_array().map(Vec::len), Some(1));
    let (st, _, _) = call(&app, "GET", "/api/vantage/v1/probes/9/measurements", &[]).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    let (_, _, body) = call(&app, "GET", "/api/v2/measurements/11/", &[]).await;
    let v = json_of(&body);
    assert_eq!(
        v["vantage"],
        json!({"namespace": "team-a", "name": "a", "state": "Ongoing", "probes_reported": 1,
               "conditions": [{"type": "Ready", "status": "True", "reason": "Scheduled",
                               "message": "2 probes", "lastTransitionTime": "2024-05-01T12:00:00Z"}]})
    );
    let (_, _, body) = call(&app, "GET", "/api/v2/measurements/?namespace=team-b", &[]).await;
    let v = json_of(&body);
    assert_eq!(
        (v["count"].as_u64(), v["results"][0]["id"].as_u64()),
        (Some(1), Some(12))
    );
}

/// A stand-in for `vantage engines`: answers the path and query it was asked.
async fn engines_standin() -> String {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/api/v1/locate/{ip}",
            get(|axum::extract::Path(ip): axum::extract::Path<String>, uri: axum::http::Uri| async move {
                axum::Json(json!({"ip": ip, "query": uri.query()}))
            }),
        )
        .route(
            "/api/v1/locate/{ip}/partials",
            get(|| async { axum::Json(json!({"partials": []})) }),
        )
        .route(
            "/api/v1/worlds/{id}",
            get(|| async {
                (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"error": "unknown_world"})),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn geolocation_is_proxied_to_the_engines() {
    let url = engines_standin().await;
    let app = app(Arc::new(Fixture::new()), Some(&url));
    let (st, _, body) = call(&app, "GET", "/api/v1/locate/193.0.14.129?engines=rir", &[]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        json_of(&body),
        json!({"ip": "193.0.14.129", "query": "engines=rir"})
    );
    let (st, _, body) = call(&app, "GET", "/api/v1/locate/2001:db8::1/partials", &[]).await;
    assert_eq!(
        (st, json_of(&body)),
        (StatusCode::OK, json!({"partials": []}))
    );
    // The engines' status and body come back as they are.
    let (st, _, body) = call(&app, "GET", "/api/v1/worlds/2759794", &[]).await;
    assert_eq!(
        (st, json_of(&body)),
        (StatusCode::NOT_FOUND, json!({"error": "unknown_world"}))
    );
    // Bad path parameters never reach the engines.
    for (uri, param) in [
        ("/api/v1/locate/not-an-ip", "?ip"),
        ("/api/v1/locate/1.2.3.4.5/partials", "?ip"),
        ("/api/v1/worlds/12a", "?id"),
    ] {
        let (st, _, body) = call(&app, "GET", uri, &[]).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(
            json_of(&body)["error"]["errors"][0]["source"]["pointer"],
            param
        );
    }
}

#[tokio::test]
async fn geolocation_without_engines_says_what_is_missing() {
    let app = app(Arc::new(Fixture::new()), None);
    let (st, _, body) = call(&app, "GET", "/api/v1/locate/193.0.14.129", &[]).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    let detail = json_of(&body)["error"]["detail"].to_string();
    assert!(detail.contains("--engines-url"), "{detail}");

    // A port nothing listens on: the message names the URL.
    let port = vantage_testkit::free_port().expect("port");
    let url = format!("http://127.0.0.1:{port}");
    let app = app_with_empty_catalog(&url);
    let (st, _, body) = call(&app, "GET", "/api/v1/worlds/1", &[]).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    let detail = json_of(&body)["error"]["detail"].to_string();
    assert!(detail.contains(&url), "{detail}");
}

fn app_with_empty_catalog(engines: &str) -> axum::Router {
    router(Arc::new(AppState {
        catalog: Arc::new(EmptyCatalog),
        rows: Arc::new(ClickHouseRows::new("http://127.0.0.1:9", "db")),
        live: None,
        stream: None,
        scheme: "http",
        public_url: None,
        create_timeout: Duration::from_secs(1),
        max_requested: 1000,
        metrics: Metrics::default(),
        console: Arc::new(NoConsole),
        engines: Some(vantage_api::engines::Engines::new(engines).expect("engines url")),
    }))
}
