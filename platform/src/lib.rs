//! vantage-platform: plumbing shared by the server components.
//!
//! * [`obs`] — tracing set-up and the `/metrics` + `/healthz` endpoint every
//!   long-running component serves.
//! * [`bus`] — connecting to NATS and declaring vantage's JetStream streams and KV buckets.
//! * [`store`] — the ClickHouse schema (versioned migrations) and the `results` row.

pub mod bus;
pub mod obs;
pub mod store;
pub mod typed;
