//! reverse-DNS engine: the PTR name's geohints (IATA/metro codes, UN/LOCODE-like,
//! CLLI-like tokens and city names), with rules published as data
//! (`engines/data/geohints.json`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Deserialize;

use super::{clamp_score, Candidate, Engine};
use crate::world::{normalise, City, World};
use crate::{geo, Error};

/// The rule set shipped with the crate.
pub const EMBEDDED_RULES: &str = include_str!("../../data/geohints.json");

/// Looks up PTR names; behind a trait so that tests use fixed names.
pub trait PtrResolver: Send + Sync {
    fn ptr<'a>(&'a self, ip: IpAddr) -> BoxFuture<'a, Result<Vec<String>, Error>>;
}

/// PTR names from a fixed table.
#[derive(Default, Clone)]
pub struct StaticPtr(pub HashMap<IpAddr, Vec<String>>);

impl PtrResolver for StaticPtr {
    fn ptr<'a>(&'a self, ip: IpAddr) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        let names = self.0.get(&ip).cloned().unwrap_or_default();
        async move { Ok(names) }.boxed()
    }
}

/// PTR names from DNS (hickory, the system's resolver configuration).
pub struct HickoryPtr(hickory_resolver::TokioResolver);

impl HickoryPtr {
    pub fn from_system() -> Result<Self, Error> {
        let builder =
            hickory_resolver::TokioResolver::builder_tokio().map_err(|source| Error::Dns {
                what: "cannot read the system DNS configuration (check /etc/resolv.conf)".into(),
                source,
            })?;
        Ok(Self(builder.build()))
    }
}

impl PtrResolver for HickoryPtr {
    fn ptr<'a>(&'a self, ip: IpAddr) -> BoxFuture<'a, Result<Vec<String>, Error>> {
        async move {
            match self.0.reverse_lookup(ip).await {
                Ok(lookup) => Ok(lookup
                    .iter()
                    .map(|n| n.to_string().trim_end_matches('.').to_owned())
                    .collect()),
                Err(e) if e.is_no_records_found() => Ok(Vec::new()),
                Err(source) => Err(Error::Dns {
                    what: format!("PTR lookup of {ip} failed"),
                    source,
                }),
            }
        }
        .boxed()
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Shape {
    pub kind: String,
    pub letters: [usize; 2],
    pub max_digits: usize,
    pub score: i32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Position {
    pub rightmost_host_label: i32,
    pub other_host_label: i32,
    pub interface_label: i32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Agreement {
    pub bonus_per_hint: i32,
    pub max_bonus: i32,
    pub within_km: f64,
}

/// The geohint rule set (`geohints.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct Rules {
    pub version: u32,
    pub domain_labels: usize,
    pub second_level_labels: HashSet<String>,
    pub interface_prefixes: HashSet<String>,
    pub ignore: HashSet<String>,
    pub shapes: Vec<Shape>,
    pub min_city_population: u32,
    pub position: Position,
    pub agreement: Agreement,
    /// Operator and metro codes, which win over IATA.
    pub codes: HashMap<String, (String, String)>,
    pub clli: HashMap<String, (String, String)>,
    pub city_aliases: HashMap<String, (String, String)>,
    pub clli_regions: HashMap<String, String>,
}

impl Rules {
    pub fn embedded() -> Result<Rules, Error> {
        Rules::from_json(EMBEDDED_RULES)
    }

    pub fn from_json(text: &str) -> Result<Rules, Error> {
        serde_json::from_str(text).map_err(|source| Error::Json {
            what: "geohint rules".into(),
            source,
        })
    }
}

/// One geohint found in a name.
#[derive(Debug, Clone, PartialEq)]
pub struct Hint {
    pub token: String,
    pub kind: String,
    pub city_id: u32,
    pub score: i32,
}

/// The city a (name, country) pair from the rules means: the most populous of that name.
fn named_city<'w>(world: &'w World, name: &str, country: &str) -> Option<&'w City> {
    world
        .cities_named(&normalise(name))
        .find(|c| c.country == country)
}

fn is_subsequence(needle: &str, hay: &str) -> bool {
    let mut it = hay.chars();
    needle.chars().all(|n| it.any(|h| h == n))
}

impl Rules {
    /// The host labels of a name: the operator's domain cut off.
    fn host_labels<'n>(&self, name: &'n str) -> Vec<&'n str> {
        let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
        let mut cut = self.domain_labels;
        if labels.len() >= 3 {
            let tld = labels[labels.len() - 1];
            let sld = labels[labels.len() - 2].to_ascii_lowercase();
            if tld.len() == 2 && self.second_level_labels.contains(&sld) {
                cut += 1;
            }
        }
        labels[..labels.len().saturating_sub(cut)].to_vec()
    }

    /// Resolve a token of letters to cities, by shape.
    fn resolve(&self, world: &World, kind: &str, letters: &str) -> Vec<(u32, i32)> {
        let up = letters.to_ascii_uppercase();
        let code = |c: &str| -> Option<&City> {
            if let Some((name, cc)) = self.codes.get(c) {
                return named_city(world, name, cc);
            }
            world.airport(c).and_then(|a| world.city(a.city_id))
        };
        match kind {
            "code" => code(&up).map(|c| vec![(c.id, 0)]).unwrap_or_default(),
            "locode" => {
                let (cc, loc) = up.split_at(2);
                let by_code = code(loc).filter(|c| c.country == cc);
                let by_airport = world
                    .airport(loc)
                    .filter(|a| a.country == cc)
                    .and_then(|a| world.city(a.city_id));
                by_code
                    .or(by_airport)
                    .map(|c| vec![(c.id, 0)])
                    .unwrap_or_default()
            }
            "clli" => {
                if let Some((name, cc)) = self.clli.get(&up) {
                    return named_city(world, name, cc)
                        .map(|c| vec![(c.id, 0)])
                        .unwrap_or_default();
                }
                // Not in the table: the place code as a subsequence of a city's name in
                // the region, scored one lower.
                let (place, region) = up.split_at(4);
                let Some(country) = self.clli_regions.get(region).cloned().or_else(|| {
                    world
                        .search(None, Some(region), 1)
                        .first()
                        .map(|c| c.country.clone())
                }) else {
                    return Vec::new();
                };
                let place = place.to_ascii_lowercase();
                world
                    .cities()
                    .iter()
                    .filter(|c| c.country == country && c.population >= self.min_city_population)
                    .filter(|c| country != "US" || c.admin1 == region)
                    .filter(|c| {
                        let n = normalise(&c.ascii_name);
                        n.starts_with(&place[..1]) && is_subsequence(&place, &n)
                    })
                    .max_by_key(|c| c.population)
                    .map(|c| vec![(c.id, -1)])
                    .unwrap_or_default()
            }
            "city" => {
                if let Some((name, cc)) = self.city_aliases.get(letters) {
                    return named_city(world, name, cc)
                        .map(|c| vec![(c.id, 0)])
                        .unwrap_or_default();
                }
                world
                    .cities_named(letters)
                    .filter(|c| c.population >= self.min_city_population)
                    .take(3)
                    .enumerate()
                    .map(|(i, c)| (c.id, -2 * i as i32))
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// Every geohint in a PTR name, each with its score before agreement.
    pub fn hints(&self, world: &World, name: &str) -> Vec<Hint> {
        let name = name.to_ascii_lowercase();
        let labels = self.host_labels(&name);
        let mut hints = Vec::new();
        for (i, label) in labels.iter().enumerate() {
            let tokens: Vec<&str> = label.split(['-', '_']).filter(|t| !t.is_empty()).collect();
            let interface = labels.len() > 1
                && i == 0
                && tokens.first().is_some_and(|t| {
                    let letters: String = t.chars().take_while(char::is_ascii_alphabetic).collect();
                    self.interface_prefixes.contains(&letters)
                });
            let position = if interface {
                self.position.interface_label
            } else if i + 1 == labels.len() {
                self.position.rightmost_host_label
            } else {
                self.position.other_host_label
            };
            // Single tokens, then two and three adjacent tokens joined (city names).
            let mut pieces: Vec<(String, Vec<usize>)> = tokens
                .iter()
                .enumerate()
                .map(|(i, t)| (t.to_string(), vec![i]))
                .collect();
            for n in 2..=3 {
                for (start, w) in tokens.windows(n).enumerate() {
                    if w.iter().all(|t| t.chars().all(|c| c.is_ascii_alphabetic())) {
                        pieces.push((w.concat(), (start..start + n).collect()));
                    }
                }
            }
            let mut label_hints: Vec<(Hint, Vec<usize>)> = Vec::new();
            for (piece, parts) in pieces {
                let joined = parts.len() > 1;
                let letters: String = piece
                    .chars()
                    .take_while(char::is_ascii_alphabetic)
                    .collect();
                let rest = &piece[letters.len()..];
                if letters.is_empty()
                    || self.ignore.contains(&letters)
                    || self.interface_prefixes.contains(&letters)
                {
                    continue;
                }
                // After the letters: digits only, or digits and a short suffix (83w).
                let digits = rest.chars().take_while(char::is_ascii_digit).count();
                let tail_ok = rest[digits..].len() <= 2
                    && rest[digits..].chars().all(|c| c.is_ascii_alphabetic());
                for shape in &self.shapes {
                    if joined && shape.kind != "city" {
                        continue;
                    }
                    let n = letters.len();
                    let (fits, key) =
                        if shape.kind == "clli" && n >= shape.letters[0] && n <= 11 && tail_ok {
                            (true, letters[..shape.letters[0]].to_owned())
                        } else {
                            (
                                n >= shape.letters[0]
                                    && n <= shape.letters[1]
                                    && digits <= shape.max_digits
                                    && rest.len() == digits,
                                letters.clone(),
                            )
                        };
                    if !fits {
                        continue;
                    }
                    for (city_id, adjust) in self.resolve(world, &shape.kind, &key) {
                        let hint = Hint {
                            token: piece.clone(),
                            kind: shape.kind.clone(),
                            city_id,
                            score: shape.score + position + adjust,
                        };
                        label_hints.push((hint, parts.clone()));
                    }
                }
            }
            // A city name made of several tokens (los-angeles) hides what its parts say.
            let consumed: HashSet<usize> = label_hints
                .iter()
                .filter(|(_, parts)| parts.len() > 1)
                .flat_map(|(_, parts)| parts.iter().copied())
                .collect();
            hints.extend(
                label_hints
                    .into_iter()
                    .filter(|(_, parts)| parts.len() > 1 || !consumed.contains(&parts[0]))
                    .map(|(h, _)| h),
            );
        }
        hints
    }

    /// Score cities from the hints of one or more names: the best hint per city, plus a
    /// bonus for every other token pointing within `agreement.within_km`.
    pub fn score(&self, world: &World, names: &[String]) -> Vec<Candidate> {
        let hints: Vec<Hint> = names.iter().flat_map(|n| self.hints(world, n)).collect();
        let mut best: BTreeMap<u32, i32> = BTreeMap::new();
        for h in &hints {
            let e = best.entry(h.city_id).or_insert(i32::MIN);
            *e = (*e).max(h.score);
        }
        let mut out: Vec<Candidate> = best
            .into_iter()
            .filter_map(|(id, score)| {
                let c = world.city(id)?;
                let agreeing: HashSet<&str> = hints
                    .iter()
                    .filter(|h| h.city_id != id)
                    .filter(|h| {
                        world.city(h.city_id).is_some_and(|o| {
                            geo::distance_km(c.latitude, c.longitude, o.latitude, o.longitude)
                                <= self.agreement.within_km
                        })
                    })
                    .map(|h| h.token.as_str())
                    .chain(
                        hints
                            .iter()
                            .filter(|h| h.city_id == id)
                            .map(|h| h.token.as_str())
                            .skip(1),
                    )
                    .collect();
                let bonus = (agreeing.len() as i32 * self.agreement.bonus_per_hint)
                    .min(self.agreement.max_bonus);
                clamp_score(f64::from(score + bonus)).map(|s| Candidate {
                    city_id: id,
                    score: s,
                })
            })
            .collect();
        out.sort_by(|a, b| b.score.cmp(&a.score).then(a.city_id.cmp(&b.city_id)));
        out
    }
}

/// The reverse-DNS engine.
pub struct ReverseDns {
    rules: Rules,
    resolver: Arc<dyn PtrResolver>,
}

impl ReverseDns {
    pub fn new(rules: Rules, resolver: Arc<dyn PtrResolver>) -> Self {
        Self { rules, resolver }
    }
}

impl Engine for ReverseDns {
    fn name(&self) -> &str {
        "reverse-dns"
    }

    fn locate<'a>(
        &'a self,
        ip: IpAddr,
        world: &'a World,
    ) -> BoxFuture<'a, Result<Vec<Candidate>, Error>> {
        async move {
            let names = self.resolver.ptr(ip).await?;
            Ok(self.rules.score(world, &names))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn best(world: &World, rules: &Rules, name: &str) -> Option<(String, u8)> {
        rules
            .score(world, &[name.to_owned()])
            .first()
            .and_then(|c| {
                world
                    .city(c.city_id)
                    .map(|city| (city.ascii_name.clone(), c.score))
            })
    }

    #[test]
    fn router_hostnames() {
        let world = World::embedded().expect("world");
        let rules = Rules::embedded().expect("rules");
        let cases = [
            ("ae-1.r01.fra02.example.net", "Frankfurt am Main"),
            ("xe-0-0-1.cr1.ams1.example.com", "Amsterdam"),
            ("be2.lon13.example.net", "London"),
            ("be3037.ccr21.fra03.atlas.cogentco.com", "Frankfurt am Main"),
            ("ae-1-3502.ear1.lon2.level3.net", "London"),
            ("ffm-bb1-link.ip.twelve99.net", "Frankfurt am Main"),
            ("nycmny83w.example.net", "New York City"),
            ("xe-1-2.core1.deham.example.de", "Hamburg"),
            ("et-0-0-0.edge2.newyork.example.co.uk", "New York City"),
            ("203-0-113-5.static.tokyo.example.jp", "Tokyo"),
            ("ge-0-1.los-angeles.example.com", "Los Angeles"),
        ];
        for (name, want) in cases {
            let got = best(&world, &rules, name);
            assert_eq!(
                got.as_ref().map(|g| g.0.as_str()),
                Some(want),
                "{name}: {got:?}"
            );
        }
    }

    #[test]
    fn domains_and_interfaces_are_not_hints() {
        let world = World::embedded().expect("world");
        let rules = Rules::embedded().expect("rules");
        // "paris" is the domain, not a host label; ae/xe are interfaces.
        assert!(rules
            .score(&world, &["ae-1.xe-2.paris.com".to_owned()])
            .is_empty());
        assert!(rules
            .score(&world, &["host.example.net".to_owned()])
            .is_empty());
        assert!(rules.score(&world, &["localhost".to_owned()]).is_empty());
    }

    #[test]
    fn position_and_agreement_raise_scores() {
        let world = World::embedded().expect("world");
        let rules = Rules::embedded().expect("rules");
        let (_, rightmost) = best(&world, &rules, "r1.fra2.example.net").expect("fra");
        let (_, middle) = best(&world, &rules, "fra2.r1.example.net").expect("fra");
        assert!(rightmost > middle, "{rightmost} vs {middle}");
        let (_, agreed) = best(&world, &rules, "frankfurt-r1.fra2.example.net").expect("fra");
        assert!(agreed > rightmost, "{agreed} vs {rightmost}");
        for c in rules.score(&world, &["ae-1.r01.fra02.example.net".to_owned()]) {
            assert!((1..=10).contains(&c.score));
        }
    }

    #[tokio::test]
    async fn engine_uses_the_resolver() {
        let world = World::embedded().expect("world");
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let mut table = HashMap::new();
        table.insert(ip, vec!["be2.lon13.example.net".to_owned()]);
        let engine = ReverseDns::new(
            Rules::embedded().expect("rules"),
            Arc::new(StaticPtr(table)),
        );
        let got = engine.locate(ip, &world).await.expect("locate");
        assert_eq!(
            world.city(got[0].city_id).map(|c| c.name.as_str()),
            Some("London")
        );
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(engine
            .locate(other, &world)
            .await
            .expect("locate")
            .is_empty());
    }
}
