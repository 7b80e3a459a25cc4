//! The vantage operator.
//!
//! Reconcilers are pipelines: read a snapshot, then pure validate-and-build steps
//! ([`plan`], [`selection`], [`schedules::desired`]), then apply through the API, NATS
//! or ClickHouse, then status. The pure steps are unit-tested on YAML fixtures; the API
//! calls with tower-test.

pub mod crdgen;
pub mod limits;
pub mod measurement;
pub mod nats_auth;
pub mod plan;
pub mod pool;
pub mod probe_table;
pub mod probes;
pub mod run;
pub mod schedules;
pub mod selection;
pub mod stats;
