//! The fastpath worker: scores queued measurements in uid order and INSERTs their
//! fastpath rows in batches, retrying while ClickHouse fails. Each stored
//! web_connectivity row is recorded as measured ([`crate::recency`]) for the check-in's
//! order.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use vantage_platform::store::{FastpathRow, Store};

use super::metrics::IntakeMetrics;
use crate::fastpath::Scorer;
use crate::fingerprints::Fingerprints;
use crate::source::Watched;

/// A measurement on its way to the fastpath: its sequence number (uid order) and the
/// measurement, or `None` when it could not be queued (the fastpath skips the number).
pub(super) type Queued = (u64, Option<Value>);

/// Put measurements back in sequence (= uid) order, score them, and INSERT them in
/// batches (at `batch` rows or `wait` after the first ready one); retry a failed INSERT
/// with backoff (the channel fills, and the API waits: backpressure).
pub async fn fastpath_worker(
    mut rx: mpsc::Receiver<Queued>,
    fingerprints: Watched<Fingerprints>,
    store: Store,
    batch: usize,
    wait: Duration,
    metrics: IntakeMetrics,
    recency: crate::recency::Recency,
) {
    let mut scorer = Scorer::default();
    let mut reorder = Reorder::default();
    let mut ready: Vec<Value> = Vec::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let received = match deadline {
            None => rx.recv().await.map(Some),
            Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                Ok(r) => r.map(Some),
                Err(_) => Some(None),
            },
        };
        let closed = match received {
            None => true,
            Some(Some((seq, item))) => {
                ready.extend(reorder.push(seq, item));
                if !ready.is_empty() && deadline.is_none() {
                    deadline = Some(tokio::time::Instant::now() + wait);
                }
                false
            }
            Some(None) => false,
        };
        let due = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
        if ready.is_empty() || !(closed || due || ready.len() >= batch) {
            if closed {
                return;
            }
            continue;
        }
        let fp = fingerprints.get();
        let unknown_before = scorer.unknown_tests;
        let rows: Vec<FastpathRow> = ready.drain(..).map(|m| scorer.next(&m, &fp)).collect();
        metrics
            .unknown_tests
            .inc_by(scorer.unknown_tests - unknown_before);
        deadline = None;
        let mut delay = Duration::from_millis(200);
        while let Err(e) = store.insert_fastpath(&rows).await {
            metrics.fastpath_insert_failures.inc();
            tracing::warn!(error = %e, rows = rows.len(), retry_in = ?delay, "fastpath INSERT failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        metrics.fastpath_rows.inc_by(rows.len() as u64);
        record_measured(&recency, &rows);
        if closed {
            return;
        }
    }
}

/// Record the web_connectivity rows as measured: (country, input, start time; 0, an
/// unreadable time, counts as now).
fn record_measured(recency: &crate::recency::Recency, rows: &[FastpathRow]) {
    let now = chrono::Utc::now().timestamp();
    recency.record(
        rows.iter()
            .filter(|r| r.test_name == "web_connectivity")
            .map(|r| {
                let at = match r.measurement_start_time {
                    0 => now,
                    t => i64::from(t),
                };
                (r.probe_cc.as_str(), r.input.as_str(), at)
            }),
        now,
    );
}

/// Releases items in sequence order, holding back those that arrive early.
#[derive(Debug, Default)]
pub struct Reorder<T> {
    next: u64,
    early: std::collections::BTreeMap<u64, Option<T>>,
}

impl<T> Reorder<T> {
    /// Take item `seq` (`None`: skip the number); return the items now in order.
    pub fn push(&mut self, seq: u64, item: Option<T>) -> Vec<T> {
        let mut out = Vec::new();
        if seq < self.next {
            return out;
        }
        self.early.insert(seq, item);
        while let Some(item) = self.early.remove(&self.next) {
            self.next += 1;
            out.extend(item);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorder_releases_in_sequence_and_skips_holes() {
        let mut r = Reorder::default();
        assert_eq!(r.push(1, Some("b")), Vec::<&str>::new());
        assert_eq!(r.push(2, None), Vec::<&str>::new());
        assert_eq!(r.push(0, Some("a")), vec!["a", "b"]);
        assert_eq!(r.push(3, Some("d")), vec!["d"]);
        assert_eq!(r.push(1, Some("late duplicate")), Vec::<&str>::new());
    }
}
