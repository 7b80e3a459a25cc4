//! The geolocation engines' own tables (`geo_answers`, `geo_crowdsource`) on a replicated,
//! sharded ClickHouse cluster: two shards of two replicas and one ZooKeeper, started by
//! `e2e/stack/clickhouse-cluster.sh up` (its env file gives `CLICKHOUSE_URLS` and
//! `CLICKHOUSE_CLUSTER`). Run through `e2e/cluster/clickhouse-tests.sh`; without the cluster
//! the test prints SKIPPED (under `CI=true` it fails instead; `make test` skips `ch_cluster_`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use vantage_engines::cache::{AnswerStore, ClickHouseAnswers};
use vantage_engines::engine::crowd::{unix_now, ClickHouseCrowdStore, CrowdStore, Report};
use vantage_engines::reducer::Located;
use vantage_engines::{build_engines, ClickHouseConfig, Config};

use vantage_testkit::{ch_cluster, ch_post as post};

fn text(url: &str, sql: &str) -> String {
    post(url, sql)
        .unwrap_or_else(|e| panic!("{url}: {sql}: {e}"))
        .trim()
        .to_owned()
}

fn number(url: &str, sql: &str) -> usize {
    text(url, sql)
        .parse()
        .unwrap_or_else(|e| panic!("{url}: {sql}: not a number: {e}"))
}

/// Poll until `sql` on `url` returns `want` or `timeout` passes; the last value.
fn wait_for(url: &str, sql: &str, want: usize, timeout: Duration) -> usize {
    let start = Instant::now();
    loop {
        let n = post(url, sql)
            .ok()
            .and_then(|b| b.trim().parse().ok())
            .unwrap_or(0);
        if n == want || start.elapsed() > timeout {
            return n;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn config(url: &str, db: &str, cluster: &str) -> Config {
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut config = Config::new(addr, addr);
    config.clickhouse = Some(ClickHouseConfig {
        url: url.to_owned(),
        database: db.to_owned(),
        cluster: Some(cluster.to_owned()),
    });
    config
}

fn located(ip: IpAddr) -> Located {
    Located {
        ip,
        scored: Vec::new(),
        partials: Vec::new(),
        anycast: true,
    }
}

#[tokio::test]
async fn ch_cluster_engines_tables_are_replicated_behind_distributed_and_read_from_another_node() {
    let Some(vantage_testkit::ChCluster { urls, name }) = ch_cluster(
        "ch_cluster_engines_tables_are_replicated_behind_distributed_and_read_from_another_node",
    ) else {
        return;
    };
    let db = format!("vclu_engines_{}_{}", std::process::id(), unix_now());
    let on_every_node = |sql: &str| -> Vec<String> { urls.iter().map(|u| text(u, sql)).collect() };
    let databases = format!("SELECT count() FROM system.databases WHERE name = '{db}'");

    // A cluster the server does not know: refused at start, naming the setting, and nothing
    // is created on any node.
    let Err(bad) = build_engines(&config(&urls[0], &db, "no_such_cluster")).await else {
        panic!("build_engines accepted an unknown cluster");
    };
    let message = bad.to_string();
    assert!(message.contains("CLICKHOUSE_CLUSTER"), "{message}");
    assert!(message.contains("no_such_cluster"), "{message}");
    assert_eq!(on_every_node(&databases), ["0", "0", "0", "0"], "{message}");

    // The engines on node 1 create geo_crowdsource, the API's answer store geo_answers.
    let on_node1 = config(&urls[0], &db, &name);
    let (_world, engines) = build_engines(&on_node1)
        .await
        .expect("engines on the cluster");
    let ch1 = on_node1.clickhouse.clone().expect("clickhouse config");
    let answers1 = ClickHouseAnswers::from_config(&ch1).expect("answer store");
    answers1
        .ensure_table()
        .await
        .expect("geo_answers on the cluster");
    answers1.ensure_table().await.expect("idempotent");

    for (table, local_engine) in [
        ("geo_answers", "ReplicatedReplacingMergeTree"),
        ("geo_crowdsource", "ReplicatedMergeTree"),
    ] {
        let engine_of = |t: &str| {
            format!("SELECT engine FROM system.tables WHERE database = '{db}' AND name = '{t}'")
        };
        assert_eq!(
            on_every_node(&engine_of(table)),
            ["Distributed"; 4],
            "{table} is Distributed on every node"
        );
        assert_eq!(
            on_every_node(&engine_of(&format!("{table}_local"))),
            [local_engine; 4],
            "{table}_local on every node"
        );
    }

    // Writes through node 1: crowdsourced reports (through the engine) and cached answers,
    // for addresses that spread over both shards.
    let now = unix_now();
    let ips: Vec<IpAddr> = (1..=12)
        .map(|i| format!("198.51.100.{i}").parse().expect("ip"))
        .collect();
    let crowd = engines.crowd();
    for ip in &ips {
        for (user, city) in [
            ("ann", (2759794, 52.374, 4.8897)),
            ("ben", (2759794, 52.374, 4.8897)),
        ] {
            crowd
                .report(Report {
                    ip: ip.to_string(),
                    user: user.into(),
                    city_id: city.0,
                    latitude: city.1,
                    longitude: city.2,
                    reported_at: now - 10,
                })
                .await
                .expect("report through node 1");
        }
        answers1
            .put("k", &located(*ip), u64::from(now) * 1000)
            .await
            .expect("answer through node 1");
    }
    let rows = ips.len();

    // Node 4 (the other shard's second replica) reads them back through the Distributed
    // tables, with the engines' own read paths.
    let ch4 = ClickHouseConfig {
        url: urls[3].clone(),
        ..ch1.clone()
    };
    let answers4 = ClickHouseAnswers::from_config(&ch4).expect("answer store on node 4");
    let crowd4 = ClickHouseCrowdStore::from_config(&ch4).expect("crowd store on node 4");
    for ip in &ips {
        let got = answers4
            .get(*ip, "k")
            .await
            .expect("read through node 4")
            .unwrap_or_else(|| panic!("no cached answer for {ip} through node 4"));
        assert_eq!(got.located, located(*ip));
        assert_eq!(got.answered_ms, u64::from(now) * 1000);
        let reports = crowd4
            .reports_for(&ip.to_string())
            .await
            .expect("reports through node 4");
        assert_eq!(reports.len(), 2, "{ip}: {reports:?}");
    }
    // IN (SELECT ... FROM <Distributed>): every address ann reported on, on both shards.
    let near = crowd4
        .reports_near_user("ann")
        .await
        .expect("reports near a user through node 4 (GLOBAL IN)");
    assert_eq!(near.len(), 2 * rows, "{near:?}");

    // The rows are sharded (both shards have some, together all) and replicated (each
    // shard's second replica has its first's).
    for (table, per_ip) in [("geo_answers", 1), ("geo_crowdsource", 2)] {
        let local = format!("SELECT count() FROM {db}.{table}_local");
        let shard1 = number(&urls[0], &local);
        let shard2 = number(&urls[2], &local);
        assert!(
            shard1 > 0 && shard2 > 0,
            "{table}: shard 1 has {shard1} rows, shard 2 {shard2}"
        );
        assert_eq!(
            shard1 + shard2,
            per_ip * rows,
            "{table}: every row on one shard"
        );
        let timeout = Duration::from_secs(30);
        assert_eq!(
            wait_for(&urls[1], &local, shard1, timeout),
            shard1,
            "{table}: replica ch2"
        );
        assert_eq!(
            wait_for(&urls[3], &local, shard2, timeout),
            shard2,
            "{table}: replica ch4"
        );
        assert_eq!(
            number(&urls[1], &format!("SELECT count() FROM {db}.{table}")),
            per_ip * rows,
            "{table} through node 2"
        );
    }

    text(
        &urls[0],
        &format!("DROP DATABASE IF EXISTS {db} ON CLUSTER {name}"),
    );
}
