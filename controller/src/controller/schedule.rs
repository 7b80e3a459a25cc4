//! Schedule delivery down a probe's command channel: the full schedule on connect, then
//! every change from the controller's feed, with the delivery state reported on the
//! probe's session record.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use russh::server::Msg;
use russh::Channel;
use vantage_core::frame::{encode, Down};
use vantage_core::nats::{self as names, Delivery};
use vantage_core::WIRE_VERSION;

use super::intake::ResultSink;
use super::server::Shared;
use super::session::record_session;
use crate::feed::{backoff, Subscription, Update};

/// One session's schedule delivery: what it reports on the probe's session record.
pub(super) struct Delivering {
    pub(super) probe: u32,
    pub(super) conn: u64,
    pub(super) record: names::Session,
    /// The record's revision as this session last wrote it.
    pub(super) revision: Option<u64>,
    /// Shared with the session's guard: the first schedule is delivered.
    pub(super) first: Arc<AtomicBool>,
}

impl Delivering {
    /// Record a change of delivery state (only changes are written).
    pub(super) async fn report<S: ResultSink>(&mut self, shared: &Shared<S>, state: Delivery) {
        if self.record.schedule == state {
            return;
        }
        if state == Delivery::Delivered && !self.first.swap(true, Ordering::Relaxed) {
            shared.metrics.awaiting_schedule.dec();
        }
        self.record.schedule = state;
        if self.live(shared) {
            let after = self.revision;
            self.revision = Box::pin(record_session(shared, &self.record, after))
                .await
                .or(after);
        }
    }

    /// Is this session still the probe's live one?
    fn live<S: ResultSink>(&self, shared: &Shared<S>) -> bool {
        shared
            .live
            .read()
            .is_ok_and(|m| m.get(&self.probe).is_some_and(|(c, _)| *c == self.conn))
    }
}

/// Send the probe's full schedule now, then on every change, down the command channel.
/// The session subscribes to the controller's feed before it reads, so that no change
/// falls between the two (see [`crate::feed`]). A failed read is retried with backoff
/// and reported on the probe's session; so is a feed that is down.
pub(super) async fn send_schedules<S: ResultSink>(
    shared: Arc<Shared<S>>,
    mut delivery: Delivering,
    channel: Channel<Msg>,
) {
    let probe = delivery.probe;
    let mut sub: Subscription = shared.feed.subscribe(probe);
    let mut feed_up = shared.feed.state();
    let mut backoff = backoff();
    let current = loop {
        match Box::pin(shared.feed.current(probe)).await {
            Ok(update) => break update,
            Err(e) => {
                tracing::warn!(probe, error = %e, "cannot read the schedule; retrying");
                delivery
                    .report(
                        &shared,
                        Delivery::Failing {
                            error: format!("cannot read the schedule from NATS KV: {e}"),
                        },
                    )
                    .await;
                tokio::time::sleep(backoff.next_delay()).await;
                if !delivery.live(&shared) {
                    return;
                }
            }
        }
    };
    if send(&shared, probe, &channel, &current).await.is_err() {
        return;
    }
    let mut sent_revision = current.revision;
    loop {
        let state = if *feed_up.borrow_and_update() {
            Delivery::Delivered
        } else {
            Delivery::Failing {
                error: "the controller's schedule watch is down; changes are held until it is back"
                    .into(),
            }
        };
        delivery.report(&shared, state).await;
        tokio::select! {
            update = sub.next() => {
                let Some(update) = update else { return };
                if update.revision <= sent_revision {
                    continue;
                }
                if send(&shared, probe, &channel, &update).await.is_err() {
                    return;
                }
                sent_revision = update.revision;
            }
            changed = feed_up.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

async fn send<S: ResultSink>(
    shared: &Shared<S>,
    probe: u32,
    channel: &Channel<Msg>,
    update: &Update,
) -> Result<(), ()> {
    let doc = update.doc();
    let revision = update.revision;
    let tasks = doc.tasks.len();
    let frame = Down::Schedule {
        v: WIRE_VERSION,
        revision,
        tasks: doc.tasks,
    };
    let bytes = encode(&frame).map_err(|_| ())?;
    match channel.data(&bytes[..]).await {
        Ok(()) => {
            shared.metrics.schedules_sent.inc();
            tracing::info!(probe, revision, tasks, "schedule sent");
            Ok(())
        }
        Err(e) => {
            tracing::info!(probe, error = ?e, "command channel closed");
            Err(())
        }
    }
}
