//! Circumvention tests: vanilla_tor, tor, torsf, psiphon, meek_fronted_requests_test.

use serde_json::{json, Value};

use super::fields::{array, get, truthy};
use super::{Scored, Scores};

fn runtime(msm: &Value) -> Value {
    msm.get("test_runtime").cloned().unwrap_or(Value::Null)
}

/// vanilla_tor: bootstrapped to 100% is fine; otherwise `1 - 0.004 × progress`.
pub fn vanilla_tor(msm: &Value) -> Scored {
    let tk = super::fields::test_keys(msm)?;
    let mut s = Scores::init();
    // `tor_logs or tor_log`: an empty first one falls through to the second.
    let logs = tk
        .get("tor_logs")
        .filter(|v| truthy(v))
        .or_else(|| tk.get("tor_log"))
        .filter(|v| !v.is_null());
    let Some(logs) = logs else {
        s.fail("failure:no_tor_logs");
        return Ok(s);
    };
    let done = ["Bootstrapped 100%: Done", "Bootstrapped 100% (done): Done"];
    let finished = match logs {
        Value::String(text) => done.iter().any(|d| text.contains(d)),
        Value::Array(lines) => lines
            .iter()
            .any(|l| l.as_str().is_some_and(|l| done.contains(&l))),
        _ => false,
    };
    if finished {
        return Ok(s);
    }
    let progress = match tk.get("tor_progress") {
        None => 0.0,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(t)) => t
            .trim()
            .parse::<f64>()
            .map_err(|_| "tor_progress is not a number".to_owned())?,
        Some(Value::Bool(b)) => f64::from(u8::from(*b)),
        Some(_) => return Err("tor_progress is not a number".into()),
    };
    let progress = progress.clamp(0.0, 100.0);
    if progress == 100.0 {
        return Ok(s);
    }
    s.block(
        1.0 - progress * 0.004,
        format!("vanilla_tor.bootstrap:{progress}"),
    );
    Ok(s)
}

/// tor: the share of failed targets among those that ran.
pub fn tor(msm: &Value) -> Scored {
    let tk = super::fields::test_keys(msm)?;
    let mut s = Scores::init();
    let targets = match tk.get("targets") {
        Some(t) if truthy(t) => t,
        _ => {
            s.fail("failure:no_tor_targets");
            return Ok(s);
        }
    };
    let Value::Object(targets) = targets else {
        // A list in early experiments (or anything else).
        s.fail("failure:tor_targets_not_a_map");
        return Ok(s);
    };
    let (mut blocked, mut ok) = (0u64, 0u64);
    for d in targets.values() {
        let (Some(f), true) = (d.get("failure"), d.get("network_events").is_some()) else {
            s.fail("failure:tor_target_incomplete");
            return Ok(s);
        };
        match f {
            Value::Bool(false) => {}
            Value::Null => ok += 1,
            Value::String(e) if e.is_empty() => {
                return Err("tor target with an empty failure".into())
            }
            _ => blocked += 1,
        }
    }
    if blocked + ok > 0 {
        s.set(
            "blocking_general",
            json!(blocked as f64 / (blocked + ok) as f64),
        );
        if blocked > 0 {
            s.reason(format!("tor.targets_failed:{blocked}/{}", blocked + ok));
        }
    } else {
        s.fail("failure:no_tor_target_ran");
    }
    s.set("extra", json!({"test_runtime": runtime(msm)}));
    Ok(s)
}

/// torsf (Snowflake): a failure is blocking; ooniprobe-android 3.8.3 is excluded.
pub fn torsf(msm: &Value) -> Scored {
    let tk = super::fields::test_keys(msm)?;
    let mut s = Scores::init();
    let name = msm
        .get("software_name")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    let version = msm
        .get("software_version")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    if version == "3.8.3" && name.starts_with("ooniprobe-android") {
        s.fail("failure:torsf_android_3.8.3");
        return Ok(s);
    }
    if tk.get("failure").is_some_and(truthy) {
        s.block(1.0, "torsf.failure");
        return Ok(s);
    }
    s.set(
        "extra",
        json!({"bootstrap_time": tk.get("bootstrap_time").cloned().unwrap_or(Value::Null),
               "test_runtime": runtime(msm)}),
    );
    Ok(s)
}

/// psiphon: a failure is blocking; no failure and no bootstrap time, or no resolver_ip,
/// is a broken measurement.
pub fn psiphon(msm: &Value) -> Scored {
    let tk = super::fields::test_keys(msm)?;
    let mut s = Scores::init();
    let bootstrap = tk.get("bootstrap_time").cloned().unwrap_or(json!(0));
    if get(tk, "failure").is_none() {
        if bootstrap.as_f64() == Some(0.0) {
            s.fail("failure:psiphon_no_bootstrap_time");
        } else {
            s.set("accuracy", json!(1.0));
        }
    } else {
        s.set("accuracy", json!(1.0));
        s.block(1.0, "psiphon.failure");
    }
    if msm.get("resolver_ip").is_none() {
        s.fail("failure:no_resolver_ip");
    }
    s.set(
        "extra",
        json!({"test_runtime": runtime(msm), "bootstrap_time": bootstrap}),
    );
    Ok(s)
}

/// meek_fronted_requests_test: any failed response is blocking; 0.5 per response whose
/// `Server` is not the CDN's (`ECAcc `).
pub fn meek(msm: &Value) -> Scored {
    let tk = super::fields::test_keys(msm)?;
    let mut s = Scores::init();
    let requests = array(tk, "requests");
    if requests.is_empty() {
        s.set("blocking_general", json!(1.0));
        s.fail("failure:no_requests");
        return Ok(s);
    }
    let mut general = 0.0;
    for r in requests {
        let resp = match r.get("response") {
            None => json!({}),
            Some(Value::Null) => {
                s.block(1.0, "meek.no_response");
                return Ok(s);
            }
            Some(v) => v.clone(),
        };
        if resp.get("code").cloned().unwrap_or(json!(0)).as_f64() != Some(200.0) {
            s.block(1.0, "meek.bad_status");
            return Ok(s);
        }
        let server = match resp.get("headers") {
            Some(Value::Object(h)) => h.get("Server").cloned(),
            // A list of [name, [values]] pairs: the first value of the last `Server`.
            Some(Value::Array(list)) => list
                .iter()
                .filter(|i| truthy(i))
                .filter(|i| i.get(0).and_then(Value::as_str) == Some("Server"))
                .filter_map(|i| i.get(1).and_then(|v| v.get(0)).cloned())
                .next_back(),
            _ => None,
        };
        let server = server.unwrap_or(json!(""));
        if !server.as_str().is_some_and(|v| v.starts_with("ECAcc ")) {
            general += 0.5;
            s.reason("meek.unexpected_server");
        }
    }
    s.set("blocking_general", json!(general));
    Ok(s)
}
