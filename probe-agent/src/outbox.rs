//! Results waiting to be sent: a bounded FIFO that drops the oldest result when full.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::sync::Notify;

/// Default capacity of the outbox, in results.
pub const DEFAULT_MAX_BUFFER: usize = 10_000;

/// A bounded FIFO of results.
#[derive(Debug)]
pub struct ResultBuffer {
    queue: VecDeque<Value>,
    capacity: usize,
    dropped: u64,
}

impl ResultBuffer {
    pub fn new(capacity: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    /// Append a result; if full, drop the oldest. Returns whether one was dropped.
    pub fn push(&mut self, result: Value) -> bool {
        let mut dropped = false;
        while self.queue.len() >= self.capacity {
            self.queue.pop_front();
            self.dropped += 1;
            dropped = true;
        }
        self.queue.push_back(result);
        dropped
    }

    pub fn front(&self) -> Option<&Value> {
        self.queue.front()
    }

    pub fn pop_front(&mut self) -> Option<Value> {
        self.queue.pop_front()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Results dropped since start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// The shared outbox: measurements push, the intake writer pops.
#[derive(Debug)]
pub struct Outbox {
    buffer: Mutex<ResultBuffer>,
    notify: Notify,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self {
            buffer: Mutex::new(ResultBuffer::new(capacity)),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ResultBuffer> {
        self.buffer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn push(&self, result: Value) {
        let (dropped, total) = {
            let mut buf = self.lock();
            (buf.push(result), buf.dropped())
        };
        if dropped && (total == 1 || total.is_power_of_two() || total % 1000 == 0) {
            tracing::warn!(
                dropped_total = total,
                "result buffer full; dropped the oldest result"
            );
        }
        self.notify.notify_one();
    }

    /// A copy of the oldest result (it stays queued until [`Outbox::pop_sent`]).
    pub fn peek(&self) -> Option<Value> {
        self.lock().front().cloned()
    }

    /// Remove the oldest result once it was sent.
    pub fn pop_sent(&self) {
        self.lock().pop_front();
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn dropped(&self) -> u64 {
        self.lock().dropped()
    }

    /// Wait until something is pushed (returns at once if a push happened since the
    /// last wait).
    pub async fn pushed(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drops_oldest_and_counts() {
        let mut b = ResultBuffer::new(3);
        for i in 0..5 {
            b.push(json!(i));
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.dropped(), 2);
        assert_eq!(b.pop_front(), Some(json!(2)));
        assert_eq!(b.pop_front(), Some(json!(3)));
        assert_eq!(b.pop_front(), Some(json!(4)));
        assert!(b.is_empty());
    }

    #[tokio::test]
    async fn outbox_peeks_in_order_and_wakes_writer() {
        let outbox = Outbox::new(2);
        outbox.push(json!("a"));
        outbox.pushed().await; // the permit from the push is stored
        outbox.push(json!("b"));
        outbox.push(json!("c"));
        assert_eq!(outbox.dropped(), 1);
        assert_eq!(outbox.peek(), Some(json!("b")));
        outbox.pop_sent();
        assert_eq!(outbox.peek(), Some(json!("c")));
        outbox.pop_sent();
        assert!(outbox.is_empty());
    }
}
