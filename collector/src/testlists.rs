//! Test lists in the Citizen Lab format: the URLs the check-in API hands to probes.
//!
//! A set is `global.csv` plus one `<cc>.csv` per country (two lowercase letters), as in
//! `lists/` of github.com/citizenlab/test-lists; the `00-LEGEND-*` files and other files
//! are ignored, and when the snapshot has a `lists/` directory only the files in it count.
//! Each file starts with the header `url,category_code,category_description,date_added,source,notes`;
//! a file without it makes the whole snapshot unusable ([`DatasetError`]). A line with
//! the wrong number of columns, a URL that is not http(s) with a host, or an empty or
//! unknown category code is a [`BadLine`]: skipped, the rest kept.
//!
//! For a country, the candidates are its own list, then the global one, deduplicated
//! by URL (the country's entry wins), filtered by category; [`crate::recency`] orders
//! them.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::source::{BadLine, Dataset, DatasetError, Snapshot};

/// The header every list file starts with.
pub const HEADER: [&str; 6] = [
    "url",
    "category_code",
    "category_description",
    "date_added",
    "source",
    "notes",
];

/// Citizen Lab's category codes and their descriptions.
pub const CATEGORY_CODES: [(&str, &str); 31] = [
    ("ALDR", "Alcohol & Drugs"),
    ("REL", "Religion"),
    ("PORN", "Pornography"),
    ("PROV", "Provocative Attire"),
    ("POLR", "Political Criticism"),
    ("HUMR", "Human Rights Issues"),
    ("ENV", "Environment"),
    ("MILX", "Terrorism and Militants"),
    ("HATE", "Hate Speech"),
    ("NEWS", "News Media"),
    ("XED", "Sex Education"),
    ("PUBH", "Public Health"),
    ("GMB", "Gambling"),
    ("ANON", "Anonymization and circumvention tools"),
    ("DATE", "Online Dating"),
    ("GRP", "Social Networking"),
    ("LGBT", "LGBT"),
    ("FILE", "File-sharing"),
    ("HACK", "Hacking Tools"),
    ("COMT", "Communication Tools"),
    ("MMED", "Media sharing"),
    ("HOST", "Hosting and Blogging Platforms"),
    ("SRCH", "Search Engines"),
    ("GAME", "Gaming"),
    ("CULTR", "Culture"),
    ("ECON", "Economics"),
    ("GOVT", "Government"),
    ("COMM", "E-commerce"),
    ("CTRL", "Control content"),
    ("IGO", "Intergovernmental Organizations"),
    ("MISC", "Miscellaneous content"),
];

/// The country code of "unknown location": the global list only.
pub const UNKNOWN_CC: &str = "ZZ";

/// What the answers say as `country_code` of a URL from the global list (as OONI's API).
pub const GLOBAL_CC: &str = "XX";

/// Whether `code` is one of Citizen Lab's category codes (uppercase).
pub fn is_category(code: &str) -> bool {
    CATEGORY_CODES.iter().any(|(c, _)| *c == code)
}

/// Every country code a probe may send: ISO 3166-1 alpha-2 (with XK, Kosovo, as the
/// geolocation databases probes use have it), uppercase, sorted, and `ZZ`.
pub fn country_codes() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = celes::Country::get_countries()
        .iter()
        .map(|c| c.alpha2)
        .chain([UNKNOWN_CC])
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether `cc` is an uppercase ISO 3166-1 alpha-2 code (or XK); `ZZ` is not one.
pub fn is_country(cc: &str) -> bool {
    cc.len() == 2
        && cc.bytes().all(|b| b.is_ascii_uppercase())
        && celes::Country::from_alpha2(cc).is_ok()
}

/// One URL of a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub url: String,
    pub category_code: String,
}

/// A URL offered to a probe: the answer's `{category_code, country_code, url}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UrlInfo {
    pub category_code: String,
    /// The list's country, or [`GLOBAL_CC`] for the global list.
    pub country_code: String,
    pub url: String,
}

/// The test lists in force.
#[derive(Clone, Debug, Default)]
pub struct TestLists {
    global: Vec<Entry>,
    /// Uppercase country code -> its list.
    countries: BTreeMap<String, Vec<Entry>>,
}

impl TestLists {
    /// URLs of the global list.
    pub fn global(&self) -> &[Entry] {
        &self.global
    }

    /// The list of `cc` (uppercase), if there is one.
    pub fn country(&self, cc: &str) -> Option<&[Entry]> {
        self.countries.get(cc).map(Vec::as_slice)
    }

    /// Countries with a list of their own.
    pub fn countries(&self) -> impl Iterator<Item = &str> {
        self.countries.keys().map(String::as_str)
    }

    /// URLs in all lists.
    pub fn len(&self) -> usize {
        self.global.len() + self.countries.values().map(Vec::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The candidates for a probe in `cc` (uppercase; `ZZ`: the global list only): the
    /// country's list then the global one, in list order, deduplicated by URL, only the
    /// `categories` asked for (all when empty).
    pub fn candidates(&self, cc: &str, categories: &BTreeSet<String>) -> Vec<UrlInfo> {
        let own = if cc == UNKNOWN_CC {
            None
        } else {
            self.countries.get(cc)
        };
        let lists = own
            .into_iter()
            .map(|l| (cc, l))
            .chain([(GLOBAL_CC, &self.global)]);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (country, list) in lists {
            for e in list {
                if !categories.is_empty() && !categories.contains(&e.category_code) {
                    continue;
                }
                if seen.insert(e.url.as_str()) {
                    out.push(UrlInfo {
                        category_code: e.category_code.clone(),
                        country_code: country.to_owned(),
                        url: e.url.clone(),
                    });
                }
            }
        }
        out
    }

    /// Read one list file: its entries (duplicate URLs dropped) and its bad lines. A file
    /// without the header is refused.
    pub fn parse_file(
        file: &str,
        bytes: &[u8],
    ) -> Result<(Vec<Entry>, Vec<BadLine>), DatasetError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes));
        let header = reader.headers().map_err(|e| {
            DatasetError(format!(
                "{file}: cannot read the header ({e}); a test list starts with {}",
                HEADER.join(",")
            ))
        })?;
        let found: Vec<&str> = header.iter().map(str::trim).collect();
        if found != HEADER {
            return Err(DatasetError(format!(
                "{file}: the first line is {:?}, not the test-list header {}: is this a Citizen Lab test list?",
                found.join(","),
                HEADER.join(",")
            )));
        }
        let mut entries = Vec::new();
        let mut bad = Vec::new();
        let mut seen = HashSet::new();
        let bad_line = |line: u64, reason: String| BadLine {
            file: file.to_owned(),
            line: usize::try_from(line).unwrap_or(usize::MAX),
            reason,
        };
        for record in reader.records() {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    let fatal = matches!(e.kind(), csv::ErrorKind::Io(_));
                    bad.push(bad_line(line, format!("unreadable: {e}")));
                    if fatal {
                        break;
                    }
                    continue;
                }
            };
            let line = record.position().map_or(0, |p| p.line());
            match check_record(&record) {
                Ok(entry) => {
                    if seen.insert(entry.url.clone()) {
                        entries.push(entry);
                    }
                }
                Err(reason) => bad.push(bad_line(line, reason)),
            }
        }
        Ok((entries, bad))
    }
}

/// One line: its entry, or why it is bad.
fn check_record(record: &csv::StringRecord) -> Result<Entry, String> {
    if record.len() != HEADER.len() {
        return Err(format!(
            "{} columns, expected {} ({}); quote a field that holds a comma",
            record.len(),
            HEADER.len(),
            HEADER.join(",")
        ));
    }
    let url = record.get(0).unwrap_or("").trim();
    let category = record.get(1).unwrap_or("").trim();
    match url::Url::parse(url) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty()) => {}
        Ok(_) => {
            return Err(format!(
                "{url:?} is not an http:// or https:// URL with a host"
            ))
        }
        Err(e) => return Err(format!("{url:?} is not a URL: {e}")),
    }
    if category.is_empty() {
        return Err(
            "empty category_code: give one of Citizen Lab's codes (NEWS, HUMR, ...)".into(),
        );
    }
    if !is_category(category) {
        return Err(format!(
            "unknown category_code {category:?}: use one of {}",
            CATEGORY_CODES
                .iter()
                .map(|(c, _)| *c)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Entry {
        url: url.to_owned(),
        category_code: category.to_owned(),
    })
}

/// The country of a list file's name (`it.csv` -> `IT`), `Some("")` for `global.csv`,
/// `None` for other files.
fn list_of(path: &str) -> Option<String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name.starts_with("00-LEGEND-") {
        return None;
    }
    let stem = name.strip_suffix(".csv")?;
    if stem == "global" {
        return Some(String::new());
    }
    (stem.len() == 2 && stem.bytes().all(|b| b.is_ascii_lowercase()))
        .then(|| stem.to_ascii_uppercase())
}

fn in_lists_dir(path: &str) -> bool {
    path.starts_with("lists/") || path.contains("/lists/")
}

impl Dataset for TestLists {
    const KIND: &'static str = "test_lists";

    fn from_snapshot(snapshot: &Snapshot) -> Result<(Self, Vec<BadLine>), DatasetError> {
        let only_lists_dir = snapshot.files.keys().any(|p| in_lists_dir(p));
        let mut lists = TestLists::default();
        let mut bad = Vec::new();
        let mut has_global = false;
        for (path, bytes) in &snapshot.files {
            if only_lists_dir && !in_lists_dir(path) {
                continue;
            }
            let Some(cc) = list_of(path) else { continue };
            if !cc.is_empty() && !is_country(&cc) {
                bad.push(BadLine {
                    file: path.clone(),
                    line: 1,
                    reason: format!(
                        "{cc} is not an ISO 3166-1 country code: the file is ignored; name country lists <cc>.csv"
                    ),
                });
                continue;
            }
            let (entries, file_bad) = TestLists::parse_file(path, bytes)?;
            bad.extend(file_bad);
            let list = if cc.is_empty() {
                has_global = true;
                &mut lists.global
            } else {
                lists.countries.entry(cc).or_default()
            };
            for e in entries {
                if !list.iter().any(|x| x.url == e.url) {
                    list.push(e);
                }
            }
        }
        if !has_global {
            return Err(DatasetError(
                "no global.csv: point the test lists at Citizen Lab's lists/ directory (or a copy) holding global.csv and <cc>.csv files".into(),
            ));
        }
        Ok((lists, bad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "url,category_code,category_description,date_added,source,notes\n";

    fn snapshot(files: &[(&str, &str)]) -> Snapshot {
        Snapshot::from_files(
            files
                .iter()
                .map(|(p, b)| ((*p).to_owned(), b.as_bytes().to_vec()))
                .collect(),
        )
    }

    fn cats(c: &[&str]) -> BTreeSet<String> {
        c.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn country_plus_global_deduplicated_and_filtered() {
        let s = snapshot(&[
            ("lists/global.csv", &format!("{H}https://a.example/,NEWS,News Media,2020-01-01,x,\nhttps://b.example/,HUMR,Human Rights Issues,2020-01-01,x,\nhttps://shared.example/,NEWS,News Media,2020-01-01,x,\n")),
            ("lists/it.csv", &format!("{H}https://it.example/,NEWS,News Media,2020-01-01,x,\nhttps://shared.example/,POLR,Political Criticism,2020-01-01,x,\n")),
            ("lists/00-LEGEND-category_codes.csv", "CATEGORY_CODE,CATEGORY_DESCRIPTION\nNEWS,News\n"),
            ("README.md", "not a list"),
        ]);
        let (lists, bad) = TestLists::from_snapshot(&s).expect("lists");
        assert!(bad.is_empty(), "{bad:?}");
        let urls = |c: &[UrlInfo]| {
            c.iter()
                .map(|u| {
                    (
                        u.url.clone(),
                        u.country_code.clone(),
                        u.category_code.clone(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            urls(&lists.candidates("IT", &cats(&[]))),
            vec![
                ("https://it.example/".into(), "IT".into(), "NEWS".into()),
                ("https://shared.example/".into(), "IT".into(), "POLR".into()),
                ("https://a.example/".into(), "XX".into(), "NEWS".into()),
                ("https://b.example/".into(), "XX".into(), "HUMR".into()),
            ]
        );
        assert_eq!(
            urls(&lists.candidates("IT", &cats(&["NEWS"]))),
            vec![
                ("https://it.example/".into(), "IT".into(), "NEWS".into()),
                ("https://a.example/".into(), "XX".into(), "NEWS".into()),
                ("https://shared.example/".into(), "XX".into(), "NEWS".into()),
            ]
        );
        // ZZ and a country without a list: the global list only.
        assert_eq!(lists.candidates("ZZ", &cats(&[])).len(), 3);
        assert_eq!(lists.candidates("FR", &cats(&[])).len(), 3);
        assert_eq!(lists.countries().collect::<Vec<_>>(), vec!["IT"]);
    }

    #[test]
    fn bad_lines_are_named_and_skipped() {
        let body = format!(
            "{H}https://ok.example/,NEWS,News Media,2020-01-01,x,\n\
             https://short.example/,NEWS\n\
             ftp://files.example/,FILE,File-sharing,2020-01-01,x,\n\
             not a url,NEWS,News Media,2020-01-01,x,\n\
             https://nocat.example/,,,2020-01-01,x,\n\
             https://unknown.example/,WHAT,What,2020-01-01,x,\n\
             \"https://quoted.example/a,b\",NEWS,\"News, Media\",2020-01-01,x,\"a, note\"\n\
             https://ok.example/,NEWS,News Media,2020-01-01,x,duplicate\n"
        );
        let (entries, bad) =
            TestLists::parse_file("lists/global.csv", body.as_bytes()).expect("parsed");
        assert_eq!(
            entries.iter().map(|e| e.url.as_str()).collect::<Vec<_>>(),
            vec!["https://ok.example/", "https://quoted.example/a,b"]
        );
        let lines: Vec<(usize, &str)> = bad.iter().map(|b| (b.line, b.reason.as_str())).collect();
        assert_eq!(
            lines.iter().map(|l| l.0).collect::<Vec<_>>(),
            vec![3, 4, 5, 6, 7]
        );
        assert!(lines[0].1.contains("2 columns, expected 6"), "{lines:?}");
        assert!(
            lines[1].1.contains("not an http:// or https:// URL"),
            "{lines:?}"
        );
        assert!(lines[2].1.contains("is not a URL"), "{lines:?}");
        assert!(lines[3].1.contains("empty category_code"), "{lines:?}");
        assert!(
            lines[4].1.contains("unknown category_code \"WHAT\""),
            "{lines:?}"
        );
        assert!(bad.iter().all(|b| b.file == "lists/global.csv"));
    }

    #[test]
    fn a_file_without_the_header_or_no_global_list_is_refused() {
        let no_header = snapshot(&[
            (
                "global.csv",
                &format!("{H}https://a.example/,NEWS,N,2020-01-01,x,\n"),
            ),
            (
                "it.csv",
                "https://it.example/,NEWS,News Media,2020-01-01,x,\n",
            ),
        ]);
        let e = TestLists::from_snapshot(&no_header).expect_err("no header");
        assert!(
            e.0.contains("it.csv") && e.0.contains("not the test-list header"),
            "{e}"
        );
        let bom = format!("\u{feff}{H}https://a.example/,NEWS,N,2020-01-01,x,\n");
        let (entries, bad) =
            TestLists::parse_file("global.csv", bom.as_bytes()).expect("a BOM is fine");
        assert_eq!((entries.len(), bad.len()), (1, 0));
        let empty = snapshot(&[("global.csv", "")]);
        assert!(TestLists::from_snapshot(&empty).is_err());
        let no_global = snapshot(&[(
            "it.csv",
            &format!("{H}https://it.example/,NEWS,N,2020-01-01,x,\n"),
        )]);
        let e = TestLists::from_snapshot(&no_global).expect_err("no global");
        assert!(e.0.contains("no global.csv"), "{e}");
    }

    #[test]
    fn file_names_and_directories() {
        assert_eq!(list_of("lists/it.csv").as_deref(), Some("IT"));
        assert_eq!(list_of("global.csv").as_deref(), Some(""));
        assert_eq!(list_of("lists/00-LEGEND-country_codes.csv"), None);
        assert_eq!(list_of("lists/IT.csv"), None);
        assert_eq!(list_of("lists/ita.csv"), None);
        // Outside lists/ when there is a lists/ directory: ignored. A name that is not a
        // country: a bad line, the file ignored.
        let s = snapshot(&[
            (
                "lists/global.csv",
                &format!("{H}https://a.example/,NEWS,N,2020-01-01,x,\n"),
            ),
            (
                "lists/qq.csv",
                &format!("{H}https://q.example/,NEWS,N,2020-01-01,x,\n"),
            ),
            (
                "old/it.csv",
                &format!("{H}https://it.example/,NEWS,N,2020-01-01,x,\n"),
            ),
        ]);
        let (lists, bad) = TestLists::from_snapshot(&s).expect("lists");
        assert_eq!(lists.len(), 1);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].file, "lists/qq.csv");
    }

    #[test]
    fn country_codes_are_iso_and_zz() {
        assert!(is_country("IT") && is_country("XK") && is_country("US"));
        assert!(!is_country("it") && !is_country("QQ") && !is_country("ZZ") && !is_country("ITA"));
        let all = country_codes();
        assert!(all.contains(&"ZZ") && all.contains(&"IT"));
        assert!(all.len() >= 250, "{}", all.len());
        assert!(is_category("NEWS") && !is_category("news") && !is_category(""));
    }
}
