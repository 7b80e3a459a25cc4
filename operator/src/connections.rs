//! Probe connection history into ClickHouse's `probe_connections`: a `connect` row when
//! a probe's session record appears with a new `connected_since_ms` (at that time), a
//! `disconnect` row when the record is deleted (at the time of the delete, with the
//! controller and address of the session it ends).
//!
//! Rows wait in a bounded buffer and are written by one INSERT a second at most; a
//! failed INSERT is retried at the next tick with the rows kept. While ClickHouse is
//! away the buffer fills up to [`MAX_BUFFERED`] rows; past that new rows are dropped and
//! counted (`vantage_operator_connection_rows_dropped`). A replay of the sessions bucket
//! (operator restart) gives the same rows again, which the table's sorting key stores once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use vantage_core::nats::Session;
use vantage_platform::store::{unix_now, ConnectionRow, Store};

/// The most rows waiting for ClickHouse.
pub const MAX_BUFFERED: usize = 100_000;
/// The most rows in one INSERT.
pub const MAX_BATCH: usize = 10_000;

/// What happened to a probe's session record.
#[derive(Clone, Copy, Debug)]
pub enum Change<'a> {
    /// Written (a connection, or an update of one).
    Put(&'a Session),
    /// Deleted at this time (Unix milliseconds).
    Delete { at_ms: i64 },
}

fn seconds(ms: i64) -> u32 {
    u32::try_from(ms.max(0) / 1000).unwrap_or(u32::MAX)
}

/// The row a change makes, given the session known before it (pure). An update of the
/// same session (same `connected_since_ms`) makes none; nor does the delete of a
/// session never seen (its controller is unknown).
pub fn event(
    probe: u32,
    before: Option<&Session>,
    change: Change<'_>,
    now: u32,
) -> Option<ConnectionRow> {
    match change {
        Change::Put(s) => {
            let same = before.is_some_and(|b| b.connected_since_ms == s.connected_since_ms);
            (!same).then(|| ConnectionRow {
                prb_id: probe,
                event: "connect".into(),
                timestamp: seconds(s.connected_since_ms),
                controller: s.controller.clone(),
                address: s.address.clone(),
                inserted_at: now,
            })
        }
        Change::Delete { at_ms } => before.map(|b| ConnectionRow {
            prb_id: probe,
            event: "disconnect".into(),
            timestamp: seconds(at_ms),
            controller: b.controller.clone(),
            address: b.address.clone(),
            inserted_at: now,
        }),
    }
}

/// The buffer of rows to write, shared by the session watch and the writer.
#[derive(Clone, Default)]
pub struct ConnectionLog {
    rows: Arc<Mutex<VecDeque<ConnectionRow>>>,
    /// Rows dropped because the buffer was full.
    pub dropped: Counter,
    /// Rows written.
    pub written: Counter,
}

impl ConnectionLog {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connection_rows_dropped",
            "Connection history rows dropped because ClickHouse was away and the buffer was full",
            self.dropped.clone(),
        );
        registry.register(
            "connection_rows_written",
            "Connection history rows written to ClickHouse",
            self.written.clone(),
        );
    }

    /// Queue `row`; drop it (counted) when the buffer is full.
    pub fn push(&self, row: ConnectionRow) {
        if let Ok(mut rows) = self.rows.lock() {
            if rows.len() >= MAX_BUFFERED {
                self.dropped.inc();
            } else {
                rows.push_back(row);
            }
        }
    }

    /// Queue the row of `change`, if it makes one.
    pub fn record(&self, probe: u32, before: Option<&Session>, change: Change<'_>) {
        if let Some(row) = event(probe, before, change, unix_now()) {
            self.push(row);
        }
    }

    /// Take up to `max` rows, oldest first.
    fn take(&self, max: usize) -> Vec<ConnectionRow> {
        self.rows
            .lock()
            .map(|mut rows| {
                let n = rows.len().min(max);
                rows.drain(..n).collect()
            })
            .unwrap_or_default()
    }

    /// Put rows that could not be written back in front (what does not fit is dropped).
    fn give_back(&self, batch: Vec<ConnectionRow>) {
        if let Ok(mut rows) = self.rows.lock() {
            for row in batch.into_iter().rev() {
                if rows.len() >= MAX_BUFFERED {
                    self.dropped.inc();
                } else {
                    rows.push_front(row);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.rows.lock().map(|r| r.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write what is queued every `period`, one INSERT per tick.
    pub async fn write_loop(self, store: Store, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let batch = self.take(MAX_BATCH);
            if batch.is_empty() {
                continue;
            }
            match store.insert_rows("probe_connections", &batch).await {
                Ok(()) => {
                    self.written.inc_by(batch.len() as u64);
                }
                Err(e) => {
                    tracing::warn!(error = %e, rows = batch.len(), "connection history not written; retrying");
                    self.give_back(batch);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(since_ms: i64, controller: &str) -> Session {
        serde_json::from_value(serde_json::json!({
            "v": 1, "probe_id": 7, "controller": controller, "address": "192.0.2.7",
            "connected_since_ms": since_ms
        }))
        .expect("session")
    }

    #[test]
    fn connects_once_per_session() {
        let a = session(1_700_000_000_500, "c1");
        let row = event(7, None, Change::Put(&a), 9).expect("a connect");
        assert_eq!(
            (
                row.event.as_str(),
                row.timestamp,
                row.controller.as_str(),
                row.address.as_str()
            ),
            ("connect", 1_700_000_000, "c1", "192.0.2.7")
        );
        assert_eq!(row.inserted_at, 9);
        // An update of the same session (delivery state) is no new connection.
        assert!(event(7, Some(&a), Change::Put(&a), 9).is_none());
        // A new session (reconnect elsewhere) is.
        let b = session(1_700_000_100_000, "c2");
        let row = event(7, Some(&a), Change::Put(&b), 9).expect("a reconnect");
        assert_eq!(
            (row.timestamp, row.controller.as_str()),
            (1_700_000_100, "c2")
        );
    }

    #[test]
    fn disconnects_name_the_session_they_end() {
        let a = session(1_700_000_000_000, "c1");
        let row = event(
            7,
            Some(&a),
            Change::Delete {
                at_ms: 1_700_000_050_999,
            },
            9,
        )
        .expect("a disconnect");
        assert_eq!(
            (row.event.as_str(), row.timestamp, row.controller.as_str()),
            ("disconnect", 1_700_000_050, "c1")
        );
        assert!(event(7, None, Change::Delete { at_ms: 1 }, 9).is_none());
    }

    #[test]
    fn the_buffer_is_bounded_and_counts_drops() {
        let log = ConnectionLog::default();
        let a = session(1_000, "c1");
        for _ in 0..MAX_BUFFERED + 3 {
            log.record(7, None, Change::Put(&a));
        }
        assert_eq!(log.len(), MAX_BUFFERED);
        assert_eq!(log.dropped.get(), 3);
        let batch = log.take(MAX_BATCH);
        assert_eq!(
            (batch.len(), log.len()),
            (MAX_BATCH, MAX_BUFFERED - MAX_BATCH)
        );
        log.give_back(batch);
        assert_eq!((log.len(), log.dropped.get()), (MAX_BUFFERED, 3));
    }
}
