use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A pool of probe controllers, scaled with the number of connected probes.
///
/// The operator renders a StatefulSet `<name>-controller`, a headless Service
/// `<name>-controller-headless`, one Service per pod `<name>-controller-<i>` and, unless
/// `registration.enabled` is false, the registration Deployment and Service
/// `<name>-registration`. Every optional field has the default named in its description.
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
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct ControllerPoolSpec {
    /// Probes one controller is sized for; replicas = ceil(connected probes × headroom /
    /// probes_per_controller), within min_replicas and max_replicas.
    #[serde(default = "default_per_controller")]
    pub probes_per_controller: u32,
    /// Fewest controllers, also with no probe connected.
    #[serde(default = "default_min")]
    pub min_replicas: u32,
    /// Most controllers.
    #[serde(default = "default_max")]
    pub max_replicas: u32,
    /// Spare capacity factor, at least 1, e.g. 1.25.
    #[serde(default = "default_headroom")]
    pub headroom: f64,
    /// Countries this pool prefers (ISO codes); empty: anywhere.
    #[serde(default)]
    pub regions: Vec<String>,
    /// SSH port the controllers' Services publish (probes dial it).
    #[serde(default = "default_ssh_port")]
    pub ssh_port: u16,
    /// Service type of the per-controller Services: LoadBalancer, NodePort or ClusterIP.
    #[serde(default = "default_service_type")]
    pub service_type: String,

    /// Container image of the controllers and the registration server (the one
    /// `vantage` image). Default `ghcr.io/vantage-dev/vantage:latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Image pull policy: Always, IfNotPresent or Never. Default IfNotPresent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Names of image pull Secrets of the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    /// Probes one controller accepts at most (`vantage controller --capacity`); beyond it
    /// registration sends probes elsewhere. Default 20000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_limit: Option<u32>,
    /// Where the components reach NATS. Default: `NATS_URL` = `nats://nats.nats.svc:4222`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsRef>,
    /// `RUST_LOG` of the pods. Default `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Probes dial `<pod>.<advertise_domain>:<ssh_port>`. Default the per-pod Service's
    /// cluster DNS name `<pod>.<namespace>.svc.<cluster_domain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_domain: Option<String>,
    /// Cluster DNS domain. Default `cluster.local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_domain: Option<String>,
    /// Secret with one ed25519 host key (OpenSSH format) per controller, keyed by pod
    /// name. Default `<name>-controller-host-keys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_keys_secret: Option<String>,
    /// Largest result spool per controller, in MiB (`--spool-max-mib`). Default 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_max_mib: Option<u64>,
    /// Keep the spool on a volume claim per pod (storage class: `spool_storage_class`)
    /// instead of an emptyDir. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_persistent: Option<bool>,
    /// Storage class of the spool volume claims; empty: the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spool_storage_class: Option<String>,
    /// Resources of a controller container. Default requests cpu 100m, memory 128Mi;
    /// limit memory 512Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Labels added to every rendered object and pod (e.g. the Helm release's selector
    /// labels, which the chart's NetworkPolicies select on).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the per-controller Services (e.g. for a load balancer).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_annotations: BTreeMap<String, String>,
    /// externalTrafficPolicy of LoadBalancer and NodePort Services: Cluster or Local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<String>,
    /// Service account of the controller pods (they need no API token). Default
    /// `<name>-controller`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Node selector of the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Seconds a lower replica count must hold before the pool scales down. Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_stabilization_seconds: Option<u32>,
    /// Scale down only when the lower count still suffices with this much more load
    /// (a fraction, e.g. 0.1 = 10 %), so that load near a boundary does not flap.
    /// Default 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_dead_band: Option<f64>,
    /// Seconds a draining controller may keep probes before its pod goes anyway.
    /// Default 120.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout_seconds: Option<u32>,
    /// The registration server rendered with this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<RegistrationSpec>,
    /// Limits on SSH connections that have not authenticated, for the controllers and
    /// the registration server (docs/SECURITY.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_auth: Option<PreAuthSpec>,
}

/// Limits on SSH connections that have not authenticated yet, after OpenSSH's
/// `LoginGraceTime`, `MaxStartups` and `PerSourceMaxStartups`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
pub struct PreAuthSpec {
    /// Seconds a connection has to authenticate before it is closed. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 600))]
    pub grace_seconds: Option<u32>,
    /// Random early drop of new unauthenticated connections. Default 200:30:1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_startups: Option<MaxStartupsSpec>,
    /// Unauthenticated connections one source (an IPv4 address, an IPv6 /64) may hold;
    /// 0: no limit. Default 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_source: Option<u32>,
}

/// OpenSSH's `MaxStartups start:rate:full`: from `start` unauthenticated connections on,
/// a new one is refused with probability `rate` %, rising to 100 % at `full`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub struct MaxStartupsSpec {
    pub start: u32,
    #[schemars(range(max = 100))]
    pub rate: u32,
    #[schemars(range(min = 1))]
    pub full: u32,
}

/// Where NATS is: a URL, or a key of a Secret holding it (when it carries credentials).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
pub struct NatsRef {
    /// NATS URL, e.g. `nats://nats.nats.svc:4222`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Secret holding the URL; wins over `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Key of the URL in the Secret. Default `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// Per-role NATS users (`vantage nats-auth`): a Secret with the passwords, keys
    /// `controller` and `registration`. The pods connect to `url` as `vantage-controller` /
    /// `vantage-registration`. Needs `url` (not `secret_name`); URL-safe passwords.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<String>,
}

/// The registration server (`vantage registration`) the pool renders.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
pub struct RegistrationSpec {
    /// Render the registration Deployment and Service. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Replicas of the registration Deployment. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Port probes dial (the Service port). Default 443.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Service type: LoadBalancer, NodePort or ClusterIP. Default LoadBalancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    /// Annotations of the registration Service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_annotations: BTreeMap<String, String>,
    /// Secret with the registration server's ed25519 host key, under key
    /// `ssh_host_ed25519_key`. Default `<name>-registration-host-key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_secret: Option<String>,
    /// Service account (bound to read Probes and ProbeFirmwares). Default
    /// `<name>-registration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Resources of the registration container. Default requests cpu 50m, memory
    /// 64Mi; limit memory 256Mi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
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

/// Condition types and reasons of a ControllerPool.
pub mod pool_conditions {
    /// The workloads are rendered and the replica count is where the load wants it.
    pub const READY: &str = "Ready";
    /// The replica count is changing (or waits to change).
    pub const SCALING: &str = "Scaling";
    /// Controllers are being drained before their pods go.
    pub const DRAINING: &str = "Draining";

    pub mod reason {
        pub const RECONCILED: &str = "Reconciled";
        pub const INVALID_SPEC: &str = "InvalidSpec";
        pub const SCALING_UP: &str = "ScalingUp";
        pub const SCALING_DOWN: &str = "ScalingDown";
        pub const STABILIZING: &str = "Stabilizing";
        pub const STEADY: &str = "Steady";
        pub const DRAINING: &str = "DrainingControllers";
        pub const DRAIN_TIMED_OUT: &str = "DrainTimedOut";
        pub const NOT_DRAINING: &str = "NotDraining";
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControllerPoolStatus {
    /// Controllers the StatefulSet runs.
    #[serde(default)]
    pub replicas: u32,
    /// Probes connected to this pool's controllers.
    #[serde(default)]
    pub connected_probes: u32,
    /// replicas × probes_per_controller.
    #[serde(default)]
    pub capacity: u32,
    /// Replicas the load asks for now (before stabilization and draining).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<u32>,
    /// Since when the load has asked for fewer replicas (the stabilization window runs
    /// from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_since: Option<Time>,
    /// Controllers being drained before the pool scales down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draining: Vec<String>,
    /// When the current drain began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_since: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}
