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
//! | 100000 + p | ping to anchor p (anchors only; p ≤ 899999) |
//!
//! A target that is an IP address is measured in its family; a host name in both.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use vantage_core::definition::{Definition, InvalidField, Task, Timing};
use vantage_crd::Probe;

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
}

impl BuiltinPlan {
    /// Check the configuration and build the tasks. Each one is validated as a user's
    /// definition would be, then given the configured interval (built-ins may run more
    /// often than users may ask: a test installation uses seconds).
    pub fn new(cfg: &BuiltinConfig) -> Result<Self, BuiltinError> {
        if cfg.targets.len() > MAX_TARGETS {
            return Err(BuiltinError::TooManyTargets(cfg.targets.len()));
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
        })
    }

    /// Every enabled probe's built-in tasks; anchors also ping every other anchor with
    /// a known address (its `status.address`). Tasks are sorted by id. An installation
    /// without targets and without a DNS name has no built-ins at all, not even the
    /// anchoring mesh.
    pub fn desired(&self, probes: &[Arc<Probe>]) -> BTreeMap<u32, Vec<Task>> {
        let mut out = BTreeMap::new();
        if self.common.is_empty() {
            return out;
        }
        let anchors = self.anchor_addresses(probes);
        for p in probes.iter().filter(|p| self.runs(p)) {
            let mut tasks = self.common.clone();
            if p.spec.anchor {
                for (&other, addr) in &anchors {
                    if other != p.spec.id {
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

    /// What the built-in schedules depend on (the probes that run them, anchors and
    /// their addresses), as a hash: when it changes, schedules are published again.
    pub fn fingerprint(&self, probes: &[Arc<Probe>]) -> u64 {
        let running: BTreeSet<(u32, bool)> = probes
            .iter()
            .filter(|p| self.runs(p))
            .map(|p| (p.spec.id, p.spec.anchor))
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
        assert!(mesh(13).is_empty(), "only anchors are in the mesh");
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
    }
}
