//! Result counts per measurement, read from ClickHouse in the background.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use vantage_platform::store::Store;

/// The newest known counts: msm_id -> (results, newest result's Unix seconds).
#[derive(Clone, Default)]
pub struct ResultStats(Arc<RwLock<HashMap<u64, (u64, u32)>>>);

impl ResultStats {
    pub fn get(&self, msm_id: u64) -> Option<(u64, u32)> {
        self.0.read().ok()?.get(&msm_id).copied()
    }

    pub fn replace(&self, counts: HashMap<u64, (u64, u32)>) {
        if let Ok(mut map) = self.0.write() {
            *map = counts;
        }
    }

    /// Refresh from ClickHouse every `period`, forever. Failures are logged and retried.
    pub async fn refresh_loop(self, store: Store, period: Duration) {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            match store.measurement_stats().await {
                Ok(rows) => self.replace(
                    rows.into_iter()
                        .map(|r| (r.msm_id, (r.results, r.last_result)))
                        .collect(),
                ),
                Err(e) => tracing::warn!(error = %e, "cannot read result counts"),
            }
        }
    }
}
