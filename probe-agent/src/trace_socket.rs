//! The real [`TraceProber`]: probes sent through the kernel's sockets.
//!
//! Answers (time exceeded, unreachable, too big, echo replies) are read from a raw
//! ICMP socket (ICMPv4 or ICMPv6; root or CAP_NET_RAW); ICMP probes are sent on it,
//! UDP probes from a datagram socket and TCP probes as a SYN from a non-blocking
//! connect. The TTL (hop limit) is a socket option; `dont_fragment` sets path MTU
//! discovery to "probe" (IP_PMTUDISC_PROBE / IPV6_PMTUDISC_PROBE: the DF bit, or no
//! source fragmentation for IPv6, at the requested size whatever the cached path
//! MTU), through rustix's safe socket-option calls.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Duration;

use rustix::net::sockopt::{self, Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::time::Instant;
use vantage_core::definition::TraceProtocol;

use crate::ping::{EchoOutcome, Pinger, SurgePinger};
use crate::traceroute::{
    echo_request, match_v4, match_v6, ProbeReply, ProbeSpec, ReplyKind, TraceProber,
};

/// The real prober (IPv4 and IPv6).
#[derive(Default)]
pub struct RawProber;

fn raw_icmp(v6: bool) -> std::io::Result<tokio::net::UdpSocket> {
    let s = if v6 {
        Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?
    } else {
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?
    };
    s.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(s))
}

/// Set the TTL (IPv4) or unicast hop limit (IPv6) of a socket.
fn set_hops(sock: SockRef<'_>, v6: bool, ttl: u8) -> Result<(), String> {
    let r = if v6 {
        sock.set_unicast_hops_v6(u32::from(ttl))
    } else {
        sock.set_ttl_v4(u32::from(ttl))
    };
    r.map_err(|e| format!("setsockopt TTL {ttl}: {e}"))
}

/// `dont_fragment`: send at the requested size with DF set (IPv6: never fragment at
/// the source), whatever path MTU the kernel has cached. Without it, IPv4 probes go
/// with DF clear, so that routers fragment them as RIPE Atlas probes' do (Linux would
/// otherwise set DF by default, for its own path MTU discovery).
fn set_fragmentation(sock: impl AsFd, v6: bool, dont_fragment: bool) -> Result<(), String> {
    let r = match (v6, dont_fragment) {
        (true, true) => sockopt::set_ipv6_mtu_discover(sock, Ipv6PathMtuDiscovery::PROBE),
        (true, false) => Ok(()),
        (false, true) => sockopt::set_ip_mtu_discover(sock, Ipv4PathMtuDiscovery::PROBE),
        (false, false) => sockopt::set_ip_mtu_discover(sock, Ipv4PathMtuDiscovery::DONT),
    };
    r.map_err(|e| format!("setsockopt MTU_DISCOVER: {e}"))
}

/// Read ICMP messages until one answers `spec` (the caller bounds the wait).
async fn wait_icmp(
    icmp: &tokio::net::UdpSocket,
    spec: &ProbeSpec,
    src_port: u16,
    sent: Instant,
) -> ProbeReply {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, peer)) = icmp.recv_from(&mut buf).await else {
            return ProbeReply::Error("recvfrom failed on the ICMP socket".into());
        };
        let rtt = sent.elapsed();
        let found = match (spec.dst, peer.ip()) {
            (IpAddr::V4(dst), _) => match_v4(&buf[..n], spec, dst, src_port)
                .map(|(from, ttl, size, kind)| (IpAddr::V4(from), Some(ttl), size, kind)),
            // The hop limit of an ICMPv6 answer needs ancillary data; it is left out.
            (IpAddr::V6(dst), IpAddr::V6(from)) => match_v6(&buf[..n], from, spec, dst, src_port)
                .map(|(size, kind)| (IpAddr::V6(from), None, size, kind)),
            (IpAddr::V6(_), IpAddr::V4(_)) => None,
        };
        if let Some((from, ttl, size, kind)) = found {
            return ProbeReply::Reply {
                from,
                rtt,
                size,
                ttl,
                kind,
                flags: None,
            };
        }
    }
}

/// Wait for the answer to a probe sent at `sent`, at most the probe's timeout.
async fn answer(
    icmp: &tokio::net::UdpSocket,
    spec: &ProbeSpec,
    src_port: u16,
    sent: Instant,
) -> ProbeReply {
    tokio::time::timeout(spec.timeout, wait_icmp(icmp, spec, src_port, sent))
        .await
        .unwrap_or(ProbeReply::Timeout)
}

fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

impl RawProber {
    async fn icmp_probe(
        &self,
        icmp: &tokio::net::UdpSocket,
        spec: &ProbeSpec,
    ) -> Result<ProbeReply, String> {
        let v6 = spec.dst.is_ipv6();
        set_hops(SockRef::from(icmp), v6, spec.ttl)?;
        set_fragmentation(icmp, v6, spec.dont_fragment)?;
        let pkt = echo_request(spec.ident, spec.seq, spec.size, spec.paris, v6);
        let sent = Instant::now();
        icmp.send_to(&pkt, SocketAddr::new(spec.dst, 0))
            .await
            .map_err(|e| format!("sendto failed: {e}"))?;
        Ok(answer(icmp, spec, 0, sent).await)
    }

    async fn udp_probe(
        &self,
        icmp: &tokio::net::UdpSocket,
        spec: &ProbeSpec,
    ) -> Result<ProbeReply, String> {
        let v6 = spec.dst.is_ipv6();
        let any = unspecified(v6);
        let sock = match std::net::UdpSocket::bind((any, spec.src_port)) {
            Ok(s) => s,
            Err(_) => std::net::UdpSocket::bind((any, 0)).map_err(|e| format!("bind: {e}"))?,
        };
        sock.set_nonblocking(true)
            .map_err(|e| format!("socket: {e}"))?;
        set_hops(SockRef::from(&sock), v6, spec.ttl)?;
        set_fragmentation(&sock, v6, spec.dont_fragment)?;
        let sock = tokio::net::UdpSocket::from_std(sock).map_err(|e| format!("socket: {e}"))?;
        let src_port = sock
            .local_addr()
            .map_err(|e| format!("socket: {e}"))?
            .port();
        let mut payload = vec![0u8; spec.size as usize];
        if payload.len() >= 2 {
            payload[..2].copy_from_slice(&spec.seq.to_be_bytes());
        }
        let sent = Instant::now();
        sock.send_to(&payload, SocketAddr::new(spec.dst, spec.dst_port))
            .await
            .map_err(|e| format!("sendto failed: {e}"))?;
        Ok(answer(icmp, spec, src_port, sent).await)
    }

    async fn tcp_probe(
        &self,
        icmp: &tokio::net::UdpSocket,
        spec: &ProbeSpec,
    ) -> Result<ProbeReply, String> {
        let v6 = spec.dst.is_ipv6();
        let target = SocketAddr::new(spec.dst, spec.dst_port);
        let s = Socket::new(
            Domain::for_address(target),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .map_err(|e| format!("socket: {e}"))?;
        set_hops(SockRef::from(&s), v6, spec.ttl)?;
        set_fragmentation(&s, v6, spec.dont_fragment)?;
        s.set_reuse_address(true)
            .map_err(|e| format!("setsockopt: {e}"))?;
        let any = SocketAddr::new(unspecified(v6), 0);
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
            from: spec.dst,
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
                        wait_icmp(icmp, spec, src_port, sent),
                    )
                    .await
                    .unwrap_or_else(|_| ProbeReply::Error(format!("connect: {e}"))),
                },
                r = wait_icmp(icmp, spec, src_port, sent) => r,
            }
        })
        .await;
        Ok(outcome.unwrap_or(ProbeReply::Timeout))
    }

    async fn probe_any(&self, spec: &ProbeSpec) -> Result<ProbeReply, String> {
        let icmp = raw_icmp(spec.dst.is_ipv6()).map_err(|e| format!("raw ICMP socket: {e}"))?;
        match spec.protocol {
            TraceProtocol::Icmp => self.icmp_probe(&icmp, spec).await,
            TraceProtocol::Udp => self.udp_probe(&icmp, spec).await,
            TraceProtocol::Tcp => self.tcp_probe(&icmp, spec).await,
        }
    }
}

impl TraceProber for RawProber {
    async fn probe(&self, spec: &ProbeSpec) -> ProbeReply {
        self.probe_any(spec).await.unwrap_or_else(ProbeReply::Error)
    }
}

/// Ping's ICMP echo over the same raw socket path, timed from just before the send.
///
/// surge-ping reads its clock after the send returns, so a probe preempted between the
/// two reports an RTT shorter than the path (found by the geolocation harness on a
/// loaded machine: up to 34 ms under the truth, which breaks every speed-of-light
/// check). Timing from before the send can only err long, as iputils ping does. Without
/// a raw socket (no root or CAP_NET_RAW) it falls back to surge-ping, which can use the
/// unprivileged ICMP datagram socket.
#[derive(Default)]
pub struct RawPinger {
    seq: std::sync::atomic::AtomicU16,
    fallback: SurgePinger,
}

impl Pinger for RawPinger {
    async fn echo(&self, addr: IpAddr, seq: u16, size: u32, timeout: Duration) -> EchoOutcome {
        if raw_icmp(addr.is_ipv6()).is_err() {
            return self.fallback.echo(addr, seq, size, timeout).await;
        }
        let spec = ProbeSpec {
            dst: addr,
            protocol: TraceProtocol::Icmp,
            ttl: 64,
            ident: rand::random(),
            seq: self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            src_port: 0,
            dst_port: 0,
            size,
            paris: false,
            dont_fragment: false,
            timeout,
        };
        match RawProber.probe(&spec).await {
            ProbeReply::Reply {
                rtt,
                ttl,
                kind: ReplyKind::Reached,
                ..
            } => EchoOutcome::Reply { rtt, ttl },
            // An ICMP error from a router (unreachable, too big): no echo reply.
            ProbeReply::Reply { .. } | ProbeReply::Timeout => EchoOutcome::Timeout,
            ProbeReply::Error(e) => EchoOutcome::Error(e),
        }
    }
}
