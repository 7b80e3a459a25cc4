//! vantage-platform: plumbing shared by the server components.
//!
//! * [`obs`] — tracing set-up and the `/metrics` + `/healthz` endpoint every
//!   long-running component serves.
//! * [`bus`] — connecting to NATS and declaring vantage's JetStream streams and KV buckets.
//! * [`store`] — the ClickHouse client, the `results` row and the other rows;
//!   [`store::migrations`] holds the schema as versioned migrations.

pub mod bus;
pub mod obs;
pub mod store;
