//! OONI-style search over the `fastpath` table: `GET /api/v1/measurements` and
//! `GET /api/v1/aggregation`, with OONI's parameters and response shapes. Pure SQL
//! builders and row shaping; the handlers live in `routes::ooni`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use vantage_platform::store::quote;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: u64 = 100;
pub const MAX_LIMIT: u64 = 10_000;

/// Unix seconds of an OONI `since`/`until`: `2024-05-01`, `2024-05-01T12:00:00[Z]`.
pub fn parse_time(name: &str, v: &str) -> Result<i64, ApiError> {
    let s = v.trim().trim_end_matches('Z');
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp());
        }
    }
    for f in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc().timestamp());
        }
    }
    Err(ApiError::param(
        name,
        format!("{v:?} is not a date; use 2024-05-01 or 2024-05-01T12:00:00Z"),
    ))
}

fn parse_flag(name: &str, v: &str) -> Result<u8, ApiError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(1),
        "false" | "0" => Ok(0),
        _ => Err(ApiError::param(name, format!("{v:?} is not true or false"))),
    }
}

/// `probe_asn` as OONI takes it: `AS1234` or `1234`.
pub fn parse_asn(v: &str) -> Result<u32, ApiError> {
    v.trim()
        .trim_start_matches("AS")
        .trim_start_matches("as")
        .parse()
        .map_err(|_| {
            ApiError::param(
                "probe_asn",
                format!("{v:?} is not an AS number such as AS1234"),
            )
        })
}

/// The WHERE clause of the filters both endpoints share; `extra` lists the other
/// parameters the endpoint accepts. An unknown parameter is a 400 naming it.
pub fn where_clause(params: &BTreeMap<String, String>, extra: &[&str]) -> Result<String, ApiError> {
    let mut conds: Vec<String> = vec!["1 = 1".into()];
    for (name, value) in params {
        let v = value.trim();
        match name.as_str() {
            "probe_cc" => {
                if v.len() != 2 || !v.chars().all(|c| c.is_ascii_alphabetic()) {
                    return Err(ApiError::param(name, format!("{v:?} is not a two-letter country code")));
                }
                conds.push(format!("probe_cc = {}", quote(&v.to_ascii_uppercase())));
            }
            "probe_asn" => conds.push(format!("probe_asn = {}", parse_asn(v)?)),
            "test_name" | "report_id" | "input" | "domain" => {
                conds.push(format!("{name} = {}", quote(v)))
            }
            "since" => conds.push(format!("measurement_start_time >= toDateTime({})", parse_time(name, v)?)),
            "until" => conds.push(format!("measurement_start_time < toDateTime({})", parse_time(name, v)?)),
            "anomaly" => conds.push(format!("anomaly = {}", parse_flag(name, v)?)),
            "confirmed" => conds.push(format!("confirmed = {}", parse_flag(name, v)?)),
            "failure" => conds.push(format!("msm_failure = {}", parse_flag(name, v)?)),
            n if extra.contains(&n) => {}
            _ => {
                return Err(ApiError::param(
                    name,
                    format!(
                        "unknown parameter; use probe_cc, probe_asn, test_name, report_id, input, domain, since, \
                         until, anomaly, confirmed, failure, {}",
                        extra.join(", ")
                    ),
                ))
            }
        }
    }
    Ok(conds.join(" AND "))
}

/// Paging and order of `/api/v1/measurements`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub limit: u64,
    pub offset: u64,
    pub order_by: &'static str,
    pub desc: bool,
}

pub const LIST_PARAMS: &[&str] = &["limit", "offset", "order_by", "order", "key"];

pub fn listing(params: &BTreeMap<String, String>) -> Result<Listing, ApiError> {
    let num = |name: &str, default: u64| -> Result<u64, ApiError> {
        params.get(name).map_or(Ok(default), |v| {
            v.trim()
                .parse()
                .map_err(|_| ApiError::param(name, format!("{v:?} is not a non-negative integer")))
        })
    };
    let limit = num("limit", DEFAULT_LIMIT)?;
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::param(
            "limit",
            format!("{limit} is out of range; use 1 to {MAX_LIMIT}"),
        ));
    }
    let order_by = match params.get("order_by").map(|s| s.trim()) {
        None | Some("measurement_start_time") => "measurement_start_time",
        Some("test_start_time") => "test_start_time",
        Some("probe_cc") => "probe_cc",
        Some("probe_asn") => "probe_asn",
        Some("test_name") => "test_name",
        Some("input") => "input",
        Some(other) => {
            return Err(ApiError::param(
                "order_by",
                format!("{other:?} is not a column to order by; use measurement_start_time, test_start_time, probe_cc, probe_asn, test_name or input"),
            ))
        }
    };
    let desc = match params.get("order").map(|s| s.trim().to_ascii_lowercase()) {
        None => true,
        Some(o) if o == "desc" => true,
        Some(o) if o == "asc" => false,
        Some(o) => {
            return Err(ApiError::param(
                "order",
                format!("{o:?} is not asc or desc"),
            ))
        }
    };
    Ok(Listing {
        limit,
        offset: num("offset", 0)?,
        order_by,
        desc,
    })
}

/// SQL of one page of measurements, and of their count.
pub fn list_sql(db: &str, filter: &str, l: &Listing) -> (String, String) {
    let page = format!(
        "SELECT measurement_uid, report_id, input, probe_cc, probe_asn, test_name, \
         toUInt32(measurement_start_time) AS start, scores, anomaly, confirmed, msm_failure \
         FROM {db}.fastpath FINAL WHERE {filter} ORDER BY {} {}, measurement_uid LIMIT {}, {}",
        l.order_by,
        if l.desc { "DESC" } else { "ASC" },
        l.offset,
        l.limit
    );
    let count = format!("SELECT toUInt32(count()) AS n FROM {db}.fastpath FINAL WHERE {filter}");
    (page, count)
}

fn iso(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// A fastpath row as OONI lists it.
pub fn list_item(row: &Value, base: &str) -> Value {
    let flag = |k: &str| row[k].as_u64().unwrap_or(0) != 0;
    let uid = row["measurement_uid"].as_str().unwrap_or_default();
    let input = row["input"].as_str().filter(|s| !s.is_empty());
    let scores = row["scores"]
        .as_str()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .unwrap_or_else(|| json!({}));
    json!({
        "anomaly": flag("anomaly"),
        "confirmed": flag("confirmed"),
        "failure": flag("msm_failure"),
        "input": input,
        "measurement_start_time": iso(row["start"].as_i64().unwrap_or(0)),
        "measurement_uid": uid,
        "measurement_url": format!("{base}/api/v1/measurement/{uid}"),
        "probe_asn": format!("AS{}", row["probe_asn"].as_u64().unwrap_or(0)),
        "probe_cc": row["probe_cc"],
        "report_id": row["report_id"],
        "scores": scores,
        "test_name": row["test_name"],
    })
}

/// OONI's `metadata` object for a page.
pub fn list_metadata(count: u64, l: &Listing, next_url: Option<String>, query_time: f64) -> Value {
    json!({
        "count": count,
        "current_page": (l.offset / l.limit).saturating_add(1),
        "limit": l.limit,
        "next_url": next_url,
        "offset": l.offset,
        "pages": count.div_ceil(l.limit),
        "query_time": query_time,
    })
}

pub const AGG_PARAMS: &[&str] = &["axis_x", "axis_y", "time_grain", "format", "key"];

/// An aggregation axis: its SQL expression.
fn axis_expr(name: &str, axis: &str, grain: &str) -> Result<String, ApiError> {
    Ok(match axis {
        "measurement_start_day" => match grain {
            "hour" => "toStartOfHour(measurement_start_time)",
            "day" => "toDate(measurement_start_time)",
            "week" => "toMonday(measurement_start_time)",
            "month" => "toStartOfMonth(measurement_start_time)",
            _ => unreachable_grain(),
        }
        .to_owned(),
        "probe_cc" | "probe_asn" | "test_name" | "domain" | "input" => axis.to_owned(),
        other => {
            return Err(ApiError::param(
                name,
                format!("{other:?} is not an axis; use measurement_start_day, probe_cc, probe_asn, test_name, domain or input"),
            ))
        }
    })
}

fn unreachable_grain() -> &'static str {
    "toDate(measurement_start_time)"
}

/// The aggregation query and its axes (`[x, y]`, absent ones left out).
pub fn aggregation_sql(
    db: &str,
    params: &BTreeMap<String, String>,
) -> Result<(String, Vec<String>), ApiError> {
    let filter = where_clause(params, AGG_PARAMS)?;
    if let Some(f) = params.get("format") {
        if !f.eq_ignore_ascii_case("json") {
            return Err(ApiError::param(
                "format",
                format!("{f:?} is not supported; use JSON"),
            ));
        }
    }
    let grain = params
        .get("time_grain")
        .map(|g| g.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "day".into());
    let grain = match grain.as_str() {
        "hour" | "day" | "week" | "month" => grain,
        "auto" => "day".to_owned(),
        other => {
            return Err(ApiError::param(
                "time_grain",
                format!("{other:?} is not a time grain; use hour, day, week, month or auto"),
            ))
        }
    };
    let mut axes = Vec::new();
    let mut select = Vec::new();
    for name in ["axis_x", "axis_y"] {
        if let Some(axis) = params.get(name).map(|a| a.trim()).filter(|a| !a.is_empty()) {
            // The same axis twice is one axis (OpenAPI cannot forbid it).
            if axes.iter().any(|a: &String| a == axis) {
                continue;
            }
            select.push(format!("{} AS {axis}", axis_expr(name, axis, &grain)?));
            axes.push(axis.to_owned());
        }
    }
    let counts = "toUInt32(count()) AS measurement_count, \
        toUInt32(countIf(anomaly = 1 AND confirmed = 0 AND msm_failure = 0)) AS anomaly_count, \
        toUInt32(countIf(confirmed = 1)) AS confirmed_count, \
        toUInt32(countIf(msm_failure = 1)) AS failure_count, \
        toUInt32(countIf(anomaly = 0 AND confirmed = 0 AND msm_failure = 0)) AS ok_count";
    select.push(counts.to_owned());
    let mut sql = format!(
        "SELECT {} FROM {db}.fastpath FINAL WHERE {filter}",
        select.join(", ")
    );
    if !axes.is_empty() {
        let keys = axes.join(", ");
        sql.push_str(&format!(" GROUP BY {keys} ORDER BY {keys}"));
    }
    Ok((sql, axes))
}

/// OONI's aggregation answer: `{dimension_count, result, v}`; `result` is an object
/// without axes and a list with them. Day axes print as `2024-05-01`, hours as
/// `2024-05-01T13:00:00Z`.
pub fn aggregation_answer(rows: Vec<Value>, axes: &[String]) -> Value {
    let shape = |row: Value| -> Value {
        let Value::Object(mut map) = row else {
            return row;
        };
        if let Some(Value::String(s)) = map.get("measurement_start_day") {
            let fixed = match s.split_once(' ') {
                Some((d, t)) => format!("{d}T{t}Z"),
                None => s.clone(),
            };
            map.insert("measurement_start_day".into(), Value::String(fixed));
        }
        Value::Object(map)
    };
    let result = if axes.is_empty() {
        rows.into_iter().next().map(shape).unwrap_or_else(|| {
            let mut m = Map::new();
            for k in [
                "measurement_count",
                "anomaly_count",
                "confirmed_count",
                "failure_count",
                "ok_count",
            ] {
                m.insert(k.into(), json!(0));
            }
            Value::Object(m)
        })
    } else {
        Value::Array(rows.into_iter().map(shape).collect())
    };
    json!({"dimension_count": axes.len(), "result": result, "v": 0})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn filters_quote_and_parse() {
        let w = where_clause(
            &q(&[
                ("probe_cc", "it"),
                ("probe_asn", "AS30722"),
                ("test_name", "web'connectivity"),
                ("since", "2024-05-01"),
                ("anomaly", "true"),
                ("failure", "false"),
            ]),
            &[],
        )
        .expect("valid");
        assert!(w.contains("probe_cc = 'IT'"), "{w}");
        assert!(w.contains("probe_asn = 30722"), "{w}");
        assert!(w.contains("test_name = 'web\\'connectivity'"), "{w}");
        assert!(
            w.contains("measurement_start_time >= toDateTime(1714521600)"),
            "{w}"
        );
        assert!(
            w.contains("anomaly = 1") && w.contains("msm_failure = 0"),
            "{w}"
        );
        for (k, v) in [
            ("probe_cc", "Italy"),
            ("probe_asn", "ASx"),
            ("since", "yesterday"),
            ("anomaly", "maybe"),
            ("colour", "red"),
        ] {
            let e = where_clause(&q(&[(k, v)]), &[]).expect_err("refused");
            assert_eq!(e.pointer.as_deref(), Some(format!("?{k}").as_str()));
        }
    }

    #[test]
    fn listing_defaults_and_bounds() {
        let l = listing(&q(&[])).expect("defaults");
        assert_eq!(
            (l.limit, l.offset, l.order_by, l.desc),
            (100, 0, "measurement_start_time", true)
        );
        assert!(listing(&q(&[("limit", "0")])).is_err());
        assert!(listing(&q(&[("order_by", "raw; DROP")])).is_err());
        let (page, count) = list_sql(
            "db",
            "1 = 1",
            &listing(&q(&[("limit", "5"), ("offset", "10"), ("order", "asc")])).expect("ok"),
        );
        assert!(
            page.ends_with("ORDER BY measurement_start_time ASC, measurement_uid LIMIT 10, 5"),
            "{page}"
        );
        assert!(count.contains("FROM db.fastpath FINAL"));
        let m = list_metadata(
            23,
            &listing(&q(&[("limit", "5"), ("offset", "10")])).expect("ok"),
            None,
            0.1,
        );
        assert_eq!(
            (m["current_page"].as_u64(), m["pages"].as_u64()),
            (Some(3), Some(5))
        );
    }

    #[test]
    fn list_item_has_ooni_shape() {
        let row = json!({"measurement_uid": "u1", "report_id": "r", "input": "", "probe_cc": "IT", "probe_asn": 30722,
                         "test_name": "web_connectivity", "start": 1714521600, "scores": "{\"blocking_general\":1.0}",
                         "anomaly": 1, "confirmed": 0, "msm_failure": 0});
        let v = list_item(&row, "http://h");
        assert_eq!(v["anomaly"], true);
        assert_eq!(v["confirmed"], false);
        assert_eq!(v["input"], Value::Null);
        assert_eq!(v["probe_asn"], "AS30722");
        assert_eq!(v["measurement_start_time"], "2024-05-01T00:00:00Z");
        assert_eq!(v["scores"]["blocking_general"], 1.0);
        assert_eq!(v["measurement_url"], "http://h/api/v1/measurement/u1");
    }

    #[test]
    fn aggregation_axes_and_grains() {
        let (sql, axes) = aggregation_sql(
            "db",
            &q(&[
                ("axis_x", "measurement_start_day"),
                ("axis_y", "probe_cc"),
                ("time_grain", "hour"),
            ]),
        )
        .expect("ok");
        assert_eq!(axes, ["measurement_start_day", "probe_cc"]);
        assert!(
            sql.contains("toStartOfHour(measurement_start_time) AS measurement_start_day"),
            "{sql}"
        );
        assert!(
            sql.ends_with(
                "GROUP BY measurement_start_day, probe_cc ORDER BY measurement_start_day, probe_cc"
            ),
            "{sql}"
        );
        let (sql, axes) =
            aggregation_sql("db", &q(&[("test_name", "web_connectivity")])).expect("ok");
        assert!(axes.is_empty() && !sql.contains("GROUP BY"), "{sql}");
        assert!(aggregation_sql("db", &q(&[("axis_x", "colour")])).is_err());
        let (sql, axes) =
            aggregation_sql("db", &q(&[("axis_x", "probe_cc"), ("axis_y", "probe_cc")]))
                .expect("the same axis twice is one axis");
        assert_eq!(axes, ["probe_cc"]);
        assert!(
            sql.ends_with("GROUP BY probe_cc ORDER BY probe_cc"),
            "{sql}"
        );
        assert!(aggregation_sql("db", &q(&[("time_grain", "year")])).is_err());
        let a = aggregation_answer(
            vec![
                json!({"measurement_start_day": "2024-05-01 13:00:00", "measurement_count": 2}),
                json!({"measurement_start_day": "2024-05-02", "measurement_count": 1}),
            ],
            &["measurement_start_day".into()],
        );
        assert_eq!(a["dimension_count"], 1);
        assert_eq!(
            a["result"][0]["measurement_start_day"],
            "2024-05-01T13:00:00Z"
        );
        assert_eq!(a["result"][1]["measurement_start_day"], "2024-05-02");
        let none = aggregation_answer(vec![], &[]);
        assert_eq!(none["result"]["measurement_count"], 0);
    }
}
