//! `serve()` with geofeeds (RFC 8805 files, found through RFC 9632 references in an
//! RPSL dump and read from a mirror directory) and RIR statistics with a bad line: the
//! `geofeed` engine answers, the bad lines are counted in /metrics.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use vantage_engines::{serve, Config, EngineConfig};

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

async fn get(url: &str) -> Option<(u16, String)> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = client.get(url.parse().ok()?).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test]
async fn geofeeds_vote_and_bad_lines_are_counted() {
    let dir = std::env::temp_dir().join(format!("vantage-geofeed-it-{}", std::process::id()));
    let mirror = dir.join("mirror");
    std::fs::create_dir_all(mirror.join("feeds.example.net")).expect("dir");
    let refs = dir.join("ripe.db.inetnum");
    std::fs::write(
        &refs,
        "inetnum:        193.0.0.0 - 193.0.7.255\n\
         netname:        RIPE-NCC\n\
         geofeed:        https://feeds.example.net/ripe.csv\n\
         \n\
         inetnum:        198.51.100.0 - 198.51.100.255\n\
         remarks:        Geofeed https://feeds.example.net/missing.csv\n",
    )
    .expect("write");
    std::fs::write(
        mirror.join("feeds.example.net").join("ripe.csv"),
        "# RIPE NCC\n\
         193.0.0.0/22,NL,NL-NH,Amsterdam,\n\
         8.8.8.0/24,NL,NL-NH,Amsterdam,\n\
         193.0.4.0/22,NLD,,,\n",
    )
    .expect("write");
    let own = dir.join("own.csv");
    std::fs::write(&own, "4.4.4.0/24,US,US-CA,Los Angeles,\n").expect("write");
    let rir = dir.join("delegated-ripencc-extended-latest");
    std::fs::write(
        &rir,
        "ripencc|NL|ipv4|193.0.0.0|2048|19930901|assigned|x\n\
         ripencc|NL|ipv4|not-an-address|2048|19930901|assigned|x\n",
    )
    .expect("write");

    let (api, metrics) = (free_addr(), free_addr());
    let mut config = Config::new(api, metrics);
    config.engines = vec![
        EngineConfig::new("geofeed", 1.0, true),
        EngineConfig::new("rir", 1.0, true),
    ];
    config.geofeed_refs = vec![refs];
    config.geofeed_dir = Some(mirror);
    config.geofeed_files = vec![own];
    config.rir_files = vec![rir];
    let server = tokio::spawn(serve(config));
    let mut health = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        health = get(&format!("http://{metrics}/healthz")).await;
        if health.as_ref().is_some_and(|(s, _)| *s == 200) {
            break;
        }
    }
    assert_eq!(health.map(|h| h.0), Some(200));

    let (status, body) = get(&format!(
        "http://{api}/api/v1/locate/193.0.1.139/partials/geofeed"
    ))
    .await
    .expect("locate");
    assert_eq!(status, 200, "{body}");
    // GeoNames 2759794: Amsterdam, score 7.
    assert!(
        body.contains("2759794") && body.contains("\"score\":7"),
        "{body}"
    );
    let (status, body) = get(&format!(
        "http://{api}/api/v1/locate/4.4.4.10/partials/geofeed"
    ))
    .await
    .expect("locate");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("5368361"),
        "Los Angeles from the own feed: {body}"
    );
    // 8.8.8.0/24 is outside the inetnum that referenced the feed: no vote.
    let (_, body) = get(&format!(
        "http://{api}/api/v1/locate/8.8.8.8/partials/geofeed"
    ))
    .await
    .expect("locate");
    assert!(!body.contains("2759794"), "{body}");

    let (status, body) = get(&format!("http://{metrics}/metrics"))
        .await
        .expect("metrics");
    assert_eq!(status, 200);
    for line in [
        "vantage_engines_data_bad_lines_total{data=\"rir\"} 1",
        "vantage_engines_data_bad_lines_total{data=\"geofeed\"} 1",
        "vantage_engines_data_lines_total{data=\"geofeed\",result=\"ok\"} 2",
        "vantage_engines_data_lines_total{data=\"geofeed\",result=\"outside_referencing_prefix\"} 1",
        "vantage_engines_data_lines_total{data=\"geofeed\",result=\"no_city\"} 0",
        "vantage_engines_geofeed_contradicted_total 0",
    ] {
        assert!(body.contains(line), "no {line} in\n{body}");
    }
    server.abort();
    std::fs::remove_dir_all(&dir).ok();
}
