//! The pure steps of the ControllerPool reconciler: replicas and drains ([`step`], from
//! [`super::scale::decide`]), the status after them ([`next_status`], [`invalid_status`])
//! and the Events of a round ([`events`]).

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use vantage_crd::conditions;
use vantage_crd::pool_conditions::{self as pc, reason};
use vantage_crd::{ControllerPool, ControllerPoolStatus};

use super::render::{self, Names};
use super::scale;
use crate::events::Event;

/// Reasons of the Events about a ControllerPool.
pub mod event_reason {
    pub const SCALING_UP: &str = "ScalingUp";
    pub const SCALING_DOWN: &str = "ScalingDown";
    pub const DRAIN_STARTED: &str = "DrainStarted";
    pub const DRAIN_FINISHED: &str = "DrainFinished";
    pub const DRAIN_TIMED_OUT: &str = "DrainTimedOut";
    pub const INVALID_SPEC: &str = "InvalidSpec";
}

/// The Events of one round (pure): scaling up or down, a drain started, finished (or
/// called off) or timed out. `current` is the StatefulSet's replica count before.
pub fn events(pool: &ControllerPool, current: Option<u32>, s: &Step) -> Vec<Event> {
    use event_reason as r;
    let mut out = Vec::new();
    let was: &[String] = pool
        .status
        .as_ref()
        .map(|st| st.draining.as_slice())
        .unwrap_or(&[]);
    let before = current.unwrap_or(0);
    let ev = |warning, reason: &str, note: String| Event::new(warning, reason, note);
    if !s.draining.is_empty() && s.draining.as_slice() != was {
        out.push(ev(
            false,
            r::DRAIN_STARTED,
            format!(
                "draining {} ({} probes left) before scaling down from {before} controllers",
                s.draining.join(", "),
                s.draining_probes
            ),
        ));
    }
    if let Some(left) = s.drain_timed_out {
        out.push(ev(
            true,
            r::DRAIN_TIMED_OUT,
            format!(
                "drain of {} timed out with {left} probes left; scaling down anyway",
                s.signal.join(", ")
            ),
        ));
    } else if !was.is_empty() && s.draining.is_empty() {
        let note = if s.replicas < before {
            format!("{} drained", was.join(", "))
        } else {
            format!(
                "drain of {} called off: the load needs {} controllers",
                was.join(", "),
                s.desired
            )
        };
        out.push(ev(false, r::DRAIN_FINISHED, note));
    }
    if s.replicas > before {
        out.push(ev(
            false,
            r::SCALING_UP,
            format!(
                "scaling up from {before} to {} controllers ({} probes connected)",
                s.replicas, s.connected
            ),
        ));
    } else if s.replicas < before {
        out.push(ev(
            false,
            r::SCALING_DOWN,
            format!(
                "scaling down from {before} to {} controllers ({} probes connected)",
                s.replicas, s.connected
            ),
        ));
    }
    out
}

fn time_ms(t: &Time) -> i64 {
    t.0.as_millisecond()
}

fn ms_time(ms: i64) -> Option<Time> {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(Time)
}

/// The pool's state after the decision, before status is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Replicas to apply now.
    pub replicas: u32,
    pub desired: u32,
    pub lower_since_ms: Option<i64>,
    /// Controllers being drained, still holding replicas up (empty: none).
    pub draining: Vec<String>,
    /// Controllers that must have a drain request before this round's apply: the ones
    /// draining, or the ones removed now (even without probes, so that registration
    /// stops choosing them before their pods go).
    pub signal: Vec<String>,
    pub draining_since_ms: Option<i64>,
    /// Drain requests to withdraw.
    pub undrain: Vec<String>,
    /// The drain ended by timeout, with probes left on these controllers.
    pub drain_timed_out: Option<u32>,
    /// Probes still on the draining controllers.
    pub draining_probes: u32,
    pub connected: u32,
}

/// Decide replicas and drains (pure). `current` is the StatefulSet's replica count
/// (None: not created yet); `counts` gives connected probes by controller name.
pub fn step(
    pool: &ControllerPool,
    current: Option<u32>,
    counts: &HashMap<String, u32>,
    now_ms: i64,
) -> Step {
    let spec = &pool.spec;
    let names = Names::of(&pool.name_any());
    let status = pool.status.clone().unwrap_or_default();
    let connected: u32 = counts
        .iter()
        .filter(|(c, _)| names.ordinal(c).is_some())
        .map(|(_, n)| *n)
        .sum();
    let current_n = current.unwrap_or(0);
    let decision = scale::decide(
        &render::policy(spec),
        connected,
        current_n,
        status.scale_down_since.as_ref().map(time_ms),
        now_ms,
    );
    let mut out = Step {
        replicas: decision.target,
        desired: decision.desired,
        lower_since_ms: decision.lower_since_ms,
        draining: Vec::new(),
        signal: Vec::new(),
        draining_since_ms: None,
        undrain: Vec::new(),
        drain_timed_out: None,
        draining_probes: 0,
        connected,
    };
    if decision.target >= current_n {
        // No drain (any drain in progress is called off); pods that come back must not
        // find an old drain request.
        out.undrain = status.draining.clone();
        for i in current_n..decision.target {
            let name = names.pod(i);
            if !out.undrain.contains(&name) {
                out.undrain.push(name);
            }
        }
        return out;
    }
    let to_drain: Vec<String> = (decision.target..current_n).map(|i| names.pod(i)).collect();
    let since = status
        .draining_since
        .as_ref()
        .map(time_ms)
        .filter(|_| !status.draining.is_empty())
        .unwrap_or(now_ms);
    let remaining: u32 = to_drain
        .iter()
        .map(|c| counts.get(c).copied().unwrap_or(0))
        .sum();
    let timeout_ms = i64::from(spec.drain_timeout_seconds.unwrap_or(120)) * 1000;
    // A controller no longer asked to drain (the target rose again) is called off.
    out.undrain = status
        .draining
        .iter()
        .filter(|c| !to_drain.contains(c))
        .cloned()
        .collect();
    out.signal = to_drain.clone();
    if remaining == 0 || now_ms - since >= timeout_ms {
        out.replicas = decision.target;
        if remaining > 0 {
            out.drain_timed_out = Some(remaining);
        }
        // The drained pods go now (the drain is over); their drain requests stay until
        // those ordinals come back on a later scale-up.
        out.draining_probes = remaining;
    } else {
        out.replicas = current_n;
        out.draining = to_drain;
        out.draining_since_ms = Some(since);
        out.draining_probes = remaining;
    }
    out
}

/// The status after `step` (pure); conditions keep their transition times.
pub fn next_status(
    pool: &ControllerPool,
    current: Option<u32>,
    s: &Step,
    now: Time,
) -> ControllerPoolStatus {
    let mut status = pool.status.clone().unwrap_or_default();
    let gen = pool.metadata.generation;
    let before = current.unwrap_or(0);
    status.replicas = s.replicas;
    status.connected_probes = s.connected;
    status.capacity = s.replicas.saturating_mul(pool.spec.probes_per_controller);
    status.desired_replicas = Some(s.desired);
    status.scale_down_since = s.lower_since_ms.and_then(ms_time);
    status.draining = s.draining.clone();
    status.draining_since = s.draining_since_ms.and_then(ms_time);
    status.observed_generation = gen;
    let c = &mut status.conditions;
    conditions::set(
        c,
        pc::READY,
        true,
        reason::RECONCILED,
        format!(
            "{} controllers for {} connected probes (capacity {})",
            s.replicas, s.connected, status.capacity
        ),
        gen,
        now.clone(),
    );
    let (scaling, why, msg) = if s.replicas > before {
        (
            true,
            reason::SCALING_UP,
            format!("scaling up from {before} to {}", s.replicas),
        )
    } else if !s.draining.is_empty() || s.replicas < before {
        (
            true,
            reason::SCALING_DOWN,
            format!(
                "scaling down from {before} to {}",
                s.desired.max(s.replicas.min(before))
            ),
        )
    } else if let Some(since) = s.lower_since_ms.and_then(ms_time) {
        (
            false,
            reason::STABILIZING,
            format!(
                "the load asks for {} controllers since {}; waiting for the stabilization window",
                s.desired, since.0
            ),
        )
    } else {
        (false, reason::STEADY, format!("{} controllers", s.replicas))
    };
    conditions::set(c, pc::SCALING, scaling, why, msg, gen, now.clone());
    let (draining, why, msg) = if !s.draining.is_empty() {
        (
            true,
            reason::DRAINING,
            format!(
                "draining {} ({} probes left) before scaling down",
                s.draining.join(", "),
                s.draining_probes
            ),
        )
    } else if let Some(left) = s.drain_timed_out {
        (
            false,
            reason::DRAIN_TIMED_OUT,
            format!("drain timed out with {left} probes left; scaled down anyway"),
        )
    } else {
        (false, reason::NOT_DRAINING, String::new())
    };
    conditions::set(c, pc::DRAINING, draining, why, msg, gen, now);
    status
}

/// An invalid spec: Ready=False/InvalidSpec with the message, nothing rendered.
pub fn invalid_status(pool: &ControllerPool, message: &str, now: Time) -> ControllerPoolStatus {
    let mut status = pool.status.clone().unwrap_or_default();
    status.observed_generation = pool.metadata.generation;
    conditions::set(
        &mut status.conditions,
        pc::READY,
        false,
        reason::INVALID_SPEC,
        message,
        pool.metadata.generation,
        now,
    );
    status
}
