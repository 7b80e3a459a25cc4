//! Data files the engines read (RIR statistics, a BGP prefix table), reloaded when they
//! change: they are refreshed daily next to the running service (a CronJob writing into
//! the chart's data volume), and a restart should not be needed to see them.
//!
//! A change is taken once every file's modification time and size differ from what was
//! loaded and have stayed the same over two checks in a row (the writer is done). A file
//! that fails to load keeps the data in force, and is tried again at the next change.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::asn::PrefixTable;
use crate::rir::Delegations;
use crate::Error;

/// How often the files are looked at (a stat each; a change loads 1–2 checks later).
pub const CHECK_EVERY: Duration = Duration::from_secs(60);

/// What identifies one version of a file: its modification time and size.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Data loaded from files, swapped whole when the files change.
pub struct DataFiles<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    load: fn(&[PathBuf]) -> Result<T, Error>,
    current: RwLock<Arc<T>>,
    /// The stamps of what is loaded, and of what the last check saw.
    stamps: Mutex<(Vec<Stamp>, Vec<Stamp>)>,
}

impl<T> DataFiles<T> {
    /// Load `paths` with `load`; `what` names the data in logs and metrics.
    pub fn open(
        what: &'static str,
        paths: Vec<PathBuf>,
        load: fn(&[PathBuf]) -> Result<T, Error>,
    ) -> Result<Self, Error> {
        let stamps: Vec<Stamp> = paths.iter().map(stamp).collect();
        let value = load(&paths)?;
        Ok(Self {
            what,
            paths,
            load,
            current: RwLock::new(Arc::new(value)),
            stamps: Mutex::new((stamps.clone(), stamps)),
        })
    }

    /// Data that does not come from files (tests, the simulated world).
    pub fn fixed(what: &'static str, value: T) -> Self {
        Self {
            what,
            paths: Vec::new(),
            load: |_| {
                Err(Error::Dataset {
                    data: "fixed data",
                    problem: "it has no files to read again; build it with DataFiles::open to reload from files".into(),
                })
            },
            current: RwLock::new(Arc::new(value)),
            stamps: Mutex::new((Vec::new(), Vec::new())),
        }
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
        *loaded = now;
        let value = (self.load)(&self.paths)?;
        match self.current.write() {
            Ok(mut v) => *v = Arc::new(value),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(value),
        }
        Ok(true)
    }
}

/// The data files of `vantage engines` that are reloaded when they change.
#[derive(Default)]
pub struct Reloadable {
    pub rir: Option<Arc<DataFiles<Delegations>>>,
    pub asn: Option<Arc<DataFiles<PrefixTable>>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    data: String,
    result: String,
}

/// `vantage_engines_data_reloads_total{data="rir|asn-table", result="ok|error"}`.
#[derive(Clone, Default)]
pub struct ReloadMetrics {
    reloads: Family<ReloadLabels, Counter>,
}

impl ReloadMetrics {
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "data_reloads",
            "Data files (RIR statistics, ASN table) reloaded after a change, by result",
            self.reloads.clone(),
        );
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
    /// Check every file each `every`, forever; loading runs off the async threads.
    pub async fn watch(self, every: Duration, metrics: ReloadMetrics) {
        if self.rir.is_none() && self.asn.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(d) = &self.rir {
                check(d.clone(), &metrics).await;
            }
            if let Some(d) = &self.asn {
                check(d.clone(), &metrics).await;
            }
        }
    }
}

async fn check<T: Send + Sync + 'static>(data: Arc<DataFiles<T>>, metrics: &ReloadMetrics) {
    let what = data.what();
    match tokio::task::spawn_blocking(move || data.check()).await {
        Ok(Ok(true)) => {
            metrics.count(what, true);
            tracing::info!(data = what, "data files changed: reloaded");
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
}
