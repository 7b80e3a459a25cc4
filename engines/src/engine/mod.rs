//! Engines: each takes an IP and the world and scores candidate cities 1..=10.

pub mod active;
pub mod calibration;
pub mod calibration_store;
pub mod crowd;
pub mod external;
pub mod geofeed;
pub mod latency;
pub mod posterior;
pub mod rdns;
pub mod rir;

use std::net::IpAddr;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::world::World;
use crate::Error;

/// A city an engine proposes, with a score from 1 (weak) to 10 (strong).
/// The score ranks locations; it is not an accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub city_id: u32,
    pub score: u8,
}

/// What an engine's candidates stand for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Each candidate is the city it names.
    #[default]
    City,
    /// Each candidate stands for its whole country (an engine that knows countries,
    /// not cities, names the country's most populous city): the reducer adds its score
    /// to every city of that country that other engines named.
    Country,
}

impl Scope {
    pub fn is_city(&self) -> bool {
        *self == Scope::City
    }
}

/// One geolocation engine, isolated from the others.
pub trait Engine: Send + Sync {
    /// The engine's name as `GeolocationEngine.spec.engine` spells it.
    fn name(&self) -> &str;

    /// Candidate cities for `ip`, best first, every score in 1..=10.
    fn locate<'a>(
        &'a self,
        ip: IpAddr,
        world: &'a World,
    ) -> BoxFuture<'a, Result<Vec<Candidate>, Error>>;

    /// How long this engine may take, when not the locator's default (an engine that
    /// measures actively needs longer).
    fn timeout(&self) -> Option<std::time::Duration> {
        None
    }

    /// What the candidates stand for: cities (most engines) or whole countries.
    fn scope(&self) -> Scope {
        Scope::City
    }
}

/// Round a raw score into 1..=10; `None` (dropped) below 0.5.
pub fn clamp_score(raw: f64) -> Option<u8> {
    if !raw.is_finite() || raw < 0.5 {
        return None;
    }
    Some(raw.round().min(10.0) as u8)
}

/// Keep the best score per city, drop zeros, sort best first and keep at most `limit`.
/// The sort is stable: candidates with the same score keep the engine's order (an
/// engine that ranks by a finer score lists them finest first).
pub fn finish(mut candidates: Vec<Candidate>, limit: usize) -> Vec<Candidate> {
    candidates.retain(|c| (1..=10).contains(&c.score));
    candidates.sort_by_key(|c| std::cmp::Reverse(c.score));
    let mut seen = std::collections::HashSet::new();
    candidates.retain(|c| seen.insert(c.city_id));
    candidates.truncate(limit);
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamping() {
        assert_eq!(clamp_score(0.2), None);
        assert_eq!(clamp_score(-3.0), None);
        assert_eq!(clamp_score(f64::NAN), None);
        assert_eq!(clamp_score(0.5), Some(1));
        assert_eq!(clamp_score(7.4), Some(7));
        assert_eq!(clamp_score(42.0), Some(10));
        let c = |city_id, score| Candidate { city_id, score };
        assert_eq!(
            finish(vec![c(1, 3), c(2, 0), c(1, 5), c(3, 9)], 2),
            vec![c(3, 9), c(1, 5)]
        );
        // Equal scores keep the engine's order.
        assert_eq!(
            finish(vec![c(9, 4), c(2, 4), c(5, 7), c(9, 1)], 10),
            vec![c(5, 7), c(9, 4), c(2, 4)]
        );
    }
}
