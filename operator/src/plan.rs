//! The pure step of the Measurement reconciler: from the resource and a snapshot of the
//! world, the status it should have.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use vantage_core::definition::{InvalidField, Source, Task};
use vantage_crd::conditions::{self, reason, INVALID, LIMITED, READY};
use vantage_crd::{Measurement, MeasurementState, MeasurementStatus};

use crate::limits::{self, Limits, Usage};
use crate::selection::{select, Candidate};

/// What the reconciler knows when it plans.
pub struct Snapshot<'a> {
    pub candidates: &'a [Candidate],
    /// Probes of other measurements, by measurement id (for `msm` sources).
    pub earlier: &'a HashMap<u64, Vec<u32>>,
    /// Results stored for this measurement, and the newest one's time (Unix s).
    pub results: Option<(u64, u32)>,
    /// Unix seconds.
    pub now: i64,
    pub now_time: Time,
    /// The namespace's TenantPolicy limits.
    pub limits: &'a Limits,
    /// The namespace's usage by its other admitted measurements.
    pub usage: Usage,
}

/// Validate the spec into a task and its sources. `msm_id` may be 0 before an id is given.
pub fn validate(msm: &Measurement, msm_id: u64) -> Result<(Task, Vec<Source>), InvalidField> {
    let spec = &msm.spec;
    if let Some(unreadable) = &spec.unreadable {
        return Err(unreadable.clone());
    }
    let task = spec.definition.validate(msm_id, spec.timing())?;
    if spec.probes.is_empty() {
        return Err(InvalidField {
            field: "spec.probes".into(),
            message: "no probe sources; add one, e.g. {type: area, value: WW, requested: 5}".into(),
        });
    }
    let sources = spec
        .probes
        .iter()
        .enumerate()
        .map(|(i, s)| s.validate(i))
        .collect::<Result<_, _>>()?;
    Ok((task, sources))
}

/// The status the measurement should have now.
pub fn desired_status(msm: &Measurement, snap: &Snapshot<'_>) -> MeasurementStatus {
    let current = msm.status.clone().unwrap_or_default();
    let generation = msm.metadata.generation;
    let mut status = MeasurementStatus {
        id: current.id,
        observed_generation: generation,
        conditions: current.conditions.clone(),
        results: snap.results.map_or(current.results, |(n, _)| n),
        last_result: snap
            .results
            .and_then(|(_, ts)| k8s_openapi::jiff::Timestamp::from_second(i64::from(ts)).ok())
            .map(|t| t.to_string())
            .or(current.last_result.clone()),
        ..Default::default()
    };
    let now = snap.now_time.clone();
    let (state, ready, why, message) = match validate(msm, current.id.unwrap_or(0)) {
        Err(invalid) => {
            conditions::set(
                &mut status.conditions,
                INVALID,
                true,
                reason::INVALID_SPEC,
                invalid.to_string(),
                generation,
                now.clone(),
            );
            (
                MeasurementState::Failed,
                false,
                reason::INVALID_SPEC,
                invalid.to_string(),
            )
        }
        Ok((task, sources)) => {
            conditions::set(
                &mut status.conditions,
                INVALID,
                false,
                reason::VALID,
                "spec is valid",
                generation,
                now.clone(),
            );
            let stopped = msm.spec.stopped || task.stop_time.is_some_and(|stop| stop <= snap.now);
            // Admission is decided once per generation; a Limited one is checked again.
            let admitted_before = current.observed_generation == generation
                && limits::is_admitted_state(current.state);
            let refusal = if stopped || admitted_before {
                None
            } else {
                let charge = limits::charge(&task, &sources, None, snap.now);
                limits::check(&task, charge, snap.limits, &snap.usage).err()
            };
            if let Some(refusal) = refusal {
                conditions::set(
                    &mut status.conditions,
                    LIMITED,
                    true,
                    refusal.reason,
                    refusal.message.clone(),
                    generation,
                    now.clone(),
                );
                status.limited_by = Some(refusal.limit.to_owned());
                (
                    MeasurementState::Limited,
                    false,
                    reason::LIMITED,
                    refusal.message,
                )
            } else {
                if conditions::get(&status.conditions, LIMITED).is_some()
                    || !snap.limits.is_unlimited()
                {
                    conditions::set(
                        &mut status.conditions,
                        LIMITED,
                        false,
                        reason::WITHIN_LIMITS,
                        "within the namespace's TenantPolicy limits",
                        generation,
                        now.clone(),
                    );
                }
                running_state(msm, &task, &sources, snap, &current, &mut status, stopped)
            }
        }
    };
    conditions::set(
        &mut status.conditions,
        READY,
        ready,
        why,
        message,
        generation,
        now,
    );
    status.state = Some(state);
    status
}

/// State of an admitted (or stopped) measurement: choose probes, then Stopped,
/// NoSuitableProbes, Scheduled or Ongoing.
fn running_state(
    msm: &Measurement,
    task: &Task,
    sources: &[Source],
    snap: &Snapshot<'_>,
    current: &MeasurementStatus,
    status: &mut MeasurementStatus,
    stopped: bool,
) -> (MeasurementState, bool, &'static str, String) {
    // Keep the probes already chosen for this generation; choose again after a spec change.
    let probes =
        if current.observed_generation == msm.metadata.generation && !current.probes.is_empty() {
            current.probes.clone()
        } else {
            select(sources, snap.candidates, snap.earlier)
        };
    status.probe_count = u32::try_from(probes.len()).unwrap_or(u32::MAX);
    status.probes = probes;
    if stopped {
        (
            MeasurementState::Stopped,
            false,
            reason::STOPPED,
            "stopped; results are kept".to_owned(),
        )
    } else if status.probes.is_empty() {
        (
            MeasurementState::NoSuitableProbes,
            false,
            reason::NO_SUITABLE_PROBES,
            "no enabled, connected probe matches the sources; retrying".to_owned(),
        )
    } else if task.start_time.is_some_and(|start| start > snap.now) {
        (
            MeasurementState::Scheduled,
            false,
            reason::SCHEDULED,
            format!("{} probes will start at start_time", status.probe_count),
        )
    } else {
        (
            MeasurementState::Ongoing,
            true,
            reason::ONGOING,
            format!("running on {} probes", status.probe_count),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn measurements() -> Vec<Measurement> {
        serde_yaml::from_str(include_str!("../tests/fixtures/measurements.yaml")).expect("fixture")
    }

    fn by_name(name: &str) -> Measurement {
        measurements()
            .into_iter()
            .find(|m| m.metadata.name.as_deref() == Some(name))
            .expect(name)
    }

    static UNLIMITED: Limits = Limits {
        max_concurrent_measurements: None,
        max_probes_per_measurement: None,
        min_interval: None,
        max_results_per_day: None,
        policies: Vec::new(),
    };

    fn snap<'a>(candidates: &'a [Candidate], earlier: &'a HashMap<u64, Vec<u32>>) -> Snapshot<'a> {
        Snapshot {
            candidates,
            earlier,
            results: Some((12, 1_700_000_000)),
            now: 1_700_000_100,
            now_time: Time(Timestamp::from_second(1_700_000_100).expect("time")),
            limits: &UNLIMITED,
            usage: Usage::default(),
        }
    }

    fn candidate(id: u32, connected: bool) -> Candidate {
        Candidate {
            id,
            enabled: true,
            connected,
            country: Some("NL".into()),
            asn: Some(1),
            prefix: None,
            lat_lon: None,
            tags: vec![],
        }
    }

    fn reason_of(s: &MeasurementStatus, t: &str) -> (String, String, String) {
        let c = conditions::get(&s.conditions, t).expect(t);
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    #[test]
    fn valid_ping_goes_ongoing_with_probes_and_counts() {
        let c = [candidate(1001, true), candidate(1002, false)];
        let none = HashMap::new();
        let s = desired_status(&by_name("ping-nl"), &snap(&c, &none));
        assert_eq!(s.state, Some(MeasurementState::Ongoing));
        assert_eq!(s.probes, vec![1001]);
        assert_eq!(s.probe_count, 1);
        assert_eq!(s.results, 12);
        assert_eq!(s.last_result.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(reason_of(&s, READY).0, "True");
        assert_eq!(reason_of(&s, INVALID).0, "False");
    }

    #[test]
    fn invalid_specs_name_the_field() {
        let none = HashMap::new();
        for (name, field) in [
            ("unknown-type", "spec.type"),
            ("missing-target", "spec.target"),
            ("negative-packets", "spec.packets"),
            ("no-sources", "spec.probes"),
        ] {
            let s = desired_status(&by_name(name), &snap(&[], &none));
            assert_eq!(s.state, Some(MeasurementState::Failed), "{name}");
            let (status, why, message) = reason_of(&s, INVALID);
            assert_eq!(
                (status.as_str(), why.as_str()),
                ("True", reason::INVALID_SPEC),
                "{name}"
            );
            assert!(message.starts_with(field), "{name}: {message}");
        }
    }

    #[test]
    fn no_probes_stopped_and_scheduled() {
        let none = HashMap::new();
        let c = [candidate(1001, true)];
        let s = desired_status(&by_name("ping-nl"), &snap(&[], &none));
        assert_eq!(s.state, Some(MeasurementState::NoSuitableProbes));
        assert_eq!(reason_of(&s, READY).1, reason::NO_SUITABLE_PROBES);
        assert_eq!(
            desired_status(&by_name("stopped"), &snap(&c, &none)).state,
            Some(MeasurementState::Stopped)
        );
        assert_eq!(
            desired_status(&by_name("future"), &snap(&c, &none)).state,
            Some(MeasurementState::Scheduled)
        );
    }

    #[test]
    fn probes_are_kept_for_the_same_generation() {
        let none = HashMap::new();
        let mut m = by_name("ping-nl");
        m.metadata.generation = Some(3);
        m.status = Some(MeasurementStatus {
            probes: vec![1002],
            observed_generation: Some(3),
            ..Default::default()
        });
        let c = [candidate(1001, true)];
        assert_eq!(desired_status(&m, &snap(&c, &none)).probes, vec![1002]);
        m.metadata.generation = Some(4);
        assert_eq!(desired_status(&m, &snap(&c, &none)).probes, vec![1001]);
    }
}
