//! The agent loop: register, hold a controller session, and on any failure back off and
//! start again from registration (which picks the controller each time).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::keys::PrivateKey;
use tokio::sync::watch;

use crate::anchor::Anchor;
use crate::firmware::Firmware;
use crate::measure::Measurements;
use crate::outbox::{Outbox, DEFAULT_MAX_BUFFER};
use crate::scheduler::{Measure, Scheduler, DEFAULT_MAX_CONCURRENT};
use crate::ssh::{self, CloseReason, SessionContext, SessionEnd};
use crate::{identity, ProbeError};
use vantage_core::backoff::Backoff;

/// A session that lasted this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(60);

/// What `vantage-probe run` is given.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub key_path: PathBuf,
    pub anchor_path: PathBuf,
    /// Results kept while no intake channel is up.
    pub max_buffer: usize,
    /// Measurements running at once.
    pub max_concurrent: usize,
}

impl AgentConfig {
    pub fn new(key_path: PathBuf, anchor_path: PathBuf) -> Self {
        Self {
            key_path,
            anchor_path,
            max_buffer: DEFAULT_MAX_BUFFER,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
        }
    }
}

/// Run the probe until `shutdown` becomes true (or its sender is dropped).
pub async fn run(config: AgentConfig, shutdown: watch::Receiver<bool>) -> Result<(), ProbeError> {
    let key = Arc::new(identity::load_key(&config.key_path)?);
    let anchor = Anchor::load(&config.anchor_path)?;
    tracing::info!(
        public_key = %identity::public_line(&key)?,
        registration_servers = anchor.registration.len(),
        max_buffer = config.max_buffer,
        "probe starting"
    );
    let outbox = Arc::new(Outbox::new(config.max_buffer));
    let prb_id = Arc::new(AtomicU32::new(0));
    let measure = Arc::new(Measurements::real(prb_id.clone()));
    let mut scheduler = Scheduler::new(measure, outbox.clone(), config.max_concurrent);
    let exe = std::env::current_exe().map_err(|source| ProbeError::File {
        path: "current executable".into(),
        source,
    })?;
    let firmware = Firmware::load(
        exe,
        config.key_path.with_extension("fw"),
        anchor.firmware_keys.clone(),
    );
    tracing::info!(
        fw = firmware.version(),
        firmware_keys = anchor.firmware_keys.len(),
        "firmware"
    );
    run_loop(
        key,
        &anchor,
        &firmware,
        &mut scheduler,
        &outbox,
        &prb_id,
        shutdown,
    )
    .await;
    tracing::info!(
        queued_results = outbox.len(),
        dropped_results = outbox.dropped(),
        "probe stopped"
    );
    Ok(())
}

fn is_shutdown(rx: &watch::Receiver<bool>) -> bool {
    *rx.borrow() || rx.has_changed().is_err()
}

async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The reconnect loop. Returns on shutdown.
pub async fn run_loop<M: Measure>(
    key: Arc<PrivateKey>,
    anchor: &Anchor,
    firmware: &Firmware,
    scheduler: &mut Scheduler<M>,
    outbox: &Outbox,
    prb_id: &AtomicU32,
    mut shutdown: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let mut backoff = Backoff::default();
    let mut next_server = 0usize;
    while !is_shutdown(&shutdown) {
        let server = &anchor.registration[next_server % anchor.registration.len()];
        let attempt_started = Instant::now();
        let registered = tokio::select! {
            r = ssh::register(&server.addr, &server.host_key, key.clone(), firmware.version()) => r,
            () = wait_shutdown(&mut shutdown) => break,
        };
        let outcome = match registered {
            Ok(reply) => {
                prb_id.store(reply.probe_id, Ordering::Relaxed);
                if let Some(offer) = reply.firmware.as_ref().filter(|o| firmware.wants(o)) {
                    update_firmware(server, key.clone(), firmware, offer, outbox).await;
                }
                let ctx = SessionContext {
                    fw: firmware.version(),
                    key: key.clone(),
                    scheduler: &mut *scheduler,
                    outbox,
                    started,
                    shutdown: &mut shutdown,
                };
                ssh::run_session(&reply, ctx).await
            }
            Err(e) => {
                tracing::warn!(addr = %server.addr, error = %e, "registration failed");
                // Try the next registration server next time.
                next_server = next_server.wrapping_add(1);
                Ok(SessionEnd::Closed(CloseReason::NotRegistered))
            }
        };
        match outcome {
            Ok(SessionEnd::Shutdown) => break,
            Ok(SessionEnd::Closed(reason)) => tracing::warn!(%reason, "no controller session"),
            Err(e) => tracing::warn!(error = %e, "controller session failed"),
        }
        if attempt_started.elapsed() >= STABLE_SESSION {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::info!(
            delay_ms = delay.as_millis() as u64,
            queued_results = outbox.len(),
            "reconnecting after backoff"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = wait_shutdown(&mut shutdown) => break,
        }
    }
    tracing::info!("shutting down");
}

/// Fetch, check and install an offered release; then restart into it. On any failure the
/// running firmware carries on and the release is not fetched again.
async fn update_firmware(
    server: &crate::anchor::RegistrationServer,
    key: Arc<PrivateKey>,
    firmware: &Firmware,
    offer: &vantage_core::frame::FirmwareOffer,
    outbox: &Outbox,
) {
    tracing::info!(
        from = firmware.version(),
        to = offer.version,
        bytes = offer.size,
        "firmware offered; fetching"
    );
    let installed = match ssh::fetch_firmware(
        &server.addr,
        &server.host_key,
        key,
        offer.version,
        offer.size,
    )
    .await
    {
        Ok(bundle) => firmware.install(offer, &bundle),
        Err(e) => {
            tracing::warn!(version = offer.version, error = %e, "cannot fetch firmware; will retry at the next registration");
            return;
        }
    };
    match installed {
        Ok(()) => {
            if !outbox.is_empty() {
                tracing::warn!(
                    queued_results = outbox.len(),
                    "restarting into new firmware with results still queued; they are lost"
                );
            }
            tracing::info!(
                version = offer.version,
                "firmware installed; restarting into it"
            );
            let err = firmware.reexec();
            tracing::error!(error = %err, "cannot restart into the new firmware; it runs at the next start");
        }
        Err(e) => {
            firmware.refuse(offer);
            tracing::error!(version = offer.version, error = %e, "firmware REFUSED; keeping the running firmware");
        }
    }
}
