//! Geofeeds: where networks say their addresses are (RFC 8805), found through the
//! `geofeed:` references of the RIR databases (RFC 9632). The `geofeed` engine
//! ([`crate::engine::geofeed`]) votes for the city an entry names.
//!
//! A geofeed is a CSV file, one prefix a line:
//!
//! ```text
//! # prefix,country,region,city,postal
//! 193.0.0.0/22,NL,NL-NH,Amsterdam,
//! 2001:67c:2e8::/48,NL,NL-NH,Amsterdam,
//! 192.0.2.0/24,US,US-CA,San Jose,
//! ```
//!
//! `#` comments and blank lines are skipped, trailing fields may be left out (the
//! postal code is ignored: RFC 8805 deprecates it). A malformed line (a bad prefix, a
//! country that is not two letters, a region that is not an ISO 3166-2 code of that
//! country, more than five fields, an unterminated quote) is a [`BadLine`], named
//! `<file>:<line>: <what is wrong>`; every other line is used.
//!
//! Networks point to their geofeed from their `inetnum:`/`inet6num:` object in the RIR
//! database (RFC 9632): a `geofeed: https://…` attribute, or the older
//! `remarks: Geofeed https://…`. [`parse_refs`] reads those from RPSL database dumps
//! (objects separated by blank lines, `.gz` or plain). The referenced files are not
//! fetched here: a mirror job (a CronJob) downloads each URL into a directory, and
//! [`mirror_path`] names where one is read: `<dir>/<host>/<path>` (host lower-case,
//! without port; the query string is not part of the name; a path ending in `/` is
//! `index.html`), which is what `wget --force-directories` writes. A missing mirror
//! file is counted and named, not fatal. As RFC 9632 §4 asks, an entry of a referenced
//! file that lies outside the inetnum that referenced it is ignored and counted
//! (`outside_referencing_prefix`): a network cannot claim other networks' space.
//! Operators' own feeds are read directly ([`Sources::files`]) without that scope.
//!
//! Lookup is the longest matching prefix (a hash map per prefix length, longest
//! first). Of two entries for the same prefix, the later one read wins.
//!
//! An entry's city is resolved against the [`World`] ([`Geofeeds::resolve`]): the
//! world's cities of that normalised name in that country; of those, the most populous
//! in the entry's region when the region matches the GeoNames admin1 code (US states
//! do; Canadian provinces through a table; elsewhere GeoNames uses its own codes, and
//! then the most populous of the name in the country is taken). An entry without a
//! city, or with a city the world does not know, gives no vote (counted as `no_city`).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Read};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use crate::rir::{country_code, country_str, CountryCode};
use crate::world::{normalise, World};
use crate::Error;

/// Malformed lines logged per load (a warning each); the rest are summed up in one line.
pub const MAX_LOGGED_BAD_LINES: usize = 20;

/// Malformed lines kept in a [`Report`] (all are counted).
const MAX_KEPT_BAD_LINES: usize = 1000;

/// A line of a data file that cannot be used, and why; shown as `<file>:<line>: <what>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub file: String,
    /// 1-based.
    pub line: usize,
    pub what: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.what)
    }
}

/// Log at most [`MAX_LOGGED_BAD_LINES`] bad lines (warn), then how many more there were.
pub fn log_bad_lines(data: &str, bad: &[BadLine], total: u64) {
    for b in bad.iter().take(MAX_LOGGED_BAD_LINES) {
        tracing::warn!(data, "{b}");
    }
    let logged = bad.len().min(MAX_LOGGED_BAD_LINES) as u64;
    if total > logged {
        tracing::warn!(
            data,
            "{} more malformed lines not shown ({total} in all); they were skipped, the other lines are used",
            total - logged
        );
    }
}

/// One geofeed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub prefix: IpNet,
    pub country: Option<CountryCode>,
    /// The ISO 3166-2 subdivision without its country: `CA` of `US-CA`.
    pub region: Option<String>,
    pub city: Option<String>,
    /// The world's city (GeoNames id), once [`Geofeeds::resolve`]d.
    pub city_id: Option<u32>,
}

/// What a load found: lines by result, the bad lines, the missing mirror files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Entries used.
    pub ok: u64,
    /// Lines that cannot be used (geofeed lines, and references that cannot be followed).
    pub malformed: u64,
    /// Entries of a referenced geofeed outside the inetnum that referenced it (RFC 9632 §4).
    pub outside_referencing_prefix: u64,
    /// Entries used whose city is missing or unknown to the world (after `resolve`).
    pub no_city: u64,
    /// `geofeed:` references read from the RIR dumps.
    pub references: u64,
    /// Mirror files that are not there (named by path).
    pub missing_files: Vec<String>,
    /// The first bad lines (at most 1,000; `malformed` counts them all).
    pub bad_lines: Vec<BadLine>,
}

impl Report {
    fn bad(&mut self, b: BadLine) {
        self.malformed += 1;
        if self.bad_lines.len() < MAX_KEPT_BAD_LINES {
            self.bad_lines.push(b);
        }
    }
}

/// One prefix length's entries: network address → entry index.
type Level<T> = (u8, HashMap<T, u32>);

/// Geofeed entries indexed for longest-prefix match.
#[derive(Debug, Default, Clone)]
pub struct Geofeeds {
    entries: Vec<Entry>,
    /// Per prefix length, longest first.
    v4: Vec<Level<u32>>,
    v6: Vec<Level<u128>>,
    resolved: bool,
    report: Report,
}

/// An inclusive address range (an inetnum).
pub type Range = (IpAddr, IpAddr);

/// Where geofeeds come from (`--geofeed-refs`, `--geofeed-dir`, `--geofeed-file`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// RPSL database dumps (`inetnum`/`inet6num` objects with `geofeed:`), plain or `.gz`.
    pub refs: Vec<PathBuf>,
    /// The mirror of the referenced URLs: `<dir>/<host>/<path>`.
    pub dir: Option<PathBuf>,
    /// Geofeed CSV files read directly (operators' own feeds), without RFC 9632 scope.
    pub files: Vec<PathBuf>,
}

impl Sources {
    pub fn is_empty(&self) -> bool {
        self.refs.is_empty() && self.files.is_empty()
    }

    /// The paths whose changes mean a reload: the dumps, the files and the mirror
    /// directory (stamped by everything in it, see `data::DataFiles`).
    pub fn watched(&self) -> Vec<PathBuf> {
        let mut paths = self.refs.clone();
        paths.extend(self.files.iter().cloned());
        paths.extend(self.dir.iter().cloned());
        paths
    }
}

/// Split one CSV line (RFC 4180 quoting); fields are trimmed.
fn csv_fields(line: &str) -> Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            ',' => out.push(std::mem::take(&mut cur).trim().to_owned()),
            '"' if cur.trim().is_empty() => {
                cur.clear();
                quoted = true;
            }
            _ => cur.push(c),
        }
    }
    if quoted {
        return Err("a quote is not closed");
    }
    out.push(cur.trim().to_owned());
    Ok(out)
}

fn prefix_of(text: &str) -> Result<IpNet, String> {
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => {
                return Err(format!(
                    "{text:?} is not an IP prefix (like 192.0.2.0/24 or 2001:db8::/32)"
                ))
            }
        },
    };
    if net.trunc() != net {
        return Err(format!(
            "{text} has host bits set; the prefix is {}",
            net.trunc()
        ));
    }
    Ok(net)
}

/// One geofeed line → an entry, or what is wrong with it.
fn parse_line(line: &str) -> Result<Entry, String> {
    let f = csv_fields(line).map_err(str::to_owned)?;
    if f.len() > 5 {
        return Err(format!(
            "{} fields; a geofeed line has at most 5: prefix,country,region,city,postal (RFC 8805)",
            f.len()
        ));
    }
    let field = |i: usize| f.get(i).map(String::as_str).filter(|s| !s.is_empty());
    let prefix = prefix_of(field(0).unwrap_or_default())?;
    let mut country =
        match field(1) {
            Some(c) => Some(country_code(c).ok_or_else(|| {
                format!("country {c:?} is not an ISO 3166-1 alpha-2 code (like NL)")
            })?),
            None => None,
        };
    let region = match field(2) {
        Some(r) => {
            let (cc, sub) = r
                .split_once('-')
                .and_then(|(cc, sub)| Some((country_code(cc)?, sub)))
                .filter(|(_, sub)| {
                    (1..=3).contains(&sub.len()) && sub.chars().all(|c| c.is_ascii_alphanumeric())
                })
                .ok_or_else(|| format!("region {r:?} is not an ISO 3166-2 code (like US-CA)"))?;
            match country {
                Some(c) if c != cc => {
                    return Err(format!("region {r} is not in country {}", country_str(&c)))
                }
                Some(_) => {}
                None => country = Some(cc),
            }
            Some(sub.to_ascii_uppercase())
        }
        None => None,
    };
    Ok(Entry {
        prefix,
        country,
        region,
        city: field(3).map(str::to_owned),
        city_id: None,
    })
}

/// Whether `net` lies inside one of `ranges`.
fn inside(net: &IpNet, ranges: &[Range]) -> bool {
    let (first, last) = (net.network(), net.broadcast());
    ranges
        .iter()
        .any(|(a, b)| a.is_ipv4() == first.is_ipv4() && *a <= first && last <= *b)
}

impl Geofeeds {
    /// Read one geofeed (no RFC 9632 scope): the entries, and the lines that cannot be
    /// used (named `<file_name>:<line>`). The simulation's entry point.
    pub fn parse(text: &str, file_name: &str) -> (Geofeeds, Vec<BadLine>) {
        let mut g = Geofeeds::default();
        let bad = g.add_csv(text, file_name, None);
        g.index();
        (g, bad)
    }

    /// Add one geofeed's entries; with `scope`, only those inside one of its ranges.
    /// Returns the bad lines of this file (also counted in the report).
    pub fn add_csv(&mut self, text: &str, file: &str, scope: Option<&[Range]>) -> Vec<BadLine> {
        let mut bad = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start_matches('\u{feff}').trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line) {
                Err(what) => bad.push(BadLine {
                    file: file.to_owned(),
                    line: n + 1,
                    what,
                }),
                Ok(entry) => {
                    if scope.is_some_and(|ranges| !inside(&entry.prefix, ranges)) {
                        self.report.outside_referencing_prefix += 1;
                        continue;
                    }
                    self.report.ok += 1;
                    self.entries.push(entry);
                    self.resolved = false;
                }
            }
        }
        for b in &bad {
            self.report.bad(b.clone());
        }
        bad
    }

    /// Build the lookup index (after the last `add_csv`).
    pub fn index(&mut self) {
        let mut v4: BTreeMap<u8, HashMap<u32, u32>> = BTreeMap::new();
        let mut v6: BTreeMap<u8, HashMap<u128, u32>> = BTreeMap::new();
        for (i, e) in self.entries.iter().enumerate() {
            let i = i as u32;
            match e.prefix {
                IpNet::V4(n) => {
                    v4.entry(n.prefix_len())
                        .or_default()
                        .insert(u32::from(n.network()), i);
                }
                IpNet::V6(n) => {
                    v6.entry(n.prefix_len())
                        .or_default()
                        .insert(u128::from(n.network()), i);
                }
            }
        }
        self.v4 = v4.into_iter().rev().collect();
        self.v6 = v6.into_iter().rev().collect();
    }

    /// Read the geofeeds `sources` name (see the module docs). A dump or a direct file
    /// that cannot be read is an error naming it; so is a direct file none of whose
    /// lines is an entry. Bad lines are logged (at most [`MAX_LOGGED_BAD_LINES`]).
    pub fn load(sources: &Sources) -> Result<Geofeeds, Error> {
        let mut g = Geofeeds::default();
        if !sources.refs.is_empty() && sources.dir.is_none() {
            return Err(Error::Config {
                problem: "--geofeed-refs needs --geofeed-dir: the directory the referenced geofeed URLs are mirrored into (<dir>/<host>/<path>)".into(),
            });
        }
        let mut by_url: BTreeMap<String, (Vec<Range>, String, usize)> = BTreeMap::new();
        for path in &sources.refs {
            let name = path.display().to_string();
            let (refs, bad) = read_refs(path).and_then(|reader| {
                parse_refs(reader, &name).map_err(|source| Error::ReadFile {
                    data: "geofeed references (RPSL database dump)",
                    path: path.clone(),
                    fix: "pass an RPSL dump of inetnum/inet6num objects (e.g. ripe.db.inetnum.gz) to --geofeed-refs",
                    source,
                })
            })?;
            for b in bad {
                g.report.bad(b);
            }
            g.report.references += refs.len() as u64;
            for r in refs {
                by_url
                    .entry(r.url)
                    .or_insert_with(|| (Vec::new(), r.file, r.line))
                    .0
                    .push(r.range);
            }
        }
        if let Some(dir) = &sources.dir {
            for (url, (ranges, file, line)) in &by_url {
                let path = match mirror_path(dir, url) {
                    Ok(p) => p,
                    Err(why) => {
                        g.report.bad(BadLine {
                            file: file.clone(),
                            line: *line,
                            what: format!("geofeed {url:?}: {why}"),
                        });
                        continue;
                    }
                };
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        let text = String::from_utf8_lossy(&bytes);
                        g.add_csv(&text, &path.display().to_string(), Some(ranges));
                    }
                    Err(_) => g.report.missing_files.push(path.display().to_string()),
                }
            }
        }
        for path in &sources.files {
            let text = std::fs::read(path).map_err(|source| Error::ReadFile {
                data: "geofeed file",
                path: path.clone(),
                fix: "pass an RFC 8805 geofeed CSV (prefix,country,region,city,postal) to --geofeed-file",
                source,
            })?;
            let name = path.display().to_string();
            let before = g.report.ok;
            let bad = g.add_csv(&String::from_utf8_lossy(&text), &name, None);
            if g.report.ok == before {
                if let Some(first) = bad.first() {
                    return Err(Error::Dataset {
                        data: "geofeed file",
                        problem: format!(
                            "no line of {name} is a geofeed entry ({} malformed, the first {first}); expected RFC 8805 lines prefix,country,region,city,postal",
                            bad.len()
                        ),
                    });
                }
            }
        }
        g.index();
        log_bad_lines("geofeed", &g.report.bad_lines, g.report.malformed);
        let missing = &g.report.missing_files;
        if !missing.is_empty() {
            tracing::warn!(
                count = missing.len(),
                first = ?missing.iter().take(MAX_LOGGED_BAD_LINES).collect::<Vec<_>>(),
                "referenced geofeeds missing from the mirror directory (--geofeed-dir); their networks get no geofeed vote"
            );
        }
        Ok(g)
    }

    /// Resolve every entry's city against `world` and count the entries without one.
    pub fn resolve(&mut self, world: &World) {
        let mut memo: HashMap<(Option<CountryCode>, Option<String>, String), Option<u32>> =
            HashMap::new();
        let mut no_city = 0;
        for e in &mut self.entries {
            let id = match &e.city {
                None => None,
                Some(city) => *memo
                    .entry((e.country, e.region.clone(), city.clone()))
                    .or_insert_with(|| resolve_city(world, e.country, e.region.as_deref(), city)),
            };
            e.city_id = id;
            if id.is_none() {
                no_city += 1;
            }
        }
        self.report.no_city = no_city;
        self.resolved = true;
    }

    /// Whether every entry's `city_id` is resolved.
    pub fn is_resolved(&self) -> bool {
        self.resolved
    }

    /// The entry of the longest prefix holding `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&Entry> {
        fn find<T: std::hash::Hash + Eq + Copy>(
            levels: &[Level<T>],
            mask: impl Fn(u8) -> T,
        ) -> Option<u32> {
            levels
                .iter()
                .find_map(|(len, map)| map.get(&mask(*len)).copied())
        }
        let i = match ip {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                find(&self.v4, |len| {
                    if len == 0 {
                        0
                    } else {
                        a & (u32::MAX << (32 - u32::from(len)))
                    }
                })
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                find(&self.v6, |len| {
                    if len == 0 {
                        0
                    } else {
                        a & (u128::MAX << (128 - u32::from(len)))
                    }
                })
            }
        }?;
        self.entries.get(i as usize)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What the load found.
    pub fn report(&self) -> &Report {
        &self.report
    }
}

impl crate::data::DataReport for Geofeeds {
    fn bad_lines(&self) -> u64 {
        self.report.malformed
    }

    fn line_results(&self) -> Vec<(&'static str, u64)> {
        let r = &self.report;
        vec![
            ("ok", r.ok),
            ("malformed", r.malformed),
            ("outside_referencing_prefix", r.outside_referencing_prefix),
            ("no_city", r.no_city),
        ]
    }
}

/// Canadian provinces: ISO 3166-2 → GeoNames admin1.
const CA_ADMIN1: &[(&str, &str)] = &[
    ("AB", "01"),
    ("BC", "02"),
    ("MB", "03"),
    ("NB", "04"),
    ("NL", "05"),
    ("NS", "07"),
    ("ON", "08"),
    ("PE", "09"),
    ("QC", "10"),
    ("SK", "11"),
    ("YT", "12"),
    ("NT", "13"),
    ("NU", "14"),
];

/// Latin letters with diacritics as their base letter, then [`normalise`]: `München`
/// → `munchen` (the world indexes ASCII names).
fn fold(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| match c {
            'à'..='å' | 'À'..='Å' | 'ā' | 'ă' | 'ą' => 'a',
            'ç' | 'Ç' | 'ć' | 'č' => 'c',
            'è'..='ë' | 'È'..='Ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
            'ì'..='ï' | 'Ì'..='Ï' | 'ī' | 'į' | 'ı' => 'i',
            'ñ' | 'Ñ' | 'ń' | 'ň' => 'n',
            'ò'..='ö' | 'Ò'..='Ö' | 'ø' | 'Ø' | 'ō' | 'ő' => 'o',
            'ù'..='ü' | 'Ù'..='Ü' | 'ū' | 'ů' | 'ű' => 'u',
            'ý' | 'ÿ' | 'Ý' => 'y',
            'ś' | 'š' | 'Ś' | 'Š' => 's',
            'ź' | 'ż' | 'ž' | 'Ź' | 'Ż' | 'Ž' => 'z',
            'ł' | 'Ł' => 'l',
            'ř' => 'r',
            'ß' => 's',
            other => other,
        })
        .collect();
    normalise(&ascii)
}

/// The world's city for a geofeed's (country, region, city) (see the module docs).
pub fn resolve_city(
    world: &World,
    country: Option<CountryCode>,
    region: Option<&str>,
    city: &str,
) -> Option<u32> {
    let cc = country?;
    let cc = country_str(&cc);
    let key = fold(city);
    if key.is_empty() {
        return None;
    }
    let named: Vec<_> = world
        .cities_named(&key)
        .filter(|c| c.country == cc)
        .collect();
    if let Some(region) = region {
        let admin1 = match cc {
            "CA" => CA_ADMIN1
                .iter()
                .find(|(iso, _)| iso.eq_ignore_ascii_case(region))
                .map_or(region, |(_, g)| g),
            _ => region,
        };
        if let Some(c) = named.iter().find(|c| c.admin1.eq_ignore_ascii_case(admin1)) {
            return Some(c.id);
        }
    }
    named.first().map(|c| c.id)
}

/// A `geofeed:` reference of an inetnum/inet6num object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeofeedRef {
    /// The inetnum's range: the referenced entries must lie inside it.
    pub range: Range,
    pub url: String,
    /// Where the reference is (the dump and the line of its `geofeed:`).
    pub file: String,
    pub line: usize,
}

fn read_refs(path: &Path) -> Result<Box<dyn BufRead>, Error> {
    let file = std::fs::File::open(path).map_err(|source| Error::ReadFile {
        data: "geofeed references (RPSL database dump)",
        path: path.to_owned(),
        fix: "pass an RPSL dump of inetnum/inet6num objects (e.g. ripe.db.inetnum.gz) to --geofeed-refs",
        source,
    })?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 16, reader)))
}

fn range_of(value: &str) -> Result<Range, String> {
    if let Some((a, b)) = value.split_once('-') {
        let (a, b) = (a.trim(), b.trim());
        match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
            (Ok(a), Ok(b)) if a.is_ipv4() == b.is_ipv4() && a <= b => Ok((a, b)),
            _ => Err(format!(
                "{value:?} is not an address range (first - last, like 193.0.0.0 - 193.0.7.255)"
            )),
        }
    } else {
        let net = value
            .parse::<IpNet>()
            .map_err(|_| format!("{value:?} is not a prefix (like 2001:67c:2e8::/48)"))?;
        Ok((net.network(), net.broadcast()))
    }
}

/// The `geofeed:` references of an RPSL dump (see the module docs), and the references
/// that cannot be followed (an inetnum that is not a range, a URL that is not https).
/// Objects without a reference are skipped. Text need not be UTF-8 (dumps are Latin-1).
pub fn parse_refs(
    mut reader: impl BufRead,
    file: &str,
) -> std::io::Result<(Vec<GeofeedRef>, Vec<BadLine>)> {
    #[derive(Default)]
    struct Object {
        range: Option<(Result<Range, String>, usize)>,
        url: Option<(String, usize)>,
        remark: Option<(String, usize)>,
        attributes: usize,
    }
    let mut refs = Vec::new();
    let mut bad = Vec::new();
    let flush = |o: &mut Object, refs: &mut Vec<GeofeedRef>, bad: &mut Vec<BadLine>| {
        let o = std::mem::take(o);
        let (Some((range, range_line)), Some((url, line))) = (o.range, o.url.or(o.remark)) else {
            return;
        };
        let what = match range {
            Err(why) => Some((range_line, format!("inetnum {why}"))),
            Ok(_) if !url.starts_with("https://") => Some((
                line,
                format!("geofeed {url:?} is not an https:// URL (RFC 9632)"),
            )),
            Ok(range) => {
                refs.push(GeofeedRef {
                    range,
                    url,
                    file: file.to_owned(),
                    line,
                });
                None
            }
        };
        if let Some((line, what)) = what {
            bad.push(BadLine {
                file: file.to_owned(),
                line,
                what,
            });
        }
    };
    let mut object = Object::default();
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        n += 1;
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end();
        if line.is_empty() {
            flush(&mut object, &mut refs, &mut bad);
            continue;
        }
        if line.starts_with(['%', '#', ' ', '\t', '+']) {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        object.attributes += 1;
        match key.as_str() {
            "inetnum" | "inet6num" if object.attributes == 1 => {
                object.range = Some((range_of(value), n));
            }
            "geofeed" if object.url.is_none() => {
                let url = value.split_whitespace().next().unwrap_or_default();
                object.url = Some((url.to_owned(), n));
            }
            "remarks" if object.remark.is_none() => {
                let mut words = value.split_whitespace();
                if words
                    .next()
                    .is_some_and(|w| w.eq_ignore_ascii_case("geofeed"))
                {
                    if let Some(url) = words.next().filter(|u| u.starts_with("http")) {
                        object.remark = Some((url.to_owned(), n));
                    }
                }
            }
            _ => {}
        }
    }
    flush(&mut object, &mut refs, &mut bad);
    Ok((refs, bad))
}

/// Where the mirror keeps `url`: `<dir>/<host>/<path>` (see the module docs). A URL
/// that would leave `dir` (`..`, an odd host) is refused: the URLs come from third
/// parties.
pub fn mirror_path(dir: &Path, url: &str) -> Result<PathBuf, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or("not an https:// URL (RFC 9632)")?;
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = host
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if host.is_empty()
        || host.starts_with('.')
        || host.contains("..")
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(format!("host {host:?} is not a DNS name"));
    }
    let mut out = dir.join(host);
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." || part.contains(['\\', '\0']) {
            return Err(format!(
                "path segment {part:?} would leave the mirror directory"
            ));
        }
        out.push(part);
    }
    if path.is_empty() || path.ends_with('/') {
        out.push("index.html");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    const FEED: &str = "\
# prefix,country,region,city,postal
193.0.0.0/22,NL,NL-NH,Amsterdam,
193.0.0.0/20,NL,,,
193.0.10.0/24,NL,NL-NH,Amsterdam,1012,extra
2001:67c:2e8::/48,NL,NL-NH,Amsterdam
192.0.2.0/24,US,US-CA,San Jose,95101

not-a-prefix,NL,,,
198.51.100.0/24,NLD,,,
198.51.100.1/24,NL,,,
203.0.113.0/24,US,NL-NH,Amsterdam,
203.0.114.0/24,DE,DE-BE,\"Berlin\",
10.0.0.0/8,US,CA
";

    #[test]
    fn bad_lines_are_named_by_file_and_line_and_the_rest_is_used() {
        let (g, bad) = Geofeeds::parse(FEED, "feed.csv");
        let shown: Vec<String> = bad.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 6, "{shown:#?}");
        for (line, what) in [
            (4, "6 fields"),
            (8, "not an IP prefix"),
            (9, "not an ISO 3166-1"),
            (10, "host bits set"),
            (11, "not in country US"),
            (13, "not an ISO 3166-2"),
        ] {
            let prefix = format!("feed.csv:{line}: ");
            assert!(
                shown
                    .iter()
                    .any(|s| s.starts_with(&prefix) && s.contains(what)),
                "no {prefix}{what} in {shown:#?}"
            );
        }
        assert_eq!(g.len(), 5);
        assert_eq!(g.report().ok, 5);
        assert_eq!(g.report().malformed, 6);
        // Longest prefix: the /22 names Amsterdam, the /20 around it only the country.
        let e = g.lookup(ip("193.0.1.139")).expect("in the /22");
        assert_eq!(e.city.as_deref(), Some("Amsterdam"));
        assert_eq!(e.region.as_deref(), Some("NH"));
        let e = g.lookup(ip("193.0.9.1")).expect("in the /20");
        assert_eq!((e.city.as_deref(), e.country), (None, Some(*b"NL")));
        assert_eq!(
            g.lookup(ip("2001:67c:2e8::2")).and_then(|e| e.city.clone()),
            Some("Amsterdam".into())
        );
        assert_eq!(
            g.lookup(ip("203.0.114.9")).and_then(|e| e.city.clone()),
            Some("Berlin".into()),
            "quoted field"
        );
        assert!(g.lookup(ip("193.0.16.1")).is_none());
        assert!(g.lookup(ip("2001:67d::1")).is_none());
        assert!(g.lookup(ip("10.1.1.1")).is_none(), "a bad line is not used");
    }

    #[test]
    fn cities_resolve_by_region_or_population() {
        let world = World::embedded().expect("world");
        let (mut g, bad) = Geofeeds::parse(
            "193.0.0.0/22,NL,NL-NH,Amsterdam,\n\
             192.0.2.0/24,US,US-OR,Portland,\n\
             192.0.3.0/24,US,US-ME,Portland,\n\
             192.0.4.0/24,US,,Portland,\n\
             192.0.5.0/24,CA,CA-ON,London,\n\
             192.0.6.0/24,CH,CH-ZH,Zürich,\n\
             192.0.7.0/24,NL,,Nowhere-on-Earth,\n\
             192.0.8.0/24,NL,,,\n",
            "t.csv",
        );
        assert!(bad.is_empty(), "{bad:?}");
        g.resolve(&world);
        let city = |s: &str| {
            let id = g.lookup(ip(s)).and_then(|e| e.city_id)?;
            let c = world.city(id)?;
            Some((c.ascii_name.clone(), c.country.clone(), c.admin1.clone()))
        };
        let (name, cc, _) = city("193.0.0.1").expect("Amsterdam");
        assert_eq!((name.as_str(), cc.as_str()), ("Amsterdam", "NL"));
        assert_eq!(city("192.0.2.1").map(|c| c.2), Some("OR".into()));
        assert_eq!(city("192.0.3.1").map(|c| c.2), Some("ME".into()));
        // No region: the most populous Portland of the US (Oregon's).
        assert_eq!(city("192.0.4.1").map(|c| c.2), Some("OR".into()));
        assert_eq!(
            city("192.0.5.1"),
            Some(("London".into(), "CA".into(), "08".into())),
            "Ontario through the CA table"
        );
        assert_eq!(
            city("192.0.6.1").map(|c| c.0),
            Some("Zurich".into()),
            "Zürich folds to the world's ASCII name"
        );
        assert_eq!(city("192.0.7.1"), None);
        assert_eq!(city("192.0.8.1"), None);
        assert_eq!(g.report().no_city, 2);
    }

    const DUMP: &str = "\
% The RIPE Database dump
% comments like these are skipped

inetnum:        193.0.0.0 - 193.0.7.255
netname:        RIPE-NCC
geofeed:        https://Example.NET/geo/feed.csv
remarks:        a remark
source:         RIPE

inet6num:       2001:67c:2e8::/48
netname:        RIPE-NCC
remarks:        Geofeed https://example.net/geo/v6.csv
source:         RIPE

inetnum:        198.51.100.0 - 198.51.100.255
geofeed:        http://example.org/plain-http.csv

inetnum:        not a range
geofeed:        https://example.org/x.csv

aut-num:        AS3333
geofeed:        https://example.org/not-an-inetnum.csv

inetnum:        192.0.2.0 - 192.0.2.255
netname:        NO-GEOFEED
";

    #[test]
    fn references_and_their_scope() {
        let (refs, bad) = parse_refs(DUMP.as_bytes(), "ripe.db.inetnum").expect("parse");
        let urls: Vec<&str> = refs.iter().map(|r| r.url.as_str()).collect();
        assert_eq!(
            urls,
            vec![
                "https://Example.NET/geo/feed.csv",
                "https://example.net/geo/v6.csv"
            ]
        );
        assert_eq!(refs[0].range, (ip("193.0.0.0"), ip("193.0.7.255")));
        assert_eq!(refs[0].line, 6);
        let shown: Vec<String> = bad.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(shown[0].starts_with("ripe.db.inetnum:16: ") && shown[0].contains("https"));
        assert!(shown[1].starts_with("ripe.db.inetnum:18: ") && shown[1].contains("range"));

        // The mirror: feed.csv claims the inetnum's space and someone else's.
        let dir = std::env::temp_dir().join(format!("vantage-geofeed-{}", std::process::id()));
        let mirror = dir.join("mirror");
        std::fs::create_dir_all(mirror.join("example.net/geo")).expect("dir");
        std::fs::write(dir.join("ripe.db.inetnum"), DUMP).expect("write");
        std::fs::write(
            mirror.join("example.net/geo/feed.csv"),
            "193.0.0.0/22,NL,NL-NH,Amsterdam,\n\
             193.0.4.0/22,NL,NL-ZH,Rotterdam,\n\
             8.8.8.0/24,NL,NL-NH,Amsterdam,\n\
             193.0.0.0/16,NL,,Utrecht,\n\
             bogus\n",
        )
        .expect("write");
        let own = dir.join("own.csv");
        std::fs::write(&own, "8.8.4.0/24,US,US-CA,Mountain View,\n").expect("write");
        let sources = Sources {
            refs: vec![dir.join("ripe.db.inetnum")],
            dir: Some(mirror.clone()),
            files: vec![own.clone()],
        };
        let g = Geofeeds::load(&sources).expect("load");
        let r = g.report();
        assert_eq!(r.references, 2);
        assert_eq!((r.ok, r.outside_referencing_prefix), (3, 2));
        // 2 bad references + 1 bad geofeed line.
        assert_eq!(r.malformed, 3, "{:?}", r.bad_lines);
        assert!(r
            .bad_lines
            .iter()
            .any(|b| b.to_string().starts_with(&format!(
                "{}:5: ",
                mirror.join("example.net/geo/feed.csv").display()
            ))));
        assert_eq!(
            r.missing_files,
            vec![mirror.join("example.net/geo/v6.csv").display().to_string()]
        );
        let city = |s: &str| g.lookup(ip(s)).and_then(|e| e.city.clone());
        assert_eq!(city("193.0.6.1").as_deref(), Some("Rotterdam"));
        assert_eq!(city("8.8.8.8"), None, "not the referencing network's space");
        assert_eq!(city("193.0.200.1"), None, "a /16 is wider than the inetnum");
        assert_eq!(
            city("8.8.4.4").as_deref(),
            Some("Mountain View"),
            "own feed: no scope"
        );

        // Refs without a mirror directory, a missing dump, an unusable own feed.
        let no_dir = Sources {
            dir: None,
            ..sources.clone()
        };
        let err = Geofeeds::load(&no_dir).expect_err("no dir").to_string();
        assert!(err.contains("--geofeed-dir"), "{err}");
        let missing = Sources {
            refs: vec![dir.join("nope.db")],
            ..sources.clone()
        };
        let err = Geofeeds::load(&missing).expect_err("missing").to_string();
        assert!(err.contains("nope.db"), "{err}");
        std::fs::write(&own, "garbage\nmore garbage\n").expect("write");
        let err = Geofeeds::load(&sources).expect_err("garbage").to_string();
        assert!(err.contains("own.csv:1: "), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn every_line_is_an_entry_or_a_bad_line_whatever_the_input() {
        let pieces = [
            "193.0.0.0/22",
            "2001:db8::/32",
            "10.0.0.1",
            "::/0",
            "0.0.0.0/0",
            "1.2.3.4/33",
            "NL",
            "US",
            "nl",
            "XYZ",
            "",
            "US-CA",
            "NL-NH",
            "US-",
            "-CA",
            "\"",
            "\"a,b\"",
            "Amsterdam",
            "Zürich",
            "#",
            " ",
            "\u{feff}",
            "1.2.3.4/24",
            "ffff::1/129",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut text = String::new();
        let mut lines = 0;
        for _ in 0..2000 {
            let fields = next() % 8;
            let line: Vec<&str> = (0..fields)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            let line = line.join(",");
            let t = line.trim_start_matches('\u{feff}').trim();
            if !t.is_empty() && !t.starts_with('#') {
                lines += 1;
            }
            text.push_str(&line);
            text.push('\n');
        }
        let (g, bad) = Geofeeds::parse(&text, "random.csv");
        assert_eq!(g.report().ok + bad.len() as u64, lines);
        assert_eq!(g.len() as u64, g.report().ok);
        for e in g.entries() {
            let found = g.lookup(e.prefix.network()).expect("its own network");
            assert!(found.prefix.prefix_len() >= e.prefix.prefix_len());
        }
        // Both kinds occur (58 entries of 2,000 lines with this seed).
        assert!(g.report().ok > 20 && bad.len() > 100, "{:?}", g.report());
        let (refs, _) = parse_refs(text.as_bytes(), "random.db").expect("parse");
        assert!(refs.is_empty(), "no inetnum objects in random CSV");
    }

    #[test]
    fn mirror_paths_stay_inside_the_directory() {
        let d = Path::new("/m");
        let ok = |u: &str| mirror_path(d, u).expect(u).display().to_string();
        assert_eq!(
            ok("https://Geo.Example.com/a/b.csv"),
            "/m/geo.example.com/a/b.csv"
        );
        assert_eq!(
            ok("https://u@example.com:8443/f.csv?x=1#y"),
            "/m/example.com/f.csv"
        );
        assert_eq!(ok("https://example.com/"), "/m/example.com/index.html");
        assert_eq!(ok("https://example.com"), "/m/example.com/index.html");
        for bad in [
            "http://example.com/f.csv",
            "https://example.com/../../etc/passwd",
            "https://../etc/passwd",
            "https://exa mple.com/f",
            "https:///f.csv",
        ] {
            assert!(mirror_path(d, bad).is_err(), "{bad}");
        }
    }
}
