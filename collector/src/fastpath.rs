//! The fastpath: scores each submitted measurement into one `fastpath` row.
//!
//! Scoring is a pure function of the measurement (as queued and archived), the
//! fingerprints, and the DNS consensus built from the measurements scored before it, in
//! uid order. The live intake scores in uid order and `reprocess` replays the archive in
//! uid order, so both produce the same rows. The rules are in docs/FASTPATH.md.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};
use vantage_platform::store::FastpathRow;

use crate::fingerprints::Fingerprints;
use crate::uid::parse_uid;

/// Other ASNs that must have resolved a domain before the consensus says anything.
pub const CONSENSUS_MIN_ASNS: usize = 2;
/// Bounds on the consensus memory (entries past them are not recorded).
const MAX_DOMAINS: usize = 100_000;
const MAX_ASNS_PER_DOMAIN: usize = 256;
const MAX_ADDRS_PER_ASN: usize = 32;

/// DNS answers seen per domain and probe ASN.
#[derive(Clone, Debug, Default)]
pub struct DnsConsensus {
    by_domain: HashMap<String, BTreeMap<u32, BTreeSet<String>>>,
}

impl DnsConsensus {
    /// Addresses that at least [`CONSENSUS_MIN_ASNS`] ASNs other than `asn` got for
    /// `domain`; `None` when too few other ASNs resolved it or they agree on nothing.
    pub fn consensus(&self, domain: &str, asn: u32) -> Option<BTreeSet<String>> {
        let per_asn = self.by_domain.get(domain)?;
        let others: Vec<&BTreeSet<String>> = per_asn
            .iter()
            .filter(|(a, _)| **a != asn)
            .map(|(_, s)| s)
            .collect();
        if others.len() < CONSENSUS_MIN_ASNS {
            return None;
        }
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for set in &others {
            for a in set.iter() {
                *count.entry(a.as_str()).or_default() += 1;
            }
        }
        let agreed: BTreeSet<String> = count
            .into_iter()
            .filter(|(_, n)| *n >= CONSENSUS_MIN_ASNS)
            .map(|(a, _)| a.to_owned())
            .collect();
        (!agreed.is_empty()).then_some(agreed)
    }

    /// Record the answers of a measurement that looked clean.
    pub fn observe(&mut self, domain: &str, asn: u32, answers: &BTreeSet<String>) {
        if domain.is_empty() || answers.is_empty() {
            return;
        }
        if !self.by_domain.contains_key(domain) && self.by_domain.len() >= MAX_DOMAINS {
            return;
        }
        let per_asn = self.by_domain.entry(domain.to_owned()).or_default();
        if !per_asn.contains_key(&asn) && per_asn.len() >= MAX_ASNS_PER_DOMAIN {
            return;
        }
        let set = per_asn.entry(asn).or_default();
        for a in answers {
            if set.len() >= MAX_ADDRS_PER_ASN {
                break;
            }
            set.insert(a.clone());
        }
    }
}

fn str_of(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `"AS64500"`, `"64500"` or `64500` → 64500; anything else → 0.
pub fn parse_asn(v: Option<&Value>) -> u32 {
    match v {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
        Some(Value::String(s)) => s
            .trim()
            .trim_start_matches("AS")
            .trim_start_matches("as")
            .parse()
            .unwrap_or(0),
        _ => 0,
    }
}

/// OONI times (`2026-11-21 22:31:05`, or RFC 3339) → Unix seconds.
pub fn parse_time(v: Option<&Value>) -> Option<u32> {
    let s = v?.as_str()?;
    let secs = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .map(|t| t.and_utc().timestamp())
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp()))
        .ok()?;
    u32::try_from(secs).ok()
}

/// The host of a URL-ish input (`https://example.org:443/x` → `example.org`).
pub fn domain_of(input: &str) -> String {
    let rest = input.split_once("://").map_or(input, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Headers as OONI writes them: an object (name → value or [values]) or a list of pairs.
fn headers_of(response: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(list) = response.get("headers_list").and_then(Value::as_array) {
        for pair in list {
            if let (Some(n), Some(v)) = (
                pair.get(0).and_then(Value::as_str),
                pair.get(1).and_then(Value::as_str),
            ) {
                out.push((n.to_owned(), v.to_owned()));
            }
        }
    } else if let Some(map) = response.get("headers").and_then(Value::as_object) {
        for (n, v) in map {
            match v {
                Value::String(s) => out.push((n.clone(), s.clone())),
                Value::Array(vs) => out.extend(
                    vs.iter()
                        .filter_map(Value::as_str)
                        .map(|s| (n.clone(), s.to_owned())),
                ),
                _ => {}
            }
        }
    }
    out
}

/// What the DNS part of a measurement says.
#[derive(Debug, Default)]
struct DnsView {
    hostname: String,
    answers: BTreeSet<String>,
    failure: Option<String>,
    control: BTreeSet<String>,
}

fn dns_view(tk: &Value) -> DnsView {
    let mut view = DnsView::default();
    for q in tk
        .get("queries")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if view.hostname.is_empty() {
            view.hostname = str_of(q, "hostname").to_ascii_lowercase();
        }
        if let Some(f) = q.get("failure").and_then(Value::as_str) {
            view.failure.get_or_insert_with(|| f.to_owned());
        }
        for a in q
            .get("answers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for k in ["ipv4", "ipv6"] {
                if let Some(ip) = a.get(k).and_then(Value::as_str) {
                    view.answers.insert(ip.to_owned());
                }
            }
        }
    }
    let control = tk
        .get("control")
        .and_then(|c| c.get("dns"))
        .and_then(|d| d.get("addrs"))
        .and_then(Value::as_array);
    for a in control.into_iter().flatten().filter_map(Value::as_str) {
        view.control.insert(a.to_owned());
    }
    view
}

/// The verdict on one measurement, before it becomes a row.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Verdict {
    pub anomaly: bool,
    pub confirmed: bool,
    pub failure: bool,
    pub blocking_type: String,
    /// Every rule that fired, in rule order (`reason` is the first).
    pub reasons: Vec<String>,
    /// DNS answers and domain, for the consensus.
    pub domain: String,
    pub answers: BTreeSet<String>,
}

/// Apply the rules of docs/FASTPATH.md to a measurement.
pub fn judge(msm: &Value, fp: &Fingerprints, consensus: &DnsConsensus) -> Verdict {
    let mut v = Verdict::default();
    let input = str_of(msm, "input");
    let asn = parse_asn(msm.get("probe_asn"));
    let Some(tk) = msm.get("test_keys").filter(|t| t.is_object()) else {
        v.failure = true;
        v.reasons.push("failure:no_test_keys".into());
        v.domain = domain_of(&input);
        return v;
    };

    // 1. HTTP blockpages (confirmed).
    for req in tk
        .get("requests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(resp) = req.get("response") else {
            continue;
        };
        let body = resp.get("body").and_then(Value::as_str);
        if let Some(f) = fp.match_http(body, &headers_of(resp)) {
            v.confirmed = true;
            v.anomaly = true;
            v.blocking_type = "http-blockpage".into();
            v.reasons.push(format!("blockpage:{}", f.name));
            break;
        }
    }

    // 2. DNS: sinkhole fingerprints (confirmed), then control, then consensus (anomaly).
    let dns = dns_view(tk);
    v.domain = if input.is_empty() {
        dns.hostname.clone()
    } else {
        domain_of(&input)
    };
    if let Some(f) = dns.answers.iter().find_map(|a| fp.match_dns(a)) {
        v.confirmed = true;
        v.anomaly = true;
        if v.blocking_type.is_empty() {
            v.blocking_type = "dns".into();
        }
        v.reasons.push(format!("dns.blockpage_ip:{}", f.name));
    }
    if !dns.control.is_empty() {
        if !dns.answers.is_empty() && dns.answers.is_disjoint(&dns.control) {
            v.anomaly = true;
            if v.blocking_type.is_empty() {
                v.blocking_type = "dns".into();
            }
            v.reasons.push("dns.inconsistent_with_control".into());
        } else if let Some(f) = &dns.failure {
            v.anomaly = true;
            if v.blocking_type.is_empty() {
                v.blocking_type = "dns".into();
            }
            v.reasons
                .push(format!("dns.failure_with_working_control:{f}"));
        }
    }
    if !dns.answers.is_empty() {
        let key = if dns.hostname.is_empty() {
            &v.domain
        } else {
            &dns.hostname
        };
        if let Some(agreed) = consensus.consensus(key, asn) {
            if dns.answers.is_disjoint(&agreed) {
                v.anomaly = true;
                if v.blocking_type.is_empty() {
                    v.blocking_type = "dns".into();
                }
                v.reasons.push("dns.inconsistent_with_consensus".into());
            }
        }
    }

    // 3. Errors (failure).
    match tk.get("failure") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) => {
            v.failure = true;
            v.reasons.push(format!("failure:{f}"));
        }
        Some(other) => {
            v.failure = true;
            v.reasons.push(format!("failure:{other}"));
        }
    }
    if !dns.hostname.is_empty() && v.domain.is_empty() {
        v.domain = dns.hostname.clone();
    }
    v.answers = dns.answers;
    v
}

/// Score one measurement (a queued/archived line) into its fastpath row.
pub fn score(msm: &Value, fp: &Fingerprints, consensus: &DnsConsensus) -> (FastpathRow, Verdict) {
    let v = judge(msm, fp, consensus);
    let uid = str_of(msm, "measurement_uid");
    let received = parse_uid(&uid)
        .and_then(|p| u32::try_from(p.micros / 1_000_000).ok())
        .unwrap_or(0);
    let start = parse_time(msm.get("measurement_start_time")).unwrap_or(received);
    let scores = json!({
        "blocking_general": if v.anomaly { 1.0 } else { 0.0 },
        "accuracy": if v.failure { 0.0 } else { 1.0 },
        "confirmed": v.confirmed,
        "fingerprints_version": fp.version,
        "reasons": v.reasons,
    });
    let row = FastpathRow {
        measurement_uid: uid,
        report_id: str_of(msm, "report_id"),
        input: str_of(msm, "input"),
        probe_cc: str_of(msm, "probe_cc"),
        probe_asn: parse_asn(msm.get("probe_asn")),
        test_name: str_of(msm, "test_name"),
        test_start_time: parse_time(msm.get("test_start_time")).unwrap_or(start),
        measurement_start_time: start,
        scores: scores.to_string(),
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

/// The fastpath's state: the DNS consensus, fed in uid order.
#[derive(Clone, Debug, Default)]
pub struct Scorer {
    pub consensus: DnsConsensus,
}

impl Scorer {
    /// Score the next measurement (in uid order) and learn from it.
    pub fn next(&mut self, msm: &Value, fp: &Fingerprints) -> FastpathRow {
        let (row, v) = score(msm, fp, &self.consensus);
        if !v.anomaly && !v.failure {
            self.consensus.observe(&v.domain, row.probe_asn, &v.answers);
        }
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fingerprints {
        Fingerprints::parse(include_str!("../tests/fixtures/fingerprints.yaml"))
            .expect("test fingerprints")
    }

    fn fixture(name: &str) -> Value {
        let all: Value = serde_json::from_str(include_str!("../tests/fixtures/measurements.json"))
            .expect("fixtures");
        all.get(name)
            .cloned()
            .unwrap_or_else(|| panic!("no fixture {name}"))
    }

    #[test]
    fn clean_web_connectivity_is_ok() {
        let (row, _) = score(&fixture("clean"), &fp(), &DnsConsensus::default());
        assert_eq!((row.anomaly, row.confirmed, row.msm_failure), (0, 0, 0));
        assert_eq!(row.domain, "example.org");
        assert_eq!(row.probe_asn, 64500);
        assert_eq!(row.probe_cc, "IT");
        assert_eq!(row.measurement_start_time, 1_795_300_265);
        assert_eq!(row.reason, "");
        let scores: Value = serde_json::from_str(&row.scores).expect("json");
        assert_eq!(scores["fingerprints_version"], "test-1");
    }

    #[test]
    fn blockpage_body_is_confirmed() {
        let (row, _) = score(&fixture("http_blockpage"), &fp(), &DnsConsensus::default());
        assert_eq!((row.anomaly, row.confirmed, row.msm_failure), (1, 1, 0));
        assert_eq!(row.blocking_type, "http-blockpage");
        assert_eq!(row.reason, "blockpage:vantage_test_blockpage");
    }

    #[test]
    fn sinkhole_answer_is_confirmed_and_control_disagrees() {
        let (row, v) = score(&fixture("dns_sinkhole"), &fp(), &DnsConsensus::default());
        assert_eq!((row.anomaly, row.confirmed), (1, 1));
        assert_eq!(row.blocking_type, "dns");
        assert_eq!(
            v.reasons,
            vec![
                "dns.blockpage_ip:vantage_test_sinkhole",
                "dns.inconsistent_with_control"
            ]
        );
    }

    #[test]
    fn an_error_is_a_failure() {
        let (row, _) = score(&fixture("failed"), &fp(), &DnsConsensus::default());
        assert_eq!((row.anomaly, row.confirmed, row.msm_failure), (0, 0, 1));
        assert_eq!(row.reason, "failure:generic_timeout_error");
        let (row, _) = score(
            &json!({"measurement_uid": "x"}),
            &fp(),
            &DnsConsensus::default(),
        );
        assert_eq!(
            (row.msm_failure, row.reason.as_str()),
            (1, "failure:no_test_keys")
        );
    }

    #[test]
    fn dns_consensus_of_other_asns() {
        let f = fp();
        let mut scorer = Scorer::default();
        let dns = |asn: u32, addr: &str| {
            json!({"measurement_uid": format!("20261121223105.00000{asn}_IT_dnscheck_0000000000000000"),
                   "probe_asn": format!("AS{asn}"), "input": "example.net", "test_name": "dnscheck",
                   "test_keys": {"queries": [{"hostname": "example.net", "answers": [{"ipv4": addr}]}]}})
        };
        // Nothing to compare with yet: no verdict.
        assert_eq!(scorer.next(&dns(1, "192.0.2.1"), &f).anomaly, 0);
        // One other ASN is not a consensus.
        assert_eq!(scorer.next(&dns(2, "10.9.9.9"), &f).anomaly, 0);
        assert_eq!(scorer.next(&dns(3, "192.0.2.1"), &f).anomaly, 0);
        // ASNs 1 and 3 agree on 192.0.2.1; ASN 4 answering something else is an anomaly.
        let row = scorer.next(&dns(4, "10.0.0.1"), &f);
        assert_eq!((row.anomaly, row.confirmed), (1, 0));
        assert_eq!(row.reason, "dns.inconsistent_with_consensus");
        // Agreeing is fine.
        assert_eq!(scorer.next(&dns(5, "192.0.2.1"), &f).anomaly, 0);
    }

    #[test]
    fn scoring_is_deterministic() {
        // A fresh scorer over the same measurements gives these rows, field for field,
        // every time: nothing depends on the clock, the host or hash order.
        let f = fp();
        let expected = [
            (
                "clean",
                "20261121223106.000001_IT_web_connectivity_0123456789abcdef",
                ("example.org", 1_795_300_265, (0, 0, 0), ""),
                json!({"accuracy": 1.0, "blocking_general": 0.0, "confirmed": false,
                       "fingerprints_version": "test-1", "reasons": []}),
            ),
            (
                "http_blockpage",
                "20261121223106.000002_TR_web_connectivity_1123456789abcdef",
                (
                    "blocked.example",
                    1_795_300_266,
                    (1, 1, 0),
                    "http-blockpage",
                ),
                json!({"accuracy": 1.0, "blocking_general": 1.0, "confirmed": true,
                       "fingerprints_version": "test-1",
                       "reasons": ["blockpage:vantage_test_blockpage"]}),
            ),
            (
                "dns_sinkhole",
                "20261121223106.000003_IR_web_connectivity_2123456789abcdef",
                ("news.example", 1_795_300_266, (1, 1, 0), "dns"),
                json!({"accuracy": 1.0, "blocking_general": 1.0, "confirmed": true,
                       "fingerprints_version": "test-1",
                       "reasons": ["dns.blockpage_ip:vantage_test_sinkhole", "dns.inconsistent_with_control"]}),
            ),
            (
                "failed",
                "20261121223106.000004_DE_dnscheck_3123456789abcdef",
                ("dns.example", 1_795_300_267, (0, 0, 1), ""),
                json!({"accuracy": 0.0, "blocking_general": 0.0, "confirmed": false,
                       "fingerprints_version": "test-1",
                       "reasons": ["failure:generic_timeout_error"]}),
            ),
        ];
        for round in 0..2 {
            let mut s = Scorer::default();
            for (name, uid, (domain, start, flags, blocking), scores) in &expected {
                let row = s.next(&fixture(name), &f);
                let at = format!("round {round}, {name}");
                assert_eq!(row.measurement_uid, *uid, "{at}");
                assert_eq!(row.domain, *domain, "{at}");
                assert_eq!(row.measurement_start_time, *start, "{at}");
                assert_eq!(
                    (row.anomaly, row.confirmed, row.msm_failure),
                    *flags,
                    "{at}"
                );
                assert_eq!(row.blocking_type, *blocking, "{at}");
                assert_eq!(row.scores, scores.to_string(), "{at}");
                let first = scores["reasons"][0].as_str().unwrap_or("");
                assert_eq!(row.reason, first, "{at}");
            }
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(
            domain_of("https://user@Example.ORG:8443/path?q#f"),
            "example.org"
        );
        assert_eq!(domain_of("http://[2001:db8::1]:80/"), "2001:db8::1");
        assert_eq!(domain_of("example.com."), "example.com");
        assert_eq!(parse_asn(Some(&json!("AS3269"))), 3269);
        assert_eq!(parse_asn(Some(&json!(3269))), 3269);
        assert_eq!(parse_asn(Some(&json!("junk"))), 0);
        assert_eq!(parse_time(Some(&json!("1970-01-01 00:01:00"))), Some(60));
        assert_eq!(parse_time(Some(&json!("1970-01-01T00:01:00Z"))), Some(60));
    }
}
