//! Measurement uids and report ids, OONI style.
//!
//! A measurement uid is `{UTC yyyymmddHHMMSS.ffffff}_{cc}_{test_name}_{16 hex}`: the
//! receipt time in microseconds, the probe's country, the test name and the first 8
//! bytes of the SHA-256 of the submitted (decompressed) body. Uids sort by receipt
//! time, and one intake process hands them out strictly increasing ([`UidClock`]), so
//! "uid order" is the order in which the fastpath saw the measurements.

use chrono::{DateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};

/// Length of the timestamp part, `yyyymmddHHMMSS.ffffff`.
const TS_LEN: usize = 21;

/// A two-letter upper-case country code, or `ZZ` (OONI's "unknown") when `cc` is not one.
pub fn sanitize_cc(cc: &str) -> String {
    let up = cc.trim().to_ascii_uppercase();
    if up.len() == 2 && up.bytes().all(|b| b.is_ascii_uppercase()) {
        up
    } else {
        "ZZ".to_owned()
    }
}

/// A test name safe in a uid, a file name and an S3 key: lower-case ASCII letters,
/// digits and `_`, at most 64 characters; `unknown` when nothing is left.
pub fn sanitize_test_name(name: &str) -> String {
    let s: String = name
        .trim()
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .take(64)
        .collect();
    if s.is_empty() {
        "unknown".to_owned()
    } else {
        s
    }
}

/// 16 hex digits of the SHA-256 of `body`.
pub fn content_hash(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    hex::encode(&digest[..8])
}

/// Build a uid from its parts (`cc` and `test_name` must already be sanitized).
pub fn format_uid(at: DateTime<Utc>, cc: &str, test_name: &str, hash16: &str) -> String {
    format!(
        "{}_{cc}_{test_name}_{hash16}",
        at.format("%Y%m%d%H%M%S%.6f")
    )
}

/// The parts of a uid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UidParts {
    /// Receipt time, microseconds since the Unix epoch.
    pub micros: i64,
    pub cc: String,
    pub test_name: String,
    pub hash: String,
}

impl UidParts {
    pub fn time(&self) -> DateTime<Utc> {
        Utc.timestamp_micros(self.micros)
            .single()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }
}

/// Whether `s` only holds characters a uid or report id may hold (no path separators).
pub fn is_safe_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 160
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        && !s.starts_with('.')
}

/// Split a uid into its parts; `None` when it is not one of ours.
pub fn parse_uid(uid: &str) -> Option<UidParts> {
    if !is_safe_id(uid) || uid.len() < TS_LEN + 1 + 2 + 1 + 1 + 1 + 16 {
        return None;
    }
    let ts = uid.get(..TS_LEN)?;
    let rest = uid.get(TS_LEN..)?;
    let rest = rest.strip_prefix('_')?;
    let cc = rest.get(..2)?;
    let rest = rest.get(2..)?.strip_prefix('_')?;
    let (test_name, hash) = rest.rsplit_once('_')?;
    if hash.len() != 16 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) || test_name.is_empty() {
        return None;
    }
    let naive = chrono::NaiveDateTime::parse_from_str(ts, "%Y%m%d%H%M%S%.6f").ok()?;
    Some(UidParts {
        micros: naive.and_utc().timestamp_micros(),
        cc: cc.to_owned(),
        test_name: test_name.to_owned(),
        hash: hash.to_owned(),
    })
}

/// Hands out strictly increasing receipt times (microseconds), even when the wall clock
/// stands still or steps back, so that uids of one process are unique and ordered.
#[derive(Debug, Default)]
pub struct UidClock {
    last_micros: i64,
}

impl UidClock {
    /// The next receipt time, at or after `now`.
    pub fn next_time(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        let micros = now.timestamp_micros().max(self.last_micros + 1);
        self.last_micros = micros;
        Utc.timestamp_micros(micros).single().unwrap_or(now)
    }

    /// The next uid for a body of country `cc` and test `test_name` (sanitized here).
    pub fn next_uid(
        &mut self,
        now: DateTime<Utc>,
        cc: &str,
        test_name: &str,
        body: &[u8],
    ) -> String {
        let at = self.next_time(now);
        format_uid(
            at,
            &sanitize_cc(cc),
            &sanitize_test_name(test_name),
            &content_hash(body),
        )
    }
}

/// A new report id, OONI style: `{yyyymmddTHHMMSSZ}_{test_name}_{cc}_{asn}_n1_{16 random}`.
pub fn new_report_id(now: DateTime<Utc>, test_name: &str, cc: &str, asn: u32) -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    let random: String = (0..16)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!(
        "{}_{}_{}_{asn}_n1_{random}",
        now.format("%Y%m%dT%H%M%SZ"),
        sanitize_test_name(test_name),
        sanitize_cc(cc),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn uid_has_the_ooni_shape_and_parses_back() {
        let mut clock = UidClock::default();
        let uid = clock.next_uid(
            at("2026-11-21T22:31:05.123456Z"),
            "it",
            "web_connectivity",
            b"{}",
        );
        assert_eq!(
            uid,
            "20261121223105.123456_IT_web_connectivity_44136fa355b3678a"
        );
        let p = parse_uid(&uid).expect("parses");
        assert_eq!(p.cc, "IT");
        assert_eq!(p.test_name, "web_connectivity");
        assert_eq!(p.hash, "44136fa355b3678a");
        assert_eq!(p.time(), at("2026-11-21T22:31:05.123456Z"));
    }

    #[test]
    fn clock_is_strictly_increasing() {
        let mut clock = UidClock::default();
        let t = at("2026-11-21T22:31:05Z");
        let a = clock.next_uid(t, "IT", "dns", b"x");
        let b = clock.next_uid(t, "IT", "dns", b"x");
        let c = clock.next_uid(at("2026-11-21T22:00:00Z"), "IT", "dns", b"x");
        assert!(a < b && b < c, "{a} {b} {c}");
    }

    #[test]
    fn sanitizing_keeps_paths_safe() {
        assert_eq!(sanitize_cc("../"), "ZZ");
        assert_eq!(sanitize_cc("de"), "DE");
        assert_eq!(
            sanitize_test_name("../Web Connectivity!"),
            "webconnectivity"
        );
        assert_eq!(sanitize_test_name("///"), "unknown");
        assert!(!is_safe_id("../etc/passwd"));
        assert!(!is_safe_id(".hidden"));
        assert!(parse_uid("garbage").is_none());
        let id = new_report_id(at("2026-11-21T22:31:05Z"), "dns", "nl", 64500);
        assert!(id.starts_with("20261121T223105Z_dns_NL_64500_n1_"), "{id}");
        assert!(is_safe_id(&id));
    }
}
