//! Replica decisions (pure): how many controllers the load asks for, with hysteresis.
//!
//! * **Up at once.** replicas = ceil(connected × headroom / probes_per_controller),
//!   clamped to [min, max]; when that is above the current count, it is the target now.
//! * **Down only after a while, and only beyond a dead band.** The count for scaling
//!   down is computed with the load raised by the dead band (e.g. +10 %), so load near a
//!   boundary does not flap. It must stay below the current count for the whole
//!   stabilization window (e.g. 5 min); any moment at or above resets the window.
//! * Outside [min, max] (the spec changed) the count moves into the range at once.

/// The knobs of a pool's scaling, taken from its spec.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    pub min: u32,
    pub max: u32,
    pub per_controller: u32,
    pub headroom: f64,
    pub dead_band: f64,
    /// Milliseconds a lower count must hold.
    pub stabilization_ms: i64,
}

/// What to do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Replicas the load asks for right now (for status).
    pub desired: u32,
    /// Replicas to run: above `current` means scale up now, below means drain and scale
    /// down, equal means stay.
    pub target: u32,
    /// When the lower count was first asked for (kept while it holds), in ms.
    pub lower_since_ms: Option<i64>,
}

fn replicas_for(load: f64, p: &Policy) -> u32 {
    let per = f64::from(p.per_controller.max(1));
    let want = (load / per).ceil();
    // `as` saturates on float-to-int conversion; clamp keeps it in range.
    let want = if want.is_finite() && want > 0.0 {
        want.min(f64::from(u32::MAX)) as u32
    } else {
        0
    };
    want.clamp(p.min, p.max.max(p.min))
}

/// Decide the replica count for `connected` probes, given the `current` count and when
/// (if at all) the load started asking for fewer.
pub fn decide(
    p: &Policy,
    connected: u32,
    current: u32,
    lower_since_ms: Option<i64>,
    now_ms: i64,
) -> Decision {
    let load = f64::from(connected) * p.headroom.max(1.0);
    let desired = replicas_for(load, p);
    let max = p.max.max(p.min);
    if current < p.min || desired > current {
        return Decision {
            desired,
            target: desired.max(p.min),
            lower_since_ms: None,
        };
    }
    if current > max {
        return Decision {
            desired,
            target: max,
            lower_since_ms: None,
        };
    }
    let down = replicas_for(load * (1.0 + p.dead_band.max(0.0)), p);
    if down >= current {
        return Decision {
            desired,
            target: current,
            lower_since_ms: None,
        };
    }
    let since = lower_since_ms.unwrap_or(now_ms);
    let target = if now_ms - since >= p.stabilization_ms {
        down
    } else {
        current
    };
    Decision {
        desired,
        target,
        lower_since_ms: Some(since),
    }
}
