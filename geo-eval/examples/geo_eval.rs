//! Accuracy of the geolocation engines on a simulated world (see `vantage_geo_eval`).
//!
//!     cargo run --release -p vantage-geo-eval --example geo_eval -- [--netns] [--near=KM] [--seed=N]
//!         [--all-pairs | --anchors=N --per-round=N --rounds=N --enough-ms=MS] [--packets=N]
//!         [--rir=SHARE|off] [probes] [targets] [noise_ms]
//!
//! In process by default; `--netns` builds the world out of network namespaces (root)
//! and has the probes really ping the targets (`make geo-eval`). Measuring is IPmap's
//! by default: anchors ping every target, the rest is measured on demand
//! (`--all-pairs`: every probe pings every target). `--rir` is the share of targets
//! registered in their own country (0.95 by default; `off`: no `rir` engine).

use std::sync::Arc;
use std::time::Instant;

use vantage_engines::engine::rdns::Rules;
use vantage_engines::World;
use vantage_geo_eval::netns::{NetnsMeasurer, NetnsOptions, NetnsWorld};
use vantage_geo_eval::{
    evaluate, evaluate_active, place, simulate, spread_probes, ActivePlan, Measuring, SimConfig,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let netns = args.iter().any(|a| a == "--netns");
    let mut cfg = SimConfig::default();
    let mut plan = ActivePlan::default();
    for a in &args {
        let Some((flag, value)) = a.split_once('=') else {
            continue;
        };
        match flag {
            "--near" => cfg.near_probe_km = Some(value.parse()?),
            "--seed" => cfg.seed = value.parse()?,
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
    let world = World::embedded()?;
    let rules = Rules::embedded()?;
    println!("{cfg:?}");
    let report = if netns {
        let opts = NetnsOptions::default();
        println!("pinger: {:?}", opts.pinger);
        let started = Instant::now();
        let lab = Arc::new(NetnsWorld::build(place(&world, &cfg), cfg.clone(), opts)?);
        let built = started.elapsed();
        let report = match &cfg.measuring {
            Measuring::AllPairs => {
                let (cases, _) = lab.measure()?;
                evaluate(world, rules, &cases).await
            }
            Measuring::Active(plan) => {
                let anchors = spread_probes(lab.placement(), plan.anchors);
                let stored = lab.measure_from(&anchors)?;
                let measurer = Arc::new(NetnsMeasurer(lab.clone()));
                let placement = lab.placement().clone();
                evaluate_active(world, rules, &placement, &stored, measurer, plan).await
            }
        };
        let fidelity = lab.fidelity();
        println!(
            "{} namespaces built in {:.1} s; {} paths pinged in {:.1} s; measured - true RTT: min {:.3} ms, median {:.3} ms, p95 {:.3} ms, max {:.3} ms, lost {}",
            lab.placement().probes.len() + lab.placement().targets.len() + 2,
            built.as_secs_f64(),
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
    } else {
        simulate(world, rules, &cfg).await
    };
    print!("{}", report.table());
    Ok(())
}
