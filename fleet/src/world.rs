//! The server side of the fleet: real `vantage controller` processes, a registration
//! server (the production `RegistrationServer`, in this process, with its Probe directory
//! filled as its reflector would be), NATS KV for assignments and schedules, and the
//! readings a benchmark reports (`/proc` counters, `/metrics`, nats-server's monitor).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use kube::runtime::{reflector, watcher};
use tokio::sync::mpsc;
use vantage_controller::registration::{
    Heartbeats, KubeDirectory, KvAssignments, NoReleases, RegistrationMetrics, RegistrationServer,
};
use vantage_core::definition::{PingOptions, Task, TaskKind};
use vantage_core::nats::{probe_key, ScheduleDoc};
use vantage_core::WIRE_VERSION;
use vantage_crd::{Probe, ProbeSpec as CrdProbeSpec};
use vantage_platform::bus::{Bus, Retention};

use crate::probes::{self, Event};
use vantage_testkit::free_port;

/// One `vantage controller` process.
pub struct ControllerProc {
    pub name: String,
    pub ssh_port: u16,
    pub metrics_port: u16,
    child: Child,
}

impl ControllerProc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A counter or gauge from its `/metrics` (sum over label sets).
    pub async fn metric(&self, name: &str) -> f64 {
        metric(self.metrics_port, name).await.unwrap_or(f64::NAN)
    }
}

impl Drop for ControllerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of the samples of `name` on `127.0.0.1:port/metrics`.
pub async fn metric(port: u16, name: &str) -> anyhow::Result<f64> {
    let text = http_get(port, "/metrics").await?;
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let base = series.split('{').next().unwrap_or(series);
        if base == name {
            sum += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    Ok(sum)
}

/// A plain HTTP/1.0 GET on loopback (metrics and nats-server's monitor).
pub async fn http_get(port: u16, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    Ok(body
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

/// `VmRSS` and `VmHWM` of a process, KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// utime + stime of a process, in clock ticks (1/100 s).
pub fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after: Vec<String> = s
                .rsplit_once(") ")?
                .1
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            Some(after.get(11)?.parse::<u64>().ok()? + after.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// The pid of the process listening on `port` (nats-server of the stack), by `/proc`.
pub fn pid_listening_on(port: u16) -> Option<u32> {
    let hex = format!(":{port:04X}");
    let inode = std::fs::read_to_string("/proc/net/tcp")
        .ok()?
        .lines()
        .skip(1)
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1)?.ends_with(&hex) && *f.get(3)? == "0A")
                .then(|| f.get(9).map(|s| s.to_string()))?
        })?;
    let target = format!("socket:[{inode}]");
    for proc in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == target) {
                return Some(pid);
            }
        }
    }
    None
}

/// What the world is made of.
pub struct WorldConfig {
    pub vantage: PathBuf,
    pub nats_url: String,
    pub controllers: usize,
    /// Probe ids `first_id .. first_id + probes`.
    pub first_id: u32,
    pub probes: u32,
    pub seed: u64,
    pub log_dir: PathBuf,
}

/// Controllers, registration and the bus, up.
pub struct World {
    pub bus: Bus,
    pub controllers: Vec<ControllerProc>,
    pub registration: String,
    pub registration_key: String,
    pub first_id: u32,
    pub probes: u32,
    /// Every `Ran` event the probes reported: msm -> probe -> time (Unix µs).
    pub ran: Arc<Mutex<HashMap<u64, HashMap<u32, u64>>>>,
    events_tx: mpsc::UnboundedSender<Event>,
}

impl World {
    pub async fn start(cfg: &WorldConfig) -> anyhow::Result<Self> {
        let bus = Bus::open(&cfg.nats_url, "fleet", Retention::default()).await?;
        let mut controllers = Vec::new();
        let capacity = cfg.probes.div_ceil(cfg.controllers.max(1) as u32) + 500;
        for i in 0..cfg.controllers {
            let name = format!("fleet-{}-{i}", std::process::id());
            let ssh_port = free_port()?;
            let metrics_port = free_port()?;
            let log = std::fs::File::create(cfg.log_dir.join(format!("{name}.log")))?;
            let child = Command::new(&cfg.vantage)
                .args(["controller", "--name", &name])
                .args(["--listen", &format!("127.0.0.1:{ssh_port}")])
                .args(["--advertise", &format!("127.0.0.1:{ssh_port}")])
                .args(["--capacity", &capacity.to_string()])
                .arg("--host-key")
                .arg(cfg.log_dir.join(format!("{name}.key")))
                .arg("--spool-dir")
                .arg(cfg.log_dir.join(format!("{name}.spool")))
                .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
                .args(["--nats-url", &cfg.nats_url])
                .env(
                    "RUST_LOG",
                    std::env::var("FLEET_CONTROLLER_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", cfg.vantage.display()))?;
            controllers.push(ControllerProc {
                name,
                ssh_port,
                metrics_port,
                child,
            });
        }
        for c in &controllers {
            wait_listening(c.ssh_port, Duration::from_secs(60)).await?;
        }

        // The registration server, as `vantage registration` runs it, with its Probe
        // directory filled as the reflector over Probe resources fills it.
        let (store, mut writer) = reflector::store::<Probe>();
        for id in cfg.first_id..cfg.first_id + cfg.probes {
            let key = probes::probe_key(cfg.seed, id);
            let mut probe = Probe::new(
                &format!("fleet-{id}"),
                CrdProbeSpec::new(id, vantage_controller::keys::public_line(key.public_key())),
            );
            probe.metadata.resource_version = Some("1".into());
            writer.apply_watcher_event(&watcher::Event::Apply(probe));
        }
        let host_key = vantage_controller::keys::load_or_create_host_key(
            &cfg.log_dir.join("registration.key"),
        )?;
        let registration_key = vantage_controller::keys::public_line(host_key.public_key());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let registration = listener.local_addr()?.to_string();
        // Only this world's controllers: other controllers on the same NATS (another
        // test's) would otherwise take some of the probes.
        let heartbeats = Heartbeats::default();
        let names: Vec<String> = controllers.iter().map(|c| c.name.clone()).collect();
        let mut beats = bus
            .client
            .subscribe(vantage_core::nats::HEARTBEAT_WILDCARD)
            .await?;
        let ours = heartbeats.clone();
        tokio::spawn(async move {
            while let Some(msg) = beats.next().await {
                if let Ok(hb) =
                    serde_json::from_slice::<vantage_core::nats::Heartbeat>(&msg.payload)
                {
                    if names.contains(&hb.controller) {
                        ours.record(hb);
                    }
                }
            }
        });
        let server = RegistrationServer::new(
            KubeDirectory::new(store),
            KvAssignments(bus.assignments.clone()),
            heartbeats.clone(),
            Arc::new(NoReleases),
            RegistrationMetrics::default(),
        );
        tokio::spawn(async move {
            if let Err(e) = server.serve(listener, host_key).await {
                tracing::error!(error = %e, "registration server stopped");
            }
        });
        // Wait for every controller's first heartbeat.
        let deadline = Instant::now() + Duration::from_secs(30);
        while heartbeats.snapshot().len() < controllers.len() {
            if Instant::now() > deadline {
                bail!("controllers did not heartbeat within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Event>();
        let ran: Arc<Mutex<HashMap<u64, HashMap<u32, u64>>>> = Arc::default();
        let sink = ran.clone();
        tokio::spawn(async move {
            while let Some(Event::Ran { probe, msm, at_us }) = events_rx.recv().await {
                if let Ok(mut ran) = sink.lock() {
                    ran.entry(msm).or_default().entry(probe).or_insert(at_us);
                }
            }
        });
        Ok(Self {
            bus,
            controllers,
            registration,
            registration_key,
            first_id: cfg.first_id,
            probes: cfg.probes,
            ran,
            events_tx,
        })
    }

    /// Where probes report.
    pub fn events(&self) -> mpsc::UnboundedSender<Event> {
        self.events_tx.clone()
    }

    /// The spec for probes `first .. first + count` of this world.
    pub fn spec(&self, seed: u64, first: u32, count: u32, concurrency: usize) -> probes::ProbeSpec {
        probes::ProbeSpec {
            seed,
            first,
            count,
            registration: self.registration.clone(),
            registration_key: self.registration_key.clone(),
            concurrency,
        }
    }

    /// Probes of this world that have run `msm`.
    pub fn ran_count(&self, msm: u64) -> usize {
        self.ran
            .lock()
            .map(|r| r.get(&msm).map_or(0, HashMap::len))
            .unwrap_or(0)
    }

    /// Run times of `msm` per probe.
    pub fn ran_at(&self, msm: u64) -> HashMap<u32, u64> {
        self.ran
            .lock()
            .ok()
            .and_then(|r| r.get(&msm).cloned())
            .unwrap_or_default()
    }

    /// Wait until `want` probes have run `msm`, or `timeout`; returns how many did.
    pub async fn wait_ran(&self, msm: u64, want: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.ran_count(msm);
            if n >= want || Instant::now() > deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Write every probe's schedule (`tasks(probe)`), 256 writes in flight; returns
    /// when each write was acknowledged, per probe (Unix µs).
    pub async fn put_schedules(
        &self,
        ids: impl Iterator<Item = u32>,
        tasks: impl Fn(u32) -> Vec<Task>,
    ) -> anyhow::Result<HashMap<u32, u64>> {
        let writes = futures::stream::iter(ids.map(|id| {
            let kv = self.bus.schedules.clone();
            let doc = ScheduleDoc {
                v: WIRE_VERSION,
                probe_id: id,
                tasks: tasks(id),
            };
            async move {
                let bytes = serde_json::to_vec(&doc)?;
                let started = probes::unix_us();
                kv.put(probe_key(id), bytes.into()).await?;
                Ok::<_, anyhow::Error>((id, started))
            }
        }))
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
        writes.into_iter().collect()
    }

    /// Remove what this world wrote to the shared buckets (assignments, sessions,
    /// schedules) and its results from the RESULTS stream.
    pub async fn clean_up(&self, msms: &[u64]) {
        let ids = self.first_id..self.first_id + self.probes;
        let buckets = [
            self.bus.schedules.clone(),
            self.bus.assignments.clone(),
            self.bus.sessions.clone(),
        ];
        let purges = futures::stream::iter(ids.flat_map(|id| {
            buckets
                .clone()
                .into_iter()
                .map(move |kv| async move { kv.purge(probe_key(id)).await })
        }))
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
        drop(purges);
        if let Ok(stream) = self
            .bus
            .js
            .get_stream(vantage_core::nats::RESULTS_STREAM)
            .await
        {
            for msm in msms {
                let _ = stream
                    .purge()
                    .filter(vantage_core::nats::result_subject("ping", *msm))
                    .await;
            }
        }
    }
}

/// A ping task as a RIPE Atlas measurement would schedule it.
pub fn ping_task(msm: u64, interval: u32, oneoff: bool) -> Task {
    Task {
        msm_id: msm,
        af: 4,
        target: "127.0.0.1".into(),
        interval,
        spread: interval,
        start_time: None,
        stop_time: None,
        is_oneoff: oneoff,
        kind: TaskKind::Ping(PingOptions {
            packets: 3,
            size: 48,
            packet_interval_ms: 1000,
        }),
    }
}

async fn wait_listening(port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("nothing listens on 127.0.0.1:{port} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The path of the `vantage` binary next to the running test or example
/// (`target/<profile>/vantage`), or `$VANTAGE_BIN`.
pub fn vantage_bin() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("VANTAGE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let mut dir: Option<&Path> = exe.parent();
    while let Some(d) = dir {
        let candidate = d.join("vantage");
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
        if d.file_name().is_some_and(|n| n == "target") {
            break;
        }
    }
    bail!(
        "no vantage binary next to {}: run `cargo build -p vantage` first, or set VANTAGE_BIN",
        exe.display()
    )
}
