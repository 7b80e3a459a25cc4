//! The geolocation accuracy harness in network namespaces (issue #7, section 4): a
//! small simulated world — 30 probes, 10 targets and one anycast address at two
//! sites, each a namespace behind a hub — where every probe really pings every
//! target, whose responder answers after the ground-truth RTT of the path. The
//! engines and the reducer then run over the measured RTTs.
//!
//! Needs root (ip netns, TUN devices); prints SKIPPED and passes otherwise.

use vantage_engines::engine::rdns::Rules;
use vantage_engines::eval::netns::{is_root, NetnsOptions, NetnsWorld};
use vantage_engines::eval::{evaluate, place, simulated_cases, SimConfig, ANYCAST_IP};
use vantage_engines::World;

fn small_world() -> SimConfig {
    SimConfig {
        probes: 30,
        targets: 10,
        near_probe_km: Some(100.0),
        noise_ms: 0.5,
        jitter_ms: 0.2,
        seed: 7,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn engines_locate_the_targets_of_a_small_namespace_world() {
    if !is_root() {
        eprintln!("SKIPPED: the namespace world needs root (ip netns, TUN devices)");
        return;
    }
    let world = World::embedded().expect("world");
    let rules = Rules::embedded().expect("rules");
    let cfg = small_world();
    let placement = place(&world, &cfg);
    assert_eq!(placement.targets.len(), 11, "10 unicast + 1 anycast");
    let lab = NetnsWorld::build(placement.clone(), cfg.clone(), NetnsOptions::default())
        .expect("namespace world");
    let (cases, fidelity) = lab.measure().expect("pings");
    drop(lab);

    // The pings measured the paths: nothing lost, never faster than the ground truth
    // (the speed of light), and close to it.
    assert_eq!(fidelity.lost, 0, "{fidelity:?}");
    assert!(
        fidelity.min_ms >= -0.05 && fidelity.median_ms <= 1.0,
        "measured RTTs stray from the ground truth: {fidelity:?}"
    );

    let measured = evaluate(world.clone(), rules.clone(), &cases).await;
    eprintln!("namespace world:\n{}", measured.table());
    let ideal = evaluate(
        world.clone(),
        rules.clone(),
        &simulated_cases(&placement, &cfg),
    )
    .await;
    eprintln!(
        "same placement, RTTs computed in process:\n{}",
        ideal.table()
    );

    let red = measured.get("reducer").expect("reducer");
    assert_eq!(red.answered, 10, "{red:?}");
    // 30 probes over the whole world are sparse: the goal of issue #7 is measured on a
    // dense world (docs/GEOLOCATION.md); these thresholds catch a broken pipeline.
    assert!(
        red.country >= 0.8 && red.within_40km >= 0.3 && red.median_km <= 100.0,
        "reducer below the small-world thresholds: {red:?}"
    );
    // Real pings change little the engines can tell from the in-process model (whose
    // per-packet jitter draws differ): at most two targets of ten come out otherwise.
    let ideal_red = ideal.get("reducer").expect("reducer");
    assert!(
        (red.country - ideal_red.country).abs() <= 0.2 + 1e-9
            && (red.within_40km - ideal_red.within_40km).abs() <= 0.2 + 1e-9,
        "{red:?} vs in process {ideal_red:?}"
    );
    // No unicast target looks anycast; the anycast address does, with both sites.
    let any = measured.get("anycast").expect("anycast");
    assert_eq!(any.answered, 0, "a unicast target flagged anycast: {any:?}");
    let outcome = measured
        .anycast
        .iter()
        .find(|a| a.ip == ANYCAST_IP)
        .expect("anycast outcome");
    assert!(outcome.flagged, "{outcome:?}");
    assert_eq!(outcome.sites.len(), 2, "{outcome:?}");
    assert!(
        outcome.sites.iter().all(|(_, km)| *km <= 100.0),
        "a site without a nearby anycast candidate: {outcome:?}"
    );
}
