//! `vantage-probe`: the probe agent binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::filter::Targets;
use vantage_probe::agent::{self, AgentConfig};
use vantage_probe::identity;
use vantage_probe::outbox::DEFAULT_MAX_BUFFER;
use vantage_probe::scheduler::DEFAULT_MAX_CONCURRENT;

#[derive(Parser)]
#[command(name = "vantage-probe", version, about = "vantage measurement probe")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new ed25519 probe key (mode 0600) and print its public key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of a probe key.
    Pubkey {
        #[arg(long, env = "VANTAGE_PROBE_KEY")]
        key: PathBuf,
    },
    /// Run one RIPE Atlas definition (JSON) here, now, and print its RIPE Atlas result.
    Measure {
        /// Run once (the only mode).
        #[arg(long)]
        once: PathBuf,
        /// prb_id to put in the result.
        #[arg(long, default_value_t = 0)]
        prb_id: u32,
    },
    /// Register, connect to a controller and run measurements until stopped.
    Run {
        #[arg(long, env = "VANTAGE_PROBE_KEY")]
        key: PathBuf,
        /// Trust anchor YAML: registration servers and their host keys.
        #[arg(long, env = "VANTAGE_PROBE_ANCHOR")]
        anchor: PathBuf,
        /// Results kept in memory while disconnected (oldest dropped first).
        #[arg(long, default_value_t = DEFAULT_MAX_BUFFER)]
        max_buffer: usize,
        /// Measurements running at once.
        #[arg(long, default_value_t = DEFAULT_MAX_CONCURRENT)]
        max_concurrent: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen { out } => {
            let line = identity::write_new_key(&out)?;
            println!("{line}");
            Ok(())
        }
        Command::Pubkey { key } => {
            let key = identity::load_key(&key)?;
            println!("{}", identity::public_line(&key)?);
            Ok(())
        }
        Command::Measure { once, prb_id } => {
            let definition = std::fs::read_to_string(&once)
                .with_context(|| format!("reading {}", once.display()))?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            let result =
                runtime.block_on(vantage_probe::measure::measure_once(&definition, prb_id))?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
        Command::Run {
            key,
            anchor,
            max_buffer,
            max_concurrent,
        } => {
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::util::SubscriberInitExt;
            tracing_subscriber::registry()
                .with(
                    tracing_subscriber::fmt::layer()
                        .with_writer(std::io::stderr)
                        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
                )
                .with(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
                .init();
            // One thread: the agent waits on sockets and timers, never on the CPU, and a
            // single-threaded runtime saves the worker threads' stacks and malloc arenas
            // (docs/BENCHMARKS.md, "Agent size and idle memory").
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            let config = AgentConfig {
                max_buffer,
                max_concurrent,
                ..AgentConfig::new(key, anchor)
            };
            runtime.block_on(async move {
                let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    wait_for_signal().await;
                    tracing::info!("signal received; stopping");
                    let _ = stop_tx.send(true);
                });
                agent::run(config, stop_rx).await
            })?;
            Ok(())
        }
    }
}

/// `RUST_LOG` as `target=level` directives and a bare default level (`info`,
/// `vantage_probe=debug,russh=warn`); unset, empty or unreadable: `info`. The agent does
/// not link `EnvFilter` (a regex engine for span and field filters it never needed).
fn log_filter(spec: Option<&str>) -> Targets {
    spec.map(str::trim)
        .filter(|s| !s.is_empty())
        .and_then(|s| s.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn rust_log_directives() {
        let f = log_filter(None);
        assert!(f.would_enable("vantage_probe::ssh", &Level::INFO));
        assert!(!f.would_enable("vantage_probe::ssh", &Level::DEBUG));
        let f = log_filter(Some("warn,vantage_probe::scheduler=debug"));
        assert!(f.would_enable("vantage_probe::scheduler", &Level::DEBUG));
        assert!(!f.would_enable("vantage_probe::ssh", &Level::INFO));
        assert!(f.would_enable("russh::client", &Level::WARN));
        for unreadable in ["", " ", "vantage_probe=loud"] {
            let f = log_filter(Some(unreadable));
            assert!(f.would_enable("x", &Level::INFO), "{unreadable:?}");
            assert!(!f.would_enable("x", &Level::DEBUG), "{unreadable:?}");
        }
    }
}
