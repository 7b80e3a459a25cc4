//! Typed per-type tables next to `results`: what each measurement type measured, in
//! columns a query can use without parsing JSON.
//!
//! | table | one row per | columns |
//! |---|---|---|
//! | `ping_results` | result | sent, rcvd, loss (%), rtts, min/avg/max |
//! | `traceroute_hops` | hop of a traceroute or mtr | responders, rtts, timeouts, err, mtu |
//! | `dns_results` | answer of one server (`result` or each `resultset[]` entry) | rcode, rt, answers (from `abuf`), error |
//! | `http_results` | request (`result[]` entry) | status, rt, ttc, ttfb, header and body sizes, error |
//! | `sslcert_results` | result | TLS version, rt, leaf certificate subject, issuer, validity, error |
//! | `ntp_results` | result | stratum, replies, offset and rtt (avg, min), error |
//!
//! Every row carries the common keys (`result_id`, `msm_id`, `prb_id`, `timestamp`,
//! `af`, `dst_addr`, `inserted_at`) and is a pure function of the result's JSON, so the
//! tables can be rebuilt from `results.raw`. Extraction is lenient: old firmware writes
//! numbers as strings, fields may be missing; what cannot be read is left at its zero
//! value (-1 for times), never a reason to drop the result.

use base64::Engine as _;
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use vantage_platform::store::{ResultRow, Store, StoreError};

/// The common keys every typed row starts with. The row types spell them out again:
/// ClickHouse's RowBinary needs flat structs (serde's `flatten` goes through a map).
struct Key {
    result_id: String,
    msm_id: u64,
    prb_id: u32,
    /// Unix seconds (ClickHouse DateTime).
    timestamp: u32,
    af: u8,
    dst_addr: String,
}

#[derive(Row, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct PingRow {
    pub result_id: String,
    pub msm_id: u64,
    pub prb_id: u32,
    pub timestamp: u32,
    pub af: u8,
    pub dst_addr: String,
    pub sent: u32,
    pub rcvd: u32,
    /// Percent of packets without a reply.
    pub loss: f64,
    pub rtts: Vec<f64>,
    pub rtt_min: f64,
    pub rtt_avg: f64,
    pub rtt_max: f64,
    pub inserted_at: u32,
}

#[derive(Row, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct HopRow {
    pub result_id: String,
    pub msm_id: u64,
    pub prb_id: u32,
    pub timestamp: u32,
    pub af: u8,
    pub dst_addr: String,
    /// `traceroute` or `mtr`.
    pub kind: String,
    pub hop: u8,
    /// Addresses that answered, in order of first answer.
    pub responders: Vec<String>,
    pub rtts: Vec<f64>,
    pub timeouts: u32,
    /// ICMP error letter or code, or the hop's `error`.
    pub err: String,
    /// Next-hop MTU from "fragmentation needed"/"packet too big", 0 if none.
    pub mtu: u32,
    pub inserted_at: u32,
}

#[derive(Row, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct DnsRow {
    pub result_id: String,
    pub msm_id: u64,
    pub prb_id: u32,
    pub timestamp: u32,
    pub af: u8,
    /// The server asked.
    pub dst_addr: String,
    /// `NOERROR`, `NXDOMAIN`, ... from `abuf`; empty without an answer.
    pub rcode: String,
    pub rt: f64,
    pub ancount: u32,
    /// Answer records in presentation format (`name TTL class type data`).
    pub answers: Vec<String>,
    /// The `error` object's keys and values (`timeout: 5000`), empty if none.
    pub error: String,
    pub inserted_at: u32,
}

#[derive(Row, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct HttpRow {
    pub result_id: String,
    pub msm_id: u64,
    pub prb_id: u32,
    pub timestamp: u32,
    pub af: u8,
    pub dst_addr: String,
    pub uri: String,
    pub method: String,
    /// HTTP status (`res`), 0 without an answer.
    pub status: u32,
    pub rt: f64,
    pub ttc: f64,
    pub ttfb: f64,
    pub hsize: u32,
    pub bsize: u32,
    pub error: String,
    pub inserted_at: u32,
}

#[derive(Row, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct CertRow {
    pub result_id: String,
    pub msm_id: u64,
    pub prb_id: u32,
    pub timestamp: u32,
    pub af: u8,
    pub dst_addr: String,
    pub ver: String,
    pub rt: f64,
    pub ttc: f64,
    pub chain_length: u32,
    pub subject: String,
    pub issuer: String,
    /// Unix seconds; 0 when there is no readable certificate.
    pub not_before: u32,
    pub not_after: u32,
    /// Whether the leaf certificate was valid at the time of the measurement.
    pub valid_at_measurement: u8,
    pub error: String,
    pub inserted_at: u32,
}

#[derive(Row, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct NtpRow {
    pub result_id: String,
    pub msm_id: u64,
    pub prb_id: u32,
    pub timestamp: u32,
    pub af: u8,
    pub dst_addr: String,
    pub stratum: u32,
    pub packets: u32,
    pub replies: u32,
    /// Seconds, averaged over the replies (-1 without any).
    pub offset_avg: f64,
    /// Milliseconds.
    pub rtt_avg: f64,
    pub rtt_min: f64,
    pub error: String,
    pub inserted_at: u32,
}

/// The typed rows of a batch of results.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypedRows {
    pub ping: Vec<PingRow>,
    pub hops: Vec<HopRow>,
    pub dns: Vec<DnsRow>,
    pub http: Vec<HttpRow>,
    pub cert: Vec<CertRow>,
    pub ntp: Vec<NtpRow>,
}

/// A number, also when written as a string (old firmware).
fn num(v: Option<&Value>) -> Option<f64> {
    v.and_then(vantage_platform::store::loose_number)
}

/// A count, or 0 when the field holds something else.
fn count(v: Option<&Value>) -> u32 {
    v.and_then(vantage_platform::store::loose_count)
        .unwrap_or(0)
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `{"timeout": 5000}` → `timeout: 5000`; a string stays itself.
fn error_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| format!("{k}: {}", text(Some(v))))
            .collect::<Vec<_>>()
            .join("; "),
        other => text(other),
    }
}

fn avg(v: &[f64]) -> f64 {
    if v.is_empty() {
        -1.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

impl TypedRows {
    pub fn is_empty(&self) -> bool {
        self.ping.is_empty()
            && self.hops.is_empty()
            && self.dns.is_empty()
            && self.http.is_empty()
            && self.cert.is_empty()
            && self.ntp.is_empty()
    }

    /// Insert every table's rows (one INSERT per table that has rows).
    pub async fn insert(&self, store: &Store) -> Result<(), StoreError> {
        store.insert_rows("ping_results", &self.ping).await?;
        store.insert_rows("traceroute_hops", &self.hops).await?;
        store.insert_rows("dns_results", &self.dns).await?;
        store.insert_rows("http_results", &self.http).await?;
        store.insert_rows("sslcert_results", &self.cert).await?;
        store.insert_rows("ntp_results", &self.ntp).await
    }

    /// Add the typed rows of one result from its `results` row (`raw` is parsed here).
    /// Pings, most of the traffic, take a fast path that reads only their RTTs without
    /// building a JSON tree.
    pub fn push_row(&mut self, row: &ResultRow) {
        if row.kind == "ping" {
            if let Ok(p) = serde_json::from_str::<PingOnly>(&row.raw) {
                let rtts = p.result.iter().filter_map(|e| e.rtt).collect();
                self.ping.push(ping_row(key_of(row), rtts, row));
                return;
            }
        }
        if let Ok(raw) = serde_json::from_str::<Value>(&row.raw) {
            self.push(row, &raw);
        }
    }

    /// Add the typed rows of one result (its `results` row and parsed JSON).
    pub fn push(&mut self, row: &ResultRow, raw: &Value) {
        let key = key_of(row);
        let at = row.inserted_at;
        match row.kind.as_str() {
            "ping" => self.ping.push(ping(key, raw, row)),
            "traceroute" | "mtr" => self.hops.extend(hops(&key, &row.kind, raw, at)),
            "dns" => self.dns.extend(dns(&key, raw, at)),
            "http" => self.http.extend(http(&key, raw, at)),
            "sslcert" => self.cert.push(sslcert(key, raw, at)),
            "ntp" => self.ntp.push(ntp(key, raw, at)),
            _ => {}
        }
    }
}

fn key_of(row: &ResultRow) -> Key {
    Key {
        result_id: row.result_id.clone(),
        msm_id: row.msm_id,
        prb_id: row.prb_id,
        timestamp: row.timestamp,
        af: row.af,
        dst_addr: row.dst_addr.clone(),
    }
}

/// The part of a ping result the fast path reads.
#[derive(Deserialize)]
struct PingOnly {
    #[serde(default)]
    result: Vec<PingEntry>,
}

#[derive(Deserialize)]
struct PingEntry {
    #[serde(default, deserialize_with = "loose_rtt")]
    rtt: Option<f64>,
}

fn loose_rtt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(num(Some(&Value::deserialize(d)?)))
}

/// Sent, received and the RTT summary come from the `results` row, which read them.
fn ping_row(k: Key, rtts: Vec<f64>, row: &ResultRow) -> PingRow {
    let (sent, rcvd) = (row.sent, row.rcvd);
    PingRow {
        loss: if sent == 0 {
            0.0
        } else {
            100.0 * f64::from(sent.saturating_sub(rcvd)) / f64::from(sent)
        },
        rtts,
        sent,
        rcvd,
        rtt_min: row.rtt_min,
        rtt_avg: row.rtt_avg,
        rtt_max: row.rtt_max,
        result_id: k.result_id,
        msm_id: k.msm_id,
        prb_id: k.prb_id,
        timestamp: k.timestamp,
        af: k.af,
        dst_addr: k.dst_addr,
        inserted_at: row.inserted_at,
    }
}

fn ping(k: Key, raw: &Value, row: &ResultRow) -> PingRow {
    let rtts: Vec<f64> = raw
        .get("result")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(|p| num(p.get("rtt"))).collect())
        .unwrap_or_default();
    ping_row(k, rtts, row)
}

/// Note an address that answered at a hop (once).
fn responder(row: &mut HopRow, from: Option<&Value>) {
    if let Some(from) = from.and_then(Value::as_str) {
        if from != "*" && !row.responders.iter().any(|r| r == from) {
            row.responders.push(from.to_owned());
        }
    }
}

/// Keep what a packet (or mtr hop) says besides its RTT: `err`, `mtu`.
fn note(row: &mut HopRow, p: &Value) {
    if let Some(e) = p.get("err") {
        row.err = text(Some(e));
    }
    if let Some(mtu) = p.get("mtu") {
        row.mtu = count(Some(mtu));
    }
}

fn hops(k: &Key, kind: &str, raw: &Value, inserted_at: u32) -> Vec<HopRow> {
    let Some(list) = raw.get("result").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for h in list {
        let Some(hop) = num(h.get("hop")) else {
            continue;
        };
        let mut row = HopRow {
            result_id: k.result_id.clone(),
            msm_id: k.msm_id,
            prb_id: k.prb_id,
            timestamp: k.timestamp,
            af: k.af,
            dst_addr: k.dst_addr.clone(),
            kind: kind.to_owned(),
            hop: hop.clamp(0.0, 255.0) as u8,
            err: error_text(h.get("error")),
            inserted_at,
            ..Default::default()
        };
        if let Some(packets) = h.get("result").and_then(Value::as_array) {
            // traceroute: one entry per packet.
            for p in packets {
                match num(p.get("rtt")) {
                    Some(rtt) => row.rtts.push(rtt),
                    None => row.timeouts += u32::from(p.get("x").is_some()),
                }
                responder(&mut row, p.get("from"));
                note(&mut row, p);
            }
        } else if let Some(timings) = h.get("timings").and_then(Value::as_array) {
            // mtr: one timing per round, `rtt: null` when lost.
            for t in timings {
                match num(t.get("rtt")) {
                    Some(rtt) => row.rtts.push(rtt),
                    None => row.timeouts += 1,
                }
            }
            responder(&mut row, h.get("from"));
            if let Some(all) = h.get("from_all").and_then(Value::as_array) {
                for a in all {
                    responder(&mut row, Some(a));
                }
            }
            note(&mut row, h);
        }
        out.push(row);
    }
    out
}

/// `value` in presentation format, or `None` when its `Display` fails: hickory's
/// `Display` of a record can return an error for record data that decoded but cannot
/// be printed, and `to_string()` would panic on it (found by fuzzing, `dns_abuf`).
fn display<T: std::fmt::Display>(value: &T) -> Option<String> {
    use std::fmt::Write as _;
    let mut s = String::new();
    write!(s, "{value}").ok()?;
    Some(s)
}

/// rcode and answers of a DNS wire message (answers that cannot be printed are left out).
fn decode_abuf(abuf: &str) -> Option<(String, u32, Vec<String>)> {
    use hickory_proto::op::Message;
    use hickory_proto::serialize::binary::BinDecodable;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(abuf.trim())
        .ok()?;
    let msg = Message::from_bytes(&bytes).ok()?;
    let answers = msg.answers().iter().filter_map(display).collect();
    Some((
        display(&msg.response_code())?,
        u32::from(msg.answer_count()),
        answers,
    ))
}

fn dns(k: &Key, raw: &Value, inserted_at: u32) -> Vec<DnsRow> {
    let one = |entry: &Value, server: String| {
        let result = entry.get("result");
        let (rcode, ancount, answers) = result
            .and_then(|r| r.get("abuf"))
            .and_then(Value::as_str)
            .and_then(decode_abuf)
            .unwrap_or_else(|| {
                (
                    String::new(),
                    count(result.and_then(|r| r.get("ANCOUNT"))),
                    Vec::new(),
                )
            });
        DnsRow {
            result_id: k.result_id.clone(),
            msm_id: k.msm_id,
            prb_id: k.prb_id,
            timestamp: k.timestamp,
            af: k.af,
            dst_addr: server,
            rcode,
            rt: num(result.and_then(|r| r.get("rt"))).unwrap_or(-1.0),
            ancount,
            answers,
            error: error_text(entry.get("error")),
            inserted_at,
        }
    };
    match raw.get("resultset").and_then(Value::as_array) {
        Some(set) => set
            .iter()
            .map(|e| {
                let server = e
                    .get("dst_addr")
                    .and_then(Value::as_str)
                    .map_or_else(|| k.dst_addr.clone(), str::to_owned);
                one(e, server)
            })
            .collect(),
        None => vec![one(raw, k.dst_addr.clone())],
    }
}

fn http(k: &Key, raw: &Value, inserted_at: u32) -> Vec<HttpRow> {
    let Some(list) = raw.get("result").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|r| HttpRow {
            result_id: k.result_id.clone(),
            msm_id: k.msm_id,
            prb_id: k.prb_id,
            timestamp: k.timestamp,
            af: num(r.get("af")).map_or(k.af, |a| a as u8),
            dst_addr: r
                .get("dst_addr")
                .and_then(Value::as_str)
                .map_or_else(|| k.dst_addr.clone(), str::to_owned),
            uri: text(raw.get("uri")),
            method: text(r.get("method")),
            status: count(r.get("res")),
            rt: num(r.get("rt")).unwrap_or(-1.0),
            ttc: num(r.get("ttc")).unwrap_or(-1.0),
            ttfb: num(r.get("ttfb")).unwrap_or(-1.0),
            hsize: count(r.get("hsize")),
            bsize: count(r.get("bsize")),
            error: error_text(r.get("err")),
            inserted_at,
        })
        .collect()
}

fn sslcert(k: Key, raw: &Value, inserted_at: u32) -> CertRow {
    let chain: Vec<&str> = raw
        .get("cert")
        .and_then(Value::as_array)
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut row = CertRow {
        ver: text(raw.get("ver")),
        rt: num(raw.get("rt")).unwrap_or(-1.0),
        ttc: num(raw.get("ttc")).unwrap_or(-1.0),
        chain_length: u32::try_from(chain.len()).unwrap_or(u32::MAX),
        error: match (raw.get("alert"), raw.get("err").or(raw.get("error"))) {
            (Some(alert), _) => format!("alert: {}", error_text(Some(alert))),
            (None, e) => error_text(e),
        },
        inserted_at,
        ..Default::default()
    };
    if let Some(leaf) = chain.first() {
        // RIPE Atlas firmware writes "\n" as two characters in old results.
        let pem = leaf.replace("\\n", "\n");
        if let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(pem.as_bytes()) {
            if let Ok(cert) = pem.parse_x509() {
                let validity = cert.validity();
                let secs = |t: i64| u32::try_from(t.max(0)).unwrap_or(u32::MAX);
                row.subject = cert.subject().to_string();
                row.issuer = cert.issuer().to_string();
                row.not_before = secs(validity.not_before.timestamp());
                row.not_after = secs(validity.not_after.timestamp());
                row.valid_at_measurement =
                    u8::from(row.not_before <= k.timestamp && k.timestamp <= row.not_after);
            }
        }
    }
    CertRow {
        result_id: k.result_id,
        msm_id: k.msm_id,
        prb_id: k.prb_id,
        timestamp: k.timestamp,
        af: k.af,
        dst_addr: k.dst_addr,
        ..row
    }
}

fn ntp(k: Key, raw: &Value, inserted_at: u32) -> NtpRow {
    let list = raw.get("result").and_then(Value::as_array);
    let replies: Vec<&Value> = list
        .map(|l| l.iter().filter(|r| r.get("offset").is_some()).collect())
        .unwrap_or_default();
    let offsets: Vec<f64> = replies
        .iter()
        .filter_map(|r| num(r.get("offset")))
        .collect();
    let rtts: Vec<f64> = replies.iter().filter_map(|r| num(r.get("rtt"))).collect();
    NtpRow {
        result_id: k.result_id,
        msm_id: k.msm_id,
        prb_id: k.prb_id,
        timestamp: k.timestamp,
        af: k.af,
        dst_addr: k.dst_addr,
        stratum: count(raw.get("stratum")),
        packets: list.map_or(0, |l| u32::try_from(l.len()).unwrap_or(u32::MAX)),
        replies: u32::try_from(replies.len()).unwrap_or(u32::MAX),
        offset_avg: avg(&offsets),
        rtt_avg: avg(&rtts),
        rtt_min: rtts
            .iter()
            .copied()
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.min(r))))
            .unwrap_or(-1.0),
        error: error_text(raw.get("err").or(raw.get("error"))),
        inserted_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &str = include_str!("../tests/fixtures/ripe-atlas-result-samples.json");

    fn samples(kind: &str) -> Vec<Value> {
        let all: Value = serde_json::from_str(SAMPLES).expect("samples");
        all[kind].as_array().expect("kind").clone()
    }

    fn row_of(raw: &Value) -> ResultRow {
        let mut raw = raw.clone();
        raw["result_id"] = serde_json::json!("r");
        ResultRow::from_payload(raw.to_string().as_bytes(), 7).expect("result")
    }

    fn typed(raw: &Value) -> TypedRows {
        let mut t = TypedRows::default();
        t.push(&row_of(raw), raw);
        t
    }

    #[test]
    fn every_real_ripe_sample_gives_typed_rows() {
        for kind in ["ping", "traceroute", "dns", "sslcert"] {
            for raw in samples(kind) {
                let t = typed(&raw);
                assert!(!t.is_empty(), "{kind}: {raw}");
            }
        }
        // HTTP: one row per request, i.e. per entry of the `result` array. The oldest
        // firmware wrote `result` (or `src_addr`) as one line of text; those samples have
        // no requests to read and give no row.
        let (mut requests, mut text_only) = (0, 0);
        for raw in samples("http") {
            let t = typed(&raw);
            match raw["result"].as_array() {
                Some(list) => {
                    assert!(!list.is_empty(), "{raw}");
                    assert_eq!(t.http.len(), list.len(), "{raw}");
                    requests += 1;
                }
                None => {
                    assert!(t.is_empty(), "{raw}");
                    text_only += 1;
                }
            }
        }
        assert_eq!((requests, text_only), (14, 3));
    }

    #[test]
    fn the_ping_fast_path_equals_the_tree_path() {
        for raw in samples("ping").iter().chain([&serde_json::json!({"fw": 5020, "msm_id": 1, "prb_id": 2,
            "timestamp": 100, "type": "ping", "sent": 2, "rcvd": 1, "min": 1.0, "avg": 1.0, "max": 1.0,
            "result": [{"rtt": 1.0, "ttl": 50}, {"x": "*"}, {"error": "sendto failed"}, {"rtt": "2.5"}]})]) {
            let row = row_of(raw);
            let mut fast = TypedRows::default();
            fast.push_row(&row);
            assert_eq!(fast, typed(raw), "{raw}");
        }
    }

    #[test]
    fn ping_rtts_and_loss() {
        let raw = serde_json::json!({"fw": 5020, "msm_id": 1, "prb_id": 2, "timestamp": 100, "type": "ping",
            "dst_addr": "192.0.2.1", "sent": 4, "rcvd": 3, "min": 1.0, "avg": 2.0, "max": 3.0,
            "result": [{"rtt": 1.0}, {"x": "*"}, {"rtt": 2.0}, {"rtt": 3.0}]});
        let p = &typed(&raw).ping[0];
        assert_eq!((p.sent, p.rcvd, p.loss), (4, 3, 25.0));
        assert_eq!(p.rtts, vec![1.0, 2.0, 3.0]);
        // Old firmware: numbers as strings.
        let old = &samples("ping")[0];
        let p = &typed(old).ping[0];
        assert_eq!((p.sent, p.rcvd, p.rtt_min), (3, 3, 57.876));
    }

    #[test]
    fn traceroute_and_mtr_hops() {
        let raw = serde_json::json!({"fw": 5020, "msm_id": 1, "prb_id": 2, "timestamp": 100, "type": "traceroute",
            "dst_addr": "192.0.2.9", "result": [
                {"hop": 1, "result": [{"from": "10.0.0.1", "rtt": 1.5, "ttl": 64}, {"x": "*"}]},
                {"hop": 2, "result": [{"from": "10.0.0.2", "rtt": 2.5, "mtu": 1000}, {"from": "10.0.0.2", "rtt": 2.7, "mtu": 1000}]},
                {"hop": 3, "error": "sendto failed"}]});
        let h = typed(&raw).hops;
        assert_eq!(h.len(), 3);
        assert_eq!(
            (h[0].hop, h[0].timeouts, h[0].responders.clone()),
            (1, 1, vec!["10.0.0.1".to_owned()])
        );
        assert_eq!((h[1].mtu, h[1].rtts.clone()), (1000, vec![2.5, 2.7]));
        assert_eq!(h[2].err, "sendto failed");
        let mtr = serde_json::json!({"fw": 5020, "msm_id": 1, "prb_id": 2, "timestamp": 100, "type": "mtr",
            "dst_addr": "192.0.2.9", "result": [{"hop": 1, "from": "10.0.0.1", "from_all": ["10.0.0.1", "10.0.0.5"],
                "stats": {}, "timings": [{"rtt": 1.0}, {"rtt": null}, {"rtt": 2.0}]}]});
        let h = &typed(&mtr).hops[0];
        assert_eq!((h.kind.as_str(), h.timeouts, h.rtts.len()), ("mtr", 1, 2));
        assert_eq!(
            h.responders,
            vec!["10.0.0.1".to_owned(), "10.0.0.5".to_owned()]
        );
        // A real RIPE Atlas traceroute: 255 is the last hop a run can have.
        let real = &samples("traceroute")[0];
        let hops = typed(real).hops;
        assert_eq!(hops[0].responders, vec!["192.168.1.1".to_owned()]);
        assert_eq!(hops[1].timeouts, 3);
    }

    #[test]
    fn dns_answers_come_from_abuf() {
        let real = &samples("dns")[0];
        let d = &typed(real).dns[0];
        assert_eq!(d.rcode, "No Error");
        assert_eq!(d.ancount, 1);
        assert!(d.answers[0].starts_with("as250.net."), "{:?}", d.answers);
        assert!(d.answers[0].ends_with("194.150.168.100"), "{:?}", d.answers);
        assert_eq!(d.rt, 45.305);
        let timeout = serde_json::json!({"fw": 5020, "msm_id": 1, "prb_id": 2, "timestamp": 100, "type": "dns",
            "resultset": [{"dst_addr": "192.0.2.53", "error": {"timeout": 5000}},
                          {"dst_addr": "192.0.2.54", "result": {"rt": 3.0, "ANCOUNT": 0, "abuf": "not base64!"}}]});
        let d = typed(&timeout).dns;
        assert_eq!(
            (d[0].dst_addr.as_str(), d[0].error.as_str()),
            ("192.0.2.53", "timeout: 5000")
        );
        assert_eq!((d[1].rcode.as_str(), d[1].rt), ("", 3.0));
    }

    /// Found by the `dns_abuf` fuzz target: a message whose second answer decodes but
    /// whose `Display` fails made `to_string()` panic, killing the collector on every
    /// redelivery of the result. The row keeps the rcode and the answers that print.
    #[test]
    fn dns_answer_that_cannot_be_printed_is_left_out_not_a_panic() {
        const ABUF: &str = "VkGbgAABAAIAAAABCHRlc3R6b25lAAAGAAHADAAGAAEAAAOEAEYDYXJpBWFscGhhBmFyKWRucwNuZXQCYXUAB3N1cHBvcnQLYSFpcmVydmljZXMDY29tAFOhbEUAAAcIAAABLAAbr4AAAAcIAAApEAAAAAAAAAwDAwAAAAIAAAAAAAAAZaMTAAAABgAAAAIIam9uZAMCci8AAA4AAcAMACMAAAD/AQAABNgAKwAA//+C";
        let raw = serde_json::json!({"fw": 5020, "msm_id": 1, "prb_id": 2, "timestamp": 100, "type": "dns",
            "dst_addr": "192.0.2.53", "result": {"rt": 12.5, "ANCOUNT": 2, "abuf": ABUF}});
        let d = &typed(&raw).dns[0];
        assert_eq!((d.rcode.as_str(), d.ancount), ("No Error", 2));
        assert!(
            d.answers.len() < 2,
            "the unprintable answer is dropped: {:?}",
            d.answers
        );
        let mut fast = TypedRows::default();
        fast.push_row(&row_of(&raw));
        assert_eq!(fast.dns, typed(&raw).dns);
    }

    #[test]
    fn http_status_and_timings() {
        let raw = serde_json::json!({"fw": 5020, "msm_id": 1, "prb_id": 2, "timestamp": 100, "type": "http",
            "uri": "http://192.0.2.8:8080/x", "result": [{"af": 4, "dst_addr": "192.0.2.8", "method": "GET",
            "res": 200, "rt": 3.5, "ttc": 0.4, "ttfb": 2.0, "hsize": 120, "bsize": 1000, "ver": "1.1"},
            {"af": 4, "dst_addr": "192.0.2.8", "method": "GET", "err": "connect: timeout"}]});
        let h = typed(&raw).http;
        assert_eq!((h[0].status, h[0].bsize, h[0].ttfb), (200, 1000, 2.0));
        assert_eq!((h[1].status, h[1].error.as_str()), (0, "connect: timeout"));
    }

    #[test]
    fn sslcert_validity_from_the_leaf() {
        let real = samples("sslcert")
            .into_iter()
            .find(|s| s.get("cert").is_some())
            .expect("a sample with a chain");
        let c = &typed(&real).cert[0];
        assert!(c.chain_length >= 1);
        assert!(
            c.not_before > 1_000_000_000 && c.not_after > c.not_before,
            "{c:?}"
        );
        assert!(!c.subject.is_empty() && !c.issuer.is_empty(), "{c:?}");
        let alert = serde_json::json!({"fw": 5020, "msm_id": 1, "prb_id": 2, "timestamp": 100, "type": "sslcert",
            "alert": {"level": 2, "decription": 40}});
        let c = &typed(&alert).cert[0];
        assert_eq!((c.chain_length, c.not_after), (0, 0));
        assert!(c.error.starts_with("alert: "), "{}", c.error);
    }

    #[test]
    fn ntp_offsets() {
        let raw = serde_json::json!({"fw": 5020, "msm_id": 1, "prb_id": 2, "timestamp": 100, "type": "ntp",
            "dst_addr": "192.0.2.123", "stratum": 2, "result": [
                {"offset": 0.001, "rtt": 1.0}, {"x": "*"}, {"offset": 0.003, "rtt": 3.0}]});
        let n = &typed(&raw).ntp[0];
        assert_eq!((n.stratum, n.packets, n.replies), (2, 3, 2));
        assert!((n.offset_avg - 0.002).abs() < 1e-12);
        assert_eq!((n.rtt_avg, n.rtt_min), (2.0, 1.0));
    }
}
