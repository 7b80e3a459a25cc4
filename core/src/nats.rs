//! The NATS map: subjects, JetStream streams, KV buckets, and the messages on them.
//!
//! | name | kind | written by | read by |
//! |---|---|---|---|
//! | `RESULTS` on `vantage.results.<type>.<msm_id>` | stream | controllers | collector (durable `collector`) |
//! | `vantage-schedules`, key `probe.<id>` | KV | operator | controllers |
//! | `vantage-assignments`, key `probe.<id>` | KV | registration | controllers |
//! | `vantage-sessions`, key `probe.<id>` | KV | controllers | operator (Probe status, selection) |
//! | `vantage-meta`, key `msm-seq` | KV | operator | operator (measurement ids) |
//! | `vantage-meta`, key `firmware` | KV | registration | controllers (forced rollouts) |
//! | `vantage-meta`, key `drain.<controller>` | KV | operator (scale-down) | that controller |
//! | `vantage.heartbeat.<controller>` | subject | controllers | registration |

use serde::{Deserialize, Serialize};

use crate::definition::Task;

pub const RESULTS_STREAM: &str = "RESULTS";
pub const RESULTS_SUBJECTS: &str = "vantage.results.>";
pub const COLLECTOR_DURABLE: &str = "collector";
pub const SCHEDULES_BUCKET: &str = "vantage-schedules";
pub const ASSIGNMENTS_BUCKET: &str = "vantage-assignments";
pub const SESSIONS_BUCKET: &str = "vantage-sessions";
pub const META_BUCKET: &str = "vantage-meta";
pub const MSM_SEQ_KEY: &str = "msm-seq";
pub const HEARTBEAT_WILDCARD: &str = "vantage.heartbeat.*";

/// `vantage.results.<type>.<msm_id>`.
pub fn result_subject(kind: &str, msm_id: u64) -> String {
    // A type is a short lowercase word; anything else is folded so it cannot add tokens.
    let kind: String = kind
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("vantage.results.{kind}.{msm_id}")
}

/// `vantage.heartbeat.<controller>`.
pub fn heartbeat_subject(controller: &str) -> String {
    format!("vantage.heartbeat.{controller}")
}

/// Prefix of the `vantage-meta` keys that ask a controller to drain.
pub const DRAIN_KEY_PREFIX: &str = "drain.";

/// `vantage-meta` key asking `controller` to drain: while it exists the controller
/// announces `draining`, takes no new probes and sends its probes back to registration.
/// The operator writes it before a scale-down and deletes it when the drain is called off.
pub fn drain_key(controller: &str) -> String {
    format!("{DRAIN_KEY_PREFIX}{controller}")
}

/// The value of a [`drain_key`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DrainRequest {
    pub v: u32,
    pub controller: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// KV key of a probe in the per-probe buckets.
pub fn probe_key(probe_id: u32) -> String {
    format!("probe.{probe_id}")
}

/// Inverse of [`probe_key`].
pub fn parse_probe_key(key: &str) -> Option<u32> {
    key.strip_prefix("probe.")?.parse().ok()
}

/// A controller's periodic announcement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Heartbeat {
    pub v: u32,
    pub controller: String,
    /// `host:port` probes dial.
    pub ssh_addr: String,
    /// OpenSSH public-key line of the controller's host key.
    pub host_key: String,
    pub connected: u32,
    pub capacity: u32,
    /// A draining controller takes no new probes.
    pub draining: bool,
    /// ISO country codes this controller prefers to serve (empty: anywhere).
    #[serde(default)]
    pub regions: Vec<String>,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// Registration's decision for a probe, which the controller checks on login.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub v: u32,
    pub probe_id: u32,
    pub controller: String,
    /// The probe's public key, OpenSSH format.
    pub public_key: String,
    pub command_port: u32,
    pub at_ms: i64,
    /// The firmware the probe reported at registration.
    #[serde(default)]
    pub fw: u32,
}

/// `vantage-meta/firmware`: the newest release, so that controllers can send probes
/// with older firmware back to registration when the rollout is forced.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FirmwareTarget {
    pub v: u32,
    pub version: u32,
    pub forced: bool,
    #[serde(default)]
    pub percentage: Option<u8>,
}

pub const FIRMWARE_KEY: &str = "firmware";

/// A live probe session, as its controller reports it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub v: u32,
    pub probe_id: u32,
    pub controller: String,
    /// The probe's address as the controller sees it.
    pub address: String,
    pub connected_since_ms: i64,
    #[serde(default)]
    pub fw: u32,
    /// Whether the controller has delivered the probe's schedule (and why not).
    #[serde(default)]
    pub schedule: Delivery,
}

/// Where a connected probe's schedule delivery stands, as its controller reports it in
/// the probe's [`Session`]. The operator turns it into the Probe's `ScheduleDelivered`
/// condition. Written on changes of state only, not on every schedule revision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Delivery {
    /// A controller from before this field: nothing is known.
    #[default]
    Unknown,
    /// Connected; the first schedule is not delivered yet (no command channel yet).
    Waiting { reason: String },
    /// The probe has its current schedule and receives every change.
    Delivered,
    /// The controller cannot deliver the schedule now; it retries with backoff.
    Failing { error: String },
}

/// A probe's desired schedule, as the operator publishes it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ScheduleDoc {
    pub v: u32,
    pub probe_id: u32,
    pub tasks: Vec<Task>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_cannot_be_widened() {
        assert_eq!(result_subject("ping", 12), "vantage.results.ping.12");
        assert_eq!(result_subject("a.>*", 1), "vantage.results.a___.1");
        assert_eq!(parse_probe_key(&probe_key(1001)), Some(1001));
        assert_eq!(parse_probe_key("probe.x"), None);
    }
}
