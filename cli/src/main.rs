//! `vantage`: one server binary, one subcommand per component.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vantage",
    version,
    about = "vantage: an open, Kubernetes-native Internet measurement network"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct NatsArgs {
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
}

#[derive(Args, Clone)]
struct ClickHouseArgs {
    /// ClickHouse HTTP URL.
    #[arg(long, env = "CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    clickhouse_url: String,
    /// ClickHouse database.
    #[arg(long, env = "CLICKHOUSE_DB", default_value = "vantage")]
    clickhouse_db: String,
}

#[derive(Args, Clone)]
struct SshArgs {
    /// Address the SSH server listens on.
    #[arg(long, default_value = "0.0.0.0:443")]
    listen: SocketAddr,
    /// ed25519 host key (OpenSSH format); created when missing.
    #[arg(long)]
    host_key: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile Measurements and Probes, publish schedules, fold in result counts.
    Operator {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        ch: ClickHouseArgs,
        #[arg(long, default_value = "0.0.0.0:9090")]
        metrics_addr: SocketAddr,
    },
    /// The registration SSH server probes dial first.
    Registry {
        #[command(flatten)]
        ssh: SshArgs,
        #[command(flatten)]
        nats: NatsArgs,
        #[arg(long, default_value = "0.0.0.0:9091")]
        metrics_addr: SocketAddr,
    },
    /// A probe controller: holds probe sessions, relays schedules and results.
    Controller {
        /// Unique controller name (the pod name in Kubernetes).
        #[arg(long, env = "POD_NAME")]
        name: String,
        /// `host:port` probes dial to reach this controller.
        #[arg(long)]
        advertise: String,
        /// Probes this controller takes at most.
        #[arg(long, default_value_t = 20_000)]
        capacity: u32,
        /// Countries (ISO codes) this controller prefers, comma-separated.
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
        #[command(flatten)]
        ssh: SshArgs,
        #[command(flatten)]
        nats: NatsArgs,
        #[arg(long, default_value = "0.0.0.0:9092")]
        metrics_addr: SocketAddr,
    },
    /// Write results from JetStream to ClickHouse.
    Collector {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        ch: ClickHouseArgs,
        /// Rows per INSERT at most.
        #[arg(long, default_value_t = 5_000)]
        max_batch: usize,
        /// Milliseconds a batch waits to fill.
        #[arg(long, default_value_t = 500)]
        max_wait_ms: u64,
        #[arg(long, default_value = "0.0.0.0:9093")]
        metrics_addr: SocketAddr,
    },
    /// Apply the ClickHouse schema migrations and print the version.
    Migrate {
        #[command(flatten)]
        ch: ClickHouseArgs,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    vantage_platform::obs::init_tracing();
    match Cli::parse().command {
        Command::Operator {
            nats,
            ch,
            metrics_addr,
        } => {
            vantage_operator::run::run(vantage_operator::run::Config {
                nats_url: nats.nats_url,
                clickhouse_url: ch.clickhouse_url,
                clickhouse_db: ch.clickhouse_db,
                metrics_addr,
            })
            .await?
        }
        Command::Registry {
            ssh,
            nats,
            metrics_addr,
        } => {
            vantage_controller::run::registry(vantage_controller::run::Common {
                listen: ssh.listen,
                host_key: ssh.host_key,
                nats_url: nats.nats_url,
                metrics_addr,
            })
            .await?
        }
        Command::Controller {
            name,
            advertise,
            capacity,
            regions,
            ssh,
            nats,
            metrics_addr,
        } => {
            vantage_controller::run::controller(
                vantage_controller::run::Common {
                    listen: ssh.listen,
                    host_key: ssh.host_key,
                    nats_url: nats.nats_url,
                    metrics_addr,
                },
                vantage_controller::controller::Identity {
                    name,
                    advertise,
                    capacity,
                    regions,
                },
            )
            .await?
        }
        Command::Collector {
            nats,
            ch,
            max_batch,
            max_wait_ms,
            metrics_addr,
        } => {
            let store = vantage_platform::store::Store::new(&ch.clickhouse_url, &ch.clickhouse_db)?;
            let cfg = vantage_collector::Config {
                max_batch,
                max_wait: Duration::from_millis(max_wait_ms),
            };
            vantage_collector::serve(&nats.nats_url, store, cfg, metrics_addr).await?
        }
        Command::Migrate { ch } => {
            let store = vantage_platform::store::Store::new(&ch.clickhouse_url, &ch.clickhouse_db)?;
            println!("schema version {}", store.migrate().await?);
        }
    }
    Ok(())
}
