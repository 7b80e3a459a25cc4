//! The production calibration: every probe's bestline ([`super::calibration`]) fitted
//! to its pings of anchors in the built-in anchoring mesh, read from ClickHouse
//! `results`, cached and fitted again at most every `refresh`.
//!
//! The operator's anchoring mesh (`operator/src/builtin.rs`) pings anchor probe `p` in
//! the measurement `100000 + p` (ids [`ANCHOR_MESH`]..[`RESERVED_END`]): anchors ping
//! each other and every probe pings its nearest anchors and a few far ones. A ping row
//! with such an `msm_id` is a probe → anchor RTT: the probe is `prb_id`, the anchor
//! `msm_id − 100000`, and both are placed by the probe locations (`Probe.spec.location`).
//!
//! A refresh that fails keeps the last good calibration in force (counted in
//! `vantage_engines_calibration_refresh_failures_total`); until one has been fitted,
//! CBG gets physics (no access delay, light in fibre) rather than an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, Shared};
use futures::FutureExt;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::Deserialize;

use super::calibration::{AnchorRtt, Calibration, CalibrationSource};
use super::latency::ProbeLocations;
use crate::{geo, Error};

/// The first anchoring-mesh measurement id: a ping to anchor `p` is `ANCHOR_MESH + p`
/// (`operator/src/builtin.rs`).
pub const ANCHOR_MESH: u64 = 100_000;
/// The end (exclusive) of the measurement ids the operator reserves.
pub const RESERVED_END: u64 = 1_000_000;

/// How often a calibration is fitted again by default.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(600);

/// After a refresh that failed or fitted no probe, the next one is tried after this
/// at most (sooner when `refresh` is shorter): probe locations arrive after start.
pub const RETRY: Duration = Duration::from_secs(60);

/// The longest a read of the mesh's pings may take: a refresh that hangs would hold
/// every later one back.
pub const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The anchor a mesh measurement pings, `None` for any other measurement.
pub fn mesh_anchor(msm_id: u64) -> Option<u32> {
    if (ANCHOR_MESH..RESERVED_END).contains(&msm_id) {
        u32::try_from(msm_id - ANCHOR_MESH).ok()
    } else {
        None
    }
}

/// A probe's minimum RTT to an anchor of the mesh.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeshRtt {
    pub probe_id: u32,
    pub anchor_id: u32,
    pub rtt_ms: f64,
}

/// Mesh RTTs as the bestline fit takes them: the distance from the probe to the anchor
/// in place of the anchor. Rows whose probe or anchor has no known location, a probe's
/// ping of itself, and RTTs that are not positive are left out.
pub fn anchor_rtts(rows: &[MeshRtt], locations: &HashMap<u32, (f64, f64)>) -> Vec<AnchorRtt> {
    rows.iter()
        .filter(|r| r.probe_id != r.anchor_id && r.rtt_ms.is_finite() && r.rtt_ms > 0.0)
        .filter_map(|r| {
            let (plat, plon) = *locations.get(&r.probe_id)?;
            let (alat, alon) = *locations.get(&r.anchor_id)?;
            if !geo::valid_coordinates(plat, plon) || !geo::valid_coordinates(alat, alon) {
                return None;
            }
            Some(AnchorRtt {
                probe_id: r.probe_id,
                km: geo::distance_km(plat, plon, alat, alon),
                rtt_ms: r.rtt_ms,
            })
        })
        .collect()
}

/// Where mesh RTTs are read from (ClickHouse in production, a table in tests).
pub trait MeshRtts: Send + Sync {
    /// Every (probe, anchor) pair's minimum RTT.
    fn mesh_rtts(&self) -> BoxFuture<'_, Result<Vec<MeshRtt>, Error>>;
}

/// Mesh RTTs from ClickHouse `results`: per (probe, anchor), the least `rtt_min` of
/// the pings that got an answer within `max_age`.
pub struct ClickHouseMeshRtts {
    client: clickhouse::Client,
    db: String,
    max_age_s: u32,
}

#[derive(clickhouse::Row, Deserialize)]
struct MeshRow {
    prb_id: u32,
    msm_id: u64,
    rtt: f64,
}

impl ClickHouseMeshRtts {
    pub fn new(url: &str, db: &str, max_age: Duration) -> Result<Self, Error> {
        crate::check_db_name(db)?;
        Ok(Self {
            client: clickhouse::Client::default()
                .with_url(url)
                .with_validation(false),
            db: db.to_owned(),
            max_age_s: u32::try_from(max_age.as_secs()).unwrap_or(u32::MAX),
        })
    }
}

impl MeshRtts for ClickHouseMeshRtts {
    fn mesh_rtts(&self) -> BoxFuture<'_, Result<Vec<MeshRtt>, Error>> {
        async move {
            let what = || {
                format!(
                    "reading the anchoring mesh's pings from {}.results for CBG's calibration \
                     (is ClickHouse up at --clickhouse-url, and has the collector created \
                     results in --clickhouse-db?)",
                    self.db
                )
            };
            let read = self
                .client
                .query(&format!(
                    "SELECT prb_id, msm_id, toFloat64(min(rtt_min)) AS rtt FROM {}.results \
                     WHERE type = 'ping' AND msm_id >= {ANCHOR_MESH} AND msm_id < {RESERVED_END} \
                     AND rtt_min > 0 AND rcvd > 0 AND timestamp > now() - {} \
                     GROUP BY prb_id, msm_id ORDER BY prb_id, msm_id",
                    self.db, self.max_age_s
                ))
                .fetch_all::<MeshRow>();
            let rows = tokio::time::timeout(READ_TIMEOUT, read)
                .await
                .map_err(|_| Error::Store {
                    what: what(),
                    source: clickhouse::error::Error::TimedOut,
                })?
                .map_err(|source| Error::Store {
                    what: what(),
                    source,
                })?;
            Ok(rows
                .into_iter()
                .filter_map(|r| {
                    Some(MeshRtt {
                        probe_id: r.prb_id,
                        anchor_id: mesh_anchor(r.msm_id)?,
                        rtt_ms: r.rtt,
                    })
                })
                .collect())
        }
        .boxed()
    }
}

/// How old the calibration in force is, read at scrape time (none: not exported).
#[derive(Debug, Clone, Default)]
struct Age(Arc<Mutex<Option<Instant>>>);

impl Age {
    fn set(&self, at: Instant) {
        if let Ok(mut fitted) = self.0.lock() {
            *fitted = Some(at);
        }
    }

    fn seconds(&self) -> Option<f64> {
        let fitted = (*self.0.lock().ok()?)?;
        Some(fitted.elapsed().as_secs_f64())
    }
}

impl EncodeMetric for Age {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.seconds().unwrap_or(0.0))
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }

    fn is_empty(&self) -> bool {
        self.seconds().is_none()
    }
}

/// `vantage_engines_calibration_*`.
#[derive(Debug, Clone, Default)]
pub struct CalibrationMetrics {
    probes: Gauge,
    refresh_failures: Counter,
    physics: Counter,
    age: Age,
}

impl CalibrationMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "calibration_probes",
            "Probes with a bestline (access delay and slope) fitted to their anchoring-mesh pings, in the calibration in force",
            self.probes.clone(),
        );
        registry.register(
            "calibration_refresh_failures",
            "Calibration refreshes that could not read the anchoring-mesh pings from ClickHouse (the last good calibration stays in force)",
            self.refresh_failures.clone(),
        );
        registry.register(
            "calibration_physics",
            "Calibrations asked for before any was fitted, answered with physics (no access delay, light in fibre)",
            self.physics.clone(),
        );
        registry.register(
            "calibration_age_seconds",
            "Seconds since the calibration in force was fitted (absent before the first)",
            self.age.clone(),
        );
    }

    /// Probes in the calibration in force.
    pub fn probes(&self) -> i64 {
        self.probes.get()
    }

    /// Refreshes that failed so far.
    pub fn refresh_failures(&self) -> u64 {
        self.refresh_failures.get()
    }

    /// Calibrations answered with physics so far.
    pub fn physics(&self) -> u64 {
        self.physics.get()
    }

    /// Seconds since the calibration in force was fitted; `None` before the first.
    pub fn age_seconds(&self) -> Option<f64> {
        self.age.seconds()
    }
}

/// A refresh in flight: the calibration it fitted, or why it failed.
type Refresh = Shared<BoxFuture<'static, Result<Arc<Calibration>, Arc<Error>>>>;

#[derive(Default)]
struct State {
    /// The last good calibration (at least one probe fitted).
    good: Option<Arc<Calibration>>,
    /// No refresh starts before this (`None`: the next ask starts one).
    next_attempt: Option<Instant>,
    /// The refresh every caller shares.
    pending: Option<Refresh>,
    /// A refresh that fitted nothing has been reported since the last good one.
    reported_empty: bool,
}

struct Inner {
    reader: Arc<dyn MeshRtts>,
    locations: ProbeLocations,
    refresh: Duration,
    retry: Duration,
    metrics: CalibrationMetrics,
    state: Mutex<State>,
}

impl Inner {
    fn state(&self) -> Result<MutexGuard<'_, State>, Error> {
        self.state.lock().map_err(|_| Error::Poisoned {
            what: "calibration",
        })
    }

    async fn fit(&self) -> Result<(Calibration, usize), Error> {
        let rows = self.reader.mesh_rtts().await?;
        let samples = {
            let locations = self.locations.read().map_err(|_| Error::Poisoned {
                what: "probe locations",
            })?;
            anchor_rtts(&rows, &locations)
        };
        Ok((Calibration::fit(samples), rows.len()))
    }

    async fn refresh(self: Arc<Self>) -> Result<Arc<Calibration>, Arc<Error>> {
        let fitted = self.fit().await;
        let now = Instant::now();
        let mut state = self.state().map_err(Arc::new)?;
        state.pending = None;
        match fitted {
            Ok((cal, rows)) if !cal.is_empty() => {
                let cal = Arc::new(cal);
                let first = state.good.is_none();
                state.good = Some(cal.clone());
                state.next_attempt = Some(now + self.refresh);
                state.reported_empty = false;
                self.metrics
                    .probes
                    .set(i64::try_from(cal.len()).unwrap_or(i64::MAX));
                self.metrics.age.set(now);
                if first {
                    tracing::info!(
                        probes = cal.len(),
                        mesh_rtts = rows,
                        "CBG calibration fitted to the anchoring mesh"
                    );
                } else {
                    tracing::debug!(
                        probes = cal.len(),
                        mesh_rtts = rows,
                        "CBG calibration refreshed"
                    );
                }
                Ok(cal)
            }
            Ok((cal, rows)) => {
                state.next_attempt = Some(now + self.retry);
                if !state.reported_empty {
                    state.reported_empty = true;
                    tracing::warn!(
                        mesh_rtts = rows,
                        probes_located = self.locations.read().map(|l| l.len()).unwrap_or(0),
                        calibrated = state.good.as_ref().map_or(0, |c| c.len()),
                        "CBG calibration: no probe could be fitted (no anchoring-mesh pings in ClickHouse within the RTT max age, or probe locations not known yet); keeping the last calibration, or physics without one, and trying again"
                    );
                }
                Ok(Arc::new(cal))
            }
            Err(e) => {
                state.next_attempt = Some(now + self.retry);
                self.metrics.refresh_failures.inc();
                tracing::warn!(
                    error = %e,
                    calibrated = state.good.as_ref().map_or(0, |c| c.len()),
                    retry_in_s = self.retry.as_secs_f64(),
                    "CBG calibration refresh failed; keeping the last calibration, or physics without one"
                );
                Err(Arc::new(e))
            }
        }
    }
}

/// The CBG calibration fitted to the anchoring mesh's pings (ClickHouse `results`),
/// fitted again at most every `refresh`. Callers asking at once share one refresh;
/// while a refresh runs, callers get the calibration in force without waiting.
pub struct ClickHouseCalibration {
    inner: Arc<Inner>,
}

impl ClickHouseCalibration {
    /// Over `{db}.results` at `url`: pings of the last `max_age`, fitted again at most
    /// every `refresh`.
    pub fn new(
        url: &str,
        db: &str,
        locations: ProbeLocations,
        max_age: Duration,
        refresh: Duration,
    ) -> Result<Self, Error> {
        Ok(Self::with_reader(
            Arc::new(ClickHouseMeshRtts::new(url, db, max_age)?),
            locations,
            refresh,
        ))
    }

    /// Over any reader of mesh RTTs.
    pub fn with_reader(
        reader: Arc<dyn MeshRtts>,
        locations: ProbeLocations,
        refresh: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                reader,
                locations,
                // A year at most: an `Instant` this far ahead is still representable.
                refresh: refresh.min(Duration::from_secs(365 * 86_400)),
                retry: refresh.min(RETRY),
                metrics: CalibrationMetrics::default(),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Count into these metrics (shared with the registry). Call it before the first
    /// [`CalibrationSource::calibration`]: once a refresh has started it holds the
    /// metrics it counts into, and these are not taken.
    pub fn with_metrics(mut self, metrics: CalibrationMetrics) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.metrics = metrics;
        }
        self
    }

    pub fn metrics(&self) -> &CalibrationMetrics {
        &self.inner.metrics
    }

    /// Wait for the refresh in flight, if any; its calibration, or why it failed.
    pub async fn settled(&self) -> Option<Result<Arc<Calibration>, Arc<Error>>> {
        let pending = self.inner.state().ok()?.pending.clone();
        Some(pending?.await)
    }

    /// The calibration in force, starting a refresh when it is due; `None` before the
    /// first good one, and the refresh to wait for.
    fn current(&self) -> Result<(Option<Arc<Calibration>>, Option<Refresh>), Error> {
        let mut state = self.inner.state()?;
        let due = state.next_attempt.is_none_or(|t| Instant::now() >= t);
        if due && state.pending.is_none() {
            let refresh: BoxFuture<'static, _> = self.inner.clone().refresh().boxed();
            let refresh = refresh.shared();
            // Finish it even when every caller gives up waiting (an engine timeout).
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(refresh.clone());
            }
            state.pending = Some(refresh);
        }
        Ok((state.good.clone(), state.pending.clone()))
    }
}

impl CalibrationSource for ClickHouseCalibration {
    fn calibration(&self) -> BoxFuture<'_, Result<Arc<Calibration>, Error>> {
        async move {
            let (good, pending) = self.current()?;
            if let Some(good) = good {
                return Ok(good);
            }
            if let Some(Ok(cal)) = match pending {
                Some(refresh) => Some(refresh.await),
                None => None,
            } {
                if !cal.is_empty() {
                    return Ok(cal);
                }
            }
            self.inner.metrics.physics.inc();
            Ok(Arc::new(Calibration::default()))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::calibration::PHYSICS_MS_PER_KM;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::RwLock;

    #[test]
    fn mesh_ids_name_anchors() {
        assert_eq!(mesh_anchor(100_000), Some(0));
        assert_eq!(mesh_anchor(100_042), Some(42));
        assert_eq!(mesh_anchor(999_999), Some(899_999));
        assert_eq!(mesh_anchor(99_999), None);
        assert_eq!(mesh_anchor(1_000_000), None);
        assert_eq!(mesh_anchor(1_000_001), None);
        assert_eq!(mesh_anchor(1), None);
    }

    #[test]
    fn mesh_rows_become_distances_to_located_anchors() {
        let locations: HashMap<u32, (f64, f64)> = [
            (1, (52.37, 4.89)),  // probe, Amsterdam
            (10, (50.11, 8.68)), // anchor, Frankfurt
            (11, (48.85, 2.35)), // anchor, Paris
            (12, (200.0, 0.0)),  // anchor with a broken location
        ]
        .into_iter()
        .collect();
        let row = |probe_id, anchor_id, rtt_ms| MeshRtt {
            probe_id,
            anchor_id,
            rtt_ms,
        };
        let got = anchor_rtts(
            &[
                row(1, 10, 7.5),
                row(1, 11, 9.0),
                row(1, 12, 3.0),  // anchor location invalid
                row(1, 13, 3.0),  // anchor unknown
                row(2, 10, 3.0),  // probe unknown
                row(10, 10, 0.1), // an anchor's ping of itself
                row(10, 11, 0.0), // no RTT
                row(10, 11, f64::NAN),
                row(10, 11, 6.0),
            ],
            &locations,
        );
        let ams_fra = geo::distance_km(52.37, 4.89, 50.11, 8.68);
        let ams_par = geo::distance_km(52.37, 4.89, 48.85, 2.35);
        let fra_par = geo::distance_km(50.11, 8.68, 48.85, 2.35);
        assert!((360.0..370.0).contains(&ams_fra), "{ams_fra}");
        assert_eq!(
            got,
            vec![
                AnchorRtt {
                    probe_id: 1,
                    km: ams_fra,
                    rtt_ms: 7.5
                },
                AnchorRtt {
                    probe_id: 1,
                    km: ams_par,
                    rtt_ms: 9.0
                },
                AnchorRtt {
                    probe_id: 10,
                    km: fra_par,
                    rtt_ms: 6.0
                },
            ]
        );
    }

    /// Mesh RTTs from a script: each read takes the next outcome (the last repeats),
    /// after `delay`.
    struct Scripted {
        outcomes: Mutex<VecDeque<Result<Vec<MeshRtt>, String>>>,
        reads: AtomicUsize,
        delay: Duration,
    }

    impl Scripted {
        fn new(outcomes: Vec<Result<Vec<MeshRtt>, String>>, delay: Duration) -> Arc<Self> {
            Arc::new(Self {
                outcomes: Mutex::new(outcomes.into()),
                reads: AtomicUsize::new(0),
                delay,
            })
        }
        fn reads(&self) -> usize {
            self.reads.load(Ordering::SeqCst)
        }
    }

    impl MeshRtts for Scripted {
        fn mesh_rtts(&self) -> BoxFuture<'_, Result<Vec<MeshRtt>, Error>> {
            async move {
                self.reads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                let mut outcomes = self.outcomes.lock().expect("script lock");
                let next = if outcomes.len() > 1 {
                    outcomes.pop_front()
                } else {
                    outcomes.front().cloned()
                };
                match next.expect("a scripted outcome") {
                    Ok(rows) => Ok(rows),
                    Err(problem) => Err(Error::Config { problem }),
                }
            }
            .boxed()
        }
    }

    /// Probe 1 at the equator, anchors 10 (100 km east) and 11 (1,000 km east); probe 1
    /// is `access` ms behind its last mile, its path to anchor 10 straight.
    fn world(access: f64) -> (ProbeLocations, Vec<MeshRtt>) {
        let deg = |km: f64| km / 111.195;
        let locations: HashMap<u32, (f64, f64)> = [
            (1, (0.0, 0.0)),
            (10, (0.0, deg(100.0))),
            (11, (0.0, deg(1000.0))),
        ]
        .into_iter()
        .collect();
        let rtt = |km: f64, stretch: f64| access + km * PHYSICS_MS_PER_KM * stretch;
        let rows = vec![
            MeshRtt {
                probe_id: 1,
                anchor_id: 10,
                rtt_ms: rtt(geo::distance_km(0.0, 0.0, 0.0, deg(100.0)), 1.0),
            },
            MeshRtt {
                probe_id: 1,
                anchor_id: 11,
                rtt_ms: rtt(geo::distance_km(0.0, 0.0, 0.0, deg(1000.0)), 1.5),
            },
        ];
        (Arc::new(RwLock::new(locations)), rows)
    }

    #[tokio::test]
    async fn callers_at_once_share_one_read_and_the_fit_is_cached() {
        let (locations, rows) = world(4.0);
        let reader = Scripted::new(vec![Ok(rows)], Duration::from_millis(30));
        let cal = ClickHouseCalibration::with_reader(
            reader.clone(),
            locations,
            Duration::from_secs(3600),
        );
        let asks = (0..8).map(|_| cal.calibration());
        let got = futures::future::join_all(asks).await;
        assert_eq!(reader.reads(), 1, "eight callers at once, one read");
        for c in got {
            let c = c.expect("calibration");
            assert_eq!(c.len(), 1);
            let line = c.line(1);
            assert!((line.intercept_ms - 4.0).abs() < 1e-9, "{line:?}");
        }
        // Within `refresh`: the cached fit, no read.
        let again = cal.calibration().await.expect("calibration");
        assert_eq!(again.len(), 1);
        assert_eq!(reader.reads(), 1);
        assert_eq!(cal.metrics().probes(), 1);
        assert_eq!(cal.metrics().physics(), 0);
        let age = cal.metrics().age_seconds().expect("an age once fitted");
        assert!((0.0..60.0).contains(&age), "{age}");
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_last_good_calibration() {
        let (locations, rows) = world(4.0);
        let (_, slower) = world(9.0);
        let reader = Scripted::new(
            vec![Ok(rows), Err("ClickHouse is down".into()), Ok(slower)],
            Duration::ZERO,
        );
        // Every ask finds the calibration due: each starts a refresh (none in flight).
        let cal = ClickHouseCalibration::with_reader(reader.clone(), locations, Duration::ZERO);
        let first = cal.calibration().await.expect("first");
        assert!((first.line(1).intercept_ms - 4.0).abs() < 1e-9);
        assert_eq!(reader.reads(), 1);
        // Due again: the refresh starts and fails; callers meanwhile get the last good one.
        let during = cal.calibration().await.expect("during the failing refresh");
        assert!(Arc::ptr_eq(&during, &first));
        let failed = cal.settled().await.expect("a refresh in flight");
        assert!(failed
            .expect_err("the scripted failure")
            .to_string()
            .contains("ClickHouse is down"));
        assert_eq!(reader.reads(), 2);
        assert_eq!(cal.metrics().refresh_failures(), 1);
        let after = cal.calibration().await.expect("after the failure");
        assert!(
            Arc::ptr_eq(&after, &first),
            "still the last good calibration"
        );
        // The next refresh reads the slower world and puts it in force.
        let refreshed = cal
            .settled()
            .await
            .expect("a refresh in flight")
            .expect("fitted");
        assert!((refreshed.line(1).intercept_ms - 9.0).abs() < 1e-9);
        let now = cal.calibration().await.expect("after the refresh");
        assert!((now.line(1).intercept_ms - 9.0).abs() < 1e-9, "{now:?}");
        assert_eq!(cal.metrics().refresh_failures(), 1);
        assert_eq!(cal.metrics().physics(), 0);
    }

    #[tokio::test]
    async fn without_a_good_calibration_callers_get_physics() {
        let (locations, rows) = world(4.0);
        let reader = Scripted::new(
            vec![Err("no route to ClickHouse".into()), Ok(rows)],
            Duration::ZERO,
        );
        let cal = ClickHouseCalibration::with_reader(
            reader.clone(),
            locations.clone(),
            Duration::from_secs(3600),
        );
        let got = cal.calibration().await.expect("physics, not an error");
        assert!(got.is_empty());
        assert_eq!(cal.metrics().refresh_failures(), 1);
        assert_eq!(cal.metrics().physics(), 1);
        assert_eq!(cal.metrics().age_seconds(), None);
        // The retry waits (a minute at most): asking again does not read again.
        let again = cal.calibration().await.expect("physics");
        assert!(again.is_empty());
        assert_eq!(reader.reads(), 1);
        assert_eq!(cal.metrics().physics(), 2);

        // Mesh RTTs, but no probe located yet: nothing fitted, physics, no failure.
        let (_, rows) = world(4.0);
        let empty: ProbeLocations = Default::default();
        let reader = Scripted::new(vec![Ok(rows)], Duration::ZERO);
        let cal = ClickHouseCalibration::with_reader(reader.clone(), empty.clone(), Duration::ZERO);
        assert!(cal.calibration().await.expect("physics").is_empty());
        assert_eq!(cal.metrics().refresh_failures(), 0);
        assert_eq!(cal.metrics().physics(), 1);
        // Once the probes are known the next refresh fits them.
        *empty.write().expect("locations") = locations.read().expect("locations").clone();
        let fitted = cal.calibration().await.expect("fitted");
        assert_eq!(fitted.len(), 1);
        assert_eq!(reader.reads(), 2);
    }

    #[test]
    fn metrics_are_exported_under_the_engines_prefix() {
        let metrics = CalibrationMetrics::default();
        let mut registry = Registry::with_prefix("vantage_engines");
        metrics.register(&mut registry);
        let text = |r: &Registry| {
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, r).expect("encode");
            s
        };
        let before = text(&registry);
        assert!(
            before.contains("vantage_engines_calibration_probes 0"),
            "{before}"
        );
        assert!(before.contains("vantage_engines_calibration_refresh_failures_total 0"));
        assert!(before.contains("vantage_engines_calibration_physics_total 0"));
        assert!(
            !before.contains("vantage_engines_calibration_age_seconds "),
            "{before}"
        );
        metrics.age.set(Instant::now());
        metrics.probes.set(7);
        let after = text(&registry);
        assert!(
            after.contains("vantage_engines_calibration_age_seconds "),
            "{after}"
        );
        assert!(after.contains("vantage_engines_calibration_probes 7"));
    }
}
