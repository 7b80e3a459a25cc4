//! The certificate parser behind `sslcert_results`: the input is a DER certificate, put
//! in a RIPE Atlas sslcert result as the leaf of its PEM chain (as a probe sends it) and
//! read by the collector's typed rows (subject, issuer, validity).
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use vantage_collector::typed::TypedRows;
use vantage_platform::store::ResultRow;

fuzz_target!(|data: &[u8]| {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let result = serde_json::json!({
        "result_id": "fuzz", "fw": 5020, "msm_id": 1_000_001, "prb_id": 1, "timestamp": 1_700_000_000,
        "type": "sslcert", "af": 4, "dst_addr": "192.0.2.43", "method": "TLS", "ver": "1.2",
        "rt": 20.0, "ttc": 5.0, "cert": [pem, "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"],
    });
    let payload = serde_json::to_vec(&result).expect("json");
    let row =
        ResultRow::from_payload(&payload, 1_700_000_000).expect("a well-formed sslcert result");
    let mut t = TypedRows::default();
    t.push_row(&row);
    assert_eq!(t.cert.len(), 1);
    let c = &t.cert[0];
    assert_eq!(c.chain_length, 2);
    if c.not_before == 0 && c.not_after == 0 {
        assert_eq!(c.valid_at_measurement, 0);
    }
});
