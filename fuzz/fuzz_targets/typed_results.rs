//! The result parsers that feed ClickHouse: a RIPE Atlas result as the collector takes
//! it from JetStream (`ResultRow::from_payload`, the `results` row) and the per-type
//! rows built from it (`vantage_collector::typed`: ping RTTs, traceroute/mtr hops, DNS
//! `abuf`, HTTP timings, the sslcert leaf, NTP). Properties: the ping fast path equals
//! the JSON-tree path, and the row read from the payload equals the row read from the
//! parsed envelope (what `reprocess` rebuilds from).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vantage_collector::typed::TypedRows;
use vantage_core::result::Envelope;
use vantage_platform::store::ResultRow;

fuzz_target!(|data: &[u8]| {
    let Some(row) = ResultRow::from_payload(data, 1_700_000_000) else {
        return;
    };
    let mut fast = TypedRows::default();
    fast.push_row(&row);
    // The one-pass readers (the row, the ping fast path) skip fields they do not use,
    // so they take numbers a JSON tree refuses (`1e400`): such a ping still gets its
    // typed row, other types none. The controller's `Envelope` refuses those results,
    // so none reaches the collector from a probe; here they must only not panic.
    let Ok(raw) = serde_json::from_str::<serde_json::Value>(&row.raw) else {
        let mut t = TypedRows::default();
        t.push_row(&row);
        assert!(t.ping.len() <= 1 && t.hops.is_empty() && t.dns.is_empty());
        return;
    };
    let mut tree = TypedRows::default();
    tree.push(&row, &raw);
    // Debug, not PartialEq: "NaN" read from a string is a value too.
    assert_eq!(
        format!("{fast:?}"),
        format!("{tree:?}"),
        "fast path and tree path differ"
    );
    if let Ok(env) = Envelope::from_value(raw) {
        let again = ResultRow::from_envelope(&env, row.inserted_at)
            .expect("a payload that gave a row gives a row from its envelope");
        let strip = |r: &ResultRow| ResultRow {
            raw: String::new(),
            ..r.clone()
        };
        assert_eq!(format!("{:?}", strip(&row)), format!("{:?}", strip(&again)));
    }
});
