//! The probe controller: one long SSH session per probe.
//!
//! * A probe is accepted only while registration has assigned it here (the assignment,
//!   with the probe's key, comes from NATS KV `vantage-assignments`).
//! * The probe's remote forward of its allocated port is the command channel: the
//!   controller opens `forwarded-tcpip` through it and sends the probe's full schedule
//!   from KV `vantage-schedules` on connect and on every change, which it learns from
//!   its one watch over the bucket ([`crate::feed`]).
//! * The probe's local forward to the intake endpoint carries results, which are checked
//!   and published to JetStream (`vantage.results.<type>.<msm>`, `Nats-Msg-Id` = result id).
//! * Every other request (sessions, exec, shell, other forwards) is refused and counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use russh::keys::PrivateKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelMsg, ChannelOpenFailure};
use tokio::sync::Notify;
use vantage_core::frame::{encode, Down, LineBuffer, Up, INTAKE_HOST, INTAKE_PORT};
use vantage_core::nats::{
    self as names, parse_probe_key, probe_key, Assignment, Delivery, Heartbeat,
};
use vantage_core::result::Envelope;
use vantage_core::WIRE_VERSION;
use vantage_platform::bus::{now_ms, Bus};

use crate::by_reason::ByReason;
use crate::feed::{backoff, FeedMetrics, ScheduleFeed, Subscription, Update};
use crate::keys::{fingerprint, parse_public};
use crate::spool::Spool;

/// Counters of a controller.
#[derive(Clone, Default)]
pub struct ControllerMetrics {
    pub connected: Gauge,
    pub results: Counter,
    pub schedules_sent: Counter,
    /// Connected probes whose first schedule is not delivered yet.
    pub awaiting_schedule: Gauge,
    /// The probe's command channel could not be opened (the probe gets no schedule).
    pub command_channel_failures: Counter,
    pub feed: FeedMetrics,
    /// Watches (assignments, drain, firmware) that failed or ended and were started again.
    pub watch_restarts: ByReason,
    /// Dropped input, by reason (malformed, too_long, wrong_probe, bad_id).
    pub dropped: ByReason,
    /// Refused logins and requests, by reason.
    pub refused: ByReason,
}

impl ControllerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connected_probes",
            "Probes with a live session",
            self.connected.clone(),
        );
        registry.register(
            "results",
            "Results published to JetStream",
            self.results.clone(),
        );
        registry.register(
            "schedules_sent",
            "Schedules sent to probes",
            self.schedules_sent.clone(),
        );
        registry.register(
            "awaiting_schedule",
            "Connected probes whose first schedule is not delivered yet",
            self.awaiting_schedule.clone(),
        );
        registry.register(
            "command_channel_failures",
            "Command channels (forwarded-tcpip) that could not be opened",
            self.command_channel_failures.clone(),
        );
        self.feed.register(registry);
        registry.register(
            "watch_restarts",
            "NATS KV watches that failed or ended and were started again, by watch",
            self.watch_restarts.0.clone(),
        );
        registry.register(
            "dropped",
            "Input from probes dropped, by reason",
            self.dropped.0.clone(),
        );
        registry.register(
            "refused",
            "Refused logins and requests, by reason",
            self.refused.0.clone(),
        );
    }
    fn drop_one(&self, reason: &str) {
        self.dropped.count(reason);
    }
    fn refuse(&self, reason: &str) {
        self.refused.count(reason);
    }
}

/// Who this controller is, as heartbeats announce it.
#[derive(Clone, Debug)]
pub struct Identity {
    pub name: String,
    /// `host:port` that probes dial.
    pub advertise: String,
    pub capacity: u32,
    pub regions: Vec<String>,
}

/// Publishes results. The JetStream implementation is [`JetStreamResults`].
pub trait ResultSink: Send + Sync + 'static {
    fn publish(
        &self,
        env: &Envelope,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

pub struct JetStreamResults(pub async_nats::jetstream::Context);

impl ResultSink for JetStreamResults {
    async fn publish(&self, env: &Envelope) -> Result<(), String> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", env.common.result_id.as_str());
        let subject = names::result_subject(&env.common.kind, env.common.msm_id);
        let payload = serde_json::to_vec(&env.raw).map_err(|e| e.to_string())?;
        self.0
            .publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

struct Shared<S> {
    id: Identity,
    host_key_line: String,
    bus: Bus,
    sink: S,
    /// Assignments to this controller, by key fingerprint.
    assigned: RwLock<HashMap<String, Assignment>>,
    assigned_changed: Notify,
    connected: AtomicU32,
    /// Live sessions by probe id: (connection number, handle to disconnect it).
    live: RwLock<HashMap<u32, (u64, russh::server::Handle)>>,
    next_conn: std::sync::atomic::AtomicU64,
    draining: std::sync::atomic::AtomicBool,
    spool: Spool,
    feed: Arc<ScheduleFeed>,
    metrics: ControllerMetrics,
}

/// The controller SSH server.
pub struct ControllerServer<S> {
    shared: Arc<Shared<S>>,
}

impl<S: ResultSink> ControllerServer<S> {
    pub fn new(
        id: Identity,
        host_key: &PrivateKey,
        bus: Bus,
        sink: S,
        spool: Spool,
        metrics: ControllerMetrics,
    ) -> Self {
        let host_key_line = crate::keys::public_line(host_key.public_key());
        let feed = ScheduleFeed::new(bus.schedules.clone(), metrics.feed.clone());
        Self {
            shared: Arc::new(Shared {
                id,
                host_key_line,
                bus,
                sink,
                assigned: RwLock::new(HashMap::new()),
                assigned_changed: Notify::new(),
                connected: AtomicU32::new(0),
                live: RwLock::new(HashMap::new()),
                next_conn: std::sync::atomic::AtomicU64::new(1),
                draining: std::sync::atomic::AtomicBool::new(false),
                spool,
                feed,
                metrics,
            }),
        }
    }

    /// Serve on `listener`, with the assignment watch, heartbeats and the spool flusher,
    /// until `shutdown` resolves; then drain: announce it, send every probe back to
    /// registration, and return.
    pub async fn serve(
        mut self,
        listener: tokio::net::TcpListener,
        host_key: PrivateKey,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        use russh::server::Server as _;
        // The feed's start revision is taken before any session can read a schedule.
        self.shared.feed.start().await;
        tokio::spawn(follow_assignments(self.shared.clone()));
        tokio::spawn(heartbeat(self.shared.clone()));
        tokio::spawn(flush_spool(self.shared.clone()));
        tokio::spawn(follow_firmware(self.shared.clone()));
        tokio::spawn(follow_drain(self.shared.clone()));
        let shared = self.shared.clone();
        let config = Arc::new(russh::server::Config {
            keys: vec![host_key],
            methods: (&[russh::MethodKind::PublicKey][..]).into(),
            auth_rejection_time: Duration::from_millis(300),
            auth_rejection_time_initial: Some(Duration::from_millis(0)),
            keepalive_interval: Some(Duration::from_secs(20)),
            keepalive_max: 3,
            inactivity_timeout: None,
            ..Default::default()
        });
        let server = self.run_on_socket(config, &listener);
        tokio::select! {
            result = server => result,
            () = shutdown => {
                drain(&shared).await;
                Ok(())
            }
        }
    }
}

/// Drain while the operator asks for it: `vantage-meta/drain.<name>` exists (before a
/// scale-down removes this pod). A deleted request (the scale-down was called off)
/// ends the drain and the controller takes probes again.
async fn follow_drain<S: ResultSink>(shared: Arc<Shared<S>>) {
    let key = names::drain_key(&shared.id.name);
    loop {
        match shared.bus.meta.watch_with_history(&key).await {
            Ok(mut watch) => {
                while let Some(Ok(entry)) = watch.next().await {
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

/// Stop taking probes and send the connected ones back to registration.
async fn drain<S: ResultSink>(shared: &Shared<S>) {
    shared.draining.store(true, Ordering::Relaxed);
    publish_heartbeat(shared).await;
    let live: Vec<(u32, russh::server::Handle)> = shared
        .live
        .read()
        .map(|m| m.iter().map(|(p, (_, h))| (*p, h.clone())).collect())
        .unwrap_or_default();
    tracing::info!(
        probes = live.len(),
        "draining: sending probes back to registration"
    );
    for (probe, handle) in live {
        let _ = handle
            .disconnect(
                russh::Disconnect::ByApplication,
                "controller draining; register again".into(),
                String::new(),
            )
            .await;
        tracing::debug!(probe, "drained");
    }
    // Give the sessions a moment to close and their guards to clear the sessions bucket.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// On a forced firmware rollout, send the probes it applies to back to registration,
/// where they are offered the release.
async fn follow_firmware<S: ResultSink>(shared: Arc<Shared<S>>) {
    loop {
        match shared.bus.meta.watch(names::FIRMWARE_KEY).await {
            Ok(mut watch) => {
                while let Some(Ok(entry)) = watch.next().await {
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

/// Close the live session of `probe`, if any: its assignment was revoked or moved.
async fn disconnect_probe<S: ResultSink>(shared: &Shared<S>, probe: u32, why: &str) {
    let handle = shared
        .live
        .read()
        .ok()
        .and_then(|m| m.get(&probe).map(|(_, h)| h.clone()));
    if let Some(handle) = handle {
        tracing::info!(probe, why, "closing probe session");
        let _ = handle
            .disconnect(
                russh::Disconnect::ByApplication,
                why.to_owned(),
                String::new(),
            )
            .await;
    }
}

/// Keep `assigned` in step with the assignments bucket.
async fn follow_assignments<S: ResultSink>(shared: Arc<Shared<S>>) {
    loop {
        match shared.bus.assignments.watch_with_history(">").await {
            Ok(mut watch) => {
                while let Some(Ok(entry)) = watch.next().await {
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

async fn heartbeat<S: ResultSink>(shared: Arc<Shared<S>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        publish_heartbeat(&shared).await;
    }
}

async fn publish_heartbeat<S: ResultSink>(shared: &Shared<S>) {
    let subject = names::heartbeat_subject(&shared.id.name);
    {
        let hb = Heartbeat {
            v: WIRE_VERSION,
            controller: shared.id.name.clone(),
            ssh_addr: shared.id.advertise.clone(),
            host_key: shared.host_key_line.clone(),
            connected: shared.connected.load(Ordering::Relaxed),
            capacity: shared.id.capacity,
            draining: shared.draining.load(Ordering::Relaxed),
            regions: shared.id.regions.clone(),
            at_ms: now_ms(),
        };
        match serde_json::to_vec(&hb) {
            Ok(bytes) => {
                if let Err(e) = shared
                    .bus
                    .client
                    .publish(subject.clone(), bytes.into())
                    .await
                {
                    tracing::warn!(error = %e, "cannot publish heartbeat");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode heartbeat"),
        }
    }
}

impl<S: ResultSink> russh::server::Server for ControllerServer<S> {
    type Handler = ProbeSession<S>;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> Self::Handler {
        ProbeSession {
            shared: self.shared.clone(),
            peer,
            probe: None,
            live: None,
            record: None,
        }
    }
}

/// One probe's session.
pub struct ProbeSession<S: ResultSink> {
    shared: Arc<Shared<S>>,
    peer: Option<SocketAddr>,
    probe: Option<Assignment>,
    live: Option<LiveGuard<S>>,
    /// What this session wrote to `vantage-sessions` (rewritten when delivery changes).
    record: Option<(names::Session, Option<u64>)>,
}

/// Marks the probe connected while it lives; on drop, disconnected.
struct LiveGuard<S: ResultSink> {
    shared: Arc<Shared<S>>,
    probe: u32,
    conn: u64,
    /// Set once the first schedule is delivered (or the session ended before).
    delivered: Arc<std::sync::atomic::AtomicBool>,
}

impl<S: ResultSink> Drop for LiveGuard<S> {
    fn drop(&mut self) {
        let shared = self.shared.clone();
        let probe = self.probe;
        shared.connected.fetch_sub(1, Ordering::Relaxed);
        shared.metrics.connected.dec();
        if !self.delivered.swap(true, Ordering::Relaxed) {
            shared.metrics.awaiting_schedule.dec();
        }
        if let Ok(mut live) = shared.live.write() {
            if live.get(&probe).is_some_and(|(conn, _)| *conn == self.conn) {
                live.remove(&probe);
            }
        }
        tracing::info!(probe, "probe disconnected");
        tokio::spawn(async move {
            // Remove the session only if it is still ours (the probe may be elsewhere now).
            let key = probe_key(probe);
            if let Ok(Some(value)) = shared.bus.sessions.get(&key).await {
                let ours = serde_json::from_slice::<names::Session>(&value)
                    .is_ok_and(|s| s.controller == shared.id.name);
                if ours {
                    let _ = shared.bus.sessions.delete(&key).await;
                }
            }
        });
    }
}

impl<S: ResultSink> ProbeSession<S> {
    async fn lookup(&self, fp: &str) -> Option<Assignment> {
        // Registration records the assignment just before it answers the probe, so the
        // watch may be a moment behind: wait briefly for it.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
        loop {
            let notified = self.shared.assigned_changed.notified();
            if let Some(a) = self
                .shared
                .assigned
                .read()
                .ok()
                .and_then(|m| m.get(fp).cloned())
            {
                return Some(a);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

impl<S: ResultSink> russh::server::Handler for ProbeSession<S> {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fp = fingerprint(key.public_key);
        if self.shared.draining.load(Ordering::Relaxed) {
            tracing::info!(peer = ?self.peer, key = %fp, "refused: controller is draining");
            self.shared.metrics.refuse("draining");
            return Ok(Auth::reject());
        }
        match self.lookup(&fp).await {
            Some(a) => {
                self.probe = Some(a);
                Ok(Auth::Accept)
            }
            None => {
                tracing::warn!(peer = ?self.peer, key = %fp, "refused: key is not assigned to this controller");
                self.shared.metrics.refuse("not_assigned");
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        let Some(a) = &self.probe else { return Ok(()) };
        self.shared.connected.fetch_add(1, Ordering::Relaxed);
        self.shared.metrics.connected.inc();
        let conn = self.shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let previous = self
            .shared
            .live
            .write()
            .ok()
            .and_then(|mut live| live.insert(a.probe_id, (conn, session.handle())));
        if let Some((_, old)) = previous {
            // One session per probe: a reconnect replaces a half-dead old session.
            tokio::spawn(async move {
                let reason = "replaced by a new session".to_owned();
                let _ = old
                    .disconnect(russh::Disconnect::ByApplication, reason, String::new())
                    .await;
            });
        }
        self.shared.metrics.awaiting_schedule.inc();
        self.live = Some(LiveGuard {
            shared: self.shared.clone(),
            probe: a.probe_id,
            conn,
            delivered: Arc::default(),
        });
        let record = names::Session {
            v: WIRE_VERSION,
            probe_id: a.probe_id,
            controller: self.shared.id.name.clone(),
            address: self.peer.map(|p| p.ip().to_string()).unwrap_or_default(),
            connected_since_ms: now_ms(),
            fw: a.fw,
            schedule: Delivery::Waiting {
                reason: "waiting for the probe's command channel (its remote forward)".into(),
            },
        };
        // Boxed, here and wherever a long-lived future awaits NATS: a JetStream call's
        // future is kilobytes, and unboxed it would size every session's state machine.
        let revision = Box::pin(record_session(&self.shared, &record, None)).await;
        self.record = Some((record, revision));
        tracing::info!(probe = a.probe_id, peer = ?self.peer, "probe connected");
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let (Some(a), Some(record), Some(live)) =
            (self.probe.clone(), self.record.clone(), self.live.as_ref())
        else {
            return Ok(false);
        };
        let delivery = Delivering {
            probe: a.probe_id,
            conn: live.conn,
            record: record.0,
            revision: record.1,
            first: live.delivered.clone(),
        };
        let local = matches!(address, "127.0.0.1" | "localhost" | "::1");
        if *port != a.command_port || !local {
            tracing::warn!(
                probe = a.probe_id,
                address,
                port = *port,
                allowed = a.command_port,
                "refused remote forward"
            );
            self.shared.metrics.refuse("remote_forward");
            return Ok(false);
        }
        let handle = session.handle();
        let shared = self.shared.clone();
        let address = address.to_owned();
        let port = *port;
        tokio::spawn(async move {
            match handle
                .channel_open_forwarded_tcpip(address, port, "127.0.0.1", 0)
                .await
            {
                Ok(channel) => send_schedules(shared, delivery, channel).await,
                Err(e) => {
                    shared.metrics.command_channel_failures.inc();
                    tracing::warn!(probe = a.probe_id, error = ?e, "cannot open the command channel");
                    let mut d = delivery;
                    d.report(&shared, Delivery::Failing {
                        error: format!("cannot open the command channel: {e:?}; the probe should reconnect"),
                    })
                    .await;
                }
            }
        });
        Ok(true)
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(a) = self.probe.clone() else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        if host != INTAKE_HOST || port != INTAKE_PORT {
            tracing::warn!(
                probe = a.probe_id,
                host,
                port,
                "refused local forward: only the result intake is allowed"
            );
            self.shared.metrics.refuse("local_forward");
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        reply.accept().await;
        tokio::spawn(intake(self.shared.clone(), a.probe_id, channel));
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.shared.metrics.refuse("session");
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.shared.metrics.refuse("streamlocal");
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn streamlocal_forward(
        &mut self,
        _socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.shared.metrics.refuse("streamlocal");
        Ok(false)
    }
}

/// Write the probe's session record (`vantage-sessions/probe.<id>`): a plain put when
/// the session starts (`after` is `None`), later only over the revision this session
/// wrote, so that a session that has ended (its guard deleted the record) or been
/// replaced never writes it back. Returns the new revision.
async fn record_session<S: ResultSink>(
    shared: &Shared<S>,
    record: &names::Session,
    after: Option<u64>,
) -> Option<u64> {
    let bytes = match serde_json::to_vec(record) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(probe = record.probe_id, error = %e, "cannot encode session");
            return None;
        }
    };
    let key = probe_key(record.probe_id);
    let written = match after {
        None => shared
            .bus
            .sessions
            .put(key, bytes.into())
            .await
            .map_err(|e| e.to_string()),
        Some(revision) => shared
            .bus
            .sessions
            .update(key, bytes.into(), revision)
            .await
            .map_err(|e| e.to_string()),
    };
    match written {
        Ok(revision) => Some(revision),
        Err(e) => {
            tracing::warn!(probe = record.probe_id, error = %e, "cannot record session");
            None
        }
    }
}

/// One session's schedule delivery: what it reports on the probe's session record.
struct Delivering {
    probe: u32,
    conn: u64,
    record: names::Session,
    /// The record's revision as this session last wrote it.
    revision: Option<u64>,
    /// Shared with the session's guard: the first schedule is delivered.
    first: Arc<std::sync::atomic::AtomicBool>,
}

impl Delivering {
    /// Record a change of delivery state (only changes are written).
    async fn report<S: ResultSink>(&mut self, shared: &Shared<S>, state: Delivery) {
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
async fn send_schedules<S: ResultSink>(
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

/// Read `Up` frames from the intake channel; publish results.
async fn intake<S: ResultSink>(shared: Arc<Shared<S>>, probe: u32, mut channel: Channel<Msg>) {
    let mut lines = LineBuffer::default();
    while let Some(msg) = channel.wait().await {
        let data = match msg {
            ChannelMsg::Data { data } => data,
            ChannelMsg::Eof | ChannelMsg::Close => break,
            _ => continue,
        };
        for line in lines.push(&data) {
            let Ok(line) = line else {
                shared.metrics.drop_one("too_long");
                tracing::warn!(probe, "dropped an over-long frame");
                continue;
            };
            Box::pin(Intake::of(&shared).frame(probe, &line)).await;
        }
    }
}

/// The result intake's logic, apart from the SSH channel and NATS, so that it can be
/// tested (and fuzzed) alone.
pub struct Intake<'a, S> {
    pub sink: &'a S,
    pub spool: &'a Spool,
    pub metrics: &'a ControllerMetrics,
}

impl<'a, S: ResultSink> Intake<'a, S> {
    fn of(shared: &'a Shared<S>) -> Self {
        Self {
            sink: &shared.sink,
            spool: &shared.spool,
            metrics: &shared.metrics,
        }
    }

    /// One frame from a probe: a malformed one is counted and dropped; the session stays.
    pub async fn frame(&self, probe: u32, line: &[u8]) {
        let frame = match serde_json::from_slice::<Up>(line) {
            Ok(f) => f,
            Err(e) => {
                self.metrics.drop_one("malformed");
                tracing::warn!(probe, error = %e, "dropped a malformed frame");
                return;
            }
        };
        match frame {
            Up::Hello { fw, uptime_s, .. } => tracing::info!(probe, fw, uptime_s, "probe hello"),
            Up::ScheduleAck { revision, .. } => {
                tracing::debug!(probe, revision, "schedule applied")
            }
            Up::Result { result, .. } => {
                let env = match Envelope::from_value(result) {
                    Ok(env) => env,
                    Err(e) => {
                        self.metrics.drop_one("malformed");
                        tracing::warn!(probe, error = %e, "dropped a malformed result");
                        return;
                    }
                };
                if env.common.prb_id != probe {
                    self.metrics.drop_one("wrong_probe");
                    tracing::warn!(
                        probe,
                        claimed = env.common.prb_id,
                        "dropped a result claiming another probe id"
                    );
                    return;
                }
                self.deliver(env).await;
                self.metrics.results.inc();
            }
        }
    }

    /// Publish a result, or spool it to disk while the sink fails. Once anything is spooled,
    /// later results queue behind it, so results reach JetStream in the order they came.
    async fn deliver(&self, env: Envelope) {
        if self.spool.is_empty().await {
            match self.sink.publish(&env).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot publish result; spooling to disk until NATS is back")
                }
            }
        }
        if let Err(e) = self.spool.push(&env.raw).await {
            self.metrics.drop_one("spool_failed");
            tracing::error!(error = %e, result_id = %env.common.result_id, "cannot spool result; dropped");
        }
    }
}

/// Replay the spool, oldest first, whenever the sink works again.
async fn flush_spool<S: ResultSink>(shared: Arc<Shared<S>>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match shared.spool.flush(&shared.sink).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(results = n, "flushed spooled results"),
            Err(e) => tracing::debug!(error = %e, "spool flush paused"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);
    impl ResultSink for Collect {
        async fn publish(&self, env: &Envelope) -> Result<(), String> {
            self.0
                .lock()
                .expect("lock")
                .push(env.common.result_id.clone());
            Ok(())
        }
    }

    fn result_frame(id: &str, probe: u32) -> Vec<u8> {
        encode(&Up::Result {
            v: 1,
            result: serde_json::json!({"result_id": id, "fw": 5020, "msm_id": 7, "prb_id": probe, "timestamp": 1, "type": "ping"}),
        })
        .expect("encode")
    }

    #[tokio::test]
    async fn malformed_frames_are_counted_not_fatal() {
        let dir = tempfile::tempdir().expect("dir");
        let spool = Spool::open(dir.path(), 1 << 20).expect("spool");
        let sink = Collect::default();
        let metrics = ControllerMetrics::default();
        let intake = Intake {
            sink: &sink,
            spool: &spool,
            metrics: &metrics,
        };

        // Deterministic pseudo-random junk, plus hand-picked hostile frames.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut junk = Vec::new();
        for _ in 0..2000 {
            let len = (seed % 300) as usize;
            let frame: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed & 0xff) as u8
                })
                .collect();
            junk.push(frame);
        }
        junk.push(br#"{"kind":"result","v":1,"result":"not an object"}"#.to_vec());
        junk.push(br#"{"kind":"result","v":1,"result":{"result_id":""}}"#.to_vec());
        junk.push(br#"{"kind":"shell","cmd":"rm -rf /"}"#.to_vec());
        junk.push(
            br#"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["#
                .to_vec(),
        );
        for frame in &junk {
            intake.frame(42, frame).await;
        }
        intake.frame(42, &result_frame("spoofed", 41)).await;
        intake.frame(42, &result_frame("good", 42)).await;

        assert_eq!(*sink.0.lock().expect("lock"), vec!["good".to_string()]);
        assert!(
            metrics.dropped.get("malformed") >= 2000,
            "{}",
            metrics.dropped.get("malformed")
        );
        assert_eq!(metrics.dropped.get("wrong_probe"), 1);
        assert_eq!(metrics.results.get(), 1);
    }

    #[tokio::test]
    async fn results_queue_behind_the_spool_in_order() {
        #[derive(Default)]
        struct Down(Mutex<Vec<String>>, std::sync::atomic::AtomicBool);
        impl ResultSink for Down {
            async fn publish(&self, env: &Envelope) -> Result<(), String> {
                if self.1.load(Ordering::SeqCst) {
                    return Err("down".into());
                }
                self.0
                    .lock()
                    .expect("lock")
                    .push(env.common.result_id.clone());
                Ok(())
            }
        }
        let dir = tempfile::tempdir().expect("dir");
        let spool = Spool::open(dir.path(), 1 << 20).expect("spool");
        let sink = Down::default();
        let metrics = ControllerMetrics::default();
        let intake = Intake {
            sink: &sink,
            spool: &spool,
            metrics: &metrics,
        };
        sink.1.store(true, Ordering::SeqCst);
        intake.frame(1, &result_frame("a", 1)).await;
        sink.1.store(false, Ordering::SeqCst);
        // NATS is back, but "a" is still spooled: "b" must queue behind it.
        intake.frame(1, &result_frame("b", 1)).await;
        assert!(sink.0.lock().expect("lock").is_empty());
        spool.flush(&sink).await.expect("flush");
        assert_eq!(
            *sink.0.lock().expect("lock"),
            vec!["a".to_string(), "b".to_string()]
        );
    }
}
