//! Measurement definitions, modelled on the RIPE Atlas API v2.
//!
//! A [`Definition`] is what a user writes (in a `Measurement` resource or a
//! `POST /api/v2/measurements/` body): field names follow RIPE Atlas
//! (`packets`, `packet_interval`, `start_time`, ...) so that a definition can be
//! copied between the two. It is deliberately loose (numbers are signed, the type
//! is a string) so that a bad value is reported by [`Definition::validate`] with a
//! message naming the field, instead of making the whole object unreadable.
//!
//! [`Definition::validate`] turns it into a typed [`Task`], which is what travels
//! to probes.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The measurement types RIPE Atlas defines.
pub const KNOWN_TYPES: &[&str] = &["ping", "traceroute", "dns", "http", "sslcert", "ntp"];
/// The types that vantage probes execute today.
pub const EXECUTABLE_TYPES: &[&str] = &["ping"];

/// One measurement definition (RIPE Atlas `definitions[]` entry).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct Definition {
    /// Measurement type: ping, traceroute, dns, http, sslcert or ntp.
    #[serde(rename = "type")]
    pub kind: String,
    /// Address family, 4 or 6 (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub af: Option<i64>,
    /// Host name or IP address to measure. Required for every type but dns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Free-text description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Seconds between two runs of a periodic measurement (RIPE Atlas default for ping: 240).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// Seconds over which the probes spread their runs (uniform jitter). Default: the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<i64>,
    /// Resolve `target` on the probe rather than once centrally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_on_probe: Option<bool>,
    /// ping: packets per run (1-16, default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<i64>,
    /// ping: ICMP payload size in bytes (0-2048, default 48).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// ping: milliseconds between packets (2-300000, default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet_interval: Option<i64>,
}

/// Where probes come from (RIPE Atlas `probes[]` entry).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
pub struct ProbeSource {
    /// Source kind: area, country, asn, prefix, probes or msm.
    #[serde(rename = "type")]
    pub kind: String,
    /// The value for the kind: an area name (WW, West, North-Central, South-Central,
    /// North-East, South-East), an ISO country code, an AS number, a prefix, a
    /// comma-separated list of probe ids, or a measurement id.
    pub value: String,
    /// How many probes to take from this source.
    pub requested: i64,
    /// Tag filters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<TagFilter>,
}

/// `tags: {include: [...], exclude: [...]}`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct TagFilter {
    /// A probe must carry every one of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// A probe must carry none of these tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// RIPE Atlas areas.
pub const AREAS: &[&str] = &[
    "WW",
    "West",
    "North-Central",
    "South-Central",
    "North-East",
    "South-East",
];

/// A typed, validated probe source.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceKind {
    Area(String),
    Country(String),
    Asn(u32),
    Prefix(ipnet::IpNet),
    Probes(Vec<u32>),
    Msm(u64),
}

/// A validated probe source.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub kind: SourceKind,
    pub requested: u32,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

/// What is wrong with a definition: the field, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidField {
    /// Path of the offending field, e.g. `spec.packets` or `spec.probes[0].value`.
    pub field: String,
    /// What was wrong and how to fix it.
    pub message: String,
}

impl InvalidField {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A validated ping.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PingOptions {
    pub packets: u32,
    pub size: u32,
    pub packet_interval_ms: u32,
}

/// The typed, per-type part of a task.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TaskKind {
    Ping(PingOptions),
}

impl TaskKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            TaskKind::Ping(_) => "ping",
        }
    }
}

/// A validated measurement as a probe runs it: one entry of a probe's schedule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Measurement id (RIPE Atlas `msm_id`).
    pub msm_id: u64,
    /// 4 or 6.
    pub af: u8,
    /// Host name or address.
    pub target: String,
    /// Seconds between runs (ignored for one-offs).
    pub interval: u32,
    /// Seconds of uniform jitter per run.
    pub spread: u32,
    /// Unix seconds; none = now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    /// Unix seconds; none = until stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_time: Option<i64>,
    /// Run once, as soon as received.
    #[serde(default)]
    pub is_oneoff: bool,
    #[serde(flatten)]
    pub kind: TaskKind,
}

/// Timing options that live beside the definition (RIPE Atlas top-level fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    pub start_time: Option<i64>,
    pub stop_time: Option<i64>,
    pub is_oneoff: bool,
}

fn ranged(
    field: &str,
    value: Option<i64>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<u32, InvalidField> {
    let v = value.unwrap_or(default);
    if v < min || v > max {
        return Err(InvalidField::new(
            format!("spec.{field}"),
            format!("{v} is out of range; use a value from {min} to {max} (default {default})"),
        ));
    }
    u32::try_from(v)
        .map_err(|_| InvalidField::new(format!("spec.{field}"), format!("{v} does not fit")))
}

/// Is `s` a plausible host: an IP address, or a DNS name of valid labels.
pub fn is_host(s: &str) -> bool {
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        // A name of only digits and dots is a malformed address, not a host name.
        && !name.chars().all(|c| c.is_ascii_digit() || c == '.')
}

impl Definition {
    /// Validate the definition and build the task a probe runs. `msm_id` is the id the
    /// measurement was given. Every error names the field and says how to fix it.
    pub fn validate(&self, msm_id: u64, timing: Timing) -> Result<Task, InvalidField> {
        let kind = self.kind.as_str();
        if !KNOWN_TYPES.contains(&kind) {
            return Err(InvalidField::new(
                "spec.type",
                format!(
                    "unknown measurement type {kind:?}; use one of {}",
                    KNOWN_TYPES.join(", ")
                ),
            ));
        }
        if !EXECUTABLE_TYPES.contains(&kind) {
            return Err(InvalidField::new(
                "spec.type",
                format!(
                    "type {kind:?} is a RIPE Atlas type that vantage probes do not execute yet; use one of {}",
                    EXECUTABLE_TYPES.join(", ")
                ),
            ));
        }
        let af = match self.af.unwrap_or(4) {
            4 => 4,
            6 => 6,
            other => {
                return Err(InvalidField::new(
                    "spec.af",
                    format!("{other} is not an address family; use 4 or 6"),
                ))
            }
        };
        let target = match self.target.as_deref().map(str::trim) {
            None | Some("") => {
                return Err(InvalidField::new(
                    "spec.target",
                    format!("missing; a {kind} measurement needs a target host name or IP address"),
                ))
            }
            Some(t) if !is_host(t) => {
                return Err(InvalidField::new(
                    "spec.target",
                    format!("{t:?} is not a host name or an IP address"),
                ))
            }
            Some(t) => t.to_owned(),
        };
        if let Ok(ip) = target.parse::<IpAddr>() {
            if (ip.is_ipv4() && af == 6) || (ip.is_ipv6() && af == 4) {
                return Err(InvalidField::new(
                    "spec.af",
                    format!(
                        "af is {af} but target {target} is an IPv{} address; make them agree",
                        if ip.is_ipv4() { 4 } else { 6 }
                    ),
                ));
            }
        }
        let interval = ranged("interval", self.interval, 240, 60, 86_400 * 7)?;
        let spread = ranged(
            "spread",
            self.spread,
            i64::from(interval),
            0,
            i64::from(interval),
        )?;
        if let (Some(start), Some(stop)) = (timing.start_time, timing.stop_time) {
            if stop <= start {
                return Err(InvalidField::new(
                    "spec.stop_time",
                    format!(
                        "stop_time {stop} is not after start_time {start}; set it later or drop it"
                    ),
                ));
            }
        }
        let task_kind = match kind {
            "ping" => TaskKind::Ping(PingOptions {
                packets: ranged("packets", self.packets, 3, 1, 16)?,
                size: ranged("size", self.size, 48, 0, 2048)?,
                packet_interval_ms: ranged(
                    "packet_interval",
                    self.packet_interval,
                    1000,
                    2,
                    300_000,
                )?,
            }),
            // Unreachable: EXECUTABLE_TYPES was checked above.
            other => {
                return Err(InvalidField::new(
                    "spec.type",
                    format!("type {other:?} is not executable"),
                ))
            }
        };
        Ok(Task {
            msm_id,
            af,
            target,
            interval,
            spread,
            start_time: timing.start_time,
            stop_time: timing.stop_time,
            is_oneoff: timing.is_oneoff,
            kind: task_kind,
        })
    }
}

impl ProbeSource {
    /// Validate one `probes[]` entry; `index` is its position, for the message.
    pub fn validate(&self, index: usize) -> Result<Source, InvalidField> {
        let at = |f: &str| format!("spec.probes[{index}].{f}");
        let requested = u32::try_from(self.requested)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                InvalidField::new(
                    at("requested"),
                    format!("{} is not a positive count", self.requested),
                )
            })?;
        let value = self.value.trim();
        let kind = match self.kind.as_str() {
            "area" => {
                let area = AREAS
                    .iter()
                    .find(|a| a.eq_ignore_ascii_case(value))
                    .ok_or_else(|| InvalidField::new(at("value"), format!("unknown area {value:?}; use one of {}", AREAS.join(", "))))?;
                SourceKind::Area((*area).to_owned())
            }
            "country" => {
                if value.len() != 2 || !value.chars().all(|c| c.is_ascii_alphabetic()) {
                    return Err(InvalidField::new(at("value"), format!("{value:?} is not a two-letter ISO 3166 country code")));
                }
                SourceKind::Country(value.to_ascii_uppercase())
            }
            "asn" => SourceKind::Asn(
                value
                    .trim_start_matches("AS")
                    .parse()
                    .map_err(|_| InvalidField::new(at("value"), format!("{value:?} is not an AS number")))?,
            ),
            "prefix" => SourceKind::Prefix(
                value
                    .parse()
                    .map_err(|_| InvalidField::new(at("value"), format!("{value:?} is not a prefix such as 192.0.2.0/24")))?,
            ),
            "probes" => SourceKind::Probes(
                value
                    .split(',')
                    .map(|p| p.trim().parse::<u32>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| InvalidField::new(at("value"), format!("{value:?} is not a comma-separated list of probe ids")))?,
            ),
            "msm" => SourceKind::Msm(
                value
                    .parse()
                    .map_err(|_| InvalidField::new(at("value"), format!("{value:?} is not a measurement id")))?,
            ),
            other => {
                return Err(InvalidField::new(
                    at("type"),
                    format!("unknown probe source type {other:?}; use area, country, asn, prefix, probes or msm"),
                ))
            }
        };
        let tags = self.tags.clone().unwrap_or_default();
        Ok(Source {
            kind,
            requested,
            include: tags.include,
            exclude: tags.exclude,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping(target: &str) -> Definition {
        Definition {
            kind: "ping".into(),
            target: Some(target.into()),
            ..Default::default()
        }
    }

    #[test]
    fn ripe_defaults_apply() {
        let task = ping("127.0.0.1")
            .validate(7, Timing::default())
            .expect("valid");
        assert_eq!(task.af, 4);
        assert_eq!(task.interval, 240);
        assert_eq!(task.spread, 240);
        assert_eq!(
            task.kind,
            TaskKind::Ping(PingOptions {
                packets: 3,
                size: 48,
                packet_interval_ms: 1000
            })
        );
    }

    #[test]
    fn definition_reads_ripe_atlas_json() {
        let def: Definition = serde_json::from_str(
            r#"{"type":"ping","af":4,"target":"ripe.net","description":"x","packets":5,"size":64,"interval":600,"spread":30,"resolve_on_probe":true}"#,
        )
        .expect("parses");
        let task = def.validate(1, Timing::default()).expect("valid");
        assert_eq!(task.interval, 600);
        assert_eq!(task.spread, 30);
        assert_eq!(task.target, "ripe.net");
    }

    #[test]
    fn bad_input_names_the_field() {
        let unknown = Definition {
            kind: "pong".into(),
            ..ping("a.example")
        };
        let err = unknown
            .validate(1, Timing::default())
            .expect_err("unknown type");
        assert_eq!(err.field, "spec.type");
        assert!(
            err.message.contains("unknown measurement type \"pong\""),
            "{err}"
        );

        let missing = Definition {
            target: None,
            ..ping("x")
        };
        assert_eq!(
            missing
                .validate(1, Timing::default())
                .expect_err("no target")
                .field,
            "spec.target"
        );

        let negative = Definition {
            packets: Some(-1),
            ..ping("a.example")
        };
        let err = negative
            .validate(1, Timing::default())
            .expect_err("negative packets");
        assert_eq!(err.field, "spec.packets");
        assert!(err.message.contains("from 1 to 16"));

        for not_host in ["not a host", "-bad.example", "1.2.3.4.5", "a..b"] {
            let err = ping(not_host)
                .validate(1, Timing::default())
                .expect_err(not_host);
            assert_eq!(err.field, "spec.target", "{not_host}");
        }

        let family = Definition {
            af: Some(6),
            ..ping("127.0.0.1")
        };
        assert_eq!(
            family.validate(1, Timing::default()).expect_err("af").field,
            "spec.af"
        );

        let stop = Timing {
            start_time: Some(100),
            stop_time: Some(50),
            is_oneoff: false,
        };
        assert_eq!(
            ping("a.example").validate(1, stop).expect_err("stop").field,
            "spec.stop_time"
        );
    }

    #[test]
    fn known_but_unexecutable_type_says_so() {
        let dns = Definition {
            kind: "dns".into(),
            ..Default::default()
        };
        let err = dns.validate(1, Timing::default()).expect_err("dns not yet");
        assert!(err.message.contains("do not execute yet"), "{err}");
    }

    #[test]
    fn probe_sources_validate() {
        let yaml = r#"
- {type: area, value: ww, requested: 5}
- {type: country, value: nl, requested: 2, tags: {include: [system-ipv4-works], exclude: [datacentre]}}
- {type: asn, value: "AS3333", requested: 1}
- {type: prefix, value: 193.0.0.0/21, requested: 1}
- {type: probes, value: "1001, 1002", requested: 2}
- {type: msm, value: "1000002", requested: 10}
"#;
        let sources: Vec<ProbeSource> = serde_yaml::from_str(yaml).expect("yaml");
        let v: Vec<Source> = sources
            .iter()
            .enumerate()
            .map(|(i, s)| s.validate(i).expect("valid"))
            .collect();
        assert_eq!(v[0].kind, SourceKind::Area("WW".into()));
        assert_eq!(v[1].kind, SourceKind::Country("NL".into()));
        assert_eq!(v[1].include, vec!["system-ipv4-works".to_string()]);
        assert_eq!(v[2].kind, SourceKind::Asn(3333));
        assert_eq!(v[4].kind, SourceKind::Probes(vec![1001, 1002]));
        assert_eq!(v[5].kind, SourceKind::Msm(1_000_002));

        let bad = ProbeSource {
            kind: "city".into(),
            value: "x".into(),
            requested: 1,
            tags: None,
        };
        assert_eq!(
            bad.validate(3).expect_err("kind").field,
            "spec.probes[3].type"
        );
        let zero = ProbeSource {
            kind: "area".into(),
            value: "WW".into(),
            requested: 0,
            tags: None,
        };
        assert_eq!(
            zero.validate(0).expect_err("zero").field,
            "spec.probes[0].requested"
        );
    }

    #[test]
    fn task_round_trips_with_flat_type() {
        let task = ping("127.0.0.1")
            .validate(9, Timing::default())
            .expect("valid");
        let json = serde_json::to_value(&task).expect("ser");
        assert_eq!(json["type"], "ping");
        assert_eq!(json["packets"], 3);
        let back: Task = serde_json::from_value(json).expect("de");
        assert_eq!(back, task);
    }
}
