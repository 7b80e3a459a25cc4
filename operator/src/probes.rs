//! Probe sessions (from the controllers, via NATS KV) and Probe status.
//!
//! Controllers write `vantage-sessions/probe.<id>` when a probe connects and delete it
//! when it goes. The operator keeps the set in memory (selection reads it) and writes
//! Probe status in batches, by server-side apply: one pass per second, one apply per
//! changed probe, at most [`MAX_STATUS_WRITES_PER_SECOND`] a second. A probe that flaps within a
//! second costs one write; when 10k probes connect at once, their statuses follow over
//! 10000 / 50 = 200 s while selection (which reads the in-memory set) sees them at once.
//!
//! This writer is the only one of Probe status, and it sends the whole status it owns
//! (server-side apply removes a field the manager stops sending): connection fields,
//! conditions, and `systemTags`, which it takes from the newest derivation
//! ([`crate::system_tags`], which marks a probe dirty when its tags change).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use vantage_core::nats::{parse_probe_key, Delivery, Session};
use vantage_crd::conditions::{self, reason};
use vantage_crd::{apply_status, Probe, ProbeStatus};

use crate::connections::{Change, ConnectionLog};
use crate::system_tags::SystemTags;
use crate::FIELD_MANAGER;

/// The most Probe status patches the operator sends per second.
pub const MAX_STATUS_WRITES_PER_SECOND: usize = 50;

/// Live sessions by probe id, plus the probes whose status must be written.
#[derive(Clone, Default)]
pub struct Sessions {
    inner: Arc<RwLock<SessionsInner>>,
}

#[derive(Default)]
struct SessionsInner {
    live: HashMap<u32, Session>,
    dirty: BTreeSet<u32>,
}

impl Sessions {
    pub fn connected(&self) -> BTreeSet<u32> {
        self.inner
            .read()
            .map(|s| s.live.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Connected probes by controller name.
    pub fn by_controller(&self) -> HashMap<String, u32> {
        let mut counts = HashMap::new();
        if let Ok(s) = self.inner.read() {
            for session in s.live.values() {
                *counts.entry(session.controller.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    pub fn get(&self, probe: u32) -> Option<Session> {
        self.inner.read().ok()?.live.get(&probe).cloned()
    }

    pub fn up(&self, s: Session) {
        if let Ok(mut inner) = self.inner.write() {
            inner.dirty.insert(s.probe_id);
            inner.live.insert(s.probe_id, s);
        }
    }

    pub fn down(&self, probe: u32) {
        if let Ok(mut inner) = self.inner.write() {
            inner.live.remove(&probe);
            inner.dirty.insert(probe);
        }
    }

    /// Have `probe`'s status written again (its system tags changed).
    pub fn mark_dirty(&self, probe: u32) {
        if let Ok(mut inner) = self.inner.write() {
            inner.dirty.insert(probe);
        }
    }

    /// Take at most `max` probes whose status must be written; the rest wait their turn.
    fn take_dirty(&self, max: usize) -> BTreeSet<u32> {
        self.inner
            .write()
            .map(|mut s| {
                let rest = s
                    .dirty
                    .iter()
                    .nth(max)
                    .copied()
                    .map(|first_left| s.dirty.split_off(&first_left));
                let taken = std::mem::take(&mut s.dirty);
                s.dirty = rest.unwrap_or_default();
                taken
            })
            .unwrap_or_default()
    }

    /// Follow the sessions bucket forever (reconnecting the watch when it ends); each
    /// connection and disconnection goes to `log` (the connection history).
    pub async fn follow(self, kv: async_nats::jetstream::kv::Store, log: ConnectionLog) {
        loop {
            match kv.watch_with_history(">").await {
                Ok(mut watch) => {
                    while let Some(entry) = watch.next().await {
                        let Ok(entry) = entry else { break };
                        let Some(probe) = parse_probe_key(&entry.key) else {
                            continue;
                        };
                        let before = self.get(probe);
                        match entry.operation {
                            async_nats::jetstream::kv::Operation::Put => {
                                match serde_json::from_slice::<Session>(&entry.value) {
                                    Ok(s) => {
                                        log.record(probe, before.as_ref(), Change::Put(&s));
                                        self.up(s)
                                    }
                                    Err(e) => {
                                        tracing::warn!(key = %entry.key, error = %e, "unreadable session entry")
                                    }
                                }
                            }
                            _ => {
                                let at_ms = entry.created.unix_timestamp().saturating_mul(1000);
                                log.record(probe, before.as_ref(), Change::Delete { at_ms });
                                self.down(probe)
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot watch probe sessions"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// The status a probe should have, given its session and its newest system tags (pure;
/// `None`: the tags it shows stay).
pub fn probe_status(
    current: Option<&ProbeStatus>,
    session: Option<&Session>,
    system_tags: Option<Vec<String>>,
    now: &str,
) -> ProbeStatus {
    let mut status = current.cloned().unwrap_or_default();
    if let Some(tags) = system_tags {
        status.system_tags = tags;
    }
    match session {
        Some(s) => {
            status.connected = true;
            status.controller = Some(s.controller.clone());
            status.address = Some(s.address.clone());
            status.connected_since =
                k8s_openapi::jiff::Timestamp::from_millisecond(s.connected_since_ms)
                    .ok()
                    .map(|t| t.to_string());
            status.firmware = (s.fw > 0).then_some(s.fw);
            status.last_seen = Some(now.to_owned());
        }
        None => {
            if status.connected {
                status.last_seen = Some(now.to_owned());
            }
            status.connected = false;
        }
    }
    if let Some((ok, reason, message)) = delivery_condition(session) {
        let now = Time(
            now.parse::<k8s_openapi::jiff::Timestamp>()
                .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now()),
        );
        conditions::set(
            &mut status.conditions,
            conditions::SCHEDULE_DELIVERED,
            ok,
            reason,
            message,
            None,
            now,
        );
    }
    status
}

/// The Probe's `ScheduleDelivered` condition, from its session: none while the
/// controller does not report delivery (older controllers).
fn delivery_condition(session: Option<&Session>) -> Option<(bool, &'static str, String)> {
    let Some(s) = session else {
        return Some((
            false,
            reason::DISCONNECTED,
            "the probe has no controller session, so it receives no schedule".to_owned(),
        ));
    };
    match &s.schedule {
        Delivery::Unknown => None,
        Delivery::Delivered => Some((
            true,
            reason::DELIVERED,
            format!(
                "controller {} delivered the schedule and sends every change",
                s.controller
            ),
        )),
        Delivery::Waiting { reason: why } => Some((
            false,
            reason::AWAITING_COMMAND_CHANNEL,
            format!("controller {}: {why}", s.controller),
        )),
        Delivery::Failing { error } => Some((
            false,
            reason::DELIVERY_FAILING,
            format!(
                "controller {} cannot deliver the schedule: {error}; it retries with backoff \
                 (see vantage_controller_schedule_feed_up and schedule_read_failures)",
                s.controller
            ),
        )),
    }
}

/// Write changed Probe statuses, at most once per `period`, forever.
pub async fn status_writer(
    client: Client,
    probes: Store<Probe>,
    sessions: Sessions,
    system_tags: SystemTags,
    period: Duration,
    max_per_period: usize,
) {
    let api: Api<Probe> = Api::all(client);
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let dirty = sessions.take_dirty(max_per_period);
        if dirty.is_empty() {
            continue;
        }
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        for probe in probes.state().iter().filter(|p| dirty.contains(&p.spec.id)) {
            let status = probe_status(
                probe.status.as_ref(),
                sessions.get(probe.spec.id).as_ref(),
                system_tags.get(probe.spec.id),
                &now,
            );
            if let Err(e) = apply_status(&api, &probe.name_any(), FIELD_MANAGER, &status).await {
                tracing::warn!(probe = probe.spec.id, error = %e, "cannot write probe status");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_probes_are_written_at_a_bounded_rate() {
        let sessions = Sessions::default();
        for id in 0..120 {
            sessions.down(id);
        }
        assert_eq!(sessions.take_dirty(50).len(), 50);
        assert_eq!(sessions.take_dirty(50).len(), 50);
        let last = sessions.take_dirty(50);
        assert_eq!(last.len(), 20);
        assert_eq!(last.first(), Some(&100));
        assert!(sessions.take_dirty(50).is_empty());
        sessions.mark_dirty(7);
        assert_eq!(
            sessions.take_dirty(50).into_iter().collect::<Vec<_>>(),
            vec![7]
        );
    }

    #[test]
    fn status_follows_sessions() {
        let s = Session {
            v: 1,
            probe_id: 7,
            controller: "ctl-0".into(),
            address: "10.0.0.7".into(),
            connected_since_ms: 1_700_000_000_000,
            fw: 5020,
            schedule: vantage_core::nats::Delivery::Delivered,
        };
        let up = probe_status(None, Some(&s), None, "2026-01-01T00:00:00Z");
        assert!(up.connected);
        assert_eq!(up.controller.as_deref(), Some("ctl-0"));
        assert_eq!(up.connected_since.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(up.firmware, Some(5020));
        let delivered =
            conditions::get(&up.conditions, conditions::SCHEDULE_DELIVERED).expect("condition");
        assert_eq!(
            (delivered.status.as_str(), delivered.reason.as_str()),
            ("True", reason::DELIVERED)
        );
        let failing = Session {
            schedule: Delivery::Failing {
                error: "maximum consumers limit reached".into(),
            },
            ..s.clone()
        };
        let failed = probe_status(Some(&up), Some(&failing), None, "2026-01-01T00:00:30Z");
        let c =
            conditions::get(&failed.conditions, conditions::SCHEDULE_DELIVERED).expect("condition");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", reason::DELIVERY_FAILING)
        );
        assert!(c.message.contains("maximum consumers"), "{}", c.message);
        assert_eq!(c.last_transition_time.0.to_string(), "2026-01-01T00:00:30Z");
        let down = probe_status(
            Some(&up),
            None,
            Some(vec!["system-anchor".into()]),
            "2026-01-01T00:01:00Z",
        );
        assert_eq!(down.system_tags, vec!["system-anchor".to_owned()]);
        let kept = probe_status(Some(&down), None, None, "2026-01-01T00:01:01Z");
        assert_eq!(
            kept.system_tags,
            vec!["system-anchor".to_owned()],
            "no new derivation: the tags shown are sent again, not dropped"
        );
        assert!(!down.connected);
        let c =
            conditions::get(&down.conditions, conditions::SCHEDULE_DELIVERED).expect("condition");
        assert_eq!(c.reason, reason::DISCONNECTED);
        assert_eq!(down.last_seen.as_deref(), Some("2026-01-01T00:01:00Z"));
        assert_eq!(
            down.controller.as_deref(),
            Some("ctl-0"),
            "last controller is kept"
        );
    }
}
