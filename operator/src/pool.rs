//! The ControllerPool reconciler: read (the pool, its StatefulSet, the probe sessions),
//! decide (pure: [`render::validate`], [`scale::decide`], [`render::render`]), apply
//! (drain signals over NATS, server-side apply of the workloads, pruning of per-pod
//! Services), then status.
//!
//! Scale-down drains first: the operator writes `vantage-meta/drain.<controller>` for
//! the highest ordinals; those controllers announce `draining` (registration stops
//! choosing them) and send their probes back to registration. Only when their sessions
//! are gone, or the drain timeout has passed, are the replicas lowered.

pub mod render;
pub mod scale;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder};
use kube::{Api, Client, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::Value;
use vantage_core::nats::{drain_key, DrainRequest};
use vantage_crd::conditions;
use vantage_crd::pool_conditions::{self as pc, reason};
use vantage_crd::{ControllerPool, ControllerPoolStatus};

use crate::probes::Sessions;
use render::{Names, PER_POD_LABEL, POOL_LABEL};

pub const FIELD_MANAGER: &str = "vantage-operator";

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[source] kube::Error),
    #[error("cannot signal a drain over NATS: {0}")]
    Drain(String),
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Asks controllers to drain, and calls it off. NATS KV in production ([`KvDrain`]).
pub trait DrainSignal: Send + Sync {
    /// Ask `controllers` to drain (idempotent).
    fn drain(
        &self,
        controllers: &[String],
    ) -> impl std::future::Future<Output = Result<(), PoolError>> + Send;
    /// Withdraw any drain request for `controllers` (idempotent).
    fn undrain(
        &self,
        controllers: &[String],
    ) -> impl std::future::Future<Output = Result<(), PoolError>> + Send;
}

/// Drain requests as `vantage-meta` keys `drain.<controller>`, which controllers watch.
pub struct KvDrain(pub async_nats::jetstream::kv::Store);

impl DrainSignal for KvDrain {
    async fn drain(&self, controllers: &[String]) -> Result<(), PoolError> {
        for c in controllers {
            let req = DrainRequest {
                v: 1,
                controller: c.clone(),
                at_ms: vantage_platform::bus::now_ms(),
            };
            let bytes = serde_json::to_vec(&req).map_err(|source| PoolError::Encode {
                what: "drain request".into(),
                source,
            })?;
            self.0
                .put(drain_key(c), bytes.into())
                .await
                .map_err(|e| PoolError::Drain(e.to_string()))?;
        }
        Ok(())
    }

    async fn undrain(&self, controllers: &[String]) -> Result<(), PoolError> {
        for c in controllers {
            let key = drain_key(c);
            let present = self
                .0
                .get(&key)
                .await
                .map_err(|e| PoolError::Drain(e.to_string()))?
                .is_some();
            if present {
                self.0
                    .delete(&key)
                    .await
                    .map_err(|e| PoolError::Drain(e.to_string()))?;
            }
        }
        Ok(())
    }
}

/// Metrics of the pool reconciler.
#[derive(Clone, Default)]
pub struct PoolMetrics {
    pub reconciles: Counter,
    pub failures: Family<Vec<(String, String)>, Counter>,
    pub scale_events: Family<Vec<(String, String)>, Counter>,
}

/// What the pool reconciler shares.
pub struct PoolCtx<D: DrainSignal> {
    pub client: Client,
    pub sessions: Sessions,
    pub drain: D,
    pub metrics: PoolMetrics,
    pub events: PoolEvents,
}

/// Reasons of the Events about a ControllerPool.
pub mod event_reason {
    pub const SCALING_UP: &str = "ScalingUp";
    pub const SCALING_DOWN: &str = "ScalingDown";
    pub const DRAIN_STARTED: &str = "DrainStarted";
    pub const DRAIN_FINISHED: &str = "DrainFinished";
    pub const DRAIN_TIMED_OUT: &str = "DrainTimedOut";
    pub const INVALID_SPEC: &str = "InvalidSpec";
}

/// One Event about a pool (pure data; [`PoolEvents`] publishes it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub note: String,
}

/// The Events of one round (pure): scaling up or down, a drain started, finished (or
/// called off) or timed out. `current` is the StatefulSet's replica count before.
pub fn events(pool: &ControllerPool, current: Option<u32>, s: &Step) -> Vec<PoolEvent> {
    use event_reason as r;
    let mut out = Vec::new();
    let was: &[String] = pool
        .status
        .as_ref()
        .map(|st| st.draining.as_slice())
        .unwrap_or(&[]);
    let before = current.unwrap_or(0);
    let ev = |warning, reason, note: String| PoolEvent {
        warning,
        reason,
        note,
    };
    if !s.draining.is_empty() && s.draining.as_slice() != was {
        out.push(ev(
            false,
            r::DRAIN_STARTED,
            format!(
                "draining {} ({} probes left) before scaling down from {before} controllers",
                s.draining.join(", "),
                s.draining_probes
            ),
        ));
    }
    if let Some(left) = s.drain_timed_out {
        out.push(ev(
            true,
            r::DRAIN_TIMED_OUT,
            format!(
                "drain of {} timed out with {left} probes left; scaling down anyway",
                s.signal.join(", ")
            ),
        ));
    } else if !was.is_empty() && s.draining.is_empty() {
        let note = if s.replicas < before {
            format!("{} drained", was.join(", "))
        } else {
            format!(
                "drain of {} called off: the load needs {} controllers",
                was.join(", "),
                s.desired
            )
        };
        out.push(ev(false, r::DRAIN_FINISHED, note));
    }
    if s.replicas > before {
        out.push(ev(
            false,
            r::SCALING_UP,
            format!(
                "scaling up from {before} to {} controllers ({} probes connected)",
                s.replicas, s.connected
            ),
        ));
    } else if s.replicas < before {
        out.push(ev(
            false,
            r::SCALING_DOWN,
            format!(
                "scaling down from {before} to {} controllers ({} probes connected)",
                s.replicas, s.connected
            ),
        ));
    }
    out
}

/// One Event as [`PoolEvents::Memory`] keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmittedPoolEvent {
    pub namespace: String,
    pub name: String,
    pub event: PoolEvent,
}

/// Where ControllerPool Events go: the Kubernetes API (events.k8s.io), memory (tests),
/// or nowhere. The same pattern as the Measurement events (`measurement::Events`).
#[derive(Clone)]
pub enum PoolEvents {
    Kube(Recorder),
    Memory(Arc<std::sync::Mutex<Vec<EmittedPoolEvent>>>),
    Off,
}

impl PoolEvents {
    /// Events through the API, reported as `vantage-operator`.
    pub fn kube(client: Client) -> Self {
        Self::Kube(Recorder::new(client, FIELD_MANAGER.into()))
    }

    /// Publish `events` about `pool`; a failure is logged, not fatal.
    pub async fn publish(&self, pool: &ControllerPool, events: &[PoolEvent]) {
        for e in events {
            match self {
                Self::Off => {}
                Self::Memory(list) => {
                    if let Ok(mut list) = list.lock() {
                        list.push(EmittedPoolEvent {
                            namespace: pool.namespace().unwrap_or_default(),
                            name: pool.name_any(),
                            event: e.clone(),
                        });
                    }
                }
                Self::Kube(recorder) => {
                    use kube::Resource;
                    let event = KubeEvent {
                        type_: if e.warning {
                            EventType::Warning
                        } else {
                            EventType::Normal
                        },
                        reason: e.reason.into(),
                        note: Some(e.note.chars().take(1000).collect()),
                        action: "Reconcile".into(),
                        secondary: None,
                    };
                    if let Err(err) = recorder.publish(&event, &pool.object_ref(&())).await {
                        tracing::warn!(pool = %pool.name_any(), error = %err, "cannot publish event");
                    }
                }
            }
        }
    }
}

fn time_ms(t: &Time) -> i64 {
    t.0.as_millisecond()
}

fn ms_time(ms: i64) -> Option<Time> {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(Time)
}

/// The pool's state after the decision, before status is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Replicas to apply now.
    pub replicas: u32,
    pub desired: u32,
    pub lower_since_ms: Option<i64>,
    /// Controllers being drained, still holding replicas up (empty: none).
    pub draining: Vec<String>,
    /// Controllers that must have a drain request before this round's apply: the ones
    /// draining, or the ones removed now (even without probes, so that registration
    /// stops choosing them before their pods go).
    pub signal: Vec<String>,
    pub draining_since_ms: Option<i64>,
    /// Drain requests to withdraw.
    pub undrain: Vec<String>,
    /// The drain ended by timeout, with probes left on these controllers.
    pub drain_timed_out: Option<u32>,
    /// Probes still on the draining controllers.
    pub draining_probes: u32,
    pub connected: u32,
}

/// Decide replicas and drains (pure). `current` is the StatefulSet's replica count
/// (None: not created yet); `counts` gives connected probes by controller name.
pub fn step(
    pool: &ControllerPool,
    current: Option<u32>,
    counts: &std::collections::HashMap<String, u32>,
    now_ms: i64,
) -> Step {
    let spec = &pool.spec;
    let names = Names::of(&pool.name_any());
    let status = pool.status.clone().unwrap_or_default();
    let connected: u32 = counts
        .iter()
        .filter(|(c, _)| names.ordinal(c).is_some())
        .map(|(_, n)| *n)
        .sum();
    let current_n = current.unwrap_or(0);
    let decision = scale::decide(
        &render::policy(spec),
        connected,
        current_n,
        status.scale_down_since.as_ref().map(time_ms),
        now_ms,
    );
    let mut out = Step {
        replicas: decision.target,
        desired: decision.desired,
        lower_since_ms: decision.lower_since_ms,
        draining: Vec::new(),
        signal: Vec::new(),
        draining_since_ms: None,
        undrain: Vec::new(),
        drain_timed_out: None,
        draining_probes: 0,
        connected,
    };
    if decision.target >= current_n {
        // No drain (any drain in progress is called off); pods that come back must not
        // find an old drain request.
        out.undrain = status.draining.clone();
        for i in current_n..decision.target {
            let name = names.pod(i);
            if !out.undrain.contains(&name) {
                out.undrain.push(name);
            }
        }
        return out;
    }
    let to_drain: Vec<String> = (decision.target..current_n).map(|i| names.pod(i)).collect();
    let since = status
        .draining_since
        .as_ref()
        .map(time_ms)
        .filter(|_| !status.draining.is_empty())
        .unwrap_or(now_ms);
    let remaining: u32 = to_drain
        .iter()
        .map(|c| counts.get(c).copied().unwrap_or(0))
        .sum();
    let timeout_ms = i64::from(spec.drain_timeout_seconds.unwrap_or(120)) * 1000;
    // A controller no longer asked to drain (the target rose again) is called off.
    out.undrain = status
        .draining
        .iter()
        .filter(|c| !to_drain.contains(c))
        .cloned()
        .collect();
    out.signal = to_drain.clone();
    if remaining == 0 || now_ms - since >= timeout_ms {
        out.replicas = decision.target;
        if remaining > 0 {
            out.drain_timed_out = Some(remaining);
        }
        // The drained pods go now (the drain is over); their drain requests stay until
        // those ordinals come back on a later scale-up.
        out.draining_probes = remaining;
    } else {
        out.replicas = current_n;
        out.draining = to_drain;
        out.draining_since_ms = Some(since);
        out.draining_probes = remaining;
    }
    out
}

/// The status after `step` (pure); conditions keep their transition times.
pub fn next_status(
    pool: &ControllerPool,
    current: Option<u32>,
    s: &Step,
    now: Time,
) -> ControllerPoolStatus {
    let mut status = pool.status.clone().unwrap_or_default();
    let gen = pool.metadata.generation;
    let before = current.unwrap_or(0);
    status.replicas = s.replicas;
    status.connected_probes = s.connected;
    status.capacity = s.replicas.saturating_mul(pool.spec.probes_per_controller);
    status.desired_replicas = Some(s.desired);
    status.scale_down_since = s.lower_since_ms.and_then(ms_time);
    status.draining = s.draining.clone();
    status.draining_since = s.draining_since_ms.and_then(ms_time);
    status.observed_generation = gen;
    let c = &mut status.conditions;
    conditions::set(
        c,
        pc::READY,
        true,
        reason::RECONCILED,
        format!(
            "{} controllers for {} connected probes (capacity {})",
            s.replicas, s.connected, status.capacity
        ),
        gen,
        now.clone(),
    );
    let (scaling, why, msg) = if s.replicas > before {
        (
            true,
            reason::SCALING_UP,
            format!("scaling up from {before} to {}", s.replicas),
        )
    } else if !s.draining.is_empty() || s.replicas < before {
        (
            true,
            reason::SCALING_DOWN,
            format!(
                "scaling down from {before} to {}",
                s.desired.max(s.replicas.min(before))
            ),
        )
    } else if let Some(since) = s.lower_since_ms.and_then(ms_time) {
        (
            false,
            reason::STABILIZING,
            format!(
                "the load asks for {} controllers since {}; waiting for the stabilization window",
                s.desired, since.0
            ),
        )
    } else {
        (false, reason::STEADY, format!("{} controllers", s.replicas))
    };
    conditions::set(c, pc::SCALING, scaling, why, msg, gen, now.clone());
    let (draining, why, msg) = if !s.draining.is_empty() {
        (
            true,
            reason::DRAINING,
            format!(
                "draining {} ({} probes left) before scaling down",
                s.draining.join(", "),
                s.draining_probes
            ),
        )
    } else if let Some(left) = s.drain_timed_out {
        (
            false,
            reason::DRAIN_TIMED_OUT,
            format!("drain timed out with {left} probes left; scaled down anyway"),
        )
    } else {
        (false, reason::NOT_DRAINING, String::new())
    };
    conditions::set(c, pc::DRAINING, draining, why, msg, gen, now);
    status
}

/// An invalid spec: Ready=False/InvalidSpec with the message, nothing rendered.
pub fn invalid_status(pool: &ControllerPool, message: &str, now: Time) -> ControllerPoolStatus {
    let mut status = pool.status.clone().unwrap_or_default();
    status.observed_generation = pool.metadata.generation;
    conditions::set(
        &mut status.conditions,
        pc::READY,
        false,
        reason::INVALID_SPEC,
        message,
        pool.metadata.generation,
        now,
    );
    status
}

pub async fn reconcile<D: DrainSignal>(
    pool: Arc<ControllerPool>,
    ctx: Arc<PoolCtx<D>>,
) -> Result<Action, PoolError> {
    ctx.metrics.reconciles.inc();
    let ns = pool.namespace().unwrap_or_else(|| "default".into());
    let name = pool.name_any();
    let pools: Api<ControllerPool> = Api::namespaced(ctx.client.clone(), &ns);
    let now = k8s_openapi::jiff::Timestamp::now();
    let now_time = Time(now);
    if pool.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove what the pool rendered.
        return Ok(Action::await_change());
    }
    // Validate (pure).
    if let Err(e) = render::validate(&pool.spec) {
        let status = invalid_status(&pool, &e.0, now_time);
        if Some(&status) != pool.status.as_ref() {
            patch_status(&pools, &name, &status).await?;
            tracing::warn!(pool = %name, error = %e, "invalid ControllerPool");
            let ev = PoolEvent {
                warning: true,
                reason: event_reason::INVALID_SPEC,
                note: e.0.clone(),
            };
            ctx.events.publish(&pool, &[ev]).await;
        }
        return Ok(Action::await_change());
    }
    // Read.
    let names = Names::of(&name);
    let sts_api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let current = sts_api
        .get_opt(&names.statefulset)
        .await
        .map_err(PoolError::Kube)?
        .and_then(|s| s.spec.replicas)
        .map(|r| u32::try_from(r).unwrap_or(0));
    let counts = ctx.sessions.by_controller();
    // Decide (pure).
    let s = step(&pool, current, &counts, now.as_millisecond());
    // Apply: drain signals first, then the workloads.
    if !s.undrain.is_empty() {
        ctx.drain.undrain(&s.undrain).await?;
    }
    let already: &[String] = pool
        .status
        .as_ref()
        .map(|st| st.draining.as_slice())
        .unwrap_or(&[]);
    if !s.signal.is_empty() && s.signal.as_slice() != already {
        ctx.drain.drain(&s.signal).await?;
        tracing::info!(pool = %name, controllers = ?s.signal, "draining controllers before scale-down");
    }
    let rendered = render::render(&pool, s.replicas);
    apply(&ctx.client, &ns, &rendered).await?;
    prune_per_pod(&ctx.client, &ns, &names, &name, s.replicas).await?;
    if current != Some(s.replicas) {
        let dir = if s.replicas > current.unwrap_or(0) {
            "up"
        } else {
            "down"
        };
        ctx.metrics
            .scale_events
            .get_or_create(&vec![("direction".to_owned(), dir.to_owned())])
            .inc();
        tracing::info!(pool = %name, from = ?current, to = s.replicas, connected = s.connected, "scaled controllers");
    }
    // Status.
    let status = next_status(&pool, current, &s, now_time);
    if Some(&status) != pool.status.as_ref() {
        patch_status(&pools, &name, &status).await?;
    }
    // Events last: what happened is applied and visible in status.
    ctx.events.publish(&pool, &events(&pool, current, &s)).await;
    Ok(if s.draining.is_empty() {
        Action::requeue(Duration::from_secs(15))
    } else {
        Action::requeue(Duration::from_secs(3))
    })
}

async fn apply(client: &Client, ns: &str, rendered: &render::Rendered) -> Result<(), PoolError> {
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    for obj in rendered.objects() {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let result = match obj["kind"].as_str() {
            Some("StatefulSet") => Api::<StatefulSet>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Apply(obj))
                .await
                .map(|_| ()),
            Some("Deployment") => Api::<Deployment>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Apply(obj))
                .await
                .map(|_| ()),
            _ => Api::<Service>::namespaced(client.clone(), ns)
                .patch(name, &pp, &Patch::Apply(obj))
                .await
                .map(|_| ()),
        };
        result.map_err(PoolError::Kube)?;
    }
    Ok(())
}

/// Delete the per-pod Services of ordinals at or above `replicas`.
async fn prune_per_pod(
    client: &Client,
    ns: &str,
    names: &Names,
    pool: &str,
    replicas: u32,
) -> Result<(), PoolError> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{POOL_LABEL}={pool},{PER_POD_LABEL}=true"));
    let list = api.list(&lp).await.map_err(PoolError::Kube)?;
    for svc in list {
        let n = svc.name_any();
        if names.ordinal(&n).is_some_and(|i| i >= replicas) {
            match api.delete(&n, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(service = %n, "deleted the Service of a removed controller")
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(PoolError::Kube(e)),
            }
        }
    }
    Ok(())
}

async fn patch_status(
    api: &Api<ControllerPool>,
    name: &str,
    status: &ControllerPoolStatus,
) -> Result<(), PoolError> {
    let patch: Value = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(PoolError::Kube)
}

/// An invalid spec never gets here (it is reported in status and awaits a change):
/// every error is transient, counted and retried.
pub fn error_policy<D: DrainSignal>(
    pool: Arc<ControllerPool>,
    error: &PoolError,
    ctx: Arc<PoolCtx<D>>,
) -> Action {
    let kind = match error {
        PoolError::Kube(_) => "kube",
        PoolError::Drain(_) => "nats",
        PoolError::Encode { .. } => "encode",
    };
    ctx.metrics
        .failures
        .get_or_create(&vec![("kind".to_owned(), kind.to_owned())])
        .inc();
    tracing::warn!(pool = %pool.name_any(), %error, "ControllerPool reconcile failed; retrying in 5s");
    Action::requeue(Duration::from_secs(5))
}

/// Run the ControllerPool controller until shutdown: pools in `namespace` (all when
/// None), re-reconciled when a StatefulSet, Service or Deployment they own changes.
pub async fn run_controller(
    client: Client,
    namespace: Option<String>,
    sessions: Sessions,
    meta: async_nats::jetstream::kv::Store,
    metrics: PoolMetrics,
) {
    use futures::StreamExt;
    use kube::runtime::{watcher, Controller};
    fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let owned = watcher::Config::default().labels(POOL_LABEL);
    let ctx = Arc::new(PoolCtx {
        client: client.clone(),
        sessions,
        drain: KvDrain(meta),
        metrics,
        events: PoolEvents::kube(client.clone()),
    });
    Controller::new(
        api::<ControllerPool>(&client, &namespace),
        watcher::Config::default(),
    )
    .owns(api::<StatefulSet>(&client, &namespace), owned.clone())
    .owns(api::<Service>(&client, &namespace), owned.clone())
    .owns(api::<Deployment>(&client, &namespace), owned)
    .shutdown_on_signal()
    .run(reconcile, error_policy, ctx)
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::debug!(error = %e, "pool reconcile result");
        }
    })
    .await;
}

impl PoolMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "pool_reconciles",
            "ControllerPool reconciles",
            self.reconciles.clone(),
        );
        registry.register(
            "pool_reconcile_failures",
            "Transient ControllerPool reconcile failures by kind",
            self.failures.clone(),
        );
        registry.register(
            "pool_scale_events",
            "Controller replica changes by direction",
            self.scale_events.clone(),
        );
    }
}
