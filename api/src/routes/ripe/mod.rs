//! RIPE Atlas API v2 handlers: measurements and probes listed and fetched here,
//! creation in [`create`], stopping in [`stop`], participation requests in
//! [`participation`], results and live streams in [`results`]. The JSON shapes,
//! filters and pages are in [`crate::ripe`].

mod create;
mod participation;
mod results;
mod stop;

pub(crate) use create::create_measurements;
pub(crate) use participation::participation_requests;
pub use results::results_sql;
pub(crate) use results::{latest, results, stream, LATEST_PARAMS, RESULT_PARAMS};
pub(crate) use stop::stop_measurement;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::Value;

use super::state::{base, params, parse_id, AppState, Params, St};
use super::ParamDoc;
use crate::error::ApiError;
use crate::ripe;

pub(crate) const MSM_FILTERS: &[ParamDoc] = &[
    ("type", "query", "ping, traceroute, dns, http, sslcert, ntp, mtr"),
    ("status", "query", "RIPE Atlas status id (0 Specified, 1 Scheduled, 2 Ongoing, 4 Stopped, 5 Forced to stop, 6 No suitable probes, 7 Failed, 8 Denied)"),
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
pub(crate) const ID: ParamDoc = ("id", "path", "measurement id");
pub(crate) const PROBE_FILTERS: &[ParamDoc] = &[
    ("id__in", "query", "comma-separated probe ids"),
    ("country_code", "query", "ISO 3166 code"),
    ("asn", "query", "AS number, v4 or v6 (also asn_v4, asn_v6)"),
    (
        "status",
        "query",
        "0 Never Connected, 1 Connected, 2 Disconnected, 3 Abandoned (disabled)",
    ),
    (
        "tags",
        "query",
        "comma-separated tag slugs (user or system, e.g. system-ipv4-works), all required",
    ),
    ("is_anchor", "query", "true or false"),
    ("page", "query", "1-based page"),
    ("page_size", "query", "1 to 500 (default 50)"),
];
fn listed_measurements(state: &AppState, base: &str) -> Vec<Value> {
    state
        .catalog
        .measurements()
        .iter()
        .filter(|m| m.metadata.deletion_timestamp.is_none())
        .filter_map(|m| ripe::measurement_json(m, base))
        .collect()
}

pub(crate) async fn list_measurements(
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

pub(crate) async fn one_measurement(
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

pub(crate) async fn list_probes(
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

pub(crate) async fn one_probe(
    State(state): St,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id("probe", &id)?;
    state
        .catalog
        .probes()
        .iter()
        .find(|p| u64::from(p.spec.id) == id)
        .map(|p| Json(ripe::probe_json(p)))
        .ok_or_else(|| ApiError::not_found(format!("probe {id} does not exist")))
}
