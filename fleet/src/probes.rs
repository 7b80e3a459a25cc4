//! The probe side of the fleet: each probe is the agent's own reconnect loop
//! (`agent::run_loop`: registration over SSH, the controller session with its remote
//! and local forwards, the scheduler, the result outbox), with one difference: pings
//! are answered by [`InstantPinger`] instead of ICMP, so that 20,000 probes need no
//! 20,000 raw sockets. The result JSON is built by the agent's own ping code.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use vantage_core::definition::{Task, TaskKind};
use vantage_probe::anchor::{Anchor, RegistrationServer};
use vantage_probe::firmware::Firmware;
use vantage_probe::outbox::Outbox;
use vantage_probe::ping::{self, EchoOutcome, Pinger, RunContext};
use vantage_probe::scheduler::{Measure, Scheduler};

/// The key of probe `id` in a fleet seeded with `seed`: both sides derive it, so the
/// coordinator can list the public keys and the probes hold the private ones.
pub fn probe_key(seed: u64, id: u32) -> russh::keys::PrivateKey {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(id.to_le_bytes());
    let seed: [u8; 32] = h.finalize().into();
    let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
    russh::keys::PrivateKey::from(pair)
}

/// What one group of probes (a worker process, or tasks of the coordinator) runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeSpec {
    pub seed: u64,
    /// Probe ids `first .. first + count`.
    pub first: u32,
    pub count: u32,
    /// The registration server, `host:port`, and its host key (OpenSSH line).
    pub registration: String,
    pub registration_key: String,
    /// Probes setting up their sessions at once (a probe holds its slot from
    /// registration until its first measurement, so until its schedule arrived).
    pub concurrency: usize,
}

/// What the probes report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum Event {
    /// Probe `probe` started measurement `msm` (its schedule carried it) at `at_us`
    /// (Unix microseconds).
    Ran { probe: u32, msm: u64, at_us: u64 },
}

/// Microseconds since the Unix epoch.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Answers every echo at once with a 1 ms round trip.
pub struct InstantPinger;

impl Pinger for InstantPinger {
    async fn echo(&self, _addr: IpAddr, _seq: u16, _size: u32, _t: Duration) -> EchoOutcome {
        EchoOutcome::Reply {
            rtt: Duration::from_micros(1_000),
            ttl: Some(64),
        }
    }
}

/// The fleet's measurement: report that the schedule arrived, then ping with the
/// agent's ping code over [`InstantPinger`].
struct FleetMeasure {
    probe: u32,
    events: mpsc::UnboundedSender<Event>,
    /// The set-up slot, given back at the first measurement.
    slot: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Measure for FleetMeasure {
    async fn run(&self, task: &Task) -> Option<serde_json::Value> {
        let _ = self.events.send(Event::Ran {
            probe: self.probe,
            msm: task.msm_id,
            at_us: unix_us(),
        });
        if let Ok(mut slot) = self.slot.lock() {
            slot.take();
        }
        let TaskKind::Ping(opts) = &task.kind else {
            return None;
        };
        let ctx = RunContext { prb_id: self.probe };
        let result = ping::run_ping(&InstantPinger, task, opts, ctx).await;
        serde_json::to_value(result).ok()
    }
}

/// Run the probes of `spec` until `shutdown` turns true.
pub async fn run(
    spec: ProbeSpec,
    events: mpsc::UnboundedSender<Event>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let host_key = russh::keys::PublicKey::from_openssh(spec.registration_key.trim())?;
    let anchor = Arc::new(Anchor {
        registration: vec![RegistrationServer {
            addr: spec.registration.clone(),
            host_key,
        }],
        firmware_keys: Vec::new(),
    });
    let slots = Arc::new(Semaphore::new(spec.concurrency.max(1)));
    let state = tempfile::tempdir()?;
    let mut tasks = tokio::task::JoinSet::new();
    for id in spec.first..spec.first + spec.count {
        let slot = slots.clone().acquire_owned().await?;
        let key = Arc::new(probe_key(spec.seed, id));
        let anchor = anchor.clone();
        let events = events.clone();
        let shutdown = shutdown.clone();
        // No executable to hash (each probe would read it): the running version is the
        // built-in one, as for a probe that never installed a release.
        let firmware = Firmware::load(
            Path::new("/nonexistent/vantage-probe").to_path_buf(),
            state.path().join(format!("{id}.fw")),
            Vec::new(),
        );
        let measure = Arc::new(FleetMeasure {
            probe: id,
            events,
            slot: Mutex::new(Some(slot)),
        });
        let give_back = measure.clone();
        tasks.spawn(async move {
            // A probe whose session does not come up gives its slot back after a while.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(60)).await;
                if let Ok(mut slot) = give_back.slot.lock() {
                    slot.take();
                }
            });
            let outbox = Arc::new(Outbox::new(1_000));
            let mut scheduler = Scheduler::new(measure, outbox.clone(), 4);
            let prb_id = AtomicU32::new(0);
            vantage_probe::agent::run_loop(
                key,
                &anchor,
                &firmware,
                &mut scheduler,
                &outbox,
                &prb_id,
                shutdown,
            )
            .await;
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
