//! Shutdown on SIGTERM or SIGINT, registered when the process starts.
//!
//! A tokio signal listener only sees signals delivered after it was created, and
//! `kube`'s `Controller::shutdown_on_signal` creates its listener when the controller's
//! stream is first polled. A process that has any other SIGTERM listener (a second
//! controller, say) no longer dies on SIGTERM, so a signal that arrives before that first
//! poll — right after `/healthz` turned ready — was lost and the process ran on until
//! SIGKILL. [`Shutdown::on_signals`] registers both listeners at once, and its futures
//! resolve whenever they are created: before, during or after the signal.
//!
//! The first signal asks for a graceful shutdown ([`Shutdown::requested`]: finish what is
//! in flight); a second one forces it ([`Shutdown::forced`]).

use std::future::Future;

use tokio::sync::watch;

/// How many shutdown signals the process has had; cheap to clone, one per task.
#[derive(Debug, Clone)]
pub struct Shutdown {
    signals: watch::Receiver<u32>,
}

/// Asks a [`Shutdown::manual`] for shutdown, as a signal would.
#[derive(Debug)]
pub struct Trigger(watch::Sender<u32>);

impl Trigger {
    /// One more signal: the first asks for a graceful shutdown, the second forces it.
    pub fn signal(&self) {
        self.0.send_modify(|n| *n = n.saturating_add(1));
    }
}

impl Shutdown {
    /// Listen for SIGTERM and SIGINT (ctrl-c) from now on. Call it first thing in a
    /// runtime, before anything reports ready. Fails only when the runtime cannot install
    /// a signal handler.
    pub fn on_signals() -> std::io::Result<Shutdown> {
        let (shutdown, trigger) = Shutdown::manual();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            tokio::spawn(async move {
                loop {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    trigger.signal();
                    let n = *trigger.0.borrow();
                    if n == 1 {
                        tracing::info!(signal = name, "shutdown requested: finishing what is in flight (send it again to force)");
                    } else {
                        tracing::warn!(signal = name, "shutdown forced");
                    }
                }
            });
        }
        #[cfg(not(unix))]
        {
            tokio::spawn(async move {
                while tokio::signal::ctrl_c().await.is_ok() {
                    trigger.signal();
                }
            });
        }
        Ok(shutdown)
    }

    /// A Shutdown driven by hand (tests, embedding).
    pub fn manual() -> (Shutdown, Trigger) {
        let (tx, rx) = watch::channel(0);
        (Shutdown { signals: rx }, Trigger(tx))
    }

    /// Resolves once a graceful shutdown is asked for, including before this call.
    /// `Send + Sync + 'static`, as `Controller::graceful_shutdown_on` takes it.
    pub fn requested(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        self.at_least(1)
    }

    /// Resolves once shutdown is forced (a second signal), including before this call.
    pub fn forced(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        self.at_least(2)
    }

    fn at_least(&self, n: u32) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut signals = self.signals.clone();
        async move {
            // Err: every sender is gone (the listener task ended with its runtime); no
            // signal can come any more.
            if signals.wait_for(|have| *have >= n).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn resolves(f: impl Future<Output = ()>) -> bool {
        tokio::time::timeout(Duration::from_millis(200), f)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_signal_before_the_future_is_created_is_not_lost() {
        let (shutdown, trigger) = Shutdown::manual();
        assert!(!resolves(shutdown.requested()).await, "no signal yet");
        trigger.signal();
        // Created after the signal, as kube's lazily polled controllers would be.
        assert!(resolves(shutdown.requested()).await);
        assert!(
            !resolves(shutdown.forced()).await,
            "one signal does not force"
        );
    }

    #[tokio::test]
    async fn the_first_signal_asks_the_second_forces() {
        let (shutdown, trigger) = Shutdown::manual();
        let requested = tokio::spawn(shutdown.requested());
        let forced = tokio::spawn(shutdown.forced());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!requested.is_finished() && !forced.is_finished());
        trigger.signal();
        assert!(resolves(async { requested.await.unwrap_or(()) }).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!forced.is_finished());
        trigger.signal();
        assert!(resolves(async { forced.await.unwrap_or(()) }).await);
    }

    #[tokio::test]
    async fn no_trigger_left_means_never() {
        let (shutdown, trigger) = Shutdown::manual();
        drop(trigger);
        assert!(!resolves(shutdown.requested()).await);
    }

    #[tokio::test]
    async fn a_real_sigterm_is_seen_by_futures_made_later() {
        let shutdown = match Shutdown::on_signals() {
            Ok(s) => s,
            Err(e) => panic!("cannot install the signal handlers: {e}"),
        };
        // SIGTERM to this test process (its handler is installed: it does not die).
        let pid = std::process::id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "kill -TERM {pid}: {status:?}"
        );
        // Made after the kill; the 200 ms covers the signal's delivery.
        assert!(resolves(shutdown.requested()).await);
    }
}
