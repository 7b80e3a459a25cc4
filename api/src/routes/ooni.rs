//! OONI-style handlers: `GET /api/v1/measurements` and `/api/v1/aggregation` over the
//! `fastpath` table. The SQL and the answer shapes are in [`crate::ooni`].

use std::time::Instant;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use super::openapi::U64;
use super::state::{base, params, Params, St};
use super::{ParamDoc, Ty};
use crate::error::ApiError;
use crate::{ooni, ripe};

/// A date as [`ooni::parse_time`] reads it (days up to 28 here; every real date is taken).
const DATE: &str = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?Z?)?$";

/// The filters both OONI routes take, then `$extra`.
macro_rules! with_filters {
    ($($extra:expr),* $(,)?) => {
        &[
            ("probe_cc", "query", "two-letter country code", Ty::Pattern("^[A-Za-z]{2}$")),
            ("probe_asn", "query", "AS1234 or 1234", Ty::Pattern("^(AS)?[0-9]{1,9}$")),
            ("test_name", "query", "e.g. web_connectivity", Ty::Str),
            ("since", "query", "2024-05-01 or 2024-05-01T12:00:00Z", Ty::Pattern(DATE)),
            ("until", "query", "2024-05-01 or 2024-05-01T12:00:00Z", Ty::Pattern(DATE)),
            ("anomaly", "query", "anomalies only (or none)", Ty::Bool),
            ("confirmed", "query", "confirmed blocking only (or none)", Ty::Bool),
            ("failure", "query", "failed measurements only (or none)", Ty::Bool),
            ("report_id", "query", "report id", Ty::Str),
            ("input", "query", "tested input", Ty::Str),
            ("domain", "query", "tested domain", Ty::Str),
            $($extra),*
        ]
    };
}

const AXES: &[&str] = &[
    "measurement_start_day",
    "probe_cc",
    "probe_asn",
    "test_name",
    "domain",
    "input",
];

pub(super) const OONI_LIST: &[ParamDoc] = with_filters![
    (
        "limit",
        "query",
        "rows per page (default 100)",
        Ty::Int(1, ooni::MAX_LIMIT)
    ),
    ("offset", "query", "rows to skip", Ty::Int(0, U64)),
    (
        "order_by",
        "query",
        "measurement_start_time (default)",
        Ty::Enum(&[
            "measurement_start_time",
            "test_start_time",
            "probe_cc",
            "probe_asn",
            "test_name",
            "input"
        ]),
    ),
    (
        "order",
        "query",
        "desc (default) or asc",
        Ty::Enum(&["desc", "asc"])
    ),
];
pub(super) const OONI_AGG: &[ParamDoc] = with_filters![
    ("axis_x", "query", "the first axis", Ty::Enum(AXES)),
    (
        "axis_y",
        "query",
        "a second axis (the same as axis_x counts once)",
        Ty::Enum(AXES)
    ),
    (
        "time_grain",
        "query",
        "of measurement_start_day: day (default; auto is day)",
        Ty::Enum(&["hour", "day", "week", "month", "auto"]),
    ),
    ("format", "query", "JSON", Ty::Enum(&["JSON"])),
];

fn query_failed(e: crate::rows::RowsError) -> ApiError {
    tracing::warn!(error = %e, "fastpath query failed");
    ApiError::unavailable(format!("the fastpath is unavailable: {e}"))
}

pub(crate) async fn ooni_measurements(
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
    let next_url = (listing.offset.saturating_add(listing.limit) < count).then(|| {
        let mut p = params.clone();
        p.insert(
            "offset".into(),
            listing.offset.saturating_add(listing.limit).to_string(),
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

pub(crate) async fn ooni_aggregation(State(state): St, q: Params) -> Result<Json<Value>, ApiError> {
    let params = params(q)?;
    let (sql, axes) = ooni::aggregation_sql(state.rows.database(), &params)?;
    let rows = state.rows.fetch(sql).await.map_err(query_failed)?;
    Ok(Json(ooni::aggregation_answer(rows, &axes)))
}
