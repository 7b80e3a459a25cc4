//! web_connectivity (and the legacy http_requests, which shares the fingerprint rules):
//! the probe's own `blocking` verdict, fingerprint matches (confirmed blocking), and
//! OONI's checks for broken measurements.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::fields::{array, eq_false, get, object, path, truthy};
use super::{Scored, Scores};
use crate::fingerprints::{b64decode_lenient, Fingerprint, Fingerprints, Location, PatternType};

/// The probe's `blocking` values OONI counts as an anomaly.
const BLOCKING_TYPES: [&str; 4] = ["tcp_ip", "dns", "http-diff", "http-failure"];

/// A body or header said to be base64 that does not decode (OONI: `binascii.Error`).
#[derive(Debug)]
pub struct BadBase64;

/// Matches in one HTTP response, in OONI's order: body fingerprints, then header ones.
fn match_response<'a>(
    resp: &Value,
    fp: &'a Fingerprints,
    out: &mut Vec<&'a Fingerprint>,
) -> Result<(), BadBase64> {
    // Body: a string, or {"format": "base64", "data": ...}; other objects are skipped.
    let body: Option<Vec<u8>> = match get(resp, "body") {
        Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
        Some(b @ Value::Object(_)) => {
            if b.get("data").is_some() && b.get("format").and_then(Value::as_str) == Some("base64")
            {
                let data = b.get("data").and_then(Value::as_str).ok_or(BadBase64)?;
                Some(b64decode_lenient(data).ok_or(BadBase64)?)
            } else {
                None
            }
        }
        _ => None,
    };
    if let Some(body) = &body {
        out.extend(fp.match_body(body));
    }
    // Headers: an object, names lowercased (the last of equal names wins).
    let Some(Value::Object(headers)) = get(resp, "headers") else {
        return Ok(());
    };
    if headers.is_empty() {
        return Ok(());
    }
    let lower: BTreeMap<String, &Value> =
        headers.iter().map(|(k, v)| (k.to_lowercase(), v)).collect();
    for f in &fp.http {
        let Location::Header(name) = &f.location else {
            continue;
        };
        let Some(v) = lower.get(name) else { continue };
        let hit = match f.pattern_type {
            PatternType::Full => v.as_str() == Some(f.pattern.as_str()),
            PatternType::Prefix => {
                let text = match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o)
                        if o.get("format").and_then(Value::as_str) == Some("base64") =>
                    {
                        let data = o.get("data").and_then(Value::as_str).unwrap_or("");
                        let bytes = b64decode_lenient(data).ok_or(BadBase64)?;
                        // Latin-1, as OONI decodes it.
                        Some(bytes.iter().map(|b| char::from(*b)).collect())
                    }
                    _ => None,
                };
                text.is_some_and(|t| t.starts_with(f.pattern.as_str()))
            }
            _ => false,
        };
        if hit {
            out.push(f);
        }
    }
    Ok(())
}

/// OONI's `match_fingerprints`: DNS answers, then each request's response.
pub fn match_fingerprints<'a>(
    tk: &Value,
    fp: &'a Fingerprints,
) -> Result<Vec<&'a Fingerprint>, BadBase64> {
    let mut out = Vec::new();
    for q in array(tk, "queries") {
        for answer in array(q, "answers") {
            out.extend(fp.match_dns_answer(answer));
        }
    }
    for req in array(tk, "requests") {
        if let Some(resp) = get(req, "response") {
            match_response(resp, fp, &mut out)?;
        }
    }
    Ok(out)
}

/// Record matches: `fingerprints` (OONI's short form), and for those that confirm
/// blocking in the probe's country `blocking_<locality>` = 1 and `confirmed`.
fn apply_matches(msm: &Value, matches: &[&Fingerprint], s: &mut Scores) {
    if matches.is_empty() {
        return;
    }
    s.set(
        "fingerprints",
        Value::Array(matches.iter().map(|f| f.summary()).collect()),
    );
    let cc = get(msm, "probe_cc")
        .and_then(Value::as_str)
        .unwrap_or("ZZ")
        .to_uppercase();
    for f in matches {
        let reason = if f.confirms(&cc) {
            s.set(&format!("blocking_{}", f.locality()), json!(1.0));
            s.set("confirmed", json!(true));
            match f.location {
                Location::Dns => format!("dns.blockpage_ip:{}", f.name),
                _ => format!("blockpage:{}", f.name),
            }
        } else {
            format!("fingerprint_unconfirmed:{}", f.name)
        };
        if !s.reasons.contains(&reason) {
            s.reason(reason);
        }
    }
}

/// Any `*_failure` key starting with `unknown_failure` (a probe bug).
fn unknown_failure(tk: &serde_json::Map<String, Value>) -> Result<bool, String> {
    for (k, v) in tk {
        if !k.ends_with("_failure") {
            continue;
        }
        match v {
            Value::String(s) if s.starts_with("unknown_failure") => return Ok(true),
            Value::String(_) => {}
            v if !truthy(v) => {}
            _ => return Err(format!("{k} is not a string")),
        }
    }
    Ok(false)
}

/// web_connectivity (OONI's `score_web_connectivity_full`).
pub fn score(msm: &Value, fp: &Fingerprints) -> Scored {
    let tk = super::fields::test_keys(msm)?;
    match match_fingerprints(tk, fp) {
        Ok(m) => score_with(msm, tk, &m),
        Err(BadBase64) => {
            let mut s = score_with(msm, tk, &[])?;
            s.fail("failure:bad_base64");
            Ok(s)
        }
    }
}

fn score_with(msm: &Value, tk: &Value, matches: &[&Fingerprint]) -> Scored {
    let mut s = Scores::init();
    apply_matches(msm, matches, &mut s);
    let tk_map = object(msm, "test_keys")?;
    // title_match must be true, false or missing (Python: 0 and 1 compare equal).
    match tk.get("title_match") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        Some(Value::Number(n)) if matches!(n.as_f64(), Some(x) if x == 0.0 || x == 1.0) => {}
        Some(_) => {
            s.fail("failure:title_match_invalid");
            return Ok(s);
        }
    }
    match get(tk, "blocking") {
        Some(Value::String(b)) if BLOCKING_TYPES.contains(&b.as_str()) => {
            s.block(1.0, format!("blocking:{b}"));
            s.set("analysis", json!({"blocking_type": b}));
        }
        Some(v) if eq_false(v) => {}
        None => {
            if matches.is_empty() {
                s.fail("failure:blocking_null");
            }
        }
        Some(_) => {
            s.set("analysis", json!({"msg": "Unsupported blocking type"}));
            s.fail("failure:blocking_unsupported");
        }
    }
    if unknown_failure(tk_map)? {
        s.fail("failure:unknown_failure");
    }
    let located: f64 = ["country", "global", "isp", "local"]
        .iter()
        .filter_map(|l| s.num(&format!("blocking_{l}")))
        .sum();
    let general = s.general() + located;
    s.set("blocking_general", json!(general));
    if tk_map.contains_key("accessible")
        && tk_map.get("accessible") == Some(&Value::Null)
        && matches.is_empty()
    {
        s.fail("failure:accessible_null");
    }
    Ok(s)
}

/// http_requests (legacy): the probe's body-length and headers match, and fingerprints
/// on the responses not fetched over Tor (confirmed as for web_connectivity, without
/// adding to `blocking_general`).
pub fn score_http_requests(msm: &Value, fp: &Fingerprints) -> Scored {
    let mut s = Scores::init();
    let tk = super::fields::test_keys(msm)?;
    let blm = get(tk, "body_length_match");
    let hm = get(tk, "headers_match");
    let failed = msm.get("control_failure").is_some_and(truthy)
        || msm.get("experiment_failure").is_some_and(truthy);
    let (Some(blm), Some(hm), false) = (blm, hm, failed) else {
        s.fail("failure:http_requests_incomplete");
        return Ok(s);
    };
    if !(truthy(blm) && truthy(hm)) {
        s.block(1.0, "http_requests.mismatch");
    }
    let mut matches = Vec::new();
    for req in array(tk, "requests") {
        if path(req, &["request", "tor", "is_tor"]).is_some_and(truthy) {
            continue;
        }
        if let Some(resp) = get(req, "response") {
            match_response(resp, fp, &mut matches).map_err(|_| "bad base64".to_owned())?;
        }
    }
    apply_matches(msm, &matches, &mut s);
    Ok(s)
}
