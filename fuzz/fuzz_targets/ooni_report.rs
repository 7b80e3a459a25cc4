//! The OONI report body as the intake takes it: an optionally zstd-compressed body read
//! as a `POST /report` body (`open_report_body`) and as a `POST /report/{id}` body
//! (`submission_content`), the measurement uid made of it (`uid`), the queued line, and
//! the fastpath's scoring of the measurement (`fastpath::Scorer`) with the shipped
//! fingerprints.
#![no_main]

use std::sync::OnceLock;

use chrono::TimeZone;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use vantage_collector::fastpath::Scorer;
use vantage_collector::fingerprints::Fingerprints;
use vantage_collector::intake::{decode_zstd, open_report_body, submission_content};
use vantage_collector::uid;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

fn fingerprints() -> &'static Fingerprints {
    static FP: OnceLock<Fingerprints> = OnceLock::new();
    FP.get_or_init(|| {
        Fingerprints::parse_csv(
            include_bytes!("../../collector/data/fingerprints/fingerprints_dns.csv"),
            include_bytes!("../../collector/data/fingerprints/fingerprints_http.csv"),
            "shipped",
        )
        .expect("the shipped fingerprints parse")
        .0
    })
}

fuzz_target!(|data: &[u8]| {
    let body = if data.starts_with(&ZSTD_MAGIC) {
        match decode_zstd(data, 1 << 20) {
            Ok(b) => b,
            Err(e) => {
                assert!(e.status.is_client_error(), "{}", e.message);
                return;
            }
        }
    } else {
        data.to_vec()
    };
    let now = chrono::Utc
        .timestamp_opt(1_795_300_265, 0)
        .single()
        .expect("a fixed time");
    let (report_id, meta) = match open_report_body(&body, now) {
        Ok((id, meta)) => {
            assert!(uid::is_safe_id(&id), "report id {id:?} is not a safe id");
            (id, meta)
        }
        Err(e) => {
            assert!(e.status.is_client_error(), "{}", e.message);
            let mut meta = Map::new();
            meta.insert("probe_cc".into(), Value::String("IT".into()));
            meta.insert("test_name".into(), Value::String("web_connectivity".into()));
            (
                "20261121T223100Z_webconnectivity_IT_64500_n1_AAAAAAAAAAAAAAAA".to_owned(),
                meta,
            )
        }
    };
    let mut content = match submission_content(&body, meta, &report_id) {
        Ok(c) => c,
        Err(e) => {
            assert!(e.status.is_client_error(), "{}", e.message);
            return;
        }
    };
    assert_eq!(
        content.get("report_id").and_then(Value::as_str),
        Some(report_id.as_str())
    );
    let s = |k: &str| {
        content
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (cc, test) = (
        uid::sanitize_cc(&s("probe_cc")),
        uid::sanitize_test_name(&s("test_name")),
    );
    let measurement_uid = uid::format_uid(now, &cc, &test, &uid::content_hash(&body));
    let parts = uid::parse_uid(&measurement_uid).expect("a uid the intake made parses");
    assert_eq!((parts.cc, parts.test_name), (cc, test));
    content.insert("measurement_uid".into(), Value::String(measurement_uid));
    let msm = Value::Object(content);
    let line = serde_json::to_vec(&msm).expect("a measurement serializes");
    let queued: Value = serde_json::from_slice(&line).expect("a queued line parses");
    let mut scorer = Scorer::default();
    let first = scorer.next(&queued, fingerprints());
    let again = Scorer::default().next(&queued, fingerprints());
    assert_eq!(
        first, again,
        "scoring is a pure function of the measurement"
    );
    let _ = scorer.next(&queued, fingerprints());
});
