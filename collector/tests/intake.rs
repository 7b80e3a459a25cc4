//! The intake against the real servers: ClickHouse 18.16 (`CLICKHOUSE_URL`) and moto S3
//! (`S3_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`). Skipped,
//! with a notice, when those are unset. Each test uses its own database and bucket.

use std::path::PathBuf;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;
use serde_json::{json, Value};
use vantage_collector::archive::S3Config;
use vantage_collector::intake::{start_intake, Intake, IntakeConfig, Limits};
use vantage_collector::reprocess::{fastpath_checksum, jsonl_checksum, reprocess, ReprocessConfig};
use vantage_platform::store::Store;

mod common;
use common::{create_bucket, submit, wait_rows, Env};

/// The test fingerprints (they match the blockpage and sinkhole these tests submit).
fn fingerprints() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fingerprints")
}

struct Setup {
    intake: Intake,
    base: String,
    db: String,
    bucket: String,
    store: Store,
    _dir: tempfile::TempDir,
    env: Env,
}

async fn setup(limits: Limits) -> Option<Setup> {
    let env = common::env("intake tests of vantage-collector")?;
    let db = vantage_testkit::unique("vt_intake_");
    let bucket = vantage_testkit::unique("vt-archive-").replace('_', "-");
    create_bucket(&env.s3, &bucket).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = IntakeConfig::new(
        dir.path().join("queue"),
        fingerprints(),
        &env.clickhouse,
        &db,
        S3Config {
            bucket: bucket.clone(),
            endpoint: Some(env.s3.clone()),
            region: None,
        },
    );
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.limits = limits;
    cfg.fastpath_wait = Duration::from_millis(50);
    cfg.upload_interval = Duration::from_secs(3600);
    let intake = start_intake(cfg).await.expect("intake starts");
    let base = format!("http://{}", intake.addr);
    let store = Store::new(&env.clickhouse, &db).expect("store");
    Some(Setup {
        intake,
        base,
        db,
        bucket,
        store,
        _dir: dir,
        env,
    })
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
    assert_eq!(r["supported_formats"], json!(["json"]));
    assert!(r["backend_version"]
        .as_str()
        .is_some_and(|v| v.starts_with("vantage-")));
    r["report_id"].as_str().expect("report_id").to_owned()
}

/// A web_connectivity measurement with one DNS answer and the probe's `blocking` verdict
/// (`"dns"` when the control disagrees, else false).
fn dns_msm(host: &str, addr: &str, control: Option<&str>) -> Value {
    let blocking = match control {
        Some(c) if c != addr => json!("dns"),
        _ => json!(false),
    };
    let mut tk = json!({"failure": null, "blocking": blocking, "queries": [{"hostname": host, "failure": null, "answers": [{"answer_type": "A", "ipv4": addr}]}], "requests": []});
    if let Some(c) = control {
        tk["control"] = json!({"dns": {"addrs": [c]}});
    }
    json!({"input": format!("https://{host}/"), "measurement_start_time": "2026-11-21 22:31:05", "test_keys": tk})
}

#[tokio::test]
async fn submit_queue_fastpath_and_bad_input() {
    let Some(s) = setup(Limits {
        max_body: 64 * 1024,
        max_decoded: 256 * 1024,
    })
    .await
    else {
        return;
    };
    let http = reqwest::Client::new();
    let report = open_report(&s.base, "tr", 64501, "web_connectivity").await;

    // A blockpage measurement: queued as a file, scored as confirmed.
    let body = json!({"input": "http://blocked.example/", "measurement_start_time": "2026-11-21 22:31:06",
        "test_keys": {"failure": null, "requests": [{"response": {"code": 200,
            "body": "<h1>This site has been blocked by vantage-test</h1>"}}]}});
    let uid = submit(&s.base, &report, body).await;
    assert!(uid.contains("_TR_web_connectivity_"), "{uid}");
    let queued = s
        .intake
        .queue
        .get(&uid)
        .await
        .expect("read")
        .expect("queued file");
    let line: Value = serde_json::from_slice(&queued).expect("json line");
    assert_eq!(line["measurement_uid"], uid.as_str());
    assert_eq!(line["report_id"], report.as_str());
    assert_eq!(
        line["probe_cc"], "tr",
        "the report fills in what the measurement lacks"
    );

    // The same through zstd.
    let plain = serde_json::to_vec(
        &json!({"format": "json", "content": {"input": "https://ok.example/",
        "test_keys": {"failure": "connection_refused"}}}),
    )
    .expect("ser");
    let r = http
        .post(format!("{}/report/{report}", s.base))
        .header("content-encoding", "zstd")
        .body(zstd::encode_all(&plain[..], 3).expect("zstd"))
        .send()
        .await
        .expect("zstd submit");
    assert_eq!(r.status(), 200);
    let zuid = r.json::<Value>().await.expect("json")["measurement_uid"]
        .as_str()
        .expect("uid")
        .to_owned();

    let rows = wait_rows(&s.store, 2).await;
    let blocked = rows.iter().find(|r| r.measurement_uid == uid).expect("row");
    assert_eq!(
        (blocked.anomaly, blocked.confirmed, blocked.msm_failure),
        (1, 1, 0)
    );
    assert_eq!(blocked.reason, "blockpage:vantage_test_blockpage");
    assert_eq!(
        (blocked.probe_asn, blocked.domain.as_str()),
        (64501, "blocked.example")
    );
    let failed = rows
        .iter()
        .find(|r| r.measurement_uid == zuid)
        .expect("zstd row");
    // No `blocking` verdict from the probe: a failed measurement (OONI's rule).
    assert_eq!(
        (failed.msm_failure, failed.reason.as_str()),
        (1, "failure:blocking_null")
    );

    // The API serves queued measurements.
    let got: Value = http
        .get(format!("{}/api/v1/measurement/{uid}", s.base))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["measurement_uid"], uid.as_str());

    // Bad input: each with its status and reason.
    let bomb = zstd::encode_all(&vec![b' '; 50 << 20][..], 19).expect("bomb");
    assert!(bomb.len() < 64 * 1024, "bomb is {} bytes", bomb.len());
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "malformed json",
            http.post(format!("{}/report/{report}", s.base))
                .body("{\"format\": \"json\", \"content\": {"),
            400,
            "body is not JSON",
        ),
        (
            "no content",
            http.post(format!("{}/report/{report}", s.base))
                .body("{\"format\": \"json\"}"),
            400,
            "body must be",
        ),
        (
            "unknown report",
            http.post(format!(
                "{}/report/20260101T000000Z_dns_IT_1_n1_nope",
                s.base
            ))
            .body("{}"),
            404,
            "unknown report id",
        ),
        (
            "bad report id",
            http.post(format!("{}/report/..%2F..%2Fetc", s.base))
                .body("{}"),
            404,
            "unknown report id",
        ),
        (
            "gzip",
            http.post(format!("{}/report/{report}", s.base))
                .header("content-encoding", "gzip")
                .body("x"),
            415,
            "unsupported content encoding",
        ),
        (
            "not zstd",
            http.post(format!("{}/report/{report}", s.base))
                .header("content-encoding", "zstd")
                .body("plainly not zstd"),
            400,
            "not valid zstd",
        ),
        (
            "oversized",
            http.post(format!("{}/report/{report}", s.base))
                .body(vec![b' '; 65 * 1024]),
            413,
            "body exceeds",
        ),
        (
            "zstd bomb",
            http.post(format!("{}/report/{report}", s.base))
                .header("content-encoding", "zstd")
                .body(bomb),
            413,
            "decompressed body exceeds",
        ),
        (
            "wrong format",
            http.post(format!("{}/report/{report}", s.base))
                .body("{\"format\": \"yaml\", \"content\": {}}"),
            400,
            "unsupported format",
        ),
        (
            "malformed open",
            http.post(format!("{}/report", s.base)).body("not json"),
            400,
            "body is not JSON",
        ),
        (
            "unknown close",
            http.post(format!("{}/report/nope/close", s.base)),
            404,
            "unknown report id",
        ),
    ];
    for (name, req, status, reason) in cases {
        let r = req.send().await.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(r.status().as_u16(), status, "{name}");
        let v: Value = r
            .json()
            .await
            .unwrap_or_else(|e| panic!("{name}: body is not JSON: {e}"));
        let error = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no error field: {v}"));
        assert!(error.contains(reason), "{name}: {error:?} lacks {reason:?}");
    }

    // Nothing queued was lost, and the report still works.
    let queued = s.intake.queue.list().await.expect("list");
    assert_eq!(queued, {
        let mut v = vec![uid.clone(), zuid.clone()];
        v.sort();
        v
    });
    let r = http
        .post(format!("{}/report/{report}/close", s.base))
        .send()
        .await
        .expect("close");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json"), json!({}));
    let _ = s
        .store
        .execute(&format!("DROP DATABASE IF EXISTS {}", s.db))
        .await;
}

#[tokio::test]
async fn upload_archive_index_and_reprocess_checksum() {
    let Some(s) = setup(Limits::default()).await else {
        return;
    };
    // Two countries, DNS measurements with and without the probe's verdict, a sinkhole.
    let mut uids = Vec::new();
    let it1 = open_report(&s.base, "IT", 1, "web_connectivity").await;
    let it2 = open_report(&s.base, "IT", 2, "web_connectivity").await;
    let de3 = open_report(&s.base, "DE", 3, "web_connectivity").await;
    let ir4 = open_report(&s.base, "IR", 4, "web_connectivity").await;
    let de5 = open_report(&s.base, "DE", 5, "dnscheck").await;
    uids.push(submit(&s.base, &it1, dns_msm("news.example", "198.51.100.7", None)).await);
    uids.push(submit(&s.base, &it2, dns_msm("news.example", "198.51.100.7", None)).await);
    uids.push(
        submit(
            &s.base,
            &de3,
            dns_msm("news.example", "198.51.100.7", Some("198.51.100.7")),
        )
        .await,
    );
    uids.push(submit(&s.base, &ir4, dns_msm("news.example", "10.10.10.10", None)).await);
    uids.push(
        submit(
            &s.base,
            &ir4,
            dns_msm("news.example", "192.0.2.66", Some("198.51.100.7")),
        )
        .await,
    );
    uids.push(submit(&s.base, &de5, json!({"input": "dot://dns.example", "test_keys": {"failure": "generic_timeout_error"}})).await);
    // A concurrent burst across five networks: scored the same whatever the order.
    let mut reports = Vec::new();
    for asn in 10..15 {
        reports.push(open_report(&s.base, "NL", asn, "dnscheck").await);
    }
    let burst: Vec<_> = (0..40)
        .map(|i| {
            let (base, report) = (s.base.clone(), reports[i % 5].clone());
            let addr = if i % 7 == 3 { "10.0.0.7" } else { "192.0.2.80" };
            tokio::spawn(
                async move { submit(&base, &report, dns_msm("cdn.example", addr, None)).await },
            )
        })
        .collect();
    for t in burst {
        uids.push(t.await.expect("burst task"));
    }
    let rows = wait_rows(&s.store, uids.len()).await;
    // OONI's fastpath does not score dnscheck: stored as a failure, never an anomaly
    // (and there is no cross-measurement DNS consensus: scoring is per measurement).
    let burst: Vec<_> = rows.iter().filter(|r| r.domain == "cdn.example").collect();
    assert_eq!(burst.len(), 40);
    assert!(burst
        .iter()
        .all(|r| (r.anomaly, r.msm_failure, r.reason.as_str()) == (0, 1, "unscored_test")));
    let by_uid = |u: &str| {
        rows.iter()
            .find(|r| r.measurement_uid == u)
            .expect("row")
            .clone()
    };
    assert_eq!(by_uid(&uids[2]).anomaly, 0);
    assert_eq!(
        (by_uid(&uids[3]).anomaly, by_uid(&uids[3]).reason.as_str()),
        (0, "")
    );
    assert_eq!(
        (
            by_uid(&uids[4]).confirmed,
            by_uid(&uids[4]).blocking_type.as_str()
        ),
        (1, "dns")
    );
    assert_eq!(by_uid(&uids[5]).msm_failure, 1);

    // Upload: objects under raw/YYYYMMDD/HH/CC/testname/, index rows, files gone.
    let summary = s.intake.upload_now().await.expect("upload");
    assert_eq!(summary.measurements, uids.len());
    // IT, DE and IR web_connectivity, DE and NL dnscheck (more if the test straddles an hour)
    assert!(summary.objects >= 5, "{:?}", summary.keys);
    for key in &summary.keys {
        assert!(
            key.starts_with("raw/") && key.ends_with(".jsonl.zst"),
            "{key}"
        );
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 6, "{key}");
        assert_eq!(
            (parts[1].len(), parts[2].len(), parts[3].len()),
            (8, 2, 2),
            "{key}"
        );
        s.intake
            .archive
            .s3
            .head(&ObjectPath::from(key.as_str()))
            .await
            .expect("object exists");
    }
    assert!(
        s.intake.queue.list().await.expect("list").is_empty(),
        "local files deleted"
    );
    for uid in &uids {
        let row = s
            .store
            .jsonl_lookup(uid)
            .await
            .expect("lookup")
            .expect("index row");
        assert!(row.s3path.starts_with(&format!("s3://{}/raw/", s.bucket)));
    }
    // Archived measurements are still served, now from S3.
    let got: Value = reqwest::get(format!("{}/api/v1/measurement/{}", s.base, uids[3]))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["measurement_uid"], uids[3].as_str());
    let missing = reqwest::get(format!(
        "{}/api/v1/measurement/20260101000000.000000_IT_x_0000000000000000",
        s.base
    ))
    .await
    .expect("get");
    assert_eq!(missing.status(), 404);

    // Reprocess into a fresh database from S3 alone; the tables are equal.
    let db2 = format!("{}_re", s.db);
    let summary = reprocess(ReprocessConfig {
        clickhouse_url: s.env.clickhouse.clone(),
        clickhouse_db: db2.clone(),
        clickhouse_cluster: None,
        s3: S3Config {
            bucket: s.bucket.clone(),
            endpoint: Some(s.env.s3.clone()),
            region: None,
        },
        fingerprints: fingerprints().into(),
        truncate: true,
        batch: 2,
    })
    .await
    .expect("reprocess");
    assert_eq!((summary.measurements, summary.skipped), (uids.len(), 0));
    let store2 = Store::new(&s.env.clickhouse, &db2).expect("store");
    let live = fastpath_checksum(&s.store).await.expect("checksum");
    let rebuilt = fastpath_checksum(&store2).await.expect("checksum");
    assert_eq!(live, rebuilt, "fastpath rebuilt from the archive differs");
    assert_eq!(
        jsonl_checksum(&s.store).await.expect("checksum"),
        jsonl_checksum(&store2).await.expect("checksum"),
        "jsonl index rebuilt from the archive differs"
    );
    assert_eq!(
        s.store.fastpath_rows().await.expect("rows"),
        store2.fastpath_rows().await.expect("rows")
    );
    // The same check the ClickHouse way (works on 18.16).
    let xor = |db: &str| format!("SELECT groupBitXor(cityHash64(*)) FROM {db}.fastpath FINAL");
    let a = s
        .store
        .fetch_formatted(&xor(&s.db), "TSV")
        .await
        .expect("xor");
    let b = store2
        .fetch_formatted(&xor(&db2), "TSV")
        .await
        .expect("xor");
    assert_eq!(a, b);
    // Reprocessing again (no truncate) is idempotent.
    let _ = s
        .store
        .execute(&format!("DROP DATABASE IF EXISTS {}", s.db))
        .await;
    let _ = store2
        .execute(&format!("DROP DATABASE IF EXISTS {db2}"))
        .await;
}

#[tokio::test]
async fn periodic_uploader_runs_on_its_own() {
    let Some(env) = common::env("intake tests of vantage-collector") else {
        return;
    };
    let db = vantage_testkit::unique("vt_upl_");
    let bucket = vantage_testkit::unique("vt-upl-").replace('_', "-");
    create_bucket(&env.s3, &bucket).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = IntakeConfig::new(
        dir.path().join("queue"),
        fingerprints(),
        &env.clickhouse,
        &db,
        S3Config {
            bucket: bucket.clone(),
            endpoint: Some(env.s3.clone()),
            region: None,
        },
    );
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.upload_interval = Duration::from_secs(1);
    let intake = start_intake(cfg).await.expect("start");
    let base = format!("http://{}", intake.addr);
    let report = open_report(&base, "NL", 64500, "dnscheck").await;
    let uid = submit(&base, &report, json!({"test_keys": {"failure": null}})).await;
    let store = Store::new(&env.clickhouse, &db).expect("store");
    let mut archived = false;
    for _ in 0..50 {
        if intake.queue.list().await.expect("list").is_empty()
            && store.jsonl_lookup(&uid).await.expect("lookup").is_some()
        {
            archived = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(archived, "the uploader did not archive {uid} within 10 s");
    let _ = store
        .execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .await;
}

/// A declared body over `max_body` is answered 413, OONI-style, before a byte of it is
/// sent; the connection limits of `vantage_platform::http` hold on the intake.
#[tokio::test]
async fn an_oversized_declared_body_gets_413_before_it_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(s) = setup(Limits::default()).await else {
        return;
    };
    let mut tcp = tokio::net::TcpStream::connect(s.intake.addr)
        .await
        .expect("connect");
    tcp.write_all(b"POST /report HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\n")
        .await
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"}") {
            let n = tcp.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(answer.is_ok(), "no answer within 5 s without the body");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).expect("body");
    let v: Value = serde_json::from_str(body).expect("json");
    assert_eq!(
        v,
        json!({"error": "body exceeds 4194304 bytes (1000000000 declared)"})
    );
    s.intake.stop();
}
