//! Instant-messaging tests: telegram, whatsapp, facebook_messenger, signal.

use serde_json::{json, Value};

use super::fields::{array, get, ooni_time, path, Version};
use super::{Scored, Scores};

/// TCP connects that succeeded and failed (`tcp_connect[].status.success`).
pub(super) fn tcp_endpoints(tk: &Value) -> (u64, u64) {
    let mut ok = 0;
    let mut failed = 0;
    for e in array(tk, "tcp_connect") {
        match path(e, &["status", "success"]) {
            Some(Value::Bool(true)) => ok += 1,
            Some(Value::Bool(false)) => failed += 1,
            _ => {}
        }
    }
    (ok, failed)
}

/// telegram: the share of unreachable TCP endpoints, plus the share of failed HTTP
/// requests to the data centres, plus 1 when Telegram Web is blocked. (0.5 for a part
/// with nothing measured.)
pub fn telegram(msm: &Value) -> Scored {
    let tk = super::fields::test_keys(msm)?;
    let web_blocking = get(tk, "telegram_web_status").and_then(Value::as_str) == Some("blocked");
    let (ok, unreachable) = tcp_endpoints(tk);
    let (mut http_ok, mut http_failed) = (0u64, 0u64);
    let mut web_failure: Option<Value> = None;
    for r in array(tk, "requests") {
        let Some(url) = r.get("request").and_then(|q| q.get("url")) else {
            // OONI: a request without request.url is a client bug.
            return Ok(Scores::failed("failure:telegram_request_without_url"));
        };
        let failure = get(r, "failure");
        if matches!(
            url.as_str(),
            Some("https://web.telegram.org/" | "http://web.telegram.org/")
        ) {
            if let Some(f) = failure {
                web_failure = Some(f.clone());
            }
            continue;
        }
        if failure.is_none() {
            http_ok += 1;
        } else {
            http_failed += 1;
        }
    }
    let mut s = Scores::init();
    let mut general = if ok + unreachable > 0 {
        unreachable as f64 / (ok + unreachable) as f64
    } else {
        0.5
    };
    general += if http_ok + http_failed > 0 {
        http_failed as f64 / (http_ok + http_failed) as f64
    } else {
        0.5
    };
    if web_blocking {
        general += 1.0;
    }
    if unreachable > 0 {
        s.reason(format!(
            "telegram.tcp_unreachable:{unreachable}/{}",
            ok + unreachable
        ));
    }
    if http_failed > 0 {
        s.reason(format!(
            "telegram.http_failed:{http_failed}/{}",
            http_ok + http_failed
        ));
    }
    if web_blocking {
        s.reason("telegram.web_blocked");
    }
    s.set("blocking_general", json!(general));
    s.set("web_failure", web_failure.clone().unwrap_or(Value::Null));
    s.set("accessible_endpoints", json!(ok));
    s.set("unreachable_endpoints", json!(unreachable));
    s.set("http_success_cnt", json!(http_ok));
    s.set("http_failure_cnt", json!(http_failed));
    if let Some(f) = web_failure {
        let f = f.as_str().map_or_else(|| f.to_string(), str::to_owned);
        s.set("msg", json!(format!("failure: {f}")));
    }
    Ok(s)
}

/// whatsapp: WhatsApp Web and the registration server must both be reachable, and at
/// least one TCP endpoint.
pub fn whatsapp(msm: &Value) -> Scored {
    let tk = super::fields::test_keys(msm)?;
    let mut s = Scores::init();
    if let Some(m) = tk.as_object() {
        for (k, v) in m {
            if k.ends_with("_failure")
                && v.as_str().is_some_and(|f| f.starts_with("unknown_failure"))
            {
                s.fail("failure:unknown_failure");
            }
        }
    }
    if get(tk, "whatsapp_web_failure")
        .and_then(Value::as_str)
        .is_some_and(|f| f.contains("unknown_failure 'ascii' co"))
    {
        s.fail("failure:probe_ascii_bug");
        return Ok(s);
    }
    let requests = array(tk, "requests");
    if requests.is_empty() {
        s.fail("failure:no_requests");
        return Ok(s);
    }
    let mut web: Option<bool> = None;
    let mut registration: Option<bool> = None;
    for r in requests {
        match path(r, &["request", "url"]).and_then(Value::as_str) {
            Some("https://web.whatsapp.com/") => {
                // A missing failure counts as a failure here, as OONI.
                web = Some(match r.get("failure") {
                    None => false,
                    Some(Value::Null) => true,
                    Some(Value::String(f)) => f.is_empty(),
                    Some(Value::Bool(b)) => !b,
                    Some(Value::Number(n)) => n.as_f64() == Some(0.0),
                    Some(_) => false,
                });
            }
            Some("https://v.whatsapp.net/v2/register") => {
                registration = Some(get(r, "failure").is_none());
            }
            _ => {}
        }
    }
    let (Some(web), Some(registration)) = (web, registration) else {
        s.fail("failure:whatsapp_requests_missing");
        return Ok(s);
    };
    if !web || !registration {
        s.block(
            1.0,
            if web {
                "whatsapp.registration_unreachable"
            } else {
                "whatsapp.web_unreachable"
            },
        );
        return Ok(s);
    }
    let (ok, unreachable) = tcp_endpoints(tk);
    if ok == 0 && unreachable == 0 {
        s.fail("failure:no_endpoints_measured");
    } else if ok == 0 {
        s.block(1.0, "whatsapp.endpoints_unreachable");
    }
    s.set(
        "analysis",
        json!({"registration_server_accessible": registration, "whatsapp_web_accessible": web,
               "whatsapp_endpoints_accessible": ok > 0}),
    );
    Ok(s)
}

/// facebook_messenger: 0.5 per inconsistent or unreachable endpoint and per blocking
/// flag, except for the all-reachable-but-`facebook_dns_blocking` probe bug.
pub fn facebook_messenger(msm: &Value) -> Scored {
    const CONSISTENCY: [&str; 13] = [
        "facebook_b_api_dns_consistent",
        "facebook_b_api_reachable",
        "facebook_b_graph_dns_consistent",
        "facebook_b_graph_reachable",
        "facebook_edge_dns_consistent",
        "facebook_edge_reachable",
        "facebook_external_cdn_dns_consistent",
        "facebook_external_cdn_reachable",
        "facebook_scontent_cdn_dns_consistent",
        "facebook_scontent_cdn_reachable",
        "facebook_star_dns_consistent",
        "facebook_star_reachable",
        "facebook_stun_dns_consistent",
    ];
    const ANOMALY: [&str; 2] = ["facebook_tcp_blocking", "facebook_dns_blocking"];
    const PROBE_BUG_TRUE: [&str; 10] = [
        "facebook_b_api_dns_consistent",
        "facebook_b_api_reachable",
        "facebook_b_graph_dns_consistent",
        "facebook_b_graph_reachable",
        "facebook_dns_blocking",
        "facebook_edge_dns_consistent",
        "facebook_edge_reachable",
        "facebook_star_dns_consistent",
        "facebook_star_reachable",
        "facebook_stun_dns_consistent",
    ];
    let tk = super::fields::test_keys(msm)?;
    let mut s = Scores::init();
    let is = |k: &str, b: bool| tk.get(k) == Some(&Value::Bool(b));
    let mut general = 0.0;
    if PROBE_BUG_TRUE.iter().all(|k| is(k, true)) && is("facebook_tcp_blocking", false) {
        s.reason("facebook_messenger.dns_blocking_probe_bug");
    } else {
        for k in CONSISTENCY {
            if is(k, false) {
                general += 0.5;
                s.set(k, json!(false));
                s.reason(format!("facebook_messenger.{k}:false"));
            }
        }
        for k in ANOMALY {
            if is(k, true) {
                general += 0.5;
                s.set(k, json!(true));
                s.reason(format!("facebook_messenger.{k}"));
            }
        }
    }
    s.set("blocking_general", json!(general));
    Ok(s)
}

/// signal: the probe's `signal_backend_status`, after OONI's exclusions of probe
/// versions with known bugs.
pub fn signal(msm: &Value) -> Scored {
    let tk = super::fields::test_keys(msm)?;
    let mut s = Scores::init();
    let truthy_or_missing = |k: &str| tk.get(k).is_none_or(super::fields::truthy);
    if truthy_or_missing("failed_operation") || truthy_or_missing("failure") {
        s.fail("failure:signal_failed");
    }
    if let Err(reason) = signal_version_ok(msm) {
        s.fail(reason);
        return Ok(s);
    }
    match get(tk, "signal_backend_status").and_then(Value::as_str) {
        Some("ok") => {}
        Some("blocked") => {
            s.block(1.0, "signal.backend_blocked");
            s.set(
                "analysis",
                json!({"signal_backend_failure": tk.get("signal_backend_failure").cloned().unwrap_or(Value::Null)}),
            );
        }
        _ => s.fail("failure:signal_backend_status_unknown"),
    }
    Ok(s)
}

/// OONI's exclusions: test 0.2.4; ≤ 0.2.3 from 2023-11-07; < 0.2.2 from 2022-10-19;
/// engine < 3.17.2 from 2023-05-02; anything unparsable.
fn signal_version_ok(msm: &Value) -> Result<(), &'static str> {
    let bad = "failure:signal_version_unparsable";
    let start = get(msm, "measurement_start_time")
        .ok_or("failure:no_start_time")?
        .as_str()
        .and_then(ooni_time)
        .ok_or(bad)?;
    let tv_text = match get(msm, "test_version") {
        None => "0.0.0".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad),
    };
    let tv = Version::parse(&tv_text).ok_or(bad)?;
    let date = |y, m, d| {
        chrono::NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default()
    };
    if tv_text == "0.2.4" {
        return Err("failure:signal_0.2.4_bug");
    }
    let below = |v: &Version, t: &str, or_equal: bool| {
        Version::parse(t).is_some_and(|c| if or_equal { *v <= c } else { *v < c })
    };
    if below(&tv, "0.2.3", true) && start >= date(2023, 11, 7) {
        return Err("failure:signal_old_test_version");
    }
    if below(&tv, "0.2.2", false) && start >= date(2022, 10, 19) {
        return Err("failure:signal_old_test_version");
    }
    let ev_text = match msm.get("annotations") {
        None | Some(Value::Null) => "0.0.0".to_owned(),
        Some(a @ Value::Object(_)) => match get(a, "engine_version") {
            None => "0.0.0".to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(bad),
        },
        Some(_) => return Err(bad),
    };
    let ev = Version::parse(&ev_text).ok_or(bad)?;
    if below(&ev, "3.17.2", false) && start >= date(2023, 5, 2) {
        return Err("failure:signal_old_engine");
    }
    Ok(())
}
