//! Aggregates of a measurement's results, for pages that must stay fast on a million
//! results: the SQL (pure functions over ClickHouse 18.16's dialect) of a summary in
//! time buckets per type, a per-type breakdown and per-probe rows, the bucket size, and
//! the shaping of ClickHouse's `JSONEachRow` rows into the API's JSON.
//!
//! Counts and spans come from `results`; the per-bucket fields from the type's table
//! (`ping_results`, `traceroute_hops`, ...). Neither is read with FINAL: a result
//! delivered twice and not yet merged counts twice until ClickHouse merges it.

use serde_json::{json, Map, Value};

/// Buckets of a summary unless `buckets` says otherwise, and the most it may ask for.
pub const DEFAULT_BUCKETS: u32 = 120;
pub const MAX_BUCKETS: u32 = 1000;
/// Rows of the per-probe table unless `limit` says otherwise, and the most.
pub const DEFAULT_PROBE_ROWS: u32 = 500;
pub const MAX_PROBE_ROWS: u32 = 10_000;

/// Bucket sizes a chart's axis reads well with (seconds); past a day, whole days.
const STEPS: &[u64] = &[
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400,
];

/// The bucket size for `buckets` buckets over `first..=last`: the span divided by
/// `buckets`, rounded up to a step of [`STEPS`] (at least 1 s).
pub fn bucket_seconds(first: u32, last: u32, buckets: u32) -> u32 {
    let span = u64::from(last.saturating_sub(first));
    let raw = span.div_ceil(u64::from(buckets.max(1))).max(1);
    let step = STEPS
        .iter()
        .copied()
        .find(|s| *s >= raw)
        .unwrap_or_else(|| raw.div_ceil(86_400) * 86_400);
    u32::try_from(step).unwrap_or(u32::MAX)
}

/// Which table and fields a measurement type's aggregates come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ping,
    /// traceroute and mtr (both in `traceroute_hops`).
    Trace,
    Dns,
    Http,
    Sslcert,
    Ntp,
    /// Any other type: counts only, from `results`.
    Other,
}

impl Kind {
    pub fn of(kind: &str) -> Self {
        match kind {
            "ping" => Kind::Ping,
            "traceroute" | "mtr" => Kind::Trace,
            "dns" => Kind::Dns,
            "http" => Kind::Http,
            "sslcert" => Kind::Sslcert,
            "ntp" => Kind::Ntp,
            _ => Kind::Other,
        }
    }

    /// The fields of a series bucket besides `t` and `n`.
    pub fn series_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Ping => &["rtt_min", "rtt_avg", "rtt_max", "loss"],
            Kind::Trace => &["rtt_avg", "reached"],
            Kind::Dns => &["rt_avg", "errors"],
            Kind::Http => &["rt_avg", "ttc_avg", "ttfb_avg", "errors"],
            Kind::Sslcert => &["rt_avg", "valid"],
            Kind::Ntp => &["offset_avg", "rtt_avg"],
            Kind::Other => &[],
        }
    }

    /// The fields of a per-probe row besides `prb_id`, `n` and `last`.
    pub fn probe_fields(self) -> &'static [&'static str] {
        match self {
            Kind::Ping => &["rtt_min", "rtt_avg", "rtt_max", "loss"],
            _ => &["rt_avg"],
        }
    }
}

/// Which results an aggregate covers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub msm_id: u64,
    pub prb_id: Option<u32>,
    /// Unix seconds, inclusive.
    pub start: Option<u32>,
    pub stop: Option<u32>,
}

impl Filter {
    /// The WHERE condition (numbers only, so nothing to quote).
    pub fn condition(&self) -> String {
        let mut sql = format!("msm_id = {}", self.msm_id);
        if let Some(p) = self.prb_id {
            sql.push_str(&format!(" AND prb_id = {p}"));
        }
        if let Some(s) = self.start {
            sql.push_str(&format!(" AND timestamp >= toDateTime({s})"));
        }
        if let Some(s) = self.stop {
            sql.push_str(&format!(" AND timestamp <= toDateTime({s})"));
        }
        sql
    }
}

/// `if(no row matches, NULL, agg(x, cond))`: minIf/maxIf answer 0 over no rows.
fn when(agg: &str, x: &str, cond: &str) -> String {
    format!("if(countIf({cond}) = 0, NULL, {agg}If({x}, {cond}))")
}

/// Count, distinct probes, first and last timestamp of the results `f` covers.
pub fn span_sql(db: &str, f: &Filter) -> String {
    format!(
        "SELECT count() AS results, uniqExact(prb_id) AS probes, toUInt32(min(timestamp)) AS first, \
         toUInt32(max(timestamp)) AS last FROM {db}.results WHERE {}",
        f.condition()
    )
}

/// The type of a measurement's stored results (no row when it has none).
pub fn type_sql(db: &str, msm_id: u64) -> String {
    format!("SELECT type FROM {db}.results WHERE msm_id = {msm_id} LIMIT 1")
}

/// One row per traceroute/mtr result: its time, probe, last hop's RTTs and responders,
/// and its destination.
fn last_hops(db: &str, f: &Filter) -> String {
    format!(
        "SELECT result_id, any(prb_id) AS prb_id, toUInt32(any(timestamp)) AS ts, argMax(rtts, hop) AS last_rtts, \
         argMax(responders, hop) AS last_from, any(dst_addr) AS dst FROM {db}.traceroute_hops WHERE {} GROUP BY result_id",
        f.condition()
    )
}

/// Per-type aggregate expressions, for series buckets and per-probe rows.
fn aggregates(kind: Kind, for_probes: bool) -> String {
    let timed = |col: &str| format!("error = '' AND {col} >= 0");
    match kind {
        Kind::Ping => format!(
            "{} AS rtt_min, {} AS rtt_avg, {} AS rtt_max, avg(loss) / 100 AS loss",
            when("min", "rtt_min", "rcvd > 0"),
            when("avg", "rtt_avg", "rcvd > 0"),
            when("max", "rtt_max", "rcvd > 0"),
        ),
        Kind::Trace => {
            let rtt = when(
                "avg",
                "arrayReduce('avg', last_rtts)",
                "length(last_rtts) > 0",
            );
            if for_probes {
                format!("{rtt} AS rt_avg")
            } else {
                format!("{rtt} AS rtt_avg, avg(has(last_from, dst)) AS reached")
            }
        }
        // The collector stores -1 for a time it did not get (docs: typed tables), so
        // each time column is averaged over the results that have one.
        Kind::Dns if !for_probes => format!(
            "{} AS rt_avg, countIf(error != '') AS errors",
            when("avg", "rt", &timed("rt"))
        ),
        Kind::Http if !for_probes => format!(
            "{} AS rt_avg, {} AS ttc_avg, {} AS ttfb_avg, countIf(error != '') AS errors",
            when("avg", "rt", &timed("rt")),
            when("avg", "ttc", &timed("ttc")),
            when("avg", "ttfb", &timed("ttfb")),
        ),
        Kind::Sslcert if !for_probes => format!(
            "{} AS rt_avg, avg(valid_at_measurement) AS valid",
            when("avg", "rt", &timed("rt"))
        ),
        Kind::Dns | Kind::Http | Kind::Sslcert => {
            format!("{} AS rt_avg", when("avg", "rt", &timed("rt")))
        }
        // An NTP result without replies has no offset (-1 is a placeholder, and a real
        // offset may be negative): only results with replies count.
        Kind::Ntp if !for_probes => format!(
            "{} AS offset_avg, {} AS rtt_avg",
            when("avg", "offset_avg", "replies > 0"),
            when("avg", "rtt_avg", "replies > 0")
        ),
        Kind::Ntp => format!("{} AS rt_avg", when("avg", "rtt_avg", "replies > 0")),
        Kind::Other if for_probes => "NULL AS rt_avg".to_owned(),
        Kind::Other => String::new(),
    }
}

/// The table (or subquery) a type's aggregates read, and its time column.
fn source(db: &str, kind: Kind, f: &Filter) -> (String, &'static str) {
    let table = |t: &str| format!("{db}.{t} WHERE {}", f.condition());
    match kind {
        Kind::Ping => (table("ping_results"), "toUInt32(timestamp)"),
        Kind::Trace => (format!("({})", last_hops(db, f)), "ts"),
        Kind::Dns => (table("dns_results"), "toUInt32(timestamp)"),
        Kind::Http => (table("http_results"), "toUInt32(timestamp)"),
        Kind::Sslcert => (table("sslcert_results"), "toUInt32(timestamp)"),
        Kind::Ntp => (table("ntp_results"), "toUInt32(timestamp)"),
        Kind::Other => (table("results"), "toUInt32(timestamp)"),
    }
}

/// The series: one row per bucket of `bucket` seconds (aligned to multiples of it),
/// `t` (its start), `n` and the type's fields.
pub fn series_sql(db: &str, kind: Kind, f: &Filter, bucket: u32) -> String {
    let (from, ts) = source(db, kind, f);
    let b = bucket.max(1);
    let aggs = aggregates(kind, false);
    let sep = if aggs.is_empty() { "" } else { ", " };
    format!(
        "SELECT intDiv({ts}, {b}) * {b} AS t, count() AS n{sep}{aggs} FROM {from} GROUP BY t ORDER BY t"
    )
}

/// The breakdown's query, for the types that have one.
pub fn breakdown_sql(db: &str, kind: Kind, f: &Filter) -> Option<String> {
    let c = f.condition();
    match kind {
        Kind::Dns => Some(format!(
            "SELECT rcode, count() AS n FROM {db}.dns_results WHERE {c} GROUP BY rcode ORDER BY n DESC, rcode LIMIT 100"
        )),
        Kind::Http => Some(format!(
            "SELECT status, count() AS n FROM {db}.http_results WHERE {c} GROUP BY status ORDER BY n DESC, status LIMIT 100"
        )),
        Kind::Sslcert => Some(format!(
            "SELECT countIf(valid_at_measurement = 1) AS valid, countIf(valid_at_measurement = 0) AS invalid \
             FROM {db}.sslcert_results WHERE {c}"
        )),
        _ => None,
    }
}

/// Per-probe rows: `prb_id`, `n`, `last` and the type's fields, by probe id.
pub fn probes_sql(db: &str, kind: Kind, f: &Filter, limit: u32) -> String {
    let (from, ts) = source(db, kind, f);
    format!(
        "SELECT prb_id, count() AS n, max({ts}) AS last, {} FROM {from} GROUP BY prb_id ORDER BY prb_id LIMIT {limit}",
        aggregates(kind, true)
    )
}

/// A ClickHouse JSON number as the API's: 64-bit integers arrive quoted (`"12"`) and
/// become numbers; NaN arrives as null and stays null; other text stays text.
pub fn number(v: &Value) -> Value {
    match v {
        Value::String(s) => s
            .parse::<u64>()
            .map(Value::from)
            .or_else(|_| s.parse::<i64>().map(Value::from))
            .unwrap_or_else(|_| v.clone()),
        other => other.clone(),
    }
}

/// `row`'s `fields`, in that order, as numbers.
pub fn pick(row: &Value, fields: &[&str]) -> Value {
    let mut out = Map::new();
    for f in fields {
        out.insert((*f).to_owned(), number(&row[*f]));
    }
    Value::Object(out)
}

/// The series rows as the API's buckets.
pub fn series_json(kind: Kind, rows: &[Value]) -> Vec<Value> {
    let mut fields = vec!["t", "n"];
    fields.extend_from_slice(kind.series_fields());
    rows.iter().map(|r| pick(r, &fields)).collect()
}

/// The breakdown rows as the API's object (`{}` for the types without one).
pub fn breakdown_json(kind: Kind, rows: &[Value]) -> Value {
    match kind {
        Kind::Dns => {
            json!({"rcodes": rows.iter().map(|r| json!({"rcode": r["rcode"], "n": number(&r["n"])})).collect::<Vec<_>>()})
        }
        Kind::Http => {
            json!({"status": rows.iter().map(|r| pick(r, &["status", "n"])).collect::<Vec<_>>()})
        }
        Kind::Sslcert => {
            let r = rows.first().cloned().unwrap_or_default();
            json!({"valid": number(&r["valid"]).as_u64().unwrap_or(0),
                   "invalid": number(&r["invalid"]).as_u64().unwrap_or(0)})
        }
        _ => json!({}),
    }
}

/// The per-probe rows as the API's.
pub fn probes_json(kind: Kind, rows: &[Value]) -> Vec<Value> {
    let mut fields = vec!["prb_id", "n", "last"];
    fields.extend_from_slice(kind.probe_fields());
    rows.iter().map(|r| pick(r, &fields)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_nice_steps() {
        assert_eq!(bucket_seconds(0, 0, 120), 1);
        assert_eq!(bucket_seconds(100, 50, 120), 1);
        assert_eq!(bucket_seconds(0, 120, 120), 1);
        assert_eq!(bucket_seconds(0, 121, 120), 2);
        assert_eq!(bucket_seconds(0, 3600, 120), 30);
        assert_eq!(bucket_seconds(0, 3601, 120), 60);
        assert_eq!(bucket_seconds(0, 86_400, 120), 900);
        assert_eq!(bucket_seconds(0, 86_400 * 365, 120), 86_400 * 4);
        assert_eq!(bucket_seconds(0, u32::MAX, 1), u32::MAX);
        assert_eq!(bucket_seconds(0, u32::MAX, 2), 24_856 * 86_400);
        assert_eq!(bucket_seconds(0, 1000, 0), 1800);
    }

    #[test]
    fn filters_make_the_condition() {
        let f = Filter {
            msm_id: 7,
            ..Filter::default()
        };
        assert_eq!(f.condition(), "msm_id = 7");
        let f = Filter {
            msm_id: 7,
            prb_id: Some(3),
            start: Some(10),
            stop: Some(20),
        };
        assert_eq!(
            f.condition(),
            "msm_id = 7 AND prb_id = 3 AND timestamp >= toDateTime(10) AND timestamp <= toDateTime(20)"
        );
    }

    #[test]
    fn ping_series_sql() {
        let f = Filter {
            msm_id: 9,
            ..Filter::default()
        };
        assert_eq!(
            series_sql("db", Kind::Ping, &f, 60),
            "SELECT intDiv(toUInt32(timestamp), 60) * 60 AS t, count() AS n, \
             if(countIf(rcvd > 0) = 0, NULL, minIf(rtt_min, rcvd > 0)) AS rtt_min, \
             if(countIf(rcvd > 0) = 0, NULL, avgIf(rtt_avg, rcvd > 0)) AS rtt_avg, \
             if(countIf(rcvd > 0) = 0, NULL, maxIf(rtt_max, rcvd > 0)) AS rtt_max, \
             avg(loss) / 100 AS loss FROM db.ping_results WHERE msm_id = 9 GROUP BY t ORDER BY t"
        );
        assert_eq!(
            series_sql("db", Kind::Other, &f, 0),
            "SELECT intDiv(toUInt32(timestamp), 1) * 1 AS t, count() AS n FROM db.results WHERE msm_id = 9 GROUP BY t ORDER BY t"
        );
    }

    #[test]
    fn every_type_reads_its_table() {
        let f = Filter {
            msm_id: 1,
            ..Filter::default()
        };
        for (k, table) in [
            ("traceroute", "traceroute_hops"),
            ("mtr", "traceroute_hops"),
            ("dns", "dns_results"),
            ("http", "http_results"),
            ("sslcert", "sslcert_results"),
            ("ntp", "ntp_results"),
        ] {
            let kind = Kind::of(k);
            let sql = series_sql("db", kind, &f, 5);
            assert!(sql.contains(&format!("db.{table} ")), "{sql}");
            for field in kind.series_fields() {
                assert!(
                    sql.contains(&format!(" AS {field}")),
                    "{k}: {field} in {sql}"
                );
            }
            let sql = probes_sql("db", kind, &f, 10);
            assert!(
                sql.ends_with("GROUP BY prb_id ORDER BY prb_id LIMIT 10"),
                "{sql}"
            );
            assert!(sql.contains(" AS rt_avg"), "{sql}");
        }
        assert!(breakdown_sql("db", Kind::Ping, &f).is_none());
        assert!(breakdown_sql("db", Kind::Dns, &f).is_some_and(|s| s.contains("GROUP BY rcode")));
    }

    #[test]
    fn rows_become_numbers() {
        let rows = vec![
            json!({"t": "60", "n": "3", "rtt_min": 1.5, "rtt_avg": null, "rtt_max": 2, "loss": 0.25, "x": 1}),
        ];
        assert_eq!(
            series_json(Kind::Ping, &rows),
            vec![
                json!({"t": 60, "n": 3, "rtt_min": 1.5, "rtt_avg": null, "rtt_max": 2, "loss": 0.25})
            ]
        );
        assert_eq!(
            breakdown_json(Kind::Sslcert, &[json!({"valid": "4", "invalid": "1"})]),
            json!({"valid": 4, "invalid": 1})
        );
        assert_eq!(
            breakdown_json(Kind::Dns, &[json!({"rcode": "NOERROR", "n": "2"})]),
            json!({"rcodes": [{"rcode": "NOERROR", "n": 2}]})
        );
        assert_eq!(breakdown_json(Kind::Ntp, &[]), json!({}));
        assert_eq!(number(&json!("-3")), json!(-3));
        assert_eq!(number(&json!("abc")), json!("abc"));
        assert_eq!(
            breakdown_json(Kind::Dns, &[json!({"rcode": "0", "n": "1"})]),
            json!({"rcodes": [{"rcode": "0", "n": 1}]})
        );
    }
}
