//! The engine set from GeolocationEngine resources, with the Kubernetes API mocked
//! (tower-test): the locator runs exactly the enabled engines with their weights, and
//! every resource gets its conditions (Invalid names the field), written by server-side
//! apply.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use kube::runtime::reflector;
use kube::runtime::watcher;
use kube::Client;
use serde_json::{json, Value};
use tower_test::mock;
use vantage_crd::GeolocationEngine;
use vantage_engines::engine::crowd::{CrowdPolicy, Crowdsourced, MemoryCrowdStore};
use vantage_engines::engine::latency::{ProbeRtt, StaticRtts};
use vantage_engines::engine::rdns::{ReverseDns, Rules, StaticPtr};
use vantage_engines::resources::{sync, Metrics, FIELD_MANAGER};
use vantage_engines::{Api, Engines, Locator, World};

const FIXTURES: &str = r#"
- apiVersion: vantage.dev/v1alpha1
  kind: GeolocationEngine
  metadata: {name: rdns, namespace: geo, generation: 1}
  spec: {engine: reverse-dns, weight: 2}
- apiVersion: vantage.dev/v1alpha1
  kind: GeolocationEngine
  metadata: {name: cbg, namespace: geo, generation: 1}
  spec: {engine: latency, enabled: false}
- apiVersion: vantage.dev/v1alpha1
  kind: GeolocationEngine
  metadata: {name: ext, namespace: geo, generation: 3}
  spec: {engine: external}
- apiVersion: vantage.dev/v1alpha1
  kind: GeolocationEngine
  metadata: {name: onnats, namespace: geo, generation: 1}
  spec: {engine: external, nats_subject: geo.engine.x}
- apiVersion: vantage.dev/v1alpha1
  kind: GeolocationEngine
  metadata: {name: rir, namespace: geo, generation: 1}
  spec: {engine: rir}
"#;

fn target() -> IpAddr {
    "8.8.4.4".parse().expect("ip")
}

fn engines() -> Engines {
    let mut rtts = HashMap::new();
    rtts.insert(
        target(),
        vec![ProbeRtt {
            probe_id: 1,
            latitude: 50.11,
            longitude: 8.68,
            rtt_ms: 0.3,
        }],
    );
    let mut ptr = HashMap::new();
    ptr.insert(target(), vec!["ae-1.r01.fra02.example.net".to_owned()]);
    Engines::new(
        Arc::new(StaticRtts(rtts)),
        Arc::new(ReverseDns::new(
            Rules::embedded().expect("rules"),
            Arc::new(StaticPtr(ptr)),
        )),
        Arc::new(Crowdsourced::new(
            Arc::new(MemoryCrowdStore::default()),
            CrowdPolicy::default(),
        )),
        Duration::from_secs(5),
    )
}

#[tokio::test]
async fn enabled_resources_become_the_engine_set_and_get_conditions() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "geo");
    let kube_api: kube::Api<GeolocationEngine> = kube::Api::namespaced(client, "geo");
    let (store, mut writer) = reflector::store::<GeolocationEngine>();
    let objects: Vec<GeolocationEngine> = serde_yaml::from_str(FIXTURES).expect("fixtures");
    for o in &objects {
        writer.apply_watcher_event(&watcher::Event::Apply(o.clone()));
    }
    let world = World::embedded().expect("world");
    let mut registry = prometheus_client::registry::Registry::default();
    let api = Api::new(
        Locator::new(world, Vec::new(), Duration::from_secs(5)),
        None,
        Duration::from_secs(60),
        100,
        &mut registry,
    );
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let mut patched: HashMap<String, Value> = HashMap::new();
        for _ in 0..5 {
            let (req, send) = handle.next_request().await.expect("a status write");
            assert_eq!(req.method(), Method::PATCH);
            assert_eq!(
                req.headers()["content-type"],
                "application/apply-patch+yaml",
                "status is written by server-side apply"
            );
            let q = req.uri().query().unwrap_or_default().to_owned();
            assert!(q.contains(&format!("fieldManager={FIELD_MANAGER}")), "{q}");
            assert!(q.contains("force=true"), "{q}");
            let path = req.uri().path().to_owned();
            let name = path
                .strip_prefix("/apis/vantage.dev/v1alpha1/namespaces/geo/geolocationengines/")
                .and_then(|p| p.strip_suffix("/status"))
                .unwrap_or_else(|| panic!("unexpected path {path}"))
                .to_owned();
            let bytes = req.into_body().collect_bytes().await.expect("body");
            let patch: Value = serde_json::from_slice(&bytes).expect("json");
            assert_eq!(
                (&patch["apiVersion"], &patch["kind"]),
                (&json!("vantage.dev/v1alpha1"), &json!("GeolocationEngine")),
                "{patch}"
            );
            let obj = json!({"apiVersion": "vantage.dev/v1alpha1", "kind": "GeolocationEngine",
                "metadata": {"name": name, "namespace": "geo"},
                "spec": {"engine": "latency"}, "status": patch["status"].clone()});
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&obj).expect("json")))
                    .expect("response"),
            );
            patched.insert(name, patch);
        }
        patched
    });
    let e = engines();
    let mut last = None;
    let metrics = Metrics::default();
    sync(&store, &kube_api, &e, &api, &mut last, &metrics).await;
    let patched = server.await.expect("server");

    let cond = |name: &str, type_: &str| -> (String, String, String) {
        let cs = patched[name]["status"]["conditions"]
            .as_array()
            .expect("conditions");
        let c = cs
            .iter()
            .find(|c| c["type"] == type_)
            .unwrap_or_else(|| panic!("{name} has no {type_}"));
        (
            c["status"].as_str().unwrap_or_default().to_owned(),
            c["reason"].as_str().unwrap_or_default().to_owned(),
            c["message"].as_str().unwrap_or_default().to_owned(),
        )
    };
    assert_eq!(cond("rdns", "Ready").0, "True");
    assert_eq!(cond("rdns", "Invalid").0, "False");
    assert_eq!(cond("cbg", "Ready").1, "Disabled");
    let (status, reason, message) = cond("ext", "Invalid");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "InvalidSpec"));
    assert!(
        message.starts_with("spec.http_endpoint or spec.nats_subject"),
        "{message}"
    );
    // Valid, but this process has no NATS: Ready=False/Unavailable, not Invalid.
    let (status, reason, message) = cond("onnats", "Ready");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Unavailable"));
    assert!(message.contains("--nats-url"), "{message}");
    assert_eq!(cond("onnats", "Invalid").0, "False");
    // Likewise the `rir` engine without RIR files.
    let (status, reason, message) = cond("rir", "Ready");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Unavailable"));
    assert!(message.contains("--rir-file"), "{message}");

    // The locator runs reverse-dns (weight 2) only; latency is known but disabled.
    let mut names = api.locator().engine_names();
    names.sort();
    assert_eq!(names, vec!["latency", "reverse-dns"]);
    let located = api.locate(target(), None).await;
    let engines: Vec<(&str, f64)> = located
        .partials
        .iter()
        .map(|p| (p.engine.as_str(), p.weight))
        .collect();
    assert_eq!(engines, vec![("reverse-dns", 2.0)]);
    assert!(!located.scored.is_empty());
    assert_eq!(metrics.syncs.get(), 1);

    // Nothing changed: no rebuild, and no status writes (the mock would not answer them).
    let mut objects = objects;
    for o in objects.iter_mut() {
        let name = o.metadata.name.clone().unwrap_or_default();
        o.status = serde_json::from_value(patched[&name]["status"].clone()).expect("status");
        writer.apply_watcher_event(&watcher::Event::Apply(o.clone()));
    }
    sync(&store, &kube_api, &e, &api, &mut last, &metrics).await;
    assert_eq!(metrics.syncs.get(), 1);
    assert_eq!(metrics.status_failures.get(), 0);
}
