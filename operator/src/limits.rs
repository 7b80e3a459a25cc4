//! Tenancy limits (pure): what a namespace's TenantPolicies allow, what its admitted
//! measurements use, and whether one more measurement fits.
//!
//! The rules follow RIPE Atlas quotas and credits, counted in results instead of
//! credits: a measurement is charged `probes × runs per day` results a day (one-offs:
//! `probes`), or the rate measured from its stored results if that is higher. `probes`
//! is what it requests (the sum of its sources' `requested`; a `probes` source asks for
//! at most as many probes as it lists), so a refusal never depends on which probes
//! happen to be connected. A namespace without a TenantPolicy is unlimited.
//!
//! A measurement is *admitted* while it is Scheduled, Ongoing or NoSuitableProbes.
//! Admission is decided once per generation: tightening a policy does not stop
//! measurements already admitted (the policy's `OverLimit` condition shows it), while a
//! Limited measurement is checked again at every reconcile and runs once it fits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use vantage_core::definition::{Source, SourceKind, Task};
use vantage_crd::conditions::{self, reason};
use vantage_crd::{
    Measurement, MeasurementState, TenantPolicy, TenantPolicySpec, TenantPolicyStatus, TenantUsage,
};

use crate::plan::validate;

const DAY: i64 = 86_400;

/// The limits in force in one namespace: the strictest value of each limit over its
/// TenantPolicies. `None`: no limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_concurrent_measurements: Option<u32>,
    pub max_probes_per_measurement: Option<u32>,
    pub min_interval: Option<u32>,
    pub max_results_per_day: Option<u64>,
    /// The policies they come from (`namespace/name`), for messages.
    pub policies: Vec<String>,
}

fn strictest<T: Ord + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Limits {
    /// The limits of `namespace`, from every TenantPolicy in it.
    pub fn for_namespace(policies: &[Arc<TenantPolicy>], namespace: &str) -> Self {
        let mut out = Self::default();
        for p in policies
            .iter()
            .filter(|p| p.namespace().as_deref() == Some(namespace))
        {
            out.merge(&p.spec);
            out.policies.push(format!("{namespace}/{}", p.name_any()));
        }
        out.policies.sort();
        out
    }

    fn merge(&mut self, spec: &TenantPolicySpec) {
        self.max_concurrent_measurements = strictest(
            self.max_concurrent_measurements,
            spec.max_concurrent_measurements,
        );
        self.max_probes_per_measurement = strictest(
            self.max_probes_per_measurement,
            spec.max_probes_per_measurement,
        );
        // The strictest minimum interval is the largest.
        self.min_interval = match (self.min_interval, spec.min_interval) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.max_results_per_day = strictest(self.max_results_per_day, spec.max_results_per_day);
    }

    pub fn is_unlimited(&self) -> bool {
        self.max_concurrent_measurements.is_none()
            && self.max_probes_per_measurement.is_none()
            && self.min_interval.is_none()
            && self.max_results_per_day.is_none()
    }

    fn source(&self) -> String {
        match self.policies.as_slice() {
            [] => "the default policy".to_owned(),
            [one] => format!("TenantPolicy {one}"),
            many => format!("TenantPolicies {} (strictest value)", many.join(", ")),
        }
    }
}

/// What one measurement costs against the limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Charge {
    pub probes: u64,
    pub results_per_day: u64,
}

/// Probes the sources request.
pub fn requested_probes(sources: &[Source]) -> u64 {
    sources
        .iter()
        .map(|s| match &s.kind {
            SourceKind::Probes(ids) => u64::from(s.requested).min(ids.len() as u64),
            _ => u64::from(s.requested),
        })
        .sum()
}

/// Runs a probe makes per day: 1 for a one-off; for a periodic measurement
/// `ceil(window / interval)`, the window being a day or the start-stop span if shorter.
pub fn runs_per_day(task: &Task) -> u64 {
    if task.is_oneoff {
        return 1;
    }
    let window = match (task.start_time, task.stop_time) {
        (Some(start), Some(stop)) => (stop - start).clamp(1, DAY),
        _ => DAY,
    };
    let interval = i64::from(task.interval.max(1));
    u64::try_from((window + interval - 1) / interval)
        .unwrap_or(1)
        .max(1)
}

/// The charge of a measurement. `results`: results stored and when it started (Unix
/// s), if known; a rate measured over at least a day counts when it exceeds the estimate.
pub fn charge(task: &Task, sources: &[Source], stored: Option<(u64, i64)>, now: i64) -> Charge {
    let probes = requested_probes(sources);
    let estimate = probes.saturating_mul(runs_per_day(task));
    let observed = stored.map_or(0, |(results, started)| {
        let age = (now - started).max(DAY);
        let per_day = u128::from(results) * DAY as u128 / age as u128;
        u64::try_from(per_day).unwrap_or(u64::MAX)
    });
    Charge {
        probes,
        results_per_day: estimate.max(observed),
    }
}

/// A namespace's use of its limits, not counting the measurement being checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub measurements: u32,
    pub probes: u64,
    pub results_per_day: u64,
}

impl Usage {
    pub fn add(&mut self, c: Charge) {
        self.measurements += 1;
        self.probes = self.probes.saturating_add(c.probes);
        self.results_per_day = self.results_per_day.saturating_add(c.results_per_day);
    }
}

/// A refusal: which limit, and a message with the value and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The TenantPolicy field, e.g. `max_probes_per_measurement`.
    pub limit: &'static str,
    /// The condition reason, e.g. `MaxProbesPerMeasurement`.
    pub reason: &'static str,
    pub message: String,
}

/// Does a measurement with `task` and `charge` fit `limits`, given the namespace's
/// `usage` by its other admitted measurements?
pub fn check(task: &Task, charge: Charge, limits: &Limits, usage: &Usage) -> Result<(), Refusal> {
    let from = limits.source();
    if let Some(max) = limits.max_probes_per_measurement {
        if charge.probes > u64::from(max) {
            return Err(Refusal {
                limit: "max_probes_per_measurement",
                reason: reason::MAX_PROBES_PER_MEASUREMENT,
                message: format!(
                    "max_probes_per_measurement: the sources request {} probes but {from} allows {max} per measurement; lower spec.probes[].requested to {max} in total, or ask a platform admin to raise the limit",
                    charge.probes
                ),
            });
        }
    }
    if let Some(min) = limits.min_interval {
        if !task.is_oneoff && task.interval < min {
            return Err(Refusal {
                limit: "min_interval",
                reason: reason::MIN_INTERVAL,
                message: format!(
                    "min_interval: spec.interval is {}s but {from} requires at least {min}s for periodic measurements; set spec.interval: {min} or more, or make it a one-off (is_oneoff: true)",
                    task.interval
                ),
            });
        }
    }
    if let Some(max) = limits.max_concurrent_measurements {
        if usage.measurements.saturating_add(1) > max {
            return Err(Refusal {
                limit: "max_concurrent_measurements",
                reason: reason::MAX_CONCURRENT_MEASUREMENTS,
                message: format!(
                    "max_concurrent_measurements: the namespace already runs {} measurements and {from} allows {max} at once; stop or delete one (spec.stopped: true) and this one starts",
                    usage.measurements
                ),
            });
        }
    }
    if let Some(max) = limits.max_results_per_day {
        let total = usage.results_per_day.saturating_add(charge.results_per_day);
        if total > max {
            return Err(Refusal {
                limit: "max_results_per_day",
                reason: reason::MAX_RESULTS_PER_DAY,
                message: format!(
                    "max_results_per_day: this measurement adds {} results a day ({} probes × {} runs) to the namespace's {}, over the {max} that {from} allows; request fewer probes, raise spec.interval, or stop another measurement",
                    charge.results_per_day,
                    charge.probes,
                    runs_per_day(task),
                    usage.results_per_day
                ),
            });
        }
    }
    Ok(())
}

/// States that hold a slot.
pub fn is_admitted_state(state: Option<MeasurementState>) -> bool {
    matches!(
        state,
        Some(
            MeasurementState::Scheduled
                | MeasurementState::Ongoing
                | MeasurementState::NoSuitableProbes
        )
    )
}

/// Unix seconds a measurement started: its start_time, else its creation.
fn started(m: &Measurement) -> i64 {
    m.spec.start_time.unwrap_or_else(|| {
        m.metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_second())
    })
}

/// The charge of a measurement as its spec and status stand (None if it is invalid).
pub fn charge_of(m: &Measurement, now: i64) -> Option<Charge> {
    let status = m.status.as_ref();
    let (task, sources) = validate(m, status.and_then(|s| s.id).unwrap_or(0)).ok()?;
    let stored = status
        .filter(|s| s.results > 0)
        .map(|s| (s.results, started(m)));
    Some(charge(&task, &sources, stored, now))
}

/// Decisions taken by this operator process but perhaps not yet in the store:
/// `(namespace, name) -> admitted`. Read and written under one lock, so that two
/// measurements reconciled at once cannot both take the last slot.
#[derive(Default)]
pub struct Ledger(pub Mutex<HashMap<(String, String), bool>>);

fn key(m: &Measurement) -> (String, String) {
    (m.namespace().unwrap_or_default(), m.name_any())
}

/// Is `m` admitted: the ledger's decision, else its status. Deleted and stopped
/// measurements are not.
pub fn admitted(m: &Measurement, ledger: &HashMap<(String, String), bool>) -> bool {
    if m.metadata.deletion_timestamp.is_some() || m.spec.stopped {
        return false;
    }
    ledger
        .get(&key(m))
        .copied()
        .unwrap_or_else(|| is_admitted_state(m.status.as_ref().and_then(|s| s.state)))
}

/// The usage of `namespace` by its admitted measurements, except `except` (a name).
pub fn namespace_usage(
    measurements: &[Arc<Measurement>],
    ledger: &HashMap<(String, String), bool>,
    namespace: &str,
    except: Option<&str>,
    now: i64,
) -> Usage {
    let mut usage = Usage::default();
    for m in measurements {
        if m.namespace().as_deref() != Some(namespace)
            || except.is_some_and(|e| m.name_any() == e)
            || !admitted(m, ledger)
        {
            continue;
        }
        if let Some(c) = charge_of(m, now) {
            usage.add(c);
        }
    }
    usage
}

/// The status a TenantPolicy should have (pure).
pub fn policy_status(
    policy: &TenantPolicy,
    all_policies: &[Arc<TenantPolicy>],
    measurements: &[Arc<Measurement>],
    ledger: &HashMap<(String, String), bool>,
    now: i64,
    now_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> TenantPolicyStatus {
    let ns = policy.namespace().unwrap_or_default();
    let usage = namespace_usage(measurements, ledger, &ns, None, now);
    let in_ns = || {
        measurements
            .iter()
            .filter(|m| m.namespace().as_deref() == Some(ns.as_str()))
    };
    let limited = in_ns()
        .filter(|m| {
            m.metadata.deletion_timestamp.is_none()
                && !admitted(m, ledger)
                && m.status.as_ref().and_then(|s| s.state) == Some(MeasurementState::Limited)
        })
        .count();
    let results_stored = in_ns()
        .filter_map(|m| m.status.as_ref().map(|s| s.results))
        .sum();
    let limits = Limits::for_namespace(all_policies, &ns);
    let mut over = Vec::new();
    if let Some(max) = limits.max_concurrent_measurements {
        if usage.measurements > max {
            over.push(format!(
                "{} measurements admitted, max_concurrent_measurements is {max}",
                usage.measurements
            ));
        }
    }
    if let Some(max) = limits.max_results_per_day {
        if usage.results_per_day > max {
            over.push(format!(
                "{} results per day, max_results_per_day is {max}",
                usage.results_per_day
            ));
        }
    }
    let current = policy.status.clone().unwrap_or_default();
    let mut conds = current.conditions.clone();
    let generation = policy.metadata.generation;
    if over.is_empty() {
        conditions::set(
            &mut conds,
            conditions::READY,
            true,
            reason::WITHIN_LIMITS,
            format!(
                "{} measurements admitted, {} results per day, {limited} limited",
                usage.measurements, usage.results_per_day
            ),
            generation,
            now_time,
        );
    } else {
        conditions::set(
            &mut conds,
            conditions::READY,
            false,
            reason::OVER_LIMIT,
            format!(
                "over the limit: {}; measurements admitted before the policy changed keep running, stop some to get under it",
                over.join("; ")
            ),
            generation,
            now_time,
        );
    }
    TenantPolicyStatus {
        usage: TenantUsage {
            measurements: usage.measurements,
            probes: usage.probes,
            results_per_day: usage.results_per_day,
            results_stored,
            limited: u32::try_from(limited).unwrap_or(u32::MAX),
        },
        observed_generation: generation,
        conditions: conds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use vantage_crd::MeasurementStatus;

    const NOW: i64 = 1_700_000_000;

    fn objects<T: serde::de::DeserializeOwned>(kind: &str) -> Vec<T> {
        let all: Vec<Value> =
            serde_yaml::from_str(include_str!("../tests/fixtures/tenancy.yaml")).expect("fixture");
        all.into_iter()
            .filter(|v| v["kind"] == kind)
            .map(|v| serde_json::from_value(v).expect("object"))
            .collect()
    }

    fn policies() -> Vec<Arc<TenantPolicy>> {
        objects::<TenantPolicy>("TenantPolicy")
            .into_iter()
            .map(Arc::new)
            .collect()
    }

    fn msm(name: &str) -> Measurement {
        objects::<Measurement>("Measurement")
            .into_iter()
            .find(|m| m.metadata.name.as_deref() == Some(name))
            .expect(name)
    }

    fn running(name: &str, state: MeasurementState) -> Arc<Measurement> {
        let mut m = msm(name);
        m.status = Some(MeasurementStatus {
            id: Some(7),
            state: Some(state),
            observed_generation: Some(1),
            ..Default::default()
        });
        Arc::new(m)
    }

    fn task_and_charge(name: &str) -> (Task, Charge) {
        let m = msm(name);
        let (task, sources) = validate(&m, 1).expect("valid");
        let c = charge(&task, &sources, None, NOW);
        (task, c)
    }

    #[test]
    fn strictest_value_of_each_limit_per_namespace() {
        let all = policies();
        let a = Limits::for_namespace(&all, "team-a");
        assert_eq!(a.max_concurrent_measurements, Some(2));
        assert_eq!(a.max_probes_per_measurement, Some(10));
        assert_eq!(a.min_interval, Some(600), "the larger minimum is stricter");
        assert_eq!(a.max_results_per_day, Some(5000));
        assert_eq!(a.policies, vec!["team-a/default", "team-a/extra"]);
        let b = Limits::for_namespace(&all, "team-b");
        assert_eq!(b.max_results_per_day, Some(100_000));
        assert_eq!(b.max_concurrent_measurements, None);
        assert!(Limits::for_namespace(&all, "team-c").is_unlimited());
    }

    #[test]
    fn charges_count_probes_times_runs_per_day() {
        // 3 from NL, and at most 2 of the 5 requested from a list of 2 ids.
        assert_eq!(
            task_and_charge("small").1,
            Charge {
                probes: 5,
                results_per_day: 5 * 144
            }
        );
        assert_eq!(
            task_and_charge("oneoff").1,
            Charge {
                probes: 10,
                results_per_day: 10
            }
        );
        // A 1-hour window at 600 s is 6 runs.
        let mut m = msm("ten");
        m.spec.start_time = Some(NOW);
        m.spec.stop_time = Some(NOW + 3600);
        let (task, sources) = validate(&m, 1).expect("valid");
        assert_eq!(runs_per_day(&task), 6);
        // A measured rate above the estimate counts: 30,000 results in two days.
        let c = charge(&task, &sources, Some((30_000, NOW - 2 * DAY)), NOW);
        assert_eq!(c.results_per_day, 15_000);
        // Younger than a day: the results so far are a lower bound of the day.
        let c = charge(&task, &sources, Some((50, NOW - 60)), NOW);
        assert_eq!(c.results_per_day, 60, "estimate (10 × 6) is higher");
    }

    #[test]
    fn each_refusal_names_the_limit_the_value_and_the_fix() {
        let limits = Limits::for_namespace(&policies(), "team-a");
        let none = Usage::default();
        let (t, c) = task_and_charge("too-many-probes");
        let r = check(&t, c, &limits, &none).expect_err("too many probes");
        assert_eq!(
            (r.limit, r.reason),
            (
                "max_probes_per_measurement",
                reason::MAX_PROBES_PER_MEASUREMENT
            )
        );
        assert!(r.message.contains("request 11 probes"), "{}", r.message);
        assert!(r.message.contains("allows 10"), "{}", r.message);
        assert!(
            r.message.contains("lower spec.probes[].requested"),
            "{}",
            r.message
        );
        assert!(r.message.contains("team-a/default"), "{}", r.message);

        let (t, c) = task_and_charge("too-often");
        let r = check(&t, c, &limits, &none).expect_err("too often");
        assert_eq!(r.limit, "min_interval");
        assert!(r.message.contains("spec.interval is 300s"), "{}", r.message);
        assert!(r.message.contains("at least 600s"), "{}", r.message);

        let (t, c) = task_and_charge("oneoff");
        assert_eq!(
            check(&t, c, &limits, &none),
            Ok(()),
            "one-offs have no interval"
        );

        let (t, c) = task_and_charge("ten");
        let two = Usage {
            measurements: 2,
            probes: 15,
            results_per_day: 2160,
        };
        let r = check(&t, c, &limits, &two).expect_err("third measurement");
        assert_eq!(r.limit, "max_concurrent_measurements");
        assert!(r.message.contains("already runs 2"), "{}", r.message);
        assert!(r.message.contains("allows 2 at once"), "{}", r.message);

        let heavy = Usage {
            measurements: 1,
            probes: 10,
            results_per_day: 4000,
        };
        let r = check(&t, c, &limits, &heavy).expect_err("results");
        assert_eq!(r.limit, "max_results_per_day");
        assert!(
            r.message
                .contains("adds 1440 results a day (10 probes × 144 runs)"),
            "{}",
            r.message
        );
        assert!(r.message.contains("namespace's 4000"), "{}", r.message);
        assert!(r.message.contains("over the 5000"), "{}", r.message);
        // Just at the limit fits.
        let edge = Usage {
            results_per_day: 5000 - 1440,
            ..heavy
        };
        assert_eq!(check(&t, c, &limits, &edge), Ok(()));
        assert_eq!(
            check(&t, c, &Limits::default(), &heavy),
            Ok(()),
            "no policy: no limit"
        );
    }

    #[test]
    fn usage_counts_admitted_measurements_of_the_namespace_only() {
        let mut other_ns = msm("ten");
        other_ns.metadata.namespace = Some("team-b".into());
        other_ns.status = running("ten", MeasurementState::Ongoing).status.clone();
        let mut stopped = (*running("ten", MeasurementState::Ongoing)).clone();
        stopped.metadata.name = Some("stopped".into());
        stopped.spec.stopped = true;
        let all = vec![
            running("small", MeasurementState::Ongoing),
            running("ten", MeasurementState::NoSuitableProbes),
            running("oneoff", MeasurementState::Limited),
            running("too-often", MeasurementState::Failed),
            Arc::new(other_ns),
            Arc::new(stopped),
        ];
        let ledger = HashMap::new();
        let u = namespace_usage(&all, &ledger, "team-a", None, NOW);
        assert_eq!(
            u,
            Usage {
                measurements: 2,
                probes: 15,
                results_per_day: 720 + 1440
            }
        );
        let without_ten = namespace_usage(&all, &ledger, "team-a", Some("ten"), NOW);
        assert_eq!(without_ten.measurements, 1);
        // The ledger's fresher decision wins over a stale status.
        let ledger = HashMap::from([
            (("team-a".to_owned(), "ten".to_owned()), false),
            (("team-a".to_owned(), "oneoff".to_owned()), true),
        ]);
        let u = namespace_usage(&all, &ledger, "team-a", None, NOW);
        assert_eq!((u.measurements, u.probes), (2, 15));
    }

    #[test]
    fn policy_status_shows_usage_and_over_limit() {
        let all = policies();
        let now_time = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(NOW).expect("time"),
        );
        let policy = all[0].clone();
        let mut limited = (*running("too-often", MeasurementState::Limited)).clone();
        if let Some(s) = limited.status.as_mut() {
            s.results = 0;
        }
        let mut small = (*running("small", MeasurementState::Ongoing)).clone();
        if let Some(s) = small.status.as_mut() {
            s.results = 40;
        }
        let msms = vec![Arc::new(small), Arc::new(limited)];
        let s = policy_status(&policy, &all, &msms, &HashMap::new(), NOW, now_time.clone());
        assert_eq!(
            s.usage,
            TenantUsage {
                measurements: 1,
                probes: 5,
                results_per_day: 720,
                results_stored: 40,
                limited: 1
            }
        );
        let ready = conditions::get(&s.conditions, conditions::READY).expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", reason::WITHIN_LIMITS)
        );
        // Three admitted before the policy tightened to 2: over the limit, and said so.
        let mut three = msms.clone();
        for name in ["a", "b"] {
            let mut m = (*running("ten", MeasurementState::Ongoing)).clone();
            m.metadata.name = Some(name.into());
            three.push(Arc::new(m));
        }
        let s = policy_status(&policy, &all, &three, &HashMap::new(), NOW, now_time);
        let ready = conditions::get(&s.conditions, conditions::READY).expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reason::OVER_LIMIT)
        );
        assert!(
            ready
                .message
                .contains("3 measurements admitted, max_concurrent_measurements is 2"),
            "{}",
            ready.message
        );
    }
}
