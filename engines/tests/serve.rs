//! `serve()` on real sockets: the API, /metrics and /healthz.

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
async fn serves_api_metrics_and_health() {
    let (api, metrics) = (free_addr(), free_addr());
    let mut config = Config::new(api, metrics);
    // No DNS from tests: only engines that need neither the network nor ClickHouse.
    config.engines = vec![
        EngineConfig::new("single-radius", 1.0, true),
        EngineConfig::new("crowdsourced", 1.0, true),
    ];
    // An ASN table (without Kubernetes too): addresses no route covers are refused.
    let table =
        std::env::temp_dir().join(format!("vantage-serve-{}-ipasn.dat", std::process::id()));
    std::fs::write(&table, "; pyasn\n193.0.0.0/16\t3333\n").expect("write the ASN table");
    config.asn_table = Some(table.clone());
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
    let (status, body) = get(&format!("http://{api}/api/v1/worlds/2759794"))
        .await
        .expect("worlds");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Amsterdam"));
    let (status, body) = get(&format!("http://{api}/api/v1/locate/10.0.0.1/"))
        .await
        .expect("locate");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("reserved_address"));
    let (status, _) = get(&format!("http://{api}/api/v1/locate/193.0.14.129/"))
        .await
        .expect("locate");
    assert_eq!(status, 200);
    let (status, body) = get(&format!("http://{api}/api/v1/locate/8.8.8.8/"))
        .await
        .expect("locate");
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("unrouted_address") && body.contains(&*table.to_string_lossy()),
        "{body}"
    );
    let _ = std::fs::remove_file(&table);
    let (status, body) = get(&format!("http://{metrics}/metrics"))
        .await
        .expect("metrics");
    assert_eq!(status, 200);
    assert!(body.contains("vantage_engines_locates_total 1"), "{body}");
    assert!(
        body.contains("vantage_engines_bad_requests_total 2"),
        "{body}"
    );
    server.abort();
}

#[tokio::test]
async fn unknown_engine_is_a_config_error() {
    let mut config = Config::new(free_addr(), free_addr());
    config.engines = vec![EngineConfig::new("astrology", 1.0, true)];
    let err = serve(config).await.expect_err("refused");
    assert!(err.to_string().contains("astrology"), "{err}");
}
