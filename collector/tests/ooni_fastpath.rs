//! vantage's fastpath on real OONI measurements: every file in tests/data/ooni/measurements
//! (from ooni/backend's fastpath tests, see tests/data/ooni/ATTRIBUTION.md) must get
//! OONI's verdict (tests/data/ooni/expected.yaml), except where expected.yaml says
//! `vantage_differs` and why.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;
use vantage_collector::fastpath::{score, Scorer, SCORING_VERSION};
use vantage_collector::fingerprints::Fingerprints;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    test_name: String,
    ooni_test: String,
    anomaly: bool,
    confirmed: bool,
    failure: bool,
    blocking_type: String,
    blocking_general: f64,
    #[serde(default)]
    vantage_differs: Option<Differs>,
}

/// What vantage gives instead, and why.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Differs {
    why: String,
    anomaly: bool,
    confirmed: bool,
    failure: bool,
}

#[derive(Debug, Deserialize)]
struct ExpectedFile {
    measurements: BTreeMap<String, Expected>,
}

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ooni")
}

/// The fingerprint set OONI's fastpath tests use (its JSON form).
fn ooni_fingerprints() -> Fingerprints {
    let read = |n: &str| std::fs::read(data().join(n)).expect("read fingerprints");
    let (fp, bad) = Fingerprints::parse_json(
        &read("fingerprints_dns.json"),
        &read("fingerprints_http.json"),
        "ooni-backend-32d8349d",
    )
    .expect("OONI's test fingerprints load");
    // Every record is valid except those whose pattern is empty (OONI keeps them, and an
    // empty body pattern would match every body: vantage refuses such lines).
    for b in &bad {
        assert_eq!(b.reason, "empty pattern", "{b}");
    }
    assert!(
        fp.dns.len() == 150 && fp.http.len() > 1600,
        "{} {}",
        fp.dns.len(),
        fp.http.len()
    );
    fp
}

fn measurements() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(data().join("measurements")).expect("measurements dir") {
        let path = e.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let msm: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        out.insert(name, msm);
    }
    out
}

#[test]
fn every_real_measurement_gets_ooni_verdict() {
    let fp = ooni_fingerprints();
    let text = std::fs::read_to_string(data().join("expected.yaml")).expect("expected.yaml");
    let expected: ExpectedFile = serde_yaml::from_str(&text).expect("expected.yaml parses");
    let msms = measurements();
    assert_eq!(
        msms.keys().collect::<Vec<_>>(),
        expected.measurements.keys().collect::<Vec<_>>(),
        "every measurement file has an expected verdict and vice versa"
    );
    let mut tests_seen = std::collections::BTreeSet::new();
    let mut table = Vec::new();
    for (name, want) in &expected.measurements {
        let msm = &msms[name];
        assert_eq!(msm["test_name"], want.test_name.as_str(), "{name}");
        assert!(
            !want.ooni_test.is_empty(),
            "{name}: which OONI test asserts this?"
        );
        tests_seen.insert(want.test_name.clone());
        let (row, v) = score(msm, &fp);
        let got = (v.anomaly, v.confirmed, v.failure);
        let ooni = (want.anomaly, want.confirmed, want.failure);
        table.push(format!(
            "{name}: OONI {ooni:?} vantage {got:?} {:?}",
            v.reasons
        ));
        match &want.vantage_differs {
            None => {
                assert_eq!(
                    got, ooni,
                    "{name}: (anomaly, confirmed, failure) differ from OONI's; reasons {:?}",
                    v.reasons
                );
                assert_eq!(v.blocking_type, want.blocking_type, "{name}: blocking_type");
                let general = v
                    .scores
                    .get("blocking_general")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                assert_eq!(general, want.blocking_general, "{name}: blocking_general");
            }
            Some(d) => {
                assert!(
                    !d.why.trim().is_empty(),
                    "{name}: a difference needs its reason"
                );
                assert_eq!(
                    got,
                    (d.anomaly, d.confirmed, d.failure),
                    "{name}: vantage's own verdict"
                );
            }
        }
        // The row follows the verdict, and says which rule fired.
        assert_eq!(
            (row.anomaly, row.confirmed, row.msm_failure),
            (u8::from(got.0), u8::from(got.1), u8::from(got.2)),
            "{name}"
        );
        if v.anomaly || v.failure || v.confirmed {
            assert!(
                !row.reason.is_empty(),
                "{name}: an anomaly, confirmation or failure needs a reason"
            );
        }
        assert_eq!(
            row.reason,
            v.reasons.first().cloned().unwrap_or_default(),
            "{name}"
        );
        let scores: Value = serde_json::from_str(&row.scores).expect("scores json");
        assert_eq!(scores["scoring_version"], SCORING_VERSION, "{name}");
        assert_eq!(
            scores["fingerprints_version"], "ooni-backend-32d8349d",
            "{name}"
        );
        assert!(!v.unknown_test, "{name}");
    }
    eprintln!("{}", table.join("\n"));
    // One or more real measurements per test type OONI's fastpath scores (those of which
    // its repository keeps one).
    for t in [
        "web_connectivity",
        "telegram",
        "whatsapp",
        "signal",
        "vanilla_tor",
        "tor",
        "torsf",
        "meek_fronted_requests_test",
        "http_header_field_manipulation",
        "http_invalid_request_line",
        "http_requests",
        "dns_consistency",
        "riseupvpn",
        "openvpn",
        "browser_web",
    ] {
        assert!(tests_seen.contains(t), "no real {t} measurement");
    }
}

#[test]
fn scoring_is_a_pure_function_of_measurement_and_fingerprints() {
    // Any order, any number of scorers, gives the same rows (live, replicas, reprocess).
    let fp = ooni_fingerprints();
    let msms: Vec<Value> = measurements().into_values().collect();
    let mut a = Scorer::default();
    let forward: Vec<_> = msms.iter().map(|m| a.next(m, &fp)).collect();
    let mut b = Scorer::default();
    let mut backward: Vec<_> = msms.iter().rev().map(|m| b.next(m, &fp)).collect();
    backward.reverse();
    assert_eq!(forward, backward);
}
