//! What a probe and the servers say to each other over SSH.
//!
//! The flow follows RIPE Atlas (`reginit.sh`, `telnetd.c`):
//!
//! 1. **Registration.** The probe opens an SSH session to a registration server from its
//!    trust anchor and runs the command `INIT`. The answer is one JSON line, a
//!    [`RegistrationReply`]: the controller to use, its host key, and the port the
//!    probe may forward.
//! 2. **Session.** The probe connects to that controller (checking the host key) and asks
//!    for a remote forward (`tcpip-forward`) of its allocated port. Through it the
//!    controller opens a `forwarded-tcpip` channel: the *command* channel, carrying
//!    [`Down`] frames. The probe opens a `direct-tcpip` channel to the controller's
//!    result-intake endpoint ([`INTAKE_HOST`]:[`INTAKE_PORT`]), carrying [`Up`] frames.
//!
//! Frames are JSON, one per line, each at most [`MAX_FRAME_BYTES`]. [`LineBuffer`] splits
//! a byte stream into bounded lines without trusting the peer.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::task::Task;

/// The command a probe runs on a registration server: `INIT` or `INIT fw=<version>`.
pub const REGISTER_COMMAND: &str = "INIT";

/// Parse a registration command: `Some(fw)` for `INIT` (fw 0 when not given).
pub fn parse_register(command: &str) -> Option<u32> {
    let mut words = command.split_whitespace();
    if words.next()? != REGISTER_COMMAND {
        return None;
    }
    match words.next() {
        None => Some(0),
        Some(w) => w.strip_prefix("fw=")?.parse().ok(),
    }
}
/// The SSH user name probes log in as (as RIPE Atlas probes use `atlas`).
pub const PROBE_USER: &str = "probe";
/// The result-intake endpoint a probe may reach through a local forward.
pub const INTAKE_HOST: &str = "127.0.0.1";
pub const INTAKE_PORT: u32 = 8080;
/// Largest frame either side accepts, in bytes (a result, plus room for its envelope).
pub const MAX_FRAME_BYTES: usize = crate::result::MAX_RESULT_BYTES + 4096;

/// The registration server's answer to `INIT`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RegistrationReply {
    pub v: u32,
    /// The probe's id, from its `Probe` resource.
    pub probe_id: u32,
    /// The controller's name (for logs).
    pub controller: String,
    /// `host:port` to dial.
    pub controller_addr: String,
    /// The controller's SSH host key, OpenSSH public-key format.
    pub controller_host_key: String,
    /// The port the probe asks the controller to forward to its command channel.
    pub command_port: u32,
    /// Newer firmware for this probe, if a release applies to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<FirmwareOffer>,
}

/// A firmware release offered at registration. The probe fetches the bundle with
/// `FETCH <version>` on the registration server and installs it only if the digest and
/// the signature check out against the firmware keys in its trust anchor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct FirmwareOffer {
    pub version: u32,
    /// `sha256:<hex>`.
    pub digest: String,
    /// SSHSIG PEM over the version and digest (see the vantage-firmware crate).
    pub signature: String,
    pub size: u64,
}

/// The command that fetches a firmware bundle: `FETCH <version>`.
pub const FETCH_COMMAND: &str = "FETCH";

/// Controller to probe, on the command channel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Down {
    /// The probe's whole desired schedule. It replaces the current one atomically.
    Schedule {
        v: u32,
        /// Increases with every change; the probe acknowledges it.
        revision: u64,
        tasks: Vec<Task>,
    },
}

/// Probe to controller, on the intake channel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Up {
    /// A RIPE Atlas result (validated by the controller with `result::Envelope`).
    Result { v: u32, result: Value },
    /// The probe applied the schedule of this revision.
    ScheduleAck { v: u32, revision: u64 },
    /// Sent once per session.
    Hello { v: u32, fw: u32, uptime_s: u64 },
}

/// A line that could not be accepted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line longer than {MAX_FRAME_BYTES} bytes; dropped")]
    TooLong,
}

/// Splits a byte stream into newline-terminated lines of at most [`MAX_FRAME_BYTES`].
/// An over-long line is reported once and skipped up to its newline; the stream goes on.
#[derive(Default, Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    discarding: bool,
}

impl LineBuffer {
    /// Feed bytes; get the complete lines (or errors) they finish, in order.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<Result<Vec<u8>, LineError>> {
        let mut out = Vec::new();
        while !data.is_empty() {
            match data.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    if self.discarding {
                        self.discarding = false;
                    } else if self.buf.len() + i > MAX_FRAME_BYTES {
                        out.push(Err(LineError::TooLong));
                    } else {
                        self.buf.extend_from_slice(&data[..i]);
                        let line = std::mem::take(&mut self.buf);
                        if !line.iter().all(u8::is_ascii_whitespace) {
                            out.push(Ok(line));
                        }
                    }
                    self.buf.clear();
                    data = &data[i + 1..];
                }
                None => {
                    if !self.discarding {
                        if self.buf.len() + data.len() > MAX_FRAME_BYTES {
                            self.buf.clear();
                            self.discarding = true;
                            out.push(Err(LineError::TooLong));
                        } else {
                            self.buf.extend_from_slice(data);
                        }
                    }
                    data = &[];
                }
            }
        }
        out
    }
}

/// Encode a frame as one line.
pub fn encode<T: Serialize>(frame: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = serde_json::to_vec(frame)?;
    line.push(b'\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{PingOptions, TaskKind};

    #[test]
    fn frames_round_trip() {
        let down = Down::Schedule {
            v: crate::WIRE_VERSION,
            revision: 3,
            tasks: vec![Task {
                msm_id: 1,
                af: 4,
                target: "127.0.0.1".into(),
                interval: 60,
                spread: 0,
                start_time: None,
                stop_time: None,
                is_oneoff: false,
                kind: TaskKind::Ping(PingOptions {
                    packets: 3,
                    size: 48,
                    packet_interval_ms: 1000,
                }),
            }],
        };
        let line = encode(&down).expect("encode");
        assert_eq!(line.last(), Some(&b'\n'));
        let back: Down = serde_json::from_slice(&line).expect("decode");
        assert_eq!(back, down);
        let up: Up =
            serde_json::from_str(r#"{"kind":"schedule_ack","v":1,"revision":3}"#).expect("ack");
        assert_eq!(up, Up::ScheduleAck { v: 1, revision: 3 });
    }

    #[test]
    fn register_command_parses() {
        assert_eq!(parse_register("INIT"), Some(0));
        assert_eq!(parse_register("INIT fw=5020\n"), Some(5020));
        assert_eq!(parse_register("INIT fw=x"), None);
        assert_eq!(parse_register("KEEP"), None);
        assert_eq!(parse_register(""), None);
    }

    #[test]
    fn line_buffer_splits_across_chunks() {
        let mut lb = LineBuffer::default();
        assert!(lb.push(b"{\"a\":").is_empty());
        let lines = lb.push(b"1}\n\n{\"b\":2}\n{\"c\"");
        assert_eq!(
            lines,
            vec![Ok(b"{\"a\":1}".to_vec()), Ok(b"{\"b\":2}".to_vec())]
        );
        assert_eq!(lb.push(b":3}\n"), vec![Ok(b"{\"c\":3}".to_vec())]);
    }

    #[test]
    fn over_long_line_is_dropped_once_and_stream_recovers() {
        let mut lb = LineBuffer::default();
        let chunk = vec![b'x'; MAX_FRAME_BYTES / 2 + 1];
        assert!(lb.push(&chunk).is_empty());
        assert_eq!(lb.push(&chunk), vec![Err(LineError::TooLong)]);
        assert!(
            lb.push(&chunk).is_empty(),
            "still discarding, no second error"
        );
        assert_eq!(
            lb.push(b"tail\n{\"ok\":1}\n"),
            vec![Ok(b"{\"ok\":1}".to_vec())]
        );
    }
}
