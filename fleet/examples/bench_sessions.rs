//! Benchmark: full probe sessions on controllers, as `vantage-probe run` holds them.
//!
//! Every probe runs the agent's own loop: registration over SSH (the production
//! registration server, in this process, with its Probe directory filled as its
//! reflector fills it), the controller session with its remote forward (command
//! channel, schedule delivered) and its local forward (results), the scheduler and the
//! outbox. Probes live in worker processes (`--worker`, at most `--per-worker` each,
//! for the open-files limit); controllers are real `vantage controller` processes.
//!
//! Phases, in one run: connect every probe (each finds a one-off in its schedule and
//! runs it: the schedule reached it); idle; change every probe's schedule at once to a
//! periodic ping every `--interval` seconds (delivery p50/p99 with every session live);
//! results flowing; then single changes one at a time. Left out: ICMP itself (pings are
//! answered in-process, the result JSON is the agent's), the collector (bench_ingest),
//! Kubernetes (the directory is filled directly; the operator's side is bench_operator).
//!
//! ```sh
//! make stack-up && source /tmp/vantage-stack/env
//! cargo build --release -p vantage --bin vantage -p vantage-fleet --example bench_sessions
//! target/release/examples/bench_sessions --vantage target/release/vantage --sessions 20000 --controllers 2
//! ```

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::sync::watch;
use vantage_fleet::probes::{self, Event, ProbeSpec};
use vantage_fleet::world::{
    cpu_ticks, http_get, pid_listening_on, ping_task, rss_kib, World, WorldConfig,
};

struct Args {
    vantage: PathBuf,
    nats: String,
    nats_monitor: u16,
    sessions: u32,
    controllers: usize,
    per_worker: u32,
    concurrency: usize,
    interval: u32,
    samples: usize,
    worker: Option<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        vantage: "target/release/vantage".into(),
        nats: std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:14222".into()),
        nats_monitor: std::env::var("NATS_MONITOR_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(18222),
        sessions: 2000,
        controllers: 1,
        per_worker: 9_000,
        concurrency: 64,
        interval: 60,
        samples: 100,
        worker: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--vantage" => a.vantage = value.into(),
            "--nats" => a.nats = value,
            "--nats-monitor" => a.nats_monitor = value.parse()?,
            "--sessions" => a.sessions = value.parse()?,
            "--controllers" => a.controllers = value.parse()?,
            "--per-worker" => a.per_worker = value.parse()?,
            "--concurrency" => a.concurrency = value.parse()?,
            "--interval" => a.interval = value.parse()?,
            "--samples" => a.samples = value.parse()?,
            "--worker" => a.worker = Some(value),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The open-file limit raised to the hard limit, as the servers do at start.
fn raise_nofile() -> anyhow::Result<u64> {
    vantage_platform::fds::raise_nofile_limit().context("cannot read the open-file limit")
}

/// A worker process: run the probes of the spec, print events as JSON lines.
async fn worker(spec: &str) -> anyhow::Result<()> {
    raise_nofile()?;
    let spec: ProbeSpec = serde_json::from_str(spec)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let (_stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        use std::io::Write;
        while let Some(e) = rx.recv().await {
            if let Ok(line) = serde_json::to_string(&e) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        }
    });
    probes::run(spec, tx, shutdown).await
}

/// Readings of one process over a window.
struct Usage {
    rss_mib: f64,
    cpu_pct: f64,
}

async fn usage(pids: &[u32], window: Duration) -> Vec<Usage> {
    let before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    tokio::time::sleep(window).await;
    pids.iter()
        .zip(before)
        .map(|(p, b)| Usage {
            rss_mib: rss_kib(*p).0 as f64 / 1024.0,
            cpu_pct: (cpu_ticks(*p) - b) as f64 / window.as_secs_f64(),
        })
        .collect()
}

async fn consumers(monitor: u16) -> String {
    match http_get(monitor, "/jsz").await {
        Ok(body) => serde_json::from_str::<serde_json::Value>(&body)
            .map(|v| format!("{} consumers in all", v["consumers"]))
            .unwrap_or_else(|_| "unreadable /jsz".into()),
        Err(e) => format!("/jsz not reachable: {e}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    if let Some(spec) = &a.worker {
        return worker(spec).await;
    }
    raise_nofile()?;
    let dir = tempfile::tempdir()?;
    eprintln!("controller logs in {}", dir.path().display());
    let seed = u64::from(std::process::id());
    let first_id = 10_000_000 + (std::process::id() % 1_000) * 100_000;
    let nats_port: u16 = a
        .nats
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .context("--nats has no port")?;
    let nats_pid = pid_listening_on(nats_port).context("no nats-server process found")?;
    let nats_rss_before = rss_kib(nats_pid).0 as f64 / 1024.0;
    let consumers_before = consumers(a.nats_monitor).await;

    let world = World::start(&WorldConfig {
        vantage: a.vantage.clone(),
        nats_url: a.nats.clone(),
        controllers: a.controllers,
        first_id,
        probes: a.sessions,
        seed,
        log_dir: dir.path().to_path_buf(),
    })
    .await?;
    let ctl_pids: Vec<u32> = world.controllers.iter().map(|c| c.pid()).collect();
    let ctl_rss_before: f64 = ctl_pids.iter().map(|p| rss_kib(*p).0 as f64 / 1024.0).sum();
    let ids = || first_id..first_id + a.sessions;
    let msm = 9_200_000_000 + u64::from(first_id);
    let (at_connect, periodic, single) = (msm, msm + 1, msm + 2);
    world
        .put_schedules(ids(), |_| vec![ping_task(at_connect, 0, true)])
        .await?;

    // Connect: worker processes of at most --per-worker probes each.
    let exe = std::env::current_exe()?;
    let mut workers = Vec::new();
    let mut first = first_id;
    let workers_n = a.sessions.div_ceil(a.per_worker.max(1));
    let started = Instant::now();
    while first < first_id + a.sessions {
        let count = a.per_worker.min(first_id + a.sessions - first);
        let concurrency = a.concurrency.div_ceil(workers_n as usize);
        let spec = serde_json::to_string(&world.spec(seed, first, count, concurrency))?;
        let mut child = Command::new(&exe)
            .args(["--worker", &spec])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("worker stdout")?;
        let events = world.events();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(e) = serde_json::from_str::<Event>(&line) {
                    let _ = events.send(e);
                }
            }
        });
        workers.push(child);
        first += count;
    }
    let worker_pids: Vec<u32> = workers.iter().map(std::process::Child::id).collect();
    eprintln!(
        "connecting {} probes ({} workers, {} controllers)",
        a.sessions,
        workers.len(),
        a.controllers
    );
    let mut last = 0;
    let connect_deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let n = world.ran_count(at_connect);
        if n >= a.sessions as usize || Instant::now() > connect_deadline {
            break;
        }
        if n / 1000 != last / 1000 {
            eprintln!(
                "  {n} probes up after {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
        last = n;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let up = world.ran_count(at_connect);
    let mut registrations_refused = 0.0;
    let mut connected = 0.0;
    for c in &world.controllers {
        connected += c.metric("vantage_controller_connected_probes").await;
        registrations_refused += c.metric("vantage_controller_refused_total").await;
    }

    eprintln!("idle, 30 s");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut pids = ctl_pids.clone();
    pids.push(nats_pid);
    let idle = usage(&pids, Duration::from_secs(30)).await;
    let consumers_live = consumers(a.nats_monitor).await;

    // Every probe's schedule changes at once: one periodic ping.
    eprintln!("changing every schedule");
    // (Its first run is at a random offset in the first interval: delivery is timed
    // below with one-offs, which run at once.)
    world
        .put_schedules(ids(), |_| vec![ping_task(periodic, a.interval, false)])
        .await?;
    let got = world
        .wait_ran(
            periodic,
            a.sessions as usize,
            Duration::from_secs(u64::from(a.interval) + 30),
        )
        .await;

    eprintln!("results flowing, {} s", a.interval);
    let results_before: f64 = {
        let mut s = 0.0;
        for c in &world.controllers {
            s += c.metric("vantage_controller_results_total").await;
        }
        s
    };
    let window = Duration::from_secs(u64::from(a.interval));
    let flowing = usage(&pids, window).await;
    let mut results_after = 0.0;
    for c in &world.controllers {
        results_after += c.metric("vantage_controller_results_total").await;
    }
    let results_rate = (results_after - results_before) / window.as_secs_f64();

    // Mass change to a one-off (runs at once): delivery = run start - write ack.
    eprintln!("changing every schedule to a one-off");
    let put = world
        .put_schedules(ids(), |_| {
            vec![
                ping_task(periodic, a.interval, false),
                ping_task(single, 0, true),
            ]
        })
        .await?;
    let got_single = world
        .wait_ran(single, a.sessions as usize, Duration::from_secs(600))
        .await;
    let ran = world.ran_at(single);
    let mut mass: Vec<f64> = ran
        .iter()
        .filter_map(|(p, at)| Some((*at as f64 - *put.get(p)? as f64) / 1000.0))
        .collect();
    mass.sort_by(f64::total_cmp);

    // Single changes, one at a time, every session live and results flowing.
    let mut one: Vec<f64> = Vec::new();
    for i in 0..a.samples {
        let probe = first_id + (i as u32 * 7_919) % a.sessions;
        let m = msm + 10 + i as u64;
        let t = world
            .put_schedules(std::iter::once(probe), |_| {
                vec![
                    ping_task(periodic, a.interval, false),
                    ping_task(m, 0, true),
                ]
            })
            .await?;
        if world.wait_ran(m, 1, Duration::from_secs(10)).await == 1 {
            if let (Some(at), Some(put)) = (world.ran_at(m).get(&probe), t.get(&probe)) {
                one.push((*at as f64 - *put as f64) / 1000.0);
            }
        }
    }
    one.sort_by(f64::total_cmp);
    let consumers_end = consumers(a.nats_monitor).await;
    let (mut ctl_hwm, mut ctl_rss) = (0.0, 0.0);
    for p in &ctl_pids {
        let (rss, hwm) = rss_kib(*p);
        ctl_rss += rss as f64 / 1024.0;
        ctl_hwm += hwm as f64 / 1024.0;
    }
    let workers_rss: f64 = worker_pids
        .iter()
        .map(|p| rss_kib(*p).0 as f64 / 1024.0)
        .sum();

    let n = a.sessions as f64;
    let sum = |u: &[Usage], k: usize| -> (f64, f64) {
        let s = &u[..k];
        (
            s.iter().map(|u| u.rss_mib).sum(),
            s.iter().map(|u| u.cpu_pct).sum(),
        )
    };
    let c = ctl_pids.len();
    let (idle_rss, idle_cpu) = sum(&idle, c);
    let (flow_rss, flow_cpu) = sum(&flowing, c);
    println!(
        "full probe sessions: {} requested, {} controller(s), {} worker process(es)",
        a.sessions,
        c,
        workers.len()
    );
    println!(
        "  up (registered, both forwards, schedule run)  {up} of {}; {connected} connected; {} refused logins",
        a.sessions, registrations_refused
    );
    println!(
        "  set-up rate over the sessions that came up    {:>8.0} /s  ({up} in {connect_secs:.1} s, registration + controller handshakes, {} at once)",
        up as f64 / connect_secs,
        a.concurrency
    );
    println!("  controller RSS before probes                  {ctl_rss_before:>8.1} MiB (all controllers)");
    println!(
        "  controller RSS idle / per probe               {idle_rss:>8.1} MiB / {:.1} KiB",
        (idle_rss - ctl_rss_before) * 1024.0 / n
    );
    println!(
        "  controller RSS results flowing / peak         {flow_rss:>8.1} MiB / {ctl_hwm:.1} MiB (end {ctl_rss:.1})"
    );
    println!("  controller CPU idle                           {idle_cpu:>8.1} % of a core");
    println!(
        "  controller CPU with results flowing           {flow_cpu:>8.1} % of a core  ({results_rate:.0} results/s; expected {:.0}/s)",
        n / f64::from(a.interval)
    );
    println!(
        "  nats-server RSS before / idle / flowing       {nats_rss_before:.1} / {:.1} / {:.1} MiB",
        idle[c].rss_mib, flowing[c].rss_mib
    );
    println!(
        "  nats-server CPU idle / flowing                {:.1} / {:.1} % of a core",
        idle[c].cpu_pct, flowing[c].cpu_pct
    );
    println!("  nats-server consumers before / live / end     {consumers_before} / {consumers_live} / {consumers_end}");
    println!(
        "  periodic schedule received by                 {got} of {}",
        a.sessions
    );
    println!(
        "  mass change (all at once) received by         {got_single} of {}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        a.sessions,
        percentile(&mass, 0.5),
        percentile(&mass, 0.99),
        mass.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  single change (one at a time) p50 / p99       {:.2} / {:.2} ms over {} samples",
        percentile(&one, 0.5),
        percentile(&one, 0.99),
        one.len()
    );
    println!("  probe workers RSS                             {workers_rss:.1} MiB ({:.1} KiB per probe, agent code in one process)", workers_rss * 1024.0 / n);
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let mut msms = vec![at_connect, periodic, single];
    msms.extend((0..a.samples as u64).map(|i| msm + 10 + i));
    world.clean_up(&msms).await;
    if std::env::var_os("FLEET_KEEP_LOGS").is_some() {
        let kept = dir.keep();
        eprintln!("logs kept in {}", kept.display());
    }
    Ok(())
}
