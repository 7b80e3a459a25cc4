//! The Measurement reconciler: read, plan (pure), apply (id, status, schedules).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{Mutex, Notify};
use vantage_crd::conditions::{self, READY};
use vantage_crd::{
    apply_status, Measurement, MeasurementState, MeasurementStatus, Probe, StatusError,
    TenantPolicy,
};

use crate::events::{Event, Events};
use crate::limits::{namespace_usage, Ledger, Limits};
use crate::plan::{desired_status, Snapshot};
use crate::probes::Sessions;
use crate::schedules::{desired, PublishError, SchedulePublisher, Syncer};
use crate::selection::Candidate;
use crate::stats::ResultStats;
use crate::FIELD_MANAGER;

/// Finalizer that makes deletion stop the measurement on every probe first.
pub const FINALIZER: &str = "vantage.dev/stop-on-probes";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("finalizer step failed: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("cannot allocate a measurement id from NATS KV: {0}")]
    Ids(#[source] IdError),
}

impl Error {
    /// The `kind` label of `reconcile_failures`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Finalizer(_) => "finalizer",
            Self::Status(StatusError::Apply { .. }) => "kube",
            Self::Status(StatusError::Encode { .. }) => "encode",
            Self::Publish(_) => "nats",
            Self::Ids(_) => "ids",
        }
    }
}

/// Why no measurement id was allocated.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    #[error("cannot read the counter {key}: {source}")]
    Read {
        key: &'static str,
        #[source]
        source: async_nats::jetstream::kv::EntryError,
    },
    #[error("cannot create the counter {key}: {source}")]
    Create {
        key: &'static str,
        #[source]
        source: async_nats::jetstream::kv::CreateError,
    },
    #[error("cannot advance the counter {key}: {source}")]
    Update {
        key: &'static str,
        #[source]
        source: async_nats::jetstream::kv::UpdateError,
    },
    #[error(
        "the counter {key} holds {value:?}, not a number; put the last id handed out there \
         (`nats kv put vantage-meta {key} <id>`)"
    )]
    NotANumber { key: &'static str, value: String },
    #[error("the counter {key} is at u64::MAX: no id is left")]
    Exhausted { key: &'static str },
    #[error(
        "lost the compare-and-set on {key} {conflicts} times in {timeout:?}; is another \
         operator allocating?"
    )]
    Contended {
        key: &'static str,
        conflicts: u32,
        timeout: Duration,
    },
}

/// Allocates measurement ids (RIPE Atlas `msm_id`), unique in the installation.
pub trait IdAllocator: Send + Sync {
    fn next(&self) -> impl std::future::Future<Output = Result<u64, Error>> + Send;
}

/// How many Measurements the Controller reconciles at once (`run::measurement_controller`;
/// kube-runtime's default is unbounded). Reconciles share the id allocator, which takes
/// them in turn, and two CPU-bound steps (candidates, selection); on `bench_operator`,
/// which runs with this value, 8, 32, 128 and unbounded are within noise
/// (docs/BENCHMARKS.md). The bound keeps a relist after a restart from putting every
/// Measurement's API writes in flight at once.
pub const RECONCILE_CONCURRENCY: u16 = 32;

/// How long one id allocation may keep losing the compare-and-set to another writer of
/// the counter (another operator process) before the reconcile fails and is retried.
pub const ID_ALLOCATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Ids from the `vantage-meta/msm-seq` counter in NATS KV, advanced with compare-and-set
/// (an update that names the revision it read).
///
/// Ids are consecutive: each successful update hands out exactly the value it wrote, and
/// a lost compare-and-set hands out nothing and is retried. Allocations of one
/// `KvIds` take turns (an async lock), so concurrent reconciles of one operator never
/// race each other on the counter; after its own write the allocator knows the current
/// revision and needs one round trip per id. A write by anyone else (a second operator)
/// makes the next update fail; the allocator reads the counter again and retries after
/// a short random pause, for up to [`ID_ALLOCATION_TIMEOUT`]. The one way the counter
/// passes a value nobody got is an update NATS applied but whose answer was lost (a
/// timeout): the allocation fails, and the next one starts after that value. (The
/// reconciler skips an id too when its status write fails, or the operator stops,
/// after the allocation: the next reconcile allocates again.)
pub struct KvIds {
    kv: async_nats::jetstream::kv::Store,
    /// The counter's value and revision as of this allocator's last read or write.
    last: Mutex<Option<(u64, u64)>>,
}

/// First id handed out. Lower ids are reserved: the built-in measurements
/// ([`crate::builtin`]) use them, as RIPE Atlas's built-ins use low ids.
pub const FIRST_MSM_ID: u64 = 1_000_001;

impl KvIds {
    pub fn new(kv: async_nats::jetstream::kv::Store) -> Self {
        Self {
            kv,
            last: Mutex::new(None),
        }
    }

    /// The counter's value and revision; None when there is no counter (never created,
    /// or deleted).
    async fn read(&self) -> Result<Option<(u64, u64)>, Error> {
        use async_nats::jetstream::kv::Operation;
        let key = vantage_core::nats::MSM_SEQ_KEY;
        let entry = self
            .kv
            .entry(key)
            .await
            .map_err(|source| Error::Ids(IdError::Read { key, source }))?;
        let Some(entry) = entry.filter(|e| e.operation == Operation::Put) else {
            return Ok(None);
        };
        let value = std::str::from_utf8(&entry.value)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                Error::Ids(IdError::NotANumber {
                    key,
                    value: String::from_utf8_lossy(&entry.value).into_owned(),
                })
            })?;
        Ok(Some((value, entry.revision)))
    }

    /// One compare-and-set from `known` (value, revision), or from a fresh read: the new
    /// value and revision if it won, None if someone else wrote first.
    async fn try_once(&self, known: Option<(u64, u64)>) -> Result<Option<(u64, u64)>, Error> {
        use async_nats::jetstream::kv::{CreateErrorKind, UpdateErrorKind};
        use vantage_core::nats::MSM_SEQ_KEY;
        let known = match known {
            Some(k) => Some(k),
            None => self.read().await?,
        };
        match known {
            None => match self
                .kv
                .create(MSM_SEQ_KEY, FIRST_MSM_ID.to_string().into())
                .await
            {
                Ok(revision) => Ok(Some((FIRST_MSM_ID, revision))),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(None),
                Err(source) => Err(Error::Ids(IdError::Create {
                    key: MSM_SEQ_KEY,
                    source,
                })),
            },
            Some((current, revision)) => {
                // Never below FIRST_MSM_ID: lower ids are reserved (built-ins).
                let next = current
                    .checked_add(1)
                    .ok_or(Error::Ids(IdError::Exhausted { key: MSM_SEQ_KEY }))?
                    .max(FIRST_MSM_ID);
                match self
                    .kv
                    .update(MSM_SEQ_KEY, next.to_string().into(), revision)
                    .await
                {
                    Ok(revision) => Ok(Some((next, revision))),
                    Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(None),
                    Err(source) => Err(Error::Ids(IdError::Update {
                        key: MSM_SEQ_KEY,
                        source,
                    })),
                }
            }
        }
    }
}

/// A random pause before retrying a lost compare-and-set: up to 0.2 ms doubled per
/// conflict, at most 12.8 ms, so competing writers spread out.
fn conflict_pause(conflicts: u32) -> Duration {
    use std::hash::BuildHasher;
    let ceiling_us = 200u64 << conflicts.clamp(1, 7).saturating_sub(1);
    let random = std::collections::hash_map::RandomState::new().hash_one(conflicts);
    Duration::from_micros(random % ceiling_us.max(1))
}

impl IdAllocator for KvIds {
    async fn next(&self) -> Result<u64, Error> {
        let mut last = self.last.lock().await;
        let start = std::time::Instant::now();
        let mut conflicts = 0u32;
        loop {
            match self.try_once(last.take()).await? {
                Some((id, revision)) => {
                    *last = Some((id, revision));
                    return Ok(id);
                }
                None => {
                    conflicts += 1;
                    if start.elapsed() >= ID_ALLOCATION_TIMEOUT {
                        return Err(Error::Ids(IdError::Contended {
                            key: vantage_core::nats::MSM_SEQ_KEY,
                            conflicts,
                            timeout: ID_ALLOCATION_TIMEOUT,
                        }));
                    }
                    tracing::debug!(conflicts, "measurement id race; retrying");
                    tokio::time::sleep(conflict_pause(conflicts)).await;
                }
            }
        }
    }
}

/// Metrics of the reconciler.
#[derive(Clone, Default)]
pub struct Metrics {
    pub reconciles: Counter,
    pub failures: Family<Vec<(String, String)>, Counter>,
    pub schedules_published: Counter,
}

/// The Event of a state change (pure): the Ready condition's reason and message;
/// Normal for Scheduled/Ongoing/Stopped, Warning for Failed, ForcedToStop,
/// NoSuitableProbes and Limited. None without a Ready condition.
pub fn state_event(status: &MeasurementStatus) -> Option<Event> {
    let ready = conditions::get(&status.conditions, READY)?;
    let warning = matches!(
        status.state,
        Some(
            MeasurementState::Failed
                | MeasurementState::ForcedToStop
                | MeasurementState::NoSuitableProbes
                | MeasurementState::Limited
        )
    );
    Some(Event::new(
        warning,
        ready.reason.clone(),
        ready.message.clone(),
    ))
}

/// How stale the selection candidates may be (probe specs and sessions).
pub const CANDIDATES_TTL: Duration = Duration::from_secs(1);

/// The cached selection candidates and when they were built.
#[derive(Default)]
pub struct CandidateCache(std::sync::Mutex<Option<(std::time::Instant, Arc<Vec<Candidate>>)>>);

/// What the reconciler shares.
pub struct Ctx<I: IdAllocator, P: SchedulePublisher> {
    pub client: Client,
    pub probes: Store<Probe>,
    pub measurements: Store<Measurement>,
    /// TenantPolicies, for the limits of each namespace.
    pub policies: Store<TenantPolicy>,
    /// Admission decisions not yet visible in the store.
    pub ledger: Arc<Ledger>,
    /// Probe loads and the selection settings (`--max-measurements-per-probe`,
    /// `--max-requested`).
    pub load: Arc<crate::load::ProbeLoad>,
    pub events: Events,
    pub candidates: CandidateCache,
    pub sessions: Sessions,
    pub stats: ResultStats,
    pub ids: I,
    pub schedules: Mutex<Syncer>,
    pub publisher: P,
    pub sync_requested: Notify,
    pub metrics: Metrics,
}

impl<I: IdAllocator, P: SchedulePublisher> Ctx<I, P> {
    /// Recompute and publish every probe's schedule from the current measurements.
    pub async fn sync_schedules(&self) -> Result<(), PublishError> {
        let want = desired(&self.measurements.state());
        let written = self
            .schedules
            .lock()
            .await
            .sync(want, &self.publisher)
            .await?;
        if written > 0 {
            self.metrics.schedules_published.inc_by(written as u64);
            tracing::info!(written, "published probe schedules");
        }
        Ok(())
    }

    /// Debounced schedule publishing, forever.
    pub async fn schedule_loop(self: Arc<Self>) {
        loop {
            self.sync_requested.notified().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Err(e) = self.sync_schedules().await {
                tracing::warn!(error = %e, "schedule publishing failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                self.sync_requested.notify_one();
            }
        }
    }

    /// The selection candidates, rebuilt at most every [`CANDIDATES_TTL`]: with 10,000
    /// probes a rebuild costs about 10 ms, too much for every reconcile.
    fn candidates(&self) -> Arc<Vec<Candidate>> {
        let mut cache = self.candidates.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, list)) = cache.as_ref() {
            if at.elapsed() < CANDIDATES_TTL {
                return list.clone();
            }
        }
        let connected = self.sessions.connected();
        let list: Arc<Vec<Candidate>> = Arc::new(
            self.probes
                .state()
                .iter()
                .map(|p| Candidate::from_probe(p, connected.contains(&p.spec.id)))
                .collect(),
        );
        *cache = Some((std::time::Instant::now(), list.clone()));
        list
    }

    fn earlier(&self, msm: &Measurement) -> HashMap<u64, Vec<u32>> {
        // Only `msm` sources read other measurements' probes.
        if !msm.spec.probes.iter().any(|s| s.kind == "msm") {
            return HashMap::new();
        }
        self.measurements
            .state()
            .iter()
            .filter_map(|m| {
                m.status
                    .as_ref()
                    .and_then(|s| Some((s.id?, s.probes.clone())))
            })
            .collect()
    }
}

pub async fn reconcile<I: IdAllocator, P: SchedulePublisher>(
    msm: Arc<Measurement>,
    ctx: Arc<Ctx<I, P>>,
) -> Result<Action, Error> {
    ctx.metrics.reconciles.inc();
    let ns = msm.namespace().unwrap_or_else(|| "default".into());
    let api: Api<Measurement> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, msm, |event| async {
        match event {
            FinalizerEvent::Apply(m) => apply(&api, &m, &ctx).await,
            FinalizerEvent::Cleanup(m) => cleanup(&m, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn apply<I: IdAllocator, P: SchedulePublisher>(
    api: &Api<Measurement>,
    msm: &Measurement,
    ctx: &Ctx<I, P>,
) -> Result<Action, Error> {
    // Read. Probes are chosen once per generation (and for participation requests);
    // the candidates also tell whether the chosen probes are still there.
    let current = msm.status.clone().unwrap_or_default();
    let selects = current.observed_generation != msm.metadata.generation
        || current.probes.is_empty()
        || msm.participation_requests().len() > current.participation_applied as usize;
    let candidates = ctx.candidates();
    let earlier = if selects {
        ctx.earlier(msm)
    } else {
        HashMap::new()
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    let ns = msm.namespace().unwrap_or_default();
    let limits = Limits::for_namespace(&ctx.policies.state(), &ns);
    // Admission is decided once per generation (`plan::desired_status`): a measurement
    // admitted at this generation needs no usage, which costs a pass over every
    // measurement of its namespace.
    let admitted_before = current.observed_generation == msm.metadata.generation
        && crate::limits::is_admitted_state(current.state);
    let mut status = {
        // Usage, decision and ledger under one lock: two measurements reconciled at
        // once cannot both take the namespace's last slot. The store is read under it
        // too, so it holds every measurement the ledger has admitted.
        let mut ledger = ctx.ledger.0.lock().unwrap_or_else(|e| e.into_inner());
        // Probe loads under the same lock: each selection sees the ones before it.
        let mut loads = ctx.load.lock();
        let usage = if limits.is_unlimited() || admitted_before {
            Default::default()
        } else {
            let in_namespace: Vec<Arc<Measurement>> = ctx
                .measurements
                .state()
                .into_iter()
                .filter(|m| m.metadata.namespace.as_deref() == Some(ns.as_str()))
                .collect();
            namespace_usage(
                &in_namespace,
                &ledger,
                &ns,
                Some(&msm.name_any()),
                now.as_second(),
            )
        };
        let stats = current.id.and_then(|id| ctx.stats.get(id));
        let snapshot = Snapshot {
            candidates: candidates.as_slice(),
            earlier: &earlier,
            results: stats.as_ref().map(|s| (s.results, s.last_result)),
            reporters: stats.as_ref().map_or(&[], |s| s.reporters.as_slice()),
            spread: ctx.load.spread(&loads, msm),
            now: now.as_second(),
            now_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
            limits: &limits,
            usage,
        };
        // Plan.
        let status = desired_status(msm, &snapshot);
        loads.record(msm, &status);
        ledger.insert(
            (ns.clone(), msm.name_any()),
            crate::limits::is_admitted_state(status.state) && !msm.spec.stopped,
        );
        status
    };
    // Apply: a runnable measurement gets its id once.
    let runnable = !matches!(
        status.state,
        Some(MeasurementState::Failed | MeasurementState::Limited)
    );
    if status.id.is_none() && runnable {
        status.id = Some(ctx.ids.next().await?);
    }
    if status != current {
        apply_status(api, &msm.name_any(), FIELD_MANAGER, &status).await?;
        tracing::info!(
            measurement = %format!("{}/{}", msm.namespace().unwrap_or_default(), msm.name_any()),
            id = ?status.id,
            state = ?status.state,
            probes = status.probe_count,
            results = status.results,
            "measurement status updated"
        );
        if status.state != current.state {
            let events: Vec<Event> = state_event(&status).into_iter().collect();
            ctx.events.publish(msm, &events).await;
        }
    }
    ctx.sync_requested.notify_one();
    Ok(match status.state {
        Some(state) if state.is_final() => Action::await_change(),
        _ => Action::requeue(Duration::from_secs(5)),
    })
}

async fn cleanup<I: IdAllocator, P: SchedulePublisher>(
    msm: &Measurement,
    ctx: &Ctx<I, P>,
) -> Result<Action, Error> {
    // The store already holds this object with its deletionTimestamp, so the measurement
    // is left out of every schedule. Publish before the finalizer goes.
    ctx.sync_schedules().await?;
    if let Ok(mut ledger) = ctx.ledger.0.lock() {
        ledger.remove(&(msm.namespace().unwrap_or_default(), msm.name_any()));
    }
    ctx.load.forget(msm);
    tracing::info!(measurement = %msm.name_any(), "measurement deleted; stopped on its probes");
    Ok(Action::await_change())
}

/// Every failure here is transient (an invalid spec is reported in status, never as an
/// error): count it and retry soon.
pub fn error_policy<I: IdAllocator, P: SchedulePublisher>(
    msm: Arc<Measurement>,
    error: &Error,
    ctx: Arc<Ctx<I, P>>,
) -> Action {
    ctx.metrics
        .failures
        .get_or_create(&vec![("kind".to_owned(), error.metric_label().to_owned())])
        .inc();
    tracing::warn!(measurement = %msm.name_any(), %error, "reconcile failed; retrying in 5s");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: MeasurementState, reason: &str, message: &str) -> MeasurementStatus {
        let mut s = MeasurementStatus {
            state: Some(state),
            ..Default::default()
        };
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("time"),
        );
        conditions::set(&mut s.conditions, READY, true, reason, message, None, now);
        s
    }

    #[test]
    fn state_events_carry_the_ready_condition_and_warn_on_trouble() {
        let ev = state_event(&status(
            MeasurementState::Ongoing,
            "Ongoing",
            "running on 1 probes",
        ));
        assert_eq!(
            ev,
            Some(Event::new(false, "Ongoing", "running on 1 probes"))
        );
        for state in [
            MeasurementState::Failed,
            MeasurementState::ForcedToStop,
            MeasurementState::NoSuitableProbes,
            MeasurementState::Limited,
        ] {
            let ev = state_event(&status(state, "X", "y")).expect("event");
            assert!(ev.warning, "{state:?}");
        }
        assert_eq!(state_event(&MeasurementStatus::default()), None, "no Ready");
    }

    #[test]
    fn metric_labels_name_the_failing_dependency() {
        let contended = Error::Ids(IdError::Contended {
            key: "msm-seq",
            conflicts: 3,
            timeout: ID_ALLOCATION_TIMEOUT,
        });
        assert_eq!(contended.metric_label(), "ids");
        let encode = Error::Status(StatusError::Encode {
            kind: "Measurement".into(),
            name: "m".into(),
            source: serde_json::from_str::<u8>("x").expect_err("not json"),
        });
        assert_eq!(encode.metric_label(), "encode");
    }
}
