//! The check-in and test-list APIs of an in-process intake against the real servers:
//! ClickHouse 18.16 (`CLICKHOUSE_URL`) and moto S3 (`S3_ENDPOINT`, …). Skipped, with a
//! notice, when those are unset (a failure under CI=true). Each test uses its own
//! database, bucket and copy of the test lists in collector/tests/fixtures/test-lists.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use vantage_collector::archive::S3Config;
use vantage_collector::intake::{start_intake, Intake, IntakeConfig, ReasonLabel};
use vantage_collector::source::SourceSpec;
use vantage_platform::store::Store;

mod common;
use common::{create_bucket, wait_rows, Env};

const TEST: &str = "check-in tests of vantage-collector";

const IT_NEWS: &str = "http://127.0.0.1/it/news";
const IT_POLR: &str = "http://127.0.0.1/it/polr";
const SHARED: &str = "http://127.0.0.1/global/shared";
const G_NEWS: &str = "http://127.0.0.1/global/news";
const G_HUMR: &str = "http://127.0.0.1/global/humr";
const G_COMT: &str = "http://127.0.0.1/global/comt";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A copy of the fixture lists, to rewrite.
fn copy_lists(to: &Path) {
    let from = fixtures().join("test-lists/lists");
    let dest = to.join("lists");
    std::fs::create_dir_all(&dest).expect("mkdir");
    for entry in std::fs::read_dir(&from).expect("fixtures") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dest.join(entry.file_name())).expect("copy");
    }
}

async fn start(env: &Env, db: &str, bucket: &str, queue: &Path, lists: &Path) -> (Intake, String) {
    let mut cfg = IntakeConfig::new(
        queue.to_owned(),
        fixtures().join("fingerprints"),
        &env.clickhouse,
        db,
        S3Config {
            bucket: bucket.to_owned(),
            endpoint: Some(env.s3.clone()),
            region: None,
        },
    );
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.fastpath_wait = Duration::from_millis(50);
    cfg.test_lists = Some(SourceSpec::Path(lists.to_owned()));
    cfg.test_lists_reload = Duration::from_millis(200);
    cfg.test_helpers = vec!["https://th.example.org".into()];
    let intake = start_intake(cfg).await.expect("intake starts");
    let base = format!("http://{}", intake.addr);
    (intake, base)
}

/// What OONI Probe sends (probe-cli's OOAPICheckInConfig).
fn check_in_body(cc: &str, categories: Value) -> Value {
    json!({"charging": false, "on_wifi": true, "platform": "linux", "probe_asn": "AS64500",
           "probe_cc": cc, "run_type": "timed", "software_name": "ooniprobe-cli",
           "software_version": "3.22.0", "web_connectivity": {"category_codes": categories}})
}

async fn check_in(base: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/check-in"))
        .json(&body)
        .send()
        .await
        .expect("check-in");
    assert_eq!(r.status(), 200);
    r.json().await.expect("json")
}

fn urls(answer: &Value) -> Vec<(String, String)> {
    answer["tests"]["web_connectivity"]["urls"]
        .as_array()
        .expect("urls")
        .iter()
        .map(|u| {
            (
                u["url"].as_str().expect("url").to_owned(),
                u["country_code"].as_str().expect("cc").to_owned(),
            )
        })
        .collect()
}

fn url_list(answer: &Value) -> Vec<String> {
    urls(answer).into_iter().map(|(u, _)| u).collect()
}

async fn test_list(base: &str, query: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{base}/api/v1/test-list/urls?{query}"))
        .send()
        .await
        .expect("test-list");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

async fn submit(base: &str, report: &str, url: &str, at: &str) -> String {
    let content = json!({"input": url, "measurement_start_time": at, "test_start_time": at,
        "test_version": "0.4.3", "test_keys": {"accessible": true, "blocking": false, "failure": null,
        "queries": [], "tcp_connect": [], "requests": []}});
    common::submit(base, report, content).await
}

#[tokio::test]
async fn check_in_offers_lists_by_recency_and_measurements_feed_back() {
    let Some(env) = common::env(TEST) else { return };
    let db = vantage_testkit::unique("vt_checkin_");
    let bucket = vantage_testkit::unique("vt-checkin-").replace('_', "-");
    create_bucket(&env.s3, &bucket).await;
    let dir = tempfile::tempdir().expect("tempdir");
    copy_lists(dir.path());
    let (intake, base) = start(&env, &db, &bucket, &dir.path().join("q1"), dir.path()).await;
    let store = Store::new(&env.clickhouse, &db).expect("store");

    // Nothing measured yet: the country's list, then the global one, in list order,
    // deduplicated (the shared URL is Italy's POLR), the bad line left out.
    let first = check_in(&base, check_in_body("IT", Value::Null)).await;
    assert_eq!(first["v"], 1);
    assert_eq!(
        (first["probe_cc"].as_str(), first["probe_asn"].as_str()),
        (Some("IT"), Some("AS64500"))
    );
    assert_eq!(
        first["conf"]["test_helpers"],
        json!({"web-connectivity": [{"address": "https://th.example.org", "type": "https"}]})
    );
    assert!(first["utc_time"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z') && t.len() == 20));
    assert_eq!(
        urls(&first),
        vec![
            (IT_NEWS.into(), "IT".into()),
            (IT_POLR.into(), "IT".into()),
            (SHARED.into(), "IT".into()),
            (G_NEWS.into(), "XX".into()),
            (G_HUMR.into(), "XX".into()),
            (G_COMT.into(), "XX".into()),
        ]
    );
    let shared = &first["tests"]["web_connectivity"]["urls"][2];
    assert_eq!(shared["category_code"], "POLR");

    // Categories filter; ZZ and a country without a list get the global list only.
    let news = check_in(&base, check_in_body("IT", json!(["NEWS"]))).await;
    // The shared URL is POLR in Italy's list but NEWS in the global one.
    assert_eq!(url_list(&news), vec![IT_NEWS, G_NEWS, SHARED]);
    let zz = check_in(&base, check_in_body("ZZ", Value::Null)).await;
    assert_eq!(url_list(&zz), vec![G_NEWS, G_HUMR, SHARED, G_COMT]);
    assert!(urls(&zz).iter().all(|(_, cc)| cc == "XX"));
    let fr = check_in(&base, check_in_body("FR", Value::Null)).await;
    assert_eq!(url_list(&fr), url_list(&zz));

    // The report id is a real open report: a measurement of the first URL with it...
    let report = first["tests"]["web_connectivity"]["report_id"]
        .as_str()
        .expect("report id")
        .to_owned();
    assert!(report.contains("_web_connectivity_IT_64500_"), "{report}");
    let uid = submit(&base, &report, IT_NEWS, "2026-11-21 10:00:00").await;
    let r = reqwest::Client::new()
        .post(format!("{base}/report/{report}/close"))
        .send()
        .await
        .expect("close");
    assert_eq!(r.status(), 200);
    // ...carries the check-in's report into its fastpath row, with the report's fields.
    let rows = wait_rows(&store, 1).await;
    let row = rows.iter().find(|r| r.measurement_uid == uid).expect("row");
    assert_eq!(row.report_id, report);
    assert_eq!(
        (row.input.as_str(), row.probe_cc.as_str(), row.probe_asn),
        (IT_NEWS, "IT", 64500)
    );
    assert_eq!(
        (row.test_name.as_str(), row.software_name.as_str()),
        ("web_connectivity", "ooniprobe-cli")
    );

    // Measured: last in Italy now, not elsewhere (the worker records right after its
    // INSERT, so allow it a moment).
    let mut again = Value::Null;
    for _ in 0..50 {
        again = check_in(&base, check_in_body("IT", Value::Null)).await;
        if url_list(&again).last().map(String::as_str) == Some(IT_NEWS) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        url_list(&again),
        vec![IT_POLR, SHARED, G_NEWS, G_HUMR, G_COMT, IT_NEWS]
    );
    assert_ne!(
        again["tests"]["web_connectivity"]["report_id"],
        first["tests"]["web_connectivity"]["report_id"]
    );
    let fr = check_in(&base, check_in_body("FR", Value::Null)).await;
    assert_eq!(url_list(&fr), url_list(&zz));
    // A later measurement of the global news page goes after the earlier one.
    let second = again["tests"]["web_connectivity"]["report_id"]
        .as_str()
        .expect("id")
        .to_owned();
    submit(&base, &second, G_NEWS, "2026-11-21 11:00:00").await;
    wait_rows(&store, 2).await;
    let mut order = Vec::new();
    for _ in 0..50 {
        order = url_list(&check_in(&base, check_in_body("IT", Value::Null)).await);
        if order.last().map(String::as_str) == Some(G_NEWS) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        order,
        vec![IT_POLR, SHARED, G_HUMR, G_COMT, IT_NEWS, G_NEWS]
    );

    // The test-list API: same order, filters, limit, OONI's shape.
    let (status, v) = test_list(&base, "country_code=IT&category_codes=NEWS,POLR&limit=3").await;
    assert_eq!(status, 200);
    assert_eq!(
        v["metadata"],
        json!({"count": 3, "current_page": 1, "limit": 3, "next_url": "", "pages": 1})
    );
    assert_eq!(
        v["results"],
        json!([
            {"category_code": "POLR", "country_code": "IT", "url": IT_POLR},
            {"category_code": "POLR", "country_code": "IT", "url": SHARED},
            {"category_code": "NEWS", "country_code": "IT", "url": IT_NEWS},
        ])
    );
    let (_, v) = test_list(&base, "category_codes=HUMR").await;
    assert_eq!(
        v["results"],
        json!([{"category_code": "HUMR", "country_code": "XX", "url": G_HUMR}])
    );

    // Bad input: OONI's error shape, counted by reason.
    let refused = |reason: &str| {
        intake
            .metrics
            .rejected
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .get()
    };
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/check-in"))
        .json(&check_in_body("QQ", Value::Null))
        .send()
        .await
        .expect("check-in");
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.expect("json");
    assert!(
        e["error"]
            .as_str()
            .is_some_and(|m| m.contains("\"QQ\"") && m.contains("ZZ")),
        "{e}"
    );
    assert_eq!(refused("bad_country"), 1);
    let (status, e) = test_list(&base, "limit=0").await;
    assert_eq!(status, 400);
    assert!(
        e["error"]
            .as_str()
            .is_some_and(|m| m.contains("from 1 to 9999")),
        "{e}"
    );
    assert_eq!(refused("bad_limit"), 1);

    // Another intake on the same database seeds its recency from fastpath.
    intake.stop();
    drop(intake);
    let (intake2, base2) = start(&env, &db, &bucket, &dir.path().join("q2"), dir.path()).await;
    let seeded = url_list(&check_in(&base2, check_in_body("IT", Value::Null)).await);
    assert_eq!(
        seeded,
        vec![IT_POLR, SHARED, G_HUMR, G_COMT, IT_NEWS, G_NEWS]
    );
    intake2.stop();
    let _ = store
        .execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .await;
}

#[tokio::test]
async fn rewritten_lists_take_effect_without_restart() {
    let Some(env) = common::env(TEST) else { return };
    let db = vantage_testkit::unique("vt_checkin_reload_");
    let bucket = vantage_testkit::unique("vt-checkin-reload-").replace('_', "-");
    create_bucket(&env.s3, &bucket).await;
    let dir = tempfile::tempdir().expect("tempdir");
    copy_lists(dir.path());
    let (intake, base) = start(&env, &db, &bucket, &dir.path().join("q"), dir.path()).await;
    let (_, v) = test_list(&base, "country_code=DE").await;
    assert_eq!(v["metadata"]["count"], 4, "{v}");

    // A German list appears; a broken Italian list is refused whole, the last good set stays.
    std::fs::write(
        dir.path().join("lists/de.csv"),
        "url,category_code,category_description,date_added,source,notes\nhttp://127.0.0.1/de/news,NEWS,News Media,2026-02-01,vantage-tests,\n",
    )
    .expect("write de.csv");
    let mut found = Value::Null;
    for _ in 0..100 {
        let (_, v) = test_list(&base, "country_code=DE&limit=1").await;
        if v["results"][0]["url"] == "http://127.0.0.1/de/news" {
            found = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        found["results"][0]["country_code"], "DE",
        "the new list was not seen: {found}"
    );

    std::fs::write(dir.path().join("lists/it.csv"), "no header here\n").expect("break it.csv");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let (_, v) = test_list(&base, "country_code=IT&limit=1").await;
    assert_eq!(
        v["results"][0]["url"], IT_NEWS,
        "the last good set stays: {v}"
    );
    let (_, v) = test_list(&base, "country_code=DE&limit=1").await;
    assert_eq!(v["results"][0]["url"], "http://127.0.0.1/de/news");
    intake.stop();
    let store = Store::new(&env.clickhouse, &db).expect("store");
    let _ = store
        .execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .await;
}
