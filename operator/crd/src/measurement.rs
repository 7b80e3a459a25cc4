use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use vantage_core::definition::{Definition, ProbeSource, Timing};

/// A measurement: one RIPE Atlas definition run by a set of probes.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "vantage.dev",
    version = "v1alpha1",
    kind = "Measurement",
    namespaced,
    status = "MeasurementStatus",
    shortname = "msm",
    category = "vantage",
    printcolumn(name = "ID", type_ = "integer", json_path = ".status.id"),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.target"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Probes", type_ = "integer", json_path = ".status.probeCount"),
    printcolumn(name = "Results", type_ = "integer", json_path = ".status.results"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct MeasurementSpec {
    /// The definition, with RIPE Atlas API v2 field names (`type`, `af`, `target`, `packets`, ...).
    #[serde(flatten)]
    pub definition: Definition,
    /// Where the probes come from (RIPE Atlas `probes[]`).
    pub probes: Vec<ProbeSource>,
    /// Unix seconds; default: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    /// Unix seconds; default: run until stopped or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_time: Option<i64>,
    /// Run once on each probe instead of periodically.
    #[serde(default)]
    pub is_oneoff: bool,
    /// Stop the measurement on every probe, keeping the resource and its results.
    #[serde(default)]
    pub stopped: bool,
}

impl MeasurementSpec {
    pub fn timing(&self) -> Timing {
        Timing {
            start_time: self.start_time,
            stop_time: self.stop_time,
            is_oneoff: self.is_oneoff,
        }
    }
}

/// Lifecycle states, as RIPE Atlas names them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MeasurementState {
    Scheduled,
    Ongoing,
    Stopped,
    Failed,
    NoSuitableProbes,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementStatus {
    /// The measurement id (RIPE Atlas `msm_id`), unique in the installation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<MeasurementState>,
    /// The probes taking part.
    #[serde(default)]
    pub probes: Vec<u32>,
    #[serde(default)]
    pub probe_count: u32,
    /// Results stored so far.
    #[serde(default)]
    pub results: u64,
    /// RFC 3339 time of the newest result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
