//! Leader election on a `coordination.k8s.io/v1` Lease, as controller-runtime operators
//! do it (`--leader-elect`).
//!
//! One replica holds the Lease and does the leader-only work (every reconciler and the
//! schedule publishing); the others wait. The holder renews the Lease every
//! [`RETRY_PERIOD`]; a replica takes it over once its `renewTime` is more than
//! `leaseDurationSeconds` old. Every write is a `PUT` carrying the `resourceVersion`
//! just read (or a `POST` when there is no Lease yet), so of two replicas racing for the
//! same Lease the API server lets one win and answers the other 409 Conflict.
//!
//! A holder that cannot renew within [`RENEW_DEADLINE`], or that finds another holder in
//! the Lease, has lost it: [`Elector::hold`] returns and the caller stops all leader-only
//! work at once (the operator exits, and Kubernetes restarts it as a follower). On
//! SIGTERM the holder gives the Lease up ([`Elector::release`]) so that another replica
//! takes over within a retry period instead of a lease duration.
//!
//! The decisions are pure ([`decide`], [`claimed`], [`released`], [`renew_expired`]);
//! [`Elector`] only reads and writes through the API.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The Lease's name unless `--lease-name` says otherwise.
pub const DEFAULT_LEASE_NAME: &str = "vantage-operator";
/// How long a Lease stays held after its last renewal (controller-runtime's default).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long the holder keeps trying to renew before it gives up leadership.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often every replica tries to acquire or renew.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Which Lease, who we are, and the timings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica's identity: `POD_NAME`, or the host name with the process id.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// The Lease `name` in `namespace`, held as `identity`, with controller-runtime's
    /// timings (15 s, 10 s, 2 s).
    pub fn new(name: &str, namespace: &str, identity: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            identity: identity.to_owned(),
            lease_duration: LEASE_DURATION,
            renew_deadline: RENEW_DEADLINE,
            retry_period: RETRY_PERIOD,
        }
    }
}

/// `POD_NAME` when given (unique in a Deployment, kept across container restarts);
/// else `<hostname>_<pid>`, so that two processes on one host never share an identity.
pub fn default_identity(pod_name: Option<&str>) -> String {
    if let Some(p) = pod_name.map(str::trim).filter(|p| !p.is_empty()) {
        return p.to_owned();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "operator".to_owned());
    format!("{host}_{}", std::process::id())
}

/// What to do with the Lease as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// There is no Lease: create it, held by us.
    Create,
    /// Nobody holds it (released), or `previous` let it expire: take it.
    Acquire { previous: Option<String> },
    /// We hold it: renew it.
    Renew,
    /// `holder` holds it until `until`: wait.
    Wait { holder: String, until: Timestamp },
}

/// The Lease's holder, if it names one.
pub fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty())
}

/// When the Lease's current holding ends: its last renewal (or acquisition) plus its
/// duration. None: it carries no time, so it is not held.
pub fn expiry(lease: &Lease, default_duration: Duration) -> Option<Timestamp> {
    let spec = lease.spec.as_ref()?;
    let since = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let secs = spec
        .lease_duration_seconds
        .map(i64::from)
        .unwrap_or(default_duration.as_secs() as i64);
    since.checked_add(SignedDuration::from_secs(secs)).ok()
}

/// The step for `identity` given the Lease as read (None: it does not exist) at `now`.
pub fn decide(
    lease: Option<&Lease>,
    identity: &str,
    now: Timestamp,
    default_duration: Duration,
) -> Step {
    let Some(lease) = lease else {
        return Step::Create;
    };
    match holder(lease) {
        None => Step::Acquire { previous: None },
        Some(h) if h == identity => Step::Renew,
        Some(h) => match expiry(lease, default_duration) {
            Some(until) if now < until => Step::Wait {
                holder: h.to_owned(),
                until,
            },
            _ => Step::Acquire {
                previous: Some(h.to_owned()),
            },
        },
    }
}

/// The Lease as `identity` writes it to acquire or renew at `now`: `current` (None: a
/// new Lease `name` in `namespace`) with us as holder. Its metadata (and so its
/// `resourceVersion`) is kept, which makes the write conditional. A change of holder
/// counts a transition and sets `acquireTime`.
pub fn claimed(current: Option<&Lease>, cfg: &LeaseConfig, now: Timestamp) -> Lease {
    let old = current.and_then(|l| l.spec.clone()).unwrap_or_default();
    let ours = old.holder_identity.as_deref() == Some(cfg.identity.as_str());
    let transitions = match (current, ours) {
        (None, _) => 0,
        (Some(_), true) => old.lease_transitions.unwrap_or(0),
        (Some(_), false) => old.lease_transitions.unwrap_or(0).saturating_add(1),
    };
    let metadata = match current {
        Some(l) => l.metadata.clone(),
        None => ObjectMeta {
            name: Some(cfg.name.clone()),
            namespace: Some(cfg.namespace.clone()),
            ..Default::default()
        },
    };
    Lease {
        metadata,
        spec: Some(LeaseSpec {
            holder_identity: Some(cfg.identity.clone()),
            lease_duration_seconds: Some(cfg.lease_duration.as_secs().max(1) as i32),
            acquire_time: if ours {
                old.acquire_time.or(Some(MicroTime(now)))
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..old
        }),
    }
}

/// The Lease as its holder gives it up at `now` (on SIGTERM): no holder, a one-second
/// duration (the API refuses 0), renewed now. controller-runtime releases the same way.
pub fn released(current: &Lease, now: Timestamp) -> Lease {
    let old = current.spec.clone().unwrap_or_default();
    Lease {
        metadata: current.metadata.clone(),
        spec: Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            renew_time: Some(MicroTime(now)),
            ..old
        }),
    }
}

/// Whether a holder whose last successful renewal was `since_renewal` ago must give up
/// leadership: it could not renew within the renew deadline.
pub fn renew_expired(since_renewal: Duration, renew_deadline: Duration) -> bool {
    since_renewal >= renew_deadline
}

/// The outcome of one acquire-or-renew attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the Lease (created, acquired or renewed).
    Held { acquired: bool },
    /// Another replica holds it.
    HeldBy { holder: String, until: Timestamp },
    /// Another replica wrote the Lease between our read and our write (409).
    Conflict,
}

/// Why the holder stopped being leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// Another replica holds the Lease now.
    Taken { holder: String },
    /// No renewal succeeded within the renew deadline; `last_error` is the last failure.
    Deadline {
        since_renewal: Duration,
        last_error: Option<String>,
    },
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Taken { holder } => write!(f, "the lease is now held by {holder}"),
            Lost::Deadline {
                since_renewal,
                last_error,
            } => {
                write!(f, "no renewal succeeded for {since_renewal:?}")?;
                if let Some(e) = last_error {
                    write!(f, " (last error: {e})")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot {action} Lease {namespace}/{name}: {source}; check that the operator's service account may get, create and update leases.coordination.k8s.io in {namespace}")]
pub struct LeaseError {
    pub action: &'static str,
    pub namespace: String,
    pub name: String,
    #[source]
    pub source: kube::Error,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// `vantage_operator_leader` (1 while this replica does the leader-only work) and
/// `vantage_operator_leader_transitions` (times this replica became or stopped being
/// leader).
#[derive(Clone, Default)]
pub struct LeaderMetrics {
    pub leader: Gauge,
    pub transitions: Counter,
}

impl LeaderMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "leader",
            "1 while this replica is the leader and runs the reconcilers and schedule publishing",
            self.leader.clone(),
        );
        registry.register(
            "leader_transitions",
            "Times this replica became or stopped being the leader",
            self.transitions.clone(),
        );
    }
}

/// Reads and writes the Lease for one replica.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
}

impl Elector {
    pub fn new(client: Client, cfg: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    fn err(&self, action: &'static str, source: kube::Error) -> LeaseError {
        LeaseError {
            action,
            namespace: self.cfg.namespace.clone(),
            name: self.cfg.name.clone(),
            source,
        }
    }

    /// One attempt: read the Lease, [`decide`], write if the step says so.
    pub async fn try_acquire_or_renew(&self) -> Result<Attempt, LeaseError> {
        let current = self
            .api
            .get_opt(&self.cfg.name)
            .await
            .map_err(|e| self.err("read", e))?;
        let now = Timestamp::now();
        let step = decide(
            current.as_ref(),
            &self.cfg.identity,
            now,
            self.cfg.lease_duration,
        );
        let pp = PostParams::default();
        let written = match &step {
            Step::Wait { holder, until } => {
                return Ok(Attempt::HeldBy {
                    holder: holder.clone(),
                    until: *until,
                })
            }
            Step::Create => self
                .api
                .create(&pp, &claimed(None, &self.cfg, now))
                .await
                .map_err(|e| (e, "create")),
            Step::Acquire { .. } | Step::Renew => self
                .api
                .replace(
                    &self.cfg.name,
                    &pp,
                    &claimed(current.as_ref(), &self.cfg, now),
                )
                .await
                .map_err(|e| (e, "update")),
        };
        match written {
            Ok(_) => Ok(Attempt::Held {
                acquired: step != Step::Renew,
            }),
            Err((e, _)) if is_conflict(&e) => Ok(Attempt::Conflict),
            Err((e, action)) => Err(self.err(action, e)),
        }
    }

    /// Wait until this replica holds the Lease, trying every retry period; logs who
    /// holds it meanwhile.
    pub async fn acquire(&self) {
        let mut last_holder: Option<String> = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Held { .. }) => return,
                Ok(Attempt::HeldBy { holder, until }) => {
                    if last_holder.as_deref() != Some(holder.as_str()) {
                        tracing::info!(lease = %self.cfg.name, %holder, until = %until, identity = %self.cfg.identity, "follower: another replica holds the lease; waiting");
                        last_holder = Some(holder);
                    }
                }
                Ok(Attempt::Conflict) => {
                    tracing::debug!(lease = %self.cfg.name, "lost a race for the lease; trying again")
                }
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(self.cfg.retry_period).await;
        }
    }

    /// Renew the Lease every retry period while we hold it; return why we stopped
    /// holding it. Each attempt is cut off at the renew deadline.
    pub async fn hold(&self) -> Lost {
        let mut renewed = tokio::time::Instant::now();
        let mut last_error: Option<String> = None;
        loop {
            tokio::time::sleep(self.cfg.retry_period).await;
            let left = self.cfg.renew_deadline.saturating_sub(renewed.elapsed());
            if left.is_zero() {
                return Lost::Deadline {
                    since_renewal: renewed.elapsed(),
                    last_error,
                };
            }
            let attempt = tokio::time::timeout(left, self.try_acquire_or_renew()).await;
            let error = match attempt {
                Ok(Ok(Attempt::Held { .. })) => {
                    renewed = tokio::time::Instant::now();
                    continue;
                }
                Ok(Ok(Attempt::HeldBy { holder, .. })) => return Lost::Taken { holder },
                Ok(Ok(Attempt::Conflict)) => {
                    "409 Conflict: another writer changed the lease".to_owned()
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot renew the lease");
                    e.to_string()
                }
                Err(_) => "the renewal did not finish in time".to_owned(),
            };
            let since = renewed.elapsed();
            if renew_expired(since, self.cfg.renew_deadline) {
                return Lost::Deadline {
                    since_renewal: since,
                    last_error: Some(error),
                };
            }
            last_error = Some(error);
        }
    }

    /// Give the Lease up if we hold it (on SIGTERM). Ok(true): released.
    pub async fn release(&self) -> Result<bool, LeaseError> {
        let Some(current) = self
            .api
            .get_opt(&self.cfg.name)
            .await
            .map_err(|e| self.err("read", e))?
        else {
            return Ok(false);
        };
        if holder(&current) != Some(self.cfg.identity.as_str()) {
            return Ok(false);
        }
        match self
            .api
            .replace(
                &self.cfg.name,
                &PostParams::default(),
                &released(&current, Timestamp::now()),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(self.err("release", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> Vec<Lease> {
        serde_yaml::from_str(include_str!("../tests/fixtures/leases.yaml")).expect("fixture")
    }

    fn lease(name: &str) -> Lease {
        fixtures()
            .into_iter()
            .find(|l| l.metadata.name.as_deref() == Some(name))
            .expect(name)
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn cfg(identity: &str) -> LeaseConfig {
        LeaseConfig::new("vantage-operator", "vantage", identity)
    }

    // Every fixture's renewTime is 2026-01-01T00:00:00Z with a 15 s duration, unless it
    // says otherwise.
    const RENEWED: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn no_lease_is_created() {
        assert_eq!(decide(None, "a", at(RENEWED), LEASE_DURATION), Step::Create);
    }

    #[test]
    fn our_lease_is_renewed_even_when_expired() {
        let l = lease("held-by-a");
        assert_eq!(
            decide(Some(&l), "a", at(RENEWED), LEASE_DURATION),
            Step::Renew
        );
        assert_eq!(
            decide(Some(&l), "a", at("2026-01-01T01:00:00Z"), LEASE_DURATION),
            Step::Renew
        );
    }

    #[test]
    fn another_holder_is_waited_for_until_its_lease_expires() {
        let l = lease("held-by-a");
        assert_eq!(
            decide(Some(&l), "b", at("2026-01-01T00:00:14.9Z"), LEASE_DURATION),
            Step::Wait {
                holder: "a".into(),
                until: at("2026-01-01T00:00:15Z")
            }
        );
        assert_eq!(
            decide(Some(&l), "b", at("2026-01-01T00:00:15Z"), LEASE_DURATION),
            Step::Acquire {
                previous: Some("a".into())
            },
            "expired exactly at renewTime + leaseDurationSeconds"
        );
    }

    #[test]
    fn the_lease_duration_is_the_holders_not_ours() {
        // The holder wrote leaseDurationSeconds: 60; ours (15 s) does not shorten it.
        let l = lease("long-duration");
        assert!(matches!(
            decide(Some(&l), "b", at("2026-01-01T00:00:30Z"), LEASE_DURATION),
            Step::Wait { .. }
        ));
        assert_eq!(
            decide(Some(&l), "b", at("2026-01-01T00:01:00Z"), LEASE_DURATION),
            Step::Acquire {
                previous: Some("a".into())
            }
        );
    }

    #[test]
    fn released_or_timeless_leases_are_taken_at_once() {
        for name in ["released", "empty-holder"] {
            assert_eq!(
                decide(Some(&lease(name)), "b", at(RENEWED), LEASE_DURATION),
                Step::Acquire { previous: None },
                "{name}"
            );
        }
        assert_eq!(
            decide(Some(&lease("no-times")), "b", at(RENEWED), LEASE_DURATION),
            Step::Acquire {
                previous: Some("a".into())
            },
            "a holder without renewTime or acquireTime holds nothing"
        );
    }

    #[test]
    fn claiming_keeps_the_resource_version_and_counts_transitions() {
        let now = at("2026-01-01T00:00:20Z");
        let old = lease("held-by-a");
        let taken = claimed(Some(&old), &cfg("b"), now);
        assert_eq!(taken.metadata.resource_version.as_deref(), Some("41"));
        let spec = taken.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("b"));
        assert_eq!(spec.lease_transitions, Some(4), "3 + 1: the holder changed");
        assert_eq!(spec.acquire_time, Some(MicroTime(now)));
        assert_eq!(spec.renew_time, Some(MicroTime(now)));
        assert_eq!(spec.lease_duration_seconds, Some(15));

        let renewed = claimed(Some(&old), &cfg("a"), now).spec.expect("spec");
        assert_eq!(
            renewed.lease_transitions,
            Some(3),
            "a renewal is no transition"
        );
        assert_eq!(
            renewed.acquire_time,
            Some(MicroTime(at("2025-12-31T23:00:00Z"))),
            "a renewal keeps acquireTime"
        );
        assert_eq!(renewed.renew_time, Some(MicroTime(now)));

        let fresh = claimed(None, &cfg("a"), now);
        assert_eq!(fresh.metadata.name.as_deref(), Some("vantage-operator"));
        assert_eq!(fresh.metadata.namespace.as_deref(), Some("vantage"));
        assert_eq!(fresh.metadata.resource_version, None);
        assert_eq!(fresh.spec.expect("spec").lease_transitions, Some(0));
    }

    #[test]
    fn released_leases_have_no_holder_and_are_taken_by_the_next() {
        let now = at("2026-01-01T00:00:05Z");
        let gone = released(&lease("held-by-a"), now);
        assert_eq!(gone.metadata.resource_version.as_deref(), Some("41"));
        let spec = gone.spec.clone().expect("spec");
        assert_eq!(spec.holder_identity, None);
        assert_eq!(spec.lease_duration_seconds, Some(1));
        assert_eq!(
            decide(Some(&gone), "b", now, LEASE_DURATION),
            Step::Acquire { previous: None }
        );
        let next = claimed(Some(&gone), &cfg("b"), now).spec.expect("spec");
        assert_eq!(next.lease_transitions, Some(4));
    }

    #[test]
    fn leadership_ends_at_the_renew_deadline() {
        assert!(!renew_expired(Duration::from_millis(9_999), RENEW_DEADLINE));
        assert!(renew_expired(RENEW_DEADLINE, RENEW_DEADLINE));
        // The holder gives up before anyone else may take the lease over.
        const { assert!(RENEW_DEADLINE.as_secs() < LEASE_DURATION.as_secs()) };
    }

    #[test]
    fn identity_is_the_pod_name_else_host_and_pid() {
        assert_eq!(
            default_identity(Some("vantage-operator-7d9-x2")),
            "vantage-operator-7d9-x2"
        );
        let local = default_identity(Some("  "));
        assert!(
            local.ends_with(&format!("_{}", std::process::id())),
            "{local}"
        );
    }
}
