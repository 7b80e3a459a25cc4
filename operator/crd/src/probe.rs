use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A probe: a device (or VM) that runs measurements, known by its public key.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "vantage.dev",
    version = "v1alpha1",
    kind = "Probe",
    status = "ProbeStatus",
    shortname = "prb",
    category = "vantage",
    printcolumn(name = "ID", type_ = "integer", json_path = ".spec.id"),
    printcolumn(name = "Country", type_ = "string", json_path = ".spec.country_code"),
    printcolumn(name = "ASN", type_ = "integer", json_path = ".spec.asn_v4"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(name = "Connected", type_ = "boolean", json_path = ".status.connected"),
    printcolumn(
        name = "Controller",
        type_ = "string",
        json_path = ".status.controller"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct ProbeSpec {
    /// The probe id (RIPE Atlas `prb_id`), unique in the installation.
    pub id: u32,
    /// The probe's SSH public key, OpenSSH format (`ssh-ed25519 AAAA...`).
    pub public_key: String,
    /// A disabled probe is refused at registration and its session is closed.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// ISO 3166 country code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn_v4: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn_v6: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_v4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_v6: Option<String>,
    /// Your tags (slugs such as `home`, `fibre`). System tags (`system-…`) are the
    /// operator's, in `status.systemTags`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// An anchor: an always-on, well-located probe that is also a measurement target.
    /// Anchors get the `system-anchor` tag and ping each other (the anchoring mesh) at
    /// their `status.address`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anchor: bool,
}

fn default_true() -> bool {
    true
}

impl ProbeSpec {
    /// An enabled probe known only by its id and key: no location, network or tags.
    pub fn new(id: u32, public_key: impl Into<String>) -> Self {
        Self {
            id,
            public_key: public_key.into(),
            enabled: true,
            country_code: None,
            location: None,
            asn_v4: None,
            asn_v6: None,
            prefix_v4: None,
            prefix_v6: None,
            tags: Vec::new(),
            anchor: false,
        }
    }
}

/// WGS 84 coordinates.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, JsonSchema)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeStatus {
    #[serde(default)]
    pub connected: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// The address the controller sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// RFC 3339 time the current (or last) session started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_since: Option<String>,
    /// RFC 3339 time the probe was last seen connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<u32>,
    /// RIPE Atlas system tags (`system-ipv4-works`, …) the operator derives from the
    /// probe's built-in measurements; selection matches tag filters against these and
    /// `spec.tags`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system_tags: Vec<String>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
