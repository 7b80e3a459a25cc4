//! How busy each probe is, for selection to spread load: the number of measurements on
//! each probe's schedule, as this operator decided them.
//!
//! A probe's load counts the measurements whose status puts them on its schedule
//! (Scheduled or Ongoing, not stopped, not being deleted: the rule of
//! [`crate::schedules::desired`]). The reconciler records each decision the moment it
//! takes it, under the lock selection runs under, so the next selection sees it; the
//! store alone lags by an API round trip, and a burst of creations would all see the same
//! loads. Every reconcile records again, so after a restart the loads are whole once
//! every measurement has been reconciled once (the Controller's relist does that), and
//! [`gc_loop`] forgets measurements that left the store without a cleanup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kube::runtime::reflector::Store;
use kube::ResourceExt;
use vantage_crd::{Measurement, MeasurementState, MeasurementStatus};

use crate::selection::Spread;

/// Default of `--max-requested` (the API's default too).
pub use vantage_core::definition::DEFAULT_MAX_REQUESTED;

/// Default of `--max-measurements-per-probe`: a probe already on this many
/// measurements is full, and selection skips it. RIPE Atlas publishes no per-probe
/// figure; 100 is far above the load a spread selection gives (3.6 on the 10,000-probe
/// benchmark), so it only stops a probe that sources single out (the one probe of a
/// country or network) from being asked for ever more, and it keeps a probe's schedule
/// document small (about 24 KiB for 100 tasks, against the 1 MiB NATS message limit).
pub const DEFAULT_MAX_MEASUREMENTS_PER_PROBE: u32 = 100;

/// A measurement: `(namespace, name)`.
pub type Key = (String, String);

fn key(m: &Measurement) -> Key {
    (m.namespace().unwrap_or_default(), m.name_any())
}

/// Which probes each measurement runs on, and so each probe's load.
#[derive(Debug, Default)]
pub struct Loads {
    /// Sorted probe ids of each measurement with a nonzero load.
    by_msm: HashMap<Key, Vec<u32>>,
    /// Measurements per probe; probes without any are absent.
    per_probe: HashMap<u32, u32>,
}

impl Loads {
    /// The measurements `probe` runs.
    pub fn of(&self, probe: u32) -> u32 {
        self.per_probe.get(&probe).copied().unwrap_or(0)
    }

    /// The probes `key` runs on, sorted.
    pub fn probes_of(&self, key: &Key) -> &[u32] {
        self.by_msm.get(key).map_or(&[], Vec::as_slice)
    }

    /// Measurements that run on at least one probe.
    pub fn measurements(&self) -> usize {
        self.by_msm.len()
    }

    /// `key` now runs on `probes` (none: it runs nowhere).
    pub fn set(&mut self, key: Key, probes: &[u32]) {
        let mut new = probes.to_vec();
        new.sort_unstable();
        new.dedup();
        if self.probes_of(&key) == new.as_slice() {
            return;
        }
        self.forget(&key);
        if new.is_empty() {
            return;
        }
        for p in &new {
            *self.per_probe.entry(*p).or_default() += 1;
        }
        self.by_msm.insert(key, new);
    }

    /// `key` runs nowhere.
    pub fn forget(&mut self, key: &Key) {
        let Some(old) = self.by_msm.remove(key) else {
            return;
        };
        for p in old {
            if let Some(n) = self.per_probe.get_mut(&p) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_probe.remove(&p);
                }
            }
        }
    }

    /// Record the status decided for `msm`.
    pub fn record(&mut self, msm: &Measurement, status: &MeasurementStatus) {
        let probes: &[u32] = if runs(msm, status) {
            &status.probes
        } else {
            &[]
        };
        self.set(key(msm), probes);
    }

    /// Forget every measurement `keep` says no to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Key) -> bool) {
        let gone: Vec<Key> = self.by_msm.keys().filter(|k| !keep(k)).cloned().collect();
        for k in &gone {
            self.forget(k);
        }
    }
}

/// Does this status put `msm` on its probes' schedules?
pub fn runs(msm: &Measurement, status: &MeasurementStatus) -> bool {
    msm.metadata.deletion_timestamp.is_none()
        && !msm.spec.stopped
        && matches!(
            status.state,
            Some(MeasurementState::Scheduled | MeasurementState::Ongoing)
        )
}

/// The cluster's selection settings and the probes' loads, shared by reconciles.
#[derive(Debug)]
pub struct ProbeLoad {
    /// A probe on this many measurements is skipped; None: no cap.
    pub max_per_probe: Option<u32>,
    /// Largest `requested` of one probe source.
    pub max_requested: u32,
    loads: Mutex<Loads>,
}

impl Default for ProbeLoad {
    fn default() -> Self {
        Self::new(
            Some(DEFAULT_MAX_MEASUREMENTS_PER_PROBE),
            DEFAULT_MAX_REQUESTED,
        )
    }
}

impl ProbeLoad {
    /// `max_per_probe`: None or 0 for no cap.
    pub fn new(max_per_probe: Option<u32>, max_requested: u32) -> Self {
        Self {
            max_per_probe: max_per_probe.filter(|n| *n > 0),
            max_requested,
            loads: Mutex::default(),
        }
    }

    /// The loads; hold the guard across a selection and the record of its outcome.
    pub fn lock(&self) -> MutexGuard<'_, Loads> {
        self.loads.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `msm` runs nowhere any more (it is being deleted).
    pub fn forget(&self, msm: &Measurement) {
        self.lock().forget(&key(msm));
    }

    /// What selection for `msm` sees: `loads` without `msm`'s own probes (choosing again
    /// does not flee its own probes), the cap, and a seed of its own
    /// ([`crate::selection::seed_of`]).
    pub fn spread<'a>(&self, loads: &'a Loads, msm: &Measurement) -> Spread<'a> {
        Spread {
            seed: crate::selection::seed_of(msm),
            loads: Some(loads),
            own: loads.probes_of(&key(msm)),
            max_per_probe: self.max_per_probe,
            max_requested: self.max_requested,
        }
    }
}

/// Forget, every `every`, measurements the store no longer holds (deleted while the
/// operator was down, or with the finalizer removed by hand), forever.
pub async fn gc_loop(load: Arc<ProbeLoad>, measurements: Store<Measurement>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let present: std::collections::HashSet<Key> =
            measurements.state().iter().map(|m| key(m)).collect();
        // An empty store may be one that has not listed yet: keep everything.
        if present.is_empty() {
            continue;
        }
        let mut loads = load.lock();
        let before = loads.measurements();
        loads.retain(|k| present.contains(k));
        let forgotten = before - loads.measurements();
        if forgotten > 0 {
            tracing::info!(
                forgotten,
                "probe loads: forgot measurements gone from the store"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> Key {
        ("t".into(), name.into())
    }

    fn msm(name: &str, stopped: bool) -> Measurement {
        let mut m: Measurement = serde_yaml::from_str(&format!(
            "{{apiVersion: vantage.dev/v1alpha1, kind: Measurement, \
             metadata: {{name: {name}, namespace: t}}, \
             spec: {{type: ping, target: example.net, stopped: {stopped}, \
             probes: [{{type: area, value: WW, requested: 2}}]}}}}"
        ))
        .expect("measurement");
        m.metadata.uid = Some(format!("uid-{name}"));
        m
    }

    fn status(state: MeasurementState, probes: Vec<u32>) -> MeasurementStatus {
        MeasurementStatus {
            state: Some(state),
            probes,
            ..Default::default()
        }
    }

    #[test]
    fn loads_count_measurements_per_probe_and_follow_changes() {
        let mut l = Loads::default();
        l.set(k("a"), &[1, 2, 2]);
        l.set(k("b"), &[2, 3]);
        assert_eq!((l.of(1), l.of(2), l.of(3), l.of(4)), (1, 2, 1, 0));
        assert_eq!(l.probes_of(&k("a")), &[1, 2]);
        // A new choice replaces the old one.
        l.set(k("a"), &[3]);
        assert_eq!((l.of(1), l.of(2), l.of(3)), (0, 1, 2));
        l.forget(&k("b"));
        assert_eq!((l.of(2), l.of(3)), (0, 1));
        l.set(k("a"), &[]);
        assert_eq!(l.measurements(), 0);
        assert!(l.per_probe.is_empty(), "{:?}", l.per_probe);
    }

    #[test]
    fn only_scheduled_and_ongoing_measurements_load_probes() {
        let mut l = Loads::default();
        let running = msm("a", false);
        l.record(&running, &status(MeasurementState::Ongoing, vec![1, 2]));
        l.record(
            &msm("b", false),
            &status(MeasurementState::Scheduled, vec![2]),
        );
        assert_eq!((l.of(1), l.of(2)), (1, 2));
        // Ended, refused or stopped: off the probes.
        l.record(&running, &status(MeasurementState::Stopped, vec![1, 2]));
        l.record(&msm("b", true), &status(MeasurementState::Ongoing, vec![2]));
        l.record(
            &msm("c", false),
            &status(MeasurementState::Limited, vec![1]),
        );
        assert_eq!((l.of(1), l.of(2)), (0, 0));
        l.record(
            &msm("d", false),
            &status(MeasurementState::Ongoing, vec![7]),
        );
        l.retain(|key| key.1 != "d");
        assert_eq!(l.of(7), 0);
    }

    #[test]
    fn a_measurement_does_not_see_its_own_load() {
        let p = ProbeLoad::new(Some(0), 50);
        assert_eq!(p.max_per_probe, None, "0 is no cap");
        let mut loads = p.lock();
        let a = msm("a", false);
        loads.record(&a, &status(MeasurementState::Ongoing, vec![1, 2]));
        loads.record(
            &msm("b", false),
            &status(MeasurementState::Ongoing, vec![2]),
        );
        let spread = p.spread(&loads, &a);
        assert_eq!((spread.load(1), spread.load(2), spread.load(3)), (0, 1, 0));
        assert_eq!(spread.max_requested, 50);
        let other = p.spread(&loads, &msm("c", false));
        assert_eq!((other.load(1), other.load(2)), (1, 2));
        assert_ne!(spread.seed, other.seed);
    }
}
