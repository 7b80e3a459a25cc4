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
pub(crate) use results::{latest, results, stream, stream_lines, LATEST_PARAMS, RESULT_PARAMS};
pub use results::{latest_sql, results_sql};
pub(crate) use stop::stop_measurement;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::Value;

use super::openapi::{MEASUREMENT_STATUS_IDS, PROBE_STATUS_IDS, U32, U64};
use super::state::{base, params, parse_id, AppState, Params, St};
use super::{ParamDoc, Ty};
use crate::error::ApiError;
use crate::ripe;
use vantage_core::definition::KNOWN_TYPES;

/// `id`, `start_time`, ... and their Django lookups (`__gt`, `__gte`, `__lt`, `__lte`).
macro_rules! compared {
    ($field:literal, $what:literal) => {
        [
            ($field, "query", $what, Ty::Int(0, U64)),
            (
                concat!($field, "__gt"),
                "query",
                concat!($what, ": above"),
                Ty::Int(0, U64),
            ),
            (
                concat!($field, "__gte"),
                "query",
                concat!($what, ": at least"),
                Ty::Int(0, U64),
            ),
            (
                concat!($field, "__lt"),
                "query",
                concat!($what, ": below"),
                Ty::Int(0, U64),
            ),
            (
                concat!($field, "__lte"),
                "query",
                concat!($what, ": at most"),
                Ty::Int(0, U64),
            ),
        ]
    };
}

/// `target`, `description` and their text lookups.
macro_rules! texts {
    ($field:literal) => {
        [
            ($field, "query", "exact text", Ty::Str),
            (concat!($field, "__contains"), "query", "contains", Ty::Str),
            (
                concat!($field, "__icontains"),
                "query",
                "contains, ignoring case",
                Ty::Str,
            ),
            (
                concat!($field, "__startswith"),
                "query",
                "starts with",
                Ty::Str,
            ),
            (concat!($field, "__endswith"), "query", "ends with", Ty::Str),
        ]
    };
}

const MSM_COMPARED: [[ParamDoc; 5]; 5] = [
    compared!("id", "measurement id"),
    compared!("start_time", "Unix seconds"),
    compared!("stop_time", "Unix seconds"),
    compared!("interval", "seconds"),
    compared!("participant_count", "probes taking part"),
];
const MSM_TEXTS: [[ParamDoc; 5]; 2] = [texts!("target"), texts!("description")];
const MSM_OTHERS: [ParamDoc; 12] = [
    ("type", "query", "measurement type", Ty::Enum(KNOWN_TYPES)),
    ("status", "query", "RIPE Atlas status id (0 Specified, 1 Scheduled, 2 Ongoing, 4 Stopped, 5 Forced to stop, 6 No suitable probes, 7 Failed, 8 Denied)", Ty::IntEnum(MEASUREMENT_STATUS_IDS)),
    ("status__in", "query", "comma-separated status ids", Ty::IntEnumList(MEASUREMENT_STATUS_IDS)),
    ("id__in", "query", "comma-separated measurement ids", Ty::IntList(0, U64)),
    ("af", "query", "address family", Ty::IntEnum(AFS)),
    ("af__in", "query", "comma-separated address families", Ty::IntEnumList(AFS)),
    ("is_oneoff", "query", "one-off measurements only (or periodic ones only)", Ty::Bool),
    ("is_public", "query", "public measurements (all are)", Ty::Bool),
    ("resolve_on_probe", "query", "target resolved on the probe", Ty::Bool),
    ("namespace", "query", "vantage: the Kubernetes namespace that owns the measurement", Ty::Str),
    ("sort", "query", "id or -id (default -id)", Ty::Enum(&["id", "-id"])),
    ("page", "query", "1-based page", Ty::Int(1, U64)),
];
const PAGE_SIZE: ParamDoc = (
    "page_size",
    "query",
    "objects per page (default 50)",
    Ty::Int(1, ripe::MAX_PAGE_SIZE as u64),
);

/// Every parameter of `GET /api/v2/measurements/`.
pub(crate) const MSM_FILTERS: &[ParamDoc] = &{
    let mut out = [PAGE_SIZE; 5 * 5 + 5 * 2 + 12 + 1];
    let mut i = 0;
    while i < 25 {
        out[i] = MSM_COMPARED[i / 5][i % 5];
        i += 1;
    }
    while i < 35 {
        out[i] = MSM_TEXTS[(i - 25) / 5][(i - 25) % 5];
        i += 1;
    }
    while i < 47 {
        out[i] = MSM_OTHERS[i - 35];
        i += 1;
    }
    out
};
/// Address families.
pub(crate) const AFS: &[u64] = &[4, 6];
pub(crate) const ID: ParamDoc = ("id", "path", "measurement id", Ty::Int(0, U64));
pub(crate) const PROBE_ID: ParamDoc = ("id", "path", "probe id", Ty::Int(0, U64));
pub(crate) const PROBE_FILTERS: &[ParamDoc] = &[
    ("id", "query", "probe id", Ty::Int(0, U64)),
    ("id__gt", "query", "probe ids above", Ty::Int(0, U64)),
    ("id__gte", "query", "probe ids at least", Ty::Int(0, U64)),
    ("id__lt", "query", "probe ids below", Ty::Int(0, U64)),
    ("id__lte", "query", "probe ids at most", Ty::Int(0, U64)),
    (
        "id__in",
        "query",
        "comma-separated probe ids",
        Ty::IntList(0, U64),
    ),
    ("country_code", "query", "ISO 3166 code (any case)", Ty::Str),
    ("asn", "query", "AS number, v4 or v6", Ty::Int(0, U32)),
    (
        "asn_v4",
        "query",
        "AS number of the IPv4 address",
        Ty::Int(0, U32),
    ),
    (
        "asn_v6",
        "query",
        "AS number of the IPv6 address",
        Ty::Int(0, U32),
    ),
    (
        "status",
        "query",
        "0 Never Connected, 1 Connected, 2 Disconnected, 3 Abandoned (disabled)",
        Ty::IntEnum(PROBE_STATUS_IDS),
    ),
    (
        "tags",
        "query",
        "comma-separated tag slugs (user or system, e.g. system-ipv4-works), all required",
        Ty::StrList,
    ),
    (
        "is_anchor",
        "query",
        "anchors only (or probes only)",
        Ty::Bool,
    ),
    ("is_public", "query", "public probes (all are)", Ty::Bool),
    ("page", "query", "1-based page", Ty::Int(1, U64)),
    PAGE_SIZE,
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
