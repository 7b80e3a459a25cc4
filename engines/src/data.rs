//! Data files the engines read (RIR statistics, a BGP prefix table), reloaded when they
//! change: they are refreshed daily next to the running service (a CronJob writing into
//! the chart's data volume), and a restart should not be needed to see them.
//!
//! A change is taken once every file's modification time and size differ from what was
//! loaded and have stayed the same over two checks in a row (the writer is done). A file
//! that fails to load keeps the data in force, and is tried again at the next change.
//! A directory (the geofeed mirror) is stamped by every file under it: its newest
//! modification time and a digest of every file's path, time and size.
//!
//! Every successful load changes [`DataFiles::version`] (a digest of the loaded files'
//! stamps, the same in every replica reading the same volume); [`Reloadable::version`]
//! combines them and is part of the answer cache's key, so an answer computed with the
//! old data is not served after a reload.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::asn::PrefixTable;
use crate::geofeed::Geofeeds;
use crate::rir::Delegations;
use crate::Error;

/// How often the files are looked at (a stat each; a change loads 1–2 checks later).
pub const CHECK_EVERY: Duration = Duration::from_secs(60);

/// What identifies one version of a file: its modification time and size.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_dir() {
        let mut newest = std::time::UNIX_EPOCH;
        let mut digest = Fnv::default();
        stamp_dir(path, path, 0, &mut newest, &mut digest);
        return Some((newest, digest.0));
    }
    Some((meta.modified().ok()?, meta.len()))
}

/// Directories under a stamped directory followed at most this deep.
const MAX_DIR_DEPTH: usize = 8;

/// Every file under `dir`, in name order: the newest time, and a digest of each file's
/// path, time and size.
fn stamp_dir(root: &Path, dir: &Path, depth: usize, newest: &mut SystemTime, digest: &mut Fnv) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(meta) = e.metadata() else { continue };
        let path = e.path();
        if meta.is_dir() {
            if depth < MAX_DIR_DEPTH {
                stamp_dir(root, &path, depth + 1, newest, digest);
            }
            continue;
        }
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        *newest = (*newest).max(modified);
        let rel = path.strip_prefix(root).unwrap_or(&path);
        digest.write(rel.to_string_lossy().as_bytes());
        digest.write(&nanos(modified).to_le_bytes());
        digest.write(&meta.len().to_le_bytes());
    }
}

fn nanos(t: SystemTime) -> u128 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// FNV-1a, 64 bits: a digest that is the same in every process and build.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The version of data loaded from files with these stamps.
fn digest(what: &str, stamps: &[Stamp]) -> u64 {
    let mut d = Fnv::default();
    d.write(what.as_bytes());
    for s in stamps {
        match s {
            Some((t, len)) => {
                d.write(&nanos(*t).to_le_bytes());
                d.write(&len.to_le_bytes());
            }
            None => d.write(b"-"),
        }
    }
    d.0
}

/// What a load found worth counting (`vantage_engines_data_*`).
pub trait DataReport {
    /// Lines that could not be used (reported with file and line, and skipped).
    fn bad_lines(&self) -> u64 {
        0
    }

    /// Lines by result (`data_lines_total{result}`), for data that counts them.
    fn line_results(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

impl DataReport for PrefixTable {}

/// How data is loaded from its paths.
type Loader<T> = Box<dyn Fn(&[PathBuf]) -> Result<T, Error> + Send + Sync>;

/// Data loaded from files, swapped whole when the files change.
pub struct DataFiles<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    load: Loader<T>,
    current: RwLock<Arc<T>>,
    /// The stamps of what is loaded, and of what the last check saw.
    stamps: Mutex<(Vec<Stamp>, Vec<Stamp>)>,
    /// The digest of the stamps of the data in force.
    version: AtomicU64,
    /// Successful loads so far (1 after `open`).
    loads: AtomicU64,
}

impl<T> DataFiles<T> {
    /// Load `paths` with `load`; `what` names the data in logs and metrics.
    pub fn open(
        what: &'static str,
        paths: Vec<PathBuf>,
        load: impl Fn(&[PathBuf]) -> Result<T, Error> + Send + Sync + 'static,
    ) -> Result<Self, Error> {
        let stamps: Vec<Stamp> = paths.iter().map(stamp).collect();
        let value = load(&paths)?;
        Ok(Self {
            what,
            paths,
            load: Box::new(load),
            current: RwLock::new(Arc::new(value)),
            version: AtomicU64::new(digest(what, &stamps)),
            stamps: Mutex::new((stamps.clone(), stamps)),
            loads: AtomicU64::new(1),
        })
    }

    /// Data that does not come from files (tests, the simulated world).
    pub fn fixed(what: &'static str, value: T) -> Self {
        Self {
            what,
            paths: Vec::new(),
            load: Box::new(|_| {
                Err(Error::Dataset {
                    data: "fixed data",
                    problem: "it has no files to read again; build it with DataFiles::open to reload from files".into(),
                })
            }),
            current: RwLock::new(Arc::new(value)),
            stamps: Mutex::new((Vec::new(), Vec::new())),
            version: AtomicU64::new(digest(what, &[])),
            loads: AtomicU64::new(1),
        }
    }

    /// The version of the data in force: a digest of its files' stamps, changed by
    /// every successful reload.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Successful loads so far (1 after `open`; each reload adds one).
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Acquire)
    }

    pub fn what(&self) -> &'static str {
        self.what
    }

    /// The data in force.
    pub fn get(&self) -> Arc<T> {
        match self.current.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reload when the files changed and have settled (see the module docs): `Ok(true)`
    /// when new data is in force, `Ok(false)` when nothing changed (yet), an error (the
    /// old data stays) when the new files do not load.
    pub fn check(&self) -> Result<bool, Error> {
        if self.paths.is_empty() {
            return Ok(false);
        }
        let now: Vec<Stamp> = self.paths.iter().map(stamp).collect();
        let mut stamps = match self.stamps.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (loaded, seen) = &mut *stamps;
        let settled = now == *seen;
        *seen = now.clone();
        if now == *loaded || !settled {
            return Ok(false);
        }
        // Tried once per change: a broken file is not parsed again every check.
        *loaded = now.clone();
        let value = (self.load)(&self.paths)?;
        match self.current.write() {
            Ok(mut v) => *v = Arc::new(value),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(value),
        }
        // The same files give the same version in every replica (answers in the store
        // are shared); files back at an earlier version's stamps hold that version's data.
        self.version
            .store(digest(self.what, &now), Ordering::Release);
        self.loads.fetch_add(1, Ordering::AcqRel);
        Ok(true)
    }
}

/// The data files of `vantage engines` that are reloaded when they change.
#[derive(Default, Clone)]
pub struct Reloadable {
    pub rir: Option<Arc<DataFiles<Delegations>>>,
    pub asn: Option<Arc<DataFiles<PrefixTable>>>,
    pub geofeed: Option<Arc<DataFiles<Geofeeds>>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    data: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DataLabels {
    data: String,
}

/// `vantage_engines_data_reloads_total{data="rir|asn-table|geofeed", result="ok|error"}`,
/// `vantage_engines_data_bad_lines_total{data}` (lines skipped by each load, the first
/// included) and `vantage_engines_data_lines_total{data="geofeed", result}`.
#[derive(Clone, Default)]
pub struct ReloadMetrics {
    reloads: Family<ReloadLabels, Counter>,
    bad_lines: Family<DataLabels, Counter>,
    lines: Family<ReloadLabels, Counter>,
}

impl ReloadMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "data_reloads",
            "Data files (RIR statistics, ASN table) reloaded after a change, by result",
            self.reloads.clone(),
        );
        registry.register(
            "data_bad_lines",
            "Malformed lines of data files, skipped (the other lines are used), counted at each load",
            self.bad_lines.clone(),
        );
        registry.register(
            "data_lines",
            "Lines of data files by result (geofeed: ok, malformed, outside_referencing_prefix, no_city), counted at each load",
            self.lines.clone(),
        );
    }

    /// Count what one load found.
    pub fn record(&self, data: &str, report: &dyn DataReport) {
        let labels = DataLabels {
            data: data.to_owned(),
        };
        self.bad_lines
            .get_or_create(&labels)
            .inc_by(report.bad_lines());
        for (result, n) in report.line_results() {
            self.lines
                .get_or_create(&ReloadLabels {
                    data: data.to_owned(),
                    result: result.to_owned(),
                })
                .inc_by(n);
        }
    }

    #[cfg(test)]
    fn bad_lines_of(&self, data: &str) -> u64 {
        self.bad_lines
            .get_or_create(&DataLabels {
                data: data.to_owned(),
            })
            .get()
    }

    fn count(&self, data: &str, ok: bool) {
        self.reloads
            .get_or_create(&ReloadLabels {
                data: data.to_owned(),
                result: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
    }
}

impl Reloadable {
    /// The version of all the data in force (see the module docs): part of the answer
    /// cache's key.
    pub fn version(&self) -> u64 {
        let mut d = Fnv::default();
        for v in [
            self.rir.as_ref().map(|d| d.version()),
            self.asn.as_ref().map(|d| d.version()),
            self.geofeed.as_ref().map(|d| d.version()),
        ] {
            d.write(&v.unwrap_or(0).to_le_bytes());
        }
        d.0
    }

    /// Check every file each `every`, forever; loading runs off the async threads. The
    /// first check counts what the initial loads found.
    pub async fn watch(self, every: Duration, metrics: ReloadMetrics) {
        if self.rir.is_none() && self.asn.is_none() && self.geofeed.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Loads already counted, per data.
        let mut counted = [0u64; 3];
        loop {
            tick.tick().await;
            if let Some(d) = &self.rir {
                check(d.clone(), &metrics, &mut counted[0]).await;
            }
            if let Some(d) = &self.asn {
                check(d.clone(), &metrics, &mut counted[1]).await;
            }
            if let Some(d) = &self.geofeed {
                check(d.clone(), &metrics, &mut counted[2]).await;
            }
        }
    }
}

async fn check<T: DataReport + Send + Sync + 'static>(
    data: Arc<DataFiles<T>>,
    metrics: &ReloadMetrics,
    counted: &mut u64,
) {
    let what = data.what();
    if *counted < data.loads() {
        *counted = data.loads();
        metrics.record(what, &*data.get());
    }
    let loads = data.clone();
    match tokio::task::spawn_blocking(move || data.check()).await {
        Ok(Ok(true)) => {
            metrics.count(what, true);
            tracing::info!(data = what, "data files changed: reloaded");
            if *counted < loads.loads() {
                *counted = loads.loads();
                metrics.record(what, &*loads.get());
            }
        }
        Ok(Ok(false)) => {}
        Ok(Err(e)) => {
            metrics.count(what, false);
            tracing::warn!(data = what, error = %e, "changed data files do not load; the old data stays in force");
        }
        Err(e) => tracing::error!(data = what, error = %e, "data reload task failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rir::Delegations;
    use std::net::IpAddr;

    fn load(paths: &[PathBuf]) -> Result<Delegations, Error> {
        Delegations::load(paths)
    }

    #[test]
    fn a_changed_file_is_reloaded_once_settled_and_a_broken_one_keeps_the_old_data() {
        let dir = std::env::temp_dir().join(format!("vantage-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("delegated-ripencc-extended-latest");
        let ip: IpAddr = "193.0.6.139".parse().expect("ip");
        std::fs::write(
            &path,
            "ripencc|NL|ipv4|193.0.0.0|2048|19930901|assigned|x\n",
        )
        .expect("write");
        let data = DataFiles::open("rir", vec![path.clone()], load).expect("open");
        assert_eq!(data.get().country(ip), Some(*b"NL"));
        assert!(!data.check().expect("check"), "nothing changed");

        // A different size: a new version, taken at the second check that sees it.
        std::fs::write(
            &path,
            "ripencc|BE|ipv4|193.0.0.0|4096|19930901|assigned|xy\n",
        )
        .expect("write");
        assert!(!data.check().expect("check"), "not settled yet");
        assert!(data.check().expect("check"), "settled: reloaded");
        assert_eq!(data.get().country(ip), Some(*b"BE"));
        assert!(!data.check().expect("check"));

        // A broken version: an error once, the old data stays, no retry until it changes.
        std::fs::write(
            &path,
            "ripencc|BEL|ipv4|193.0.0.0|4096|19930901|assigned|xyz\n",
        )
        .expect("write");
        assert!(!data.check().expect("check"));
        let err = data.check().expect_err("broken file");
        assert!(err.to_string().contains("two letters"), "{err}");
        assert_eq!(data.get().country(ip), Some(*b"BE"));
        assert!(!data.check().expect("not retried"));
        std::fs::remove_dir_all(&dir).ok();

        let fixed = DataFiles::fixed("rir", Delegations::default());
        assert!(!fixed.check().expect("fixed"));
    }

    #[test]
    fn versions_change_with_reloads_and_bad_lines_are_counted() {
        let dir = std::env::temp_dir().join(format!("vantage-data-v-{}", std::process::id()));
        let mirror = dir.join("mirror");
        std::fs::create_dir_all(mirror.join("example.net")).expect("dir");
        let path = dir.join("delegated-ripencc-extended-latest");
        std::fs::write(
            &path,
            "ripencc|NL|ipv4|193.0.0.0|2048|19930901|assigned|x\nripencc|NLD|ipv4|1.0.0.0|256|0|assigned|x\n",
        )
        .expect("write");
        let rir = Arc::new(DataFiles::open("rir", vec![path.clone()], load).expect("open"));
        let replica = DataFiles::open("rir", vec![path.clone()], load).expect("open");
        assert_eq!(
            replica.version(),
            rir.version(),
            "the same files, the same version"
        );
        let metrics = ReloadMetrics::default();
        metrics.record("rir", &*rir.get());
        assert_eq!(metrics.bad_lines_of("rir"), 1);

        // A directory is stamped by the files in it: rewriting one in place is a change.
        let feed = mirror.join("example.net").join("feed.csv");
        std::fs::write(&feed, "193.0.0.0/22,NL,NL-NH,Amsterdam,\n").expect("write");
        let sources = crate::geofeed::Sources {
            dir: Some(mirror.clone()),
            files: vec![feed.clone()],
            ..Default::default()
        };
        let watched = sources.watched();
        let geofeed = Arc::new(
            DataFiles::open("geofeed", watched, move |_| {
                crate::geofeed::Geofeeds::load(&sources)
            })
            .expect("open"),
        );
        let all = Reloadable {
            rir: Some(rir.clone()),
            geofeed: Some(geofeed.clone()),
            ..Default::default()
        };
        let v0 = all.version();
        assert_eq!(all.version(), v0, "stable without a reload");
        std::fs::write(&feed, "193.0.0.0/22,NL,NL-ZH,Rotterdam,\n").expect("write");
        assert!(!geofeed.check().expect("check"));
        assert!(geofeed.check().expect("check"), "reloaded");
        assert_eq!(geofeed.loads(), 2);
        let v1 = all.version();
        assert_ne!(v0, v1);
        let ip: IpAddr = "193.0.1.1".parse().expect("ip");
        assert_eq!(
            geofeed
                .get()
                .lookup(ip)
                .and_then(|e| e.city.clone())
                .as_deref(),
            Some("Rotterdam")
        );
        // A file added to the mirror directory only (not a watched path itself).
        std::fs::write(mirror.join("example.net").join("other.csv"), "x").expect("write");
        assert!(!geofeed.check().expect("check"));
        assert!(geofeed.check().expect("check"), "the directory changed");
        assert_ne!(all.version(), v1);
        std::fs::remove_dir_all(&dir).ok();
    }
}
