//! The controller's NATS KV watches, each restarted when it fails, ends or stalls
//! (crate::stall): assignments (who may connect here), drain requests from the
//! operator, and forced firmware rollouts.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv;
use vantage_core::nats::{self as names, parse_probe_key, Assignment};

use super::intake::ResultSink;
use super::server::{disconnect_probe, drain, publish_heartbeat, Shared};
use crate::keys::{fingerprint, parse_public};
use crate::stall::{self, Guarded, Next, StallCheck};

/// Drain while the operator asks for it: `vantage-meta/drain.<name>` exists (before a
/// scale-down removes this pod). A deleted request (the scale-down was called off)
/// ends the drain and the controller takes probes again.
pub(super) async fn follow_drain<S: ResultSink>(shared: Arc<Shared<S>>) {
    let key = names::drain_key(&shared.id.name);
    let mut stall = StallCheck::default();
    loop {
        match shared.bus.meta.watch_with_history(&key).await {
            Ok(watch) => {
                // Restarted when it fails, ends or hangs while the key moves on
                // (crate::stall); a restart delivers the key's latest value again, and a
                // drain is idempotent.
                let mut watch = Guarded::new(watch, &shared.bus.meta, Some(&key), 1);
                while let Some(entry) = next_or_restart(&mut watch, &mut stall, "drain").await {
                    match entry.operation {
                        kv::Operation::Put => {
                            tracing::info!("the operator asks this controller to drain");
                            drain(&shared).await;
                        }
                        _ => {
                            if shared.draining.swap(false, Ordering::Relaxed) {
                                tracing::info!("drain called off; taking probes again");
                                publish_heartbeat(&shared).await;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch drain requests"),
        }
        shared.metrics.watch_restarts.count("drain");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// On a forced firmware rollout, send the probes it applies to back to registration,
/// where they are offered the release.
pub(super) async fn follow_firmware<S: ResultSink>(shared: Arc<Shared<S>>) {
    let key = names::FIRMWARE_KEY;
    let mut stall = StallCheck::default();
    // Releases from the next revision of the key on: the current one was offered at
    // registration. Restarts resume after the last delivered one, so that a forced
    // rollout published while the watch was down is not missed.
    let mut next = loop {
        match stall::key_revision(&shared.bus.meta, key).await {
            Some(last) => break last + 1,
            None => {
                tracing::warn!("cannot read the firmware release key; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    loop {
        match shared.bus.meta.watch_from_revision(key, next).await {
            Ok(watch) => {
                let mut watch = Guarded::new(watch, &shared.bus.meta, Some(key), next);
                while let Some(entry) = next_or_restart(&mut watch, &mut stall, "firmware").await {
                    next = watch.next_revision();
                    if entry.operation != kv::Operation::Put {
                        continue;
                    }
                    let Ok(target) = serde_json::from_slice::<names::FirmwareTarget>(&entry.value)
                    else {
                        continue;
                    };
                    if !target.forced {
                        continue;
                    }
                    let stale: Vec<u32> = shared
                        .assigned
                        .read()
                        .map(|m| {
                            m.values()
                                .filter(|a| {
                                    a.fw < target.version
                                        && vantage_firmware::in_rollout(
                                            a.probe_id,
                                            target.version,
                                            target.percentage,
                                        )
                                })
                                .map(|a| a.probe_id)
                                .collect()
                        })
                        .unwrap_or_default();
                    tracing::info!(
                        version = target.version,
                        probes = stale.len(),
                        "forced firmware rollout"
                    );
                    for probe in stale {
                        disconnect_probe(&shared, probe, "forced firmware update: register again")
                            .await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch firmware releases"),
        }
        shared.metrics.watch_restarts.count("firmware");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Keep `assigned` in step with the assignments bucket.
pub(super) async fn follow_assignments<S: ResultSink>(shared: Arc<Shared<S>>) {
    let mut stall = StallCheck::default();
    loop {
        match shared.bus.assignments.watch_with_history(">").await {
            Ok(watch) => {
                // Nothing delivered yet: only revisions from 1 on are owed.
                let mut watch = Guarded::new(watch, &shared.bus.assignments, None, 1);
                while let Some(entry) = next_or_restart(&mut watch, &mut stall, "assignment").await
                {
                    let Some(probe) = parse_probe_key(&entry.key) else {
                        continue;
                    };
                    let assignment = match entry.operation {
                        kv::Operation::Put => {
                            serde_json::from_slice::<Assignment>(&entry.value).ok()
                        }
                        _ => None,
                    };
                    let still_mine = assignment
                        .as_ref()
                        .is_some_and(|a| a.controller == shared.id.name);
                    let was_mine = if let Ok(mut map) = shared.assigned.write() {
                        let before = map.len();
                        map.retain(|_, a| a.probe_id != probe);
                        let was_mine = map.len() != before;
                        if let Some(a) = assignment.filter(|a| a.controller == shared.id.name) {
                            if let Some(key) = parse_public(&a.public_key) {
                                map.insert(fingerprint(&key), a);
                            }
                        }
                        was_mine
                    } else {
                        false
                    };
                    shared.assigned_changed.notify_waiters();
                    if was_mine && !still_mine {
                        disconnect_probe(
                            &shared,
                            probe,
                            "assignment revoked (probe disabled or moved)",
                        )
                        .await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot watch assignments"),
        }
        shared.metrics.watch_restarts.count("assignments");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The next entry of a controller watch, or None (logged) when it must be restarted.
async fn next_or_restart(
    watch: &mut Guarded<'_>,
    stall: &mut StallCheck,
    what: &str,
) -> Option<kv::Entry> {
    match watch.next(stall).await {
        Next::Entry(entry) => Some(entry),
        Next::Failed(e) => {
            tracing::warn!(error = %e, "{what} watch failed; restarting it");
            None
        }
        Next::Ended => None,
        Next::Stalled => {
            tracing::warn!(
                from_revision = watch.next_revision(),
                "{what} watch stalled: it has revisions it did not deliver; restarting it"
            );
            None
        }
    }
}
