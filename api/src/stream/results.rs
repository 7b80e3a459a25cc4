//! The `result` stream: live results from NATS fanned out to subscriptions, and the
//! backlog from ClickHouse joined to them without a gap or a duplicate.
//!
//! One NATS subscription per measurement that someone streams (`vantage.results.*.<msm>`)
//! and one for the whole firehose (`vantage.results.>`) while a subscription names no
//! measurement; each result is parsed and framed once and handed to every matching
//! subscription. A subscription starts *gated*: live results are held (bounded) while
//! `atlas_subscribed` and the backlog go out; opening the gate sends the held results
//! that the backlog did not contain. Because the NATS subscription is in force before
//! ClickHouse is read, a result published after the subscription is held, and one
//! stored before the read is in the backlog. A result published just before the
//! subscription but stored after the read (the collector's batching delay) is found by
//! a second read of the backlog a few seconds later (`catch_up`); identities are
//! tracked until then so that nothing is sent twice.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::ws::Utf8Bytes;
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::metrics::Kind;
use super::protocol::{self, Head, ResultFilter};
use super::session::ClientHandle;

/// How long subscribing on NATS may take.
const SUBSCRIBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A live result, parsed and framed once for every subscriber.
pub struct LiveResult {
    pub identity: String,
    pub frame: Utf8Bytes,
}

/// Parse a result payload; `None` when it is not a result.
fn live_result(payload: &[u8]) -> Option<(LiveResult, ResultKey)> {
    let head = Head::parse(payload)?;
    let raw = std::str::from_utf8(payload).ok()?;
    let key = ResultKey {
        msm: head.msm_id,
        prb: head.prb_id,
        kind: head.kind.clone().into_owned(),
        src: head.src_addr.parse().ok(),
        from: head.from.parse().ok(),
    };
    Some((
        LiveResult {
            identity: head.identity(),
            frame: protocol::result_frame(raw).into(),
        },
        key,
    ))
}

/// The filterable fields of a live result.
pub struct ResultKey {
    msm: u64,
    prb: u32,
    kind: String,
    src: Option<std::net::IpAddr>,
    from: Option<std::net::IpAddr>,
}

impl ResultKey {
    fn matches(&self, f: &ResultFilter) -> bool {
        f.msm.is_none_or(|m| m == self.msm)
            && f.prb.is_none_or(|p| p == self.prb)
            && f.kind.as_deref().is_none_or(|k| k == self.kind)
            && f.source
                .is_none_or(|ip| self.src == Some(ip) || self.from == Some(ip))
    }
}

struct Gate {
    open: bool,
    held: VecDeque<Arc<LiveResult>>,
    /// While `tracking`: identities sent (backlog, held, live), so that the catch-up
    /// read of the backlog and the live stream never send one twice.
    tracking: bool,
    sent: HashSet<String>,
}

/// One `result` subscription of one client.
pub struct ResultSub {
    client: Arc<ClientHandle>,
    pub filter: ResultFilter,
    held_max: usize,
    gate: Mutex<Gate>,
}

impl ResultSub {
    pub fn new(client: Arc<ClientHandle>, filter: ResultFilter, held_max: usize) -> Self {
        Self {
            client,
            filter,
            held_max,
            gate: Mutex::new(Gate {
                open: false,
                held: VecDeque::new(),
                tracking: false,
                sent: HashSet::new(),
            }),
        }
    }

    pub fn client(&self) -> &Arc<ClientHandle> {
        &self.client
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hand a live result to this subscription (never waits).
    fn deliver(&self, r: &Arc<LiveResult>) {
        let mut g = self.gate();
        if !g.open {
            if g.held.len() >= self.held_max {
                drop(g);
                self.client.mark_slow();
            } else {
                g.held.push_back(r.clone());
            }
            return;
        }
        if g.tracking && !g.sent.insert(r.identity.clone()) {
            return;
        }
        drop(g);
        self.client.push(Kind::Result, r.frame.clone());
    }

    /// No backlog: let live results through now (whatever arrived since the
    /// subscription began goes first).
    pub fn open_now(&self) {
        let mut g = self.gate();
        for r in std::mem::take(&mut g.held) {
            if !self.client.push(Kind::Result, r.frame.clone()) {
                break;
            }
        }
        g.open = true;
    }

    /// The backlog (whose identities are `sent`) is out: send what was held meanwhile,
    /// minus what the backlog had, at the client's pace, then let live results through,
    /// tracking identities until [`ResultSub::stop_tracking`]. False when the client
    /// went away.
    pub async fn open_after(&self, sent: HashSet<String>) -> bool {
        {
            let mut g = self.gate();
            g.sent = sent;
            g.tracking = true;
        }
        loop {
            let batch: Vec<Arc<LiveResult>> = {
                let mut g = self.gate();
                if g.held.is_empty() {
                    g.open = true;
                    return true;
                }
                let held = std::mem::take(&mut g.held);
                held.into_iter()
                    .filter(|r| g.sent.insert(r.identity.clone()))
                    .collect()
            };
            for r in batch {
                if !self.client.push_wait(Kind::Result, r.frame.clone()).await {
                    return false;
                }
            }
        }
    }

    /// Whether a stored result found late (the catch-up read) is still to be sent;
    /// claims it if so.
    pub fn claim(&self, identity: &str) -> bool {
        let mut g = self.gate();
        g.sent.insert(identity.to_owned())
    }

    /// The catch-up read is done: forget the identities.
    pub fn stop_tracking(&self) {
        let mut g = self.gate();
        g.tracking = false;
        g.sent = HashSet::new();
    }
}

type Subs = Arc<RwLock<Vec<Arc<ResultSub>>>>;

/// A NATS subscription and the stream subscriptions it feeds. Dropping it stops the
/// task, which drops the NATS subscription.
struct Topic {
    subs: Subs,
    task: JoinHandle<()>,
}

impl Drop for Topic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Live results by measurement (`None`: the firehose).
pub struct Topics {
    nats: Option<async_nats::Client>,
    topics: tokio::sync::Mutex<HashMap<Option<u64>, Topic>>,
}

impl Topics {
    pub fn new(nats: Option<async_nats::Client>) -> Self {
        Self {
            nats,
            topics: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Add a subscription; when this returns Ok, every result published from now on
    /// reaches it. The error says why live results are unavailable.
    pub async fn add(&self, sub: &Arc<ResultSub>) -> Result<(), String> {
        let key = sub.filter.msm;
        let mut topics = self.topics.lock().await;
        if let Some(t) = topics.get(&key) {
            t.subs
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(sub.clone());
            return Ok(());
        }
        let Some(nats) = &self.nats else {
            return Err("live results are off: the API runs without NATS (--nats-url)".to_owned());
        };
        let subject = match key {
            Some(msm) => crate::live::subject(msm),
            None => vantage_core::nats::RESULTS_SUBJECTS.to_owned(),
        };
        let unavailable = |e: &dyn std::fmt::Display| {
            format!("live results are unavailable: NATS refused the subscription ({e}); try again later")
        };
        // The SUB reaches the server before the backlog is read. Bounded in time: the
        // lock held here is also what unsubscribing clients wait for.
        let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
            let feed = nats.subscribe(subject).await.map_err(|e| unavailable(&e))?;
            nats.flush().await.map_err(|e| unavailable(&e))?;
            Ok::<_, String>(feed)
        })
        .await;
        let mut feed = match subscribed {
            Ok(feed) => feed?,
            Err(_) => return Err(unavailable(&"no answer from NATS within 5 s")),
        };
        let subs: Subs = Arc::new(RwLock::new(vec![sub.clone()]));
        let fed = subs.clone();
        let task = tokio::spawn(async move {
            while let Some(msg) = feed.next().await {
                let Some((result, key)) = live_result(&msg.payload) else {
                    continue;
                };
                let result = Arc::new(result);
                let subs = fed.read().unwrap_or_else(|e| e.into_inner());
                for s in subs.iter() {
                    if key.matches(&s.filter) {
                        s.deliver(&result);
                    }
                }
            }
        });
        topics.insert(key, Topic { subs, task });
        Ok(())
    }

    pub async fn remove(&self, sub: &Arc<ResultSub>) {
        let key = sub.filter.msm;
        let mut topics = self.topics.lock().await;
        let empty = match topics.get(&key) {
            Some(t) => {
                let mut subs = t.subs.write().unwrap_or_else(|e| e.into_inner());
                subs.retain(|s| !Arc::ptr_eq(s, sub));
                subs.is_empty()
            }
            None => false,
        };
        if empty {
            topics.remove(&key);
        }
    }

    /// NATS subscriptions held now (for tests: they are given back).
    pub async fn open_topics(&self) -> usize {
        self.topics.lock().await.len()
    }
}

/// The backlog query: stored results of the subscription's measurement from the last
/// `window_s` seconds, oldest first, at most `limit`.
pub fn backlog_sql(db: &str, f: &ResultFilter, window_s: u64, limit: usize) -> String {
    let mut sql = format!(
        "SELECT raw FROM {db}.results FINAL WHERE msm_id = {} AND timestamp >= now() - {window_s}",
        f.msm.unwrap_or(0)
    );
    if let Some(p) = f.prb {
        sql.push_str(&format!(" AND prb_id = {p}"));
    }
    if let Some(k) = &f.kind {
        // A type is one of protocol::RESULT_TYPES, so it needs no quoting.
        sql.push_str(&format!(" AND type = '{k}'"));
    }
    sql.push_str(&format!(" ORDER BY timestamp, prb_id LIMIT {limit}"));
    sql
}

/// One stored result: its identity and frame, if it passes the filter.
pub fn backlog_frame(raw: &str, f: &ResultFilter) -> Option<(String, String)> {
    let head = Head::parse(raw.as_bytes())?;
    if !f.matches(&head) {
        return None;
    }
    Some((head.identity(), protocol::result_frame(raw)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_sql_has_the_filters() {
        let f = ResultFilter {
            msm: Some(1001),
            prb: Some(7),
            kind: Some("ping".into()),
            source: None,
            backlog: true,
        };
        assert_eq!(
            backlog_sql("db", &f, 3600, 100),
            "SELECT raw FROM db.results FINAL WHERE msm_id = 1001 AND timestamp >= now() - 3600 AND prb_id = 7 AND type = 'ping' ORDER BY timestamp, prb_id LIMIT 100"
        );
        let raw = r#"{"result_id":"a","msm_id":1001,"prb_id":7,"type":"ping","from":"192.0.2.1"}"#;
        assert_eq!(
            backlog_frame(raw, &f).map(|(id, _)| id),
            Some("a".to_owned())
        );
        let other = r#"{"result_id":"b","msm_id":1001,"prb_id":8,"type":"ping"}"#;
        assert_eq!(backlog_frame(other, &f), None);
    }
}
