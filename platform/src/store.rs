//! ClickHouse: versioned schema migrations and the `results` table.
//!
//! The schema is written for ClickHouse 18.16 (what Debian ships) and works unchanged on
//! modern servers; `docs/CLICKHOUSE.md` lists what a modern server would let us add.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use vantage_core::result::Envelope;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ClickHouse at {url} failed: {source}; check that the server runs and --clickhouse-url is right")]
    Query {
        url: String,
        #[source]
        source: clickhouse::error::Error,
    },
    #[error("database name {0:?} is not a plain identifier; use letters, digits and _")]
    BadDatabase(String),
}

/// One schema step. Statements use `{db}` for the database name and must be idempotent.
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub statements: &'static [&'static str],
}

/// Every migration, in order. Append; never edit a released one.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "results",
    statements: &[
        // One row per result: the RIPE Atlas common fields, typed ping columns, and the
        // raw JSON. ReplacingMergeTree collapses rows with the same sorting key, which
        // ends with result_id: a result delivered twice is stored once (read with FINAL).
        "CREATE TABLE IF NOT EXISTS {db}.results (
            result_id String,
            msm_id UInt64,
            prb_id UInt32,
            type String,
            timestamp DateTime,
            af UInt8,
            fw UInt32,
            from_addr String,
            src_addr String,
            dst_addr String,
            dst_name String,
            sent UInt32,
            rcvd UInt32,
            rtt_min Float64,
            rtt_avg Float64,
            rtt_max Float64,
            raw String,
            inserted_at DateTime
        ) ENGINE = ReplacingMergeTree(inserted_at)
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (msm_id, prb_id, timestamp, result_id)",
    ],
}];

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

impl ResultRow {
    /// Build the row for a result. Deterministic in the result and `inserted_at`, so that
    /// rebuilding from the archive gives the same rows.
    pub fn from_envelope(env: &Envelope, inserted_at: u32) -> Self {
        let c = &env.common;
        let num = |k: &str| env.raw.get(k).and_then(serde_json::Value::as_f64);
        let count = |k: &str| {
            env.raw
                .get(k)
                .and_then(serde_json::Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0)
        };
        let is_ping = c.kind == "ping";
        Self {
            result_id: c.result_id.clone(),
            msm_id: c.msm_id,
            prb_id: c.prb_id,
            kind: c.kind.clone(),
            timestamp: u32::try_from(c.timestamp.max(0)).unwrap_or(u32::MAX),
            af: c.af,
            fw: c.fw,
            from_addr: c.from.clone(),
            src_addr: c.src_addr.clone(),
            dst_addr: c.dst_addr.clone(),
            dst_name: c.dst_name.clone(),
            sent: if is_ping { count("sent") } else { 0 },
            rcvd: if is_ping { count("rcvd") } else { 0 },
            rtt_min: if is_ping {
                num("min").unwrap_or(-1.0)
            } else {
                -1.0
            },
            rtt_avg: if is_ping {
                num("avg").unwrap_or(-1.0)
            } else {
                -1.0
            },
            rtt_max: if is_ping {
                num("max").unwrap_or(-1.0)
            } else {
                -1.0
            },
            raw: env.raw.to_string(),
            inserted_at,
        }
    }
}

/// Results received for one measurement.
#[derive(Row, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MeasurementStats {
    pub msm_id: u64,
    pub results: u64,
    /// Unix seconds of the newest result.
    pub last_result: u32,
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
}

impl Store {
    /// A store on `url` (HTTP interface) using database `db`.
    pub fn new(url: &str, db: &str) -> Result<Self, StoreError> {
        if db.is_empty() || !db.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(StoreError::BadDatabase(db.to_owned()));
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
        })
    }

    pub fn database(&self) -> &str {
        &self.db
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

    /// Apply every migration newer than the recorded version; return the version now in force.
    pub async fn migrate(&self) -> Result<u32, StoreError> {
        let db = &self.db;
        self.execute(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
            .await?;
        self.execute(&format!(
            "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, name String, applied_at DateTime) \
             ENGINE = MergeTree ORDER BY version"
        ))
        .await?;
        let current = self.schema_version().await?;
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            for statement in m.statements {
                self.execute(&statement.replace("{db}", db)).await?;
            }
            self.execute(&format!(
                "INSERT INTO {db}.schema_migrations (version, name, applied_at) VALUES ({}, '{}', now())",
                m.version, m.name
            ))
            .await?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied ClickHouse migration"
            );
        }
        self.schema_version().await
    }

    /// The newest applied migration (0 when none).
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        self.client
            .query(&format!(
                "SELECT toUInt32(max(version)) FROM {}.schema_migrations",
                self.db
            ))
            .fetch_one::<u32>()
            .await
            .map_err(self.err())
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

    /// Result counts per measurement (deduplicated).
    pub async fn measurement_stats(&self) -> Result<Vec<MeasurementStats>, StoreError> {
        self.client
            .query(&format!(
                "SELECT msm_id, toUInt64(uniqExact(result_id)) AS results, toUInt32(max(timestamp)) AS last_result \
                 FROM {}.results GROUP BY msm_id ORDER BY msm_id",
                self.db
            ))
            .fetch_all::<MeasurementStats>()
            .await
            .map_err(self.err())
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
