//! Each connection limit of `vantage_platform::http::serve`, on real sockets with short
//! settings: header timeout, idle timeout (distinct from it), body timeout, connection
//! cap, header size, and `413` before the body is read.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vantage_platform::http::{
    refuse_declared_over, serve, CloseReason, DeclaredLimit, HttpLimits, HttpMetrics, PlainTcp,
};

const MS: Duration = Duration::from_millis(1);

fn too_large(declared: u64, max: u64) -> Response {
    let msg = format!("body of {declared} bytes exceeds {max} bytes");
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        Json(serde_json::json!({ "error": msg })),
    )
        .into_response()
}

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/echo",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .layer(axum::middleware::from_fn_with_state(
            DeclaredLimit {
                max_bytes: 1024,
                too_large,
            },
            refuse_declared_over,
        ))
}

fn limits(header_ms: u64, idle_ms: u64, body_ms: u64) -> HttpLimits {
    HttpLimits {
        header_timeout: Duration::from_millis(header_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        body_timeout: Duration::from_millis(body_ms),
        ..HttpLimits::default()
    }
}

async fn start(limits: HttpLimits) -> (SocketAddr, HttpMetrics) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let metrics = HttpMetrics::default();
    let m = metrics.clone();
    tokio::spawn(async move { serve(listener, app(), limits, PlainTcp, m).await });
    (addr, metrics)
}

/// Read until the peer closes (EOF or reset); what came and how long it took.
async fn until_closed(s: &mut TcpStream, within: Duration) -> (Vec<u8>, Duration) {
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, t0.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("connection still open after {within:?}"),
        }
    }
}

/// One response: status and body (by Content-Length).
async fn response(s: &mut TcpStream) -> (u16, String, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while got.len() < end + 4 + len {
                let n = s.read(&mut buf).await.expect("read body");
                assert!(n > 0, "closed inside a body");
                got.extend_from_slice(&buf[..n]);
            }
            let status = head[9..12].parse().expect("status");
            let body = String::from_utf8_lossy(&got[end + 4..end + 4 + len]).to_string();
            return (status, head, body);
        }
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .expect("read");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

#[tokio::test]
async fn the_header_timeout_closes_silent_partial_and_trickling_clients() {
    let (addr, metrics) = start(limits(400, 10_000, 10_000)).await;
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut partial = TcpStream::connect(addr).await.expect("connect");
    partial
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
        .await
        .expect("write");
    let mut trickle = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = trickle.split();
    let feeding = async {
        // One byte every 50 ms: always active, never done.
        for b in b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(50 * MS).await;
        }
    };
    let closed = async {
        let mut buf = [0u8; 64];
        let t0 = Instant::now();
        let _ = tokio::time::timeout(Duration::from_secs(3), rd.read(&mut buf)).await;
        t0.elapsed()
    };
    let (_, trickle_took) = tokio::join!(feeding, closed);
    let (_, silent_took) = until_closed(&mut silent, Duration::from_secs(3)).await;
    let (_, partial_took) = until_closed(&mut partial, Duration::from_secs(3)).await;
    assert!(
        trickle_took < 1500 * MS,
        "trickling client held {trickle_took:?}"
    );
    assert!(
        silent_took < 1500 * MS,
        "silent client held {silent_took:?}"
    );
    assert!(
        partial_took < 1500 * MS,
        "partial client held {partial_took:?}"
    );
    assert_eq!(metrics.closed_by(CloseReason::header_timeout), 3);
    assert_eq!(metrics.closed_by(CloseReason::idle_timeout), 0);
    // A complete request in time is answered.
    let mut ok = TcpStream::connect(addr).await.expect("connect");
    ok.write_all(GET).await.expect("write");
    assert_eq!(response(&mut ok).await.0, 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_gets_the_idle_timeout_not_the_header_timeout() {
    // Header timeout shorter than the idle time: an idle connection outlives it.
    let (addr, metrics) = start(limits(300, 1500, 10_000)).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(GET).await.expect("write");
    assert_eq!(response(&mut s).await.0, 200);
    tokio::time::sleep(900 * MS).await;
    s.write_all(GET).await.expect("write");
    assert_eq!(
        response(&mut s).await.0,
        200,
        "kept alive past the header timeout"
    );
    let (_, took) = until_closed(&mut s, Duration::from_secs(4)).await;
    assert!(
        took > 1200 * MS && took < 2500 * MS,
        "idle close after {took:?}"
    );
    assert_eq!(metrics.closed_by(CloseReason::idle_timeout), 1);
    assert_eq!(metrics.closed_by(CloseReason::header_timeout), 0);

    // Idle timeout shorter than the header timeout: an idle connection leaves sooner.
    let (addr, metrics) = start(limits(3000, 300, 10_000)).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(GET).await.expect("write");
    assert_eq!(response(&mut s).await.0, 200);
    let (_, took) = until_closed(&mut s, Duration::from_secs(4)).await;
    assert!(took < 1200 * MS, "idle close after {took:?}");
    assert_eq!(metrics.closed_by(CloseReason::idle_timeout), 1);
    assert_eq!(metrics.closed_by(CloseReason::header_timeout), 0);
}

#[tokio::test]
async fn a_body_trickled_byte_by_byte_is_cut_at_the_body_timeout() {
    let (addr, metrics) = start(limits(5000, 5000, 600)).await;
    // A whole body in time is read.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .expect("write");
    let (status, _, body) = response(&mut s).await;
    assert_eq!((status, body.as_str()), (200, "5"));

    let mut s = TcpStream::connect(addr).await.expect("connect");
    let t0 = Instant::now();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n")
        .await
        .expect("write");
    let (mut rd, mut wr) = s.split();
    let feeding = async {
        for _ in 0..100 {
            if wr.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(100 * MS).await;
        }
    };
    let closed = async {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut got)).await;
        (got, t0.elapsed())
    };
    let (_, (got, took)) = tokio::join!(feeding, closed);
    assert!(
        got.is_empty(),
        "no answer: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(took < 2 * Duration::from_secs(1), "body held {took:?}");
    assert_eq!(metrics.closed_by(CloseReason::body_timeout), 1);
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_counted() {
    let (addr, metrics) = start(HttpLimits {
        max_connections: 2,
        ..limits(5000, 5000, 5000)
    })
    .await;
    let a = TcpStream::connect(addr).await.expect("connect");
    let _b = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(200 * MS).await;
    assert_eq!(metrics.open.get(), 2);
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let (got, took) = until_closed(&mut c, Duration::from_secs(2)).await;
    assert!(got.is_empty() && took < 500 * MS, "{took:?}");
    assert_eq!(metrics.closed_by(CloseReason::max_connections), 1);
    drop(a);
    tokio::time::sleep(200 * MS).await;
    assert_eq!(metrics.open.get(), 1);
    let mut d = TcpStream::connect(addr).await.expect("connect");
    d.write_all(GET).await.expect("write");
    assert_eq!(response(&mut d).await.0, 200);
}

#[tokio::test]
async fn an_oversized_declared_body_gets_413_before_a_byte_of_it() {
    let (addr, _) = start(limits(5000, 5000, 5000)).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n\r\n")
        .await
        .expect("write");
    let t0 = Instant::now();
    let (status, head, body) = response(&mut s).await;
    assert_eq!(status, 413);
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["error"], "body of 10000000 bytes exceeds 1024 bytes");

    // A client that sends the whole body before reading still gets the 413, not a reset.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let body = vec![b'x'; 300_000];
    let mut req = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    s.write_all(&req)
        .await
        .expect("the server reads the whole body");
    assert_eq!(response(&mut s).await.0, 413);
}

#[tokio::test]
async fn headers_over_the_limit_get_431() {
    let (addr, _) = start(HttpLimits {
        max_header_bytes: 4096,
        ..limits(5000, 5000, 5000)
    })
    .await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let big = "a".repeat(8000);
    s.write_all(format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    assert_eq!(response(&mut s).await.0, 431);
}
