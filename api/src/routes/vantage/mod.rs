//! vantage's own routes for the console (`/api/vantage/v1/`): the probe map (compact,
//! from the catalog), a probe's measurements, recent results and connection history,
//! and a measurement's aggregates in [`summary`].

mod summary;

pub(crate) use summary::{measurement_probes, measurement_summary, PROBES_PARAMS, SUMMARY_PARAMS};

use std::collections::BTreeMap;
use std::io::Write as _;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use vantage_crd::Probe;

use super::openapi::U32;
use super::ripe::stream_lines;
use super::state::{base, params, parse_id, AppState, Params, St};
use super::{ParamDoc, Ty};
use crate::error::ApiError;
use crate::ripe;

pub(crate) const PROBE_ID: ParamDoc = ("id", "path", "probe id", Ty::Int(0, U32));
/// Most rows of a probe's results and connections.
pub const MAX_LIMIT: u32 = 1000;
pub(crate) const PROBE_RESULTS_PARAMS: &[ParamDoc] = &[
    PROBE_ID,
    (
        "limit",
        "query",
        "newest results to answer (default 50)",
        Ty::Int(1, MAX_LIMIT as u64),
    ),
];
pub(crate) const CONNECTIONS_PARAMS: &[ParamDoc] = &[
    PROBE_ID,
    (
        "limit",
        "query",
        "newest events to answer (default 100)",
        Ty::Int(1, MAX_LIMIT as u64),
    ),
];

/// The columns of the probe map's rows.
pub const MAP_COLUMNS: [&str; 8] = [
    "id",
    "lat",
    "lon",
    "status",
    "is_anchor",
    "asn_v4",
    "country_code",
    "tags",
];

/// One probe as a row of the map: [`MAP_COLUMNS`].
pub fn map_row(p: &Probe) -> Value {
    let s = &p.spec;
    let (status, _) = ripe::probe_status(p);
    let mut tags: Vec<&str> = s.tags.iter().map(String::as_str).collect();
    if let Some(st) = &p.status {
        for t in &st.system_tags {
            if !tags.contains(&t.as_str()) {
                tags.push(t);
            }
        }
    }
    json!([
        s.id,
        s.location.map(|l| l.latitude),
        s.location.map(|l| l.longitude),
        status,
        s.anchor,
        s.asn_v4,
        s.country_code,
        tags
    ])
}

/// The map of `probes`, sorted by id.
pub fn map_json(probes: &[std::sync::Arc<Probe>]) -> Value {
    let mut sorted: Vec<&Probe> = probes.iter().map(|p| p.as_ref()).collect();
    sorted.sort_by_key(|p| p.spec.id);
    let rows: Vec<Value> = sorted.into_iter().map(map_row).collect();
    json!({"count": rows.len(), "columns": MAP_COLUMNS, "rows": rows})
}

/// `body` as JSON, gzip-compressed when the client takes gzip.
fn json_maybe_gzip(body: Vec<u8>, headers: &HeaderMap) -> Response {
    let mut out = Vec::with_capacity(body.len() / 4);
    let packed = crate::console::accepts_gzip(headers)
        .then(|| {
            let mut enc = flate2::write::GzEncoder::new(&mut out, flate2::Compression::fast());
            enc.write_all(&body).and_then(|()| enc.finish().map(|_| ()))
        })
        .is_some_and(|r| r.is_ok());
    let mut resp = (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::VARY, "Accept-Encoding"),
        ],
        if packed { out } else { body },
    )
        .into_response();
    if packed {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

pub(crate) async fn probe_map(
    State(state): St,
    headers: HeaderMap,
    q: Params,
) -> Result<Response, ApiError> {
    let params = params(q)?;
    only(&params, &["key"])?;
    let body = serde_json::to_vec(&map_json(&state.catalog.probes()))
        .map_err(|e| ApiError::unavailable(format!("the probe map could not be written: {e}")))?;
    Ok(json_maybe_gzip(body, &headers))
}

/// Refuse parameters other than `allowed`, naming the first.
pub(crate) fn only(params: &BTreeMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match params.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::param(
            k,
            format!("unknown parameter; use {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

/// `name` as a number from `min` to `max`, `default` when absent.
pub(crate) fn bounded(
    params: &BTreeMap<String, String>,
    name: &str,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                ApiError::param(
                    name,
                    format!("{v:?} is not a whole number from {min} to {max}"),
                )
            }),
    }
}

/// The probe `id` of the path, which must be in the catalog (404 otherwise).
fn known_probe(state: &AppState, id: &str) -> Result<u32, ApiError> {
    let id = parse_id("probe", id)?;
    state
        .catalog
        .probes()
        .iter()
        .find(|p| u64::from(p.spec.id) == id)
        .map(|p| p.spec.id)
        .ok_or_else(|| ApiError::not_found(format!("probe {id} does not exist")))
}

pub(crate) async fn probe_measurements(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    q: Params,
) -> Result<Json<Value>, ApiError> {
    only(&params(q)?, &["key"])?;
    let id = known_probe(&state, &id)?;
    let base = base(&state, &headers);
    let mut items: Vec<Value> = state
        .catalog
        .measurements()
        .iter()
        .filter(|m| m.metadata.deletion_timestamp.is_none())
        .filter(|m| m.status.as_ref().is_some_and(|s| s.probes.contains(&id)))
        .filter_map(|m| ripe::measurement_json(m, &base))
        .collect();
    items.sort_by_key(|v| std::cmp::Reverse(v["id"].as_u64()));
    Ok(Json(json!({"results": items})))
}

/// SQL of a probe's newest results (raw JSON, one per line), newest first. The newest
/// keys are found first and only their rows' `raw` is read; a result stored twice and
/// not yet merged is answered once (`LIMIT 1 BY`; the keys are over-fetched twice).
/// Both orders end in the key: results of one second (a probe reports for several
/// measurements at once) are cut at the same place on every replica and every run,
/// whichever shard answers first.
pub fn probe_results_sql(db: &str, prb_id: u32, limit: u32) -> String {
    let keys = u64::from(limit) * 2;
    format!(
        "SELECT raw FROM {db}.results PREWHERE prb_id = {prb_id} AND (msm_id, result_id) IN \
         (SELECT msm_id, result_id FROM {db}.results WHERE prb_id = {prb_id} \
         ORDER BY timestamp DESC, msm_id, result_id LIMIT {keys}) \
         ORDER BY timestamp DESC, msm_id, result_id LIMIT 1 BY msm_id, result_id LIMIT {limit}"
    )
}

pub(crate) async fn probe_results(
    State(state): St,
    Path(id): Path<String>,
    q: Params,
) -> Result<Response, ApiError> {
    let params = params(q)?;
    only(&params, &["limit", "key"])?;
    let limit = bounded(&params, "limit", 50, 1, MAX_LIMIT)?;
    let id = known_probe(&state, &id)?;
    let sql = probe_results_sql(state.rows.database(), id, limit);
    // The probe exists, so no rows is `[]` (stream_lines' 404 is for measurements).
    stream_lines(&state, None, sql, false).await
}

/// SQL of a probe's connection history, newest first (a reconnection within the second
/// of its disconnection lists the connection first).
pub fn connections_sql(db: &str, prb_id: u32, limit: u32) -> String {
    format!(
        "SELECT event, toUInt32(timestamp) AS timestamp, controller, address FROM {db}.probe_connections FINAL \
         WHERE prb_id = {prb_id} ORDER BY timestamp DESC, event ASC, controller ASC LIMIT {limit}"
    )
}

pub(crate) async fn probe_connections(
    State(state): St,
    Path(id): Path<String>,
    q: Params,
) -> Result<Json<Value>, ApiError> {
    let params = params(q)?;
    only(&params, &["limit", "key"])?;
    let limit = bounded(&params, "limit", 100, 1, MAX_LIMIT)?;
    let id = known_probe(&state, &id)?;
    let rows = state
        .rows
        .fetch(connections_sql(state.rows.database(), id, limit))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "connections query failed");
            ApiError::unavailable(format!("the connection history is unavailable: {e}"))
        })?;
    let connections: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"event": r["event"], "timestamp": crate::summary::number(&r["timestamp"]),
                   "controller": r["controller"], "address": r["address"]})
        })
        .collect();
    Ok(Json(json!({"probe": id, "connections": connections})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_sql() {
        assert_eq!(
            probe_results_sql("db", 5, 50),
            "SELECT raw FROM db.results PREWHERE prb_id = 5 AND (msm_id, result_id) IN \
             (SELECT msm_id, result_id FROM db.results WHERE prb_id = 5 \
             ORDER BY timestamp DESC, msm_id, result_id LIMIT 100) \
             ORDER BY timestamp DESC, msm_id, result_id LIMIT 1 BY msm_id, result_id LIMIT 50"
        );
        assert!(connections_sql("db", 5, 10)
            .contains("FROM db.probe_connections FINAL WHERE prb_id = 5"));
        assert!(connections_sql("db", 5, 10).ends_with("LIMIT 10"));
    }

    #[test]
    fn limits_are_bounded() {
        let p = |v: &str| BTreeMap::from([("limit".to_owned(), v.to_owned())]);
        assert_eq!(bounded(&BTreeMap::new(), "limit", 50, 1, 1000), Ok(50));
        assert_eq!(bounded(&p("7"), "limit", 50, 1, 1000), Ok(7));
        for bad in ["0", "1001", "x", "-1"] {
            let e = bounded(&p(bad), "limit", 50, 1, 1000).expect_err(bad);
            assert_eq!(e.pointer.as_deref(), Some("?limit"));
        }
        let e = only(&p("1"), &["key"]).expect_err("unknown");
        assert!(
            e.detail.starts_with("limit: unknown parameter"),
            "{}",
            e.detail
        );
    }
}
