//! Calibrated CBG as a likelihood: where the target most probably is, given every
//! probe's RTT, its bestline, how paths stretch (learnt from the anchoring mesh) and
//! how much last-mile delay hosts have (learnt from the probes' own intercepts).
//!
//! CBG's disc intersection ([`super::latency::slack_region`]) keeps the places where
//! every RTT leaves the most room for the target's own access delay. That place leans
//! away from the nearest probes: a near probe with a slightly slow path constrains it
//! less than far probes do, although a low RTT from a near probe is the strongest
//! evidence there is. Here each place `x` is weighed instead:
//!
//! * every probe's RTT, less its intercept, less light's time over `d(probe, x)`, is the
//!   target's access delay `t` plus the path's excess; the excess, relative to the
//!   path's length (plus a floor for short paths), is log-normal with the median and
//!   spread the anchoring mesh shows ([`PathModel::fit`]);
//! * `t` is unknown and the same on every path: it is integrated out under an
//!   exponential prior whose mean is the probes' mean intercept (probes are hosts like
//!   the targets);
//! * hosts are where people are: a prior of population^[`POPULATION_EXPONENT`].
//!
//! The posterior and the people of CBG's region ([`super::latency::slack_region`]),
//! half each, give every country its share; the engine's best city in a country scores
//! 10 × that share × how sure the region is (its spread, how near the nearest probe
//! is, a radio last mile), so a
//! region across a border names both sides with what the RTTs say of each, and a
//! country-scoped vote (the RIR's) can tip a torn answer but not a clear one.
//!
//! Measured on the hard world (docs/GEOLOCATION.md): against the disc intersection
//! alone, within 40 km rose from 74.9 to 80.3 % (mean of five seeds), the median fell
//! from 6.6 to 1.7 km, and country rose from 96.5 to 97.3 %.

use std::collections::HashMap;

use serde::Serialize;

use super::calibration::{Calibration, PHYSICS_MS_PER_KM};
use super::latency::{
    disc_confidence, slack_region, ProbeRtt, SlackRegion, RADIO_LAST_MILE_MS, SLACK_TOLERANCE_MS,
};
use super::{clamp_score, Candidate};
use crate::geo;
use crate::world::{City, World};

/// A path's scale (light's RTT over it) is at least this, in the fit and in the
/// likelihood, so that a path of a few km does not make any excess improbable (ms). The
/// fit also adds it to every excess.
pub const SCALE_FLOOR_MS: f64 = 0.3;

/// The likelihood adds this to every excess: jitter, the intercept's own error (ms).
pub const EXCESS_FLOOR_MS: f64 = 0.1;

/// How far under its bestline a probe's RTT may be, as the line's error (ms): its
/// intercept is an estimate.
pub const LINE_ERROR_MS: f64 = 0.5;

/// The probes weighed: the lowest RTTs (far probes' RTTs say little, and their paths'
/// errors are not independent).
pub const PROBES_WEIGHED: usize = 12;

/// Hosts are where people are: the prior of a city is its population to this power
/// (below 1: a small town near the probes is not drowned by a city farther off).
pub const POPULATION_EXPONENT: f64 = 0.75;

/// A country's share of the vote: this much is the posterior's mass in it, the rest
/// the share of the CBG region's people who live in it. The posterior alone is surer
/// than it deserves where probes are few (all its mass on the probes' side of a
/// border 500 km off); the region's people are a broader, older measure.
pub const POSTERIOR_SHARE_WEIGHT: f64 = 0.5;

/// The vote is as sure as the nearest probe is near: beyond this (km, by its RTT with
/// both access delays off) the scores fall in proportion, so that the RIR's vote can
/// name the country where no probe is close (tuned on the hard world: 150 / 200 / 300
/// / 500 km).
pub const SURE_REACH_KM: f64 = 300.0;

/// Searches wider than this weigh towns of 20,000 people only (km).
const WIDE_KM: f64 = 600.0;

/// A country is named when it holds at least this share of the posterior.
const MIN_COUNTRY_SHARE: f64 = 0.05;

/// How paths stretch beyond light in fibre, as the anchoring mesh measured it: the
/// excess RTT of a path of `d` km, divided by `d × light's ms/km + SCALE_FLOOR_MS`, is
/// log-normal with these parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PathModel {
    /// ln of the median relative excess.
    pub mu: f64,
    /// Spread of ln(relative excess).
    pub sigma: f64,
    /// Mean access delay of a host (the probes' mean intercept), ms.
    pub access_mean_ms: f64,
    /// Mesh RTTs it was fitted to (0: the defaults).
    pub samples: usize,
}

impl Default for PathModel {
    /// Without a mesh: a median inflation of 1.7 with a 90th percentile near 2.8, and
    /// 2.5 ms of access delay: published figures for the Internet (docs/GEOLOCATION.md).
    fn default() -> Self {
        Self {
            mu: 0.7_f64.ln(),
            sigma: 0.74,
            access_mean_ms: 2.5,
            samples: 0,
        }
    }
}

impl PathModel {
    /// Fit from `(probe intercept, km, rtt)` mesh samples and the probes' intercepts.
    /// Robust: the median and the 10–90 % spread of ln(relative excess). Defaults are
    /// kept with fewer than 20 samples (spread) or 10 intercepts (access delay).
    pub fn fit(samples: &[(f64, f64, f64)], intercepts: &[f64]) -> PathModel {
        let mut logs: Vec<f64> = samples
            .iter()
            .filter(|(_, km, rtt)| km.is_finite() && rtt.is_finite() && *km > 1.0)
            .map(|(icpt, km, rtt)| {
                let excess = (rtt - icpt - km * PHYSICS_MS_PER_KM).max(0.0) + SCALE_FLOOR_MS;
                (excess / (km * PHYSICS_MS_PER_KM + SCALE_FLOOR_MS)).ln()
            })
            .filter(|v| v.is_finite())
            .collect();
        let mut model = PathModel::default();
        if logs.len() >= 20 {
            logs.sort_by(f64::total_cmp);
            let q = |p: f64| logs[((logs.len() - 1) as f64 * p).round() as usize];
            model.mu = q(0.5);
            model.sigma = ((q(0.9) - q(0.1)) / 2.563).clamp(0.2, 2.0);
            model.samples = logs.len();
        }
        let usable: Vec<f64> = intercepts
            .iter()
            .copied()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .collect();
        if usable.len() >= 10 {
            model.access_mean_ms =
                (usable.iter().sum::<f64>() / usable.len() as f64).clamp(0.5, 20.0);
        }
        model
    }

    /// ln of the density of a path's excess `x` ms on a path `scale` ms long (less the
    /// constant terms).
    /// An excess below zero (an RTT under the probe's bestline) is only the line's own
    /// error: Gaussian, [`LINE_ERROR_MS`].
    fn log_density(&self, x: f64, scale: f64) -> f64 {
        let v = x.max(0.0) + EXCESS_FLOOR_MS;
        let z = ((v / scale).ln() - self.mu) / self.sigma;
        let under = (x.min(0.0) / LINE_ERROR_MS).powi(2);
        -v.ln() - 0.5 * z * z - 0.5 * under
    }
}

/// One weighed place.
#[derive(Debug, Clone)]
pub struct Weighed<'w> {
    pub city: &'w City,
    /// Posterior probability (the candidates' sum is 1).
    pub p: f64,
}

/// The posterior over the places light in fibre allows; empty when no probe is within
/// reach ([`super::latency::REACH_KM`] after the access delays), or without RTTs.
pub fn posterior<'w>(world: &'w World, rtts: &[ProbeRtt], cal: &Calibration) -> Vec<Weighed<'w>> {
    let mut rtts: Vec<ProbeRtt> = rtts
        .iter()
        .filter(|r| {
            r.rtt_ms.is_finite()
                && r.rtt_ms >= 0.0
                && geo::valid_coordinates(r.latitude, r.longitude)
        })
        .copied()
        .collect();
    rtts.sort_by(|a, b| a.rtt_ms.total_cmp(&b.rtt_ms));
    let Some(tightest) = rtts.first().copied() else {
        return Vec::new();
    };
    let search_km = tightest.radius_km().max(10.0);
    if search_km > 5000.0 {
        return Vec::new();
    }
    let model = cal.paths();
    let weighed: Vec<(ProbeRtt, f64)> = rtts
        .iter()
        .take(PROBES_WEIGHED)
        .map(|r| (*r, cal.line(r.probe_id).intercept_ms))
        .collect();
    // No probe within reach ([`REACH_KM`], as calibrated CBG decides it): a city
    // would be a guess; the answer is left to the country-scoped engines.
    if slack_region(world, &rtts, cal, 0.0).is_none() {
        return Vec::new();
    }
    let min_population = if search_km > WIDE_KM { 20_000 } else { 0 };
    let a = model.access_mean_ms.max(0.1);
    let mut scored: Vec<(&City, f64)> = Vec::new();
    for (c, _) in world.within(tightest.latitude, tightest.longitude, search_km) {
        if c.population < min_population {
            continue;
        }
        // Light in fibre from every probe: a bound access delay never breaks.
        if !rtts.iter().all(|r| {
            geo::distance_km(r.latitude, r.longitude, c.latitude, c.longitude)
                <= r.radius_km().max(10.0)
        }) {
            continue;
        }
        let paths: Vec<(f64, f64)> = weighed
            .iter()
            .map(|(r, icpt)| {
                let km = geo::distance_km(r.latitude, r.longitude, c.latitude, c.longitude);
                let light = km * PHYSICS_MS_PER_KM;
                (r.rtt_ms - icpt - light, light + SCALE_FLOOR_MS)
            })
            .collect();
        let t_max = paths
            .iter()
            .map(|(e, _)| *e)
            .fold(f64::INFINITY, f64::min)
            .max(0.0);
        // Integrate the target's access delay out over a grid.
        const STEPS: usize = 16;
        let dt = (t_max / STEPS as f64).max(1e-6);
        let mut terms = Vec::with_capacity(STEPS + 1);
        for k in 0..=STEPS {
            let t = k as f64 * dt;
            let ll: f64 = paths
                .iter()
                .map(|(e, scale)| model.log_density(e - t, *scale))
                .sum();
            terms.push(ll - t / a + dt.ln());
        }
        let ll = log_sum_exp(&terms);
        let prior = POPULATION_EXPONENT * f64::from(c.population.max(1)).ln();
        scored.push((c, ll + prior));
    }
    let norm = log_sum_exp(&scored.iter().map(|(_, v)| *v).collect::<Vec<_>>());
    if !norm.is_finite() {
        return Vec::new();
    }
    let mut out: Vec<Weighed> = scored
        .into_iter()
        .map(|(city, v)| Weighed {
            city,
            p: (v - norm).exp(),
        })
        .collect();
    out.sort_by(|x, y| y.p.total_cmp(&x.p).then(x.city.id.cmp(&y.city.id)));
    out
}

fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// How sure the engine is of a region, 0–1: as the disc intersection is tight (sparse
/// probes: a wide region), falling in proportion beyond [`SURE_REACH_KM`] of the
/// nearest probe (the path model then decides between places it cannot tell apart),
/// and half as sure behind a radio link.
pub fn confidence(region: &SlackRegion) -> f64 {
    let mut c = disc_confidence(region.spread_km).sqrt();
    c *= (SURE_REACH_KM / region.reach_km.max(1.0)).min(1.0);
    if region.target_access_ms > RADIO_LAST_MILE_MS {
        c *= 0.5;
    }
    c
}

/// The candidates: in every country holding at least 5 % of the vote (half the
/// posterior's mass in it, half the CBG region's people), its best cities (30 in the
/// leading country, 3 in the others), each scoring 10 × its country's share × the
/// square root of its probability relative to the country's best × [`confidence`].
pub fn cbg_posterior(world: &World, rtts: &[ProbeRtt], cal: &Calibration) -> Vec<Candidate> {
    let weighed = posterior(world, rtts, cal);
    // Each country's share blends the posterior's with the people of the CBG region
    // in it; every score is scaled by how sure the region is.
    let region = slack_region(world, rtts, cal, SLACK_TOLERANCE_MS);
    let confidence = region.as_ref().map_or(1.0, confidence);
    let mut people: HashMap<&str, f64> = HashMap::new();
    if let Some(region) = &region {
        for (c, _) in &region.cities {
            *people.entry(c.country.as_str()).or_default() += f64::from(c.population);
        }
    }
    let total_people: f64 = people.values().sum();
    let blend = if total_people > 0.0 {
        1.0 - POSTERIOR_SHARE_WEIGHT
    } else {
        0.0
    };
    let mut share: HashMap<&str, f64> = HashMap::new();
    for w in &weighed {
        *share.entry(w.city.country.as_str()).or_default() += (1.0 - blend) * w.p;
    }
    for (cc, n) in &people {
        if let Some(s) = share.get_mut(cc) {
            *s += blend * n / total_people;
        }
    }
    let top_country = share
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(cc, _)| *cc);
    let mut best: HashMap<&str, f64> = HashMap::new();
    let mut kept: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::new();
    for w in &weighed {
        let cc = w.city.country.as_str();
        let s = share.get(cc).copied().unwrap_or(0.0);
        if s < MIN_COUNTRY_SHARE {
            continue;
        }
        let n = kept.entry(cc).or_default();
        let limit = if Some(cc) == top_country { 30 } else { 3 };
        if *n >= limit {
            continue;
        }
        let b = *best.entry(cc).or_insert(w.p);
        let raw = 10.0 * confidence * s * (w.p / b).sqrt();
        if let Some(score) = clamp_score(raw) {
            *n += 1;
            out.push(Candidate {
                city_id: w.city.id,
                score,
            });
        }
    }
    out.sort_by_key(|c| std::cmp::Reverse(c.score));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::tests::tiny;

    /// Samples whose ln(relative excess) runs evenly from `mu − 1.6σ` to `mu + 1.6σ`:
    /// median `mu`, and 10–90 % quantiles `mu ∓ 1.28σ`, as a log-normal's.
    fn samples(mu: f64, sigma: f64, n: usize) -> Vec<(f64, f64, f64)> {
        let k = 1.2816 / 0.8 * sigma;
        (0..n)
            .map(|i| {
                let p = (i as f64 + 0.5) / n as f64;
                let rel = (mu + k * (2.0 * p - 1.0)).exp();
                let km = 300.0 + 10.0 * i as f64;
                let light = km * PHYSICS_MS_PER_KM;
                let icpt = 2.0;
                let rtt = icpt + light + rel * (light + SCALE_FLOOR_MS) - SCALE_FLOOR_MS;
                (icpt, km, rtt)
            })
            .collect()
    }

    #[test]
    fn the_path_model_is_fitted_from_the_mesh() {
        let intercepts: Vec<f64> = (0..20).map(|i| f64::from(i % 5) + 1.0).collect();
        let m = PathModel::fit(&samples(0.9_f64.ln(), 0.5, 201), &intercepts);
        assert_eq!(m.samples, 201);
        assert!((m.mu - 0.9_f64.ln()).abs() < 0.01, "{m:?}");
        assert!((m.sigma - 0.5).abs() < 0.02, "{m:?}");
        assert!((m.access_mean_ms - 3.0).abs() < 1e-9, "{m:?}");
    }

    #[test]
    fn a_small_mesh_keeps_the_published_defaults() {
        let m = PathModel::fit(&samples(2.0_f64.ln(), 1.0, 19), &[1.0; 9]);
        assert_eq!(m, PathModel::default());
        // Garbage is left out, not fitted.
        let bad = vec![
            (0.0, f64::NAN, 5.0),
            (0.0, 0.5, 5.0),
            (0.0, 100.0, f64::INFINITY),
        ];
        assert_eq!(
            PathModel::fit(&bad, &[f64::NAN, -1.0]),
            PathModel::default()
        );
    }

    fn probe(id: u32, world: &World, city: u32, rtt_ms: f64) -> ProbeRtt {
        let c = world.city(city).expect("city");
        ProbeRtt {
            probe_id: id,
            latitude: c.latitude,
            longitude: c.longitude,
            rtt_ms,
        }
    }

    /// RTTs to a target at `at` as the hard world makes them: light × 1.7 plus 1 ms of
    /// the target's access delay, from probes in Amsterdam, London, Paris, Frankfurt.
    fn rtts_to(world: &World, at: u32) -> Vec<ProbeRtt> {
        rtts_from(world, at, &[2759794, 2643743, 2988507, 2925533])
    }

    /// The same from probes in the cities `from`.
    fn rtts_from(world: &World, at: u32, from: &[u32]) -> Vec<ProbeRtt> {
        let t = world.city(at).expect("target");
        from.iter()
            .enumerate()
            .map(|(i, &c)| {
                let p = world.city(c).expect("probe city");
                let km = geo::distance_km(p.latitude, p.longitude, t.latitude, t.longitude);
                probe(i as u32 + 1, world, c, 1.0 + 1.7 * km * PHYSICS_MS_PER_KM)
            })
            .collect()
    }

    fn share_of(weighed: &[Weighed], country: &str) -> f64 {
        weighed
            .iter()
            .filter(|w| w.city.country == country)
            .map(|w| w.p)
            .sum()
    }

    #[test]
    fn the_posterior_is_a_distribution_around_the_target() {
        let w = tiny();
        let cal = Calibration::default();
        let got = posterior(&w, &rtts_to(&w, 2747891), &cal);
        assert!(!got.is_empty());
        let total: f64 = got.iter().map(|x| x.p).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        assert!(
            got.windows(2).all(|p| p[0].p >= p[1].p),
            "most probable first"
        );
        // Rotterdam: the Netherlands hold most of the mass; London and Paris (the
        // biggest cities in reach) do not win on population alone.
        assert!(share_of(&got, "NL") > 0.5, "{got:?}");
        assert_eq!(got[0].city.country, "NL", "{got:?}");

        // The same probes, a target in Frankfurt: the mass moves to Germany.
        let got = posterior(&w, &rtts_to(&w, 2925533), &cal);
        assert!(share_of(&got, "DE") > 0.5, "{got:?}");
    }

    #[test]
    fn no_probe_in_reach_means_no_city() {
        let w = tiny();
        let cal = Calibration::default();
        // Light allows 6,000 km: too wide to search.
        assert!(posterior(&w, &[probe(1, &w, 1850147, 120.0)], &cal).is_empty());
        // 40 ms from New York and from Los Angeles: light allows either city, but only
        // as the far end of the other probe's disc; no probe is within REACH_KM.
        let far = [probe(1, &w, 5128581, 40.0), probe(2, &w, 5368361, 40.0)];
        assert!(cbg_posterior(&w, &far, &cal).is_empty());
        // No RTT, or only nonsense.
        assert!(posterior(&w, &[], &cal).is_empty());
        let mut bad = probe(1, &w, 2759794, f64::NAN);
        assert!(posterior(&w, &[bad], &cal).is_empty());
        bad.rtt_ms = -1.0;
        assert!(posterior(&w, &[bad], &cal).is_empty());
    }

    #[test]
    fn candidates_score_by_their_country_share() {
        let w = tiny();
        let cal = Calibration::default();
        let got = cbg_posterior(&w, &rtts_to(&w, 2747891), &cal);
        assert!(!got.is_empty());
        let top = w.city(got[0].city_id).expect("city");
        assert_eq!(top.country, "NL", "{got:?}");
        assert!(got.windows(2).all(|p| p[0].score >= p[1].score));
        assert!(got.iter().all(|c| (1..=10).contains(&c.score)), "{got:?}");
        // At most three cities of any other country.
        let mut per: HashMap<&str, usize> = HashMap::new();
        for c in &got {
            let cc = w.city(c.city_id).expect("city").country.as_str();
            *per.entry(cc).or_default() += 1;
        }
        assert!(per.iter().all(|(cc, n)| *cc == "NL" || *n <= 3), "{per:?}");
    }

    #[test]
    fn far_probes_vote_less_surely() {
        let w = tiny();
        let cal = Calibration::default();
        // A target in Frankfurt. Near: a probe in Mainz, 30 km off. Far: Hamburg,
        // Berlin, Paris and London, 390-640 km off.
        let (mainz, hamburg, berlin) = (2874225, 2911298, 2950159);
        let (paris, london, frankfurt) = (2988507, 2643743, 2925533);
        let region = |from: &[u32]| {
            slack_region(
                &w,
                &rtts_from(&w, frankfurt, from),
                &cal,
                SLACK_TOLERANCE_MS,
            )
            .expect("a region")
        };
        let near = region(&[mainz, hamburg, berlin, paris, london]);
        let far = region(&[hamburg, berlin, paris, london]);
        assert!(near.reach_km < 100.0, "{}", near.reach_km);
        assert!(far.reach_km > 350.0, "{}", far.reach_km);
        // The same region seen from twice as far is half as sure.
        let mut wide = far.clone();
        wide.reach_km = 2.0 * SURE_REACH_KM;
        let mut sure = far.clone();
        sure.reach_km = SURE_REACH_KM / 2.0;
        assert!((confidence(&wide) / confidence(&sure) - 0.5).abs() < 1e-9);
        // And a radio last mile halves it again.
        let mut radio = wide.clone();
        radio.target_access_ms = RADIO_LAST_MILE_MS + 1.0;
        assert!((confidence(&radio) / confidence(&wide) - 0.5).abs() < 1e-9);
        let top = |from: &[u32]| {
            cbg_posterior(&w, &rtts_from(&w, frankfurt, from), &cal)
                .first()
                .map(|c| c.score)
        };
        assert!(
            top(&[hamburg, berlin, paris, london]) < top(&[mainz, hamburg, berlin, paris, london])
        );
    }
}
