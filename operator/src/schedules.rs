//! Per-probe desired schedules: built from every Measurement (pure), plus the built-in
//! measurements ([`crate::builtin`]), published to the `vantage-schedules` KV bucket only
//! where they changed.

use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;

use kube::runtime::reflector::Store;
use vantage_core::definition::Task;
use vantage_core::nats::ScheduleDoc;
use vantage_core::WIRE_VERSION;
use vantage_crd::{Measurement, MeasurementState, Probe};

use crate::builtin::BuiltinPlan;
use crate::plan::validate;

/// Every probe's tasks, from the measurements' specs and statuses. A measurement takes
/// part while it has an id, is Ongoing or Scheduled, is valid and is not being deleted.
pub fn desired(measurements: &[std::sync::Arc<Measurement>]) -> BTreeMap<u32, Vec<Task>> {
    let mut out: BTreeMap<u32, Vec<Task>> = BTreeMap::new();
    for m in measurements {
        let Some(status) = &m.status else { continue };
        let (Some(id), Some(state)) = (status.id, status.state) else {
            continue;
        };
        if m.metadata.deletion_timestamp.is_some() || m.spec.stopped {
            continue;
        }
        if !matches!(
            state,
            MeasurementState::Ongoing | MeasurementState::Scheduled
        ) {
            continue;
        }
        let Ok((task, _)) = validate(m, id) else {
            continue;
        };
        for probe in &status.probes {
            out.entry(*probe).or_default().push(task.clone());
        }
    }
    for tasks in out.values_mut() {
        tasks.sort_by_key(|t| t.msm_id);
    }
    out
}

/// Where schedules go. The NATS KV implementation is [`KvSchedules`].
pub trait SchedulePublisher: Send + Sync {
    fn put(
        &self,
        doc: &ScheduleDoc,
    ) -> impl std::future::Future<Output = Result<(), PublishError>> + Send;
}

#[derive(Debug, thiserror::Error)]
#[error("cannot publish the schedule of probe {probe}: {message}")]
pub struct PublishError {
    pub probe: u32,
    pub message: String,
}

/// Add each probe's built-in tasks to its measurements' tasks (pure); each schedule
/// stays sorted by id.
pub fn with_builtins(
    mut desired: BTreeMap<u32, Vec<Task>>,
    builtins: BTreeMap<u32, Vec<Task>>,
) -> BTreeMap<u32, Vec<Task>> {
    for (probe, tasks) in builtins {
        let all = desired.entry(probe).or_default();
        all.extend(tasks);
        all.sort_by_key(|t| t.msm_id);
    }
    desired
}

/// Publishes changed schedules; remembers what it published.
#[derive(Default)]
pub struct Syncer {
    published: BTreeMap<u32, Vec<Task>>,
    /// The built-in measurements and the probes that run them.
    builtins: Option<(Arc<BuiltinPlan>, Store<Probe>)>,
    /// The built-in schedules last built, and the fingerprint of the probes they were
    /// built from ([`BuiltinPlan::fingerprint`]): rebuilt only when it changes.
    builtin_cache: Option<(u64, BTreeMap<u32, Vec<Task>>)>,
}

impl Syncer {
    /// A syncer that adds `plan`'s built-in tasks to every enabled probe of `probes`.
    pub fn with_builtins(plan: Arc<BuiltinPlan>, probes: Store<Probe>) -> Self {
        Self {
            published: BTreeMap::new(),
            builtins: Some((plan, probes)),
            builtin_cache: None,
        }
    }

    /// Publish every probe whose schedule differs from what was last published. A probe
    /// that no longer has tasks gets an empty schedule, so its controller clears it.
    /// Returns how many schedules were written.
    pub async fn sync<P: SchedulePublisher>(
        &mut self,
        desired: BTreeMap<u32, Vec<Task>>,
        publisher: &P,
    ) -> Result<usize, PublishError> {
        let desired = match &self.builtins {
            Some((plan, probes)) => {
                let state = probes.state();
                let print = plan.fingerprint(&state);
                let builtins = match &self.builtin_cache {
                    Some((p, built)) if *p == print => built.clone(),
                    _ => {
                        let built = plan.desired(&state);
                        self.builtin_cache = Some((print, built.clone()));
                        built
                    }
                };
                with_builtins(desired, builtins)
            }
            None => desired,
        };
        let probes: BTreeSet<u32> = desired
            .keys()
            .chain(self.published.keys())
            .copied()
            .collect();
        let mut written = 0;
        for probe in probes {
            let want = desired.get(&probe).cloned().unwrap_or_default();
            if self.published.get(&probe) == Some(&want) {
                continue;
            }
            publisher
                .put(&ScheduleDoc {
                    v: WIRE_VERSION,
                    probe_id: probe,
                    tasks: want.clone(),
                })
                .await?;
            written += 1;
            if want.is_empty() {
                self.published.remove(&probe);
            } else {
                self.published.insert(probe, want);
            }
        }
        Ok(written)
    }
}

/// The NATS KV publisher.
pub struct KvSchedules(pub async_nats::jetstream::kv::Store);

impl SchedulePublisher for KvSchedules {
    async fn put(&self, doc: &ScheduleDoc) -> Result<(), PublishError> {
        let err = |message: String| PublishError {
            probe: doc.probe_id,
            message,
        };
        let bytes = serde_json::to_vec(doc).map_err(|e| err(e.to_string()))?;
        self.0
            .put(vantage_core::nats::probe_key(doc.probe_id), bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use vantage_crd::MeasurementStatus;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<ScheduleDoc>>);
    impl SchedulePublisher for Recorder {
        async fn put(&self, doc: &ScheduleDoc) -> Result<(), PublishError> {
            self.0.lock().expect("lock").push(doc.clone());
            Ok(())
        }
    }

    fn msm(name: &str, id: u64, probes: Vec<u32>, state: MeasurementState) -> Arc<Measurement> {
        let all: Vec<Measurement> =
            serde_yaml::from_str(include_str!("../tests/fixtures/measurements.yaml"))
                .expect("fixture");
        let mut m = all
            .into_iter()
            .find(|m| m.metadata.name.as_deref() == Some(name))
            .expect(name);
        m.status = Some(MeasurementStatus {
            id: Some(id),
            state: Some(state),
            probes,
            ..Default::default()
        });
        Arc::new(m)
    }

    #[tokio::test]
    async fn publishes_changes_only_and_clears_removed_probes() {
        let rec = Recorder::default();
        let mut syncer = Syncer::default();
        let a = msm("ping-nl", 10, vec![1, 2], MeasurementState::Ongoing);
        let invalid = msm("unknown-type", 11, vec![1], MeasurementState::Ongoing);
        let stopped = msm("stopped", 12, vec![1], MeasurementState::Ongoing);
        let d = desired(&[a.clone(), invalid, stopped]);
        assert_eq!(
            d.get(&1)
                .map(|t| t.iter().map(|t| t.msm_id).collect::<Vec<_>>()),
            Some(vec![10])
        );
        assert_eq!(syncer.sync(d.clone(), &rec).await.expect("sync"), 2);
        assert_eq!(
            syncer.sync(d, &rec).await.expect("sync"),
            0,
            "nothing changed"
        );
        let moved = msm("ping-nl", 10, vec![2, 3], MeasurementState::Ongoing);
        assert_eq!(
            syncer.sync(desired(&[moved]), &rec).await.expect("sync"),
            2,
            "probe 1 cleared, 3 added"
        );
        let docs = rec.0.lock().expect("lock").clone();
        let cleared = docs.iter().find(|d| d.probe_id == 1 && d.tasks.is_empty());
        assert!(cleared.is_some(), "{docs:?}");
    }

    #[tokio::test]
    async fn builtins_join_every_enabled_probe_schedule() {
        use crate::builtin::{BuiltinConfig, BuiltinPlan};
        use kube::runtime::watcher::Event;
        use vantage_crd::ProbeSpec;
        let (store, mut writer) = kube::runtime::reflector::store::<Probe>();
        for id in [1u32, 5] {
            writer.apply_watcher_event(&Event::Apply(Probe::new(
                &format!("probe-{id}"),
                ProbeSpec::new(id, "ssh-ed25519 AAAA"),
            )));
        }
        let plan = BuiltinPlan::new(&BuiltinConfig {
            targets: vec!["192.0.2.1".into()],
            ..Default::default()
        })
        .expect("plan");
        let rec = Recorder::default();
        let mut syncer = Syncer::with_builtins(Arc::new(plan), store);
        let a = msm("ping-nl", 1_000_010, vec![1, 2], MeasurementState::Ongoing);
        assert_eq!(syncer.sync(desired(&[a]), &rec).await.expect("sync"), 3);
        let docs = rec.0.lock().expect("lock").clone();
        let ids = |p: u32| -> Vec<u64> {
            docs.iter()
                .find(|d| d.probe_id == p)
                .map(|d| d.tasks.iter().map(|t| t.msm_id).collect())
                .unwrap_or_default()
        };
        assert_eq!(
            ids(1),
            vec![1001, 5001, 1_000_010],
            "built-ins first, then the measurement"
        );
        assert_eq!(
            ids(2),
            vec![1_000_010],
            "probe 2 has no Probe resource: no built-ins"
        );
        assert_eq!(ids(5), vec![1001, 5001]);
    }
}
