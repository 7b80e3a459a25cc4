//! 1,500 full probe sessions on one controller against the stack's stock nats-server
//! (default limits: 1,000 consumers per stream). Every probe registers, holds its
//! session with both forwards, receives the schedule it had at connect, then a change of
//! its schedule while all are live; both reach every probe's scheduler. With one KV
//! watch per probe, the 1,001st probe's watch was refused and it never measured.

use std::time::Duration;

use tokio::sync::watch;
use vantage_fleet::probes;
use vantage_fleet::world::{ping_task, vantage_bin, ControllerProc, World, WorldConfig};

const PROBES: u32 = 1_500;

fn stack_nats() -> Option<String> {
    vantage_testkit::stack_var("NATS_URL", "full_sessions")
}

/// The controller's published results once they reach `want`, or after 60 s.
async fn published(ctl: &ControllerProc, want: u32) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let results = ctl.metric("vantage_controller_results_total").await;
        if results >= f64::from(want) || std::time::Instant::now() > deadline {
            return results;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_hundred_full_sessions_each_receive_their_schedule_changes() {
    let Some(nats_url) = stack_nats() else { return };
    vantage_platform::fds::raise_nofile_limit().expect("raise the open-files limit");
    let dir = tempfile::tempdir().expect("dir");
    let seed = u64::from(std::process::id());
    let first_id = 7_000_000 + (std::process::id() % 1_000) * 2_000;
    let world = World::start(&WorldConfig {
        vantage: vantage_bin().expect("vantage binary"),
        nats_url,
        controllers: 1,
        first_id,
        probes: PROBES,
        seed,
        log_dir: dir.path().to_path_buf(),
    })
    .await
    .expect("world");
    let ids = || first_id..first_id + PROBES;
    let at_connect = 9_100_000_000 + u64::from(first_id);
    let changed = at_connect + 1;

    // The schedule each probe finds when it connects.
    world
        .put_schedules(ids(), |_| vec![ping_task(at_connect, 0, true)])
        .await
        .expect("schedules");
    let (stop, shutdown) = watch::channel(false);
    let spec = world.spec(seed, first_id, PROBES, 64);
    let fleet = tokio::spawn(probes::run(spec, world.events(), shutdown));

    let started = std::time::Instant::now();
    let connected = world
        .wait_ran(at_connect, PROBES as usize, Duration::from_secs(600))
        .await;
    eprintln!(
        "{connected} probes registered, connected and received their schedule in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let ctl = &world.controllers[0];
    assert_eq!(
        connected,
        PROBES as usize,
        "probes that received their schedule at connect (controller: connected {}, awaiting schedule {}, feed up {})",
        ctl.metric("vantage_controller_connected_probes").await,
        ctl.metric("vantage_controller_awaiting_schedule").await,
        ctl.metric("vantage_controller_schedule_feed_up").await,
    );

    // Every probe's first one-off finishes (a change would cancel a ping still running)
    // and its result comes up the local forward.
    let results = published(ctl, PROBES).await;
    assert!(
        results >= f64::from(PROBES),
        "{results} results published for {PROBES} probes (one one-off each)"
    );

    // A change of every probe's schedule while all sessions are live.
    world
        .put_schedules(ids(), |_| vec![ping_task(changed, 0, true)])
        .await
        .expect("changes");
    let started = std::time::Instant::now();
    let received = world
        .wait_ran(changed, PROBES as usize, Duration::from_secs(120))
        .await;
    eprintln!(
        "{received} probes received the change in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let missing: Vec<u32> = {
        let ran = world.ran_at(changed);
        ids().filter(|id| !ran.contains_key(id)).take(10).collect()
    };
    assert_eq!(
        received, PROBES as usize,
        "probes that received the change; first missing: {missing:?}"
    );

    // One JetStream consumer for the controller's schedule feed, not one per probe.
    let mut stream = world
        .bus
        .js
        .get_stream("KV_vantage-schedules")
        .await
        .expect("schedules stream");
    let consumers = stream.info().await.expect("info").state.consumer_count;
    assert!(
        consumers < 50,
        "{consumers} consumers on the schedules bucket for {PROBES} probes"
    );
    assert_eq!(ctl.metric("vantage_controller_schedule_feed_up").await, 1.0);
    assert_eq!(
        ctl.metric("vantage_controller_awaiting_schedule").await,
        0.0
    );
    assert_eq!(
        ctl.metric("vantage_controller_connected_probes").await,
        f64::from(PROBES)
    );
    // The change's results came up the local forward too.
    let results = published(ctl, 2 * PROBES).await;
    assert!(
        results >= 2.0 * f64::from(PROBES),
        "{results} results published for {PROBES} probes (two one-offs each)"
    );

    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(30), fleet).await;
    world.clean_up(&[at_connect, changed]).await;
}
