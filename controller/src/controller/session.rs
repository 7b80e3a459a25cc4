//! One probe's SSH session: public-key login against this controller's assignments,
//! the one remote forward that becomes the command channel, the one local forward to
//! the result intake, and the probe's record in `vantage-sessions`. Every other request
//! is refused and counted.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelOpenFailure};
use vantage_core::frame::{INTAKE_HOST, INTAKE_PORT};
use vantage_core::nats::{self as names, probe_key, Assignment, Delivery};
use vantage_core::WIRE_VERSION;
use vantage_platform::bus::now_ms;

use super::intake::{intake, ResultSink};
use super::schedule::{send_schedules, Delivering};
use super::server::Shared;
use crate::keys::fingerprint;
use crate::preauth::Ticket;

/// One probe's session.
pub struct ProbeSession<S: ResultSink> {
    shared: Arc<Shared<S>>,
    peer: Option<SocketAddr>,
    /// Its place among the unauthenticated connections, left when a key is accepted.
    ticket: Arc<Ticket>,
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
    delivered: Arc<AtomicBool>,
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
    /// A session that has not logged in yet.
    pub(super) fn new(shared: Arc<Shared<S>>, peer: SocketAddr, ticket: Arc<Ticket>) -> Self {
        Self {
            shared,
            peer: Some(peer),
            ticket,
            probe: None,
            live: None,
            record: None,
        }
    }

    /// The assignment of the key with fingerprint `fp`, waiting briefly for the watch.
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
                self.ticket.authenticated();
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
pub(super) async fn record_session<S: ResultSink>(
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
