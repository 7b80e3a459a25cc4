//! crowdsourced engine: users say where an address is; agreement, recency and a
//! per-user trust that grows with confirmed answers decide the score. Each user counts
//! once per address (their newest report), so a flood from one user moves nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};

use super::{clamp_score, finish, Candidate, Engine};
use crate::world::World;
use crate::{geo, Error};
pub use vantage_platform::store::unix_now;

/// One report: `user` says `ip` is in `city_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clickhouse::Row)]
pub struct Report {
    pub ip: String,
    pub user: String,
    pub city_id: u32,
    pub latitude: f64,
    pub longitude: f64,
    /// Unix seconds.
    pub reported_at: u32,
}

/// Where reports are kept.
pub trait CrowdStore: Send + Sync {
    fn add<'a>(&'a self, report: Report) -> BoxFuture<'a, Result<(), Error>>;
    /// Every report about `ip`.
    fn reports_for<'a>(&'a self, ip: &'a str) -> BoxFuture<'a, Result<Vec<Report>, Error>>;
    /// Every report about any address `user` reported on (to count their confirmations).
    fn reports_near_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<Report>, Error>>;
}

/// Reports in memory (tests, single-node use).
#[derive(Default, Clone)]
pub struct MemoryCrowdStore(Arc<Mutex<Vec<Report>>>);

impl MemoryCrowdStore {
    fn all(&self) -> Result<std::sync::MutexGuard<'_, Vec<Report>>, Error> {
        self.0.lock().map_err(|_| Error::Poisoned {
            what: "crowdsource store",
        })
    }
}

impl CrowdStore for MemoryCrowdStore {
    fn add<'a>(&'a self, report: Report) -> BoxFuture<'a, Result<(), Error>> {
        async move {
            self.all()?.push(report);
            Ok(())
        }
        .boxed()
    }
    fn reports_for<'a>(&'a self, ip: &'a str) -> BoxFuture<'a, Result<Vec<Report>, Error>> {
        async move { Ok(self.all()?.iter().filter(|r| r.ip == ip).cloned().collect()) }.boxed()
    }
    fn reports_near_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<Report>, Error>> {
        async move {
            let all = self.all()?;
            let ips: HashSet<&str> = all
                .iter()
                .filter(|r| r.user == user)
                .map(|r| r.ip.as_str())
                .collect();
            Ok(all
                .iter()
                .filter(|r| ips.contains(r.ip.as_str()))
                .cloned()
                .collect())
        }
        .boxed()
    }
}

/// Reports in ClickHouse (table `geo_crowdsource`, created by [`ClickHouseCrowdStore::ensure_table`]).
#[derive(Clone)]
pub struct ClickHouseCrowdStore {
    client: clickhouse::Client,
    db: String,
    /// `--clickhouse-cluster`: the table is Replicated `geo_crowdsource_local` behind a
    /// Distributed `geo_crowdsource`; `None`: one node.
    cluster: Option<String>,
}

impl ClickHouseCrowdStore {
    pub fn new(url: &str, db: &str) -> Result<Self, Error> {
        crate::check_db_name(db)?;
        Ok(Self {
            client: clickhouse::Client::default()
                .with_url(url)
                .with_validation(false),
            db: db.to_owned(),
            cluster: None,
        })
    }

    /// The store `ch` names, on its cluster when it has one.
    pub fn from_config(ch: &crate::ClickHouseConfig) -> Result<Self, Error> {
        Self::new(&ch.url, &ch.database)?.with_cluster(ch.cluster.as_deref())
    }

    /// Cluster mode (`--clickhouse-cluster`): [`Self::ensure_table`] creates the table
    /// `ON CLUSTER`, INSERTs wait until the shard has the row, and the `IN (SELECT ...)`
    /// of [`CrowdStore::reports_near_user`] runs as GLOBAL IN. `None` or empty: one node.
    pub fn with_cluster(mut self, cluster: Option<&str>) -> Result<Self, Error> {
        self.cluster = crate::cluster_name(cluster)?;
        if self.cluster.is_some() {
            self.client = crate::cluster_client(self.client);
        }
        Ok(self)
    }

    /// The statements [`Self::ensure_table`] runs.
    fn create_statements(&self) -> Result<Vec<String>, Error> {
        let db = &self.db;
        crate::table_ddl(
            db,
            self.cluster.as_deref(),
            format!(
                "CREATE TABLE IF NOT EXISTS {db}.geo_crowdsource (ip String, user String, city_id UInt32, \
                 latitude Float64, longitude Float64, reported_at DateTime) \
                 ENGINE = MergeTree ORDER BY (ip, reported_at)"
            ),
        )
    }

    fn err(source: clickhouse::error::Error) -> Error {
        Error::Store {
            what: "ClickHouse crowdsource table".into(),
            source,
        }
    }

    /// Create the database and table if missing (idempotent; ClickHouse 18.16 types only;
    /// on a cluster `ON CLUSTER`, Replicated `geo_crowdsource_local` behind a Distributed
    /// `geo_crowdsource`).
    pub async fn ensure_table(&self) -> Result<(), Error> {
        for sql in self.create_statements()? {
            self.client.query(&sql).execute().await.map_err(Self::err)?;
        }
        Ok(())
    }

    const COLUMNS: &'static str = "ip, user, city_id, latitude, longitude, toUInt32(reported_at)";
}

impl CrowdStore for ClickHouseCrowdStore {
    fn add<'a>(&'a self, report: Report) -> BoxFuture<'a, Result<(), Error>> {
        async move {
            let client = self.client.clone().with_database(&self.db);
            let mut insert = client
                .insert::<Report>("geo_crowdsource")
                .await
                .map_err(Self::err)?;
            insert.write(&report).await.map_err(Self::err)?;
            insert.end().await.map_err(Self::err)
        }
        .boxed()
    }
    fn reports_for<'a>(&'a self, ip: &'a str) -> BoxFuture<'a, Result<Vec<Report>, Error>> {
        async move {
            self.client
                .query(&format!(
                    "SELECT {} FROM {}.geo_crowdsource WHERE ip = ?",
                    Self::COLUMNS,
                    self.db
                ))
                .bind(ip)
                .fetch_all::<Report>()
                .await
                .map_err(Self::err)
        }
        .boxed()
    }
    fn reports_near_user<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<Vec<Report>, Error>> {
        async move {
            let db = &self.db;
            self.client
                .query(&format!(
                    "SELECT {} FROM {db}.geo_crowdsource WHERE ip IN (SELECT ip FROM {db}.geo_crowdsource WHERE user = ?)",
                    Self::COLUMNS
                ))
                .bind(user)
                .fetch_all::<Report>()
                .await
                .map_err(Self::err)
        }
        .boxed()
    }
}

/// Scoring knobs.
#[derive(Debug, Clone)]
pub struct CrowdPolicy {
    /// Reports this far apart (km) agree.
    pub agree_km: f64,
    /// A report's weight halves every this many seconds.
    pub half_life_s: f64,
    /// Trust = 1 + confirmed answers, at most this.
    pub max_trust: f64,
}

impl Default for CrowdPolicy {
    fn default() -> Self {
        Self {
            agree_km: 40.0,
            half_life_s: 90.0 * 86_400.0,
            max_trust: 5.0,
        }
    }
}

/// Newest report per user.
fn newest_per_user(reports: &[Report]) -> HashMap<&str, &Report> {
    let mut newest: HashMap<&str, &Report> = HashMap::new();
    for r in reports {
        let e = newest.entry(r.user.as_str()).or_insert(r);
        if r.reported_at > e.reported_at {
            *e = r;
        }
    }
    newest
}

impl CrowdPolicy {
    fn agree(&self, a: &Report, b: &Report) -> bool {
        a.city_id == b.city_id
            || geo::distance_km(a.latitude, a.longitude, b.latitude, b.longitude) <= self.agree_km
    }

    /// A user's trust: 1 + the addresses (other than `except_ip`) where another user's
    /// newest report agrees with theirs.
    pub fn trust(&self, user: &str, reports: &[Report], except_ip: &str) -> f64 {
        let mut by_ip: BTreeMap<&str, Vec<Report>> = BTreeMap::new();
        for r in reports.iter().filter(|r| r.ip != except_ip) {
            by_ip.entry(r.ip.as_str()).or_default().push(r.clone());
        }
        let confirmed = by_ip
            .values()
            .filter(|rs| {
                let newest = newest_per_user(rs);
                newest.get(user).is_some_and(|mine| {
                    newest
                        .iter()
                        .any(|(u, other)| *u != user && self.agree(mine, other))
                })
            })
            .count();
        (1.0 + confirmed as f64).min(self.max_trust)
    }

    /// Score cities from one address's reports; `trust` gives each user's trust.
    pub fn score(
        &self,
        reports: &[Report],
        now: u32,
        trust: &HashMap<String, f64>,
    ) -> Vec<Candidate> {
        let newest = newest_per_user(reports);
        let weight = |r: &Report| {
            let age = f64::from(now.saturating_sub(r.reported_at));
            trust.get(&r.user).copied().unwrap_or(1.0) * 0.5_f64.powf(age / self.half_life_s)
        };
        let total: f64 = newest.values().map(|r| weight(r)).sum();
        if total <= 0.0 {
            return Vec::new();
        }
        let mut cities: BTreeMap<u32, f64> = BTreeMap::new();
        for r in newest.values() {
            // Support: the weight of every user whose report agrees with this one.
            let support: f64 = newest
                .values()
                .filter(|o| self.agree(r, o))
                .map(|o| weight(o))
                .sum();
            let e = cities.entry(r.city_id).or_default();
            *e = e.max(support);
        }
        let voters = newest.len() as f64;
        let scored = cities
            .into_iter()
            .filter_map(|(city_id, support)| {
                // Share of the weight, times confidence that grows with the number of voters.
                let confidence = (voters / 3.0).clamp(0.5, 1.0);
                clamp_score(10.0 * (support / total) * confidence)
                    .map(|score| Candidate { city_id, score })
            })
            .collect();
        finish(scored, 10)
    }
}

/// The crowdsourced engine.
pub struct Crowdsourced {
    store: Arc<dyn CrowdStore>,
    policy: CrowdPolicy,
}

impl Crowdsourced {
    pub fn new(store: Arc<dyn CrowdStore>, policy: CrowdPolicy) -> Self {
        Self { store, policy }
    }

    pub fn store(&self) -> &Arc<dyn CrowdStore> {
        &self.store
    }

    /// Record a report; `now` is Unix seconds.
    pub async fn report(&self, report: Report) -> Result<(), Error> {
        self.store.add(report).await
    }

    pub async fn scores(&self, ip: IpAddr, now: u32) -> Result<Vec<Candidate>, Error> {
        let ip = ip.to_string();
        let reports = self.store.reports_for(&ip).await?;
        let mut trust = HashMap::new();
        for user in reports
            .iter()
            .map(|r| r.user.clone())
            .collect::<HashSet<_>>()
        {
            let near = self.store.reports_near_user(&user).await?;
            let t = self.policy.trust(&user, &near, &ip);
            trust.insert(user, t);
        }
        Ok(self.policy.score(&reports, now, &trust))
    }
}

impl Engine for Crowdsourced {
    fn name(&self) -> &str {
        "crowdsourced"
    }

    fn locate<'a>(
        &'a self,
        ip: IpAddr,
        _world: &'a World,
    ) -> BoxFuture<'a, Result<Vec<Candidate>, Error>> {
        self.scores(ip, unix_now()).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMS: (u32, f64, f64) = (2759794, 52.374, 4.8897);
    const FRA: (u32, f64, f64) = (2925533, 50.1155, 8.6842);
    const NOW: u32 = 1_800_000_000;

    fn rep(ip: &str, user: &str, city: (u32, f64, f64), at: u32) -> Report {
        Report {
            ip: ip.into(),
            user: user.into(),
            city_id: city.0,
            latitude: city.1,
            longitude: city.2,
            reported_at: at,
        }
    }

    async fn engine_with(reports: Vec<Report>) -> Crowdsourced {
        let store = MemoryCrowdStore::default();
        for r in reports {
            store.add(r).await.expect("add");
        }
        Crowdsourced::new(Arc::new(store), CrowdPolicy::default())
    }

    #[tokio::test]
    async fn a_flood_from_one_user_cannot_move_a_location() {
        let ip: IpAddr = "198.51.100.7".parse().expect("ip");
        let mut reports = vec![
            rep("198.51.100.7", "alice", AMS, NOW - 100),
            rep("198.51.100.7", "bob", AMS, NOW - 50),
        ];
        for i in 0..1000 {
            reports.push(rep("198.51.100.7", "mallory", FRA, NOW - 10 + (i % 10)));
        }
        let got = engine_with(reports)
            .await
            .scores(ip, NOW)
            .await
            .expect("scores");
        assert_eq!(got[0].city_id, AMS.0, "{got:?}");
        let fra = got
            .iter()
            .find(|c| c.city_id == FRA.0)
            .map_or(0, |c| c.score);
        assert!(got[0].score >= 2 * fra, "{got:?}");
    }

    #[tokio::test]
    async fn trust_grows_with_confirmed_answers() {
        // carol was confirmed by others on three other addresses; dave on none.
        let mut reports = Vec::new();
        for (n, helper) in ["x", "y", "z"].iter().enumerate() {
            let other = format!("203.0.113.{n}");
            reports.push(rep(&other, "carol", AMS, NOW - 1000));
            reports.push(rep(&other, helper, AMS, NOW - 900));
        }
        reports.push(rep("198.51.100.9", "carol", FRA, NOW - 10));
        reports.push(rep("198.51.100.9", "dave", AMS, NOW - 10));
        let policy = CrowdPolicy::default();
        assert_eq!(policy.trust("carol", &reports, "198.51.100.9"), 4.0);
        assert_eq!(policy.trust("dave", &reports, "198.51.100.9"), 1.0);
        let ip: IpAddr = "198.51.100.9".parse().expect("ip");
        let got = engine_with(reports)
            .await
            .scores(ip, NOW)
            .await
            .expect("scores");
        assert_eq!(got[0].city_id, FRA.0, "the trusted user wins: {got:?}");
    }

    #[test]
    fn single_node_ddl_is_unchanged_and_the_cluster_form_is_replicated_behind_distributed() {
        let store = |cluster: Option<&str>| {
            ClickHouseCrowdStore::new("http://127.0.0.1:1", "v")
                .expect("store")
                .with_cluster(cluster)
                .expect("cluster name")
        };
        let one = store(None).create_statements().expect("ddl");
        assert_eq!(
            one,
            [
                "CREATE DATABASE IF NOT EXISTS v",
                "CREATE TABLE IF NOT EXISTS v.geo_crowdsource (ip String, user String, city_id UInt32, latitude Float64, longitude Float64, reported_at DateTime) ENGINE = MergeTree ORDER BY (ip, reported_at)",
            ]
        );
        assert_eq!(store(Some("")).create_statements().expect("ddl"), one);
        assert_eq!(
            store(Some("vc")).create_statements().expect("ddl"),
            [
                "CREATE DATABASE IF NOT EXISTS v ON CLUSTER vc",
                "CREATE TABLE IF NOT EXISTS v.geo_crowdsource_local ON CLUSTER vc (ip String, user String, city_id UInt32, latitude Float64, longitude Float64, reported_at DateTime) ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/v/geo_crowdsource', '{replica}') ORDER BY (ip, reported_at)",
                "CREATE TABLE IF NOT EXISTS v.geo_crowdsource ON CLUSTER vc AS v.geo_crowdsource_local ENGINE = Distributed(vc, v, geo_crowdsource_local, cityHash64(ip))",
            ]
        );
    }

    #[test]
    fn recent_reports_weigh_more() {
        let policy = CrowdPolicy::default();
        let year = 365 * 86_400;
        let reports = vec![
            rep("a", "u1", AMS, NOW - 2 * year),
            rep("a", "u2", FRA, NOW - 60),
        ];
        let got = policy.score(&reports, NOW, &HashMap::new());
        assert_eq!(got[0].city_id, FRA.0, "{got:?}");
    }
}
