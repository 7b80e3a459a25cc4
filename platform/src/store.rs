//! ClickHouse: the client, the `results` row and the other rows the server components
//! write and read. The schema itself is in [`migrations`].
//!
//! The schema is written for ClickHouse 18.16 (what Debian ships) and works unchanged on
//! modern servers; `docs/CLICKHOUSE.md` lists what a modern server would let us add.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use vantage_core::result::Envelope;

pub mod migrations;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ClickHouse at {url} failed: {source}; check that the server runs and --clickhouse-url is right")]
    Query {
        url: String,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("database name {name:?} is not a plain identifier; use letters, digits and _")]
    BadDatabase { name: String },
    #[error("ClickHouse cluster name {name:?} (--clickhouse-cluster / CLICKHOUSE_CLUSTER) is not a plain identifier; use letters, digits and _")]
    BadCluster { name: String },
    #[error("ClickHouse at {url} has no cluster {name:?} in system.clusters (--clickhouse-cluster / CLICKHOUSE_CLUSTER); clusters it knows: [{known}]. Fix the name or the server's <remote_servers>; nothing was created")]
    NoCluster {
        url: String,
        name: String,
        known: String,
    },
    #[error("migration {version} has a statement with no cluster form ({statement}...); it cannot run with --clickhouse-cluster / CLICKHOUSE_CLUSTER")]
    NoClusterForm { version: u32, statement: String },
    #[error("ClickHouse at {url} cannot reach ZooKeeper, which --clickhouse-cluster / CLICKHOUSE_CLUSTER {name:?} needs (ON CLUSTER DDL, Replicated tables): {source}; check the server's <zookeeper> section and that ZooKeeper runs; nothing was created")]
    ZooKeeper {
        url: String,
        name: String,
        #[source]
        source: clickhouse::error::Error,
    },
}

/// Now, as a ClickHouse `DateTime` (Unix seconds).
pub fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

/// A row of `results`.
#[derive(Row, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ResultRow {
    pub result_id: String,
    pub msm_id: u64,
    pub prb_id: u32,
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix seconds (ClickHouse DateTime).
    pub timestamp: u32,
    pub af: u8,
    pub fw: u32,
    pub from_addr: String,
    pub src_addr: String,
    pub dst_addr: String,
    pub dst_name: String,
    pub sent: u32,
    pub rcvd: u32,
    pub rtt_min: f64,
    pub rtt_avg: f64,
    pub rtt_max: f64,
    pub raw: String,
    pub inserted_at: u32,
}

/// The fields of a result that `results` has columns for, read in one pass over the
/// JSON without building a tree (the collector's hot path).
#[derive(Deserialize)]
struct PayloadFields<'a> {
    #[serde(borrow)]
    result_id: std::borrow::Cow<'a, str>,
    #[serde(deserialize_with = "lenient_count")]
    fw: u32,
    msm_id: u64,
    prb_id: u32,
    timestamp: i64,
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    af: u8,
    #[serde(default, borrow)]
    dst_addr: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    dst_name: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    src_addr: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    from: std::borrow::Cow<'a, str>,
    #[serde(default, deserialize_with = "lenient_count")]
    sent: u32,
    #[serde(default, deserialize_with = "lenient_count")]
    rcvd: u32,
    #[serde(default = "minus_one", deserialize_with = "lenient_rtt")]
    min: f64,
    #[serde(default = "minus_one", deserialize_with = "lenient_rtt")]
    avg: f64,
    #[serde(default = "minus_one", deserialize_with = "lenient_rtt")]
    max: f64,
}

fn minus_one() -> f64 {
    -1.0
}

/// A number, also written as a string (old RIPE Atlas firmware: `"sent": "3"`).
pub fn loose_number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A whole number that fits a `u32`, also written as a string.
pub fn loose_count(v: &serde_json::Value) -> Option<u32> {
    loose_number(v)
        .filter(|n| n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n))
        .map(|n| n as u32)
}

/// A count, or 0 when the field holds something else.
fn lenient_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(loose_count(&serde_json::Value::deserialize(d)?).unwrap_or(0))
}

/// An RTT, or -1 when the field holds something else.
fn lenient_rtt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(loose_number(&serde_json::Value::deserialize(d)?).unwrap_or(-1.0))
}

impl ResultRow {
    /// The row for a result as published on JetStream, or `None` when the payload is not
    /// a result (the checks of [`Envelope::parse`]: size, JSON, common fields, id). `raw`
    /// keeps the payload's own bytes; the fields are read in one pass without building a
    /// JSON tree (about 5x cheaper than parsing into an [`Envelope`]).
    pub fn from_payload(payload: &[u8], inserted_at: u32) -> Option<Self> {
        if payload.len() > vantage_core::result::MAX_RESULT_BYTES {
            return None;
        }
        let f: PayloadFields<'_> = serde_json::from_slice(payload).ok()?;
        let raw = std::str::from_utf8(payload).ok()?.to_owned();
        Self::from_fields(f, raw, inserted_at)
    }

    /// The row for a parsed result; `raw` is its re-serialisation. Deterministic in the
    /// result and `inserted_at`, so that rebuilding from the archive gives the same rows.
    /// `None` only where [`ResultRow::from_payload`] would refuse the same result.
    pub fn from_envelope(env: &Envelope, inserted_at: u32) -> Option<Self> {
        let f = PayloadFields::deserialize(&env.raw).ok()?;
        Self::from_fields(f, env.raw.to_string(), inserted_at)
    }

    fn from_fields(f: PayloadFields<'_>, raw: String, inserted_at: u32) -> Option<Self> {
        if f.result_id.is_empty() || f.result_id.len() > 64 {
            return None;
        }
        let is_ping = f.kind == "ping";
        let ping = |v: f64| if is_ping { v } else { -1.0 };
        Some(Self {
            result_id: f.result_id.into_owned(),
            msm_id: f.msm_id,
            prb_id: f.prb_id,
            timestamp: u32::try_from(f.timestamp.max(0)).unwrap_or(u32::MAX),
            af: f.af,
            fw: f.fw,
            from_addr: f.from.into_owned(),
            src_addr: f.src_addr.into_owned(),
            dst_addr: f.dst_addr.into_owned(),
            dst_name: f.dst_name.into_owned(),
            sent: if is_ping { f.sent } else { 0 },
            rcvd: if is_ping { f.rcvd } else { 0 },
            rtt_min: ping(f.min),
            rtt_avg: ping(f.avg),
            rtt_max: ping(f.max),
            kind: f.kind.into_owned(),
            raw,
            inserted_at,
        })
    }
}

/// A row of `probes`.
#[derive(Row, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ProbeRow {
    pub prb_id: u32,
    pub country_code: String,
    pub asn_v4: u32,
    /// Unix seconds (ClickHouse DateTime).
    pub updated_at: u32,
}

/// A row of `probe_connections`: a probe connected (`connect`) or went (`disconnect`).
#[derive(Row, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConnectionRow {
    pub prb_id: u32,
    /// `connect` or `disconnect`.
    pub event: String,
    /// Unix seconds (ClickHouse DateTime).
    pub timestamp: u32,
    /// The controller the session was on.
    pub controller: String,
    /// The probe's address in that session.
    pub address: String,
    /// Unix seconds (ClickHouse DateTime); the newest copy of a row wins.
    pub inserted_at: u32,
}

/// A row of `fastpath` (columns in table order).
#[derive(Row, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FastpathRow {
    pub measurement_uid: String,
    pub report_id: String,
    pub input: String,
    pub probe_cc: String,
    pub probe_asn: u32,
    pub test_name: String,
    /// Unix seconds (ClickHouse DateTime).
    pub test_start_time: u32,
    /// Unix seconds (ClickHouse DateTime).
    pub measurement_start_time: u32,
    /// JSON object with the per-test scores.
    pub scores: String,
    pub anomaly: u8,
    pub confirmed: u8,
    pub msm_failure: u8,
    pub domain: String,
    pub software_name: String,
    pub software_version: String,
    pub blocking_type: String,
    pub reason: String,
}

/// The columns of `fastpath`, in table order, for SELECTs.
pub const FASTPATH_COLUMNS: &str = "measurement_uid, report_id, input, probe_cc, probe_asn, test_name, \
    toUInt32(test_start_time), toUInt32(measurement_start_time), scores, anomaly, confirmed, msm_failure, \
    domain, software_name, software_version, blocking_type, reason";

/// A row of `jsonl`, the archive index (columns in table order).
#[derive(Row, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct JsonlRow {
    pub report_id: String,
    pub input: String,
    pub s3path: String,
    /// 0-based line in the decompressed object.
    pub linenum: u32,
    pub measurement_uid: String,
}

/// `s` as a ClickHouse string literal (backslash and quote escaped).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The ClickHouse store.
#[derive(Clone)]
pub struct Store {
    /// For DDL and queries that name the database (it may not exist yet).
    client: clickhouse::Client,
    /// Bound to the database, for INSERTs (the client quotes the table name as one identifier).
    db_client: clickhouse::Client,
    url: String,
    db: String,
    /// The ClickHouse cluster the schema lives on (`--clickhouse-cluster`); `None` = one node.
    cluster: Option<String>,
}

impl Store {
    /// A store on `url` (HTTP interface) using database `db`.
    pub fn new(url: &str, db: &str) -> Result<Self, StoreError> {
        if db.is_empty() || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::BadDatabase {
                name: db.to_owned(),
            });
        }
        let client = clickhouse::Client::default()
            .with_url(url)
            // ClickHouse 18.16 has no RowBinaryWithNamesAndTypes: send plain RowBinary.
            .with_validation(false);
        let db_client = client.clone().with_database(db);
        Ok(Self {
            client,
            db_client,
            url: url.to_owned(),
            db: db.to_owned(),
            cluster: None,
        })
    }

    /// Cluster mode (`--clickhouse-cluster` / `CLICKHOUSE_CLUSTER`): the schema is created
    /// `ON CLUSTER` as Replicated tables behind Distributed ones (see [`migrations`]), and
    /// INSERTs wait until every shard has the rows (`insert_distributed_sync=1`). `None` or
    /// an empty name keeps the single-node store.
    pub fn with_cluster(mut self, cluster: Option<&str>) -> Result<Self, StoreError> {
        let Some(name) = cluster.map(str::trim).filter(|c| !c.is_empty()) else {
            return Ok(self);
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::BadCluster {
                name: name.to_owned(),
            });
        }
        // Acked means stored: without this, a Distributed INSERT returns once the rows are
        // queued on the node that took it, and that node's death would delay or lose them.
        self.client = self
            .client
            .with_setting("insert_distributed_sync", "1")
            // `IN (SELECT ... FROM <Distributed>)`: the subquery runs once, its set goes to
            // every shard (ClickHouse's default refuses such queries).
            .with_setting("distributed_product_mode", "global");
        self.db_client = self.client.clone().with_database(&self.db);
        self.cluster = Some(name.to_owned());
        Ok(self)
    }

    pub fn database(&self) -> &str {
        &self.db
    }

    /// The cluster name in cluster mode.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    /// Empty `table`: on a cluster, every shard's replicated `<table>_local`.
    pub async fn truncate(&self, table: &str) -> Result<(), StoreError> {
        let db = &self.db;
        match &self.cluster {
            None => self.execute(&format!("TRUNCATE TABLE {db}.{table}")).await,
            Some(c) => {
                self.execute(&format!("TRUNCATE TABLE {db}.{table}_local ON CLUSTER {c}"))
                    .await
            }
        }
    }

    fn err(&self) -> impl Fn(clickhouse::error::Error) -> StoreError + '_ {
        |source| StoreError::Query {
            url: self.url.clone(),
            source,
        }
    }

    /// Run one statement (DDL or query without result).
    pub async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        self.client.query(sql).execute().await.map_err(self.err())
    }

    /// Insert a batch of results in one INSERT.
    pub async fn insert_results(&self, rows: &[ResultRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .db_client
            .insert::<ResultRow>("results")
            .await
            .map_err(self.err())?;
        for row in rows {
            insert.write(row).await.map_err(self.err())?;
        }
        insert.end().await.map_err(self.err())
    }

    /// Insert rows into `table` in one INSERT.
    pub async fn insert_rows<T>(&self, table: &str, rows: &[T]) -> Result<(), StoreError>
    where
        T: Row + Serialize + for<'a> clickhouse::RowOwned,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .db_client
            .insert::<T>(table)
            .await
            .map_err(self.err())?;
        for row in rows {
            insert.write(row).await.map_err(self.err())?;
        }
        insert.end().await.map_err(self.err())
    }

    /// Upsert probe metadata (the newest `updated_at` of a probe wins).
    pub async fn insert_probes(&self, rows: &[ProbeRow]) -> Result<(), StoreError> {
        self.insert_rows("probes", rows).await
    }

    /// Insert a batch of fastpath rows in one INSERT.
    pub async fn insert_fastpath(&self, rows: &[FastpathRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .db_client
            .insert::<FastpathRow>("fastpath")
            .await
            .map_err(self.err())?;
        for row in rows {
            insert.write(row).await.map_err(self.err())?;
        }
        insert.end().await.map_err(self.err())
    }

    /// Insert a batch of archive index rows in one INSERT.
    pub async fn insert_jsonl(&self, rows: &[JsonlRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .db_client
            .insert::<JsonlRow>("jsonl")
            .await
            .map_err(self.err())?;
        for row in rows {
            insert.write(row).await.map_err(self.err())?;
        }
        insert.end().await.map_err(self.err())
    }

    /// Where the archive holds a measurement, if it was archived.
    /// `uid` is matched as a quoted string literal.
    pub async fn jsonl_lookup(&self, uid: &str) -> Result<Option<JsonlRow>, StoreError> {
        let rows = self
            .client
            .query(&format!(
                "SELECT report_id, input, s3path, linenum, measurement_uid FROM {}.jsonl FINAL \
                 WHERE measurement_uid = {} LIMIT 1",
                self.db,
                quote(uid)
            ))
            .fetch_all::<JsonlRow>()
            .await
            .map_err(self.err())?;
        Ok(rows.into_iter().next())
    }

    /// Every fastpath row, deduplicated, ordered by measurement_uid.
    pub async fn fastpath_rows(&self) -> Result<Vec<FastpathRow>, StoreError> {
        self.client
            .query(&format!(
                "SELECT {FASTPATH_COLUMNS} FROM {}.fastpath FINAL ORDER BY measurement_uid",
                self.db
            ))
            .fetch_all::<FastpathRow>()
            .await
            .map_err(self.err())
    }

    /// Run a query and return its whole output in `format` (e.g. `TSV`).
    pub async fn fetch_formatted(&self, sql: &str, format: &str) -> Result<Vec<u8>, StoreError> {
        let bytes = self
            .client
            .query(sql)
            .fetch_bytes(format)
            .map_err(self.err())?
            .collect()
            .await
            .map_err(self.err())?;
        Ok(bytes.to_vec())
    }

    /// Every result of a measurement, deduplicated, oldest first.
    pub async fn results_of(&self, msm_id: u64) -> Result<Vec<ResultRow>, StoreError> {
        self.client
            .query(&format!(
                "SELECT result_id, msm_id, prb_id, type, toUInt32(timestamp), af, fw, from_addr, src_addr, dst_addr, \
                 dst_name, sent, rcvd, rtt_min, rtt_avg, rtt_max, raw, toUInt32(inserted_at) \
                 FROM {}.results FINAL WHERE msm_id = {msm_id} ORDER BY timestamp, result_id",
                self.db
            ))
            .fetch_all::<ResultRow>()
            .await
            .map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PING: &str = r#"{"result_id":"r1","fw":5020,"lts":-1,"msm_id":1000001,"prb_id":7,"timestamp":1700000000,"type":"ping","af":4,"from":"192.0.2.1","src_addr":"10.0.0.2","dst_addr":"193.0.14.129","dst_name":"k.root-servers.net","proto":"ICMP","sent":3,"rcvd":2,"min":0.05,"avg":0.06,"max":0.07,"result":[{"rtt":0.05},{"rtt":0.07},{"x":"*"}]}"#;

    #[test]
    fn payload_rows_equal_envelope_rows_but_keep_the_bytes() {
        let env = Envelope::parse(PING.as_bytes()).expect("envelope");
        let slow = ResultRow::from_envelope(&env, 9).expect("row");
        let fast = ResultRow::from_payload(PING.as_bytes(), 9).expect("row");
        assert_eq!(fast.raw, PING);
        assert_eq!(
            ResultRow {
                raw: String::new(),
                ..fast
            },
            ResultRow {
                raw: String::new(),
                ..slow
            }
        );
        // Not ping: no ping columns, whatever the fields say.
        let tr = PING.replace("\"ping\"", "\"traceroute\"");
        let row = ResultRow::from_payload(tr.as_bytes(), 9).expect("row");
        assert_eq!((row.sent, row.rtt_min), (0, -1.0));
        // Odd values in the ping columns do not drop the result.
        let odd = PING
            .replace("\"min\":0.05", "\"min\":\"n/a\"")
            .replace("\"sent\":3", "\"sent\":-3");
        let row = ResultRow::from_payload(odd.as_bytes(), 9).expect("row");
        assert_eq!((row.sent, row.rtt_min, row.rtt_avg), (0, -1.0, 0.06));
    }

    #[test]
    fn payloads_that_are_not_results_give_no_row() {
        for bad in [
            "garbage".to_owned(),
            PING.replace("\"result_id\":\"r1\"", "\"result_id\":\"\""),
            PING.replace("\"msm_id\":1000001,", ""),
            PING.replace("\"prb_id\":7", "\"prb_id\":\"seven\""),
            format!(
                "{}{}",
                &PING[..PING.len() - 1],
                format_args!(",\"pad\":\"{}\"}}", "x".repeat(300_000))
            ),
        ] {
            assert!(
                ResultRow::from_payload(bad.as_bytes(), 1).is_none(),
                "{}",
                &bad[..bad.len().min(80)]
            );
        }
    }
}
