//! Status conditions: reasons as constants, and a setter that changes
//! `lastTransitionTime` only when the status really changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types.
pub const READY: &str = "Ready";
pub const INVALID: &str = "Invalid";
/// True while a TenantPolicy limit refuses the object.
pub const LIMITED: &str = "Limited";
/// On a Probe: True while its controller has delivered its schedule and follows changes.
pub const SCHEDULE_DELIVERED: &str = "ScheduleDelivered";
/// On a Measurement: True while at least one of its probes is enabled and connected;
/// False (reason `ProbesLeft`) since the time they all left.
pub const PROBES_CONNECTED: &str = "ProbesConnected";

/// Reasons.
pub mod reason {
    pub const SCHEDULED: &str = "Scheduled";
    pub const ONGOING: &str = "Ongoing";
    /// State Stopped: its owner stopped it (`spec.stopped`, or `DELETE` on the API).
    pub const STOPPED: &str = "Stopped";
    /// State Stopped: `stop_time` has passed.
    pub const STOP_TIME_REACHED: &str = "StopTimeReached";
    /// State Stopped: a one-off whose every probe reported.
    pub const ALL_PROBES_REPORTED: &str = "AllProbesReported";
    /// State Stopped: a one-off that ran out of time before every probe reported.
    pub const ONEOFF_TIMEOUT: &str = "OneoffTimeout";
    /// State ForcedToStop, and ProbesConnected=False: its probes left (disconnected,
    /// disabled or deleted) or were all removed.
    pub const PROBES_LEFT: &str = "ProbesLeft";
    pub const NO_SUITABLE_PROBES: &str = "NoSuitableProbes";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const VALID: &str = "Valid";
    pub const CONNECTED: &str = "Connected";
    pub const DISCONNECTED: &str = "Disconnected";
    /// ScheduleDelivered=True.
    pub const DELIVERED: &str = "Delivered";
    /// ScheduleDelivered=False: connected, no command channel (or first schedule) yet.
    pub const AWAITING_COMMAND_CHANNEL: &str = "AwaitingCommandChannel";
    /// ScheduleDelivered=False: the controller cannot read or follow schedules now.
    pub const DELIVERY_FAILING: &str = "DeliveryFailing";
    /// Limited=False: every TenantPolicy limit is met.
    pub const WITHIN_LIMITS: &str = "WithinLimits";
    /// Limited=True, one reason per TenantPolicy limit.
    pub const MAX_CONCURRENT_MEASUREMENTS: &str = "MaxConcurrentMeasurements";
    pub const MAX_PROBES_PER_MEASUREMENT: &str = "MaxProbesPerMeasurement";
    pub const MIN_INTERVAL: &str = "MinInterval";
    pub const MAX_RESULTS_PER_DAY: &str = "MaxResultsPerDay";
    /// State Limited (Ready=False).
    pub const LIMITED: &str = "Limited";
    /// A TenantPolicy's usage is over one of its limits (measurements admitted before
    /// the policy tightened keep running).
    pub const OVER_LIMIT: &str = "OverLimit";
}

/// Set (or add) the condition `type_`. Returns whether anything changed. The transition
/// time moves only when `status` changes; reason, message and generation are refreshed.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Time,
) -> bool {
    let status = if status { "True" } else { "False" }.to_owned();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let before = c.clone();
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status;
            c.reason = reason.to_owned();
            c.message = message;
            c.observed_generation = generation;
            *c != before
        }
        None => {
            conditions.push(Condition {
                type_: type_.to_owned(),
                status,
                reason: reason.to_owned(),
                message,
                observed_generation: generation,
                last_transition_time: now,
            });
            true
        }
    }
}

/// The condition `type_`, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("valid time"))
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut cs = Vec::new();
        assert!(set(
            &mut cs,
            READY,
            false,
            reason::SCHEDULED,
            "waiting",
            Some(1),
            at(10)
        ));
        assert!(
            !set(
                &mut cs,
                READY,
                false,
                reason::SCHEDULED,
                "waiting",
                Some(1),
                at(20)
            ),
            "no-op"
        );
        assert_eq!(cs[0].last_transition_time, at(10));
        assert!(set(
            &mut cs,
            READY,
            false,
            reason::NO_SUITABLE_PROBES,
            "none",
            Some(1),
            at(30)
        ));
        assert_eq!(
            cs[0].last_transition_time,
            at(10),
            "reason change is not a transition"
        );
        assert!(set(
            &mut cs,
            READY,
            true,
            reason::ONGOING,
            "running",
            Some(2),
            at(40)
        ));
        assert_eq!(cs[0].last_transition_time, at(40));
        assert_eq!(
            get(&cs, READY).map(|c| c.reason.as_str()),
            Some(reason::ONGOING)
        );
        assert_eq!(cs.len(), 1);
    }
}
