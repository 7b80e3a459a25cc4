//! The HTTP routes. One table lists every route with its documentation: the router and
//! the OpenAPI document are both built from it, so neither can miss a route.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use futures::{StreamExt, TryStreamExt};
use kube::api::ObjectMeta;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use vantage_crd::Measurement;

use crate::catalog::{Catalog, CatalogError, CREATED_BY_LABEL, KEY_ANNOTATION};
use crate::error::ApiError;
use crate::live::Live;
use crate::rows::{json_array, Rows};
use crate::{ooni, ripe};

/// Counters the API serves on /metrics.
#[derive(Clone, Default)]
pub struct Metrics {
    /// Answers by route and status code.
    pub requests: Family<Vec<(String, String)>, Counter>,
    /// Bytes of result bodies streamed.
    pub result_bytes: Counter,
    /// Measurements created.
    pub created: Counter,
    /// Requests refused for a missing or unknown API key.
    pub refused_keys: Counter,
}

impl Metrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "requests",
            "Answers by route and status",
            self.requests.clone(),
        );
        registry.register(
            "result_bytes",
            "Bytes of result bodies streamed",
            self.result_bytes.clone(),
        );
        registry.register(
            "measurements_created",
            "Measurements created through the API",
            self.created.clone(),
        );
        registry.register(
            "refused_keys",
            "Requests refused for a missing or unknown API key",
            self.refused_keys.clone(),
        );
    }
}

/// What the handlers share.
pub struct AppState {
    pub catalog: Arc<dyn Catalog>,
    pub rows: Arc<dyn Rows>,
    pub live: Option<Arc<dyn Live>>,
    /// `http` or `https`, for links when `public_url` is not set.
    pub scheme: &'static str,
    /// The API's public URL (scheme and host) for links; default from the Host header.
    pub public_url: Option<String>,
    /// How long `POST /api/v2/measurements/` waits for the operator to give ids.
    pub create_timeout: Duration,
    pub metrics: Metrics,
}

type St = State<Arc<AppState>>;
type Params = Result<Query<BTreeMap<String, String>>, QueryRejection>;

fn params(q: Params) -> Result<BTreeMap<String, String>, ApiError> {
    q.map(|Query(m)| m).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the query string is malformed: {e}"),
        )
    })
}

fn base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(u) = &state.public_url {
        return u.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("{}://{host}", state.scheme)
}

fn parse_id(what: &str, id: &str) -> Result<u64, ApiError> {
    id.parse().map_err(|_| {
        ApiError::not_found(format!(
            "{what} {id:?} does not exist: ids are positive integers"
        ))
    })
}

/// A parameter in the OpenAPI document: name, location (`path`/`query`), description.
pub type ParamDoc = (&'static str, &'static str, &'static str);

/// One route: method, path (axum syntax, which is also OpenAPI's), summary, parameters,
/// whether the other trailing-slash form is served too (RIPE Atlas clients use both).
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub params: &'static [ParamDoc],
    pub slash_alias: bool,
}

const MSM_FILTERS: &[ParamDoc] = &[
    ("type", "query", "ping, traceroute, dns, http, sslcert, ntp, mtr"),
    ("status", "query", "RIPE Atlas status id (0 Specified, 1 Scheduled, 2 Ongoing, 4 Stopped, 6 No suitable probes, 7 Failed, 8 Denied)"),
    ("status__in", "query", "comma-separated status ids"),
    ("id__in", "query", "comma-separated measurement ids"),
    ("id__gt", "query", "ids above (also id__gte, id__lt, id__lte)"),
    ("af", "query", "4 or 6"),
    ("target", "query", "exact target (also target__contains, target__startswith)"),
    ("description__contains", "query", "text in the description (also description, description__icontains)"),
    ("is_oneoff", "query", "true or false"),
    ("start_time__gte", "query", "Unix seconds (also __gt, __lt, __lte; stop_time__*)"),
    ("sort", "query", "id or -id (default -id)"),
    ("page", "query", "1-based page"),
    ("page_size", "query", "1 to 500 (default 50)"),
];
const ID: ParamDoc = ("id", "path", "measurement id");
const RESULT_PARAMS: &[ParamDoc] = &[
    ID,
    ("start", "query", "Unix seconds: results at or after"),
    ("stop", "query", "Unix seconds: results at or before"),
    ("probe_ids", "query", "comma-separated probe ids"),
    (
        "format",
        "query",
        "json (an array, default) or txt (one result per line)",
    ),
];
const LATEST_PARAMS: &[ParamDoc] = &[
    ID,
    ("probe_ids", "query", "comma-separated probe ids"),
    ("lookback_days", "query", "only results of the last N days"),
    ("format", "query", "json (default) or txt"),
];
const PROBE_FILTERS: &[ParamDoc] = &[
    ("id__in", "query", "comma-separated probe ids"),
    ("country_code", "query", "ISO 3166 code"),
    ("asn", "query", "AS number, v4 or v6 (also asn_v4, asn_v6)"),
    (
        "status",
        "query",
        "0 Never Connected, 1 Connected, 2 Disconnected, 3 Abandoned (disabled)",
    ),
    ("tags", "query", "comma-separated tag slugs, all required"),
    ("page", "query", "1-based page"),
    ("page_size", "query", "1 to 500 (default 50)"),
];
const OONI_LIST: &[ParamDoc] = &[
    ("probe_cc", "query", "two-letter country code"),
    ("probe_asn", "query", "AS1234 or 1234"),
    ("test_name", "query", "e.g. web_connectivity"),
    ("since", "query", "2024-05-01 or 2024-05-01T12:00:00Z"),
    ("until", "query", "2024-05-01 or 2024-05-01T12:00:00Z"),
    ("anomaly", "query", "true or false"),
    ("confirmed", "query", "true or false"),
    ("failure", "query", "true or false"),
    ("report_id", "query", "report id"),
    ("input", "query", "tested input"),
    ("domain", "query", "tested domain"),
    ("limit", "query", "1 to 10000 (default 100)"),
    ("offset", "query", "rows to skip"),
    (
        "order_by",
        "query",
        "measurement_start_time (default), test_start_time, probe_cc, probe_asn, test_name, input",
    ),
    ("order", "query", "desc (default) or asc"),
];
const OONI_AGG: &[ParamDoc] = &[
    (
        "axis_x",
        "query",
        "measurement_start_day, probe_cc, probe_asn, test_name, domain or input",
    ),
    ("axis_y", "query", "a second axis"),
    (
        "time_grain",
        "query",
        "hour, day (default), week, month or auto",
    ),
    ("format", "query", "JSON"),
];

/// Every route with its handler.
pub fn table() -> Vec<(RouteDoc, MethodRouter<Arc<AppState>>)> {
    let r = |method, path, summary, params, slash_alias| RouteDoc {
        method,
        path,
        summary,
        params,
        slash_alias,
    };
    vec![
        (r("get", "/api/v2/measurements/", "List measurements (RIPE Atlas filters and pages)", MSM_FILTERS, true), get(list_measurements)),
        (r("post", "/api/v2/measurements/", "Create measurements (RIPE Atlas body; API key: `Authorization: Key <key>` or `?key=`)", &[], true), post(create_measurements)),
        (r("get", "/api/v2/measurements/{id}/", "One measurement", &[ID], true), get(one_measurement)),
        (r("get", "/api/v2/measurements/{id}/results/", "Results of a measurement, streamed", RESULT_PARAMS, true), get(results)),
        (r("get", "/api/v2/measurements/{id}/latest/", "The newest result of each probe", LATEST_PARAMS, true), get(latest)),
        (r("get", "/api/v2/measurements/{id}/stream/", "Live results (server-sent events `result`)", &[ID], true), get(stream)),
        (r("get", "/api/v2/probes/", "List probes", PROBE_FILTERS, true), get(list_probes)),
        (r("get", "/api/v2/probes/{id}/", "One probe", &[("id", "path", "probe id")], true), get(one_probe)),
        (r("get", "/api/v1/measurements", "Search fastpath measurements (OONI)", OONI_LIST, false), get(ooni_measurements)),
        (r("get", "/api/v1/aggregation", "Count fastpath measurements by axes (OONI)", OONI_AGG, false), get(ooni_aggregation)),
        (r("get", "/api/openapi.json", "This document", &[], false), get(openapi)),
    ]
}

/// The router: every route of [`table`], both trailing-slash forms where marked, and a
/// RIPE-style 404 for anything else.
pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new();
    for (doc, handler) in table() {
        router = router.route(doc.path, handler.clone());
        if doc.slash_alias {
            let alias = doc.path.trim_end_matches('/');
            router = router.route(alias, handler);
        }
    }
    let metrics = state.metrics.clone();
    router
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::not_found(format!(
                "no route for {}; see /api/openapi.json",
                uri.path()
            ))
        })
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let metrics = metrics.clone();
                async move {
                    let route = route_label(req.uri().path());
                    let method = req.method().to_string();
                    let resp = next.run(req).await;
                    metrics
                        .requests
                        .get_or_create(&vec![
                            ("method".to_owned(), method),
                            ("route".to_owned(), route),
                            ("code".to_owned(), resp.status().as_u16().to_string()),
                        ])
                        .inc();
                    resp
                }
            },
        ))
        .with_state(state)
}

/// The route a path belongs to, with ids folded (bounded label values).
fn route_label(path: &str) -> String {
    let folded: Vec<&str> = path
        .trim_end_matches('/')
        .split('/')
        .map(|seg| {
            if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                seg
            }
        })
        .collect();
    let label = folded.join("/");
    if table()
        .iter()
        .any(|(d, _)| d.path.trim_end_matches('/') == label)
    {
        label
    } else {
        "other".to_owned()
    }
}

/// The OpenAPI 3.1 document of [`table`].
pub fn openapi_doc() -> Value {
    let mut paths = serde_json::Map::new();
    for (doc, _) in table() {
        let params: Vec<Value> = doc
            .params
            .iter()
            .map(|(name, at, desc)| {
                json!({"name": name, "in": at, "required": *at == "path", "description": desc,
                       "schema": {"type": if *at == "path" { "integer" } else { "string" }}})
            })
            .collect();
        let mut op = json!({
            "summary": doc.summary,
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                "400": {"description": "Bad input; the RIPE Atlas error object names the parameter or field", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if doc.path.ends_with("/stream/") {
            op["responses"]["200"] = json!({"description": "Server-sent events, one `result` event per result", "content": {"text/event-stream": {}}});
        }
        if doc.method == "post" {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateRequest"}}}});
            op["responses"]["201"] =
                json!({"description": "Created: {\"measurements\": [id, ...]}"});
            op["responses"]["403"] = json!({"description": "Missing or unknown API key"});
            op["security"] = json!([{"ApiKeyHeader": []}, {"ApiKeyQuery": []}]);
        }
        let entry = paths
            .entry(doc.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[doc.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "vantage data API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "A RIPE Atlas API v2 subset, OONI-style search over the fastpath, live results."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "`Key <key>`"},
                "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": "key"},
            },
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "status": {"type": "integer"}, "code": {"type": "integer"}, "title": {"type": "string"}, "detail": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "object", "properties": {
                        "source": {"type": "object", "properties": {"pointer": {"type": "string"}}}, "detail": {"type": "string"}}}}}}}},
                "CreateRequest": {"type": "object", "required": ["definitions", "probes"], "properties": {
                    "definitions": {"type": "array", "items": {"type": "object", "description": "RIPE Atlas definition: type, af, target, description, interval, packets, ..."}},
                    "probes": {"type": "array", "items": {"type": "object", "required": ["type", "value", "requested"], "properties": {
                        "type": {"type": "string"}, "value": {"type": "string"}, "requested": {"type": "integer"},
                        "tags": {"type": "object", "properties": {"include": {"type": "array", "items": {"type": "string"}}, "exclude": {"type": "array", "items": {"type": "string"}}}}}}},
                    "start_time": {"type": ["integer", "string"]}, "stop_time": {"type": ["integer", "string"]}, "is_oneoff": {"type": "boolean"}}},
            },
        },
    })
}

async fn openapi() -> Json<Value> {
    Json(openapi_doc())
}

fn listed_measurements(state: &AppState, base: &str) -> Vec<Value> {
    state
        .catalog
        .measurements()
        .iter()
        .filter(|m| m.metadata.deletion_timestamp.is_none())
        .filter_map(|m| ripe::measurement_json(m, base))
        .collect()
}

async fn list_measurements(
    State(state): St,
    headers: HeaderMap,
    q: Params,
) -> Result<Json<Value>, ApiError> {
    let params = params(q)?;
    let keep = ripe::measurement_filter(&params)?;
    let (page, size) = ripe::paging(&params)?;
    let base = base(&state, &headers);
    let mut items: Vec<Value> = listed_measurements(&state, &base)
        .into_iter()
        .filter(|v| keep(v))
        .collect();
    match params.get("sort").map(|s| s.trim()) {
        None | Some("-id") => items.sort_by_key(|v| std::cmp::Reverse(v["id"].as_u64())),
        Some("id") => items.sort_by_key(|v| v["id"].as_u64()),
        Some(other) => {
            return Err(ApiError::param(
                "sort",
                format!("{other:?} is not a sort order; use id or -id"),
            ))
        }
    }
    Ok(Json(ripe::page_of(
        items,
        &format!("{base}/api/v2/measurements/"),
        &params,
        page,
        size,
    )?))
}

async fn one_measurement(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id("measurement", &id)?;
    let base = base(&state, &headers);
    state
        .catalog
        .measurement_by_id(id)
        .and_then(|m| ripe::measurement_json(&m, &base))
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("measurement {id} does not exist")))
}

/// The API key of a request: `Authorization: Key <key>` or `?key=`.
fn api_key(headers: &HeaderMap, params: &BTreeMap<String, String>) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().strip_prefix("Key ").map(|k| k.trim().to_owned()))
        .or_else(|| params.get("key").map(|k| k.trim().to_owned()))
        .filter(|k| !k.is_empty())
}

async fn create_measurements(
    State(state): St,
    headers: HeaderMap,
    q: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = params(q)?;
    let Some(key) = api_key(&headers, &params) else {
        state.metrics.refused_keys.inc();
        return Err(ApiError::forbidden(
            "no API key: send `Authorization: Key <key>` or `?key=<key>`; keys are Secrets labelled vantage.dev/api-key=true",
        ));
    };
    let Some(owner) = state.catalog.key_owner(&key) else {
        state.metrics.refused_keys.inc();
        return Err(ApiError::forbidden(
            "the API key is not known; check it, or ask for a key in your namespace",
        ));
    };
    let req: ripe::CreateRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::field("body", format!("is not a RIPE Atlas measurement request ({e}); send {{\"definitions\": [...], \"probes\": [...]}}"))
    })?;
    let now = chrono::Utc::now().timestamp();
    let specs = ripe::specs_of(&req, now)?;
    let mut names = Vec::new();
    for spec in specs {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("api-{}-{}", spec.definition.kind, &suffix[..10]);
        let msm = Measurement {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(owner.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    CREATED_BY_LABEL.to_owned(),
                    "api".to_owned(),
                )])),
                annotations: Some(BTreeMap::from([(
                    KEY_ANNOTATION.to_owned(),
                    owner.secret.clone(),
                )])),
                ..Default::default()
            },
            spec,
            status: None,
        };
        let created = state.catalog.create(msm).await.map_err(|e| match e {
            CatalogError::Refused { code, message, .. } if (400..500).contains(&code) => {
                ApiError::new(
                    if code == 403 {
                        StatusCode::FORBIDDEN
                    } else {
                        StatusCode::BAD_REQUEST
                    },
                    format!(
                        "the measurement was refused in namespace {}: {message}",
                        owner.namespace
                    ),
                )
            }
            e => ApiError::unavailable(e.to_string()),
        })?;
        state.metrics.created.inc();
        tracing::info!(namespace = %owner.namespace, name = %created, key = %owner.secret, "measurement created");
        names.push(created);
    }
    let ids = wait_for_ids(&state, &owner.namespace, &names).await?;
    Ok((StatusCode::CREATED, Json(json!({"measurements": ids}))).into_response())
}

/// Wait until the operator gave each measurement its id. A measurement it marked Failed
/// is answered with its Invalid condition's message.
async fn wait_for_ids(
    state: &AppState,
    namespace: &str,
    names: &[String],
) -> Result<Vec<u64>, ApiError> {
    let deadline = Instant::now() + state.create_timeout;
    loop {
        let mut ids = Vec::new();
        for name in names {
            let Some(m) = state.catalog.measurement_named(namespace, name) else {
                break;
            };
            let status = m.status.clone().unwrap_or_default();
            if let Some(id) = status.id {
                ids.push(id);
                continue;
            }
            let failed = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Invalid" && c.status == "True");
            if let Some(c) = failed {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("{namespace}/{name} is invalid: {}", c.message),
                ));
            }
            break;
        }
        if ids.len() == names.len() {
            return Ok(ids);
        }
        if Instant::now() >= deadline {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "created {} in namespace {namespace}, but the operator gave no id within {:?}; check that the operator runs (kubectl get msm -n {namespace})",
                    names.join(", "),
                    state.create_timeout
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `format`: json (array) or txt (lines).
fn want_lines(params: &BTreeMap<String, String>) -> Result<bool, ApiError> {
    match params.get("format").map(|f| f.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(f) if f == "json" => Ok(false),
        Some(f) if f == "txt" => Ok(true),
        Some(f) => Err(ApiError::param(
            "format",
            format!("{f:?} is not supported; use json or txt"),
        )),
    }
}

fn probe_ids(params: &BTreeMap<String, String>) -> Result<Option<Vec<u32>>, ApiError> {
    params
        .get("probe_ids")
        .map(|v| {
            v.split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    s.trim().parse::<u32>().map_err(|_| {
                        ApiError::param("probe_ids", format!("{s:?} is not a probe id"))
                    })
                })
                .collect()
        })
        .transpose()
}

fn unix_param(params: &BTreeMap<String, String>, name: &str) -> Result<Option<u32>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| ApiError::param(name, format!("{v:?} is not a Unix time in seconds")))
        })
        .transpose()
}

fn only(params: &BTreeMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::param(
            k,
            format!("unknown parameter; use {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

/// SQL for a results download (`TabSeparatedRaw`: one raw JSON result per line).
pub fn results_sql(
    db: &str,
    id: u64,
    start: Option<u32>,
    stop: Option<u32>,
    probes: Option<&[u32]>,
) -> String {
    let mut sql = format!("SELECT raw FROM {db}.results FINAL WHERE msm_id = {id}");
    if let Some(s) = start {
        sql.push_str(&format!(" AND timestamp >= toDateTime({s})"));
    }
    if let Some(s) = stop {
        sql.push_str(&format!(" AND timestamp <= toDateTime({s})"));
    }
    if let Some(p) = probes {
        let list: Vec<String> = p.iter().map(u32::to_string).collect();
        sql.push_str(&format!(" AND prb_id IN ({})", list.join(",")));
    }
    sql
}

/// Stream `sql`'s lines as a JSON array (or as they are). The first chunk is awaited
/// before answering, so a failing query is a 503 rather than a broken 200. No rows for
/// a measurement that no resource describes is a 404, as on RIPE Atlas (the results of
/// a deleted measurement stay readable).
async fn stream_lines(
    state: &AppState,
    msm_id: u64,
    sql: String,
    lines: bool,
) -> Result<Response, ApiError> {
    let mut rows = state.rows.stream(sql, "TabSeparatedRaw");
    let first = match rows.next().await {
        Some(Ok(b)) => Some(b),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "results query failed");
            return Err(ApiError::unavailable(format!(
                "results are unavailable: {e}"
            )));
        }
        None if state.catalog.measurement_by_id(msm_id).is_none() => {
            return Err(ApiError::not_found(format!(
                "measurement {msm_id} does not exist"
            )));
        }
        None => None,
    };
    let rest = futures::stream::iter(first.map(Ok)).chain(rows).boxed();
    let counter = state.metrics.result_bytes.clone();
    let body = if lines { rest } else { json_array(rest) }
        .inspect_ok(move |b| {
            counter.inc_by(b.len() as u64);
        })
        .map_err(|e| {
            tracing::warn!(error = %e, "results stream broke off");
            std::io::Error::other(e.to_string())
        });
    let content_type = if lines {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(body),
    )
        .into_response())
}

async fn results(
    State(state): St,
    Path(id): Path<String>,
    q: Params,
) -> Result<Response, ApiError> {
    let id = parse_id("measurement", &id)?;
    let params = params(q)?;
    only(&params, &["start", "stop", "probe_ids", "format", "key"])?;
    let (start, stop) = (unix_param(&params, "start")?, unix_param(&params, "stop")?);
    if let (Some(a), Some(b)) = (start, stop) {
        if b < a {
            return Err(ApiError::param("stop", format!("{b} is before start {a}")));
        }
    }
    let probes = probe_ids(&params)?;
    let sql = results_sql(state.rows.database(), id, start, stop, probes.as_deref());
    stream_lines(&state, id, sql, want_lines(&params)?).await
}

async fn latest(State(state): St, Path(id): Path<String>, q: Params) -> Result<Response, ApiError> {
    let id = parse_id("measurement", &id)?;
    let params = params(q)?;
    only(
        &params,
        &["probe_ids", "lookback_days", "format", "key", "versions"],
    )?;
    let mut sql = format!(
        "SELECT argMax(raw, timestamp) FROM {}.results FINAL WHERE msm_id = {id}",
        state.rows.database()
    );
    if let Some(p) = probe_ids(&params)? {
        let list: Vec<String> = p.iter().map(u32::to_string).collect();
        sql.push_str(&format!(" AND prb_id IN ({})", list.join(",")));
    }
    if let Some(d) = params.get("lookback_days") {
        let days: u32 = d
            .trim()
            .parse()
            .ok()
            .filter(|d| (1..=3650).contains(d))
            .ok_or_else(|| {
                ApiError::param(
                    "lookback_days",
                    format!("{d:?} is not a number of days from 1 to 3650"),
                )
            })?;
        sql.push_str(&format!(
            " AND timestamp >= now() - {}",
            u64::from(days) * 86_400
        ));
    }
    sql.push_str(" GROUP BY prb_id ORDER BY prb_id");
    stream_lines(&state, id, sql, want_lines(&params)?).await
}

async fn stream(State(state): St, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id("measurement", &id)?;
    let Some(live) = state.live.clone() else {
        return Err(ApiError::unavailable(
            "live results are off: the API runs without NATS (--nats-url)",
        ));
    };
    let results = live
        .subscribe(id)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let opened = futures::stream::once(async move {
        Ok::<_, Infallible>(
            Event::default()
                .event("metadata")
                .data(json!({"msm_id": id, "subscribed": true}).to_string()),
        )
    });
    let events = results.map(|payload| {
        Ok(Event::default()
            .event("result")
            .data(String::from_utf8_lossy(&payload)))
    });
    Ok(Sse::new(opened.chain(events))
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn list_probes(
    State(state): St,
    headers: HeaderMap,
    q: Params,
) -> Result<Json<Value>, ApiError> {
    let params = params(q)?;
    let keep = ripe::probe_filter(&params)?;
    let (page, size) = ripe::paging(&params)?;
    let mut items: Vec<Value> = state
        .catalog
        .probes()
        .iter()
        .map(|p| ripe::probe_json(p))
        .filter(|v| keep(v))
        .collect();
    items.sort_by_key(|v| v["id"].as_u64());
    let base = base(&state, &headers);
    Ok(Json(ripe::page_of(
        items,
        &format!("{base}/api/v2/probes/"),
        &params,
        page,
        size,
    )?))
}

async fn one_probe(State(state): St, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id("probe", &id)?;
    state
        .catalog
        .probes()
        .iter()
        .find(|p| u64::from(p.spec.id) == id)
        .map(|p| Json(ripe::probe_json(p)))
        .ok_or_else(|| ApiError::not_found(format!("probe {id} does not exist")))
}

fn query_failed(e: crate::rows::RowsError) -> ApiError {
    tracing::warn!(error = %e, "fastpath query failed");
    ApiError::unavailable(format!("the fastpath is unavailable: {e}"))
}

async fn ooni_measurements(
    State(state): St,
    headers: HeaderMap,
    q: Params,
) -> Result<Json<Value>, ApiError> {
    let params = params(q)?;
    let filter = ooni::where_clause(&params, ooni::LIST_PARAMS)?;
    let listing = ooni::listing(&params)?;
    let started = Instant::now();
    let (page_sql, count_sql) = ooni::list_sql(state.rows.database(), &filter, &listing);
    let (rows, count) = tokio::try_join!(state.rows.fetch(page_sql), state.rows.fetch(count_sql))
        .map_err(query_failed)?;
    let count = count.first().and_then(|r| r["n"].as_u64()).unwrap_or(0);
    let base = base(&state, &headers);
    let next_url = (listing.offset + listing.limit < count).then(|| {
        let mut p = params.clone();
        p.insert(
            "offset".into(),
            (listing.offset + listing.limit).to_string(),
        );
        p.insert("limit".into(), listing.limit.to_string());
        let query: Vec<String> = p
            .iter()
            .map(|(k, v)| format!("{}={}", ripe::encode(k), ripe::encode(v)))
            .collect();
        format!("{base}/api/v1/measurements?{}", query.join("&"))
    });
    let results: Vec<Value> = rows.iter().map(|r| ooni::list_item(r, &base)).collect();
    Ok(Json(json!({
        "metadata": ooni::list_metadata(count, &listing, next_url, started.elapsed().as_secs_f64()),
        "results": results,
    })))
}

async fn ooni_aggregation(State(state): St, q: Params) -> Result<Json<Value>, ApiError> {
    let params = params(q)?;
    let (sql, axes) = ooni::aggregation_sql(state.rows.database(), &params)?;
    let rows = state.rows.fetch(sql).await.map_err(query_failed)?;
    Ok(Json(ooni::aggregation_answer(rows, &axes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_sql_filters() {
        assert_eq!(
            results_sql("db", 7, None, None, None),
            "SELECT raw FROM db.results FINAL WHERE msm_id = 7"
        );
        assert_eq!(
            results_sql("db", 7, Some(10), Some(20), Some(&[1, 2])),
            "SELECT raw FROM db.results FINAL WHERE msm_id = 7 AND timestamp >= toDateTime(10) AND timestamp <= toDateTime(20) AND prb_id IN (1,2)"
        );
    }

    #[test]
    fn route_labels_are_bounded() {
        assert_eq!(
            route_label("/api/v2/measurements/123/results"),
            "/api/v2/measurements/{id}/results"
        );
        assert_eq!(route_label("/api/v2/measurements/"), "/api/v2/measurements");
        assert_eq!(route_label("/wp-admin/123"), "other");
    }
}
