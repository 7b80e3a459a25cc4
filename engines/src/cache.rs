//! Locate answers kept in ClickHouse, so that they outlive the process and are shared
//! between replicas. An answer older than the API's `cache_max_age` is computed (and
//! measured) again.
//!
//! Table `geo_answers (ip String, key String, answered_ms UInt64, answer String)`,
//! `ReplacingMergeTree(answered_ms)` ordered by `(ip, key)`: the newest answer per key
//! wins. The key holds the engine-set fingerprint, the `?engines=` filter and the data files' version. A row with
//! key [`FORGET_KEY`] marks every older answer for the address as stale (a crowdsourced
//! report was accepted). ClickHouse 18.16: no TTL, so old rows stay until replaced.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};

use crate::reducer::Located;
use crate::Error;

/// The key of the row that makes older answers for an address stale.
pub const FORGET_KEY: &str = "#forget";

/// A cached answer and when it was computed (Unix milliseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    pub answered_ms: u64,
    pub located: Located,
}

/// Where answers are kept between processes.
pub trait AnswerStore: Send + Sync {
    /// The newest answer under `key` for `ip`, unless a later forget made it stale.
    fn get<'a>(&'a self, ip: IpAddr, key: &'a str) -> BoxFuture<'a, Result<Option<Cached>, Error>>;
    /// Keep an answer.
    fn put<'a>(
        &'a self,
        key: &'a str,
        answer: &'a Located,
        answered_ms: u64,
    ) -> BoxFuture<'a, Result<(), Error>>;
    /// Make every answer for `ip` computed before `at_ms` stale.
    fn forget(&self, ip: IpAddr, at_ms: u64) -> BoxFuture<'_, Result<(), Error>>;
    /// The addresses forgotten after `since_ms`, each with its newest forget: how a
    /// replica learns of reports another replica accepted, so that it drops the answers
    /// it holds in memory ([`crate::locate::Api::sync_forgets`]).
    fn forgets_since(&self, since_ms: u64) -> BoxFuture<'_, Result<Vec<(IpAddr, u64)>, Error>>;
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Answers in ClickHouse (`geo_answers`).
pub struct ClickHouseAnswers {
    client: clickhouse::Client,
    db: String,
    /// `--clickhouse-cluster`: the table is Replicated `geo_answers_local` behind a
    /// Distributed `geo_answers`; `None`: one node.
    cluster: Option<String>,
}

#[derive(clickhouse::Row, Serialize, Deserialize)]
struct AnswerRow {
    ip: String,
    key: String,
    answered_ms: u64,
    answer: String,
}

impl ClickHouseAnswers {
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
    /// `ON CLUSTER`, and INSERTs wait until the shard has the row. `None` or empty: one node.
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
                "CREATE TABLE IF NOT EXISTS {db}.geo_answers (ip String, key String, \
                 answered_ms UInt64, answer String) \
                 ENGINE = ReplacingMergeTree(answered_ms) ORDER BY (ip, key)"
            ),
        )
    }

    /// Create the table when it is missing (on a cluster: `ON CLUSTER`, Replicated
    /// `geo_answers_local` behind a Distributed `geo_answers`).
    pub async fn ensure_table(&self) -> Result<(), Error> {
        let db = &self.db;
        for sql in self.create_statements()? {
            self.client
                .query(&sql)
                .execute()
                .await
                .map_err(|source| Error::Store {
                    what: format!("creating {db}.geo_answers"),
                    source,
                })?;
        }
        Ok(())
    }

    async fn insert(&self, row: AnswerRow) -> Result<(), Error> {
        let fail = |source: clickhouse::error::Error| Error::Store {
            what: format!("writing {}.geo_answers", self.db),
            source,
        };
        let client = self.client.clone().with_database(&self.db);
        let mut insert = client
            .insert::<AnswerRow>("geo_answers")
            .await
            .map_err(fail)?;
        insert.write(&row).await.map_err(fail)?;
        insert.end().await.map_err(fail)
    }
}

/// The answer under `key`, unless the newest forget is later.
fn pick(rows: Vec<AnswerRow>, key: &str) -> Result<Option<Cached>, Error> {
    let forgotten = rows
        .iter()
        .filter(|r| r.key == FORGET_KEY)
        .map(|r| r.answered_ms)
        .max()
        .unwrap_or(0);
    let Some(row) = rows
        .into_iter()
        .filter(|r| r.key == key && r.answered_ms >= forgotten)
        // Two replicas answering in the same millisecond: the same pick whatever order
        // the shards sent the rows in.
        .max_by(|a, b| (a.answered_ms, &a.answer).cmp(&(b.answered_ms, &b.answer)))
    else {
        return Ok(None);
    };
    let located: Located = serde_json::from_str(&row.answer).map_err(|source| Error::Json {
        what: "store: a cached answer does not parse".into(),
        source,
    })?;
    Ok(Some(Cached {
        answered_ms: row.answered_ms,
        located,
    }))
}

impl AnswerStore for ClickHouseAnswers {
    fn get<'a>(&'a self, ip: IpAddr, key: &'a str) -> BoxFuture<'a, Result<Option<Cached>, Error>> {
        async move {
            // Without FINAL: duplicates not yet merged are resolved in `pick`.
            let rows = self
                .client
                .query(&format!(
                    "SELECT ip, key, answered_ms, answer FROM {}.geo_answers \
                     WHERE ip = ? AND (key = ? OR key = ?)",
                    self.db
                ))
                .bind(ip.to_string())
                .bind(key)
                .bind(FORGET_KEY)
                .fetch_all::<AnswerRow>()
                .await
                .map_err(|source| Error::Store {
                    what: format!("reading {}.geo_answers", self.db),
                    source,
                })?;
            pick(rows, key)
        }
        .boxed()
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        answer: &'a Located,
        answered_ms: u64,
    ) -> BoxFuture<'a, Result<(), Error>> {
        async move {
            let text = serde_json::to_string(answer).map_err(|source| Error::Json {
                what: "store: encoding an answer".into(),
                source,
            })?;
            self.insert(AnswerRow {
                ip: answer.ip.to_string(),
                key: key.to_owned(),
                answered_ms,
                answer: text,
            })
            .await
        }
        .boxed()
    }

    fn forget(&self, ip: IpAddr, at_ms: u64) -> BoxFuture<'_, Result<(), Error>> {
        async move {
            self.insert(AnswerRow {
                ip: ip.to_string(),
                key: FORGET_KEY.to_owned(),
                answered_ms: at_ms,
                answer: String::new(),
            })
            .await
        }
        .boxed()
    }

    fn forgets_since(&self, since_ms: u64) -> BoxFuture<'_, Result<Vec<(IpAddr, u64)>, Error>> {
        async move {
            let rows = self
                .client
                .query(&forgets_sql(&self.db))
                .bind(FORGET_KEY)
                .bind(since_ms)
                .fetch_all::<ForgetRow>()
                .await
                .map_err(|source| Error::Store {
                    what: format!("reading the forgets in {}.geo_answers", self.db),
                    source,
                })?;
            Ok(rows
                .into_iter()
                .filter_map(|r| Some((r.ip.parse().ok()?, r.at)))
                .collect())
        }
        .boxed()
    }
}

#[derive(clickhouse::Row, Deserialize)]
struct ForgetRow {
    ip: String,
    at: u64,
}

/// The newest forget per address after a time (`?` = [`FORGET_KEY`], `?` = Unix ms).
/// The alias is not `answered_ms`: ClickHouse 18.16 would read the WHERE's
/// `answered_ms` as the aggregate.
fn forgets_sql(db: &str) -> String {
    format!(
        "SELECT ip, max(answered_ms) AS at FROM {db}.geo_answers \
         WHERE key = ? AND answered_ms > ? GROUP BY ip ORDER BY ip"
    )
}

/// Answers in memory (tests; one process).
#[derive(Default)]
pub struct MemoryAnswers(Mutex<HashMap<IpAddr, Vec<MemoryRow>>>);

/// Key, when (Unix ms), answer.
type MemoryRow = (String, u64, Located);

impl AnswerStore for MemoryAnswers {
    fn get<'a>(&'a self, ip: IpAddr, key: &'a str) -> BoxFuture<'a, Result<Option<Cached>, Error>> {
        let got = self.0.lock().ok().and_then(|m| {
            let rows = m.get(&ip)?;
            let forgotten = rows
                .iter()
                .filter(|(k, _, _)| k == FORGET_KEY)
                .map(|(_, at, _)| *at)
                .max()
                .unwrap_or(0);
            rows.iter()
                .filter(|(k, at, _)| k == key && *at >= forgotten)
                .max_by_key(|(_, at, _)| *at)
                .map(|(_, at, l)| Cached {
                    answered_ms: *at,
                    located: l.clone(),
                })
        });
        async move { Ok(got) }.boxed()
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        answer: &'a Located,
        answered_ms: u64,
    ) -> BoxFuture<'a, Result<(), Error>> {
        if let Ok(mut m) = self.0.lock() {
            m.entry(answer.ip)
                .or_default()
                .push((key.to_owned(), answered_ms, answer.clone()));
        }
        async move { Ok(()) }.boxed()
    }

    fn forget(&self, ip: IpAddr, at_ms: u64) -> BoxFuture<'_, Result<(), Error>> {
        if let Ok(mut m) = self.0.lock() {
            let empty = Located {
                ip,
                scored: Vec::new(),
                partials: Vec::new(),
                anycast: false,
            };
            m.entry(ip)
                .or_default()
                .push((FORGET_KEY.to_owned(), at_ms, empty));
        }
        async move { Ok(()) }.boxed()
    }

    fn forgets_since(&self, since_ms: u64) -> BoxFuture<'_, Result<Vec<(IpAddr, u64)>, Error>> {
        let got = self
            .0
            .lock()
            .map(|m| {
                m.iter()
                    .filter_map(|(ip, rows)| {
                        rows.iter()
                            .filter(|(k, at, _)| k == FORGET_KEY && *at > since_ms)
                            .map(|(_, at, _)| *at)
                            .max()
                            .map(|at| (*ip, at))
                    })
                    .collect()
            })
            .unwrap_or_default();
        async move { Ok(got) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(ip: &str) -> Located {
        Located {
            ip: ip.parse().expect("ip"),
            scored: Vec::new(),
            partials: Vec::new(),
            anycast: true,
        }
    }

    fn row(key: &str, at: u64, answer: &Located) -> AnswerRow {
        AnswerRow {
            ip: answer.ip.to_string(),
            key: key.into(),
            answered_ms: at,
            answer: serde_json::to_string(answer).expect("json"),
        }
    }

    #[test]
    fn newest_answer_unless_forgotten_later() {
        let a = located("193.0.14.129");
        let rows = vec![row("k", 10, &a), row("k", 30, &a), row("other", 50, &a)];
        assert_eq!(
            pick(rows, "k").expect("pick").map(|c| c.answered_ms),
            Some(30)
        );
        let rows = vec![
            row("k", 10, &a),
            AnswerRow {
                ip: a.ip.to_string(),
                key: FORGET_KEY.into(),
                answered_ms: 20,
                answer: String::new(),
            },
        ];
        assert_eq!(pick(rows, "k").expect("pick"), None, "forgotten at 20");
        let bad = vec![AnswerRow {
            answer: "{".into(),
            ..row("k", 1, &a)
        }];
        assert!(pick(bad, "k").is_err());
    }

    #[test]
    fn equal_times_pick_the_same_answer_in_any_row_order() {
        let a = located("193.0.14.129");
        let b = Located {
            anycast: false,
            ..a.clone()
        };
        let one = pick(vec![row("k", 30, &a), row("k", 30, &b)], "k").expect("pick");
        let other = pick(vec![row("k", 30, &b), row("k", 30, &a)], "k").expect("pick");
        assert_eq!(one, other);
        assert!(one.is_some());
    }

    #[test]
    fn forgets_are_read_per_address_after_a_time() {
        assert_eq!(
            forgets_sql("v"),
            "SELECT ip, max(answered_ms) AS at FROM v.geo_answers \
             WHERE key = ? AND answered_ms > ? GROUP BY ip ORDER BY ip"
        );
    }

    #[test]
    fn single_node_ddl_is_unchanged_and_the_cluster_form_is_replicated_behind_distributed() {
        let one = ClickHouseAnswers::new("http://127.0.0.1:1", "v")
            .expect("store")
            .with_cluster(None)
            .expect("no cluster");
        assert_eq!(
            one.create_statements().expect("ddl"),
            [
                "CREATE DATABASE IF NOT EXISTS v",
                "CREATE TABLE IF NOT EXISTS v.geo_answers (ip String, key String, answered_ms UInt64, answer String) ENGINE = ReplacingMergeTree(answered_ms) ORDER BY (ip, key)",
            ]
        );
        let empty = ClickHouseAnswers::new("http://127.0.0.1:1", "v")
            .expect("store")
            .with_cluster(Some(" "))
            .expect("empty name = one node");
        assert_eq!(
            empty.create_statements().expect("ddl"),
            one.create_statements().expect("ddl")
        );
        let c = ClickHouseAnswers::new("http://127.0.0.1:1", "v")
            .expect("store")
            .with_cluster(Some("vc"))
            .expect("cluster");
        assert_eq!(
            c.create_statements().expect("ddl"),
            [
                "CREATE DATABASE IF NOT EXISTS v ON CLUSTER vc",
                "CREATE TABLE IF NOT EXISTS v.geo_answers_local ON CLUSTER vc (ip String, key String, answered_ms UInt64, answer String) ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/v/geo_answers', '{replica}', answered_ms) ORDER BY (ip, key)",
                "CREATE TABLE IF NOT EXISTS v.geo_answers ON CLUSTER vc AS v.geo_answers_local ENGINE = Distributed(vc, v, geo_answers_local, cityHash64(ip))",
            ]
        );
        let bad = ClickHouseAnswers::new("http://127.0.0.1:1", "v")
            .expect("store")
            .with_cluster(Some("a;DROP"));
        let Err(bad) = bad else {
            panic!("a cluster name that is not an identifier was accepted");
        };
        assert!(bad.to_string().contains("--clickhouse-cluster"), "{bad}");
    }

    #[tokio::test]
    async fn memory_store_lists_forgets_after_a_time() {
        let s = MemoryAnswers::default();
        let a: IpAddr = "193.0.14.129".parse().expect("ip");
        let b: IpAddr = "192.0.2.1".parse().expect("ip");
        s.forget(a, 100).await.expect("forget");
        s.forget(a, 300).await.expect("forget");
        s.forget(b, 50).await.expect("forget");
        s.put("k", &located("192.0.2.1"), 500).await.expect("put");
        assert_eq!(s.forgets_since(60).await.expect("forgets"), vec![(a, 300)]);
        assert!(s.forgets_since(300).await.expect("forgets").is_empty());
    }

    #[tokio::test]
    async fn memory_store_forgets() {
        let s = MemoryAnswers::default();
        let a = located("193.0.14.129");
        s.put("k", &a, 100).await.expect("put");
        let got = s.get(a.ip, "k").await.expect("get").expect("hit");
        assert_eq!(got.located, a);
        assert_eq!(s.get(a.ip, "x").await.expect("get"), None);
        s.forget(a.ip, 150).await.expect("forget");
        assert_eq!(s.get(a.ip, "k").await.expect("get"), None);
        s.put("k", &a, 200).await.expect("put");
        assert!(s.get(a.ip, "k").await.expect("get").is_some());
    }
}
