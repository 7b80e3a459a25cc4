//! Intake benchmark on the local stack, on real OONI web_connectivity measurements
//! (collector/tests/data/ooni/measurements, cycled): first the fastpath's scoring alone on
//! one thread, then submissions/s through the API (disk queue with fsync, fastpath,
//! ClickHouse) with the same lines, the upload of the whole queue to S3, and reprocess;
//! it prints the ratio of scoring to acceptance.
//!
//! ```sh
//! source $VANTAGE_STACK_DIR/env
//! cargo run --release -p vantage-collector --example intake_bench -- [measurements] [clients]
//! ```

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vantage_collector::archive::S3Config;
use vantage_collector::fastpath::Scorer;
use vantage_collector::fingerprints::Fingerprints;
use vantage_collector::intake::{start_intake, IntakeConfig};
use vantage_collector::reprocess::{fastpath_checksum, reprocess, ReprocessConfig};
use vantage_platform::store::Store;

/// The real web_connectivity measurements of the test data, as probes submit them (the
/// fields the intake sets itself removed).
fn real_measurements() -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ooni/measurements");
    let mut paths: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
    paths.sort_by_key(|e| e.path());
    let mut out = Vec::new();
    for e in paths {
        let mut msm: Value = serde_json::from_slice(&std::fs::read(e.path())?)?;
        if msm["test_name"] != "web_connectivity" || !msm["test_keys"].is_object() {
            continue;
        }
        if let Some(m) = msm.as_object_mut() {
            m.remove("measurement_uid");
            m.remove("report_id");
        }
        out.push(msm);
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let ch = std::env::var("CLICKHOUSE_URL")?;
    let s3 = std::env::var("S3_ENDPOINT")?;
    let tag = std::process::id();
    let (db, bucket) = (format!("vt_bench_{tag}"), format!("vt-bench-{tag}"));
    reqwest::Client::new()
        .put(format!("{s3}/{bucket}"))
        .send()
        .await?;
    let dir = tempfile::tempdir()?;
    let fp = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/fingerprints");
    let s3cfg = S3Config {
        bucket: bucket.clone(),
        endpoint: Some(s3.clone()),
        region: None,
    };
    let mut cfg = IntakeConfig::new(dir.path().join("q"), fp.clone(), &ch, &db, s3cfg.clone());
    cfg.listen = "127.0.0.1:0".parse()?;
    let intake = start_intake(cfg).await?;
    let base = format!("http://{}", intake.addr);
    let http = reqwest::Client::new();
    let report: Value = http
        .post(format!("{base}/report"))
        .json(&json!({"format": "json", "probe_cc": "IT", "probe_asn": "AS3269", "test_name": "web_connectivity"}))
        .send()
        .await?
        .json()
        .await?;
    let report = report["report_id"].as_str().unwrap_or_default().to_owned();
    let real = real_measurements()?;
    let bodies: Vec<Vec<u8>> = (0..total)
        .map(|i| serde_json::to_vec(&json!({"format": "json", "content": real[i % real.len()]})))
        .collect::<Result<_, _>>()?;
    let body_bytes: usize = bodies.iter().map(Vec::len).sum();

    // The fastpath's scoring alone, one thread, on the same measurements as stored
    // lines, with OONI's own test fingerprint set (1,849 records; the intake scores with
    // the shipped set, which is smaller).
    let data = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ooni");
    let (ooni_fp, _) = Fingerprints::parse_json(
        &std::fs::read(data.join("fingerprints_dns.json"))?,
        &std::fs::read(data.join("fingerprints_http.json"))?,
        "ooni-backend-32d8349d",
    )?;
    let lines: Vec<Vec<u8>> = (0..total)
        .map(|i| serde_json::to_vec(&real[i % real.len()]))
        .collect::<Result<_, _>>()?;
    let mut scorer = Scorer::default();
    let t = Instant::now();
    for line in &lines {
        let msm: Value = serde_json::from_slice(line)?;
        std::hint::black_box(scorer.next(&msm, &ooni_fp));
    }
    let scoring = total as f64 / t.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut tasks = Vec::new();
    let bodies = std::sync::Arc::new(bodies);
    for c in 0..clients {
        let (http, url, bodies) = (
            http.clone(),
            format!("{base}/report/{report}"),
            bodies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for body in bodies.iter().skip(c).step_by(clients) {
                let t = Instant::now();
                let r = http.post(&url).body(body.clone()).send().await;
                if !r.is_ok_and(|r| r.status().is_success()) {
                    return Err("submission failed");
                }
                lat.push(t.elapsed());
            }
            Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?.map_err(|e| e.to_owned())?);
    }
    let submit = started.elapsed();
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    let store = Store::new(&ch, &db)?;
    loop {
        let n = store
            .fetch_formatted(&format!("SELECT count() FROM {db}.fastpath"), "TSV")
            .await?;
        if String::from_utf8_lossy(&n)
            .trim()
            .parse::<usize>()
            .unwrap_or(0)
            >= total
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let scored = started.elapsed();
    let t = Instant::now();
    let up = intake.upload_now().await?;
    let upload = t.elapsed();
    let t = Instant::now();
    let re = reprocess(ReprocessConfig {
        clickhouse_url: ch.clone(),
        clickhouse_db: format!("{db}_re"),
        clickhouse_cluster: None,
        s3: s3cfg,
        fingerprints: fp.into(),
        truncate: true,
        batch: 10_000,
    })
    .await?;
    let reproc = t.elapsed();
    let same = fastpath_checksum(&store).await?
        == fastpath_checksum(&Store::new(&ch, &format!("{db}_re"))?).await?;
    println!(
        "measurements        {total} real web_connectivity ({} distinct, {} KiB of JSON), {clients} clients",
        real.len(),
        body_bytes / 1024
    );
    let accepted = total as f64 / submit.as_secs_f64();
    println!("fastpath scoring    {scoring:.0}/s on one thread (parse + score, OONI's test fingerprints)");
    println!(
        "submit              {accepted:.0}/s  (p50 {:?}, p99 {:?})",
        p(0.5),
        p(0.99)
    );
    println!(
        "scoring / acceptance {:.1}x: one core of fastpath keeps up with the intake",
        scoring / accepted
    );
    println!(
        "all scored in CH    {:.2} s after the first submission",
        scored.as_secs_f64()
    );
    println!(
        "upload              {} objects, {} KiB zstd, {:.2} s ({:.0}/s)",
        up.objects,
        up.bytes / 1024,
        upload.as_secs_f64(),
        total as f64 / upload.as_secs_f64()
    );
    println!(
        "reprocess           {} measurements in {:.2} s ({:.0}/s), checksum equal: {same}",
        re.measurements,
        reproc.as_secs_f64(),
        re.measurements as f64 / reproc.as_secs_f64()
    );
    store
        .execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .await?;
    store
        .execute(&format!("DROP DATABASE IF EXISTS {db}_re"))
        .await?;
    Ok(())
}
