//! The SSH side of the probe: registration (`INIT`) and the controller session.

use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Msg};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, ChannelOpenFailure, ChannelWriteHalf, Disconnect};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::timeout;
use vantage_core::frame::{
    encode, Down, RegistrationReply, Up, FETCH_COMMAND, INTAKE_HOST, INTAKE_PORT, MAX_FRAME_BYTES,
    PROBE_USER, REGISTER_COMMAND,
};
use vantage_core::WIRE_VERSION;

use crate::commands::CommandParser;
use crate::outbox::Outbox;
use crate::scheduler::{Measure, Scheduler};
use crate::{ProbeError, CONNECT_TIMEOUT};

/// How long a registration server may take to answer `INIT`.
pub const REGISTRATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one frame may take to be accepted by the controller before the session is
/// considered dead.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// SSH keepalive interval; after [`KEEPALIVE_MAX`] unanswered ones the session ends.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
pub const KEEPALIVE_MAX: usize = 3;

/// The russh client configuration every probe connection uses.
pub fn client_config() -> Arc<client::Config> {
    Arc::new(client::Config {
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: KEEPALIVE_MAX,
        nodelay: true,
        ..Default::default()
    })
}

/// The client handler: pins the server host key, and hands `forwarded-tcpip` channels
/// (the command channel) to the session loop.
pub struct ProbeHandler {
    addr: String,
    expected: PublicKey,
    forwarded: Option<mpsc::Sender<Channel<Msg>>>,
    command_port: u32,
    closed: Option<mpsc::UnboundedSender<CloseReason>>,
}

impl ProbeHandler {
    pub fn new(addr: impl Into<String>, expected: PublicKey) -> Self {
        Self {
            addr: addr.into(),
            expected,
            forwarded: None,
            command_port: 0,
            closed: None,
        }
    }
}

fn fingerprint(key: &PublicKey) -> String {
    format!("{} {}", key.algorithm(), key.fingerprint(HashAlg::Sha256))
}

impl client::Handler for ProbeHandler {
    type Error = ProbeError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, ProbeError> {
        let got = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                if key.key_data() == self.expected.key_data() {
                    tracing::debug!(addr = %self.addr, "server host key matches");
                    return Ok(true);
                }
                fingerprint(key)
            }
            PublicKeyOrCertificate::Certificate(_) => "a certificate".to_owned(),
        };
        let err = ProbeError::HostKeyMismatch {
            addr: self.addr.clone(),
            expected: fingerprint(&self.expected),
            got,
        };
        tracing::error!(error = %err, "refusing server");
        Err(err)
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), ProbeError> {
        let Some(tx) = &self.forwarded else {
            tracing::warn!(addr = %self.addr, "unexpected forwarded-tcpip channel; rejected");
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        if connected_port != self.command_port {
            tracing::warn!(
                connected_port,
                expected = self.command_port,
                "forwarded channel on an unexpected port; accepting anyway"
            );
        }
        tracing::info!(%connected_address, connected_port, %originator_address, originator_port, "command channel opened");
        reply.accept().await;
        if tx.try_send(channel).is_err() {
            tracing::warn!("too many command channels pending; dropping one");
        }
        Ok(())
    }

    async fn disconnected(
        &mut self,
        reason: client::DisconnectReason<ProbeError>,
    ) -> Result<(), ProbeError> {
        let closed = match &reason {
            client::DisconnectReason::ReceivedDisconnect(info) => CloseReason::ServerDisconnected {
                code: format!("{:?}", info.reason_code),
                message: info.message.clone(),
            },
            client::DisconnectReason::Error(e) => CloseReason::Failed {
                error: e.to_string(),
            },
        };
        tracing::debug!(addr = %self.addr, reason = %closed, "SSH session ended");
        if let Some(tx) = &self.closed {
            let _ = tx.send(closed);
        }
        match reason {
            client::DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            client::DisconnectReason::Error(e) => Err(e),
        }
    }
}

/// Connect, check the host key (in the handler) and authenticate as [`PROBE_USER`].
async fn connect(
    addr: &str,
    handler: ProbeHandler,
    key: Arc<PrivateKey>,
) -> Result<client::Handle<ProbeHandler>, ProbeError> {
    let attempt = async {
        let mut handle = client::connect(client_config(), addr, handler).await?;
        let auth = handle
            .authenticate_publickey(PROBE_USER, PrivateKeyWithHashAlg::new(key, None))
            .await?;
        if !auth.success() {
            return Err(ProbeError::AuthRejected {
                addr: addr.to_owned(),
                user: PROBE_USER.to_owned(),
            });
        }
        Ok(handle)
    };
    timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| ProbeError::Timeout("SSH connect and authentication"))?
}

/// Register at one server: run `INIT` and read the [`RegistrationReply`].
pub async fn register(
    addr: &str,
    host_key: &PublicKey,
    key: Arc<PrivateKey>,
    fw: u32,
) -> Result<RegistrationReply, ProbeError> {
    tracing::info!(%addr, fw, "registering");
    let handle = connect(addr, ProbeHandler::new(addr, host_key.clone()), key).await?;
    let command = format!("{REGISTER_COMMAND} fw={fw}");
    let outcome = timeout(
        REGISTRATION_TIMEOUT,
        exec_collect(&handle, &command, MAX_FRAME_BYTES),
    )
    .await;
    let _ = handle
        .disconnect(Disconnect::ByApplication, "registered", "en")
        .await;
    let (stdout, stderr, status) =
        outcome.map_err(|_| ProbeError::Timeout("registration reply"))??;
    let reply = parse_registration(addr, &stdout, &stderr, status)?;
    tracing::info!(
        %addr,
        probe_id = reply.probe_id,
        controller = %reply.controller,
        controller_addr = %reply.controller_addr,
        command_port = reply.command_port,
        "registered"
    );
    Ok(reply)
}

/// Fetch a firmware bundle (`FETCH <version>`) from a registration server: at most
/// `size` bytes, which the offer announced.
pub async fn fetch_firmware(
    addr: &str,
    host_key: &PublicKey,
    key: Arc<PrivateKey>,
    version: u32,
    size: u64,
) -> Result<Vec<u8>, ProbeError> {
    let limit = usize::try_from(size.min(64 << 20)).unwrap_or(64 << 20);
    let handle = connect(addr, ProbeHandler::new(addr, host_key.clone()), key).await?;
    let command = format!("{FETCH_COMMAND} {version}");
    let outcome = timeout(
        Duration::from_secs(300),
        exec_collect(&handle, &command, limit),
    )
    .await;
    let _ = handle
        .disconnect(Disconnect::ByApplication, "fetched", "en")
        .await;
    let (bundle, stderr, status) =
        outcome.map_err(|_| ProbeError::Timeout("firmware download"))??;
    if status != Some(0) {
        return Err(ProbeError::Registration {
            addr: addr.to_owned(),
            message: format!(
                "FETCH {version} failed: {}",
                String::from_utf8_lossy(&stderr).trim()
            ),
        });
    }
    Ok(bundle)
}

/// Run a command; collect stdout (at most `limit` bytes), stderr and the exit status.
async fn exec_collect(
    handle: &client::Handle<ProbeHandler>,
    command: &str,
    limit: usize,
) -> Result<(Vec<u8>, Vec<u8>, Option<u32>), ProbeError> {
    const STDERR_LIMIT: usize = 4096;
    let mut channel = handle.channel_open_session().await?;
    channel.exec(true, command).await?;
    let (mut stdout, mut stderr, mut status) = (Vec::new(), Vec::new(), None);
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                let room = limit.saturating_sub(stdout.len());
                stdout.extend_from_slice(&data[..data.len().min(room)]);
            }
            ChannelMsg::ExtendedData { data, .. } => {
                let room = STDERR_LIMIT.saturating_sub(stderr.len());
                stderr.extend_from_slice(&data[..data.len().min(room)]);
            }
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    Ok((stdout, stderr, status))
}

/// Turn what `INIT` printed into a reply, or an error carrying the server's reason.
pub fn parse_registration(
    addr: &str,
    stdout: &[u8],
    stderr: &[u8],
    status: Option<u32>,
) -> Result<RegistrationReply, ProbeError> {
    let reason = String::from_utf8_lossy(stderr).trim().to_owned();
    let fail = |what: String| ProbeError::Registration {
        addr: addr.to_owned(),
        message: if reason.is_empty() {
            what
        } else {
            format!("{reason} ({what})")
        },
    };
    if let Some(code) = status.filter(|c| *c != 0) {
        return Err(fail(format!("exit status {code}")));
    }
    let line = stdout
        .split(|b| *b == b'\n')
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))
        .ok_or_else(|| fail("empty reply".to_owned()))?;
    serde_json::from_slice(line).map_err(|e| fail(format!("invalid reply: {e}")))
}

/// Why a controller session ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// Asked to stop.
    Shutdown,
    /// The controller or the network ended it.
    Closed(CloseReason),
}

/// Why a controller session closed (logged; the agent reconnects in every case).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// The server sent an SSH disconnect.
    #[error("server disconnected ({code}): {message}")]
    ServerDisconnected { code: String, message: String },
    /// The connection failed. The error itself goes back to russh, which owns it; this
    /// is its text.
    #[error("{error}")]
    Failed { error: String },
    /// The connection ended without a reason.
    #[error("SSH session closed")]
    SessionClosed,
    /// The controller closed the intake channel.
    #[error("intake channel closed")]
    IntakeClosed,
    /// Registration failed (its error is logged where it happens).
    #[error("not registered")]
    NotRegistered,
}

/// What a controller session needs from the agent.
pub struct SessionContext<'a, M: Measure> {
    pub key: Arc<PrivateKey>,
    pub scheduler: &'a mut Scheduler<M>,
    pub outbox: &'a Outbox,
    /// When the agent started (for `Hello.uptime_s`).
    pub started: std::time::Instant,
    /// The running firmware version (for `Hello.fw`).
    pub fw: u32,
    pub shutdown: &'a mut watch::Receiver<bool>,
}

async fn send_up(tx: &ChannelWriteHalf<Msg>, up: &Up) -> Result<(), ProbeError> {
    let line = encode(up)?;
    match timeout(WRITE_TIMEOUT, tx.data(&line[..])).await {
        Ok(res) => Ok(res?),
        Err(_) => Err(ProbeError::Timeout("writing to the intake channel")),
    }
}

async fn read_commands(mut channel: Channel<Msg>, tx: mpsc::Sender<Down>) {
    let mut parser = CommandParser::default();
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                for down in parser.feed(&data) {
                    if tx.send(down).await.is_err() {
                        return;
                    }
                }
            }
            ChannelMsg::Eof | ChannelMsg::Close => break,
            _ => {}
        }
    }
    tracing::info!(
        malformed = parser.malformed,
        oversized = parser.oversized,
        "command channel closed"
    );
}

/// Hold a session to the controller named in `reply` until it ends or shutdown.
pub async fn run_session<M: Measure>(
    reply: &RegistrationReply,
    ctx: SessionContext<'_, M>,
) -> Result<SessionEnd, ProbeError> {
    let addr = reply.controller_addr.as_str();
    let host_key = PublicKey::from_openssh(reply.controller_host_key.trim()).map_err(|e| {
        ProbeError::Registration {
            addr: addr.to_owned(),
            message: format!("controller_host_key is not an OpenSSH public key: {e}"),
        }
    })?;
    let (fwd_tx, mut fwd_rx) = mpsc::channel(8);
    let (closed_tx, mut closed_rx) = mpsc::unbounded_channel();
    let mut handler = ProbeHandler::new(addr, host_key);
    handler.forwarded = Some(fwd_tx);
    handler.command_port = reply.command_port;
    handler.closed = Some(closed_tx);

    tracing::info!(controller = %reply.controller, %addr, "connecting to controller");
    let handle = connect(addr, handler, ctx.key.clone()).await?;
    let setup = async {
        handle
            .tcpip_forward("127.0.0.1", reply.command_port)
            .await
            .map_err(|e| match e {
                russh::Error::RequestDenied => ProbeError::ForwardDenied {
                    addr: addr.to_owned(),
                    port: reply.command_port,
                },
                e => e.into(),
            })?;
        let intake = handle
            .channel_open_direct_tcpip(INTAKE_HOST, INTAKE_PORT, "127.0.0.1", 0)
            .await?;
        let (intake_rx, intake_tx) = intake.split();
        let uptime_s = ctx.started.elapsed().as_secs();
        send_up(
            &intake_tx,
            &Up::Hello {
                v: WIRE_VERSION,
                fw: ctx.fw,
                uptime_s,
            },
        )
        .await?;
        Ok::<_, ProbeError>((intake_rx, intake_tx))
    };
    let (mut intake_rx, intake_tx) = match timeout(CONNECT_TIMEOUT, setup).await {
        Ok(Ok(halves)) => halves,
        Ok(Err(e)) => {
            let _ = handle
                .disconnect(Disconnect::ByApplication, "setup failed", "en")
                .await;
            return Err(e);
        }
        Err(_) => {
            let _ = handle
                .disconnect(Disconnect::ByApplication, "setup timed out", "en")
                .await;
            return Err(ProbeError::Timeout("session setup"));
        }
    };
    tracing::info!(
        controller = %reply.controller,
        command_port = reply.command_port,
        queued_results = ctx.outbox.len(),
        dropped_results = ctx.outbox.dropped(),
        "session up"
    );

    let (down_tx, mut down_rx) = mpsc::channel::<Down>(16);
    let mut readers = JoinSet::new();
    let outbox = ctx.outbox;
    let scheduler = ctx.scheduler;
    let shutdown = ctx.shutdown;
    let result = loop {
        tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break Ok(SessionEnd::Shutdown);
                }
            }
            reason = closed_rx.recv() => {
                break Ok(SessionEnd::Closed(reason.unwrap_or(CloseReason::SessionClosed)));
            }
            msg = intake_rx.wait() => match msg {
                None | Some(ChannelMsg::Close) => break Ok(SessionEnd::Closed(CloseReason::IntakeClosed)),
                Some(other) => tracing::trace!(?other, "intake channel message ignored"),
            },
            Some(channel) = fwd_rx.recv() => {
                readers.spawn(read_commands(channel, down_tx.clone()));
            }
            Some(down) = down_rx.recv() => match down {
                Down::Schedule { revision, tasks, .. } => {
                    let count = tasks.len();
                    let applied = scheduler.apply(tasks);
                    tracing::info!(revision, tasks = count, kept = applied.kept, started = applied.started, cancelled = applied.cancelled, "schedule applied");
                    if let Err(e) = send_up(&intake_tx, &Up::ScheduleAck { v: WIRE_VERSION, revision }).await {
                        break Err(e);
                    }
                }
            },
            () = outbox.pushed(), if outbox.is_empty() => {}
            () = std::future::ready(()), if !outbox.is_empty() => {
                if let Some(result) = outbox.peek() {
                    if let Err(e) = send_up(&intake_tx, &Up::Result { v: WIRE_VERSION, result }).await {
                        break Err(e);
                    }
                    outbox.pop_sent();
                }
            }
        }
    };
    readers.abort_all();
    let _ = handle
        .disconnect(Disconnect::ByApplication, "probe closing session", "en")
        .await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_json() -> String {
        serde_json::to_string(&RegistrationReply {
            v: WIRE_VERSION,
            probe_id: 1001,
            controller: "ctl-0".into(),
            controller_addr: "127.0.0.1:2222".into(),
            controller_host_key: "ssh-ed25519 AAAA".into(),
            command_port: 20001,
            firmware: None,
        })
        .expect("json")
    }

    #[test]
    fn registration_reply_parsing() {
        let out = format!("\n{}\n", reply_json());
        let reply = parse_registration("r:1", out.as_bytes(), b"", Some(0)).expect("ok");
        assert_eq!(reply.probe_id, 1001);
        // Missing exit status but a valid reply is fine.
        assert!(parse_registration("r:1", out.as_bytes(), b"", None).is_ok());

        let err = parse_registration("r:1", b"", b"probe key not enrolled\n", Some(1))
            .expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains("probe key not enrolled") && text.contains("exit status 1"),
            "{text}"
        );

        let err = parse_registration("r:1", b"garbage\n", b"", Some(0)).expect_err("bad json");
        assert!(err.to_string().contains("invalid reply"), "{err}");
        let err = parse_registration("r:1", b"", b"", Some(0)).expect_err("empty");
        assert!(err.to_string().contains("empty reply"), "{err}");
    }
}
