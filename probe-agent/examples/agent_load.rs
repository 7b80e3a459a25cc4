//! Agent CPU and RSS with 100 periodic measurements of mixed types.
//!
//! Runs the real scheduler and the real measurement implementations (as `vantage-probe
//! run` does, on a 2-thread runtime) against small servers on 127.0.0.1 started in this
//! process (DNS, HTTP, TLS, NTP responders: their CPU is counted too, so the numbers
//! are an upper bound). 100 tasks: 20 ping, 20 dns, 15 traceroute (ICMP, needs root),
//! 15 http, 15 sslcert, 15 ntp, every task with interval 60 s and spread 60 s (so 100
//! runs a minute, spread over it). Prints CPU % of one core and peak/last RSS.
//!
//! ```sh
//! cargo run --release -p vantage-probe --example agent_load -- 300   # seconds
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vantage_core::definition::{Definition, Task, Timing};
use vantage_probe::measure::Measurements;
use vantage_probe::outbox::Outbox;
use vantage_probe::scheduler::Scheduler;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    (ticks(11) + ticks(12)) / 100.0
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn servers() -> (u16, u16, u16, u16) {
    // DNS on UDP: one A record for anything.
    let dns = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("dns");
    let dns_port = dns.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = dns.recv_from(&mut buf).await {
            let q = &buf[..n];
            let mut end = 12;
            while end < n && q[end] != 0 {
                end += usize::from(q[end]) + 1;
            }
            let mut r = q[..2].to_vec();
            r.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
            r.extend_from_slice(&q[12..(end + 5).min(n)]);
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
            let _ = dns.send_to(&r, peer).await;
        }
    });
    // HTTP.
    let http = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("http");
    let http_port = http.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = http.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            });
        }
    });
    // TLS.
    let ck = self_signed();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![ck.0], ck.1)
    .expect("tls");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let tls = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("tls");
    let tls_port = tls.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = tls.accept().await {
            let a = acceptor.clone();
            tokio::spawn(async move {
                let _ = a.accept(s).await;
            });
        }
    });
    // NTP.
    let ntp = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("ntp");
    let ntp_port = ntp.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = ntp.recv_from(&mut buf).await {
            let now = vantage_probe::unix_now();
            let r = vantage_probe::ntp::server_reply(&buf[..n], now, now, 2);
            let _ = ntp.send_to(&r, peer).await;
        }
    });
    (dns_port, http_port, tls_port, ntp_port)
}

/// A self-signed certificate for the TLS server.
fn self_signed() -> (
    rustls::pki_types::CertificateDer<'static>,
    PrivateKeyDer<'static>,
) {
    let ck = rcgen::generate_simple_self_signed(vec!["vantage.test".to_owned()]).expect("cert");
    (
        ck.cert.der().clone(),
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der())),
    )
}

fn tasks() -> Vec<Task> {
    let mut out = Vec::new();
    let mut add = |n: usize, f: &dyn Fn(&mut Definition)| {
        for _ in 0..n {
            let mut d = Definition {
                target: Some("127.0.0.1".into()),
                interval: Some(60),
                spread: Some(60),
                ..Default::default()
            };
            f(&mut d);
            let id = 1_000_000 + out.len() as u64;
            out.push(d.validate(id, Timing::default()).expect("valid"));
        }
    };
    add(20, &|d| d.kind = "ping".into());
    add(20, &|d| {
        d.kind = "dns".into();
        d.query_argument = Some("vantage.test".into());
        d.timeout = Some(1000);
    });
    add(15, &|d| {
        d.kind = "traceroute".into();
        d.protocol = Some("ICMP".into());
        d.response_timeout = Some(1000);
    });
    add(15, &|d| d.kind = "http".into());
    add(15, &|d| d.kind = "sslcert".into());
    add(15, &|d| {
        d.kind = "ntp".into();
        d.timeout = Some(1000);
    });
    out
}

fn main() {
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(120);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (dns, http, tls, ntp) = servers().await;
        // The fixed ports of each type are redirected to the local servers.
        let mut m = Measurements::real(Arc::new(AtomicU32::new(1)));
        m.dns.port_override = Some(dns);
        m.ntp.port_override = Some(ntp);
        let mut tasks = tasks();
        for t in &mut tasks {
            match &mut t.kind {
                vantage_core::definition::TaskKind::Http(o) => o.port = http,
                vantage_core::definition::TaskKind::Sslcert(o) => o.port = tls,
                _ => {}
            }
        }
        let outbox = Arc::new(Outbox::new(100_000));
        let mut s = Scheduler::new(Arc::new(m), outbox.clone(), 16);
        s.apply(tasks);
        let stats = s.stats();
        // Warm-up: the first minute starts everything; measure after it.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (c0, t0) = (cpu_seconds(), Instant::now());
        let mut peak = 0;
        while t0.elapsed() < Duration::from_secs(secs) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            peak = peak.max(rss_kib("VmRSS:"));
            // The agent would send these upstream; drop them here.
            while outbox.peek().is_some() {
                outbox.pop_sent();
            }
        }
        let cpu = (cpu_seconds() - c0) / t0.elapsed().as_secs_f64() * 100.0;
        println!(
            "{secs} s, 100 tasks: runs {} skipped {} | CPU {cpu:.2}% of one core | RSS last {} KiB, peak {peak} KiB, VmHWM {} KiB",
            stats.runs.load(Ordering::Relaxed),
            stats.skipped.load(Ordering::Relaxed),
            rss_kib("VmRSS:"),
            rss_kib("VmHWM:"),
        );
    });
}
