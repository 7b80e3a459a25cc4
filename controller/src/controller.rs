//! The probe controller: one long SSH session per probe.
//!
//! * A probe is accepted only while registration has assigned it here (the assignment,
//!   with the probe's key, comes from NATS KV `vantage-assignments`).
//! * The probe's remote forward of its allocated port is the command channel: the
//!   controller opens `forwarded-tcpip` through it and sends the probe's full schedule
//!   from KV `vantage-schedules` on connect and on every change, which it learns from
//!   its one watch over the bucket ([`crate::feed`]).
//! * The probe's local forward to the intake endpoint carries results, which are checked
//!   and published to JetStream (`vantage.results.<type>.<msm>`, `Nats-Msg-Id` = result id).
//! * Every other request (sessions, exec, shell, other forwards) is refused and counted.
//!
//! Modules, one concern each:
//!
//! * `server` — the SSH server, the state its sessions share, heartbeats, draining.
//! * `watch` — the KV watches: assignments, drain requests, forced firmware rollouts.
//! * `session` — one probe's session: login, forwards, its `vantage-sessions` record.
//! * `schedule` — schedule delivery down the command channel.
//! * `intake` — results from the probe to JetStream, or to the disk spool.
//! * `metrics` — the controller's counters.

mod intake;
mod metrics;
mod schedule;
mod server;
mod session;
mod watch;

pub use intake::{Intake, JetStreamResults, PublishError, ResultSink};
pub use metrics::ControllerMetrics;
pub use server::{ControllerServer, Identity};
pub use session::ProbeSession;
