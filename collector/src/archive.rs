//! The archive: the uploader batches the disk queue into zstd-compressed JSONL objects
//! on S3 under `raw/YYYYMMDD/HH/CC/testname/`, records each line in the `jsonl` index
//! table, and only then deletes the local files. Readers find archived measurements
//! through the index.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::Value;
use sha2::{Digest, Sha256};
use vantage_platform::store::{JsonlRow, Store, StoreError};

use crate::queue::Queue;
use crate::uid::parse_uid;

/// Lines per archive object at most.
pub const MAX_OBJECT_LINES: usize = 10_000;
/// An object is closed once its uncompressed JSONL reaches this many bytes.
pub const MAX_OBJECT_BYTES: usize = 64 << 20;

/// Where the archive lives.
#[derive(Clone, Debug)]
pub struct S3Config {
    pub bucket: String,
    /// `http://127.0.0.1:15000` for moto; `None` for AWS itself.
    pub endpoint: Option<String>,
    /// Defaults to `AWS_REGION`/`AWS_DEFAULT_REGION`, then `us-east-1`.
    pub region: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(
        "S3 bucket {bucket}: {source}; check S3_ENDPOINT, the bucket and the AWS_* credentials"
    )]
    S3 {
        bucket: String,
        #[source]
        source: object_store::Error,
    },
    #[error("disk queue: {0}")]
    Queue(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("archive object {path} is damaged: {source}")]
    Damaged {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("archive object {path} is damaged: no line {line}")]
    MissingLine { path: String, line: u32 },
}

/// The S3 client: credentials from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (and the
/// other `AWS_*` variables object_store reads), endpoint and bucket from `cfg`.
pub fn open_s3(cfg: &S3Config) -> Result<Arc<dyn ObjectStore>, ArchiveError> {
    let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(&cfg.bucket);
    if let Some(endpoint) = &cfg.endpoint {
        b = b
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    let region = cfg
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok())
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
        .unwrap_or_else(|| "us-east-1".to_owned());
    let s3 = b
        .with_region(region)
        .build()
        .map_err(|source| ArchiveError::S3 {
            bucket: cfg.bucket.clone(),
            source,
        })?;
    Ok(Arc::new(s3))
}

/// The archive: S3 plus the index in ClickHouse.
#[derive(Clone)]
pub struct Archive {
    pub s3: Arc<dyn ObjectStore>,
    pub bucket: String,
    pub store: Store,
}

/// What one upload round did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UploadSummary {
    pub objects: usize,
    pub measurements: usize,
    pub bytes: usize,
    pub keys: Vec<String>,
}

/// The S3 prefix of a measurement: `raw/YYYYMMDD/HH/CC/testname/`.
pub fn prefix_of(uid: &str) -> Option<String> {
    let p = parse_uid(uid)?;
    Some(format!(
        "raw/{}/{}/{}/",
        p.time().format("%Y%m%d/%H"),
        p.cc,
        p.test_name
    ))
}

/// The object key for a batch of uids sharing one prefix (deterministic, so a retried
/// upload of the same batch overwrites the same object).
pub fn key_of(prefix: &str, uids: &[String]) -> String {
    let mut h = Sha256::new();
    for u in uids {
        h.update(u.as_bytes());
        h.update(b"\n");
    }
    let first = uids.first().map(String::as_str).unwrap_or("empty");
    let ts = first.split('_').next().unwrap_or("0");
    format!(
        "{prefix}{ts}.n{}.{}.jsonl.zst",
        uids.len(),
        &hex::encode(h.finalize())[..12]
    )
}

fn str_of(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

impl Archive {
    fn s3_err(&self) -> impl Fn(object_store::Error) -> ArchiveError + '_ {
        |source| ArchiveError::S3 {
            bucket: self.bucket.clone(),
            source,
        }
    }

    /// Archive everything queued now: objects per (hour, country, test) of at most
    /// [`MAX_OBJECT_LINES`] lines and about [`MAX_OBJECT_BYTES`], each followed by its index
    /// rows and only then the deletion of its local files. A failure leaves the files
    /// queued for the next round (a re-upload writes the same keys and index rows).
    pub async fn upload_once(&self, queue: &Queue) -> Result<UploadSummary, ArchiveError> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for uid in queue.list().await? {
            match prefix_of(&uid) {
                Some(prefix) => groups.entry(prefix).or_default().push(uid),
                None => tracing::warn!(%uid, "queued file is not a measurement uid; left alone"),
            }
        }
        let mut summary = UploadSummary::default();
        for (prefix, uids) in groups {
            for chunk in uids.chunks(MAX_OBJECT_LINES) {
                let mut lines = Vec::with_capacity(chunk.len());
                let mut bytes = 0;
                for (uid, line) in queue.get_many(chunk.to_vec()).await? {
                    let Some(line) = line else { continue };
                    bytes += line.len() + 1;
                    lines.push((uid, line));
                    if bytes >= MAX_OBJECT_BYTES {
                        self.upload_object(
                            queue,
                            &prefix,
                            std::mem::take(&mut lines),
                            &mut summary,
                        )
                        .await?;
                        bytes = 0;
                    }
                }
                self.upload_object(queue, &prefix, lines, &mut summary)
                    .await?;
            }
        }
        Ok(summary)
    }

    /// Upload one object, index it, then delete its files.
    async fn upload_object(
        &self,
        queue: &Queue,
        prefix: &str,
        lines: Vec<(String, Vec<u8>)>,
        summary: &mut UploadSummary,
    ) -> Result<(), ArchiveError> {
        if lines.is_empty() {
            return Ok(());
        }
        let uids: Vec<String> = lines.iter().map(|(u, _)| u.clone()).collect();
        let key = key_of(prefix, &uids);
        let s3path = format!("s3://{}/{key}", self.bucket);
        let (compressed, index) = tokio::task::spawn_blocking(move || {
            let mut jsonl = Vec::new();
            let mut index = Vec::with_capacity(lines.len());
            for (n, (uid, line)) in lines.into_iter().enumerate() {
                let line = line.trim_ascii();
                let msm: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
                index.push(JsonlRow {
                    report_id: str_of(&msm, "report_id"),
                    input: str_of(&msm, "input"),
                    s3path: s3path.clone(),
                    linenum: u32::try_from(n).unwrap_or(u32::MAX),
                    measurement_uid: uid,
                });
                jsonl.extend_from_slice(line);
                jsonl.push(b'\n');
            }
            zstd::encode_all(&jsonl[..], 3).map(|c| (c, index))
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))??;
        let size = compressed.len();
        self.s3
            .put(
                &ObjectPath::from(key.as_str()),
                PutPayload::from(compressed),
            )
            .await
            .map_err(self.s3_err())?;
        self.store.insert_jsonl(&index).await?;
        let n = uids.len();
        queue.remove_many(uids).await?;
        tracing::info!(%key, measurements = n, bytes = size, "archived");
        summary.objects += 1;
        summary.measurements += n;
        summary.bytes += size;
        summary.keys.push(key);
        Ok(())
    }

    /// The lines of an archived object.
    pub async fn read_object(&self, key: &str) -> Result<Vec<Vec<u8>>, ArchiveError> {
        let bytes = self
            .s3
            .get(&ObjectPath::from(key))
            .await
            .map_err(self.s3_err())?
            .bytes()
            .await
            .map_err(self.s3_err())?;
        let mut raw = Vec::new();
        zstd::stream::read::Decoder::new(&bytes[..])
            .and_then(|mut d| d.read_to_end(&mut raw))
            .map_err(|source| ArchiveError::Damaged {
                path: key.to_owned(),
                source,
            })?;
        Ok(raw
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect())
    }

    /// An archived measurement, found through the index.
    pub async fn fetch(&self, uid: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
        let Some(row) = self.store.jsonl_lookup(uid).await? else {
            return Ok(None);
        };
        let prefix = format!("s3://{}/", self.bucket);
        let key = row.s3path.strip_prefix(&prefix).unwrap_or(&row.s3path);
        let lines = self.read_object(key).await?;
        let line = usize::try_from(row.linenum)
            .ok()
            .and_then(|n| lines.into_iter().nth(n))
            .ok_or_else(|| ArchiveError::MissingLine {
                path: row.s3path.clone(),
                line: row.linenum,
            })?;
        Ok(Some(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_ooni_layout() {
        let uid = "20261121223105.123456_IT_web_connectivity_44136fa355b3678a".to_owned();
        let prefix = prefix_of(&uid).expect("prefix");
        assert_eq!(prefix, "raw/20261121/22/IT/web_connectivity/");
        let key = key_of(&prefix, std::slice::from_ref(&uid));
        assert!(
            key.starts_with("raw/20261121/22/IT/web_connectivity/20261121223105.123456.n1."),
            "{key}"
        );
        assert!(key.ends_with(".jsonl.zst"));
        assert_eq!(key, key_of(&prefix, &[uid]));
        assert!(prefix_of("nope").is_none());
    }
}
