//! vantage-core: the contracts every vantage component shares.
//!
//! * [`definition`] — measurement definitions modelled on the RIPE Atlas API v2
//!   `definitions[]` and `probes[]` objects, and their validation into typed tasks.
//! * [`task`] — the typed task a probe runs (one entry of its schedule).
//! * [`result`] — results in the RIPE Atlas result JSON format.
//! * [`frame`] — what the probe and its controller say to each other over SSH.
//! * [`nats`] — NATS subjects, JetStream streams and KV buckets, and the messages on them.
//!
//! This crate depends on serde only (plus schemars, so that the CRDs can embed these
//! types): no tokio, no kube, no I/O.

pub mod backoff;
pub mod definition;
pub mod frame;
pub mod nats;
pub mod result;
pub mod task;

/// Version of the vantage wire contracts carried in every frame and message (`v`).
pub const WIRE_VERSION: u32 = 1;
