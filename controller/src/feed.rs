//! The schedule feed: one NATS KV watch per controller over the whole
//! `vantage-schedules` bucket, fanned out to the probes connected here.
//!
//! A watch is a JetStream consumer, and nats-server allows 1,000 consumers per stream
//! by default: one watch per probe stopped a controller at its 1,001st probe. With one
//! watch per controller the consumer count is the number of controllers, whatever the
//! number of probes.
//!
//! No change is lost, as with the per-probe "watch, then read" it replaces:
//! * A session subscribes first (its slot in the fan-out), then reads the key's current
//!   entry and sends it. Any later write reaches the slot through the feed; a write the
//!   feed delivered before the slot existed is in the read. Revisions are the bucket's
//!   stream sequence, so a session sends only what is newer than what it sent.
//! * The feed starts from the bucket's last sequence + 1, taken before any session can
//!   read, and resumes after an error from the revision after the last one it saw
//!   (`watch_all_from_revision`). The bucket keeps each key's latest value, so the
//!   resumed feed replays whatever changed while it was down.
//! * A slot holds only the newest update (a `watch` channel): schedules are desired
//!   state, so a slow probe skips revisions it would have replaced at once, and the
//!   feed never waits for one probe.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use vantage_core::backoff::Backoff;
use vantage_core::nats::{parse_probe_key, probe_key, ScheduleDoc};

use crate::stall::{self, Guarded, Next, StallCheck};

/// The longest wait between two attempts to restart the feed or to read a schedule.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// One revision of one probe's schedule key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    /// The bucket's stream sequence of this write (0: the key was never written).
    pub revision: u64,
    /// The value; `None` when the key was deleted or never written.
    pub value: Option<Bytes>,
}

impl Update {
    /// The schedule this update carries: a deleted, missing or unreadable value is the
    /// empty schedule (the probe stops everything rather than keep a stale one).
    pub fn doc(&self) -> ScheduleDoc {
        self.value
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok())
            .unwrap_or_default()
    }

    fn of(entry: &kv::Entry) -> Self {
        Self {
            revision: entry.revision,
            value: (entry.operation == kv::Operation::Put).then(|| entry.value.clone()),
        }
    }
}

/// Counters of the feed.
#[derive(Clone, Default)]
pub struct FeedMetrics {
    /// 1 while the controller's schedule watch is up.
    pub up: Gauge,
    /// Times the watch failed or ended and was started again.
    pub restarts: Counter,
    /// Of those, times it was restarted because it had stalled (see [`crate::stall`]).
    pub stalls: Counter,
    /// Failed reads of one probe's current schedule (retried with backoff).
    pub read_failures: Counter,
    /// Updates handed to a connected probe's session.
    pub dispatched: Counter,
    /// Sessions following the feed.
    pub subscribers: Gauge,
}

impl FeedMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "schedule_feed_up",
            "1 while the controller's one schedule watch (a JetStream consumer) is up",
            self.up.clone(),
        );
        registry.register(
            "schedule_feed_restarts",
            "Times the schedule watch failed and was started again, with backoff",
            self.restarts.clone(),
        );
        registry.register(
            "schedule_feed_stalls",
            "Times the schedule watch delivered nothing while the bucket moved on, and was restarted",
            self.stalls.clone(),
        );
        registry.register(
            "schedule_read_failures",
            "Failed reads of a probe's current schedule, retried with backoff",
            self.read_failures.clone(),
        );
        registry.register(
            "schedule_updates_dispatched",
            "Schedule changes handed to a connected probe's session",
            self.dispatched.clone(),
        );
        registry.register(
            "schedule_subscribers",
            "Probe sessions following the schedule feed",
            self.subscribers.clone(),
        );
    }
}

type Slots = HashMap<u32, (u64, watch::Sender<Option<Update>>)>;

/// The fan-out of one watch to the sessions of this controller.
pub struct ScheduleFeed {
    kv: kv::Store,
    slots: RwLock<Slots>,
    next_slot: std::sync::atomic::AtomicU64,
    up: watch::Sender<bool>,
    metrics: FeedMetrics,
}

/// A session's slot in the feed; dropping it leaves the feed.
pub struct Subscription {
    feed: Arc<ScheduleFeed>,
    probe: u32,
    slot: u64,
    rx: watch::Receiver<Option<Update>>,
}

impl Subscription {
    /// The newest update, once one newer than the last seen arrives. `None` when the
    /// feed is gone.
    pub async fn next(&mut self) -> Option<Update> {
        self.rx.changed().await.ok()?;
        self.rx.borrow_and_update().clone()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut slots) = self.feed.slots.write() {
            // A reconnect may already have replaced this slot with the new session's.
            if slots.get(&self.probe).is_some_and(|(s, _)| *s == self.slot) {
                slots.remove(&self.probe);
                self.feed.metrics.subscribers.dec();
            }
        }
    }
}

impl ScheduleFeed {
    pub fn new(kv: kv::Store, metrics: FeedMetrics) -> Arc<Self> {
        let (up, _) = watch::channel(false);
        Arc::new(Self {
            kv,
            slots: RwLock::new(HashMap::new()),
            next_slot: std::sync::atomic::AtomicU64::new(1),
            up,
            metrics,
        })
    }

    /// Follow the feed's state: `true` while the watch is up.
    pub fn state(&self) -> watch::Receiver<bool> {
        self.up.subscribe()
    }

    /// Take `probe`'s slot (a newer subscription of the same probe, from a new session,
    /// replaces an older one's, which then ends).
    pub fn subscribe(self: &Arc<Self>, probe: u32) -> Subscription {
        let (tx, rx) = watch::channel(None);
        let slot = self
            .next_slot
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut slots) = self.slots.write() {
            if slots.insert(probe, (slot, tx)).is_none() {
                self.metrics.subscribers.inc();
            }
        }
        Subscription {
            feed: self.clone(),
            probe,
            slot,
            rx,
        }
    }

    /// The current entry of `probe`'s schedule key.
    pub async fn current(&self, probe: u32) -> Result<Update, kv::EntryError> {
        let entry = self.kv.entry(probe_key(probe)).await;
        if entry.is_err() {
            self.metrics.read_failures.inc();
        }
        Ok(match entry? {
            Some(e) => Update::of(&e),
            None => Update {
                revision: 0,
                value: None,
            },
        })
    }

    /// Hand an entry to its probe's session, if the probe is connected here.
    fn dispatch(&self, entry: &kv::Entry) {
        let Some(probe) = parse_probe_key(&entry.key) else {
            return;
        };
        let Ok(slots) = self.slots.read() else {
            return;
        };
        if let Some((_, tx)) = slots.get(&probe) {
            tx.send_replace(Some(Update::of(entry)));
            self.metrics.dispatched.inc();
        }
    }

    fn set_up(&self, up: bool) {
        self.metrics.up.set(i64::from(up));
        self.up
            .send_if_modified(|state| std::mem::replace(state, up) != up);
    }

    /// The bucket's next revision, asked of the server: where a fresh feed starts.
    async fn next_revision(&self) -> Result<u64, async_nats::jetstream::stream::InfoError> {
        Ok(stall::last_revision(&self.kv).await? + 1)
    }

    /// Follow the bucket forever: start, and after any failure resume from the revision
    /// after the last one seen, with exponential backoff (full jitter, at most
    /// [`MAX_BACKOFF`]). Each restart is counted; `schedule_feed_up` shows the state and
    /// the sessions report it on their Probe's `ScheduleDelivered` condition.
    pub async fn run(self: Arc<Self>, start: u64) {
        let mut next = start;
        let mut backoff = backoff();
        let mut stall = StallCheck::default();
        loop {
            match self.kv.watch_all_from_revision(next).await {
                Ok(watch) => {
                    self.set_up(true);
                    backoff.reset();
                    tracing::info!(from_revision = next, "following schedules");
                    // A watch that hangs (no entry, no error) while the bucket moves on is
                    // restarted too: see crate::stall.
                    let mut watch = Guarded::new(watch, &self.kv, None, next);
                    loop {
                        match watch.next(&mut stall).await {
                            Next::Entry(entry) => self.dispatch(&entry),
                            Next::Failed(e) => {
                                tracing::warn!(error = %e, "schedule watch failed; restarting it");
                                break;
                            }
                            Next::Ended => {
                                tracing::warn!("schedule watch ended; restarting it");
                                break;
                            }
                            Next::Stalled => {
                                tracing::warn!(from_revision = watch.next_revision(), "schedule watch stalled: the bucket has revisions it did not deliver; restarting it");
                                self.metrics.stalls.inc();
                                break;
                            }
                        }
                    }
                    next = watch.next_revision();
                }
                Err(e) => {
                    tracing::warn!(error = %e, from_revision = next, "cannot watch schedules; retrying")
                }
            }
            self.set_up(false);
            self.metrics.restarts.inc();
            tokio::time::sleep(backoff.next_delay()).await;
        }
    }

    /// Start the feed from the bucket's current end, retrying until the bucket answers.
    /// Call before accepting sessions, so that no session can read a revision the feed
    /// would then skip.
    pub async fn start(self: &Arc<Self>) {
        let mut backoff = backoff();
        let start = loop {
            match self.next_revision().await {
                Ok(n) => break n,
                Err(e) => {
                    self.metrics.restarts.inc();
                    tracing::warn!(error = %e, "cannot read the schedules bucket; retrying");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        };
        tokio::spawn(self.clone().run(start));
    }
}

/// The feed's backoff: from [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`], full jitter.
pub fn backoff() -> Backoff {
    Backoff::new(FIRST_BACKOFF, MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleted_or_unreadable_values_are_the_empty_schedule() {
        let gone = Update {
            revision: 9,
            value: None,
        };
        assert!(gone.doc().tasks.is_empty());
        let junk = Update {
            revision: 10,
            value: Some(Bytes::from_static(b"{not json")),
        };
        assert!(junk.doc().tasks.is_empty());
    }
}
