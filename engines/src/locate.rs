//! The locate service: the [`Locator`] behind an answer cache (memory, then the
//! answer store), with the API's metrics. The HTTP handlers are in [`crate::api`].

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::cache::{now_ms, AnswerStore};
use crate::engine::crowd::{Crowdsourced, Report};
use crate::reducer::{Located, Locator};
use crate::Error;

/// Cached answers at most.
const CACHE_CAPACITY: usize = 200_000;

/// How often a replica reads the forgets other replicas wrote ([`Api::sync_forgets`]):
/// the longest a crowdsourced report accepted by one replica is not yet counted by the
/// others' memory caches.
pub const FORGET_SYNC_EVERY: Duration = Duration::from_secs(1);

/// Forgets are read again this far back (ms): a forget written on a lagging shard
/// replica, or by a replica whose clock is a little behind, is still seen.
const FORGET_OVERLAP_MS: u64 = 30_000;

/// An answer in memory: when it was cached, when it was computed (Unix ms), the answer.
type MemoryEntry = (Instant, u64, Arc<Located>);

/// The API's metrics (`vantage_engines_*`).
struct Metrics {
    locates: Counter,
    cache_hits: Counter,
    engine_errors: Counter,
    bad_requests: Counter,
    crowd_reports: Counter,
    store_hits: Counter,
    store_errors: Counter,
    locate_seconds: Histogram,
}

/// The API's state: the locate service and its answer cache.
pub struct Api {
    locator: Locator,
    crowd: Option<Arc<Crowdsourced>>,
    cache: Mutex<HashMap<String, MemoryEntry>>,
    store: Option<Arc<dyn AnswerStore>>,
    /// The newest forget known per address (Unix ms): this replica's own and those read
    /// from the store. An answer computed before it is not kept in memory.
    forgotten: Mutex<HashMap<IpAddr, u64>>,
    /// Forgets in the store up to this time (Unix ms) have been read.
    forgets_read_to: Mutex<u64>,
    /// Answers being written to the store in the background.
    writes: Mutex<tokio::task::JoinSet<()>>,
    /// Room for background writes; when it is full a locate writes before it answers
    /// (backpressure instead of an unbounded queue).
    write_room: Arc<tokio::sync::Semaphore>,
    cache_max_age: Duration,
    max_batch: usize,
    metrics: Metrics,
    /// The version of the data files in force (`data::Reloadable::version`): part of
    /// the cache key, so that answers computed before a reload are not served.
    data_version: Option<DataVersion>,
}

/// What gives the version of the data files in force.
pub type DataVersion = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Answer-store writes in flight at most.
const MAX_PENDING_WRITES: usize = 256;

impl Api {
    pub fn new(
        locator: Locator,
        crowd: Option<Arc<Crowdsourced>>,
        cache_max_age: Duration,
        max_batch: usize,
        registry: &mut Registry,
    ) -> Self {
        let metrics = Metrics {
            locates: Counter::default(),
            cache_hits: Counter::default(),
            engine_errors: Counter::default(),
            bad_requests: Counter::default(),
            crowd_reports: Counter::default(),
            store_hits: Counter::default(),
            store_errors: Counter::default(),
            locate_seconds: Histogram::new([0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
        };
        registry.register(
            "locates",
            "Addresses located (cached or not)",
            metrics.locates.clone(),
        );
        registry.register(
            "cache_hits",
            "Locates answered from the cache",
            metrics.cache_hits.clone(),
        );
        registry.register(
            "engine_errors",
            "Engine runs that failed or timed out",
            metrics.engine_errors.clone(),
        );
        registry.register(
            "bad_requests",
            "Requests refused with a 4xx",
            metrics.bad_requests.clone(),
        );
        registry.register(
            "crowd_reports",
            "Crowdsourced reports accepted",
            metrics.crowd_reports.clone(),
        );
        registry.register(
            "store_hits",
            "Locates answered from the answer store (ClickHouse)",
            metrics.store_hits.clone(),
        );
        registry.register(
            "store_errors",
            "Answer store reads or writes that failed",
            metrics.store_errors.clone(),
        );
        registry.register(
            "locate_seconds",
            "Time to locate one address (uncached)",
            metrics.locate_seconds.clone(),
        );
        Self {
            locator,
            crowd,
            cache: Mutex::new(HashMap::new()),
            store: None,
            forgotten: Mutex::new(HashMap::new()),
            forgets_read_to: Mutex::new(now_ms()),
            writes: Mutex::new(tokio::task::JoinSet::new()),
            write_room: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_WRITES)),
            cache_max_age,
            max_batch,
            metrics,
            data_version: None,
        }
    }

    /// Key cached answers by the data files' version too (see [`Api::cache_key`]).
    pub fn with_data_version(mut self, version: DataVersion) -> Self {
        self.data_version = Some(version);
        self
    }

    /// Keep answers in `store` too (ClickHouse), behind the in-memory cache.
    pub fn with_answer_store(mut self, store: Arc<dyn AnswerStore>) -> Self {
        self.store = Some(store);
        self
    }

    pub fn locator(&self) -> &Locator {
        &self.locator
    }

    /// Drop the in-memory answers (the engine set changed; stored answers are keyed by
    /// the set's fingerprint and so are not served for the new set).
    pub fn clear_memory_cache(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }

    /// The cache key of an answer, without the address: the engine set's fingerprint,
    /// the `?engines=` filter and, with [`Api::with_data_version`], the version of the
    /// data files (RIR statistics, ASN table, geofeeds): a reload changes the key, and
    /// answers cached before it (memory or store) are not served after it.
    pub fn cache_key(&self, only: Option<&HashSet<String>>) -> String {
        let filter = match only {
            Some(set) => {
                let mut names: Vec<&str> = set.iter().map(String::as_str).collect();
                names.sort_unstable();
                names.join(",")
            }
            None => String::new(),
        };
        match &self.data_version {
            Some(version) => format!(
                "{}|{filter}|data={:016x}",
                self.locator.fingerprint(),
                version()
            ),
            None => format!("{}|{filter}", self.locator.fingerprint()),
        }
    }

    /// Locate with the answer cache: memory, then the answer store, then the engines.
    pub async fn locate(&self, ip: IpAddr, only: Option<&HashSet<String>>) -> Arc<Located> {
        self.metrics.locates.inc();
        let key = self.cache_key(only);
        let mem_key = format!("{ip}|{key}");
        if let Ok(cache) = self.cache.lock() {
            if let Some((at, _, answer)) = cache.get(&mem_key) {
                if at.elapsed() < self.cache_max_age {
                    self.metrics.cache_hits.inc();
                    return answer.clone();
                }
            }
        }
        if let Some(store) = &self.store {
            match store.get(ip, &key).await {
                Ok(Some(cached)) => {
                    let age = Duration::from_millis(now_ms().saturating_sub(cached.answered_ms));
                    if age < self.cache_max_age {
                        self.metrics.cache_hits.inc();
                        self.metrics.store_hits.inc();
                        let answer = Arc::new(cached.located);
                        let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                        self.remember(mem_key, at, cached.answered_ms, answer.clone());
                        return answer;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    self.metrics.store_errors.inc();
                    tracing::warn!(%ip, error = %e, "answer store read failed; locating afresh");
                }
            }
        }
        let start = Instant::now();
        // The answer is as old as the data it read: a report accepted while it was being
        // computed (here or on another replica) makes it stale.
        let started_ms = now_ms();
        let answer = Arc::new(self.locator.locate(ip, only).await);
        self.metrics
            .locate_seconds
            .observe(start.elapsed().as_secs_f64());
        let failed = answer.partials.iter().filter(|p| p.error.is_some()).count();
        self.metrics.engine_errors.inc_by(failed as u64);
        // Answers with a failed engine are not kept: the next ask tries again.
        if failed == 0 {
            self.remember(mem_key, Instant::now(), started_ms, answer.clone());
            if let Some(store) = &self.store {
                self.store_answer(store.clone(), key, answer.clone(), started_ms)
                    .await;
            }
        }
        answer
    }

    /// Write an answer to the store in the background (one ClickHouse INSERT is ~40 ms,
    /// which a locate need not wait for); inline when [`MAX_PENDING_WRITES`] are in
    /// flight.
    async fn store_answer(
        &self,
        store: Arc<dyn AnswerStore>,
        key: String,
        answer: Arc<Located>,
        answered_ms: u64,
    ) {
        let errors = self.metrics.store_errors.clone();
        let write = async move {
            if let Err(e) = store.put(&key, &answer, answered_ms).await {
                errors.inc();
                tracing::warn!(ip = %answer.ip, error = %e, "answer store write failed");
            }
        };
        match self.write_room.clone().try_acquire_owned() {
            Ok(permit) => {
                if let Ok(mut writes) = self.writes.lock() {
                    while writes.try_join_next().is_some() {}
                    writes.spawn(async move {
                        write.await;
                        drop(permit);
                    });
                    return;
                }
                write.await;
            }
            Err(_) => write.await,
        }
    }

    /// Wait for the background answer-store writes started so far.
    pub async fn flush(&self) {
        let mut pending = match self.writes.lock() {
            Ok(mut writes) => std::mem::take(&mut *writes),
            Err(_) => return,
        };
        while pending.join_next().await.is_some() {}
    }

    /// Keep an answer computed at `computed_ms` in memory, unless a forget of its
    /// address came later.
    fn remember(&self, key: String, at: Instant, computed_ms: u64, answer: Arc<Located>) {
        let forgotten = self
            .forgotten
            .lock()
            .ok()
            .and_then(|f| f.get(&answer.ip).copied())
            .unwrap_or(0);
        if computed_ms < forgotten {
            return;
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAPACITY {
                let max_age = self.cache_max_age;
                cache.retain(|_, (at, _, _)| at.elapsed() < max_age);
                if cache.len() >= CACHE_CAPACITY {
                    cache.clear();
                }
            }
            cache.insert(key, (at, computed_ms, answer));
        }
    }

    /// A forget of `ip` at `at_ms`: answers computed before it leave memory, and are
    /// not kept when they arrive later. Whether it was new.
    fn note_forget(&self, ip: IpAddr, at_ms: u64) -> bool {
        let Ok(mut forgotten) = self.forgotten.lock() else {
            return false;
        };
        let known = forgotten.entry(ip).or_insert(0);
        if at_ms <= *known {
            return false;
        }
        *known = at_ms;
        drop(forgotten);
        let prefix = format!("{ip}|");
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|k, (_, computed_ms, _)| !k.starts_with(&prefix) || *computed_ms >= at_ms);
        }
        true
    }

    /// Read the forgets other replicas wrote to the store since the last call (with
    /// [`FORGET_OVERLAP_MS`] of overlap) and drop the answers in memory they make stale:
    /// without it, a replica would serve its in-memory answer for up to `cache_max_age`
    /// after another replica accepted a crowdsourced report. Returns how many addresses
    /// were newly forgotten. No store: nothing to read.
    pub async fn sync_forgets(&self) -> Result<usize, Error> {
        let Some(store) = &self.store else {
            return Ok(0);
        };
        let now = now_ms();
        let since = self
            .forgets_read_to
            .lock()
            .map(|t| t.saturating_sub(FORGET_OVERLAP_MS))
            .unwrap_or(0);
        let forgets = store.forgets_since(since).await?;
        let fresh = forgets
            .into_iter()
            .filter(|(ip, at)| self.note_forget(*ip, *at))
            .count();
        if let Ok(mut to) = self.forgets_read_to.lock() {
            *to = (*to).max(now);
        }
        // Forgets older than the next read's window are no longer needed in the map:
        // an answer computed before them is older than any the store would serve.
        if let Ok(mut forgotten) = self.forgotten.lock() {
            let keep_after = now.saturating_sub(2 * FORGET_OVERLAP_MS);
            forgotten.retain(|_, at| *at > keep_after);
        }
        Ok(fresh)
    }

    /// Call [`Api::sync_forgets`] every `every` until the process ends (with an answer
    /// store shared by replicas).
    pub fn spawn_forget_sync(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let api = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(api) = api.upgrade() else { return };
                if let Err(e) = api.sync_forgets().await {
                    api.metrics.store_errors.inc();
                    tracing::warn!(error = %e, "answer store: reading other replicas' forgets failed");
                }
            }
        })
    }

    async fn forget(&self, ip: IpAddr) {
        let at = now_ms();
        self.note_forget(ip, at);
        if let Some(store) = &self.store {
            if let Err(e) = store.forget(ip, at).await {
                self.metrics.store_errors.inc();
                tracing::warn!(%ip, error = %e, "answer store: forgetting failed");
            }
        }
    }

    /// The crowdsourced engine, when it is configured.
    pub fn crowd(&self) -> Option<Arc<Crowdsourced>> {
        self.crowd.clone()
    }

    /// The most addresses one batch may ask for.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Store a crowdsourced report and drop the cached answers for its address, so that
    /// the next locate sees it.
    pub async fn accept_report(
        &self,
        crowd: &Crowdsourced,
        ip: IpAddr,
        report: Report,
    ) -> Result<(), Error> {
        crowd.report(report).await?;
        self.metrics.crowd_reports.inc();
        self.forget(ip).await;
        Ok(())
    }

    /// Count a refused request (4xx).
    pub(crate) fn count_bad_request(&self) {
        self.metrics.bad_requests.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{DataFiles, Reloadable};
    use crate::engine::rir::Rir;
    use crate::reducer::EngineConfig;
    use crate::rir::Delegations;

    /// RIR statistics registering 193.0.0.0/21 in NL, in a directory of their own.
    fn rir_file(dir: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("{dir}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("delegated-ripencc-extended-latest");
        std::fs::write(
            &path,
            "ripencc|NL|ipv4|193.0.0.0|2048|19930901|assigned|x\n",
        )
        .expect("write");
        path
    }

    /// An API over the RIR engine (a statistics file of its own) with `store`.
    fn replica(name: &str, store: Arc<crate::cache::MemoryAnswers>) -> Api {
        let path = rir_file(&format!("vantage-replica-{name}"));
        let rir = Arc::new(DataFiles::open("rir", vec![path], Delegations::load).expect("open"));
        let locator = Locator::new(
            Arc::new(crate::world::tests::tiny()),
            vec![(Arc::new(Rir::new(rir)), EngineConfig::new("rir", 1.0, true))],
            Duration::from_secs(5),
        );
        let mut registry = Registry::default();
        Api::new(locator, None, Duration::from_secs(3600), 10, &mut registry)
            .with_answer_store(store)
    }

    #[tokio::test]
    async fn a_forget_on_one_replica_drops_the_answers_the_other_holds_in_memory() {
        let store = Arc::new(crate::cache::MemoryAnswers::default());
        let (a, b) = (replica("a", store.clone()), replica("b", store.clone()));
        let ip: IpAddr = "193.0.6.139".parse().expect("ip");
        let (held_a, held_b) = (a.locate(ip, None).await, b.locate(ip, None).await);
        assert!(
            Arc::ptr_eq(&held_b, &b.locate(ip, None).await),
            "b answers from memory"
        );
        a.flush().await;
        b.flush().await;

        // A report accepted by replica a (its accept_report ends in forget).
        tokio::time::sleep(Duration::from_millis(2)).await;
        a.forget(ip).await;
        assert!(
            !Arc::ptr_eq(&held_a, &a.locate(ip, None).await),
            "a computes again"
        );
        // b still holds its answer until it reads the store's forgets ...
        assert!(Arc::ptr_eq(&held_b, &b.locate(ip, None).await));
        assert_eq!(b.sync_forgets().await.expect("sync"), 1);
        // ... and then neither memory nor the store serves an answer from before.
        let fresh = b.locate(ip, None).await;
        assert!(!Arc::ptr_eq(&held_b, &fresh), "b computes again");
        assert!(
            Arc::ptr_eq(&fresh, &b.locate(ip, None).await),
            "and keeps the new one"
        );
        // The same forget read again (the overlap window) drops nothing.
        assert_eq!(b.sync_forgets().await.expect("sync"), 0);
        assert!(Arc::ptr_eq(&fresh, &b.locate(ip, None).await));
    }

    #[tokio::test]
    async fn an_answer_computed_before_a_forget_is_not_kept() {
        let store = Arc::new(crate::cache::MemoryAnswers::default());
        let api = replica("late", store);
        let ip: IpAddr = "193.0.6.139".parse().expect("ip");
        let answer = api.locate(ip, None).await;
        let at = now_ms();
        assert!(api.note_forget(ip, at + 10));
        assert!(!api.note_forget(ip, at), "an older forget is not news");
        // A locate that started before the forget and ends after it.
        api.remember(format!("{ip}|late"), Instant::now(), at, answer.clone());
        api.remember(format!("{ip}|fresh"), Instant::now(), at + 20, answer);
        let cache = api.cache.lock().expect("cache");
        assert!(!cache.contains_key(&format!("{ip}|late")));
        assert!(cache.contains_key(&format!("{ip}|fresh")));
    }

    #[tokio::test]
    async fn a_reload_changes_the_key_and_answers_cached_before_are_not_served() {
        let path = rir_file("vantage-locate");
        let rir =
            Arc::new(DataFiles::open("rir", vec![path.clone()], Delegations::load).expect("open"));
        let world = Arc::new(crate::world::tests::tiny());
        let locator = Locator::new(
            world.clone(),
            vec![(
                Arc::new(Rir::new(rir.clone())),
                EngineConfig::new("rir", 1.0, true),
            )],
            Duration::from_secs(5),
        );
        let reloadable = Reloadable {
            rir: Some(rir.clone()),
            ..Default::default()
        };
        let mut registry = Registry::default();
        let api = Api::new(locator, None, Duration::from_secs(3600), 10, &mut registry)
            .with_data_version(Arc::new(move || reloadable.version()));
        let store = Arc::new(crate::cache::MemoryAnswers::default());
        let api = api.with_answer_store(store.clone());
        let ip: IpAddr = "193.0.6.139".parse().expect("ip");
        let country = |a: &Located| {
            a.scored
                .first()
                .and_then(|c| world.city(c.city_id))
                .map(|c| c.country.clone())
        };

        let before = api.cache_key(None);
        assert!(before.contains("|data="), "{before}");
        let first = api.locate(ip, None).await;
        assert_eq!(country(&first).as_deref(), Some("NL"));
        // Served from the cache: the very same answer.
        assert!(Arc::ptr_eq(&first, &api.locate(ip, None).await));
        api.flush().await;

        // New statistics (another size): reloaded at the second check that sees them.
        std::fs::write(
            &path,
            "ripencc|DE|ipv4|193.0.0.0|4096|19930901|assigned|xy\n",
        )
        .expect("write");
        assert!(!rir.check().expect("check"));
        assert!(rir.check().expect("check"), "reloaded");
        let after = api.cache_key(None);
        assert_ne!(before, after, "a reload changes the key");
        // Neither the memory cache nor the store serves the answer from before.
        let second = api.locate(ip, None).await;
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(country(&second).as_deref(), Some("DE"));
        api.flush().await;
        assert!(store.get(ip, &before).await.expect("get").is_some());
        assert_eq!(
            store
                .get(ip, &after)
                .await
                .expect("get")
                .map(|c| country(&c.located)),
            Some(Some("DE".into()))
        );
        // Without a change the key stays.
        assert!(!rir.check().expect("check"));
        assert_eq!(api.cache_key(None), after);
        if let Some(dir) = path.parent() {
            std::fs::remove_dir_all(dir).ok();
        }
    }
}
