//! Limits on SSH connections that have not authenticated yet, for both SSH servers
//! (registration and controller), after OpenSSH's `LoginGraceTime`, `MaxStartups` and
//! `PerSourceMaxStartups`.
//!
//! * [`Gate`] counts unauthenticated connections, in all and per source block (an IPv4
//!   address, an IPv6 /64), and refuses a new one at accept: always past a source's
//!   share or past `full`, and with a probability rising from `rate` % at `start` to
//!   100 % at `full` in between (random early drop). A source from which a key was
//!   accepted recently (a probe's home) skips the random drop and `full`, keeping only its
//!   share: an attacker who fills the startups from addresses that never log in does not
//!   lock out the probes that come back after a restart or a network cut.
//! * [`GraceStream`](stream::GraceStream) ends a connection that has not authenticated
//!   within the grace time, whatever it is doing: silent, trickling bytes, or retrying
//!   keys. Once the handler accepts a key the connection leaves the gate's counts and its
//!   deadline; authenticated sessions live by their keepalives.
//! * [`serve`](accept::serve) is the accept loop that puts the two around russh.

mod accept;
mod stream;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub use accept::serve;
pub use stream::GraceStream;

use crate::by_reason::ByReason;

/// OpenSSH's `MaxStartups start:rate:full`: from `start` unauthenticated connections on,
/// a new one is refused with probability `rate` %, rising linearly to 100 % at `full`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxStartups {
    pub start: u32,
    pub rate: u32,
    pub full: u32,
}

impl Default for MaxStartups {
    /// `200:30:1000`: OpenSSH's `10:30:100` scaled to a server that takes thousands of
    /// probes, whose reconnect storms after a restart briefly hold a few hundred
    /// handshakes at once.
    fn default() -> Self {
        Self {
            start: 200,
            rate: 30,
            full: 1000,
        }
    }
}

impl fmt::Display for MaxStartups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.start, self.rate, self.full)
    }
}

/// A `--max-startups` value that is not `start:rate:full`.
#[derive(Debug, thiserror::Error)]
#[error("max-startups {given:?} {why}; write start:rate:full with start <= full and rate <= 100, e.g. 200:30:1000 (or one number N for N:100:N)")]
pub struct MaxStartupsError {
    pub given: String,
    pub why: &'static str,
}

impl FromStr for MaxStartups {
    type Err = MaxStartupsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| MaxStartupsError {
            given: s.to_owned(),
            why,
        };
        let parts: Vec<&str> = s.split(':').collect();
        let num = |p: &str| {
            p.trim()
                .parse::<u32>()
                .map_err(|_| err("has a part that is not a whole number"))
        };
        let m = match parts.as_slice() {
            [full] => {
                let full = num(full)?;
                Self {
                    start: full,
                    rate: 100,
                    full,
                }
            }
            [start, rate, full] => Self {
                start: num(start)?,
                rate: num(rate)?,
                full: num(full)?,
            },
            _ => return Err(err("does not have one or three parts")),
        };
        if m.full == 0 {
            return Err(err("has full = 0, which refuses every connection"));
        }
        if m.start > m.full {
            return Err(err("has start > full"));
        }
        if m.rate > 100 {
            return Err(err("has rate > 100"));
        }
        Ok(m)
    }
}

/// The pre-authentication limits of one SSH server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreAuthLimits {
    /// Authenticated within this, or dropped (`LoginGraceTime`).
    pub grace: Duration,
    pub startups: MaxStartups,
    /// Unauthenticated connections one source block may hold; 0: no per-source limit.
    pub per_source: u32,
}

impl Default for PreAuthLimits {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(30),
            startups: MaxStartups::default(),
            per_source: 32,
        }
    }
}

/// The rule that ended or refused a connection, as the `reason` label of
/// `preauth_dropped_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Random early drop between `start` and `full`.
    MaxStartups,
    /// `full` unauthenticated connections already.
    Full,
    /// The source block holds its share already.
    PerSource,
    /// Not authenticated within the grace time.
    Grace,
}

impl Rule {
    pub fn label(self) -> &'static str {
        match self {
            Rule::MaxStartups => "max_startups",
            Rule::Full => "full",
            Rule::PerSource => "per_source",
            Rule::Grace => "grace",
        }
    }
}

/// The gate's metrics, registered under the server's prefix
/// (`vantage_controller_preauth_*`, `vantage_registration_preauth_*`).
#[derive(Clone, Default)]
pub struct PreAuthMetrics {
    /// Connections that have not authenticated yet.
    pub unauthenticated: Gauge,
    /// Connections refused at accept or ended before authentication, by rule.
    pub dropped: ByReason,
    /// Accept errors (e.g. out of file descriptors); the server waits and goes on.
    pub accept_errors: prometheus_client::metrics::counter::Counter,
}

impl PreAuthMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "preauth_connections",
            "SSH connections that have not authenticated yet",
            self.unauthenticated.clone(),
        );
        registry.register(
            "preauth_dropped",
            "SSH connections refused at accept or closed before authenticating, by rule (reason: max_startups, full, per_source, grace)",
            self.dropped.0.clone(),
        );
        registry.register(
            "accept_errors",
            "Errors accepting TCP connections (e.g. out of file descriptors)",
            self.accept_errors.clone(),
        );
    }
}

/// A source block: an IPv4 address or an IPv6 /64 (one home network).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Source(u128);

impl Source {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(u128::from(u32::from(v4))),
                // Tag v6 blocks so they never equal a v4 address.
                None => Source((u128::from(v6) & !((1u128 << 64) - 1)) | 1),
            },
        }
    }
}

#[derive(Default)]
struct Counts {
    total: u32,
    by_source: HashMap<Source, u32>,
    /// Sources a key was accepted from, oldest first, at most [`KNOWN_SOURCES`].
    known: HashSet<Source>,
    known_order: VecDeque<Source>,
}

/// How many sources that logged in the gate remembers (about 2 MiB); the oldest is
/// forgotten first.
pub const KNOWN_SOURCES: usize = 65_536;

impl Counts {
    fn remember(&mut self, source: Source) {
        if self.known.insert(source) {
            self.known_order.push_back(source);
            if self.known_order.len() > KNOWN_SOURCES {
                if let Some(old) = self.known_order.pop_front() {
                    self.known.remove(&old);
                }
            }
        }
    }
}

/// Counts unauthenticated connections and admits or refuses new ones.
pub struct Gate {
    limits: PreAuthLimits,
    counts: Mutex<Counts>,
    metrics: PreAuthMetrics,
}

impl Gate {
    pub fn new(limits: PreAuthLimits, metrics: PreAuthMetrics) -> Arc<Self> {
        Arc::new(Self {
            limits,
            counts: Mutex::new(Counts::default()),
            metrics,
        })
    }

    pub fn limits(&self) -> PreAuthLimits {
        self.limits
    }

    pub fn metrics(&self) -> &PreAuthMetrics {
        &self.metrics
    }

    /// Admit a new connection from `peer`, or say which rule refuses it (counted).
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Arc<Ticket>, Rule> {
        self.admit_with(peer, rand::random::<f64>())
    }

    /// [`admit`](Self::admit) with the random draw given (in `[0, 1)`), for tests.
    fn admit_with(self: &Arc<Self>, peer: SocketAddr, draw: f64) -> Result<Arc<Ticket>, Rule> {
        let source = Source::of(peer.ip());
        let verdict = {
            let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            let held = counts.by_source.get(&source).copied().unwrap_or(0);
            let known = counts.known.contains(&source);
            match refusal(&self.limits, counts.total, held, known, draw) {
                Some(rule) => Err(rule),
                None => {
                    counts.total += 1;
                    *counts.by_source.entry(source).or_insert(0) += 1;
                    Ok(())
                }
            }
        };
        match verdict {
            Ok(()) => {
                self.metrics.unauthenticated.inc();
                Ok(Arc::new(Ticket {
                    gate: self.clone(),
                    source,
                    released: AtomicBool::new(false),
                }))
            }
            Err(rule) => {
                self.metrics.dropped.count(rule.label());
                Err(rule)
            }
        }
    }

    fn release(&self, source: Source, authenticated: bool) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if authenticated {
            counts.remember(source);
        }
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                counts.by_source.remove(&source);
            }
        }
        drop(counts);
        self.metrics.unauthenticated.dec();
    }

    /// Unauthenticated connections held now.
    pub fn unauthenticated(&self) -> u32 {
        self.counts.lock().map(|c| c.total).unwrap_or(0)
    }
}

/// Whether a connection is refused, given `total` unauthenticated connections, `held` of
/// them from its source, whether a key was accepted from its source before (`known`), and
/// a uniform `draw` in `[0, 1)`.
fn refusal(limits: &PreAuthLimits, total: u32, held: u32, known: bool, draw: f64) -> Option<Rule> {
    if limits.per_source > 0 && held >= limits.per_source {
        return Some(Rule::PerSource);
    }
    if known {
        return None;
    }
    let MaxStartups { start, rate, full } = limits.startups;
    if total >= full {
        return Some(Rule::Full);
    }
    if total >= start {
        // OpenSSH: rate % at start, rising linearly to 100 % at full.
        let span = f64::from(full - start);
        let p = f64::from(rate) / 100.0
            + (1.0 - f64::from(rate) / 100.0) * f64::from(total - start) / span.max(1.0);
        if draw < p {
            return Some(Rule::MaxStartups);
        }
    }
    None
}

/// One admitted connection's place in the gate, shared by its stream and its handler.
/// It leaves the counts when the handler accepts a key, or when the connection ends.
pub struct Ticket {
    gate: Arc<Gate>,
    source: Source,
    released: AtomicBool,
}

impl Ticket {
    /// The handler accepted a key: the connection is no longer pre-auth.
    pub fn authenticated(&self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.gate.release(self.source, true);
        }
    }

    pub fn is_authenticated(&self) -> bool {
        self.released.load(Ordering::Acquire)
    }

    fn grace(&self) -> Duration {
        self.gate.limits.grace
    }

    fn timed_out(&self) {
        self.gate.metrics.dropped.count(Rule::Grace.label());
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.released.swap(true, Ordering::AcqRel) {
            self.gate.release(self.source, false);
        }
    }
}

#[cfg(test)]
mod tests;
