//! The DNS answer parser behind `dns_results`: the input is a DNS wire message, put in a
//! RIPE Atlas dns result as its base64 `abuf` (as a probe sends it) and read by the
//! collector's typed rows (rcode, ANCOUNT, answers in presentation format).
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use vantage_collector::typed::TypedRows;
use vantage_platform::store::ResultRow;

fuzz_target!(|data: &[u8]| {
    let abuf = base64::engine::general_purpose::STANDARD.encode(data);
    let result = serde_json::json!({
        "result_id": "fuzz", "fw": 5020, "msm_id": 1_000_001, "prb_id": 1, "timestamp": 1_700_000_000,
        "type": "dns", "af": 4, "dst_addr": "192.0.2.53",
        "result": {"rt": 12.5, "size": data.len(), "abuf": abuf, "ANCOUNT": 1},
    });
    let payload = serde_json::to_vec(&result).expect("json");
    let row = ResultRow::from_payload(&payload, 1_700_000_000).expect("a well-formed dns result");
    let mut t = TypedRows::default();
    t.push_row(&row);
    assert_eq!(t.dns.len(), 1, "one row per answer");
    let d = &t.dns[0];
    if d.rcode.is_empty() {
        assert!(d.answers.is_empty(), "answers without a readable message");
    } else {
        assert!(
            d.answers.len() <= d.ancount as usize,
            "more answers than ANCOUNT"
        );
    }
});
