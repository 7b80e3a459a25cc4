//! Latency engines: single-radius (IPmap), CBG (constraint-based multilateration) and
//! anycast detection, all from probes' minimum RTTs to the target.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};

use super::calibration::{Bestline, Calibration, CalibrationSource};
use super::{clamp_score, finish, Candidate, Engine};
use crate::world::{City, World};
use crate::{geo, Error};

/// A probe's minimum RTT to the target, and where the probe is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProbeRtt {
    pub probe_id: u32,
    pub latitude: f64,
    pub longitude: f64,
    pub rtt_ms: f64,
}

impl ProbeRtt {
    pub fn radius_km(&self) -> f64 {
        geo::radius_km(self.rtt_ms)
    }
    fn distance_to(&self, lat: f64, lon: f64) -> f64 {
        geo::distance_km(self.latitude, self.longitude, lat, lon)
    }
}

/// Where RTTs come from: vantage's measurements (ClickHouse `results`), or fixtures.
/// Choosing probes close to the target and running on-demand pings belongs here too.
pub trait RttSource: Send + Sync {
    fn rtts<'a>(&'a self, ip: IpAddr) -> BoxFuture<'a, Result<Vec<ProbeRtt>, Error>>;

    /// How long reading may take when not the engines' default (measuring takes longer).
    fn timeout(&self) -> Option<std::time::Duration> {
        None
    }
}

/// RTTs from a fixed table.
#[derive(Default, Clone)]
pub struct StaticRtts(pub HashMap<IpAddr, Vec<ProbeRtt>>);

impl RttSource for StaticRtts {
    fn rtts<'a>(&'a self, ip: IpAddr) -> BoxFuture<'a, Result<Vec<ProbeRtt>, Error>> {
        let rtts = self.0.get(&ip).cloned().unwrap_or_default();
        async move { Ok(rtts) }.boxed()
    }
}

/// One reading per address shared by the engines that ask for it at about the same
/// time: single-radius, CBG and anycast over one measuring source ask for the same
/// target at once, and must wait for one measurement, not start three. A reading is
/// kept for `ttl`, then read again.
pub struct SharedRtts {
    inner: Arc<dyn RttSource>,
    ttl: std::time::Duration,
    readings: std::sync::Mutex<HashMap<IpAddr, (std::time::Instant, SharedReading)>>,
}

type SharedReading = futures::future::Shared<BoxFuture<'static, Result<Vec<ProbeRtt>, Arc<Error>>>>;

impl SharedRtts {
    pub fn new(inner: Arc<dyn RttSource>, ttl: std::time::Duration) -> Self {
        Self {
            inner,
            ttl,
            readings: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn reading(&self, ip: IpAddr) -> Result<SharedReading, Error> {
        let mut readings = self.readings.lock().map_err(|_| Error::Poisoned {
            what: "RTT readings",
        })?;
        let now = std::time::Instant::now();
        readings.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
        let inner = self.inner.clone();
        let (_, reading) = readings.entry(ip).or_insert_with(|| {
            let read: BoxFuture<'static, Result<Vec<ProbeRtt>, Arc<Error>>> =
                async move { inner.rtts(ip).await.map_err(Arc::new) }.boxed();
            (now, read.shared())
        });
        Ok(reading.clone())
    }
}

impl RttSource for SharedRtts {
    fn rtts<'a>(&'a self, ip: IpAddr) -> BoxFuture<'a, Result<Vec<ProbeRtt>, Error>> {
        async move { self.reading(ip)?.await.map_err(Error::Shared) }.boxed()
    }

    fn timeout(&self) -> Option<std::time::Duration> {
        self.inner.timeout()
    }
}

/// Probe id → (latitude, longitude); filled from `Probe.spec.location`.
pub type ProbeLocations = Arc<RwLock<HashMap<u32, (f64, f64)>>>;

/// RTTs from ping results in ClickHouse `results` (rows with `dst_addr` = the IP).
pub struct ClickHouseRtts {
    client: clickhouse::Client,
    db: String,
    locations: ProbeLocations,
    /// Only results newer than this many seconds.
    max_age_s: u32,
}

#[derive(clickhouse::Row, Deserialize)]
struct RttRow {
    prb_id: u32,
    rtt: f64,
}

impl ClickHouseRtts {
    pub fn new(
        url: &str,
        db: &str,
        locations: ProbeLocations,
        max_age_s: u32,
    ) -> Result<Self, Error> {
        crate::check_db_name(db)?;
        Ok(Self {
            client: clickhouse::Client::default()
                .with_url(url)
                .with_validation(false),
            db: db.to_owned(),
            locations,
            max_age_s,
        })
    }
}

impl RttSource for ClickHouseRtts {
    fn rtts<'a>(&'a self, ip: IpAddr) -> BoxFuture<'a, Result<Vec<ProbeRtt>, Error>> {
        async move {
            let rows = self
                .client
                .query(&format!(
                    "SELECT prb_id, toFloat64(min(rtt_min)) AS rtt FROM {}.results \
                     WHERE type = 'ping' AND dst_addr = ? AND rtt_min > 0 AND rcvd > 0 \
                     AND timestamp > now() - {} GROUP BY prb_id ORDER BY prb_id",
                    self.db, self.max_age_s
                ))
                .bind(ip.to_string())
                .fetch_all::<RttRow>()
                .await
                .map_err(|source| Error::Store {
                    what: format!("reading RTTs to {ip}"),
                    source,
                })?;
            let locations = self.locations.read().map_err(|_| Error::Poisoned {
                what: "probe locations",
            })?;
            Ok(rows
                .into_iter()
                .filter_map(|r| {
                    let (latitude, longitude) = *locations.get(&r.prb_id)?;
                    Some(ProbeRtt {
                        probe_id: r.prb_id,
                        latitude,
                        longitude,
                        rtt_ms: r.rtt,
                    })
                })
                .collect())
        }
        .boxed()
    }
}

/// log10(population) / 7, in 0..=1: infrastructure density stands in for IXPs and datacentres.
fn population_factor(c: &City) -> f64 {
    (f64::from(c.population.max(1)).log10() / 7.0).clamp(0.0, 1.0)
}

/// Score the cities within `radius_km` of a point by closeness and population; when
/// none is inside, the nearest city.
pub fn score_disc(
    world: &World,
    lat: f64,
    lon: f64,
    radius_km: f64,
    limit: usize,
) -> Vec<Candidate> {
    score_disc_with_confidence(world, lat, lon, radius_km, limit, 1.0)
}

/// [`score_disc`] with every score multiplied by `confidence` (0..=1).
fn score_disc_with_confidence(
    world: &World,
    lat: f64,
    lon: f64,
    radius_km: f64,
    limit: usize,
    confidence: f64,
) -> Vec<Candidate> {
    let radius = radius_km.max(10.0);
    let mut inside = world.within(lat, lon, radius);
    if inside.is_empty() {
        inside.extend(world.nearest(lat, lon));
    }
    let raw: Vec<(f64, &City)> = inside
        .into_iter()
        .map(|(c, d)| {
            // Infrastructure density (population here) ranks first, as in IPmap; the
            // target lies anywhere in the disc, so closeness to the probe only breaks ties.
            let closeness = (1.0 - d / radius).clamp(0.0, 1.0);
            (
                10.0 * confidence * (0.2 * closeness + 0.8 * population_factor(c)),
                c,
            )
        })
        .collect();
    rank(raw, limit)
}

/// Cities with raw scores as candidates, best first: integer scores, but in the raw
/// order within one integer (then by id), so the best city is not left to the id.
fn rank(mut raw: Vec<(f64, &City)>, limit: usize) -> Vec<Candidate> {
    raw.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
    let scored = raw
        .into_iter()
        .filter_map(|(raw, c)| {
            clamp_score(raw).map(|score| Candidate {
                city_id: c.id,
                score,
            })
        })
        .collect();
    finish(scored, limit)
}

/// IPmap's single-radius: the lowest RTT under 10 ms bounds the target to a disc
/// around that probe (radius RTT/2 × 2/3 c ≈ 100 km per ms).
pub fn single_radius(world: &World, rtts: &[ProbeRtt], max_rtt_ms: f64) -> Vec<Candidate> {
    let Some(best) = rtts
        .iter()
        .filter(|r| r.rtt_ms.is_finite() && r.rtt_ms >= 0.0 && r.rtt_ms < max_rtt_ms)
        .min_by(|a, b| a.rtt_ms.total_cmp(&b.rtt_ms))
    else {
        return Vec::new();
    };
    let radius = best.radius_km().max(10.0);
    score_disc_with_confidence(
        world,
        best.latitude,
        best.longitude,
        radius,
        30,
        disc_confidence(radius),
    )
}

/// How much a disc of `radius_km` says: 1 at 10 km, halving every tenfold (0.5 at
/// 100 km, 0.25 at 1,000 km). A wide disc holds many cities, and the most populous is
/// a guess; its scores must not outvote a precise engine in the reducer.
pub fn disc_confidence(radius_km: f64) -> f64 {
    (10.0 / radius_km.max(10.0)).powf(std::f64::consts::LOG10_2)
}

fn valid(rtts: &[ProbeRtt]) -> Vec<ProbeRtt> {
    rtts.iter()
        .filter(|r| {
            r.rtt_ms.is_finite()
                && r.rtt_ms >= 0.0
                && geo::valid_coordinates(r.latitude, r.longitude)
        })
        .copied()
        .collect()
}

/// The region every probe's disc allows: the cities in it, their centre on the sphere
/// and the distance from the centre to the farthest of them (at least 10 km).
#[derive(Debug, Clone)]
pub struct Feasible<'w> {
    pub cities: Vec<&'w City>,
    pub centre: (f64, f64),
    pub spread_km: f64,
}

/// The cities inside every probe's disc (CBG's intersection); `None` without RTTs, when
/// the tightest disc is wider than a continent (5,000 km: a scan that says little), or
/// when the discs share no city.
pub fn feasible<'w>(world: &'w World, rtts: &[ProbeRtt]) -> Option<Feasible<'w>> {
    let rtts = valid(rtts);
    let tightest = rtts.iter().min_by(|a, b| a.rtt_ms.total_cmp(&b.rtt_ms))?;
    if tightest.radius_km() > 5000.0 {
        return None;
    }
    let radius = tightest.radius_km().max(10.0);
    let cities: Vec<&City> = world
        .within(tightest.latitude, tightest.longitude, radius)
        .into_iter()
        .map(|(c, _)| c)
        .filter(|c| {
            rtts.iter()
                .all(|r| r.distance_to(c.latitude, c.longitude) <= r.radius_km().max(10.0))
        })
        .collect();
    let mut v = [0.0; 3];
    for c in &cities {
        let u = geo::unit_vector(c.latitude, c.longitude);
        for k in 0..3 {
            v[k] += u[k];
        }
    }
    let norm = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    if cities.is_empty() || norm == 0.0 {
        return None;
    }
    let centre = (
        (v[2] / norm).asin().to_degrees(),
        v[1].atan2(v[0]).to_degrees(),
    );
    let spread_km = cities
        .iter()
        .map(|c| geo::distance_km(centre.0, centre.1, c.latitude, c.longitude))
        .fold(10.0_f64, f64::max);
    Some(Feasible {
        cities,
        centre,
        spread_km,
    })
}

/// CBG: the target is in every probe's disc; score the cities of the intersection by
/// closeness to its centre, population, and the share of the region's people living
/// in the city's country. The last decides a region across a border for the country
/// that holds most of it (on the simulated world: country +0.6 points, within 40 km
/// +1.6 points, docs/GEOLOCATION.md).
pub fn cbg(world: &World, rtts: &[ProbeRtt]) -> Vec<Candidate> {
    let Some(region) = feasible(world, rtts) else {
        return Vec::new();
    };
    let (clat, clon) = region.centre;
    let mut people: HashMap<&str, f64> = HashMap::new();
    for c in &region.cities {
        *people.entry(c.country.as_str()).or_default() += f64::from(c.population);
    }
    let total: f64 = people.values().sum::<f64>().max(1.0);
    let raw: Vec<(f64, &City)> = region
        .cities
        .iter()
        .map(|c| {
            let closeness =
                1.0 - geo::distance_km(clat, clon, c.latitude, c.longitude) / region.spread_km;
            let share = people.get(c.country.as_str()).copied().unwrap_or(0.0) / total;
            (
                10.0 * (0.45 * closeness + 0.25 * population_factor(c) + 0.3 * share),
                *c,
            )
        })
        .collect();
    rank(raw, 30)
}

/// How far below the best city's slack a city may be and still be in the calibrated
/// region, ms (see [`slack_region`]): tuned on the hard simulated world.
pub const SLACK_TOLERANCE_MS: f64 = 0.6;

/// The farthest the nearest probe may be, by its access-corrected RTT, for the
/// calibrated CBG to name cities (km): beyond, no probe is within reach, and a city
/// would be a guess; the answer is left to the country-scoped engines.
pub const REACH_KM: f64 = 1500.0;

/// More delay than this on the target's side is not a wired last mile (DSL, cable and
/// fibre add up to ~15 ms; 4G and satellite links 20–50 ms and more): calibrated CBG
/// then halves its scores, as it has located the gateway or ground station, not the host.
pub const RADIO_LAST_MILE_MS: f64 = 15.0;

/// The region calibrated CBG settles on: cities with their slack deficit (ms below the
/// best), the estimated access delay on the target's side, the centre and the spread.
#[derive(Debug, Clone)]
pub struct SlackRegion<'w> {
    pub cities: Vec<(&'w City, f64)>,
    /// The largest slack any city has: how much of every RTT is left over at the best
    /// place, an upper bound on the target's own access delay (ms).
    pub target_access_ms: f64,
    pub centre: (f64, f64),
    pub spread_km: f64,
    /// How far the nearest probe may be from the target by its RTT, both access delays
    /// taken off (km): a sparse neighbourhood when large.
    pub reach_km: f64,
}

/// Calibrated CBG's region. Every probe's RTT, less its own access delay (its
/// bestline's intercept), bounds the distance through its bestline slope. The target's
/// own access delay `t` is unknown, and the same on every path: a place `x` is
/// feasible when `t ≤ s(x) = min over probes of (rtt − intercept − slope × d(x))`.
/// Growing `t` shrinks every disc at once, until one place is left: the place with the
/// most slack, `s* = max s(x)`, which is also the largest `t` the RTTs allow (with two
/// probes, `(r₁ + r₂ − slope × D) / 2`, the pairwise bound). The region is the cities
/// within [`SLACK_TOLERANCE_MS`] of `s*`, among those that light in fibre allows
/// (raw RTT × 100 km/ms from every probe: a bound that access delay never breaks).
/// `None` without RTTs, or when no probe is within [`REACH_KM`].
pub fn slack_region<'w>(
    world: &'w World,
    rtts: &[ProbeRtt],
    cal: &Calibration,
    tolerance_ms: f64,
) -> Option<SlackRegion<'w>> {
    let rtts = valid(rtts);
    let lines: Vec<Bestline> = rtts.iter().map(|r| cal.line(r.probe_id)).collect();
    // Light in fibre from the probe with the lowest raw RTT: where the target can be.
    let tightest = rtts.iter().min_by(|a, b| a.rtt_ms.total_cmp(&b.rtt_ms))?;
    if tightest.radius_km() > 5000.0 {
        return None;
    }
    let mut order: Vec<usize> = (0..rtts.len()).collect();
    order.sort_by(|&a, &b| rtts[a].rtt_ms.total_cmp(&rtts[b].rtt_ms));
    let hard: Vec<&ProbeRtt> = order.iter().take(8).map(|&i| &rtts[i]).collect();
    let slack = |c: &City| -> Option<f64> {
        let mut s = f64::INFINITY;
        for (r, l) in rtts.iter().zip(&lines) {
            let d = r.distance_to(c.latitude, c.longitude);
            if d > r.radius_km().max(10.0) {
                return None;
            }
            s = s.min(r.rtt_ms - l.min_rtt_ms(d));
        }
        Some(s)
    };
    let possible = |centre: (f64, f64), km: f64, min_population: u32| -> Vec<(&'w City, f64)> {
        world
            .within(centre.0, centre.1, km)
            .into_iter()
            .map(|(c, _)| c)
            .filter(|c| c.population >= min_population)
            .filter(|c| {
                hard.iter()
                    .all(|r| r.distance_to(c.latitude, c.longitude) <= r.radius_km().max(10.0))
            })
            .filter_map(|c| Some((c, slack(c)?)))
            .collect()
    };
    let search_km = tightest.radius_km().max(10.0);
    let mut scored = possible((tightest.latitude, tightest.longitude), search_km, 0);
    if search_km > COARSE_KM {
        // A wide search (a target with a long last mile: mobile, satellite): find the
        // best place among towns of 20,000 first, then look at every city around it.
        let coarse = possible((tightest.latitude, tightest.longitude), search_km, 20_000);
        scored = match best_of(&coarse) {
            Some((c, _)) => possible((c.latitude, c.longitude), COARSE_KM, 0),
            None => Vec::new(),
        };
    }
    let (_, best) = best_of(&scored)?;
    let cities: Vec<(&City, f64)> = scored
        .into_iter()
        .filter(|(_, s)| *s >= best - tolerance_ms)
        .map(|(c, s)| (c, best - s))
        .collect();
    let centre = centre_of(cities.iter().map(|(c, _)| *c))?;
    let spread_km = cities
        .iter()
        .map(|(c, _)| geo::distance_km(centre.0, centre.1, c.latitude, c.longitude))
        .fold(10.0_f64, f64::max);
    // No probe within reach: the nearest probe's disc, once both access delays are
    // taken off, is still wider than a country.
    let reach = rtts
        .iter()
        .zip(&lines)
        .map(|(r, l)| l.max_km(r.rtt_ms - best.max(0.0)))
        .fold(f64::INFINITY, f64::min);
    if reach > REACH_KM {
        return None;
    }
    Some(SlackRegion {
        cities,
        target_access_ms: best.max(0.0),
        centre,
        spread_km,
        reach_km: reach,
    })
}

/// Searches wider than this look at towns of 20,000 first, then at every city within
/// this distance of the best of them (km).
const COARSE_KM: f64 = 600.0;

/// The city with the most slack.
fn best_of<'w>(scored: &[(&'w City, f64)]) -> Option<(&'w City, f64)> {
    scored
        .iter()
        .copied()
        .filter(|(_, s)| s.is_finite())
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.id.cmp(&a.0.id)))
}

/// The centre of cities on the sphere; `None` for none.
fn centre_of<'a>(cities: impl Iterator<Item = &'a City>) -> Option<(f64, f64)> {
    let mut v = [0.0; 3];
    let mut n = 0;
    for c in cities {
        let u = geo::unit_vector(c.latitude, c.longitude);
        for k in 0..3 {
            v[k] += u[k];
        }
        n += 1;
    }
    let norm = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    (n > 0 && norm > 0.0).then(|| {
        (
            (v[2] / norm).asin().to_degrees(),
            v[1].atan2(v[0]).to_degrees(),
        )
    })
}

/// Whether two probes' RTTs cannot both hold for one place (sum of radii < distance).
pub fn violates(a: &ProbeRtt, b: &ProbeRtt) -> bool {
    a.radius_km() + b.radius_km()
        < geo::distance_km(a.latitude, a.longitude, b.latitude, b.longitude)
}

/// Anycast: sites as probes with mutually disjoint discs, tightest first (at most `max_sites`).
pub fn anycast_sites(rtts: &[ProbeRtt], max_sites: usize) -> Vec<ProbeRtt> {
    let mut rtts = valid(rtts);
    rtts.sort_by(|a, b| a.rtt_ms.total_cmp(&b.rtt_ms));
    let mut sites: Vec<ProbeRtt> = Vec::new();
    for r in rtts {
        if sites.len() >= max_sites {
            break;
        }
        if sites.iter().all(|s| violates(s, &r)) {
            sites.push(r);
        }
    }
    if sites.len() < 2 {
        sites.clear();
    }
    sites
}

/// Anycast engine output: the best cities around each site.
pub fn anycast(world: &World, rtts: &[ProbeRtt]) -> Vec<Candidate> {
    let sites = anycast_sites(rtts, 8);
    let mut out = Vec::new();
    for s in &sites {
        out.extend(score_disc(
            world,
            s.latitude,
            s.longitude,
            s.radius_km().min(1000.0),
            3,
        ));
    }
    finish(out, 8 * 3)
}

/// Which latency engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyKind {
    SingleRadius,
    Cbg,
    Anycast,
}

/// A latency engine over an RTT source.
pub struct Latency {
    kind: LatencyKind,
    source: Arc<dyn RttSource>,
    /// Per-probe bestlines for CBG; without, CBG uses light in fibre for every probe.
    calibration: Option<Arc<dyn CalibrationSource>>,
}

impl Latency {
    pub fn new(kind: LatencyKind, source: Arc<dyn RttSource>) -> Self {
        Self {
            kind,
            source,
            calibration: None,
        }
    }

    /// CBG (`latency`) with per-probe calibration; single-radius stays IPmap's and
    /// anycast physics' (both bounds that access delay never breaks).
    pub fn with_calibration(mut self, calibration: Arc<dyn CalibrationSource>) -> Self {
        self.calibration = Some(calibration);
        self
    }

    /// [`Latency::all`], with CBG calibrated.
    pub fn all_calibrated(
        source: Arc<dyn RttSource>,
        calibration: Arc<dyn CalibrationSource>,
    ) -> Vec<crate::reducer::ConfiguredEngine> {
        Self::all_with(source, Some(calibration))
    }

    /// The three latency engines over one RTT source, each at weight 1: single-radius,
    /// CBG (`latency`) and anycast.
    pub fn all(source: Arc<dyn RttSource>) -> Vec<crate::reducer::ConfiguredEngine> {
        Self::all_with(source, None)
    }

    fn all_with(
        source: Arc<dyn RttSource>,
        calibration: Option<Arc<dyn CalibrationSource>>,
    ) -> Vec<crate::reducer::ConfiguredEngine> {
        [
            (LatencyKind::SingleRadius, "single-radius"),
            (LatencyKind::Cbg, "latency"),
            (LatencyKind::Anycast, "anycast"),
        ]
        .into_iter()
        .map(|(kind, name)| {
            let mut latency = Latency::new(kind, source.clone());
            if kind == LatencyKind::Cbg {
                latency.calibration = calibration.clone();
            }
            let engine: Arc<dyn crate::engine::Engine> = Arc::new(latency);
            (engine, crate::reducer::EngineConfig::new(name, 1.0, true))
        })
        .collect()
    }
}

impl Engine for Latency {
    fn name(&self) -> &str {
        match self.kind {
            LatencyKind::SingleRadius => "single-radius",
            LatencyKind::Cbg => "latency",
            LatencyKind::Anycast => "anycast",
        }
    }

    fn timeout(&self) -> Option<std::time::Duration> {
        self.source.timeout()
    }

    fn locate<'a>(
        &'a self,
        ip: IpAddr,
        world: &'a World,
    ) -> BoxFuture<'a, Result<Vec<Candidate>, Error>> {
        async move {
            let rtts = self.source.rtts(ip).await?;
            Ok(match self.kind {
                LatencyKind::SingleRadius => single_radius(world, &rtts, 10.0),
                LatencyKind::Cbg => match &self.calibration {
                    Some(cal) => {
                        super::posterior::cbg_posterior(world, &rtts, &*cal.calibration().await?)
                    }
                    None => cbg(world, &rtts),
                },
                LatencyKind::Anycast => anycast(world, &rtts),
            })
        }
        .boxed()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::world::tests::tiny;

    /// Counts its readings.
    struct Counting(std::sync::atomic::AtomicUsize);
    impl RttSource for Counting {
        fn rtts<'a>(&'a self, _ip: IpAddr) -> BoxFuture<'a, Result<Vec<ProbeRtt>, Error>> {
            async move {
                let n = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Ok(vec![ProbeRtt {
                    probe_id: n as u32,
                    latitude: 0.0,
                    longitude: 0.0,
                    rtt_ms: 1.0,
                }])
            }
            .boxed()
        }
    }

    #[test]
    fn cbg_across_a_border_prefers_the_country_holding_most_of_the_region() {
        // Two towns alike and equally near the centre, one each side of a border; the
        // west (XA) holds most of the region's people. Without the country share the
        // tie would go to the lower id, the east town.
        let w = World::from_tsv(
            "#vantage-worlds\tv1\ttest\n\
             C\t2\tWesttown\t\tXA\t01\t0.0\t-0.2\t50000\tUTC\n\
             C\t1\tEasttown\t\tXB\t01\t0.0\t0.2\t50000\tUTC\n\
             C\t3\tWestcity\t\tXA\t01\t0.5\t-0.6\t2000000\tUTC\n\
             C\t4\tWestport\t\tXA\t01\t-0.5\t-0.6\t2000000\tUTC\n\
             C\t5\tEastcity\t\tXB\t01\t0.5\t0.6\t2000\tUTC\n\
             C\t6\tEastport\t\tXB\t01\t-0.5\t0.6\t2000\tUTC\n",
        )
        .expect("world");
        let probe = ProbeRtt {
            probe_id: 1,
            latitude: 0.0,
            longitude: 0.0,
            rtt_ms: 1.0,
        };
        let got = cbg(&w, &[probe]);
        let rank = |id| got.iter().position(|c| c.city_id == id).expect("candidate");
        assert!(rank(2) < rank(1), "{got:?}");
    }

    #[tokio::test]
    async fn engines_asking_at_once_share_one_reading_until_it_expires() {
        let inner = Arc::new(Counting(Default::default()));
        let shared = SharedRtts::new(inner.clone(), std::time::Duration::from_millis(200));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let (a, b, c) = tokio::join!(shared.rtts(ip), shared.rtts(ip), shared.rtts(ip));
        let ids = |r: Result<Vec<ProbeRtt>, Error>| r.expect("rtts")[0].probe_id;
        assert_eq!((ids(a), ids(b), ids(c)), (0, 0, 0));
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        assert_eq!(ids(shared.rtts(other).await), 1);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        assert_eq!(ids(shared.rtts(ip).await), 2, "read again after the ttl");
    }

    /// A probe at a city, with the RTT the speed of light in fibre allows plus `extra_ms`.
    pub(crate) fn probe_at(world: &World, id: u32, target: (f64, f64), extra_ms: f64) -> ProbeRtt {
        let c = world.city(id).expect("city");
        let d = geo::distance_km(c.latitude, c.longitude, target.0, target.1);
        ProbeRtt {
            probe_id: id,
            latitude: c.latitude,
            longitude: c.longitude,
            rtt_ms: d / geo::KM_PER_MS_RTT + extra_ms,
        }
    }

    const FRANKFURT: (f64, f64) = (50.1155, 8.6842);

    #[test]
    fn single_radius_takes_the_lowest_rtt_under_10ms() {
        let w = tiny();
        let rtts = vec![
            ProbeRtt {
                probe_id: 1,
                latitude: 50.0,
                longitude: 8.6,
                rtt_ms: 0.4,
            },
            ProbeRtt {
                probe_id: 2,
                latitude: 52.37,
                longitude: 4.89,
                rtt_ms: 4.5,
            },
            ProbeRtt {
                probe_id: 3,
                latitude: 40.7,
                longitude: -74.0,
                rtt_ms: 80.0,
            },
        ];
        let got = single_radius(&w, &rtts, 10.0);
        // Radius 40 km around (50.0, 8.6): Frankfurt (14 km) and Mainz (~25 km), the
        // bigger first; a 40 km disc scores at most 10 × 0.67.
        let score = |id| got.iter().find(|c| c.city_id == id).map(|c| c.score);
        assert_eq!(got.len(), 2, "{got:?}");
        let (frankfurt, mainz) = (score(2925533), score(2874225));
        assert!(frankfurt >= mainz && mainz.is_some(), "{got:?}");
        assert!(got.iter().all(|c| c.score <= 7), "{got:?}");
        assert!((disc_confidence(10.0) - 1.0).abs() < 1e-9);
        assert!((disc_confidence(100.0) - 0.5).abs() < 1e-9);
        assert!((disc_confidence(1000.0) - 0.25).abs() < 1e-9);
        // Nothing under 10 ms: no answer.
        assert!(single_radius(&w, &rtts[2..], 10.0).is_empty());
    }

    #[test]
    fn cbg_intersects_discs() {
        let w = tiny();
        let probes = [2759794, 2643743, 2988507, 2950159, 2867714, 2911298];
        let rtts: Vec<ProbeRtt> = probes
            .iter()
            .map(|&id| probe_at(&w, id, FRANKFURT, 0.3))
            .collect();
        let got = cbg(&w, &rtts);
        assert_eq!(got.first().map(|c| c.city_id), Some(2925533), "{got:?}");
        assert!(
            anycast(&w, &rtts).is_empty(),
            "a unicast target is not anycast"
        );
    }

    #[test]
    fn anycast_lists_both_sites() {
        let w = tiny();
        // The same address answers fast in Amsterdam and in Los Angeles.
        let rtts = vec![
            ProbeRtt {
                probe_id: 1,
                latitude: 52.37,
                longitude: 4.89,
                rtt_ms: 1.0,
            },
            ProbeRtt {
                probe_id: 2,
                latitude: 34.05,
                longitude: -118.24,
                rtt_ms: 1.5,
            },
            ProbeRtt {
                probe_id: 3,
                latitude: 50.11,
                longitude: 8.68,
                rtt_ms: 4.0,
            },
        ];
        assert!(violates(&rtts[0], &rtts[1]));
        let sites = anycast_sites(&rtts, 8);
        assert_eq!(
            sites.iter().map(|s| s.probe_id).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let got: Vec<u32> = anycast(&w, &rtts).iter().map(|c| c.city_id).collect();
        assert!(got.contains(&2759794) && got.contains(&5368361), "{got:?}");
        // CBG finds no place that satisfies every disc.
        assert!(cbg(&w, &rtts).is_empty());
    }
}
