//! Wiring: the registration and controller processes.

use std::net::SocketAddr;
use std::path::PathBuf;

use futures::StreamExt;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client};
use prometheus_client::registry::Registry;
use vantage_crd::Probe;
use vantage_platform::bus::{Bus, BusError, Retention};
use vantage_platform::obs::{self, Health};

use crate::controller::{ControllerMetrics, ControllerServer, Identity, JetStreamResults};
use crate::keys::{load_or_create_host_key, KeyError};
use crate::registry::{Heartbeats, KubeDirectory, KvAssignments, RegistryMetrics, RegistryServer};

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
}

#[derive(Debug, Clone)]
pub struct Common {
    pub listen: SocketAddr,
    pub host_key: PathBuf,
    pub nats_url: String,
    pub metrics_addr: SocketAddr,
}

fn spawn_obs(addr: SocketAddr, registry: Registry, health: Health) {
    tokio::spawn(async move {
        if let Err(e) = obs::serve(addr, registry, health).await {
            tracing::error!(error = %e, "metrics endpoint failed");
        }
    });
}

async fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener, RunError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Listen { addr, source })
}

/// Run the registration server.
pub async fn registry(common: Common) -> Result<(), RunError> {
    let host_key = load_or_create_host_key(&common.host_key)?;
    let bus = Bus::open(&common.nats_url, "vantage-registry", Retention::default()).await?;
    let client = Client::try_default().await.map_err(RunError::Kube)?;
    let (probes, writer) = reflector::store::<Probe>();
    let watch = reflector(
        writer,
        watcher(Api::<Probe>::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .applied_objects()
    .for_each(|r| async move {
        if let Err(e) = r {
            tracing::warn!(error = %e, "probe watch error");
        }
    });
    tokio::spawn(watch);
    let heartbeats = Heartbeats::default();
    tokio::spawn(heartbeats.clone().follow(bus.client.clone()));

    let mut registry = Registry::with_prefix("vantage_registry");
    let metrics = RegistryMetrics::default();
    metrics.register(&mut registry);
    let health = Health::default();
    spawn_obs(common.metrics_addr, registry, health.clone());
    let listener = listen(common.listen).await?;
    tracing::info!(listen = %common.listen, host_key = %crate::keys::public_line(host_key.public_key()), "registration server listening");
    health.set_ready(true);
    RegistryServer::new(
        KubeDirectory(probes),
        KvAssignments(bus.assignments.clone()),
        heartbeats,
        metrics,
    )
    .serve(listener, host_key)
    .await
    .map_err(RunError::Serve)
}

/// Run a probe controller.
pub async fn controller(common: Common, identity: Identity) -> Result<(), RunError> {
    let host_key = load_or_create_host_key(&common.host_key)?;
    let bus = Bus::open(
        &common.nats_url,
        &format!("vantage-controller-{}", identity.name),
        Retention::default(),
    )
    .await?;
    let mut registry = Registry::with_prefix("vantage_controller");
    let metrics = ControllerMetrics::default();
    metrics.register(&mut registry);
    let health = Health::default();
    spawn_obs(common.metrics_addr, registry, health.clone());
    let listener = listen(common.listen).await?;
    tracing::info!(name = %identity.name, listen = %common.listen, advertise = %identity.advertise, "controller listening");
    health.set_ready(true);
    let sink = JetStreamResults(bus.js.clone());
    ControllerServer::new(identity, &host_key, bus, sink, metrics)
        .serve(listener, host_key)
        .await
        .map_err(RunError::Serve)
}
