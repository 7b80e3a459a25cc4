//! HTTP over TLS and sslcert against real local servers (tokio-rustls) with a
//! certificate made in the test (rcgen). No root needed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vantage_core::definition::{Definition, TaskKind, Timing};
use vantage_probe::http::{run_http, HyperClient};
use vantage_probe::ping::RunContext;
use vantage_probe::sslcert::{run_sslcert, RustlsProber};

/// A TLS server for `vantage.test` that answers any request with a small HTTP response.
async fn tls_server() -> (SocketAddr, CertificateDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["vantage.test".to_owned()]).expect("cert");
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                if let Ok(n) = tls.read(&mut buf).await {
                    if n > 0 {
                        let _ = tls
                            .write_all(b"HTTP/1.1 204 No Content\r\nX-Secure: yes\r\n\r\n")
                            .await;
                        let _ = tls.shutdown().await;
                    }
                }
            });
        }
    });
    (addr, cert)
}

fn task(kind: &str, port: u16, f: impl FnOnce(&mut Definition)) -> vantage_core::definition::Task {
    let mut d = Definition {
        kind: kind.into(),
        target: Some("127.0.0.1".into()),
        port: Some(i64::from(port)),
        ..Default::default()
    };
    f(&mut d);
    d.validate(3, Timing::default()).expect("valid")
}

#[tokio::test]
async fn sslcert_records_the_chain_as_pem() {
    let (addr, cert) = tls_server().await;
    let t = task("sslcert", addr.port(), |d| {
        d.hostname = Some("vantage.test".into())
    });
    let TaskKind::Sslcert(o) = &t.kind else {
        panic!()
    };
    let v = run_sslcert(&RustlsProber, &t, o, RunContext { prb_id: 1 }).await;
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(v["ver"], "1.3");
    assert_eq!(v["dst_port"], addr.port().to_string());
    let pem = v["cert"][0].as_str().expect("pem");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("b64");
    assert_eq!(der, cert.as_ref(), "the PEM is the server's certificate");
    assert!(v["rt"].as_f64().expect("rt") >= v["ttc"].as_f64().expect("ttc"));
}

#[tokio::test]
async fn https_request_over_rustls() {
    let (addr, _) = tls_server().await;
    let t = task("http", addr.port(), |d| {
        d.https = Some(true);
        d.header_bytes = Some(100);
    });
    let TaskKind::Http(o) = &t.kind else { panic!() };
    let v = run_http(&HyperClient, &t, o, RunContext { prb_id: 1 }).await;
    let r = &v["result"][0];
    assert_eq!(r["res"], 204, "{v}");
    assert_eq!(v["uri"], format!("https://127.0.0.1:{}/", addr.port()));
    assert!(
        r["header"]
            .as_array()
            .expect("header")
            .iter()
            .any(|h| h == "x-secure: yes"),
        "{v}"
    );
}

#[tokio::test]
async fn a_stalling_tls_server_is_an_error_result() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let t = task("http", port, |d| d.https = Some(true));
    let TaskKind::Http(o) = &t.kind else { panic!() };
    // The request limit is 30 s; run under paused-free real time but cap the wait.
    let v = tokio::time::timeout(
        Duration::from_secs(40),
        run_http(&HyperClient, &t, o, RunContext { prb_id: 1 }),
    )
    .await
    .expect("no hang");
    assert!(
        v["result"][0]["err"]
            .as_str()
            .expect("err")
            .contains("timeout"),
        "{v}"
    );
}
