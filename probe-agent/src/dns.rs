//! The dns measurement (RIPE Atlas `Tdig`): one query built with `hickory-proto`, sent
//! over UDP or TCP to the target or to each of the probe's resolvers, the wire answer
//! reported as base64 in `abuf`.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vantage_core::definition::{DnsOptions, Task};

use crate::common::{self, ms, socket_error, SocketError};
use crate::ping::RunContext;

/// Largest answer read over TCP.
const MAX_ANSWER: usize = 65_535;

/// Why an exchange produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("timed out")]
    Timeout,
    /// Socket trouble, e.g. `connect: Connection refused`.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// The query could not be built from the task.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// Over TCP a query has a 16-bit length.
    #[error("query of {len} bytes is too long for DNS over TCP (at most 65535)")]
    QueryTooLong { len: usize },
}

/// Why a task's query could not be built.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("bad query_argument {argument:?}: {source}")]
    Name {
        argument: String,
        #[source]
        source: hickory_proto::ProtoError,
    },
    #[error("bad query_type {query_type:?}: {source}")]
    Type {
        query_type: String,
        #[source]
        source: hickory_proto::ProtoError,
    },
    #[error("could not encode the query: {0}")]
    Encode(#[source] hickory_proto::ProtoError),
}

/// One query and its answer (or its absence).
#[derive(Debug)]
pub struct Exchange {
    pub src_addr: Option<IpAddr>,
    /// The answer's wire bytes and the time it took.
    pub outcome: Result<(Vec<u8>, Duration), ExchangeError>,
}

/// Sends one DNS query and returns the first answer with the query's id.
pub trait DnsTransport: Send + Sync + 'static {
    fn exchange(
        &self,
        server: SocketAddr,
        tcp: bool,
        query: &[u8],
        timeout: Duration,
    ) -> impl Future<Output = Exchange> + Send;
}

/// Build the query message.
pub fn build_query(opts: &DnsOptions, id: u16) -> Result<Vec<u8>, QueryError> {
    let mut name = Name::from_ascii(&opts.query_argument).map_err(|source| QueryError::Name {
        argument: opts.query_argument.clone(),
        source,
    })?;
    name.set_fqdn(true);
    let rtype = RecordType::from_str(&opts.query_type).map_err(|source| QueryError::Type {
        query_type: opts.query_type.clone(),
        source,
    })?;
    let class = if opts.query_class == "CHAOS" {
        DNSClass::CH
    } else {
        DNSClass::IN
    };
    let mut query = Query::query(name, rtype);
    query.set_query_class(class);
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(opts.set_rd_bit)
        .set_checking_disabled(opts.set_cd_bit)
        .add_query(query);
    if opts.set_do_bit || opts.set_nsid_bit || opts.udp_payload_size != 512 {
        let mut edns = Edns::new();
        edns.set_max_payload(u16::try_from(opts.udp_payload_size).unwrap_or(4096));
        edns.set_dnssec_ok(opts.set_do_bit);
        if opts.set_nsid_bit {
            edns.options_mut()
                .insert(EdnsOption::Unknown(u16::from(EdnsCode::NSID), Vec::new()));
        }
        m.set_edns(edns);
    }
    m.to_vec().map_err(QueryError::Encode)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The RIPE Atlas `result` object for an answer, or the `error` object. An answer that
/// does not decode (e.g. compression pointers that loop) keeps its `abuf` and adds
/// `error.decode`.
pub fn answer_fields(
    outcome: &Result<(Vec<u8>, Duration), ExchangeError>,
    timeout: Duration,
) -> Map<String, Value> {
    let mut out = Map::new();
    match outcome {
        Ok((abuf, rt)) => {
            let word = |i: usize| {
                abuf.get(i..i + 2)
                    .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
            };
            let mut result = Map::new();
            result.insert("rt".into(), json!(ms(*rt)));
            result.insert("size".into(), json!(abuf.len()));
            result.insert("abuf".into(), json!(b64(abuf)));
            result.insert("ID".into(), json!(word(0)));
            result.insert("QDCOUNT".into(), json!(word(4)));
            result.insert("ANCOUNT".into(), json!(word(6)));
            result.insert("NSCOUNT".into(), json!(word(8)));
            result.insert("ARCOUNT".into(), json!(word(10)));
            out.insert("result".into(), Value::Object(result));
            if let Err(e) = Message::from_vec(abuf) {
                out.insert(
                    "error".into(),
                    json!({"decode": format!("answer does not decode: {e}")}),
                );
            }
        }
        Err(ExchangeError::Timeout) => {
            out.insert(
                "error".into(),
                json!({"timeout": timeout.as_millis() as u64}),
            );
        }
        Err(e) => {
            out.insert("error".into(), json!({"socket": e.to_string()}));
        }
    }
    out
}

/// Name servers listed in resolv.conf text.
pub fn resolvers_from(resolv_conf: &str) -> Vec<IpAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                // Drop a zone index such as fe80::1%eth0.
                .and_then(|a| a.split('%').next())
                .and_then(|a| a.parse().ok())
        })
        .collect()
}

/// The probe's resolvers (`/etc/resolv.conf`).
pub fn probe_resolvers() -> Vec<IpAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| resolvers_from(&t))
        .unwrap_or_default()
}

/// Ask one server, retrying after timeouts.
async fn ask<T: DnsTransport>(
    transport: &T,
    server: SocketAddr,
    opts: &DnsOptions,
) -> (Vec<u8>, Exchange) {
    let timeout = Duration::from_millis(u64::from(opts.timeout_ms));
    let tcp = opts.protocol == "TCP";
    let mut last = None;
    for _ in 0..=opts.retry {
        let query = match build_query(opts, rand::random()) {
            Ok(q) => q,
            Err(e) => {
                return (
                    Vec::new(),
                    Exchange {
                        src_addr: None,
                        outcome: Err(ExchangeError::Query(e)),
                    },
                )
            }
        };
        let ex = transport.exchange(server, tcp, &query, timeout).await;
        let retry = matches!(ex.outcome, Err(ExchangeError::Timeout));
        last = Some((query, ex));
        if !retry {
            break;
        }
    }
    last.unwrap_or_else(|| {
        (
            Vec::new(),
            Exchange {
                src_addr: None,
                outcome: Err(ExchangeError::Timeout),
            },
        )
    })
}

/// Run one dns measurement. `dst` is the resolved target (unused with the probe's
/// resolvers, which are given in `resolvers`).
pub async fn run_dns<T: DnsTransport>(
    transport: &T,
    task: &Task,
    opts: &DnsOptions,
    ctx: RunContext,
    resolvers: &[IpAddr],
) -> Value {
    let mut m = common::header(task, ctx, "dns");
    let timeout = Duration::from_millis(u64::from(opts.timeout_ms));
    if opts.use_probe_resolver {
        let submax = resolvers.len();
        let mut set = Vec::new();
        for (i, server) in resolvers.iter().enumerate() {
            let time = crate::unix_now() as i64;
            let (qbuf, ex) = ask(transport, SocketAddr::new(*server, 53), opts).await;
            let mut e = answer_fields(&ex.outcome, timeout);
            e.insert("af".into(), json!(if server.is_ipv4() { 4 } else { 6 }));
            e.insert("dst_addr".into(), json!(server.to_string()));
            e.insert("proto".into(), json!(opts.protocol));
            if let Some(src) = ex.src_addr {
                e.insert("src_addr".into(), json!(src.to_string()));
            }
            e.insert("subid".into(), json!(i + 1));
            e.insert("submax".into(), json!(submax));
            e.insert("time".into(), json!(time));
            if !qbuf.is_empty() {
                e.insert("qbuf".into(), json!(b64(&qbuf)));
            }
            set.push(Value::Object(e));
        }
        if set.is_empty() {
            m.insert(
                "error".into(),
                json!({"socket": "no resolvers in /etc/resolv.conf"}),
            );
        }
        m.insert("resultset".into(), Value::Array(set));
        return Value::Object(m);
    }
    let dst = match crate::ping::resolve(&task.target, task.af).await {
        Ok(ip) => ip,
        Err(e) => {
            m.insert("error".into(), json!({"getaddrinfo": e.to_string()}));
            return Value::Object(m);
        }
    };
    let (qbuf, ex) = ask(transport, SocketAddr::new(dst, 53), opts).await;
    m.insert("dst_addr".into(), json!(dst.to_string()));
    m.insert("proto".into(), json!(opts.protocol));
    common::set_source(&mut m, ex.src_addr);
    if !qbuf.is_empty() {
        m.insert("qbuf".into(), json!(b64(&qbuf)));
    }
    m.extend(answer_fields(&ex.outcome, timeout));
    Value::Object(m)
}

/// The real transport: tokio UDP and TCP sockets.
#[derive(Default)]
pub struct SocketDns {
    /// Port to query instead of the server's (tests).
    pub port_override: Option<u16>,
}

impl SocketDns {
    async fn udp(
        server: SocketAddr,
        query: &[u8],
    ) -> Result<(Option<IpAddr>, Vec<u8>), ExchangeError> {
        let bind: SocketAddr = if server.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let sock = tokio::net::UdpSocket::bind(bind)
            .await
            .map_err(socket_error("socket"))?;
        sock.connect(server)
            .await
            .map_err(socket_error("connect"))?;
        let src = sock.local_addr().ok().map(|a| a.ip());
        sock.send(query).await.map_err(socket_error("sendto"))?;
        let mut buf = vec![0u8; 65_535];
        loop {
            let n = sock
                .recv(&mut buf)
                .await
                .map_err(socket_error("recvfrom"))?;
            // Answers with another id are not ours; keep waiting.
            if n >= 2 && buf[..2] == query[..2] {
                // Keep the answer, not the 64 KiB it was read into.
                buf.truncate(n);
                buf.shrink_to_fit();
                return Ok((src, buf));
            }
        }
    }

    async fn tcp(
        server: SocketAddr,
        query: &[u8],
    ) -> Result<(Option<IpAddr>, Vec<u8>), ExchangeError> {
        let mut s = tokio::net::TcpStream::connect(server)
            .await
            .map_err(socket_error("connect"))?;
        let src = s.local_addr().ok().map(|a| a.ip());
        let len = u16::try_from(query.len())
            .map_err(|_| ExchangeError::QueryTooLong { len: query.len() })?;
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(query);
        s.write_all(&framed).await.map_err(socket_error("write"))?;
        let n = s.read_u16().await.map_err(socket_error("read"))? as usize;
        let mut buf = vec![0u8; n.min(MAX_ANSWER)];
        s.read_exact(&mut buf).await.map_err(socket_error("read"))?;
        Ok((src, buf))
    }
}

impl DnsTransport for SocketDns {
    async fn exchange(
        &self,
        server: SocketAddr,
        tcp: bool,
        query: &[u8],
        timeout: Duration,
    ) -> Exchange {
        let server = match self.port_override {
            Some(p) => SocketAddr::new(server.ip(), p),
            None => server,
        };
        let started = tokio::time::Instant::now();
        let fut = async {
            if tcp {
                Self::tcp(server, query).await
            } else {
                Self::udp(server, query).await
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok((src, answer))) => Exchange {
                src_addr: src,
                outcome: Ok((answer, started.elapsed())),
            },
            Ok(Err(e)) => Exchange {
                src_addr: crate::ping::source_addr(server.ip()).await,
                outcome: Err(e),
            },
            Err(_) => Exchange {
                src_addr: crate::ping::source_addr(server.ip()).await,
                outcome: Err(ExchangeError::Timeout),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use super::*;
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::{RData, Record};
    use vantage_core::definition::{Definition, TaskKind, Timing};

    fn dns_task(f: impl FnOnce(&mut Definition)) -> (Task, DnsOptions) {
        let mut d = Definition {
            kind: "dns".into(),
            target: Some("192.0.2.53".into()),
            query_argument: Some("example.net".into()),
            query_type: Some("AAAA".into()),
            set_rd_bit: Some(true),
            ..Default::default()
        };
        f(&mut d);
        let task = d.validate(42, Timing::default()).expect("valid");
        let TaskKind::Dns(o) = task.kind.clone() else {
            panic!("not dns")
        };
        (task, o)
    }

    type Step = Option<fn(&Message) -> Vec<u8>>;

    /// Answers each query with a scripted reply built from it.
    struct Fake {
        script: Mutex<VecDeque<Step>>,
        seen: Mutex<Vec<(SocketAddr, bool, Vec<u8>)>>,
    }

    impl Fake {
        fn new(script: Vec<Step>) -> Self {
            Self {
                script: Mutex::new(script.into()),
                seen: Mutex::new(Vec::new()),
            }
        }
    }

    impl DnsTransport for Fake {
        async fn exchange(
            &self,
            server: SocketAddr,
            tcp: bool,
            query: &[u8],
            _t: Duration,
        ) -> Exchange {
            self.seen
                .lock()
                .expect("lock")
                .push((server, tcp, query.to_vec()));
            let q = Message::from_vec(query).expect("query decodes");
            let step = self.script.lock().expect("lock").pop_front().flatten();
            Exchange {
                src_addr: Some("192.0.2.10".parse().expect("ip")),
                outcome: match step {
                    Some(f) => Ok((f(&q), Duration::from_micros(12_345))),
                    None => Err(ExchangeError::Timeout),
                },
            }
        }
    }

    fn aaaa_answer(q: &Message) -> Vec<u8> {
        let mut r = Message::new();
        r.set_id(q.id())
            .set_message_type(MessageType::Response)
            .set_response_code(ResponseCode::NoError)
            .add_query(q.queries()[0].clone());
        r.add_answer(Record::from_rdata(
            q.queries()[0].name().clone(),
            300,
            RData::AAAA("2001:db8::1".parse().expect("v6")),
        ));
        r.to_vec().expect("encode")
    }

    fn pointer_loop(q: &Message) -> Vec<u8> {
        // Header: id, flags (response), QD=1, AN=0; the question name is a pointer to
        // itself (offset 12).
        let mut b = q.id().to_be_bytes().to_vec();
        b.extend_from_slice(&[0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
        b
    }

    #[tokio::test]
    async fn query_carries_the_options() {
        let (_, opts) = dns_task(|d| {
            d.set_do_bit = Some(true);
            d.set_nsid_bit = Some(true);
            d.set_cd_bit = Some(true);
            d.udp_payload_size = Some(1232);
            d.query_class = Some("CHAOS".into());
            d.query_type = Some("TXT".into());
        });
        let q = Message::from_vec(&build_query(&opts, 77).expect("query")).expect("decodes");
        assert_eq!(q.id(), 77);
        assert!(q.recursion_desired() && q.checking_disabled());
        assert_eq!(q.queries()[0].query_class(), DNSClass::CH);
        assert_eq!(q.queries()[0].query_type(), RecordType::TXT);
        let edns = q.extensions().as_ref().expect("edns");
        assert!(edns.flags().dnssec_ok);
        assert_eq!(edns.max_payload(), 1232);
        assert!(edns.option(EdnsCode::NSID).is_some());
        let (_, plain) = dns_task(|_| {});
        let q = Message::from_vec(&build_query(&plain, 1).expect("query")).expect("decodes");
        assert!(q.extensions().is_none(), "no EDNS0 unless asked");
    }

    #[tokio::test]
    async fn answer_goes_into_abuf_with_counts() {
        let (task, opts) = dns_task(|_| {});
        let fake = Fake::new(vec![Some(aaaa_answer)]);
        let v = run_dns(&fake, &task, &opts, RunContext { prb_id: 3 }, &[]).await;
        assert_eq!(v["type"], "dns");
        assert_eq!(v["dst_addr"], "192.0.2.53");
        assert_eq!(v["proto"], "UDP");
        assert_eq!(v["src_addr"], "192.0.2.10");
        let r = &v["result"];
        assert_eq!(r["rt"], 12.345);
        assert_eq!(
            (r["QDCOUNT"].as_u64(), r["ANCOUNT"].as_u64()),
            (Some(1), Some(1))
        );
        let abuf = base64::engine::general_purpose::STANDARD
            .decode(r["abuf"].as_str().expect("abuf"))
            .expect("b64");
        assert_eq!(r["size"].as_u64(), Some(abuf.len() as u64));
        let m = Message::from_vec(&abuf).expect("abuf decodes");
        assert_eq!(m.answers()[0].data().to_string(), "2001:db8::1");
        assert_eq!(u64::from(m.id()), r["ID"].as_u64().expect("id"));
        assert!(v.get("error").is_none());
        assert!(v["qbuf"].is_string());
        assert_eq!(
            fake.seen.lock().expect("lock")[0].0,
            "192.0.2.53:53".parse().expect("sa")
        );
    }

    #[tokio::test]
    async fn timeouts_are_retried_then_reported() {
        let (task, opts) = dns_task(|d| {
            d.retry = Some(2);
            d.timeout = Some(1000);
            d.protocol = Some("TCP".into());
        });
        let fake = Fake::new(vec![None, None, None]);
        let v = run_dns(&fake, &task, &opts, RunContext { prb_id: 3 }, &[]).await;
        assert_eq!(v["error"], json!({"timeout": 1000}));
        assert!(v.get("result").is_none());
        {
            let seen = fake.seen.lock().expect("lock");
            assert_eq!(seen.len(), 3);
            assert!(seen.iter().all(|s| s.1), "TCP used");
        }
        // The second try answers: no error.
        let fake = Fake::new(vec![None, Some(aaaa_answer)]);
        let v = run_dns(&fake, &task, &opts, RunContext { prb_id: 3 }, &[]).await;
        assert!(v.get("error").is_none(), "{v}");
        assert_eq!(v["proto"], "TCP");
    }

    #[tokio::test]
    async fn hostile_answer_gives_an_error_not_a_hang() {
        let (task, opts) = dns_task(|_| {});
        let fake = Fake::new(vec![Some(pointer_loop)]);
        let v = run_dns(&fake, &task, &opts, RunContext { prb_id: 3 }, &[]).await;
        assert!(
            v["error"]["decode"]
                .as_str()
                .expect("decode error")
                .contains("does not decode"),
            "{v}"
        );
        assert!(v["result"]["abuf"].is_string());
    }

    #[tokio::test]
    async fn probe_resolvers_give_a_resultset() {
        let (task, opts) = dns_task(|d| {
            d.target = None;
            d.use_probe_resolver = Some(true);
        });
        let resolvers = resolvers_from("# c\nsearch x\nnameserver 192.0.2.1\nnameserver 2001:db8::53\nnameserver fe80::1%eth0\n");
        assert_eq!(resolvers.len(), 3);
        let fake = Fake::new(vec![Some(aaaa_answer), None, Some(aaaa_answer)]);
        let v = run_dns(
            &fake,
            &task,
            &opts,
            RunContext { prb_id: 3 },
            &resolvers[..2],
        )
        .await;
        let set = v["resultset"].as_array().expect("resultset");
        assert_eq!(set.len(), 2);
        assert_eq!(set[0]["dst_addr"], "192.0.2.1");
        assert_eq!(
            (set[0]["subid"].as_u64(), set[0]["submax"].as_u64()),
            (Some(1), Some(2))
        );
        assert_eq!(set[1]["af"], 6);
        assert_eq!(set[1]["error"]["timeout"], 5000);
        assert!(set[0]["result"]["abuf"].is_string());
        assert!(v.get("dst_name").is_none());
        let none = run_dns(&fake, &task, &opts, RunContext { prb_id: 3 }, &[]).await;
        assert!(none["error"]["socket"].is_string());
    }

    #[tokio::test]
    async fn unresolvable_target_is_a_getaddrinfo_error() {
        let (task, opts) = dns_task(|d| d.target = Some("no-such-host.invalid".into()));
        let fake = Fake::new(vec![]);
        let v = run_dns(&fake, &task, &opts, RunContext { prb_id: 3 }, &[]).await;
        assert!(v["error"]["getaddrinfo"].is_string(), "{v}");
    }
}
