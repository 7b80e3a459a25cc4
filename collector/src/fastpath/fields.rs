//! Reading OONI measurements the way OONI's fastpath (Python) reads them: a key that is
//! missing or `null` takes the default, truthiness as Python's, nested getters, header
//! maps, times, versions; plus the row fields (ASN, times, domain).

use serde_json::{Map, Value};

/// `d[key]`, or `None` when missing or `null` (OONI's `g_or`).
pub fn get<'a>(d: &'a Value, key: &str) -> Option<&'a Value> {
    d.get(key).filter(|v| !v.is_null())
}

/// Nested `get` (OONI's `gn`): `None` as soon as a level is missing or `null`.
pub fn path<'a>(d: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(d, |v, k| get(v, k))
}

/// The object at `key`, or an empty one when missing or `null`; `Err` when it is
/// something else (OONI's code raises there).
pub fn object<'a>(d: &'a Value, key: &str) -> Result<&'a Map<String, Value>, String> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    match get(d, key) {
        None => Ok(EMPTY.get_or_init(Map::new)),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(format!("{key} is not an object")),
    }
}

/// `test_keys`, `{}` when missing or `null`; `Err` when not an object (OONI raises).
pub fn test_keys(msm: &Value) -> Result<&Value, String> {
    static EMPTY: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    match get(msm, "test_keys") {
        None => Ok(EMPTY.get_or_init(|| Value::Object(Map::new()))),
        Some(v @ Value::Object(_)) => Ok(v),
        Some(_) => Err("test_keys is not an object".into()),
    }
}

/// The array at `key`, or an empty slice when missing or `null` (or not an array).
pub fn array<'a>(d: &'a Value, key: &str) -> &'a [Value] {
    get(d, key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Python's truthiness of a JSON value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python's `x == False`: `false`, `0` and `0.0` (not `null`).
pub fn eq_false(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !*b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// The string at `key`, `""` when missing/`null`; other JSON values as their JSON text.
pub fn str_of(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `"AS64500"`, `"64500"` or `64500` → 64500; anything else → 0.
pub fn parse_asn(v: Option<&Value>) -> u32 {
    match v {
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
        Some(Value::String(s)) => s
            .trim()
            .trim_start_matches("AS")
            .trim_start_matches("as")
            .parse()
            .unwrap_or(0),
        _ => 0,
    }
}

/// OONI times (`2026-11-21 22:31:05`, or RFC 3339) → Unix seconds.
pub fn parse_time(v: Option<&Value>) -> Option<u32> {
    let s = v?.as_str()?;
    let secs = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .map(|t| t.and_utc().timestamp())
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp()))
        .ok()?;
    u32::try_from(secs).ok()
}

/// `%Y-%m-%d %H:%M:%S` only (what OONI's scoring accepts), as a naive UTC time.
pub fn ooni_time(s: &str) -> Option<chrono::NaiveDateTime> {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok()
}

/// The receive time in a measurement uid (`20261121223106.000001_IT_...`).
pub fn uid_time(uid: &str) -> Option<chrono::NaiveDateTime> {
    let head = uid.get(..22)?;
    let (secs, rest) = head.split_at(14);
    let micros = rest.strip_prefix('.')?.strip_suffix('_')?;
    if !micros.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = chrono::NaiveDateTime::parse_from_str(secs, "%Y%m%d%H%M%S").ok()?;
    Some(t + chrono::Duration::microseconds(micros.parse().ok()?))
}

/// The host of a URL-ish input (`https://example.org:443/x` → `example.org`).
pub fn domain_of(input: &str) -> String {
    let rest = input.split_once("://").map_or(input, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// A version as Python's `packaging.version.Version` orders the ones probes send
/// (`3.17.2`, `0.2.4`, `3.18.0-alpha`, `3.19.0-beta.1`, `3.20.0rc2`); `None` for what it
/// would refuse.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    release: Vec<u64>,
    /// (0 = alpha, 1 = beta, 2 = rc, 3 = final release; number)
    pre: (u8, u64),
}

impl Version {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        let s = s.strip_prefix('v').unwrap_or(&s);
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (rel, tail) = s.split_at(split);
        let mut release = Vec::new();
        for part in rel.split('.') {
            release.push(part.parse().ok()?);
        }
        while release.len() > 1 && release.last() == Some(&0) {
            release.pop();
        }
        let pre = if tail.is_empty() {
            (3, 0)
        } else {
            let t = tail.trim_start_matches(['-', '.', '_']);
            let (kind, num) = [
                ("alpha", 0),
                ("beta", 1),
                ("rc", 2),
                ("a", 0),
                ("b", 1),
                ("c", 2),
            ]
            .iter()
            .find_map(|(p, k)| t.strip_prefix(p).map(|n| (*k, n)))?;
            let num = num.trim_start_matches(['-', '.', '_']);
            (kind, if num.is_empty() { 0 } else { num.parse().ok()? })
        };
        Some(Self { release, pre })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn getters_follow_python() {
        let d = json!({"x": {"y": null, "z": "v"}, "n": 0, "e": ""});
        assert_eq!(path(&d, &["x", "z"]), Some(&json!("v")));
        assert_eq!(path(&d, &["x", "y"]), None);
        assert_eq!(path(&d, &["q", "y"]), None);
        assert_eq!(get(&d, "n"), Some(&json!(0)));
        assert!(!truthy(&d["n"]) && !truthy(&d["e"]) && truthy(&d["x"]));
        assert!(eq_false(&json!(0)) && eq_false(&json!(false)) && !eq_false(&json!(null)));
        assert!(object(&json!({"t": []}), "t").is_err());
        assert!(object(&json!({"t": null}), "t").is_ok_and(Map::is_empty));
    }

    #[test]
    fn versions_order_as_packaging() {
        let v = |s: &str| Version::parse(s).expect(s);
        assert!(v("3.17.2") > v("3.17.1") && v("3.17.2") == v("3.17.2.0"));
        assert!(v("3.18.0-alpha") < v("3.18.0") && v("3.18.0-alpha") > v("3.17.2"));
        assert!(v("0.2.4") > v("0.2.3") && v("3.19.0-beta.1") < v("3.19.0rc1"));
        assert_eq!(Version::parse("latest"), None);
        assert_eq!(Version::parse("1.2-foo"), None);
    }

    #[test]
    fn row_helpers() {
        assert_eq!(
            domain_of("https://user@Example.ORG:8443/path?q#f"),
            "example.org"
        );
        assert_eq!(domain_of("http://[2001:db8::1]:80/"), "2001:db8::1");
        assert_eq!(domain_of("example.com."), "example.com");
        assert_eq!(parse_asn(Some(&json!("AS3269"))), 3269);
        assert_eq!(parse_asn(Some(&json!(3269))), 3269);
        assert_eq!(parse_asn(Some(&json!("junk"))), 0);
        assert_eq!(parse_time(Some(&json!("1970-01-01 00:01:00"))), Some(60));
        assert_eq!(parse_time(Some(&json!("1970-01-01T00:01:00Z"))), Some(60));
        let t = uid_time("20211109115946.469008_IR_webconnectivity_9ba8a0d4f9b116fe").expect("uid");
        assert_eq!(t.to_string(), "2021-11-09 11:59:46.469008");
        assert_eq!(uid_time("bogus_uid"), None);
        assert_eq!(uid_time("01202007106531b7e19c05e300cacea8803d9f9c"), None);
    }
}
