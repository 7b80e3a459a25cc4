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
//! to probes. It checks the fields every type shares here, then the type's own options
//! (`kinds`), with the field checks of `fields`. Probe sources (`probes[]`) are in
//! `source`.

mod fields;
mod kinds;
mod source;

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::task::{
    DnsOptions, HttpOptions, NtpOptions, PingOptions, SslcertOptions, Task, TaskKind,
    TraceProtocol, TracerouteOptions,
};
pub use fields::is_host;
pub use kinds::{DNS_QUERY_CLASSES, DNS_QUERY_TYPES, HTTP_METHODS};
pub use source::{ProbeSource, Source, SourceKind, TagFilter, AREAS, DEFAULT_MAX_REQUESTED};

use fields::ranged;
use kinds::{MTR_DEFAULTS, TRACEROUTE_DEFAULTS};

/// The measurement types vantage knows: the six RIPE Atlas types, and `mtr` (hop
/// statistics over several rounds, as Globalping offers it).
pub const KNOWN_TYPES: &[&str] = &["ping", "traceroute", "dns", "http", "sslcert", "ntp", "mtr"];
/// The types that vantage probes execute today.
pub const EXECUTABLE_TYPES: &[&str] =
    &["ping", "traceroute", "dns", "http", "sslcert", "ntp", "mtr"];

/// One measurement definition (RIPE Atlas `definitions[]` entry).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
pub struct Definition {
    /// Measurement type: ping, traceroute, dns, http, sslcert, ntp (RIPE Atlas) or mtr.
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
    /// ping: packets per run; traceroute: packets per hop; mtr: rounds; ntp: packets (1-16, default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<i64>,
    /// ping: ICMP payload size in bytes (0-2048, default 48).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// ping: milliseconds between packets (2-300000, default 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet_interval: Option<i64>,
    /// traceroute: ICMP, UDP (default) or TCP. mtr: ICMP (default), UDP or TCP. dns: UDP (default) or TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// traceroute: Paris id, 0 (classic traceroute) to 64 (default 16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paris: Option<i64>,
    /// traceroute: TTL of the first hop (1-255, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_hop: Option<i64>,
    /// traceroute and mtr: largest TTL (1-255, default 32; mtr 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hops: Option<i64>,
    /// traceroute (TCP/UDP destination port, default 80/33434), http (default 80 or 443), sslcert (default 443).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// traceroute and mtr: set the don't-fragment bit (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dont_fragment: Option<bool>,
    /// traceroute and mtr: milliseconds to wait for each reply (10-60000, default 4000; mtr 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_timeout: Option<i64>,
    /// dns: IN (default) or CHAOS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_class: Option<String>,
    /// dns: query type such as A, AAAA, NS, SOA, TXT, MX, ANY (default A).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_type: Option<String>,
    /// dns: the name to query. Required for dns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_argument: Option<String>,
    /// dns: ask the probe's own resolvers (resolv.conf) instead of `target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_probe_resolver: Option<bool>,
    /// dns: set Recursion Desired (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_rd_bit: Option<bool>,
    /// dns: set DNSSEC OK, with EDNS0 (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_do_bit: Option<bool>,
    /// dns: set Checking Disabled (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_cd_bit: Option<bool>,
    /// dns: ask for the NSID EDNS0 option (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_nsid_bit: Option<bool>,
    /// dns: EDNS0 UDP payload size (512-4096, default 512: no EDNS0 unless do/nsid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_payload_size: Option<i64>,
    /// dns: retries after a timeout (0-10, default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<i64>,
    /// dns and ntp: milliseconds to wait for an answer (100-60000, default 5000 for dns, 4000 for ntp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// http: GET (default), HEAD or POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// http: path of the URL (default /).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// http: query string of the URL, without `?`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_string: Option<String>,
    /// http: HTTP version, 1.0 or 1.1 (default 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// http: bytes of the response header to report (0-2048, default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_bytes: Option<i64>,
    /// http: 0 (default), 1 (ttc, ttfb, time) or 2 (also a read timeline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing_verbosity: Option<i64>,
    /// http: use TLS (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub https: Option<bool>,
    /// sslcert: server name (SNI) to send; default the target if it is a name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
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

/// Timing options that live beside the definition (RIPE Atlas top-level fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    pub start_time: Option<i64>,
    pub stop_time: Option<i64>,
    pub is_oneoff: bool,
}

impl Definition {
    /// Validate the definition and build the task a probe runs. `msm_id` is the id the
    /// measurement was given. Every error names the field and says how to fix it.
    pub fn validate(&self, msm_id: u64, timing: Timing) -> Result<Task, InvalidField> {
        let kind = self.executable_kind()?;
        let af = self.address_family()?;
        let use_probe_resolver = kind == "dns" && self.use_probe_resolver.unwrap_or(false);
        let target = self.checked_target(kind, af, use_probe_resolver)?;
        let (interval, spread) = self.interval_and_spread()?;
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
            "ping" => TaskKind::Ping(self.ping_options()?),
            "traceroute" => TaskKind::Traceroute(self.trace_options(&TRACEROUTE_DEFAULTS)?),
            "mtr" => TaskKind::Mtr(self.trace_options(&MTR_DEFAULTS)?),
            "dns" => TaskKind::Dns(self.dns_options(use_probe_resolver)?),
            "http" => TaskKind::Http(self.http_options()?),
            "sslcert" => TaskKind::Sslcert(self.sslcert_options()?),
            "ntp" => TaskKind::Ntp(self.ntp_options()?),
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

    /// `type`: known, and executed by vantage probes.
    fn executable_kind(&self) -> Result<&str, InvalidField> {
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
        Ok(kind)
    }

    /// `af`: 4 (default) or 6.
    fn address_family(&self) -> Result<u8, InvalidField> {
        match self.af.unwrap_or(4) {
            4 => Ok(4),
            6 => Ok(6),
            other => Err(InvalidField::new(
                "spec.af",
                format!("{other} is not an address family; use 4 or 6"),
            )),
        }
    }

    /// `target`: a host name or an address of family `af`; empty only when `optional`
    /// (a dns measurement on the probe's resolvers).
    fn checked_target(&self, kind: &str, af: u8, optional: bool) -> Result<String, InvalidField> {
        let target = match self.target.as_deref().map(str::trim) {
            None | Some("") if optional => String::new(),
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
        Ok(target)
    }

    /// `interval` (60 s to a week, default 240) and `spread` (up to the interval, which
    /// is its default).
    fn interval_and_spread(&self) -> Result<(u32, u32), InvalidField> {
        let interval = ranged("interval", self.interval, 240, 60, 86_400 * 7)?;
        let spread = ranged(
            "spread",
            self.spread,
            i64::from(interval),
            0,
            i64::from(interval),
        )?;
        Ok((interval, spread))
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
    fn every_known_type_is_executable_with_ripe_defaults() {
        assert_eq!(KNOWN_TYPES, EXECUTABLE_TYPES);
        let def = |kind: &str| Definition {
            kind: kind.into(),
            target: Some("example.net".into()),
            query_argument: Some("ripe.net".into()),
            ..Default::default()
        };
        let t = def("mtr").validate(1, Timing::default()).expect("mtr");
        let TaskKind::Mtr(o) = t.kind else {
            panic!("{t:?}")
        };
        assert_eq!(
            (o.protocol, o.max_hops, o.packets, o.response_timeout_ms),
            (TraceProtocol::Icmp, 30, 3, 1000)
        );
        let t = def("traceroute")
            .validate(1, Timing::default())
            .expect("traceroute");
        let TaskKind::Traceroute(o) = t.kind else {
            panic!("{t:?}")
        };
        assert_eq!(
            (
                o.protocol,
                o.paris,
                o.first_hop,
                o.max_hops,
                o.packets,
                o.port
            ),
            (TraceProtocol::Udp, 16, 1, 32, 3, 33434)
        );
        let t = def("dns").validate(1, Timing::default()).expect("dns");
        let TaskKind::Dns(o) = t.kind else {
            panic!("{t:?}")
        };
        assert_eq!(
            (
                o.protocol.as_str(),
                o.query_class.as_str(),
                o.query_type.as_str(),
                o.timeout_ms
            ),
            ("UDP", "IN", "A", 5000)
        );
        let t = def("http").validate(1, Timing::default()).expect("http");
        let TaskKind::Http(o) = t.kind else {
            panic!("{t:?}")
        };
        assert_eq!(
            (
                o.method.as_str(),
                o.path.as_str(),
                o.port,
                o.version.as_str()
            ),
            ("GET", "/", 80, "1.1")
        );
        let https = Definition {
            https: Some(true),
            ..def("http")
        };
        let TaskKind::Http(o) = https.validate(1, Timing::default()).expect("https").kind else {
            panic!()
        };
        assert_eq!(o.port, 443);
        let t = def("sslcert")
            .validate(1, Timing::default())
            .expect("sslcert");
        assert_eq!(
            t.kind,
            TaskKind::Sslcert(SslcertOptions {
                port: 443,
                hostname: None
            })
        );
        let t = def("ntp").validate(1, Timing::default()).expect("ntp");
        assert_eq!(
            t.kind,
            TaskKind::Ntp(NtpOptions {
                packets: 3,
                timeout_ms: 4000
            })
        );
        // Task JSON round-trips for every type.
        for kind in KNOWN_TYPES {
            let task = def(kind).validate(3, Timing::default()).expect(kind);
            let json = serde_json::to_value(&task).expect("ser");
            assert_eq!(json["type"], *kind);
            let back: Task = serde_json::from_value(json).expect("de");
            assert_eq!(back, task);
        }
    }

    #[test]
    fn new_type_options_are_validated_by_field() {
        let dns = |f: fn(&mut Definition)| {
            let mut d = Definition {
                kind: "dns".into(),
                target: Some("192.0.2.53".into()),
                query_argument: Some("ripe.net".into()),
                ..Default::default()
            };
            f(&mut d);
            d.validate(1, Timing::default())
        };
        let err = dns(|d| d.query_type = Some("AAAAA".into())).expect_err("qtype");
        assert_eq!(err.field, "spec.query_type");
        assert!(
            err.message.contains("unknown query_type \"AAAAA\""),
            "{err}"
        );
        assert_eq!(
            dns(|d| d.query_class = Some("HS".into()))
                .expect_err("class")
                .field,
            "spec.query_class"
        );
        assert_eq!(
            dns(|d| d.query_argument = None).expect_err("arg").field,
            "spec.query_argument"
        );
        assert_eq!(
            dns(|d| d.query_argument = Some("a b".into()))
                .expect_err("arg")
                .field,
            "spec.query_argument"
        );
        assert_eq!(
            dns(|d| d.protocol = Some("QUIC".into()))
                .expect_err("proto")
                .field,
            "spec.protocol"
        );
        assert_eq!(
            dns(|d| d.retry = Some(-1)).expect_err("retry").field,
            "spec.retry"
        );
        assert_eq!(
            dns(|d| d.udp_payload_size = Some(100))
                .expect_err("size")
                .field,
            "spec.udp_payload_size"
        );
        // dns: no target needed when the probe's resolvers are asked; otherwise it is.
        let t = dns(|d| {
            d.target = None;
            d.use_probe_resolver = Some(true);
        })
        .expect("probe resolver");
        assert_eq!(t.target, "");
        assert_eq!(
            dns(|d| d.target = None).expect_err("target").field,
            "spec.target"
        );
        let q = dns(|d| d.query_type = Some("aaaa".into())).expect("lower case qtype");
        let TaskKind::Dns(o) = q.kind else { panic!() };
        assert_eq!(o.query_type, "AAAA");

        let trace = |f: fn(&mut Definition)| {
            let mut d = Definition {
                kind: "traceroute".into(),
                target: Some("192.0.2.1".into()),
                ..Default::default()
            };
            f(&mut d);
            d.validate(1, Timing::default())
        };
        assert_eq!(
            trace(|d| d.protocol = Some("SCTP".into()))
                .expect_err("p")
                .field,
            "spec.protocol"
        );
        assert_eq!(
            trace(|d| d.max_hops = Some(0)).expect_err("h").field,
            "spec.max_hops"
        );
        assert_eq!(
            trace(|d| d.first_hop = Some(40)).expect_err("f").field,
            "spec.first_hop"
        );
        assert_eq!(
            trace(|d| d.packets = Some(-3)).expect_err("n").field,
            "spec.packets"
        );
        assert_eq!(
            trace(|d| d.paris = Some(65)).expect_err("paris").field,
            "spec.paris"
        );
        assert_eq!(
            trace(|d| d.port = Some(70000)).expect_err("port").field,
            "spec.port"
        );
        assert_eq!(
            trace(|d| d.target = Some("no such host!".into()))
                .expect_err("t")
                .field,
            "spec.target"
        );

        let http = Definition {
            kind: "http".into(),
            target: Some("example.net".into()),
            ..Default::default()
        };
        let bad = Definition {
            method: Some("DELETE".into()),
            ..http.clone()
        };
        assert_eq!(
            bad.validate(1, Timing::default()).expect_err("m").field,
            "spec.method"
        );
        let bad = Definition {
            path: Some("no-slash".into()),
            ..http.clone()
        };
        assert_eq!(
            bad.validate(1, Timing::default()).expect_err("p").field,
            "spec.path"
        );
        let bad = Definition {
            version: Some("2".into()),
            ..http.clone()
        };
        assert_eq!(
            bad.validate(1, Timing::default()).expect_err("v").field,
            "spec.version"
        );
        let bad = Definition {
            header_bytes: Some(-1),
            ..http
        };
        assert_eq!(
            bad.validate(1, Timing::default()).expect_err("hb").field,
            "spec.header_bytes"
        );

        let ssl = Definition {
            kind: "sslcert".into(),
            target: Some("192.0.2.1".into()),
            hostname: Some("bad host".into()),
            ..Default::default()
        };
        assert_eq!(
            ssl.validate(1, Timing::default()).expect_err("sni").field,
            "spec.hostname"
        );
        let ntp = Definition {
            kind: "ntp".into(),
            target: Some("192.0.2.123".into()),
            packets: Some(0),
            ..Default::default()
        };
        assert_eq!(
            ntp.validate(1, Timing::default()).expect_err("ntp").field,
            "spec.packets"
        );
        let ntp = Definition {
            kind: "ntp".into(),
            target: None,
            ..Default::default()
        };
        assert_eq!(
            ntp.validate(1, Timing::default()).expect_err("ntp").field,
            "spec.target"
        );
    }

    #[test]
    fn ripe_atlas_api_json_for_new_types_reads() {
        let d: Definition = serde_json::from_str(r#"{"type":"dns","af":4,"query_class":"IN","query_type":"SOA","query_argument":"nl","use_probe_resolver":true,"set_rd_bit":true,"set_do_bit":true,"udp_payload_size":1232,"protocol":"TCP","retry":2}"#).expect("dns json");
        let TaskKind::Dns(o) = d.validate(1, Timing::default()).expect("valid").kind else {
            panic!()
        };
        assert!(o.use_probe_resolver && o.set_rd_bit && o.set_do_bit && !o.set_cd_bit);
        assert_eq!(
            (o.udp_payload_size, o.retry, o.protocol.as_str()),
            (1232, 2, "TCP")
        );
        let d: Definition = serde_json::from_str(r#"{"type":"traceroute","af":4,"target":"ripe.net","protocol":"ICMP","paris":1,"first_hop":2,"max_hops":20,"packets":2,"size":60,"dont_fragment":true}"#).expect("tr json");
        let TaskKind::Traceroute(o) = d.validate(1, Timing::default()).expect("valid").kind else {
            panic!()
        };
        assert_eq!(
            (
                o.protocol,
                o.paris,
                o.first_hop,
                o.max_hops,
                o.packets,
                o.size,
                o.dont_fragment
            ),
            (TraceProtocol::Icmp, 1, 2, 20, 2, 60, true)
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
