//! vantage-platform: plumbing shared by the server components.
//!
//! * [`obs`] — tracing set-up and the `/metrics` + `/healthz` endpoint every
//!   long-running component serves.
//! * [`bus`] — connecting to NATS and declaring vantage's JetStream streams and KV buckets.
//! * [`store`] — the ClickHouse client, the `results` row and the other rows;
//!   [`store::migrations`] holds the schema as versioned migrations.
//! * [`http`] — the HTTP server of the API, intake and engines, with connection limits.
//! * [`fds`] — raising the open-file limit at start.
//! * [`shutdown`] — SIGTERM/SIGINT listened for from the start, graceful then forced.

pub mod bus;
pub mod fds;
pub mod http;
pub mod obs;
pub mod shutdown;
pub mod store;
