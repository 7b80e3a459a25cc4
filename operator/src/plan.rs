//! The pure step of the Measurement reconciler: from the resource and a snapshot of the
//! world, the status it should have.
//!
//! The lifecycle follows RIPE Atlas: Scheduled until `start_time`, then Ongoing;
//! Stopped when its owner stops it, at `stop_time`, or for a one-off once every probe
//! reported (or after [`ONEOFF_TIMEOUT`]); ForcedToStop once every probe left
//! ([`PROBES_LEFT_GRACE`] for disconnected ones); NoSuitableProbes while no probe
//! matches. Stopped and ForcedToStop are final for the generation of the spec.
//! Participation requests (the annotation [`vantage_crd::PARTICIPATION_ANNOTATION`]) are applied to
//! the probes once each, counted in `status.participationApplied`.

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use vantage_core::definition::{InvalidField, Source, Task};
use vantage_crd::conditions::{self, reason, INVALID, LIMITED, PROBES_CONNECTED, READY};
use vantage_crd::{Measurement, MeasurementState, MeasurementStatus, ParticipationRequest};

use crate::limits::{self, Limits, Usage};
use crate::selection::{select, Candidate, Spread};

/// How long a one-off runs at most: after this many seconds from its start it is
/// Stopped (reason `OneoffTimeout`) with whatever results its probes sent.
pub const ONEOFF_TIMEOUT: i64 = 900;

/// How long every probe of a measurement may stay disconnected before it is
/// ForcedToStop (a controller restart disconnects probes for seconds). Probes that are
/// disabled or deleted count as gone at once.
pub const PROBES_LEFT_GRACE: i64 = 600;

/// What the reconciler knows when it plans.
pub struct Snapshot<'a> {
    /// Every probe as a selection candidate (also to see whether chosen probes left).
    pub candidates: &'a [Candidate],
    /// Probes of other measurements, by measurement id (for `msm` sources).
    pub earlier: &'a HashMap<u64, Vec<u32>>,
    /// Results stored for this measurement, and the newest one's time (Unix s).
    pub results: Option<(u64, u32)>,
    /// Probes that sent at least one result for this measurement, ascending. Empty
    /// when the result store has nothing on it: the count in status is kept then.
    pub reporters: &'a [u32],
    /// Unix seconds.
    pub now: i64,
    pub now_time: Time,
    /// The namespace's TenantPolicy limits.
    pub limits: &'a Limits,
    /// The namespace's usage by its other admitted measurements.
    pub usage: Usage,
    /// How selection spreads load (seed, probe loads, cap).
    pub spread: Spread<'a>,
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
    // `requested` over the cluster maximum is invalid; a measurement already decided at
    // this generation keeps running when the maximum is lowered (SELECT).
    let decided = current.observed_generation == generation
        && current.state.is_some_and(|s| s != MeasurementState::Failed);
    let valid = validate(msm, current.id.unwrap_or(0)).and_then(|(task, sources)| {
        if !decided {
            crate::selection::check_requested(&sources, snap.spread.max_requested)?;
        }
        Ok((task, sources))
    });
    let (state, ready, why, message) = match valid {
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
            // A measurement that ended stays ended for this generation.
            let ended = current.observed_generation == generation
                && matches!(
                    current.state,
                    Some(MeasurementState::Stopped | MeasurementState::ForcedToStop)
                );
            let refusal = if stopped || admitted_before || ended {
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
                let run = Run {
                    msm,
                    task: &task,
                    sources: &sources,
                    snap,
                    current: &current,
                    stopped,
                    ended,
                };
                run.state(&mut status)
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
    status.status_id = Some(state.ripe_status().0);
    status.state_since = if current.state == Some(state) {
        current.state_since.clone()
    } else {
        None
    }
    .or_else(|| Some(snap.now_time.0.to_string()));
    status.state = Some(state);
    status
}

/// Choose probes for `sources` among the candidates, leaving out `exclude` (sorted).
/// The one place the plan calls selection.
fn choose(sources: &[Source], snap: &Snapshot<'_>, exclude: &[u32]) -> Vec<u32> {
    if exclude.is_empty() {
        return select(sources, snap.candidates, snap.earlier, &snap.spread);
    }
    let rest: Vec<Candidate> = snap
        .candidates
        .iter()
        .filter(|c| exclude.binary_search(&c.id).is_err())
        .cloned()
        .collect();
    select(sources, &rest, snap.earlier, &snap.spread)
}

/// Apply participation requests to `probes` (sorted, deduplicated on return): `add`
/// chooses new probes from its source among those not taking part yet; `remove`
/// takes the listed probe ids out. An entry whose source does not validate is skipped.
pub fn apply_participation(
    probes: &mut Vec<u32>,
    requests: &[ParticipationRequest],
    snap: &Snapshot<'_>,
) {
    for r in requests {
        probes.sort_unstable();
        probes.dedup();
        match r.action.as_str() {
            "add" => {
                if let Ok(source) = r.source.validate(0) {
                    let added = choose(std::slice::from_ref(&source), snap, probes);
                    probes.extend(added);
                }
            }
            "remove" => {
                let gone: Vec<u32> = r
                    .source
                    .value
                    .split(',')
                    .filter_map(|v| v.trim().parse().ok())
                    .collect();
                probes.retain(|p| !gone.contains(p));
            }
            _ => {}
        }
    }
    probes.sort_unstable();
    probes.dedup();
}

/// How the chosen probes stand: (enabled and connected, enabled but disconnected).
/// The others are disabled or deleted.
fn probe_presence(probes: &[u32], candidates: &[Candidate]) -> (usize, usize) {
    let mut sorted = probes.to_vec();
    sorted.sort_unstable();
    let (mut alive, mut away) = (0, 0);
    for c in candidates {
        if c.enabled && sorted.binary_search(&c.id).is_ok() {
            if c.connected {
                alive += 1;
            } else {
                away += 1;
            }
        }
    }
    (alive, away)
}

/// An admitted (or stopped) measurement being planned.
struct Run<'a> {
    msm: &'a Measurement,
    task: &'a Task,
    sources: &'a [Source],
    snap: &'a Snapshot<'a>,
    current: &'a MeasurementStatus,
    stopped: bool,
    ended: bool,
}

type Outcome = (MeasurementState, bool, &'static str, String);

impl Run<'_> {
    /// Choose the probes, then the state: Stopped, ForcedToStop, NoSuitableProbes,
    /// Scheduled or Ongoing.
    fn state(&self, status: &mut MeasurementStatus) -> Outcome {
        let (msm, current, snap) = (self.msm, self.current, self.snap);
        let generation = msm.metadata.generation;
        // Keep the probes already chosen for this generation (and the participation
        // requests applied to them); choose again after a spec change.
        // A fresh choice replays every participation request on it.
        let keep = self.ended
            || (!current.probes.is_empty()
                && (current.observed_generation == generation || self.stopped));
        let (mut probes, mut applied) = if keep {
            (current.probes.clone(), current.participation_applied)
        } else {
            (choose(self.sources, snap, &[]), 0)
        };
        let had_probes = !probes.is_empty();
        let requests = msm.participation_requests();
        let running = !self.stopped && !self.ended;
        if running && (applied as usize) < requests.len() {
            apply_participation(&mut probes, &requests[applied as usize..], snap);
            applied = u32::try_from(requests.len()).unwrap_or(u32::MAX);
        }
        status.probe_count = u32::try_from(probes.len()).unwrap_or(u32::MAX);
        status.probes_reported = if snap.reporters.is_empty() {
            current
                .probes_reported
                .min(u32::try_from(probes.len()).unwrap_or(u32::MAX))
        } else {
            u32::try_from(
                probes
                    .iter()
                    .filter(|p| snap.reporters.binary_search(p).is_ok())
                    .count(),
            )
            .unwrap_or(u32::MAX)
        };
        status.probes = probes;
        status.participation_applied = applied;
        if self.ended {
            // Keep the reason and message it ended with.
            let (why, message) = conditions::get(&current.conditions, READY)
                .map(|c| (ended_reason(&c.reason), c.message.clone()))
                .unwrap_or((reason::STOPPED, "stopped; results are kept".to_owned()));
            let state = current.state.unwrap_or(MeasurementState::Stopped);
            return (state, false, why, message);
        }
        if self.stopped {
            return if msm.spec.stopped {
                (
                    MeasurementState::Stopped,
                    false,
                    reason::STOPPED,
                    "stopped by its owner; results are kept".to_owned(),
                )
            } else {
                (
                    MeasurementState::Stopped,
                    false,
                    reason::STOP_TIME_REACHED,
                    "stop_time has passed; results are kept".to_owned(),
                )
            };
        }
        if status.probes.is_empty() {
            if had_probes {
                return (
                    MeasurementState::ForcedToStop,
                    false,
                    reason::PROBES_LEFT,
                    "every probe was removed by participation requests".to_owned(),
                );
            }
            return (
                MeasurementState::NoSuitableProbes,
                false,
                reason::NO_SUITABLE_PROBES,
                // A full probe (SELECT's per-probe cap) is not suitable either.
                match self.snap.spread.max_per_probe {
                    Some(max) => format!(
                        "no enabled, connected probe with room (on fewer than {max} measurements) matches the sources; retrying"
                    ),
                    None => "no enabled, connected probe matches the sources; retrying".to_owned(),
                },
            );
        }
        if let Some(left) = self.probes_left(status) {
            return left;
        }
        let started = self.started();
        if self.msm.spec.is_oneoff && started <= snap.now {
            let (reported, count) = (status.probes_reported, status.probe_count);
            if reported >= count {
                return (
                    MeasurementState::Stopped,
                    false,
                    reason::ALL_PROBES_REPORTED,
                    format!("one-off done: all {count} probes reported"),
                );
            }
            if snap.now - started >= ONEOFF_TIMEOUT {
                return (
                    MeasurementState::Stopped,
                    false,
                    reason::ONEOFF_TIMEOUT,
                    format!(
                        "one-off ended after {ONEOFF_TIMEOUT} s: {reported} of {count} probes reported"
                    ),
                );
            }
        }
        if self.task.start_time.is_some_and(|start| start > snap.now) {
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

    /// Unix seconds the measurement starts: `start_time`, else its creation, else now.
    fn started(&self) -> i64 {
        self.task
            .start_time
            .or_else(|| {
                self.msm
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second())
            })
            .unwrap_or(self.snap.now)
    }

    /// Set the ProbesConnected condition; ForcedToStop once every probe is gone
    /// (disabled or deleted), or has been disconnected for [`PROBES_LEFT_GRACE`].
    fn probes_left(&self, status: &mut MeasurementStatus) -> Option<Outcome> {
        let snap = self.snap;
        let count = status.probes.len();
        let (alive, away) = probe_presence(&status.probes, snap.candidates);
        let gone = count - alive - away;
        let generation = self.msm.metadata.generation;
        let message = if alive > 0 {
            format!("{alive} of {count} probes connected")
        } else {
            format!("all {count} probes left: {away} disconnected, {gone} disabled or deleted")
        };
        conditions::set(
            &mut status.conditions,
            PROBES_CONNECTED,
            alive > 0,
            if alive > 0 {
                reason::CONNECTED
            } else {
                reason::PROBES_LEFT
            },
            message.clone(),
            generation,
            snap.now_time.clone(),
        );
        if alive > 0 {
            return None;
        }
        let since = conditions::get(&status.conditions, PROBES_CONNECTED)
            .map(|c| c.last_transition_time.0.as_second())
            .unwrap_or(snap.now);
        if away == 0 || snap.now - since >= PROBES_LEFT_GRACE {
            return Some((
                MeasurementState::ForcedToStop,
                false,
                reason::PROBES_LEFT,
                format!("{message}; add probes with a participation request or create a new measurement"),
            ));
        }
        None
    }
}

/// The reason constant matching a stored Ready reason of an ended measurement.
fn ended_reason(stored: &str) -> &'static str {
    [
        reason::STOPPED,
        reason::STOP_TIME_REACHED,
        reason::ALL_PROBES_REPORTED,
        reason::ONEOFF_TIMEOUT,
        reason::PROBES_LEFT,
    ]
    .into_iter()
    .find(|r| *r == stored)
    .unwrap_or(reason::STOPPED)
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
            reporters: &[],
            spread: Spread::default(),
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

    fn lifecycle(name: &str) -> Measurement {
        let all: Vec<Measurement> =
            serde_yaml::from_str(include_str!("../tests/fixtures/lifecycle.yaml"))
                .expect("fixture");
        all.into_iter()
            .find(|m| m.metadata.name.as_deref() == Some(name))
            .expect(name)
    }

    fn in_country(id: u32, country: &str, connected: bool) -> Candidate {
        Candidate {
            country: Some(country.into()),
            asn: Some(id),
            ..candidate(id, connected)
        }
    }

    /// Plan `m` at `now`, then store the result as its status (as the reconciler does).
    fn step(
        m: &mut Measurement,
        c: &[Candidate],
        reporters: &[u32],
        now: i64,
    ) -> MeasurementStatus {
        let none = HashMap::new();
        let mut sn = snap(c, &none);
        sn.reporters = reporters;
        sn.now = now;
        sn.now_time = Time(Timestamp::from_second(now).expect("time"));
        let s = desired_status(m, &sn);
        m.status = Some(s.clone());
        s
    }

    const T0: i64 = 1_700_000_100;

    #[test]
    fn a_oneoff_stops_once_every_probe_reported() {
        let c = [in_country(1001, "NL", true), in_country(1002, "NL", true)];
        let mut m = lifecycle("oneoff-nl");
        let s = step(&mut m, &c, &[], T0);
        assert_eq!(s.state, Some(MeasurementState::Ongoing));
        assert_eq!(s.probes, vec![1001, 1002]);
        assert_eq!(s.status_id, Some(2));
        let since = s.state_since.clone();
        assert!(since.is_some());
        let s = step(&mut m, &c, &[1002], T0 + 5);
        assert_eq!(
            s.state,
            Some(MeasurementState::Ongoing),
            "one of two reported"
        );
        assert_eq!(s.probes_reported, 1);
        assert_eq!(s.state_since, since, "same state, same since");
        let s = step(&mut m, &c, &[1001, 1002, 1003], T0 + 10);
        assert_eq!(s.state, Some(MeasurementState::Stopped));
        assert_eq!(s.status_id, Some(4));
        assert_eq!(s.probes_reported, 2);
        assert_eq!(reason_of(&s, READY).1, reason::ALL_PROBES_REPORTED);
        assert_ne!(s.state_since, since, "a new state has a new since");
        // Final for this generation: nothing brings it back.
        let s = step(&mut m, &c, &[], T0 + 20);
        assert_eq!(s.state, Some(MeasurementState::Stopped));
        assert_eq!(reason_of(&s, READY).1, reason::ALL_PROBES_REPORTED);
        assert_eq!(s.probes, vec![1001, 1002]);
    }

    #[test]
    fn without_stats_the_reported_count_is_kept() {
        let c = [in_country(1001, "NL", true), in_country(1002, "NL", true)];
        let mut m = lifecycle("oneoff-nl");
        step(&mut m, &c, &[1001], T0);
        let none = HashMap::new();
        let mut sn = snap(&c, &none);
        sn.reporters = &[];
        let s = desired_status(&m, &sn);
        assert_eq!(s.probes_reported, 1);
        assert_eq!(Some(&s), m.status.as_ref(), "nothing to write");
    }

    #[test]
    fn a_oneoff_that_runs_out_of_time_stops_with_what_it_has() {
        let c = [in_country(1001, "NL", true), in_country(1002, "NL", true)];
        let mut m = lifecycle("oneoff-nl");
        step(&mut m, &c, &[], T0);
        let created = 1_700_000_000;
        let s = step(&mut m, &c, &[1001], created + ONEOFF_TIMEOUT - 1);
        assert_eq!(s.state, Some(MeasurementState::Ongoing));
        let s = step(&mut m, &c, &[1001], created + ONEOFF_TIMEOUT);
        assert_eq!(s.state, Some(MeasurementState::Stopped));
        let (_, why, message) = reason_of(&s, READY);
        assert_eq!(why, reason::ONEOFF_TIMEOUT);
        assert!(message.contains("1 of 2 probes reported"), "{message}");
    }

    #[test]
    fn owner_stop_and_stop_time_are_told_apart() {
        let c = [in_country(1001, "NL", true)];
        let mut m = lifecycle("periodic-nl");
        step(&mut m, &c, &[], T0);
        m.spec.stopped = true;
        m.metadata.generation = Some(2);
        let s = step(&mut m, &c, &[], T0 + 1);
        assert_eq!(s.state, Some(MeasurementState::Stopped));
        assert_eq!(reason_of(&s, READY).1, reason::STOPPED);
        assert_eq!(s.probes, vec![1001], "the probes it ran on are kept");
        let mut m = lifecycle("periodic-nl");
        m.spec.stop_time = Some(T0 + 60);
        assert_eq!(
            step(&mut m, &c, &[], T0).state,
            Some(MeasurementState::Ongoing)
        );
        let s = step(&mut m, &c, &[], T0 + 60);
        assert_eq!(s.state, Some(MeasurementState::Stopped));
        assert_eq!(reason_of(&s, READY).1, reason::STOP_TIME_REACHED);
    }

    #[test]
    fn probes_that_are_deleted_or_disabled_force_a_stop_at_once() {
        let mut m = lifecycle("periodic-nl");
        let s = step(&mut m, &[in_country(1001, "NL", true)], &[], T0);
        assert_eq!(s.probes, vec![1001]);
        assert_eq!(reason_of(&s, PROBES_CONNECTED).0, "True");
        // Deleted: not among the candidates any more.
        let s = step(&mut m, &[in_country(2001, "NL", true)], &[], T0 + 5);
        assert_eq!(s.state, Some(MeasurementState::ForcedToStop));
        assert_eq!(s.status_id, Some(5));
        let (status, why, message) = reason_of(&s, READY);
        assert_eq!(
            (status.as_str(), why.as_str()),
            ("False", reason::PROBES_LEFT)
        );
        assert!(message.contains("all 1 probes left"), "{message}");
        // Final: a new probe does not revive it.
        let s = step(&mut m, &[in_country(1001, "NL", true)], &[], T0 + 10);
        assert_eq!(s.state, Some(MeasurementState::ForcedToStop));

        let mut m = lifecycle("periodic-nl");
        step(&mut m, &[in_country(1001, "NL", true)], &[], T0);
        let disabled = Candidate {
            enabled: false,
            ..in_country(1001, "NL", true)
        };
        let s = step(&mut m, &[disabled], &[], T0 + 5);
        assert_eq!(s.state, Some(MeasurementState::ForcedToStop));
    }

    #[test]
    fn probes_that_disconnect_get_a_grace_period() {
        let mut m = lifecycle("periodic-nl");
        step(&mut m, &[in_country(1001, "NL", true)], &[], T0);
        let away = [in_country(1001, "NL", false)];
        let s = step(&mut m, &away, &[], T0 + 5);
        assert_eq!(s.state, Some(MeasurementState::Ongoing), "within the grace");
        let (status, why, _) = reason_of(&s, PROBES_CONNECTED);
        assert_eq!(
            (status.as_str(), why.as_str()),
            ("False", reason::PROBES_LEFT)
        );
        // Back in time: the measurement goes on.
        let s = step(&mut m, &[in_country(1001, "NL", true)], &[], T0 + 60);
        assert_eq!(s.state, Some(MeasurementState::Ongoing));
        assert_eq!(reason_of(&s, PROBES_CONNECTED).0, "True");
        // Away for the whole grace: forced to stop.
        step(&mut m, &away, &[], T0 + 100);
        let s = step(&mut m, &away, &[], T0 + 100 + PROBES_LEFT_GRACE - 1);
        assert_eq!(s.state, Some(MeasurementState::Ongoing));
        let s = step(&mut m, &away, &[], T0 + 100 + PROBES_LEFT_GRACE);
        assert_eq!(s.state, Some(MeasurementState::ForcedToStop));
        assert!(reason_of(&s, READY).2.contains("1 disconnected"));
    }

    #[test]
    fn participation_requests_apply_once_each() {
        let c = [
            in_country(1001, "NL", true),
            in_country(1002, "DE", true),
            in_country(1003, "DE", true),
        ];
        let mut m = lifecycle("periodic-nl");
        let s = step(&mut m, &c, &[], T0);
        assert_eq!((s.probes.clone(), s.participation_applied), (vec![1001], 0));
        // Add one DE probe: the NL one stays, one DE probe joins.
        let requests = |json: &str| {
            Some(std::collections::BTreeMap::from([(
                vantage_crd::PARTICIPATION_ANNOTATION.to_owned(),
                json.to_owned(),
            )]))
        };
        m.metadata.annotations =
            requests(r#"[{"id":2,"action":"add","type":"country","value":"DE","requested":1}]"#);
        let s = step(&mut m, &c, &[], T0 + 5);
        assert_eq!(s.participation_applied, 1);
        assert_eq!(s.probes.len(), 2);
        assert!(s.probes.contains(&1001));
        let added = s.probes.clone();
        // Planning again applies nothing twice.
        let s = step(&mut m, &c, &[], T0 + 10);
        assert_eq!(
            (s.probes.clone(), s.participation_applied),
            (added.clone(), 1)
        );
        // Remove the NL probe.
        m.metadata.annotations = requests(
            r#"[{"id":2,"action":"add","type":"country","value":"DE","requested":1},
                {"id":3,"action":"remove","type":"probes","value":"1001","requested":1}]"#,
        );
        let s = step(&mut m, &c, &[], T0 + 15);
        assert_eq!(s.participation_applied, 2);
        assert_eq!(s.probes.len(), 1);
        assert!(!s.probes.contains(&1001) && added.contains(&s.probes[0]));
        assert_eq!(s.state, Some(MeasurementState::Ongoing));
        // Removing the last probe forces a stop.
        let last = s.probes[0];
        m.metadata.annotations = requests(&format!(
            r#"[{{"id":2,"action":"add","type":"country","value":"DE","requested":1}},
                {{"id":3,"action":"remove","type":"probes","value":"1001","requested":1}},
                {{"id":4,"action":"remove","type":"probes","value":"{last}","requested":1}}]"#
        ));
        let s = step(&mut m, &c, &[], T0 + 20);
        assert_eq!(s.state, Some(MeasurementState::ForcedToStop));
        assert!(s.probes.is_empty());
    }

    #[test]
    fn a_fresh_choice_replays_every_request() {
        let c = [in_country(1001, "NL", true), in_country(1002, "DE", true)];
        let mut m = lifecycle("periodic-with-requests");
        let s = step(&mut m, &c, &[], T0);
        assert_eq!(s.participation_applied, 2);
        assert_eq!(s.probes, vec![1002], "NL chosen, DE added, NL removed");
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
