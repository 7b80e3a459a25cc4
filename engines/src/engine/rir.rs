//! The `rir` engine: the country the address is registered in, from the RIRs'
//! statistics files ([`crate::rir::Delegations`]).
//!
//! It knows countries, not cities: its one candidate is the country's most populous
//! city with [`Scope::Country`], which the reducer adds to every city of that country
//! that other engines named. Latency cannot tell two cities a few kilometres apart on
//! either side of a border; the registration can, most of the time.

use std::net::IpAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{Candidate, Engine, Scope};
use crate::data::DataFiles;
use crate::rir::{CountryCode, Delegations};
use crate::world::World;
use crate::Error;

/// The score for "registered in this country". Low on purpose: it decides between
/// candidates that latency scores alike (a border region), not against a clear
/// latency answer, since a registration is sometimes the holder's seat elsewhere.
pub const REGISTERED_SCORE: u8 = 3;

pub struct Rir {
    delegations: Arc<DataFiles<Delegations>>,
    /// The most populous city per country, built at the first lookup.
    capitals: crate::reducer::Representatives,
}

impl Rir {
    /// Over files that are reloaded when they change.
    pub fn new(delegations: Arc<DataFiles<Delegations>>) -> Self {
        Self {
            delegations,
            capitals: Default::default(),
        }
    }

    /// Over delegations that do not change.
    pub fn fixed(delegations: Delegations) -> Self {
        Self::new(Arc::new(DataFiles::fixed("rir", delegations)))
    }

    fn capital(&self, world: &World, cc: CountryCode) -> Option<u32> {
        self.capitals.get(world, cc)
    }
}

impl Engine for Rir {
    fn name(&self) -> &str {
        "rir"
    }

    fn scope(&self) -> Scope {
        Scope::Country
    }

    fn locate<'a>(
        &'a self,
        ip: IpAddr,
        world: &'a World,
    ) -> BoxFuture<'a, Result<Vec<Candidate>, Error>> {
        let found = self
            .delegations
            .get()
            .country(ip)
            .and_then(|cc| self.capital(world, cc))
            .map(|city_id| Candidate {
                city_id,
                score: REGISTERED_SCORE,
            });
        futures::future::ready(Ok(found.into_iter().collect())).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reducer::{EngineConfig, Locator};
    use std::time::Duration;

    const BAARLE_NASSAU: u32 = 2759554; // NL, 6,845 people
    const BAARLE_HERTOG: u32 = 2802816; // BE, 2,305 people, 5 km away

    /// A latency engine that cannot tell the two towns apart.
    struct Tie;
    impl Engine for Tie {
        fn name(&self) -> &str {
            "latency"
        }
        fn locate<'a>(
            &'a self,
            _: IpAddr,
            _: &'a World,
        ) -> BoxFuture<'a, Result<Vec<Candidate>, Error>> {
            let c = |city_id| Candidate { city_id, score: 6 };
            futures::future::ready(Ok(vec![c(BAARLE_NASSAU), c(BAARLE_HERTOG)])).boxed()
        }
    }

    async fn best(world: &Arc<World>, registered: Option<&str>) -> (u32, Vec<Candidate>) {
        let mut engines: Vec<(Arc<dyn Engine>, EngineConfig)> =
            vec![(Arc::new(Tie), EngineConfig::new("latency", 1.0, true))];
        if let Some(cc) = registered {
            let file = format!("ripencc|{cc}|ipv4|193.0.0.0|2048|19930901|assigned|x\n");
            let d = Delegations::parse(&file, "test").expect("rir");
            engines.push((Arc::new(Rir::fixed(d)), EngineConfig::new("rir", 1.0, true)));
        }
        let loc = Locator::new(world.clone(), engines, Duration::from_secs(5));
        let got = loc.locate("193.0.6.139".parse().expect("ip"), None).await;
        let rir = got
            .partials
            .iter()
            .find(|p| p.engine == "rir")
            .map(|p| {
                assert_eq!(p.scope, Scope::Country);
                p.candidates.clone()
            })
            .unwrap_or_default();
        (got.scored[0].city_id, rir)
    }

    #[tokio::test]
    async fn the_registration_decides_between_towns_on_either_side_of_a_border() {
        let world = World::embedded().expect("world");
        // Latency alone: a tie, which goes to the bigger town.
        assert_eq!(best(&world, None).await.0, BAARLE_NASSAU);
        let (city, rir) = best(&world, Some("BE")).await;
        assert_eq!(city, BAARLE_HERTOG);
        // The engine's one candidate is Belgium's most populous city, standing for Belgium.
        assert_eq!(rir.len(), 1);
        let rep = world.city(rir[0].city_id).expect("city");
        assert_eq!(
            (rep.country.as_str(), rir[0].score),
            ("BE", REGISTERED_SCORE)
        );
        assert!(world
            .cities()
            .iter()
            .filter(|c| c.country == "BE")
            .all(|c| c.population <= rep.population));
        assert_eq!(best(&world, Some("NL")).await.0, BAARLE_NASSAU);
        // An address outside every registered range: no candidate.
        let d = Delegations::parse("", "empty").expect("empty");
        let got = Rir::fixed(d)
            .locate("193.0.6.139".parse().expect("ip"), &world)
            .await
            .expect("locate");
        assert!(got.is_empty());
    }
}
