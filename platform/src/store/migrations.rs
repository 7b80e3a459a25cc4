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

/// How rows of `table` are spread over shards in cluster mode: a function of the columns
/// that identify a row, so that every copy of a row (redelivery, reprocess) lands on the
/// same shard and collapses there (ReplacingMergeTree, read with FINAL).
/// Results-like tables shard by measurement (`intHash64(msm_id)`: one measurement's results
/// are on one shard), probe tables by probe, OONI tables by measurement_uid.
pub fn sharding_key(table: &str) -> &'static str {
    match table {
        "probes" | "probe_connections" => "intHash64(prb_id)",
        "fastpath" | "jsonl" => "cityHash64(measurement_uid)",
        // the geolocation engines' own tables (engines/src/cache.rs, engine/crowd.rs)
        "geo_answers" | "geo_crowdsource" => "cityHash64(ip)",
        // results, ping_results, traceroute_hops, dns_results, http_results, ...
        _ => "intHash64(msm_id)",
    }
}

/// The cluster form of one single-node `CREATE TABLE IF NOT EXISTS {db}.t (...) ENGINE = E...`
/// statement (with `{db}` already replaced by `db`): `t_local ON CLUSTER` with engine
/// `ReplicatedE('/clickhouse/tables/{shard}/<db>/t', '{replica}', <E's arguments>)`, then
/// `t ON CLUSTER` as `Distributed(cluster, db, t_local, <sharding key>)`. `None` when the
/// statement is not of that form.
pub fn cluster_statements(statement: &str, db: &str, cluster: &str) -> Option<[String; 2]> {
    let head = format!("CREATE TABLE IF NOT EXISTS {db}.");
    let rest = statement.trim_start().strip_prefix(&head)?;
    let name_len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    let (table, body) = rest.split_at(name_len);
    let engine_at = body.find("ENGINE = ")? + "ENGINE = ".len();
    let after = &body[engine_at..];
    let engine_len = after
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(after.len());
    let engine = &after[..engine_len];
    if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
        return None;
    }
    let after_engine = &after[engine_len..];
    let (args, tail) = match after_engine.strip_prefix('(') {
        Some(a) => {
            let close = a.find(')')?;
            (format!(", {}", &a[..close]), &a[close + 1..])
        }
        None => (String::new(), after_engine),
    };
    let local = format!(
        "CREATE TABLE IF NOT EXISTS {db}.{table}_local ON CLUSTER {cluster}{columns}\
         Replicated{engine}('/clickhouse/tables/{{shard}}/{db}/{table}', '{{replica}}'{args}){tail}",
        columns = &body[..engine_at],
    );
    let distributed = format!(
        "CREATE TABLE IF NOT EXISTS {db}.{table} ON CLUSTER {cluster} AS {db}.{table}_local \
         ENGINE = Distributed({cluster}, {db}, {table}_local, {key})",
        key = sharding_key(table),
    );
    Some([local, distributed])
}

impl Store {
    /// Cluster mode: is the cluster known to the server, and does the server reach ZooKeeper?
    /// Checked before anything is created, so a wrong name leaves no half-created schema.
    pub async fn check_cluster(&self) -> Result<(), StoreError> {
        let Some(name) = self.cluster.as_deref() else {
            return Ok(());
        };
        let known = self
            .client
            .query("SELECT DISTINCT cluster FROM system.clusters ORDER BY cluster")
            .fetch_all::<String>()
            .await
            .map_err(self.err())?;
        if !known.iter().any(|c| c == name) {
            return Err(StoreError::NoCluster {
                url: self.url.clone(),
                name: name.to_owned(),
                known: known.join(", "),
            });
        }
        self.client
            .query("SELECT count() FROM system.zookeeper WHERE path = '/'")
            .fetch_one::<u64>()
            .await
            .map_err(|source| StoreError::ZooKeeper {
                url: self.url.clone(),
                name: name.to_owned(),
                source,
            })?;
        Ok(())
    }

    /// Apply every migration newer than the recorded version; return the version now in force.
    ///
    /// In cluster mode every statement runs `ON CLUSTER` (each node applies it once, in
    /// order), tables become Replicated `<table>_local` behind a Distributed `<table>`, and
    /// the ledger `schema_migrations` is one ReplicatedMergeTree shared by every node of the
    /// cluster (ZooKeeper path without `{shard}`), so any node answers the version.
    pub async fn migrate(&self) -> Result<u32, StoreError> {
        let db = &self.db;
        self.check_cluster().await?;
        let on_cluster = self
            .cluster
            .as_deref()
            .map(|c| format!(" ON CLUSTER {c}"))
            .unwrap_or_default();
        self.execute(&format!("CREATE DATABASE IF NOT EXISTS {db}{on_cluster}"))
            .await?;
        let ledger_engine = match &self.cluster {
            None => "MergeTree".to_owned(),
            Some(_) => format!(
                "ReplicatedMergeTree('/clickhouse/tables/all/{db}/schema_migrations', '{{replica}}')"
            ),
        };
        self.execute(&format!(
            "CREATE TABLE IF NOT EXISTS {db}.schema_migrations{on_cluster} (version UInt32, name String, applied_at DateTime) \
             ENGINE = {ledger_engine} ORDER BY version"
        ))
        .await?;
        let current = self.schema_version().await?;
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            for statement in m.statements {
                let statement = statement.replace("{db}", db);
                match self.cluster.as_deref() {
                    None => self.execute(&statement).await?,
                    Some(c) => {
                        // Every statement is a MergeTree-family CREATE TABLE (a unit test
                        // checks); anything else would need its own cluster form.
                        let Some(pair) = cluster_statements(&statement, db, c) else {
                            return Err(StoreError::NoClusterForm {
                                version: m.version,
                                statement: statement.chars().take(80).collect(),
                            });
                        };
                        for s in pair {
                            self.execute(&s).await?;
                        }
                    }
                }
            }
            self.execute(&format!(
                "INSERT INTO {db}.schema_migrations (version, name, applied_at) VALUES ({}, '{}', now())",
                m.version, m.name
            ))
            .await?;
            tracing::info!(
                version = m.version,
                name = m.name,
                cluster = self.cluster.as_deref().unwrap_or(""),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_has_a_cluster_form() {
        for m in MIGRATIONS {
            for st in m.statements {
                let st = st.replace("{db}", "vdb");
                let [local, dist] = cluster_statements(&st, "vdb", "c1")
                    .unwrap_or_else(|| panic!("migration {} has no cluster form: {st}", m.version));
                assert!(local.contains("_local ON CLUSTER c1"), "{local}");
                assert!(
                    local.contains(
                        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/vdb/"
                    ),
                    "{local}"
                );
                assert!(dist.contains("ENGINE = Distributed(c1, vdb, "), "{dist}");
            }
        }
    }

    #[test]
    fn engine_arguments_follow_the_replication_arguments() {
        let [local, dist] = cluster_statements(
            "CREATE TABLE IF NOT EXISTS d.results (a UInt64, msm_id UInt64, v DateTime) ENGINE = ReplacingMergeTree(v) ORDER BY (msm_id, a)",
            "d",
            "c",
        )
        .expect("cluster form");
        assert_eq!(
            local,
            "CREATE TABLE IF NOT EXISTS d.results_local ON CLUSTER c (a UInt64, msm_id UInt64, v DateTime) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/d/results', '{replica}', v) ORDER BY (msm_id, a)"
        );
        assert_eq!(
            dist,
            "CREATE TABLE IF NOT EXISTS d.results ON CLUSTER c AS d.results_local ENGINE = Distributed(c, d, results_local, intHash64(msm_id))"
        );
        let [local, _] = cluster_statements(
            "CREATE TABLE IF NOT EXISTS d.probes (prb_id UInt32) ENGINE = ReplacingMergeTree ORDER BY prb_id",
            "d",
            "c",
        )
        .expect("cluster form");
        assert!(local.ends_with("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/d/probes', '{replica}') ORDER BY prb_id"), "{local}");
        assert_eq!(sharding_key("probes"), "intHash64(prb_id)");
        assert_eq!(sharding_key("geo_answers"), "cityHash64(ip)");
        assert!(cluster_statements("ALTER TABLE d.x ADD COLUMN y UInt8", "d", "c").is_none());
    }
}
