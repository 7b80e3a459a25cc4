//! What the intake's integration tests share: the local stack's addresses, an S3 bucket,
//! submitting a measurement, waiting for fastpath rows.

use std::time::Duration;

use serde_json::{json, Value};
use vantage_platform::store::{FastpathRow, Store};

pub struct Env {
    pub clickhouse: String,
    pub s3: String,
}

/// The local stack's ClickHouse and S3 (with credentials), or `None` when it does not run
/// (`vantage_testkit::stack_var` says so, and fails under CI).
pub fn env(test: &str) -> Option<Env> {
    let clickhouse = vantage_testkit::stack_var("CLICKHOUSE_URL", test)?;
    let s3 = vantage_testkit::stack_var("S3_ENDPOINT", test)?;
    vantage_testkit::stack_var("AWS_ACCESS_KEY_ID", test)?;
    vantage_testkit::stack_var("AWS_SECRET_ACCESS_KEY", test)?;
    Some(Env { clickhouse, s3 })
}

/// moto creates a bucket on an unsigned PUT.
pub async fn create_bucket(endpoint: &str, bucket: &str) {
    let r = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("create bucket");
    assert!(r.status().is_success(), "create bucket: {}", r.status());
}

/// `POST /report/{report}` with `content`; the measurement uid.
pub async fn submit(base: &str, report: &str, content: Value) -> String {
    let r = reqwest::Client::new()
        .post(format!("{base}/report/{report}"))
        .json(&json!({"format": "json", "content": content}))
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    v["measurement_uid"].as_str().expect("uid").to_owned()
}

/// The fastpath rows once there are at least `n` (10 s at most).
pub async fn wait_rows(store: &Store, n: usize) -> Vec<FastpathRow> {
    for _ in 0..100 {
        let rows = store.fastpath_rows().await.expect("fastpath rows");
        if rows.len() >= n {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fastpath did not reach {n} rows");
}
