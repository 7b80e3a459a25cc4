//! Accuracy of the geolocation engines on a simulated world (see `vantage_geo_eval`).
//!
//!     cargo run --release -p vantage-geo-eval --example geo_eval -- [--netns]
//!         [--profile=kind|hard] [--seeds=1,2,3] [--near=KM] [--seed=N]
//!         [--all-pairs | --anchors=N --per-round=N --rounds=N --enough-ms=MS] [--packets=N]
//!         [--rir=SHARE|off] [--geofeed=SHARE|off] [probes] [targets] [noise_ms]
//!
//! In process by default; `--netns` builds the world out of network namespaces (root)
//! and has the probes really ping the targets (`make geo-eval`). Measuring is IPmap's
//! by default: anchors ping every target, the rest is measured on demand
//! (`--all-pairs`: every probe pings every target). `--rir` is the share of targets
//! registered in their own country (0.95 by default; `off`: no `rir` engine).
//! `--profile=hard` is the calibrated world (docs/GEOLOCATION.md); `--seeds` runs
//! several worlds and says which goals hold on every seed and which only on average,
//! with each seed's country ceiling (tunnels no engine can place). In namespaces at
//! most `GEO_IN_FLIGHT` pings (48) are in flight at once.

use std::sync::Arc;
use std::time::Instant;

use vantage_engines::engine::rdns::Rules;
use vantage_engines::World;
use vantage_geo_eval::netns::{NetnsMeasurer, NetnsOptions, NetnsWorld};
use vantage_geo_eval::{
    calibrate, evaluate, evaluate_active, hard, place, simulate, spread_probes, Goals, Measuring,
    Profile, Report, SimConfig,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let netns = args.iter().any(|a| a == "--netns");
    let hard_profile = args.iter().any(|a| a == "--profile=hard");
    let mut cfg = if hard_profile {
        SimConfig::hard()
    } else {
        SimConfig::default()
    };
    let mut plan = vantage_geo_eval::ActivePlan::default();
    let mut seeds: Vec<u64> = Vec::new();
    for a in &args {
        let Some((flag, value)) = a.split_once('=') else {
            continue;
        };
        match flag {
            "--profile" if matches!(value, "kind" | "hard") => {}
            "--profile" => return Err(format!("--profile={value}: use kind or hard").into()),
            "--near" => cfg.near_probe_km = Some(value.parse()?),
            "--seed" => cfg.seed = value.parse()?,
            "--seeds" => seeds = value.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--anchors" => plan.anchors = value.parse()?,
            "--per-round" => plan.per_round = value.parse()?,
            "--rounds" => plan.rounds = value.parse()?,
            "--enough-ms" => plan.enough_rtt_ms = value.parse()?,
            "--packets" => cfg.packets = value.parse()?,
            "--rir" => {
                cfg.rir_accuracy = match value {
                    "off" => None,
                    share => Some(share.parse()?),
                }
            }
            "--geofeed" => {
                let Profile::Hard(h) = &mut cfg.profile else {
                    return Err("--geofeed needs --profile=hard".into());
                };
                h.geofeed_share = match value {
                    "off" => 0.0,
                    share => share.parse()?,
                };
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    cfg.measuring = if args.iter().any(|a| a == "--all-pairs") {
        Measuring::AllPairs
    } else {
        Measuring::Active(plan)
    };
    args.retain(|a| !a.starts_with("--"));
    if netns {
        (cfg.probes, cfg.targets) = match cfg.measuring {
            // Every probe pings every target: few of each.
            Measuring::AllPairs => (40, 60),
            Measuring::Active(_) => (800, 100),
        };
    }
    if let Some(p) = args.first() {
        cfg.probes = p.parse()?;
    }
    if let Some(t) = args.get(1) {
        cfg.targets = t.parse()?;
    }
    if let Some(n) = args.get(2) {
        cfg.noise_ms = n.parse()?;
    }
    if seeds.is_empty() {
        seeds.push(cfg.seed);
    }
    let world = World::embedded()?;
    let rules = Rules::embedded()?;
    println!("{cfg:?}");
    let mut reports: Vec<(u64, Report)> = Vec::new();
    for &seed in &seeds {
        let cfg = SimConfig {
            seed,
            ..cfg.clone()
        };
        let started = Instant::now();
        let report = if netns {
            run_netns(world.clone(), rules.clone(), &cfg)?.await
        } else {
            simulate(world.clone(), rules.clone(), &cfg).await
        };
        println!(
            "== {} world, seed {seed}, {:.1} s",
            cfg.profile.name(),
            started.elapsed().as_secs_f64()
        );
        print!("{}", report.table());
        reports.push((seed, report));
    }
    let goals = match cfg.profile {
        Profile::Hard(_) => Goals::hard(),
        Profile::Kind => Goals::kind(),
    };
    print!("{}", goals.summary(&reports));
    Ok(())
}

/// Build the namespace world, measure (anchoring mesh, stored RTTs, on demand) and
/// evaluate.
fn run_netns(
    world: Arc<World>,
    rules: Rules,
    cfg: &SimConfig,
) -> Result<impl std::future::Future<Output = Report>, Box<dyn std::error::Error>> {
    let opts = NetnsOptions::default();
    println!("pinger: {:?}", opts.pinger);
    let started = Instant::now();
    let lab = Arc::new(NetnsWorld::build(place(&world, cfg), cfg.clone(), opts)?);
    let built = started.elapsed();
    let mesh = lab.measure_mesh()?;
    let calibration = calibrate(lab.placement(), &mesh);
    let measuring = cfg.measuring.clone();
    let stored = match &measuring {
        Measuring::AllPairs => lab.measure()?.0,
        Measuring::Active(plan) => {
            lab.measure_from(&spread_probes(lab.placement(), plan.anchors))?
        }
    };
    let hosts = lab
        .placement()
        .targets
        .iter()
        .filter(|t| hard::is_host(t))
        .count();
    Ok(async move {
        let report = match &measuring {
            Measuring::AllPairs => evaluate(world, rules, &stored, calibration).await,
            Measuring::Active(plan) => {
                let measurer = Arc::new(NetnsMeasurer(lab.clone()));
                let placement = lab.placement().clone();
                evaluate_active(
                    world,
                    rules,
                    &placement,
                    &stored,
                    measurer,
                    plan,
                    calibration,
                )
                .await
            }
        };
        let fidelity = lab.fidelity();
        println!(
            "{} namespaces ({hosts} hosts) built in {:.1} s; {} anchoring-mesh pings; {} paths pinged in {:.1} s; measured - true RTT: min {:.3} ms, median {:.3} ms, p95 {:.3} ms, max {:.3} ms, lost {}",
            lab.placement().probes.len() + lab.placement().targets.len() + 2,
            built.as_secs_f64(),
            mesh.len(),
            fidelity.paths,
            (started.elapsed() - built).as_secs_f64(),
            fidelity.min_ms,
            fidelity.median_ms,
            fidelity.p95_ms,
            fidelity.max_ms,
            fidelity.lost
        );
        println!(
            "worst path: {:?}; the emulation's own round trip, subtracted: {:.3} ms",
            fidelity.worst,
            lab.overhead_ms()
        );
        report
    })
}
