//! `reprocess` gives the same tables on a ClickHouse cluster as on one node: the intake
//! scores and archives measurements (to moto S3) on a private single-node ClickHouse, then
//! the archive is reprocessed into a fresh database on one node and into a fresh database
//! on the cluster (`CLICKHOUSE_URL` + `CLICKHOUSE_CLUSTER`, from
//! `e2e/stack/clickhouse-cluster.sh`'s env file), and the checksums are compared.
//! Skipped with a notice when the cluster or S3 is not there (a failure under `CI=true`).
//! Run through `e2e/cluster/clickhouse-tests.sh`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use vantage_collector::archive::S3Config;
use vantage_collector::intake::{start_intake, IntakeConfig};
use vantage_collector::reprocess::{fastpath_checksum, jsonl_checksum, reprocess, ReprocessConfig};
use vantage_platform::store::Store;

mod common;
use common::{create_bucket, submit, wait_rows};

fn fingerprints() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fingerprints")
}

async fn open_report(base: &str, cc: &str, asn: u32, test: &str) -> String {
    let r: Value = reqwest::Client::new()
        .post(format!("{base}/report"))
        .json(&json!({"data_format_version": "0.2.0", "format": "json", "probe_asn": format!("AS{asn}"),
                      "probe_cc": cc, "software_name": "vantage-test", "software_version": "0.1",
                      "test_name": test, "test_start_time": "2026-11-21 22:31:00", "test_version": "0.1.0"}))
        .send()
        .await
        .expect("POST /report")
        .json()
        .await
        .expect("json");
    r["report_id"].as_str().expect("report_id").to_owned()
}

fn dns_msm(host: &str, addr: &str, control: Option<&str>, second: u32) -> Value {
    let blocking = match control {
        Some(c) if c != addr => json!("dns"),
        _ => json!(false),
    };
    let mut tk = json!({"failure": null, "blocking": blocking, "queries": [{"hostname": host, "failure": null, "answers": [{"answer_type": "A", "ipv4": addr}]}], "requests": []});
    if let Some(c) = control {
        tk["control"] = json!({"dns": {"addrs": [c]}});
    }
    json!({"input": format!("https://{host}/"),
           "measurement_start_time": format!("2026-11-21 22:31:{second:02}"), "test_keys": tk})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ch_cluster_reprocess_gives_the_single_node_checksums() {
    let test = "ch_cluster_reprocess_gives_the_single_node_checksums";
    let Some(env) = common::env(test) else {
        return;
    };
    let Some(cluster) = std::env::var("CLICKHOUSE_CLUSTER")
        .ok()
        .filter(|c| !c.is_empty())
    else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "{test}: CLICKHOUSE_CLUSTER unset but CI=true: run e2e/cluster/clickhouse-tests.sh"
            );
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: CLICKHOUSE_CLUSTER unset; run e2e/cluster/clickhouse-tests.sh"
        );
        return;
    };
    let single =
        vantage_testkit::ClickHouseServer::start().expect("clickhouse-server (make setup)");
    let db = vantage_testkit::unique("vclu_re_");
    let bucket = vantage_testkit::unique("vclu-archive-").replace('_', "-");
    create_bucket(&env.s3, &bucket).await;
    let s3 = S3Config {
        bucket: bucket.clone(),
        endpoint: Some(env.s3.clone()),
        region: None,
    };

    // The archive: measurements scored and uploaded by the intake on one node.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = IntakeConfig::new(
        dir.path().join("queue"),
        fingerprints(),
        &single.url(),
        &db,
        s3.clone(),
    );
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.fastpath_wait = Duration::from_millis(50);
    cfg.upload_interval = Duration::from_secs(3600);
    let intake = start_intake(cfg).await.expect("intake starts");
    let base = format!("http://{}", intake.addr);
    let mut n = 0;
    for (i, (cc, asn)) in [
        ("IT", 1),
        ("DE", 3),
        ("IR", 4),
        ("NL", 5),
        ("BR", 6),
        ("US", 7),
    ]
    .into_iter()
    .enumerate()
    {
        let report = open_report(&base, cc, asn, "web_connectivity").await;
        for k in 0..4u32 {
            let addr = if (i + k as usize).is_multiple_of(3) {
                "10.10.10.10"
            } else {
                "198.51.100.7"
            };
            let control = k.is_multiple_of(2).then_some("198.51.100.7");
            let host = format!("news{k}.example");
            submit(&base, &report, dns_msm(&host, addr, control, k + i as u32)).await;
            n += 1;
        }
    }
    let live = Store::new(&single.url(), &db).expect("store");
    wait_rows(&live, n).await;
    let up = intake.upload_now().await.expect("upload");
    assert_eq!(up.measurements, n);

    // Rebuilt from S3 alone: on one node, and on the cluster.
    let rebuild = |url: String, db: String, cluster: Option<String>| ReprocessConfig {
        clickhouse_url: url,
        clickhouse_db: db,
        clickhouse_cluster: cluster,
        s3: s3.clone(),
        fingerprints: fingerprints().into(),
        truncate: true,
        batch: 5,
    };
    let one_db = format!("{db}_one");
    let clu_db = format!("{db}_clu");
    let one = reprocess(rebuild(single.url(), one_db.clone(), None))
        .await
        .expect("reprocess on one node");
    let clu = reprocess(rebuild(
        env.clickhouse.clone(),
        clu_db.clone(),
        Some(cluster.clone()),
    ))
    .await
    .expect("reprocess on the cluster");
    assert_eq!((one.measurements, clu.measurements), (n, n));
    // Twice on the cluster (truncate, then rows replaced by key): still the same.
    reprocess(rebuild(
        env.clickhouse.clone(),
        clu_db.clone(),
        Some(cluster.clone()),
    ))
    .await
    .expect("reprocess on the cluster again");

    let one_store = Store::new(&single.url(), &one_db).expect("store");
    let clu_store = Store::new(&env.clickhouse, &clu_db)
        .expect("store")
        .with_cluster(Some(&cluster))
        .expect("cluster");
    let want = fastpath_checksum(&live).await.expect("checksum");
    assert_eq!(fastpath_checksum(&one_store).await.expect("checksum"), want);
    assert_eq!(
        fastpath_checksum(&clu_store).await.expect("checksum"),
        want,
        "fastpath rebuilt on the cluster differs from one node's"
    );
    assert_eq!(
        jsonl_checksum(&clu_store).await.expect("checksum"),
        jsonl_checksum(&one_store).await.expect("checksum"),
        "jsonl index rebuilt on the cluster differs from one node's"
    );
    // The rows really are spread over both shards.
    let per_node = clu_store
        .fetch_formatted(
            &format!("SELECT count() FROM {clu_db}.fastpath_local"),
            "TSV",
        )
        .await
        .expect("local rows");
    let here: usize = String::from_utf8_lossy(&per_node)
        .trim()
        .parse()
        .expect("count");
    assert!(
        here > 0 && here < n,
        "the entry node's shard holds some, not all, of the {n} rows ({here})"
    );
    let _ = clu_store
        .execute(&format!(
            "DROP DATABASE IF EXISTS {clu_db} ON CLUSTER {cluster}"
        ))
        .await;
}
