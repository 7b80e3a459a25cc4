//! Built-in measurements (pure): the ping, traceroute and DNS tasks every probe runs
//! whatever users ask, as RIPE Atlas probes do, and the anchoring mesh.
//!
//! They are configured once per installation ([`BuiltinConfig`], from operator flags)
//! and added to every enabled probe's schedule beside its Measurements' tasks
//! ([`crate::schedules::Syncer::with_builtins`]); their results travel and are stored
//! like any others. Their ids are in a range reserved below
//! [`FIRST_MSM_ID`](crate::measurement::FIRST_MSM_ID), laid out after RIPE Atlas's
//! low built-in ids:
//!
//! | ids | what |
//! | --- | --- |
//! | 1001 + i / 2001 + i | ping target i over IPv4 / IPv6 |
//! | 5001 + i / 6001 + i | traceroute to target i over IPv4 / IPv6 |
//! | 10001 / 10002 | A / AAAA of the DNS name, through the probe's own resolvers |
//! | 100000 + p | ping to anchor p (p ≤ 899999), from every probe that pings it |
//!
//! A target that is an IP address is measured in its family; a host name in both.
//!
//! The anchoring mesh, as RIPE Atlas's anchoring measurements: every anchor pings every
//! other anchor, and every other probe pings a few anchors (its `--builtin-mesh-near`
//! nearest and `--builtin-mesh-spread` more spread over distance), so that the
//! geolocation engines can calibrate each probe's access delay from its RTTs to anchors
//! of known position. All probes pinging anchor p share the measurement `100000 + p`.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use vantage_core::definition::{Definition, InvalidField, Task, Timing};
use vantage_crd::{Location, Probe, ProbeSpec};

/// Most built-in targets (ids `1001..=1999` and so on).
pub const MAX_TARGETS: usize = 999;
/// First id of a built-in ping over IPv4 (target i has `PING_V4 + i`).
pub const PING_V4: u64 = 1001;
/// First id of a built-in ping over IPv6.
pub const PING_V6: u64 = 2001;
/// First id of a built-in traceroute over IPv4.
pub const TRACEROUTE_V4: u64 = 5001;
/// First id of a built-in traceroute over IPv6.
pub const TRACEROUTE_V6: u64 = 6001;
/// The DNS check, query type A.
pub const DNS_A: u64 = 10001;
/// The DNS check, query type AAAA.
pub const DNS_AAAA: u64 = 10002;
/// Ping to anchor `p` is `ANCHOR_MESH + p`.
pub const ANCHOR_MESH: u64 = 100_000;
/// Largest anchor probe id that has a mesh id (`ANCHOR_MESH + p` stays below 1,000,000).
pub const MAX_MESH_PROBE: u32 = 899_999;
/// Every reserved id is below this (and below `FIRST_MSM_ID`).
pub const RESERVED_END: u64 = 1_000_000;
/// Default of `--builtin-mesh-near`: the anchors nearest a probe that it pings (as the
/// geolocation simulation, geo-eval's `mesh_near`).
pub const DEFAULT_MESH_NEAR: u32 = 12;
/// Default of `--builtin-mesh-spread`: more anchors a probe pings, spread over distance
/// (geo-eval's `mesh_far`).
pub const DEFAULT_MESH_SPREAD: u32 = 8;
/// Most anchors one (non-anchor) probe pings, near and spread together: each is a task
/// on the probe's schedule (about 240 bytes of its schedule document).
pub const MAX_MESH_PER_PROBE: u32 = 100;

/// Whether `msm_id` is a built-in ping (targets or the anchoring mesh).
pub fn is_builtin_ping(msm_id: u64) -> bool {
    (PING_V4..PING_V4 + MAX_TARGETS as u64).contains(&msm_id)
        || (PING_V6..PING_V6 + MAX_TARGETS as u64).contains(&msm_id)
        || (ANCHOR_MESH..RESERVED_END).contains(&msm_id)
}

/// The installation's built-in measurements (operator flags `--builtin-*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltinConfig {
    /// Ping and traceroute targets: IP addresses or host names.
    pub targets: Vec<String>,
    /// The name the DNS check resolves (A and AAAA) through the probe's resolvers.
    pub dns_name: Option<String>,
    /// Seconds between two built-in pings (targets and the anchoring mesh).
    pub ping_interval: u32,
    /// Seconds between two built-in traceroutes.
    pub traceroute_interval: u32,
    /// Seconds between two DNS checks.
    pub dns_interval: u32,
    /// Only probes with this user tag run built-ins and get system tags (a staged
    /// roll-out, or test isolation on a shared stack); None: every probe.
    pub probe_tag: Option<String>,
    /// Anchors nearest to it (great-circle distance) each non-anchor probe pings.
    pub mesh_near: u32,
    /// More anchors each non-anchor probe pings, spread from near to far. 0 and 0: no
    /// probe pings anchors (anchors still ping each other).
    pub mesh_spread: u32,
}

impl Default for BuiltinConfig {
    /// No targets and no DNS name (no built-ins at all); RIPE-like intervals.
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            dns_name: None,
            ping_interval: 240,
            traceroute_interval: 1800,
            dns_interval: 1800,
            probe_tag: None,
            mesh_near: DEFAULT_MESH_NEAR,
            mesh_spread: DEFAULT_MESH_SPREAD,
        }
    }
}

/// A built-in flag that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("--builtin-targets has {0} targets; at most {MAX_TARGETS} are allowed")]
    TooManyTargets(usize),
    #[error("{flag} {value:?}: {source}")]
    Invalid {
        flag: &'static str,
        value: String,
        #[source]
        source: InvalidField,
    },
    #[error("{flag} is 0; give a number of seconds, at least 1")]
    ZeroInterval { flag: &'static str },
    #[error(
        "--builtin-mesh-near {near} + --builtin-mesh-spread {spread} is {} anchors per \
         probe; at most {MAX_MESH_PER_PROBE} are allowed (each is a ping on every probe's \
         schedule): lower one of them",
        u64::from(*near) + u64::from(*spread)
    )]
    TooManyMeshAnchors { near: u32, spread: u32 },
}

/// The built-in tasks, checked once ([`BuiltinPlan::new`]), ready to hand out.
#[derive(Clone, Debug, PartialEq)]
pub struct BuiltinPlan {
    /// What every enabled probe runs.
    common: Vec<Task>,
    /// The mesh ping template (target and ids filled per anchor).
    mesh: Task,
    /// Only probes with this user tag take part.
    probe_tag: Option<String>,
    /// Nearest anchors a non-anchor probe pings.
    mesh_near: usize,
    /// Anchors spread over distance a non-anchor probe pings besides.
    mesh_spread: usize,
}

impl BuiltinPlan {
    /// Check the configuration and build the tasks. Each one is validated as a user's
    /// definition would be, then given the configured interval (built-ins may run more
    /// often than users may ask: a test installation uses seconds).
    pub fn new(cfg: &BuiltinConfig) -> Result<Self, BuiltinError> {
        if cfg.targets.len() > MAX_TARGETS {
            return Err(BuiltinError::TooManyTargets(cfg.targets.len()));
        }
        if u64::from(cfg.mesh_near) + u64::from(cfg.mesh_spread) > u64::from(MAX_MESH_PER_PROBE) {
            return Err(BuiltinError::TooManyMeshAnchors {
                near: cfg.mesh_near,
                spread: cfg.mesh_spread,
            });
        }
        for (flag, v) in [
            ("--builtin-ping-interval", cfg.ping_interval),
            ("--builtin-traceroute-interval", cfg.traceroute_interval),
            ("--builtin-dns-interval", cfg.dns_interval),
        ] {
            if v == 0 {
                return Err(BuiltinError::ZeroInterval { flag });
            }
        }
        let mut common = Vec::new();
        for (i, target) in cfg.targets.iter().enumerate() {
            let target = target.trim();
            let families: &[u8] = match target.parse::<IpAddr>() {
                Ok(IpAddr::V4(_)) => &[4],
                Ok(IpAddr::V6(_)) => &[6],
                Err(_) => &[4, 6],
            };
            for &af in families {
                let (ping, trace) = if af == 4 {
                    (PING_V4, TRACEROUTE_V4)
                } else {
                    (PING_V6, TRACEROUTE_V6)
                };
                let i = i as u64;
                common.push(task(
                    "--builtin-targets",
                    target,
                    ping + i,
                    definition("ping", af, Some(target)),
                    cfg.ping_interval,
                )?);
                common.push(task(
                    "--builtin-targets",
                    target,
                    trace + i,
                    definition("traceroute", af, Some(target)),
                    cfg.traceroute_interval,
                )?);
            }
        }
        if let Some(name) = cfg.dns_name.as_deref().map(str::trim) {
            for (id, qtype) in [(DNS_A, "A"), (DNS_AAAA, "AAAA")] {
                let mut d = definition("dns", 4, None);
                d.query_argument = Some(name.to_owned());
                d.query_type = Some(qtype.to_owned());
                d.use_probe_resolver = Some(true);
                d.set_rd_bit = Some(true);
                common.push(task("--builtin-dns-name", name, id, d, cfg.dns_interval)?);
            }
        }
        common.sort_by_key(|t| t.msm_id);
        let mesh = task(
            "anchor mesh",
            "192.0.2.1",
            ANCHOR_MESH,
            definition("ping", 4, Some("192.0.2.1")),
            cfg.ping_interval,
        )?;
        Ok(Self {
            common,
            mesh,
            probe_tag: cfg.probe_tag.clone(),
            // At most MAX_MESH_PER_PROBE each (checked above): no truncation.
            mesh_near: cfg.mesh_near as usize,
            mesh_spread: cfg.mesh_spread as usize,
        })
    }

    /// Every enabled probe's built-in tasks and its part of the anchoring mesh, pinging
    /// anchors at their known address (`status.address`): an anchor pings every other
    /// anchor; any other probe pings its `mesh_near` nearest anchors and `mesh_spread`
    /// more, spread from near to far (see `mesh_anchors` for the rule). Tasks
    /// are sorted by id. An installation without targets and without a DNS name has no
    /// built-ins at all, not even the anchoring mesh.
    pub fn desired(&self, probes: &[Arc<Probe>]) -> BTreeMap<u32, Vec<Task>> {
        let mut out = BTreeMap::new();
        if self.common.is_empty() {
            return out;
        }
        let anchors = self.anchor_addresses(probes);
        let placed = self.placed_anchors(probes, &anchors);
        for p in probes.iter().filter(|p| self.runs(p)) {
            let mut tasks = self.common.clone();
            if p.spec.anchor {
                for (&other, addr) in &anchors {
                    if other != p.spec.id {
                        tasks.push(self.mesh_task(other, *addr));
                    }
                }
            } else {
                for other in self.mesh_anchors(&p.spec, &anchors, &placed) {
                    if let Some(addr) = anchors.get(&other) {
                        tasks.push(self.mesh_task(other, *addr));
                    }
                }
            }
            if !tasks.is_empty() {
                tasks.sort_by_key(|t| t.msm_id);
                out.insert(p.spec.id, tasks);
            }
        }
        out
    }

    /// Whether `p` is in scope: it has the `--builtin-probe-tag` (if one is set).
    pub fn covers(&self, p: &Probe) -> bool {
        self.probe_tag
            .as_ref()
            .is_none_or(|t| p.spec.tags.iter().any(|x| x == t))
    }

    /// Whether `p` runs the built-ins: enabled and in scope.
    pub fn runs(&self, p: &Probe) -> bool {
        p.spec.enabled && self.covers(p)
    }

    /// Anchors that can be pinged: running the built-ins, with a mesh id and a known
    /// address.
    pub fn anchor_addresses(&self, probes: &[Arc<Probe>]) -> BTreeMap<u32, IpAddr> {
        probes
            .iter()
            .filter(|p| p.spec.anchor && self.runs(p) && p.spec.id <= MAX_MESH_PROBE)
            .filter_map(|p| {
                let addr = p.status.as_ref()?.address.as_deref()?.parse().ok()?;
                Some((p.spec.id, addr))
            })
            .collect()
    }

    /// The anchors a non-anchor probe pings (ids, sorted by distance from the probe,
    /// nearest first, ties by id), out of `anchors` (those with a known address):
    ///
    /// - a probe with a location: its `mesh_near` nearest anchors that have a location
    ///   (`placed`: an anchor without one cannot be chosen by distance, and its RTTs
    ///   calibrate nothing), then `mesh_spread` of the others, evenly spaced by rank of
    ///   distance: the last of each of `mesh_spread` equal slices, so the farthest anchor
    ///   is always one and the others step in from it, from near to far;
    /// - a probe without a location (or with coordinates out of range): `mesh_near +
    ///   mesh_spread` anchors chosen by a stable hash of the probe's and the anchor's ids
    ///   (rendezvous hashing: an anchor coming or going moves at most one choice of each
    ///   probe, and anchors share the load evenly), anchors with a location first, as
    ///   only they can place the probe from its RTTs; sorted by id.
    ///
    /// Fewer candidate anchors than asked for: all of them.
    fn mesh_anchors(
        &self,
        probe: &ProbeSpec,
        anchors: &BTreeMap<u32, IpAddr>,
        placed: &[(u32, [f64; 3])],
    ) -> Vec<u32> {
        // `placed` is sorted by id, as `placed_anchors` returns it.
        let want = self.mesh_near + self.mesh_spread;
        if want == 0 {
            return Vec::new();
        }
        let Some(here) = probe.location.as_ref().and_then(unit_vector) else {
            let unplaced = |a: u32| placed.binary_search_by_key(&a, |x| x.0).is_err();
            let mut ranked: Vec<(bool, u64, u32)> = anchors
                .keys()
                .filter(|&&a| a != probe.id)
                .map(|&a| (unplaced(a), mesh_hash(probe.id, a), a))
                .collect();
            if want < ranked.len() {
                ranked.select_nth_unstable(want);
                ranked.truncate(want);
            }
            let mut chosen: Vec<u32> = ranked.into_iter().map(|x| x.2).collect();
            chosen.sort_unstable();
            return chosen;
        };
        // (distance, id) keys: a chord is finite and not negative, so its bits order as
        // its value does. Only the chosen ranks are selected, nothing else is sorted
        // (every probe × every anchor on each rebuild).
        let mut by_distance: Vec<(u64, u32)> = placed
            .iter()
            .filter(|&&(a, _)| a != probe.id)
            .map(|&(a, v)| (chord2(here, v).to_bits(), a))
            .collect();
        let near = self.mesh_near.min(by_distance.len());
        if near < by_distance.len() {
            by_distance.select_nth_unstable(near);
        }
        let (head, rest) = by_distance.split_at_mut(near);
        head.sort_unstable();
        let mut chosen: Vec<u32> = head.iter().map(|x| x.1).collect();
        if rest.len() <= self.mesh_spread {
            rest.sort_unstable();
            chosen.extend(rest.iter().map(|x| x.1));
        } else {
            // Ranks k·n/m − 1 of the n farther anchors, k = 1..=m: the last of each of m
            // slices at least one anchor wide (n > m), so distinct and increasing.
            // Selected from the farthest down, each within the ranks below the last.
            let (n, m) = (rest.len(), self.mesh_spread);
            let mut spread = Vec::with_capacity(m);
            let mut below = n;
            for k in (1..=m).rev() {
                let r = k * n / m - 1;
                let (_, at, _) = rest[..below].select_nth_unstable(r);
                spread.push(at.1);
                below = r;
            }
            chosen.extend(spread.into_iter().rev());
        }
        chosen
    }

    /// The anchors of `anchors` that have a valid `spec.location`, as unit vectors,
    /// sorted by id.
    fn placed_anchors(
        &self,
        probes: &[Arc<Probe>],
        anchors: &BTreeMap<u32, IpAddr>,
    ) -> Vec<(u32, [f64; 3])> {
        let mut placed: Vec<(u32, [f64; 3])> = probes
            .iter()
            .filter(|p| anchors.contains_key(&p.spec.id))
            .filter_map(|p| Some((p.spec.id, unit_vector(p.spec.location.as_ref()?)?)))
            .collect();
        placed.sort_unstable_by_key(|x| x.0);
        placed.dedup_by_key(|x| x.0);
        placed
    }

    /// What the built-in schedules depend on (the probes that run them and their
    /// locations, anchors and their addresses), as a hash: when it changes, schedules
    /// are published again.
    pub fn fingerprint(&self, probes: &[Arc<Probe>]) -> u64 {
        /// Latitude and longitude bits (f64 is not `Hash`).
        type At = Option<(u64, u64)>;
        let running: BTreeSet<(u32, bool, At)> = probes
            .iter()
            .filter(|p| self.runs(p))
            .map(|p| {
                let at = p
                    .spec
                    .location
                    .map(|l| (l.latitude.to_bits(), l.longitude.to_bits()));
                (p.spec.id, p.spec.anchor, at)
            })
            .collect();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        running.hash(&mut h);
        self.anchor_addresses(probes).hash(&mut h);
        h.finish()
    }

    fn mesh_task(&self, anchor: u32, addr: IpAddr) -> Task {
        let mut t = self.mesh.clone();
        t.msm_id = ANCHOR_MESH + u64::from(anchor);
        t.target = addr.to_string();
        t.af = if addr.is_ipv4() { 4 } else { 6 };
        t
    }
}

/// The point of `l` on the unit sphere; None for coordinates out of range (or NaN).
fn unit_vector(l: &Location) -> Option<[f64; 3]> {
    let (lat, lon) = (l.latitude, l.longitude);
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return None;
    }
    let (p, l) = (lat.to_radians(), lon.to_radians());
    Some([p.cos() * l.cos(), p.cos() * l.sin(), p.sin()])
}

/// Squared chord between two points of the unit sphere: it grows with the great-circle
/// distance, so it orders anchors by distance without a trigonometric call per pair.
fn chord2(a: [f64; 3], b: [f64; 3]) -> f64 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)
}

/// A stable hash of (probe, anchor) (splitmix64's finalizer: fixed across Rust versions
/// and platforms, unlike `DefaultHasher`), for choosing anchors for a probe without a
/// location.
fn mesh_hash(probe: u32, anchor: u32) -> u64 {
    let mut z = ((u64::from(probe) << 32) | u64::from(anchor)).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn definition(kind: &str, af: u8, target: Option<&str>) -> Definition {
    Definition {
        kind: kind.to_owned(),
        af: Some(i64::from(af)),
        target: target.map(str::to_owned),
        description: Some(format!("built-in {kind}")),
        ..Default::default()
    }
}

fn task(
    flag: &'static str,
    value: &str,
    id: u64,
    d: Definition,
    interval: u32,
) -> Result<Task, BuiltinError> {
    let mut t = d
        .validate(id, Timing::default())
        .map_err(|source| BuiltinError::Invalid {
            flag,
            value: value.to_owned(),
            source,
        })?;
    t.interval = interval;
    t.spread = interval;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vantage_core::definition::TaskKind;
    use vantage_crd::{ProbeSpec, ProbeStatus};

    fn probe(id: u32, anchor: bool, address: Option<&str>) -> Arc<Probe> {
        let mut spec = ProbeSpec::new(id, "ssh-ed25519 AAAA");
        spec.anchor = anchor;
        let mut p = Probe::new(&format!("probe-{id}"), spec);
        p.status = Some(ProbeStatus {
            address: address.map(str::to_owned),
            ..Default::default()
        });
        Arc::new(p)
    }

    fn cfg() -> BuiltinConfig {
        BuiltinConfig {
            targets: vec!["193.0.14.129".into(), "2001:7fd::1".into(), "k.root".into()],
            dns_name: Some("example.net".into()),
            ping_interval: 2,
            ..Default::default()
        }
    }

    #[test]
    fn every_enabled_probe_gets_the_builtins_with_reserved_ids() {
        let plan = BuiltinPlan::new(&cfg()).expect("valid");
        let mut disabled = (*probe(3, false, None)).clone();
        disabled.spec.enabled = false;
        let d = plan.desired(&[probe(1, false, None), Arc::new(disabled)]);
        assert_eq!(d.keys().copied().collect::<Vec<_>>(), vec![1]);
        let ids: Vec<u64> = d[&1].iter().map(|t| t.msm_id).collect();
        // v4 address: 1001/5001; v6 address: 2002/6002; a name: both families.
        assert_eq!(
            ids,
            vec![1001, 1003, 2002, 2003, 5001, 5003, 6002, 6003, 10001, 10002]
        );
        assert!(ids.iter().all(|&id| id < crate::measurement::FIRST_MSM_ID));
        let ping = &d[&1][0];
        assert_eq!(
            (ping.target.as_str(), ping.af, ping.interval),
            ("193.0.14.129", 4, 2)
        );
        assert!(matches!(ping.kind, TaskKind::Ping(_)));
        let dns = d[&1].iter().find(|t| t.msm_id == DNS_AAAA).expect("dns");
        match &dns.kind {
            TaskKind::Dns(o) => {
                assert!(o.use_probe_resolver && o.set_rd_bit);
                assert_eq!(
                    (o.query_type.as_str(), o.query_argument.as_str()),
                    ("AAAA", "example.net")
                );
            }
            other => panic!("not dns: {other:?}"),
        }
        assert!(is_builtin_ping(1001) && is_builtin_ping(2002) && is_builtin_ping(100_007));
        assert!(!is_builtin_ping(5001) && !is_builtin_ping(10001) && !is_builtin_ping(1_000_001));
    }

    #[test]
    fn anchors_ping_each_other() {
        let dns_only = BuiltinConfig {
            dns_name: Some("example.net".into()),
            ..Default::default()
        };
        let plan = BuiltinPlan::new(&dns_only).expect("valid");
        let probes = [
            probe(10, true, Some("192.0.2.10")),
            probe(11, true, Some("2001:db8::11")),
            probe(12, true, None),
            probe(13, false, Some("192.0.2.13")),
        ];
        let none = BuiltinPlan::new(&BuiltinConfig::default()).expect("valid");
        assert!(
            none.desired(&probes).is_empty(),
            "nothing configured: no mesh either"
        );
        let d = plan.desired(&probes);
        let mesh = |p: u32| -> Vec<(u64, String, u8)> {
            d.get(&p)
                .into_iter()
                .flatten()
                .filter(|t| t.msm_id >= ANCHOR_MESH)
                .map(|t| (t.msm_id, t.target.clone(), t.af))
                .collect()
        };
        assert_eq!(mesh(10), vec![(100_011, "2001:db8::11".into(), 6)]);
        assert_eq!(mesh(11), vec![(100_010, "192.0.2.10".into(), 4)]);
        // An anchor without a known address pings the others but is no target.
        assert_eq!(mesh(12).len(), 2);
        // Probe 13 has no location: it pings anchors chosen by hash, here both.
        assert_eq!(
            mesh(13).iter().map(|m| m.0).collect::<Vec<_>>(),
            vec![100_010, 100_011]
        );
        let before = plan.fingerprint(&probes);
        let moved = [probe(10, true, Some("192.0.2.99")), probes[1].clone()];
        assert_ne!(before, plan.fingerprint(&moved));
        assert_eq!(before, plan.fingerprint(&probes.clone()));
    }

    #[test]
    fn a_probe_tag_limits_the_builtins() {
        let plan = BuiltinPlan::new(&BuiltinConfig {
            targets: vec!["192.0.2.1".into()],
            probe_tag: Some("canary".into()),
            ..Default::default()
        })
        .expect("valid");
        let mut tagged = (*probe(1, true, Some("192.0.2.11"))).clone();
        tagged.spec.tags = vec!["canary".into()];
        let probes = [Arc::new(tagged), probe(2, true, Some("192.0.2.12"))];
        let d = plan.desired(&probes);
        assert_eq!(d.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(
            d[&1].len(),
            2,
            "ping and traceroute; the untagged anchor is no target"
        );
        assert!(plan.covers(&probes[0]) && !plan.covers(&probes[1]));
    }

    /// A probe at `(lat, lon)`; anchors get the address 10.0.(id / 256).(id % 256).
    fn placed(id: u32, anchor: bool, lat: f64, lon: f64) -> Arc<Probe> {
        let addr = format!("10.0.{}.{}", id / 256, id % 256);
        let mut p = (*probe(id, anchor, anchor.then_some(addr.as_str()))).clone();
        p.spec.location = Some(Location {
            latitude: lat,
            longitude: lon,
        });
        Arc::new(p)
    }

    fn mesh_cfg(near: u32, spread: u32) -> BuiltinConfig {
        BuiltinConfig {
            dns_name: Some("example.net".into()),
            mesh_near: near,
            mesh_spread: spread,
            ..Default::default()
        }
    }

    /// Great-circle distance in km (haversine): the oracle the plan's chord order must
    /// agree with.
    fn km(a: &Probe, b: &Probe) -> f64 {
        let (x, y) = (
            a.spec.location.expect("located"),
            b.spec.location.expect("located"),
        );
        let (p1, p2) = (x.latitude.to_radians(), y.latitude.to_radians());
        let dl = (y.longitude - x.longitude).to_radians();
        let h = ((p2 - p1) / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * 6371.0 * h.sqrt().asin()
    }

    /// 40 anchors at scattered places (ids not in distance order), and ordinary probes.
    fn world() -> Vec<Arc<Probe>> {
        let mut probes: Vec<Arc<Probe>> = (0..40u32)
            .map(|k| {
                // A deterministic scatter over the globe.
                let lat = f64::from((k * 37) % 160) - 80.0;
                let lon = f64::from((k * 101) % 360) - 180.0;
                placed(500 + (k * 17) % 40, true, lat, lon)
            })
            .collect();
        probes.push(placed(1, false, 52.37, 4.90)); // Amsterdam
        probes.push(placed(2, false, -33.87, 151.21)); // Sydney
        probes
    }

    /// The anchor ids a probe's schedule pings (msm id − 100000), in id order.
    fn pinged(d: &BTreeMap<u32, Vec<Task>>, probe: u32) -> Vec<u32> {
        d.get(&probe)
            .into_iter()
            .flatten()
            .filter(|t| t.msm_id >= ANCHOR_MESH)
            .map(|t| u32::try_from(t.msm_id - ANCHOR_MESH).expect("mesh id"))
            .collect()
    }

    #[test]
    fn a_probe_pings_its_nearest_anchors_and_some_spread_over_distance() {
        let probes = world();
        let plan = BuiltinPlan::new(&mesh_cfg(12, 8)).expect("valid");
        let anchors = plan.anchor_addresses(&probes);
        assert_eq!(anchors.len(), 40);
        let placed = plan.placed_anchors(&probes, &anchors);
        let by_id =
            |id: u32| -> &Arc<Probe> { probes.iter().find(|p| p.spec.id == id).expect("known") };
        for me in [1, 2] {
            let spec = &by_id(me).spec;
            let chosen = plan.mesh_anchors(spec, &anchors, &placed);
            assert_eq!(chosen.len(), 20, "probe {me}: 12 near + 8 spread");
            // Every anchor ranked by the haversine oracle (ties by id).
            let mut ranked: Vec<(f64, u32)> = anchors
                .keys()
                .map(|&a| (km(by_id(me), by_id(a)), a))
                .collect();
            ranked.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            let rank = |a: u32| ranked.iter().position(|r| r.1 == a).expect("ranked");
            let near: Vec<u32> = ranked.iter().take(12).map(|r| r.1).collect();
            assert_eq!(chosen[..12], near[..], "probe {me}: nearest first");
            // The spread ones: one in each eighth of the 28 farther anchors (by rank),
            // the farthest among them, in distance order.
            let ranks: Vec<usize> = chosen[12..].iter().map(|&a| rank(a) - 12).collect();
            for (k, r) in ranks.iter().enumerate() {
                assert!(
                    (k * 28 / 8..(k + 1) * 28 / 8).contains(r),
                    "probe {me}: spread anchor {k} has rank {r} among the farther 28: {ranks:?}"
                );
            }
            assert_eq!(ranks.last(), Some(&27), "the farthest anchor is one");
            let far = |a: u32| km(by_id(me), by_id(a));
            assert!(
                far(chosen[12]) < 0.5 * far(chosen[19]),
                "spread from near to far"
            );
            // The schedule pings exactly those anchors at their addresses.
            let d = plan.desired(&probes);
            let mut want = chosen.clone();
            want.sort_unstable();
            assert_eq!(pinged(&d, me), want);
            let t = d[&me]
                .iter()
                .find(|t| t.msm_id == ANCHOR_MESH + u64::from(chosen[0]))
                .expect("nearest anchor pinged");
            assert_eq!(t.target, anchors[&chosen[0]].to_string());
            assert_eq!((t.af, t.interval), (4, 240));
            assert!(matches!(t.kind, TaskKind::Ping(_)));
        }
        let d = plan.desired(&probes);
        assert_ne!(
            pinged(&d, 1)[..],
            pinged(&d, 2)[..],
            "different places, different anchors"
        );
    }

    #[test]
    fn the_choice_is_the_nearest_then_the_last_of_equal_slices_for_any_sizes() {
        let probes = world();
        let by_id =
            |id: u32| -> &Arc<Probe> { probes.iter().find(|p| p.spec.id == id).expect("known") };
        for (near, spread) in [(12, 8), (3, 5), (0, 7), (5, 0), (1, 27), (0, 28), (0, 1)] {
            let plan = BuiltinPlan::new(&mesh_cfg(near, spread)).expect("valid");
            let anchors = plan.anchor_addresses(&probes);
            let located = plan.placed_anchors(&probes, &anchors);
            for (lat, lon) in [
                (0.0, 0.0),
                (52.4, 4.9),
                (-33.9, 151.2),
                (64.1, -21.9),
                (-54.8, -68.3),
            ] {
                let me = placed(7, false, lat, lon);
                let mut ranked: Vec<(f64, u32)> =
                    anchors.keys().map(|&a| (km(&me, by_id(a)), a)).collect();
                ranked.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
                let ids: Vec<u32> = ranked.iter().map(|r| r.1).collect();
                let (near, spread) = (near as usize, spread as usize);
                let rest = &ids[near..];
                let mut want = ids[..near].to_vec();
                want.extend((1..=spread).map(|k| rest[k * rest.len() / spread - 1]));
                assert_eq!(
                    plan.mesh_anchors(&me.spec, &anchors, &located),
                    want,
                    "{near}/{spread} at ({lat}, {lon})"
                );
            }
        }
    }

    #[test]
    fn anchors_ping_all_other_anchors_whatever_near_and_spread() {
        let probes = world();
        for (near, spread) in [(12, 8), (1, 0), (0, 0)] {
            let d = BuiltinPlan::new(&mesh_cfg(near, spread))
                .expect("valid")
                .desired(&probes);
            for a in probes.iter().filter(|p| p.spec.anchor) {
                let got = pinged(&d, a.spec.id);
                assert_eq!(got.len(), 39, "anchor {}: every other anchor", a.spec.id);
                assert!(!got.contains(&a.spec.id), "not itself");
            }
            let ordinary = pinged(&d, 1).len();
            assert_eq!(ordinary, (near + spread) as usize, "{near}/{spread}");
        }
    }

    #[test]
    fn zero_near_and_spread_turn_probe_to_anchor_pings_off() {
        let mut probes = world();
        probes.push(probe(3, false, None));
        let d = BuiltinPlan::new(&mesh_cfg(0, 0))
            .expect("valid")
            .desired(&probes);
        for p in [1, 2, 3] {
            assert!(d.contains_key(&p), "probe {p} keeps its other built-ins");
            assert!(pinged(&d, p).is_empty(), "probe {p} pings no anchor");
        }
        assert_eq!(pinged(&d, 500).len(), 39);
    }

    #[test]
    fn the_mesh_does_not_depend_on_the_order_of_the_probe_list() {
        let mut probes = world();
        probes.push(probe(3, false, None));
        let plan = BuiltinPlan::new(&mesh_cfg(12, 8)).expect("valid");
        let d = plan.desired(&probes);
        let mut reordered = probes.clone();
        reordered.reverse();
        reordered.rotate_left(7);
        assert_eq!(plan.desired(&reordered), d);
        assert_eq!(plan.fingerprint(&reordered), plan.fingerprint(&probes));
    }

    #[test]
    fn disabled_and_out_of_scope_probes_take_no_part() {
        let mut probes = world();
        let mut off = (*placed(3, false, 52.0, 5.0)).clone();
        off.spec.enabled = false;
        probes.push(Arc::new(off));
        let mut scoped: Vec<Arc<Probe>> = probes
            .iter()
            .map(|p| {
                let mut p = (**p).clone();
                // Probe 1 and even anchors are in scope; probe 2 and odd anchors are not.
                if p.spec.id == 1 || (p.spec.anchor && p.spec.id % 2 == 0) {
                    p.spec.tags.push("canary".into());
                }
                Arc::new(p)
            })
            .collect();
        let mut tagged_off = (*placed(4, false, 52.0, 5.0)).clone();
        tagged_off.spec.enabled = false;
        tagged_off.spec.tags.push("canary".into());
        scoped.push(Arc::new(tagged_off));
        let plan = BuiltinPlan::new(&BuiltinConfig {
            probe_tag: Some("canary".into()),
            ..mesh_cfg(12, 8)
        })
        .expect("valid");
        let d = plan.desired(&scoped);
        assert!(!d.contains_key(&2), "out of scope");
        assert!(!d.contains_key(&3) && !d.contains_key(&4), "disabled");
        let got = pinged(&d, 1);
        assert_eq!(got.len(), 20);
        assert!(
            got.iter().all(|a| a % 2 == 0),
            "only in-scope anchors: {got:?}"
        );
        assert!(!BuiltinPlan::new(&mesh_cfg(12, 8))
            .expect("valid")
            .desired(&probes)
            .contains_key(&3));
    }

    #[test]
    fn fewer_anchors_than_asked_gives_all_placed_ones_and_ties_go_by_id() {
        let probes = vec![
            placed(1, false, 0.0, 0.0),
            placed(20, true, 0.0, 10.0),
            placed(21, true, 0.0, -10.0), // as far as 20: after it
            placed(22, true, 0.0, 5.0),
            placed(23, true, 0.0, 100.0),
            placed(24, true, 45.0, 0.0),
            probe(25, true, Some("192.0.2.25")), // no location: not chosen by distance
            placed(26, true, 0.0, 90.0),
        ];
        let plan = BuiltinPlan::new(&mesh_cfg(12, 8)).expect("valid");
        let anchors = plan.anchor_addresses(&probes);
        let placed = plan.placed_anchors(&probes, &anchors);
        assert_eq!(
            plan.mesh_anchors(&probes[0].spec, &anchors, &placed),
            vec![22, 20, 21, 24, 26, 23]
        );
        let two = BuiltinPlan::new(&mesh_cfg(2, 1)).expect("valid");
        // Nearest 22 and 20 (20 before 21 on the tie); of 21, 24, 26, 23 the farthest.
        assert_eq!(
            two.mesh_anchors(&probes[0].spec, &anchors, &placed),
            vec![22, 20, 23]
        );
        assert_eq!(pinged(&two.desired(&probes), 1), vec![20, 22, 23]);
    }

    #[test]
    fn a_probe_without_location_pings_anchors_chosen_by_a_stable_hash() {
        let mut probes = world();
        probes.push(probe(25, true, Some("192.0.2.25"))); // an anchor without location
        let bad = Probe {
            spec: ProbeSpec {
                location: Some(Location {
                    latitude: f64::NAN,
                    longitude: 0.0,
                }),
                ..ProbeSpec::new(6, "ssh-ed25519 AAAA")
            },
            ..(*probe(6, false, None)).clone()
        };
        probes.push(Arc::new(bad));
        for id in 3..6 {
            probes.push(probe(id, false, None));
        }
        let plan = BuiltinPlan::new(&mesh_cfg(12, 8)).expect("valid");
        let d = plan.desired(&probes);
        let sets: Vec<Vec<u32>> = (3..7).map(|id| pinged(&d, id)).collect();
        for (i, s) in sets.iter().enumerate() {
            assert_eq!(s.len(), 20, "probe {}", i + 3);
            assert!(!s.contains(&25), "located anchors come first: {s:?}");
        }
        assert!(
            sets.windows(2).all(|w| w[0] != w[1]),
            "probes share the anchors' load: {sets:?}"
        );
        // A new anchor moves at most one of each probe's choices.
        let mut more = probes.clone();
        more.push(placed(999, true, 10.0, 10.0));
        let d2 = plan.desired(&more);
        for id in 3..7 {
            let (a, b) = (pinged(&d, id), pinged(&d2, id));
            let kept = a.iter().filter(|x| b.contains(x)).count();
            assert!(kept >= 19, "probe {id}: {a:?} became {b:?}");
        }
        // The hash is fixed (not DefaultHasher's): the same choice in every release.
        assert_eq!(mesh_hash(3, 500), mesh_hash(3, 500));
        assert_ne!(mesh_hash(3, 500), mesh_hash(500, 3));
        assert_eq!(mesh_hash(0, 0), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn moving_a_probe_changes_the_fingerprint() {
        let probes = world();
        let plan = BuiltinPlan::new(&mesh_cfg(12, 8)).expect("valid");
        let before = plan.fingerprint(&probes);
        let mut moved = probes.clone();
        let last = moved.len() - 1;
        moved[last] = placed(2, false, 35.68, 139.69); // Sydney → Tokyo
        assert_ne!(plan.fingerprint(&moved), before);
        assert_ne!(plan.desired(&moved)[&2], plan.desired(&probes)[&2]);
    }

    #[test]
    fn a_full_ordinary_schedule_stays_far_below_the_frame_limit() {
        // The chart's 26 root-server targets and DNS check, the largest mesh share and
        // --max-measurements-per-probe user pings with long host names.
        let targets: Vec<String> = (0..26).map(|i| format!("192.0.2.{i}")).collect();
        let plan = BuiltinPlan::new(&BuiltinConfig {
            targets,
            mesh_near: MAX_MESH_PER_PROBE,
            mesh_spread: 0,
            ..mesh_cfg(0, 0)
        })
        .expect("valid");
        let mut probes: Vec<Arc<Probe>> = (0..150u32)
            .map(|k| placed(1000 + k, true, f64::from(k % 170) - 85.0, 0.0))
            .collect();
        probes.push(placed(1, false, 0.0, 0.0));
        let mut tasks = plan.desired(&probes).remove(&1).expect("scheduled");
        assert_eq!(tasks.len(), 26 * 2 + 2 + 100);
        let user = tasks[0].clone();
        for i in 0..crate::load::DEFAULT_MAX_MEASUREMENTS_PER_PROBE {
            let mut t = user.clone();
            t.msm_id = crate::measurement::FIRST_MSM_ID + u64::from(i);
            t.target = format!("a-rather-long-host-name-{i}.measurement-target.example.net");
            tasks.push(t);
        }
        let frame = vantage_core::frame::encode(&vantage_core::frame::Down::Schedule {
            v: vantage_core::WIRE_VERSION,
            revision: u64::MAX,
            tasks,
        })
        .expect("encodes");
        assert!(
            frame.len() < vantage_core::frame::MAX_FRAME_BYTES / 2,
            "{} bytes against {}",
            frame.len(),
            vantage_core::frame::MAX_FRAME_BYTES
        );
    }

    #[test]
    fn bad_flags_are_named() {
        let bad = BuiltinConfig {
            targets: vec!["not a host!".into()],
            ..Default::default()
        };
        let e = BuiltinPlan::new(&bad).expect_err("invalid").to_string();
        assert!(
            e.contains("--builtin-targets") && e.contains("not a host!"),
            "{e}"
        );
        let zero = BuiltinConfig {
            dns_interval: 0,
            ..Default::default()
        };
        let e = BuiltinPlan::new(&zero).expect_err("zero").to_string();
        assert!(e.contains("--builtin-dns-interval"), "{e}");
        let e = BuiltinPlan::new(&mesh_cfg(90, 11))
            .expect_err("too many")
            .to_string();
        assert!(
            e.contains("--builtin-mesh-near 90")
                && e.contains("--builtin-mesh-spread 11")
                && e.contains("101")
                && e.contains("at most 100"),
            "{e}"
        );
        assert!(BuiltinPlan::new(&mesh_cfg(90, 10)).is_ok());
        let e = BuiltinPlan::new(&mesh_cfg(u32::MAX, u32::MAX))
            .expect_err("overflow-free")
            .to_string();
        assert!(e.contains("8589934590"), "{e}");
    }
}
