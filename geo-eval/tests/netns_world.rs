//! The geolocation accuracy harness in network namespaces (issue #7, section 4): a
//! small simulated world — 400 probes, 30 targets and one anycast address at two
//! sites, each a namespace behind a hub. IPmap's way of measuring: 40 spread-out
//! anchors ping every target, then the engines' active RTT source asks the probes
//! nearest the hints for on-demand pings, which really go through the namespaces to a
//! responder that answers after the ground-truth RTT of the path.
//!
//! Needs root (ip netns, TUN devices). Without root it prints why it is skipped and
//! passes, except under `CI=true`, where it fails ([`vantage_testkit::require_root`]).

use std::sync::Arc;

use vantage_engines::engine::rdns::Rules;
use vantage_engines::World;
use vantage_geo_eval::netns::{NetnsMeasurer, NetnsOptions, NetnsWorld};
use vantage_geo_eval::{
    evaluate_active, place, restrict, simulated_cases, spread_probes, ActivePlan, Measuring,
    SimConfig, SimMeasurer, ANYCAST_IP,
};

fn small_world() -> SimConfig {
    SimConfig {
        probes: 400,
        targets: 30,
        noise_ms: 0.5,
        jitter_ms: 0.2,
        measuring: Measuring::Active(ActivePlan::default()),
        seed: 7,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn engines_locate_the_targets_of_a_small_namespace_world() {
    if !vantage_testkit::require_root("engines_locate_the_targets_of_a_small_namespace_world") {
        return;
    }
    let world = World::embedded().expect("world");
    let rules = Rules::embedded().expect("rules");
    let cfg = small_world();
    let plan = ActivePlan::default();
    let placement = place(&world, &cfg);
    assert_eq!(placement.targets.len(), 31, "30 unicast + 1 anycast");
    let lab = Arc::new(
        NetnsWorld::build(placement.clone(), cfg.clone(), NetnsOptions::default())
            .expect("namespace world"),
    );
    let anchors = spread_probes(&placement, plan.anchors);
    let stored = lab.measure_from(&anchors).expect("anchor pings");
    let measured = evaluate_active(
        world.clone(),
        rules.clone(),
        &placement,
        &stored,
        Arc::new(NetnsMeasurer(lab.clone())),
        &plan,
        None,
    )
    .await;
    let fidelity = lab.fidelity();
    drop(lab);
    eprintln!("namespace world ({fidelity:?}):\n{}", measured.table());

    // The pings measured the paths: nothing lost, and close to the ground truth. The
    // emulation's own round trip is calibrated and subtracted, so an RTT may come out a
    // little faster than the ground truth, but by less than the engines' smallest disc
    // (10 km, 0.1 ms).
    assert_eq!(fidelity.lost, 0, "{fidelity:?}");
    assert!(
        fidelity.min_ms >= -0.1 && fidelity.median_ms <= 0.5,
        "measured RTTs stray from the ground truth: {fidelity:?}"
    );
    // On demand, not all pairs: anchors plus at most three rounds of 20.
    assert!(
        fidelity.paths >= 31 * plan.anchors
            && measured.rtts_per_target <= (plan.anchors + 3 * plan.per_round) as f64,
        "{fidelity:?}, {} RTTs per target",
        measured.rtts_per_target
    );

    let red = measured.get("reducer").expect("reducer");
    assert_eq!(red.answered, 30, "{red:?}");
    // The goal of issue #7 is country ≥ 99.5 %, ≤ 40 km ≥ 85 %, median ≤ 25 km on 800
    // probes (docs/GEOLOCATION.md); 400 probes and 30 targets vary more (77–87 % within
    // 40 km seen), so these leave room: 3 targets fewer than the goal's share.
    assert!(
        red.country >= 0.93 && red.within_40km >= 0.65 && red.median_km <= 25.0,
        "reducer below the small-world thresholds: {red:?}"
    );

    // The same placement with RTTs computed in process: real pings change little the
    // engines can tell (at most five targets of 30 come out otherwise; the namespaces
    // add ~0.1 ms to every RTT, ~10 km to every disc).
    let cases = simulated_cases(&placement, &cfg);
    let ideal = evaluate_active(
        world.clone(),
        rules,
        &placement,
        &restrict(&placement, &cases, &anchors),
        Arc::new(SimMeasurer::new(Arc::new(placement.clone()), &cfg)),
        &plan,
        None,
    )
    .await;
    eprintln!("same placement, in process:\n{}", ideal.table());
    let ideal_red = ideal.get("reducer").expect("reducer");
    assert!(
        (red.country - ideal_red.country).abs() <= 0.17
            && (red.within_40km - ideal_red.within_40km).abs() <= 0.17,
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
        outcome.sites.iter().all(|(_, km)| *km <= 300.0),
        "a site without a nearby anycast candidate: {outcome:?}"
    );
}
