//! An in-process accuracy simulation: probes in real cities, targets in other cities,
//! RTT = great-circle distance × detour / (⅔ c) + noise. The network-namespace harness
//! (real pings through netem) is the next step; this measures the engines' arithmetic
//! on the same model. `cargo run --release -p vantage-engines --example geo_eval`.

use std::collections::HashMap;

use serde::Serialize;

use crate::engine::latency::{self, ProbeRtt};
use crate::engine::rdns::Rules;
use crate::engine::Candidate;
use crate::geo;
use crate::reducer::{reduce, Partial};
use crate::world::{City, World};

/// The simulated world's knobs.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub probes: usize,
    pub targets: usize,
    /// Cities at least this populous host probes and targets.
    pub min_population: u32,
    /// Path length / great-circle distance, drawn uniformly in this range.
    pub detour: (f64, f64),
    /// Extra RTT in ms, drawn uniformly in 0..noise_ms (last mile, queueing).
    pub noise_ms: f64,
    /// Share of targets whose PTR name carries the airport code of their city.
    pub ptr_share: f64,
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            probes: 800,
            targets: 300,
            min_population: 100_000,
            detour: (1.0, 1.3),
            noise_ms: 0.5,
            ptr_share: 0.5,
            seed: 7,
        }
    }
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

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[(self.next() % v.len() as u64) as usize]
    }
}

fn accuracy(engine: &str, world: &World, targets: &[&City], answers: &[Option<u32>]) -> Accuracy {
    let mut errors = Vec::new();
    let mut country = 0;
    for (t, a) in targets.iter().zip(answers) {
        let Some(c) = a.and_then(|id| world.city(id)) else {
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
        targets: targets.len(),
        country: share(country),
        within_40km: share(errors.iter().filter(|&&e| e <= 40.0).count()),
        median_km: if n == 0 { f64::NAN } else { errors[n / 2] },
    }
}

/// Run single-radius, CBG, reverse-DNS and the reducer over a simulated world.
pub fn simulate(world: &World, rules: &Rules, cfg: &SimConfig) -> Vec<Accuracy> {
    let mut rng = Rng(cfg.seed.max(1));
    let big: Vec<&City> = world
        .cities()
        .iter()
        .filter(|c| c.population >= cfg.min_population)
        .collect();
    if big.is_empty() {
        return Vec::new();
    }
    let probes: Vec<&City> = (0..cfg.probes).map(|_| *rng.pick(&big)).collect();
    let probe_ids: std::collections::HashSet<u32> = probes.iter().map(|c| c.id).collect();
    let pool: Vec<&City> = big
        .iter()
        .copied()
        .filter(|c| !probe_ids.contains(&c.id))
        .collect();
    let targets: Vec<&City> = (0..cfg.targets).map(|_| *rng.pick(&pool)).collect();
    let mut answers: HashMap<&str, Vec<Option<u32>>> = HashMap::new();
    for (i, t) in targets.iter().enumerate() {
        let rtts: Vec<ProbeRtt> = probes
            .iter()
            .enumerate()
            .map(|(k, p)| {
                let d = geo::distance_km(p.latitude, p.longitude, t.latitude, t.longitude);
                let detour = cfg.detour.0 + (cfg.detour.1 - cfg.detour.0) * rng.unit();
                ProbeRtt {
                    probe_id: k as u32,
                    latitude: p.latitude,
                    longitude: p.longitude,
                    rtt_ms: d * detour / geo::KM_PER_MS_RTT + cfg.noise_ms * rng.unit(),
                }
            })
            .collect();
        let sr = latency::single_radius(world, &rtts, 10.0);
        let cbg = latency::cbg(world, &rtts);
        let ptr: Vec<Candidate> = if rng.unit() < cfg.ptr_share {
            world
                .airports_serving(t.id)
                .first()
                .map(|code| {
                    rules.score(
                        world,
                        &[format!(
                            "ae-{i}.cr1.{}2.example.net",
                            code.to_ascii_lowercase()
                        )],
                    )
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let partial = |engine: &str, candidates: &[Candidate]| Partial {
            engine: engine.into(),
            weight: 1.0,
            candidates: candidates.to_vec(),
            error: None,
        };
        let reduced = reduce(&[
            partial("single-radius", &sr),
            partial("latency", &cbg),
            partial("reverse-dns", &ptr),
        ]);
        for (name, best) in [
            ("single-radius", sr.first().map(|c| c.city_id)),
            ("latency", cbg.first().map(|c| c.city_id)),
            ("reverse-dns", ptr.first().map(|c| c.city_id)),
            ("reducer", reduced.first().map(|s| s.city_id)),
        ] {
            answers.entry(name).or_default().push(best);
        }
    }
    ["single-radius", "latency", "reverse-dns", "reducer"]
        .iter()
        .map(|name| {
            accuracy(
                name,
                world,
                &targets,
                answers.get(name).map_or(&[][..], Vec::as_slice),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_simulated_world_meets_thresholds() {
        let world = World::embedded().expect("world");
        let rules = Rules::embedded().expect("rules");
        let cfg = SimConfig {
            probes: 300,
            targets: 60,
            seed: 11,
            ..SimConfig::default()
        };
        let got = simulate(&world, &rules, &cfg);
        let by: HashMap<&str, &Accuracy> = got.iter().map(|a| (a.engine.as_str(), a)).collect();
        let cbg = by["latency"];
        assert!(
            cbg.answered >= 55
                && cbg.country >= 0.95
                && cbg.within_40km >= 0.8
                && cbg.median_km <= 25.0,
            "{cbg:?}"
        );
        let red = by["reducer"];
        assert_eq!(red.answered, 60);
        assert!(
            red.country >= 0.9 && red.within_40km >= 0.7 && red.median_km <= 25.0,
            "{red:?}"
        );
        let rdns = by["reverse-dns"];
        assert!(rdns.answered > 0 && rdns.within_40km >= 0.9, "{rdns:?}");
    }
}
