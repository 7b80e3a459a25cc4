//! Benchmark: how many probe sessions one controller holds, and what they cost.
//!
//! Starts a real `vantage controller` process, writes N assignments to NATS KV, opens N
//! SSH sessions to it (ed25519 keys, publickey auth, as probes do) and reports:
//! SSH handshakes per second, controller RSS per session, controller CPU while the
//! sessions idle on keepalives, and the command delivery latency (schedule written to KV
//! → frame received by the probe over its command channel), p50 and p99.
//!
//! ```sh
//! make stack-up && source /tmp/vantage-stack/env
//! cargo build --release -p vantage --example bench_sessions -p vantage-controller
//! target/release/examples/bench_sessions --vantage target/release/vantage --sessions 20000
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use russh::client;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};
use russh::{Channel, ChannelMsg};
use tokio::sync::mpsc;
use vantage_controller::registry::command_port;
use vantage_core::nats::{probe_key, Assignment, ScheduleDoc};
use vantage_platform::bus::{now_ms, Bus, Retention};

struct Args {
    vantage: String,
    nats: String,
    sessions: usize,
    concurrency: usize,
    rtt_samples: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        vantage: "target/release/vantage".into(),
        nats: std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".into()),
        sessions: 2000,
        concurrency: 64,
        rtt_samples: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--vantage" => a.vantage = value,
            "--nats" => a.nats = value,
            "--sessions" => a.sessions = value.parse()?,
            "--concurrency" => a.concurrency = value.parse()?,
            "--rtt-samples" => a.rtt_samples = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

struct Probe {
    forwarded: Option<mpsc::Sender<Channel<client::Msg>>>,
}

impl client::Handler for Probe {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<client::Msg>,
        _connected_address: &str,
        _connected_port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        if let Some(tx) = &self.forwarded {
            let _ = tx.send(channel).await;
        }
        Ok(())
    }
}

fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// utime + stime in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s
                .rsplit_once(") ")?
                .1
                .split_whitespace()
                .collect::<Vec<_>>();
            Some(after.get(11)?.parse::<u64>().ok()? + after.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    // Each session is a socket on both ends (client and controller are children of this
    // process or it); raise the soft limit as far as the hard limit allows.
    let (_, hard) = rlimit::Resource::NOFILE.get()?;
    rlimit::Resource::NOFILE
        .set(hard, hard)
        .context("raising the open-files limit")?;
    if hard < a.sessions as u64 + 1024 {
        eprintln!("open-files hard limit is {hard}: fewer sessions than requested will open");
    }

    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let metrics = free_port()?;
    let name = format!("bench-{}", std::process::id());
    let host_key = dir.path().join("host_key");
    let mut ctl = std::process::Command::new(&a.vantage)
        .args([
            "controller",
            "--name",
            &name,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--advertise",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--capacity", "1000000", "--host-key"])
        .arg(&host_key)
        .arg("--spool-dir")
        .arg(dir.path().join("spool"))
        .args([
            "--metrics-addr",
            &format!("127.0.0.1:{metrics}"),
            "--nats-url",
            &a.nats,
        ])
        .env("RUST_LOG", "warn")
        .spawn()
        .with_context(|| format!("starting {}", a.vantage))?;
    let pid = ctl.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("controller did not listen");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let bus = Bus::open(&a.nats, "bench", Retention::default()).await?;
    eprintln!("generating {} probe keys and assignments", a.sessions);
    let base_id = 5_000_000 + (std::process::id() % 1000) * 100_000;
    let keys: Vec<Arc<PrivateKey>> = (0..a.sessions)
        .map(|_| {
            PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519).map(Arc::new)
        })
        .collect::<Result<_, _>>()?;
    let puts = futures::stream::iter(keys.iter().enumerate().map(|(i, k)| {
        let kv = bus.assignments.clone();
        let id = base_id + i as u32;
        let a = Assignment {
            v: 1,
            probe_id: id,
            controller: name.clone(),
            public_key: vantage_controller::keys::public_line(k.public_key()),
            command_port: command_port(id),
            at_ms: now_ms(),
            fw: 0,
        };
        async move {
            kv.put(
                probe_key(id),
                serde_json::to_vec(&a).unwrap_or_default().into(),
            )
            .await
        }
    }))
    .buffer_unordered(256)
    .collect::<Vec<_>>()
    .await;
    if let Some(e) = puts.into_iter().find_map(Result::err) {
        bail!("writing assignments: {e}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // let the controller's watch catch up
    let rss_before = proc_status(pid, "VmRSS:");

    // The first session carries the command channel for the latency measurement.
    let (tx, mut rx) = mpsc::channel(4);
    let config = Arc::new(client::Config {
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        ..Default::default()
    });
    let first = {
        let mut h = client::connect(
            config.clone(),
            ("127.0.0.1", port),
            Probe {
                forwarded: Some(tx),
            },
        )
        .await?;
        let auth = h
            .authenticate_publickey("probe", PrivateKeyWithHashAlg::new(keys[0].clone(), None))
            .await?;
        if !auth.success() {
            bail!("first probe refused");
        }
        h.tcpip_forward("127.0.0.1", command_port(base_id)).await?;
        h
    };
    let mut command = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await?
        .context("no command channel")?;

    eprintln!(
        "opening {} sessions, {} at a time",
        a.sessions - 1,
        a.concurrency
    );
    let started = Instant::now();
    let sessions = futures::stream::iter(keys.iter().skip(1).cloned().map(|key| {
        let config = config.clone();
        async move {
            let mut h =
                client::connect(config, ("127.0.0.1", port), Probe { forwarded: None }).await?;
            let auth = h
                .authenticate_publickey("probe", PrivateKeyWithHashAlg::new(key, None))
                .await?;
            if !auth.success() {
                return Err(russh::Error::NotAuthenticated);
            }
            Ok::<_, russh::Error>(h)
        }
    }))
    .buffer_unordered(a.concurrency)
    .collect::<Vec<_>>()
    .await;
    let handshake_secs = started.elapsed().as_secs_f64();
    let failed = sessions.iter().filter(|s| s.is_err()).count();
    let open: Vec<_> = sessions.into_iter().flatten().collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = proc_status(pid, "VmRSS:");
    let ticks_before = cpu_ticks(pid);
    let idle = Duration::from_secs(20);
    tokio::time::sleep(idle).await;
    let idle_cpu = (cpu_ticks(pid) - ticks_before) as f64 / 100.0 / idle.as_secs_f64();

    // Command delivery: schedule written to KV -> frame read on the probe's command channel.
    let mut samples = Vec::with_capacity(a.rtt_samples);
    // Drain the initial schedule sent on connect.
    let _ = tokio::time::timeout(Duration::from_secs(2), command.wait()).await;
    for i in 0..a.rtt_samples {
        let doc = ScheduleDoc {
            v: 1,
            probe_id: base_id,
            tasks: vec![],
        };
        let mut bytes = serde_json::to_vec(&doc)?;
        bytes.extend_from_slice(format!("{:width$}", "", width = i % 2).as_bytes()); // a change every time
        let t = Instant::now();
        bus.schedules.put(probe_key(base_id), bytes.into()).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), command.wait()).await {
                Ok(Some(ChannelMsg::Data { .. })) => break,
                Ok(Some(_)) => continue,
                _ => bail!("no schedule frame within 5 s"),
            }
        }
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);

    let n = open.len() + 1;
    println!(
        "controller sessions benchmark ({} sessions requested, {n} open, {failed} failed)",
        a.sessions
    );
    println!(
        "  SSH handshakes (kex + publickey auth)  {:>10.0} /s   ({} in {:.1} s, {} concurrent)",
        (a.sessions - 1) as f64 / handshake_secs,
        a.sessions - 1,
        handshake_secs,
        a.concurrency
    );
    println!(
        "  controller RSS before sessions          {:>10.1} MiB",
        rss_before as f64 / 1024.0
    );
    println!(
        "  controller RSS with sessions            {:>10.1} MiB",
        rss_after as f64 / 1024.0
    );
    println!(
        "  RSS per session                         {:>10.1} KiB",
        (rss_after.saturating_sub(rss_before)) as f64 / n as f64
    );
    println!(
        "  controller CPU at idle keepalive        {:>10.1} % of one core",
        idle_cpu * 100.0
    );
    println!(
        "  command delivery (KV -> probe) p50      {:>10.2} ms",
        percentile(&samples, 0.5)
    );
    println!(
        "  command delivery (KV -> probe) p99      {:>10.2} ms",
        percentile(&samples, 0.99)
    );
    drop(open);
    drop(first);
    let _ = ctl.kill();
    let _ = ctl.wait();
    Ok(())
}
