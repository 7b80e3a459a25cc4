//! The per-type part of validation: each executable measurement type's options,
//! checked field by field with RIPE Atlas defaults, into its [`TaskKind`] payload.
//!
//! [`TaskKind`]: crate::task::TaskKind

use super::fields::{is_host, one_of, port, ranged};
use super::{Definition, InvalidField};
use crate::task::{
    DnsOptions, HttpOptions, NtpOptions, PingOptions, SslcertOptions, TraceProtocol,
    TracerouteOptions,
};

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

/// Defaults of the traceroute-like types.
pub(super) struct TraceDefaults {
    protocol: &'static str,
    max_hops: i64,
    response_timeout: i64,
}

/// RIPE Atlas traceroute defaults.
pub(super) const TRACEROUTE_DEFAULTS: TraceDefaults = TraceDefaults {
    protocol: "UDP",
    max_hops: 32,
    response_timeout: 4000,
};

/// mtr defaults (Globalping: ICMP, 3 packets a hop; mtr(8): 30 hops).
pub(super) const MTR_DEFAULTS: TraceDefaults = TraceDefaults {
    protocol: "ICMP",
    max_hops: 30,
    response_timeout: 1000,
};

impl Definition {
    /// The options of a ping.
    pub(super) fn ping_options(&self) -> Result<PingOptions, InvalidField> {
        Ok(PingOptions {
            packets: ranged("packets", self.packets, 3, 1, 16)?,
            size: ranged("size", self.size, 48, 0, 2048)?,
            packet_interval_ms: ranged("packet_interval", self.packet_interval, 1000, 2, 300_000)?,
        })
    }

    /// The options of a traceroute or an mtr measurement.
    pub(super) fn trace_options(
        &self,
        defaults: &TraceDefaults,
    ) -> Result<TracerouteOptions, InvalidField> {
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

    /// The options of a dns measurement; `use_probe_resolver` is whether the probe asks
    /// its own resolvers (then the definition has no target).
    pub(super) fn dns_options(&self, use_probe_resolver: bool) -> Result<DnsOptions, InvalidField> {
        let query_argument = match self.query_argument.as_deref().map(str::trim) {
            None | Some("") => {
                return Err(InvalidField::new(
                    "spec.query_argument",
                    "missing; a dns measurement needs the name to query (e.g. ripe.net)",
                ))
            }
            Some(q) if q != "." && !is_host(q) => {
                return Err(InvalidField::new(
                    "spec.query_argument",
                    format!("{q:?} is not a domain name or an IP address"),
                ))
            }
            Some(q) => q.to_owned(),
        };
        Ok(DnsOptions {
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
            use_probe_resolver,
            set_rd_bit: self.set_rd_bit.unwrap_or(false),
            set_do_bit: self.set_do_bit.unwrap_or(false),
            set_cd_bit: self.set_cd_bit.unwrap_or(false),
            set_nsid_bit: self.set_nsid_bit.unwrap_or(false),
            udp_payload_size: ranged("udp_payload_size", self.udp_payload_size, 512, 512, 4096)?,
            retry: ranged("retry", self.retry, 0, 0, 10)?,
            timeout_ms: ranged("timeout", self.timeout, 5000, 100, 60_000)?,
        })
    }

    /// The options of an http measurement.
    pub(super) fn http_options(&self) -> Result<HttpOptions, InvalidField> {
        let https = self.https.unwrap_or(false);
        let path = self.path.clone().unwrap_or_else(|| "/".to_owned());
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidField::new(
                "spec.path",
                format!("{path:?} is not a URL path; it must start with / and hold no spaces"),
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
        Ok(HttpOptions {
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

    /// The options of an sslcert measurement.
    pub(super) fn sslcert_options(&self) -> Result<SslcertOptions, InvalidField> {
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
        Ok(SslcertOptions {
            port: port("port", self.port, 443)?,
            hostname: hostname.map(str::to_owned),
        })
    }

    /// The options of an ntp measurement.
    pub(super) fn ntp_options(&self) -> Result<NtpOptions, InvalidField> {
        Ok(NtpOptions {
            packets: ranged("packets", self.packets, 3, 1, 16)?,
            timeout_ms: ranged("timeout", self.timeout, 4000, 100, 60_000)?,
        })
    }
}
