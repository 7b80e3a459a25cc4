use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A geolocation engine (RIPE IPmap design): built in, or external behind NATS or HTTP.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "vantage.dev",
    version = "v1alpha1",
    kind = "GeolocationEngine",
    namespaced,
    status = "GeolocationEngineStatus",
    shortname = "geo",
    category = "vantage",
    printcolumn(name = "Engine", type_ = "string", json_path = ".spec.engine"),
    printcolumn(name = "Weight", type_ = "number", json_path = ".spec.weight"),
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct GeolocationEngineSpec {
    /// A built-in engine (single-radius, crowdsourced, reverse-dns, latency, anycast,
    /// rir) or `external`.
    pub engine: String,
    /// For `external`: the NATS subject answering locate requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats_subject: Option<String>,
    /// For `external`: the HTTP endpoint answering locate requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_endpoint: Option<String>,
    /// Multiplier on this engine's scores in the reducer.
    #[serde(default = "default_weight")]
    pub weight: f64,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// What the engine's candidates stand for (see [`EngineScope`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<EngineScope>,
}

/// What the engine's candidates stand for: `city` (each names its city; the default for
/// `external`) or `country` (each stands for its whole country, and may name one as
/// `{"country": "NL"}`: the reducer adds its score to every city of that country that a
/// city-scoped engine named). Only for `external`; on a built-in it may only repeat the
/// built-in's own scope (`country` for rir, `city` for the others).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EngineScope {
    /// Each candidate is the city it names.
    City,
    /// Each candidate stands for its whole country.
    Country,
}

fn default_weight() -> f64 {
    1.0
}
fn default_true() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeolocationEngineStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
