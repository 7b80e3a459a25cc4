//! The Measurement reconciler: read, plan (pure), apply (id, status, schedules).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::runtime::finalizer::{finalizer, Event};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::{Mutex, Notify};
use vantage_crd::conditions::{self, READY};
use vantage_crd::{Measurement, MeasurementState, MeasurementStatus, Probe, TenantPolicy};

use crate::limits::{namespace_usage, Ledger, Limits};
use crate::plan::{desired_status, Snapshot};
use crate::probes::Sessions;
use crate::schedules::{desired, PublishError, SchedulePublisher, Syncer};
use crate::selection::Candidate;
use crate::stats::ResultStats;

/// Finalizer that makes deletion stop the measurement on every probe first.
pub const FINALIZER: &str = "vantage.dev/stop-on-probes";
const FIELD_MANAGER: &str = "vantage-operator";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[source] kube::Error),
    #[error("finalizer step failed: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("cannot allocate a measurement id from NATS KV: {0}")]
    Ids(String),
}

/// Allocates measurement ids (RIPE Atlas `msm_id`), unique in the installation.
pub trait IdAllocator: Send + Sync {
    fn next(&self) -> impl std::future::Future<Output = Result<u64, Error>> + Send;
}

/// Ids from a counter in NATS KV, advanced with compare-and-set.
pub struct KvIds(pub async_nats::jetstream::kv::Store);

/// First id handed out; below it are ids of imported RIPE Atlas measurements, if any.
pub const FIRST_MSM_ID: u64 = 1_000_001;

impl IdAllocator for KvIds {
    async fn next(&self) -> Result<u64, Error> {
        use vantage_core::nats::MSM_SEQ_KEY;
        for _ in 0..32 {
            let entry = self
                .0
                .entry(MSM_SEQ_KEY)
                .await
                .map_err(|e| Error::Ids(e.to_string()))?;
            let result = match entry.filter(|e| !e.value.is_empty()) {
                None => self
                    .0
                    .create(MSM_SEQ_KEY, FIRST_MSM_ID.to_string().into())
                    .await
                    .map(|_| FIRST_MSM_ID)
                    .map_err(|e| e.to_string()),
                Some(e) => {
                    let current: u64 = std::str::from_utf8(&e.value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| Error::Ids("counter value is not a number".into()))?;
                    let next = current + 1;
                    self.0
                        .update(MSM_SEQ_KEY, next.to_string().into(), e.revision)
                        .await
                        .map(|_| next)
                        .map_err(|e| e.to_string())
                }
            };
            match result {
                Ok(id) => return Ok(id),
                Err(conflict) => tracing::debug!(%conflict, "measurement id race; retrying"),
            }
        }
        Err(Error::Ids("too many concurrent allocations".into()))
    }
}

/// Metrics of the reconciler.
#[derive(Clone, Default)]
pub struct Metrics {
    pub reconciles: Counter,
    pub failures: Family<Vec<(String, String)>, Counter>,
    pub schedules_published: Counter,
}

/// One event about a Measurement, as [`Events::Memory`] keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emitted {
    pub namespace: String,
    pub name: String,
    pub warning: bool,
    /// The Ready condition's reason: `Ongoing`, `Limited`, `InvalidSpec`, ...
    pub reason: String,
    pub note: String,
}

/// Where Measurement events go: the Kubernetes API (events.k8s.io), memory (tests and
/// benchmarks), or nowhere.
#[derive(Clone)]
pub enum Events {
    Kube(Recorder),
    Memory(Arc<std::sync::Mutex<Vec<Emitted>>>),
    Off,
}

impl Events {
    /// Events through the API, reported as `vantage-operator`.
    pub fn kube(client: Client) -> Self {
        Self::Kube(Recorder::new(client, FIELD_MANAGER.into()))
    }

    /// One event per state change: Normal for Scheduled/Ongoing/Stopped, Warning for
    /// Failed, NoSuitableProbes and Limited. A failure to publish is logged, not fatal.
    async fn state_changed(&self, msm: &Measurement, status: &MeasurementStatus) {
        let Some(ready) = conditions::get(&status.conditions, READY) else {
            return;
        };
        let warning = matches!(
            status.state,
            Some(
                MeasurementState::Failed
                    | MeasurementState::NoSuitableProbes
                    | MeasurementState::Limited
            )
        );
        match self {
            Self::Off => {}
            Self::Memory(list) => {
                if let Ok(mut list) = list.lock() {
                    list.push(Emitted {
                        namespace: msm.namespace().unwrap_or_default(),
                        name: msm.name_any(),
                        warning,
                        reason: ready.reason.clone(),
                        note: ready.message.clone(),
                    });
                }
            }
            Self::Kube(recorder) => {
                use kube::Resource;
                let event = KubeEvent {
                    type_: if warning {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: ready.reason.clone(),
                    note: Some(ready.message.chars().take(1000).collect()),
                    action: "Reconcile".into(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &msm.object_ref(&())).await {
                    tracing::warn!(measurement = %msm.name_any(), error = %e, "cannot publish event");
                }
            }
        }
    }
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
            Event::Apply(m) => apply(&api, &m, &ctx).await,
            Event::Cleanup(m) => cleanup(&m, &ctx).await,
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
    // Read. Probes are chosen once per generation: skip building candidates otherwise.
    let current = msm.status.clone().unwrap_or_default();
    let selects =
        current.observed_generation != msm.metadata.generation || current.probes.is_empty();
    let candidates = if selects {
        ctx.candidates()
    } else {
        Arc::default()
    };
    let earlier = if selects {
        ctx.earlier(msm)
    } else {
        HashMap::new()
    };
    let now = k8s_openapi::jiff::Timestamp::now();
    let ns = msm.namespace().unwrap_or_default();
    let limits = Limits::for_namespace(&ctx.policies.state(), &ns);
    let mut status = {
        // Usage, decision and ledger under one lock: two measurements reconciled at
        // once cannot both take the namespace's last slot.
        let mut ledger = ctx.ledger.0.lock().unwrap_or_else(|e| e.into_inner());
        let usage = if limits.is_unlimited() {
            Default::default()
        } else {
            namespace_usage(
                &ctx.measurements.state(),
                &ledger,
                &ns,
                Some(&msm.name_any()),
                now.as_second(),
            )
        };
        let snapshot = Snapshot {
            candidates: candidates.as_slice(),
            earlier: &earlier,
            results: current.id.and_then(|id| ctx.stats.get(id)),
            now: now.as_second(),
            now_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
            limits: &limits,
            usage,
        };
        // Plan.
        let status = desired_status(msm, &snapshot);
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
        patch_status(api, &msm.name_any(), &status).await?;
        tracing::info!(
            measurement = %format!("{}/{}", msm.namespace().unwrap_or_default(), msm.name_any()),
            id = ?status.id,
            state = ?status.state,
            probes = status.probe_count,
            results = status.results,
            "measurement status updated"
        );
        if status.state != current.state {
            ctx.events.state_changed(msm, &status).await;
        }
    }
    ctx.sync_requested.notify_one();
    Ok(match status.state {
        Some(MeasurementState::Failed) | Some(MeasurementState::Stopped) => Action::await_change(),
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
    tracing::info!(measurement = %msm.name_any(), "measurement deleted; stopped on its probes");
    Ok(Action::await_change())
}

async fn patch_status(
    api: &Api<Measurement>,
    name: &str,
    status: &MeasurementStatus,
) -> Result<(), Error> {
    let mut status_json = serde_json::to_value(status).unwrap_or_default();
    // A merge patch keeps fields it does not mention: clear `limitedBy` explicitly.
    if status.limited_by.is_none() {
        status_json["limitedBy"] = serde_json::Value::Null;
    }
    let patch = serde_json::json!({ "status": status_json });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
    .map_err(Error::Kube)
}

/// Every failure here is transient (an invalid spec is reported in status, never as an
/// error): count it and retry soon.
pub fn error_policy<I: IdAllocator, P: SchedulePublisher>(
    msm: Arc<Measurement>,
    error: &Error,
    ctx: Arc<Ctx<I, P>>,
) -> Action {
    let kind = match error {
        Error::Kube(_) => "kube",
        Error::Finalizer(_) => "finalizer",
        Error::Publish(_) => "nats",
        Error::Ids(_) => "ids",
    };
    ctx.metrics
        .failures
        .get_or_create(&vec![("kind".to_owned(), kind.to_owned())])
        .inc();
    tracing::warn!(measurement = %msm.name_any(), %error, "reconcile failed; retrying in 5s");
    Action::requeue(Duration::from_secs(5))
}
