//! The real [`TraceProber`]: probes sent through the kernel's sockets.
//!
//! Answers (time exceeded, unreachable, too big, echo replies) are read from a raw
//! ICMP socket (ICMPv4 or ICMPv6; root or CAP_NET_RAW); ICMP probes are sent on it,
//! UDP probes from a datagram socket and TCP probes as a SYN from a non-blocking
//! connect. The TTL (hop limit) is a socket option; `dont_fragment` sets path MTU
//! discovery to "probe" (IP_PMTUDISC_PROBE / IPV6_PMTUDISC_PROBE: the DF bit, or no
//! source fragmentation for IPv6, at the requested size whatever the cached path
//! MTU), through rustix's safe socket-option calls.
//!
//! Timing: a probe's time of sending is the kernel's software transmit timestamp
//! (`SO_TIMESTAMPING` with `SOF_TIMESTAMPING_TX_SOFTWARE`, read back from the socket's
//! error queue), or, where the driver gives none, the clock read just before the send;
//! the answer's time is the kernel's receive timestamp (`SO_TIMESTAMPNS`). Both are read
//! with nix's safe `recvmsg`. So neither the probe's scheduling, its send path nor a late
//! tokio wake-up lengthens an RTT, and nothing can shorten one. Without a receive
//! timestamp the time of the read is used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, SystemTime};

use nix::sys::socket::{self as nsock, ControlMessageOwned, MsgFlags, SockaddrStorage};

use rustix::net::sockopt::{self, Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::time::Instant;
use vantage_core::definition::TraceProtocol;

use crate::common::{socket_error, SocketError};
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
    nsock::setsockopt(&s, nsock::sockopt::ReceiveTimestampns, &true)
        .map_err(std::io::Error::from)?;
    enable_tx_stamps(&s);
    tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(s))
}

/// Set the TTL (IPv4) or unicast hop limit (IPv6) of a socket.
fn set_hops(sock: SockRef<'_>, v6: bool, ttl: u8) -> Result<(), SocketError> {
    let r = if v6 {
        sock.set_unicast_hops_v6(u32::from(ttl))
    } else {
        sock.set_ttl_v4(u32::from(ttl))
    };
    r.map_err(|e| SocketError::new(format!("setsockopt TTL {ttl}"), e))
}

/// `dont_fragment`: send at the requested size with DF set (IPv6: never fragment at
/// the source), whatever path MTU the kernel has cached. Without it, IPv4 probes go
/// with DF clear, so that routers fragment them as RIPE Atlas probes' do (Linux would
/// otherwise set DF by default, for its own path MTU discovery).
fn set_fragmentation(sock: impl AsFd, v6: bool, dont_fragment: bool) -> Result<(), SocketError> {
    let r = match (v6, dont_fragment) {
        (true, true) => sockopt::set_ipv6_mtu_discover(sock, Ipv6PathMtuDiscovery::PROBE),
        (true, false) => Ok(()),
        (false, true) => sockopt::set_ip_mtu_discover(sock, Ipv4PathMtuDiscovery::PROBE),
        (false, false) => sockopt::set_ip_mtu_discover(sock, Ipv4PathMtuDiscovery::DONT),
    };
    r.map_err(|e| SocketError::new("setsockopt MTU_DISCOVER", e.into()))
}

/// When a probe left: the monotonic clock for timeouts and fallbacks, the wall clock to
/// compare with the kernel's receive timestamp.
#[derive(Clone, Copy, Debug)]
struct Sent {
    at: Instant,
    wall: SystemTime,
}

impl Sent {
    fn now() -> Self {
        Self {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// The kernel's transmit timestamp, when there is one, and not before the clock read
    /// that preceded the send (a clock step would make it so).
    fn transmitted(&mut self, tx: Option<SystemTime>) {
        if let Some(tx) = tx.filter(|tx| *tx >= self.wall) {
            self.wall = tx;
        }
    }

    /// The RTT of an answer the kernel stamped at `rx` (read at `Instant::now()`).
    fn rtt(&self, rx: Option<SystemTime>) -> Duration {
        rx.and_then(|rx| rx.duration_since(self.wall).ok())
            // A clock step between send and receive: the monotonic clock instead.
            .filter(|d| *d <= self.at.elapsed())
            .unwrap_or_else(|| self.at.elapsed())
    }
}

/// Ask the kernel for software transmit timestamps on `sock` (best effort: without
/// them the send time is the clock read before the send).
fn enable_tx_stamps(sock: &impl AsFd) {
    use nsock::TimestampingFlag as F;
    let flags = F::SOF_TIMESTAMPING_TX_SOFTWARE
        | F::SOF_TIMESTAMPING_SOFTWARE
        | F::SOF_TIMESTAMPING_OPT_TSONLY;
    if let Err(e) = nsock::setsockopt(sock, nsock::sockopt::Timestamping, &flags) {
        tracing::debug!(error = %e, "no transmit timestamps");
    }
}

/// The kernel's transmit timestamp of the packet just sent on `fd`, from the error
/// queue; the driver stamps it as the packet leaves, usually before `sendto` returns.
async fn tx_stamp(fd: std::os::fd::RawFd) -> Option<SystemTime> {
    for _ in 0..3 {
        let mut cmsg = nix::cmsg_space!(nsock::Timestamps, [u8; 64]);
        let mut buf = [0u8; 64];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        match nsock::recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_ERRQUEUE) {
            Ok(msg) => {
                let stamp = msg.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|m| match m {
                        ControlMessageOwned::ScmTimestampsns(ts) => wall(ts.system),
                        _ => None,
                    })
                });
                if stamp.is_some() {
                    return stamp;
                }
            }
            Err(nix::errno::Errno::EAGAIN) => tokio::task::yield_now().await,
            Err(_) => return None,
        }
    }
    None
}

fn wall(ts: nix::sys::time::TimeSpec) -> Option<SystemTime> {
    let secs = u64::try_from(ts.tv_sec()).ok()?;
    let nanos = u32::try_from(ts.tv_nsec()).ok()?;
    (secs > 0).then(|| SystemTime::UNIX_EPOCH + Duration::new(secs, nanos))
}

/// One `recvmsg` on a ready socket: bytes, sender and the kernel's receive time.
fn recv_stamped(
    sock: &tokio::net::UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<IpAddr>, Option<SystemTime>)> {
    // Room for SCM_TIMESTAMPNS and the SCM_TIMESTAMPING that transmit stamps bring along.
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec, nsock::Timestamps);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = nsock::recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .map_err(std::io::Error::from)?;
    let stamp = msg.cmsgs().ok().and_then(|mut c| {
        c.find_map(|m| match m {
            ControlMessageOwned::ScmTimestampns(ts) => wall(ts),
            _ => None,
        })
    });
    let from = msg.address.and_then(|a| {
        a.as_sockaddr_in()
            .map(|s| IpAddr::V4(s.ip()))
            .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
    });
    Ok((msg.bytes, from, stamp))
}

/// Read ICMP messages until one answers `spec` (the caller bounds the wait).
async fn wait_icmp(
    icmp: &tokio::net::UdpSocket,
    spec: &ProbeSpec,
    src_port: u16,
    sent: Sent,
) -> ProbeReply {
    let mut buf = [0u8; 1500];
    loop {
        if let Err(e) = icmp.readable().await {
            return ProbeReply::Error(SocketError::new("poll failed on the ICMP socket", e));
        }
        let (n, peer, stamp) = match icmp.try_io(tokio::io::Interest::READABLE, || {
            recv_stamped(icmp, &mut buf)
        }) {
            Ok((n, Some(peer), stamp)) => (n, peer, stamp),
            Ok((_, None, _)) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                return ProbeReply::Error(SocketError::new("recvmsg failed on the ICMP socket", e))
            }
        };
        let rtt = sent.rtt(stamp);
        let found = match (spec.dst, peer) {
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
    sent: Sent,
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
    ) -> Result<ProbeReply, SocketError> {
        let v6 = spec.dst.is_ipv6();
        set_hops(SockRef::from(icmp), v6, spec.ttl)?;
        set_fragmentation(icmp, v6, spec.dont_fragment)?;
        let pkt = echo_request(spec.ident, spec.seq, spec.size, spec.paris, v6);
        let mut sent = Sent::now();
        icmp.send_to(&pkt, SocketAddr::new(spec.dst, 0))
            .await
            .map_err(socket_error("sendto failed"))?;
        sent.transmitted(tx_stamp(icmp.as_raw_fd()).await);
        Ok(answer(icmp, spec, 0, sent).await)
    }

    async fn udp_probe(
        &self,
        icmp: &tokio::net::UdpSocket,
        spec: &ProbeSpec,
    ) -> Result<ProbeReply, SocketError> {
        let v6 = spec.dst.is_ipv6();
        let any = unspecified(v6);
        let sock = match std::net::UdpSocket::bind((any, spec.src_port)) {
            Ok(s) => s,
            Err(_) => std::net::UdpSocket::bind((any, 0)).map_err(socket_error("bind"))?,
        };
        sock.set_nonblocking(true).map_err(socket_error("socket"))?;
        set_hops(SockRef::from(&sock), v6, spec.ttl)?;
        set_fragmentation(&sock, v6, spec.dont_fragment)?;
        enable_tx_stamps(&sock);
        let sock = tokio::net::UdpSocket::from_std(sock).map_err(socket_error("socket"))?;
        let src_port = sock.local_addr().map_err(socket_error("socket"))?.port();
        let mut payload = vec![0u8; spec.size as usize];
        if payload.len() >= 2 {
            payload[..2].copy_from_slice(&spec.seq.to_be_bytes());
        }
        let mut sent = Sent::now();
        sock.send_to(&payload, SocketAddr::new(spec.dst, spec.dst_port))
            .await
            .map_err(socket_error("sendto failed"))?;
        sent.transmitted(tx_stamp(sock.as_raw_fd()).await);
        Ok(answer(icmp, spec, src_port, sent).await)
    }

    async fn tcp_probe(
        &self,
        icmp: &tokio::net::UdpSocket,
        spec: &ProbeSpec,
    ) -> Result<ProbeReply, SocketError> {
        let v6 = spec.dst.is_ipv6();
        let target = SocketAddr::new(spec.dst, spec.dst_port);
        let s = Socket::new(
            Domain::for_address(target),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .map_err(socket_error("socket"))?;
        set_hops(SockRef::from(&s), v6, spec.ttl)?;
        set_fragmentation(&s, v6, spec.dont_fragment)?;
        s.set_reuse_address(true)
            .map_err(socket_error("setsockopt"))?;
        let any = SocketAddr::new(unspecified(v6), 0);
        if s.bind(&SocketAddr::new(any.ip(), spec.src_port).into())
            .is_err()
        {
            s.bind(&any.into()).map_err(socket_error("bind"))?;
        }
        s.set_nonblocking(true).map_err(socket_error("socket"))?;
        let src_port = s
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(|a| a.port())
            .unwrap_or(0);
        let sock = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(s));
        let sent = Sent::now();
        let reached = |flags: &str| ProbeReply::Reply {
            from: spec.dst,
            rtt: sent.at.elapsed(),
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
                    .unwrap_or_else(|_| ProbeReply::Error(SocketError::new("connect", e))),
                },
                r = wait_icmp(icmp, spec, src_port, sent) => r,
            }
        })
        .await;
        Ok(outcome.unwrap_or(ProbeReply::Timeout))
    }

    async fn probe_any(&self, spec: &ProbeSpec) -> Result<ProbeReply, SocketError> {
        let icmp = raw_icmp(spec.dst.is_ipv6()).map_err(socket_error("raw ICMP socket"))?;
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
    /// Whether raw ICMP sockets can be opened, per family (v4, v6), found out once.
    raw_ok: [std::sync::OnceLock<bool>; 2],
    fallback: SurgePinger,
}

impl Pinger for RawPinger {
    async fn echo(&self, addr: IpAddr, seq: u16, size: u32, timeout: Duration) -> EchoOutcome {
        let v6 = addr.is_ipv6();
        if !*self.raw_ok[usize::from(v6)].get_or_init(|| raw_icmp(v6).is_ok()) {
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
            ProbeReply::Error(e) => EchoOutcome::Error(e.into()),
        }
    }
}
