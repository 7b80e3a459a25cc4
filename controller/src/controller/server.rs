//! The controller's SSH server: its state shared by every session, the russh server
//! config, the background tasks it starts, heartbeats, and draining (sending every
//! probe back to registration).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use russh::keys::PrivateKey;
use tokio::sync::Notify;
use vantage_core::nats::{self as names, Assignment, Heartbeat};
use vantage_core::WIRE_VERSION;
use vantage_platform::bus::{now_ms, Bus};

use super::intake::{flush_spool, ResultSink};
use super::metrics::ControllerMetrics;
use super::session::ProbeSession;
use super::watch::{follow_assignments, follow_drain, follow_firmware};
use crate::feed::ScheduleFeed;
use crate::preauth::{self, Gate, PreAuthLimits};
use crate::spool::Spool;

/// Who this controller is, as heartbeats announce it.
#[derive(Clone, Debug)]
pub struct Identity {
    pub name: String,
    /// `host:port` that probes dial.
    pub advertise: String,
    pub capacity: u32,
    pub regions: Vec<String>,
}

/// What the server, its background tasks and every session share.
pub(super) struct Shared<S> {
    pub(super) id: Identity,
    pub(super) host_key_line: String,
    pub(super) bus: Bus,
    pub(super) sink: S,
    /// Assignments to this controller, by key fingerprint.
    pub(super) assigned: RwLock<HashMap<String, Assignment>>,
    pub(super) assigned_changed: Notify,
    pub(super) connected: AtomicU32,
    /// Live sessions by probe id: (connection number, handle to disconnect it).
    pub(super) live: RwLock<HashMap<u32, (u64, russh::server::Handle)>>,
    pub(super) next_conn: AtomicU64,
    pub(super) draining: AtomicBool,
    pub(super) spool: Spool,
    pub(super) feed: Arc<ScheduleFeed>,
    pub(super) metrics: ControllerMetrics,
}

/// The controller SSH server.
pub struct ControllerServer<S> {
    shared: Arc<Shared<S>>,
    preauth: PreAuthLimits,
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
                next_conn: AtomicU64::new(1),
                draining: AtomicBool::new(false),
                spool,
                feed,
                metrics,
            }),
            preauth: PreAuthLimits::default(),
        }
    }

    /// Limits on connections that have not authenticated (default [`PreAuthLimits::default`]).
    pub fn preauth(mut self, limits: PreAuthLimits) -> Self {
        self.preauth = limits;
        self
    }

    /// Serve on `listener`, with the assignment watch, heartbeats and the spool flusher,
    /// until `shutdown` resolves; then drain: announce it, send every probe back to
    /// registration, and return.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        host_key: PrivateKey,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
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
            // Authenticated sessions live by their keepalives; before authentication the
            // gate's grace time applies.
            keepalive_interval: Some(Duration::from_secs(20)),
            keepalive_max: 3,
            inactivity_timeout: None,
            ..Default::default()
        });
        let gate = Gate::new(self.preauth, self.shared.metrics.preauth.clone());
        let sessions = self.shared.clone();
        let server = preauth::serve(&listener, config, gate, move |peer, ticket| {
            ProbeSession::new(sessions.clone(), peer, ticket)
        });
        tokio::select! {
            result = server => result,
            () = shutdown => {
                drain(&shared).await;
                Ok(())
            }
        }
    }
}

/// Stop taking probes and send the connected ones back to registration.
pub(super) async fn drain<S: ResultSink>(shared: &Shared<S>) {
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

/// Close the live session of `probe`, if any: its assignment was revoked or moved.
pub(super) async fn disconnect_probe<S: ResultSink>(shared: &Shared<S>, probe: u32, why: &str) {
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

async fn heartbeat<S: ResultSink>(shared: Arc<Shared<S>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        publish_heartbeat(&shared).await;
    }
}

pub(super) async fn publish_heartbeat<S: ResultSink>(shared: &Shared<S>) {
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
