//! vantage's custom resources, group `vantage.dev`, version `v1alpha1`.
//!
//! Spec fields use the RIPE Atlas vocabulary and spelling (`start_time`, `packets`,
//! `asn_v4`, ...) so that definitions copy between vantage and RIPE Atlas; status
//! fields use Kubernetes spelling (`observedGeneration`, `lastTransitionTime`).
//! [`status::apply_status`] writes any of their statuses by server-side apply.

// `printcolumn(name = .., type_ = ..)` repeats argument names across columns, which
// clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod conditions;
mod controller_pool;
mod geolocation_engine;
mod measurement;
mod probe;
mod probe_firmware;
pub mod status;
mod tenant_policy;

pub use controller_pool::{
    pool_conditions, ControllerPool, ControllerPoolSpec, ControllerPoolStatus, MaxStartupsSpec,
    NatsRef, PreAuthSpec, RegistrationSpec,
};
pub use geolocation_engine::{
    EngineScope, GeolocationEngine, GeolocationEngineSpec, GeolocationEngineStatus,
};
pub use measurement::{
    Measurement, MeasurementSpec, MeasurementState, MeasurementStatus, ParticipationRequest,
    CEL_RULES as MEASUREMENT_CEL_RULES, PARTICIPATION_ANNOTATION, SPECIFIED,
};
pub use probe::{Location, Probe, ProbeSpec, ProbeStatus};
pub use probe_firmware::{ProbeFirmware, ProbeFirmwareSpec, ProbeFirmwareStatus};
pub use status::{apply_status, StatusError};
pub use tenant_policy::{TenantPolicy, TenantPolicySpec, TenantPolicyStatus, TenantUsage};

/// API group of every vantage resource.
pub const GROUP: &str = "vantage.dev";

/// Every CRD, in the order `crdgen` writes them.
pub fn all_crds(
) -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![
        Measurement::crd(),
        Probe::crd(),
        ControllerPool::crd(),
        GeolocationEngine::crd(),
        ProbeFirmware::crd(),
        TenantPolicy::crd(),
    ]
}
