//! The ClickHouse schema as versioned migrations, and applying them.
//!
//! Every statement is idempotent and names the database as `{db}`; the versions applied
//! are recorded in `{db}.schema_migrations`.

use super::{Store, StoreError};

/// One schema step. Statements use `{db}` for the database name and must be idempotent.
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub statements: &'static [&'static str],
}

/// Every migration, in order. Append; never edit a released one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
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
    },
    Migration {
        version: 2,
        name: "fastpath",
        statements: &[
            // OONI's fastpath: one scored row per measurement submitted to the intake API.
            // OONI orders by (measurement_start_time, report_id, input); measurement_uid is
            // appended so that two measurements of one report with the same input and start
            // second stay two rows. No version column: a re-scored row (reprocess) replaces
            // the old one, and the table's content is a pure function of the archive.
            "CREATE TABLE IF NOT EXISTS {db}.fastpath (
            measurement_uid String,
            report_id String,
            input String,
            probe_cc String,
            probe_asn UInt32,
            test_name String,
            test_start_time DateTime,
            measurement_start_time DateTime,
            scores String,
            anomaly UInt8,
            confirmed UInt8,
            msm_failure UInt8,
            domain String,
            software_name String,
            software_version String,
            blocking_type String,
            reason String
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(measurement_start_time)
        ORDER BY (measurement_start_time, report_id, input, measurement_uid)",
        ],
    },
    Migration {
        version: 3,
        name: "jsonl",
        statements: &[
            // OONI's archive index: where each measurement lives in the S3 archive
            // (`raw/YYYYMMDD/HH/CC/testname/<file>.jsonl.zst`, line `linenum`, 0-based).
            "CREATE TABLE IF NOT EXISTS {db}.jsonl (
            report_id String,
            input String,
            s3path String,
            linenum UInt32,
            measurement_uid String
        ) ENGINE = ReplacingMergeTree
        ORDER BY (report_id, input, measurement_uid)",
        ],
    },
    Migration {
        version: 4,
        name: "typed",
        statements: &[
            // Per-type tables (collector/src/typed.rs), deduplicated like `results`.
            "CREATE TABLE IF NOT EXISTS {db}.ping_results (
            result_id String,
            msm_id UInt64,
            prb_id UInt32,
            timestamp DateTime,
            af UInt8,
            dst_addr String,
            sent UInt32,
            rcvd UInt32,
            loss Float64,
            rtts Array(Float64),
            rtt_min Float64,
            rtt_avg Float64,
            rtt_max Float64,
            inserted_at DateTime
        ) ENGINE = ReplacingMergeTree(inserted_at)
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (msm_id, prb_id, timestamp, result_id)",
            "CREATE TABLE IF NOT EXISTS {db}.traceroute_hops (
            result_id String,
            msm_id UInt64,
            prb_id UInt32,
            timestamp DateTime,
            af UInt8,
            dst_addr String,
            kind String,
            hop UInt8,
            responders Array(String),
            rtts Array(Float64),
            timeouts UInt32,
            err String,
            mtu UInt32,
            inserted_at DateTime
        ) ENGINE = ReplacingMergeTree(inserted_at)
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (msm_id, prb_id, timestamp, result_id, hop)",
            "CREATE TABLE IF NOT EXISTS {db}.dns_results (
            result_id String,
            msm_id UInt64,
            prb_id UInt32,
            timestamp DateTime,
            af UInt8,
            dst_addr String,
            rcode String,
            rt Float64,
            ancount UInt32,
            answers Array(String),
            error String,
            inserted_at DateTime
        ) ENGINE = ReplacingMergeTree(inserted_at)
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (msm_id, prb_id, timestamp, result_id, dst_addr)",
            "CREATE TABLE IF NOT EXISTS {db}.http_results (
            result_id String,
            msm_id UInt64,
            prb_id UInt32,
            timestamp DateTime,
            af UInt8,
            dst_addr String,
            uri String,
            method String,
            status UInt32,
            rt Float64,
            ttc Float64,
            ttfb Float64,
            hsize UInt32,
            bsize UInt32,
            error String,
            inserted_at DateTime
        ) ENGINE = ReplacingMergeTree(inserted_at)
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (msm_id, prb_id, timestamp, result_id, dst_addr, rt)",
            "CREATE TABLE IF NOT EXISTS {db}.sslcert_results (
            result_id String,
            msm_id UInt64,
            prb_id UInt32,
            timestamp DateTime,
            af UInt8,
            dst_addr String,
            ver String,
            rt Float64,
            ttc Float64,
            chain_length UInt32,
            subject String,
            issuer String,
            not_before DateTime,
            not_after DateTime,
            valid_at_measurement UInt8,
            error String,
            inserted_at DateTime
        ) ENGINE = ReplacingMergeTree(inserted_at)
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (msm_id, prb_id, timestamp, result_id)",
            "CREATE TABLE IF NOT EXISTS {db}.ntp_results (
            result_id String,
            msm_id UInt64,
            prb_id UInt32,
            timestamp DateTime,
            af UInt8,
            dst_addr String,
            stratum UInt32,
            packets UInt32,
            replies UInt32,
            offset_avg Float64,
            rtt_avg Float64,
            rtt_min Float64,
            error String,
            inserted_at DateTime
        ) ENGINE = ReplacingMergeTree(inserted_at)
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (msm_id, prb_id, timestamp, result_id)",
        ],
    },
    Migration {
        version: 5,
        name: "probes",
        statements: &[
            // Probe metadata for joins (RTT by country): the operator writes a row per
            // Probe resource when it changes; the newest row of a probe wins.
            "CREATE TABLE IF NOT EXISTS {db}.probes (
            prb_id UInt32,
            country_code String,
            asn_v4 UInt32,
            updated_at DateTime
        ) ENGINE = ReplacingMergeTree(updated_at)
        ORDER BY prb_id",
        ],
    },
    Migration {
        version: 6,
        name: "probe_connections",
        statements: &[
            // Connection history: the operator writes a `connect` row when a probe's
            // session appears and a `disconnect` row when it goes. The sorting key is the
            // event itself, so a row written again (operator restart, KV replay) is stored
            // once after merges (read with FINAL).
            "CREATE TABLE IF NOT EXISTS {db}.probe_connections (
            prb_id UInt32,
            event String,
            timestamp DateTime,
            controller String,
            address String,
            inserted_at DateTime
        ) ENGINE = ReplacingMergeTree(inserted_at)
        PARTITION BY toYYYYMM(timestamp)
        ORDER BY (prb_id, timestamp, event, controller)",
        ],
    },
];

impl Store {
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
}
