use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use russh::server::{Auth, Msg, Session};
use russh::Channel;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::*;

fn limits(start: u32, rate: u32, full: u32, per_source: u32) -> PreAuthLimits {
    PreAuthLimits {
        grace: Duration::from_secs(30),
        startups: MaxStartups { start, rate, full },
        per_source,
    }
}

fn v4(last: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(192, 0, 2, last), 40000))
}

#[test]
fn max_startups_parses_as_openssh_writes_it() {
    assert_eq!(
        "10:30:100".parse::<MaxStartups>().expect("parses"),
        MaxStartups {
            start: 10,
            rate: 30,
            full: 100
        }
    );
    assert_eq!(
        "50".parse::<MaxStartups>().expect("parses"),
        MaxStartups {
            start: 50,
            rate: 100,
            full: 50
        }
    );
    assert_eq!(MaxStartups::default().to_string(), "200:30:1000");
    for bad in [
        "",
        "1:2",
        "a:30:100",
        "100:30:10",
        "10:130:100",
        "0",
        "1:2:3:4",
    ] {
        let err = bad.parse::<MaxStartups>().expect_err(bad);
        assert!(err.to_string().contains("start:rate:full"), "{err}");
    }
}

#[test]
fn random_early_drop_rises_from_rate_at_start_to_all_at_full() {
    let l = limits(10, 30, 110, 0);
    // Below start: never refused.
    assert_eq!(refusal(&l, 9, 0, false, 0.0), None);
    // At start: refused with probability 30 %.
    assert_eq!(refusal(&l, 10, 0, false, 0.29), Some(Rule::MaxStartups));
    assert_eq!(refusal(&l, 10, 0, false, 0.31), None);
    // Half way: 65 %.
    assert_eq!(refusal(&l, 60, 0, false, 0.64), Some(Rule::MaxStartups));
    assert_eq!(refusal(&l, 60, 0, false, 0.66), None);
    // At full: always.
    assert_eq!(refusal(&l, 110, 0, false, 0.999), Some(Rule::Full));
    // A source that logged in before keeps only its share.
    assert_eq!(refusal(&l, 500, 0, true, 0.0), None);
}

#[test]
fn a_source_that_logged_in_skips_the_random_drop_but_not_its_share() {
    let gate = Gate::new(limits(1, 100, 1, 2), PreAuthMetrics::default());
    let first = gate.admit_with(v4(9), 0.5).expect("first");
    assert_eq!(gate.admit_with(v4(10), 0.5).err(), Some(Rule::Full));
    assert_eq!(
        gate.admit_with(v4(9), 0.5).err(),
        Some(Rule::Full),
        "not known yet"
    );
    first.authenticated();
    let _a = gate.admit_with(v4(1), 0.5).expect("a free slot again");
    let _k1 = gate.admit_with(v4(9), 0.5).expect("known: past full");
    let _k2 = gate.admit_with(v4(9), 0.5).expect("known: past full");
    assert_eq!(gate.admit_with(v4(9), 0.5).err(), Some(Rule::PerSource));
    assert_eq!(gate.admit_with(v4(11), 0.5).err(), Some(Rule::Full));
    // A connection that ends without logging in does not make its source known.
    let g2 = Gate::new(limits(1, 100, 1, 0), PreAuthMetrics::default());
    drop(g2.admit_with(v4(3), 0.5).expect("first"));
    let _x = g2.admit_with(v4(4), 0.5).expect("slot");
    assert_eq!(g2.admit_with(v4(3), 0.5).err(), Some(Rule::Full));
}

#[test]
fn a_source_gets_its_share_and_no_more() {
    let gate = Gate::new(limits(100, 30, 100, 2), PreAuthMetrics::default());
    let a1 = gate.admit_with(v4(1), 0.99).expect("first");
    let _a2 = gate.admit_with(v4(1), 0.99).expect("second");
    assert_eq!(gate.admit_with(v4(1), 0.99).err(), Some(Rule::PerSource));
    // Another source is not affected.
    let _b = gate.admit_with(v4(2), 0.99).expect("other source");
    // Authenticating frees the share once, and dropping afterwards does not free it again.
    a1.authenticated();
    a1.authenticated();
    let _a3 = gate.admit_with(v4(1), 0.99).expect("share freed");
    drop(a1);
    assert_eq!(gate.unauthenticated(), 3);
    assert_eq!(gate.metrics().unauthenticated.get(), 3);
    assert_eq!(gate.metrics().dropped.get("per_source"), 1);
}

#[test]
fn an_ipv6_source_is_its_64() {
    let gate = Gate::new(limits(100, 30, 100, 1), PreAuthMetrics::default());
    let a: Ipv6Addr = "2001:db8:1:2::1".parse().expect("v6");
    let b: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().expect("v6");
    let c: Ipv6Addr = "2001:db8:1:3::1".parse().expect("v6");
    let _t = gate
        .admit_with(SocketAddr::from((a, 1)), 0.5)
        .expect("first");
    assert_eq!(
        gate.admit_with(SocketAddr::from((b, 1)), 0.5).err(),
        Some(Rule::PerSource),
        "same /64"
    );
    gate.admit_with(SocketAddr::from((c, 1)), 0.5)
        .expect("another /64");
    // An IPv4-mapped address counts as its IPv4 address.
    let _m = gate.admit_with(v4(7), 0.5).expect("v4");
    let mapped = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped(), 1));
    assert_eq!(gate.admit_with(mapped, 0.5).err(), Some(Rule::PerSource));
}

#[test]
fn dropping_a_ticket_frees_its_place() {
    let gate = Gate::new(limits(1, 100, 1, 0), PreAuthMetrics::default());
    let t = gate.admit_with(v4(1), 0.5).expect("first");
    assert_eq!(gate.admit_with(v4(2), 0.5).err(), Some(Rule::Full));
    drop(t);
    gate.admit_with(v4(2), 0.5).expect("freed");
    assert_eq!(gate.metrics().unauthenticated.get(), 0);
    assert_eq!(gate.metrics().dropped.get("full"), 1);
}

/// A server that accepts every key and marks its ticket, as the real handlers do.
struct Open {
    ticket: Arc<Ticket>,
}

impl russh::server::Handler for Open {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        _user: &str,
        _key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.ticket.authenticated();
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }
}

struct Client;

impl russh::client::Handler for Client {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

async fn start(limits: PreAuthLimits) -> (SocketAddr, Arc<Gate>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let key = PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519).expect("key");
    let config = Arc::new(russh::server::Config {
        keys: vec![key],
        methods: (&[russh::MethodKind::PublicKey][..]).into(),
        auth_rejection_time: Duration::from_millis(10),
        inactivity_timeout: None,
        ..Default::default()
    });
    let gate = Gate::new(limits, PreAuthMetrics::default());
    let g = gate.clone();
    tokio::spawn(async move { serve(&listener, config, g, |_peer, ticket| Open { ticket }).await });
    (addr, gate)
}

use tokio::net::TcpListener;

/// Connect from the loopback address `127.0.0.<from>`.
async fn raw(addr: SocketAddr, from: u8) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, from), 0)))
        .expect("bind source");
    socket.connect(addr).await.expect("connect")
}

/// Whether the server closed `s` (EOF or reset) within `within`; bytes it sends first
/// (its SSH identification) are read and skipped.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

async fn login(addr: SocketAddr) -> russh::client::Handle<Client> {
    let config = Arc::new(russh::client::Config::default());
    let mut handle = russh::client::connect(config, addr, Client)
        .await
        .expect("ssh connect");
    let key = PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519).expect("key");
    let auth = handle
        .authenticate_publickey("probe", PrivateKeyWithHashAlg::new(Arc::new(key), None))
        .await
        .expect("auth");
    assert!(auth.success());
    handle
}

#[tokio::test]
async fn silent_and_trickling_connections_end_at_the_grace_time_and_a_session_outlives_it() {
    let grace = Duration::from_millis(1500);
    let (addr, gate) = start(PreAuthLimits {
        grace,
        ..PreAuthLimits::default()
    })
    .await;
    let started = Instant::now();
    // One that never sends a byte; one that sends its identification and then trickles.
    let mut silent = raw(addr, 1).await;
    let mut trickle = raw(addr, 1).await;
    trickle
        .write_all(b"SSH-2.0-slow\r\n")
        .await
        .expect("write id");
    let trickling = tokio::spawn(async move {
        for _ in 0..10 {
            if trickle.write_all(b"\0").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        closed_within(&mut trickle, Duration::from_millis(10)).await
    });
    // A real client logs in within the grace time and keeps its session past it.
    let session = login(addr).await;
    assert!(
        closed_within(&mut silent, grace * 2).await,
        "silent one kept"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= grace - Duration::from_millis(100),
        "closed early: {elapsed:?}"
    );
    assert!(trickling.await.expect("join"), "trickling one kept");
    assert!(!session.is_closed(), "authenticated session ended");
    let channel = session
        .channel_open_session()
        .await
        .expect("session still works");
    drop(channel);
    assert_eq!(gate.metrics().dropped.get("grace"), 2);
    assert_eq!(gate.unauthenticated(), 0);
}

#[tokio::test]
async fn refused_connections_close_at_once_and_other_sources_still_log_in() {
    let (addr, gate) = start(PreAuthLimits {
        grace: Duration::from_secs(30),
        startups: MaxStartups {
            start: 1000,
            rate: 30,
            full: 1000,
        },
        per_source: 3,
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(raw(addr, 2).await);
    }
    // Wait until the server accepted the three.
    for _ in 0..100 {
        if gate.unauthenticated() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gate.unauthenticated(), 3);
    let mut fourth = raw(addr, 2).await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), fourth.read(&mut buf))
        .await
        .expect("closed at once")
        .unwrap_or(0);
    assert_eq!(n, 0, "the refused connection got SSH bytes");
    assert_eq!(gate.metrics().dropped.get("per_source"), 1);
    // 127.0.0.1 is another source.
    let session = login(addr).await;
    assert!(!session.is_closed());
    for s in &mut held {
        assert!(
            !closed_within(s, Duration::from_millis(50)).await,
            "held one closed early"
        );
    }
}
