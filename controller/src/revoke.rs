//! Revoking a disabled probe's assignment, retried until NATS takes it.
//!
//! The registration server deletes the assignment (`vantage-assignments/probe.<id>`) of a
//! probe whose `Probe` resource is disabled; the probe's controller sees the delete and
//! closes the session. While the assignments bucket has no leader (a NATS node died and
//! the bucket's replicas are electing one: seconds) the read or the delete fails. A
//! revoke tried once then left the disabled probe connected until some later change of
//! its `Probe` happened to trigger another one (21 s in the NATS failover test, and
//! never if nothing changes), so [`revoke`] retries with backoff for as long as the
//! probe stays disabled.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::kv;
use vantage_core::backoff::Backoff;
use vantage_core::nats::probe_key;

/// First wait after a failed attempt; the waits double up to [`MAX_BACKOFF`] (full jitter).
pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why one attempt to revoke failed (the next one follows after a backoff).
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("cannot read the assignment of probe {probe} from NATS KV vantage-assignments: {source}; is NATS up (a cluster electing a leader answers again within seconds)?")]
    Read {
        probe: u32,
        #[source]
        source: kv::EntryError,
    },
    #[error("cannot delete the assignment of probe {probe} from NATS KV vantage-assignments: {source}; is NATS up (a cluster electing a leader answers again within seconds)?")]
    Delete {
        probe: u32,
        #[source]
        source: kv::DeleteError,
    },
}

/// How a revoke ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoked {
    /// The assignment was deleted: the probe's controller closes the session.
    Deleted,
    /// The probe had no assignment (never registered, or already revoked).
    NotAssigned,
    /// The probe was enabled again (or its `Probe` deleted) before NATS took the delete:
    /// nothing was revoked.
    NoLongerDisabled,
}

/// One attempt: delete `probe`'s assignment if it has one (only the revision read, so
/// that a write in between is read again by the next attempt rather than deleted blind).
pub async fn revoke_once(assignments: &kv::Store, probe: u32) -> Result<Revoked, RevokeError> {
    let key = probe_key(probe);
    let entry = assignments
        .entry(&key)
        .await
        .map_err(|source| RevokeError::Read { probe, source })?;
    match entry {
        Some(entry) if entry.operation == kv::Operation::Put => {
            assignments
                .delete_expect_revision(&key, Some(entry.revision))
                .await
                .map_err(|source| RevokeError::Delete { probe, source })?;
            Ok(Revoked::Deleted)
        }
        _ => Ok(Revoked::NotAssigned),
    }
}

/// Revoke `probe`'s assignment, retrying with backoff ([`FIRST_BACKOFF`] up to
/// [`MAX_BACKOFF`]) while NATS fails, as long as `still_disabled()` says the probe is
/// disabled (enabled again or deleted: it stops). Each failure is logged with the
/// attempt number.
pub async fn revoke(
    assignments: &kv::Store,
    probe: u32,
    still_disabled: impl Fn() -> bool,
) -> Revoked {
    let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
    let mut attempt = 1u32;
    loop {
        if !still_disabled() {
            tracing::info!(probe, "probe no longer disabled; its assignment stays");
            return Revoked::NoLongerDisabled;
        }
        match revoke_once(assignments, probe).await {
            Ok(done) => {
                if done == Revoked::Deleted {
                    tracing::info!(probe, attempt, "probe disabled: assignment revoked");
                }
                return done;
            }
            Err(e) => {
                tracing::warn!(probe, attempt, error = %e, "cannot revoke assignment yet; retrying")
            }
        }
        attempt = attempt.saturating_add(1);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Revokes in the background, at most one at a time per probe: the `Probe` watch must
/// not wait for NATS (the registration server's view of every probe follows it), and a
/// disabled probe's every status change would otherwise start one more retry loop.
#[derive(Clone)]
pub struct Revoker {
    assignments: kv::Store,
    in_flight: Arc<Mutex<HashSet<u32>>>,
}

impl Revoker {
    pub fn new(assignments: kv::Store) -> Self {
        Self {
            assignments,
            in_flight: Arc::default(),
        }
    }

    /// Start revoking `probe`'s assignment ([`revoke`]) unless a revoke of it is running.
    pub fn spawn(&self, probe: u32, still_disabled: impl Fn() -> bool + Send + 'static) {
        let fresh = self
            .in_flight
            .lock()
            .map(|mut set| set.insert(probe))
            .unwrap_or(false);
        if !fresh {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            revoke(&this.assignments, probe, still_disabled).await;
            if let Ok(mut set) = this.in_flight.lock() {
                set.remove(&probe);
            }
        });
    }
}
