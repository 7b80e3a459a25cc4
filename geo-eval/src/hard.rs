//! The **hard** world profile: delay as the Internet has it, calibrated from published
//! measurements (docs/GEOLOCATION.md, "The hard world", gives the sources).
//!
//! * **Path inflation** per path, heavy-tailed: 1 + a log-normal excess, median 1.7,
//!   90th percentile 2.8 (CBG and Octant see 40–60 km per ms of RTT where light in
//!   fibre gives 100).
//! * **Access delay** per host, not per path: every probe and every target has its own
//!   last mile (exponential, mean 2.5 ms, at most 15 ms: most small, some DSL, cable or
//!   Wi-Fi), paid on every path it is on. Anchors have none.
//! * **Jitter** per packet: exponential, mean 1 ms; the engines see the least of the
//!   packets.
//! * **Placement** skewed like RIPE Atlas's probes: a per-country weight
//!   ([`COUNTRY_WEIGHTS`]), cities within a country by population (hosts are where
//!   people are; a city may hold several probes, and targets, as Berlin or Frankfurt
//!   do). Targets are drawn the same way: hosts that the network's users measure,
//!   where the network is.
//! * **Anchors**: a share of the probes, well connected (no access delay), which every
//!   probe has pinged (the anchoring mesh: its nearest anchors and a few far ones).
//! * **Quirks** in small shares: targets behind a tunnel (their traffic enters at a
//!   broker's point of presence, the address registered at the broker's seat), mobile
//!   carriers (traffic exits at the carrier's gateway in the country's largest city, plus
//!   radio delay), satellite links (a ground station up to 1,000 km away, plus the space
//!   segment).
//! * **Geofeeds**: a share of the targets' networks publish one (RFC 8805); most say the
//!   right city, some are stale (another city 200–1,500 km away).

use std::collections::HashSet;
use std::net::IpAddr;

use serde::Serialize;

use vantage_engines::geo;
use vantage_engines::world::{City, World};

use crate::{
    anycast_sites, register, target_ip, Placement, ProbeSite, Rng, SimConfig, TargetSite,
    ANYCAST_IP,
};

/// Approximate number of connected RIPE Atlas probes per country (rounded, from RIPE
/// Atlas's public probe statistics as of 2024; the ratios matter, not the digits).
/// Countries not listed weigh [`OTHER_WEIGHT`].
pub const COUNTRY_WEIGHTS: &[(&str, f64)] = &[
    ("DE", 2600.0),
    ("US", 1700.0),
    ("FR", 1000.0),
    ("GB", 750.0),
    ("NL", 650.0),
    ("RU", 500.0),
    ("IT", 330.0),
    ("CH", 260.0),
    ("UA", 250.0),
    ("CA", 250.0),
    ("SE", 220.0),
    ("AT", 200.0),
    ("PL", 200.0),
    ("BE", 200.0),
    ("ES", 200.0),
    ("AU", 200.0),
    ("JP", 180.0),
    ("CZ", 180.0),
    ("IR", 150.0),
    ("BR", 150.0),
    ("FI", 120.0),
    ("IN", 120.0),
    ("RO", 100.0),
    ("NO", 100.0),
    ("DK", 100.0),
    ("IE", 80.0),
    ("PT", 80.0),
    ("HU", 80.0),
    ("NZ", 80.0),
    ("ZA", 80.0),
    ("GR", 70.0),
    ("BG", 60.0),
    ("TR", 60.0),
    ("SG", 60.0),
    ("SK", 50.0),
    ("HK", 50.0),
    ("ID", 50.0),
    ("SI", 40.0),
    ("HR", 40.0),
    ("RS", 40.0),
    ("IL", 40.0),
    ("KZ", 40.0),
    ("CN", 40.0),
    ("AR", 40.0),
    ("MX", 30.0),
    ("CL", 30.0),
    ("KR", 30.0),
    ("TW", 30.0),
    ("TH", 25.0),
    ("MY", 25.0),
    ("PH", 20.0),
    ("VN", 20.0),
    ("CO", 20.0),
    ("KE", 15.0),
    ("NG", 10.0),
    ("EG", 10.0),
];

/// The weight of a country not in [`COUNTRY_WEIGHTS`].
pub const OTHER_WEIGHT: f64 = 3.0;

/// The knobs of the hard world.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HardWorld {
    /// Path inflation = 1 + log-normal excess with this median and σ.
    pub inflation_excess_median: f64,
    pub inflation_excess_sigma: f64,
    /// Access delay per host: exponential with this mean, capped (ms).
    pub access_mean_ms: f64,
    pub access_max_ms: f64,
    /// Anchors among the probes (no access delay).
    pub anchors: usize,
    /// Anchoring mesh: each probe has pinged its nearest anchors and this many spread ones.
    pub mesh_near: usize,
    pub mesh_far: usize,
    pub tunnel_share: f64,
    pub mobile_share: f64,
    pub satellite_share: f64,
    /// Share of targets whose network publishes a geofeed, and of those, the share that
    /// is stale (names another city).
    pub geofeed_share: f64,
    pub geofeed_stale: f64,
}

impl Default for HardWorld {
    fn default() -> Self {
        Self {
            inflation_excess_median: 0.7,
            // (2.8 − 1) / 0.7 = e^(1.2816 σ): the 90th percentile at 2.8.
            inflation_excess_sigma: (1.8_f64 / 0.7).ln() / 1.2816,
            access_mean_ms: 2.5,
            access_max_ms: 15.0,
            anchors: 200,
            mesh_near: 12,
            mesh_far: 8,
            tunnel_share: 0.01,
            mobile_share: 0.02,
            satellite_share: 0.005,
            geofeed_share: 0.2,
            geofeed_stale: 0.1,
        }
    }
}

/// What makes a target's paths unlike its place.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Quirk {
    /// Traffic enters at a tunnel broker's point of presence (a city id) and is carried
    /// to the host.
    Tunnel { via: u32 },
    /// Traffic exits at the carrier's gateway (a city id), plus radio delay.
    Mobile { gateway: u32, radio_ms: f64 },
    /// A satellite link: ground station (a city id), plus the space segment.
    Satellite { ground: u32, space_ms: f64 },
}

impl HardWorld {
    fn inflation(&self, rng: &mut Rng) -> f64 {
        1.0 + self.inflation_excess_median * (self.inflation_excess_sigma * rng.normal()).exp()
    }

    fn access(&self, rng: &mut Rng) -> f64 {
        rng.exponential(self.access_mean_ms).min(self.access_max_ms)
    }
}

fn weight(cc: &str) -> f64 {
    COUNTRY_WEIGHTS
        .iter()
        .find(|(c, _)| *c == cc)
        .map_or(OTHER_WEIGHT, |(_, w)| *w)
}

/// Cities of at least `min_population`, by country, each with its population as weight.
struct Pool<'w> {
    countries: Vec<(String, f64, Vec<&'w City>, f64)>,
    total: f64,
}

impl<'w> Pool<'w> {
    fn new(world: &'w World, min_population: u32) -> Self {
        let mut by_country: std::collections::BTreeMap<String, Vec<&City>> = Default::default();
        for c in world.cities() {
            if c.population >= min_population {
                by_country.entry(c.country.clone()).or_default().push(c);
            }
        }
        let countries: Vec<(String, f64, Vec<&City>, f64)> = by_country
            .into_iter()
            .map(|(cc, cities)| {
                let w = weight(&cc);
                let sum = cities.iter().map(|c| f64::from(c.population)).sum();
                (cc, w, cities, sum)
            })
            .collect();
        let total = countries.iter().map(|c| c.1).sum();
        Self { countries, total }
    }

    /// A country by weight, then a city by population.
    fn draw(&self, rng: &mut Rng, used: &mut HashSet<u32>) -> Option<&'w City> {
        for _ in 0..100 {
            let mut x = rng.unit() * self.total;
            let Some(country) = self.countries.iter().find(|c| {
                x -= c.1;
                x <= 0.0
            }) else {
                continue;
            };
            let mut y = rng.unit() * country.3;
            let Some(city) = country.2.iter().find(|c| {
                y -= f64::from(c.population);
                y <= 0.0
            }) else {
                continue;
            };
            used.insert(city.id);
            return Some(city);
        }
        None
    }
}

/// The largest city of a country.
fn largest<'w>(world: &'w World, cc: &str) -> Option<&'w City> {
    world
        .cities()
        .iter()
        .filter(|c| c.country == cc)
        .max_by_key(|c| c.population)
}

/// Tunnel brokers' points of presence.
const TUNNEL_POPS: &[&str] = &["DE", "NL", "GB", "US", "FR", "SE"];

/// Place the hard world. Deterministic for a seed.
pub fn place(world: &World, cfg: &SimConfig, hard: &HardWorld) -> Placement {
    let mut rng = Rng::new(cfg.seed ^ 0x4a2d);
    let pool = Pool::new(world, cfg.min_population);
    let mut used: HashSet<u32> = HashSet::new();
    let mut probes: Vec<ProbeSite> = Vec::new();
    for i in 0..cfg.probes {
        let Some(c) = pool.draw(&mut rng, &mut used) else {
            break;
        };
        // The first drawn are the anchors: placed by the same weights.
        let anchor = i < hard.anchors;
        probes.push(ProbeSite {
            id: i as u32 + 1,
            city_id: c.id,
            latitude: c.latitude,
            longitude: c.longitude,
            anchor,
            access_ms: if anchor { 0.0 } else { hard.access(&mut rng) },
        });
    }
    // Hosts.
    let mut hosts: Vec<(TargetSite, Vec<&City>, f64)> = Vec::new();
    for t in 0..cfg.targets {
        let Some(c) = pool.draw(&mut rng, &mut used) else {
            break;
        };
        let mut ptr = Vec::new();
        if rng.unit() < cfg.ptr_share {
            if let Some(code) = world.airports_serving(c.id).first() {
                ptr.push(format!(
                    "ae-{t}.cr1.{}2.example.net",
                    code.to_ascii_lowercase()
                ));
            }
        }
        let access = hard.access(&mut rng);
        hosts.push((
            TargetSite {
                ip: target_ip(t),
                sites: vec![c.id],
                ptr,
                registered: None,
                anchor_of: None,
                quirk: None,
                geofeed: None,
            },
            vec![c],
            access,
        ));
    }
    let big: Vec<&City> = world
        .cities()
        .iter()
        .filter(|c| c.population >= cfg.min_population)
        .collect();
    if cfg.anycast {
        if let Some(sites) = anycast_sites(&big, &probes, &HashSet::new()) {
            hosts.push((
                TargetSite {
                    ip: ANYCAST_IP,
                    sites: sites.iter().map(|c| c.id).collect(),
                    ptr: Vec::new(),
                    registered: None,
                    anchor_of: None,
                    quirk: None,
                    geofeed: None,
                },
                sites,
                0.0,
            ));
        }
    }
    {
        let mut regs: Vec<(TargetSite, Vec<&City>)> = hosts
            .iter()
            .map(|(t, c, _)| (t.clone(), c.clone()))
            .collect();
        if let Some(accuracy) = cfg.rir_accuracy {
            register(&mut regs, &big, accuracy, cfg.seed);
        }
        for (h, (r, _)) in hosts.iter_mut().zip(regs) {
            h.0.registered = r.registered;
        }
    }
    // Quirks and geofeeds, from a stream of their own.
    let mut qrng = Rng::new(cfg.seed ^ 0x9b1f);
    for (site, cities, _) in hosts.iter_mut() {
        if site.sites.len() != 1 {
            continue;
        }
        let Some(c) = cities.first().copied() else {
            continue;
        };
        let u = qrng.unit();
        let registered = cfg.rir_accuracy.is_some();
        if u < hard.tunnel_share {
            let cc =
                TUNNEL_POPS[(qrng.unit() * TUNNEL_POPS.len() as f64) as usize % TUNNEL_POPS.len()];
            let cc = if cc == c.country { "US" } else { cc };
            if let Some(pop) = largest(world, cc) {
                site.quirk = Some(Quirk::Tunnel { via: pop.id });
                if registered {
                    site.registered = Some(cc.to_owned());
                }
                // The broker's feed names its point of presence.
                if qrng.unit() < 0.5 {
                    site.geofeed = Some(pop.id);
                }
            }
        } else if u < hard.tunnel_share + hard.mobile_share {
            if let Some(gw) = largest(world, &c.country) {
                site.quirk = Some(Quirk::Mobile {
                    gateway: gw.id,
                    radio_ms: 15.0 + 20.0 * qrng.unit(),
                });
            }
        } else if u < hard.tunnel_share + hard.mobile_share + hard.satellite_share {
            let near: Vec<&City> = big
                .iter()
                .filter(|o| o.id != c.id)
                .filter(|o| {
                    geo::distance_km(c.latitude, c.longitude, o.latitude, o.longitude) <= 1000.0
                })
                .copied()
                .collect();
            let ground = if near.is_empty() {
                c
            } else {
                near[(qrng.unit() * near.len() as f64) as usize % near.len()]
            };
            site.quirk = Some(Quirk::Satellite {
                ground: ground.id,
                space_ms: 25.0 + 20.0 * qrng.unit(),
            });
            if registered {
                site.registered = Some("US".to_owned());
            }
            // Satellite operators publish where their users are.
            site.geofeed = Some(c.id);
        } else if qrng.unit() < hard.geofeed_share {
            site.geofeed = Some(if qrng.unit() < hard.geofeed_stale {
                stale_city(world, c, &mut qrng).unwrap_or(c.id)
            } else {
                c.id
            });
        }
    }
    // Anchors answer pings too (the anchoring mesh): a target at each anchor's place.
    let first_anchor_target = hosts.len();
    let anchor_targets: Vec<(TargetSite, Vec<&City>, f64)> = probes
        .iter()
        .filter(|p| p.anchor)
        .enumerate()
        .filter_map(|(k, p)| {
            let c = world.city(p.city_id)?;
            Some((
                TargetSite {
                    ip: target_ip(first_anchor_target + k),
                    sites: vec![c.id],
                    ptr: Vec::new(),
                    registered: None,
                    anchor_of: Some(p.id),
                    quirk: None,
                    geofeed: None,
                },
                vec![c],
                0.0,
            ))
        })
        .collect();
    let mut targets = hosts;
    targets.extend(anchor_targets);
    // Every path's delay.
    let mut rtt_ms = vec![vec![0.0; targets.len()]; probes.len()];
    let mut site_of = vec![vec![0; targets.len()]; probes.len()];
    let km = |a: (f64, f64), b: &City| geo::distance_km(a.0, a.1, b.latitude, b.longitude);
    for (p, probe) in probes.iter().enumerate() {
        let at = (probe.latitude, probe.longitude);
        for (t, (site, cities, access)) in targets.iter().enumerate() {
            let infl = hard.inflation(&mut rng);
            let leg = hard.inflation(&mut rng);
            let (k, path) = match site
                .quirk
                .and_then(|q| quirk_path(world, q, cities.first().copied()))
            {
                Some((exit, extra_km, extra_ms)) => (
                    0,
                    (km(at, exit) * infl + extra_km * leg) / geo::KM_PER_MS_RTT + extra_ms,
                ),
                None => cities
                    .iter()
                    .map(|c| km(at, c) * infl / geo::KM_PER_MS_RTT)
                    .enumerate()
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .unwrap_or((0, f64::INFINITY)),
            };
            rtt_ms[p][t] = probe.access_ms + access + path;
            site_of[p][t] = k;
        }
    }
    // The anchoring mesh, as the operator builds it (`builtin::BuiltinPlan::desired`):
    // each probe's nearest anchors, then the farther ones ranked by distance, cut into
    // `mesh_far` equal slices, the farthest of each.
    let anchor_idx: Vec<usize> = (first_anchor_target..targets.len()).collect();
    let mut mesh = Vec::new();
    for (p, probe) in probes.iter().enumerate() {
        let mut near: Vec<(f64, usize)> = anchor_idx
            .iter()
            .filter(|&&t| targets[t].0.anchor_of != Some(probe.id))
            .filter_map(|&t| {
                Some((
                    km((probe.latitude, probe.longitude), targets[t].1.first()?),
                    t,
                ))
            })
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut chosen: Vec<usize> = near.iter().take(hard.mesh_near).map(|x| x.1).collect();
        let rest: Vec<usize> = near.iter().skip(hard.mesh_near).map(|x| x.1).collect();
        if rest.len() <= hard.mesh_far {
            chosen.extend(rest);
        } else {
            for k in 1..=hard.mesh_far {
                chosen.push(rest[(k * rest.len()) / hard.mesh_far - 1]);
            }
        }
        chosen.sort_unstable();
        chosen.dedup();
        mesh.extend(chosen.into_iter().map(|t| (p, t)));
    }
    Placement {
        probes,
        targets: targets.into_iter().map(|(t, _, _)| t).collect(),
        rtt_ms,
        site_of,
        mesh,
    }
}

/// Where a quirky target's traffic leaves the network, the extra distance to the host,
/// and the extra delay.
fn quirk_path<'w>(world: &'w World, q: Quirk, host: Option<&City>) -> Option<(&'w City, f64, f64)> {
    let host = host?;
    let leg = |exit: &City| {
        geo::distance_km(exit.latitude, exit.longitude, host.latitude, host.longitude)
    };
    match q {
        Quirk::Tunnel { via } => {
            let exit = world.city(via)?;
            Some((exit, leg(exit), 0.0))
        }
        Quirk::Mobile { gateway, radio_ms } => {
            let exit = world.city(gateway)?;
            Some((exit, leg(exit), radio_ms))
        }
        Quirk::Satellite { ground, space_ms } => {
            let exit = world.city(ground)?;
            Some((exit, 0.0, space_ms))
        }
    }
}

/// A stale geofeed's city: another city of at least 20,000 people 200–1,500 km away,
/// in the same country when it has one.
fn stale_city(world: &World, c: &City, rng: &mut Rng) -> Option<u32> {
    let ring: Vec<&City> = world
        .within(c.latitude, c.longitude, 1500.0)
        .into_iter()
        .filter(|(o, d)| *d >= 200.0 && o.population >= 20_000)
        .map(|(o, _)| o)
        .collect();
    let same: Vec<&&City> = ring.iter().filter(|o| o.country == c.country).collect();
    if !same.is_empty() {
        return Some(same[(rng.unit() * same.len() as f64) as usize % same.len()].id);
    }
    (!ring.is_empty()).then(|| ring[(rng.unit() * ring.len() as f64) as usize % ring.len()].id)
}

/// Whether this target is scored (hosts; not the anchors' own addresses).
pub fn is_host(t: &TargetSite) -> bool {
    t.anchor_of.is_none()
}

/// The targets' geofeeds in RFC 8805 form (one /24 per publishing target).
pub fn geofeed_csv(world: &World, targets: &[TargetSite]) -> String {
    let mut text = String::from("# simulated geofeed (RFC 8805)\n");
    for t in targets {
        let (Some(city), IpAddr::V4(ip)) = (t.geofeed.and_then(|id| world.city(id)), t.ip) else {
            continue;
        };
        let o = ip.octets();
        text.push_str(&format!(
            "{}.{}.{}.0/24,{},,{},\n",
            o[0], o[1], o[2], city.country, city.name
        ));
    }
    text
}
