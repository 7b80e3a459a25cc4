//! Blockpage fingerprints in OONI's format (ooni/blocking-fingerprints):
//! `fingerprints_dns.csv` and `fingerprints_http.csv`, with the header
//! `name,scope,other_names,location_found,pattern_type,pattern,confidence_no_fp,expected_countries,source,exp_url,notes`.
//! vantage's own set is `collector/data/fingerprints/`. A bad line is reported
//! ([`BadLine`]) and skipped; a missing file or header refuses the whole set
//! ([`DatasetError`]) and the last good set stays in force. Matching follows OONI's
//! fastpath (docs/FASTPATH.md, "Fingerprints").

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::source::{BadLine, Dataset, DatasetError, Snapshot, SourceError};

/// The DNS fingerprints file of a set.
pub const DNS_FILE: &str = "fingerprints_dns.csv";
/// The HTTP fingerprints file of a set.
pub const HTTP_FILE: &str = "fingerprints_http.csv";
/// The columns of both files, in order.
pub const COLUMNS: [&str; 11] = [
    "name",
    "scope",
    "other_names",
    "location_found",
    "pattern_type",
    "pattern",
    "confidence_no_fp",
    "expected_countries",
    "source",
    "exp_url",
    "notes",
];

/// Where a fingerprint's pattern is looked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A DNS answer (its `ipv4`, else `hostname`, else `ipv6`).
    Dns,
    /// The HTTP response body.
    Body,
    /// An HTTP response header, by lowercased name.
    Header(String),
}

/// How a pattern is compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternType {
    Full,
    Prefix,
    Contains,
    Regexp,
}

impl PatternType {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "full" => Some(Self::Full),
            "prefix" => Some(Self::Prefix),
            "contains" => Some(Self::Contains),
            "regexp" => Some(Self::Regexp),
            _ => None,
        }
    }
}

/// One fingerprint (a line of either file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub name: String,
    /// `nat`, `isp`, `prod`, `inst`, `vbw`, `fp`, ... (`isp` and `nat` confirm blocking
    /// anywhere).
    pub scope: String,
    pub other_names: String,
    pub location: Location,
    /// `location_found` as written (`dns`, `body`, `header.location`).
    pub location_found: String,
    pub pattern_type: PatternType,
    pub pattern: String,
    pub confidence_no_fp: u8,
    /// Upper-case country codes, sorted, without `ZZ`.
    pub expected_countries: Vec<String>,
}

impl Fingerprint {
    /// Whether a match of this fingerprint in `probe_cc` is confirmed blocking (OONI's
    /// `is_confirmed`): the country (not `ZZ`) is expected, or the scope is `isp` or `nat`.
    pub fn confirms(&self, probe_cc: &str) -> bool {
        (probe_cc != "ZZ" && self.expected_countries.iter().any(|c| c == probe_cc))
            || matches!(self.scope.as_str(), "isp" | "nat")
    }

    /// The blocking locality a confirmed match scores (`blocking_<locality>`).
    pub fn locality(&self) -> &'static str {
        match self.scope.as_str() {
            "inst" => "local",
            "isp" => "isp",
            "nat" => "country",
            _ => "general",
        }
    }

    /// The short form stored in `scores.fingerprints` (OONI's `minifp`).
    pub fn summary(&self) -> Value {
        json!({
            "name": self.name,
            "scope": self.scope,
            "location_found": self.location_found,
            "confidence_no_fp": self.confidence_no_fp,
            "expected_countries": self.expected_countries,
        })
    }
}

/// One version of the fingerprint set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fingerprints {
    pub version: String,
    pub dns: Vec<Fingerprint>,
    pub http: Vec<Fingerprint>,
    /// All body patterns in one automaton, built on first use.
    body_index: BodyIndex,
}

/// An Aho-Corasick automaton over the distinct body patterns, and for each body
/// fingerprint (index in `http`) its pattern's id. Derived from `http`, so it takes no
/// part in equality.
#[derive(Clone, Debug, Default)]
struct BodyIndex(std::sync::OnceLock<Option<Automaton>>);

/// The automaton, and (index in `http`, pattern id) per body fingerprint.
type Automaton = (aho_corasick::AhoCorasick, Vec<(usize, usize)>);

impl PartialEq for BodyIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for BodyIndex {}

#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    #[error("cannot read fingerprints {path}: {source}; point --fingerprints at a directory holding {DNS_FILE} and {HTTP_FILE}")]
    Read {
        path: PathBuf,
        #[source]
        source: SourceError,
    },
    #[error("fingerprints {path} are not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: DatasetError,
    },
}

/// One record before validation, from a CSV line or a JSON object.
struct Raw<'a> {
    name: &'a str,
    scope: &'a str,
    other_names: &'a str,
    location_found: &'a str,
    pattern_type: &'a str,
    pattern: &'a str,
    confidence_no_fp: String,
    expected_countries: &'a str,
}

/// OONI's `extract_expected_countries`: split on commas, upper-case, drop empty and ZZ.
fn expected_countries(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .split(',')
        .map(|c| c.trim().to_ascii_uppercase())
        .filter(|c| !c.is_empty() && c != "ZZ")
        .collect();
    v.sort();
    v.dedup();
    v
}

fn validate(raw: &Raw<'_>, dns: bool) -> Result<Fingerprint, String> {
    if raw.name.trim().is_empty() {
        return Err("empty name".into());
    }
    if raw.pattern.is_empty() {
        return Err("empty pattern".into());
    }
    let pattern_type = PatternType::parse(raw.pattern_type).ok_or_else(|| {
        format!(
            "unknown pattern_type {:?}: use full, prefix, contains or regexp",
            raw.pattern_type
        )
    })?;
    let location = match (dns, raw.location_found) {
        (true, "dns") => Location::Dns,
        (true, other) => {
            return Err(format!(
                "location_found {other:?} in the DNS file: it must be \"dns\""
            ))
        }
        (false, "body") => Location::Body,
        (false, h) if h.len() > 7 && h.starts_with("header.") => {
            Location::Header(h[7..].to_ascii_lowercase())
        }
        (false, other) => {
            return Err(format!(
                "unknown location_found {other:?}: use body or header.<name>"
            ))
        }
    };
    let confidence_no_fp = raw
        .confidence_no_fp
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|c| *c <= 10)
        .ok_or_else(|| {
            format!(
                "confidence_no_fp {:?} is not an integer from 0 to 10",
                raw.confidence_no_fp
            )
        })?;
    Ok(Fingerprint {
        name: raw.name.trim().to_owned(),
        scope: raw.scope.trim().to_owned(),
        other_names: raw.other_names.to_owned(),
        location,
        location_found: raw.location_found.to_owned(),
        pattern_type,
        pattern: raw.pattern.to_owned(),
        confidence_no_fp,
        expected_countries: expected_countries(raw.expected_countries),
    })
}

/// Parse one CSV file: the header must be OONI's; bad lines are reported and skipped.
fn parse_file(
    file: &str,
    bytes: &[u8],
    dns: bool,
    bad: &mut Vec<BadLine>,
) -> Result<Vec<Fingerprint>, DatasetError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.byte_records();
    let header = match records.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => return Err(DatasetError(format!("{file}: unreadable header: {e}"))),
        None => {
            return Err(DatasetError(format!(
                "{file}: empty, expected the header {}",
                COLUMNS.join(",")
            )))
        }
    };
    let got: Vec<String> = header
        .iter()
        .map(|c| {
            String::from_utf8_lossy(c)
                .trim_start_matches('\u{feff}')
                .trim()
                .to_owned()
        })
        .collect();
    if got != COLUMNS {
        return Err(DatasetError(format!(
            "{file}: header is {:?}, expected {}",
            got.join(","),
            COLUMNS.join(",")
        )));
    }
    let mut out = Vec::new();
    for rec in records {
        let (line, result) = match rec {
            Ok(r) => {
                let line = r.position().map_or(0, |p| p.line() as usize);
                (line, to_fingerprint(&r, dns))
            }
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                (line, Err(format!("not CSV: {e}")))
            }
        };
        match result {
            Ok(fp) => out.push(fp),
            Err(reason) => bad.push(BadLine {
                file: file.to_owned(),
                line,
                reason,
            }),
        }
    }
    Ok(out)
}

fn to_fingerprint(r: &csv::ByteRecord, dns: bool) -> Result<Fingerprint, String> {
    if r.len() != COLUMNS.len() {
        return Err(format!("{} columns, expected {}", r.len(), COLUMNS.len()));
    }
    let mut cols = Vec::with_capacity(COLUMNS.len());
    for (i, c) in r.iter().enumerate() {
        cols.push(
            std::str::from_utf8(c).map_err(|_| format!("column {} is not UTF-8", COLUMNS[i]))?,
        );
    }
    validate(
        &Raw {
            name: cols[0],
            scope: cols[1],
            other_names: cols[2],
            location_found: cols[3],
            pattern_type: cols[4],
            pattern: cols[5],
            confidence_no_fp: cols[6].to_owned(),
            expected_countries: cols[7],
        },
        dns,
    )
}

fn one_file<'a>(
    snapshot: &'a Snapshot,
    name: &'static str,
) -> Result<(&'a str, &'a [u8]), DatasetError> {
    let mut found = snapshot.named(name);
    let first = found
        .next()
        .ok_or_else(|| DatasetError(format!("no {name} in the fingerprint source")))?;
    Ok(first)
}

impl Fingerprints {
    /// A set of these records (the body index is built on first use).
    fn new(version: &str, dns: Vec<Fingerprint>, http: Vec<Fingerprint>) -> Self {
        Self {
            version: version.to_owned(),
            dns,
            http,
            body_index: BodyIndex::default(),
        }
    }

    /// Build a set from the two CSV files.
    pub fn parse_csv(
        dns: &[u8],
        http: &[u8],
        version: &str,
    ) -> Result<(Self, Vec<BadLine>), DatasetError> {
        let mut bad = Vec::new();
        let dns = parse_file(DNS_FILE, dns, true, &mut bad)?;
        let http = parse_file(HTTP_FILE, http, false, &mut bad)?;
        Ok((Self::new(version, dns, http), bad))
    }

    /// Build a set from OONI's JSON form of the same records (arrays of objects with the
    /// CSV's columns; `confidence_no_fp` a number), as ooni/backend's fastpath tests
    /// keep them. Bad records are reported with their 1-based index as `line`.
    pub fn parse_json(
        dns: &[u8],
        http: &[u8],
        version: &str,
    ) -> Result<(Self, Vec<BadLine>), DatasetError> {
        let mut bad = Vec::new();
        let mut parse = |file: &str, bytes: &[u8], is_dns: bool| {
            let list: Vec<Value> = serde_json::from_slice(bytes)
                .map_err(|e| DatasetError(format!("{file}: not a JSON array: {e}")))?;
            let mut out = Vec::new();
            for (i, v) in list.iter().enumerate() {
                let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
                let confidence = match v.get("confidence_no_fp") {
                    Some(Value::String(s)) => s.clone(),
                    Some(n @ Value::Number(_)) => n.to_string(),
                    _ => String::new(),
                };
                let raw = Raw {
                    name: s("name"),
                    scope: s("scope"),
                    other_names: s("other_names"),
                    location_found: s("location_found"),
                    pattern_type: s("pattern_type"),
                    pattern: s("pattern"),
                    confidence_no_fp: confidence,
                    expected_countries: s("expected_countries"),
                };
                match validate(&raw, is_dns) {
                    Ok(fp) => out.push(fp),
                    Err(reason) => bad.push(BadLine {
                        file: file.to_owned(),
                        line: i + 1,
                        reason,
                    }),
                }
            }
            Ok::<_, DatasetError>(out)
        };
        let dns = parse("fingerprints_dns.json", dns, true)?;
        let http = parse("fingerprints_http.json", http, false)?;
        Ok((Self::new(version, dns, http), bad))
    }

    /// The shipped set (`collector/data/fingerprints/`), compiled in: what the intake
    /// scores with when a remote source cannot be reached at start and no copy of it is
    /// cached. Version `built-in`.
    pub fn built_in() -> Self {
        match Self::parse_csv(
            include_bytes!("../data/fingerprints/fingerprints_dns.csv"),
            include_bytes!("../data/fingerprints/fingerprints_http.csv"),
            "built-in",
        ) {
            Ok((fp, _)) => fp,
            Err(e) => {
                // The unit tests parse the same bytes; this cannot happen in a release.
                tracing::error!(error = %e, "the built-in fingerprints do not parse");
                Self {
                    version: "built-in".into(),
                    ..Self::default()
                }
            }
        }
    }

    /// Read a directory holding `fingerprints_dns.csv` and `fingerprints_http.csv`;
    /// bad lines are logged and skipped.
    pub fn load(path: &Path) -> Result<Self, FingerprintError> {
        let snapshot = Snapshot::read_path(path).map_err(|source| FingerprintError::Read {
            path: path.to_owned(),
            source,
        })?;
        let (fp, bad) =
            Self::from_snapshot(&snapshot).map_err(|source| FingerprintError::Parse {
                path: path.to_owned(),
                source,
            })?;
        for b in &bad {
            tracing::warn!(path = %path.display(), bad_line = %b, "fingerprint line skipped");
        }
        Ok(fp)
    }

    /// The DNS fingerprints an answer matches (OONI's rule: the answer's `ipv4` if the
    /// key is there, else its `hostname`, else its `ipv6`, equals the pattern).
    pub fn match_dns_answer(&self, answer: &Value) -> Vec<&Fingerprint> {
        let addr = ["ipv4", "hostname", "ipv6"]
            .iter()
            .find_map(|k| answer.get(*k))
            .and_then(Value::as_str);
        self.dns
            .iter()
            .filter(|f| addr.is_some_and(|a| a == f.pattern))
            .collect()
    }

    /// The HTTP fingerprints a body matches: every `body` fingerprint whose pattern the
    /// body contains (OONI compares the body this way whatever the pattern_type).
    pub fn match_body(&self, body: &[u8]) -> Vec<&Fingerprint> {
        let index = self.body_index.0.get_or_init(|| {
            let mut patterns: Vec<&str> = Vec::new();
            let mut ids: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
            let mut of = Vec::new();
            for (i, f) in self.http.iter().enumerate() {
                if f.location == Location::Body {
                    let id = *ids.entry(f.pattern.as_str()).or_insert_with(|| {
                        patterns.push(f.pattern.as_str());
                        patterns.len() - 1
                    });
                    of.push((i, id));
                }
            }
            match aho_corasick::AhoCorasick::new(&patterns) {
                Ok(ac) => Some((ac, of)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot index the body fingerprints; matching them one by one");
                    None
                }
            }
        });
        let Some((ac, of)) = index else {
            return self
                .http
                .iter()
                .filter(|f| f.location == Location::Body && contains(body, f.pattern.as_bytes()))
                .collect();
        };
        let mut hit = vec![false; ac.patterns_len()];
        for m in ac.find_overlapping_iter(body) {
            hit[m.pattern().as_usize()] = true;
        }
        of.iter()
            .filter(|(_, id)| hit[*id])
            .map(|(i, _)| &self.http[*i])
            .collect()
    }

    /// The HTTP fingerprints a header matches: `full` (equal) or `prefix` fingerprints
    /// on that (lowercased) header name; other pattern types are not applied to headers.
    pub fn match_header(&self, name_lower: &str, value: &str) -> Vec<&Fingerprint> {
        self.http
            .iter()
            .filter(|f| match &f.location {
                Location::Header(h) if h == name_lower => match f.pattern_type {
                    PatternType::Full => value == f.pattern,
                    PatternType::Prefix => value.starts_with(f.pattern.as_str()),
                    _ => false,
                },
                _ => false,
            })
            .collect()
    }
}

/// Substring search, used only if the automaton cannot be built.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Decode base64 as Python's `b64decode` does by default: characters outside the
/// alphabet are dropped, padding is required.
pub fn b64decode_lenient(data: &str) -> Option<Vec<u8>> {
    let clean: String = data
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

impl Dataset for Fingerprints {
    const KIND: &'static str = "fingerprints";

    fn from_snapshot(snapshot: &Snapshot) -> Result<(Self, Vec<BadLine>), DatasetError> {
        let (dns_path, dns) = one_file(snapshot, DNS_FILE)?;
        let (http_path, http) = one_file(snapshot, HTTP_FILE)?;
        let (fp, mut bad) = Self::parse_csv(dns, http, &snapshot.version)?;
        for b in &mut bad {
            b.file = if b.file == DNS_FILE {
                dns_path.to_owned()
            } else {
                http_path.to_owned()
            };
        }
        Ok((fp, bad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "name,scope,other_names,location_found,pattern_type,pattern,confidence_no_fp,expected_countries,source,exp_url,notes\n";

    fn shipped() -> (Fingerprints, Vec<BadLine>) {
        Fingerprints::parse_csv(
            include_bytes!("../data/fingerprints/fingerprints_dns.csv"),
            include_bytes!("../data/fingerprints/fingerprints_http.csv"),
            "shipped",
        )
        .expect("shipped set parses")
    }

    #[test]
    fn shipped_set_parses_cleanly_and_has_no_test_entries() {
        let (fp, bad) = shipped();
        assert_eq!(bad, vec![]);
        assert!(!fp.http.is_empty() && !fp.dns.is_empty());
        for f in fp.http.iter().chain(&fp.dns) {
            assert!(
                !f.name.starts_with("vantage_test"),
                "{} is a test fingerprint",
                f.name
            );
        }
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let http = format!(
            "{HEADER}ok,nat,,body,contains,blocked,5,\"tr, ZZ,TR\",vantage,,\n\
             short,nat,,body\n\
             where,nat,,cookie,contains,x,5,,vantage,,\n\
             how,nat,,body,glob,x,5,,vantage,,\n\
             empty,nat,,body,contains,,5,,vantage,,\n\
             conf,nat,,body,contains,x,high,,vantage,,\n\
             hdr,isp,,header.Server,prefix,Kerio,10,,vantage,,\n"
        );
        let dns = format!("{HEADER}sink,nat,,dns,full,10.10.34.35,10,IR,vantage,,\nbad,nat,,body,full,1.2.3.4,5,,vantage,,\n");
        let (fp, bad) =
            Fingerprints::parse_csv(dns.as_bytes(), http.as_bytes(), "v1").expect("parses");
        assert_eq!(
            fp.http.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["ok", "hdr"]
        );
        assert_eq!(fp.http[0].expected_countries, ["TR"]);
        assert_eq!(fp.http[1].location, Location::Header("server".into()));
        assert_eq!(fp.dns.len(), 1);
        let lines: Vec<(&str, usize)> = bad.iter().map(|b| (b.file.as_str(), b.line)).collect();
        assert_eq!(
            lines,
            [
                (DNS_FILE, 3),
                (HTTP_FILE, 3),
                (HTTP_FILE, 4),
                (HTTP_FILE, 5),
                (HTTP_FILE, 6),
                (HTTP_FILE, 7)
            ]
        );
        assert!(bad[1].reason.contains("4 columns"), "{}", bad[1].reason);
        assert!(
            bad[2].reason.contains("location_found"),
            "{}",
            bad[2].reason
        );
        assert!(bad[3].reason.contains("pattern_type"), "{}", bad[3].reason);
        assert!(bad[4].reason.contains("empty pattern"), "{}", bad[4].reason);
        assert!(
            bad[5].reason.contains("confidence_no_fp"),
            "{}",
            bad[5].reason
        );
    }

    #[test]
    fn a_missing_file_or_header_refuses_the_set() {
        let good = HEADER.as_bytes();
        let e = Fingerprints::parse_csv(b"name,scope\n", good, "v").expect_err("bad header");
        assert!(e.0.contains("fingerprints_dns.csv: header"), "{e}");
        let e = Fingerprints::parse_csv(good, b"", "v").expect_err("empty");
        assert!(e.0.contains("fingerprints_http.csv: empty"), "{e}");
        let snap = Snapshot::from_files([(format!("x/{DNS_FILE}"), good.to_vec())].into());
        let e = Fingerprints::from_snapshot(&snap).expect_err("missing http file");
        assert!(e.0.contains(HTTP_FILE), "{e}");
        let snap = Snapshot::from_files(
            [
                (format!("x/{DNS_FILE}"), good.to_vec()),
                (
                    format!("x/{HTTP_FILE}"),
                    format!("{HEADER}a,nat,,body,contains,,5,,,,\n").into_bytes(),
                ),
            ]
            .into(),
        );
        let (fp, bad) = Fingerprints::from_snapshot(&snap).expect("usable");
        assert_eq!(fp.version, snap.version);
        assert_eq!(bad[0].file, format!("x/{HTTP_FILE}"));
    }

    #[test]
    fn matching_and_confirmation_follow_ooni() {
        let http = format!(
            "{HEADER}b,fp,,body,contains,Stop Page,5,IT,,,\n\
             full,prod,,header.location,full,http://block.example/,5,,,,\n\
             pre,isp,,header.server,prefix,Kerio,5,,,,\n\
             re,nat,,header.server,regexp,Ker.*,5,,,,\n"
        );
        let dns = format!("{HEADER}d,inst,,dns,full,10.0.0.1,5,,,,\n");
        let (fp, _) =
            Fingerprints::parse_csv(dns.as_bytes(), http.as_bytes(), "v").expect("parses");
        let names = |it: Vec<&Fingerprint>| it.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(fp.match_body(b"GdF Stop Page")), ["b"]);
        assert_eq!(
            names(fp.match_header("location", "http://block.example/")),
            ["full"]
        );
        assert!(fp
            .match_header("location", "http://block.example/x")
            .is_empty());
        assert_eq!(names(fp.match_header("server", "Kerio Control")), ["pre"]);
        let a = json!({"ipv4": "10.0.0.1"});
        assert_eq!(names(fp.match_dns_answer(&a)), ["d"]);
        // ipv4 present but null: OONI compares that (None), not the hostname.
        let a = json!({"ipv4": null, "hostname": "10.0.0.1"});
        assert!(fp.match_dns_answer(&a).is_empty());
        let body = &fp.http[0];
        assert!(body.confirms("IT") && !body.confirms("FR") && !body.confirms("ZZ"));
        assert!(fp.http[2].confirms("FR"), "isp scope confirms anywhere");
        assert!(!fp.http[1].confirms("FR"));
        assert_eq!(
            (
                fp.dns[0].locality(),
                fp.http[2].locality(),
                fp.http[3].locality(),
                fp.http[1].locality()
            ),
            ("local", "isp", "country", "general")
        );
        assert_eq!(b64decode_lenient("aGVs\nbG8="), Some(b"hello".to_vec()));
        // Overlapping and repeated body patterns all match, in file order.
        let http = format!(
            "{HEADER}a,fp,,body,contains,Stop Page,5,,,,\n\
             b,fp,,body,contains,top P,5,,,,\n\
             c,fp,,body,contains,Stop,5,,,,\n\
             d,nat,,body,contains,Stop,5,,,,\n\
             e,nat,,body,contains,Absent,5,,,,\n"
        );
        let (fp, _) =
            Fingerprints::parse_csv(HEADER.as_bytes(), http.as_bytes(), "v").expect("parses");
        assert_eq!(
            names(fp.match_body("GdF Stop Page".as_bytes())),
            ["a", "b", "c", "d"]
        );
        assert!(fp.match_body(b"nothing").is_empty());
        assert_eq!(b64decode_lenient("aGVsbG8"), None);
    }

    #[test]
    fn the_built_in_set_is_the_shipped_one() {
        let (shipped, _) = shipped();
        let built_in = Fingerprints::built_in();
        assert_eq!(built_in.http.len(), shipped.http.len());
        assert_eq!(built_in.dns.len(), shipped.dns.len());
        assert_eq!(built_in.version, "built-in");
    }
}
