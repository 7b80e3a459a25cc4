//! Fastpath scoring throughput on real OONI web_connectivity measurements
//! (tests/data/ooni/measurements, repeated to ~20k lines), one thread: each line is
//! parsed and scored into its row, as the intake's fastpath worker does.
//!
//! `cargo run --release -p vantage-collector --example fastpath_bench [lines]`

use std::time::Instant;

use serde_json::Value;
use vantage_collector::fastpath::Scorer;
use vantage_collector::fingerprints::Fingerprints;

fn main() -> anyhow::Result<()> {
    let target: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("tests/data/ooni");
    // OONI's own fingerprint set (1,849 records), the realistic load for matching.
    let (fp, _) = Fingerprints::parse_json(
        &std::fs::read(data.join("fingerprints_dns.json"))?,
        &std::fs::read(data.join("fingerprints_http.json"))?,
        "ooni-backend-32d8349d",
    )?;
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut dir: Vec<_> =
        std::fs::read_dir(data.join("measurements"))?.collect::<Result<_, _>>()?;
    dir.sort_by_key(|e| e.path());
    for e in dir {
        let msm: Value = serde_json::from_slice(&std::fs::read(e.path())?)?;
        if msm["test_name"] == "web_connectivity" {
            lines.push(serde_json::to_vec(&msm)?);
        }
    }
    anyhow::ensure!(
        !lines.is_empty(),
        "no web_connectivity measurements in {}",
        data.display()
    );
    let distinct = lines.len();
    let bytes: usize = lines.iter().map(Vec::len).sum();
    let reps = target.div_ceil(distinct);
    let mut scorer = Scorer::default();
    let (mut n, mut anomalies) = (0usize, 0usize);
    let t = Instant::now();
    for _ in 0..reps {
        for line in &lines {
            let msm: Value = serde_json::from_slice(line)?;
            let row = scorer.next(&msm, &fp);
            anomalies += usize::from(row.anomaly);
            n += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "fastpath: {n} web_connectivity measurements ({distinct} distinct, mean {} bytes) scored in {secs:.2} s on one thread: {:.0} measurements/s ({anomalies} anomalies)",
        bytes / distinct,
        n as f64 / secs
    );
    Ok(())
}
