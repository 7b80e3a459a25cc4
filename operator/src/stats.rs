//! Result counts per measurement, and which probes have reported, read from ClickHouse
//! in the background.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use vantage_platform::store::Store;

use crate::measurement::FIRST_MSM_ID;

/// What is stored for one measurement.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MsmStats {
    /// Results stored (deduplicated).
    pub results: u64,
    /// The newest result's Unix seconds.
    pub last_result: u32,
    /// Probes with at least one result, ascending.
    pub reporters: Vec<u32>,
}

/// The newest known stats by measurement id.
#[derive(Clone, Default)]
pub struct ResultStats(Arc<RwLock<HashMap<u64, Arc<MsmStats>>>>);

impl ResultStats {
    pub fn get(&self, msm_id: u64) -> Option<Arc<MsmStats>> {
        self.0.read().ok()?.get(&msm_id).cloned()
    }

    pub fn replace(&self, stats: HashMap<u64, MsmStats>) {
        if let Ok(mut map) = self.0.write() {
            *map = stats.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        }
    }

    /// The query [`refresh_loop`](Self::refresh_loop) runs on database `db`: one TSV
    /// line per measurement (id, results, newest result, the reporting probes). Built-in
    /// measurements (ids below [`FIRST_MSM_ID`]) are left out: every probe reports to
    /// them, and no Measurement reads their counts.
    pub fn query(db: &str) -> String {
        format!(
            "SELECT msm_id, toUInt64(uniqExact(result_id)), toUInt32(max(timestamp)), \
             groupUniqArray(prb_id) FROM {db}.results WHERE msm_id >= {FIRST_MSM_ID} GROUP BY msm_id"
        )
    }

    /// Parse the TSV output of [`query`](Self::query); malformed lines are skipped.
    pub fn parse(tsv: &str) -> HashMap<u64, MsmStats> {
        tsv.lines()
            .filter_map(|line| {
                let mut cols = line.split('\t');
                let id = cols.next()?.trim().parse().ok()?;
                let results = cols.next()?.trim().parse().ok()?;
                let last_result = cols.next()?.trim().parse().ok()?;
                let list = cols.next()?.trim();
                let inner = list.strip_prefix('[')?.strip_suffix(']')?;
                let mut reporters = inner
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().parse().ok())
                    .collect::<Option<Vec<u32>>>()?;
                reporters.sort_unstable();
                Some((
                    id,
                    MsmStats {
                        results,
                        last_result,
                        reporters,
                    },
                ))
            })
            .collect()
    }

    /// Refresh from ClickHouse every `period`, forever. Failures are logged and retried.
    pub async fn refresh_loop(self, store: Store, period: Duration) {
        let mut tick = tokio::time::interval(period);
        let sql = Self::query(store.database());
        loop {
            tick.tick().await;
            match store.fetch_formatted(&sql, "TSV").await {
                Ok(bytes) => self.replace(Self::parse(&String::from_utf8_lossy(&bytes))),
                Err(e) => tracing::warn!(error = %e, "cannot read result counts"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_lines_become_stats_with_reporters() {
        let parsed = ResultStats::parse(
            "1000001\t12\t1700000000\t[1002,1001]\n1000002\t0\t0\t[]\nnot a line\n",
        );
        assert_eq!(
            parsed.get(&1_000_001),
            Some(&MsmStats {
                results: 12,
                last_result: 1_700_000_000,
                reporters: vec![1001, 1002],
            })
        );
        assert_eq!(parsed[&1_000_002].reporters, Vec::<u32>::new());
        assert_eq!(parsed.len(), 2);
        let stats = ResultStats::default();
        stats.replace(parsed);
        assert_eq!(stats.get(1_000_001).map(|s| s.results), Some(12));
        assert!(stats.get(7).is_none());
        assert!(ResultStats::query("vantage").contains("FROM vantage.results"));
    }
}
