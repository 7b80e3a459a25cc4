use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A signed probe firmware release (made with `vantage-sign sign`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "vantage.dev",
    version = "v1alpha1",
    kind = "ProbeFirmware",
    status = "ProbeFirmwareStatus",
    shortname = "fw",
    category = "vantage",
    printcolumn(name = "Version", type_ = "integer", json_path = ".spec.version"),
    printcolumn(name = "Rollout", type_ = "string", json_path = ".spec.rollout"),
    printcolumn(name = "Percentage", type_ = "integer", json_path = ".spec.percentage"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct ProbeFirmwareSpec {
    /// Firmware version (RIPE Atlas `fw`); probes below it are offered this release.
    pub version: u32,
    /// File name of the bundle in the registration servers' firmware directory.
    pub bundle: String,
    /// `sha256:<hex>` of the bundle.
    pub digest: String,
    /// SSHSIG (ed25519, namespace `vantage-firmware`) over the version and digest.
    pub signature: String,
    /// `lazy`: install at the probe's next reconnect. `forced`: make probes reconnect now.
    #[serde(default = "default_rollout")]
    pub rollout: String,
    /// Offer it to this share of probes only (stable per probe); default all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<u8>,
}

fn default_rollout() -> String {
    "lazy".to_owned()
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeFirmwareStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
