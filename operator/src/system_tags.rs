//! RIPE Atlas system tags, derived from the built-in measurements' results.
//!
//! Every [`TagConfig::period`] the operator reads per-probe summaries of the built-in
//! results from ClickHouse ([`summary_queries`], [`parse_summaries`]), derives each
//! probe's tags ([`derive`], pure) and hands changed ones to the Probe status writer
//! ([`crate::probes::status_writer`]), which owns `status.systemTags` (one writer, one
//! field manager).
//!
//! | tag | when |
//! | --- | --- |
//! | `system-ipv4-works` | a built-in IPv4 ping (target or anchor) got a reply within the window |
//! | `system-ipv4-capable` | it works, or a built-in IPv4 result has a source address, or the controller sees the probe over IPv4 |
//! | `system-resolves-a-correctly` | the DNS check (A, probe's resolvers) answered NOERROR with an A record (one of `--builtin-dns-expect-a` when given) within the window |
//! | `system-ipv4-stable-1d` | at most one hour of the last 24 had under 95 % successful built-in IPv4 pings (hours without results count as bad) |
//! | `system-anchor` | `spec.anchor` |
//!
//! and the same for IPv6 and AAAA. As at RIPE Atlas, a probe without results in the
//! window (disconnected) keeps its works, capable and resolves tags as they were.
//! Delay: a probe whose pings stop being answered loses `system-ipvX-works` at most
//! `window + period` after its last answered ping (plus the status writer's queue,
//! a second per 50 changed probes), and gets it back within `period` of an answered one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kube::runtime::reflector::Store as ProbeStore;
use vantage_crd::Probe;
use vantage_platform::store::Store;

use crate::builtin::{
    BuiltinPlan, ANCHOR_MESH, DNS_A, DNS_AAAA, MAX_TARGETS, PING_V4, PING_V6, RESERVED_END,
};
use crate::probes::Sessions;

pub const IPV4_WORKS: &str = "system-ipv4-works";
pub const IPV6_WORKS: &str = "system-ipv6-works";
pub const IPV4_CAPABLE: &str = "system-ipv4-capable";
pub const IPV6_CAPABLE: &str = "system-ipv6-capable";
pub const RESOLVES_A: &str = "system-resolves-a-correctly";
pub const RESOLVES_AAAA: &str = "system-resolves-aaaa-correctly";
pub const IPV4_STABLE_1D: &str = "system-ipv4-stable-1d";
pub const IPV6_STABLE_1D: &str = "system-ipv6-stable-1d";
pub const ANCHOR: &str = "system-anchor";

/// Hours of the last 24 that must be good for a `-stable-1d` tag (RIPE Atlas: at most
/// 5 % of the hourly buckets unstable).
pub const STABLE_HOURS: u32 = 23;

/// How system tags are derived (operator flags `--system-tags-*`, `--builtin-dns-expect-*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagConfig {
    /// How often the tags are derived again.
    pub period: Duration,
    /// How far back results count for works, capable and resolves.
    pub window: Duration,
    /// Addresses a correct A answer holds (one of them); empty: any A record.
    pub expect_a: Vec<IpAddr>,
    /// Addresses a correct AAAA answer holds; empty: any AAAA record.
    pub expect_aaaa: Vec<IpAddr>,
}

impl Default for TagConfig {
    fn default() -> Self {
        Self {
            period: Duration::from_secs(60),
            window: Duration::from_secs(900),
            expect_a: Vec::new(),
            expect_aaaa: Vec::new(),
        }
    }
}

/// Built-in ping results of one address family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PingSummary {
    /// Results within the window.
    pub results: u64,
    /// Of those, with at least one reply.
    pub answered: u64,
    /// Of those, with a source address (the probe has an address of this family).
    pub sourced: u64,
    /// Hours of the last 24 with at least 95 % answered results.
    pub good_hours: u32,
}

/// DNS check results of one query type within the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsSummary {
    pub results: u64,
    pub correct: u64,
}

/// What the built-in results say of one probe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub v4: PingSummary,
    pub v6: PingSummary,
    pub a: DnsSummary,
    pub aaaa: DnsSummary,
}

/// The probe's system tags (pure). `previous` are its tags so far (kept where the
/// window holds no results), `address` the address its controller sees.
pub fn derive(
    previous: &[String],
    s: &Summary,
    anchor: bool,
    address: Option<IpAddr>,
) -> Vec<String> {
    let had = |t: &str| previous.iter().any(|p| p == t);
    let mut out = Vec::new();
    for (ping, works, capable, stable, is_family) in [
        (
            &s.v4,
            IPV4_WORKS,
            IPV4_CAPABLE,
            IPV4_STABLE_1D,
            address.is_some_and(|a| a.is_ipv4()),
        ),
        (
            &s.v6,
            IPV6_WORKS,
            IPV6_CAPABLE,
            IPV6_STABLE_1D,
            address.is_some_and(|a| a.is_ipv6()),
        ),
    ] {
        let w = if ping.results > 0 {
            ping.answered > 0
        } else {
            had(works)
        };
        let c = w
            || is_family
            || if ping.results > 0 {
                ping.sourced > 0
            } else {
                had(capable)
            };
        if w {
            out.push(works.to_owned());
        }
        if c {
            out.push(capable.to_owned());
        }
        if ping.good_hours >= STABLE_HOURS {
            out.push(stable.to_owned());
        }
    }
    for (dns, tag) in [(&s.a, RESOLVES_A), (&s.aaaa, RESOLVES_AAAA)] {
        let ok = if dns.results > 0 {
            dns.correct > 0
        } else {
            had(tag)
        };
        if ok {
            out.push(tag.to_owned());
        }
    }
    if anchor {
        out.push(ANCHOR.to_owned());
    }
    out.sort();
    out
}

/// The SQL condition "a built-in ping" on `msm_id`.
fn builtin_ping_condition() -> String {
    let n = MAX_TARGETS as u64;
    format!(
        "type = 'ping' AND (msm_id BETWEEN {PING_V4} AND {} OR msm_id BETWEEN {PING_V6} AND {} \
         OR msm_id BETWEEN {ANCHOR_MESH} AND {})",
        PING_V4 + n - 1,
        PING_V6 + n - 1,
        RESERVED_END - 1
    )
}

/// The three queries on database `db`, each answering TSV lines
/// `kind prb_id key a b c`: `window` (key = af: results, answered, sourced),
/// `stable` (key = af: good hours, 0, 0) and `dns` (key = msm id: results, correct, 0).
pub fn summary_queries(db: &str, cfg: &TagConfig) -> [String; 3] {
    let ping = builtin_ping_condition();
    let window = cfg.window.as_secs().max(1);
    let answer = |qtype: &str, expect: &[IpAddr]| {
        let list = expect
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(",");
        let address = if expect.is_empty() {
            "1".to_owned()
        } else {
            format!("has([{list}], splitByChar(' ', a)[5])")
        };
        format!("arrayExists(a -> splitByChar(' ', a)[4] = '{qtype}' AND {address}, answers)")
    };
    [
        format!(
            "SELECT 'window', prb_id, af, count(), countIf(rcvd > 0), countIf(src_addr != '') \
             FROM {db}.results WHERE {ping} AND timestamp >= now() - INTERVAL {window} SECOND \
             GROUP BY prb_id, af"
        ),
        format!(
            "SELECT 'stable', prb_id, af, countIf(ok >= 0.95 * n), 0, 0 FROM (\
             SELECT prb_id, af, toStartOfHour(timestamp) AS h, countIf(rcvd > 0) AS ok, count() AS n \
             FROM {db}.results WHERE {ping} AND timestamp >= now() - INTERVAL 24 HOUR \
             GROUP BY prb_id, af, h) GROUP BY prb_id, af"
        ),
        format!(
            "SELECT 'dns', prb_id, msm_id, count(), \
             countIf(rcode = 'No Error' AND if(msm_id = {DNS_A}, {}, {})), 0 \
             FROM {db}.dns_results WHERE msm_id IN ({DNS_A}, {DNS_AAAA}) \
             AND timestamp >= now() - INTERVAL {window} SECOND GROUP BY prb_id, msm_id",
            answer("A", &cfg.expect_a),
            answer("AAAA", &cfg.expect_aaaa),
        ),
    ]
}

/// Add the TSV output of [`summary_queries`] to `into`; malformed lines are skipped.
pub fn parse_summaries(tsv: &str, into: &mut HashMap<u32, Summary>) {
    for line in tsv.lines() {
        let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
        let [kind, prb, key, a, b, c] = cols[..] else {
            continue;
        };
        let (Ok(prb), Ok(key), Ok(a), Ok(b), Ok(c)) = (
            prb.parse::<u32>(),
            key.parse::<u64>(),
            a.parse::<u64>(),
            b.parse::<u64>(),
            c.parse::<u64>(),
        ) else {
            continue;
        };
        let s = into.entry(prb).or_default();
        match (kind, key) {
            ("window", 4 | 6) => {
                let p = if key == 4 { &mut s.v4 } else { &mut s.v6 };
                (p.results, p.answered, p.sourced) = (a, b, c);
            }
            ("stable", 4 | 6) => {
                let p = if key == 4 { &mut s.v4 } else { &mut s.v6 };
                p.good_hours = u32::try_from(a).unwrap_or(u32::MAX);
            }
            ("dns", DNS_A) => {
                s.a = DnsSummary {
                    results: a,
                    correct: b,
                }
            }
            ("dns", DNS_AAAA) => {
                s.aaaa = DnsSummary {
                    results: a,
                    correct: b,
                }
            }
            _ => {}
        }
    }
}

/// The newest derived system tags by probe id, which the status writer sends.
#[derive(Clone, Default)]
pub struct SystemTags(Arc<RwLock<HashMap<u32, Vec<String>>>>);

impl SystemTags {
    pub fn get(&self, probe: u32) -> Option<Vec<String>> {
        self.0.read().ok()?.get(&probe).cloned()
    }

    /// Record `tags` for `probe`; true if they differ from what was recorded.
    pub fn set(&self, probe: u32, tags: Vec<String>) -> bool {
        self.0
            .write()
            .map(|mut m| m.insert(probe, tags.clone()).as_ref() != Some(&tags))
            .unwrap_or(false)
    }
}

/// One derivation pass over `probes`: record the tags and mark the probes whose status
/// does not show them yet. Returns how many probes were marked. The tags kept when the
/// window holds no results are those the status shows, so an operator without results
/// for a probe never changes its tags.
pub fn apply_pass(
    probes: &[Arc<Probe>],
    summaries: &HashMap<u32, Summary>,
    tags: &SystemTags,
    sessions: &Sessions,
) -> usize {
    let none = Summary::default();
    let mut marked = 0;
    for p in probes {
        let id = p.spec.id;
        let status = p.status.as_ref();
        let shown: &[String] = status.map(|s| s.system_tags.as_slice()).unwrap_or(&[]);
        let address = status
            .and_then(|s| s.address.as_deref())
            .and_then(|a| a.parse().ok());
        let new = derive(
            shown,
            summaries.get(&id).unwrap_or(&none),
            p.spec.anchor,
            address,
        );
        let changed = new.as_slice() != shown;
        tags.set(id, new);
        if changed {
            sessions.mark_dirty(id);
            marked += 1;
        }
    }
    marked
}

/// Derive the tags every `cfg.period`, forever. A failed query skips the pass (the
/// tags stay as they were) and is logged.
pub async fn derive_loop(
    store: Store,
    probes: ProbeStore<Probe>,
    tags: SystemTags,
    sessions: Sessions,
    plan: Arc<BuiltinPlan>,
    cfg: TagConfig,
) {
    let queries = summary_queries(store.database(), &cfg);
    let mut tick = tokio::time::interval(cfg.period);
    loop {
        tick.tick().await;
        let mut summaries = HashMap::new();
        let mut failed = false;
        for sql in &queries {
            match store.fetch_formatted(sql, "TSV").await {
                Ok(bytes) => parse_summaries(&String::from_utf8_lossy(&bytes), &mut summaries),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read built-in results for system tags");
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            continue;
        }
        let covered: Vec<Arc<Probe>> = probes
            .state()
            .into_iter()
            .filter(|p| plan.covers(p))
            .collect();
        let marked = apply_pass(&covered, &summaries, &tags, &sessions);
        if marked > 0 {
            tracing::info!(probes = marked, "system tags changed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    fn v4(results: u64, answered: u64) -> Summary {
        Summary {
            v4: PingSummary {
                results,
                answered,
                sourced: results,
                good_hours: 0,
            },
            ..Default::default()
        }
    }

    #[test]
    fn works_follows_answered_pings_and_survives_an_empty_window() {
        let addr: Option<IpAddr> = "192.0.2.7".parse().ok();
        let up = derive(&[], &v4(3, 1), false, addr);
        assert_eq!(up, tags(&[IPV4_WORKS, IPV4_CAPABLE]));
        // IPv4 stops answering: results, none answered.
        let down = derive(&up, &v4(3, 0), false, addr);
        assert_eq!(down, tags(&[IPV4_CAPABLE]), "works is lost, capable stays");
        // Back again.
        assert_eq!(derive(&down, &v4(2, 2), false, addr), up);
        // No results in the window (disconnected): nothing changes.
        assert_eq!(derive(&up, &Summary::default(), false, addr), up);
        assert_eq!(derive(&down, &Summary::default(), false, addr), down);
        // Never measured, anchor, seen over IPv6 only.
        let six: Option<IpAddr> = "2001:db8::7".parse().ok();
        assert_eq!(
            derive(&[], &Summary::default(), true, six),
            tags(&[IPV6_CAPABLE, ANCHOR])
        );
        // Not answering and no source address: not capable either.
        let dead = Summary {
            v6: PingSummary {
                results: 4,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            derive(&[IPV6_WORKS.into()], &dead, false, None),
            Vec::<String>::new()
        );
    }

    #[test]
    fn stable_and_resolves() {
        let s = Summary {
            v4: PingSummary {
                results: 10,
                answered: 10,
                sourced: 10,
                good_hours: STABLE_HOURS,
            },
            v6: PingSummary {
                results: 10,
                answered: 9,
                sourced: 10,
                good_hours: STABLE_HOURS - 1,
            },
            a: DnsSummary {
                results: 2,
                correct: 1,
            },
            aaaa: DnsSummary {
                results: 2,
                correct: 0,
            },
        };
        assert_eq!(
            derive(&[RESOLVES_AAAA.into()], &s, false, None),
            tags(&[
                IPV4_WORKS,
                IPV4_CAPABLE,
                IPV4_STABLE_1D,
                IPV6_WORKS,
                IPV6_CAPABLE,
                RESOLVES_A
            ])
        );
        // No DNS result in the window: resolves tags are kept.
        let quiet = Summary {
            a: DnsSummary::default(),
            ..s
        };
        assert!(derive(&[RESOLVES_A.into()], &quiet, false, None).contains(&RESOLVES_A.to_owned()));
    }

    #[test]
    fn tsv_summaries() {
        let mut m = HashMap::new();
        parse_summaries(
            "window\t7\t4\t5\t4\t5\nwindow\t7\t6\t3\t0\t0\nstable\t7\t4\t24\t0\t0\n\
             dns\t7\t10001\t2\t2\t0\ndns\t8\t10002\t1\t0\t0\nbad line\nwindow\tx\t4\t1\t1\t1\n",
            &mut m,
        );
        assert_eq!(m.len(), 2);
        let s = m[&7];
        assert_eq!((s.v4.results, s.v4.answered, s.v4.good_hours), (5, 4, 24));
        assert_eq!((s.v6.results, s.v6.answered), (3, 0));
        assert_eq!(
            s.a,
            DnsSummary {
                results: 2,
                correct: 2
            }
        );
        assert_eq!(
            m[&8].aaaa,
            DnsSummary {
                results: 1,
                correct: 0
            }
        );
    }

    #[test]
    fn queries_read_builtins_only() {
        let cfg = TagConfig {
            window: Duration::from_secs(8),
            expect_a: vec!["192.0.2.53".parse().expect("ip")],
            ..Default::default()
        };
        let [window, stable, dns] = summary_queries("db1", &cfg);
        assert!(window.contains("FROM db1.results") && window.contains("INTERVAL 8 SECOND"));
        assert!(
            window.contains("BETWEEN 1001 AND 1999")
                && window.contains("BETWEEN 100000 AND 999999")
        );
        assert!(stable.contains("INTERVAL 24 HOUR"));
        assert!(dns.contains("db1.dns_results") && dns.contains("has(['192.0.2.53']"));
    }

    #[test]
    fn a_pass_marks_changed_probes_only() {
        use vantage_crd::{ProbeSpec, ProbeStatus};
        let mut anchor = Probe::new("a", ProbeSpec::new(1, "k"));
        anchor.spec.anchor = true;
        let mut plain = Probe::new("b", ProbeSpec::new(2, "k"));
        plain.status = Some(ProbeStatus {
            system_tags: vec![IPV4_CAPABLE.into(), IPV4_WORKS.into()],
            ..Default::default()
        });
        let probes = [Arc::new(anchor), Arc::new(plain)];
        let sessions = Sessions::default();
        let st = SystemTags::default();
        let mut sums = HashMap::new();
        sums.insert(2, v4(3, 3));
        assert_eq!(
            apply_pass(&probes, &sums, &st, &sessions),
            1,
            "only the anchor changed"
        );
        assert_eq!(st.get(1), Some(vec![ANCHOR.to_owned()]));
        sums.insert(2, v4(3, 0));
        assert_eq!(apply_pass(&probes, &sums, &st, &sessions), 2);
        assert_eq!(st.get(2), Some(vec![IPV4_CAPABLE.to_owned()]));
    }
}
