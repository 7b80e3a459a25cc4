//! Results of every type go through the collector into `results` and their per-type
//! tables, on real servers (a private nats-server and ClickHouse 18.16 from
//! vantage-testkit): real RIPE Atlas results for ping, traceroute, dns, http and
//! sslcert, and vantage's own ntp and mtr.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vantage_collector::{Config, Metrics};
use vantage_core::nats as names;
use vantage_platform::bus::{Bus, Retention};
use vantage_platform::store::Store;
use vantage_testkit::{ClickHouseServer, NatsServer};

const SAMPLES: &str = include_str!("fixtures/ripe-atlas-result-samples.json");

fn results() -> Vec<Value> {
    let all: Value = serde_json::from_str(SAMPLES).expect("samples");
    let mut out = Vec::new();
    for kind in ["ping", "traceroute", "dns", "sslcert"] {
        let mut r = all[kind][0].clone();
        if kind == "sslcert" {
            r = all[kind]
                .as_array()
                .and_then(|a| a.iter().find(|s| s.get("cert").is_some()).cloned())
                .expect("sslcert with a chain");
        }
        out.push(r);
    }
    out.push(json!({"fw": 5020, "msm_id": 1005, "prb_id": 9, "timestamp": 1_795_000_000, "type": "http", "af": 4,
        "dst_addr": "192.0.2.8", "uri": "http://192.0.2.8/", "result": [{"af": 4, "dst_addr": "192.0.2.8",
        "method": "GET", "res": 404, "rt": 3.5, "hsize": 100, "bsize": 20}]}));
    out.push(json!({"fw": 5020, "msm_id": 1006, "prb_id": 9, "timestamp": 1_795_000_000, "type": "ntp", "af": 4,
        "dst_addr": "192.0.2.123", "stratum": 2, "result": [{"offset": 0.25, "rtt": 1.5}, {"x": "*"}]}));
    out.push(json!({"fw": 5020, "msm_id": 1007, "prb_id": 9, "timestamp": 1_795_000_000, "type": "mtr", "af": 4,
        "dst_addr": "192.0.2.9", "result": [{"hop": 1, "from": "10.0.0.1", "stats": {}, "timings": [{"rtt": 1.0}, {"rtt": null}]},
        {"hop": 2, "from": "192.0.2.9", "stats": {}, "timings": [{"rtt": 2.0}, {"rtt": 2.5}]}]}));
    for (i, r) in out.iter_mut().enumerate() {
        r["result_id"] = json!(format!("typed-{i}"));
    }
    out
}

fn rows(ch: &ClickHouseServer, sql: &str) -> Vec<Value> {
    ch.query(&format!("{sql} FORMAT JSONEachRow"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_lands_in_results_and_its_typed_table() {
    let nats = NatsServer::start().expect("nats-server (make setup)");
    let ch = ClickHouseServer::start().expect("clickhouse-server (make setup)");
    let bus = Bus::open(&nats.url(), "typed-test", Retention::default())
        .await
        .expect("bus");
    let store = Store::new(&ch.url(), "typed").expect("store");
    store
        .migrate()
        .await
        .expect("migrations apply on this server");
    let sent = results();
    for r in &sent {
        let subject = names::result_subject(
            r["type"].as_str().expect("type"),
            r["msm_id"].as_u64().unwrap_or(1),
        );
        bus.js
            .publish(subject, r.to_string().into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
    let collector = tokio::spawn(vantage_collector::run(
        bus.js.clone(),
        store,
        Config::default(),
        Metrics::default(),
    ));
    let start = Instant::now();
    let tables = [
        "ping_results",
        "traceroute_hops",
        "dns_results",
        "http_results",
        "sslcert_results",
        "ntp_results",
    ];
    loop {
        let filled = tables
            .iter()
            .filter(|t| !rows(&ch, &format!("SELECT 1 FROM typed.{t} LIMIT 1")).is_empty())
            .count();
        if filled == tables.len() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "only {filled} typed tables filled"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    collector.abort();
    assert_eq!(
        rows(&ch, "SELECT result_id FROM typed.results FINAL").len(),
        sent.len()
    );

    let ping = &rows(&ch, "SELECT sent, rcvd, loss, rtts FROM typed.ping_results")[0];
    assert_eq!(
        (ping["sent"].as_u64(), ping["rcvd"].as_u64()),
        (Some(3), Some(3)),
        "old firmware strings read: {ping}"
    );
    let hops = rows(
        &ch,
        "SELECT kind, hop, responders, timeouts FROM typed.traceroute_hops ORDER BY kind, hop",
    );
    let mtr: Vec<&Value> = hops.iter().filter(|h| h["kind"] == "mtr").collect();
    assert_eq!(mtr.len(), 2);
    assert_eq!(mtr[0]["timeouts"].as_u64(), Some(1));
    assert_eq!(
        hops.iter()
            .find(|h| h["kind"] == "traceroute")
            .map(|h| h["responders"].clone()),
        Some(json!(["192.168.1.1"]))
    );
    let dns = &rows(&ch, "SELECT rcode, ancount, answers FROM typed.dns_results")[0];
    assert_eq!(dns["rcode"], "No Error");
    assert!(
        dns["answers"][0]
            .as_str()
            .is_some_and(|a| a.contains("194.150.168.100")),
        "{dns}"
    );
    let http = &rows(&ch, "SELECT status, bsize FROM typed.http_results")[0];
    assert_eq!(http["status"].as_u64(), Some(404));
    let cert = &rows(&ch, "SELECT toUInt32(not_after) AS na, toUInt32(not_before) AS nb, subject FROM typed.sslcert_results")[0];
    let (na, nb) = (
        cert["na"].as_u64().unwrap_or(0),
        cert["nb"].as_u64().unwrap_or(0),
    );
    assert!(
        na > nb && nb > 1_000_000_000,
        "validity read from the PEM: {cert}"
    );
    let ntp = &rows(
        &ch,
        "SELECT stratum, replies, offset_avg FROM typed.ntp_results",
    )[0];
    assert_eq!(
        (
            ntp["stratum"].as_u64(),
            ntp["replies"].as_u64(),
            ntp["offset_avg"].as_f64()
        ),
        (Some(2), Some(1), Some(0.25))
    );
}
