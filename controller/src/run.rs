//! Wiring: the registration and controller processes.

use std::net::SocketAddr;
use std::path::PathBuf;

use futures::StreamExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use std::sync::Arc;

use vantage_core::nats::{FirmwareTarget, FIRMWARE_KEY};
use vantage_core::WIRE_VERSION;
use vantage_crd::{Probe, ProbeFirmware};
use vantage_platform::bus::{Bus, BusError};
use vantage_platform::obs::{self, Health};
use vantage_platform::shutdown::Shutdown;

use crate::controller::{ControllerMetrics, ControllerServer, Identity, JetStreamResults};
use crate::keys::{load_or_create_host_key, KeyError};
use crate::preauth::PreAuthLimits;
use crate::registration::{
    Heartbeats, KubeDirectory, KubeReleases, KvAssignments, RegistrationMetrics,
    RegistrationServer, Releases,
};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot listen on {addr}: {source}; is the port free (and, below 1024, are we allowed to bind it)?")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot reach the Kubernetes API: {0}; check KUBECONFIG or the in-cluster service account"
    )]
    Kube(#[source] kube::Error),
    #[error("SSH server stopped: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error("cannot listen for SIGTERM/SIGINT: {0}")]
    Signals(#[source] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct Common {
    pub listen: SocketAddr,
    pub host_key: PathBuf,
    pub nats_url: String,
    pub metrics_addr: SocketAddr,
    /// Limits on connections that have not authenticated.
    pub preauth: PreAuthLimits,
}

/// Where a controller keeps its spool, and how large it may grow.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

fn spawn_obs(addr: SocketAddr, registry: Registry, health: Health) {
    tokio::spawn(async move {
        if let Err(e) = obs::serve(addr, registry, health).await {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
}

/// Listen on `addr` with an accept queue of [`ACCEPT_BACKLOG`] (the kernel caps it at
/// `net.core.somaxconn`), so that a reconnect storm or a flood of connections that the gate
/// refuses does not overflow it while the accept loop waits for a core.
async fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener, RunError> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    };
    socket
        .and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(addr)?;
            s.listen(ACCEPT_BACKLOG)
        })
        .map_err(|source| RunError::Listen { addr, source })
}

/// The accept queue of both SSH servers (tokio's default is 1024).
pub const ACCEPT_BACKLOG: u32 = 4096;

/// Run the registration server; firmware bundles are files in `firmware_dir`.
pub async fn registration(common: Common, firmware_dir: PathBuf) -> Result<(), RunError> {
    let host_key = load_or_create_host_key(&common.host_key)?;
    // The operator declares the layout; registration only binds to it.
    let bus = Bus::attach(&common.nats_url, "vantage-registration").await?;
    let client = Client::try_default().await.map_err(RunError::Kube)?;
    let (probes, writer) = reflector::store::<Probe>();
    // A disabled probe loses its assignment; its controller then closes the session. The
    // revoke is retried in the background while NATS fails (a cluster electing a leader).
    let revoker = crate::revoke::Revoker::new(bus.assignments.clone());
    let current = probes.clone();
    let watch = reflector(
        writer,
        watcher(
            Api::<Probe>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .applied_objects()
    .for_each(move |r| {
        match r {
            Ok(probe) if !probe.spec.enabled => {
                let (store, key) = (current.clone(), ObjectRef::from_obj(&probe));
                revoker.spawn(probe.spec.id, move || {
                    store.get(&key).is_some_and(|p| !p.spec.enabled)
                });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "probe watch error"),
        }
        futures::future::ready(())
    });
    tokio::spawn(watch);
    let heartbeats = Heartbeats::default();
    tokio::spawn(heartbeats.clone().follow(bus.client.clone()));

    let releases = Arc::new(follow_firmware(
        client.clone(),
        bus.meta.clone(),
        firmware_dir,
    ));

    let mut registry = Registry::with_prefix("vantage_registration");
    let metrics = RegistrationMetrics::default();
    metrics.register(&mut registry);
    let health = Health::default();
    spawn_obs(common.metrics_addr, registry, health.clone());
    let listener = listen(common.listen).await?;
    tracing::info!(listen = %common.listen, grace_s = common.preauth.grace.as_secs(), max_startups = %common.preauth.startups, per_source = common.preauth.per_source, host_key = %crate::keys::public_line(host_key.public_key()), "registration server listening");
    health.set_ready(true);
    RegistrationServer::new(
        KubeDirectory::new(probes),
        KvAssignments(bus.assignments.clone()),
        heartbeats,
        releases,
        metrics,
    )
    .preauth(common.preauth)
    .serve(listener, host_key)
    .await
    .map_err(RunError::Serve)
}

/// Follow `ProbeFirmware` resources; publish the newest release to `vantage-meta/firmware`
/// so that controllers act on forced rollouts.
fn follow_firmware(
    client: Client,
    meta: async_nats::jetstream::kv::Store,
    dir: PathBuf,
) -> KubeReleases {
    let (store, writer) = reflector::store::<ProbeFirmware>();
    let releases = KubeReleases { store, dir };
    let watched = releases.clone();
    let watch = reflector(
        writer,
        watcher(
            Api::<ProbeFirmware>::all(client),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects()
    .for_each(move |r| {
        let meta = meta.clone();
        let releases = watched.clone();
        async move {
            if let Err(e) = r {
                tracing::warn!(error = %e, "firmware watch error");
                return;
            }
            let Some(newest) = releases.newest() else {
                return;
            };
            let target = FirmwareTarget {
                v: WIRE_VERSION,
                version: newest.version,
                forced: newest.forced,
                percentage: newest.percentage,
            };
            let current = meta.get(FIRMWARE_KEY).await.ok().flatten();
            let bytes = serde_json::to_vec(&target).unwrap_or_default();
            if current.as_deref() != Some(&bytes[..]) {
                match meta.put(FIRMWARE_KEY, bytes.into()).await {
                    Ok(_) => tracing::info!(
                        version = target.version,
                        forced = target.forced,
                        "firmware release published"
                    ),
                    Err(e) => tracing::warn!(error = %e, "cannot publish the firmware release"),
                }
            }
        }
    });
    tokio::spawn(watch);
    releases
}

/// Run a probe controller.
pub async fn controller(
    common: Common,
    identity: Identity,
    spool: SpoolConfig,
) -> Result<(), RunError> {
    let host_key = load_or_create_host_key(&common.host_key)?;
    let spool = crate::spool::Spool::open(&spool.dir, spool.max_bytes)?;
    let bus = Bus::attach(
        &common.nats_url,
        &format!("vantage-controller-{}", identity.name),
    )
    .await?;
    let mut registry = Registry::with_prefix("vantage_controller");
    let metrics = ControllerMetrics::default();
    metrics.register(&mut registry);
    let health = Health::default();
    spawn_obs(common.metrics_addr, registry, health.clone());
    let listener = listen(common.listen).await?;
    // Listened for before /healthz turns ready (a signal before `serve` polls its
    // shutdown future is not lost); until here SIGTERM ends the process outright.
    let shutdown = Shutdown::on_signals().map_err(RunError::Signals)?;
    tracing::info!(name = %identity.name, listen = %common.listen, grace_s = common.preauth.grace.as_secs(), max_startups = %common.preauth.startups, per_source = common.preauth.per_source, advertise = %identity.advertise, "controller listening");
    health.set_ready(true);
    let sink = JetStreamResults(bus.js.clone());
    ControllerServer::new(identity, &host_key, bus, sink, spool, metrics)
        .preauth(common.preauth)
        .serve(listener, host_key, shutdown.requested())
        .await
        .map_err(RunError::Serve)
}
