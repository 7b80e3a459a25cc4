//! The other tests OONI's fastpath scores: tcp_connect, dash, stunreachability,
//! openvpn, browser_web. (ndt, riseupvpn and dns_consistency get no or empty scores,
//! in `super::dispatch`.)

use serde_json::{json, Map, Value};

use super::fields::{get, path, truthy};
use super::{Scored, Scores};

/// tcp_connect: `success` is fine, a known connect error is 0.8, anything else 1.0.
pub fn tcp_connect(msm: &Value) -> Scored {
    if !msm.get("input").is_some_and(truthy) {
        return Err("tcp_connect without input".into());
    }
    let tk = super::fields::test_keys(msm)?;
    let mut s = Scores::init();
    match tk.get("connection").and_then(Value::as_str) {
        Some("success") => {}
        Some(
            e @ ("generic_timeout_error"
            | "connection_refused_error"
            | "connect_error"
            | "tcp_timed_out_error"),
        ) => s.block(0.8, format!("tcp_connect.{e}")),
        other => s.block(1.0, format!("tcp_connect.{}", other.unwrap_or("unknown"))),
    }
    Ok(s)
}

/// dash: a failure is a failed measurement (network errors with blocking 0.1).
pub fn dash(msm: &Value) -> Scored {
    let tk = super::fields::test_keys(msm)?;
    let mut s = Scores::init();
    if tk.as_object().is_some_and(Map::is_empty) {
        s.fail("failure:no_test_keys");
        return Ok(s);
    }
    const NETWORK: [&str; 9] = [
        "connection_aborted",
        "json_parse_error",
        "eof_error",
        "json_processing_error",
        "http_request_failed",
        "connect_error",
        "generic_timeout_error",
        "broken_pipe",
        "connection_refused",
    ];
    match get(tk, "failure") {
        None => {}
        Some(Value::String(f)) if NETWORK.contains(&f.as_str()) || f.contains("ssl_error") => {
            s.set("blocking_general", json!(0.1));
            s.fail(format!("failure:{f}"));
        }
        Some(_) => {
            s.set("msg", json!("Probe error"));
            s.fail("failure:probe_error");
        }
    }
    Ok(s)
}

/// stunreachability: a failure is blocking.
pub fn stunreachability(msm: &Value) -> Scored {
    let tk = super::fields::test_keys(msm)?;
    let mut s = Scores::init();
    let mut extra = Map::new();
    extra.insert(
        "endpoint".into(),
        tk.get("endpoint").cloned().unwrap_or(Value::Null),
    );
    if let Some(f) = tk.get("failure").filter(|f| truthy(f)) {
        s.block(1.0, "stunreachability.failure");
        extra.insert("failure".into(), f.clone());
    }
    s.set("extra", Value::Object(extra));
    Ok(s)
}

/// openvpn: `success` false is blocking, missing (or `null`) is a failure.
pub fn openvpn(msm: &Value) -> Scored {
    let mut s = Scores::init();
    match path(msm, &["test_keys", "success"]) {
        Some(Value::Bool(false)) => s.block(1.0, "openvpn.failed"),
        None => s.fail("failure:no_success"),
        Some(_) => {}
    }
    s.set(
        "extra",
        json!({"test_runtime": msm.get("test_runtime").cloned().unwrap_or(Value::Null)}),
    );
    Ok(s)
}

/// browser_web: `result` ok is fine, error is blocking, anything else a failure.
pub fn browser_web(msm: &Value) -> Scored {
    let tk = super::fields::test_keys(msm)?;
    let mut s = Scores::init();
    match get(tk, "result").and_then(Value::as_str).unwrap_or("") {
        "ok" => {}
        "error" => s.block(1.0, "browser_web.error"),
        _ => s.fail("failure:browser_web_no_result"),
    }
    s.set(
        "extra",
        json!({"browser_name": get(tk, "browser_name").cloned().unwrap_or(json!("")),
               "load_time_ms": get(tk, "load_time_ms").cloned().unwrap_or(json!(0))}),
    );
    Ok(s)
}
