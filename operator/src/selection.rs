//! Probe selection with RIPE Atlas semantics (pure).
//!
//! Eligible probes are enabled, connected, match the source and its tag filters, and
//! are not full (on `max_per_probe` measurements already). Within a source, probes are
//! taken round-robin over ASNs, so that a request for N probes spreads over as many
//! networks as it can, the way RIPE Atlas spreads over networks; networks no earlier
//! source used come first. Sources are applied in order; a probe already taken by an
//! earlier source is not taken twice.
//!
//! Which probe of a network, and which networks first, spreads load: the least-loaded
//! probe first (the measurements it runs, [`crate::load`]), ties broken at random with a
//! seed of the measurement's own ([`seed_of`]); networks in the order of their
//! least-loaded probe, ties again at random. So the same inputs and seed give the same
//! probes (a reconcile that chooses again chooses the same), different measurements
//! choose differently, and load evens out: a probe is chosen over a busier one always,
//! over an equally busy one by lot.

use std::collections::{BTreeSet, HashMap};

use vantage_core::definition::{Source, SourceKind, DEFAULT_MAX_REQUESTED};
use vantage_crd::Probe;

use crate::load::Loads;

/// What selection needs to know of a probe.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub enabled: bool,
    pub connected: bool,
    pub country: Option<String>,
    pub asn: Option<u32>,
    pub prefix: Option<ipnet::IpNet>,
    pub lat_lon: Option<(f64, f64)>,
    pub tags: Vec<String>,
}

impl Candidate {
    pub fn from_probe(p: &Probe, connected: bool) -> Self {
        let s = &p.spec;
        Self {
            id: s.id,
            enabled: s.enabled,
            connected,
            country: s.country_code.as_ref().map(|c| c.to_ascii_uppercase()),
            asn: s.asn_v4.or(s.asn_v6),
            prefix: s
                .prefix_v4
                .as_deref()
                .or(s.prefix_v6.as_deref())
                .and_then(|p| p.parse().ok()),
            lat_lon: s.location.map(|l| (l.latitude, l.longitude)),
            tags: s
                .tags
                .iter()
                .chain(p.status.iter().flat_map(|st| st.system_tags.iter()))
                .cloned()
                .collect(),
        }
    }
}

/// The RIPE Atlas area a location falls in. Areas split the world by longitude into
/// the Americas (West), Europe/Africa (Central) and Asia/Oceania (East), each cut at
/// 30° N into North and South; the Americas are one area.
pub fn area_of(lat: f64, lon: f64) -> &'static str {
    if lon < -30.0 {
        "West"
    } else if lon < 60.0 {
        if lat >= 30.0 {
            "North-Central"
        } else {
            "South-Central"
        }
    } else if lat >= 30.0 {
        "North-East"
    } else {
        "South-East"
    }
}

/// Does `c` match `source` (its kind and tag filters)? `earlier`: as for [`select`].
pub fn matches(source: &Source, c: &Candidate, earlier: &HashMap<u64, Vec<u32>>) -> bool {
    let kind_ok = match &source.kind {
        SourceKind::Area(area) => {
            area == "WW"
                || c.lat_lon
                    .is_some_and(|(lat, lon)| area_of(lat, lon) == area)
        }
        SourceKind::Country(cc) => c.country.as_deref() == Some(cc.as_str()),
        SourceKind::Asn(asn) => c.asn == Some(*asn),
        SourceKind::Prefix(net) => c.prefix.is_some_and(|p| net.contains(&p)),
        SourceKind::Probes(ids) => ids.contains(&c.id),
        SourceKind::Msm(msm) => earlier.get(msm).is_some_and(|ids| ids.contains(&c.id)),
    };
    kind_ok
        && source.include.iter().all(|t| c.tags.contains(t))
        && !source.exclude.iter().any(|t| c.tags.contains(t))
}

/// How selection spreads load: the probes' loads, the measurement's own probes (not
/// counted in their loads), the per-probe cap and the measurement's seed; and the
/// cluster maximum of `requested` ([`check_requested`]).
#[derive(Clone, Copy, Debug)]
pub struct Spread<'a> {
    pub seed: u64,
    /// None: every probe is idle.
    pub loads: Option<&'a Loads>,
    /// Probes the measurement runs on now, sorted: choosing again does not flee them.
    pub own: &'a [u32],
    /// A probe on this many measurements is full and skipped; None: no cap.
    pub max_per_probe: Option<u32>,
    /// Largest `requested` (per source, and in all) the cluster accepts.
    pub max_requested: u32,
}

impl Default for Spread<'_> {
    /// Idle probes, no cap, seed 0, the default maximum.
    fn default() -> Self {
        Self {
            seed: 0,
            loads: None,
            own: &[],
            max_per_probe: None,
            max_requested: DEFAULT_MAX_REQUESTED,
        }
    }
}

impl Spread<'_> {
    /// Measurements `probe` runs, besides this one.
    pub fn load(&self, probe: u32) -> u32 {
        let all = self.loads.map_or(0, |l| l.of(probe));
        all.saturating_sub(u32::from(self.own.binary_search(&probe).is_ok()))
    }

    /// The lot of `x` (a probe id or an ASN) for this measurement.
    fn lot(&self, x: u64) -> u64 {
        splitmix64(self.seed ^ splitmix64(x))
    }
}

/// SplitMix64's finalizer: a well-mixed, stable function of `x`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of a measurement's selection: FNV-1a of its uid (of `namespace/name`
/// without one), so it survives restarts and upgrades and differs between measurements.
pub fn seed_of(msm: &vantage_crd::Measurement) -> u64 {
    let id = msm.metadata.uid.clone().unwrap_or_else(|| {
        format!(
            "{}/{}",
            msm.metadata.namespace.as_deref().unwrap_or_default(),
            msm.metadata.name.as_deref().unwrap_or_default()
        )
    });
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Refuse `requested` above the cluster maximum `max`: per source, and in all (the
/// same rule as the API's). The error names the field, the maximum and the fix.
pub fn check_requested(
    sources: &[Source],
    max: u32,
) -> Result<(), vantage_core::definition::InvalidField> {
    let fix = "ask for fewer, or ask a platform admin to raise the operator's --max-requested";
    let mut total = 0u64;
    for (i, s) in sources.iter().enumerate() {
        if s.requested > max {
            return Err(vantage_core::definition::InvalidField {
                field: format!("spec.probes[{i}].requested"),
                message: format!(
                    "{} is above this cluster's maximum of {max} probes per measurement; {fix}",
                    s.requested
                ),
            });
        }
        total += u64::from(s.requested);
    }
    if total > u64::from(max) {
        return Err(vantage_core::definition::InvalidField {
            field: "spec.probes".into(),
            message: format!(
                "{total} probes requested in all is above this cluster's maximum of {max} probes per measurement; {fix}"
            ),
        });
    }
    Ok(())
}

/// Select probes for `sources` from `candidates`, spreading load as `spread` says.
/// `earlier` maps measurement ids to their probes, for `msm` sources. The result is
/// sorted by probe id.
pub fn select(
    sources: &[Source],
    candidates: &[Candidate],
    earlier: &HashMap<u64, Vec<u32>>,
    spread: &Spread<'_>,
) -> Vec<u32> {
    let mut taken = BTreeSet::new();
    let mut used_asns: BTreeSet<Option<u32>> = BTreeSet::new();
    for source in sources {
        // Eligible probes by ASN, each as (load, lot, id).
        let mut by_asn: HashMap<Option<u32>, Vec<(u32, u64, u32)>> = HashMap::new();
        for c in candidates {
            if !(c.enabled && c.connected) || taken.contains(&c.id) || !matches(source, c, earlier)
            {
                continue;
            }
            let load = spread.load(c.id);
            if spread.max_per_probe.is_some_and(|max| load >= max) {
                continue;
            }
            by_asn
                .entry(c.asn)
                .or_default()
                .push((load, spread.lot(u64::from(c.id)), c.id));
        }
        // Each network's probes least-loaded first; networks no earlier source used
        // first, then by their least-loaded probe, then by lot.
        let mut groups: Vec<_> = by_asn
            .into_iter()
            .map(|(asn, mut probes)| {
                probes.sort_unstable();
                let least = probes.first().map_or(u32::MAX, |p| p.0);
                let lot = spread.lot(asn.map_or(u64::MAX, u64::from));
                (
                    (used_asns.contains(&asn), least, lot, asn),
                    probes.into_iter(),
                )
            })
            .collect();
        groups.sort_unstable_by_key(|(order, _)| *order);
        let mut wanted = source.requested as usize;
        while wanted > 0 {
            let mut progressed = false;
            for ((_, _, _, asn), group) in &mut groups {
                if wanted == 0 {
                    break;
                }
                if let Some((_, _, id)) = group.next() {
                    taken.insert(id);
                    used_asns.insert(*asn);
                    wanted -= 1;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
    }
    taken.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use vantage_core::definition::ProbeSource;

    fn fixture() -> Vec<Candidate> {
        let probes: Vec<Probe> =
            serde_yaml::from_str(include_str!("../tests/fixtures/probes.yaml")).expect("fixture");
        probes
            .iter()
            .map(|p| Candidate::from_probe(p, p.spec.id != 1005))
            .collect()
    }

    fn sources(yaml: &str) -> Vec<Source> {
        let raw: Vec<ProbeSource> = serde_yaml::from_str(yaml).expect("sources");
        raw.iter()
            .enumerate()
            .map(|(i, s)| s.validate(i).expect("valid"))
            .collect()
    }

    fn seeded(seed: u64) -> Spread<'static> {
        Spread {
            seed,
            ..Spread::default()
        }
    }

    /// Select with no load, seed 0.
    fn pick(yaml: &str, c: &[Candidate], earlier: &HashMap<u64, Vec<u32>>) -> Vec<u32> {
        select(&sources(yaml), c, earlier, &Spread::default())
    }

    #[test]
    fn areas_follow_the_map() {
        assert_eq!(area_of(52.37, 4.89), "North-Central"); // Amsterdam
        assert_eq!(area_of(40.71, -74.0), "West"); // New York
        assert_eq!(area_of(-33.9, 18.4), "South-Central"); // Cape Town
        assert_eq!(area_of(35.68, 139.7), "North-East"); // Tokyo
        assert_eq!(area_of(1.35, 103.8), "South-East"); // Singapore
    }

    #[test]
    fn selection_honours_sources_tags_and_eligibility() {
        let c = fixture();
        let none = HashMap::new();
        // NL has 1001 (AS1), 1002 (AS1), 1003 (AS2), 1004 disabled, 1005 disconnected.
        assert_eq!(
            pick("[{type: country, value: NL, requested: 10}]", &c, &none),
            vec![1001, 1002, 1003]
        );
        // Two from NL spread over ASNs: one of AS1 (either, by lot), and AS2's one.
        for seed in 0..20 {
            let two = select(
                &sources("[{type: country, value: nl, requested: 2}]"),
                &c,
                &none,
                &seeded(seed),
            );
            assert!(
                two == vec![1001, 1003] || two == vec![1002, 1003],
                "seed {seed}: {two:?}"
            );
        }
        assert_eq!(
            pick(
                "[{type: country, value: NL, requested: 5, tags: {include: [home]}}]",
                &c,
                &none
            ),
            vec![1002]
        );
        assert_eq!(
            pick(
                "[{type: country, value: NL, requested: 5, tags: {exclude: [home]}}]",
                &c,
                &none
            ),
            vec![1001, 1003]
        );
        assert_eq!(
            pick("[{type: asn, value: '2', requested: 5}]", &c, &none),
            vec![1003]
        );
        assert_eq!(
            pick(
                "[{type: prefix, value: 192.0.2.0/24, requested: 5}]",
                &c,
                &none
            ),
            vec![1001]
        );
        assert_eq!(
            pick("[{type: area, value: West, requested: 5}]", &c, &none),
            vec![2001]
        );
        assert_eq!(
            pick(
                "[{type: probes, value: '1004,1005,2001', requested: 3}]",
                &c,
                &none
            ),
            vec![2001]
        );
        let earlier = HashMap::from([(77, vec![1003, 2001])]);
        assert_eq!(
            pick("[{type: msm, value: '77', requested: 5}]", &c, &earlier),
            vec![1003, 2001]
        );
        // Sources do not take a probe twice, and the second source prefers a network
        // the first did not use: AS2's 1003 over AS1's 1002.
        assert_eq!(
            pick("[{type: probes, value: '1001', requested: 1}, {type: country, value: NL, requested: 1}]", &c, &none),
            vec![1001, 1003]
        );
        assert!(pick("[{type: country, value: DE, requested: 1}]", &c, &none).is_empty());
    }

    fn loads(of: &[(&str, &[u32])]) -> Loads {
        let mut l = Loads::default();
        for (name, probes) in of {
            l.set(("t".into(), (*name).into()), probes);
        }
        l
    }

    #[test]
    fn the_less_loaded_probe_and_network_win() {
        let c = fixture();
        let none = HashMap::new();
        let busy = loads(&[("a", &[1001]), ("b", &[1001, 1003])]);
        for seed in 0..20 {
            let spread = Spread {
                seed,
                loads: Some(&busy),
                ..Spread::default()
            };
            // Within AS1, idle 1002 beats 1001 (2 measurements).
            let one_per_asn = select(
                &sources("[{type: country, value: NL, requested: 2}]"),
                &c,
                &none,
                &spread,
            );
            assert_eq!(one_per_asn, vec![1002, 1003], "seed {seed}");
            // One probe: AS1's least-loaded (0) beats AS2's (1).
            let one = select(
                &sources("[{type: country, value: NL, requested: 1}]"),
                &c,
                &none,
                &spread,
            );
            assert_eq!(one, vec![1002], "seed {seed}");
        }
    }

    #[test]
    fn a_full_probe_is_skipped() {
        let c = fixture();
        let none = HashMap::new();
        let busy = loads(&[("a", &[1001, 1003]), ("b", &[1001])]);
        let capped = |max| Spread {
            loads: Some(&busy),
            max_per_probe: Some(max),
            ..Spread::default()
        };
        let nl = sources("[{type: country, value: NL, requested: 10}]");
        assert_eq!(select(&nl, &c, &none, &capped(2)), vec![1002, 1003]);
        assert_eq!(select(&nl, &c, &none, &capped(1)), vec![1002]);
        // Named probes are skipped too when full.
        let named = sources("[{type: probes, value: '1001', requested: 1}]");
        assert!(select(&named, &c, &none, &capped(2)).is_empty());
        // Its own measurements do not fill a probe for a measurement choosing again.
        let own = Spread {
            own: &[1001, 1003],
            ..capped(2)
        };
        assert_eq!(select(&named, &c, &none, &own), vec![1001]);
    }

    fn country(n: u32) -> String {
        let letters = [b'A' + (n / 26) as u8, b'A' + (n % 26) as u8];
        String::from_utf8_lossy(&letters).into_owned()
    }

    /// 5,000 probes over 60 countries and 300 ASNs; every 7th disabled, every 11th
    /// disconnected.
    fn world() -> Vec<Candidate> {
        (0..5000u32)
            .map(|i| Candidate {
                id: 10_000 + i,
                enabled: i % 7 != 0,
                connected: i % 11 != 0,
                country: Some(country(i % 60)),
                asn: Some(64_512 + i % 300),
                prefix: None,
                lat_lon: None,
                tags: if i % 2 == 0 {
                    vec!["even".into()]
                } else {
                    vec![]
                },
            })
            .collect()
    }

    #[test]
    fn large_world_exact_counts() {
        let c = world();
        let none = HashMap::new();
        let picked = pick(
            "[{type: country, value: AI, requested: 40, tags: {include: [even]}}]",
            &c,
            &none,
        );
        assert_eq!(picked.len(), 40);
        for id in &picked {
            let p = &c[(id - 10_000) as usize];
            assert!(
                p.enabled
                    && p.connected
                    && p.country.as_deref() == Some("AI")
                    && p.tags.contains(&"even".to_string())
            );
        }
        // Round-robin over ASNs: AI's even probes sit in 5 ASNs, so each gives 8.
        let mut per_asn: BTreeMap<Option<u32>, usize> = BTreeMap::new();
        for id in &picked {
            *per_asn.entry(c[(id - 10_000) as usize].asn).or_default() += 1;
        }
        assert_eq!(per_asn.len(), 5);
        assert!(per_asn.values().all(|n| *n == 8), "{per_asn:?}");
        let all = pick("[{type: area, value: WW, requested: 100000}]", &c, &none);
        let eligible = c.iter().filter(|p| p.enabled && p.connected).count();
        assert_eq!(all.len(), eligible);
    }

    #[test]
    fn the_seed_decides_and_the_same_inputs_choose_the_same() {
        let c = world();
        let none = HashMap::new();
        let ww = sources("[{type: area, value: WW, requested: 35}]");
        let a = select(&ww, &c, &none, &seeded(1));
        assert_eq!(a.len(), 35);
        assert_eq!(
            a,
            select(&ww, &c, &none, &seeded(1)),
            "same seed, same probes"
        );
        let b = select(&ww, &c, &none, &seeded(2));
        assert_ne!(a, b, "another measurement chooses otherwise");
        // 35 probes in 35 different networks, whatever the seed.
        for picked in [&a, &b] {
            let asns: BTreeSet<_> = picked
                .iter()
                .map(|id| c[(id - 10_000) as usize].asn)
                .collect();
            assert_eq!(asns.len(), 35);
        }
        // A reconcile that chooses again, with its own choice now in the loads (and
        // other measurements' too), chooses the same probes.
        let mut l = loads(&[("other", &a[..10])]);
        let first = select(
            &ww,
            &c,
            &none,
            &Spread {
                seed: 3,
                loads: Some(&l),
                ..Spread::default()
            },
        );
        l.set(("t".into(), "me".into()), &first);
        let again = Spread {
            seed: 3,
            loads: Some(&l),
            own: l.probes_of(&("t".into(), "me".into())),
            ..Spread::default()
        };
        assert_eq!(select(&ww, &c, &none, &again), first);
    }

    #[test]
    fn load_spreads_over_every_probe() {
        // 500 world-wide measurements of 35 on a world whose 55 networks differ in size
        // (1 to 107 probes), each choice recorded before the next, as the reconciler does.
        // (Lowest ids per network, the old way, puts all 500 on the same 35 probes.)
        let c: Vec<Candidate> = (0..3000u32)
            .map(|i| Candidate {
                id: i,
                enabled: true,
                connected: i % 13 != 0,
                country: None,
                asn: Some((i as f64).sqrt() as u32),
                prefix: None,
                lat_lon: None,
                tags: vec![],
            })
            .collect();
        let eligible = c.iter().filter(|p| p.connected).count();
        let none = HashMap::new();
        let ww = sources("[{type: area, value: WW, requested: 35}]");
        let mut l = Loads::default();
        for m in 0..500u64 {
            let spread = Spread {
                seed: splitmix64(m),
                loads: Some(&l),
                max_per_probe: Some(100),
                ..Spread::default()
            };
            let picked = select(&ww, &c, &none, &spread);
            assert_eq!(picked.len(), 35);
            l.set(("t".into(), m.to_string()), &picked);
        }
        let per_probe: Vec<u32> = c
            .iter()
            .filter(|p| p.connected)
            .map(|p| l.of(p.id))
            .collect();
        let used = per_probe.iter().filter(|n| **n > 0).count();
        let max = per_probe.iter().copied().max().unwrap_or(0);
        let mean = 17_500.0 / eligible as f64;
        assert!(f64::from(max) <= 2.0 * mean, "max {max}, mean {mean:.2}");
        assert!(used * 100 >= eligible * 95, "{used} of {eligible} used");
        assert!(c.iter().filter(|p| !p.connected).all(|p| l.of(p.id) == 0));
    }

    #[test]
    fn a_measurement_over_the_maximum_is_invalid_until_it_is_raised() {
        use crate::limits::{Limits, Usage};
        use vantage_crd::conditions::{self, reason, INVALID};
        use vantage_crd::{Measurement, MeasurementState};
        let m: Measurement = serde_yaml::from_str(
            "{apiVersion: vantage.dev/v1alpha1, kind: Measurement, \
             metadata: {name: big, namespace: t, generation: 1}, \
             spec: {type: ping, target: example.net, \
             probes: [{type: area, value: WW, requested: 1000000000}]}}",
        )
        .expect("measurement");
        let c = fixture();
        let none = HashMap::new();
        let limits = Limits::default();
        let snap = |max_requested| crate::plan::Snapshot {
            candidates: &c,
            earlier: &none,
            results: None,
            reporters: &[],
            now: 1_700_000_000,
            now_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("time"),
            ),
            limits: &limits,
            usage: Usage::default(),
            spread: Spread {
                max_requested,
                ..Spread::default()
            },
        };
        let refused = crate::plan::desired_status(&m, &snap(1000));
        assert_eq!(refused.state, Some(MeasurementState::Failed));
        assert!(refused.probes.is_empty());
        let invalid = conditions::get(&refused.conditions, INVALID).expect("Invalid");
        assert_eq!(
            (invalid.status.as_str(), invalid.reason.as_str()),
            ("True", reason::INVALID_SPEC)
        );
        assert!(
            invalid.message.starts_with(
                "spec.probes[0].requested: 1000000000 is above this cluster's maximum of 1000"
            ),
            "{}",
            invalid.message
        );
        // Raised: the same generation, Failed before, now runs.
        let mut again = m.clone();
        again.status = Some(refused);
        let runs = crate::plan::desired_status(&again, &snap(u32::MAX));
        assert_eq!(runs.state, Some(MeasurementState::Ongoing));
        assert_eq!(runs.probes.len(), 4, "every eligible probe of the fixture");
    }

    #[test]
    fn requested_above_the_maximum_names_it() {
        let ok = sources(
            "[{type: area, value: WW, requested: 600}, {type: country, value: NL, requested: 400}]",
        );
        assert_eq!(check_requested(&ok, 1000), Ok(()));
        let one = sources("[{type: area, value: WW, requested: 5}, {type: country, value: NL, requested: 1000000000}]");
        let e = check_requested(&one, 1000).expect_err("too many");
        assert_eq!(e.field, "spec.probes[1].requested");
        assert!(
            e.message.contains("1000000000") && e.message.contains("maximum of 1000"),
            "{e}"
        );
        assert!(e.message.contains("--max-requested"), "{e}");
        let total = sources(
            "[{type: area, value: WW, requested: 600}, {type: country, value: NL, requested: 401}]",
        );
        let e = check_requested(&total, 1000).expect_err("too many in all");
        assert_eq!(e.field, "spec.probes");
        assert!(e.message.starts_with("1001 probes requested in all"), "{e}");
    }
}
