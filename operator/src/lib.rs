//! The vantage operator.
//!
//! Reconcilers are pipelines: read a snapshot, then pure validate-and-build steps
//! ([`plan`], [`selection`], [`schedules::desired`], [`pool::plan`]), then apply through
//! the API, NATS or ClickHouse, then status (server-side apply,
//! [`vantage_crd::apply_status`]). The pure steps are unit-tested on YAML fixtures; the
//! API calls with tower-test.

pub mod builtin;
pub mod connections;
pub mod crdgen;
pub mod events;
pub mod lease;
pub mod limits;
pub mod load;
pub mod measurement;
pub mod nats_auth;
pub mod plan;
pub mod policy_status;
pub mod pool;
pub mod probe_table;
pub mod probes;
pub mod run;
pub mod schedules;
pub mod selection;
pub mod stats;
pub mod system_tags;

/// The field manager of every server-side apply by the operator (workloads and status),
/// and the reporting controller of its Events.
pub const FIELD_MANAGER: &str = "vantage-operator";
