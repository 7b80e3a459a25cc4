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

/// Transport of a traceroute.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceProtocol {
    #[serde(rename = "ICMP")]
    Icmp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "TCP")]
    Tcp,
}

impl TraceProtocol {
    pub fn as_str(&self) -> &'static str {
        match self {
            TraceProtocol::Icmp => "ICMP",
            TraceProtocol::Udp => "UDP",
            TraceProtocol::Tcp => "TCP",
        }
    }
}

/// A validated traceroute.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TracerouteOptions {
    pub protocol: TraceProtocol,
    /// 0: classic (the flow changes per packet); 1-64: Paris (one flow per run).
    pub paris: u32,
    pub first_hop: u32,
    pub max_hops: u32,
    /// Packets per hop.
    pub packets: u32,
    pub size: u32,
    /// Destination port (UDP, TCP).
    pub port: u16,
    pub dont_fragment: bool,
    pub response_timeout_ms: u32,
}

/// A validated DNS query.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DnsOptions {
    /// `UDP` or `TCP`.
    pub protocol: String,
    /// `IN` or `CHAOS`.
    pub query_class: String,
    /// Upper-case type mnemonic, e.g. `AAAA`.
    pub query_type: String,
    pub query_argument: String,
    pub use_probe_resolver: bool,
    pub set_rd_bit: bool,
    pub set_do_bit: bool,
    pub set_cd_bit: bool,
    pub set_nsid_bit: bool,
    pub udp_payload_size: u32,
    pub retry: u32,
    pub timeout_ms: u32,
}

/// A validated HTTP request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HttpOptions {
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_string: Option<String>,
    pub port: u16,
    /// `1.0` or `1.1`.
    pub version: String,
    pub header_bytes: u32,
    pub timing_verbosity: u32,
    pub https: bool,
}

/// A validated TLS certificate fetch.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SslcertOptions {
    pub port: u16,
    /// SNI name; none: the target when it is a name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// A validated NTP measurement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NtpOptions {
    pub packets: u32,
    pub timeout_ms: u32,
}

/// The typed, per-type part of a task.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TaskKind {
    Ping(PingOptions),
    Traceroute(TracerouteOptions),
    Dns(DnsOptions),
    Http(HttpOptions),
    Sslcert(SslcertOptions),
    Ntp(NtpOptions),
    /// mtr: traceroute rounds summarised per hop. `packets` is the number of rounds.
    Mtr(TracerouteOptions),
}

impl TaskKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            TaskKind::Ping(_) => "ping",
            TaskKind::Traceroute(_) => "traceroute",
            TaskKind::Dns(_) => "dns",
            TaskKind::Http(_) => "http",
            TaskKind::Sslcert(_) => "sslcert",
            TaskKind::Ntp(_) => "ntp",
            TaskKind::Mtr(_) => "mtr",
        }
    }
}

/// DNS query types a probe sends (RIPE Atlas accepts these names).
pub const DNS_QUERY_TYPES: &[&str] = &[
    "A",
    "AAAA",
    "ANY",
    "CAA",
    "CDNSKEY",
    "CDS",
    "CNAME",
    "DNSKEY",
    "DS",
    "HINFO",
    "HTTPS",
    "MX",
    "NAPTR",
    "NS",
    "NSEC",
    "NSEC3",
    "NSEC3PARAM",
    "PTR",
    "RRSIG",
    "SOA",
    "SPF",
    "SRV",
    "SSHFP",
    "SVCB",
    "TLSA",
    "TXT",
];
/// DNS query classes a probe sends.
pub const DNS_QUERY_CLASSES: &[&str] = &["IN", "CHAOS"];
/// HTTP methods a probe sends.
pub const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST"];

fn one_of(
    field: &str,
    value: Option<&str>,
    default: &str,
    allowed: &[&str],
) -> Result<String, InvalidField> {
    let v = value.map(str::trim).unwrap_or(default).to_ascii_uppercase();
    if allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(InvalidField::new(
            format!("spec.{field}"),
            format!("unknown {field} {v:?}; use one of {}", allowed.join(", ")),
        ))
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

fn port(field: &str, value: Option<i64>, default: u16) -> Result<u16, InvalidField> {
    let v = ranged(field, value, i64::from(default), 1, 65_535)?;
    u16::try_from(v)
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

/// Defaults of the traceroute-like types.
struct TraceDefaults {
    protocol: &'static str,
    max_hops: i64,
    response_timeout: i64,
}

/// RIPE Atlas traceroute defaults.
const TRACEROUTE_DEFAULTS: TraceDefaults = TraceDefaults {
    protocol: "UDP",
    max_hops: 32,
    response_timeout: 4000,
};

/// mtr defaults (Globalping: ICMP, 3 packets a hop; mtr(8): 30 hops).
const MTR_DEFAULTS: TraceDefaults = TraceDefaults {
    protocol: "ICMP",
    max_hops: 30,
    response_timeout: 1000,
};

impl Definition {
    /// The options of a traceroute or an mtr measurement.
    fn trace_options(&self, defaults: &TraceDefaults) -> Result<TracerouteOptions, InvalidField> {
        let protocol = match one_of(
            "protocol",
            self.protocol.as_deref(),
            defaults.protocol,
            &["ICMP", "UDP", "TCP"],
        )?
        .as_str()
        {
            "ICMP" => TraceProtocol::Icmp,
            "TCP" => TraceProtocol::Tcp,
            _ => TraceProtocol::Udp,
        };
        let first_hop = ranged("first_hop", self.first_hop, 1, 1, 255)?;
        let max_hops = ranged("max_hops", self.max_hops, defaults.max_hops, 1, 255)?;
        if first_hop > max_hops {
            return Err(InvalidField::new(
                "spec.first_hop",
                format!("first_hop {first_hop} is above max_hops {max_hops}; lower it"),
            ));
        }
        let default_port = if protocol == TraceProtocol::Tcp {
            80
        } else {
            33434
        };
        Ok(TracerouteOptions {
            protocol,
            paris: ranged("paris", self.paris, 16, 0, 64)?,
            first_hop,
            max_hops,
            packets: ranged("packets", self.packets, 3, 1, 16)?,
            size: ranged("size", self.size, 48, 0, 2048)?,
            port: port("port", self.port, default_port)?,
            dont_fragment: self.dont_fragment.unwrap_or(false),
            response_timeout_ms: ranged(
                "response_timeout",
                self.response_timeout,
                defaults.response_timeout,
                10,
                60_000,
            )?,
        })
    }

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
        let target_optional = kind == "dns" && self.use_probe_resolver.unwrap_or(false);
        let target = match self.target.as_deref().map(str::trim) {
            None | Some("") if target_optional => String::new(),
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
            "traceroute" => TaskKind::Traceroute(self.trace_options(&TRACEROUTE_DEFAULTS)?),
            "mtr" => TaskKind::Mtr(self.trace_options(&MTR_DEFAULTS)?),
            "dns" => {
                let query_argument =
                    match self.query_argument.as_deref().map(str::trim) {
                        None | Some("") => return Err(InvalidField::new(
                            "spec.query_argument",
                            "missing; a dns measurement needs the name to query (e.g. ripe.net)",
                        )),
                        Some(q) if q != "." && !is_host(q) => {
                            return Err(InvalidField::new(
                                "spec.query_argument",
                                format!("{q:?} is not a domain name or an IP address"),
                            ))
                        }
                        Some(q) => q.to_owned(),
                    };
                TaskKind::Dns(DnsOptions {
                    protocol: one_of("protocol", self.protocol.as_deref(), "UDP", &["UDP", "TCP"])?,
                    query_class: one_of(
                        "query_class",
                        self.query_class.as_deref(),
                        "IN",
                        DNS_QUERY_CLASSES,
                    )?,
                    query_type: one_of(
                        "query_type",
                        self.query_type.as_deref(),
                        "A",
                        DNS_QUERY_TYPES,
                    )?,
                    query_argument,
                    use_probe_resolver: target_optional,
                    set_rd_bit: self.set_rd_bit.unwrap_or(false),
                    set_do_bit: self.set_do_bit.unwrap_or(false),
                    set_cd_bit: self.set_cd_bit.unwrap_or(false),
                    set_nsid_bit: self.set_nsid_bit.unwrap_or(false),
                    udp_payload_size: ranged(
                        "udp_payload_size",
                        self.udp_payload_size,
                        512,
                        512,
                        4096,
                    )?,
                    retry: ranged("retry", self.retry, 0, 0, 10)?,
                    timeout_ms: ranged("timeout", self.timeout, 5000, 100, 60_000)?,
                })
            }
            "http" => {
                let https = self.https.unwrap_or(false);
                let path = self.path.clone().unwrap_or_else(|| "/".to_owned());
                if !path.starts_with('/')
                    || path.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(InvalidField::new(
                        "spec.path",
                        format!(
                            "{path:?} is not a URL path; it must start with / and hold no spaces"
                        ),
                    ));
                }
                let query_string = self.query_string.clone().filter(|q| !q.is_empty());
                if let Some(q) = &query_string {
                    if q.chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == '#')
                    {
                        return Err(InvalidField::new(
                            "spec.query_string",
                            format!("{q:?} is not a URL query string"),
                        ));
                    }
                }
                TaskKind::Http(HttpOptions {
                    method: one_of("method", self.method.as_deref(), "GET", HTTP_METHODS)?,
                    path,
                    query_string,
                    port: port("port", self.port, if https { 443 } else { 80 })?,
                    version: match self.version.as_deref().map(str::trim).unwrap_or("1.1") {
                        "1.0" => "1.0".to_owned(),
                        "1.1" => "1.1".to_owned(),
                        other => {
                            return Err(InvalidField::new(
                                "spec.version",
                                format!("HTTP version {other:?} is not supported; use 1.0 or 1.1"),
                            ))
                        }
                    },
                    header_bytes: ranged("header_bytes", self.header_bytes, 0, 0, 2048)?,
                    timing_verbosity: ranged("timing_verbosity", self.timing_verbosity, 0, 0, 2)?,
                    https,
                })
            }
            "sslcert" => {
                let hostname = self
                    .hostname
                    .as_deref()
                    .map(str::trim)
                    .filter(|h| !h.is_empty());
                if let Some(h) = hostname {
                    if !is_host(h) {
                        return Err(InvalidField::new(
                            "spec.hostname",
                            format!("{h:?} is not a host name"),
                        ));
                    }
                }
                TaskKind::Sslcert(SslcertOptions {
                    port: port("port", self.port, 443)?,
                    hostname: hostname.map(str::to_owned),
                })
            }
            "ntp" => TaskKind::Ntp(NtpOptions {
                packets: ranged("packets", self.packets, 3, 1, 16)?,
                timeout_ms: ranged("timeout", self.timeout, 4000, 100, 60_000)?,
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
