//! The traceroute measurement: ICMP echo, UDP or TCP SYN probes with increasing TTL,
//! one at a time, through a [`TraceProber`]; reported in the RIPE Atlas traceroute
//! format (`result[]` of `{hop, result: [{from, rtt, size, ttl} | {x: "*"} | {.., err}]}`).
//!
//! Paris traceroute (`paris` > 0) keeps the flow identifiers constant for the run: UDP
//! and TCP use one source and destination port; ICMP keeps the checksum constant by
//! compensating the sequence number in the payload. With `paris` 0 the UDP destination
//! port moves with each probe, as in classic traceroute.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde_json::{json, Value};
use vantage_core::definition::{Task, TraceProtocol, TracerouteOptions};

use crate::common::{self, ms, SocketError};
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
    /// ICMP destination unreachable with this (ICMPv4) code, not the destination's
    /// normal answer. ICMPv6 codes are mapped to their ICMPv4 equivalents.
    Unreachable(u8),
    /// The probe was too big for a link and not to be fragmented (ICMPv4
    /// "fragmentation needed" or ICMPv6 "packet too big"): the next-hop MTU.
    FragNeeded(u32),
}

/// The outcome of one probe.
#[derive(Debug)]
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
    Error(SocketError),
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
            match kind {
                ReplyKind::Unreachable(code) => e["err"] = unreachable_err(*code),
                ReplyKind::FragNeeded(mtu) => e["mtu"] = json!(mtu),
                ReplyKind::TimeExceeded | ReplyKind::Reached => {}
            }
            e
        }
        ProbeReply::Timeout => json!({"x": "*"}),
        ProbeReply::Error(e) => json!({"x": "*", "error": e.to_string()}),
    }
}

/// The flow identifiers of one run, and the probes along it.
pub struct Flow {
    dst: IpAddr,
    ident: u16,
    flow_port: u16,
    paris: bool,
    timeout: Duration,
}

impl Flow {
    pub fn new(dst: IpAddr, opts: &TracerouteOptions) -> Self {
        Self {
            dst,
            ident: rand::random(),
            flow_port: rand::random_range(33_000..60_000),
            paris: opts.paris > 0,
            timeout: Duration::from_millis(u64::from(opts.response_timeout_ms)),
        }
    }

    /// Probe number `seq` of the run, with this TTL.
    pub fn spec(&self, opts: &TracerouteOptions, ttl: u32, seq: u16) -> ProbeSpec {
        ProbeSpec {
            dst: self.dst,
            protocol: opts.protocol,
            ttl: u8::try_from(ttl).unwrap_or(255),
            ident: self.ident,
            seq,
            src_port: if self.paris || opts.protocol == TraceProtocol::Tcp {
                self.flow_port
            } else {
                0
            },
            dst_port: match (opts.protocol, self.paris) {
                (TraceProtocol::Udp, false) => opts.port.wrapping_add(seq),
                _ => opts.port,
            },
            size: opts.size,
            paris: self.paris,
            dont_fragment: opts.dont_fragment,
            timeout: self.timeout,
        }
    }
}

/// Resolve the target and fill in the address fields of `m`; on failure, the
/// RIPE Atlas `dnserr` form (and `None`).
pub async fn resolve_into(task: &Task, m: &mut serde_json::Map<String, Value>) -> Option<IpAddr> {
    match crate::ping::resolve(&task.target, task.af).await {
        Ok(ip) => {
            m.insert("dst_addr".into(), json!(ip.to_string()));
            common::set_source(m, crate::ping::source_addr(ip).await);
            Some(ip)
        }
        Err(e) => {
            let e = e.to_string();
            m.insert("dnserr".into(), json!(e));
            m.insert("result".into(), json!([{"error": e}]));
            m.insert("endtime".into(), json!(crate::unix_now() as i64));
            None
        }
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
    let Some(dst) = resolve_into(task, &mut m).await else {
        return Value::Object(m);
    };
    let flow = Flow::new(dst, opts);
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
            let spec = flow.spec(opts, ttl, seq);
            let reply = prober.probe(&spec).await;
            match &reply {
                ProbeReply::Reply { kind, .. } => {
                    answered = true;
                    if *kind != ReplyKind::TimeExceeded {
                        done = true;
                    }
                }
                ProbeReply::Error(e) => {
                    send_error = Some(e.to_string());
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
/// of `seq`, so that the checksum (and so the flow) is the same for every probe. For
/// ICMPv6 (`v6`) the kernel fills in the checksum (it covers a pseudo-header the
/// socket knows); the complement keeps it constant all the same.
pub fn echo_request(ident: u16, seq: u16, size: u32, paris: bool, v6: bool) -> Vec<u8> {
    let mut p = vec![0u8; 8 + (size as usize).max(2)];
    p[0] = if v6 { 128 } else { 8 };
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    if paris {
        p[8..10].copy_from_slice(&(!seq).to_be_bytes());
    }
    if !v6 {
        let c = checksum(&p);
        p[2..4].copy_from_slice(&c.to_be_bytes());
    }
    p
}

fn word(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// Is the quoted transport header `l4` (protocol `proto`) our probe?
fn quotes_probe(
    proto: u8,
    l4: &[u8],
    spec: &ProbeSpec,
    src_port: u16,
    echo: u8,
    icmp_proto: u8,
) -> Option<bool> {
    Some(match spec.protocol {
        TraceProtocol::Icmp => {
            proto == icmp_proto
                && *l4.first()? == echo
                && word(l4, 4)? == spec.ident
                && word(l4, 6)? == spec.seq
        }
        TraceProtocol::Udp => {
            proto == 17 && word(l4, 0)? == src_port && word(l4, 2)? == spec.dst_port
        }
        TraceProtocol::Tcp => {
            proto == 6 && word(l4, 0)? == src_port && word(l4, 2)? == spec.dst_port
        }
    })
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
    if inner_dst != dst || !quotes_probe(proto, inner.get(ihl2..)?, spec, src_port, 8, 1)? {
        return None;
    }
    let reply = if kind == 11 {
        ReplyKind::TimeExceeded
    } else if code == 4 {
        ReplyKind::FragNeeded(u32::from(word(icmp, 6)?))
    } else if from == dst && (code == 3 || (code == 2 && spec.protocol == TraceProtocol::Icmp)) {
        ReplyKind::Reached
    } else {
        ReplyKind::Unreachable(code)
    };
    Some((from, ttl, size, reply))
}

/// Match an ICMPv6 message (a raw ICMPv6 socket gives no IPv6 header) from `from`
/// against a probe. Returns the message size and what it says.
pub fn match_v6(
    icmp: &[u8],
    from: Ipv6Addr,
    spec: &ProbeSpec,
    dst: Ipv6Addr,
    src_port: u16,
) -> Option<(usize, ReplyKind)> {
    let (kind, code) = (*icmp.first()?, *icmp.get(1)?);
    let size = icmp.len();
    if kind == 129 {
        let ours = spec.protocol == TraceProtocol::Icmp
            && from == dst
            && word(icmp, 4)? == spec.ident
            && word(icmp, 6)? == spec.seq;
        return ours.then_some((size, ReplyKind::Reached));
    }
    // 1 destination unreachable, 2 packet too big, 3 time exceeded.
    if !(1..=3).contains(&kind) {
        return None;
    }
    let inner = icmp.get(8..)?;
    let next_header = *inner.get(6)?;
    let mut octets = [0u8; 16];
    octets.copy_from_slice(inner.get(24..40)?);
    if Ipv6Addr::from(octets) != dst
        || !quotes_probe(next_header, inner.get(40..)?, spec, src_port, 128, 58)?
    {
        return None;
    }
    let reply = match kind {
        3 => ReplyKind::TimeExceeded,
        2 => ReplyKind::FragNeeded(u32::from_be_bytes([
            *icmp.get(4)?,
            *icmp.get(5)?,
            *icmp.get(6)?,
            *icmp.get(7)?,
        ])),
        _ if from == dst && code == 4 => ReplyKind::Reached,
        // ICMPv6 unreachable codes in ICMPv4 terms, for RIPE Atlas's letters.
        _ => ReplyKind::Unreachable(match code {
            0 => 0,          // no route: N
            1 | 5 | 6 => 13, // prohibited, policy, reject route: A
            3 => 1,          // address unreachable: H
            4 => 3,          // port unreachable: p
            other => other,
        }),
    };
    Some((size, reply))
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
                ProbeReply::Error(SocketError::new(
                    "sendto failed",
                    std::io::Error::new(
                        std::io::ErrorKind::NetworkUnreachable,
                        "Network is unreachable",
                    ),
                ))
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
        let a = echo_request(7, 1, 48, true, false);
        let b = echo_request(7, 2, 48, true, false);
        assert_eq!(a[2..4], b[2..4]);
        assert_eq!(checksum(&a), 0, "valid checksum");
        let c = echo_request(7, 1, 48, false, false);
        let d = echo_request(7, 2, 48, false, false);
        assert_ne!(c[2..4], d[2..4]);
    }

    /// A Paris UDP probe, TTL 1, from port 40000 to 33434.
    fn udp_spec(dst: IpAddr) -> ProbeSpec {
        ProbeSpec {
            dst,
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
        }
    }

    #[test]
    fn time_exceeded_for_our_udp_probe_matches() {
        let dst = Ipv4Addr::new(192, 0, 2, 9);
        let spec = udp_spec(IpAddr::V4(dst));
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

    #[test]
    fn fragmentation_needed_reports_the_mtu() {
        let dst = Ipv4Addr::new(192, 0, 2, 9);
        let spec = ProbeSpec {
            protocol: TraceProtocol::Icmp,
            ttl: 2,
            ident: 0x1234,
            seq: 7,
            src_port: 0,
            dst_port: 0,
            size: 1200,
            dont_fragment: true,
            ..udp_spec(IpAddr::V4(dst))
        };
        let mut pkt = vec![
            0x45, 0, 0, 56, 0, 0, 0, 0, 63, 1, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1,
        ];
        // ICMP 3/4 with next-hop MTU 1000 in bytes 6..8.
        pkt.extend_from_slice(&[3, 4, 0, 0, 0, 0, 0x03, 0xe8]);
        pkt.extend_from_slice(&[
            0x45, 0, 0x04, 0xcc, 0, 0, 0x40, 0, 1, 1, 0, 0, 10, 0, 0, 1, 192, 0, 2, 9,
        ]);
        pkt.extend_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 7]);
        let m = match_v4(&pkt, &spec, dst, 0).expect("ours");
        assert_eq!(m.3, ReplyKind::FragNeeded(1000));
        let entry = packet_entry(&ProbeReply::Reply {
            from: IpAddr::V4(m.0),
            rtt: Duration::from_millis(1),
            size: m.2,
            ttl: Some(m.1),
            kind: m.3,
            flags: None,
        });
        assert_eq!(entry["mtu"], 1000);
    }

    #[test]
    fn icmpv6_answers_match_by_quoted_probe() {
        let dst: Ipv6Addr = "2001:db8::9".parse().expect("v6");
        let router: Ipv6Addr = "2001:db8:1::1".parse().expect("v6");
        let mut spec = udp_spec(IpAddr::V6(dst));
        // ICMPv6 time exceeded, quoting an IPv6 header (next header UDP) to dst.
        let mut msg = vec![3, 0, 0, 0, 0, 0, 0, 0];
        let mut ip6 = vec![0x60, 0, 0, 0, 0, 18, 17, 1];
        ip6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().expect("v6").octets());
        ip6.extend_from_slice(&dst.octets());
        msg.extend_from_slice(&ip6);
        msg.extend_from_slice(&[0x9c, 0x40, 0x82, 0x9a, 0, 18, 0, 0]);
        assert_eq!(
            match_v6(&msg, router, &spec, dst, 40000),
            Some((msg.len(), ReplyKind::TimeExceeded))
        );
        assert_eq!(
            match_v6(&msg, router, &spec, dst, 40001),
            None,
            "other flow"
        );
        // Port unreachable from the destination: reached; from a router: "p".
        msg[0] = 1;
        msg[1] = 4;
        assert_eq!(
            match_v6(&msg, dst, &spec, dst, 40000).map(|m| m.1),
            Some(ReplyKind::Reached)
        );
        assert_eq!(
            match_v6(&msg, router, &spec, dst, 40000).map(|m| m.1),
            Some(ReplyKind::Unreachable(3))
        );
        assert_eq!(unreachable_err(3), json!("p"));
        // Packet too big carries the MTU.
        msg[0] = 2;
        msg[1] = 0;
        msg[4..8].copy_from_slice(&1280u32.to_be_bytes());
        assert_eq!(
            match_v6(&msg, router, &spec, dst, 40000).map(|m| m.1),
            Some(ReplyKind::FragNeeded(1280))
        );
        assert_eq!(
            match_v6(&msg[..30], router, &spec, dst, 40000),
            None,
            "truncated"
        );
        // Echo reply for an ICMP probe.
        spec.protocol = TraceProtocol::Icmp;
        let reply = [129, 0, 0, 0, 0, 1, 0, 1, 0, 0];
        assert_eq!(
            match_v6(&reply, dst, &spec, dst, 0).map(|m| m.1),
            Some(ReplyKind::Reached)
        );
        assert_eq!(
            match_v6(&reply, router, &spec, dst, 0),
            None,
            "not from the target"
        );
        assert_eq!(echo_request(1, 1, 8, true, true)[0], 128);
    }
}
