//! The ntp measurement: SNTP client requests (RFC 4330, mode 3) reported in the RIPE
//! Atlas ntp format (`origin-ts`, `receive-ts`, `transmit-ts`, `final-ts`, `offset`,
//! `rtt`, all NTP-era seconds).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::{json, Map, Value};
use vantage_core::definition::{NtpOptions, Task};

use crate::common::{self, SocketError};
use crate::ping::RunContext;

/// Seconds from 1900 (NTP era 0) to 1970.
pub const NTP_UNIX_OFFSET: f64 = 2_208_988_800.0;

/// A reply and the local times around it (unix seconds).
#[derive(Clone, Debug, PartialEq)]
pub struct NtpExchange {
    pub reply: Vec<u8>,
    /// When the request left (T1, unix seconds); also its transmit timestamp.
    pub t1: f64,
    /// When the reply arrived (T4, unix seconds).
    pub t4: f64,
}

/// What became of one request.
#[derive(Debug)]
pub enum NtpOutcome {
    Reply(NtpExchange),
    Timeout,
    Error(SocketError),
}

/// Why a reply is not a usable answer to our request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    #[error("reply of {len} bytes is too short")]
    TooShort { len: usize },
    #[error("reply has mode {mode}, not server")]
    NotServer { mode: u8 },
    #[error("reply's origin timestamp is not our request's")]
    NotOurs,
    #[error("kiss-o'-death {code}")]
    KissOfDeath { code: String },
}

/// Sends one SNTP request and waits for the answer to it.
pub trait NtpTransport: Send + Sync + 'static {
    fn query(&self, dst: SocketAddr, timeout: Duration) -> impl Future<Output = NtpOutcome> + Send;
}

/// NTP 64-bit timestamp from NTP-era seconds.
pub fn to_ntp(secs: f64) -> [u8; 8] {
    let whole = secs.floor();
    let frac = ((secs - whole) * 4_294_967_296.0) as u64;
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&(whole as u64 as u32).to_be_bytes());
    out[4..].copy_from_slice(&(frac.min(u64::from(u32::MAX)) as u32).to_be_bytes());
    out
}

fn from_ntp(b: &[u8]) -> f64 {
    let w = |i: usize| f64::from(u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]));
    w(0) + w(4) / 4_294_967_296.0
}

/// A client request (version 4, mode 3) with `t1` (unix seconds) as transmit time.
pub fn request(t1: f64) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = (4 << 3) | 3;
    p[40..48].copy_from_slice(&to_ntp(t1 + NTP_UNIX_OFFSET));
    p
}

/// The header fields of a reply as RIPE Atlas names them.
pub fn header_fields(reply: &[u8]) -> Map<String, Value> {
    let mut m = Map::new();
    let li = match reply[0] >> 6 {
        0 => "no",
        1 => "61",
        2 => "59",
        _ => "unknown",
    };
    let mode = match reply[0] & 7 {
        4 => "server",
        5 => "broadcast",
        1 => "symmetric active",
        2 => "symmetric passive",
        _ => "reserved",
    };
    let stratum = reply[1];
    let ref_id = if stratum <= 1 {
        reply[12..16]
            .iter()
            .take_while(|b| **b != 0)
            .map(|b| char::from(*b))
            .filter(|c| c.is_ascii_graphic())
            .collect::<String>()
    } else {
        format!("{}.{}.{}.{}", reply[12], reply[13], reply[14], reply[15])
    };
    let short = |i: usize| {
        f64::from(u16::from_be_bytes([reply[i], reply[i + 1]]))
            + f64::from(u16::from_be_bytes([reply[i + 2], reply[i + 3]])) / 65_536.0
    };
    m.insert("li".into(), json!(li));
    m.insert("version".into(), json!((reply[0] >> 3) & 7));
    m.insert("mode".into(), json!(mode));
    m.insert("stratum".into(), json!(stratum));
    m.insert("poll".into(), json!(1u64 << (reply[2] & 31).min(17)));
    m.insert(
        "precision".into(),
        json!(2f64.powi(i32::from(reply[3] as i8))),
    );
    m.insert("root-delay".into(), json!(short(4)));
    m.insert("root-dispersion".into(), json!(short(8)));
    m.insert("ref-id".into(), json!(ref_id));
    m.insert("ref-ts".into(), json!(from_ntp(&reply[16..24])));
    m
}

/// One `result[]` entry from an exchange; why not when the reply is not a usable
/// answer to our request.
pub fn sample(ex: &NtpExchange) -> Result<Value, SampleError> {
    let r = &ex.reply;
    if r.len() < 48 {
        return Err(SampleError::TooShort { len: r.len() });
    }
    let mode = r[0] & 7;
    if mode != 4 && mode != 5 {
        return Err(SampleError::NotServer { mode });
    }
    let origin = ex.t1 + NTP_UNIX_OFFSET;
    if to_ntp(origin) != r[24..32] {
        return Err(SampleError::NotOurs);
    }
    if r[1] == 0 {
        let code: String = r[12..16].iter().map(|b| char::from(*b)).collect();
        return Err(SampleError::KissOfDeath { code });
    }
    let t1 = from_ntp(&r[24..32]);
    let t2 = from_ntp(&r[32..40]);
    let t3 = from_ntp(&r[40..48]);
    let t4 = ex.t4 + NTP_UNIX_OFFSET;
    let round6 = |v: f64| (v * 1e6).round() / 1e6;
    Ok(json!({
        "origin-ts": t1,
        "receive-ts": t2,
        "transmit-ts": t3,
        "final-ts": t4,
        "rtt": round6((t4 - t1) - (t3 - t2)),
        "offset": round6(((t2 - t1) + (t3 - t4)) / 2.0),
    }))
}

/// Run one ntp measurement.
pub async fn run_ntp<T: NtpTransport>(
    transport: &T,
    task: &Task,
    opts: &NtpOptions,
    ctx: RunContext,
) -> Value {
    let mut m = common::header(task, ctx, "ntp");
    m.insert("proto".into(), json!("UDP"));
    let dst = match crate::ping::resolve(&task.target, task.af).await {
        Ok(ip) => ip,
        Err(e) => return common::dnserr_result(task, ctx, "ntp", &e.to_string()),
    };
    m.insert("dst_addr".into(), json!(dst.to_string()));
    common::set_source(&mut m, crate::ping::source_addr(dst).await);
    let timeout = Duration::from_millis(u64::from(opts.timeout_ms));
    let mut results = Vec::new();
    let mut header: Option<Map<String, Value>> = None;
    for _ in 0..opts.packets {
        match transport.query(SocketAddr::new(dst, 123), timeout).await {
            NtpOutcome::Reply(ex) => match sample(&ex) {
                Ok(v) => {
                    if header.is_none() {
                        header = Some(header_fields(&ex.reply));
                    }
                    results.push(v);
                }
                Err(e) => results.push(json!({"x": "*", "err": e.to_string()})),
            },
            NtpOutcome::Timeout => results.push(json!({"x": "*"})),
            NtpOutcome::Error(e) => results.push(json!({"x": "*", "err": e.to_string()})),
        }
    }
    if let Some(h) = header {
        m.extend(h);
    }
    m.insert("result".into(), Value::Array(results));
    Value::Object(m)
}

/// The real transport: a UDP socket per request.
#[derive(Default)]
pub struct UdpNtp {
    /// Port to query instead of 123 (tests).
    pub port_override: Option<u16>,
}

impl NtpTransport for UdpNtp {
    async fn query(&self, dst: SocketAddr, timeout: Duration) -> NtpOutcome {
        let dst = SocketAddr::new(dst.ip(), self.port_override.unwrap_or(dst.port()));
        let bind: SocketAddr = match dst.ip() {
            IpAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            IpAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
        };
        let sock = match tokio::net::UdpSocket::bind(bind).await {
            Ok(s) => s,
            Err(e) => return NtpOutcome::Error(SocketError::new("socket", e)),
        };
        if let Err(e) = sock.connect(dst).await {
            return NtpOutcome::Error(SocketError::new("connect", e));
        }
        let t1 = crate::unix_now();
        let req = request(t1);
        if let Err(e) = sock.send(&req).await {
            return NtpOutcome::Error(SocketError::new("sendto", e));
        }
        let wait = async {
            let mut buf = [0u8; 512];
            loop {
                match sock.recv(&mut buf).await {
                    // Only a reply that echoes our transmit time is ours.
                    Ok(n) if n >= 48 && buf[24..32] == req[40..48] => {
                        return Ok((buf[..n].to_vec(), crate::unix_now()))
                    }
                    Ok(_) => continue,
                    Err(e) => return Err(SocketError::new("recvfrom", e)),
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok((reply, t4))) => NtpOutcome::Reply(NtpExchange { reply, t1, t4 }),
            Ok(Err(e)) => NtpOutcome::Error(e),
            Err(_) => NtpOutcome::Timeout,
        }
    }
}

/// A server's reply to `req` received at unix `t2`, sent at `t3` (tests and the SNTP
/// responder in the integration tests).
pub fn server_reply(req: &[u8], t2: f64, t3: f64, stratum: u8) -> [u8; 48] {
    let mut p = [0u8; 48];
    p[0] = (4 << 3) | 4;
    p[1] = stratum;
    p[2] = 4;
    p[3] = (-20i8) as u8;
    p[4..8].copy_from_slice(&[0, 0, 0x10, 0]);
    p[8..12].copy_from_slice(&[0, 0, 0x20, 0]);
    p[12..16].copy_from_slice(b"GPS\0");
    p[16..24].copy_from_slice(&to_ntp(t2 - 10.0 + NTP_UNIX_OFFSET));
    if req.len() >= 48 {
        p[24..32].copy_from_slice(&req[40..48]);
    }
    p[32..40].copy_from_slice(&to_ntp(t2 + NTP_UNIX_OFFSET));
    p[40..48].copy_from_slice(&to_ntp(t3 + NTP_UNIX_OFFSET));
    p
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use vantage_core::definition::TaskKind;

    struct Fake(Mutex<VecDeque<NtpOutcome>>);

    impl NtpTransport for Fake {
        async fn query(&self, _dst: SocketAddr, _t: Duration) -> NtpOutcome {
            self.0
                .lock()
                .expect("lock")
                .pop_front()
                .unwrap_or(NtpOutcome::Timeout)
        }
    }

    fn task(packets: u32) -> (Task, NtpOptions) {
        let o = NtpOptions {
            packets,
            timeout_ms: 500,
        };
        (
            Task {
                msm_id: 9,
                af: 4,
                target: "127.0.0.1".into(),
                interval: 240,
                spread: 0,
                start_time: None,
                stop_time: None,
                is_oneoff: true,
                kind: TaskKind::Ntp(o.clone()),
            },
            o,
        )
    }

    #[tokio::test]
    async fn offsets_and_rtts_follow_rfc_4330() {
        let t1 = 1_700_000_000.25;
        // Server clock 0.5 s ahead; 10 ms each way; 1 ms in the server.
        let reply = server_reply(&request(t1), t1 + 0.010 + 0.5, t1 + 0.011 + 0.5, 1);
        let good = NtpOutcome::Reply(NtpExchange {
            reply: reply.to_vec(),
            t1,
            t4: t1 + 0.021,
        });
        let mut spoofed = reply;
        spoofed[24] ^= 1;
        let bad = NtpOutcome::Reply(NtpExchange {
            reply: spoofed.to_vec(),
            t1,
            t4: t1 + 0.021,
        });
        let fake = Fake(Mutex::new(vec![good, NtpOutcome::Timeout, bad].into()));
        let (task, opts) = task(3);
        let v = run_ntp(&fake, &task, &opts, RunContext { prb_id: 2 }).await;
        assert_eq!(v["type"], "ntp");
        assert_eq!(v["stratum"], 1);
        assert_eq!(v["ref-id"], "GPS");
        assert_eq!(v["li"], "no");
        assert_eq!(v["mode"], "server");
        assert_eq!(v["version"], 4);
        assert_eq!(v["poll"], 16);
        assert_eq!(v["dst_addr"], "127.0.0.1");
        let r = v["result"].as_array().expect("result");
        assert_eq!(r.len(), 3);
        let rtt = r[0]["rtt"].as_f64().expect("rtt");
        let offset = r[0]["offset"].as_f64().expect("offset");
        assert!((rtt - 0.020).abs() < 1e-5, "{rtt}");
        assert!((offset - 0.5).abs() < 1e-5, "{offset}");
        assert!((r[0]["origin-ts"].as_f64().expect("o") - (t1 + NTP_UNIX_OFFSET)).abs() < 1e-6);
        assert_eq!(r[1], json!({"x": "*"}));
        assert_eq!(r[2]["x"], "*");
        assert!(r[2]["err"].as_str().expect("err").contains("origin"));
    }

    #[tokio::test]
    async fn no_reply_at_all_is_stars() {
        let fake = Fake(Mutex::new(VecDeque::new()));
        let (task, opts) = task(2);
        let v = run_ntp(&fake, &task, &opts, RunContext { prb_id: 2 }).await;
        assert_eq!(v["result"], json!([{"x": "*"}, {"x": "*"}]));
        assert!(v.get("stratum").is_none());
    }

    #[tokio::test]
    async fn real_udp_against_a_local_responder() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = server.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let mut buf = [0u8; 100];
            while let Ok((n, from)) = server.recv_from(&mut buf).await {
                let now = crate::unix_now();
                let r = server_reply(&buf[..n], now, now, 2);
                let _ = server.send_to(&r, from).await;
            }
        });
        let (task, opts) = task(2);
        let t = UdpNtp {
            port_override: Some(port),
        };
        let v = run_ntp(&t, &task, &opts, RunContext { prb_id: 2 }).await;
        let r = v["result"].as_array().expect("result");
        assert!(r.iter().all(|x| x.get("rtt").is_some()), "{v}");
        assert_eq!(v["ref-id"], "71.80.83.0");
        assert!(r[0]["offset"].as_f64().expect("o").abs() < 0.01);
    }
}
