//! Results in the RIPE Atlas result JSON format.
//!
//! Every result carries the RIPE Atlas common fields (`fw`, `lts`, `msm_id`, `prb_id`,
//! `timestamp`, `type`, `from`, `src_addr`, `dst_addr`, `dst_name`, `proto`, `af`) and the
//! type's own fields, so that `ripe.atlas.sagan` parses it unchanged. vantage adds one
//! field, `result_id`, a unique id that consumers deduplicate on; RIPE Atlas tools
//! ignore unknown fields.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The firmware version vantage probes report in `fw`. RIPE Atlas tools switch parsing
/// on `fw`; 5000 and up reads as "modern firmware" (RIPE Atlas itself is in the 5000s).
pub const PROBE_FW: u32 = 5020;

/// Largest result a controller accepts from a probe, in bytes.
pub const MAX_RESULT_BYTES: usize = 256 * 1024;

/// The fields every RIPE Atlas result has, as consumers read them before looking at the
/// type. Unknown fields are kept by the caller as raw JSON.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Common {
    /// vantage's unique id for this result (deduplication key).
    pub result_id: String,
    pub fw: u32,
    pub msm_id: u64,
    pub prb_id: u32,
    /// Unix seconds when the measurement ran.
    pub timestamp: i64,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub af: u8,
    #[serde(default)]
    pub dst_addr: String,
    #[serde(default)]
    pub dst_name: String,
    #[serde(default)]
    pub src_addr: String,
    #[serde(default)]
    pub from: String,
}

/// Why a result from a probe was refused.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    #[error("result is {0} bytes, over the {MAX_RESULT_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("result is not a RIPE Atlas result object: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("result_id is empty or longer than 64 bytes")]
    BadId,
}

/// A result as it travels: its common fields parsed, and the whole JSON kept verbatim.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    pub common: Common,
    pub raw: Value,
}

impl Envelope {
    /// Parse and bound a result received from an untrusted peer.
    pub fn parse(bytes: &[u8]) -> Result<Self, ResultError> {
        if bytes.len() > MAX_RESULT_BYTES {
            return Err(ResultError::TooLarge(bytes.len()));
        }
        let raw: Value = serde_json::from_slice(bytes).map_err(ResultError::Malformed)?;
        Self::from_value(raw)
    }

    pub fn from_value(raw: Value) -> Result<Self, ResultError> {
        let common = Common::deserialize(&raw).map_err(ResultError::Malformed)?;
        if common.result_id.is_empty() || common.result_id.len() > 64 {
            return Err(ResultError::BadId);
        }
        Ok(Self { common, raw })
    }
}

/// One reply (or its absence) in a ping result's `result[]`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum PingReply {
    /// A reply, RTT in milliseconds.
    Rtt {
        rtt: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ttl: Option<u8>,
    },
    /// An error on send, e.g. `sendto failed: Network is unreachable`.
    Error { error: String },
    /// No reply: `{"x": "*"}`.
    Timeout { x: String },
}

impl PingReply {
    pub fn timeout() -> Self {
        PingReply::Timeout { x: "*".to_owned() }
    }
}

/// A RIPE Atlas ping result.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PingResult {
    pub result_id: String,
    pub fw: u32,
    /// Seconds since the probe's clock was last synchronised; -1 when unknown.
    pub lts: i64,
    pub msm_id: u64,
    pub prb_id: u32,
    pub timestamp: i64,
    #[serde(rename = "type")]
    pub kind: String,
    pub af: u8,
    pub from: String,
    pub src_addr: String,
    pub dst_addr: String,
    pub dst_name: String,
    pub proto: String,
    pub size: u32,
    /// Seconds between runs (RIPE Atlas `step`); null for one-offs.
    pub step: Option<u32>,
    pub ttl: Option<u8>,
    pub sent: u32,
    pub rcvd: u32,
    pub dup: u32,
    /// Smallest RTT in ms, -1 when nothing came back (as RIPE Atlas does).
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    pub result: Vec<PingReply>,
}

impl PingResult {
    /// Fill `sent`, `rcvd`, `min`, `avg`, `max` and `ttl` from `result`, the RIPE Atlas way:
    /// -1 for min/avg/max when no reply came back.
    pub fn summarise(&mut self) {
        let rtts: Vec<f64> = self
            .result
            .iter()
            .filter_map(|r| match r {
                PingReply::Rtt { rtt, .. } => Some(*rtt),
                _ => None,
            })
            .collect();
        self.sent = u32::try_from(self.result.len()).unwrap_or(u32::MAX);
        self.rcvd = u32::try_from(rtts.len()).unwrap_or(u32::MAX);
        if rtts.is_empty() {
            (self.min, self.avg, self.max) = (-1.0, -1.0, -1.0);
        } else {
            let round3 = |v: f64| (v * 1000.0).round() / 1000.0;
            self.min = round3(rtts.iter().copied().fold(f64::INFINITY, f64::min));
            self.max = round3(rtts.iter().copied().fold(f64::NEG_INFINITY, f64::max));
            self.avg = round3(rtts.iter().sum::<f64>() / rtts.len() as f64);
        }
        self.ttl = self.result.iter().find_map(|r| match r {
            PingReply::Rtt { ttl, .. } => *ttl,
            _ => None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written from the RIPE Atlas documented ping format (fw 4790 era).
    const RIPE_PING: &str = r#"{"af":4,"prb_id":270,"result":[{"rtt":70.265},{"rtt":54.584,"ttl":51},{"x":"*"},{"error":"sendto failed: Network is unreachable"}],
        "ttl":51,"avg":62.4245,"size":12,"from":"188.193.157.75","proto":"ICMP","timestamp":1406561624,"dup":0,"type":"ping","sent":4,
        "msm_id":1000192,"fw":4790,"max":70.265,"step":360,"src_addr":"192.168.178.21","rcvd":2,"lts":76,"dst_name":"hsi.cablecom.ch",
        "min":54.584,"dst_addr":"62.2.16.24","result_id":"0192f2b1-aaaa-7bbb-8ccc-000000000001"}"#;

    #[test]
    fn ripe_ping_round_trips() {
        let parsed: PingResult = serde_json::from_str(RIPE_PING).expect("parses");
        assert_eq!(parsed.result.len(), 4);
        assert_eq!(
            parsed.result[0],
            PingReply::Rtt {
                rtt: 70.265,
                ttl: None
            }
        );
        assert_eq!(
            parsed.result[1],
            PingReply::Rtt {
                rtt: 54.584,
                ttl: Some(51)
            }
        );
        assert_eq!(parsed.result[2], PingReply::timeout());
        assert!(matches!(parsed.result[3], PingReply::Error { .. }));
        let again: PingResult =
            serde_json::from_value(serde_json::to_value(&parsed).expect("ser")).expect("de");
        assert_eq!(again, parsed);
        let original: Value = serde_json::from_str(RIPE_PING).expect("json");
        assert_eq!(serde_json::to_value(&parsed).expect("ser"), original);
    }

    #[test]
    fn summary_follows_ripe_rules() {
        let mut r: PingResult = serde_json::from_str(RIPE_PING).expect("parses");
        r.summarise();
        assert_eq!((r.sent, r.rcvd), (4, 2));
        assert_eq!(r.min, 54.584);
        assert_eq!(r.max, 70.265);
        assert_eq!(r.avg, 62.425);
        assert_eq!(r.ttl, Some(51));
        r.result = vec![PingReply::timeout(); 3];
        r.summarise();
        assert_eq!(
            (r.sent, r.rcvd, r.min, r.avg, r.max),
            (3, 0, -1.0, -1.0, -1.0)
        );
    }

    #[test]
    fn envelope_parses_common_fields_and_refuses_junk() {
        let env = Envelope::parse(RIPE_PING.as_bytes()).expect("envelope");
        assert_eq!(env.common.msm_id, 1_000_192);
        assert_eq!(env.common.kind, "ping");
        assert_eq!(env.raw["min"], 54.584);

        assert!(matches!(
            Envelope::parse(b"{not json"),
            Err(ResultError::Malformed(_))
        ));
        assert!(matches!(
            Envelope::parse(br#"{"type":"ping"}"#),
            Err(ResultError::Malformed(_))
        ));
        let no_id = RIPE_PING.replace("0192f2b1-aaaa-7bbb-8ccc-000000000001", "");
        assert!(matches!(
            Envelope::parse(no_id.as_bytes()),
            Err(ResultError::BadId)
        ));
        let huge = vec![b' '; MAX_RESULT_BYTES + 1];
        assert!(matches!(
            Envelope::parse(&huge),
            Err(ResultError::TooLarge(_))
        ));
    }
}
