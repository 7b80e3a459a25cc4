//! The reducer: weighted sum of engine scores per city, best first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{Candidate, Engine, Scope};
use crate::rir::{country_code, CountryCode};
use crate::world::World;

/// The engines built into the process, by `GeolocationEngine.spec.engine` name.
pub const BUILTINS: &[&str] = &[
    "single-radius",
    "latency",
    "anycast",
    "reverse-dns",
    "crowdsourced",
    "rir",
];

/// The scope of a built-in engine: `rir` knows countries, the others cities.
pub fn builtin_scope(name: &str) -> Scope {
    if name == "rir" {
        Scope::Country
    } else {
        Scope::City
    }
}

/// One engine as a `GeolocationEngine` resource configures it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// Built-in engine name (`single-radius`, `latency`, `anycast`, `reverse-dns`,
    /// `crowdsourced`, `rir`) or any name for an external engine.
    pub name: String,
    pub weight: f64,
    pub enabled: bool,
    /// For an external engine: its HTTP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_endpoint: Option<String>,
    /// For an external engine: the NATS subject it answers on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_subject: Option<String>,
    /// For an external engine: what its candidates stand for (`spec.scope`).
    #[serde(default, skip_serializing_if = "Scope::is_city")]
    pub scope: Scope,
}

impl EngineConfig {
    pub fn new(name: &str, weight: f64, enabled: bool) -> Self {
        Self {
            name: name.to_owned(),
            weight,
            enabled,
            http_endpoint: None,
            nats_subject: None,
            scope: Scope::City,
        }
    }

    /// Whether this names an engine outside the process (HTTP or NATS).
    pub fn is_external(&self) -> bool {
        self.http_endpoint.is_some() || self.nats_subject.is_some()
    }

    /// Every built-in engine, enabled, weight 1.
    pub fn builtins() -> Vec<EngineConfig> {
        BUILTINS
            .iter()
            .map(|n| EngineConfig::new(n, 1.0, true))
            .collect()
    }
}

/// One engine's answer for one address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    pub engine: String,
    pub weight: f64,
    pub candidates: Vec<Candidate>,
    /// `country` when each candidate stands for its whole country.
    #[serde(default, skip_serializing_if = "Scope::is_city")]
    pub scope: Scope,
    /// Why the engine gave no answer, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One engine's share of a city's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub score: u8,
    pub weight: f64,
}

/// A city and its summed score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub city_id: u32,
    pub score: f64,
    /// The sum over engines of each one's best score in this city's country: the
    /// answer's country is the one with the highest, then its best city.
    #[serde(default)]
    pub country_score: f64,
    pub contributions: BTreeMap<String, Contribution>,
    /// `city` when a city-scoped engine named this city (and the answer has a vote
    /// that is not weak, [`STRONG_CITY_SCORE`]); `country` when only country-scoped
    /// engines did: the answer then knows the country, not the city, and `city_id` is
    /// only a place in that country. (Answers stored before this field read as `city`.)
    #[serde(default)]
    pub scope: Scope,
}

/// A city-scoped vote below this score is weak (a wide single-radius disc's most
/// populous city scores 1–2): when every city-scoped vote of an answer is weak, its
/// locations are all [`Scope::Country`].
pub const STRONG_CITY_SCORE: u8 = 3;

/// Sum `weight × score` per city over the partials; sort by score, then by how many
/// engines agree, then by id. Non-positive or non-finite weights count as zero.
pub fn reduce(partials: &[Partial]) -> Vec<Scored> {
    reduce_by(partials, |_| 0.0, |_| None)
}

fn add(cities: &mut BTreeMap<u32, Scored>, city_id: u32, engine: &str, score: u8, w: f64) {
    let s = cities.entry(city_id).or_insert_with(|| Scored {
        city_id,
        score: 0.0,
        country_score: 0.0,
        contributions: BTreeMap::new(),
        scope: Scope::Country,
    });
    s.score += w * f64::from(score);
    s.contributions
        .insert(engine.to_owned(), Contribution { score, weight: w });
}

fn usable_weight(w: f64) -> f64 {
    if w.is_finite() && w > 0.0 {
        w
    } else {
        0.0
    }
}

/// [`reduce`], where
/// * ties in score and agreement go to the city with the higher `prior` (the locator
///   passes population: infrastructure density) before the id;
/// * a [`Scope::Country`] partial's candidate adds its score to every city of its
///   `country` that a city-scoped engine named, or, when none did, stands as itself
///   (the country's representative city);
/// * each city's `scope` is [`Scope::City`] when a city-scoped engine named it and at
///   least one city-scoped vote of the answer scores [`STRONG_CITY_SCORE`] or more,
///   else [`Scope::Country`] (no city is known: only the country is).
pub fn reduce_by(
    partials: &[Partial],
    prior: impl Fn(u32) -> f64,
    country: impl Fn(u32) -> Option<CountryCode>,
) -> Vec<Scored> {
    let mut cities: BTreeMap<u32, Scored> = BTreeMap::new();
    let valid = |c: &&Candidate| (1..=10).contains(&c.score);
    let mut strong = false;
    for p in partials.iter().filter(|p| p.scope == Scope::City) {
        let w = usable_weight(p.weight);
        if w == 0.0 {
            continue;
        }
        for c in p.candidates.iter().filter(valid) {
            add(&mut cities, c.city_id, &p.engine, c.score, w);
            strong |= c.score >= STRONG_CITY_SCORE;
        }
    }
    if strong {
        for s in cities.values_mut() {
            s.scope = Scope::City;
        }
    }
    for p in partials.iter().filter(|p| p.scope == Scope::Country) {
        let w = usable_weight(p.weight);
        if w == 0.0 {
            continue;
        }
        // The best vote per country; a city of no known country stands for itself.
        let mut votes: BTreeMap<Result<CountryCode, u32>, Candidate> = BTreeMap::new();
        for c in p.candidates.iter().filter(valid) {
            let key = country(c.city_id).ok_or(c.city_id);
            let vote = votes.entry(key).or_insert(*c);
            if c.score > vote.score {
                *vote = *c;
            }
        }
        for (key, vote) in votes {
            let named: Vec<u32> = match key {
                Ok(cc) => cities
                    .keys()
                    .copied()
                    .filter(|&id| country(id) == Some(cc))
                    .collect(),
                Err(_) => Vec::new(),
            };
            if named.is_empty() {
                add(&mut cities, vote.city_id, &p.engine, vote.score, w);
            }
            for id in named {
                add(&mut cities, id, &p.engine, vote.score, w);
            }
        }
    }
    let by_country = country_scores(partials, &country);
    let mut out: Vec<Scored> = cities.into_values().collect();
    for s in &mut out {
        s.country_score = by_country
            .get(&country(s.city_id).ok_or(s.city_id))
            .copied()
            .unwrap_or(s.score);
    }
    out.sort_by(|a, b| {
        b.country_score
            .total_cmp(&a.country_score)
            .then(b.score.total_cmp(&a.score))
            .then(b.contributions.len().cmp(&a.contributions.len()))
            .then(prior(b.city_id).total_cmp(&prior(a.city_id)))
            .then(a.city_id.cmp(&b.city_id))
    });
    out
}

/// Per country: the sum over engines of `weight ×` the engine's best score for a city
/// of that country (a country-scoped vote counts once). A city of no known country is
/// its own key.
fn country_scores(
    partials: &[Partial],
    country: &impl Fn(u32) -> Option<CountryCode>,
) -> BTreeMap<Result<CountryCode, u32>, f64> {
    let mut sums: BTreeMap<Result<CountryCode, u32>, f64> = BTreeMap::new();
    for p in partials {
        let w = usable_weight(p.weight);
        if w == 0.0 {
            continue;
        }
        let mut best: BTreeMap<Result<CountryCode, u32>, u8> = BTreeMap::new();
        for c in p.candidates.iter().filter(|c| (1..=10).contains(&c.score)) {
            let b = best.entry(country(c.city_id).ok_or(c.city_id)).or_default();
            *b = (*b).max(c.score);
        }
        for (key, score) in best {
            *sums.entry(key).or_default() += w * f64::from(score);
        }
    }
    sums
}

/// One engine with its configuration.
pub type ConfiguredEngine = (Arc<dyn Engine>, EngineConfig);

/// Engines with their configuration.
pub type EngineSet = Arc<Vec<ConfiguredEngine>>;

/// The most populous city of each country: the place that stands for a country (the
/// `rir` engine's candidate, an external engine's `{"country": "NL"}`, the point of a
/// country-scoped answer). Built at the first lookup, for one world.
#[derive(Debug, Default)]
pub struct Representatives(OnceLock<HashMap<CountryCode, u32>>);

impl Representatives {
    /// The most populous city of `cc` in `world` (ties: the first in the dataset, as the
    /// `rir` engine chooses).
    pub fn get(&self, world: &World, cc: CountryCode) -> Option<u32> {
        let map = self.0.get_or_init(|| {
            let mut best: HashMap<CountryCode, (u32, u32)> = HashMap::new();
            for c in world.cities() {
                let Some(code) = country_code(&c.country) else {
                    continue;
                };
                let e = best.entry(code).or_insert((c.id, c.population));
                if c.population > e.1 {
                    *e = (c.id, c.population);
                }
            }
            best.into_iter().map(|(cc, (id, _))| (cc, id)).collect()
        });
        map.get(&cc).copied()
    }
}

/// The announced BGP routes (`--asn-table`) a locate is checked against: an address no
/// route covers is answered 422 `unrouted_address` without running an engine.
pub struct RouteTable {
    table: Arc<crate::data::DataFiles<crate::asn::PrefixTable>>,
    source: String,
}

impl RouteTable {
    /// `source` names the table in answers (its file).
    pub fn new(
        table: Arc<crate::data::DataFiles<crate::asn::PrefixTable>>,
        source: impl Into<String>,
    ) -> Self {
        Self {
            table,
            source: source.into(),
        }
    }

    /// Where the table comes from, as answers name it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `Some(false)` when no route covers `ip`; `None` when the table has no route of
    /// its family at all (an IPv4-only dump does not judge IPv6 addresses).
    pub fn covers(&self, ip: IpAddr) -> Option<bool> {
        let table = self.table.get();
        table.has_family_of(ip).then(|| table.origin(ip).is_some())
    }
}

/// The engines with their configuration, and the world. The engine set can be
/// replaced while the locator serves (from `GeolocationEngine` resources).
pub struct Locator {
    pub world: Arc<World>,
    engines: RwLock<EngineSet>,
    pub engine_timeout: Duration,
    representatives: Representatives,
    routes: Option<RouteTable>,
}
/// Everything known about one address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Located {
    pub ip: IpAddr,
    pub scored: Vec<Scored>,
    pub partials: Vec<Partial>,
    /// Set when the anycast engine found sites that cannot be one place.
    pub anycast: bool,
}

impl Locator {
    pub fn new(
        world: Arc<World>,
        engines: Vec<(Arc<dyn Engine>, EngineConfig)>,
        engine_timeout: Duration,
    ) -> Self {
        Self {
            world,
            engines: RwLock::new(Arc::new(engines)),
            engine_timeout,
            representatives: Representatives::default(),
            routes: None,
        }
    }

    /// Check every locate against these BGP routes (see [`RouteTable`]).
    pub fn with_routes(mut self, routes: RouteTable) -> Self {
        self.routes = Some(routes);
        self
    }

    /// The BGP routes locates are checked against, when a table is loaded.
    pub fn routes(&self) -> Option<&RouteTable> {
        self.routes.as_ref()
    }

    /// The city that stands for country `cc` (its most populous).
    pub fn representative(&self, cc: CountryCode) -> Option<u32> {
        self.representatives.get(&self.world, cc)
    }

    /// The engine set in force.
    pub fn engines(&self) -> EngineSet {
        match self.engines.read() {
            Ok(e) => e.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replace the engine set (answers computed before stay valid for their own set).
    pub fn set_engines(&self, engines: Vec<(Arc<dyn Engine>, EngineConfig)>) {
        let new = Arc::new(engines);
        match self.engines.write() {
            Ok(mut e) => *e = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    /// The configurations in force.
    pub fn configs(&self) -> Vec<EngineConfig> {
        self.engines().iter().map(|(_, c)| c.clone()).collect()
    }

    /// The names of the configured engines.
    pub fn engine_names(&self) -> Vec<String> {
        self.engines().iter().map(|(_, c)| c.name.clone()).collect()
    }

    /// A short digest of the configurations in force: answers are cached under it, so
    /// a changed engine set (weights, switches, endpoints) never serves an older answer.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.configs())
    }

    /// Run the enabled engines (or only `only`, when given) at once and reduce.
    pub async fn locate(&self, ip: IpAddr, only: Option<&HashSet<String>>) -> Located {
        let engines = self.engines();
        let runs = engines
            .iter()
            .filter(|(_, c)| match only {
                Some(set) => set.contains(&c.name),
                None => c.enabled,
            })
            .map(|(engine, cfg)| async move {
                let timeout = engine.timeout().unwrap_or(self.engine_timeout);
                let (candidates, error) =
                    match tokio::time::timeout(timeout, engine.locate(ip, &self.world)).await {
                        Ok(Ok(c)) => (c, None),
                        Ok(Err(e)) => (Vec::new(), Some(e.to_string())),
                        Err(_) => (Vec::new(), Some(format!("no answer within {timeout:?}"))),
                    };
                if let Some(e) = &error {
                    tracing::warn!(engine = %cfg.name, %ip, error = %e, "engine failed");
                }
                Partial {
                    engine: cfg.name.clone(),
                    weight: cfg.weight,
                    candidates: candidates
                        .into_iter()
                        .filter(|c| (1..=10).contains(&c.score))
                        .collect(),
                    scope: engine.scope(),
                    error,
                }
            });
        let partials = futures::future::join_all(runs).await;
        let anycast = partials
            .iter()
            .any(|p| p.engine == "anycast" && !p.candidates.is_empty());
        Located {
            ip,
            scored: reduce_by(
                &partials,
                |id| self.world.city(id).map_or(0.0, |c| f64::from(c.population)),
                |id| self.world.city(id).and_then(|c| country_code(&c.country)),
            ),
            partials,
            anycast,
        }
    }
}

/// FNV-1a over the configurations' JSON, as 16 hex digits (stable across processes).
pub fn fingerprint(configs: &[EngineConfig]) -> String {
    let text = serde_json::to_string(configs).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(engine: &str, weight: f64, c: &[(u32, u8)]) -> Partial {
        Partial {
            engine: engine.into(),
            weight,
            candidates: c
                .iter()
                .map(|&(city_id, score)| Candidate { city_id, score })
                .collect(),
            scope: Scope::City,
            error: None,
        }
    }

    #[test]
    fn weighted_sum_and_order() {
        let got = reduce(&[
            p("reverse-dns", 1.0, &[(1, 8), (2, 3)]),
            p("single-radius", 2.0, &[(2, 5), (3, 4)]),
            p("crowdsourced", 0.5, &[(1, 4), (3, 10)]),
        ]);
        let summary: Vec<(u32, f64)> = got.iter().map(|s| (s.city_id, s.score)).collect();
        // 2: 3 + 10 = 13; 3: 8 + 5 = 13 (same score, same engine count: id order); 1: 8 + 2 = 10.
        assert_eq!(summary, vec![(2, 13.0), (3, 13.0), (1, 10.0)]);
        assert_eq!(
            got[0].contributions["single-radius"],
            Contribution {
                score: 5,
                weight: 2.0
            }
        );
        assert_eq!(got[0].contributions.len(), 2);
    }

    #[test]
    fn ties_prefer_agreement_and_bad_weights_count_zero() {
        let got = reduce(&[
            p("a", 1.0, &[(7, 6), (9, 3)]),
            p("b", 1.0, &[(9, 3)]),
            p("c", -5.0, &[(7, 10)]),
            p("d", f64::NAN, &[(7, 10)]),
            p("e", 1.0, &[(8, 0), (8, 11)]),
        ]);
        let ids: Vec<u32> = got.iter().map(|s| s.city_id).collect();
        assert_eq!(
            ids,
            vec![9, 7],
            "9 (two engines) before 7 (one); 8 only had invalid scores"
        );
        assert!(reduce(&[]).is_empty());
    }

    #[test]
    fn remaining_ties_go_to_the_higher_prior() {
        let partials = [p("a", 1.0, &[(3, 5), (4, 5), (5, 6)])];
        let ids = |s: Vec<Scored>| s.iter().map(|s| s.city_id).collect::<Vec<_>>();
        assert_eq!(ids(reduce(&partials)), vec![5, 3, 4]);
        // 4 is the bigger city: it wins the tie with 3, never the better score of 5.
        let population = |id| if id == 4 { 2e6 } else { 1e4 };
        assert_eq!(
            ids(reduce_by(&partials, population, |_| None)),
            vec![5, 4, 3]
        );
    }

    #[test]
    fn the_country_with_most_support_wins_then_its_best_city() {
        // A border target: CBG leans to HK's city 1; a geofeed names CN's city 2, the
        // RIR registers CN, single-radius names CN's 3 and HK's 1 alike.
        let country = |id: u32| match id {
            1 => Some(*b"HK"),
            2 | 3 | 9 => Some(*b"CN"),
            _ => None,
        };
        let mut rir = p("rir", 1.0, &[(9, 3)]);
        rir.scope = Scope::Country;
        let partials = [
            p("latency", 1.0, &[(1, 7), (3, 4)]),
            p("geofeed", 1.0, &[(2, 7)]),
            p("single-radius", 1.0, &[(3, 3), (1, 3)]),
            rir,
        ];
        let got = reduce_by(&partials, |_| 0.0, country);
        let summary: Vec<(u32, f64, f64)> = got
            .iter()
            .map(|s| (s.city_id, s.score, s.country_score))
            .collect();
        // CN: latency 4 + geofeed 7 + single-radius 3 + rir 3 = 17 beats HK's 7 + 3.
        // Within CN, 3 (4 + 3 + 3) beats 2 (7 + 3); HK's 1 (10) comes after both.
        assert_eq!(
            summary,
            vec![(3, 10.0, 17.0), (2, 10.0, 17.0), (1, 10.0, 10.0)]
        );
    }

    #[test]
    fn a_country_vote_adds_to_every_named_city_of_its_country() {
        // Cities 1, 2 in NL, 3 in BE, 4 (the country engine's representative) in BE.
        let country = |id: u32| match id {
            1 | 2 => Some(*b"NL"),
            3 | 4 => Some(*b"BE"),
            _ => None,
        };
        let mut rir = p("rir", 1.0, &[(4, 3)]);
        rir.scope = Scope::Country;
        let latency = p("latency", 1.0, &[(1, 7), (3, 6), (2, 2)]);
        let got = reduce_by(&[latency.clone(), rir.clone()], |_| 0.0, country);
        let summary: Vec<(u32, f64)> = got.iter().map(|s| (s.city_id, s.score)).collect();
        // 3 (BE): 6 + 3 beats 1 (NL): 7; the representative 4 is not added, since a
        // city of its country was named.
        assert_eq!(summary, vec![(3, 9.0), (1, 7.0), (2, 2.0)]);
        assert_eq!(got[0].contributions["rir"].score, 3);
        // Alone, or when no engine named a city of its country, the vote stands as its
        // representative city.
        let alone = reduce_by(&[rir.clone()], |_| 0.0, country);
        assert_eq!(alone.iter().map(|s| s.city_id).collect::<Vec<_>>(), vec![4]);
        let nl_only = p("latency", 1.0, &[(1, 7)]);
        let got = reduce_by(&[nl_only, rir], |_| 0.0, country);
        assert_eq!(
            got.iter().map(|s| (s.city_id, s.score)).collect::<Vec<_>>(),
            vec![(1, 7.0), (4, 3.0)]
        );
    }

    #[test]
    fn locations_are_city_scoped_only_when_a_city_scoped_engine_named_them_strongly() {
        let country = |id: u32| match id {
            1 | 2 => Some(*b"NL"),
            3 | 4 => Some(*b"BE"),
            _ => None,
        };
        let scopes = |got: &[Scored]| -> Vec<(u32, Scope)> {
            got.iter().map(|s| (s.city_id, s.scope)).collect()
        };
        let mut external = p("geoip-cc", 1.0, &[(4, 6), (2, 5)]);
        external.scope = Scope::Country;
        // Only a country-scoped engine: it knows countries, so no location is a city.
        let alone = reduce_by(std::slice::from_ref(&external), |_| 0.0, country);
        assert_eq!(
            scopes(&alone),
            vec![(4, Scope::Country), (2, Scope::Country)]
        );
        // A strong city vote: the cities city-scoped engines named are cities; the BE
        // vote no city engine backs stands as its country.
        let latency = p("latency", 1.0, &[(1, 7), (2, 2)]);
        let got = reduce_by(&[latency, external.clone()], |_| 0.0, country);
        assert_eq!(
            scopes(&got),
            vec![(1, Scope::City), (2, Scope::City), (4, Scope::Country)],
            "{got:?}"
        );
        assert_eq!(got[0].score, 12.0, "7 + the NL vote 5");
        // Every city-scoped vote weak (below STRONG_CITY_SCORE): no city is known.
        let wide = p("single-radius", 1.0, &[(1, 2), (3, 1), (2, 2)]);
        let got = reduce_by(&[wide.clone(), external], |_| 0.0, country);
        assert!(got.iter().all(|s| s.scope == Scope::Country), "{got:?}");
        assert_eq!(got.len(), 3, "the votes still rank the places: {got:?}");
        let got = reduce(&[wide]);
        assert!(got.iter().all(|s| s.scope == Scope::Country), "{got:?}");
        // One strong vote anywhere makes the named cities cities again.
        let got = reduce(&[
            p("single-radius", 1.0, &[(1, 2), (3, 1)]),
            p("reverse-dns", 1.0, &[(3, STRONG_CITY_SCORE)]),
        ]);
        assert!(got.iter().all(|s| s.scope == Scope::City), "{got:?}");
        // Answers stored before `scope` existed read as cities.
        let old: Scored =
            serde_json::from_str(r#"{"city_id": 1, "score": 3.0, "contributions": {}}"#)
                .expect("an old stored answer");
        assert_eq!(old.scope, Scope::City);
    }
}
