//! Per-probe calibration from the anchoring mesh: CBG's *bestline* (Gueye et al.,
//! "Constraint-based geolocation of Internet hosts", 2006).
//!
//! Every probe has pinged anchors, hosts of known position with no access delay of
//! their own. Plotted as (distance, RTT), a probe's points lie above a line
//! `rtt = intercept + slope × distance`: the *intercept* is the probe's own access
//! delay (its last mile: DSL, cable, Wi-Fi), paid on every path it measures; the
//! *slope* is the fastest its paths have been (no faster than light in fibre, 100 km
//! per ms of RTT). CBG fits the line below every point that lies closest to them (a
//! linear programme); that line pivots towards the middle of the distances and, on the
//! hard simulated world, underestimated access delays by up to 3 ms (5th percentile),
//! which cut true places out of the discs. Here the intercept is pinned to the most
//! access delay physics allows (the least of RTT − distance at light's speed over the
//! anchors: tight when the nearest anchor's path is straight; median +0.4 ms over the
//! truth there), and the slope is the steepest from it that stays under every anchor.
//! A target answering in `rtt` ms is then within `(rtt − intercept) / slope` km.
//!
//! Where a probe has no anchor RTTs its line is physics: no intercept, 100 km per ms.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Serialize;

use super::posterior::PathModel;
use crate::{geo, Error};

/// Light in fibre: RTT per km of distance (the least slope a line may have).
pub const PHYSICS_MS_PER_KM: f64 = 1.0 / geo::KM_PER_MS_RTT;

/// The steepest slope taken from anchor points: 25 km per ms of RTT (an inflation of
/// 4 over the great circle). A probe whose anchors are all far and slow gets no more
/// than this, so that its discs for near targets are not drawn too small.
pub const MAX_MS_PER_KM: f64 = 4.0 * PHYSICS_MS_PER_KM;

/// The most access delay an intercept may claim (ms): more is a measuring fault.
pub const MAX_INTERCEPT_MS: f64 = 50.0;

/// One probe's bestline.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bestline {
    /// The probe's own access delay, ms.
    pub intercept_ms: f64,
    /// RTT per km of distance on its best paths, ms/km.
    pub ms_per_km: f64,
    /// Anchor RTTs it was fitted to (0: physics, no data).
    pub samples: usize,
}

impl Bestline {
    /// No calibration: no access delay, light in fibre.
    pub const PHYSICS: Bestline = Bestline {
        intercept_ms: 0.0,
        ms_per_km: PHYSICS_MS_PER_KM,
        samples: 0,
    };

    /// The bestline under `(distance km, rtt ms)` points, `None` without a usable one.
    /// Points faster than light (a measuring fault) are left out; the line never
    /// claims more than [`MAX_INTERCEPT_MS`] nor a slope outside
    /// [`PHYSICS_MS_PER_KM`]..=[`MAX_MS_PER_KM`].
    pub fn fit(points: &[(f64, f64)]) -> Option<Bestline> {
        let pts: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && *x >= 0.0 && *y >= 0.0)
            .filter(|(x, y)| *y + 1e-9 >= PHYSICS_MS_PER_KM * x)
            .collect();
        if pts.is_empty() {
            return None;
        }
        // The most access delay physics allows: every anchor's RTT less its distance at
        // the speed of light in fibre; the nearest, straightest path makes it tight.
        let intercept_ms = pts
            .iter()
            .map(|(x, y)| y - PHYSICS_MS_PER_KM * x)
            .fold(f64::INFINITY, f64::min)
            .clamp(0.0, MAX_INTERCEPT_MS);
        // The steepest line from there that stays under every anchor.
        let ms_per_km = pts
            .iter()
            .filter(|(x, _)| *x > 1.0)
            .map(|(x, y)| (y - intercept_ms) / x)
            .fold(MAX_MS_PER_KM, f64::min)
            .max(PHYSICS_MS_PER_KM);
        Some(Bestline {
            intercept_ms,
            ms_per_km,
            samples: pts.len(),
        })
    }

    /// The farthest a target answering in `rtt_ms` can be, km.
    pub fn max_km(&self, rtt_ms: f64) -> f64 {
        (rtt_ms - self.intercept_ms).max(0.0) / self.ms_per_km
    }

    /// The least RTT this probe can see to a place `km` away.
    pub fn min_rtt_ms(&self, km: f64) -> f64 {
        self.intercept_ms + self.ms_per_km * km
    }
}

/// An anchor RTT: the probe, the distance to the anchor it pinged, the minimum RTT.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnchorRtt {
    pub probe_id: u32,
    pub km: f64,
    pub rtt_ms: f64,
}

/// Every probe's bestline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calibration {
    lines: HashMap<u32, Bestline>,
    paths: PathModel,
}

impl Calibration {
    /// Fit every probe's bestline to its anchor RTTs.
    pub fn fit(samples: impl IntoIterator<Item = AnchorRtt>) -> Self {
        let mut by_probe: HashMap<u32, Vec<(f64, f64)>> = HashMap::new();
        for s in samples {
            by_probe
                .entry(s.probe_id)
                .or_default()
                .push((s.km, s.rtt_ms));
        }
        let lines: HashMap<u32, Bestline> = by_probe
            .iter()
            .filter_map(|(id, pts)| Some((*id, Bestline::fit(pts)?)))
            .collect();
        let samples: Vec<(f64, f64, f64)> = by_probe
            .iter()
            .filter_map(|(id, pts)| Some((lines.get(id)?.intercept_ms, pts)))
            .flat_map(|(icpt, pts)| pts.iter().map(move |(km, rtt)| (icpt, *km, *rtt)))
            .collect();
        let intercepts: Vec<f64> = lines.values().map(|l| l.intercept_ms).collect();
        Self {
            paths: PathModel::fit(&samples, &intercepts),
            lines,
        }
    }

    /// How paths stretch and how much access delay hosts have, from the same mesh.
    pub fn paths(&self) -> PathModel {
        self.paths
    }

    /// A probe's line; physics when it has none.
    pub fn line(&self, probe_id: u32) -> Bestline {
        self.lines
            .get(&probe_id)
            .copied()
            .unwrap_or(Bestline::PHYSICS)
    }

    /// Probes with a fitted line.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Where the calibration comes from (the anchoring measurements in ClickHouse, or a
/// fixed one); read again by the source as it sees fit.
pub trait CalibrationSource: Send + Sync {
    fn calibration(&self) -> BoxFuture<'_, Result<Arc<Calibration>, Error>>;
}

/// A calibration computed once.
pub struct FixedCalibration(pub Arc<Calibration>);

impl CalibrationSource for FixedCalibration {
    fn calibration(&self) -> BoxFuture<'_, Result<Arc<Calibration>, Error>> {
        let c = self.0.clone();
        async move { Ok(c) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bestline_finds_the_access_delay_and_the_fastest_paths() {
        // A probe 3 ms behind its last mile; its nearest anchor's path is straight,
        // the others are slower.
        let access = 3.0;
        let pts = vec![
            (100.0, access + 100.0 * PHYSICS_MS_PER_KM),
            (400.0, access + 400.0 * PHYSICS_MS_PER_KM * 1.8),
            (900.0, access + 900.0 * PHYSICS_MS_PER_KM * 1.3),
            (2500.0, access + 2500.0 * PHYSICS_MS_PER_KM * 1.5),
        ];
        let line = Bestline::fit(&pts).expect("line");
        assert!((line.intercept_ms - 3.0).abs() < 1e-9, "{line:?}");
        // The steepest slope under every anchor: the 100 km one, at light's speed.
        assert!(
            (line.ms_per_km - PHYSICS_MS_PER_KM).abs() < 1e-12,
            "{line:?}"
        );
        assert_eq!(line.samples, 4);
        // Every anchor lies inside its disc.
        for (km, rtt) in &pts {
            assert!(line.max_km(*rtt) + 1e-6 >= *km);
        }
        assert_eq!(line.max_km(1.0), 0.0);
        // Without a near straight path the intercept is an upper bound, the line still
        // under every anchor.
        let far = Bestline::fit(&pts[1..]).expect("line");
        assert!(
            far.ms_per_km >= PHYSICS_MS_PER_KM && far.intercept_ms >= 3.0,
            "{far:?}"
        );
        for (km, rtt) in &pts[1..] {
            assert!(far.max_km(*rtt) + 1e-6 >= *km);
        }
    }

    #[test]
    fn the_line_stays_within_physics() {
        // One anchor: the slope is light's, the intercept what is left.
        let one = Bestline::fit(&[(500.0, 9.0)]).expect("line");
        assert!((one.ms_per_km - PHYSICS_MS_PER_KM).abs() < 1e-12);
        assert!((one.intercept_ms - (9.0 - 500.0 * PHYSICS_MS_PER_KM)).abs() < 1e-9);
        // Points faster than light are a fault and left out; none left: no line.
        assert_eq!(Bestline::fit(&[(1000.0, 1.0)]), None);
        assert_eq!(Bestline::fit(&[(f64::NAN, 1.0)]), None);
        // Far, slow anchors only: no steeper than the cap.
        let far = Bestline::fit(&[(3000.0, 200.0), (3100.0, 205.0)]).expect("line");
        assert!(far.ms_per_km <= MAX_MS_PER_KM + 1e-12, "{far:?}");
        assert!(far.intercept_ms <= MAX_INTERCEPT_MS);
    }

    #[test]
    fn probes_without_anchor_rtts_get_physics() {
        let cal = Calibration::fit([
            AnchorRtt {
                probe_id: 1,
                km: 100.0,
                rtt_ms: 6.0,
            },
            AnchorRtt {
                probe_id: 1,
                km: 1000.0,
                rtt_ms: 24.0,
            },
        ]);
        assert_eq!(cal.len(), 1);
        let l = cal.line(1);
        // The most access delay physics allows: 6 ms less 100 km at light's speed.
        assert!(
            (l.intercept_ms - (6.0 - 100.0 * PHYSICS_MS_PER_KM)).abs() < 1e-9,
            "{l:?}"
        );
        assert_eq!(cal.line(2), Bestline::PHYSICS);
    }
}
