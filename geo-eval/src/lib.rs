//! Accuracy harness for the geolocation engines (`vantage-engines`), not shipped: a
//! simulated world of probes in real cities, targets in other cities, RTT =
//! great-circle distance × detour / (⅔ c) + noise.
//!
//! One model, two ways to get the RTTs:
//! * [`simulate`] computes them in process (fast, any size);
//! * [`netns`] builds the world out of network namespaces and has the probes really
//!   ping the targets (`make geo-eval`, `geo-eval/tests/netns_world.rs`).
//!
//! Either way the RTTs (and PTR names) feed the real engines through a [`Locator`]
//! (single-radius, latency/CBG, anycast, reverse-DNS, weights 1), and [`evaluate`]
//! reports country accuracy, the share within 40 km and the median error of each
//! engine's best city and of the reducer's.

pub mod hard;
pub mod netns;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use vantage_engines::engine::active::{ActiveRtts, Measurer, ProbeDirectory, ProbeInfo};
use vantage_engines::engine::calibration::{
    AnchorRtt, Calibration, CalibrationSource, FixedCalibration,
};
use vantage_engines::engine::geofeed::GeofeedEngine;
use vantage_engines::engine::latency::{Latency, ProbeRtt, RttSource, SharedRtts, StaticRtts};
use vantage_engines::engine::rdns::{ReverseDns, Rules, StaticPtr};
use vantage_engines::engine::rir::Rir;
use vantage_engines::engine::Engine;
use vantage_engines::geofeed::Geofeeds;
use vantage_engines::reducer::{EngineConfig, Located, Locator};
use vantage_engines::rir::Delegations;
use vantage_engines::world::{City, World};
use vantage_engines::{geo, Error};

/// The engines evaluated, in report order; the reducer comes last.
pub const ENGINES: &[&str] = &[
    "single-radius",
    "latency",
    "anycast",
    "reverse-dns",
    "rir",
    "geofeed",
];

/// The baseline's row in the report: IPmap's single-radius with IPmap's own measuring
/// (one round of 10 probes, until a probe answers under 10 ms, no calibration), run
/// in the same world beside vantage's engines; it does not vote in the reducer.
pub const BASELINE: &str = "ipmap-single-radius";

/// The simulated world's knobs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub probes: usize,
    pub targets: usize,
    /// Cities at least this populous host probes and targets.
    pub min_population: u32,
    /// Path length / great-circle distance, drawn uniformly in this range per path.
    pub detour: (f64, f64),
    /// Extra RTT in ms per path, drawn uniformly in 0..noise_ms (last mile, peering).
    pub noise_ms: f64,
    /// Extra delay per packet, uniform in 0..jitter_ms (queueing); the engines see the
    /// minimum over `packets` packets.
    pub jitter_ms: f64,
    pub packets: u32,
    /// Share of targets whose PTR name carries the airport code of their city.
    pub ptr_share: f64,
    /// Share of targets registered (RIR statistics) in the country they are in; the
    /// rest half in the nearest foreign country (a neighbour's network), half in a
    /// holder's seat abroad (US, GB, DE, NL, …). `None`: no `rir` engine.
    pub rir_accuracy: Option<f64>,
    /// Add one anycast target: the same address at two far-apart sites.
    pub anycast: bool,
    /// Draw targets only among cities within this distance of a probe: a dense probe
    /// network (RIPE Atlas has a probe within ~100 km of most places online) with few
    /// namespaces. `None`: anywhere.
    pub near_probe_km: Option<f64>,
    /// How the engines get their RTTs.
    pub measuring: Measuring,
    /// The world's delay model: `Kind` (the fields above) or `Hard` ([`hard`]).
    pub profile: Profile,
    pub seed: u64,
}

/// The world's delay model.
#[derive(Debug, Clone, PartialEq)]
pub enum Profile {
    /// Uniform detour 1.0–1.3, 0.5 ms of noise per path, probes spread evenly: the world
    /// of issue #7, kept for regression.
    Kind,
    /// Heavy-tailed inflation, access delay per host, RIPE Atlas's skew, anchors,
    /// quirks and geofeeds ([`hard`]).
    Hard(hard::HardWorld),
}

impl Profile {
    pub fn name(&self) -> &'static str {
        match self {
            Profile::Kind => "kind",
            Profile::Hard(_) => "hard",
        }
    }
}

/// How the engines get their RTTs.
#[derive(Debug, Clone, PartialEq)]
pub enum Measuring {
    /// Every probe has pinged every target.
    AllPairs,
    /// IPmap's way: a few spread-out probes (RIPE Atlas's anchors) have pinged every
    /// target beforehand; the rest is measured on demand, through the active
    /// single-radius RTT source (`engine::active::ActiveRtts`) that the engine service runs.
    Active(ActivePlan),
}

/// The on-demand measurement plan of [`Measuring::Active`].
#[derive(Debug, Clone, PartialEq)]
pub struct ActivePlan {
    /// Probes that have pinged every target beforehand, spread over the world.
    pub anchors: usize,
    /// Probes per on-demand ping.
    pub per_round: usize,
    /// On-demand pings per target at most.
    pub rounds: usize,
    /// Stop once a probe answers faster than this.
    pub enough_rtt_ms: f64,
}

impl Default for ActivePlan {
    fn default() -> Self {
        Self {
            anchors: 40,
            per_round: 20,
            rounds: 3,
            enough_rtt_ms: 0.5,
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            probes: 800,
            targets: 300,
            min_population: 100_000,
            detour: (1.0, 1.3),
            noise_ms: 0.5,
            jitter_ms: 0.2,
            packets: vantage_engines::engine::active::GEO_PING_PACKETS,
            ptr_share: 0.5,
            rir_accuracy: Some(0.95),
            anycast: true,
            near_probe_km: None,
            measuring: Measuring::Active(ActivePlan::default()),
            profile: Profile::Kind,
            seed: 7,
        }
    }
}

impl SimConfig {
    /// The hard world with its defaults: 800 probes (200 anchors), 300 targets, cities
    /// from 20,000 people, exponential per-packet jitter with a mean of 1 ms.
    pub fn hard() -> Self {
        Self {
            min_population: 20_000,
            jitter_ms: 1.0,
            profile: Profile::Hard(hard::HardWorld::default()),
            ..Self::default()
        }
    }

    /// Per-packet jitter is exponential (mean `jitter_ms`) in the hard world, uniform
    /// (0..`jitter_ms`) in the kind one.
    fn jitter_exponential(&self) -> bool {
        matches!(self.profile, Profile::Hard(_))
    }
}

/// A probe of the simulated world.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeSite {
    pub id: u32,
    pub city_id: u32,
    pub latitude: f64,
    pub longitude: f64,
    /// An anchor: well connected, pinged by the other probes (the hard world).
    pub anchor: bool,
    /// Its own last-mile delay, paid on every path (the hard world), ms.
    pub access_ms: f64,
}

/// A target: one city, or several for an anycast address.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetSite {
    pub ip: IpAddr,
    pub sites: Vec<u32>,
    pub ptr: Vec<String>,
    /// The country its address is registered in (RIR statistics).
    pub registered: Option<String>,
    /// The anchor probe whose own address this is (the anchoring mesh), not a target
    /// to locate.
    pub anchor_of: Option<u32>,
    /// What makes its paths unlike its place (the hard world).
    pub quirk: Option<hard::Quirk>,
    /// The city its network's geofeed names, if it publishes one.
    pub geofeed: Option<u32>,
}

/// Where everything is and the ground-truth RTT of every path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placement {
    pub probes: Vec<ProbeSite>,
    pub targets: Vec<TargetSite>,
    /// `rtt_ms[p][t]`: probe `p` to target `t`, before per-packet jitter; for an anycast
    /// target, to the site the probe is routed to (the one with the lower RTT).
    pub rtt_ms: Vec<Vec<f64>>,
    /// For an anycast target, `site_of[p][t]` is the index in `sites` that probe `p`
    /// reaches; 0 for unicast targets.
    pub site_of: Vec<Vec<usize>>,
    /// The anchoring mesh: (probe index, target index of an anchor) pairs pinged to
    /// calibrate every probe (the hard world; empty in the kind one).
    pub mesh: Vec<(usize, usize)>,
}

impl Placement {
    /// The index of the target with this address.
    pub fn target_index(&self, ip: IpAddr) -> Result<usize, Error> {
        self.targets
            .iter()
            .position(|t| t.ip == ip)
            .ok_or_else(|| Error::Measure {
                ip,
                source: format!("{ip} is not a target of the simulated world").into(),
            })
    }

    /// The indices of these probe ids (unknown ids are left out).
    pub fn probe_indices(&self, ids: &[u32]) -> Vec<usize> {
        ids.iter()
            .filter_map(|id| self.probes.iter().position(|p| p.id == *id))
            .collect()
    }
}

/// The extra delay the engines see from per-packet jitter: the least of `packets`
/// draws, uniform in 0..`jitter_ms` or exponential with that mean.
fn min_jitter(rng: &mut Rng, jitter_ms: f64, packets: u32, exponential: bool) -> f64 {
    (0..packets.max(1))
        .map(|_| {
            if exponential {
                rng.exponential(jitter_ms)
            } else {
                jitter_ms * rng.unit()
            }
        })
        .fold(f64::INFINITY, f64::min)
}

/// The cases' RTTs as a fixed table.
fn static_rtts(cases: &[Case]) -> StaticRtts {
    StaticRtts(
        cases
            .iter()
            .map(|c| (c.target.ip, c.rtts.clone()))
            .collect(),
    )
}

/// What the engines get for one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub target: TargetSite,
    pub rtts: Vec<ProbeRtt>,
}

/// Accuracy of one engine (or the reducer).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Accuracy {
    pub engine: String,
    /// Targets the engine answered.
    pub answered: usize,
    pub targets: usize,
    /// Of the answered: right country, within 40 km, median error (km).
    pub country: f64,
    pub within_40km: f64,
    pub median_km: f64,
}

/// How an anycast target came back.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AnycastOutcome {
    pub ip: IpAddr,
    /// `Located::anycast`.
    pub flagged: bool,
    /// Per true site: its city and the distance (km) of the nearest anycast candidate.
    pub sites: Vec<(u32, f64)>,
}

/// A unicast target the reducer placed in the wrong country or farther than 40 km.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Miss {
    pub ip: IpAddr,
    /// "name, CC" of the true city and of the answer.
    pub truth: String,
    pub answer: String,
    pub error_km: f64,
    /// The distance from the true city to the nearest probe that measured it, and
    /// that probe's RTT: how much the probes could have said.
    pub nearest_probe_km: f64,
    pub nearest_probe_rtt_ms: f64,
    /// Probes whose RTTs the engines had.
    pub probes: usize,
    /// The country the address is registered in, when the world has RIR statistics.
    pub registered: Option<String>,
    /// What makes its paths unlike its place (the hard world).
    pub quirk: Option<hard::Quirk>,
    /// Each engine's best city and score.
    pub votes: Vec<String>,
    /// The reducer's best three cities, each with its sum and who added to it.
    pub top: Vec<String>,
    /// Why the country is wrong; `None` when it is right (the city is beyond 40 km).
    pub country_miss: Option<CountryMiss>,
}

/// Why the reducer named the wrong country.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum CountryMiss {
    /// Behind a tunnel, and no engine named a city of its country: its RTTs, its
    /// registration and its geofeed (when it has one) all say the broker's country,
    /// and nothing in the world says otherwise. Out of any reducer's reach.
    Tunnel,
    /// Behind a tunnel, and some engine (a PTR name) named its country.
    TunnelWithHint,
    /// A mobile carrier or a satellite link.
    Quirk,
    /// The registry named the right country and the RTTs a neighbour.
    RegistryOverruled,
    /// The registry named another country too (or there is none).
    RegistryWrong,
}

/// The evaluation of one world.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub accuracy: Vec<Accuracy>,
    pub anycast: Vec<AnycastOutcome>,
    /// The reducer's misses, worst first.
    pub misses: Vec<Miss>,
    /// RTTs the engines had per target, on average (every probe for all-pairs; anchors
    /// plus on-demand pings for active).
    pub rtts_per_target: f64,
    /// Unicast targets within [`BORDER_KM`] of a city of another country: latency alone
    /// cannot tell which side of the border they are on.
    pub border_targets: usize,
    /// Unicast targets out of any reducer's reach for the country: [`CountryMiss::Tunnel`]
    /// (counted whether or not the reducer's answer happens to be right).
    pub country_out_of_reach: usize,
}

/// How close a foreign city must be for a target to count as on a border.
pub const BORDER_KM: f64 = 20.0;

impl Report {
    pub fn get(&self, engine: &str) -> Option<&Accuracy> {
        self.accuracy.iter().find(|a| a.engine == engine)
    }

    /// The table `make geo-eval` prints.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<14} {:>9} {:>9} {:>10} {:>11}\n",
            "engine", "answered", "country", "<= 40 km", "median km"
        );
        for a in &self.accuracy {
            s.push_str(&format!(
                "{:<14} {:>4}/{:<4} {:>8.1}% {:>9.1}% {:>11.1}\n",
                a.engine,
                a.answered,
                a.targets,
                100.0 * a.country,
                100.0 * a.within_40km,
                a.median_km
            ));
        }
        for a in &self.anycast {
            s.push_str(&format!(
                "anycast {}: flagged {}, nearest candidate to each true site: {}\n",
                a.ip,
                a.flagged,
                a.sites
                    .iter()
                    .map(|(_, km)| format!("{km:.0} km"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        s.push_str(&format!(
            "{:.1} RTTs per target; {} targets within {BORDER_KM} km of a foreign city\n",
            self.rtts_per_target, self.border_targets
        ));
        let count = |c: CountryMiss| {
            self.misses
                .iter()
                .filter(|m| m.country_miss == Some(c))
                .count()
        };
        s.push_str(&format!(
            "country misses: {} behind a tunnel with nothing naming their country, {} behind a tunnel a PTR name placed, {} mobile or satellite, {} the registry had right (RTTs named a neighbour), {} the registry had wrong\n",
            count(CountryMiss::Tunnel),
            count(CountryMiss::TunnelWithHint),
            count(CountryMiss::Quirk),
            count(CountryMiss::RegistryOverruled),
            count(CountryMiss::RegistryWrong),
        ));
        for m in &self.misses {
            s.push_str(&format!(
                "miss {}: {} -> {} ({:.0} km); nearest of {} probes {:.0} km away at {:.2} ms{}{}; votes: {}; reducer: {}\n",
                m.ip,
                m.truth,
                m.answer,
                m.error_km,
                m.probes,
                m.nearest_probe_km,
                m.nearest_probe_rtt_ms,
                m.registered
                    .as_ref()
                    .map(|cc| format!("; registered in {cc}"))
                    .unwrap_or_default(),
                m.quirk.map(|q| format!("; {q:?}")).unwrap_or_default(),
                m.votes.join(" | "),
                m.top.join(" | ")
            ));
        }
        s
    }
}

/// A small deterministic generator (xorshift), so a seed names a world.
pub(crate) struct Rng(u64);
impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A standard normal draw (Box–Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-300);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    /// An exponential draw with this mean.
    pub(crate) fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).max(1e-300).ln()
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

/// The address of unicast target `t`: 10.204.t.1 for the first 256, then on.
pub fn target_ip(t: usize) -> IpAddr {
    let t = u32::try_from(t).unwrap_or(u32::MAX) & 0x00ff_ffff;
    IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(10, 204, 0, 1)).wrapping_add(t << 8),
    ))
}

/// The anycast address.
pub const ANYCAST_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1));

/// Place probes and targets in distinct cities with at least `min_population`, and
/// draw every path's RTT. Deterministic for a seed.
pub fn place(world: &World, cfg: &SimConfig) -> Placement {
    if let Profile::Hard(h) = &cfg.profile {
        return hard::place(world, cfg, h);
    }
    let mut rng = Rng::new(cfg.seed);
    let big: Vec<&City> = world
        .cities()
        .iter()
        .filter(|c| c.population >= cfg.min_population)
        .collect();
    let mut used: HashSet<u32> = HashSet::new();
    let draw = |rng: &mut Rng, used: &mut HashSet<u32>| -> Option<&City> {
        if used.len() >= big.len() {
            return None;
        }
        loop {
            let c = *rng.pick(&big);
            if used.insert(c.id) {
                return Some(c);
            }
        }
    };
    let probes: Vec<ProbeSite> = (0..cfg.probes)
        .map_while(|i| {
            draw(&mut rng, &mut used).map(|c| ProbeSite {
                id: i as u32 + 1,
                city_id: c.id,
                latitude: c.latitude,
                longitude: c.longitude,
                anchor: false,
                access_ms: 0.0,
            })
        })
        .collect();
    let near = |c: &City| {
        cfg.near_probe_km.is_none_or(|km| {
            probes
                .iter()
                .any(|p| geo::distance_km(p.latitude, p.longitude, c.latitude, c.longitude) <= km)
        })
    };
    let mut targets: Vec<(TargetSite, Vec<&City>)> = Vec::new();
    let mut tries = 0;
    while targets.len() < cfg.targets && tries < 100 * cfg.targets.max(1) {
        tries += 1;
        let t = targets.len();
        let Some(c) = draw(&mut rng, &mut used) else {
            break;
        };
        if !near(c) {
            continue;
        }
        let mut ptr = Vec::new();
        if rng.unit() < cfg.ptr_share {
            if let Some(code) = world.airports_serving(c.id).first() {
                ptr.push(format!(
                    "ae-{t}.cr1.{}2.example.net",
                    code.to_ascii_lowercase()
                ));
            }
        }
        targets.push((
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
        ));
    }
    if cfg.anycast {
        if let Some(sites) = anycast_sites(&big, &probes, &used) {
            targets.push((
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
            ));
        }
    }
    if let Some(accuracy) = cfg.rir_accuracy {
        register(&mut targets, &big, accuracy, cfg.seed);
    }
    let mut rtt_ms = vec![vec![0.0; targets.len()]; probes.len()];
    let mut site_of = vec![vec![0; targets.len()]; probes.len()];
    for (p, probe) in probes.iter().enumerate() {
        for (t, (_, cities)) in targets.iter().enumerate() {
            let detour = cfg.detour.0 + (cfg.detour.1 - cfg.detour.0) * rng.unit();
            let noise = cfg.noise_ms * rng.unit();
            let (k, best) = cities
                .iter()
                .map(|c| {
                    geo::distance_km(probe.latitude, probe.longitude, c.latitude, c.longitude)
                        * detour
                        / geo::KM_PER_MS_RTT
                        + noise
                })
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap_or((0, f64::INFINITY));
            rtt_ms[p][t] = best;
            site_of[p][t] = k;
        }
    }
    Placement {
        probes,
        targets: targets.into_iter().map(|(t, _)| t).collect(),
        rtt_ms,
        site_of,
        mesh: Vec::new(),
    }
}

/// Countries where holders often register address space used elsewhere.
const SEATS: &[&str] = &["US", "GB", "DE", "NL", "FR", "SG", "JP", "HK", "SE", "CA"];

/// The registered country of every target (see [`SimConfig::rir_accuracy`]); an
/// anycast address is registered where its first site is. Drawn from its own stream,
/// so the placement is the same with and without registrations.
pub(crate) fn register(
    targets: &mut [(TargetSite, Vec<&City>)],
    big: &[&City],
    accuracy: f64,
    seed: u64,
) {
    let mut rng = Rng::new(seed ^ 0x7e61_57e7);
    for (site, cities) in targets.iter_mut() {
        let Some(c) = cities.first() else {
            continue;
        };
        let right = rng.unit() < accuracy;
        let neighbour = rng.unit() < 0.5;
        // A seat abroad: the next in the list when the one drawn is the target's country.
        let drawn = (rng.next() % SEATS.len() as u64) as usize;
        let seat = if SEATS[drawn] == c.country {
            SEATS[(drawn + 1) % SEATS.len()]
        } else {
            SEATS[drawn]
        };
        site.registered = Some(if right {
            c.country.clone()
        } else if neighbour {
            big.iter()
                .filter(|o| o.country != c.country)
                .min_by(|x, y| {
                    geo::distance_km(c.latitude, c.longitude, x.latitude, x.longitude).total_cmp(
                        &geo::distance_km(c.latitude, c.longitude, y.latitude, y.longitude),
                    )
                })
                .map_or_else(|| seat.to_owned(), |o| o.country.clone())
        } else {
            seat.to_owned()
        });
    }
}

/// The targets' registrations in the RIR statistics format (one /24 per target).
pub fn rir_file(targets: &[TargetSite]) -> String {
    let mut text = String::from("2|sim|1|0|19700101|20261122|+0000\n");
    for t in targets {
        let (Some(cc), IpAddr::V4(ip)) = (&t.registered, t.ip) else {
            continue;
        };
        let o = ip.octets();
        text.push_str(&format!(
            "sim|{cc}|ipv4|{}.{}.{}.0|256|20240101|allocated|t\n",
            o[0], o[1], o[2]
        ));
    }
    text
}

/// The `rir` engine over the targets' registrations, when there are any.
fn rir_engine(targets: &[TargetSite]) -> Option<Arc<dyn Engine>> {
    if targets.iter().all(|t| t.registered.is_none()) {
        return None;
    }
    let delegations = Delegations::parse(&rir_file(targets), "simulated RIR statistics").ok()?;
    Some(Arc::new(Rir::fixed(delegations)))
}

/// Two anycast sites far apart: the unused cities nearest to the two probes farthest
/// from each other (anycast operators put sites where the networks are).
pub(crate) fn anycast_sites<'a>(
    big: &[&'a City],
    probes: &[ProbeSite],
    used: &HashSet<u32>,
) -> Option<Vec<&'a City>> {
    let mut far = None;
    let mut best = 0.0;
    for (i, a) in probes.iter().enumerate() {
        for b in &probes[i + 1..] {
            let d = geo::distance_km(a.latitude, a.longitude, b.latitude, b.longitude);
            if d > best {
                best = d;
                far = Some((a, b));
            }
        }
    }
    let (a, b) = far?;
    let near = |p: &ProbeSite| {
        big.iter()
            .filter(|c| !used.contains(&c.id))
            .min_by(|x, y| {
                geo::distance_km(p.latitude, p.longitude, x.latitude, x.longitude).total_cmp(
                    &geo::distance_km(p.latitude, p.longitude, y.latitude, y.longitude),
                )
            })
            .copied()
    };
    Some(vec![near(a)?, near(b)?])
}

/// The RTTs the engines see when computed in process: ground truth plus the minimum
/// of `packets` draws of per-packet jitter.
pub fn simulated_cases(placement: &Placement, cfg: &SimConfig) -> Vec<Case> {
    let mut rng = Rng::new(cfg.seed ^ 0x5eed);
    placement
        .targets
        .iter()
        .enumerate()
        .map(|(t, target)| Case {
            target: target.clone(),
            rtts: placement
                .probes
                .iter()
                .enumerate()
                .map(|(p, probe)| {
                    let jitter = min_jitter(
                        &mut rng,
                        cfg.jitter_ms,
                        cfg.packets,
                        cfg.jitter_exponential(),
                    );
                    ProbeRtt {
                        probe_id: probe.id,
                        latitude: probe.latitude,
                        longitude: probe.longitude,
                        rtt_ms: placement.rtt_ms[p][t] + jitter,
                    }
                })
                .collect(),
        })
        .collect()
}

fn accuracy(engine: &str, world: &World, truths: &[u32], answers: &[Option<u32>]) -> Accuracy {
    let mut errors = Vec::new();
    let mut country = 0;
    for (truth, a) in truths.iter().zip(answers) {
        let (Some(c), Some(t)) = (a.and_then(|id| world.city(id)), world.city(*truth)) else {
            continue;
        };
        errors.push(geo::distance_km(
            t.latitude,
            t.longitude,
            c.latitude,
            c.longitude,
        ));
        if c.country == t.country {
            country += 1;
        }
    }
    errors.sort_by(f64::total_cmp);
    let n = errors.len();
    let share = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    Accuracy {
        engine: engine.to_owned(),
        answered: n,
        targets: truths.len(),
        country: share(country),
        within_40km: share(errors.iter().filter(|&&e| e <= 40.0).count()),
        median_km: if n == 0 { f64::NAN } else { errors[n / 2] },
    }
}

/// A locator with the built-in measuring engines over `rtts`, the targets' PTR names
/// and `rir` (the targets' registrations), every one enabled with weight 1.
fn locator(
    world: Arc<World>,
    rules: Rules,
    rtts: Arc<dyn RttSource>,
    targets: &[TargetSite],
    rir: Option<Arc<dyn Engine>>,
    calibration: Option<Arc<dyn CalibrationSource>>,
    geofeed: Option<Arc<dyn Engine>>,
) -> Locator {
    let mut engines = match calibration {
        Some(cal) => Latency::all_calibrated(rtts, cal),
        None => Latency::all(rtts),
    };
    if let Some(g) = geofeed {
        engines.push((g, EngineConfig::new("geofeed", 1.0, true)));
    }
    engines.push((
        Arc::new(ReverseDns::new(rules, static_ptr(targets))),
        EngineConfig::new("reverse-dns", 1.0, true),
    ));
    if let Some(rir) = rir {
        engines.push((rir, EngineConfig::new("rir", 1.0, true)));
    }
    Locator::new(world, engines, Duration::from_secs(120))
}

/// Run the engines and the reducer over the cases and score them against the truth.
/// Unicast targets make the accuracy table; anycast targets (several sites) are
/// reported apart.
pub async fn evaluate(
    world: Arc<World>,
    rules: Rules,
    cases: &[Case],
    calibration: Option<Arc<Calibration>>,
) -> Report {
    let rtts = Arc::new(static_rtts(cases));
    let targets: Vec<TargetSite> = cases
        .iter()
        .map(|c| c.target.clone())
        .filter(hard::is_host)
        .collect();
    let rir = rir_engine(&targets);
    let geofeed = geofeed_engine(&world, &targets, rtts.clone());
    let loc = locator(
        world.clone(),
        rules,
        rtts.clone(),
        &targets,
        rir,
        calibration.map(fixed_calibration),
        geofeed,
    );
    score(&world, &loc, None, &targets, rtts.as_ref()).await
}

/// Evaluate with on-demand measurement: `stored` holds the anchors' RTTs; the latency
/// engines read through [`ActiveRtts`] (hints from reverse DNS and the stored RTTs,
/// probes chosen from every probe of the placement, pings by `measurer`), shared by
/// the three latency engines as in the engine service.
pub async fn evaluate_active(
    world: Arc<World>,
    rules: Rules,
    placement: &Placement,
    stored: &[Case],
    measurer: Arc<dyn Measurer>,
    plan: &ActivePlan,
    calibration: Option<Arc<Calibration>>,
) -> Report {
    let calibration = calibration.map(fixed_calibration);
    // Reverse DNS and the RIR statistics hint where to measure, as in the engine service.
    let rdns: Arc<dyn Engine> = Arc::new(ReverseDns::new(
        rules.clone(),
        static_ptr(&placement.targets),
    ));
    let rir = rir_engine(&placement.targets);
    let stored: Arc<dyn RttSource> = Arc::new(static_rtts(stored));
    // A geofeed hints too, checked against the stored RTTs only (a hint must not wait
    // for the measurement it steers).
    let geofeed_hint = geofeed_engine(&world, &placement.targets, stored.clone());
    let hints: Vec<Arc<dyn Engine>> = std::iter::once(rdns)
        .chain(rir.clone())
        .chain(geofeed_hint)
        .collect();
    // IPmap's single-radius as IPmap runs it, beside ours, on the same probes.
    let mut ipmap = ActiveRtts::new(
        stored.clone(),
        directory(&world, placement),
        measurer.clone(),
        world.clone(),
    )
    .with_hint_engines(hints.clone());
    (ipmap.probes_per_request, ipmap.rounds, ipmap.enough_rtt_ms) = (10, 1, 10.0);
    let baseline = Locator::new(
        world.clone(),
        vec![(
            Arc::new(Latency::new(
                vantage_engines::engine::latency::LatencyKind::SingleRadius,
                Arc::new(ipmap),
            )) as Arc<dyn Engine>,
            EngineConfig::new(BASELINE, 1.0, true),
        )],
        Duration::from_secs(120),
    );
    let mut active = ActiveRtts::new(
        stored,
        directory(&world, placement),
        measurer,
        world.clone(),
    )
    .with_hint_engines(hints);
    if let Some(cal) = &calibration {
        active = active.with_calibration(cal.clone());
    }
    active.probes_per_request = plan.per_round;
    active.rounds = plan.rounds;
    active.enough_rtt_ms = plan.enough_rtt_ms;
    let shared = Arc::new(SharedRtts::new(
        Arc::new(active),
        Duration::from_secs(24 * 3600),
    ));
    let hosts: Vec<TargetSite> = placement
        .targets
        .iter()
        .filter(|t| hard::is_host(t))
        .cloned()
        .collect();
    let geofeed = geofeed_engine(&world, &hosts, shared.clone());
    let loc = locator(
        world.clone(),
        rules,
        shared.clone(),
        &hosts,
        rir,
        calibration,
        geofeed,
    );
    score(&world, &loc, Some(&baseline), &hosts, shared.as_ref()).await
}

/// The probes of a placement as the engines' probe directory (all available).
pub fn directory(world: &World, placement: &Placement) -> ProbeDirectory {
    let probes = placement
        .probes
        .iter()
        .map(|p| {
            (
                p.id,
                ProbeInfo {
                    id: p.id,
                    latitude: p.latitude,
                    longitude: p.longitude,
                    country: world.city(p.city_id).map(|c| c.country.clone()),
                    asn: None,
                    prefixes: Vec::new(),
                    available: true,
                },
            )
        })
        .collect();
    Arc::new(std::sync::RwLock::new(probes))
}

/// The `geofeed` engine over the targets' published geofeeds (RFC 8805, through the
/// real parser), its claims checked against `rtts`; `None` when no target publishes.
fn geofeed_engine(
    world: &World,
    targets: &[TargetSite],
    rtts: Arc<dyn RttSource>,
) -> Option<Arc<dyn Engine>> {
    if targets.iter().all(|t| t.geofeed.is_none()) {
        return None;
    }
    let (mut feeds, bad) = Geofeeds::parse(&hard::geofeed_csv(world, targets), "simulated.csv");
    if let Some(b) = bad.first() {
        eprintln!("simulated geofeed: {} bad lines, first: {b}", bad.len());
    }
    feeds.resolve(world);
    Some(Arc::new(GeofeedEngine::fixed(feeds, Some(rtts))))
}

fn fixed_calibration(c: Arc<Calibration>) -> Arc<dyn CalibrationSource> {
    Arc::new(FixedCalibration(c))
}

/// The anchoring mesh's RTTs in process: ground truth plus per-packet jitter, as
/// (probe index, target index, RTT).
pub fn simulated_mesh(placement: &Placement, cfg: &SimConfig) -> Vec<(usize, usize, f64)> {
    let mut rng = Rng::new(cfg.seed ^ 0x3e54);
    placement
        .mesh
        .iter()
        .map(|&(p, t)| {
            let jitter = min_jitter(
                &mut rng,
                cfg.jitter_ms,
                cfg.packets,
                cfg.jitter_exponential(),
            );
            (p, t, placement.rtt_ms[p][t] + jitter)
        })
        .collect()
}

/// Every probe's bestline from its RTTs to anchors (`mesh`: probe index, target index
/// of an anchor, RTT); `None` when the world has no anchoring mesh.
pub fn calibrate(placement: &Placement, mesh: &[(usize, usize, f64)]) -> Option<Arc<Calibration>> {
    if mesh.is_empty() {
        return None;
    }
    let samples = mesh.iter().filter_map(|&(p, t, rtt_ms)| {
        let probe = placement.probes.get(p)?;
        let anchor_id = placement.targets.get(t)?.anchor_of?;
        let anchor = placement.probes.iter().find(|a| a.id == anchor_id)?;
        Some(AnchorRtt {
            probe_id: probe.id,
            km: geo::distance_km(
                probe.latitude,
                probe.longitude,
                anchor.latitude,
                anchor.longitude,
            ),
            rtt_ms,
        })
    });
    Some(Arc::new(Calibration::fit(samples)))
}

fn static_ptr(targets: &[TargetSite]) -> Arc<StaticPtr> {
    Arc::new(StaticPtr(
        targets
            .iter()
            .filter(|t| !t.ptr.is_empty())
            .map(|t| (t.ip, t.ptr.clone()))
            .collect(),
    ))
}

/// `n` probes spread over the world (farthest-point order from the first probe): the
/// anchors of [`Measuring::Active`]. Indices into `placement.probes`.
pub fn spread_probes(placement: &Placement, n: usize) -> Vec<usize> {
    let probes = &placement.probes;
    // Among the anchors when the world has some (RIPE Atlas's anchors measure).
    let any_anchor = probes.iter().any(|p| p.anchor);
    let mut chosen: Vec<usize> = Vec::new();
    let mut gap: Vec<f64> = probes
        .iter()
        .map(|p| {
            if any_anchor && !p.anchor {
                0.0
            } else {
                f64::INFINITY
            }
        })
        .collect();
    let mut next = probes.iter().position(|p| p.anchor || !any_anchor);
    while let Some(i) = next.filter(|_| chosen.len() < n) {
        chosen.push(i);
        for (j, p) in probes.iter().enumerate() {
            let d = geo::distance_km(
                probes[i].latitude,
                probes[i].longitude,
                p.latitude,
                p.longitude,
            );
            gap[j] = gap[j].min(d);
        }
        next = gap
            .iter()
            .enumerate()
            .filter(|(_, g)| **g > 0.0)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(j, _)| j);
    }
    chosen
}

/// The cases with only the RTTs of the given probes (indices into `placement.probes`).
pub fn restrict(placement: &Placement, cases: &[Case], probes: &[usize]) -> Vec<Case> {
    let ids: HashSet<u32> = probes.iter().map(|&p| placement.probes[p].id).collect();
    cases
        .iter()
        .map(|c| Case {
            target: c.target.clone(),
            rtts: c
                .rtts
                .iter()
                .filter(|r| ids.contains(&r.probe_id))
                .copied()
                .collect(),
        })
        .collect()
}

/// Pings in process: the placement's ground truth plus per-packet jitter.
pub struct SimMeasurer {
    placement: Arc<Placement>,
    jitter_ms: f64,
    packets: u32,
    exponential: bool,
    rng: std::sync::Mutex<Rng>,
}

impl SimMeasurer {
    pub fn new(placement: Arc<Placement>, cfg: &SimConfig) -> Self {
        Self {
            placement,
            jitter_ms: cfg.jitter_ms,
            packets: cfg.packets,
            exponential: cfg.jitter_exponential(),
            rng: std::sync::Mutex::new(Rng::new(cfg.seed ^ 0xac71)),
        }
    }
}

impl Measurer for SimMeasurer {
    fn ping<'a>(
        &'a self,
        ip: IpAddr,
        probes: &'a [u32],
    ) -> BoxFuture<'a, Result<Vec<(u32, f64)>, Error>> {
        async move {
            let pl = &self.placement;
            let t = pl.target_index(ip)?;
            let mut rng = self
                .rng
                .lock()
                .map_err(|_| Error::Poisoned { what: "simulator" })?;
            Ok(pl
                .probe_indices(probes)
                .into_iter()
                .map(|p| {
                    let jitter =
                        min_jitter(&mut rng, self.jitter_ms, self.packets, self.exponential);
                    (pl.probes[p].id, pl.rtt_ms[p][t] + jitter)
                })
                .collect())
        }
        .boxed()
    }
}

/// Unicast targets within [`BORDER_KM`] of a city (≥ 10,000 people) of another country.
fn border_targets(world: &World, targets: &[TargetSite]) -> usize {
    targets
        .iter()
        .filter(|t| t.sites.len() == 1)
        .filter_map(|t| world.city(t.sites[0]))
        .filter(|c| {
            world
                .within(c.latitude, c.longitude, BORDER_KM)
                .iter()
                .any(|(o, _)| o.country != c.country && o.population >= 10_000)
        })
        .count()
}

/// Locate every target (several at once) and score the answers against the truth.
async fn score(
    world: &World,
    loc: &Locator,
    baseline: Option<&Locator>,
    targets: &[TargetSite],
    rtts: &dyn RttSource,
) -> Report {
    let located: Vec<Located> = futures::stream::iter(targets)
        .map(|t| loc.locate(t.ip, None))
        .buffered(4)
        .collect()
        .await;
    let base: Vec<Option<Located>> = futures::stream::iter(targets)
        .map(|t| async move {
            match baseline {
                Some(b) => Some(b.locate(t.ip, None).await),
                None => None,
            }
        })
        .buffered(4)
        .collect()
        .await;
    let mut truths = Vec::new();
    let mut answers: HashMap<&str, Vec<Option<u32>>> = HashMap::new();
    let mut anycast = Vec::new();
    let mut misses = Vec::new();
    let mut rtt_count = 0;
    let mut out_of_reach = 0;
    for ((target, located), base) in targets.iter().zip(located).zip(base) {
        let seen = rtts.rtts(target.ip).await.unwrap_or_default();
        rtt_count += seen.len();
        let best = |engine: &str| {
            located
                .partials
                .iter()
                .find(|p| p.engine == engine)
                .and_then(|p| p.candidates.first())
                .map(|c| c.city_id)
        };
        if target.sites.len() > 1 {
            let candidates: Vec<&City> = located
                .partials
                .iter()
                .filter(|p| p.engine == "anycast")
                .flat_map(|p| p.candidates.iter().filter_map(|c| world.city(c.city_id)))
                .collect();
            anycast.push(AnycastOutcome {
                ip: target.ip,
                flagged: located.anycast,
                sites: target
                    .sites
                    .iter()
                    .filter_map(|id| world.city(*id))
                    .map(|s| {
                        let km = candidates
                            .iter()
                            .map(|c| {
                                geo::distance_km(s.latitude, s.longitude, c.latitude, c.longitude)
                            })
                            .fold(f64::INFINITY, f64::min);
                        (s.id, km)
                    })
                    .collect(),
            });
            continue;
        }
        truths.push(target.sites[0]);
        let truth_country = world.city(target.sites[0]).map(|c| c.country.as_str());
        let named_truth = located.partials.iter().any(|p| {
            p.candidates
                .iter()
                .filter_map(|c| world.city(c.city_id))
                .any(|c| Some(c.country.as_str()) == truth_country)
        });
        // A tunnel's cause, were its country missed: out of reach unless an engine
        // named its country.
        let tunnel =
            matches!(target.quirk, Some(hard::Quirk::Tunnel { .. })).then_some(if named_truth {
                CountryMiss::TunnelWithHint
            } else {
                out_of_reach += 1;
                CountryMiss::Tunnel
            });
        for engine in ENGINES {
            answers.entry(engine).or_default().push(best(engine));
        }
        if let Some(b) = &base {
            answers
                .entry(BASELINE)
                .or_default()
                .push(b.scored.first().map(|s| s.city_id));
        }
        let answer = located.scored.first().map(|s| s.city_id);
        answers.entry("reducer").or_default().push(answer);
        if let Some(mut miss) = miss(world, target, &seen, answer) {
            let answered_country = answer
                .and_then(|id| world.city(id))
                .map(|c| c.country.as_str());
            if answered_country != truth_country {
                miss.country_miss = Some(match (tunnel, target.quirk) {
                    (Some(cause), _) => cause,
                    (None, Some(_)) => CountryMiss::Quirk,
                    (None, None) if target.registered.as_deref() == truth_country => {
                        CountryMiss::RegistryOverruled
                    }
                    (None, None) => CountryMiss::RegistryWrong,
                });
            }
            miss.votes = located
                .partials
                .iter()
                .filter_map(|p| {
                    let c = p.candidates.first()?;
                    let city = world.city(c.city_id)?;
                    Some(format!(
                        "{} {}, {} {}",
                        p.engine, city.name, city.country, c.score
                    ))
                })
                .collect();
            miss.top = located
                .scored
                .iter()
                .take(3)
                .filter_map(|s| {
                    let city = world.city(s.city_id)?;
                    let by: Vec<String> = s
                        .contributions
                        .iter()
                        .map(|(e, c)| format!("{e} {}", c.score))
                        .collect();
                    Some(format!(
                        "{}, {} {:.1} ({})",
                        city.name,
                        city.country,
                        s.score,
                        by.join(", ")
                    ))
                })
                .collect();
            misses.push(miss);
        }
    }
    misses.sort_by(|a, b| b.error_km.total_cmp(&a.error_km));
    let configured = loc.engine_names();
    let accuracy = ENGINES
        .iter()
        .filter(|e| configured.iter().any(|c| c == *e))
        .chain(baseline.map(|_| &BASELINE))
        .chain(std::iter::once(&"reducer"))
        .map(|name| {
            accuracy(
                name,
                world,
                &truths,
                answers.get(name).map_or(&[][..], Vec::as_slice),
            )
        })
        .collect();
    Report {
        accuracy,
        anycast,
        misses,
        rtts_per_target: rtt_count as f64 / targets.len().max(1) as f64,
        border_targets: border_targets(world, targets),
        country_out_of_reach: out_of_reach,
    }
}

/// The reducer's answer as a [`Miss`] when it is in the wrong country or beyond 40 km.
fn miss(
    world: &World,
    target: &TargetSite,
    rtts: &[ProbeRtt],
    answer: Option<u32>,
) -> Option<Miss> {
    let truth = world.city(*target.sites.first()?)?;
    let label = |c: &City| format!("{}, {}", c.name, c.country);
    let nearest = rtts
        .iter()
        .map(|r| {
            (
                geo::distance_km(r.latitude, r.longitude, truth.latitude, truth.longitude),
                r.rtt_ms,
            )
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or((f64::NAN, f64::NAN));
    let (answer, error_km) = match answer.and_then(|id| world.city(id)) {
        Some(c) => {
            let km = geo::distance_km(truth.latitude, truth.longitude, c.latitude, c.longitude);
            if c.country == truth.country && km <= 40.0 {
                return None;
            }
            (label(c), km)
        }
        None => ("(none)".to_owned(), f64::INFINITY),
    };
    Some(Miss {
        ip: target.ip,
        truth: label(truth),
        answer,
        error_km,
        nearest_probe_km: nearest.0,
        nearest_probe_rtt_ms: nearest.1,
        probes: rtts.len(),
        registered: target.registered.clone(),
        quirk: target.quirk,
        votes: Vec::new(),
        top: Vec::new(),
        country_miss: None,
    })
}

/// The in-process simulation: place, compute the RTTs, evaluate.
pub async fn simulate(world: Arc<World>, rules: Rules, cfg: &SimConfig) -> Report {
    let placement = place(&world, cfg);
    let cases = simulated_cases(&placement, cfg);
    let calibration = calibrate(&placement, &simulated_mesh(&placement, cfg));
    match &cfg.measuring {
        Measuring::AllPairs => evaluate(world, rules, &cases, calibration).await,
        Measuring::Active(plan) => {
            let stored = restrict(&placement, &cases, &spread_probes(&placement, plan.anchors));
            let placement = Arc::new(placement);
            let measurer = Arc::new(SimMeasurer::new(placement.clone(), cfg));
            evaluate_active(
                world,
                rules,
                &placement,
                &stored,
                measurer,
                plan,
                calibration,
            )
            .await
        }
    }
}

/// Accuracy goals a run is checked against: per seed and on average.
#[derive(Debug, Clone, PartialEq)]
pub struct Goals {
    /// Reducer: share in the right country, share within 40 km, median error (km).
    pub country: f64,
    pub within_40km: f64,
    pub median_km: f64,
    /// The reducer's share within 40 km over single-radius's (IPmap's baseline), at least.
    pub over_single_radius: Option<f64>,
}

impl Goals {
    /// Issue #19's goals on the hard world.
    pub fn hard() -> Self {
        Self {
            country: 0.985,
            within_40km: 0.75,
            median_km: 20.0,
            over_single_radius: Some(2.0),
        }
    }

    /// No regression on the kind world: issue #7's in-process figures, worst seed
    /// (country 99.0 %, within 40 km 91.0 %, median 4.3 km, printed rounded: 4.5 here).
    pub fn kind() -> Self {
        Self {
            country: 0.99,
            within_40km: 0.91,
            median_km: 4.5,
            over_single_radius: None,
        }
    }

    /// Per seed, the reducer's figures, single-radius's share within 40 km and the
    /// ratio; then the mean; then which goals hold on every seed, which only on average.
    pub fn summary(&self, reports: &[(u64, Report)]) -> String {
        let rows: Vec<(u64, [f64; 6])> = reports
            .iter()
            .filter_map(|(seed, r)| {
                let red = r.get("reducer")?;
                let sr = r.get(BASELINE).or(r.get("single-radius")).map_or(0.0, |a| {
                    a.within_40km * a.answered as f64 / a.targets.max(1) as f64
                });
                let red40 = red.within_40km * red.answered as f64 / red.targets.max(1) as f64;
                let ratio = if sr > 0.0 { red40 / sr } else { f64::INFINITY };
                let ceiling = 1.0 - r.country_out_of_reach as f64 / red.targets.max(1) as f64;
                Some((
                    *seed,
                    [
                        red.country,
                        red.within_40km,
                        red.median_km,
                        sr,
                        ratio,
                        ceiling,
                    ],
                ))
            })
            .collect();
        let mut s = format!(
            "\n{:<6} {:>9} {:>9} {:>10} {:>16} {:>7} {:>16}\n",
            "seed",
            "country",
            "<= 40 km",
            "median km",
            "single-radius 40",
            "ratio",
            "country ceiling"
        );
        for (seed, v) in &rows {
            s.push_str(&format!(
                "{seed:<6} {:>8.1}% {:>8.1}% {:>10.1} {:>15.1}% {:>6.2}x {:>15.1}%\n",
                100.0 * v[0],
                100.0 * v[1],
                v[2],
                100.0 * v[3],
                v[4],
                100.0 * v[5]
            ));
        }
        let n = rows.len().max(1) as f64;
        let mean: Vec<f64> = (0..6)
            .map(|k| rows.iter().map(|(_, v)| v[k]).sum::<f64>() / n)
            .collect();
        s.push_str(&format!(
            "{:<6} {:>8.1}% {:>8.1}% {:>10.1} {:>15.1}% {:>6.2}x {:>15.1}%\n",
            "mean",
            100.0 * mean[0],
            100.0 * mean[1],
            mean[2],
            100.0 * mean[3],
            mean[4],
            100.0 * mean[5]
        ));
        s.push_str(
            "(country ceiling: the share not behind a tunnel that no engine could place; \
             for those, RTTs, registration and geofeed all name the broker's country)\n",
        );
        let check = |name: String, k: usize, ok: &dyn Fn(f64) -> bool| {
            let failing: Vec<String> = rows
                .iter()
                .filter(|(_, v)| !ok(v[k]))
                .map(|(seed, _)| seed.to_string())
                .collect();
            let verdict = if failing.is_empty() {
                "holds on every seed".to_owned()
            } else if ok(mean[k]) {
                format!(
                    "holds on average only (not on seeds {})",
                    failing.join(", ")
                )
            } else {
                format!("does NOT hold (fails on seeds {})", failing.join(", "))
            };
            format!("goal {name}: {verdict}\n")
        };
        s.push_str(&check(
            format!("country >= {:.1} %", 100.0 * self.country),
            0,
            &|v| v >= self.country,
        ));
        let beyond: Vec<String> = rows
            .iter()
            .filter(|(_, v)| v[5] < self.country)
            .map(|(seed, v)| format!("{seed} ({:.1} %)", 100.0 * v[5]))
            .collect();
        if !beyond.is_empty() {
            s.push_str(&format!(
                "     its ceiling is below it on seeds {}; on average it is {:.1} %, {}\n",
                beyond.join(", "),
                100.0 * mean[5],
                if mean[5] >= self.country {
                    "within reach"
                } else {
                    "out of reach"
                }
            ));
        }
        s.push_str(&check(
            format!("<= 40 km >= {:.1} %", 100.0 * self.within_40km),
            1,
            &|v| v >= self.within_40km,
        ));
        s.push_str(&check(
            format!("median <= {} km", self.median_km),
            2,
            &|v| v <= self.median_km,
        ));
        if let Some(x) = self.over_single_radius {
            s.push_str(&check(
                format!("<= 40 km >= {x}x single-radius's"),
                4,
                &|v| v >= x,
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_deterministic_and_rtts_respect_the_speed_of_light() {
        let world = World::embedded().expect("world");
        let cfg = SimConfig {
            probes: 20,
            targets: 15,
            ..SimConfig::default()
        };
        let a = place(&world, &cfg);
        assert_eq!(a, place(&world, &cfg));
        assert_eq!((a.probes.len(), a.targets.len()), (20, 16));
        let mut cities: Vec<u32> = a.probes.iter().map(|p| p.city_id).collect();
        cities.extend(a.targets.iter().flat_map(|t| t.sites.iter().copied()));
        let n = cities.len();
        cities.sort_unstable();
        cities.dedup();
        assert_eq!(cities.len(), n, "every probe and target has its own city");
        for (p, probe) in a.probes.iter().enumerate() {
            for (t, target) in a.targets.iter().enumerate() {
                let site = world
                    .city(target.sites[a.site_of[p][t]])
                    .expect("site city");
                let d = geo::distance_km(
                    probe.latitude,
                    probe.longitude,
                    site.latitude,
                    site.longitude,
                );
                let floor = d / geo::KM_PER_MS_RTT;
                let rtt = a.rtt_ms[p][t];
                assert!(
                    rtt >= floor - 1e-9 && rtt <= floor * 1.3 + 0.5 + 1e-9,
                    "{rtt} vs {floor}"
                );
            }
        }
        let any = a.targets.last().expect("anycast target");
        assert_eq!((any.ip, any.sites.len()), (ANYCAST_IP, 2));
    }

    #[tokio::test]
    async fn small_simulated_world_meets_thresholds() {
        let world = World::embedded().expect("world");
        let rules = Rules::embedded().expect("rules");
        let cfg = SimConfig {
            probes: 300,
            targets: 60,
            seed: 11,
            measuring: Measuring::AllPairs,
            ..SimConfig::default()
        };
        let got = simulate(world.clone(), rules.clone(), &cfg).await;
        let cbg = got.get("latency").expect("latency");
        assert!(
            cbg.answered >= 55
                && cbg.country >= 0.95
                && cbg.within_40km >= 0.8
                && cbg.median_km <= 25.0,
            "{cbg:?}"
        );
        // Issue #7's goal: country ≥ 99.5 % (here every one of 60; 96.7 % without the
        // `rir` engine), ≤ 40 km ≥ 85 %, median ≤ 25 km.
        let red = got.get("reducer").expect("reducer");
        assert_eq!(red.answered, 60);
        assert!(
            red.country >= 0.995 && red.within_40km >= 0.85 && red.median_km <= 25.0,
            "{red:?}"
        );
        let rdns = got.get("reverse-dns").expect("reverse-dns");
        assert!(rdns.answered > 0 && rdns.within_40km >= 0.9, "{rdns:?}");
        // Every target is registered, 95 % in its own country.
        let rir = got.get("rir").expect("rir");
        assert!(
            rir.answered == 60 && (0.85..1.0).contains(&rir.country),
            "{rir:?}"
        );
        let any = &got.anycast[0];
        assert!(any.flagged, "{any:?}");
        assert!(any.sites.iter().all(|(_, km)| *km < 300.0), "{any:?}");
        assert_eq!(got.rtts_per_target, 300.0);

        // IPmap's way on the same world: a third of the RTTs, about as accurate.
        let plan = ActivePlan::default();
        let active = simulate(
            world,
            rules,
            &SimConfig {
                measuring: Measuring::Active(plan.clone()),
                ..cfg
            },
        )
        .await;
        // On demand from 300 probes: the goal's country and median, ≤ 40 km a little
        // under it (83.3 % seen).
        let red = active.get("reducer").expect("reducer");
        assert!(
            red.answered == 60
                && red.country >= 0.995
                && red.within_40km >= 0.8
                && red.median_km <= 25.0,
            "{red:?}"
        );
        assert!(
            active.rtts_per_target > plan.anchors as f64
                && active.rtts_per_target <= (plan.anchors + plan.rounds * plan.per_round) as f64,
            "{}",
            active.rtts_per_target
        );
        let any = &active.anycast[0];
        assert!(
            any.flagged && any.sites.iter().all(|(_, km)| *km < 300.0),
            "{any:?}"
        );
    }

    #[test]
    fn the_summary_says_where_the_country_goal_is_out_of_reach() {
        let report = |country: f64, out_of_reach: usize| Report {
            accuracy: vec![Accuracy {
                engine: "reducer".to_owned(),
                answered: 300,
                targets: 300,
                country,
                within_40km: 0.8,
                median_km: 2.0,
            }],
            anycast: Vec::new(),
            misses: Vec::new(),
            rtts_per_target: 0.0,
            border_targets: 0,
            country_out_of_reach: out_of_reach,
        };
        let goals = Goals::hard();
        // Seed 4: five targets no engine can place leave at most 98.3 %.
        let s = goals.summary(&[(1, report(0.98, 2)), (4, report(0.97, 5))]);
        assert!(s.contains("99.3%") && s.contains("98.3%"), "{s}");
        assert!(
            s.contains("its ceiling is below it on seeds 4 (98.3 %); on average it is 98.8 %, within reach"),
            "{s}"
        );
        // Every ceiling above the goal: no such line.
        let s = goals.summary(&[(1, report(0.98, 2))]);
        assert!(!s.contains("its ceiling is below it"), "{s}");
        assert!(
            s.contains("goal country >= 98.5 %: does NOT hold (fails on seeds 1)"),
            "{s}"
        );
    }

    #[test]
    fn anchors_spread_over_the_world() {
        let world = World::embedded().expect("world");
        let placement = place(
            &world,
            &SimConfig {
                probes: 200,
                targets: 0,
                anycast: false,
                ..SimConfig::default()
            },
        );
        let anchors = spread_probes(&placement, 10);
        assert_eq!(anchors.len(), 10);
        let mut unique = anchors.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 10);
        // Farthest-point order: no two anchors closer than 1,000 km, while the first
        // ten probes of the placement (random cities) are not that spread.
        let min_gap = |ids: &[usize]| {
            let mut gap = f64::INFINITY;
            for (i, &a) in ids.iter().enumerate() {
                for &b in &ids[i + 1..] {
                    let (a, b) = (&placement.probes[a], &placement.probes[b]);
                    gap = gap.min(geo::distance_km(
                        a.latitude,
                        a.longitude,
                        b.latitude,
                        b.longitude,
                    ));
                }
            }
            gap
        };
        assert!(min_gap(&anchors) > 1000.0, "{}", min_gap(&anchors));
        assert!(min_gap(&(0..10).collect::<Vec<_>>()) < min_gap(&anchors));
        assert!(spread_probes(&placement, 0).is_empty());
    }

    #[test]
    fn the_hard_world_has_access_delays_anchors_and_a_mesh() {
        let world = World::embedded().expect("world");
        let cfg = SimConfig {
            probes: 300,
            targets: 100,
            ..SimConfig::hard()
        };
        let a = place(&world, &cfg);
        assert_eq!(a, place(&world, &cfg), "deterministic for a seed");
        let anchors: Vec<&ProbeSite> = a.probes.iter().filter(|p| p.anchor).collect();
        assert_eq!(anchors.len(), 200);
        assert!(anchors.iter().all(|p| p.access_ms == 0.0));
        assert!(a.probes.iter().all(|p| (0.0..=15.0).contains(&p.access_ms)));
        // Skewed like RIPE Atlas: more probes in Germany than in all of Africa's big
        // countries together.
        let in_cc = |cc: &str| {
            a.probes
                .iter()
                .filter(|p| world.city(p.city_id).is_some_and(|c| c.country == cc))
                .count()
        };
        assert!(
            in_cc("DE") > in_cc("NG") + in_cc("EG") + in_cc("KE") + in_cc("ET"),
            "DE {}",
            in_cc("DE")
        );
        // Every RTT is at least the light-speed path plus the probe's access delay.
        for (p, probe) in a.probes.iter().enumerate() {
            for (t, target) in a.targets.iter().enumerate() {
                if target.quirk.is_some() || target.sites.len() > 1 {
                    continue;
                }
                let c = world.city(target.sites[0]).expect("city");
                let floor =
                    geo::distance_km(probe.latitude, probe.longitude, c.latitude, c.longitude)
                        / geo::KM_PER_MS_RTT
                        + probe.access_ms;
                assert!(
                    a.rtt_ms[p][t] + 1e-9 >= floor,
                    "{} < {floor}",
                    a.rtt_ms[p][t]
                );
            }
        }
        // The mesh pings anchors' own addresses, never a probe's own.
        assert!(!a.mesh.is_empty());
        for &(p, t) in &a.mesh {
            let anchor = a.targets[t].anchor_of.expect("an anchor's address");
            assert_ne!(anchor, a.probes[p].id);
        }
        // Calibration recovers access delays from the mesh: the intercept is an upper
        // bound, and close for most probes.
        let cal = calibrate(&a, &simulated_mesh(&a, &cfg)).expect("calibration");
        let mut over: Vec<f64> = a
            .probes
            .iter()
            .map(|p| cal.line(p.id).intercept_ms - p.access_ms)
            .collect();
        over.sort_by(f64::total_cmp);
        assert!(
            over[over.len() / 2] < 1.5,
            "median overestimate {}",
            over[over.len() / 2]
        );
        // A handful of quirks and geofeeds.
        assert!(a.targets.iter().any(|t| t.geofeed.is_some()));
    }
}
