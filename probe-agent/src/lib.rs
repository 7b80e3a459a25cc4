//! The vantage probe agent.
//!
//! A probe holds an ed25519 identity and a trust anchor (registration servers and their
//! host keys). It registers over SSH, connects to the controller registration names,
//! receives its schedule on a forwarded command channel, runs the measurements and
//! sends RIPE Atlas results back on a direct-tcpip intake channel. See
//! [`vantage_core::frame`] for the protocol.
//!
//! * [`anchor`] — the trust anchor file.
//! * [`identity`] — the probe's key: generate, load, print.
//! * [`ssh`] — registration and the controller session.
//! * [`agent`] — the reconnect loop that ties everything together.
//! * [`scheduler`] — periodic and one-off tasks, RIPE `eperd` style.
//! * [`measure`] — dispatch to the measurement types under hard time limits; `measure --once`.
//! * [`ping`], [`traceroute`], [`dns`], [`http`], [`sslcert`], [`ntp`] — the measurement
//!   types, each behind a small I/O trait, with their RIPE Atlas results ([`common`]: the
//!   shared fields; [`tls`]: the recording rustls verifier).
//! * [`outbox`] — the bounded buffer of results waiting for an intake channel.
//! * [`commands`] — parsing `Down` frames from the command channel.
//! * [`backoff`] — jittered exponential backoff.

pub mod agent;
pub mod anchor;
pub mod commands;
pub mod common;
pub mod dns;
pub mod firmware;
pub mod http;
pub mod identity;
pub mod measure;
pub mod mtr;
pub mod ntp;
pub mod outbox;
pub mod ping;
pub mod scheduler;
pub mod ssh;
pub mod sslcert;
pub mod tls;
pub mod trace_socket;
pub mod traceroute;

use std::time::Duration;

/// Everything that can go wrong in the probe.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("I/O error on {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already exists; refusing to overwrite a probe key")]
    KeyExists { path: String },
    #[error("key error: {0}")]
    Key(#[from] russh::keys::Error),
    #[error("key encoding error: {0}")]
    KeyEncoding(#[from] russh::keys::ssh_key::Error),
    #[error("trust anchor {path}: {source}")]
    Anchor {
        path: String,
        #[source]
        source: anchor::AnchorError,
    },
    #[error("SSH error: {0}")]
    Ssh(#[from] russh::Error),
    #[error(
        "host key of {addr} is {got}, but {expected} is trusted; refusing to connect \
         (update the trust anchor if the server's key really changed)"
    )]
    HostKeyMismatch {
        addr: String,
        expected: String,
        got: String,
    },
    #[error("{addr} refused our public key for user {user}; is this probe enrolled?")]
    AuthRejected { addr: String, user: String },
    #[error("registration at {addr} failed: {message}")]
    Registration { addr: String, message: String },
    #[error("controller {addr} refused to forward command port {port}")]
    ForwardDenied { addr: String, port: u32 },
    #[error("could not encode a frame: {0}")]
    Json(#[from] serde_json::Error),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error(
        "firmware refused: the trust anchor lists no firmware_keys; refusing all firmware \
         (add the release signing key to firmware_keys to accept updates)"
    )]
    NoFirmwareKeys,
    #[error("firmware refused: {0}")]
    Firmware(#[source] vantage_firmware::FirmwareError),
}

/// Wall-clock unix seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// How long to wait for a TCP + SSH handshake + authentication.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
