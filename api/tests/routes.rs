//! The routes against an in-memory catalog and canned ClickHouse output: no network.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use http_body_util::BodyExt;
use kube::ResourceExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use vantage_api::catalog::{Catalog, CatalogError, KeyOwner};
use vantage_api::rows::{Rows, RowsError};
use vantage_api::{router, AppState, Metrics};
use vantage_crd::{Measurement, Probe};

/// What the fake operator does with a created Measurement.
#[derive(Clone, Copy)]
enum Operator {
    /// Gives ids from 1000001 on.
    Ids,
    /// Marks it Invalid.
    Invalid,
    /// Does nothing.
    Absent,
}

struct FakeCatalog {
    measurements: Mutex<Vec<Arc<Measurement>>>,
    /// Every merge patch applied, in order.
    patches: Mutex<Vec<Value>>,
    probes: Vec<Arc<Probe>>,
    keys: BTreeMap<String, KeyOwner>,
    operator: Operator,
}

impl Catalog for FakeCatalog {
    fn measurements(&self) -> Vec<Arc<Measurement>> {
        self.measurements.lock().expect("lock").clone()
    }
    fn probes(&self) -> Vec<Arc<Probe>> {
        self.probes.clone()
    }
    fn key_owner(&self, key: &str) -> Option<KeyOwner> {
        self.keys.get(key).cloned()
    }
    fn create(&self, mut msm: Measurement) -> BoxFuture<'_, Result<String, CatalogError>> {
        Box::pin(async move {
            let mut all = self.measurements.lock().expect("lock");
            let n = all.len() as u64;
            msm.status = match self.operator {
                Operator::Ids => Some(serde_json::from_value(json!({"id": 1_000_001 + n, "state": "Scheduled"})).expect("status")),
                Operator::Invalid => Some(
                    serde_json::from_value(json!({"state": "Failed", "conditions": [{"type": "Invalid", "status": "True",
                        "reason": "InvalidSpec", "message": "spec.probes: no such probes", "lastTransitionTime": "2024-05-01T12:00:00Z"}]}))
                    .expect("status"),
                ),
                Operator::Absent => None,
            };
            let name = msm.name_any();
            all.push(Arc::new(msm));
            Ok(name)
        })
    }
    fn ready(&self) -> bool {
        true
    }
    fn patch_measurement(
        &self,
        namespace: &str,
        name: &str,
        patch: Value,
    ) -> BoxFuture<'_, Result<(), CatalogError>> {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        Box::pin(async move {
            let mut all = self.measurements.lock().expect("lock");
            let Some(slot) = all.iter_mut().find(|m| {
                m.namespace().as_deref() == Some(namespace.as_str()) && m.name_any() == name
            }) else {
                return Err(CatalogError::Refused {
                    code: 404,
                    reason: "NotFound".into(),
                    message: name,
                });
            };
            let mut obj = serde_json::to_value(slot.as_ref()).expect("json");
            let version = obj["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("0")
                .to_owned();
            if let Some(want) = patch["metadata"]["resourceVersion"].as_str() {
                if want != version {
                    return Err(CatalogError::Refused {
                        code: 409,
                        reason: "Conflict".into(),
                        message: "changed".into(),
                    });
                }
            }
            merge(&mut obj, &patch);
            let next = version.parse::<u64>().unwrap_or(0) + 1;
            obj["metadata"]["resourceVersion"] = json!(next.to_string());
            self.patches.lock().expect("lock").push(patch.clone());
            *slot = Arc::new(serde_json::from_value(obj).expect("measurement"));
            Ok(())
        })
    }
}

/// JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(fields) => {
            if !target.is_object() {
                *target = json!({});
            }
            for (k, v) in fields {
                if v.is_null() {
                    if let Some(obj) = target.as_object_mut() {
                        obj.remove(k);
                    }
                } else {
                    merge(&mut target[k], v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

#[derive(Default)]
struct FakeRows {
    chunks: Vec<&'static str>,
    fail: bool,
    sql: Mutex<Vec<String>>,
    json: Vec<Value>,
}

impl Rows for FakeRows {
    fn database(&self) -> &str {
        "db"
    }
    fn stream(
        &self,
        sql: String,
        _format: &'static str,
    ) -> BoxStream<'static, Result<Bytes, RowsError>> {
        self.sql.lock().expect("lock").push(sql);
        if self.fail {
            let e = RowsError::Decode(serde_json::from_str::<Value>("x").expect_err("error"));
            return futures::stream::once(async move { Err(e) }).boxed();
        }
        futures::stream::iter(
            self.chunks
                .clone()
                .into_iter()
                .map(|c| Ok(Bytes::from_static(c.as_bytes()))),
        )
        .boxed()
    }
    fn fetch(&self, sql: String) -> BoxFuture<'_, Result<Vec<Value>, RowsError>> {
        self.sql.lock().expect("lock").push(sql.clone());
        let rows = if sql.contains("count()") && !sql.contains("measurement_count") {
            vec![json!({"n": self.json.len()})]
        } else {
            self.json.clone()
        };
        Box::pin(async move { Ok(rows) })
    }
}

fn msm(name: &str, ns: &str, id: u64, kind: &str, state: &str) -> Arc<Measurement> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2024-05-01T12:00:00Z"},
            "spec": {"type": kind, "target": "192.0.2.1", "description": format!("{name} test"), "query_argument": "example.net",
                     "probes": [{"type": "area", "value": "WW", "requested": 2}]},
            "status": {"id": id, "state": state, "probes": [1], "probeCount": 1},
        }))
        .expect("measurement"),
    )
}

/// `m` as created through the API with the key Secret `secret`.
fn owned(m: Arc<Measurement>, secret: &str) -> Arc<Measurement> {
    let mut m = (*m).clone();
    m.metadata.annotations = Some(BTreeMap::from([(
        vantage_api::catalog::KEY_ANNOTATION.to_owned(),
        secret.to_owned(),
    )]));
    m.metadata.resource_version = Some("1".into());
    Arc::new(m)
}

fn probe(id: u32, cc: &str, connected: bool) -> Arc<Probe> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "vantage.dev/v1alpha1", "kind": "Probe", "metadata": {"name": format!("probe-{id}")},
            "spec": {"id": id, "public_key": "ssh-ed25519 AAAA", "country_code": cc, "asn_v4": 64500, "tags": ["e2e"]},
            "status": {"connected": connected, "address": "198.51.100.1"},
        }))
        .expect("probe"),
    )
}

struct Setup {
    catalog: Arc<FakeCatalog>,
    rows: Arc<FakeRows>,
    app: axum::Router,
}

fn setup(operator: Operator, rows: FakeRows) -> Setup {
    let catalog = Arc::new(FakeCatalog {
        measurements: Mutex::new(vec![
            owned(msm("a", "team-a", 1000001, "ping", "Ongoing"), "alpha-key"),
            owned(msm("b", "team-a", 1000002, "dns", "Stopped"), "alpha-key"),
            msm("c", "team-b", 1000003, "ping", "Scheduled"),
        ]),
        patches: Mutex::new(Vec::new()),
        probes: vec![
            probe(1, "NL", true),
            probe(2, "DE", false),
            probe(3, "NL", false),
        ],
        keys: BTreeMap::from([
            (
                "k-alpha".to_owned(),
                KeyOwner {
                    namespace: "team-a".into(),
                    secret: "alpha-key".into(),
                },
            ),
            (
                "k-alpha-2".to_owned(),
                KeyOwner {
                    namespace: "team-a".into(),
                    secret: "alpha-key-2".into(),
                },
            ),
            (
                "k-bravo".to_owned(),
                KeyOwner {
                    namespace: "team-b".into(),
                    secret: "bravo-key".into(),
                },
            ),
        ]),
        operator,
    });
    let rows = Arc::new(rows);
    let state = Arc::new(AppState {
        catalog: catalog.clone(),
        rows: rows.clone(),
        live: None,
        stream: None,
        scheme: "https",
        public_url: None,
        create_timeout: Duration::from_millis(500),
        max_requested: 1000,
        metrics: Metrics::default(),
        console: Arc::new(vantage_api::console::EmbeddedAssets),
        engines: None,
    });
    Setup {
        catalog,
        rows,
        app: router(state),
    }
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, String, Option<String>) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "api.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).expect("request"))
        .await
        .expect("infallible");
    let status = resp.status();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned(), ctype)
}

async fn get_json(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let (s, body, _) = call(app, "GET", uri, &[], "").await;
    (
        s,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: {e}: {body}")),
    )
}

#[tokio::test]
async fn measurement_list_filters_and_pages() {
    let s = setup(Operator::Ids, FakeRows::default());
    let (st, v) = get_json(&s.app, "/api/v2/measurements/?type=ping&page_size=1").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["count"], 2);
    assert_eq!(v["results"][0]["id"], 1000003, "newest first");
    assert_eq!(
        v["next"],
        "https://api.test/api/v2/measurements/?page=2&page_size=1&type=ping"
    );
    assert_eq!(v["previous"], Value::Null);
    let (_, v) = get_json(&s.app, "/api/v2/measurements?status=4").await;
    assert_eq!(v["count"], 1);
    assert_eq!(v["results"][0]["type"], "dns");
    let (_, v) = get_json(
        &s.app,
        "/api/v2/measurements/?id__in=1000001,1000003&sort=id",
    )
    .await;
    let ids: Vec<u64> = v["results"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(ids, [1000001, 1000003]);
    let (st, v) = get_json(&s.app, "/api/v2/measurements/?colour=red").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["errors"][0]["source"]["pointer"], "?colour");
    let (st, _) = get_json(&s.app, "/api/v2/measurements/?page=9").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn one_measurement_and_unknown_ones() {
    let s = setup(Operator::Ids, FakeRows::default());
    for uri in [
        "/api/v2/measurements/1000002/",
        "/api/v2/measurements/1000002",
    ] {
        let (st, v) = get_json(&s.app, uri).await;
        assert_eq!(st, StatusCode::OK, "{uri}");
        assert_eq!(v["id"], 1000002);
        assert_eq!(
            v["status"],
            json!({"id": 4, "name": "Stopped", "when": null})
        );
        assert_eq!(
            v["result"],
            "https://api.test/api/v2/measurements/1000002/results/"
        );
    }
    let (st, v) = get_json(&s.app, "/api/v2/measurements/42/").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["status"], 404);
    assert!(v["error"]["detail"]
        .as_str()
        .expect("detail")
        .contains("42"));
    let (st, _) = get_json(&s.app, "/api/v2/measurements/abc/").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = get_json(&s.app, "/api/v3/nothing").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(v["error"]["detail"]
        .as_str()
        .expect("detail")
        .contains("openapi.json"));
}

#[tokio::test]
async fn results_stream_as_a_json_array() {
    let rows = FakeRows {
        chunks: vec!["{\"prb_id\":1,\"rtt\":1.5}\n{\"prb_id\"", ":2}\n"],
        ..Default::default()
    };
    let s = setup(Operator::Ids, rows);
    let (st, body, ctype) = call(
        &s.app,
        "GET",
        "/api/v2/measurements/1000001/results?start=10&stop=20&probe_ids=1,2&format=json",
        &[],
        "",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(ctype.as_deref(), Some("application/json"));
    let v: Value = serde_json::from_str(&body).expect("a JSON array");
    assert_eq!(v, json!([{"prb_id": 1, "rtt": 1.5}, {"prb_id": 2}]));
    let sql = s
        .rows
        .sql
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a query");
    assert_eq!(
        sql,
        "SELECT raw FROM db.results FINAL WHERE msm_id = 1000001 AND timestamp >= toDateTime(10) AND timestamp <= toDateTime(20) AND prb_id IN (1,2)"
    );
    let (_, body, ctype) = call(
        &s.app,
        "GET",
        "/api/v2/measurements/1000001/results/?format=txt",
        &[],
        "",
    )
    .await;
    assert_eq!(ctype.as_deref(), Some("application/x-ndjson"));
    assert_eq!(body.lines().count(), 2);
    let (_, body, _) = call(
        &s.app,
        "GET",
        "/api/v2/measurements/1000001/latest/?probe_ids=2&lookback_days=1",
        &[],
        "",
    )
    .await;
    assert!(body.starts_with('['));
    let sql = s
        .rows
        .sql
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a query");
    assert_eq!(
        sql,
        vantage_api::routes::latest_sql("db", 1000001, Some(&[2]), Some(1)),
        "{sql}"
    );
    assert!(
        sql.ends_with("ORDER BY prb_id, result_id LIMIT 1 BY prb_id"),
        "{sql}"
    );

    for (uri, pointer) in [
        (
            "/api/v2/measurements/1000001/results/?start=yesterday",
            "?start",
        ),
        (
            "/api/v2/measurements/1000001/results/?probe_ids=1,x",
            "?probe_ids",
        ),
        (
            "/api/v2/measurements/1000001/results/?format=csv",
            "?format",
        ),
        (
            "/api/v2/measurements/1000001/results/?colour=red",
            "?colour",
        ),
    ] {
        let (st, v) = get_json(&s.app, uri).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(
            v["error"]["errors"][0]["source"]["pointer"], pointer,
            "{uri}"
        );
    }
}

#[tokio::test]
async fn empty_results_are_an_empty_array_unknown_ids_a_404_and_failures_a_503() {
    let s = setup(Operator::Ids, FakeRows::default());
    // A measurement with no results yet: an empty array.
    let (st, body, _) = call(
        &s.app,
        "GET",
        "/api/v2/measurements/1000003/results/",
        &[],
        "",
    )
    .await;
    assert_eq!((st, body.as_str()), (StatusCode::OK, "[]"));
    // No resource and no results: 404, as on RIPE Atlas.
    for uri in [
        "/api/v2/measurements/5/results/",
        "/api/v2/measurements/5/latest/",
    ] {
        let (st, v) = get_json(&s.app, uri).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(v["error"]["detail"], "measurement 5 does not exist");
    }
    let s = setup(
        Operator::Ids,
        FakeRows {
            fail: true,
            ..Default::default()
        },
    );
    let (st, v) = get_json(&s.app, "/api/v2/measurements/1000001/results/").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"]["status"], 503);
}

const PING_BODY: &str = r#"{"definitions": [{"type": "ping", "af": 4, "target": "192.0.2.9", "description": "from cousteau"}],
    "probes": [{"type": "area", "value": "WW", "requested": 1}], "is_oneoff": false}"#;

#[tokio::test]
async fn creation_needs_a_known_key() {
    let s = setup(Operator::Ids, FakeRows::default());
    let (st, body, _) = call(
        &s.app,
        "POST",
        "/api/v2/measurements/",
        &[("content-type", "application/json")],
        PING_BODY,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["error"]["code"], 104);
    assert!(v["error"]["detail"]
        .as_str()
        .expect("detail")
        .contains("Authorization: Key"));
    let (st, _, _) = call(
        &s.app,
        "POST",
        "/api/v2/measurements/",
        &[("authorization", "Key wrong")],
        PING_BODY,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, _) = call(
        &s.app,
        "POST",
        "/api/v2/measurements/?key=wrong",
        &[],
        PING_BODY,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(s.catalog.measurements().len(), 3, "nothing created");
}

#[tokio::test]
async fn creation_makes_measurements_in_the_keys_namespace() {
    let s = setup(Operator::Ids, FakeRows::default());
    let (st, body, _) = call(
        &s.app,
        "POST",
        "/api/v2/measurements/",
        &[("authorization", "Key k-alpha")],
        PING_BODY,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v, json!({"measurements": [1000004]}));
    let created = s.catalog.measurements().last().cloned().expect("created");
    assert_eq!(created.namespace().as_deref(), Some("team-a"));
    assert!(
        created.name_any().starts_with("api-ping-"),
        "{}",
        created.name_any()
    );
    assert_eq!(
        created
            .labels()
            .get("vantage.dev/created-by")
            .map(String::as_str),
        Some("api")
    );
    assert_eq!(
        created
            .annotations()
            .get("vantage.dev/api-key")
            .map(String::as_str),
        Some("alpha-key")
    );
    assert_eq!(created.spec.definition.target.as_deref(), Some("192.0.2.9"));
    assert_eq!(created.spec.probes[0].value, "WW");

    // Two definitions, key in the query.
    let two = r#"{"definitions": [{"type": "ping", "target": "192.0.2.9"}, {"type": "traceroute", "target": "192.0.2.9", "protocol": "ICMP"}],
                  "probes": [{"type": "probes", "value": "1,2", "requested": 2}], "is_oneoff": true}"#;
    let (st, body, _) = call(&s.app, "POST", "/api/v2/measurements?key=k-alpha", &[], two).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json"),
        json!({"measurements": [1000005, 1000006]})
    );
}

#[tokio::test]
async fn bad_definitions_name_the_field() {
    let s = setup(Operator::Ids, FakeRows::default());
    let key = [("authorization", "Key k-alpha")];
    for (body, pointer) in [
        (
            r#"{"definitions": [{"type": "ping", "target": "192.0.2.9", "packets": 99}], "probes": [{"type": "area", "value": "WW", "requested": 1}]}"#,
            "/definitions/0/packets",
        ),
        (
            r#"{"definitions": [{"type": "ping"}], "probes": [{"type": "area", "value": "WW", "requested": 1}]}"#,
            "/definitions/0/target",
        ),
        (
            r#"{"definitions": [{"type": "ping", "target": "192.0.2.9"}], "probes": [{"type": "area", "value": "Mars", "requested": 1}]}"#,
            "/probes/0/value",
        ),
        (r#"{"definitions": [], "probes": []}"#, "/definitions"),
        (r#"{"definitions": "#, "/body"),
        (r#"{"probes": []}"#, "/body"),
    ] {
        let (st, text, _) = call(&s.app, "POST", "/api/v2/measurements/", &key, body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["error"]["code"], 102);
        assert_eq!(
            v["error"]["errors"][0]["source"]["pointer"], pointer,
            "{text}"
        );
    }
    assert_eq!(s.catalog.measurements().len(), 3, "nothing created");
}

#[tokio::test]
async fn operator_refusal_and_absence_are_reported() {
    let s = setup(Operator::Invalid, FakeRows::default());
    let (st, body, _) = call(
        &s.app,
        "POST",
        "/api/v2/measurements/",
        &[("authorization", "Key k-alpha")],
        PING_BODY,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(body.contains("no such probes"), "{body}");
    let s = setup(Operator::Absent, FakeRows::default());
    let (st, body, _) = call(
        &s.app,
        "POST",
        "/api/v2/measurements/",
        &[("authorization", "Key k-alpha")],
        PING_BODY,
    )
    .await;
    assert_eq!(st, StatusCode::GATEWAY_TIMEOUT);
    assert!(body.contains("operator"), "{body}");
}

#[tokio::test]
async fn probes_list_and_detail() {
    let s = setup(Operator::Ids, FakeRows::default());
    let (st, v) = get_json(&s.app, "/api/v2/probes/?country_code=NL").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["count"], 2);
    assert_eq!(v["results"][0]["id"], 1);
    assert_eq!(v["results"][0]["status"]["name"], "Connected");
    let (_, v) = get_json(&s.app, "/api/v2/probes?status=1").await;
    assert_eq!(v["count"], 1);
    let (st, v) = get_json(&s.app, "/api/v2/probes/2/").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["country_code"], "DE");
    assert_eq!(v["address_v4"], "198.51.100.1");
    let (st, _) = get_json(&s.app, "/api/v2/probes/9/").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ooni_routes_shape_answers() {
    let rows = FakeRows {
        json: vec![
            json!({"measurement_uid": "u1", "report_id": "r1", "input": "https://x/", "probe_cc": "IT", "probe_asn": 30722,
                          "test_name": "web_connectivity", "start": 1714521600, "scores": "{}", "anomaly": 1, "confirmed": 1, "msm_failure": 0}),
        ],
        ..Default::default()
    };
    let s = setup(Operator::Ids, rows);
    let (st, v) = get_json(
        &s.app,
        "/api/v1/measurements?probe_cc=IT&limit=1&anomaly=true",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["metadata"]["count"], 1);
    assert_eq!(v["metadata"]["next_url"], Value::Null);
    assert_eq!(v["results"][0]["confirmed"], true);
    assert_eq!(v["results"][0]["probe_asn"], "AS30722");
    let (st, v) = get_json(&s.app, "/api/v1/measurements?probe_cc=Italy").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["errors"][0]["source"]["pointer"], "?probe_cc");
    let (st, v) = get_json(&s.app, "/api/v1/aggregation?axis_x=probe_cc").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["dimension_count"], 1);
}

#[tokio::test]
async fn every_documented_route_is_served_and_every_route_documented() {
    let s = setup(Operator::Ids, FakeRows::default());
    let (st, doc) = get_json(&s.app, "/api/openapi.json").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let table = vantage_api::routes::table();
    assert_eq!(
        paths
            .iter()
            .map(|(_, ops)| ops.as_object().map_or(0, |o| o.len()))
            .sum::<usize>(),
        table.len(),
        "one operation per route"
    );
    for (route, _) in &table {
        assert!(
            paths
                .get(route.path)
                .and_then(|p| p.get(route.method))
                .is_some(),
            "{} {} undocumented",
            route.method,
            route.path
        );
    }
    for (path, ops) in paths {
        for method in ops.as_object().expect("operations").keys() {
            let concrete = path.replace("{id}", "1000001");
            let mut forms = vec![concrete.clone()];
            if concrete.ends_with('/') {
                forms.push(concrete.trim_end_matches('/').to_owned());
            }
            for uri in forms {
                let (st, body, _) = call(&s.app, &method.to_uppercase(), &uri, &[], "").await;
                assert!(
                    !body.contains("no route for"),
                    "{method} {uri} is documented but not routed: {st} {body}"
                );
                assert_ne!(st, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            }
        }
    }
}

fn error_of(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["error"].clone()
}

#[tokio::test]
async fn only_the_creating_key_stops_a_measurement() {
    let s = setup(Operator::Ids, FakeRows::default());
    let stopped = |s: &Setup, name: &str| {
        s.catalog
            .measurements()
            .iter()
            .find(|m| m.name_any() == name)
            .is_some_and(|m| m.spec.stopped)
    };
    let (st, body, _) = call(&s.app, "DELETE", "/api/v2/measurements/1000001/", &[], "").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "no key: {body}");
    for key in ["Key k-alpha-2", "Key k-bravo"] {
        let (st, body, _) = call(
            &s.app,
            "DELETE",
            "/api/v2/measurements/1000001/",
            &[("authorization", key)],
            "",
        )
        .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{key}: {body}");
        assert!(
            error_of(&body)["detail"]
                .as_str()
                .expect("detail")
                .contains("only the key that created it"),
            "{body}"
        );
    }
    // Created with kubectl: no key owns it.
    let (st, _, _) = call(
        &s.app,
        "DELETE",
        "/api/v2/measurements/1000003/",
        &[("authorization", "Key k-bravo")],
        "",
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, _) = call(
        &s.app,
        "DELETE",
        "/api/v2/measurements/999/",
        &[("authorization", "Key k-alpha")],
        "",
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(
        !stopped(&s, "a") && !stopped(&s, "c"),
        "nothing stopped yet"
    );
    assert!(s.catalog.patches.lock().expect("lock").is_empty());

    // cousteau's AtlasStopRequest: DELETE without the trailing slash.
    let (st, body, _) = call(
        &s.app,
        "DELETE",
        "/api/v2/measurements/1000001",
        &[("authorization", "Key k-alpha")],
        "",
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    assert!(stopped(&s, "a"));
    assert_eq!(
        s.catalog.patches.lock().expect("lock").as_slice(),
        &[json!({"spec": {"stopped": true}})]
    );
    // Again: nothing more to do.
    let (st, _, _) = call(
        &s.app,
        "DELETE",
        "/api/v2/measurements/1000001/",
        &[("authorization", "Key k-alpha")],
        "",
    )
    .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(s.catalog.patches.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn participation_requests_are_appended_with_their_ids() {
    let s = setup(Operator::Ids, FakeRows::default());
    let url = "/api/v2/measurements/1000001/participation-requests/";
    let key = [("authorization", "Key k-alpha")];
    let body = r#"[{"action": "add", "requested": 2, "type": "country", "value": "NL"},
                   {"action": "remove", "requested": 1, "type": "probes", "value": "1"}]"#;
    let (st, _, _) = call(
        &s.app,
        "POST",
        url,
        &[("authorization", "Key k-bravo")],
        body,
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, answer, _) = call(&s.app, "POST", url, &key, body).await;
    assert_eq!(st, StatusCode::CREATED, "{answer}");
    // The creation's one source is request 1.
    assert_eq!(
        serde_json::from_str::<Value>(&answer).expect("json"),
        json!({"request_ids": [2, 3]})
    );
    let (st, answer, _) = call(
        &s.app,
        "POST",
        url.trim_end_matches('/'),
        &key,
        r#"[{"action": "add", "requested": 1, "type": "area", "value": "WW"}]"#,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).expect("json"),
        json!({"request_ids": [4]})
    );
    let a = s.catalog.measurement_by_id(1000001).expect("a");
    let log = a.participation_requests();
    assert_eq!(
        log.iter()
            .map(|r| (r.id, r.action.as_str()))
            .collect::<Vec<_>>(),
        vec![(2, "add"), (3, "remove"), (4, "add")]
    );
    assert_eq!(log[0].source.value, "NL");
    // Every append named the version it read.
    for p in s.catalog.patches.lock().expect("lock").iter() {
        assert!(p["metadata"]["resourceVersion"].is_string(), "{p}");
    }
    // The measurement shows them after its creation's source.
    let (_, v) = get_json(&s.app, "/api/v2/measurements/1000001/").await;
    let ids: Vec<u64> = v["participation_requests"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|r| r["id"].as_u64())
        .collect();
    assert_eq!(ids, vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn participation_requests_are_refused_with_the_reason() {
    let s = setup(Operator::Ids, FakeRows::default());
    let key = [("authorization", "Key k-alpha")];
    let url = "/api/v2/measurements/1000001/participation-requests/";
    let cases = [
        (
            r#"[{"action": "swap", "requested": 1, "type": "probes", "value": "1"}]"#,
            "[0].action",
        ),
        (
            r#"[{"action": "remove", "requested": 1, "type": "country", "value": "NL"}]"#,
            "[0].type",
        ),
        (
            r#"[{"action": "add", "requested": 1001, "type": "area", "value": "WW"}]"#,
            "[0].requested",
        ),
        (
            r#"[{"action": "add", "requested": 1000, "type": "area", "value": "WW"}]"#,
            "probes",
        ),
        (r#"{"action": "add"}"#, "body"),
    ];
    for (body, field) in cases {
        let (st, answer, _) = call(&s.app, "POST", url, &key, body).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let detail = error_of(&answer)["detail"]
            .as_str()
            .expect("detail")
            .to_owned();
        assert!(detail.starts_with(field), "{body}: {detail}");
    }
    // 1000 more on top of the one taking part: the maximum is named.
    let (_, answer, _) = call(&s.app, "POST", url, &key, cases[3].0).await;
    assert!(answer.contains("maximum of 1000"), "{answer}");
    // A stopped measurement takes none.
    let (st, answer, _) = call(
        &s.app,
        "POST",
        "/api/v2/measurements/1000002/participation-requests/",
        &key,
        r#"[{"action": "add", "requested": 1, "type": "area", "value": "WW"}]"#,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(answer.contains("is Stopped"), "{answer}");
    assert!(
        s.catalog.patches.lock().expect("lock").is_empty(),
        "nothing written"
    );
}

#[tokio::test]
async fn requested_above_the_maximum_is_refused_naming_it() {
    let s = setup(Operator::Ids, FakeRows::default());
    let body = r#"{"definitions": [{"type": "ping", "af": 4, "target": "192.0.2.1", "description": "p"}],
                   "probes": [{"type": "area", "value": "WW", "requested": 1000000000}]}"#;
    let (st, answer, _) = call(
        &s.app,
        "POST",
        "/api/v2/measurements/",
        &[("authorization", "Key k-alpha")],
        body,
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{answer}");
    let e = error_of(&answer);
    assert_eq!(e["code"], 102);
    assert_eq!(e["errors"][0]["source"]["pointer"], "/probes/0/requested");
    assert!(
        e["detail"]
            .as_str()
            .expect("detail")
            .contains("maximum of 1000"),
        "{e}"
    );
    assert_eq!(s.catalog.measurements().len(), 3, "nothing created");
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_with_the_ripe_error() {
    let s = setup(Operator::Ids, FakeRows::default());
    let big = format!(
        r#"{{"definitions": [], "pad": "{}"}}"#,
        "x".repeat(vantage_api::body_limit::MAX_BODY_BYTES)
    );
    // Declared length: answered before the handler; undeclared: cut while read.
    let length = big.len().to_string();
    for headers in [
        vec![
            ("authorization", "Key k-alpha"),
            ("content-length", length.as_str()),
        ],
        vec![("authorization", "Key k-alpha")],
    ] {
        let (st, answer, ctype) =
            call(&s.app, "POST", "/api/v2/measurements/", &headers, &big).await;
        assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{headers:?}");
        assert_eq!(ctype.as_deref(), Some("application/json"));
        let e = error_of(&answer);
        assert_eq!(
            (e["status"].as_u64(), e["code"].as_u64()),
            (Some(413), Some(413)),
            "{e}"
        );
        assert!(
            e["detail"]
                .as_str()
                .expect("detail")
                .contains("1048576 bytes"),
            "{e}"
        );
    }
    assert_eq!(s.catalog.measurements().len(), 3, "nothing created");
    // A body at the limit is read.
    let (st, _, _) = call(
        &s.app,
        "POST",
        "/api/v2/measurements/",
        &[("authorization", "Key k-alpha")],
        PING_BODY,
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
}

/// Behaviour the OpenAPI document states and schemathesis checks (issue 16): a window
/// that ends before it starts is an empty answer, not a refusal; refused filter values
/// are 400s; an empty probe_ids and the largest offset are answered.
#[tokio::test]
async fn openapi_edge_cases_answer_as_documented() {
    let s = setup(Operator::Ids, FakeRows::default());
    let (st, body, _) = call(
        &s.app,
        "GET",
        "/api/v2/measurements/1000001/results/?start=20&stop=10",
        &[],
        "",
    )
    .await;
    assert_eq!((st, body.as_str()), (StatusCode::OK, "[]"));
    for uri in [
        "/api/v2/measurements/?type=pong",
        "/api/v2/measurements/?status=3",
        "/api/v2/measurements/?af=5",
        "/api/v2/probes/?status=9",
        "/api/v2/probes/?asn=4294967296",
    ] {
        let (st, v) = get_json(&s.app, uri).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{uri}: {v}");
    }
    let (st, v) = get_json(&s.app, "/api/v2/measurements/?type=ping&af__in=4,6").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // An empty probe_ids filters nothing (it was `prb_id IN ()`, a ClickHouse error).
    let (st, body, _) = call(
        &s.app,
        "GET",
        "/api/v2/measurements/1000001/latest/?probe_ids=",
        &[],
        "",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let sql = s
        .rows
        .sql
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("a query");
    assert!(!sql.contains("prb_id IN"), "{sql}");
    // The largest offset is answered (it overflowed and dropped the connection).
    let (st, v) = get_json(
        &s.app,
        "/api/v1/measurements?limit=1&offset=18446744073709551615",
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}
