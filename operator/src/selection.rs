//! Probe selection with RIPE Atlas semantics (pure).
//!
//! Eligible probes are enabled, connected, and match the source and its tag filters.
//! Within a source, probes are taken round-robin over ASNs (ordered by ASN, then probe
//! id), so that a request for N probes spreads over as many networks as it can, the way
//! RIPE Atlas spreads over networks. Sources are applied in order; a probe already taken
//! by an earlier source is not taken twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use vantage_core::definition::{Source, SourceKind};
use vantage_crd::Probe;

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

fn matches(source: &Source, c: &Candidate, earlier: &HashMap<u64, Vec<u32>>) -> bool {
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

/// Select probes for `sources` from `candidates`. `earlier` maps measurement ids to their
/// probes, for `msm` sources. The result is sorted by probe id.
pub fn select(
    sources: &[Source],
    candidates: &[Candidate],
    earlier: &HashMap<u64, Vec<u32>>,
) -> Vec<u32> {
    let mut taken = BTreeSet::new();
    let mut used_asns: BTreeSet<Option<u32>> = BTreeSet::new();
    for source in sources {
        // Group eligible probes by ASN (None sorts first), each group by id.
        let mut by_asn: BTreeMap<Option<u32>, Vec<u32>> = BTreeMap::new();
        for c in candidates {
            if c.enabled && c.connected && !taken.contains(&c.id) && matches(source, c, earlier) {
                by_asn.entry(c.asn).or_default().push(c.id);
            }
        }
        // Networks no earlier source used come first.
        let mut groups: Vec<(Option<u32>, std::vec::IntoIter<u32>)> = by_asn
            .into_iter()
            .map(|(asn, mut ids)| {
                ids.sort_unstable();
                (asn, ids.into_iter())
            })
            .collect();
        groups.sort_by_key(|(asn, _)| (used_asns.contains(asn), *asn));
        let mut wanted = source.requested as usize;
        while wanted > 0 {
            let mut progressed = false;
            for (asn, group) in &mut groups {
                if wanted == 0 {
                    break;
                }
                if let Some(id) = group.next() {
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
            select(
                &sources("[{type: country, value: NL, requested: 10}]"),
                &c,
                &none
            ),
            vec![1001, 1002, 1003]
        );
        // Two from NL spread over ASNs: one of AS1, one of AS2.
        assert_eq!(
            select(
                &sources("[{type: country, value: nl, requested: 2}]"),
                &c,
                &none
            ),
            vec![1001, 1003]
        );
        assert_eq!(
            select(
                &sources("[{type: country, value: NL, requested: 5, tags: {include: [home]}}]"),
                &c,
                &none
            ),
            vec![1002]
        );
        assert_eq!(
            select(
                &sources("[{type: country, value: NL, requested: 5, tags: {exclude: [home]}}]"),
                &c,
                &none
            ),
            vec![1001, 1003]
        );
        assert_eq!(
            select(
                &sources("[{type: asn, value: '2', requested: 5}]"),
                &c,
                &none
            ),
            vec![1003]
        );
        assert_eq!(
            select(
                &sources("[{type: prefix, value: 192.0.2.0/24, requested: 5}]"),
                &c,
                &none
            ),
            vec![1001]
        );
        assert_eq!(
            select(
                &sources("[{type: area, value: West, requested: 5}]"),
                &c,
                &none
            ),
            vec![2001]
        );
        assert_eq!(
            select(
                &sources("[{type: probes, value: '1004,1005,2001', requested: 3}]"),
                &c,
                &none
            ),
            vec![2001]
        );
        let earlier = HashMap::from([(77, vec![1003, 2001])]);
        assert_eq!(
            select(
                &sources("[{type: msm, value: '77', requested: 5}]"),
                &c,
                &earlier
            ),
            vec![1003, 2001]
        );
        // Sources do not take a probe twice.
        assert_eq!(
            select(&sources("[{type: probes, value: '1001', requested: 1}, {type: country, value: NL, requested: 1}]"), &c, &none),
            vec![1001, 1003]
        );
        assert!(select(
            &sources("[{type: country, value: DE, requested: 1}]"),
            &c,
            &none
        )
        .is_empty());
    }

    fn country(n: u32) -> String {
        let letters = [b'A' + (n / 26) as u8, b'A' + (n % 26) as u8];
        String::from_utf8_lossy(&letters).into_owned()
    }

    #[test]
    fn large_world_exact_counts() {
        // 5,000 probes over 60 countries and 300 ASNs; every 7th disabled, every 11th disconnected.
        let c: Vec<Candidate> = (0..5000u32)
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
            .collect();
        let none = HashMap::new();
        let picked = select(
            &sources("[{type: country, value: AI, requested: 40, tags: {include: [even]}}]"),
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
        let all = select(
            &sources("[{type: area, value: WW, requested: 100000}]"),
            &c,
            &none,
        );
        let eligible = c.iter().filter(|p| p.enabled && p.connected).count();
        assert_eq!(all.len(), eligible);
    }
}
