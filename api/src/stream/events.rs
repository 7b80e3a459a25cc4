//! The `probestatus` and `metadata` streams.
//!
//! * `probestatus`: probe connects and disconnects, from the controllers' session
//!   records (NATS KV `vantage-sessions`, key `probe.<id>`): a record written for a new
//!   session is a `connect`, a record deleted (the session ended) a `disconnect`. The
//!   records present when the API starts are the starting state, not events.
//! * `metadata`: a measurement getting its id (`created`) and every change of its RIPE
//!   Atlas status (`status`), from the API's own Measurement reflector.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use serde_json::{json, Value};
use vantage_core::nats::{parse_probe_key, Session, SESSIONS_BUCKET};
use vantage_crd::Measurement;

use super::metrics::Kind;
use super::protocol::{self, Subscription};
use super::session::ClientHandle;
use crate::catalog::Catalog;
use crate::ripe;

/// One `probestatus` or `metadata` subscription of one client.
pub struct EventSub {
    pub client: Arc<ClientHandle>,
    pub sub: Subscription,
    /// Scheme and host for links in measurement objects.
    pub base: String,
}

/// A probe connected or disconnected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeEvent {
    pub prb_id: u32,
    pub connect: bool,
    pub controller: String,
    /// Unix seconds.
    pub timestamp: i64,
}

/// A measurement event.
#[derive(Clone, Debug)]
pub struct MetaEvent {
    pub msm_id: u64,
    /// `created` or `status`.
    pub event: &'static str,
    pub measurement: Arc<Measurement>,
    pub timestamp: i64,
}

/// The event subscriptions.
#[derive(Default)]
pub struct Events {
    subs: RwLock<Vec<Arc<EventSub>>>,
}

impl Events {
    pub fn add(&self, sub: Arc<EventSub>) {
        self.subs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(sub);
    }

    pub fn remove(&self, sub: &Arc<EventSub>) {
        self.subs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| !Arc::ptr_eq(s, sub));
    }

    /// Send a probe event to the `probestatus` subscriptions it matches.
    pub fn probe(&self, ev: &ProbeEvent, catalog: &dyn Catalog) {
        let subs = self.subs.read().unwrap_or_else(|e| e.into_inner());
        let mut plain: Option<Value> = None;
        for s in subs.iter() {
            let Subscription::ProbeStatus(f) = &s.sub else {
                continue;
            };
            if f.prb.is_some_and(|p| p != ev.prb_id) {
                continue;
            }
            let base = plain.get_or_insert_with(|| probe_payload(ev, catalog, false));
            let payload = if f.enrich {
                probe_payload(ev, catalog, true)
            } else {
                base.clone()
            };
            s.client.push(
                Kind::ProbeStatus,
                protocol::frame(protocol::PROBESTATUS, &payload).into(),
            );
        }
    }

    /// Send a measurement event to the `metadata` subscriptions it matches.
    pub fn metadata(&self, ev: &MetaEvent) {
        let subs = self.subs.read().unwrap_or_else(|e| e.into_inner());
        for s in subs.iter() {
            let Subscription::Metadata(f) = &s.sub else {
                continue;
            };
            if f.msm.is_some_and(|m| m != ev.msm_id) {
                continue;
            }
            let Some(msm) = ripe::measurement_json(&ev.measurement, &s.base) else {
                continue;
            };
            if f.kind.as_deref().is_some_and(|k| msm["type"] != k) {
                continue;
            }
            let payload = json!({
                "event": ev.event,
                "msm_id": ev.msm_id,
                "timestamp": ev.timestamp,
                "status": msm["status"].clone(),
                "measurement": msm,
            });
            s.client.push(
                Kind::Metadata,
                protocol::frame(protocol::METADATA, &payload).into(),
            );
        }
    }
}

/// RIPE Atlas's probestatus object: `prb_id`, `event`, `controller`, `timestamp`,
/// `asn`, `prefix`, `country_code` (from the Probe resource), and with `enrichProbes`
/// the probe object itself.
pub fn probe_payload(ev: &ProbeEvent, catalog: &dyn Catalog, enrich: bool) -> Value {
    let probe = catalog
        .probes()
        .into_iter()
        .find(|p| p.spec.id == ev.prb_id)
        .map(|p| ripe::probe_json(&p));
    let field = |a: &str, b: &str| {
        probe
            .as_ref()
            .map(|p| {
                if p[a].is_null() {
                    p[b].clone()
                } else {
                    p[a].clone()
                }
            })
            .unwrap_or(Value::Null)
    };
    let mut out = json!({
        "prb_id": ev.prb_id,
        "event": if ev.connect { "connect" } else { "disconnect" },
        "controller": ev.controller,
        "timestamp": ev.timestamp,
        "asn": field("asn_v4", "asn_v6"),
        "prefix": field("prefix_v4", "prefix_v6"),
        "country_code": field("country_code", "country_code"),
    });
    if enrich {
        out["probe"] = probe.unwrap_or(Value::Null);
    }
    out
}

/// What the session records say about connected probes.
#[derive(Default)]
pub struct Sessions {
    known: HashMap<u32, Session>,
}

impl Sessions {
    /// Apply one KV entry; the event it makes, unless it is part of the starting state
    /// (`initial`) or changes nothing but the schedule delivery.
    pub fn apply(
        &mut self,
        key: &str,
        value: Option<&[u8]>,
        initial: bool,
        now: i64,
    ) -> Option<ProbeEvent> {
        let prb_id = parse_probe_key(key)?;
        match value {
            Some(bytes) => {
                let session: Session = serde_json::from_slice(bytes).ok()?;
                let new = self.known.get(&prb_id).is_none_or(|old| {
                    old.connected_since_ms != session.connected_since_ms
                        || old.controller != session.controller
                });
                let ev = ProbeEvent {
                    prb_id,
                    connect: true,
                    controller: session.controller.clone(),
                    timestamp: session.connected_since_ms.div_euclid(1000),
                };
                self.known.insert(prb_id, session);
                (new && !initial).then_some(ev)
            }
            None => {
                let old = self.known.remove(&prb_id)?;
                Some(ProbeEvent {
                    prb_id,
                    connect: false,
                    controller: old.controller,
                    timestamp: now,
                })
            }
        }
    }
}

/// Follow `vantage-sessions` for ever, sending probe events to `events`.
pub async fn watch_sessions(
    nats: async_nats::Client,
    events: Arc<Events>,
    catalog: Arc<dyn Catalog>,
) {
    let mut sessions = Sessions::default();
    let mut first = true;
    let mut warned = false;
    loop {
        match follow(&nats, &mut sessions, first, &events, catalog.as_ref()).await {
            Ok(()) => tracing::warn!("the vantage-sessions watch ended; watching again"),
            Err(e) if !warned => {
                tracing::warn!(error = %e, "cannot watch vantage-sessions (probestatus stream); retrying (is the operator running, and may the API's NATS user watch the bucket?)");
                warned = true;
            }
            Err(_) => {}
        }
        first = false;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn follow(
    nats: &async_nats::Client,
    sessions: &mut Sessions,
    first: bool,
    events: &Events,
    catalog: &dyn Catalog,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let js = jetstream::new(nats.clone());
    let store = js.get_key_value(SESSIONS_BUCKET).await?;
    // Records up to this revision are the starting state, not events.
    let start = js
        .get_stream(format!("KV_{SESSIONS_BUCKET}"))
        .await?
        .cached_info()
        .state
        .last_sequence;
    let mut watch = store.watch_all().await?;
    while let Some(entry) = watch.next().await {
        let entry = entry?;
        let value = match entry.operation {
            kv::Operation::Put => Some(entry.value.as_ref()),
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        let initial = first && entry.revision <= start;
        let now = chrono::Utc::now().timestamp();
        if let Some(ev) = sessions.apply(&entry.key, value, initial, now) {
            events.probe(&ev, catalog);
        }
    }
    Ok(())
}

/// Poll the catalog for measurement events for ever (the reflector has no change feed
/// of its own; a poll every `every` is cheap, and unchanged objects are skipped by
/// resource version).
pub async fn watch_measurements(catalog: Arc<dyn Catalog>, events: Arc<Events>, every: Duration) {
    let mut seen: HashMap<u64, (Option<String>, Value)> = HashMap::new();
    let mut first = true;
    loop {
        if catalog.ready() || !first {
            for ev in measurement_events(catalog.measurements(), &mut seen, first) {
                events.metadata(&ev);
            }
            first = false;
        }
        tokio::time::sleep(every).await;
    }
}

/// Diff the measurements against `seen` (id to resource version and status).
pub fn measurement_events(
    now: Vec<Arc<Measurement>>,
    seen: &mut HashMap<u64, (Option<String>, Value)>,
    initial: bool,
) -> Vec<MetaEvent> {
    let mut out = Vec::new();
    let ts = chrono::Utc::now().timestamp();
    for m in now {
        let Some(id) = ripe::msm_id(&m) else {
            continue;
        };
        let rv = m.metadata.resource_version.clone();
        if seen.get(&id).is_some_and(|(v, _)| v.is_some() && *v == rv) {
            continue;
        }
        let status = ripe::measurement_json(&m, "")
            .map(|j| j["status"]["id"].clone())
            .unwrap_or(Value::Null);
        let event = match seen.get(&id) {
            None => Some("created"),
            Some((_, old)) if *old != status => Some("status"),
            Some(_) => None,
        };
        seen.insert(id, (rv, status));
        if let Some(event) = event.filter(|_| !initial) {
            out.push(MetaEvent {
                msm_id: id,
                event,
                measurement: m,
                timestamp: ts,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(controller: &str, since: i64) -> Vec<u8> {
        serde_json::to_vec(&Session {
            v: 1,
            probe_id: 7,
            controller: controller.into(),
            address: "192.0.2.1".into(),
            connected_since_ms: since,
            fw: 1,
            schedule: Default::default(),
        })
        .expect("encodes")
    }

    #[test]
    fn sessions_become_connects_and_disconnects() {
        let mut s = Sessions::default();
        // Starting state: no event, but remembered for the disconnect.
        assert_eq!(
            s.apply("probe.7", Some(&record("c0", 1_000)), true, 5),
            None
        );
        // A delivery update of the same session: no event.
        assert_eq!(
            s.apply("probe.7", Some(&record("c0", 1_000)), false, 5),
            None
        );
        let gone = s.apply("probe.7", None, false, 9).expect("disconnect");
        assert_eq!(
            gone,
            ProbeEvent {
                prb_id: 7,
                connect: false,
                controller: "c0".into(),
                timestamp: 9
            }
        );
        let back = s
            .apply("probe.7", Some(&record("c1", 12_000)), false, 13)
            .expect("connect");
        assert!(back.connect);
        assert_eq!((back.controller.as_str(), back.timestamp), ("c1", 12));
        // A new session replacing the old one (another controller) is a connect too.
        assert!(s
            .apply("probe.7", Some(&record("c2", 20_000)), false, 21)
            .is_some_and(|e| e.connect));
        assert_eq!(s.apply("probe.x", None, false, 1), None);
        assert_eq!(s.apply("probe.8", None, false, 1), None);
    }

    fn msm(id: u64, state: &str, rv: &str) -> Arc<Measurement> {
        let yaml = format!(
            "apiVersion: vantage.dev/v1alpha1\nkind: Measurement\nmetadata: {{name: m{id}, namespace: team-a, resourceVersion: \"{rv}\"}}\nspec: {{type: ping, target: 192.0.2.1, description: x, probes: [{{type: country, value: NL, requested: 1}}]}}\nstatus: {{id: {id}, state: {state}}}\n"
        );
        Arc::new(serde_yaml::from_str(&yaml).expect("fixture"))
    }

    #[test]
    fn measurements_become_created_and_status_events() {
        let mut seen = HashMap::new();
        // What exists at start is the starting state.
        assert!(measurement_events(vec![msm(1, "Ongoing", "1")], &mut seen, true).is_empty());
        let evs = measurement_events(
            vec![msm(1, "Ongoing", "1"), msm(2, "Scheduled", "5")],
            &mut seen,
            false,
        );
        assert_eq!(
            evs.iter().map(|e| (e.msm_id, e.event)).collect::<Vec<_>>(),
            vec![(2, "created")]
        );
        // A new resource version with the same status (results counted): no event.
        assert!(measurement_events(vec![msm(2, "Scheduled", "6")], &mut seen, false).is_empty());
        let evs = measurement_events(vec![msm(2, "Ongoing", "7")], &mut seen, false);
        assert_eq!(
            evs.iter().map(|e| (e.msm_id, e.event)).collect::<Vec<_>>(),
            vec![(2, "status")]
        );
        // Rendered for a subscriber: the measurement object with its new status.
        let events = Events::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let client = Arc::new(ClientHandle::for_test(tx));
        events.add(Arc::new(EventSub {
            client,
            sub: Subscription::Metadata(protocol::MetaFilter {
                msm: Some(2),
                kind: None,
            }),
            base: "https://api.example".into(),
        }));
        events.metadata(&evs[0]);
        events.metadata(&MetaEvent {
            msm_id: 1,
            ..evs[0].clone()
        });
        let frame = rx.try_recv().expect("one frame");
        let v: Value = serde_json::from_str(frame.text.as_str()).expect("JSON");
        assert_eq!(v[0], "atlas_metadata");
        assert_eq!(
            (v[1]["event"].as_str(), v[1]["msm_id"].as_u64()),
            (Some("status"), Some(2))
        );
        assert_eq!(v[1]["measurement"]["id"], 2);
        assert_eq!(v[1]["status"], v[1]["measurement"]["status"]);
        assert!(rx.try_recv().is_err(), "msm 1 is filtered out");
    }
}
