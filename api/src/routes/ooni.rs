//! OONI-style handlers: `GET /api/v1/measurements` and `/api/v1/aggregation` over the
//! `fastpath` table. The SQL and the answer shapes are in [`crate::ooni`].

use std::time::Instant;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use super::state::{base, params, Params, St};
use super::ParamDoc;
use crate::error::ApiError;
use crate::{ooni, ripe};

pub(super) const OONI_LIST: &[ParamDoc] = &[
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
pub(super) const OONI_AGG: &[ParamDoc] = &[
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

pub(crate) async fn ooni_aggregation(State(state): St, q: Params) -> Result<Json<Value>, ApiError> {
    let params = params(q)?;
    let (sql, axes) = ooni::aggregation_sql(state.rows.database(), &params)?;
    let rows = state.rows.fetch(sql).await.map_err(query_failed)?;
    Ok(Json(ooni::aggregation_answer(rows, &axes)))
}
