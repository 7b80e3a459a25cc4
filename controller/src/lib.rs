//! vantage-controller: the SSH side of the probe plane.
//!
//! * [`registration`] — the registration server: knows probes by their `Probe` resources,
//!   picks a controller ([`assign`]), and tells the probe where to go.
//! * [`controller`] — the probe controller: holds one long SSH session per probe, pushes
//!   schedules down the probe's remote forward, and publishes results that come up the
//!   probe's local forward to JetStream.
//! * [`keys`] — host keys and probe public keys.
//! * [`revoke`] — a disabled probe's assignment revoked, retried while NATS fails.
//! * [`stall`] — telling a stalled KV watch from a quiet one.

pub mod assign;
pub mod by_reason;
pub mod controller;
pub mod feed;
pub mod keys;
pub mod preauth;
pub mod registration;
pub mod revoke;
pub mod run;
pub mod spool;
pub mod stall;
