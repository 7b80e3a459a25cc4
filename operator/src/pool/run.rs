//! The ControllerPool reconciler as a pipeline: read (the pool, its StatefulSet, the
//! probe sessions), decide ([`super::plan`]), apply (drain signals, then
//! [`super::apply`]), status (server-side apply), Events; and the Controller that runs it.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Api, Client, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use vantage_crd::{apply_status, ControllerPool};

use super::apply;
use super::drain::{DrainSignal, KvDrain};
use super::plan::{event_reason, events, invalid_status, next_status, step};
use super::render::{self, Names, POOL_LABEL};
use super::PoolError;
use crate::events::{Event, Events};
use crate::probes::Sessions;
use crate::FIELD_MANAGER;

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
    pub events: Events,
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
            apply_status(&pools, &name, FIELD_MANAGER, &status).await?;
            tracing::warn!(pool = %name, error = %e, "invalid ControllerPool");
            let ev = Event::new(true, event_reason::INVALID_SPEC, e.0.clone());
            ctx.events.publish(pool.as_ref(), &[ev]).await;
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
    apply::apply(&ctx.client, &ns, &rendered).await?;
    apply::prune_per_pod(&ctx.client, &ns, &names, &name, s.replicas).await?;
    if rendered.registration.is_empty() {
        apply::sweep_registration(&ctx.client, &ns, &name).await?;
    }
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
        apply_status(&pools, &name, FIELD_MANAGER, &status).await?;
    }
    // Events last: what happened is applied and visible in status.
    ctx.events
        .publish(pool.as_ref(), &events(&pool, current, &s))
        .await;
    Ok(if s.draining.is_empty() {
        Action::requeue(Duration::from_secs(15))
    } else {
        Action::requeue(Duration::from_secs(3))
    })
}

/// An invalid spec never gets here (it is reported in status and awaits a change):
/// every error is transient, counted and retried.
pub fn error_policy<D: DrainSignal>(
    pool: Arc<ControllerPool>,
    error: &PoolError,
    ctx: Arc<PoolCtx<D>>,
) -> Action {
    ctx.metrics
        .failures
        .get_or_create(&vec![("kind".to_owned(), error.metric_label().to_owned())])
        .inc();
    tracing::warn!(pool = %pool.name_any(), %error, "ControllerPool reconcile failed; retrying in 5s");
    Action::requeue(Duration::from_secs(5))
}

/// Run the ControllerPool controller until `shutdown` is requested: pools in `namespace`
/// (all when None), re-reconciled when a StatefulSet, Service or Deployment they own
/// changes.
pub async fn run_controller(
    client: Client,
    namespace: Option<String>,
    sessions: Sessions,
    meta: async_nats::jetstream::kv::Store,
    metrics: PoolMetrics,
    shutdown: vantage_platform::shutdown::Shutdown,
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
        events: Events::kube(client.clone()),
    });
    Controller::new(
        api::<ControllerPool>(&client, &namespace),
        watcher::Config::default(),
    )
    .owns(api::<StatefulSet>(&client, &namespace), owned.clone())
    .owns(api::<Service>(&client, &namespace), owned.clone())
    .owns(api::<Deployment>(&client, &namespace), owned)
    .graceful_shutdown_on(shutdown.requested())
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
