//! Soak: many full probe sessions held for a long run, with churn. The probe side of
//! `e2e/soak.py` (`make soak`), which starts the real components as processes
//! (operator, collector, registration, controllers, api) and drives this program.
//!
//! Every probe runs the agent's own loop (`vantage_probe::agent::run_loop`: registration
//! over SSH at the `vantage registration` process, the controller session with both
//! forwards, the scheduler, the outbox) and the agent's own measurement code
//! (`Measurements`), with three kinds of I/O replaced so that thousands of probes need
//! no raw sockets: pings are answered at once ([`InstantPinger`]), traceroutes reach
//! their target at the first hop ([`LoopTracer`]), and DNS queries go over real UDP to
//! a responder in this process (the agent's `SocketDns`, port overridden).
//!
//! ```text
//! soak_probes keys --seed S --first F --count N
//!     one line per probe: `<id> <OpenSSH public key>`
//! soak_probes run --seed S --first F --count N --registration HOST:PORT
//!     --registration-key 'ssh-ed25519 …' --results FILE
//!     [--start-rate 50] [--churn 0.10] [--progress-secs 10]
//! ```
//!
//! `run` reads commands on stdin, one per line: `churn on`, `churn off`, `quit` (or end
//! of input). While churn is on, `--churn` of the probes a minute (spread evenly over
//! the minute, in a shuffled order) end their session and start again from
//! registration, keeping their scheduler and outbox as a probe that loses its network
//! does. Every result the measurement code hands to the outbox is appended to
//! `--results` as `msm_id prb_id timestamp type`. Progress and the final counters go to
//! stdout as JSON lines (`{"event":"progress"|"final", …}`).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use vantage_core::definition::Task;
use vantage_fleet::probes::{probe_key, InstantPinger};
use vantage_probe::anchor::{Anchor, RegistrationServer};
use vantage_probe::dns::SocketDns;
use vantage_probe::firmware::Firmware;
use vantage_probe::http::HyperClient;
use vantage_probe::measure::Measurements;
use vantage_probe::ntp::UdpNtp;
use vantage_probe::outbox::Outbox;
use vantage_probe::scheduler::{Measure, Scheduler};
use vantage_probe::sslcert::RustlsProber;
use vantage_probe::traceroute::{ProbeReply, ProbeSpec, ReplyKind, TraceProber};

struct Args {
    command: String,
    seed: u64,
    first: u32,
    count: u32,
    registration: String,
    registration_key: String,
    results: PathBuf,
    start_rate: f64,
    churn: f64,
    progress_secs: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let command = it
        .next()
        .context("usage: soak_probes keys|run --seed S --first F --count N …")?;
    let mut a = Args {
        command,
        seed: 1,
        first: 0,
        count: 0,
        registration: String::new(),
        registration_key: String::new(),
        results: PathBuf::from("soak-results.txt"),
        start_rate: 50.0,
        churn: 0.10,
        progress_secs: 10,
    };
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seed" => a.seed = value.parse()?,
            "--first" => a.first = value.parse()?,
            "--count" => a.count = value.parse()?,
            "--registration" => a.registration = value,
            "--registration-key" => a.registration_key = value,
            "--results" => a.results = value.into(),
            "--start-rate" => a.start_rate = value.parse()?,
            "--churn" => a.churn = value.parse()?,
            "--progress-secs" => a.progress_secs = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    if a.count == 0 {
        bail!("--count must be at least 1");
    }
    if a.start_rate.is_nan() || a.start_rate <= 0.0 {
        bail!("--start-rate must be a positive number of probes a second");
    }
    if !(0.0..=1.0).contains(&a.churn) {
        bail!("--churn is a share of the probes a minute, 0 to 1 (0.10 = 10 %)");
    }
    Ok(a)
}

/// Every traceroute reaches its target at the first hop, 1 ms away.
struct LoopTracer;

impl TraceProber for LoopTracer {
    async fn probe(&self, spec: &ProbeSpec) -> ProbeReply {
        ProbeReply::Reply {
            from: spec.dst,
            rtt: Duration::from_micros(1_000),
            size: 76,
            ttl: Some(64),
            kind: ReplyKind::Reached,
            flags: None,
        }
    }
}

type SoakMeasurements =
    Measurements<InstantPinger, LoopTracer, SocketDns, HyperClient, RustlsProber, UdpNtp>;

/// One result the measurement code handed to the outbox.
struct Sent {
    msm_id: u64,
    prb_id: u64,
    timestamp: u64,
    kind: String,
}

/// The agent's measurements, each result recorded before the scheduler queues it.
struct SoakMeasure {
    inner: SoakMeasurements,
    log: mpsc::UnboundedSender<Sent>,
}

impl Measure for SoakMeasure {
    async fn run(&self, task: &Task) -> Option<Value> {
        let result = self.inner.run(task).await?;
        let field = |k: &str| result.get(k).and_then(Value::as_u64).unwrap_or(0);
        let _ = self.log.send(Sent {
            msm_id: field("msm_id"),
            prb_id: field("prb_id"),
            timestamp: field("timestamp"),
            kind: result
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
        });
        Some(result)
    }
}

/// One probe's handles, shared with the churn and progress tasks.
struct ProbeSlot {
    outbox: Arc<Outbox>,
    /// Ends the current session (the probe then starts again from registration).
    kick: Mutex<Option<watch::Sender<bool>>>,
}

/// Counters of the whole fleet.
#[derive(Default)]
struct Counters {
    kicks: AtomicU64,
    /// Times a probe's loop ended and started again (a kick took effect).
    restarts: AtomicU64,
    produced: Mutex<BTreeMap<String, u64>>,
}

/// A small xorshift generator: the churn order is shuffled, reproducibly per seed.
fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// Answers every DNS query on `socket` with its question, NOERROR and no records.
async fn dns_responder(socket: tokio::net::UdpSocket) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if n < 12 {
            continue;
        }
        let Some(reply) = buf.get_mut(..n) else {
            continue;
        };
        // QR = 1, opcode and RD kept; RA = 1, RCODE = 0.
        reply[2] |= 0x80;
        reply[3] = 0x80;
        let _ = socket.send_to(reply, from).await;
    }
}

/// The open-file limit raised to the hard limit, as the servers do at start.
fn raise_nofile() -> anyhow::Result<u64> {
    vantage_platform::fds::raise_nofile_limit().context("cannot read the open-file limit")
}

fn print_json(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn totals(slots: &[Arc<ProbeSlot>], counters: &Counters) -> Value {
    let (queued, dropped) = slots.iter().fold((0usize, 0u64), |(q, d), s| {
        (q + s.outbox.len(), d + s.outbox.dropped())
    });
    let produced = counters
        .produced
        .lock()
        .map(|p| p.clone())
        .unwrap_or_default();
    json!({
        "produced": produced.values().sum::<u64>(),
        "produced_by_type": produced,
        "queued": queued,
        "dropped": dropped,
        "kicks": counters.kicks.load(Ordering::Relaxed),
        "restarts": counters.restarts.load(Ordering::Relaxed),
        "unix": vantage_fleet::probes::unix_us() / 1_000_000,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    match a.command.as_str() {
        "keys" => {
            let mut out = std::io::stdout().lock();
            for id in a.first..a.first + a.count {
                let key = probe_key(a.seed, id);
                writeln!(
                    out,
                    "{id} {}",
                    vantage_controller::keys::public_line(key.public_key())
                )?;
            }
            Ok(())
        }
        "run" => run(a).await,
        other => bail!("unknown command {other}: keys or run"),
    }
}

async fn run(a: Args) -> anyhow::Result<()> {
    let nofile = raise_nofile()?;
    let host_key = russh::keys::PublicKey::from_openssh(a.registration_key.trim())
        .context("--registration-key is not an OpenSSH public key")?;
    let anchor = Arc::new(Anchor {
        registration: vec![RegistrationServer {
            addr: a.registration.clone(),
            host_key,
        }],
        firmware_keys: Vec::new(),
    });
    let dns = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let dns_port = dns.local_addr()?.port();
    tokio::spawn(dns_responder(dns));

    // The results log.
    let counters = Arc::new(Counters::default());
    let (log_tx, mut log_rx) = mpsc::unbounded_channel::<Sent>();
    let file = std::fs::File::create(&a.results)
        .with_context(|| format!("creating {}", a.results.display()))?;
    let writer_counters = counters.clone();
    let writer = tokio::spawn(async move {
        let mut out = std::io::BufWriter::new(file);
        while let Some(s) = log_rx.recv().await {
            let _ = writeln!(out, "{} {} {} {}", s.msm_id, s.prb_id, s.timestamp, s.kind);
            if let Ok(mut p) = writer_counters.produced.lock() {
                *p.entry(s.kind).or_default() += 1;
            }
            if log_rx.is_empty() {
                let _ = out.flush();
            }
        }
        let _ = out.flush();
    });

    let quit = Arc::new(AtomicBool::new(false));
    let state = tempfile::tempdir()?;
    let slots: Vec<Arc<ProbeSlot>> = (0..a.count)
        .map(|_| {
            Arc::new(ProbeSlot {
                outbox: Arc::new(Outbox::new(10_000)),
                kick: Mutex::new(None),
            })
        })
        .collect();
    print_json(
        &json!({"event": "starting", "probes": a.count, "open_files_limit": nofile, "dns_port": dns_port}),
    );

    // Probes start at --start-rate a second.
    let mut probes = tokio::task::JoinSet::new();
    let gap = Duration::from_secs_f64(1.0 / a.start_rate);
    let started = Instant::now();
    for (i, slot) in slots.iter().enumerate() {
        let id = a.first + i as u32;
        let slot = slot.clone();
        let key = Arc::new(probe_key(a.seed, id));
        let anchor = anchor.clone();
        let quit = quit.clone();
        let counters = counters.clone();
        let log = log_tx.clone();
        let fw_state = state.path().join(format!("{id}.fw"));
        probes.spawn(async move {
            let prb_id = Arc::new(AtomicU32::new(0));
            let measure = Arc::new(SoakMeasure {
                inner: Measurements {
                    pinger: InstantPinger,
                    tracer: LoopTracer,
                    dns: SocketDns {
                        port_override: Some(dns_port),
                    },
                    http: HyperClient,
                    tls: RustlsProber,
                    ntp: UdpNtp::default(),
                    prb_id: prb_id.clone(),
                },
                log,
            });
            let mut scheduler = Scheduler::new(measure, slot.outbox.clone(), 4);
            // No executable to hash: the running version is the built-in one.
            let firmware = Firmware::load(
                Path::new("/nonexistent/vantage-probe").to_path_buf(),
                fw_state,
                Vec::new(),
            );
            loop {
                let (tx, rx) = watch::channel(false);
                if let Ok(mut k) = slot.kick.lock() {
                    *k = Some(tx);
                }
                // `quit` is set before every probe is kicked: a probe sees one or the other.
                if quit.load(Ordering::SeqCst) {
                    break;
                }
                vantage_probe::agent::run_loop(
                    key.clone(),
                    &anchor,
                    &firmware,
                    &mut scheduler,
                    &slot.outbox,
                    &prb_id,
                    rx,
                )
                .await;
                if quit.load(Ordering::SeqCst) {
                    break;
                }
                counters.restarts.fetch_add(1, Ordering::Relaxed);
            }
        });
        let due = started + gap * (i as u32 + 1);
        tokio::time::sleep_until(due.into()).await;
    }
    drop(log_tx);
    print_json(
        &json!({"event": "started", "probes": a.count, "secs": started.elapsed().as_secs_f64()}),
    );

    // Churn: one probe every 60 / (churn × count) seconds while on.
    let churn_on = Arc::new(AtomicBool::new(false));
    if a.churn > 0.0 {
        let per_min = (a.churn * f64::from(a.count)).max(1.0);
        let every = Duration::from_secs_f64(60.0 / per_min);
        let order = shuffled(slots.len(), a.seed);
        let slots = slots.clone();
        let churn_on = churn_on.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut next = 0usize;
            loop {
                tick.tick().await;
                if !churn_on.load(Ordering::Relaxed) {
                    continue;
                }
                let Some(slot) = order.get(next % order.len()).and_then(|i| slots.get(*i)) else {
                    continue;
                };
                next += 1;
                if let Ok(k) = slot.kick.lock() {
                    if let Some(tx) = k.as_ref() {
                        let _ = tx.send(true);
                        counters.kicks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }

    // Progress.
    {
        let slots = slots.clone();
        let counters = counters.clone();
        let every = Duration::from_secs(a.progress_secs.max(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let mut v = totals(&slots, &counters);
                v["event"] = json!("progress");
                print_json(&v);
            }
        });
    }

    // Commands on stdin (a blocking reader thread).
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if cmd_tx.send(line.trim().to_owned()).is_err() {
                return;
            }
        }
        let _ = cmd_tx.send("quit".to_owned());
    });
    while let Some(cmd) = cmd_rx.recv().await {
        match cmd.as_str() {
            "churn on" => churn_on.store(true, Ordering::Relaxed),
            "churn off" => churn_on.store(false, Ordering::Relaxed),
            "quit" => break,
            "" => continue,
            other => eprintln!("unknown command {other:?}: churn on, churn off, quit"),
        }
        print_json(&json!({"event": "ack", "command": cmd}));
    }

    churn_on.store(false, Ordering::Relaxed);
    let before = totals(&slots, &counters);
    quit.store(true, Ordering::SeqCst);
    for slot in &slots {
        if let Ok(k) = slot.kick.lock() {
            if let Some(tx) = k.as_ref() {
                let _ = tx.send(true);
            }
        }
    }
    let stopped = tokio::time::timeout(Duration::from_secs(60), async {
        while probes.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    // Every scheduler is dropped with its probe: the log's senders are gone.
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    let mut v = totals(&slots, &counters);
    v["event"] = json!("final");
    v["queued_at_quit"] = before["queued"].clone();
    v["all_stopped"] = json!(stopped);
    print_json(&v);
    Ok(())
}
