//! `vantage-probe`: the probe agent binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
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
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
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
