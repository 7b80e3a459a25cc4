//! The simulated world built out of network namespaces, with real pings.
//!
//! ```text
//!   probe p (ns <prefix>-p<p>)  10.(128+p/256).(p%256).2 ─veth─ .1 ┐
//!                                                                 ├ hub (ns <prefix>-h), the "Internet"
//!   site l (ns <prefix>-t<l>)   10.(132+l/256).(l%256).2 ─veth─ .1 ┘   routes target t's 10.204.t.1 → its site
//!       └ TUN gtun0 ← 10.204.t.1: responder.py answers each echo after the ground-truth
//!         RTT of the asking probe's path (this kernel has no sch_netem)
//!   anycast 10.200.0.1: two target namespaces; the hub routes each probe to the nearer
//!         one with `ip rule from <probe> to 10.200.0.1 lookup <site table>`
//! ```
//!
//! Probes ping targets with the real probe binary (`vantage-probe measure --once`, RIPE
//! Atlas ping JSON) or, without it, iputils `ping`: every chosen probe every target
//! ([`NetnsWorld::measure_from`]), or on demand ([`NetnsMeasurer`], the engines'
//! `Measurer`). The minimum RTTs become the engines' input. Needs root;
//! [`NetnsWorld::build`] says so otherwise.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::json;

use super::{Case, Placement, SimConfig};
use vantage_engines::engine::active::Measurer;
use vantage_engines::engine::latency::ProbeRtt;
use vantage_engines::Error;

/// Left of the calibrated round trip, so that subtracting it keeps RTTs at or above
/// the ground truth when the calibration met a slower moment than later pings.
const CALIBRATION_MARGIN_MS: f64 = 0.02;

/// Probes a world may have (four /16s of /24 links), and target sites likewise.
pub const MAX_PROBES: usize = 1024;
pub const MAX_SITES: usize = 1024;

/// Host `host` (1: the hub, 2: the site) of target site `l`'s link.
fn site_addr(l: usize, host: u8) -> Ipv4Addr {
    let l = l.min(MAX_SITES - 1);
    Ipv4Addr::new(10, 132 + (l / 256) as u8, (l % 256) as u8, host)
}

/// Probe `p`'s address; the hub's end of its link is the same /24 with `.1`.
pub fn probe_addr(p: usize) -> Ipv4Addr {
    let p = p.min(MAX_PROBES - 1);
    Ipv4Addr::new(10, 128 + (p / 256) as u8, (p % 256) as u8, 2)
}

/// The MAC addresses of link `n` of a kind (0 probes, 1 target sites): the hub's end
/// and the far end. Fixed, so every neighbour entry can be permanent: the kernel's ARP
/// table is shared by all namespaces and overflows (1,024 entries by default) with
/// hundreds of links, dropping pings; permanent entries do not count.
fn link_macs(kind: u8, n: usize) -> (String, String) {
    let (hi, lo) = ((n >> 8) as u8, n as u8);
    (
        format!("02:76:{kind:02x}:{hi:02x}:{lo:02x}:01"),
        format!("02:76:{kind:02x}:{hi:02x}:{lo:02x}:02"),
    )
}

/// The delaying echo responder run in every target namespace (Python, stdlib).
pub const RESPONDER: &str = include_str!("responder.py");

/// Why the harness could not run.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "the namespace harness needs root (ip netns, TUN devices, raw sockets); run it as root"
    )]
    NotRoot,
    #[error("{what}: at most 1024 probes and 1024 target sites (one /24 each)")]
    TooLarge { what: String },
    #[error("cannot run {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("the responder in {ns} did not start (see its stderr above)")]
    Responder { ns: String },
    #[error("ping from probe {probe} to {target}: {reason}")]
    Ping {
        probe: u32,
        target: String,
        reason: String,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What sends the pings.
#[derive(Debug, Clone, PartialEq)]
pub enum Pinger {
    /// `vantage-probe measure --once <definition>` (RIPE Atlas ping result JSON).
    Probe(PathBuf),
    /// iputils `ping -c N` (its `rtt min/avg/max/mdev` line).
    Iputils,
}

impl Pinger {
    /// `VANTAGE_PROBE_BIN=<path to vantage-probe>` selects the probe binary; iputils
    /// otherwise. iputils is the default because it takes the send time before the
    /// send and the receive time from the kernel, so load can only lengthen an RTT;
    /// surge-ping 0.9 (in the probe) reads the clock after `send_to` returns, so a
    /// probe preempted there reports an RTT shorter than the path (seen here: up to
    /// −34 ms on a loaded machine), which breaks every speed-of-light argument.
    pub fn find() -> Pinger {
        match std::env::var_os("VANTAGE_PROBE_BIN") {
            Some(p) if !p.is_empty() => Pinger::Probe(PathBuf::from(p)),
            _ => Pinger::Iputils,
        }
    }
}

/// Pings in flight at most, by default.
pub const DEFAULT_IN_FLIGHT: usize = 48;

/// How the namespaces are run.
#[derive(Debug, Clone)]
pub struct NetnsOptions {
    pub pinger: Pinger,
    /// Pings in flight at most (`GEO_IN_FLIGHT`, 48 by default): hundreds at once on
    /// two cores delay the replies by milliseconds, which the world does not have.
    pub in_flight: usize,
    pub python: PathBuf,
    /// Namespace name prefix (`vg<pid>` by default): names are `<prefix>-h`, `-p<i>`, `-t<j>`.
    pub prefix: String,
}

impl Default for NetnsOptions {
    fn default() -> Self {
        let python = if Path::new("/usr/bin/python3").is_file() {
            PathBuf::from("/usr/bin/python3")
        } else {
            PathBuf::from("python3")
        };
        Self {
            pinger: Pinger::find(),
            in_flight: std::env::var("GEO_IN_FLIGHT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_IN_FLIGHT),
            python,
            prefix: format!("vg{}", std::process::id() % 100_000),
        }
    }
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The namespaces, links, routes and responders of one placement; all removed on drop.
pub struct NetnsWorld {
    placement: Placement,
    cfg: SimConfig,
    opts: NetnsOptions,
    namespaces: Vec<String>,
    responders: Vec<Child>,
    dir: PathBuf,
    /// Every ping's measured − true RTT so far.
    record: Mutex<Record>,
    /// The emulation's own round trip, subtracted from every measured RTT.
    overhead_ms: f64,
    /// Pings in flight, over every caller (the on-demand measurer pings for several
    /// targets at once).
    slots: Slots,
}

/// A counting semaphore for blocking code: [`NetnsOptions::in_flight`] pings at once.
struct Slots {
    free: Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Slots {
    fn new(n: usize) -> Self {
        Self {
            free: Mutex::new(n.max(1)),
            freed: std::sync::Condvar::new(),
        }
    }

    fn count(&self) -> std::sync::MutexGuard<'_, usize> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot if one is free now.
    fn try_take(&self) -> Option<Slot<'_>> {
        let mut free = self.count();
        (*free > 0).then(|| {
            *free -= 1;
            Slot(self)
        })
    }

    /// A slot, waiting for one.
    fn take(&self) -> Slot<'_> {
        let mut free = self.count();
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Slot(self)
    }
}

/// A taken slot, given back when dropped.
struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.count() += 1;
        self.0.freed.notify_one();
    }
}

#[derive(Default)]
struct Record {
    diffs: Vec<f64>,
    lost: usize,
    worst: Option<(u32, String, f64, f64)>,
}

/// Measured RTT − ground truth, over every path (how faithful the harness is).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Fidelity {
    pub paths: usize,
    pub lost: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    /// The path farthest from its ground truth: (probe id, target, measured, true ms).
    pub worst: Option<(u32, String, f64, f64)>,
}

fn run(cmd: &mut Command) -> Result<(), HarnessError> {
    let out = cmd.output().map_err(|source| HarnessError::Spawn {
        cmd: format!("{cmd:?}"),
        source,
    })?;
    if !out.status.success() {
        return Err(HarnessError::Command {
            cmd: format!("{cmd:?}"),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// `ip [-n ns] -batch -` with `lines` on stdin.
fn ip_batch(ns: Option<&str>, lines: &[String]) -> Result<(), HarnessError> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let what = format!("ip -n {} -batch", ns.unwrap_or("(root)"));
    let mut child = cmd.spawn().map_err(|source| HarnessError::Spawn {
        cmd: what.clone(),
        source,
    })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(lines.join("\n").as_bytes())
            .and_then(|()| stdin.write_all(b"\n"))
            .map_err(|source| HarnessError::Spawn {
                cmd: what.clone(),
                source,
            })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|source| HarnessError::Spawn {
            cmd: what.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(HarnessError::Command {
            cmd: what,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

impl NetnsWorld {
    fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.opts.prefix)
    }

    /// Create the namespaces, links and routes and start one responder per target site.
    pub fn build(
        placement: Placement,
        cfg: SimConfig,
        opts: NetnsOptions,
    ) -> Result<Self, HarnessError> {
        if !is_root() {
            return Err(HarnessError::NotRoot);
        }
        let sites: usize = placement.targets.iter().map(|t| t.sites.len()).sum();
        if placement.probes.len() > MAX_PROBES || sites > MAX_SITES {
            return Err(HarnessError::TooLarge {
                what: format!("{} probes and {sites} target sites", placement.probes.len()),
            });
        }
        let dir = std::env::temp_dir().join(format!("{}-defs", opts.prefix));
        std::fs::create_dir_all(&dir).map_err(|source| HarnessError::Write {
            path: dir.clone(),
            source,
        })?;
        let slots = Slots::new(opts.in_flight);
        let mut w = NetnsWorld {
            placement,
            cfg,
            opts,
            namespaces: Vec::new(),
            responders: Vec::new(),
            dir,
            record: Mutex::default(),
            slots,
            overhead_ms: 0.0,
        };
        w.wire()?;
        Ok(w)
    }

    fn wire(&mut self) -> Result<(), HarnessError> {
        let hub = self.ns("h");
        let probes: Vec<String> = (0..self.placement.probes.len())
            .map(|p| self.ns(&format!("p{p}")))
            .collect();
        // One namespace per target site: (target index, site index, link index).
        let mut sites = Vec::new();
        for (t, target) in self.placement.targets.iter().enumerate() {
            for s in 0..target.sites.len() {
                sites.push((t, s, sites.len()));
            }
        }
        let site_ns: Vec<String> = sites
            .iter()
            .map(|(_, _, l)| self.ns(&format!("t{l}")))
            .collect();
        let all: Vec<String> = std::iter::once(hub.clone())
            .chain(probes.iter().cloned())
            .chain(site_ns.iter().cloned())
            .collect();
        // Delete leftovers of a run with the same prefix that was killed.
        for ns in &all {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
        ip_batch(
            None,
            &all.iter()
                .map(|ns| format!("netns add {ns}"))
                .collect::<Vec<_>>(),
        )?;
        self.namespaces = all;
        let mut h = vec!["link set lo up".to_owned()];
        for (p, ns) in probes.iter().enumerate() {
            let hub_end = Ipv4Addr::from(u32::from(probe_addr(p)) - 1);
            let (hub_mac, far_mac) = link_macs(0, p);
            h.push(format!(
                "link add p{p} address {hub_mac} type veth peer name eth0 address {far_mac} netns {ns}"
            ));
            h.push(format!("addr add {hub_end}/24 dev p{p}"));
            h.push(format!(
                "neigh add {} lladdr {far_mac} dev p{p} nud permanent",
                probe_addr(p)
            ));
            h.push(format!("link set p{p} up"));
        }
        for ((t, s, l), ns) in sites.iter().zip(&site_ns) {
            let (hub_mac, far_mac) = link_macs(1, *l);
            h.push(format!(
                "link add t{l} address {hub_mac} type veth peer name eth0 address {far_mac} netns {ns}"
            ));
            h.push(format!(
                "neigh add {} lladdr {far_mac} dev t{l} nud permanent",
                site_addr(*l, 2)
            ));
            h.push(format!("addr add {}/24 dev t{l}", site_addr(*l, 1)));
            h.push(format!("link set t{l} up"));
            let ip = self.placement.targets[*t].ip;
            if self.placement.targets[*t].sites.len() == 1 {
                h.push(format!("route add {ip}/32 via {}", site_addr(*l, 2)));
            } else {
                // Anycast: a routing table per site; each probe's rule picks its site.
                let table = 1000 + l;
                h.push(format!(
                    "route add {ip}/32 via {} table {table}",
                    site_addr(*l, 2)
                ));
                for p in 0..probes.len() {
                    if self.placement.site_of[p][*t] == *s {
                        h.push(format!(
                            "rule add from {}/32 to {ip}/32 lookup {table}",
                            probe_addr(p)
                        ));
                    }
                }
            }
        }
        ip_batch(Some(&hub), &h)?;
        run(Command::new("ip").args([
            "netns",
            "exec",
            &hub,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]))?;
        for (p, ns) in probes.iter().enumerate() {
            let addr = probe_addr(p);
            ip_batch(
                Some(ns),
                &[
                    "link set lo up".to_owned(),
                    format!("addr add {addr}/24 dev eth0"),
                    "link set eth0 up".to_owned(),
                    format!(
                        "route add default via {}",
                        Ipv4Addr::from(u32::from(addr) - 1)
                    ),
                    format!(
                        "neigh add {} lladdr {} dev eth0 nud permanent",
                        Ipv4Addr::from(u32::from(addr) - 1),
                        link_macs(0, p).0
                    ),
                ],
            )?;
        }
        for ((t, s, l), ns) in sites.iter().zip(&site_ns) {
            ip_batch(
                Some(ns),
                &[
                    "link set lo up".to_owned(),
                    format!("addr add {}/24 dev eth0", site_addr(*l, 2)),
                    "link set eth0 up".to_owned(),
                    format!("route add default via {}", site_addr(*l, 1)),
                    format!(
                        "neigh add {} lladdr {} dev eth0 nud permanent",
                        site_addr(*l, 1),
                        link_macs(1, *l).0
                    ),
                ],
            )?;
            let delays: serde_json::Map<String, serde_json::Value> = (0..probes.len())
                .filter(|&p| self.placement.site_of[p][*t] == *s)
                .map(|p| {
                    (
                        probe_addr(p).to_string(),
                        json!(self.placement.rtt_ms[p][*t]),
                    )
                })
                .collect();
            let conf = json!({
                "dev": "gtun0",
                "addrs": [self.placement.targets[*t].ip.to_string()],
                "delays": delays,
                "jitter_ms": self.cfg.jitter_ms,
                "jitter": if matches!(self.cfg.profile, crate::Profile::Hard(_)) { "exponential" } else { "uniform" },
                "seed": self.cfg.seed + *l as u64,
            });
            let child = Command::new("ip")
                .args(["netns", "exec", ns])
                .arg(&self.opts.python)
                .args(["-c", RESPONDER])
                .arg(conf.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|source| HarnessError::Spawn {
                    cmd: format!("responder in {ns}"),
                    source,
                })?;
            self.responders.push(child);
        }
        for (child, ns) in self.responders.iter_mut().zip(&site_ns) {
            let mut line = String::new();
            let ok = child
                .stdout
                .take()
                .map(|out| BufReader::new(out).read_line(&mut line).is_ok())
                .unwrap_or(false);
            if !ok || line.trim() != "ready" {
                return Err(HarnessError::Responder { ns: ns.clone() });
            }
        }
        self.overhead_ms = self.calibrate()?;
        Ok(())
    }

    /// The emulation's own round trip (veth hops, TUN, the responder): three probes
    /// each ping three unicast targets 30 times at once (10 ms apart); the least
    /// excess of a minimum RTT over its path's ground truth, less
    /// [`CALIBRATION_MARGIN_MS`]. Subtracted from every measured RTT, so that a path
    /// measures its ground truth plus jitter and load, not plus the harness.
    fn calibrate(&self) -> Result<f64, HarnessError> {
        let unicast: Vec<usize> = (0..self.placement.targets.len())
            .filter(|&t| self.placement.targets[t].sites.len() == 1)
            .take(3)
            .collect();
        let mut running = Vec::new();
        for p in 0..self.placement.probes.len().min(3) {
            for &t in &unicast {
                let ip = self.placement.targets[t].ip;
                let child = Command::new("nsenter")
                    .arg(format!("--net=/run/netns/{}", self.ns(&format!("p{p}"))))
                    .args(["ping", "-n", "-q", "-i", "0.01", "-W", "1", "-c", "30"])
                    .arg(ip.to_string())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|source| HarnessError::Spawn {
                        cmd: format!("calibration ping to {ip}"),
                        source,
                    })?;
                running.push((p, t, child));
            }
        }
        let mut best = f64::INFINITY;
        for (p, t, child) in running {
            let out = child
                .wait_with_output()
                .map_err(|source| HarnessError::Spawn {
                    cmd: "calibration ping".into(),
                    source,
                })?;
            if let Some(min) = parse_iputils_min(&String::from_utf8_lossy(&out.stdout)) {
                best = best.min(min - self.placement.rtt_ms[p][t]);
            }
        }
        Ok(if best.is_finite() {
            (best - CALIBRATION_MARGIN_MS).max(0.0)
        } else {
            0.0
        })
    }

    /// What [`calibrate`](Self::calibrate) found, in ms.
    pub fn overhead_ms(&self) -> f64 {
        self.overhead_ms
    }

    fn spawn_ping(&self, p: usize, t: usize) -> Result<Child, HarnessError> {
        let ns = self.ns(&format!("p{p}"));
        let ip = self.placement.targets[t].ip.to_string();
        // nsenter joins only the network namespace: `ip netns exec` also unshares a
        // mount namespace and remounts /sys for every ping, which loads the machine
        // (and so the RTTs) when hundreds run at once.
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{ns}"));
        match &self.opts.pinger {
            Pinger::Probe(bin) => {
                let def = self.dir.join(format!("p{p}-t{t}.json"));
                let body = json!({"type": "ping", "target": ip,
                    "packets": self.cfg.packets.max(1), "packet_interval": 100});
                std::fs::write(&def, body.to_string()).map_err(|source| HarnessError::Write {
                    path: def.clone(),
                    source,
                })?;
                cmd.arg(bin)
                    .args(["measure", "--prb-id"])
                    .arg(self.placement.probes[p].id.to_string())
                    .arg("--once")
                    .arg(&def);
            }
            Pinger::Iputils => {
                cmd.args(["ping", "-n", "-q", "-i", "0.1", "-W", "2", "-c"])
                    .arg(self.cfg.packets.max(1).to_string())
                    .arg(&ip);
            }
        }
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                cmd: format!("{cmd:?}"),
                source,
            })
    }

    /// The minimum RTT from a ping's output; `None` when every packet was lost.
    fn min_rtt(&self, stdout: &[u8]) -> Option<f64> {
        let text = String::from_utf8_lossy(stdout);
        match self.opts.pinger {
            Pinger::Probe(_) => serde_json::from_str::<serde_json::Value>(text.trim())
                .ok()
                .and_then(|v| v["min"].as_f64())
                .filter(|m| *m >= 0.0),
            Pinger::Iputils => parse_iputils_min(&text),
        }
    }

    /// Every probe pings every target; returns the engines' input, and how far the
    /// measured RTTs are from the ground truth.
    pub fn measure(&self) -> Result<(Vec<Case>, Fidelity), HarnessError> {
        let all: Vec<usize> = (0..self.placement.probes.len()).collect();
        let cases = self.measure_from(&all)?;
        Ok((cases, self.fidelity()))
    }

    /// The given probes (indices into the placement) each ping every target; returns
    /// the engines' input.
    pub fn measure_from(&self, probes: &[usize]) -> Result<Vec<Case>, HarnessError> {
        let n_targets = self.placement.targets.len();
        let mut rtts: Vec<Vec<ProbeRtt>> = vec![Vec::new(); n_targets];
        // Hosts only: the anchors' own addresses are pinged by the mesh.
        let hosts: Vec<usize> = (0..n_targets)
            .filter(|&t| crate::hard::is_host(&self.placement.targets[t]))
            .collect();
        let pairs: Vec<(usize, usize)> = probes
            .iter()
            .flat_map(|&p| hosts.iter().map(move |&t| (p, t)))
            .collect();
        for (p, t, rtt) in self.ping_pairs(&pairs)? {
            if let Some(rtt_ms) = rtt {
                let probe = &self.placement.probes[p];
                rtts[t].push(ProbeRtt {
                    probe_id: probe.id,
                    latitude: probe.latitude,
                    longitude: probe.longitude,
                    rtt_ms,
                });
            }
        }
        Ok(self
            .placement
            .targets
            .iter()
            .zip(rtts)
            .map(|(target, rtts)| Case {
                target: target.clone(),
                rtts,
            })
            .collect())
    }

    /// The anchoring mesh (`Placement::mesh`): (probe index, anchor's target index,
    /// RTT) for every pair that answered.
    pub fn measure_mesh(&self) -> Result<Vec<(usize, usize, f64)>, HarnessError> {
        Ok(self
            .ping_pairs(&self.placement.mesh)?
            .into_iter()
            .filter_map(|(p, t, rtt)| Some((p, t, rtt?)))
            .collect())
    }

    /// Ping every (probe, target) pair, at most [`NetnsOptions::in_flight`] pings in
    /// flight over all callers; the minimum RTT of each (`None`: all lost), recorded
    /// against the ground truth.
    fn ping_pairs(
        &self,
        pairs: &[(usize, usize)],
    ) -> Result<Vec<(usize, usize, Option<f64>)>, HarnessError> {
        let mut running = std::collections::VecDeque::new();
        let mut out = Vec::with_capacity(pairs.len());
        for &(p, t) in pairs {
            // No slot free: reap this caller's oldest ping first (a caller holding
            // slots never waits for others), or wait when it has none.
            let slot = loop {
                if let Some(slot) = self.slots.try_take() {
                    break slot;
                }
                // A reaped ping's slot is given back at the end of its arm.
                match running.pop_front() {
                    Some((p, t, child, _slot)) => out.push((p, t, self.finish_ping(p, t, child)?)),
                    None => break self.slots.take(),
                }
            };
            running.push_back((p, t, self.spawn_ping(p, t)?, slot));
        }
        while let Some((p, t, child, _slot)) = running.pop_front() {
            out.push((p, t, self.finish_ping(p, t, child)?));
        }
        Ok(out)
    }

    /// Wait for one ping; its minimum RTT, less the emulation's own round trip,
    /// recorded against the ground truth.
    fn finish_ping(&self, p: usize, t: usize, child: Child) -> Result<Option<f64>, HarnessError> {
        let probes = &self.placement.probes;
        let target = self.placement.targets[t].ip.to_string();
        let done = child.wait_with_output().map_err(|e| HarnessError::Ping {
            probe: probes[p].id,
            target: target.clone(),
            reason: e.to_string(),
        })?;
        if !done.status.success() && matches!(self.opts.pinger, Pinger::Probe(_)) {
            return Err(HarnessError::Ping {
                probe: probes[p].id,
                target,
                reason: String::from_utf8_lossy(&done.stderr).trim().to_owned(),
            });
        }
        let rtt = self
            .min_rtt(&done.stdout)
            .map(|ms| (ms - self.overhead_ms).max(0.0));
        if let Ok(mut rec) = self.record.lock() {
            match rtt {
                Some(rtt) => {
                    let truth = self.placement.rtt_ms[p][t];
                    rec.diffs.push(rtt - truth);
                    if rec
                        .worst
                        .as_ref()
                        .is_none_or(|w| (w.2 - w.3).abs() < (rtt - truth).abs())
                    {
                        rec.worst = Some((probes[p].id, target, rtt, truth));
                    }
                }
                None => rec.lost += 1,
            }
        }
        Ok(rtt)
    }

    /// Measured − true RTT over every ping so far.
    pub fn fidelity(&self) -> Fidelity {
        let (mut diffs, lost, worst) = match self.record.lock() {
            Ok(rec) => (rec.diffs.clone(), rec.lost, rec.worst.clone()),
            Err(_) => (Vec::new(), 0, None),
        };
        diffs.sort_by(f64::total_cmp);
        let q = |f: f64| {
            if diffs.is_empty() {
                f64::NAN
            } else {
                diffs[((diffs.len() - 1) as f64 * f).round() as usize]
            }
        };
        Fidelity {
            paths: diffs.len() + lost,
            lost,
            min_ms: q(0.0),
            median_ms: q(0.5),
            p95_ms: q(0.95),
            max_ms: q(1.0),
            worst,
        }
    }

    pub fn placement(&self) -> &Placement {
        &self.placement
    }
}

/// On-demand pings in the namespaces: the engines' [`Measurer`] (active single-radius)
/// over a [`NetnsWorld`].
pub struct NetnsMeasurer(pub Arc<NetnsWorld>);

impl Measurer for NetnsMeasurer {
    fn ping<'a>(
        &'a self,
        ip: IpAddr,
        probes: &'a [u32],
    ) -> BoxFuture<'a, Result<Vec<(u32, f64)>, Error>> {
        let lab = self.0.clone();
        let probes = probes.to_vec();
        async move {
            let pl = &lab.placement;
            let t = pl.target_index(ip)?;
            let pairs: Vec<(usize, usize)> = pl
                .probe_indices(&probes)
                .into_iter()
                .map(|p| (p, t))
                .collect();
            let lab = lab.clone();
            let done = tokio::task::spawn_blocking(move || {
                lab.ping_pairs(&pairs).map(|out| {
                    out.into_iter()
                        .filter_map(|(p, _, rtt)| Some((lab.placement.probes[p].id, rtt?)))
                        .collect::<Vec<_>>()
                })
            })
            .await
            .map_err(|e| Error::Measure {
                ip,
                source: e.into(),
            })?;
            done.map_err(|e| Error::Measure {
                ip,
                source: e.into(),
            })
        }
        .boxed()
    }
}

impl Drop for NetnsWorld {
    fn drop(&mut self) {
        for c in &mut self.responders {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !self.namespaces.is_empty() {
            let lines: Vec<String> = self
                .namespaces
                .iter()
                .map(|ns| format!("netns del {ns}"))
                .collect();
            let _ = ip_batch(None, &lines);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `rtt min/avg/max/mdev = 12.708/13.737/17.592/1.927 ms` → 12.708.
pub fn parse_iputils_min(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains("min/avg/max"))?;
    let values = line.split('=').nth(1)?.trim();
    values.split('/').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_addresses() {
        assert_eq!(probe_addr(0), Ipv4Addr::new(10, 128, 0, 2));
        assert_eq!(probe_addr(300), Ipv4Addr::new(10, 129, 44, 2));
        assert_eq!(probe_addr(MAX_PROBES - 1), Ipv4Addr::new(10, 131, 255, 2));
    }

    #[test]
    fn iputils_summary() {
        let out = "--- 10.204.0.1 ping statistics ---\n5 packets transmitted, 5 received, 0% packet loss, time 204ms\nrtt min/avg/max/mdev = 12.708/13.737/17.592/1.927 ms\n";
        assert_eq!(parse_iputils_min(out), Some(12.708));
        assert_eq!(
            parse_iputils_min("3 packets transmitted, 0 received, 100% packet loss"),
            None
        );
    }

    #[test]
    fn slots_cap_what_is_in_flight_and_come_back_when_dropped() {
        let slots = Slots::new(2);
        let a = slots.try_take().expect("first");
        let b = slots.try_take().expect("second");
        assert!(slots.try_take().is_none(), "only two at once");
        drop(a);
        let c = slots.try_take().expect("a dropped slot is free again");
        // A caller with none waits until another gives one back.
        std::thread::scope(|s| {
            let waiter = s.spawn(|| drop(slots.take()));
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert!(!waiter.is_finished(), "waits while every slot is taken");
            drop(b);
            waiter.join().expect("waiter");
        });
        drop(c);
        assert_eq!(*slots.count(), 2);
    }
}
