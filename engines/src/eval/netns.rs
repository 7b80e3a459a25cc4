//! The simulated world built out of network namespaces, with real pings.
//!
//! ```text
//!   probe p (ns <prefix>-p<p>)  10.202.p.2 ─veth─ 10.202.p.1 ┐
//!                                                            ├ hub (ns <prefix>-h), the "Internet"
//!   target t (ns <prefix>-t<t>) 10.203.t.2 ─veth─ 10.203.t.1 ┘   routes 10.204.t.1 → 10.203.t.2
//!       └ TUN gtun0 ← 10.204.t.1: responder.py answers each echo after the ground-truth
//!         RTT of the asking probe's path (this kernel has no sch_netem)
//!   anycast 10.200.0.1: two target namespaces; the hub routes each probe to the nearer
//!         one with `ip rule from <probe> to 10.205.0.1 lookup <site table>`
//! ```
//!
//! Every probe pings every target with the real probe binary (`vantage-probe measure
//! --once`, RIPE Atlas ping JSON) or, without it, iputils `ping`; the minimum RTTs
//! become the engines' input. Needs root; [`NetnsWorld::build`] says so otherwise.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::json;

use super::{Case, Placement, SimConfig};
use crate::engine::latency::ProbeRtt;

/// The delaying echo responder run in every target namespace (Python, stdlib).
pub const RESPONDER: &str = include_str!("responder.py");

/// Why the harness could not run.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error(
        "the namespace harness needs root (ip netns, TUN devices, raw sockets); run it as root"
    )]
    NotRoot,
    #[error("{what}: at most 250 probes and 248 targets (one /24 each)")]
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

/// How the namespaces are run.
#[derive(Debug, Clone)]
pub struct NetnsOptions {
    pub pinger: Pinger,
    /// Probes pinging at once (each pings every target at once).
    pub parallel: usize,
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
            parallel: std::env::var("GEO_PAR")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2),
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
        if placement.probes.len() > 250 || sites > 250 {
            return Err(HarnessError::TooLarge {
                what: format!("{} probes and {sites} target sites", placement.probes.len()),
            });
        }
        let dir = std::env::temp_dir().join(format!("{}-defs", opts.prefix));
        std::fs::create_dir_all(&dir).map_err(|source| HarnessError::Write {
            path: dir.clone(),
            source,
        })?;
        let mut w = NetnsWorld {
            placement,
            cfg,
            opts,
            namespaces: Vec::new(),
            responders: Vec::new(),
            dir,
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
            h.push(format!("link add p{p} type veth peer name eth0 netns {ns}"));
            h.push(format!("addr add 10.202.{p}.1/24 dev p{p}"));
            h.push(format!("link set p{p} up"));
        }
        for ((t, s, l), ns) in sites.iter().zip(&site_ns) {
            h.push(format!("link add t{l} type veth peer name eth0 netns {ns}"));
            h.push(format!("addr add 10.203.{l}.1/24 dev t{l}"));
            h.push(format!("link set t{l} up"));
            let ip = self.placement.targets[*t].ip;
            if self.placement.targets[*t].sites.len() == 1 {
                h.push(format!("route add {ip}/32 via 10.203.{l}.2"));
            } else {
                // Anycast: a routing table per site; each probe's rule picks its site.
                let table = 1000 + l;
                h.push(format!("route add {ip}/32 via 10.203.{l}.2 table {table}"));
                for p in 0..probes.len() {
                    if self.placement.site_of[p][*t] == *s {
                        h.push(format!(
                            "rule add from 10.202.{p}.2/32 to {ip}/32 lookup {table}"
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
            ip_batch(
                Some(ns),
                &[
                    "link set lo up".to_owned(),
                    format!("addr add 10.202.{p}.2/24 dev eth0"),
                    "link set eth0 up".to_owned(),
                    format!("route add default via 10.202.{p}.1"),
                ],
            )?;
        }
        for ((t, s, l), ns) in sites.iter().zip(&site_ns) {
            ip_batch(
                Some(ns),
                &[
                    "link set lo up".to_owned(),
                    format!("addr add 10.203.{l}.2/24 dev eth0"),
                    "link set eth0 up".to_owned(),
                    format!("route add default via 10.203.{l}.1"),
                ],
            )?;
            let delays: serde_json::Map<String, serde_json::Value> = (0..probes.len())
                .filter(|&p| self.placement.site_of[p][*t] == *s)
                .map(|p| (format!("10.202.{p}.2"), json!(self.placement.rtt_ms[p][*t])))
                .collect();
            let conf = json!({
                "dev": "gtun0",
                "addrs": [self.placement.targets[*t].ip.to_string()],
                "delays": delays,
                "jitter_ms": self.cfg.jitter_ms,
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
        Ok(())
    }

    fn spawn_ping(&self, p: usize, t: usize) -> Result<Child, HarnessError> {
        let ns = self.ns(&format!("p{p}"));
        let ip = self.placement.targets[t].ip.to_string();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns]);
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
        let n_targets = self.placement.targets.len();
        let probes = &self.placement.probes;
        let mut rtts: Vec<Vec<ProbeRtt>> = vec![Vec::new(); n_targets];
        let mut diffs = Vec::new();
        let mut lost = 0;
        let mut worst: Option<(u32, String, f64, f64)> = None;
        let ids: Vec<usize> = (0..probes.len()).collect();
        for chunk in ids.chunks(self.opts.parallel.max(1)) {
            let mut running = Vec::new();
            for &p in chunk {
                for t in 0..n_targets {
                    running.push((p, t, self.spawn_ping(p, t)?));
                }
            }
            for (p, t, child) in running {
                let target = self.placement.targets[t].ip.to_string();
                let out = child.wait_with_output().map_err(|e| HarnessError::Ping {
                    probe: probes[p].id,
                    target: target.clone(),
                    reason: e.to_string(),
                })?;
                if !out.status.success() && matches!(self.opts.pinger, Pinger::Probe(_)) {
                    return Err(HarnessError::Ping {
                        probe: probes[p].id,
                        target,
                        reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                    });
                }
                match self.min_rtt(&out.stdout) {
                    Some(rtt) => {
                        let truth = self.placement.rtt_ms[p][t];
                        diffs.push(rtt - truth);
                        if worst
                            .as_ref()
                            .is_none_or(|w| (w.2 - w.3).abs() < (rtt - truth).abs())
                        {
                            worst = Some((probes[p].id, target.clone(), rtt, truth));
                        }
                        rtts[t].push(ProbeRtt {
                            probe_id: probes[p].id,
                            latitude: probes[p].latitude,
                            longitude: probes[p].longitude,
                            rtt_ms: rtt,
                        });
                    }
                    None => lost += 1,
                }
            }
        }
        diffs.sort_by(f64::total_cmp);
        let q = |f: f64| {
            if diffs.is_empty() {
                f64::NAN
            } else {
                diffs[((diffs.len() - 1) as f64 * f).round() as usize]
            }
        };
        let fidelity = Fidelity {
            paths: diffs.len() + lost,
            lost,
            min_ms: q(0.0),
            median_ms: q(0.5),
            p95_ms: q(0.95),
            max_ms: q(1.0),
            worst,
        };
        let cases = self
            .placement
            .targets
            .iter()
            .zip(rtts)
            .map(|(target, rtts)| Case {
                target: target.clone(),
                rtts,
            })
            .collect();
        Ok((cases, fidelity))
    }

    pub fn placement(&self) -> &Placement {
        &self.placement
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
    fn iputils_summary() {
        let out = "--- 10.204.0.1 ping statistics ---\n5 packets transmitted, 5 received, 0% packet loss, time 204ms\nrtt min/avg/max/mdev = 12.708/13.737/17.592/1.927 ms\n";
        assert_eq!(parse_iputils_min(out), Some(12.708));
        assert_eq!(
            parse_iputils_min("3 packets transmitted, 0 received, 100% packet loss"),
            None
        );
    }
}
