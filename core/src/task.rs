//! The typed task a probe runs: one entry of its schedule, as it travels in
//! [`Down::Schedule`](crate::frame::Down::Schedule). Built by
//! [`Definition::validate`](crate::definition::Definition::validate), so every value in
//! it is already checked.

use serde::{Deserialize, Serialize};

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
