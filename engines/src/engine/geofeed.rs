//! The `geofeed` engine: the city a network says its address is in (an RFC 8805
//! geofeed, [`crate::geofeed::Geofeeds`]), unless the probes' RTTs say that city is
//! out of reach.
//!
//! Score [`GEOFEED_SCORE`] (7) for the resolved city. A geofeed is the network's own
//! statement, at city level, and usually right; but it is sometimes stale (a block
//! moved, the feed did not), or names the operator's seat instead of where the users
//! are. 7 puts it above the `rir` engine's country prior (3) and a wide single-radius
//! disc's guess (its confidence halves the score at 100 km), and below a tight latency
//! answer (10 at a 10 km disc), so measurements still win over a claim they disagree
//! with by a few cities. Claims that physics rules out are dropped before they vote:
//!
//! **Physics check.** A reply cannot travel faster than light in fibre: a probe that
//! measured `rtt` ms to the address is within [`geo::radius_km`]`(rtt)` (100 km per ms)
//! of it, whatever the path; access delays only lengthen RTTs, so the bound holds on
//! every real path. If any probe is farther than that (plus [`MARGIN_KM`], for city
//! coordinates standing for a whole city) from the claimed city, the geofeed is wrong
//! for this address and the engine gives no vote (counted in
//! `vantage_engines_geofeed_contradicted_total`). Without an RTT source, or when it
//! fails, the vote stands.

use std::net::IpAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use super::latency::{ProbeRtt, RttSource};
use super::{Candidate, Engine};
use crate::data::DataFiles;
use crate::geofeed::{resolve_city, Geofeeds};
use crate::world::{City, World};
use crate::{geo, Error};

/// The engine's name (`GeolocationEngine.spec.engine`).
pub const NAME: &str = "geofeed";

/// The score of the city a geofeed names (see the module docs).
pub const GEOFEED_SCORE: u8 = 7;

/// Kilometres added to the light-in-fibre radius before a claim is contradicted: a
/// city's coordinates are one point of a place some kilometres wide.
pub const MARGIN_KM: f64 = 10.0;

/// `vantage_engines_geofeed_contradicted_total`.
#[derive(Clone, Default)]
pub struct GeofeedMetrics {
    contradicted: Counter,
}

impl GeofeedMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "geofeed_contradicted",
            "Geofeed cities dropped because a probe's RTT puts the address farther away than light in fibre allows",
            self.contradicted.clone(),
        );
    }

    /// Claims dropped so far.
    pub fn contradicted(&self) -> u64 {
        self.contradicted.get()
    }
}

/// Whether `probe`'s RTT rules out that the address is in `city`.
pub fn contradicts(probe: &ProbeRtt, city: &City) -> bool {
    if !probe.rtt_ms.is_finite() || probe.rtt_ms < 0.0 {
        return false;
    }
    let d = geo::distance_km(
        probe.latitude,
        probe.longitude,
        city.latitude,
        city.longitude,
    );
    d > geo::radius_km(probe.rtt_ms) + MARGIN_KM
}

/// The `geofeed` engine.
pub struct GeofeedEngine {
    data: Arc<DataFiles<Geofeeds>>,
    rtts: Option<Arc<dyn RttSource>>,
    metrics: GeofeedMetrics,
}

impl GeofeedEngine {
    /// Over geofeeds reloaded when their files change; with `rtts`, claims are checked
    /// against the probes' RTTs (stored ones: the check must not start measurements).
    pub fn new(data: Arc<DataFiles<Geofeeds>>, rtts: Option<Arc<dyn RttSource>>) -> Self {
        Self {
            data,
            rtts,
            metrics: GeofeedMetrics::default(),
        }
    }

    /// Over geofeeds that do not change (tests, the simulated world).
    pub fn fixed(geofeeds: Geofeeds, rtts: Option<Arc<dyn RttSource>>) -> Self {
        Self::new(Arc::new(DataFiles::fixed(NAME, geofeeds)), rtts)
    }

    /// Count into these metrics (shared with the registry).
    pub fn with_metrics(mut self, metrics: GeofeedMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn metrics(&self) -> &GeofeedMetrics {
        &self.metrics
    }

    /// The claimed city of `ip`, if its geofeed entry names one the world knows.
    fn claimed<'w>(&self, ip: IpAddr, world: &'w World) -> Option<&'w City> {
        let feeds = self.data.get();
        let entry = feeds.lookup(ip)?;
        let id = if feeds.is_resolved() {
            entry.city_id
        } else {
            resolve_city(
                world,
                entry.country,
                entry.region.as_deref(),
                entry.city.as_deref()?,
            )
        }?;
        world.city(id)
    }
}

impl Engine for GeofeedEngine {
    fn name(&self) -> &str {
        NAME
    }

    fn locate<'a>(
        &'a self,
        ip: IpAddr,
        world: &'a World,
    ) -> BoxFuture<'a, Result<Vec<Candidate>, Error>> {
        async move {
            let Some(city) = self.claimed(ip, world) else {
                return Ok(Vec::new());
            };
            if let Some(rtts) = &self.rtts {
                match rtts.rtts(ip).await {
                    Ok(probes) => {
                        if let Some(p) = probes.iter().find(|p| contradicts(p, city)) {
                            self.metrics.contradicted.inc();
                            tracing::debug!(
                                %ip,
                                city = %city.name,
                                probe = p.probe_id,
                                rtt_ms = p.rtt_ms,
                                "geofeed city out of reach of a probe's RTT: no vote"
                            );
                            return Ok(Vec::new());
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%ip, error = %e, "no RTTs to check the geofeed against; its vote stands");
                    }
                }
            }
            Ok(vec![Candidate {
                city_id: city.id,
                score: GEOFEED_SCORE,
            }])
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::latency::StaticRtts;
    use std::collections::HashMap;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn probe(id: u32, lat: f64, lon: f64, rtt_ms: f64) -> ProbeRtt {
        ProbeRtt {
            probe_id: id,
            latitude: lat,
            longitude: lon,
            rtt_ms,
        }
    }

    const FEED: &str = "193.0.0.0/22,NL,NL-NH,Amsterdam,\n\
                        193.0.4.0/22,NL,,,\n\
                        2001:67c:2e8::/48,NL,NL-NH,Amsterdam,\n";

    #[tokio::test]
    async fn a_resolved_city_scores_seven_unless_an_rtt_rules_it_out() {
        let world = World::embedded().expect("world");
        let (mut feeds, bad) = Geofeeds::parse(FEED, "feed.csv");
        assert!(bad.is_empty(), "{bad:?}");
        feeds.resolve(&world);
        let target = ip("193.0.1.139");
        let mut table = HashMap::new();
        // A probe in Frankfurt (~365 km from Amsterdam) at 8 ms: within 800 km, fine.
        table.insert(target, vec![probe(1, 50.11, 8.68, 8.0)]);
        // A probe in Frankfurt at 2 ms: within 200 km, Amsterdam is out of reach.
        table.insert(ip("2001:67c:2e8::2"), vec![probe(2, 50.11, 8.68, 2.0)]);
        let rtts: Arc<dyn RttSource> = Arc::new(StaticRtts(table));
        let engine = GeofeedEngine::fixed(feeds, Some(rtts));
        assert_eq!(engine.name(), "geofeed");

        let got = engine.locate(target, &world).await.expect("locate");
        assert_eq!(got.len(), 1);
        let city = world.city(got[0].city_id).expect("city");
        assert_eq!(
            (
                city.ascii_name.as_str(),
                city.country.as_str(),
                got[0].score
            ),
            ("Amsterdam", "NL", GEOFEED_SCORE)
        );
        assert_eq!(engine.metrics().contradicted(), 0);

        let got = engine
            .locate(ip("2001:67c:2e8::2"), &world)
            .await
            .expect("locate");
        assert!(got.is_empty(), "contradicted: {got:?}");
        assert_eq!(engine.metrics().contradicted(), 1);

        // An entry without a city, and an address without an entry: no vote.
        assert!(engine
            .locate(ip("193.0.5.1"), &world)
            .await
            .expect("locate")
            .is_empty());
        assert!(engine
            .locate(ip("8.8.8.8"), &world)
            .await
            .expect("locate")
            .is_empty());
        assert_eq!(engine.metrics().contradicted(), 1);
    }

    #[tokio::test]
    async fn unresolved_feeds_resolve_on_lookup_and_no_rtts_keep_the_vote() {
        let world = World::embedded().expect("world");
        let (feeds, _) = Geofeeds::parse(FEED, "feed.csv");
        assert!(!feeds.is_resolved());
        let engine = GeofeedEngine::fixed(feeds, None);
        let got = engine
            .locate(ip("2001:67c:2e8::2"), &world)
            .await
            .expect("locate");
        assert_eq!(
            got.first()
                .and_then(|c| world.city(c.city_id))
                .map(|c| c.ascii_name.as_str()),
            Some("Amsterdam")
        );
    }

    #[test]
    fn the_bound_is_light_in_fibre_plus_the_margin() {
        let ams = City {
            id: 1,
            name: "A".into(),
            ascii_name: "A".into(),
            country: "NL".into(),
            admin1: String::new(),
            latitude: 52.374,
            longitude: 4.8897,
            population: 1,
            timezone: String::new(),
        };
        // Frankfurt is ~365 km away: 3.6 ms allows 360 km, +10 km margin reaches it.
        assert!(!contradicts(&probe(1, 50.1155, 8.6842, 3.6), &ams));
        assert!(contradicts(&probe(1, 50.1155, 8.6842, 3.4), &ams));
        assert!(!contradicts(&probe(1, 50.1155, 8.6842, f64::NAN), &ams));
    }
}
