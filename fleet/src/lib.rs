//! vantage-fleet: many full probe sessions, for benchmarks and scale tests (not shipped).
//!
//! * [`probes`]: probes that run the agent's own code (registration, controller session
//!   with both forwards, scheduler, outbox), with pings answered without ICMP.
//! * [`world`]: the servers they talk to: `vantage controller` processes, the
//!   production registration server in-process, NATS KV, and the readings.

pub mod probes;
pub mod world;
