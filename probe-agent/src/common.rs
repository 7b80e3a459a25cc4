//! What every measurement type shares: the RIPE Atlas common fields, millisecond
//! rounding, resolution of the target on the probe, and [`SocketError`], the failed
//! socket call that a result reports.

use std::borrow::Cow;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::{json, Map, Value};
use vantage_core::definition::Task;
use vantage_core::result::PROBE_FW;

use crate::ping::RunContext;

/// A socket call of a measurement that failed: the call, and the OS error. Its text
/// (`connect: Connection refused`) is what the RIPE Atlas result carries.
#[derive(Debug, thiserror::Error)]
#[error("{call}: {source}")]
pub struct SocketError {
    /// The call as results name it, e.g. `connect`, `sendto failed`, `setsockopt TTL 3`.
    pub call: Cow<'static, str>,
    #[source]
    pub source: std::io::Error,
}

impl SocketError {
    pub fn new(call: impl Into<Cow<'static, str>>, source: std::io::Error) -> Self {
        Self {
            call: call.into(),
            source,
        }
    }
}

/// For `map_err`: the [`SocketError`] of `call`.
pub fn socket_error(call: &'static str) -> impl FnOnce(std::io::Error) -> SocketError {
    move |source| SocketError::new(call, source)
}

/// The RIPE Atlas common fields of a result of `kind` for `task`: `result_id` (UUID v7),
/// `fw`, `lts`, `msm_id`, `prb_id`, `timestamp`, `type`, `af`, `dst_name`.
pub fn header(task: &Task, ctx: RunContext, kind: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("result_id".into(), json!(uuid::Uuid::now_v7().to_string()));
    m.insert("fw".into(), json!(PROBE_FW));
    m.insert("lts".into(), json!(-1));
    m.insert("msm_id".into(), json!(task.msm_id));
    m.insert("prb_id".into(), json!(ctx.prb_id));
    m.insert("timestamp".into(), json!(crate::unix_now() as i64));
    m.insert("type".into(), json!(kind));
    m.insert("af".into(), json!(task.af));
    m.insert("from".into(), json!(""));
    if !task.target.is_empty() {
        m.insert("dst_name".into(), json!(task.target));
    }
    m
}

/// Set `src_addr` and `from` (the probe's address as it measured).
pub fn set_source(m: &mut Map<String, Value>, src: Option<IpAddr>) {
    if let Some(src) = src {
        m.insert("src_addr".into(), json!(src.to_string()));
        m.insert("from".into(), json!(src.to_string()));
    }
}

/// Milliseconds, rounded to the microsecond as RIPE Atlas reports them.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// A result that says the target did not resolve on the probe: RIPE Atlas puts the
/// reason in `dnserr`.
pub fn dnserr_result(task: &Task, ctx: RunContext, kind: &str, error: &str) -> Value {
    let mut m = header(task, ctx, kind);
    m.insert("dnserr".into(), json!(error));
    Value::Object(m)
}

/// A result for a run that went over its hard time limit: the common fields and `err`.
pub fn timed_out_result(task: &Task, ctx: RunContext, limit: Duration) -> Value {
    let kind = task.kind.type_name();
    let mut m = header(task, ctx, kind);
    let msg = format!("measurement timed out after {} s", limit.as_secs());
    match kind {
        "dns" => {
            m.insert("error".into(), json!({"timeout": limit.as_millis() as u64}));
        }
        "sslcert" => {
            m.insert("error".into(), json!(msg));
        }
        _ => {
            m.insert("err".into(), json!(msg));
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_core::definition::{NtpOptions, TaskKind};

    fn task() -> Task {
        Task {
            msm_id: 5,
            af: 4,
            target: "example.net".into(),
            interval: 240,
            spread: 0,
            start_time: None,
            stop_time: None,
            is_oneoff: true,
            kind: TaskKind::Ntp(NtpOptions {
                packets: 3,
                timeout_ms: 100,
            }),
        }
    }

    #[test]
    fn header_has_ripe_common_fields_and_a_v7_id() {
        let m = header(&task(), RunContext { prb_id: 9 }, "ntp");
        assert_eq!(m["type"], "ntp");
        assert_eq!(m["prb_id"], 9);
        assert_eq!(m["msm_id"], 5);
        assert_eq!(m["fw"], PROBE_FW);
        let id = uuid::Uuid::parse_str(m["result_id"].as_str().expect("id")).expect("uuid");
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(ms(Duration::from_micros(1_234_567)), 1234.567);
        let v = dnserr_result(&task(), RunContext { prb_id: 1 }, "ntp", "no such name");
        assert_eq!(v["dnserr"], "no such name");
        let v = timed_out_result(&task(), RunContext { prb_id: 1 }, Duration::from_secs(3));
        assert_eq!(v["err"], "measurement timed out after 3 s");
    }
}
