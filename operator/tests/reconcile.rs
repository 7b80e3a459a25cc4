//! The Measurement reconciler's API calls, against a tower-test mock of the Kubernetes API.

use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response};
use kube::client::Body;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use kube::Client;
use serde_json::{json, Value};
use tower_test::mock;
use vantage_core::nats::{ScheduleDoc, Session};
use vantage_crd::{Measurement, Probe, TenantPolicy};
use vantage_operator::events::{Emitted, Events};
use vantage_operator::limits::Ledger;
use vantage_operator::measurement::{reconcile, Ctx, Error, IdAllocator, Metrics, FINALIZER};
use vantage_operator::probes::Sessions;
use vantage_operator::schedules::{PublishError, SchedulePublisher, Syncer};
use vantage_operator::stats::{MsmStats, ResultStats};
use vantage_operator::FIELD_MANAGER;

struct Counter(AtomicU64);
impl IdAllocator for Counter {
    async fn next(&self) -> Result<u64, Error> {
        Ok(self.0.fetch_add(1, Ordering::SeqCst))
    }
}

#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<ScheduleDoc>>>);
impl SchedulePublisher for Recorder {
    async fn put(&self, doc: &ScheduleDoc) -> Result<(), PublishError> {
        self.0.lock().expect("lock").push(doc.clone());
        Ok(())
    }
}

fn fixture<T: serde::de::DeserializeOwned>(yaml: &str, name: &str) -> T {
    let all: Vec<Value> = serde_yaml::from_str(yaml).expect("fixture");
    let v = all
        .into_iter()
        .find(|v| v["metadata"]["name"] == name)
        .expect(name);
    serde_json::from_value(v).expect("object")
}

fn measurement(name: &str) -> Measurement {
    fixture(include_str!("fixtures/measurements.yaml"), name)
}

struct World {
    ctx: Arc<Ctx<Counter, Recorder>>,
    msm_writer: Writer<Measurement>,
    policy_writer: Writer<TenantPolicy>,
    published: Recorder,
    events: Arc<Mutex<Vec<Emitted>>>,
}

fn world(client: Client) -> World {
    let (probes, mut probe_writer) = reflector::store::<Probe>();
    let probe: Probe = fixture(include_str!("fixtures/probes.yaml"), "probe-1001");
    probe_writer.apply_watcher_event(&watcher::Event::Apply(probe));
    let (measurements, msm_writer) = reflector::store::<Measurement>();
    let (policies, policy_writer) = reflector::store::<TenantPolicy>();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sessions = Sessions::default();
    sessions.up(Session {
        v: 1,
        probe_id: 1001,
        controller: "ctl-0".into(),
        address: "127.0.0.1".into(),
        connected_since_ms: 0,
        fw: 5020,
        schedule: vantage_core::nats::Delivery::Delivered,
    });
    let published = Recorder::default();
    let ctx = Arc::new(Ctx {
        client,
        probes,
        measurements,
        policies,
        ledger: Arc::new(Ledger::default()),
        load: Default::default(),
        events: Events::Memory(events.clone()),
        candidates: Default::default(),
        sessions,
        stats: ResultStats::default(),
        ids: Counter(AtomicU64::new(1_000_001)),
        schedules: tokio::sync::Mutex::new(Syncer::default()),
        publisher: published.clone(),
        sync_requested: tokio::sync::Notify::new(),
        metrics: Metrics::default(),
    });
    World {
        ctx,
        msm_writer,
        policy_writer,
        published,
        events,
    }
}

async fn body_json(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.expect("body");
    serde_json::from_slice(&bytes).expect("json body")
}

fn respond(send: mock::SendResponse<Response<Body>>, obj: &Value) {
    send.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(obj).expect("json")))
            .expect("response"),
    );
}

const PATH: &str = "/apis/vantage.dev/v1alpha1/namespaces/default/measurements/ping-nl";

/// Assert that `req` writes status by server-side apply: an apply patch, as the
/// operator's field manager, forcing ownership; and that its body names the type.
fn assert_status_apply(req: &Request<Body>) {
    assert_eq!(req.method(), Method::PATCH);
    assert!(req.uri().path().ends_with("/status"), "{}", req.uri());
    assert_eq!(
        req.headers()["content-type"],
        "application/apply-patch+yaml",
        "status is written by server-side apply"
    );
    let q = req.uri().query().unwrap_or_default();
    assert!(q.contains(&format!("fieldManager={FIELD_MANAGER}")), "{q}");
    assert!(q.contains("force=true"), "{q}");
}

fn assert_names_measurement(patch: &Value) {
    assert_eq!(patch["apiVersion"], "vantage.dev/v1alpha1", "{patch}");
    assert_eq!(patch["kind"], "Measurement", "{patch}");
}

#[tokio::test]
async fn new_measurement_gets_the_finalizer_first() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let w = world(Client::new(service, "default"));
    let msm = measurement("ping-nl");
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), Method::PATCH);
        assert!(req.uri().to_string().starts_with(PATH), "{}", req.uri());
        assert_eq!(req.headers()["content-type"], "application/json-patch+json");
        let patch = body_json(req).await;
        let adds_finalizer = patch
            .as_array()
            .expect("ops")
            .iter()
            .any(|op| op["op"] == "add" && op["value"] == json!([FINALIZER]));
        assert!(adds_finalizer, "{patch}");
        let mut obj = serde_json::to_value(measurement("ping-nl")).expect("obj");
        obj["metadata"]["finalizers"] = json!([FINALIZER]);
        respond(send, &obj);
    });
    reconcile(Arc::new(msm), w.ctx.clone())
        .await
        .expect("reconcile");
    server.await.expect("server");
}

#[tokio::test]
async fn valid_measurement_gets_id_probes_and_ongoing_status() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let w = world(Client::new(service, "default"));
    let mut msm = measurement("ping-nl");
    msm.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), Method::PATCH);
        assert!(
            req.uri().to_string().starts_with(&format!("{PATH}/status")),
            "{}",
            req.uri()
        );
        assert_status_apply(&req);
        let patch = body_json(req).await;
        assert_names_measurement(&patch);
        let status = &patch["status"];
        assert_eq!(status["id"], 1_000_001);
        assert_eq!(status["state"], "Ongoing");
        assert_eq!(status["probes"], json!([1001]));
        assert!(status.get("limitedBy").is_none(), "not limited: {status}");
        let ready = status["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == "Ready")
            .expect("Ready");
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("True"), Some("Ongoing"))
        );
        let mut obj = serde_json::to_value(measurement("ping-nl")).expect("obj");
        obj["status"] = status.clone();
        respond(send, &obj);
    });
    reconcile(Arc::new(msm), w.ctx.clone())
        .await
        .expect("reconcile");
    server.await.expect("server");
}

#[tokio::test]
async fn invalid_measurement_gets_invalid_condition_and_no_id() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let w = world(Client::new(service, "default"));
    let mut msm = measurement("unknown-type");
    msm.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let (req, send) = handle.next_request().await.expect("a request");
        assert_status_apply(&req);
        assert!(
            req.uri()
                .path()
                .ends_with("/measurements/unknown-type/status"),
            "{}",
            req.uri()
        );
        let patch = body_json(req).await;
        let status = &patch["status"];
        assert!(
            status.get("id").is_none(),
            "an invalid measurement gets no id: {status}"
        );
        assert_eq!(status["state"], "Failed");
        let invalid = status["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == "Invalid")
            .expect("Invalid");
        assert_eq!(invalid["status"], "True");
        assert!(invalid["message"]
            .as_str()
            .expect("message")
            .starts_with("spec.type: unknown measurement type \"pong\""));
        respond(
            send,
            &serde_json::to_value(measurement("unknown-type")).expect("obj"),
        );
    });
    reconcile(Arc::new(msm), w.ctx.clone())
        .await
        .expect("reconcile");
    server.await.expect("server");
    assert_eq!(
        w.ctx.ids.0.load(Ordering::SeqCst),
        1_000_001,
        "no id was allocated"
    );
}

#[tokio::test]
async fn deleted_measurement_is_cleared_from_probes_before_the_finalizer_goes() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut w = world(Client::new(service, "default"));
    // It ran on probe 1001 ...
    let mut running = measurement("ping-nl");
    running.metadata.finalizers = Some(vec![FINALIZER.into()]);
    running.status = serde_json::from_value(
        json!({"id": 1000001, "state": "Ongoing", "probes": [1001], "probeCount": 1}),
    )
    .expect("status");
    w.msm_writer
        .apply_watcher_event(&watcher::Event::Apply(running.clone()));
    w.ctx.sync_schedules().await.expect("sync");
    assert_eq!(
        w.published
            .0
            .lock()
            .expect("lock")
            .last()
            .map(|d| d.tasks.len()),
        Some(1)
    );
    // ... and is now being deleted.
    let mut deleting = running;
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    w.msm_writer
        .apply_watcher_event(&watcher::Event::Apply(deleting.clone()));
    let published = w.published.clone();
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let (req, send) = handle.next_request().await.expect("a request");
        // By the time the finalizer is removed, probe 1001 already has an empty schedule.
        let cleared = published
            .0
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a schedule");
        assert_eq!((cleared.probe_id, cleared.tasks.len()), (1001, 0));
        assert_eq!(req.method(), Method::PATCH);
        let patch = body_json(req).await;
        let removes = patch
            .as_array()
            .expect("ops")
            .iter()
            .any(|op| op["op"] == "remove" && op["path"] == "/metadata/finalizers/0");
        assert!(removes, "{patch}");
        respond(
            send,
            &serde_json::to_value(measurement("ping-nl")).expect("obj"),
        );
    });
    reconcile(Arc::new(deleting), w.ctx.clone())
        .await
        .expect("reconcile");
    server.await.expect("server");
}

/// Answer every request with the measurement `name` carrying what was sent; return
/// (method, path, body) of each, in order, once the client side is dropped.
fn echo_server(
    handle: mock::Handle<Request<Body>, Response<Body>>,
    name: &'static str,
) -> tokio::task::JoinHandle<Vec<(Method, String, Value)>> {
    tokio::spawn(async move {
        let mut handle = pin!(handle);
        let mut seen = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let (method, path) = (req.method().clone(), req.uri().path().to_owned());
            if path.ends_with("/status") {
                assert_status_apply(&req);
            }
            let body = body_json(req).await;
            let mut obj = serde_json::to_value(measurement(name)).expect("obj");
            if let Some(status) = body.get("status") {
                obj["status"] = status.clone();
            }
            if path.contains("/events") {
                obj = body.clone();
            }
            respond(send, &obj);
            seen.push((method, path, body));
        }
        seen
    })
}

fn policy(yaml: &str) -> TenantPolicy {
    serde_yaml::from_str(yaml).expect("policy")
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

#[tokio::test]
async fn over_limit_measurement_is_limited_then_runs_when_the_policy_allows_it() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut w = world(Client::new(service, "default"));
    let server = echo_server(handle, "ping-nl");
    w.policy_writer
        .apply_watcher_event(&watcher::Event::Apply(policy(
            "{apiVersion: vantage.dev/v1alpha1, kind: TenantPolicy, metadata: {name: default, namespace: default}, spec: {max_probes_per_measurement: 2}}",
        )));
    // ping-nl requests 3 probes from NL.
    let mut msm = measurement("ping-nl");
    msm.metadata.finalizers = Some(vec![FINALIZER.into()]);
    reconcile(Arc::new(msm.clone()), w.ctx.clone())
        .await
        .expect("reconcile");
    w.ctx.sync_schedules().await.expect("sync");
    assert!(
        w.published.0.lock().expect("lock").is_empty(),
        "a Limited measurement is on no probe's schedule"
    );
    assert_eq!(w.ctx.ids.0.load(Ordering::SeqCst), 1_000_001, "no id yet");
    {
        let events = w.events.lock().expect("lock");
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            (events[0].namespace.as_str(), events[0].name.as_str()),
            ("default", "ping-nl")
        );
        assert!(events[0].event.warning);
        assert_eq!(events[0].event.reason, "Limited");
        assert!(events[0]
            .event
            .note
            .starts_with("max_probes_per_measurement"));
    }

    // The admin raises the limit: the next reconcile admits it.
    w.policy_writer
        .apply_watcher_event(&watcher::Event::Apply(policy(
            "{apiVersion: vantage.dev/v1alpha1, kind: TenantPolicy, metadata: {name: default, namespace: default}, spec: {max_probes_per_measurement: 5}}",
        )));
    let limited_status = {
        // What the first reconcile wrote, as the next reconcile reads it.
        let mut m = msm.clone();
        m.status = serde_json::from_value(json!({
            "state": "Limited", "limitedBy": "max_probes_per_measurement", "observedGeneration": 1,
        }))
        .expect("status");
        m
    };
    reconcile(Arc::new(limited_status), w.ctx.clone())
        .await
        .expect("reconcile");
    drop(w.ctx);
    let seen = server.await.expect("server");
    assert_eq!(seen.len(), 2, "two status patches: {seen:?}");
    let first = &seen[0].2["status"];
    assert!(seen[0].1.ends_with("/measurements/ping-nl/status"));
    assert_eq!(first["state"], "Limited");
    assert_eq!(first["limitedBy"], "max_probes_per_measurement");
    assert!(first.get("id").is_none(), "{first}");
    assert_eq!(first["probes"], json!([]));
    let limited = condition(first, "Limited");
    assert_eq!(
        (limited["status"].as_str(), limited["reason"].as_str()),
        (Some("True"), Some("MaxProbesPerMeasurement"))
    );
    assert!(limited["message"]
        .as_str()
        .expect("message")
        .contains("request 3 probes but TenantPolicy default/default allows 2"));
    assert_eq!(condition(first, "Ready")["reason"], "Limited");

    let second = &seen[1].2["status"];
    assert_eq!(second["state"], "Ongoing");
    assert_eq!(second["id"], 1_000_001);
    assert_eq!(second["probes"], json!([1001]));
    assert_names_measurement(&seen[1].2);
    assert!(
        second.get("limitedBy").is_none(),
        "server-side apply removes limitedBy when the operator stops sending it: {second}"
    );
    assert_eq!(condition(second, "Limited")["status"], "False");
    let events = w.events.lock().expect("lock");
    assert_eq!(
        events
            .iter()
            .map(|e| e.event.reason.as_str())
            .collect::<Vec<_>>(),
        ["Limited", "Ongoing"]
    );
    assert!(!events[1].event.warning);
}

#[tokio::test]
async fn two_measurements_at_once_cannot_both_take_the_last_slot() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut w = world(Client::new(service, "default"));
    let server = echo_server(handle, "ping-nl");
    w.policy_writer
        .apply_watcher_event(&watcher::Event::Apply(policy(
            "{apiVersion: vantage.dev/v1alpha1, kind: TenantPolicy, metadata: {name: default, namespace: default}, spec: {max_concurrent_measurements: 1}}",
        )));
    // Both are in the store without a status: neither is admitted as far as the store knows.
    let mut a = measurement("ping-nl");
    a.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let mut b = a.clone();
    b.metadata.name = Some("ping-nl-2".into());
    for m in [&a, &b] {
        w.msm_writer
            .apply_watcher_event(&watcher::Event::Apply(m.clone()));
    }
    reconcile(Arc::new(a), w.ctx.clone()).await.expect("a");
    reconcile(Arc::new(b), w.ctx.clone()).await.expect("b");
    drop(w.ctx);
    let seen = server.await.expect("server");
    let states: Vec<(String, Value)> = seen
        .iter()
        .map(|(_, path, body)| (path.clone(), body["status"]["state"].clone()))
        .collect();
    assert_eq!(states.len(), 2);
    assert!(states[0].0.ends_with("/ping-nl/status"));
    assert_eq!(states[0].1, "Ongoing");
    assert!(states[1].0.ends_with("/ping-nl-2/status"));
    assert_eq!(states[1].1, "Limited", "the ledger knows the slot is taken");
    assert!(condition(&seen[1].2["status"], "Limited")["message"]
        .as_str()
        .expect("message")
        .contains("already runs 1 measurements"));
}

#[tokio::test]
async fn state_changes_are_published_as_kubernetes_events() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let w = world(client.clone());
    // The same world, with events going to the API.
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        probes: w.ctx.probes.clone(),
        measurements: w.ctx.measurements.clone(),
        policies: w.ctx.policies.clone(),
        ledger: Arc::new(Ledger::default()),
        load: Default::default(),
        events: Events::kube(client),
        candidates: Default::default(),
        sessions: w.ctx.sessions.clone(),
        stats: ResultStats::default(),
        ids: Counter(AtomicU64::new(1_000_001)),
        schedules: tokio::sync::Mutex::new(Syncer::default()),
        publisher: Recorder::default(),
        sync_requested: tokio::sync::Notify::new(),
        metrics: Metrics::default(),
    });
    drop(w);
    let server = echo_server(handle, "ping-nl");
    let mut msm = measurement("ping-nl");
    msm.metadata.finalizers = Some(vec![FINALIZER.into()]);
    reconcile(Arc::new(msm.clone()), ctx.clone())
        .await
        .expect("reconcile");
    // Same state again: no second event.
    msm.status = serde_json::from_value(
        json!({"id": 1000001, "state": "Ongoing", "probes": [1001], "probeCount": 1, "observedGeneration": 1}),
    )
    .expect("status");
    reconcile(Arc::new(msm), ctx.clone()).await.expect("again");
    drop(ctx);
    let seen = server.await.expect("server");
    let events: Vec<&(Method, String, Value)> = seen
        .iter()
        .filter(|(_, path, _)| path.contains("/events"))
        .collect();
    assert_eq!(events.len(), 1, "{seen:?}");
    let (method, path, event) = events[0];
    assert_eq!(method, Method::POST);
    assert_eq!(path, "/apis/events.k8s.io/v1/namespaces/default/events");
    assert_eq!(event["reason"], "Ongoing");
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["regarding"]["kind"], "Measurement");
    assert_eq!(event["regarding"]["name"], "ping-nl");
    assert_eq!(event["note"], "running on 1 probes");
}

#[tokio::test]
async fn an_unreadable_measurement_gets_invalid_naming_the_field() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let w = world(Client::new(service, "default"));
    let server = echo_server(handle, "ping-nl");
    let msm: Measurement = serde_json::from_value(json!({
        "apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement",
        "metadata": {"name": "ping-nl", "namespace": "default", "generation": 1,
                     "finalizers": [FINALIZER]},
        "spec": {"type": "ping", "target": "example.net", "interval": "often",
                 "probes": [{"type": "area", "value": "WW", "requested": 1}]}
    }))
    .expect("an unreadable spec still reads");
    reconcile(Arc::new(msm), w.ctx.clone())
        .await
        .expect("reconcile");
    drop(w.ctx);
    let seen = server.await.expect("server");
    let status = &seen[0].2["status"];
    assert_eq!(status["state"], "Failed");
    let invalid = condition(status, "Invalid");
    assert_eq!(invalid["status"], "True");
    assert!(
        invalid["message"]
            .as_str()
            .expect("message")
            .starts_with("spec.interval: cannot be read"),
        "{invalid}"
    );
    let events = w.events.lock().expect("lock");
    assert_eq!(
        (events[0].event.reason.as_str(), events[0].event.warning),
        ("InvalidSpec", true)
    );
}

#[tokio::test]
async fn one_unreadable_object_does_not_break_the_watch() {
    use futures::StreamExt;
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let (req, send) = handle.next_request().await.expect("list");
        assert_eq!(req.method(), Method::GET);
        assert!(req.uri().path().ends_with("/measurements"), "{}", req.uri());
        let item = |name: &str, spec: Value| {
            json!({"apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement",
                   "metadata": {"name": name, "namespace": "default", "resourceVersion": "1"},
                   "spec": spec})
        };
        respond(
            send,
            &json!({
                "apiVersion": "vantage.dev/v1alpha1", "kind": "MeasurementList",
                "metadata": {"resourceVersion": "2"},
                "items": [
                    item("bad", json!({"type": "ping", "target": 7, "probes": {"a": 1}})),
                    item("good", json!({"type": "ping", "target": "example.net",
                                        "probes": [{"type": "area", "value": "WW", "requested": 1}]})),
                ]
            }),
        );
    });
    let api = kube::Api::<Measurement>::all(client);
    let mut stream = pin!(watcher(api, watcher::Config::default().any_semantic()));
    let mut names = Vec::new();
    while let Some(event) = stream.next().await {
        match event.expect("the list is read despite the bad object") {
            watcher::Event::InitApply(m) => {
                names.push((m.metadata.name.clone(), m.spec.unreadable.is_some()))
            }
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(
        names,
        vec![
            (Some("bad".to_owned()), true),
            (Some("good".to_owned()), false)
        ]
    );
    server.await.expect("server");
}

/// Like [`echo_server`], but hands each request over as it is answered.
fn live_server(
    handle: mock::Handle<Request<Body>, Response<Body>>,
    name: &'static str,
) -> tokio::sync::mpsc::UnboundedReceiver<(Method, String, Value)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut handle = pin!(handle);
        while let Some((req, send)) = handle.next_request().await {
            let (method, path) = (req.method().clone(), req.uri().path().to_owned());
            let body = body_json(req).await;
            let mut obj = serde_json::to_value(measurement(name)).expect("obj");
            if let Some(status) = body.get("status") {
                obj["status"] = status.clone();
            }
            if path.contains("/events") {
                obj = body.clone();
            }
            respond(send, &obj);
            let _ = tx.send((method, path, body));
        }
    });
    rx
}

/// The status of the last status write received so far.
fn last_status(rx: &mut tokio::sync::mpsc::UnboundedReceiver<(Method, String, Value)>) -> Value {
    let mut last = None;
    while let Ok((_, path, body)) = rx.try_recv() {
        if path.ends_with("/status") {
            last = Some(body["status"].clone());
        }
    }
    last.expect("a status write")
}

fn tasks_of(published: &Recorder, probe: u32) -> Option<usize> {
    published
        .0
        .lock()
        .expect("lock")
        .iter()
        .rev()
        .find(|d| d.probe_id == probe)
        .map(|d| d.tasks.len())
}

#[tokio::test]
async fn a_oneoff_whose_probes_all_reported_is_stopped_and_leaves_the_schedules() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut w = world(Client::new(service, "default"));
    let mut rx = live_server(handle, "ping-nl");
    let mut msm = measurement("ping-nl");
    msm.spec.is_oneoff = true;
    msm.metadata.finalizers = Some(vec![FINALIZER.into()]);
    msm.status = serde_json::from_value(
        json!({"id": 1_000_001, "state": "Ongoing", "probes": [1001],
        "probeCount": 1, "observedGeneration": 1}),
    )
    .expect("status");
    w.msm_writer
        .apply_watcher_event(&watcher::Event::Apply(msm.clone()));
    w.ctx.sync_schedules().await.expect("sync");
    assert_eq!(tasks_of(&w.published, 1001), Some(1), "probe 1001 runs it");

    // No result yet: it keeps running.
    reconcile(Arc::new(msm.clone()), w.ctx.clone())
        .await
        .expect("reconcile");
    let status = last_status(&mut rx);
    assert_eq!(status["state"], "Ongoing", "{status}");
    assert_eq!(status["statusId"], 2);
    assert_eq!(condition(&status, "ProbesConnected")["status"], "True");

    // Probe 1001 reported: Stopped, RIPE Atlas status 4.
    w.ctx.stats.replace(std::collections::HashMap::from([(
        1_000_001,
        MsmStats {
            results: 1,
            last_result: 1_700_000_000,
            reporters: vec![1001],
        },
    )]));
    msm.status = serde_json::from_value(status).ok();
    reconcile(Arc::new(msm.clone()), w.ctx.clone())
        .await
        .expect("reconcile");
    let status = last_status(&mut rx);
    assert_eq!(status["state"], "Stopped", "{status}");
    assert_eq!(status["statusId"], 4);
    assert_eq!(status["probesReported"], 1);
    assert!(status["stateSince"].is_string());
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("AllProbesReported"))
    );
    // The probe's schedule loses it.
    msm.status = serde_json::from_value(status).ok();
    w.msm_writer
        .apply_watcher_event(&watcher::Event::Apply(msm));
    w.ctx.sync_schedules().await.expect("sync");
    assert_eq!(tasks_of(&w.published, 1001), Some(0), "an empty schedule");
}

#[tokio::test]
async fn a_measurement_whose_probes_are_deleted_is_forced_to_stop() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let w = world(Client::new(service, "default"));
    let mut rx = live_server(handle, "ping-nl");
    let mut msm = measurement("ping-nl");
    msm.metadata.finalizers = Some(vec![FINALIZER.into()]);
    // It ran on probe 4242, which no longer exists.
    msm.status = serde_json::from_value(
        json!({"id": 1_000_001, "state": "Ongoing", "probes": [4242],
        "probeCount": 1, "observedGeneration": 1}),
    )
    .expect("status");
    reconcile(Arc::new(msm), w.ctx.clone())
        .await
        .expect("reconcile");
    let status = last_status(&mut rx);
    assert_eq!(status["state"], "ForcedToStop", "{status}");
    assert_eq!(status["statusId"], 5);
    let ready = condition(&status, "Ready");
    assert_eq!(ready["reason"], "ProbesLeft");
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.contains("1 disabled or deleted")),
        "{ready}"
    );
    assert_eq!(condition(&status, "ProbesConnected")["status"], "False");
    let events = w.events.lock().expect("lock").clone();
    assert!(
        events
            .iter()
            .any(|e| format!("{e:?}").contains("ProbesLeft")),
        "a Warning event: {events:?}"
    );
}
