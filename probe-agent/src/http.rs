//! The http measurement: one request with `hyper` (HTTP/1.0 or 1.1, over TLS with
//! `https`), reported in the RIPE Atlas http format: `uri` and `result[]` of
//! `{res, rt, hsize, bsize, method, ver, af, dst_addr, src_addr}` or `{err, ...}`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use vantage_core::definition::{HttpOptions, Task};

use crate::common::{self, ms, SocketError};
use crate::ping::RunContext;
use crate::tls::BadServerName;

/// Whole-request limit.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of header the client buffers; a longer header is an error.
pub const MAX_HEADER_BUF: usize = 64 * 1024;
/// Body bytes read before the measurement stops reading.
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// One request to make.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpRequest {
    pub dst: SocketAddr,
    /// `Host` header and SNI.
    pub host: String,
    pub https: bool,
    pub method: String,
    /// Path and query, e.g. `/x?y=1`.
    pub path_and_query: String,
    pub version: String,
}

/// A response as measured.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub version: String,
    /// Status line and header lines (without CRLF).
    pub header_lines: Vec<String>,
    /// Header size in bytes (status line, fields and the empty line, with CRLFs).
    pub hsize: usize,
    pub bsize: usize,
    pub ttfb: Duration,
    pub rt: Duration,
    /// (offset in the body, time since start) of each read.
    pub reads: Vec<(usize, Duration)>,
}

/// What an attempt gave.
#[derive(Debug)]
pub struct HttpOutcome {
    pub src_addr: Option<IpAddr>,
    pub ttc: Option<Duration>,
    pub result: Result<HttpResponse, HttpError>,
}

/// Why there is no response; its text is the result's `err`.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The TCP connect failed (`connect: ...`).
    #[error(transparent)]
    Connect(#[from] SocketError),
    #[error("connect: timeout")]
    ConnectTimeout,
    #[error(transparent)]
    TlsConfig(#[from] rustls::Error),
    #[error(transparent)]
    ServerName(#[from] BadServerName),
    #[error("TLS handshake failed: {0}")]
    TlsHandshake(#[source] std::io::Error),
    /// The HTTP/1 connection could not be set up.
    #[error("connect: {0}")]
    Handshake(#[source] hyper::Error),
    #[error("bad request: {0}")]
    Request(#[source] hyper::http::Error),
    #[error("reading the response header: {0}")]
    ResponseHeader(#[source] hyper::Error),
    #[error("reading the body: {0}")]
    Body(#[source] hyper::Error),
    #[error("timeout: no complete response within {secs} s")]
    Timeout { secs: u64 },
}

/// Makes one HTTP request.
pub trait HttpClient: Send + Sync + 'static {
    fn fetch(
        &self,
        req: &HttpRequest,
        timeout: Duration,
    ) -> impl Future<Output = HttpOutcome> + Send;
}

/// The `uri` RIPE Atlas reports.
pub fn uri(task: &Task, opts: &HttpOptions) -> String {
    let scheme = if opts.https { "https" } else { "http" };
    let default = if opts.https { 443 } else { 80 };
    let host = if task.target.contains(':') {
        format!("[{}]", task.target)
    } else {
        task.target.clone()
    };
    let port = if opts.port == default {
        String::new()
    } else {
        format!(":{}", opts.port)
    };
    let query = opts
        .query_string
        .as_ref()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    format!("{scheme}://{host}{port}{}{query}", opts.path)
}

/// The `result[0]` entry for an outcome.
pub fn result_entry(opts: &HttpOptions, dst: IpAddr, o: &HttpOutcome, started_unix: f64) -> Value {
    let mut e = Map::new();
    e.insert("af".into(), json!(if dst.is_ipv4() { 4 } else { 6 }));
    e.insert("dst_addr".into(), json!(dst.to_string()));
    e.insert("method".into(), json!(opts.method));
    if let Some(src) = o.src_addr {
        e.insert("src_addr".into(), json!(src.to_string()));
    }
    match &o.result {
        Ok(r) => {
            e.insert("res".into(), json!(r.status));
            e.insert("ver".into(), json!(r.version));
            e.insert("hsize".into(), json!(r.hsize));
            e.insert("bsize".into(), json!(r.bsize));
            e.insert("rt".into(), json!(ms(r.rt)));
            if opts.header_bytes > 0 {
                let mut budget = opts.header_bytes as usize;
                let mut lines = Vec::new();
                for l in &r.header_lines {
                    if budget == 0 {
                        break;
                    }
                    let cut: String = l.chars().take(budget).collect();
                    budget = budget.saturating_sub(l.len() + 2);
                    lines.push(cut);
                }
                e.insert("header".into(), json!(lines));
            }
            if opts.timing_verbosity >= 1 {
                e.insert("time".into(), json!(started_unix as i64));
                if let Some(ttc) = o.ttc {
                    e.insert("ttc".into(), json!(ms(ttc)));
                }
                e.insert("ttfb".into(), json!(ms(r.ttfb)));
            }
            if opts.timing_verbosity >= 2 {
                let reads: Vec<Value> = r
                    .reads
                    .iter()
                    .map(|(off, t)| json!({"o": off.to_string(), "t": ms(*t)}))
                    .collect();
                e.insert("readtiming".into(), json!(reads));
            }
        }
        Err(err) => {
            e.insert("err".into(), json!(err.to_string()));
            if opts.timing_verbosity >= 1 {
                if let Some(ttc) = o.ttc {
                    e.insert("ttc".into(), json!(ms(ttc)));
                }
            }
        }
    }
    Value::Object(e)
}

/// Run one http measurement.
pub async fn run_http<C: HttpClient>(
    client: &C,
    task: &Task,
    opts: &HttpOptions,
    ctx: RunContext,
) -> Value {
    let mut m = common::header(task, ctx, "http");
    m.remove("af");
    m.insert("uri".into(), json!(uri(task, opts)));
    let dst = match crate::ping::resolve(&task.target, task.af).await {
        Ok(ip) => ip,
        Err(e) => {
            let e = e.to_string();
            m.insert("dnserr".into(), json!(e));
            m.insert(
                "result".into(),
                json!([{"method": opts.method, "af": task.af, "dnserr": e, "err": e}]),
            );
            return Value::Object(m);
        }
    };
    let req = HttpRequest {
        dst: SocketAddr::new(dst, opts.port),
        host: task.target.clone(),
        https: opts.https,
        method: opts.method.clone(),
        path_and_query: match &opts.query_string {
            Some(q) => format!("{}?{q}", opts.path),
            None => opts.path.clone(),
        },
        version: opts.version.clone(),
    };
    let started = crate::unix_now();
    let o = client.fetch(&req, REQUEST_TIMEOUT).await;
    common::set_source(&mut m, o.src_addr);
    m.insert(
        "result".into(),
        json!([result_entry(opts, dst, &o, started)]),
    );
    Value::Object(m)
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange<S>(
    io: S,
    req: &HttpRequest,
    started: tokio::time::Instant,
) -> Result<HttpResponse, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = http1::Builder::new()
        .max_buf_size(MAX_HEADER_BUF)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(HttpError::Handshake)?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let version = if req.version == "1.0" {
        hyper::Version::HTTP_10
    } else {
        hyper::Version::HTTP_11
    };
    let host = if req.host.contains(':') {
        format!("[{}]", req.host)
    } else {
        req.host.clone()
    };
    let request = hyper::Request::builder()
        .method(req.method.as_str())
        .uri(req.path_and_query.as_str())
        .version(version)
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "vantage-probe")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(HttpError::Request)?;
    let resp = sender
        .send_request(request)
        .await
        .map_err(HttpError::ResponseHeader)?;
    let ttfb = started.elapsed();
    let ver = match resp.version() {
        hyper::Version::HTTP_10 => "1.0",
        _ => "1.1",
    };
    let status = resp.status();
    let mut lines = vec![format!(
        "HTTP/{ver} {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )];
    for (name, value) in resp.headers() {
        lines.push(format!(
            "{}: {}",
            name,
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    let hsize = lines.iter().map(|l| l.len() + 2).sum::<usize>() + 2;
    let mut body = resp.into_body();
    let mut bsize = 0usize;
    let mut reads = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(HttpError::Body)?;
        if let Some(data) = frame.data_ref() {
            reads.push((bsize, started.elapsed()));
            bsize += data.len();
            if bsize >= MAX_BODY {
                break;
            }
        }
    }
    Ok(HttpResponse {
        status: status.as_u16(),
        version: ver.into(),
        header_lines: lines,
        hsize,
        bsize,
        ttfb,
        rt: started.elapsed(),
        reads,
    })
}

/// The real client: tokio TCP, tokio-rustls for https, hyper's HTTP/1 client.
#[derive(Default)]
pub struct HyperClient;

impl HttpClient for HyperClient {
    async fn fetch(&self, req: &HttpRequest, timeout: Duration) -> HttpOutcome {
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        let mut out = HttpOutcome {
            src_addr: None,
            ttc: None,
            result: Err(HttpError::ConnectTimeout),
        };
        let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(req.dst)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                out.src_addr = crate::ping::source_addr(req.dst.ip()).await;
                out.result = Err(SocketError::new("connect", e).into());
                return out;
            }
            Err(_) => {
                out.result = Err(HttpError::ConnectTimeout);
                return out;
            }
        };
        out.ttc = Some(started.elapsed());
        out.src_addr = tcp.local_addr().ok().map(|a| a.ip());
        let work = async {
            if req.https {
                let config = crate::tls::measurement_config(&[b"http/1.1"])?;
                let name = crate::tls::server_name(&req.host)?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(HttpError::TlsHandshake)?;
                exchange(tls, req, started).await
            } else {
                exchange(tcp, req, started).await
            }
        };
        out.result = match tokio::time::timeout_at(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout {
                secs: timeout.as_secs(),
            }),
        };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use vantage_core::definition::{Definition, TaskKind, Timing};

    fn http_task(f: impl FnOnce(&mut Definition)) -> (Task, HttpOptions) {
        let mut d = Definition {
            kind: "http".into(),
            target: Some("127.0.0.1".into()),
            ..Default::default()
        };
        f(&mut d);
        let t = d.validate(12, Timing::default()).expect("valid");
        let TaskKind::Http(o) = t.kind.clone() else {
            panic!()
        };
        (t, o)
    }

    #[test]
    fn uri_and_entry_follow_ripe() {
        let (t, o) = http_task(|d| {
            d.path = Some("/a".into());
            d.query_string = Some("b=1".into());
            d.port = Some(8080);
            d.header_bytes = Some(20);
            d.timing_verbosity = Some(2);
        });
        assert_eq!(uri(&t, &o), "http://127.0.0.1:8080/a?b=1");
        let (t6, o6) = http_task(|d| {
            d.target = Some("::1".into());
            d.af = Some(6);
            d.https = Some(true);
        });
        assert_eq!(uri(&t6, &o6), "https://[::1]/");
        let outcome = HttpOutcome {
            src_addr: Some("127.0.0.1".parse().expect("ip")),
            ttc: Some(Duration::from_micros(200)),
            result: Ok(HttpResponse {
                status: 200,
                version: "1.1".into(),
                header_lines: vec!["HTTP/1.1 200 OK".into(), "content-length: 5".into()],
                hsize: 38,
                bsize: 5,
                ttfb: Duration::from_micros(700),
                rt: Duration::from_micros(900),
                reads: vec![(0, Duration::from_micros(800))],
            }),
        };
        let e = result_entry(&o, "127.0.0.1".parse().expect("ip"), &outcome, 1.0e9);
        assert_eq!(e["res"], 200);
        assert_eq!(e["rt"], 0.9);
        assert_eq!(e["ttc"], 0.2);
        assert_eq!(e["ttfb"], 0.7);
        assert_eq!(e["bsize"], 5);
        assert_eq!(e["header"], json!(["HTTP/1.1 200 OK", "con"]));
        assert_eq!(e["readtiming"], json!([{"o": "0", "t": 0.8}]));
        let err = HttpOutcome {
            src_addr: None,
            ttc: None,
            result: Err(SocketError::new(
                "connect",
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused"),
            )
            .into()),
        };
        let e = result_entry(&o, "127.0.0.1".parse().expect("ip"), &err, 1.0e9);
        assert_eq!(e["err"], "connect: Connection refused");
        assert!(e.get("res").is_none());
    }

    async fn serve(reply: &'static [u8], endless: bool) -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(reply).await;
                    if endless {
                        while s
                            .write_all(b"X-Endless: yes yes yes yes yes yes\r\n")
                            .await
                            .is_ok()
                        {}
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn real_request_against_a_local_server() {
        let port = serve(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
            false,
        )
        .await;
        let (t, o) = http_task(|d| {
            d.port = Some(i64::from(port));
            d.timing_verbosity = Some(1);
        });
        let v = run_http(&HyperClient, &t, &o, RunContext { prb_id: 1 }).await;
        let r = &v["result"][0];
        assert_eq!(r["res"], 200, "{v}");
        assert_eq!(r["bsize"], 5);
        assert_eq!(r["ver"], "1.1");
        assert!(r["hsize"].as_u64().expect("hsize") > 30);
        assert!(r["ttfb"].as_f64().expect("ttfb") >= r["ttc"].as_f64().expect("ttc"));
        assert_eq!(v["uri"], format!("http://127.0.0.1:{port}/"));
        assert_eq!(v["from"], "127.0.0.1");
    }

    #[tokio::test]
    async fn endless_headers_give_an_error() {
        let port = serve(b"HTTP/1.1 200 OK\r\n", true).await;
        let (t, o) = http_task(|d| d.port = Some(i64::from(port)));
        let v = tokio::time::timeout(
            Duration::from_secs(10),
            run_http(&HyperClient, &t, &o, RunContext { prb_id: 1 }),
        )
        .await
        .expect("no hang");
        let err = v["result"][0]["err"].as_str().expect("err");
        assert!(err.contains("response header"), "{err}");
    }

    #[tokio::test]
    async fn refused_connection_is_an_err() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        let (t, o) = http_task(|d| d.port = Some(i64::from(port)));
        let v = run_http(&HyperClient, &t, &o, RunContext { prb_id: 1 }).await;
        assert!(
            v["result"][0]["err"]
                .as_str()
                .expect("err")
                .starts_with("connect:"),
            "{v}"
        );
    }
}
