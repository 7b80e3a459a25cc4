//! The API on real sockets: results streamed from ClickHouse 18.16 (`CLICKHOUSE_URL`),
//! the OONI routes over a real `fastpath`, live results from NATS (`NATS_URL`), and
//! HTTPS with a certificate made here. The ClickHouse and NATS tests are skipped when
//! their variable is unset; the TLS test always runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use vantage_api::catalog::EmptyCatalog;
use vantage_api::live::{Live, NatsLive};
use vantage_api::rows::{ClickHouseRows, Rows};
use vantage_api::{router, AppState, Metrics};
use vantage_platform::store::{FastpathRow, ResultRow, Store};

fn state(rows: Arc<dyn Rows>, live: Option<Arc<dyn Live>>) -> Arc<AppState> {
    Arc::new(AppState {
        catalog: Arc::new(EmptyCatalog),
        rows,
        live,
        stream: None,
        scheme: "http",
        public_url: None,
        create_timeout: Duration::from_secs(1),
        max_requested: 1000,
        metrics: Metrics::default(),
        console: Arc::new(vantage_api::console::EmbeddedAssets),
        engines: None,
    })
}

async fn serve_http(state: Arc<AppState>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    addr
}

/// GET `path` over `io`; the response with its body still streaming.
async fn get_on<IO>(io: IO, path: &str) -> hyper::Response<Incoming>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("request");
    send.send_request(req).await.expect("response")
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let resp = get_on(TcpStream::connect(addr).await.expect("connect"), path).await;
    let status = resp.status().as_u16();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
}

fn ping_row(msm_id: u64, prb_id: u32, ts: u32, n: usize) -> ResultRow {
    let raw = json!({"result_id": format!("r-{prb_id}-{ts}-{n}"), "fw": 5020, "lts": -1, "msm_id": msm_id, "prb_id": prb_id,
        "timestamp": ts, "type": "ping", "af": 4, "from": "192.0.2.1", "src_addr": "192.0.2.1", "dst_addr": "192.0.2.9",
        "dst_name": "192.0.2.9", "proto": "ICMP", "sent": 1, "rcvd": 1, "dup": 0, "min": 1.5, "avg": 1.5, "max": 1.5,
        "size": 48, "ttl": 64, "step": null, "result": [{"rtt": 1.5}]});
    let env = vantage_core::result::Envelope::from_value(raw).expect("envelope");
    ResultRow::from_envelope(&env, 1_700_000_000).expect("row")
}

fn fastpath(uid: &str, cc: &str, ts: u32, anomaly: u8, confirmed: u8, failure: u8) -> FastpathRow {
    FastpathRow {
        measurement_uid: uid.into(),
        report_id: format!("report-{uid}"),
        input: "https://example.org/".into(),
        probe_cc: cc.into(),
        probe_asn: 30722,
        test_name: "web_connectivity".into(),
        test_start_time: ts,
        measurement_start_time: ts,
        scores: "{\"blocking_general\":0.0}".into(),
        anomaly,
        confirmed,
        msm_failure: failure,
        domain: "example.org".into(),
        software_name: "ooniprobe".into(),
        software_version: "3.20".into(),
        blocking_type: String::new(),
        reason: String::new(),
    }
}

#[tokio::test]
async fn results_and_fastpath_from_clickhouse() {
    let Some(url) =
        vantage_testkit::stack_var("CLICKHOUSE_URL", "results_and_fastpath_from_clickhouse")
    else {
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let db = format!(
        "vantage_api_test_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000
    );
    let store = Store::new(&url, &db).expect("store");
    store.migrate().await.expect("migrate");

    // 3 probes × 400 results of msm 4242, one result delivered twice, and another measurement.
    let mut rows = Vec::new();
    for prb in 1..=3u32 {
        for i in 0..400u32 {
            rows.push(ping_row(4242, prb, 1_714_521_600 + i * 60, 0));
        }
    }
    rows.push(ping_row(4242, 2, 1_714_521_600, 0));
    rows.push(ping_row(9999, 1, 1_714_521_600, 0));
    store.insert_results(&rows).await.expect("insert results");
    store
        .insert_fastpath(&[
            fastpath("u1", "IT", 1_714_521_600, 1, 0, 0),
            fastpath("u2", "IT", 1_714_525_200, 1, 1, 0),
            fastpath("u3", "DE", 1_714_611_600, 0, 0, 1),
            fastpath("u4", "IT", 1_714_611_700, 0, 0, 0),
        ])
        .await
        .expect("insert fastpath");

    let addr = serve_http(state(Arc::new(ClickHouseRows::new(&url, &db)), None)).await;
    let (status, body) = get(addr, "/api/v2/measurements/4242/results/").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let all: Vec<Value> = serde_json::from_slice(&body).expect("one JSON array");
    assert_eq!(
        all.len(),
        1200,
        "every result once (FINAL drops the duplicate)"
    );
    assert!(all
        .iter()
        .all(|r| r["msm_id"] == 4242 && r["type"] == "ping"));

    let (_, body) = get(
        addr,
        "/api/v2/measurements/4242/results/?probe_ids=2,3&start=1714521600&stop=1714522200",
    )
    .await;
    let some: Vec<Value> = serde_json::from_slice(&body).expect("array");
    assert_eq!(some.len(), 2 * 11, "two probes, 11 minutes inclusive");
    assert!(some.iter().all(|r| r["prb_id"] != 1));

    let (_, body) = get(
        addr,
        "/api/v2/measurements/4242/results/?format=txt&probe_ids=1",
    )
    .await;
    let text = String::from_utf8(body).expect("utf-8");
    assert_eq!(text.lines().count(), 400);
    assert!(text
        .lines()
        .all(|l| serde_json::from_str::<Value>(l).is_ok()));

    let (_, body) = get(addr, "/api/v2/measurements/4242/latest/").await;
    let latest: Vec<Value> = serde_json::from_slice(&body).expect("array");
    let newest: Vec<(u64, u64)> = latest
        .iter()
        .map(|r| {
            (
                r["prb_id"].as_u64().unwrap_or(0),
                r["timestamp"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        newest,
        [(1, 1_714_545_540), (2, 1_714_545_540), (3, 1_714_545_540)]
    );

    // No rows and no Measurement resource: 404 (rows without a resource are served:
    // the results of a deleted measurement stay readable, as 4242's above).
    let (status, body) = get(addr, "/api/v2/measurements/5555/results/").await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));

    // OONI search and aggregation over fastpath.
    let (status, body) = get(
        addr,
        "/api/v1/measurements?probe_cc=IT&anomaly=true&limit=1&order=asc",
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["metadata"]["count"], 2);
    assert_eq!(v["metadata"]["pages"], 2);
    assert_eq!(v["results"][0]["measurement_uid"], "u1");
    assert_eq!(
        v["results"][0]["measurement_start_time"],
        "2024-05-01T00:00:00Z"
    );
    assert!(v["metadata"]["next_url"]
        .as_str()
        .is_some_and(|u| u.contains("offset=1")));
    let (_, body) = get(addr, "/api/v1/measurements?since=2024-05-02&failure=true").await;
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["results"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["results"][0]["probe_cc"], "DE");

    let (status, body) = get(
        addr,
        "/api/v1/aggregation?axis_x=measurement_start_day&axis_y=probe_cc",
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["dimension_count"], 2);
    let cells: BTreeMap<(String, String), Value> = v["result"]
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| {
            (
                (
                    c["measurement_start_day"].as_str().unwrap_or("").to_owned(),
                    c["probe_cc"].as_str().unwrap_or("").to_owned(),
                ),
                c.clone(),
            )
        })
        .collect();
    let it1 = &cells[&("2024-05-01".to_owned(), "IT".to_owned())];
    assert_eq!(
        (
            it1["measurement_count"].as_u64(),
            it1["anomaly_count"].as_u64(),
            it1["confirmed_count"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    let de = &cells[&("2024-05-02".to_owned(), "DE".to_owned())];
    assert_eq!(
        (de["failure_count"].as_u64(), de["ok_count"].as_u64()),
        (Some(1), Some(0))
    );
    let (_, body) = get(addr, "/api/v1/aggregation?probe_cc=IT").await;
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["result"]["measurement_count"], 3);
    assert_eq!(v["result"]["ok_count"], 1);

    // A broken ClickHouse is a 503, not a broken 200.
    let addr = serve_http(state(
        Arc::new(ClickHouseRows::new("http://127.0.0.1:9", &db)),
        None,
    ))
    .await;
    let (status, body) = get(addr, "/api/v2/measurements/4242/results/").await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));

    let _ = store
        .execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .await;
}

/// The next SSE event (name, data) from a streaming body.
async fn next_event(body: &mut Incoming, buf: &mut String) -> (String, String) {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !name.is_empty() {
                return (name, data);
            }
            continue;
        }
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("an event within 10 s")
            .expect("stream open")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            buf.push_str(&String::from_utf8_lossy(&data));
        }
    }
}

#[tokio::test]
async fn live_results_stream_from_nats() {
    let Some(nats_url) = vantage_testkit::stack_var("NATS_URL", "live_results_stream_from_nats")
    else {
        return;
    };
    let nc = async_nats::connect(nats_url.as_str()).await.expect("nats");
    let msm_id = 800_000_000 + u64::from(std::process::id());
    let live = Arc::new(NatsLive(nc.clone()));
    let addr = serve_http(state(
        Arc::new(ClickHouseRows::new("http://127.0.0.1:9", "db")),
        Some(live),
    ))
    .await;

    let resp = get_on(
        TcpStream::connect(addr).await.expect("connect"),
        &format!("/api/v2/measurements/{msm_id}/stream/"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut body = resp.into_body();
    let mut buf = String::new();
    let (name, data) = next_event(&mut body, &mut buf).await;
    assert_eq!(name, "metadata");
    assert_eq!(
        serde_json::from_str::<Value>(&data).expect("json")["msm_id"],
        msm_id
    );

    // Another measurement's result first: it must not show up.
    nc.publish(
        format!("vantage.results.ping.{}", msm_id + 1),
        Bytes::from_static(b"{\"other\":true}"),
    )
    .await
    .expect("publish");
    for n in 0..3 {
        let payload = json!({"msm_id": msm_id, "prb_id": 7, "type": "ping", "n": n}).to_string();
        nc.publish(
            vantage_core::nats::result_subject("ping", msm_id),
            payload.into(),
        )
        .await
        .expect("publish");
    }
    nc.flush().await.expect("flush");
    for n in 0..3 {
        let (name, data) = next_event(&mut body, &mut buf).await;
        assert_eq!(name, "result");
        let v: Value = serde_json::from_str(&data).expect("json");
        assert_eq!(
            (v["msm_id"].as_u64(), v["n"].as_u64()),
            (Some(msm_id), Some(n))
        );
    }
}

/// The API's router over HTTPS with `cert` (written to `cert_path`, `key_path`) on a free
/// port, and a TLS client that trusts it: (address, connector, server name).
async fn serve_https(
    cert: &rcgen::CertifiedKey<rcgen::KeyPair>,
    cert_path: &std::path::Path,
    key_path: &std::path::Path,
) -> (
    SocketAddr,
    tokio_rustls::TlsConnector,
    rustls::pki_types::ServerName<'static>,
) {
    let config = vantage_api::tls::server_config(cert_path, key_path).expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let tls = vantage_api::tls::Tls::new(config);
    let app = router(state(
        Arc::new(ClickHouseRows::new("http://127.0.0.1:9", "db")),
        None,
    ));
    tokio::spawn(async move {
        vantage_platform::http::serve(
            listener,
            app,
            vantage_platform::http::HttpLimits::default(),
            tls,
            vantage_platform::http::HttpMetrics::default(),
        )
        .await
    });

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    (addr, connector, name)
}

#[tokio::test]
async fn https_with_a_test_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");

    // Bad files are refused with the path named.
    let err = vantage_api::tls::server_config(&dir.path().join("missing.pem"), &key_path)
        .expect_err("missing cert");
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let err = vantage_api::tls::server_config(&cert_path, &cert_path)
        .expect_err("a certificate is not a key");
    assert!(err.to_string().contains("--tls-key"), "{err}");

    let (addr, connector, name) = serve_https(&cert, &cert_path, &key_path).await;

    // A client that stalls its handshake does not hold up the next one.
    let _stalled = TcpStream::connect(addr).await.expect("connect");
    let stream = connector
        .connect(
            name.clone(),
            TcpStream::connect(addr).await.expect("connect"),
        )
        .await
        .expect("TLS handshake");
    let resp = get_on(stream, "/api/openapi.json").await;
    assert_eq!(resp.status(), 200);
    let doc: Value =
        serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes())
            .expect("json");
    assert!(doc["paths"]["/api/v2/measurements/{id}/results/"].is_object());

    // Plain HTTP on the TLS port gets no HTTP answer.
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(
        TcpStream::connect(addr).await.expect("connect"),
    ))
    .await
    .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::get("/api/openapi.json")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .expect("request");
    let plain = tokio::time::timeout(Duration::from_secs(15), send.send_request(req))
        .await
        .expect("answered or closed");
    assert!(
        plain.is_err(),
        "plain HTTP must not be served on the TLS port"
    );
}

/// A client that sends its whole 20 MB body before reading the answer (as
/// python-requests does) gets the 413 with the RIPE Atlas error object over TLS, not a
/// reset connection.
#[tokio::test]
async fn a_20_mb_body_over_tls_gets_413_not_a_dropped_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let (addr, connector, name) = serve_https(&cert, &cert_path, &key_path).await;
    let mut stream = connector
        .connect(name, TcpStream::connect(addr).await.expect("connect"))
        .await
        .expect("TLS handshake");
    let body = vec![b'x'; 20 << 20];
    let head = format!(
        "POST /api/v2/measurements/ HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         authorization: Key k\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let exchange = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.flush().await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .expect("answered in time")
        .expect("the whole body is taken and the answer read");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let json_start = text.find("{\"error\"").expect("a RIPE error object");
    let v: Value = serde_json::from_str(text[json_start..].trim()).expect("json");
    assert_eq!(v["error"]["status"], 413);
    assert!(
        v["error"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("20971520 bytes")),
        "{v}"
    );
}
