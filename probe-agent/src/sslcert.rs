//! The sslcert measurement: a TLS handshake (rustls) that records the server's
//! certificate chain as PEM in `cert[]`, with `ttc` (TCP connect) and `rt` (until the
//! handshake is done), or `alert` / `error`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use vantage_core::definition::{SslcertOptions, Task};

use crate::common::{self, ms, SocketError};
use crate::ping::RunContext;
use crate::tls::BadServerName;

/// A finished handshake.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsSession {
    /// `1.2` or `1.3`.
    pub version: String,
    /// Since the TCP connect started.
    pub rt: Duration,
    /// The chain as sent, DER, leaf first.
    pub certs: Vec<Vec<u8>>,
}

/// Why there is no session.
#[derive(Debug)]
pub enum TlsFailure {
    /// The server sent a fatal alert with this description code.
    Alert(u8),
    Error(TlsError),
}

/// A handshake that failed without an alert; its text is the result's `error`.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The TCP connect failed (`connect: ...`).
    #[error(transparent)]
    Connect(#[from] SocketError),
    #[error("connect: timeout")]
    ConnectTimeout,
    #[error(transparent)]
    Config(#[from] rustls::Error),
    #[error(transparent)]
    ServerName(#[from] BadServerName),
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] std::io::Error),
    #[error("timeout: no TLS handshake within {secs} s")]
    HandshakeTimeout { secs: u64 },
}

/// What a handshake attempt gave.
#[derive(Debug)]
pub struct TlsOutcome {
    pub src_addr: Option<IpAddr>,
    /// TCP connect time, when it connected.
    pub ttc: Option<Duration>,
    pub result: Result<TlsSession, TlsFailure>,
}

/// Performs one TLS handshake.
pub trait TlsProber: Send + Sync + 'static {
    fn handshake(
        &self,
        dst: SocketAddr,
        sni: Option<String>,
        timeout: Duration,
    ) -> impl Future<Output = TlsOutcome> + Send;
}

/// PEM text of one DER certificate (64-character lines).
pub fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----");
    out
}

/// Whole-handshake limit.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// The SNI name for a task: `hostname`, else the target when it is a name.
pub fn sni_for(task: &Task, opts: &SslcertOptions) -> Option<String> {
    opts.hostname.clone().or_else(|| {
        (task.target.parse::<IpAddr>().is_err() && !task.target.is_empty())
            .then(|| task.target.clone())
    })
}

/// Build the RIPE Atlas sslcert result from an outcome.
pub fn build_result(
    task: &Task,
    ctx: RunContext,
    opts: &SslcertOptions,
    dst: IpAddr,
    o: &TlsOutcome,
) -> Value {
    let mut m = common::header(task, ctx, "sslcert");
    m.insert("dst_addr".into(), json!(dst.to_string()));
    m.insert("dst_port".into(), json!(opts.port.to_string()));
    m.insert("method".into(), json!("TLS"));
    common::set_source(&mut m, o.src_addr);
    if let Some(ttc) = o.ttc {
        m.insert("ttc".into(), json!(ms(ttc)));
    }
    match &o.result {
        Ok(s) => {
            m.insert("ver".into(), json!(s.version));
            m.insert("rt".into(), json!(ms(s.rt)));
            m.insert(
                "cert".into(),
                json!(s.certs.iter().map(|c| pem(c)).collect::<Vec<_>>()),
            );
        }
        // RIPE Atlas spells it "decription".
        Err(TlsFailure::Alert(code)) => {
            m.insert("alert".into(), json!({"level": 2, "decription": code}));
        }
        Err(TlsFailure::Error(e)) => {
            m.insert("error".into(), json!(e.to_string()));
        }
    }
    Value::Object(m)
}

/// Run one sslcert measurement.
pub async fn run_sslcert<P: TlsProber>(
    prober: &P,
    task: &Task,
    opts: &SslcertOptions,
    ctx: RunContext,
) -> Value {
    let dst = match crate::ping::resolve(&task.target, task.af).await {
        Ok(ip) => ip,
        Err(e) => {
            let e = e.to_string();
            let mut m = common::header(task, ctx, "sslcert");
            m.insert("dst_port".into(), json!(opts.port.to_string()));
            m.insert("dnserr".into(), json!(e));
            m.insert("error".into(), json!(e));
            return Value::Object(m);
        }
    };
    let o = prober
        .handshake(
            SocketAddr::new(dst, opts.port),
            sni_for(task, opts),
            HANDSHAKE_TIMEOUT,
        )
        .await;
    build_result(task, ctx, opts, dst, &o)
}

/// The real prober: tokio TCP + tokio-rustls.
#[derive(Default)]
pub struct RustlsProber;

impl TlsProber for RustlsProber {
    async fn handshake(
        &self,
        dst: SocketAddr,
        sni: Option<String>,
        timeout: Duration,
    ) -> TlsOutcome {
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        let mut out = TlsOutcome {
            src_addr: None,
            ttc: None,
            result: Err(TlsFailure::Error(TlsError::ConnectTimeout)),
        };
        let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(dst)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                out.src_addr = crate::ping::source_addr(dst.ip()).await;
                out.result = Err(TlsFailure::Error(SocketError::new("connect", e).into()));
                return out;
            }
            Err(_) => {
                out.result = Err(TlsFailure::Error(TlsError::ConnectTimeout));
                return out;
            }
        };
        out.ttc = Some(started.elapsed());
        out.src_addr = tcp.local_addr().ok().map(|a| a.ip());
        let config = match crate::tls::measurement_config(&[]) {
            Ok(c) => c,
            Err(e) => {
                out.result = Err(TlsFailure::Error(e.into()));
                return out;
            }
        };
        let name = match crate::tls::server_name(&sni.unwrap_or_else(|| dst.ip().to_string())) {
            Ok(n) => n,
            Err(e) => {
                out.result = Err(TlsFailure::Error(e.into()));
                return out;
            }
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        match tokio::time::timeout_at(deadline, connector.connect(name, tcp)).await {
            Ok(Ok(stream)) => {
                let (_, conn) = stream.get_ref();
                out.result = Ok(TlsSession {
                    version: crate::tls::version_string(conn.protocol_version()),
                    rt: started.elapsed(),
                    certs: conn
                        .peer_certificates()
                        .map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect())
                        .unwrap_or_default(),
                });
            }
            Ok(Err(e)) => {
                let alert = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .and_then(|re| match re {
                        rustls::Error::AlertReceived(a) => Some(u8::from(*a)),
                        _ => None,
                    });
                out.result = Err(match alert {
                    Some(code) => TlsFailure::Alert(code),
                    None => TlsFailure::Error(TlsError::Handshake(e)),
                });
            }
            Err(_) => {
                out.result = Err(TlsFailure::Error(TlsError::HandshakeTimeout {
                    secs: timeout.as_secs(),
                }));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_core::definition::TaskKind;

    fn task(target: &str, hostname: Option<&str>) -> (Task, SslcertOptions) {
        let o = SslcertOptions {
            port: 443,
            hostname: hostname.map(str::to_owned),
        };
        (
            Task {
                msm_id: 11,
                af: 4,
                target: target.into(),
                interval: 240,
                spread: 0,
                start_time: None,
                stop_time: None,
                is_oneoff: true,
                kind: TaskKind::Sslcert(o.clone()),
            },
            o,
        )
    }

    #[test]
    fn chain_becomes_pem_and_timings_are_ms() {
        let (t, o) = task("192.0.2.1", None);
        let outcome = TlsOutcome {
            src_addr: Some("192.0.2.9".parse().expect("ip")),
            ttc: Some(Duration::from_micros(1500)),
            result: Ok(TlsSession {
                version: "1.3".into(),
                rt: Duration::from_micros(4250),
                certs: vec![vec![1u8; 100], vec![2u8; 3]],
            }),
        };
        let v = build_result(
            &t,
            RunContext { prb_id: 4 },
            &o,
            "192.0.2.1".parse().expect("ip"),
            &outcome,
        );
        assert_eq!(v["type"], "sslcert");
        assert_eq!(v["dst_port"], "443");
        assert_eq!(v["method"], "TLS");
        assert_eq!(v["ver"], "1.3");
        assert_eq!(v["ttc"], 1.5);
        assert_eq!(v["rt"], 4.25);
        let certs = v["cert"].as_array().expect("cert");
        assert_eq!(certs.len(), 2);
        let first = certs[0].as_str().expect("pem");
        assert!(first.starts_with("-----BEGIN CERTIFICATE-----\nAQEB"));
        assert!(first.ends_with("\n-----END CERTIFICATE-----"));
        assert!(first
            .lines()
            .all(|l| l.len() <= 64 || l.starts_with("-----")));
        assert_eq!(sni_for(&t, &o), None);
        let (t2, o2) = task("example.net", None);
        assert_eq!(sni_for(&t2, &o2).as_deref(), Some("example.net"));
        let (t3, o3) = task("192.0.2.1", Some("sni.example"));
        assert_eq!(sni_for(&t3, &o3).as_deref(), Some("sni.example"));
    }

    #[test]
    fn alerts_and_errors_take_ripe_forms() {
        let (t, o) = task("192.0.2.1", None);
        let dst: IpAddr = "192.0.2.1".parse().expect("ip");
        let alert = TlsOutcome {
            src_addr: None,
            ttc: Some(Duration::from_millis(1)),
            result: Err(TlsFailure::Alert(40)),
        };
        let v = build_result(&t, RunContext { prb_id: 4 }, &o, dst, &alert);
        assert_eq!(v["alert"], json!({"level": 2, "decription": 40}));
        assert!(v.get("cert").is_none());
        let err = TlsOutcome {
            src_addr: None,
            ttc: None,
            result: Err(TlsFailure::Error(
                SocketError::new(
                    "connect",
                    std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        "Connection refused",
                    ),
                )
                .into(),
            )),
        };
        let v = build_result(&t, RunContext { prb_id: 4 }, &o, dst, &err);
        assert_eq!(v["error"], "connect: Connection refused");
    }

    #[tokio::test]
    async fn a_stalling_server_gives_a_timeout_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s); // accept, never answer
            }
        });
        let o = RustlsProber
            .handshake(addr, None, Duration::from_millis(300))
            .await;
        assert!(o.ttc.is_some());
        match o.result {
            Err(TlsFailure::Error(e)) => assert!(e.to_string().contains("timeout"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
