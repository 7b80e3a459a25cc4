//! The ping measurement: ICMP echo through a [`Pinger`], reported as a RIPE Atlas
//! [`PingResult`].

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use surge_ping::{Client, Config, IcmpPacket, PingIdentifier, PingSequence, SurgeError, ICMP};
use tokio::sync::OnceCell;
use vantage_core::definition::{PingOptions, Task, TaskKind};
use vantage_core::result::{PingReply, PingResult, PROBE_FW};

use crate::common::SocketError;
use crate::scheduler::Measure;

/// What became of one echo request.
#[derive(Debug)]
pub enum EchoOutcome {
    Reply {
        rtt: Duration,
        ttl: Option<u8>,
    },
    Timeout,
    /// Could not send, e.g. `sendto failed: Network is unreachable`.
    Error(EchoError),
}

/// Why an echo request could not be sent or its reply not read.
#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error(transparent)]
    Ping(#[from] SurgeError),
}

/// Sends one ICMP echo request and waits for its reply.
pub trait Pinger: Send + Sync + 'static {
    fn echo(
        &self,
        addr: IpAddr,
        seq: u16,
        size: u32,
        timeout: Duration,
    ) -> impl Future<Output = EchoOutcome> + Send;
}

/// The real pinger, on `surge-ping` (an ICMP datagram socket where the kernel allows it,
/// a raw socket otherwise). One socket per address family, shared by all measurements;
/// sequence numbers are allocated here so that concurrent pings never collide.
#[derive(Default)]
pub struct SurgePinger {
    v4: OnceCell<Client>,
    v6: OnceCell<Client>,
    seq: AtomicU16,
}

impl SurgePinger {
    async fn client(&self, addr: IpAddr) -> std::io::Result<&Client> {
        let (cell, kind) = match addr {
            IpAddr::V4(_) => (&self.v4, ICMP::V4),
            IpAddr::V6(_) => (&self.v6, ICMP::V6),
        };
        cell.get_or_try_init(|| async move { Client::new(&Config::builder().kind(kind).build()) })
            .await
    }
}

impl Pinger for SurgePinger {
    async fn echo(&self, addr: IpAddr, _seq: u16, size: u32, timeout: Duration) -> EchoOutcome {
        let client = match self.client(addr).await {
            Ok(c) => c,
            Err(e) => return EchoOutcome::Error(SocketError::new("socket failed", e).into()),
        };
        let mut pinger = client.pinger(addr, PingIdentifier(rand::random())).await;
        pinger.timeout(timeout);
        let seq = PingSequence(self.seq.fetch_add(1, Ordering::Relaxed));
        let payload = vec![0u8; size as usize];
        match pinger.ping(seq, &payload).await {
            Ok((IcmpPacket::V4(p), rtt)) => EchoOutcome::Reply {
                rtt,
                ttl: p.get_ttl(),
            },
            Ok((IcmpPacket::V6(p), rtt)) => EchoOutcome::Reply {
                rtt,
                ttl: Some(p.get_max_hop_limit()),
            },
            Err(SurgeError::Timeout { .. }) => EchoOutcome::Timeout,
            Err(SurgeError::IOError(e)) => {
                EchoOutcome::Error(SocketError::new("sendto failed", e).into())
            }
            Err(e) => EchoOutcome::Error(e.into()),
        }
    }
}

/// Why a target has no address to measure; its text is the result's `dnserr`.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{target} is not an IPv{af} address")]
    WrongFamily { target: String, af: u8 },
    #[error("name resolution failed for {target}: {source}")]
    Lookup {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("name resolution failed for {target}: no IPv{af} address")]
    NoAddress { target: String, af: u8 },
}

/// Resolve `target` to an address of family `af` (4 or 6).
pub async fn resolve(target: &str, af: u8) -> Result<IpAddr, ResolveError> {
    let want_v6 = af == 6;
    if let Ok(ip) = target.parse::<IpAddr>() {
        return if ip.is_ipv6() == want_v6 {
            Ok(ip)
        } else {
            Err(ResolveError::WrongFamily {
                target: target.to_owned(),
                af,
            })
        };
    }
    let addrs = tokio::net::lookup_host((target, 0))
        .await
        .map_err(|source| ResolveError::Lookup {
            target: target.to_owned(),
            source,
        })?;
    addrs
        .map(|sa| sa.ip())
        .find(|ip| ip.is_ipv6() == want_v6)
        .ok_or_else(|| ResolveError::NoAddress {
            target: target.to_owned(),
            af,
        })
}

/// The local address the kernel would use to reach `dst` (UDP `connect`, nothing sent).
pub async fn source_addr(dst: IpAddr) -> Option<IpAddr> {
    let bind: SocketAddr = match dst {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
    sock.connect((dst, 9)).await.ok()?;
    sock.local_addr().ok().map(|a| a.ip())
}

pub(crate) fn round3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// What a run reports about itself beyond the task.
#[derive(Clone, Copy, Debug)]
pub struct RunContext {
    pub prb_id: u32,
}

/// Run one ping measurement and build its RIPE Atlas result.
pub async fn run_ping<P: Pinger>(
    pinger: &P,
    task: &Task,
    opts: &PingOptions,
    ctx: RunContext,
) -> PingResult {
    let timestamp = crate::unix_now() as i64;
    let mut result = PingResult {
        result_id: uuid::Uuid::now_v7().to_string(),
        fw: PROBE_FW,
        lts: -1,
        msm_id: task.msm_id,
        prb_id: ctx.prb_id,
        timestamp,
        kind: "ping".into(),
        af: task.af,
        from: String::new(),
        src_addr: String::new(),
        dst_addr: String::new(),
        dst_name: task.target.clone(),
        proto: "ICMP".into(),
        size: opts.size,
        step: (!task.is_oneoff).then_some(task.interval),
        ttl: None,
        sent: 0,
        rcvd: 0,
        dup: 0,
        min: -1.0,
        avg: -1.0,
        max: -1.0,
        result: Vec::new(),
    };
    let dst = match resolve(&task.target, task.af).await {
        Ok(ip) => ip,
        Err(error) => {
            tracing::info!(msm_id = task.msm_id, %error, "ping target did not resolve");
            result.result.push(PingReply::Error {
                error: error.to_string(),
            });
            result.summarise();
            return result;
        }
    };
    result.dst_addr = dst.to_string();
    if let Some(src) = source_addr(dst).await {
        result.src_addr = src.to_string();
        result.from = src.to_string();
    }
    let spacing = Duration::from_millis(u64::from(opts.packet_interval_ms));
    let timeout = spacing.max(Duration::from_secs(1));
    for i in 0..opts.packets {
        let sent_at = tokio::time::Instant::now();
        let seq = u16::try_from(i).unwrap_or(u16::MAX);
        let reply = match pinger.echo(dst, seq, opts.size, timeout).await {
            EchoOutcome::Reply { rtt, ttl } => PingReply::Rtt {
                rtt: round3(rtt.as_secs_f64() * 1000.0),
                ttl,
            },
            EchoOutcome::Timeout => PingReply::timeout(),
            EchoOutcome::Error(e) => PingReply::Error {
                error: e.to_string(),
            },
        };
        result.result.push(reply);
        if i + 1 < opts.packets {
            tokio::time::sleep_until(sent_at + spacing).await;
        }
    }
    result.summarise();
    result
}

/// The ping [`Measure`]: runs tasks with a [`Pinger`] and stamps the probe id.
pub struct PingMeasure<P> {
    pub pinger: P,
    /// The probe id from the latest registration (0 before the first one).
    pub prb_id: Arc<AtomicU32>,
}

impl<P: Pinger> Measure for PingMeasure<P> {
    async fn run(&self, task: &Task) -> Option<Value> {
        let TaskKind::Ping(opts) = &task.kind else {
            tracing::warn!(
                msm_id = task.msm_id,
                kind = task.kind.type_name(),
                "not a ping task"
            );
            return None;
        };
        let ctx = RunContext {
            prb_id: self.prb_id.load(Ordering::Relaxed),
        };
        let result = run_ping(&self.pinger, task, opts, ctx).await;
        tracing::debug!(
            msm_id = task.msm_id,
            sent = result.sent,
            rcvd = result.rcvd,
            avg = result.avg,
            "ping done"
        );
        match serde_json::to_value(&result) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::error!(error = %e, "could not serialise a ping result");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;

    struct FakePinger {
        script: Mutex<VecDeque<EchoOutcome>>,
        calls: Mutex<Vec<(IpAddr, u16, u32, Duration)>>,
    }

    impl FakePinger {
        fn new(script: Vec<EchoOutcome>) -> Self {
            Self {
                script: Mutex::new(script.into()),
                calls: Mutex::new(Vec::new()),
            }
        }
    }

    impl Pinger for FakePinger {
        async fn echo(&self, addr: IpAddr, seq: u16, size: u32, timeout: Duration) -> EchoOutcome {
            self.calls
                .lock()
                .expect("lock")
                .push((addr, seq, size, timeout));
            self.script
                .lock()
                .expect("lock")
                .pop_front()
                .unwrap_or(EchoOutcome::Timeout)
        }
    }

    fn task(target: &str, af: u8, packets: u32, oneoff: bool) -> (Task, PingOptions) {
        let opts = PingOptions {
            packets,
            size: 48,
            packet_interval_ms: 1000,
        };
        let task = Task {
            msm_id: 1_000_001,
            af,
            target: target.into(),
            interval: 240,
            spread: 0,
            start_time: None,
            stop_time: None,
            is_oneoff: oneoff,
            kind: TaskKind::Ping(opts.clone()),
        };
        (task, opts)
    }

    #[tokio::test(start_paused = true)]
    async fn builds_ripe_result_from_replies_timeouts_and_errors() {
        let pinger = FakePinger::new(vec![
            EchoOutcome::Reply {
                rtt: Duration::from_micros(1_234_567),
                ttl: Some(64),
            },
            EchoOutcome::Timeout,
            EchoOutcome::Reply {
                rtt: Duration::from_micros(3_000),
                ttl: Some(64),
            },
            EchoOutcome::Error(
                SocketError::new(
                    "sendto failed",
                    std::io::Error::new(
                        std::io::ErrorKind::NetworkUnreachable,
                        "Network is unreachable",
                    ),
                )
                .into(),
            ),
        ]);
        let (task, opts) = task("127.0.0.1", 4, 4, false);
        let started = tokio::time::Instant::now();
        let r = run_ping(&pinger, &task, &opts, RunContext { prb_id: 7 }).await;
        // Packets are spaced by packet_interval_ms.
        assert!(started.elapsed() >= Duration::from_secs(3));
        assert_eq!((r.sent, r.rcvd, r.dup), (4, 2, 0));
        assert_eq!(r.min, 3.0);
        assert_eq!(r.max, 1234.567);
        assert_eq!(r.avg, 618.784); // (1234.567 + 3) / 2 = 618.7835
        assert_eq!(r.ttl, Some(64));
        assert_eq!(r.step, Some(240));
        assert_eq!(
            (r.prb_id, r.msm_id, r.fw, r.lts),
            (7, 1_000_001, PROBE_FW, -1)
        );
        assert_eq!(
            (r.dst_addr.as_str(), r.dst_name.as_str(), r.proto.as_str()),
            ("127.0.0.1", "127.0.0.1", "ICMP")
        );
        assert_eq!(r.src_addr, "127.0.0.1");
        assert_eq!(r.from, r.src_addr);
        assert!(
            uuid::Uuid::parse_str(&r.result_id)
                .expect("uuid")
                .get_version_num()
                == 7
        );

        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["type"], "ping");
        assert_eq!(
            json["result"][0],
            serde_json::json!({"rtt": 1234.567, "ttl": 64})
        );
        assert_eq!(json["result"][1], serde_json::json!({"x": "*"}));
        assert_eq!(
            json["result"][3],
            serde_json::json!({"error": "sendto failed: Network is unreachable"})
        );
        // The controller's envelope check accepts it.
        vantage_core::result::Envelope::from_value(json).expect("envelope");

        let calls = pinger.calls.lock().expect("lock");
        assert_eq!(calls.len(), 4);
        assert_eq!(calls[2].1, 2);
        assert_eq!(calls[0].2, 48);
        assert_eq!(calls[0].3, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn all_timeouts_give_minus_one_and_oneoff_has_no_step() {
        let pinger = FakePinger::new(vec![]);
        let (task, opts) = task("127.0.0.1", 4, 3, true);
        let r = run_ping(&pinger, &task, &opts, RunContext { prb_id: 1 }).await;
        assert_eq!(
            (r.sent, r.rcvd, r.min, r.avg, r.max),
            (3, 0, -1.0, -1.0, -1.0)
        );
        assert_eq!(r.step, None);
        assert!(r.result.iter().all(|x| *x == PingReply::timeout()));
        let json = serde_json::to_value(&r).expect("json");
        assert!(json["step"].is_null());
    }

    #[tokio::test]
    async fn unresolvable_target_gives_an_error_entry() {
        let pinger = FakePinger::new(vec![]);
        let (task, opts) = task("127.0.0.1", 6, 3, false);
        let r = run_ping(&pinger, &task, &opts, RunContext { prb_id: 1 }).await;
        assert!(pinger.calls.lock().expect("lock").is_empty());
        assert_eq!(r.dst_addr, "");
        assert_eq!(r.dst_name, "127.0.0.1");
        assert!(
            matches!(&r.result[..], [PingReply::Error { error }] if error.contains("not an IPv6"))
        );
        assert_eq!((r.rcvd, r.min), (0, -1.0));
    }

    #[tokio::test]
    async fn resolves_localhost_by_family() {
        assert_eq!(
            resolve("127.0.0.1", 4).await.expect("v4 literal"),
            IpAddr::from([127, 0, 0, 1])
        );
        assert_eq!(
            resolve("::1", 6).await.expect("v6 literal"),
            IpAddr::from(Ipv6Addr::LOCALHOST)
        );
        assert!(matches!(
            resolve("::1", 4).await,
            Err(ResolveError::WrongFamily { af: 4, .. })
        ));
        assert!(resolve("localhost", 4)
            .await
            .expect("localhost")
            .is_loopback());
    }

    /// A real ICMP echo to 127.0.0.1 (needs root or ping_group_range).
    #[tokio::test]
    async fn surge_pinger_pings_loopback() {
        let pinger = SurgePinger::default();
        let (mut task, opts) = task("127.0.0.1", 4, 3, false);
        task.kind = TaskKind::Ping(PingOptions {
            packet_interval_ms: 20,
            ..opts
        });
        let TaskKind::Ping(opts) = task.kind.clone() else {
            panic!("ping task")
        };
        let r = run_ping(&pinger, &task, &opts, RunContext { prb_id: 1 }).await;
        assert!(r.rcvd > 0, "no replies from 127.0.0.1: {:?}", r.result);
        assert!(r.max < 50.0, "{r:?}");
        assert_eq!(r.src_addr, "127.0.0.1");
    }
}
