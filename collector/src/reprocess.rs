//! `reprocess`: rebuild `fastpath` and the `jsonl` index from the S3 archive alone.
//!
//! Objects are read hour by hour (`raw/YYYYMMDD/HH/`, oldest first); within an hour the
//! lines of every object are sorted by measurement uid and scored in that order with
//! the same [`Scorer`] the live fastpath uses, so the rebuilt rows equal the live ones.
//! Memory holds one hour of the archive at a time.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use serde_json::Value;
use sha2::{Digest, Sha256};
use vantage_platform::store::{FastpathRow, JsonlRow, Store, StoreError, FASTPATH_COLUMNS};

use crate::archive::{open_s3, Archive, ArchiveError, S3Config};
use crate::fastpath::Scorer;
use crate::fingerprints::Fingerprints;
use crate::source::{Dataset, SourceSpec};

#[derive(Clone, Debug)]
pub struct ReprocessConfig {
    pub clickhouse_url: String,
    /// The database to rebuild into (migrated first).
    pub clickhouse_db: String,
    /// `--clickhouse-cluster`: the schema is on this ClickHouse cluster (`None`: one node).
    pub clickhouse_cluster: Option<String>,
    pub s3: S3Config,
    /// The fingerprints to score with (`--fingerprints-url`): read once.
    pub fingerprints: SourceSpec,
    /// Empty `fastpath` and `jsonl` first (otherwise rows are replaced by key).
    pub truncate: bool,
    /// Rows per INSERT.
    pub batch: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ReprocessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("fingerprints from {spec}: {reason}; fix --fingerprints-url")]
    Fingerprints { spec: String, reason: String },
}

/// What a reprocess run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReprocessSummary {
    pub objects: usize,
    pub measurements: usize,
    /// Lines that were not JSON objects with a measurement_uid (skipped).
    pub skipped: usize,
}

fn str_of(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// `raw/YYYYMMDD/HH/...` → `raw/YYYYMMDD/HH/`.
fn hour_of(key: &str) -> String {
    let mut parts = key.splitn(4, '/');
    let (a, b, c) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    format!("{a}/{b}/{c}/")
}

/// Rebuild from the archive.
pub async fn reprocess(cfg: ReprocessConfig) -> Result<ReprocessSummary, ReprocessError> {
    let store = Store::new(&cfg.clickhouse_url, &cfg.clickhouse_db)?
        .with_cluster(cfg.clickhouse_cluster.as_deref())?;
    store.migrate().await?;
    if cfg.truncate {
        for table in ["fastpath", "jsonl"] {
            store.truncate(table).await?;
        }
    }
    let fp = {
        let err = |reason: String| ReprocessError::Fingerprints {
            spec: cfg.fingerprints.to_string(),
            reason,
        };
        let cache = tempfile::tempdir().map_err(|e| err(e.to_string()))?;
        let snapshot = crate::source::fetch(&cfg.fingerprints, cache.path())
            .await
            .map_err(|e| err(e.to_string()))?;
        let (fp, bad) = Fingerprints::from_snapshot(&snapshot).map_err(|e| err(e.to_string()))?;
        for b in &bad {
            tracing::warn!(bad_line = %b, "fingerprint line skipped");
        }
        tracing::info!(version = %fp.version, "scoring with these fingerprints");
        fp
    };
    let archive = Archive {
        s3: open_s3(&cfg.s3)?,
        bucket: cfg.s3.bucket.clone(),
        store: store.clone(),
    };
    let s3_err = |source| ArchiveError::S3 {
        bucket: cfg.s3.bucket.clone(),
        source,
    };
    let metas: Vec<object_store::ObjectMeta> = archive
        .s3
        .list(Some(&ObjectPath::from("raw")))
        .try_collect()
        .await
        .map_err(s3_err)?;
    let mut by_hour: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in metas {
        let key = m.location.to_string();
        if key.ends_with(".jsonl.zst") {
            by_hour.entry(hour_of(&key)).or_default().push(key);
        }
    }
    let batch = cfg.batch.max(1);
    let mut scorer = Scorer::default();
    let mut summary = ReprocessSummary::default();
    let mut fast: Vec<FastpathRow> = Vec::with_capacity(batch);
    let mut index: Vec<JsonlRow> = Vec::with_capacity(batch);
    for (hour, mut keys) in by_hour {
        keys.sort();
        let mut lines: Vec<(String, Value, JsonlRow)> = Vec::new();
        for key in &keys {
            let s3path = format!("s3://{}/{key}", cfg.s3.bucket);
            for (n, line) in archive.read_object(key).await?.into_iter().enumerate() {
                let msm: Value = match serde_json::from_slice(&line) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => {
                        summary.skipped += 1;
                        continue;
                    }
                };
                let uid = str_of(&msm, "measurement_uid");
                if uid.is_empty() {
                    summary.skipped += 1;
                    continue;
                }
                let row = JsonlRow {
                    report_id: str_of(&msm, "report_id"),
                    input: str_of(&msm, "input"),
                    s3path: s3path.clone(),
                    linenum: u32::try_from(n).unwrap_or(u32::MAX),
                    measurement_uid: uid.clone(),
                };
                lines.push((uid, msm, row));
            }
            summary.objects += 1;
        }
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        tracing::info!(%hour, objects = keys.len(), measurements = lines.len(), "reprocessing");
        for (_, msm, row) in lines {
            fast.push(scorer.next(&msm, &fp));
            index.push(row);
            summary.measurements += 1;
            if fast.len() >= batch {
                store.insert_fastpath(&fast).await?;
                store.insert_jsonl(&index).await?;
                fast.clear();
                index.clear();
            }
        }
    }
    store.insert_fastpath(&fast).await?;
    store.insert_jsonl(&index).await?;
    Ok(summary)
}

/// SHA-256 over an ordered TSV dump of `fastpath` (deduplicated), the reprocess check.
pub async fn fastpath_checksum(store: &Store) -> Result<String, StoreError> {
    let tsv = store
        .fetch_formatted(
            &format!(
                "SELECT {FASTPATH_COLUMNS} FROM {}.fastpath FINAL ORDER BY measurement_uid",
                store.database()
            ),
            "TSV",
        )
        .await?;
    Ok(hex::encode(Sha256::digest(&tsv)))
}

/// SHA-256 over an ordered TSV dump of the `jsonl` index.
pub async fn jsonl_checksum(store: &Store) -> Result<String, StoreError> {
    let tsv = store
        .fetch_formatted(
            &format!(
                "SELECT report_id, input, s3path, linenum, measurement_uid FROM {}.jsonl FINAL ORDER BY measurement_uid",
                store.database()
            ),
            "TSV",
        )
        .await?;
    Ok(hex::encode(Sha256::digest(&tsv)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours() {
        assert_eq!(
            hour_of("raw/20261121/22/IT/dns/x.jsonl.zst"),
            "raw/20261121/22/"
        );
    }
}
