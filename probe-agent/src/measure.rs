//! Dispatch: one [`Measure`] for every measurement type, each run under a hard time
//! limit, and `measure --once` (run a definition here and now, print the result).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use vantage_core::definition::{Definition, InvalidField, Task, TaskKind, Timing};

use crate::common;
use crate::dns::{self, DnsTransport, SocketDns};
use crate::http::{self, HttpClient, HyperClient};
use crate::mtr;
use crate::ntp::{self, NtpTransport, UdpNtp};
use crate::ping::{self, Pinger, RunContext};
use crate::scheduler::Measure;
use crate::sslcert::{self, RustlsProber, TlsProber};
use crate::trace_socket::{RawPinger, RawProber};
use crate::traceroute::{self, TraceProber};

/// The I/O behind each type.
pub struct Measurements<
    P = RawPinger,
    T = RawProber,
    D = SocketDns,
    H = HyperClient,
    S = RustlsProber,
    N = UdpNtp,
> {
    pub pinger: P,
    pub tracer: T,
    pub dns: D,
    pub http: H,
    pub tls: S,
    pub ntp: N,
    /// The probe id from the latest registration (0 before the first one).
    pub prb_id: Arc<AtomicU32>,
}

impl Measurements {
    /// The real implementations.
    pub fn real(prb_id: Arc<AtomicU32>) -> Self {
        Self {
            pinger: RawPinger::default(),
            tracer: RawProber,
            dns: SocketDns::default(),
            http: HyperClient,
            tls: RustlsProber,
            ntp: UdpNtp::default(),
            prb_id,
        }
    }
}

/// The hard limit on one run of `task`: what the options allow plus slack. A run
/// that goes over it is cancelled and reported as an error.
pub fn hard_timeout(task: &Task) -> Duration {
    let slack = Duration::from_secs(5);
    let ms = |v: u64| Duration::from_millis(v);
    match &task.kind {
        TaskKind::Ping(o) => {
            ms(u64::from(o.packets) * u64::from(o.packet_interval_ms.max(1000))) + slack
        }
        TaskKind::Traceroute(o) | TaskKind::Mtr(o) => {
            let hops = u64::from(o.max_hops.saturating_sub(o.first_hop) + 1);
            (ms(hops * u64::from(o.packets) * u64::from(o.response_timeout_ms)) + slack)
                .min(Duration::from_secs(900))
        }
        TaskKind::Dns(o) => {
            let servers = if o.use_probe_resolver { 4 } else { 1 };
            ms(servers * u64::from(o.retry + 1) * u64::from(o.timeout_ms)) + slack
        }
        TaskKind::Http(_) => http::REQUEST_TIMEOUT + slack,
        TaskKind::Sslcert(_) => sslcert::HANDSHAKE_TIMEOUT + slack,
        TaskKind::Ntp(o) => ms(u64::from(o.packets) * u64::from(o.timeout_ms)) + slack,
    }
}

impl<P: Pinger, T: TraceProber, D: DnsTransport, H: HttpClient, S: TlsProber, N: NtpTransport>
    Measurements<P, T, D, H, S, N>
{
    /// Run `task` once, under its hard limit, and return its RIPE Atlas result.
    pub async fn run_task(&self, task: &Task) -> Value {
        let ctx = RunContext {
            prb_id: self.prb_id.load(Ordering::Relaxed),
        };
        let limit = hard_timeout(task);
        let run = async {
            match &task.kind {
                TaskKind::Ping(o) => {
                    serde_json::to_value(ping::run_ping(&self.pinger, task, o, ctx).await)
                        .unwrap_or(Value::Null)
                }
                TaskKind::Traceroute(o) => {
                    traceroute::run_traceroute(&self.tracer, task, o, ctx).await
                }
                TaskKind::Mtr(o) => mtr::run_mtr(&self.tracer, task, o, ctx).await,
                TaskKind::Dns(o) => {
                    let resolvers = if o.use_probe_resolver {
                        dns::probe_resolvers()
                    } else {
                        Vec::new()
                    };
                    dns::run_dns(&self.dns, task, o, ctx, &resolvers).await
                }
                TaskKind::Http(o) => http::run_http(&self.http, task, o, ctx).await,
                TaskKind::Sslcert(o) => sslcert::run_sslcert(&self.tls, task, o, ctx).await,
                TaskKind::Ntp(o) => ntp::run_ntp(&self.ntp, task, o, ctx).await,
            }
        };
        match tokio::time::timeout(limit, run).await {
            Ok(v) => v,
            Err(_) => {
                tracing::warn!(
                    msm_id = task.msm_id,
                    kind = task.kind.type_name(),
                    ?limit,
                    "measurement over its hard limit; cancelled"
                );
                common::timed_out_result(task, ctx, limit)
            }
        }
    }
}

impl<P: Pinger, T: TraceProber, D: DnsTransport, H: HttpClient, S: TlsProber, N: NtpTransport>
    Measure for Measurements<P, T, D, H, S, N>
{
    async fn run(&self, task: &Task) -> Option<Value> {
        let v = self.run_task(task).await;
        tracing::debug!(
            msm_id = task.msm_id,
            kind = task.kind.type_name(),
            "measurement done"
        );
        (!v.is_null()).then_some(v)
    }
}

/// Why `measure --once` could not run a definition.
#[derive(Debug, thiserror::Error)]
pub enum OnceError {
    #[error("definition is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid definition: {0}")]
    Invalid(#[from] InvalidField),
}

/// Validate a RIPE Atlas definition (JSON; an optional `msm_id` is taken as the
/// measurement id) and run it once here, with the real implementations.
pub async fn measure_once(definition: &str, prb_id: u32) -> Result<Value, OnceError> {
    let raw: Value = serde_json::from_str(definition)?;
    let msm_id = raw.get("msm_id").and_then(Value::as_u64).unwrap_or(0);
    let def: Definition = serde_json::from_value(raw)?;
    let task = def.validate(
        msm_id,
        Timing {
            is_oneoff: true,
            ..Timing::default()
        },
    )?;
    let m = Measurements::real(Arc::new(AtomicU32::new(prb_id)));
    Ok(m.run_task(&task).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn once_refuses_bad_definitions_and_runs_good_ones() {
        let err = measure_once(r#"{"type":"dns","target":"127.0.0.1","query_argument":"x.example","query_type":"BOGUS"}"#, 1)
            .await
            .expect_err("bad qtype");
        assert!(err.to_string().contains("spec.query_type"), "{err}");
        assert!(measure_once("{", 1).await.is_err());
        // Nothing listens on 127.0.0.1:1: an HTTP error result, fast.
        let v = measure_once(
            r#"{"type":"http","target":"127.0.0.1","port":1,"msm_id":5}"#,
            9,
        )
        .await
        .expect("runs");
        assert_eq!(v["msm_id"], 5);
        assert_eq!(v["prb_id"], 9);
        assert!(v["result"][0]["err"].is_string(), "{v}");
    }

    #[test]
    fn hard_limits_cover_the_options() {
        let d = Definition {
            kind: "traceroute".into(),
            target: Some("192.0.2.1".into()),
            ..Default::default()
        };
        let t = d.validate(1, Timing::default()).expect("valid");
        assert_eq!(hard_timeout(&t), Duration::from_secs(32 * 3 * 4 + 5));
        let d = Definition {
            kind: "ntp".into(),
            target: Some("192.0.2.1".into()),
            ..Default::default()
        };
        let t = d.validate(1, Timing::default()).expect("valid");
        assert_eq!(hard_timeout(&t), Duration::from_secs(17));
    }
}
