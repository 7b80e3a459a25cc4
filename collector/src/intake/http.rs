//! The submission API for software probes, OONI style: routes, body limits and zstd,
//! and handing each accepted measurement to the disk queue and the fastpath.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /report` | `{data_format_version, format, probe_asn, probe_cc, software_name, software_version, test_name, test_start_time, test_version}` | `{report_id, backend_version, supported_formats}` |
//! | `POST /report/{id}` | `{format: "json", content: {…}}`, optionally `Content-Encoding: zstd` | `{measurement_uid}` |
//! | `POST /report/{id}/close` | — | `{}` |
//! | `GET /api/v1/measurement/{uid}` | — | the measurement, from the queue or the archive |
//! | `POST /api/v1/check-in` | `{probe_cc, probe_asn, software_name, software_version, platform, run_type, charging, on_wifi, web_connectivity: {category_codes}}` | `{v, probe_cc, probe_asn, utc_time, conf, tests: {web_connectivity: {report_id, urls}}}` ([`super::checkin`]) |
//! | `GET /api/v1/test-list/urls?country_code&category_codes&limit` | — | `{metadata, results: [{category_code, country_code, url}]}` |
//! | `GET /openapi.json` | — | the OpenAPI document ([`super::openapi`]) |
//!
//! Errors are `{"error": reason}` with a 4xx status: 400 malformed JSON or body,
//! 404 unknown report or measurement, 413 body (or decompressed body) too large,
//! 415 unsupported `Content-Encoding`.

use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::metrics::{IntakeMetrics, ReasonLabel};
use super::worker::Queued;
use crate::archive::Archive;
use crate::fastpath::parse_asn;
use crate::queue::Queue;
use crate::uid::{content_hash, is_safe_id, new_report_id, UidClock};

/// What `POST /report` answers in `backend_version`.
pub const BACKEND_VERSION: &str = concat!("vantage-", env!("CARGO_PKG_VERSION"));

/// Body limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body on the wire (compressed or not).
    pub max_body: usize,
    /// Largest body after zstd decompression.
    pub max_decoded: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 4 << 20,
            max_decoded: 16 << 20,
        }
    }
}

/// A 4xx/5xx answer with `{"error": reason}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Short label for the metric.
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// Uid clock and sequence numbers, taken together so that sequence order is uid order.
#[derive(Default)]
pub(super) struct Order {
    clock: UidClock,
    pub(super) next_seq: u64,
}

pub(super) struct Inner {
    pub(super) queue: Queue,
    pub(super) limits: Limits,
    /// Hands out uids with sequence numbers; the fastpath scores in sequence order.
    pub(super) order: std::sync::Mutex<Order>,
    pub(super) fastpath: mpsc::Sender<Queued>,
    pub(super) archive: Archive,
    pub(super) metrics: IntakeMetrics,
    /// The test lists, recency and test helpers of the check-in routes.
    pub(super) checkin: super::checkin::CheckInState,
}

#[derive(Clone)]
pub(super) struct AppState(pub(super) Arc<Inner>);

impl AppState {
    pub(super) fn reject(&self, e: ApiError) -> Response {
        self.0
            .metrics
            .rejected
            .get_or_create(&ReasonLabel {
                reason: e.kind.to_owned(),
            })
            .inc();
        tracing::debug!(status = %e.status, reason = %e.message, "request refused");
        e.into_response()
    }
}

pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "intake failure");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("internal error: {e}"),
    )
}

/// Read a body within `limits`, undoing `Content-Encoding: zstd`.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: Limits,
) -> Result<Vec<u8>, ApiError> {
    let encoding = match headers.get(header::CONTENT_ENCODING) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "encoding",
                        "unsupported content encoding",
                    )
                })?
                .trim()
                .to_ascii_lowercase(),
        ),
    };
    let zstd = match encoding.as_deref() {
        None | Some("") | Some("identity") => false,
        Some("zstd") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "encoding",
                format!("unsupported content encoding {other:?}: send zstd or none"),
            ))
        }
    };
    let raw = axum::body::to_bytes(body, limits.max_body)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body exceeds {} bytes", limits.max_body),
            )
        })?;
    if !zstd {
        return Ok(raw.to_vec());
    }
    decode_zstd(&raw, limits.max_decoded)
}

/// Decompress at most `max` bytes; more is a zstd bomb (413).
pub fn decode_zstd(raw: &[u8], max: usize) -> Result<Vec<u8>, ApiError> {
    let bad = |e: std::io::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_zstd",
            format!("body is not valid zstd: {e}"),
        )
    };
    let decoder = zstd::stream::read::Decoder::new(raw).map_err(bad)?;
    let mut out = Vec::new();
    let cap = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    decoder.take(cap).read_to_end(&mut out).map_err(bad)?;
    if out.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "zstd_bomb",
            format!("decompressed body exceeds {max} bytes"),
        ));
    }
    Ok(out)
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("body is not JSON: {e}"),
        )
    })
}

fn check_format(body: &Value) -> Result<(), ApiError> {
    match body.get("format") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(f)) if f == "json" => Ok(()),
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "format",
            format!("unsupported format {other}: only \"json\""),
        )),
    }
}

/// Fields a report carries into every measurement that lacks them.
const REPORT_FIELDS: &[&str] = &[
    "probe_asn",
    "probe_cc",
    "software_name",
    "software_version",
    "test_name",
    "test_start_time",
    "test_version",
    "data_format_version",
];

/// Read a `POST /report` body (decoded): the new report's id, made of `now` and the
/// body's test name, country and ASN, and the fields its measurements inherit. Pure, so
/// that it can be tested and fuzzed alone.
pub fn open_report_body(
    bytes: &[u8],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(String, Map<String, Value>), ApiError> {
    let req = parse_json(bytes)?;
    let Some(obj) = req.as_object() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_object",
            "body must be a JSON object",
        ));
    };
    check_format(&req)?;
    let s = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("");
    let report_id = new_report_id(
        now,
        s("test_name"),
        s("probe_cc"),
        parse_asn(obj.get("probe_asn")),
    );
    let meta: Map<String, Value> = REPORT_FIELDS
        .iter()
        .filter_map(|k| obj.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    Ok((report_id, meta))
}

/// Read a `POST /report/{report_id}` body (decoded): the measurement in `content`, with
/// the report's fields (`meta`) where it lacks them or has them null, and `report_id`.
/// Pure, so that it can be tested and fuzzed alone.
pub fn submission_content(
    bytes: &[u8],
    meta: Map<String, Value>,
    report_id: &str,
) -> Result<Map<String, Value>, ApiError> {
    let req = parse_json(bytes)?;
    check_format(&req)?;
    let Some(Value::Object(mut content)) = req.get("content").cloned() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "no_content",
            "body must be {\"format\": \"json\", \"content\": {measurement}}",
        ));
    };
    for (k, v) in meta {
        if content.get(&k).is_none_or(Value::is_null) {
            content.insert(k, v);
        }
    }
    content.insert("report_id".into(), Value::String(report_id.to_owned()));
    Ok(content)
}

async fn open_report(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match open_report_inner(&st, &headers, body).await {
        Ok(r) => r,
        Err(e) => st.reject(e),
    }
}

async fn open_report_inner(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(headers, body, st.0.limits).await?;
    let (report_id, meta) = open_report_body(&bytes, chrono::Utc::now())?;
    let meta = serde_json::to_vec(&meta).map_err(internal)?;
    st.0.queue
        .put_report(&report_id, &meta)
        .await
        .map_err(internal)?;
    st.0.metrics.reports_opened.inc();
    Ok(Json(json!({
        "report_id": report_id,
        "backend_version": BACKEND_VERSION,
        "supported_formats": ["json"],
    }))
    .into_response())
}

async fn report_meta(st: &AppState, report_id: &str) -> Result<Map<String, Value>, ApiError> {
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_report",
            format!("unknown report id {report_id:?}"),
        )
    };
    if !is_safe_id(report_id) {
        return Err(unknown());
    }
    let meta =
        st.0.queue
            .get_report(report_id)
            .await
            .map_err(internal)?
            .ok_or_else(unknown)?;
    Ok(serde_json::from_slice(&meta).unwrap_or_default())
}

async fn submit(
    State(st): State<AppState>,
    Path(report_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match submit_inner(&st, &report_id, &headers, body).await {
        Ok(r) => r,
        Err(e) => st.reject(e),
    }
}

async fn submit_inner(
    st: &AppState,
    report_id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let meta = report_meta(st, report_id).await?;
    let bytes = read_body(headers, body, st.0.limits).await?;
    let mut content = submission_content(&bytes, meta, report_id)?;
    let cc = content
        .get("probe_cc")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let test = content
        .get("test_name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let hash = content_hash(&bytes);
    // The uid and its sequence number are taken together (no await in between), and
    // every number is handed to the fastpath exactly once, by a task of its own that a
    // client hanging up cannot cancel: the fastpath scores in uid order.
    let (seq, uid) = {
        let mut order = match st.0.order.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let at = order.clock.next_time(chrono::Utc::now());
        let seq = order.next_seq;
        order.next_seq += 1;
        let uid = crate::uid::format_uid(
            at,
            &crate::uid::sanitize_cc(&cc),
            &crate::uid::sanitize_test_name(&test),
            &hash,
        );
        (seq, uid)
    };
    let inner = st.0.clone();
    let task_uid = uid.clone();
    let queued = tokio::spawn(async move {
        content.insert("measurement_uid".into(), Value::String(task_uid.clone()));
        let msm = Value::Object(content);
        let written = match serde_json::to_vec(&msm) {
            Ok(line) => inner.queue.push(&task_uid, &line).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let item = written.is_ok().then_some(msm);
        if inner.fastpath.send((seq, item)).await.is_err() {
            tracing::error!(uid = %task_uid, "fastpath worker is gone; the measurement is queued and archived but not scored");
        }
        written
    })
    .await;
    match queued {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(internal(e)),
        Err(e) => return Err(internal(e)),
    }
    st.0.metrics.accepted.inc();
    Ok(Json(json!({ "measurement_uid": uid })).into_response())
}

async fn close_report(State(st): State<AppState>, Path(report_id): Path<String>) -> Response {
    match report_meta(&st, &report_id).await {
        Ok(_) => Json(json!({})).into_response(),
        Err(e) => st.reject(e),
    }
}

async fn get_measurement(State(st): State<AppState>, Path(uid): Path<String>) -> Response {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_measurement",
            format!("no measurement {uid:?}"),
        )
    };
    if !is_safe_id(&uid) {
        return st.reject(not_found());
    }
    let found = match st.0.queue.get(&uid).await {
        Ok(Some(b)) => Some(b),
        Ok(None) => match st.0.archive.fetch(&uid).await {
            Ok(found) => found,
            Err(e) => return st.reject(internal(e)),
        },
        Err(e) => return st.reject(internal(e)),
    };
    match found {
        Some(b) => ([(header::CONTENT_TYPE, "application/json")], b).into_response(),
        None => st.reject(not_found()),
    }
}

/// Every route of the submission API with its handler: the router and the OpenAPI
/// document ([`super::openapi`]) are both built from this list.
pub(super) fn table() -> Vec<(
    super::openapi::RouteDoc,
    axum::routing::MethodRouter<AppState>,
)> {
    use super::openapi::RouteDoc as R;
    vec![
        (
            R::new("post", "/report", "Open a report"),
            post(open_report),
        ),
        (
            R::new(
                "post",
                "/report/{report_id}",
                "Submit one measurement of a report",
            ),
            post(submit),
        ),
        (
            R::new("post", "/report/{report_id}/close", "Close a report"),
            post(close_report),
        ),
        (
            R::new(
                "get",
                "/api/v1/measurement/{measurement_uid}",
                "One measurement, from the queue or the archive",
            ),
            get(get_measurement),
        ),
        (
            R::new(
                "post",
                "/api/v1/check-in",
                "Check in: a web_connectivity report id and the URLs to test",
            ),
            post(super::checkin::check_in),
        ),
        (
            R::new(
                "get",
                "/api/v1/test-list/urls",
                "Test-list URLs for a country and categories, least recently measured first",
            ),
            get(super::checkin::test_list_urls),
        ),
        (
            R::new("get", super::openapi::PATH, "This document (OpenAPI 3.1)"),
            get(super::openapi::serve),
        ),
    ]
}

/// The submission API's routes.
pub(super) fn router(inner: Inner) -> Router {
    let state = AppState(Arc::new(inner));
    let mut router = Router::new();
    for (doc, handler) in table() {
        router = router.route(doc.path, handler);
    }
    router.with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_within_limit_bomb_and_junk() {
        let small = zstd::encode_all(&b"{\"a\":1}"[..], 3).expect("zstd");
        assert_eq!(decode_zstd(&small, 100).expect("ok"), b"{\"a\":1}");
        let bomb = zstd::encode_all(&vec![b'a'; 10_000_000][..], 19).expect("zstd");
        assert!(bomb.len() < 10_000);
        let e = decode_zstd(&bomb, 1 << 20).expect_err("bomb");
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let e = decode_zstd(b"not zstd at all", 100).expect_err("junk");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
