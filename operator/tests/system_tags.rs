//! System tags end to end below the operator loop: built-in results in the local
//! stack's ClickHouse (`CLICKHOUSE_URL`), the summary queries, the derivation, and
//! selection with the default RIPE Atlas filter; and the id allocator never handing out
//! a reserved (built-in) id, against the stack's NATS (`NATS_URL`). Without those
//! variables the tests print SKIPPED, except under `CI=true`, where that is a failure.

use std::collections::HashMap;
use std::time::Duration;

use vantage_core::definition::{Source, SourceKind};
use vantage_crd::{Probe, ProbeSpec, ProbeStatus};
use vantage_operator::builtin::{DNS_A, DNS_AAAA, RESERVED_END};
use vantage_operator::selection::{select, Candidate, Spread};
use vantage_operator::system_tags::{
    derive, parse_summaries, summary_queries, TagConfig, IPV4_CAPABLE, IPV4_STABLE_1D, IPV4_WORKS,
    IPV6_WORKS, RESOLVES_A, RESOLVES_AAAA,
};
use vantage_platform::store::Store;

fn env(var: &str) -> Option<String> {
    vantage_testkit::stack_var(var, "system tag tests of vantage-operator")
}

/// One ping row, `ago` seconds old.
fn ping(db: &str, msm: u64, prb: u32, af: u8, rcvd: u32, src: &str, ago: u64) -> String {
    format!(
        "INSERT INTO {db}.results (result_id, msm_id, prb_id, type, timestamp, af, src_addr, sent, rcvd, inserted_at) \
         SELECT '{}', {msm}, {prb}, 'ping', now() - {ago}, {af}, '{src}', 3, {rcvd}, now()",
        vantage_testkit::unique("r")
    )
}

fn dns(db: &str, msm: u64, prb: u32, rcode: &str, answer: &str) -> String {
    format!(
        "INSERT INTO {db}.dns_results (result_id, msm_id, prb_id, timestamp, af, dst_addr, rcode, rt, ancount, answers, error, inserted_at) \
         SELECT '{}', {msm}, {prb}, now() - 5, 4, '10.255.255.53', '{rcode}', 3.0, 1, ['{answer}'], '', now()",
        vantage_testkit::unique("d")
    )
}

#[tokio::test]
async fn builtin_results_become_tags_and_tags_select_probes() {
    let Some(url) = env("CLICKHOUSE_URL") else {
        return;
    };
    let db = vantage_testkit::unique("vantage_tags_");
    let store = Store::new(&url, &db).expect("store");
    store.migrate().await.expect("migrate");
    let mut rows = vec![
        // 7: IPv4 answers (a target and the anchoring mesh), IPv6 does not.
        ping(&db, 1001, 7, 4, 3, "10.0.0.7", 10),
        ping(&db, 100_008, 7, 4, 0, "10.0.0.7", 20),
        ping(&db, 2001, 7, 6, 0, "", 10),
        // 8: IPv4 stopped answering; it answered long ago.
        ping(&db, 1001, 8, 4, 0, "10.0.0.8", 10),
        ping(&db, 1001, 8, 4, 3, "10.0.0.8", 7200),
        // 9: answers only a user measurement: not a built-in.
        ping(&db, 1_000_005, 9, 4, 3, "10.0.0.9", 10),
        // DNS: 7 resolves A correctly; its AAAA check got an A record.
        dns(
            &db,
            DNS_A,
            7,
            "No Error",
            "example.net. 300 IN A 192.0.2.53",
        ),
        dns(
            &db,
            DNS_AAAA,
            7,
            "No Error",
            "example.net. 300 IN A 192.0.2.53",
        ),
        // 8: the expected name, a wrong address.
        dns(
            &db,
            DNS_A,
            8,
            "No Error",
            "example.net. 300 IN A 198.51.100.1",
        ),
    ];
    // 11: answered every hour of the last day.
    rows.extend((0..24).map(|h| ping(&db, 1002, 11, 4, 3, "10.0.0.11", h * 3600 + 60)));
    for sql in &rows {
        store.execute(sql).await.expect("insert");
    }
    let cfg = TagConfig {
        window: Duration::from_secs(600),
        expect_a: vec!["192.0.2.53".parse().expect("ip")],
        ..Default::default()
    };
    let mut summaries = HashMap::new();
    for sql in summary_queries(&db, &cfg) {
        let tsv = store.fetch_formatted(&sql, "TSV").await.expect(&sql);
        parse_summaries(&String::from_utf8_lossy(&tsv), &mut summaries);
    }
    let none = Default::default();
    let tags_of = |p: u32, prev: &[&str]| {
        let prev: Vec<String> = prev.iter().map(|s| s.to_string()).collect();
        derive(&prev, summaries.get(&p).unwrap_or(&none), false, None)
    };
    let t7 = tags_of(7, &[IPV6_WORKS]);
    assert!(t7.contains(&IPV4_WORKS.to_owned()), "{t7:?} {summaries:?}");
    assert!(t7.contains(&RESOLVES_A.to_owned()), "{t7:?}");
    assert!(
        !t7.contains(&IPV6_WORKS.to_owned()),
        "IPv6 pings unanswered: {t7:?}"
    );
    assert!(
        !t7.contains(&RESOLVES_AAAA.to_owned()),
        "an A record is no AAAA: {t7:?}"
    );
    assert_eq!(summaries[&7].v4.results, 2, "target and mesh pings count");
    let t8 = tags_of(8, &[IPV4_WORKS, RESOLVES_A]);
    assert_eq!(t8, vec![IPV4_CAPABLE.to_owned()], "works and resolves lost");
    assert!(
        !summaries.contains_key(&9),
        "user measurements are not read"
    );
    assert_eq!(
        tags_of(9, &[IPV4_WORKS]),
        vec![IPV4_CAPABLE.to_owned(), IPV4_WORKS.to_owned()],
        "no results: kept (and what works is capable)"
    );
    let t11 = tags_of(11, &[]);
    assert!(
        t11.contains(&IPV4_STABLE_1D.to_owned()),
        "{t11:?} {:?}",
        summaries.get(&11)
    );
    assert!(!t7.contains(&IPV4_STABLE_1D.to_owned()));

    // Selection with the default filter of RIPE Atlas clients.
    let probe = |id: u32, system_tags: Vec<String>| {
        let mut spec = ProbeSpec::new(id, "ssh-ed25519 AAAA");
        spec.tags = vec!["home".into()];
        let mut p = Probe::new(&format!("probe-{id}"), spec);
        p.status = Some(ProbeStatus {
            connected: true,
            system_tags,
            ..Default::default()
        });
        Candidate::from_probe(&p, true)
    };
    let candidates = vec![probe(7, t7), probe(8, t8), probe(11, t11)];
    let source = Source {
        kind: SourceKind::Area("WW".into()),
        requested: 10,
        include: vec![IPV4_WORKS.into(), "home".into()],
        exclude: vec![],
    };
    assert_eq!(
        select(&[source], &candidates, &HashMap::new(), &Spread::default()),
        vec![7, 11],
        "system and user tags are both matched"
    );
    store
        .execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .await
        .expect("drop");
}

#[tokio::test]
async fn the_id_counter_never_hands_out_a_reserved_id() {
    use async_nats::jetstream::{self, kv, stream};
    use vantage_operator::measurement::{IdAllocator, KvIds, FIRST_MSM_ID};
    let Some(url) = env("NATS_URL") else { return };
    let js = jetstream::new(async_nats::connect(&url).await.expect("connect"));
    let bucket = vantage_testkit::unique("vantage-test-reserved-");
    let store = js
        .create_key_value(kv::Config {
            bucket: bucket.clone(),
            history: 1,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("bucket");
    // Someone put a low value into the counter.
    store
        .put(vantage_core::nats::MSM_SEQ_KEY, "1001".into())
        .await
        .expect("put");
    let ids = KvIds::new(store);
    let first = ids.next().await.expect("id");
    let second = ids.next().await.expect("id");
    js.delete_key_value(&bucket).await.expect("delete");
    const { assert!(FIRST_MSM_ID > RESERVED_END) };
    assert_eq!((first, second), (FIRST_MSM_ID, FIRST_MSM_ID + 1));
}
