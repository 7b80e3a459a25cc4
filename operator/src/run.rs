//! Wiring: the operator process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::runtime::{controller, reflector, watcher, Controller, WatchStreamExt};
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use vantage_crd::{Measurement, Probe, TenantPolicy};
use vantage_platform::bus::{Bus, BusError, Retention};
use vantage_platform::obs::{self, Health};
use vantage_platform::shutdown::Shutdown;
use vantage_platform::store::{Store, StoreError};

use crate::events::Events;
use crate::limits::Ledger;
use crate::load::ProbeLoad;
use crate::measurement::{error_policy, reconcile, Ctx, KvIds, Metrics, RECONCILE_CONCURRENCY};
use crate::policy_status::policy_status_loop;
use crate::probes::{status_writer, Sessions};
use crate::schedules::{KvSchedules, Syncer};
use crate::stats::ResultStats;

#[derive(Debug, Clone)]
pub struct Config {
    pub nats_url: String,
    pub clickhouse_url: String,
    pub clickhouse_db: String,
    /// `--clickhouse-cluster`: the schema is on this ClickHouse cluster (`None`: one node).
    pub clickhouse_cluster: Option<String>,
    pub metrics_addr: SocketAddr,
    /// Retention of the RESULTS stream, which the operator declares.
    pub retention: Retention,
    /// Namespace whose ControllerPools the operator renders; None: every namespace.
    pub pool_namespace: Option<String>,
    /// Selection: a probe already on this many measurements is skipped; 0: no cap
    /// (`--max-measurements-per-probe`).
    pub max_measurements_per_probe: u32,
    /// Selection: the largest `requested`, per source and in all, of one measurement
    /// (`--max-requested`); more is Invalid.
    pub max_requested: u32,
    // Built-in measurements and system tags (`--builtin-*`, `--system-tags-*`).
    /// The built-in measurements every probe runs.
    pub builtins: crate::builtin::BuiltinConfig,
    /// How system tags are derived from their results.
    pub system_tags: crate::system_tags::TagConfig,
    /// `--leader-elect`: reconcile and publish only while holding this Lease. None: this
    /// replica always does (one replica only).
    pub leader_election: Option<crate::lease::LeaseConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "cannot reach the Kubernetes API: {0}; check KUBECONFIG or the in-cluster service account"
    )]
    Kube(#[source] kube::Error),
    #[error(transparent)]
    Builtin(#[from] crate::builtin::BuiltinError),
    #[error("cannot listen for SIGTERM/SIGINT: {0}")]
    Signals(#[source] std::io::Error),
    #[error("the {what} watch ended before its first list arrived: {source}")]
    NotSynced {
        what: &'static str,
        #[source]
        source: reflector::store::WriterDropped,
    },
    #[error("lost the leader lease {lease}: {lost}; exiting so that this replica restarts as a follower")]
    LeaseLost {
        lease: String,
        lost: crate::lease::Lost,
    },
}

/// The Measurement Controller as the operator runs it: every Measurement watched, at most
/// [`RECONCILE_CONCURRENCY`] reconciles at once. `bench_operator` builds it here too.
pub fn measurement_controller(client: Client) -> Controller<Measurement> {
    Controller::new(Api::<Measurement>::all(client), watcher::Config::default())
        .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
}

/// Wait until a reflector's store holds its first list, warning every 10 s meanwhile
/// (the watch errors say why: a missing CRD, RBAC).
async fn first_list<K>(what: &'static str, store: &reflector::Store<K>) -> Result<(), RunError>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    let started = std::time::Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), store.wait_until_ready()).await {
            Ok(ready) => return ready.map_err(|source| RunError::NotSynced { what, source }),
            Err(_) => tracing::warn!(
                kind = what,
                waited_s = started.elapsed().as_secs(),
                "still waiting for the first list; nothing is reconciled until it arrives (is the CRD installed, may the operator list it?)"
            ),
        }
    }
}

/// Publish schedules again when what the built-ins depend on changes (probes enabled or
/// added, anchors and their addresses); checked every 2 s.
async fn builtin_schedule_trigger(
    ctx: Arc<Ctx<KvIds, KvSchedules>>,
    probes: reflector::Store<Probe>,
    plan: Arc<crate::builtin::BuiltinPlan>,
) {
    let mut last = None;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let now = plan.fingerprint(&probes.state());
        if last != Some(now) {
            last = Some(now);
            ctx.sync_requested.notify_one();
        }
    }
}

/// Run the operator until SIGTERM or SIGINT.
///
/// The signals are listened for from the first line (see [`Shutdown`]). Before the
/// reconcilers run (waiting for the lease, NATS, ClickHouse or the first lists), and
/// until the Measurement controller holds its first list (kube runs no reconcile before
/// it), a signal stops the operator at once. After that it stops the reconcilers
/// gracefully (in-flight reconciles finish) and a second signal stops it at once. A
/// leader gives its Lease up on every way out.
pub async fn run(cfg: Config) -> Result<(), RunError> {
    let shutdown = Shutdown::on_signals().map_err(RunError::Signals)?;
    let stopping = Arc::new(Stopping::default());
    let stop = {
        let (shutdown, stopping) = (shutdown.clone(), stopping.clone());
        // Decides only; the Lease is given up below, once `operate` is dropped.
        async move {
            shutdown.requested().await;
            match stopping.reconciling.get() {
                None => tracing::info!("shutdown while starting: nothing was reconciled yet"),
                Some(m) if m.wait_until_ready().now_or_never().is_none() => tracing::info!(
                    "shutdown before the first list of Measurements: nothing was reconciled yet"
                ),
                Some(_) => {
                    shutdown.forced().await;
                    tracing::warn!("forced shutdown: in-flight reconciles are abandoned");
                }
            }
        }
    };
    tokio::select! {
        r = operate(cfg, shutdown, stopping.clone()) => r,
        () = stop => {
            // Only now, with `operate` dropped: it would take the renewal task's end
            // for a lost lease.
            stopping.give_up_lease().await;
            Ok(())
        }
    }
}

/// What [`run`] needs from [`operate`] to stop at a signal.
#[derive(Default)]
struct Stopping {
    /// The Lease this replica holds, and the task renewing it.
    lease: std::sync::OnceLock<(Arc<crate::lease::Elector>, tokio::task::AbortHandle)>,
    /// The Measurement controller's store, once the reconcilers run: from its first
    /// list on, shutdown is graceful.
    reconciling: std::sync::OnceLock<reflector::Store<Measurement>>,
}

impl Stopping {
    /// Stop renewing the Lease and give it up (at most 5 s: on failure another replica
    /// takes over once it expires).
    async fn give_up_lease(&self) {
        let Some((elector, renewing)) = self.lease.get() else {
            return;
        };
        renewing.abort();
        let lease = elector.config().name.clone();
        match tokio::time::timeout(Duration::from_secs(5), elector.release()).await {
            Ok(Ok(true)) => {
                tracing::info!(%lease, "leader election: released the lease on shutdown")
            }
            Ok(Ok(false)) => {
                tracing::info!(%lease, "leader election: the lease was no longer ours on shutdown")
            }
            Ok(Err(e)) => {
                tracing::warn!(%lease, error = %e, "leader election: cannot release the lease on shutdown; another replica takes over once it expires")
            }
            Err(_) => {
                tracing::warn!(%lease, "leader election: releasing the lease took over 5 s; another replica takes over once it expires")
            }
        }
    }
}

/// The operator's work; [`run`] races it against shutdown.
async fn operate(cfg: Config, shutdown: Shutdown, stopping: Arc<Stopping>) -> Result<(), RunError> {
    let builtins = Arc::new(crate::builtin::BuiltinPlan::new(&cfg.builtins)?);
    let health = Health::default();
    let mut registry = Registry::with_prefix("vantage_operator");
    let metrics = Metrics::default();
    registry.register(
        "reconciles",
        "Measurement reconciles",
        metrics.reconciles.clone(),
    );
    registry.register(
        "reconcile_failures",
        "Transient reconcile failures by kind",
        metrics.failures.clone(),
    );
    registry.register(
        "schedules_published",
        "Probe schedules written to NATS KV",
        metrics.schedules_published.clone(),
    );
    let connections = crate::connections::ConnectionLog::default();
    connections.register(&mut registry);
    let pool_metrics = crate::pool::PoolMetrics::default();
    pool_metrics.register(&mut registry);
    let leader = crate::lease::LeaderMetrics::default();
    leader.register(&mut registry);

    // /metrics and /healthz on every replica, leader or not; ready once this replica
    // runs (a follower is healthy while it waits for the lease).
    let obs_health = health.clone();
    let metrics_addr = cfg.metrics_addr;
    tokio::spawn(async move {
        if let Err(e) = obs::serve(metrics_addr, registry, obs_health).await {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });

    let client = Client::try_default().await.map_err(RunError::Kube)?;
    // Leader election: everything below is leader-only work, started once this replica
    // holds the lease.
    let elector = match cfg.leader_election.clone() {
        Some(lease) => {
            let elector = crate::lease::Elector::new(client.clone(), lease);
            let c = elector.config();
            tracing::info!(lease = %c.name, namespace = %c.namespace, identity = %c.identity, "leader election: waiting for the lease");
            health.set_detail("leader", serde_json::json!(false));
            health.set_ready(true);
            elector.acquire().await;
            tracing::info!(lease = %c.name, identity = %c.identity, "leader election: became leader; starting the reconcilers and schedule publishing");
            health.set_detail("leader", serde_json::json!(true));
            leader.transitions.inc();
            let elector = Arc::new(elector);
            let holder = elector.clone();
            let holding = tokio::spawn(async move { holder.hold().await });
            let _ = stopping
                .lease
                .set((elector.clone(), holding.abort_handle()));
            Some((elector, holding))
        }
        None => None,
    };
    leader.leader.set(1);

    let bus = Bus::open(&cfg.nats_url, "vantage-operator", cfg.retention).await?;
    let store = Store::new(&cfg.clickhouse_url, &cfg.clickhouse_db)?
        .with_cluster(cfg.clickhouse_cluster.as_deref())?;
    let version = store.migrate().await?;
    tracing::info!(version, "ClickHouse schema is current");

    // Probes: a reflector the reconciler and the status writer read.
    let (probes, probe_writer) = reflector::store::<Probe>();
    let probe_stream = reflector(
        probe_writer,
        watcher(
            Api::<Probe>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .applied_objects()
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::warn!(error = %e, "probe watch error");
        }
    });

    // TenantPolicies: the limits of each namespace.
    let (policies, policy_writer) = reflector::store::<TenantPolicy>();
    let policy_stream = reflector(
        policy_writer,
        watcher(
            Api::<TenantPolicy>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .applied_objects()
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::warn!(error = %e, "tenant policy watch error");
        }
    });
    let ledger = Arc::new(Ledger::default());
    let load = Arc::new(ProbeLoad::new(
        Some(cfg.max_measurements_per_probe),
        cfg.max_requested,
    ));

    let sessions = Sessions::default();
    let stats = ResultStats::default();
    let controller = measurement_controller(client.clone());
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        probes: probes.clone(),
        measurements: controller.store(),
        policies: policies.clone(),
        ledger: ledger.clone(),
        load: load.clone(),
        events: Events::kube(client.clone()),
        candidates: Default::default(),
        sessions: sessions.clone(),
        stats: stats.clone(),
        ids: KvIds::new(bus.meta.clone()),
        schedules: tokio::sync::Mutex::new(Syncer::with_builtins(builtins.clone(), probes.clone())),
        publisher: KvSchedules(bus.schedules.clone()),
        sync_requested: tokio::sync::Notify::new(),
        metrics,
    });

    tokio::spawn(probe_stream);
    tokio::spawn(policy_stream);
    // Nothing that reads the probes decides before their first list has arrived: with
    // an empty store every Measurement's probes look deleted (ForcedToStop, which is
    // final) and a new one finds no suitable probes. A replica taking over the lease
    // reconciles every Measurement at once, so it would hit this on every takeover.
    // /healthz stays not ready meanwhile.
    tracing::info!("waiting for the first list of Probes and TenantPolicies");
    first_list("Probe", &probes).await?;
    first_list("TenantPolicy", &policies).await?;
    tokio::spawn(policy_status_loop(
        client.clone(),
        policies,
        ctx.measurements.clone(),
        ledger,
        Duration::from_secs(2),
    ));
    tokio::spawn(
        connections
            .clone()
            .write_loop(store.clone(), Duration::from_secs(1)),
    );
    tokio::spawn(sessions.clone().follow(bus.sessions.clone(), connections));
    tokio::spawn(crate::pool::run_controller(
        client.clone(),
        cfg.pool_namespace.clone(),
        sessions.clone(),
        bus.meta.clone(),
        pool_metrics,
        shutdown.clone(),
    ));
    tokio::spawn(crate::probe_table::sync_loop(
        store.clone(),
        probes.clone(),
        Duration::from_secs(10),
    ));
    // Built-ins and system tags: schedules follow the probes and anchors; the status
    // writer sends the derived tags.
    let system_tags = crate::system_tags::SystemTags::default();
    tokio::spawn(crate::system_tags::derive_loop(
        store.clone(),
        probes.clone(),
        system_tags.clone(),
        sessions.clone(),
        builtins.clone(),
        cfg.system_tags.clone(),
    ));
    tokio::spawn(builtin_schedule_trigger(
        ctx.clone(),
        probes.clone(),
        builtins,
    ));
    tokio::spawn(status_writer(
        client.clone(),
        probes,
        sessions,
        system_tags,
        Duration::from_secs(1),
        crate::probes::MAX_STATUS_WRITES_PER_SECOND,
    ));
    tokio::spawn(stats.refresh_loop(store, Duration::from_secs(3)));
    tokio::spawn(ctx.clone().schedule_loop());
    tokio::spawn(crate::load::gc_loop(
        load,
        ctx.measurements.clone(),
        Duration::from_secs(60),
    ));
    // From here a signal (before or after this line: `requested()` sees both) stops the
    // reconcilers gracefully, but not before the controller's store holds its first list:
    // kube runs no reconcile before it, and once the shutdown cuts its watch the list
    // would never come, so kube would wait for it for ever. `run` stops the operator at
    // once when the signal comes before that list.
    let measurements = controller.store();
    let _ = stopping.reconciling.set(measurements.clone());
    let graceful = {
        let requested = shutdown.requested();
        async move {
            requested.await;
            let _ = measurements.wait_until_ready().await;
        }
    };
    health.set_ready(true);
    tracing::info!("operator running");
    let reconcilers = controller
        .graceful_shutdown_on(graceful)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "reconcile result");
            }
        });
    let Some((elector, mut holding)) = elector else {
        reconcilers.await;
        return Ok(());
    };
    tokio::select! {
        // A loss found while starting up wins over starting the reconcilers.
        biased;
        // Lost: stop every leader-only task at once by returning (the process exits).
        lost = &mut holding => {
            leader.leader.set(0);
            leader.transitions.inc();
            let lease = elector.config().name.clone();
            let lost = match lost {
                Ok(lost) => lost,
                Err(e) => crate::lease::Lost::Deadline { since_renewal: Duration::ZERO, last_error: Some(format!("the renewal task ended: {e}")) },
            };
            tracing::error!(%lease, reason = %lost, "leader election: lost the lease; stopping all leader-only work and exiting");
            Err(RunError::LeaseLost { lease, lost })
        }
        // SIGTERM: the controller stopped; give the lease up so another replica takes
        // over within a retry period.
        () = reconcilers => {
            leader.leader.set(0);
            stopping.give_up_lease().await;
            Ok(())
        }
    }
}
