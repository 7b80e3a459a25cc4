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
use vantage_crd::{Measurement, Probe};
use vantage_operator::measurement::{reconcile, Ctx, Error, IdAllocator, Metrics, FINALIZER};
use vantage_operator::probes::Sessions;
use vantage_operator::schedules::{PublishError, SchedulePublisher, Syncer};
use vantage_operator::stats::ResultStats;

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
    published: Recorder,
}

fn world(client: Client) -> World {
    let (probes, mut probe_writer) = reflector::store::<Probe>();
    let probe: Probe = fixture(include_str!("fixtures/probes.yaml"), "probe-1001");
    probe_writer.apply_watcher_event(&watcher::Event::Apply(probe));
    let (measurements, msm_writer) = reflector::store::<Measurement>();
    let sessions = Sessions::default();
    sessions.up(Session {
        v: 1,
        probe_id: 1001,
        controller: "ctl-0".into(),
        address: "127.0.0.1".into(),
        connected_since_ms: 0,
        fw: 5020,
    });
    let published = Recorder::default();
    let ctx = Arc::new(Ctx {
        client,
        probes,
        measurements,
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
        published,
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
        assert_eq!(
            req.headers()["content-type"],
            "application/merge-patch+json"
        );
        let patch = body_json(req).await;
        let status = &patch["status"];
        assert_eq!(status["id"], 1_000_001);
        assert_eq!(status["state"], "Ongoing");
        assert_eq!(status["probes"], json!([1001]));
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
