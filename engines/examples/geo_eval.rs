//! Accuracy on a simulated world (in process; see `vantage_engines::eval`).
//!
//!     cargo run --release -p vantage-engines --example geo_eval -- [probes] [targets] [noise_ms]

use vantage_engines::engine::rdns::Rules;
use vantage_engines::eval::{simulate, SimConfig};
use vantage_engines::World;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cfg = SimConfig::default();
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
    println!(
        "{:<14} {:>9} {:>9} {:>10} {:>11}",
        "engine", "answered", "country", "<= 40 km", "median km"
    );
    for a in simulate(&world, &rules, &cfg) {
        println!(
            "{:<14} {:>4}/{:<4} {:>8.1}% {:>9.1}% {:>11.1}",
            a.engine,
            a.answered,
            a.targets,
            100.0 * a.country,
            100.0 * a.within_40km,
            a.median_km
        );
    }
    Ok(())
}
