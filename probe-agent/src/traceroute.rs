//! The traceroute measurement: ICMP echo, UDP or TCP SYN probes with increasing TTL,
//! one at a time, through a [`TraceProber`]; reported in the RIPE Atlas traceroute
//! format (`result[]` of `{hop, result: [{from, rtt, size, ttl} | {x: "*"} | {.., err}]}`).
//!
//! Paris traceroute (`paris` > 0) keeps the flow identifiers constant for the run: UDP
//! and TCP use one source and destination port; ICMP keeps the checksum constant by
//! compensating the sequence number in the payload. With `paris` 0 the UDP destination
//! port moves with each probe, as in classic traceroute.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;
use vantage_core::definition::{Task, TraceProtocol, TracerouteOptions};

use crate::common::{self, ms};
use crate::ping::RunContext;

/// Hops in a row without any reply after which the run gives up.
pub const GAP_LIMIT: u32 = 5;

/// One probe to send.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSpec {
    pub dst: IpAddr,
    pub protocol: TraceProtocol,
    pub ttl: u8,
    /// ICMP identifier.
    pub ident: u16,
    /// Probe sequence number within the run.
    pub seq: u16,
    /// UDP/TCP source port (0: any).
    pub src_port: u16,
    pub dst_port: u16,
    pub size: u32,
    pub paris: bool,
    pub dont_fragment: bool,
    pub timeout: Duration,
}

/// What answered a probe.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyKind {
    /// ICMP time exceeded from a router on the way.
    TimeExceeded,
    /// The destination answered (echo reply, port unreachable, SYN-ACK or RST).
    Reached,
    /// ICMP destination unreachable with this code, not the destination's normal answer.
    Unreachable(u8),
}

/// The outcome of one probe.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeReply {
    Reply {
        from: IpAddr,
        rtt: Duration,
        /// Bytes of the reply (ICMP message).
        size: usize,
        /// TTL of the reply as it arrived.
        ttl: Option<u8>,
        kind: ReplyKind,
        /// TCP flags of the destination's answer (`SA`, `R`).
        flags: Option<String>,
    },
    Timeout,
    /// The probe could not be sent.
    Error(String),
}

/// Sends one probe and waits for its answer.
pub trait TraceProber: Send + Sync + 'static {
    fn probe(&self, spec: &ProbeSpec) -> impl Future<Output = ProbeReply> + Send;
}

/// RIPE Atlas letters for ICMP unreachable codes.
pub fn unreachable_err(code: u8) -> Value {
    match code {
        0 => json!("N"),
        1 => json!("H"),
        2 => json!("P"),
        3 => json!("p"),
        9 | 10 | 13 => json!("A"),
        other => json!(other),
    }
}

/// One `result[]` entry of a hop.
pub fn packet_entry(reply: &ProbeReply) -> Value {
    match reply {
        ProbeReply::Reply {
            from,
            rtt,
            size,
            ttl,
            kind,
            flags,
        } => {
            let mut e = json!({"from": from.to_string(), "rtt": ms(*rtt), "size": size});
            if let Some(ttl) = ttl {
                e["ttl"] = json!(ttl);
            }
            if let Some(flags) = flags {
                e["flags"] = json!(flags);
            }
            if let ReplyKind::Unreachable(code) = kind {
                e["err"] = unreachable_err(*code);
            }
            e
        }
        ProbeReply::Timeout => json!({"x": "*"}),
        ProbeReply::Error(e) => json!({"x": "*", "error": e}),
    }
}

/// Run one traceroute.
pub async fn run_traceroute<P: TraceProber>(
    prober: &P,
    task: &Task,
    opts: &TracerouteOptions,
    ctx: RunContext,
) -> Value {
    let mut m = common::header(task, ctx, "traceroute");
    m.insert("proto".into(), json!(opts.protocol.as_str()));
    m.insert("paris_id".into(), json!(opts.paris));
    m.insert("size".into(), json!(opts.size));
    let dst = match crate::ping::resolve(&task.target, task.af).await {
        Ok(ip) => ip,
        Err(e) => {
            m.insert("dnserr".into(), json!(e));
            m.insert("result".into(), json!([{"error": e}]));
            m.insert("endtime".into(), json!(crate::unix_now() as i64));
            return Value::Object(m);
        }
    };
    m.insert("dst_addr".into(), json!(dst.to_string()));
    common::set_source(&mut m, crate::ping::source_addr(dst).await);
    let paris = opts.paris > 0;
    let ident: u16 = rand::random();
    let flow_port: u16 = rand::random_range(33_000..60_000);
    let timeout = Duration::from_millis(u64::from(opts.response_timeout_ms));
    let mut seq: u16 = 0;
    let mut hops = Vec::new();
    let mut gap = 0;
    for ttl in opts.first_hop..=opts.max_hops {
        let mut entries = Vec::new();
        let mut done = false;
        let mut answered = false;
        let mut send_error = None;
        for _ in 0..opts.packets {
            seq = seq.wrapping_add(1);
            let spec = ProbeSpec {
                dst,
                protocol: opts.protocol,
                ttl: u8::try_from(ttl).unwrap_or(255),
                ident,
                seq,
                src_port: if paris || opts.protocol == TraceProtocol::Tcp {
                    flow_port
                } else {
                    0
                },
                dst_port: match (opts.protocol, paris) {
                    (TraceProtocol::Udp, false) => opts.port.wrapping_add(seq),
                    _ => opts.port,
                },
                size: opts.size,
                paris,
                dont_fragment: opts.dont_fragment,
                timeout,
            };
            let reply = prober.probe(&spec).await;
            match &reply {
                ProbeReply::Reply { kind, .. } => {
                    answered = true;
                    if *kind != ReplyKind::TimeExceeded {
                        done = true;
                    }
                }
                ProbeReply::Error(e) => {
                    send_error = Some(e.clone());
                    break;
                }
                ProbeReply::Timeout => {}
            }
            entries.push(packet_entry(&reply));
        }
        if let Some(e) = send_error {
            hops.push(json!({"hop": ttl, "error": e}));
            break;
        }
        hops.push(json!({"hop": ttl, "result": entries}));
        if done {
            break;
        }
        gap = if answered { 0 } else { gap + 1 };
        if gap >= GAP_LIMIT {
            break;
        }
    }
    m.insert("result".into(), Value::Array(hops));
    m.insert("endtime".into(), json!(crate::unix_now() as i64));
    Value::Object(m)
}

/// Internet checksum.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo request. With `paris`, the first payload word is the one's complement
/// of `seq`, so that the checksum (and so the flow) is the same for every probe.
pub fn echo_request(ident: u16, seq: u16, size: u32, paris: bool) -> Vec<u8> {
    let mut p = vec![0u8; 8 + (size as usize).max(2)];
    p[0] = 8;
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    if paris {
        p[8..10].copy_from_slice(&(!seq).to_be_bytes());
    }
    let c = checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// Match an IPv4 packet (with its IP header, as a raw socket gives it) against a probe.
/// `src_port` is the port the probe was actually sent from.
pub fn match_v4(
    buf: &[u8],
    spec: &ProbeSpec,
    dst: Ipv4Addr,
    src_port: u16,
) -> Option<(Ipv4Addr, u8, usize, ReplyKind)> {
    let ihl = usize::from(buf.first()? & 0x0f) * 4;
    let ttl = *buf.get(8)?;
    let from = Ipv4Addr::new(*buf.get(12)?, *buf.get(13)?, *buf.get(14)?, *buf.get(15)?);
    let icmp = buf.get(ihl..)?;
    let (kind, code) = (*icmp.first()?, *icmp.get(1)?);
    let size = icmp.len();
    let word = |b: &[u8], i: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
    };
    if kind == 0 {
        let ours = spec.protocol == TraceProtocol::Icmp
            && from == dst
            && word(icmp, 4)? == spec.ident
            && word(icmp, 6)? == spec.seq;
        return ours.then_some((from, ttl, size, ReplyKind::Reached));
    }
    if kind != 11 && kind != 3 {
        return None;
    }
    let inner = icmp.get(8..)?;
    let ihl2 = usize::from(inner.first()? & 0x0f) * 4;
    let proto = *inner.get(9)?;
    let inner_dst = Ipv4Addr::new(
        *inner.get(16)?,
        *inner.get(17)?,
        *inner.get(18)?,
        *inner.get(19)?,
    );
    if inner_dst != dst {
        return None;
    }
    let l4 = inner.get(ihl2..)?;
    let ours = match spec.protocol {
        TraceProtocol::Icmp => {
            proto == 1
                && *l4.first()? == 8
                && word(l4, 4)? == spec.ident
                && word(l4, 6)? == spec.seq
        }
        TraceProtocol::Udp => {
            proto == 17 && word(l4, 0)? == src_port && word(l4, 2)? == spec.dst_port
        }
        TraceProtocol::Tcp => {
            proto == 6 && word(l4, 0)? == src_port && word(l4, 2)? == spec.dst_port
        }
    };
    if !ours {
        return None;
    }
    let reply = if kind == 11 {
        ReplyKind::TimeExceeded
    } else if from == dst && (code == 3 || (code == 2 && spec.protocol == TraceProtocol::Icmp)) {
        ReplyKind::Reached
    } else {
        ReplyKind::Unreachable(code)
    };
    Some((from, ttl, size, reply))
}

/// The real prober: a raw ICMPv4 socket (root or CAP_NET_RAW) for answers and ICMP
/// probes, a UDP socket or a TCP connect for UDP and TCP probes. IPv4 only.
#[derive(Default)]
pub struct RawProber;

fn raw_icmp_v4() -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    s.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(s))
}

async fn wait_icmp(
    icmp: &tokio::net::UdpSocket,
    spec: &ProbeSpec,
    dst: Ipv4Addr,
    src_port: u16,
    sent: Instant,
) -> ProbeReply {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, _)) = icmp.recv_from(&mut buf).await else {
            return ProbeReply::Error("recvfrom failed on the ICMP socket".into());
        };
        let rtt = sent.elapsed();
        if let Some((from, ttl, size, kind)) = match_v4(&buf[..n], spec, dst, src_port) {
            return ProbeReply::Reply {
                from: IpAddr::V4(from),
                rtt,
                size,
                ttl: Some(ttl),
                kind,
                flags: None,
            };
        }
    }
}

impl RawProber {
    async fn probe_v4(&self, spec: &ProbeSpec, dst: Ipv4Addr) -> Result<ProbeReply, String> {
        let icmp = raw_icmp_v4().map_err(|e| format!("raw ICMP socket: {e}"))?;
        let target = SocketAddr::new(IpAddr::V4(dst), spec.dst_port);
        let ttl = u32::from(spec.ttl);
        match spec.protocol {
            TraceProtocol::Icmp => {
                icmp.set_ttl(ttl)
                    .map_err(|e| format!("setsockopt IP_TTL: {e}"))?;
                let pkt = echo_request(spec.ident, spec.seq, spec.size, spec.paris);
                let sent = Instant::now();
                icmp.send_to(&pkt, SocketAddr::new(IpAddr::V4(dst), 0))
                    .await
                    .map_err(|e| format!("sendto failed: {e}"))?;
                Ok(
                    tokio::time::timeout(spec.timeout, wait_icmp(&icmp, spec, dst, 0, sent))
                        .await
                        .unwrap_or(ProbeReply::Timeout),
                )
            }
            TraceProtocol::Udp => {
                let sock = match std::net::UdpSocket::bind(("0.0.0.0", spec.src_port)) {
                    Ok(s) => s,
                    Err(_) => std::net::UdpSocket::bind(("0.0.0.0", 0))
                        .map_err(|e| format!("bind: {e}"))?,
                };
                sock.set_nonblocking(true)
                    .map_err(|e| format!("socket: {e}"))?;
                let sock =
                    tokio::net::UdpSocket::from_std(sock).map_err(|e| format!("socket: {e}"))?;
                sock.set_ttl(ttl)
                    .map_err(|e| format!("setsockopt IP_TTL: {e}"))?;
                let src_port = sock
                    .local_addr()
                    .map_err(|e| format!("socket: {e}"))?
                    .port();
                let mut payload = vec![0u8; spec.size as usize];
                if payload.len() >= 2 {
                    payload[..2].copy_from_slice(&spec.seq.to_be_bytes());
                }
                let sent = Instant::now();
                sock.send_to(&payload, target)
                    .await
                    .map_err(|e| format!("sendto failed: {e}"))?;
                Ok(
                    tokio::time::timeout(spec.timeout, wait_icmp(&icmp, spec, dst, src_port, sent))
                        .await
                        .unwrap_or(ProbeReply::Timeout),
                )
            }
            TraceProtocol::Tcp => {
                use socket2::{Domain, Protocol, Socket, Type};
                let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
                    .map_err(|e| format!("socket: {e}"))?;
                s.set_ttl_v4(ttl)
                    .map_err(|e| format!("setsockopt IP_TTL: {e}"))?;
                s.set_reuse_address(true)
                    .map_err(|e| format!("setsockopt: {e}"))?;
                let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
                if s.bind(&SocketAddr::new(any.ip(), spec.src_port).into())
                    .is_err()
                {
                    s.bind(&any.into()).map_err(|e| format!("bind: {e}"))?;
                }
                s.set_nonblocking(true)
                    .map_err(|e| format!("socket: {e}"))?;
                let src_port = s
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .map(|a| a.port())
                    .unwrap_or(0);
                let sock = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(s));
                let sent = Instant::now();
                let reached = |flags: &str| ProbeReply::Reply {
                    from: IpAddr::V4(dst),
                    rtt: sent.elapsed(),
                    size: 0,
                    ttl: None,
                    kind: ReplyKind::Reached,
                    flags: Some(flags.into()),
                };
                let outcome = tokio::time::timeout(spec.timeout, async {
                    tokio::select! {
                        r = sock.connect(target) => match r {
                            Ok(_) => reached("SA"),
                            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => reached("R"),
                            // An ICMP error (e.g. time exceeded) aborts the connect; the
                            // ICMP message itself is waiting on the raw socket.
                            Err(e) => tokio::time::timeout(
                                Duration::from_millis(200),
                                wait_icmp(&icmp, spec, dst, src_port, sent),
                            )
                            .await
                            .unwrap_or_else(|_| ProbeReply::Error(format!("connect: {e}"))),
                        },
                        r = wait_icmp(&icmp, spec, dst, src_port, sent) => r,
                    }
                })
                .await;
                Ok(outcome.unwrap_or(ProbeReply::Timeout))
            }
        }
    }
}

impl TraceProber for RawProber {
    async fn probe(&self, spec: &ProbeSpec) -> ProbeReply {
        match spec.dst {
            IpAddr::V4(dst) => self
                .probe_v4(spec, dst)
                .await
                .unwrap_or_else(ProbeReply::Error),
            IpAddr::V6(_) => {
                ProbeReply::Error("traceroute over IPv6 is not supported by this probe yet".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use vantage_core::definition::{Definition, TaskKind, Timing};

    /// Routers 10.0.0.1..3 then the destination; `silent` hops never answer.
    struct Path {
        routers: Vec<Ipv4Addr>,
        dst: Ipv4Addr,
        silent: Vec<u8>,
        seen: Mutex<Vec<ProbeSpec>>,
    }

    impl TraceProber for Path {
        async fn probe(&self, spec: &ProbeSpec) -> ProbeReply {
            self.seen.lock().expect("lock").push(spec.clone());
            if self.silent.contains(&spec.ttl) {
                return ProbeReply::Timeout;
            }
            let i = usize::from(spec.ttl) - 1;
            let rtt = Duration::from_micros(1000 * u64::from(spec.ttl) + 1);
            match self.routers.get(i) {
                Some(r) => ProbeReply::Reply {
                    from: IpAddr::V4(*r),
                    rtt,
                    size: 76,
                    ttl: Some(64 - spec.ttl),
                    kind: ReplyKind::TimeExceeded,
                    flags: None,
                },
                None => ProbeReply::Reply {
                    from: IpAddr::V4(self.dst),
                    rtt,
                    size: 76,
                    ttl: Some(60),
                    kind: ReplyKind::Reached,
                    flags: None,
                },
            }
        }
    }

    fn trace(f: impl FnOnce(&mut Definition)) -> (Task, TracerouteOptions) {
        let mut d = Definition {
            kind: "traceroute".into(),
            target: Some("192.0.2.9".into()),
            ..Default::default()
        };
        f(&mut d);
        let t = d.validate(77, Timing::default()).expect("valid");
        let TaskKind::Traceroute(o) = t.kind.clone() else {
            panic!()
        };
        (t, o)
    }

    fn path(silent: Vec<u8>) -> Path {
        Path {
            routers: vec![
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
                Ipv4Addr::new(10, 0, 0, 3),
            ],
            dst: Ipv4Addr::new(192, 0, 2, 9),
            silent,
            seen: Mutex::new(Vec::new()),
        }
    }

    #[tokio::test]
    async fn hops_in_order_with_stars_and_stop_at_destination() {
        let p = path(vec![2]);
        let (t, o) = trace(|_| {});
        let v = run_traceroute(&p, &t, &o, RunContext { prb_id: 5 }).await;
        assert_eq!(v["type"], "traceroute");
        assert_eq!(v["proto"], "UDP");
        assert_eq!(v["paris_id"], 16);
        assert_eq!(v["dst_addr"], "192.0.2.9");
        let hops = v["result"].as_array().expect("hops");
        assert_eq!(hops.len(), 4);
        assert_eq!(hops[0]["hop"], 1);
        assert_eq!(
            hops[0]["result"][0],
            json!({"from": "10.0.0.1", "rtt": 1.001, "size": 76, "ttl": 63})
        );
        assert_eq!(
            hops[1]["result"],
            json!([{"x": "*"}, {"x": "*"}, {"x": "*"}])
        );
        assert_eq!(hops[2]["result"][2]["from"], "10.0.0.3");
        assert_eq!(hops[3]["result"][0]["from"], "192.0.2.9");
        assert!(v["endtime"].as_i64().expect("endtime") >= v["timestamp"].as_i64().expect("ts"));
        // Paris: one flow for the whole run.
        let seen = p.seen.lock().expect("lock");
        assert_eq!(seen.len(), 12);
        assert!(seen
            .iter()
            .all(|s| s.src_port == seen[0].src_port && s.dst_port == 33434));
    }

    #[tokio::test]
    async fn classic_mode_moves_the_port_and_first_hop_is_honoured() {
        let p = path(vec![]);
        let (t, o) = trace(|d| {
            d.paris = Some(0);
            d.first_hop = Some(2);
            d.packets = Some(1);
        });
        let v = run_traceroute(&p, &t, &o, RunContext { prb_id: 5 }).await;
        assert_eq!(v["result"][0]["hop"], 2);
        let seen = p.seen.lock().expect("lock");
        assert_eq!(seen[0].ttl, 2);
        assert_ne!(seen[0].dst_port, seen[1].dst_port);
    }

    #[tokio::test]
    async fn silence_stops_after_the_gap_limit_and_errors_stop_the_run() {
        let p = path((1..=255).collect());
        let (t, o) = trace(|d| d.max_hops = Some(30));
        let v = run_traceroute(&p, &t, &o, RunContext { prb_id: 5 }).await;
        assert_eq!(
            v["result"].as_array().expect("hops").len(),
            GAP_LIMIT as usize
        );

        struct Broken;
        impl TraceProber for Broken {
            async fn probe(&self, _: &ProbeSpec) -> ProbeReply {
                ProbeReply::Error("sendto failed: Network is unreachable".into())
            }
        }
        let v = run_traceroute(&Broken, &t, &o, RunContext { prb_id: 5 }).await;
        assert_eq!(
            v["result"],
            json!([{"hop": 1, "error": "sendto failed: Network is unreachable"}])
        );
    }

    #[test]
    fn unreachable_codes_use_ripe_letters() {
        let r = ProbeReply::Reply {
            from: "10.0.0.1".parse().expect("ip"),
            rtt: Duration::from_millis(2),
            size: 56,
            ttl: Some(250),
            kind: ReplyKind::Unreachable(13),
            flags: None,
        };
        assert_eq!(packet_entry(&r)["err"], "A");
        assert_eq!(unreachable_err(0), json!("N"));
        assert_eq!(unreachable_err(1), json!("H"));
        assert_eq!(unreachable_err(4), json!(4));
    }

    #[test]
    fn paris_echo_keeps_its_checksum() {
        let a = echo_request(7, 1, 48, true);
        let b = echo_request(7, 2, 48, true);
        assert_eq!(a[2..4], b[2..4]);
        assert_eq!(checksum(&a), 0, "valid checksum");
        let c = echo_request(7, 1, 48, false);
        let d = echo_request(7, 2, 48, false);
        assert_ne!(c[2..4], d[2..4]);
    }

    #[test]
    fn time_exceeded_for_our_udp_probe_matches() {
        let dst = Ipv4Addr::new(192, 0, 2, 9);
        let spec = ProbeSpec {
            dst: IpAddr::V4(dst),
            protocol: TraceProtocol::Udp,
            ttl: 1,
            ident: 1,
            seq: 1,
            src_port: 40000,
            dst_port: 33434,
            size: 10,
            paris: true,
            dont_fragment: false,
            timeout: Duration::from_secs(1),
        };
        // Outer IP (20) from 10.0.0.1, ttl 64; ICMP 11/0; inner IP to dst, UDP 40000 -> 33434.
        let mut pkt = vec![
            0x45, 0, 0, 56, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        pkt.extend_from_slice(&[11, 0, 0, 0, 0, 0, 0, 0]);
        pkt.extend_from_slice(&[
            0x45, 0, 0, 38, 0, 0, 0, 0, 1, 17, 0, 0, 10, 0, 0, 2, 192, 0, 2, 9,
        ]);
        pkt.extend_from_slice(&[0x9c, 0x40, 0x82, 0x9a, 0, 18, 0, 0]);
        let m = match_v4(&pkt, &spec, dst, 40000).expect("ours");
        assert_eq!(
            m,
            (Ipv4Addr::new(10, 0, 0, 1), 64, 36, ReplyKind::TimeExceeded)
        );
        assert!(match_v4(&pkt, &spec, dst, 40001).is_none(), "other flow");
        // Port unreachable from the destination: reached.
        pkt[12..16].copy_from_slice(&[192, 0, 2, 9]);
        pkt[20] = 3;
        pkt[21] = 3;
        assert_eq!(
            match_v4(&pkt, &spec, dst, 40000).expect("ours").3,
            ReplyKind::Reached
        );
        pkt[21] = 13;
        assert_eq!(
            match_v4(&pkt, &spec, dst, 40000).expect("ours").3,
            ReplyKind::Unreachable(13)
        );
        assert!(
            match_v4(&pkt[..30], &spec, dst, 40000).is_none(),
            "truncated"
        );
    }
}
