//! `GET /api/vantage/v1/measurements/{id}/summary` and `/probes`: a measurement's
//! results aggregated in ClickHouse (time buckets, breakdown, per-probe rows), never
//! read whole. The SQL and the shapes are in [`crate::summary`].

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::{bounded, only};
use crate::error::ApiError;
use crate::routes::openapi::U32;
use crate::routes::ripe::ID;
use crate::routes::state::{params, parse_id, AppState, Params, St};
use crate::routes::{ParamDoc, Ty};
use crate::summary::{self as agg, Filter, Kind};

pub(crate) const SUMMARY_PARAMS: &[ParamDoc] = &[
    ID,
    (
        "buckets",
        "query",
        "how many time buckets at most (default 120); the bucket size is rounded up to a round number of seconds",
        Ty::Int(1, agg::MAX_BUCKETS as u64),
    ),
    ("prb_id", "query", "one probe's results only", Ty::Int(0, U32)),
    (
        "start",
        "query",
        "Unix seconds: results at or after",
        Ty::Int(0, U32),
    ),
    (
        "stop",
        "query",
        "Unix seconds: results at or before",
        Ty::Int(0, U32),
    ),
];
pub(crate) const PROBES_PARAMS: &[ParamDoc] = &[
    ID,
    (
        "limit",
        "query",
        "rows at most (default 500), by probe id",
        Ty::Int(1, agg::MAX_PROBE_ROWS as u64),
    ),
];

fn unix(params: &BTreeMap<String, String>, name: &str) -> Result<Option<u32>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| ApiError::param(name, format!("{v:?} is not a Unix time in seconds")))
        })
        .transpose()
}

async fn fetch(state: &AppState, sql: String) -> Result<Vec<Value>, ApiError> {
    state.rows.fetch(sql).await.map_err(|e| {
        tracing::warn!(error = %e, "aggregate query failed");
        ApiError::unavailable(format!("the aggregates are unavailable: {e}"))
    })
}

/// The measurement's type: from its resource, else from its stored results (those of
/// a deleted measurement stay readable, as on RIPE Atlas); 404 when neither knows it.
async fn kind_of(state: &AppState, msm_id: u64) -> Result<String, ApiError> {
    if let Some(m) = state.catalog.measurement_by_id(msm_id) {
        return Ok(m.spec.definition.kind.clone());
    }
    fetch(state, agg::type_sql(state.rows.database(), msm_id))
        .await?
        .into_iter()
        .next()
        .and_then(|r| r["type"].as_str().map(str::to_owned))
        .ok_or_else(|| ApiError::not_found(format!("measurement {msm_id} does not exist")))
}

pub(crate) async fn measurement_summary(
    State(state): St,
    Path(id): Path<String>,
    q: Params,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id("measurement", &id)?;
    let params = params(q)?;
    only(&params, &["buckets", "prb_id", "start", "stop", "key"])?;
    let buckets = bounded(
        &params,
        "buckets",
        agg::DEFAULT_BUCKETS,
        1,
        agg::MAX_BUCKETS,
    )?;
    let prb_id = params
        .get("prb_id")
        .map(|v| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| ApiError::param("prb_id", format!("{v:?} is not a probe id")))
        })
        .transpose()?;
    let f = Filter {
        msm_id: id,
        prb_id,
        start: unix(&params, "start")?,
        stop: unix(&params, "stop")?,
    };
    let type_name = kind_of(&state, id).await?;
    let kind = Kind::of(&type_name);
    let db = state.rows.database();
    let span = fetch(&state, agg::span_sql(db, &f))
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let n = agg::number(&span["results"]).as_u64().unwrap_or(0);
    let (first, last) = if n == 0 {
        (None, None)
    } else {
        (
            agg::number(&span["first"])
                .as_u64()
                .and_then(|v| u32::try_from(v).ok()),
            agg::number(&span["last"])
                .as_u64()
                .and_then(|v| u32::try_from(v).ok()),
        )
    };
    let bucket = agg::bucket_seconds(first.unwrap_or(0), last.unwrap_or(0), buckets);
    let (series, breakdown) = if n == 0 {
        (Vec::new(), Vec::new())
    } else {
        let series = fetch(&state, agg::series_sql(db, kind, &f, bucket));
        let breakdown = async {
            match agg::breakdown_sql(db, kind, &f) {
                Some(sql) => fetch(&state, sql).await,
                None => Ok(Vec::new()),
            }
        };
        let (s, b) = futures::join!(series, breakdown);
        (s?, b?)
    };
    Ok(Json(json!({
        "msm_id": id,
        "type": type_name,
        "results": n,
        "probes": agg::number(&span["probes"]).as_u64().unwrap_or(0),
        "first": first,
        "last": last,
        "bucket_seconds": bucket,
        "series": agg::series_json(kind, &series),
        "breakdown": agg::breakdown_json(kind, &breakdown),
    })))
}

pub(crate) async fn measurement_probes(
    State(state): St,
    Path(id): Path<String>,
    q: Params,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id("measurement", &id)?;
    let params = params(q)?;
    only(&params, &["limit", "key"])?;
    let limit = bounded(
        &params,
        "limit",
        agg::DEFAULT_PROBE_ROWS,
        1,
        agg::MAX_PROBE_ROWS,
    )?;
    let f = Filter {
        msm_id: id,
        ..Filter::default()
    };
    let type_name = kind_of(&state, id).await?;
    let kind = Kind::of(&type_name);
    let rows = fetch(
        &state,
        agg::probes_sql(state.rows.database(), kind, &f, limit),
    )
    .await?;
    Ok(Json(json!({"rows": agg::probes_json(kind, &rows)})))
}
