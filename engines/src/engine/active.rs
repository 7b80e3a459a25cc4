//! Active single-radius: when no stored RTT is under 10 ms, choose probes likely to be
//! close to the target (same prefix, then same ASN, then the countries other engines
//! suggest, then the area around the best guess so far), ask them for a one-off ping
//! through the normal measurement path (a `Measurement` resource: the operator selects,
//! schedules, the probes ping, the collector stores), wait for the results in ClickHouse
//! `results`, and hand the RTTs to the single-radius arithmetic.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use serde::Deserialize;
use serde_json::json;
use vantage_crd::{Measurement, MeasurementState};

use super::calibration::{Calibration, CalibrationSource};
use super::latency::{ProbeRtt, RttSource};
use super::Engine;
use crate::world::World;
use crate::{geo, Error};

/// A probe as the engines see it (from `Probe` resources).
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeInfo {
    pub id: u32,
    pub latitude: f64,
    pub longitude: f64,
    pub country: Option<String>,
    pub asn: Option<u32>,
    /// `prefix_v4` / `prefix_v6`.
    pub prefixes: Vec<ipnet::IpNet>,
    /// Enabled and connected: it can measure now.
    pub available: bool,
}

/// Probes by id, shared with the code that follows `Probe` resources.
pub type ProbeDirectory = Arc<RwLock<HashMap<u32, ProbeInfo>>>;

/// Runs one-off pings from chosen probes and answers each probe's minimum RTT.
pub trait Measurer: Send + Sync {
    fn ping<'a>(
        &'a self,
        ip: IpAddr,
        probes: &'a [u32],
    ) -> BoxFuture<'a, Result<Vec<(u32, f64)>, Error>>;
}

/// The target's origin ASN, where known (a BGP table); `None` skips that step.
pub trait AsnLookup: Send + Sync {
    fn asn(&self, ip: IpAddr) -> Option<u32>;
}

/// What the other engines and the stored RTTs suggest about where the target is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hints {
    pub asn: Option<u32>,
    /// Countries, most likely first.
    pub countries: Vec<String>,
    /// The best point guess so far.
    pub area: Option<(f64, f64)>,
}

/// Choose at most `n` available probes, in IPmap's order: same prefix, same ASN,
/// the suggested countries (in their order; nearest to the area first within one),
/// then the nearest to the area. Probes in `skip` (already measured) are left out.
pub fn choose_probes(
    target: IpAddr,
    probes: &[ProbeInfo],
    hints: &Hints,
    skip: &HashSet<u32>,
    n: usize,
) -> Vec<u32> {
    let mut pool: Vec<&ProbeInfo> = probes
        .iter()
        .filter(|p| p.available && !skip.contains(&p.id))
        .filter(|p| geo::valid_coordinates(p.latitude, p.longitude))
        .collect();
    let dist = |p: &ProbeInfo| {
        hints
            .area
            .map(|(lat, lon)| geo::distance_km(lat, lon, p.latitude, p.longitude))
            .unwrap_or(0.0)
    };
    pool.sort_by(|a, b| dist(a).total_cmp(&dist(b)).then(a.id.cmp(&b.id)));
    let mut chosen: Vec<u32> = Vec::new();
    let take = |pred: &dyn Fn(&ProbeInfo) -> bool, chosen: &mut Vec<u32>| {
        for p in &pool {
            if chosen.len() >= n {
                return;
            }
            if pred(p) && !chosen.contains(&p.id) {
                chosen.push(p.id);
            }
        }
    };
    take(
        &|p| p.prefixes.iter().any(|net| net.contains(&target)),
        &mut chosen,
    );
    if let Some(asn) = hints.asn {
        take(&|p| p.asn == Some(asn), &mut chosen);
    }
    for cc in &hints.countries {
        take(
            &|p| {
                p.country
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(cc))
            },
            &mut chosen,
        );
    }
    if hints.area.is_some() {
        take(&|_| true, &mut chosen);
    }
    chosen
}

/// An RTT source that measures when the stored RTTs are not enough for single-radius.
pub struct ActiveRtts {
    stored: Arc<dyn RttSource>,
    probes: ProbeDirectory,
    measurer: Arc<dyn Measurer>,
    /// Engines asked for countries and an area (reverse-DNS, crowdsourced, ...).
    hint_engines: Vec<Arc<dyn Engine>>,
    asn: Option<Arc<dyn AsnLookup>>,
    /// Per-probe access delays and bestlines: "close enough" and "where the RTTs
    /// point" are judged on RTTs with the probe's own access delay taken off.
    calibration: Option<Arc<dyn CalibrationSource>>,
    world: Arc<World>,
    /// Probes per on-demand measurement.
    pub probes_per_request: usize,
    /// Measure until some probe answers faster than this (IPmap: 10 ms, the bound of
    /// single-radius); lower asks for probes nearer the target.
    pub enough_rtt_ms: f64,
    /// On-demand measurements at most per target. The first goes where the hints point;
    /// each further one to the probes nearest the region the RTTs so far allow (CBG).
    pub rounds: usize,
    /// How long measuring may take (the single-radius engine's timeout).
    pub timeout: Duration,
}

impl ActiveRtts {
    pub fn new(
        stored: Arc<dyn RttSource>,
        probes: ProbeDirectory,
        measurer: Arc<dyn Measurer>,
        world: Arc<World>,
    ) -> Self {
        Self {
            stored,
            probes,
            measurer,
            hint_engines: Vec::new(),
            asn: None,
            calibration: None,
            world,
            probes_per_request: 10,
            enough_rtt_ms: 10.0,
            rounds: 1,
            timeout: Duration::from_secs(120),
        }
    }

    pub fn with_hint_engines(mut self, engines: Vec<Arc<dyn Engine>>) -> Self {
        self.hint_engines = engines;
        self
    }

    pub fn with_asn_lookup(mut self, asn: Arc<dyn AsnLookup>) -> Self {
        self.asn = Some(asn);
        self
    }

    pub fn with_calibration(mut self, calibration: Arc<dyn CalibrationSource>) -> Self {
        self.calibration = Some(calibration);
        self
    }

    /// Countries and an area from the hint engines' candidates and the stored RTTs.
    async fn hints(&self, ip: IpAddr, stored: &[ProbeRtt], cal: &Calibration) -> Hints {
        let mut country_score: HashMap<String, u32> = HashMap::new();
        let mut best: Option<(u8, f64, f64)> = None;
        for engine in &self.hint_engines {
            let Ok(Ok(cands)) =
                tokio::time::timeout(Duration::from_secs(5), engine.locate(ip, &self.world)).await
            else {
                continue;
            };
            // A country-scoped candidate says a country, not where in it.
            let cities = engine.scope() == super::Scope::City;
            for c in cands {
                if let Some(city) = self.world.city(c.city_id) {
                    *country_score.entry(city.country.clone()).or_default() += u32::from(c.score);
                    if cities && best.is_none_or(|(s, _, _)| c.score > s) {
                        best = Some((c.score, city.latitude, city.longitude));
                    }
                }
            }
        }
        let mut countries: Vec<(String, u32)> = country_score.into_iter().collect();
        countries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        // The area: the best hint, else where the stored RTTs point.
        let area = best
            .map(|(_, lat, lon)| (lat, lon))
            .or_else(|| rtt_area(&self.world, stored, cal));
        Hints {
            asn: self.asn.as_ref().and_then(|a| a.asn(ip)),
            countries: countries.into_iter().map(|(c, _)| c).collect(),
            area,
        }
    }

    async fn measure(&self, ip: IpAddr) -> Result<Vec<ProbeRtt>, Error> {
        let mut rtts = self.stored.rtts(ip).await?;
        let cal = match &self.calibration {
            Some(source) => source.calibration().await?,
            None => Arc::new(Calibration::default()),
        };
        let directory: Vec<ProbeInfo> = self
            .probes
            .read()
            .map_err(|_| Error::Poisoned {
                what: "probe directory",
            })?
            .values()
            .cloned()
            .collect();
        let by_id: HashMap<u32, &ProbeInfo> = directory.iter().map(|p| (p.id, p)).collect();
        for round in 0..self.rounds.max(1) {
            let close = |r: &ProbeRtt| {
                let rtt = r.rtt_ms - cal.line(r.probe_id).intercept_ms;
                r.rtt_ms.is_finite() && r.rtt_ms >= 0.0 && rtt < self.enough_rtt_ms
            };
            // Anycast: RTTs no single place allows. Each site is measured on its own,
            // until every site has a close probe.
            let sites = super::latency::anycast_sites(&rtts, 4);
            if sites.is_empty() && rtts.iter().any(close)
                || !sites.is_empty() && sites.iter().all(close)
            {
                break;
            }
            let skip: HashSet<u32> = rtts.iter().map(|r| r.probe_id).collect();
            let chosen = if !sites.is_empty() {
                let per_site = self.probes_per_request.div_ceil(sites.len());
                let mut chosen: Vec<u32> = Vec::new();
                for site in sites.iter().filter(|s| !close(s)) {
                    let hints = Hints {
                        asn: None,
                        countries: Vec::new(),
                        area: Some((site.latitude, site.longitude)),
                    };
                    let taken: HashSet<u32> = skip.iter().chain(&chosen).copied().collect();
                    chosen.extend(choose_probes(ip, &directory, &hints, &taken, per_site));
                }
                chosen
            } else {
                if round == 0 {
                    let hints = self.hints(ip, &rtts, &cal).await;
                    choose_probes(ip, &directory, &hints, &skip, self.probes_per_request)
                } else {
                    // Later rounds follow the measurements, whatever the country: half
                    // the probes nearest to where the RTTs point, half nearest to the
                    // probe with the lowest RTT (less its own access delay).
                    let near = |area| Hints {
                        asn: None,
                        countries: Vec::new(),
                        area,
                    };
                    // Without a calibration RTTs carry unknown access delays, and the
                    // lowest says less: all go to where the RTTs point.
                    let half = if cal.is_empty() {
                        self.probes_per_request
                    } else {
                        self.probes_per_request.div_ceil(2)
                    };
                    let mut chosen = choose_probes(
                        ip,
                        &directory,
                        &near(rtt_area(&self.world, &rtts, &cal)),
                        &skip,
                        half,
                    );
                    let taken: HashSet<u32> = skip.iter().chain(&chosen).copied().collect();
                    chosen.extend(choose_probes(
                        ip,
                        &directory,
                        &near(lowest_rtt(&rtts, &cal)),
                        &taken,
                        self.probes_per_request - chosen.len(),
                    ));
                    chosen
                }
            };
            if chosen.is_empty() {
                tracing::debug!(%ip, round, "no probe left to measure from");
                break;
            }
            tracing::info!(%ip, round, probes = ?chosen, anycast = !sites.is_empty(), "measuring for single-radius");
            let measured = self.measurer.ping(ip, &chosen).await?;
            rtts.extend(measured.into_iter().filter_map(|(id, rtt_ms)| {
                let p = by_id.get(&id)?;
                Some(ProbeRtt {
                    probe_id: id,
                    latitude: p.latitude,
                    longitude: p.longitude,
                    rtt_ms,
                })
            }));
        }
        Ok(rtts)
    }
}

/// Where RTTs point: with a calibration, the place with the most slack (calibrated
/// CBG); without, the centre of the region every disc allows (CBG); else the probe
/// with the lowest RTT, less its access delay.
fn rtt_area(world: &World, rtts: &[ProbeRtt], cal: &Calibration) -> Option<(f64, f64)> {
    let region = if cal.is_empty() {
        super::latency::feasible(world, rtts).map(|f| f.centre)
    } else {
        super::latency::slack_region(world, rtts, cal, 0.0).map(|r| r.centre)
    };
    region.or_else(|| lowest_rtt(rtts, cal))
}

/// Where the probe with the lowest RTT, less its own access delay, is.
fn lowest_rtt(rtts: &[ProbeRtt], cal: &Calibration) -> Option<(f64, f64)> {
    rtts.iter()
        .filter(|r| r.rtt_ms.is_finite())
        .min_by(|a, b| {
            let corrected = |r: &ProbeRtt| r.rtt_ms - cal.line(r.probe_id).intercept_ms;
            corrected(a).total_cmp(&corrected(b))
        })
        .map(|r| (r.latitude, r.longitude))
}

impl RttSource for ActiveRtts {
    fn rtts<'a>(&'a self, ip: IpAddr) -> BoxFuture<'a, Result<Vec<ProbeRtt>, Error>> {
        self.measure(ip).boxed()
    }

    fn timeout(&self) -> Option<Duration> {
        Some(self.timeout)
    }
}

/// Reads a measurement's RTTs per probe (ClickHouse `results`).
pub trait MeasurementResults: Send + Sync {
    fn rtts(&self, msm_id: u64) -> BoxFuture<'_, Result<Vec<(u32, f64)>, Error>>;
}

/// `min(rtt_min)` per probe of one measurement, from ClickHouse `results`.
pub struct ClickHouseMeasurementResults {
    client: clickhouse::Client,
    db: String,
}

#[derive(clickhouse::Row, Deserialize)]
struct MsmRtt {
    prb_id: u32,
    rtt: f64,
}

impl ClickHouseMeasurementResults {
    pub fn new(url: &str, db: &str) -> Result<Self, Error> {
        crate::check_db_name(db)?;
        Ok(Self {
            client: clickhouse::Client::default()
                .with_url(url)
                .with_validation(false),
            db: db.to_owned(),
        })
    }
}

impl MeasurementResults for ClickHouseMeasurementResults {
    fn rtts(&self, msm_id: u64) -> BoxFuture<'_, Result<Vec<(u32, f64)>, Error>> {
        async move {
            let rows = self
                .client
                .query(&format!(
                    "SELECT prb_id, toFloat64(min(rtt_min)) AS rtt FROM {}.results \
                     WHERE msm_id = ? AND type = 'ping' AND rcvd > 0 AND rtt_min > 0 \
                     GROUP BY prb_id ORDER BY prb_id",
                    self.db
                ))
                .bind(msm_id)
                .fetch_all::<MsmRtt>()
                .await
                .map_err(|source| Error::Store {
                    what: format!("reading results of measurement {msm_id}"),
                    source,
                })?;
            Ok(rows.into_iter().map(|r| (r.prb_id, r.rtt)).collect())
        }
        .boxed()
    }
}

/// Packets per on-demand ping: the engines use the minimum RTT, and the minimum of five
/// filters queueing on a busy probe or path better than RIPE's default three.
pub const GEO_PING_PACKETS: u32 = 5;

/// Milliseconds between them: the answer waits for the last (RIPE's default 1,000 ms
/// would make it 4 s).
pub const GEO_PING_INTERVAL_MS: u32 = 200;

/// The one-off ping a `Measurement` resource asks for.
pub fn ping_measurement(
    name: &str,
    namespace: &str,
    ip: IpAddr,
    probes: &[u32],
) -> Result<Measurement, Error> {
    let ids: Vec<String> = probes.iter().map(u32::to_string).collect();
    serde_json::from_value(json!({
        "apiVersion": "vantage.dev/v1alpha1",
        "kind": "Measurement",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "vantage-engines", "vantage.dev/purpose": "single-radius"},
        },
        "spec": {
            "type": "ping",
            "af": if ip.is_ipv4() { 4 } else { 6 },
            "target": ip.to_string(),
            "packets": GEO_PING_PACKETS,
            "packet_interval": GEO_PING_INTERVAL_MS,
            "description": format!("single-radius geolocation of {ip}"),
            "is_oneoff": true,
            "probes": [{"type": "probes", "value": ids.join(","), "requested": probes.len()}],
        },
    }))
    .map_err(|source| Error::Json {
        what: "building the measurement".into(),
        source,
    })
}

/// One-off pings through the normal measurement path: create a `Measurement`, wait for
/// its id and results, delete it (the results stay).
pub struct KubeMeasurer {
    api: Api<Measurement>,
    namespace: String,
    results: Arc<dyn MeasurementResults>,
    /// Results are awaited this long after the measurement got its id.
    pub wait: Duration,
    pub poll: Duration,
}

impl KubeMeasurer {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        results: Arc<dyn MeasurementResults>,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            results,
            wait: Duration::from_secs(60),
            poll: Duration::from_millis(500),
        }
    }

    async fn run(&self, ip: IpAddr, probes: &[u32]) -> Result<Vec<(u32, f64)>, Error> {
        let name = format!(
            "geo-{}-{}",
            ip.to_string().replace(['.', ':'], "-"),
            crate::cache::now_ms()
        );
        let msm = ping_measurement(&name, &self.namespace, ip, probes)?;
        let kube_err = |what: &str, source: kube::Error| Error::Kube {
            what: format!("single-radius: {what} measurement {name}"),
            source,
        };
        self.api
            .create(&PostParams::default(), &msm)
            .await
            .map_err(|e| kube_err("creating", e))?;
        let result = self.await_results(&name, probes.len()).await;
        if let Err(e) = self.api.delete(&name, &DeleteParams::default()).await {
            tracing::warn!(measurement = %name, error = %e, "cannot delete the one-off measurement");
        }
        result
    }

    async fn await_results(&self, name: &str, want: usize) -> Result<Vec<(u32, f64)>, Error> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut msm_id = None;
        let mut got = Vec::new();
        while tokio::time::Instant::now() < deadline {
            if msm_id.is_none() {
                let m = self.api.get(name).await.map_err(|source| Error::Kube {
                    what: format!("single-radius: reading measurement {name}"),
                    source,
                })?;
                let status = m.status.unwrap_or_default();
                if matches!(
                    status.state,
                    Some(MeasurementState::Failed | MeasurementState::NoSuitableProbes)
                ) {
                    return Err(Error::Measurement {
                        name: name.to_owned(),
                        problem: format!(
                            "is {:?}; see its status and the operator's log",
                            status.state
                        ),
                    });
                }
                msm_id = status.id;
            }
            if let Some(id) = msm_id {
                got = self.results.rtts(id).await?;
                if got.len() >= want {
                    break;
                }
            }
            tokio::time::sleep(self.poll).await;
        }
        if msm_id.is_none() {
            return Err(Error::Measurement {
                name: name.to_owned(),
                problem: format!("got no id within {:?}; is the operator running?", self.wait),
            });
        }
        Ok(got)
    }
}

impl Measurer for KubeMeasurer {
    fn ping<'a>(
        &'a self,
        ip: IpAddr,
        probes: &'a [u32],
    ) -> BoxFuture<'a, Result<Vec<(u32, f64)>, Error>> {
        self.run(ip, probes).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::latency::{single_radius, StaticRtts};
    use crate::engine::Candidate;
    use crate::world::tests::tiny;
    use std::sync::Mutex;

    fn probe(id: u32, lat: f64, lon: f64, cc: &str, asn: u32, prefix: &str) -> ProbeInfo {
        ProbeInfo {
            id,
            latitude: lat,
            longitude: lon,
            country: Some(cc.into()),
            asn: Some(asn),
            prefixes: vec![prefix.parse().expect("prefix")],
            available: true,
        }
    }

    fn probes() -> Vec<ProbeInfo> {
        vec![
            probe(1, 40.71, -74.0, "US", 701, "198.18.0.0/24"),
            probe(2, 52.37, 4.89, "NL", 3333, "193.0.0.0/21"),
            probe(3, 50.11, 8.68, "DE", 3320, "80.0.0.0/16"),
            probe(4, 48.85, 2.35, "FR", 3215, "90.0.0.0/16"),
            probe(5, 50.0, 8.3, "DE", 3320, "80.1.0.0/16"),
            ProbeInfo {
                available: false,
                ..probe(6, 50.1, 8.6, "DE", 64512, "81.0.0.0/16")
            },
        ]
    }

    #[test]
    fn prefix_then_asn_then_country_then_area() {
        let target: IpAddr = "193.0.1.1".parse().expect("ip");
        let hints = Hints {
            asn: Some(3215),
            countries: vec!["DE".into()],
            area: Some((50.1, 8.6)),
        };
        let got = choose_probes(target, &probes(), &hints, &HashSet::new(), 10);
        // Prefix (2), ASN (4), Germany nearest first (3, 5), then the rest by distance (1);
        // 6 is not connected.
        assert_eq!(got, vec![2, 4, 3, 5, 1]);
        assert_eq!(
            choose_probes(target, &probes(), &hints, &HashSet::new(), 2),
            vec![2, 4]
        );
        let skip: HashSet<u32> = [2].into();
        assert_eq!(
            choose_probes(target, &probes(), &hints, &skip, 2),
            vec![4, 3]
        );
        // No hints and no matching prefix: nobody to ask.
        let other: IpAddr = "8.8.8.8".parse().expect("ip");
        assert!(choose_probes(other, &probes(), &Hints::default(), &HashSet::new(), 5).is_empty());
    }

    #[derive(Default)]
    struct FakeMeasurer {
        asked: Mutex<Vec<Vec<u32>>>,
    }

    impl Measurer for FakeMeasurer {
        fn ping<'a>(
            &'a self,
            _ip: IpAddr,
            probes: &'a [u32],
        ) -> BoxFuture<'a, Result<Vec<(u32, f64)>, Error>> {
            if let Ok(mut a) = self.asked.lock() {
                a.push(probes.to_vec());
            }
            // Probe 3 (Frankfurt) is 0.3 ms away, probe 5 3 ms, the others far.
            let out = probes
                .iter()
                .map(|&p| {
                    (
                        p,
                        if p == 3 {
                            0.3
                        } else if p == 5 {
                            3.0
                        } else {
                            25.0
                        },
                    )
                })
                .collect();
            async move { Ok(out) }.boxed()
        }
    }

    /// A hint engine that says Frankfurt.
    struct Says(u32);
    impl Engine for Says {
        fn name(&self) -> &str {
            "hint"
        }
        fn locate<'a>(
            &'a self,
            _ip: IpAddr,
            _world: &'a World,
        ) -> BoxFuture<'a, Result<Vec<Candidate>, Error>> {
            let c = vec![Candidate {
                city_id: self.0,
                score: 6,
            }];
            async move { Ok(c) }.boxed()
        }
    }

    fn directory() -> ProbeDirectory {
        Arc::new(RwLock::new(
            probes().into_iter().map(|p| (p.id, p)).collect(),
        ))
    }

    #[tokio::test]
    async fn measures_from_probes_the_hints_point_to_and_keeps_stored_rtts() {
        let world = Arc::new(tiny());
        let ip: IpAddr = "8.8.8.8".parse().expect("ip");
        let measurer = Arc::new(FakeMeasurer::default());
        let mut stored = HashMap::new();
        stored.insert(
            ip,
            vec![ProbeRtt {
                probe_id: 1,
                latitude: 40.71,
                longitude: -74.0,
                rtt_ms: 80.0,
            }],
        );
        let active = ActiveRtts::new(
            Arc::new(StaticRtts(stored)),
            directory(),
            measurer.clone(),
            world.clone(),
        )
        .with_hint_engines(vec![Arc::new(Says(2925533))]);
        let rtts = active.rtts(ip).await.expect("rtts");
        let asked = measurer.asked.lock().expect("lock").clone();
        // Germany first (Frankfurt, then the probe west of it), then by distance; probe 1
        // already has a stored RTT.
        assert_eq!(asked, vec![vec![3, 5, 2, 4]]);
        assert_eq!(rtts.len(), 5);
        let got = single_radius(&world, &rtts, 10.0);
        assert_eq!(got.first().map(|c| c.city_id), Some(2925533), "{got:?}");
    }

    /// Pings answered by the speed of light in fibre from the nearest of `sites`, + 0.1 ms.
    struct Physics {
        sites: Vec<(f64, f64)>,
        asked: Mutex<Vec<Vec<u32>>>,
    }

    impl Physics {
        /// The RTTs of these probes (of `probes()`).
        fn rtts(&self, ids: &[u32]) -> Vec<ProbeRtt> {
            let all = probes();
            ids.iter()
                .filter_map(|id| all.iter().find(|p| p.id == *id))
                .map(|p| {
                    let km = self
                        .sites
                        .iter()
                        .map(|s| geo::distance_km(p.latitude, p.longitude, s.0, s.1))
                        .fold(f64::INFINITY, f64::min);
                    ProbeRtt {
                        probe_id: p.id,
                        latitude: p.latitude,
                        longitude: p.longitude,
                        rtt_ms: km / geo::KM_PER_MS_RTT + 0.1,
                    }
                })
                .collect()
        }
    }

    impl Measurer for Physics {
        fn ping<'a>(
            &'a self,
            _ip: IpAddr,
            probes: &'a [u32],
        ) -> BoxFuture<'a, Result<Vec<(u32, f64)>, Error>> {
            if let Ok(mut a) = self.asked.lock() {
                a.push(probes.to_vec());
            }
            let out = self
                .rtts(probes)
                .into_iter()
                .map(|r| (r.probe_id, r.rtt_ms))
                .collect();
            async move { Ok(out) }.boxed()
        }
    }

    fn stored_from(ip: IpAddr, m: &Physics, ids: &[u32]) -> StaticRtts {
        StaticRtts([(ip, m.rtts(ids))].into())
    }

    #[tokio::test]
    async fn rounds_follow_the_rtts_until_a_probe_is_close_enough() {
        let world = Arc::new(tiny());
        let ip: IpAddr = "8.8.8.8".parse().expect("ip");
        // The target is in Frankfurt; New York's anchor (stored) says little.
        let m = Arc::new(Physics {
            sites: vec![(50.11, 8.68)],
            asked: Mutex::default(),
        });
        let mut active = ActiveRtts::new(
            Arc::new(stored_from(ip, &m, &[1])),
            directory(),
            m.clone(),
            world,
        );
        active.probes_per_request = 1;
        active.rounds = 4;
        active.enough_rtt_ms = 0.5;
        let rtts = active.rtts(ip).await.expect("rtts");
        let asked = m.asked.lock().expect("lock").clone();
        // One probe a round, following the region the RTTs allow (Paris, Amsterdam,
        // then the probe 28 km from Frankfurt), until one answers under 0.5 ms: the
        // round budget is not spent after that.
        assert_eq!(asked, vec![vec![4], vec![2], vec![5]]);
        let rtt = |id| rtts.iter().find(|r| r.probe_id == id).map(|r| r.rtt_ms);
        assert!(rtt(5).is_some_and(|ms| ms < 0.5), "{rtts:?}");
        assert!(rtt(4).is_some_and(|ms| ms >= 0.5), "{rtts:?}");
        assert_eq!(rtts.len(), 4);
    }

    #[tokio::test]
    async fn anycast_sites_are_measured_each_on_its_own() {
        let world = Arc::new(tiny());
        let ip: IpAddr = "8.8.8.8".parse().expect("ip");
        // Sites in New York and Frankfurt: New York's probe is close to its site;
        // Amsterdam's RTT cannot hold together with it (speed of light).
        let m = Arc::new(Physics {
            sites: vec![(40.71, -74.0), (50.11, 8.68)],
            asked: Mutex::default(),
        });
        let mut active = ActiveRtts::new(
            Arc::new(stored_from(ip, &m, &[1, 2])),
            directory(),
            m.clone(),
            world,
        );
        active.probes_per_request = 2;
        active.rounds = 3;
        active.enough_rtt_ms = 0.5;
        let rtts = active.rtts(ip).await.expect("rtts");
        let asked = m.asked.lock().expect("lock").clone();
        // Only the European site lacks a close probe: the probe nearest Amsterdam's
        // answer is asked (5, west of Frankfurt), is close, and measuring stops.
        assert_eq!(asked, vec![vec![5]]);
        let sites = crate::engine::latency::anycast_sites(&rtts, 4);
        let ids: Vec<u32> = sites.iter().map(|s| s.probe_id).collect();
        assert_eq!(ids, vec![1, 5]);
    }

    #[tokio::test]
    async fn a_stored_rtt_under_10ms_needs_no_measurement() {
        let world = Arc::new(tiny());
        let ip: IpAddr = "8.8.8.8".parse().expect("ip");
        let measurer = Arc::new(FakeMeasurer::default());
        let mut stored = HashMap::new();
        stored.insert(
            ip,
            vec![ProbeRtt {
                probe_id: 3,
                latitude: 50.11,
                longitude: 8.68,
                rtt_ms: 2.0,
            }],
        );
        let active = ActiveRtts::new(
            Arc::new(StaticRtts(stored)),
            directory(),
            measurer.clone(),
            world,
        );
        assert_eq!(active.rtts(ip).await.expect("rtts").len(), 1);
        assert!(measurer.asked.lock().expect("lock").is_empty());
    }

    #[test]
    fn the_measurement_is_a_oneoff_ping_from_the_chosen_probes() {
        let m = ping_measurement(
            "geo-x",
            "vantage",
            "2001:4860::8888".parse().expect("ip"),
            &[3, 5],
        )
        .expect("measurement");
        assert!(m.spec.is_oneoff);
        assert_eq!(m.spec.definition.kind, "ping");
        assert_eq!(m.spec.definition.af, Some(6));
        assert_eq!(m.spec.probes.len(), 1);
        assert_eq!(m.spec.probes[0].kind, "probes");
        assert_eq!(m.spec.probes[0].value, "3,5");
        assert_eq!(m.spec.probes[0].requested, 2);
    }
}
