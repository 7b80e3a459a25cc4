use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A pool of probe controllers, scaled with the number of connected probes.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "vantage.dev",
    version = "v1alpha1",
    kind = "ControllerPool",
    namespaced,
    status = "ControllerPoolStatus",
    shortname = "cpool",
    category = "vantage",
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(
        name = "Connected",
        type_ = "integer",
        json_path = ".status.connectedProbes"
    ),
    printcolumn(name = "Capacity", type_ = "integer", json_path = ".status.capacity"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct ControllerPoolSpec {
    /// Probes one controller is sized for.
    #[serde(default = "default_per_controller")]
    pub probes_per_controller: u32,
    #[serde(default = "default_min")]
    pub min_replicas: u32,
    #[serde(default = "default_max")]
    pub max_replicas: u32,
    /// Spare capacity factor, e.g. 1.25.
    #[serde(default = "default_headroom")]
    pub headroom: f64,
    /// Countries this pool prefers (ISO codes); empty: anywhere.
    #[serde(default)]
    pub regions: Vec<String>,
    /// SSH port the controllers listen on.
    #[serde(default = "default_ssh_port")]
    pub ssh_port: u16,
    /// Service type of the per-controller Services: LoadBalancer, NodePort or ClusterIP.
    #[serde(default = "default_service_type")]
    pub service_type: String,
}

fn default_per_controller() -> u32 {
    5000
}
fn default_min() -> u32 {
    1
}
fn default_max() -> u32 {
    10
}
fn default_headroom() -> f64 {
    1.25
}
fn default_ssh_port() -> u16 {
    443
}
fn default_service_type() -> String {
    "LoadBalancer".to_owned()
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControllerPoolStatus {
    #[serde(default)]
    pub replicas: u32,
    #[serde(default)]
    pub connected_probes: u32,
    #[serde(default)]
    pub capacity: u32,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
