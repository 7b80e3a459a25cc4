//! An external engine written in Python joins over HTTP (engines/tests/external_engine.py).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use vantage_engines::engine::external::HttpEngine;
use vantage_engines::{Engine, World};

#[tokio::test]
async fn python_engine_speaks_the_protocol() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/external_engine.py");
    let mut child = match tokio::process::Command::new("python3")
        .arg(script)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("python3 is needed for this test: {e}"),
    };
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("engine started in time")
        .expect("read")
        .expect("a line");
    let port: u16 = first
        .trim_start_matches("listening ")
        .parse()
        .expect("port");
    let world = World::embedded().expect("world");
    let engine = HttpEngine::new(
        "py-test",
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_secs(5),
    )
    .expect("engine");
    assert_eq!(engine.name(), "py-test");

    let by_id = engine
        .locate("193.0.14.129".parse().expect("ip"), &world)
        .await
        .expect("locate");
    let ids: Vec<(u32, u8)> = by_id.iter().map(|c| (c.city_id, c.score)).collect();
    assert_eq!(ids, vec![(2759794, 8), (2747891, 3)]);

    // By coordinates, mapped to the nearest city; the zero score is dropped.
    let by_point = engine
        .locate("8.8.8.8".parse().expect("ip"), &world)
        .await
        .expect("locate");
    assert_eq!(by_point.len(), 1, "{by_point:?}");
    let city = world.city(by_point[0].city_id).expect("city");
    assert_eq!(city.country, "DE");
    assert_eq!(by_point[0].score, 6);

    child.kill().await.expect("kill");

    // A dead engine is an error, not a panic.
    let gone = HttpEngine::new(
        "gone",
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_millis(500),
    )
    .expect("engine");
    assert!(gone
        .locate("8.8.8.8".parse().expect("ip"), &world)
        .await
        .is_err());
    assert!(HttpEngine::new("tls", "https://example.net/", Duration::from_secs(1)).is_err());
}
