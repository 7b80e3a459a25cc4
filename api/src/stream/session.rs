//! One WebSocket client: its bounded outbound queue ([`ClientHandle`]), the loop that
//! writes the queue to the socket and reads `atlas_subscribe`/`atlas_unsubscribe`, and
//! the slow-consumer rule: a client whose queue is full is sent an `atlas_error` and
//! closed, so that no client can make the API buffer without bound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::events::EventSub;
use super::metrics::Kind;
use super::protocol::{self, Request, Subscription};
use super::results::ResultSub;
use super::Hub;

/// How long the closing `atlas_error` may take to reach a slow client.
const FAREWELL: Duration = Duration::from_secs(5);

/// A frame waiting for the socket.
#[derive(Debug)]
pub struct Frame {
    pub kind: Kind,
    pub text: Utf8Bytes,
}

/// The producers' side of a client: a bounded queue that is never waited on by the
/// fan-out (a full queue marks the client slow instead).
pub struct ClientHandle {
    tx: mpsc::Sender<Frame>,
    slow: AtomicBool,
    kick: Notify,
    hub_metrics: super::StreamMetrics,
}

impl ClientHandle {
    /// Queue a frame; a full queue marks the client slow. False when not queued.
    pub fn push(&self, kind: Kind, text: Utf8Bytes) -> bool {
        match self.tx.try_send(Frame { kind, text }) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.mark_slow();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queue a frame, waiting for room (the backlog, which is paced by the client).
    pub async fn push_wait(&self, kind: Kind, text: Utf8Bytes) -> bool {
        self.tx.send(Frame { kind, text }).await.is_ok()
    }

    /// The client cannot keep up: it is told so and closed.
    pub fn mark_slow(&self) {
        if !self.slow.swap(true, Ordering::AcqRel) {
            self.hub_metrics.slow_dropped.inc();
            self.kick.notify_one();
        }
    }

    /// Queue `[name, payload]`.
    pub fn control(&self, name: &str, payload: &Value) -> bool {
        self.push(Kind::Control, protocol::frame(name, payload).into())
    }

    pub fn error(&self, detail: &str) -> bool {
        self.control(protocol::ERROR, &Value::String(detail.to_owned()))
    }

    #[cfg(test)]
    pub(crate) fn for_test(tx: mpsc::Sender<Frame>) -> Self {
        Self {
            tx,
            slow: AtomicBool::new(false),
            kick: Notify::new(),
            hub_metrics: super::StreamMetrics::default(),
        }
    }
}

/// A subscription of this client.
enum Active {
    Result {
        params: Value,
        sub: Arc<ResultSub>,
        backlog: Option<JoinHandle<()>>,
    },
    Event {
        params: Value,
        sub: Arc<EventSub>,
    },
}

impl Active {
    fn params(&self) -> &Value {
        match self {
            Active::Result { params, .. } | Active::Event { params, .. } => params,
        }
    }
}

/// Serve one client until it leaves, fails or is too slow.
pub async fn run(hub: Arc<Hub>, mut ws: WebSocket, base: String) {
    let (tx, mut rx) = mpsc::channel::<Frame>(hub.config.queue);
    let client = Arc::new(ClientHandle {
        tx,
        slow: AtomicBool::new(false),
        kick: Notify::new(),
        hub_metrics: hub.metrics.clone(),
    });
    hub.metrics.clients.inc();
    let mut active: Vec<Active> = Vec::new();
    loop {
        tokio::select! {
            biased;
            _ = client.kick.notified() => {
                farewell(&mut ws, &hub).await;
                break;
            }
            frame = rx.recv() => {
                let Some(frame) = frame else { break };
                tokio::select! {
                    biased;
                    _ = client.kick.notified() => {
                        farewell(&mut ws, &hub).await;
                        break;
                    }
                    sent = ws.send(Message::Text(frame.text)) => {
                        if sent.is_err() {
                            break;
                        }
                        hub.metrics.sent(frame.kind);
                    }
                }
            }
            msg = ws.recv() => match msg {
                Some(Ok(Message::Text(text))) => {
                    handle(&hub, &client, &mut active, text.as_str(), &base).await;
                }
                Some(Ok(Message::Binary(_))) => {
                    client.error("send text frames: JSON arrays such as [\"atlas_subscribe\", {...}]");
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            }
        }
    }
    for a in active {
        remove(&hub, a).await;
    }
    hub.metrics.clients.dec();
}

/// Tell a slow client why it is closed, if the socket takes it in time.
async fn farewell(ws: &mut WebSocket, hub: &Hub) {
    let detail = format!(
        "the client reads too slowly: {} messages were waiting for it, so the stream is closed; read faster or subscribe to fewer results (msm, prb, type filters)",
        hub.config.queue
    );
    let text = protocol::frame(protocol::ERROR, &Value::String(detail));
    let bye = async {
        if ws.send(Message::Text(text.into())).await.is_ok() {
            hub.metrics.sent(Kind::Control);
        }
        let _ = ws.send(Message::Close(None)).await;
    };
    let _ = tokio::time::timeout(FAREWELL, bye).await;
}

async fn remove(hub: &Hub, a: Active) {
    match a {
        Active::Result { sub, backlog, .. } => {
            if let Some(task) = backlog {
                task.abort();
            }
            hub.results.remove(&sub).await;
        }
        Active::Event { sub, .. } => hub.events.remove(&sub),
    }
}

async fn handle(
    hub: &Arc<Hub>,
    client: &Arc<ClientHandle>,
    active: &mut Vec<Active>,
    text: &str,
    base: &str,
) {
    match protocol::parse(text) {
        Err(detail) => {
            client.error(&detail);
        }
        Ok(Request::Unsubscribe { params }) => {
            match active.iter().position(|a| a.params() == &params) {
                Some(i) => {
                    remove(hub, active.swap_remove(i)).await;
                    client.control(protocol::UNSUBSCRIBED, &params);
                }
                None => {
                    client.error(&format!(
                        "{}: no subscription has the parameters {params}; send the parameters of an earlier atlas_subscribe",
                        protocol::UNSUBSCRIBE
                    ));
                }
            }
        }
        Ok(Request::Subscribe { sub, params }) => {
            if active.iter().any(|a| a.params() == &params) {
                client.error(&format!("already subscribed with the parameters {params}"));
                return;
            }
            if active.len() >= hub.config.max_subscriptions {
                client.error(&format!(
                    "too many subscriptions on one connection (at most {}); unsubscribe first or open another connection",
                    hub.config.max_subscriptions
                ));
                return;
            }
            match sub {
                Subscription::Result(filter) => {
                    let backlog = filter.backlog;
                    let sub = Arc::new(ResultSub::new(client.clone(), filter, hub.config.pending));
                    if let Err(detail) = hub.results.add(&sub).await {
                        client.error(&detail);
                        return;
                    }
                    client.control(protocol::SUBSCRIBED, &params);
                    let task = if backlog {
                        let (hub, sub) = (hub.clone(), sub.clone());
                        Some(tokio::spawn(async move { hub.send_backlog(&sub).await }))
                    } else {
                        sub.open_now();
                        None
                    };
                    active.push(Active::Result {
                        params,
                        sub,
                        backlog: task,
                    });
                }
                Subscription::ProbeStatus(_) | Subscription::Metadata(_) => {
                    if matches!(sub, Subscription::ProbeStatus(_)) && !hub.has_nats() {
                        client.error("probestatus is off: the API runs without NATS (--nats-url)");
                        return;
                    }
                    let sub = Arc::new(EventSub {
                        client: client.clone(),
                        sub,
                        base: base.to_owned(),
                    });
                    hub.events.add(sub.clone());
                    client.control(protocol::SUBSCRIBED, &params);
                    active.push(Active::Event { params, sub });
                }
            }
        }
    }
}
