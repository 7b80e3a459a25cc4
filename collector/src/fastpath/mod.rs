//! The fastpath: scores each submitted measurement into one `fastpath` row, by the
//! per-test rules of OONI's fastpath (ooni/backend `fastpath/core.py`), re-implemented
//! here (docs/FASTPATH.md, "Scoring").
//!
//! Scoring is a pure function of (measurement, fingerprints): nothing is learnt from
//! earlier measurements, so the live intake, any number of replicas, a restart and
//! `reprocess` all give the same row. [`SCORING_VERSION`] names the rules on every row.
//!
//! * [`fields`] — reading measurements as OONI's Python does.
//! * [`web_connectivity`], [`im`], [`tor`], [`middlebox`], [`other`] — one pure function
//!   per test, giving OONI's scores dict ([`Scores`]).

pub mod fields;
pub mod im;
pub mod middlebox;
pub mod other;
pub mod tor;
pub mod web_connectivity;

use serde_json::{json, Map, Value};
use vantage_platform::store::FastpathRow;

use fields::str_of;
pub use fields::{domain_of, parse_asn, parse_time};

use crate::fingerprints::Fingerprints;
use crate::uid::parse_uid;

/// The version of the scoring rules, stored in every row's `scores.scoring_version`.
/// Bump it whenever a rule changes the scores of some measurement.
pub const SCORING_VERSION: &str = "vantage-fastpath-2";

/// Tests OONI Probe runs that OONI's fastpath does not score: like any test it does not
/// know, OONI gives them accuracy 0 (a failure), and so does vantage, with the reason
/// `unscored_test` (they are not counted as unknown).
pub const UNSCORED_OONI_TESTS: &[&str] = &[
    "dnscheck",
    "urlgetter",
    "echcheck",
    "portfiltering",
    "http_host_header",
    "sni_blocking",
    "dnsping",
    "tcpping",
    "tlsping",
    "quicping",
    "simplequicping",
    "tlsmiddlebox",
    "tlstool",
];

/// A scores dict under construction: OONI's keys (`blocking_*`, `accuracy`, `confirmed`,
/// `analysis`, `fingerprints`, `msg`, `extra`, test-specific keys) and the reasons (which
/// rule fired), in rule order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scores {
    pub map: Map<String, Value>,
    pub reasons: Vec<String>,
}

impl Scores {
    /// All five `blocking_*` at 0.0 (OONI's `init_scores`).
    pub fn init() -> Self {
        let mut map = Map::new();
        for loc in ["general", "global", "country", "isp", "local"] {
            map.insert(format!("blocking_{loc}"), json!(0.0));
        }
        Self {
            map,
            reasons: Vec::new(),
        }
    }

    /// `{}`: tests OONI stores without any score (ndt, riseupvpn).
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn num(&self, key: &str) -> Option<f64> {
        self.map.get(key).and_then(Value::as_f64)
    }

    pub fn general(&self) -> f64 {
        self.num("blocking_general").unwrap_or(0.0)
    }

    pub fn set(&mut self, key: &str, v: Value) {
        self.map.insert(key.to_owned(), v);
    }

    /// Set `blocking_general` and say why.
    pub fn block(&mut self, value: f64, reason: impl Into<String>) {
        self.set("blocking_general", json!(value));
        self.reasons.push(reason.into());
    }

    /// Set `accuracy` to 0 (a failure) and say why.
    pub fn fail(&mut self, reason: impl Into<String>) {
        self.set("accuracy", json!(0.0));
        self.reasons.push(reason.into());
    }

    pub fn reason(&mut self, reason: impl Into<String>) {
        self.reasons.push(reason.into());
    }

    /// Scores OONI would set, with a reason.
    fn failed(reason: impl Into<String>) -> Self {
        let mut s = Self::init();
        s.fail(reason);
        s
    }
}

/// What a scoring function returns: `Err` where OONI's code raises on the measurement
/// (OONI then stores nothing; vantage stores it as a failure, reason `malformed:...`).
pub type Scored = Result<Scores, String>;

/// The verdict on one measurement, before it becomes a row.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Verdict {
    /// `blocking_general > 0.5`.
    pub anomaly: bool,
    /// `scores.confirmed` (a fingerprint that confirms blocking matched).
    pub confirmed: bool,
    /// `accuracy < 0.5`.
    pub failure: bool,
    /// `scores.analysis.blocking_type`.
    pub blocking_type: String,
    /// Every rule that fired, in rule order (the row's `reason` is the first).
    pub reasons: Vec<String>,
    pub domain: String,
    /// The test name is neither scored by OONI's fastpath nor a known OONI Probe test
    /// (reason `unsupported_test`): stored as a failure, to be counted.
    pub unknown_test: bool,
    /// The scores JSON stored in the row.
    pub scores: Value,
}

/// Which rules a test name gets.
fn dispatch(test_name: &str, msm: &Value, fp: &Fingerprints) -> (Scored, bool) {
    let scored = match test_name {
        "web_connectivity" => web_connectivity::score(msm, fp),
        "http_requests" => web_connectivity::score_http_requests(msm, fp),
        "dns_consistency" => Ok(Scores::init()),
        "telegram" => im::telegram(msm),
        "whatsapp" => im::whatsapp(msm),
        "facebook_messenger" => im::facebook_messenger(msm),
        "signal" => im::signal(msm),
        "vanilla_tor" => tor::vanilla_tor(msm),
        "tor" => tor::tor(msm),
        "torsf" => tor::torsf(msm),
        "psiphon" => tor::psiphon(msm),
        "meek_fronted_requests_test" => tor::meek(msm),
        "http_header_field_manipulation" => middlebox::hhfm(msm),
        "http_invalid_request_line" => middlebox::hirl(msm),
        "ndt" => Ok(Scores::empty()),
        "riseupvpn" => Ok(Scores::empty()),
        "tcp_connect" => other::tcp_connect(msm),
        "dash" => other::dash(msm),
        "stunreachability" => other::stunreachability(msm),
        "openvpn" => other::openvpn(msm),
        "browser_web" => other::browser_web(msm),
        t if UNSCORED_OONI_TESTS.contains(&t) => Ok(Scores::failed("unscored_test")),
        _ => return (Ok(Scores::failed("unsupported_test")), true),
    };
    (scored, false)
}

/// OONI's `flag_measurements_with_wrong_date`: a start time more than an hour after
/// the receive time (in the uid), or more than a year before it, is a failure.
fn flag_wrong_date(msm: &Value, uid: &str, s: &mut Scores) {
    if !uid.starts_with("20") || uid.len() < 20 {
        return;
    }
    let (Some(recv), Some(start)) = (
        fields::uid_time(uid),
        msm.get("measurement_start_time")
            .and_then(Value::as_str)
            .and_then(fields::ooni_time),
    ) else {
        return;
    };
    let delta = (recv - start).num_microseconds().unwrap_or(0) as f64 / 1e6;
    if delta < -3600.0 {
        s.set("accuracy", json!(0.0));
        s.set("msg", json!("Measurement start time from the future"));
        s.reason("failure:start_time_in_the_future");
    } else if delta > 31_536_000.0 {
        s.set("accuracy", json!(0.0));
        s.set("msg", json!("Measurement start time too old"));
        s.reason("failure:start_time_too_old");
    }
}

/// Apply OONI's per-test rules to a measurement.
pub fn judge(msm: &Value, fp: &Fingerprints) -> Verdict {
    let test_name = str_of(msm, "test_name");
    let (scored, unknown_test) = dispatch(&test_name, msm, fp);
    let mut s = scored.unwrap_or_else(|why| Scores::failed(format!("malformed:{why}")));
    flag_wrong_date(msm, &str_of(msm, "measurement_uid"), &mut s);
    let anomaly = s.general() > 0.5;
    let failure = s.num("accuracy").unwrap_or(1.0) < 0.5;
    let confirmed = s.map.get("confirmed") == Some(&Value::Bool(true));
    let blocking_type = s
        .map
        .get("analysis")
        .and_then(|a| fields::get(a, "blocking_type"))
        .map(|b| b.as_str().map_or_else(|| b.to_string(), str::to_owned))
        .unwrap_or_default();
    let mut scores = s.map;
    scores.insert("confirmed".into(), json!(confirmed));
    scores.insert("fingerprints_version".into(), json!(fp.version));
    scores.insert("scoring_version".into(), json!(SCORING_VERSION));
    scores.insert("reasons".into(), json!(s.reasons));
    Verdict {
        anomaly,
        confirmed,
        failure,
        blocking_type,
        reasons: s.reasons,
        domain: domain(msm),
        unknown_test,
        scores: Value::Object(scores),
    }
}

/// The row's domain: the input's host (the first input when it is a list), else the
/// first DNS query's hostname.
fn domain(msm: &Value) -> String {
    let input = match msm.get("input") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.first().and_then(Value::as_str).unwrap_or("").to_owned(),
        _ => String::new(),
    };
    if !input.is_empty() {
        return domain_of(&input);
    }
    msm.get("test_keys")
        .map(|tk| fields::array(tk, "queries"))
        .and_then(|q| q.first())
        .map(|q| str_of(q, "hostname").to_ascii_lowercase())
        .unwrap_or_default()
}

/// Score one measurement (a queued/archived line) into its fastpath row.
pub fn score(msm: &Value, fp: &Fingerprints) -> (FastpathRow, Verdict) {
    let v = judge(msm, fp);
    let uid = str_of(msm, "measurement_uid");
    let received = parse_uid(&uid)
        .and_then(|p| u32::try_from(p.micros / 1_000_000).ok())
        .unwrap_or(0);
    let start = parse_time(msm.get("measurement_start_time")).unwrap_or(received);
    let row = FastpathRow {
        measurement_uid: uid,
        report_id: str_of(msm, "report_id"),
        input: str_of(msm, "input"),
        probe_cc: str_of(msm, "probe_cc"),
        probe_asn: parse_asn(msm.get("probe_asn")),
        test_name: str_of(msm, "test_name"),
        test_start_time: parse_time(msm.get("test_start_time")).unwrap_or(start),
        measurement_start_time: start,
        scores: v.scores.to_string(),
        anomaly: u8::from(v.anomaly),
        confirmed: u8::from(v.confirmed),
        msm_failure: u8::from(v.failure),
        domain: v.domain.clone(),
        software_name: str_of(msm, "software_name"),
        software_version: str_of(msm, "software_version"),
        blocking_type: v.blocking_type.clone(),
        reason: v.reasons.first().cloned().unwrap_or_default(),
    };
    (row, v)
}

/// The fastpath as its callers hold it. Stateless: kept so that the worker and
/// `reprocess` read the same way; [`Scorer::unknown_tests`] counts rows whose test name
/// was unknown (for a metric).
#[derive(Clone, Debug, Default)]
pub struct Scorer {
    pub unknown_tests: u64,
}

impl Scorer {
    /// Score the next measurement.
    pub fn next(&mut self, msm: &Value, fp: &Fingerprints) -> FastpathRow {
        let (row, v) = score(msm, fp);
        self.unknown_tests += u64::from(v.unknown_test);
        row
    }
}

#[cfg(test)]
mod tests;
