//! Accuracy of the geolocation engines on a simulated world (see `vantage_engines::eval`).
//!
//!     cargo run --release -p vantage-engines --example geo_eval -- [--netns] [--near=KM] [--seed=N] [probes] [targets] [noise_ms]
//!
//! In process by default; `--netns` builds the world out of network namespaces (root)
//! and has every probe really ping every target (`make geo-eval`).

use std::time::Instant;

use vantage_engines::engine::rdns::Rules;
use vantage_engines::eval::netns::{NetnsOptions, NetnsWorld};
use vantage_engines::eval::{evaluate, place, simulate, SimConfig};
use vantage_engines::World;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let netns = args.iter().any(|a| a == "--netns");
    let mut cfg = SimConfig::default();
    for a in &args {
        if let Some(km) = a.strip_prefix("--near=") {
            cfg.near_probe_km = Some(km.parse()?);
        }
        if let Some(seed) = a.strip_prefix("--seed=") {
            cfg.seed = seed.parse()?;
        }
    }
    args.retain(|a| !a.starts_with("--"));
    if netns {
        cfg.probes = 40;
        cfg.targets = 60;
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
        let lab = NetnsWorld::build(place(&world, &cfg), cfg.clone(), opts)?;
        let built = started.elapsed();
        let (cases, fidelity) = lab.measure()?;
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
        println!("worst path: {:?}", fidelity.worst);
        drop(lab);
        evaluate(world, rules, &cases).await
    } else {
        simulate(world, rules, &cfg).await
    };
    print!("{}", report.table());
    Ok(())
}
