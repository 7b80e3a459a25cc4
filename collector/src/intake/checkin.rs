//! Telling probes what to measure, as OONI's probe services do:
//!
//! * `POST /api/v1/check-in` — the probe says where it is (`probe_cc`, `probe_asn`), what
//!   it runs and which categories it wants; it gets a report id for web_connectivity (a
//!   report opened here, as `POST /report` opens one) and the URLs to test.
//! * `GET /api/v1/test-list/urls` — the URLs for a country and categories, with a limit.
//!
//! URLs come from the test lists in force ([`crate::testlists`]), the country's list then
//! the global one, least recently measured in that country first ([`crate::recency`]).
//! How many a check-in gets follows OONI: a manual run the whole list (up to
//! [`MAX_LIMIT`]), a timed run [`CHARGING_LIMIT`] on a charging device and
//! [`TIMED_LIMIT`] on battery.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{json, Map, Value};

use super::http::{read_body, ApiError, AppState};
use crate::recency::Recency;
use crate::source::Watched;
use crate::testlists::{is_category, is_country, TestLists, UrlInfo, CATEGORY_CODES, UNKNOWN_CC};
use crate::uid::new_report_id;

/// URLs a timed run on battery gets (OONI: 20).
pub const TIMED_LIMIT: usize = 20;
/// URLs a timed run on a charging device gets (OONI: 100).
pub const CHARGING_LIMIT: usize = 100;
/// The most URLs one answer holds: a manual run, and `limit` of the test-list API
/// (OONI: 9999).
pub const MAX_LIMIT: usize = 9999;
/// The most category codes one request may name.
pub const MAX_CATEGORIES: usize = 64;
/// Longest `software_name`, `software_version`, `platform`, in characters.
pub const MAX_FIELD_CHARS: usize = 128;
/// What a check-in's `probe_asn` must look like: `AS` and a number from 0 to 2^32-1,
/// without leading zeros.
pub const ASN_PATTERN: &str = "^AS(0|[1-9][0-9]{0,8}|[1-3][0-9]{9}|4[01][0-9]{8}|42[0-8][0-9]{7}|429[0-3][0-9]{6}|4294[0-8][0-9]{5}|42949[0-5][0-9]{4}|429496[0-6][0-9]{3}|4294967[01][0-9]{2}|42949672[0-8][0-9]|429496729[0-5])$";

/// The check-in and test-list counters (`vantage_intake_check_ins` and so on).
#[derive(Clone, Default)]
pub struct CheckInMetrics {
    pub check_ins: Counter,
    pub test_list_requests: Counter,
    pub urls_offered: Counter,
    pub recency_pairs: Gauge,
}

impl CheckInMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register("check_ins", "Check-ins answered", self.check_ins.clone());
        r.register(
            "test_list_requests",
            "GET /api/v1/test-list/urls answered",
            self.test_list_requests.clone(),
        );
        r.register(
            "urls_offered",
            "Test-list URLs handed out by check-ins and the test-list API",
            self.urls_offered.clone(),
        );
        r.register(
            "recency_pairs",
            "(country, URL) pairs whose last measurement time is known",
            self.recency_pairs.clone(),
        );
    }
}

/// What the check-in and test-list routes read.
#[derive(Clone)]
pub struct CheckInState {
    pub lists: Watched<TestLists>,
    pub recency: Recency,
    /// `conf.test_helpers["web-connectivity"]`: OONI's web_connectivity control servers.
    pub test_helpers: Vec<String>,
    pub metrics: CheckInMetrics,
}

impl CheckInState {
    /// No test lists, no test helpers.
    pub fn empty() -> Self {
        Self {
            lists: Watched::new(TestLists::default()),
            recency: Recency::default(),
            test_helpers: Vec::new(),
            metrics: CheckInMetrics::default(),
        }
    }

    /// The URLs of `cc` in `categories`, least recently measured first, at most `limit`.
    pub fn urls(&self, cc: &str, categories: &BTreeSet<String>, limit: usize) -> Vec<UrlInfo> {
        let candidates = self.lists.get().candidates(cc, categories);
        let mut ordered = self.recency.order(cc, candidates, |u| u.url.as_str());
        ordered.truncate(limit);
        self.metrics.urls_offered.inc_by(ordered.len() as u64);
        self.metrics
            .recency_pairs
            .set(i64::try_from(self.recency.len()).unwrap_or(i64::MAX));
        ordered
    }
}

/// Check a `--test-helper` address: an `https://` URL with a host. Check-ins advertise it
/// with OONI's service type `https`, which OONI Probe reaches over TLS only.
pub fn parse_test_helper(s: &str) -> Result<String, String> {
    match url::Url::parse(s.trim()) {
        Ok(u) if u.scheme() == "https" && u.host_str().is_some_and(|h| !h.is_empty()) => {
            Ok(s.trim().to_owned())
        }
        _ => Err(format!(
            "{s:?} is not an https URL: give the address of a web_connectivity test helper (oohelperd) behind TLS, e.g. https://th.example.org"
        )),
    }
}

/// `timed` or `manual`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunType {
    Timed,
    Manual,
}

/// A check-in body, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckInRequest {
    pub probe_cc: String,
    pub probe_asn: u32,
    pub software_name: String,
    pub software_version: String,
    pub platform: String,
    pub run_type: RunType,
    pub charging: bool,
    pub on_wifi: bool,
    /// Empty: every category.
    pub categories: BTreeSet<String>,
}

impl CheckInRequest {
    /// How many URLs this probe gets (OONI's rule).
    pub fn url_limit(&self) -> usize {
        match (self.run_type, self.charging) {
            (RunType::Manual, _) => MAX_LIMIT,
            (RunType::Timed, true) => CHARGING_LIMIT,
            (RunType::Timed, false) => TIMED_LIMIT,
        }
    }
}

fn bad(kind: &'static str, message: String) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        kind,
        message,
    }
}

fn country_error(field: &str, cc: &str) -> ApiError {
    bad(
        "bad_country",
        format!(
            "{field} {cc:?} is not an ISO 3166-1 alpha-2 country code: send two uppercase letters such as \"IT\", or \"ZZ\" for an unknown location (global list only)"
        ),
    )
}

/// A country code as sent: an uppercase ISO code or ZZ.
fn check_country(field: &str, cc: &str) -> Result<String, ApiError> {
    if cc == UNKNOWN_CC || is_country(cc) {
        Ok(cc.to_owned())
    } else {
        Err(country_error(field, cc))
    }
}

/// `AS<number>` (no leading zeros, at most 2^32-1) as a number.
pub fn parse_probe_asn(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("AS")?;
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// Category codes: known, at most [`MAX_CATEGORIES`], duplicates merged.
fn check_categories<'a>(
    field: &str,
    codes: impl ExactSizeIterator<Item = &'a str>,
) -> Result<BTreeSet<String>, ApiError> {
    if codes.len() > MAX_CATEGORIES {
        return Err(bad(
            "too_many_categories",
            format!(
                "{field} has {} entries; at most {MAX_CATEGORIES}: name fewer categories, or none for all",
                codes.len()
            ),
        ));
    }
    let mut out = BTreeSet::new();
    for c in codes {
        if !is_category(c) {
            return Err(bad(
                "bad_category",
                format!(
                    "unknown category code {c:?} in {field}: use Citizen Lab's codes ({})",
                    CATEGORY_CODES
                        .iter()
                        .map(|(c, _)| *c)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        out.insert(c.to_owned());
    }
    Ok(out)
}

/// Read a check-in body (decoded). Pure, so that it can be tested and fuzzed alone.
pub fn parse_check_in(bytes: &[u8]) -> Result<CheckInRequest, ApiError> {
    let body: Value = serde_json::from_slice(bytes)
        .map_err(|e| bad("malformed_json", format!("body is not JSON: {e}")))?;
    let Some(obj) = body.as_object() else {
        return Err(bad("not_object", "body must be a JSON object".into()));
    };
    let present = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let required = |k: &'static str, hint: &str| -> Result<String, ApiError> {
        match present(k) {
            None => Err(bad("missing_field", format!("missing field {k}: {hint}"))),
            Some(Value::String(s)) if s.is_empty() => {
                Err(bad("missing_field", format!("empty field {k}: {hint}")))
            }
            Some(Value::String(s)) if s.chars().count() > MAX_FIELD_CHARS => Err(bad(
                "bad_field",
                format!("{k} is longer than {MAX_FIELD_CHARS} characters"),
            )),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(bad("bad_field", format!("{k} must be a string: {hint}"))),
        }
    };
    let cc = required(
        "probe_cc",
        "send the probe's country code, e.g. \"IT\" (\"ZZ\" when unknown)",
    )?;
    let probe_cc = check_country("probe_cc", &cc)?;
    let asn = required(
        "probe_asn",
        "send the probe's network, e.g. \"AS64500\" (\"AS0\" when unknown)",
    )?;
    let probe_asn = parse_probe_asn(&asn).ok_or_else(|| {
        bad(
            "bad_asn",
            format!("probe_asn {asn:?} is malformed: send \"AS\" and the number, e.g. \"AS64500\" (\"AS0\" when unknown)"),
        )
    })?;
    let software_name = required(
        "software_name",
        "send the probe software's name, e.g. \"ooniprobe-cli\"",
    )?;
    let software_version = required(
        "software_version",
        "send the probe software's version, e.g. \"3.22.0\"",
    )?;
    let platform = match present("platform") {
        None => String::new(),
        Some(Value::String(s)) if s.chars().count() <= MAX_FIELD_CHARS => s.clone(),
        Some(Value::String(_)) => {
            return Err(bad(
                "bad_field",
                format!("platform is longer than {MAX_FIELD_CHARS} characters"),
            ))
        }
        Some(_) => {
            return Err(bad(
                "bad_field",
                "platform must be a string, e.g. \"linux\"".into(),
            ))
        }
    };
    let run_type = match present("run_type") {
        None => RunType::Timed,
        Some(Value::String(s)) if s == "timed" => RunType::Timed,
        Some(Value::String(s)) if s == "manual" => RunType::Manual,
        Some(other) => {
            return Err(bad(
                "bad_run_type",
                format!("run_type {other} is neither \"timed\" nor \"manual\""),
            ))
        }
    };
    let flag = |k: &str| -> Result<bool, ApiError> {
        match present(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(bad("bad_field", format!("{k} must be true or false"))),
        }
    };
    let charging = flag("charging")?;
    let on_wifi = flag("on_wifi")?;
    let categories = match present("web_connectivity") {
        None => BTreeSet::new(),
        Some(Value::Object(wc)) => match wc.get("category_codes").filter(|v| !v.is_null()) {
            None => BTreeSet::new(),
            Some(Value::Array(items)) => {
                let mut codes = Vec::with_capacity(items.len().min(MAX_CATEGORIES + 1));
                for item in items {
                    match item.as_str() {
                        Some(s) => codes.push(s),
                        None => {
                            return Err(bad(
                                "bad_category",
                                "web_connectivity.category_codes must be an array of strings such as \"NEWS\"".into(),
                            ))
                        }
                    }
                }
                check_categories("web_connectivity.category_codes", codes.into_iter())?
            }
            Some(_) => {
                return Err(bad(
                    "bad_category",
                    "web_connectivity.category_codes must be an array of strings such as [\"NEWS\", \"HUMR\"]".into(),
                ))
            }
        },
        Some(_) => {
            return Err(bad(
                "bad_field",
                "web_connectivity must be an object: {\"category_codes\": [...]}".into(),
            ))
        }
    };
    Ok(CheckInRequest {
        probe_cc,
        probe_asn,
        software_name,
        software_version,
        platform,
        run_type,
        charging,
        on_wifi,
        categories,
    })
}

/// A test-list query, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestListQuery {
    /// `ZZ` when none was given: the global list only.
    pub country_code: String,
    pub categories: BTreeSet<String>,
    pub limit: usize,
}

/// Read `GET /api/v1/test-list/urls` parameters: `country_code` (or `probe_cc`, as
/// OONI accepts), `category_codes` (comma separated), `limit` (1 to [`MAX_LIMIT`], by
/// default [`MAX_LIMIT`]). Other parameters are ignored.
pub fn parse_test_list_query(params: &[(String, String)]) -> Result<TestListQuery, ApiError> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let country_code = match get("country_code").or_else(|| get("probe_cc")) {
        None => UNKNOWN_CC.to_owned(),
        Some(cc) => check_country("country_code", cc)?,
    };
    let categories = match get("category_codes") {
        None | Some("") => BTreeSet::new(),
        Some(list) => {
            let codes: Vec<&str> = list.split(',').collect();
            check_categories("category_codes", codes.into_iter())?
        }
    };
    let limit = match get("limit") {
        None => MAX_LIMIT,
        Some(s) => s
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse::<usize>().ok())
            .flatten()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                bad(
                    "bad_limit",
                    format!(
                        "limit {s:?} is out of range: give a whole number from 1 to {MAX_LIMIT}"
                    ),
                )
            })?,
    };
    Ok(TestListQuery {
        country_code,
        categories,
        limit,
    })
}

pub(super) async fn check_in(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match check_in_inner(&st, &headers, body).await {
        Ok(r) => r,
        Err(e) => st.reject(e),
    }
}

async fn check_in_inner(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(headers, body, st.0.limits).await?;
    let req = parse_check_in(&bytes)?;
    let ci = &st.0.checkin;
    let urls = ci.urls(&req.probe_cc, &req.categories, req.url_limit());
    // The web_connectivity report, opened as `POST /report` opens one.
    let now = chrono::Utc::now();
    let report_id = new_report_id(now, "web_connectivity", &req.probe_cc, req.probe_asn);
    let asn = format!("AS{}", req.probe_asn);
    let meta: Map<String, Value> = [
        ("data_format_version", json!("0.2.0")),
        ("format", json!("json")),
        ("probe_asn", json!(asn)),
        ("probe_cc", json!(req.probe_cc)),
        ("software_name", json!(req.software_name)),
        ("software_version", json!(req.software_version)),
        ("test_name", json!("web_connectivity")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let meta = serde_json::to_vec(&meta).map_err(super::http::internal)?;
    st.0.queue
        .put_report(&report_id, &meta)
        .await
        .map_err(super::http::internal)?;
    st.0.metrics.reports_opened.inc();
    ci.metrics.check_ins.inc();
    let mut test_helpers = Map::new();
    if !ci.test_helpers.is_empty() {
        test_helpers.insert(
            "web-connectivity".into(),
            ci.test_helpers
                .iter()
                .map(|a| json!({"address": a, "type": "https"}))
                .collect(),
        );
    }
    tracing::debug!(probe_cc = %req.probe_cc, probe_asn = req.probe_asn, platform = %req.platform, on_wifi = req.on_wifi, urls = urls.len(), %report_id, "check-in");
    Ok(Json(json!({
        "v": 1,
        "probe_cc": req.probe_cc,
        "probe_asn": asn,
        "utc_time": now.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "conf": {"features": {}, "test_helpers": test_helpers},
        "tests": {"web_connectivity": {"report_id": report_id, "urls": urls}},
    }))
    .into_response())
}

pub(super) async fn test_list_urls(
    State(st): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let params = match query {
        Ok(Query(p)) => p,
        Err(e) => {
            return st.reject(bad(
                "bad_query",
                format!("the query string cannot be read: {e}"),
            ))
        }
    };
    let q = match parse_test_list_query(&params) {
        Ok(q) => q,
        Err(e) => return st.reject(e),
    };
    let ci = &st.0.checkin;
    let results = ci.urls(&q.country_code, &q.categories, q.limit);
    ci.metrics.test_list_requests.inc();
    Json(json!({
        "metadata": {"count": results.len(), "current_page": 1, "limit": q.limit, "next_url": "", "pages": 1},
        "results": results,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).expect("json")
    }

    fn ooni_probe() -> Value {
        json!({"charging": true, "on_wifi": true, "platform": "linux", "probe_asn": "AS64500",
               "probe_cc": "IT", "run_type": "timed", "software_name": "ooniprobe-cli",
               "software_version": "3.22.0", "web_connectivity": {"category_codes": ["NEWS", "HUMR", "NEWS"]}})
    }

    fn refused(v: Value) -> ApiError {
        parse_check_in(&body(v)).expect_err("refused")
    }

    #[test]
    fn what_ooni_probe_sends_is_read() {
        let r = parse_check_in(&body(ooni_probe())).expect("ok");
        assert_eq!(r.probe_cc, "IT");
        assert_eq!(r.probe_asn, 64500);
        assert_eq!(r.run_type, RunType::Timed);
        assert!(r.charging && r.on_wifi);
        assert_eq!(r.categories.iter().collect::<Vec<_>>(), ["HUMR", "NEWS"]);
        assert_eq!(r.url_limit(), CHARGING_LIMIT);
        // Go's nil slice is null; a battery timed run; unknown location.
        let mut v = ooni_probe();
        v["web_connectivity"]["category_codes"] = Value::Null;
        v["charging"] = json!(false);
        v["probe_cc"] = json!("ZZ");
        v["probe_asn"] = json!("AS0");
        let r = parse_check_in(&body(v)).expect("ok");
        assert!(r.categories.is_empty());
        assert_eq!(r.url_limit(), TIMED_LIMIT);
        assert_eq!((r.probe_cc.as_str(), r.probe_asn), ("ZZ", 0));
        let mut v = ooni_probe();
        v["run_type"] = json!("manual");
        assert_eq!(parse_check_in(&body(v)).expect("ok").url_limit(), MAX_LIMIT);
        let r = parse_check_in(&body(json!({"probe_cc": "XK", "probe_asn": "AS4294967295", "software_name": "x", "software_version": "1"}))).expect("minimal");
        assert_eq!(
            (r.probe_asn, r.run_type, r.charging),
            (u32::MAX, RunType::Timed, false)
        );
    }

    #[test]
    fn unknown_country_is_refused() {
        for cc in ["QQ", "it", "ITA", "", "1T"] {
            let mut v = ooni_probe();
            v["probe_cc"] = json!(cc);
            let e = refused(v);
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            let expected = if cc.is_empty() {
                "missing_field"
            } else {
                "bad_country"
            };
            assert_eq!(e.kind, expected, "{cc}: {}", e.message);
        }
        let mut v = ooni_probe();
        v["probe_cc"] = json!("QQ");
        assert!(refused(v)
            .message
            .contains("\"ZZ\" for an unknown location"));
    }

    #[test]
    fn missing_fields_are_named() {
        for field in ["probe_cc", "probe_asn", "software_name", "software_version"] {
            let mut v = ooni_probe();
            v.as_object_mut().expect("object").remove(field);
            let e = refused(v);
            assert_eq!(
                (e.status, e.kind),
                (StatusCode::BAD_REQUEST, "missing_field")
            );
            assert!(e.message.contains(field), "{}", e.message);
        }
        assert_eq!(
            parse_check_in(b"[1]").expect_err("array").kind,
            "not_object"
        );
        assert_eq!(
            parse_check_in(b"{").expect_err("junk").kind,
            "malformed_json"
        );
    }

    #[test]
    fn malformed_asn_is_refused() {
        for asn in [
            "64500",
            "AS",
            "as64500",
            "AS064500",
            "AS4294967296",
            "AS-1",
            "AS 1",
            "AS1.0",
        ] {
            let mut v = ooni_probe();
            v["probe_asn"] = json!(asn);
            let e = refused(v);
            assert_eq!(e.kind, "bad_asn", "{asn}");
            assert!(e.message.contains("AS64500"), "{}", e.message);
        }
        let mut v = ooni_probe();
        v["probe_asn"] = json!(64500);
        assert_eq!(refused(v).kind, "bad_field");
    }

    #[test]
    fn asn_boundaries() {
        // The same boundaries as ASN_PATTERN (schemathesis checks the pattern e2e).
        for (s, n) in [
            ("AS0", 0),
            ("AS1", 1),
            ("AS999999999", 999_999_999),
            ("AS1000000000", 1_000_000_000),
            ("AS4294967295", u32::MAX),
        ] {
            assert_eq!(parse_probe_asn(s), Some(n), "{s}");
        }
        for s in ["AS4294967296", "AS9999999999", "AS00", "AS01", "AS", "AS+1"] {
            assert_eq!(parse_probe_asn(s), None, "{s}");
        }
    }

    #[test]
    fn categories_are_capped_and_checked() {
        let mut v = ooni_probe();
        v["web_connectivity"]["category_codes"] = json!(vec!["NEWS"; MAX_CATEGORIES + 1]);
        let e = refused(v);
        assert_eq!(e.kind, "too_many_categories");
        assert!(e.message.contains("at most 64"), "{}", e.message);
        let mut v = ooni_probe();
        v["web_connectivity"]["category_codes"] = json!(vec!["NEWS"; MAX_CATEGORIES]);
        assert!(parse_check_in(&body(v)).is_ok());
        let mut v = ooni_probe();
        v["web_connectivity"]["category_codes"] = json!(["NEWS", "FOO"]);
        let e = refused(v);
        assert_eq!(e.kind, "bad_category");
        assert!(
            e.message.contains("\"FOO\"") && e.message.contains("HUMR"),
            "{}",
            e.message
        );
        let mut v = ooni_probe();
        v["web_connectivity"]["category_codes"] = json!("NEWS");
        assert_eq!(refused(v).kind, "bad_category");
    }

    #[test]
    fn wrong_types_and_run_types_are_refused() {
        for (k, val, kind) in [
            ("charging", json!("yes"), "bad_field"),
            ("on_wifi", json!(1), "bad_field"),
            ("run_type", json!("sometimes"), "bad_run_type"),
            ("platform", json!(7), "bad_field"),
            ("web_connectivity", json!([]), "bad_field"),
            (
                "software_name",
                json!("x".repeat(MAX_FIELD_CHARS + 1)),
                "bad_field",
            ),
        ] {
            let mut v = ooni_probe();
            v[k] = val;
            assert_eq!(refused(v).kind, kind, "{k}");
        }
    }

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn test_list_query() {
        let t = parse_test_list_query(&q(&[
            ("country_code", "IT"),
            ("category_codes", "NEWS,HUMR"),
            ("limit", "5"),
        ]))
        .expect("ok");
        assert_eq!(t.country_code, "IT");
        assert_eq!(t.categories.len(), 2);
        assert_eq!(t.limit, 5);
        let t = parse_test_list_query(&q(&[])).expect("defaults");
        assert_eq!((t.country_code.as_str(), t.limit), ("ZZ", MAX_LIMIT));
        assert!(t.categories.is_empty());
        assert_eq!(
            parse_test_list_query(&q(&[("probe_cc", "FR")]))
                .expect("alias")
                .country_code,
            "FR"
        );
        for (pairs, kind) in [
            (q(&[("country_code", "QQ")]), "bad_country"),
            (q(&[("country_code", "")]), "bad_country"),
            (q(&[("category_codes", "NEWS,news")]), "bad_category"),
            (q(&[("category_codes", "NEWS,")]), "bad_category"),
            (q(&[("limit", "0")]), "bad_limit"),
            (q(&[("limit", "10000")]), "bad_limit"),
            (q(&[("limit", "-1")]), "bad_limit"),
            (q(&[("limit", "+5")]), "bad_limit"),
            (q(&[("limit", "ten")]), "bad_limit"),
        ] {
            let e = parse_test_list_query(&pairs).expect_err("refused");
            assert_eq!(
                (e.status, e.kind),
                (StatusCode::BAD_REQUEST, kind),
                "{pairs:?}: {}",
                e.message
            );
        }
        let many = vec!["NEWS"; MAX_CATEGORIES + 1].join(",");
        assert_eq!(
            parse_test_list_query(&q(&[("category_codes", &many)]))
                .expect_err("many")
                .kind,
            "too_many_categories"
        );
    }

    #[test]
    fn test_helper_addresses() {
        assert_eq!(
            parse_test_helper("https://th.example.org").as_deref(),
            Ok("https://th.example.org")
        );
        assert!(parse_test_helper("th.example.org").is_err());
        assert!(parse_test_helper("ftp://th.example.org").is_err());
        // Advertised as type "https": a plain-http helper would never be reached.
        assert!(parse_test_helper("http://th.example.org").is_err());
    }
}
