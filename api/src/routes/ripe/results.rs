//! Results of a measurement: downloads streamed from ClickHouse (`results/`,
//! `latest/`, as a JSON array or one result per line) and live results from NATS as
//! server-sent events (`stream/`).

use std::collections::BTreeMap;
use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;

use crate::error::ApiError;
use crate::routes::openapi::U32;
use crate::routes::state::{params, parse_id, AppState, Params, St};
use crate::routes::{ParamDoc, Ty};
use crate::rows::json_array;

use super::ID;

const FORMATS: &[&str] = &["json", "txt"];
pub(crate) const RESULT_PARAMS: &[ParamDoc] = &[
    ID,
    (
        "start",
        "query",
        "Unix seconds: results at or after",
        Ty::Int(0, U32),
    ),
    (
        "stop",
        "query",
        "Unix seconds: results at or before (before start: no results)",
        Ty::Int(0, U32),
    ),
    (
        "probe_ids",
        "query",
        "comma-separated probe ids",
        Ty::IntList(0, U32),
    ),
    (
        "format",
        "query",
        "json (an array, default) or txt (one result per line)",
        Ty::Enum(FORMATS),
    ),
];
pub(crate) const LATEST_PARAMS: &[ParamDoc] = &[
    ID,
    (
        "probe_ids",
        "query",
        "comma-separated probe ids",
        Ty::IntList(0, U32),
    ),
    (
        "lookback_days",
        "query",
        "only results of the last N days",
        Ty::Int(1, 3650),
    ),
    (
        "format",
        "query",
        "json (default) or txt",
        Ty::Enum(FORMATS),
    ),
    (
        "versions",
        "query",
        "accepted for RIPE Atlas clients; ignored",
        Ty::Str,
    ),
];
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

/// `probe_ids`; an empty list filters nothing (as an absent one).
fn probe_ids(params: &BTreeMap<String, String>) -> Result<Option<Vec<u32>>, ApiError> {
    let ids: Option<Vec<u32>> = params
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
        .transpose()?;
    Ok(ids.filter(|ids| !ids.is_empty()))
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

/// SQL for `latest/`: the newest result of each probe, by probe id. The newest
/// `(prb_id, timestamp)` pairs come from the key columns first, and only their rows'
/// `raw` is read (PREWHERE), so a measurement with a million results reads a thousand
/// raw results rather than all of them. A result stored twice and not yet merged
/// is answered once (`LIMIT 1 BY`), as with FINAL; two results of a probe in its newest
/// second: the one with the smaller `result_id`, on every replica and every run.
pub fn latest_sql(db: &str, id: u64, probes: Option<&[u32]>, lookback_days: Option<u32>) -> String {
    let mut filter = format!("msm_id = {id}");
    if let Some(p) = probes {
        let list: Vec<String> = p.iter().map(u32::to_string).collect();
        filter.push_str(&format!(" AND prb_id IN ({})", list.join(",")));
    }
    if let Some(days) = lookback_days {
        filter.push_str(&format!(
            " AND timestamp >= now() - {}",
            u64::from(days) * 86_400
        ));
    }
    format!(
        "SELECT raw FROM {db}.results PREWHERE {filter} AND (prb_id, timestamp) IN \
         (SELECT prb_id, max(timestamp) FROM {db}.results WHERE {filter} GROUP BY prb_id) \
         ORDER BY prb_id, result_id LIMIT 1 BY prb_id"
    )
}

/// Stream `sql`'s lines as a JSON array (or as they are). The first chunk is awaited
/// before answering, so a failing query is a 503 rather than a broken 200. No rows for
/// a measurement (`msm_id`) that no resource describes is a 404, as on RIPE Atlas (the
/// results of a deleted measurement stay readable).
pub(crate) async fn stream_lines(
    state: &AppState,
    msm_id: Option<u64>,
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
        None => match msm_id {
            Some(id) if state.catalog.measurement_by_id(id).is_none() => {
                return Err(ApiError::not_found(format!(
                    "measurement {id} does not exist"
                )));
            }
            _ => None,
        },
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

pub(crate) async fn results(
    State(state): St,
    Path(id): Path<String>,
    q: Params,
) -> Result<Response, ApiError> {
    let id = parse_id("measurement", &id)?;
    let params = params(q)?;
    only(&params, &["start", "stop", "probe_ids", "format", "key"])?;
    // A window that ends before it starts holds no results: `[]`, as on RIPE Atlas.
    let (start, stop) = (unix_param(&params, "start")?, unix_param(&params, "stop")?);
    let probes = probe_ids(&params)?;
    let sql = results_sql(state.rows.database(), id, start, stop, probes.as_deref());
    stream_lines(&state, Some(id), sql, want_lines(&params)?).await
}

pub(crate) async fn latest(
    State(state): St,
    Path(id): Path<String>,
    q: Params,
) -> Result<Response, ApiError> {
    let id = parse_id("measurement", &id)?;
    let params = params(q)?;
    only(
        &params,
        &["probe_ids", "lookback_days", "format", "key", "versions"],
    )?;
    let probes = probe_ids(&params)?;
    let lookback = match params.get("lookback_days") {
        Some(d) => Some(
            d.trim()
                .parse::<u32>()
                .ok()
                .filter(|d| (1..=3650).contains(d))
                .ok_or_else(|| {
                    ApiError::param(
                        "lookback_days",
                        format!("{d:?} is not a number of days from 1 to 3650"),
                    )
                })?,
        ),
        None => None,
    };
    let sql = latest_sql(state.rows.database(), id, probes.as_deref(), lookback);
    stream_lines(&state, Some(id), sql, want_lines(&params)?).await
}

pub(crate) async fn stream(State(state): St, Path(id): Path<String>) -> Result<Response, ApiError> {
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
    fn latest_reads_the_newest_keys_first() {
        assert_eq!(
            latest_sql("db", 7, Some(&[1, 2]), Some(2)),
            "SELECT raw FROM db.results PREWHERE msm_id = 7 AND prb_id IN (1,2) AND timestamp >= now() - 172800 \
             AND (prb_id, timestamp) IN (SELECT prb_id, max(timestamp) FROM db.results WHERE msm_id = 7 \
             AND prb_id IN (1,2) AND timestamp >= now() - 172800 GROUP BY prb_id) ORDER BY prb_id, result_id LIMIT 1 BY prb_id"
        );
    }
}
