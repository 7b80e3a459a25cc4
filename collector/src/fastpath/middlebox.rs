//! HTTP middlebox tests: http_header_field_manipulation (hhfm) and
//! http_invalid_request_line (hirl).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::fields::get;
use super::{Scored, Scores};

/// hhfm: the headers the helper received (echoed in the response body) must equal those
/// sent, `Connection: close` aside.
pub fn hhfm(msm: &Value) -> Scored {
    let mut s = Scores::init();
    if msm.get("report_id").is_none() {
        return Err("no report_id".into());
    }
    let first = get(msm, "test_keys")
        .and_then(|tk| tk.get("requests"))
        .and_then(|r| r.as_array())
        .and_then(|r| r.first());
    let Some(first) = first else {
        s.fail("failure:no_requests");
        return Ok(s);
    };
    if !first.is_object() {
        return Err("requests[0] is not an object".into());
    }
    let resp = first.get("response").cloned().unwrap_or_else(|| json!({}));
    if resp.is_null() {
        s.fail("failure:no_response");
        return Ok(s);
    }
    let Some(body) = get(&resp, "body") else {
        s.set("total_tampering", json!(true));
        s.set("msg", json!("Empty body"));
        s.block(1.0, "hhfm.empty_body");
        return Ok(s);
    };
    let ctrl_headers = body
        .as_str()
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .and_then(|v| v.get("headers_dict").cloned());
    let Some(ctrl_headers) = ctrl_headers else {
        s.set("msg", json!("Malformed ctrl_headers"));
        s.block(1.0, "hhfm.malformed_echo");
        return Ok(s);
    };
    let Value::Object(ctrl_headers) = ctrl_headers else {
        return Err("headers_dict is not an object".into());
    };
    let close = ("Connection".to_owned(), json!("close").to_string());
    let mut ctrl = BTreeSet::new();
    for (k, v) in &ctrl_headers {
        let first = match v {
            Value::Array(a) => a.first().cloned().ok_or("empty header list")?,
            Value::String(t) => t
                .chars()
                .next()
                .map(|c| json!(c.to_string()))
                .ok_or("empty header")?,
            _ => return Err("header value is not a list".into()),
        };
        ctrl.insert((k.clone(), first.to_string()));
    }
    let sent = first
        .get("request")
        .map(|r| r.get("headers").cloned().unwrap_or_else(|| json!({})))
        .unwrap_or_else(|| json!({}));
    let Value::Object(sent) = sent else {
        return Err("request.headers is not an object".into());
    };
    let mut expected: BTreeSet<(String, String)> = sent
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    ctrl.remove(&close);
    expected.remove(&close);
    if expected == ctrl {
        return Ok(s);
    }
    let changed = expected.symmetric_difference(&ctrl).count();
    s.set("msg", json!(format!("{changed} unexpected header change")));
    s.block(1.1, format!("hhfm.headers_changed:{changed}"));
    Ok(s)
}

/// hirl: every request line received back must equal the one sent.
pub fn hirl(msm: &Value) -> Scored {
    let mut s = Scores::init();
    if msm.get("report_id").is_none() {
        return Err("no report_id".into());
    }
    let empty = Vec::new();
    let tk = get(msm, "test_keys");
    let list = |k: &str| {
        tk.and_then(|t| get(t, k))
            .and_then(Value::as_array)
            .unwrap_or(&empty)
    };
    let (sent, received) = (list("sent"), list("received"));
    if sent.is_empty() && received.is_empty() {
        s.fail("failure:nothing_sent");
        return Ok(s);
    }
    if sent.iter().zip(received).any(|(a, b)| a != b) {
        s.block(1.0, "hirl.request_line_changed");
    }
    Ok(s)
}
