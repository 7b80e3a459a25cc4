//! The RIPE Atlas streaming protocol's messages: every message is a JSON array
//! `[type, payload]`. Clients send `atlas_subscribe` and `atlas_unsubscribe` with a
//! parameter object; this module turns them into [`Request`]s (or an error naming the
//! field that is wrong) and builds the server's frames.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{json, Map, Value};

pub const SUBSCRIBE: &str = "atlas_subscribe";
pub const UNSUBSCRIBE: &str = "atlas_unsubscribe";
pub const SUBSCRIBED: &str = "atlas_subscribed";
pub const UNSUBSCRIBED: &str = "atlas_unsubscribed";
pub const ERROR: &str = "atlas_error";
pub const RESULT: &str = "atlas_result";
pub const PROBESTATUS: &str = "atlas_probestatus";
pub const METADATA: &str = "atlas_metadata";

/// Result types a `type` filter may name.
pub const RESULT_TYPES: &[&str] = &["ping", "traceroute", "dns", "sslcert", "http", "ntp", "mtr"];

/// What a `result` subscription selects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultFilter {
    pub msm: Option<u64>,
    pub prb: Option<u32>,
    pub kind: Option<String>,
    /// `sourceAddress`: the probe's source (`src_addr`) or public (`from`) address.
    pub source: Option<IpAddr>,
    /// `sendBacklog`: stored results first, then live ones.
    pub backlog: bool,
}

/// What a `probestatus` subscription selects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeFilter {
    pub prb: Option<u32>,
    /// `enrichProbes`: add the probe object (as `/api/v2/probes/{id}/` has it).
    pub enrich: bool,
}

/// What a `metadata` subscription selects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaFilter {
    pub msm: Option<u64>,
    pub kind: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subscription {
    Result(ResultFilter),
    ProbeStatus(ProbeFilter),
    Metadata(MetaFilter),
}

/// A client message. `params` is the parameter object as sent: the server echoes it in
/// `atlas_subscribed`, and an unsubscribe names a subscription by equal parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Subscribe { sub: Subscription, params: Value },
    Unsubscribe { params: Value },
}

const RESULT_FIELDS: &[&str] = &["msm", "prb", "type", "sourceAddress", "sendBacklog"];
const PROBE_FIELDS: &[&str] = &["prb", "enrichProbes"];
const META_FIELDS: &[&str] = &["msm", "type"];

/// Parse one text frame from a client. The error says what was wrong, naming the field.
pub fn parse(text: &str) -> Result<Request, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        format!("the message is not JSON ({e}); send [\"atlas_subscribe\", {{\"stream_type\": \"result\", \"msm\": 1001}}]")
    })?;
    let (name, params) = match v {
        Value::Array(mut items) if items.len() == 2 => {
            let params = items.pop().unwrap_or(Value::Null);
            let name = items.pop().unwrap_or(Value::Null);
            (name, params)
        }
        _ => {
            return Err(
                "a message is a JSON array [type, payload], e.g. [\"atlas_subscribe\", {\"stream_type\": \"result\", \"msm\": 1001}]"
                    .to_owned(),
            )
        }
    };
    let Value::Object(fields) = &params else {
        return Err("the payload must be an object of stream parameters".to_owned());
    };
    match name.as_str() {
        Some(SUBSCRIBE) => Ok(Request::Subscribe {
            sub: subscription(fields)?,
            params,
        }),
        Some(UNSUBSCRIBE) => {
            subscription(fields)?;
            Ok(Request::Unsubscribe { params })
        }
        Some(other) => Err(format!(
            "unknown message type {other:?}; send {SUBSCRIBE} or {UNSUBSCRIBE}"
        )),
        None => Err(format!(
            "the message type must be a string: {SUBSCRIBE} or {UNSUBSCRIBE}"
        )),
    }
}

fn subscription(fields: &Map<String, Value>) -> Result<Subscription, String> {
    // cousteau sends `stream_type`; RIPE Atlas's own examples send `streamType`.
    let stream_type = match (fields.get("stream_type"), fields.get("streamType")) {
        (Some(a), Some(b)) if a != b => {
            return Err("stream_type and streamType disagree; send one of them".to_owned())
        }
        (Some(t), _) | (None, Some(t)) => t
            .as_str()
            .ok_or("stream_type: must be a string: result, probestatus or metadata")?,
        (None, None) => {
            return Err("stream_type: missing; use result, probestatus or metadata".to_owned())
        }
    };
    let allowed = match stream_type {
        "result" => RESULT_FIELDS,
        "probestatus" => PROBE_FIELDS,
        "metadata" => META_FIELDS,
        other => {
            return Err(format!(
                "stream_type: {other:?} is not a stream type; use result, probestatus or metadata"
            ))
        }
    };
    if let Some(k) = fields
        .keys()
        .find(|k| !allowed.contains(&k.as_str()) && *k != "stream_type" && *k != "streamType")
    {
        return Err(format!(
            "{k}: unknown parameter for stream_type {stream_type}; use {}",
            allowed.join(", ")
        ));
    }
    Ok(match stream_type {
        "result" => {
            let f = ResultFilter {
                msm: id(fields, "msm")?,
                prb: id(fields, "prb")?
                    .map(|p| u32::try_from(p).map_err(|_| format!("prb: {p} is not a probe id")))
                    .transpose()?,
                kind: kind(fields)?,
                source: fields
                    .get("sourceAddress")
                    .map(|v| {
                        v.as_str()
                            .and_then(|s| s.trim().parse::<IpAddr>().ok())
                            .ok_or_else(|| {
                                format!("sourceAddress: {v} is not an IPv4 or IPv6 address")
                            })
                    })
                    .transpose()?,
                backlog: flag(fields, "sendBacklog")?,
            };
            if f.backlog && f.msm.is_none() {
                return Err(
                    "sendBacklog: needs msm (the backlog is read per measurement); add \"msm\": <id>"
                        .to_owned(),
                );
            }
            Subscription::Result(f)
        }
        "probestatus" => Subscription::ProbeStatus(ProbeFilter {
            prb: id(fields, "prb")?
                .map(|p| u32::try_from(p).map_err(|_| format!("prb: {p} is not a probe id")))
                .transpose()?,
            enrich: flag(fields, "enrichProbes")?,
        }),
        _ => Subscription::Metadata(MetaFilter {
            msm: id(fields, "msm")?,
            kind: kind(fields)?,
        }),
    })
}

/// A positive id, as a number or a string of digits.
fn id(fields: &Map<String, Value>, name: &str) -> Result<Option<u64>, String> {
    let Some(v) = fields.get(name) else {
        return Ok(None);
    };
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n > 0 => Ok(Some(n)),
        _ => Err(format!("{name}: {v} is not an id (a positive integer)")),
    }
}

fn kind(fields: &Map<String, Value>) -> Result<Option<String>, String> {
    let Some(v) = fields.get("type") else {
        return Ok(None);
    };
    match v.as_str().map(|s| s.trim().to_ascii_lowercase()) {
        Some(t) if RESULT_TYPES.contains(&t.as_str()) => Ok(Some(t)),
        _ => Err(format!(
            "type: {v} is not a measurement type; use one of {}",
            RESULT_TYPES.join(", ")
        )),
    }
}

fn flag(fields: &Map<String, Value>, name: &str) -> Result<bool, String> {
    match fields.get(name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(v) => Err(format!("{name}: {v} is not true or false")),
    }
}

/// The fields of a result the filters look at, read without building a JSON tree.
#[derive(Deserialize)]
pub struct Head<'a> {
    pub msm_id: u64,
    pub prb_id: u32,
    #[serde(rename = "type", borrow, default)]
    pub kind: Cow<'a, str>,
    #[serde(borrow, default)]
    pub result_id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub src_addr: Cow<'a, str>,
    #[serde(borrow, default)]
    pub from: Cow<'a, str>,
    #[serde(default)]
    pub timestamp: i64,
}

impl<'a> Head<'a> {
    pub fn parse(raw: &'a [u8]) -> Option<Self> {
        serde_json::from_slice(raw).ok()
    }

    /// What identifies a result across the backlog and the live stream: its
    /// `result_id`, else measurement, probe and time.
    pub fn identity(&self) -> String {
        if self.result_id.is_empty() {
            format!("{}/{}/{}", self.msm_id, self.prb_id, self.timestamp)
        } else {
            self.result_id.clone().into_owned()
        }
    }
}

impl ResultFilter {
    pub fn matches(&self, h: &Head<'_>) -> bool {
        self.msm.is_none_or(|m| m == h.msm_id)
            && self.prb.is_none_or(|p| p == h.prb_id)
            && self.kind.as_deref().is_none_or(|k| k == h.kind)
            && self.source.is_none_or(|ip| {
                [&h.src_addr, &h.from]
                    .iter()
                    .any(|a| a.parse::<IpAddr>().ok() == Some(ip))
            })
    }
}

/// `["atlas_result", raw]` without re-encoding the result.
pub fn result_frame(raw: &str) -> String {
    let mut s = String::with_capacity(raw.len() + 18);
    s.push_str("[\"atlas_result\",");
    s.push_str(raw);
    s.push(']');
    s
}

/// `[name, payload]`.
pub fn frame(name: &str, payload: &Value) -> String {
    json!([name, payload]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(text: &str) -> Result<Subscription, String> {
        match parse(text)? {
            Request::Subscribe { sub, .. } => Ok(sub),
            Request::Unsubscribe { .. } => Err("unsubscribe".into()),
        }
    }

    #[test]
    fn cousteau_subscriptions_parse() {
        assert_eq!(
            sub(
                r#"["atlas_subscribe", {"msm": 1001, "prb": "7", "type": "ping", "sourceAddress": "192.0.2.1", "sendBacklog": true, "stream_type": "result"}]"#
            ),
            Ok(Subscription::Result(ResultFilter {
                msm: Some(1001),
                prb: Some(7),
                kind: Some("ping".into()),
                source: "192.0.2.1".parse().ok(),
                backlog: true,
            }))
        );
        assert_eq!(
            sub(r#"["atlas_subscribe", {"streamType": "probestatus", "enrichProbes": true}]"#),
            Ok(Subscription::ProbeStatus(ProbeFilter {
                prb: None,
                enrich: true
            }))
        );
        assert_eq!(
            sub(r#"["atlas_subscribe", {"stream_type": "metadata"}]"#),
            Ok(Subscription::Metadata(MetaFilter::default()))
        );
        let un = parse(r#"["atlas_unsubscribe", {"stream_type": "result", "msm": 5}]"#);
        assert_eq!(
            un,
            Ok(Request::Unsubscribe {
                params: json!({"stream_type": "result", "msm": 5})
            })
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = |t: &str| sub(t).expect_err("refused");
        assert!(err(
            r#"["atlas_subscribe", {"stream_type": "result", "msm": 1, "colour": "red"}]"#
        )
        .starts_with("colour: unknown parameter"));
        assert!(
            err(r#"["atlas_subscribe", {"stream_type": "result", "msm": "x"}]"#)
                .starts_with("msm:")
        );
        assert!(
            err(r#"["atlas_subscribe", {"stream_type": "result", "prb": -1}]"#).starts_with("prb:")
        );
        assert!(
            err(r#"["atlas_subscribe", {"stream_type": "result", "type": "smtp"}]"#)
                .starts_with("type:")
        );
        assert!(
            err(r#"["atlas_subscribe", {"stream_type": "result", "sourceAddress": "nope"}]"#)
                .starts_with("sourceAddress:")
        );
        assert!(
            err(r#"["atlas_subscribe", {"stream_type": "result", "sendBacklog": true}]"#)
                .starts_with("sendBacklog:")
        );
        assert!(
            err(r#"["atlas_subscribe", {"stream_type": "firehose"}]"#).starts_with("stream_type:")
        );
        assert!(err(r#"["atlas_subscribe", {"msm": 1}]"#).starts_with("stream_type: missing"));
        assert!(
            err(r#"["atlas_subscribe", {"stream_type": "probestatus", "msm": 1}]"#)
                .starts_with("msm: unknown parameter for stream_type probestatus")
        );
        assert!(err(r#"["atlas_dance", {}]"#).contains("atlas_dance"));
        assert!(err("not json").contains("not JSON"));
        assert!(err(r#"{"stream_type": "result"}"#).contains("JSON array"));
    }

    #[test]
    fn filters_match_results() {
        let raw = br#"{"result_id":"r1","msm_id":1001,"prb_id":7,"type":"ping","src_addr":"10.0.0.2","from":"192.0.2.1","timestamp":5}"#;
        let h = Head::parse(raw).expect("a result");
        assert_eq!(h.identity(), "r1");
        let f = |s: &str| match sub(s) {
            Ok(Subscription::Result(f)) => f,
            other => panic!("{other:?}"),
        };
        assert!(f(r#"["atlas_subscribe", {"stream_type": "result", "msm": 1001, "prb": 7, "type": "ping", "sourceAddress": "192.0.2.1"}]"#).matches(&h));
        assert!(f(
            r#"["atlas_subscribe", {"stream_type": "result", "sourceAddress": "10.0.0.2"}]"#
        )
        .matches(&h));
        assert!(!f(r#"["atlas_subscribe", {"stream_type": "result", "msm": 1002}]"#).matches(&h));
        assert!(!f(r#"["atlas_subscribe", {"stream_type": "result", "prb": 8}]"#).matches(&h));
        assert!(!f(r#"["atlas_subscribe", {"stream_type": "result", "type": "dns"}]"#).matches(&h));
        let anon = Head::parse(br#"{"msm_id":1,"prb_id":2,"timestamp":3}"#).expect("a result");
        assert_eq!(anon.identity(), "1/2/3");
        let framed: Value =
            serde_json::from_str(&result_frame(std::str::from_utf8(raw).expect("utf8")))
                .expect("JSON");
        assert_eq!(framed[0], "atlas_result");
        assert_eq!(framed[1]["prb_id"], 7);
    }
}
