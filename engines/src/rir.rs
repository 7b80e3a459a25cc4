//! The country an address is registered in, from the Regional Internet Registries'
//! statistics files (the `rir` engine, and a country hint for active
//! single-radius).
//!
//! All five RIRs (AFRINIC, APNIC, ARIN, LACNIC, RIPE NCC) publish one file a day in the
//! same format, `delegated-<rir>-extended-latest`:
//!
//! ```text
//! 2|ripencc|1732147199|...|19830705|20241120|+0100      version line
//! ripencc|*|ipv4|*|81238|summary                       summary lines
//! ripencc|NL|ipv4|193.0.0.0|2048|19930901|assigned|…    a record
//! ripencc|NL|ipv6|2001:67c::|32|20030610|allocated|…
//! ripencc||ipv4|2.56.8.0|1024||available||…            free space (no country)
//! ```
//!
//! An IPv4 record's value is a number of addresses (not always a power of two), an
//! IPv6 record's a prefix length. Only `allocated` and `assigned` records with a
//! country count. The country is where the holder registered, which is usually, not
//! always, where the addresses are used: the engine's score is a prior, not a fix.
//!
//! A malformed record is a [`BadLine`] (`<file>:<line>: <what>`, logged and counted in
//! `vantage_engines_data_bad_lines_total{data="rir"}`) and every other line is used; a
//! file with malformed records and not one good one is an error.
//!
//! Lookup is a binary search over ranges sorted by their first address: the registries
//! do not delegate the same space twice (of two ranges starting at the same address,
//! the later input wins).

use std::net::IpAddr;
use std::path::Path;

use crate::geofeed::BadLine;
use crate::Error;

/// Malformed lines kept (all are counted).
const MAX_KEPT_BAD_LINES: usize = 1000;

/// A two-letter country code (ISO 3166-1 alpha-2, upper case).
pub type CountryCode = [u8; 2];

/// Address ranges and the country each is registered in.
#[derive(Debug, Default, Clone)]
pub struct Delegations {
    v4: Vec<(u32, u32, CountryCode)>,
    v6: Vec<(u128, u128, CountryCode)>,
    /// The first malformed lines, and how many there were.
    bad: Vec<BadLine>,
    bad_count: u64,
}

/// `"NL"` → `*b"NL"`, when it is two ASCII letters.
pub fn country_code(text: &str) -> Option<CountryCode> {
    match text.as_bytes() {
        [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => None,
    }
}

/// `*b"NL"` → `"NL"`.
pub fn country_str(cc: &CountryCode) -> &str {
    std::str::from_utf8(cc).unwrap_or("??")
}

impl Delegations {
    /// Read one statistics file (see the module docs). `source` names it in errors and
    /// bad lines ([`Delegations::bad_lines`]).
    pub fn parse(text: &str, source: &str) -> Result<Self, Error> {
        let mut d = Delegations::default();
        d.add(text, source)?;
        d.sort();
        Ok(d)
    }

    /// Read several files; a file that cannot be read or parsed is an error naming it.
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<Self, Error> {
        let mut d = Delegations::default();
        for path in paths {
            let path = path.as_ref();
            let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
                data: "RIR statistics file",
                path: path.to_owned(),
                fix: "pass RIR statistics files (delegated-<rir>-extended-latest)",
                source,
            })?;
            d.add(&text, &path.display().to_string())?;
        }
        d.sort();
        crate::geofeed::log_bad_lines("rir", &d.bad, d.bad_count);
        Ok(d)
    }

    /// The first malformed lines (at most 1,000), skipped.
    pub fn bad_lines(&self) -> &[BadLine] {
        &self.bad
    }

    /// Malformed lines in all, skipped.
    pub fn bad_line_count(&self) -> u64 {
        self.bad_count
    }

    fn add(&mut self, text: &str, source: &str) -> Result<(), Error> {
        let (mut records, mut bad) = (0u64, Vec::new());
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.split('|').collect();
            // Records have 7 or more fields and a family in the third; the version line
            // (a serial there) and summary lines (6 fields) are skipped.
            if f.len() < 7 || !matches!(f[2], "ipv4" | "ipv6") {
                continue;
            }
            if !matches!(f[6], "allocated" | "assigned") {
                continue;
            }
            match self.record(&f) {
                Ok(()) => records += 1,
                Err(why) => bad.push(BadLine {
                    file: source.to_owned(),
                    line: n + 1,
                    what: format!("{why}: {line:?}"),
                }),
            }
        }
        if records == 0 {
            if let Some(first) = bad.first() {
                return Err(Error::Dataset {
                    data: "RIR statistics",
                    problem: format!(
                        "not one record of {source} parses ({} malformed, the first {first}); expected `rir|CC|ipv4|first address|count|date|allocated` (RIR statistics format)",
                        bad.len()
                    ),
                });
            }
        }
        self.bad_count += bad.len() as u64;
        let room = MAX_KEPT_BAD_LINES.saturating_sub(self.bad.len());
        self.bad.extend(bad.into_iter().take(room));
        Ok(())
    }

    /// Add one `allocated`/`assigned` record, or say what is wrong with it.
    fn record(&mut self, f: &[&str]) -> Result<(), &'static str> {
        let cc = country_code(f[1]).ok_or("the country is not two letters")?;
        match f[2] {
            "ipv4" => {
                let first: std::net::Ipv4Addr = f[3].parse().map_err(|_| "not an IPv4 address")?;
                let count: u64 = f[4].parse().map_err(|_| "not an address count")?;
                let first = u32::from(first);
                // Saturating: a count near u64::MAX must be refused, not wrap.
                let last = u64::from(first).saturating_add(count);
                if count == 0 || last > 1 << 32 {
                    return Err("the count is 0 or runs past 255.255.255.255");
                }
                self.v4.push((first, (last - 1) as u32, cc));
            }
            _ => {
                let first: std::net::Ipv6Addr = f[3].parse().map_err(|_| "not an IPv6 address")?;
                let len: u32 = f[4].parse().map_err(|_| "not a prefix length")?;
                if len > 128 {
                    return Err("prefix length over 128");
                }
                let first = u128::from(first);
                let host = if len == 0 {
                    u128::MAX
                } else {
                    (1u128 << (128 - len)) - 1
                };
                self.v6.push((first & !host, first | host, cc));
            }
        }
        Ok(())
    }

    fn sort(&mut self) {
        // Stable: of two ranges starting at the same address, the later input wins.
        self.v4.sort_by_key(|r| r.0);
        self.v6.sort_by_key(|r| r.0);
    }

    /// Ranges read.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The country `ip` is registered in.
    pub fn country(&self, ip: IpAddr) -> Option<CountryCode> {
        fn find<T: Ord + Copy>(ranges: &[(T, T, CountryCode)], ip: T) -> Option<CountryCode> {
            let i = ranges.partition_point(|r| r.0 <= ip);
            ranges[..i].last().filter(|r| ip <= r.1).map(|r| r.2)
        }
        match ip {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }
}

impl crate::data::DataReport for Delegations {
    fn bad_lines(&self) -> u64 {
        self.bad_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// Lines as the registries publish them (version, summaries, records, free space).
    const RIPE: &str = "\
2|ripencc|1732147199|212345|19830705|20241120|+0100
ripencc|*|asn|*|38079|summary
ripencc|*|ipv4|*|81238|summary
ripencc|*|ipv6|*|93012|summary
ripencc|NL|asn|3333|1|19930901|assigned|a1b2
ripencc|NL|ipv4|193.0.0.0|2048|19930901|assigned|a1b2
ripencc|FR|ipv4|2.0.0.0|1048576|20100712|allocated|c3d4
ripencc|DE|ipv4|5.1.0.0|1536|20120101|allocated|e5f6
ripencc||ipv4|2.56.8.0|1024||available||
ripencc|ZZ|ipv4|2.56.12.0|1024||reserved||
ripencc|NL|ipv6|2001:67c::|32|20030610|allocated|a1b2
";

    #[test]
    fn records_by_family_and_count() {
        let d = Delegations::parse(RIPE, "delegated-ripencc-extended-latest").expect("parse");
        assert_eq!(d.len(), 4, "records only: no asn, summary or free space");
        let cc = |s: &str| d.country(ip(s)).map(|c| country_str(&c).to_owned());
        assert_eq!(cc("193.0.6.139").as_deref(), Some("NL"));
        assert_eq!(cc("193.0.7.255").as_deref(), Some("NL"));
        assert_eq!(cc("193.0.8.0"), None, "2048 addresses end at 193.0.7.255");
        assert_eq!(cc("2.15.255.255").as_deref(), Some("FR"));
        // 1,536 addresses: not a power of two.
        assert_eq!(cc("5.1.5.255").as_deref(), Some("DE"));
        assert_eq!(cc("5.1.6.0"), None);
        assert_eq!(cc("2.56.8.1"), None, "available space has no country");
        assert_eq!(cc("2001:67c:2e8::2").as_deref(), Some("NL"));
        assert_eq!(cc("2001:67d::1"), None);
    }

    #[test]
    fn several_files_and_bad_lines() {
        let dir = std::env::temp_dir().join(format!("vantage-rir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let ripe = dir.join("ripe");
        let arin = dir.join("arin");
        std::fs::write(&ripe, RIPE).expect("write");
        std::fs::write(
            &arin,
            "arin|US|ipv4|8.0.0.0|16777216|19921201|allocated|x\n",
        )
        .expect("write");
        let d = Delegations::load(&[&ripe, &arin]).expect("load");
        assert_eq!(d.country(ip("8.8.8.8")), Some(*b"US"));
        assert_eq!(d.country(ip("193.0.6.139")), Some(*b"NL"));
        let missing = Delegations::load(&[dir.join("nope")]).expect_err("missing");
        assert!(missing.to_string().contains("nope"), "{missing}");
        std::fs::remove_dir_all(&dir).ok();

        for (text, why) in [
            ("x|NLD|ipv4|1.0.0.0|256|0|allocated\n", "two letters"),
            ("x|NL|ipv4|1.0.0|256|0|allocated\n", "not an IPv4"),
            (
                "x|NL|ipv4|1.0.0.0|lots|0|allocated\n",
                "not an address count",
            ),
            ("x|NL|ipv4|255.255.255.0|512|0|allocated\n", "runs past"),
            // Found by the `rir` fuzz target: the count overflowed the end address
            // (a panic in debug builds, a range ending before it starts in release).
            (
                "apnic|AU|ipv4|1.1.0.25|018446744073709551615|620110812|assigned|9",
                "runs past",
            ),
            ("x|NL|ipv6|2001::|129|0|allocated\n", "over 128"),
        ] {
            let err = Delegations::parse(text, "f").expect_err(text).to_string();
            assert!(err.contains(why) && err.contains("f:1: "), "{err}");
        }
    }

    #[test]
    fn a_bad_line_in_the_middle_is_reported_and_the_others_are_used() {
        let text = "\
2|ripencc|1732147199|212345|19830705|20241120|+0100
ripencc|*|ipv4|*|81238|summary
ripencc|NL|ipv4|193.0.0.0|2048|19930901|assigned|a1b2
ripencc|NLD|ipv4|194.0.0.0|256|19930901|assigned|a1b2
ripencc|FR|ipv4|2.0.0.0|1048576|20100712|allocated|c3d4
ripencc|DE|ipv6|2001:db8::|129|20120101|allocated|e5f6
ripencc|NL|ipv6|2001:67c::|32|20030610|allocated|a1b2
";
        let d = Delegations::parse(text, "delegated-ripencc-extended-latest").expect("parse");
        assert_eq!(d.len(), 3);
        assert_eq!(d.country(ip("193.0.6.139")), Some(*b"NL"));
        assert_eq!(
            d.country(ip("2.1.1.1")),
            Some(*b"FR"),
            "the line after the bad one"
        );
        assert_eq!(d.country(ip("2001:67c::1")), Some(*b"NL"));
        assert_eq!(d.country(ip("194.0.0.1")), None);
        assert_eq!(d.bad_line_count(), 2);
        let shown: Vec<String> = d.bad_lines().iter().map(ToString::to_string).collect();
        assert!(
            shown[0]
                .starts_with("delegated-ripencc-extended-latest:4: the country is not two letters"),
            "{shown:?}"
        );
        assert!(
            shown[1].starts_with("delegated-ripencc-extended-latest:6: prefix length over 128"),
            "{shown:?}"
        );
        assert_eq!(crate::data::DataReport::bad_lines(&d), 2);
    }
}
