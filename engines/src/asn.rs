//! The origin ASN of an address, from a BGP prefix table (step 2 of single-radius's probe
//! choice: probes in the target's network first).
//!
//! Two common dumps are read, one route per line, `#` or `;` comments:
//! * pyasn's `ipasn.dat`: `1.0.0.0/24<TAB>13335`;
//! * CAIDA Routeviews prefix2as: `1.0.0.0<TAB>24<TAB>13335`, where a multi-origin
//!   prefix lists `13335_4826` and an AS set `{64512,64513}` (the first origin counts).
//!
//! Lookup is longest-prefix match: one hash map per prefix length, tried from the
//! longest (33 probes at most for IPv4, 129 for IPv6; a million routes load in about a
//! second).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use crate::engine::active::AsnLookup;
use crate::Error;

/// Routes by family and prefix length: network bits → origin ASN.
#[derive(Debug, Default)]
pub struct PrefixTable {
    v4: Vec<HashMap<u32, u32>>,
    v6: Vec<HashMap<u128, u32>>,
    routes: usize,
}

fn mask4(bits: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        bits & (u32::MAX << (32 - u32::from(len)))
    }
}

fn mask6(bits: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        bits & (u128::MAX << (128 - u32::from(len)))
    }
}

impl PrefixTable {
    /// Read a dump (see the module docs); a line that does not parse is an error naming it.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut table = PrefixTable {
            v4: vec![HashMap::new(); 33],
            v6: vec![HashMap::new(); 129],
            routes: 0,
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let bad = |why: &str| {
                Error::Dataset {
                data: "ASN table",
                problem: format!(
                    "line {}: {why}: {line:?}; expected `prefix/len<TAB>asn` (pyasn) or `address<TAB>len<TAB>asn` (CAIDA prefix2as)",
                    n + 1
                ),
            }
            };
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, len, asn) = match fields.as_slice() {
                [prefix, asn] => {
                    let (addr, len) = prefix.split_once('/').ok_or_else(|| bad("no /length"))?;
                    (addr, len, *asn)
                }
                [addr, len, asn] => (*addr, *len, *asn),
                _ => return Err(bad("not 2 or 3 fields")),
            };
            let addr: IpAddr = addr.parse().map_err(|_| bad("not an address"))?;
            let len: u8 = len.parse().map_err(|_| bad("not a prefix length"))?;
            let first = asn
                .trim_start_matches('{')
                .split(['_', ','])
                .next()
                .unwrap_or_default()
                .trim_end_matches('}');
            let asn: u32 = first.parse().map_err(|_| bad("not an AS number"))?;
            match addr {
                IpAddr::V4(a) if len <= 32 => {
                    table.v4[usize::from(len)].insert(mask4(u32::from(a), len), asn);
                }
                IpAddr::V6(a) if len <= 128 => {
                    table.v6[usize::from(len)].insert(mask6(u128::from(a), len), asn);
                }
                _ => return Err(bad("prefix length too long for the family")),
            }
            table.routes += 1;
        }
        Ok(table)
    }

    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            data: "ASN table",
            path: path.to_owned(),
            fix: "pass a pyasn or CAIDA prefix2as dump",
            source,
        })?;
        Self::parse(&text)
    }

    /// Routes read.
    pub fn len(&self) -> usize {
        self.routes
    }

    pub fn is_empty(&self) -> bool {
        self.routes == 0
    }

    /// Whether the table holds any route of `ip`'s family (pyasn and CAIDA publish
    /// IPv4 and IPv6 as separate dumps: a v4 dump says nothing about IPv6).
    pub fn has_family_of(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(_) => self.v4.iter().any(|m| !m.is_empty()),
            IpAddr::V6(_) => self.v6.iter().any(|m| !m.is_empty()),
        }
    }

    /// The origin of the most specific route covering `ip`.
    pub fn origin(&self, ip: IpAddr) -> Option<u32> {
        match ip {
            IpAddr::V4(a) => {
                let bits = u32::from(a);
                (0..=32u8)
                    .rev()
                    .find_map(|len| self.v4[usize::from(len)].get(&mask4(bits, len)).copied())
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a);
                (0..=128u8)
                    .rev()
                    .find_map(|len| self.v6[usize::from(len)].get(&mask6(bits, len)).copied())
            }
        }
    }
}

impl AsnLookup for PrefixTable {
    fn asn(&self, ip: IpAddr) -> Option<u32> {
        self.origin(ip)
    }
}

/// A table reloaded when its file changes.
impl AsnLookup for crate::data::DataFiles<PrefixTable> {
    fn asn(&self, ip: IpAddr) -> Option<u32> {
        self.get().origin(ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn longest_prefix_wins_in_both_formats() {
        let t = PrefixTable::parse(
            "; pyasn\n193.0.0.0/21\t3333\n193.0.0.0/16\t1103\n\
             # CAIDA prefix2as\n2001:67c::\t32\t3333\n2001:67c:2e8::\t48\t12654_3333\n\
             10.0.0.0\t8\t{64512,64513}\n0.0.0.0/0\t65000\n",
        )
        .expect("table");
        assert_eq!(t.len(), 6);
        assert_eq!(t.origin(ip("193.0.6.139")), Some(3333));
        assert_eq!(t.origin(ip("193.0.200.1")), Some(1103));
        assert_eq!(t.origin(ip("2001:67c:2e8::2")), Some(12654));
        assert_eq!(t.origin(ip("2001:67c:1::1")), Some(3333));
        assert_eq!(t.origin(ip("10.1.2.3")), Some(64512));
        assert_eq!(t.origin(ip("8.8.8.8")), Some(65000), "the default route");
        assert_eq!(t.origin(ip("2a00::1")), None);
    }

    #[test]
    fn a_bad_line_is_named() {
        for (text, why) in [
            ("193.0.0.0\t3333\n", "no /length"),
            ("193.0.0.0/33\t3333\n", "too long"),
            ("bogus/8\t1\n", "not an address"),
            ("1.0.0.0/8\tAS13335\n", "not an AS number"),
            ("1.0.0.0/8\n", "not 2 or 3 fields"),
        ] {
            let err = PrefixTable::parse(text).expect_err(text).to_string();
            assert!(err.contains(why) && err.contains("line 1"), "{err}");
        }
    }
}
