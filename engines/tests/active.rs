//! Active single-radius through the measurement path, with the Kubernetes API mocked
//! (tower-test): a one-off ping Measurement is created for the chosen probes, its id is
//! awaited, its results are read, and it is deleted.

use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use http::{Method, Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tower_test::mock;
use vantage_engines::engine::active::{KubeMeasurer, MeasurementResults, Measurer};
use vantage_engines::Error;

struct Results;
impl MeasurementResults for Results {
    fn rtts(&self, msm_id: u64) -> BoxFuture<'_, Result<Vec<(u32, f64)>, Error>> {
        async move {
            assert_eq!(msm_id, 1_000_042);
            Ok(vec![(3, 0.4), (5, 2.9)])
        }
        .boxed()
    }
}

fn respond(send: mock::SendResponse<Response<Body>>, obj: &Value) {
    send.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(obj).expect("json")))
            .expect("response"),
    );
}

#[tokio::test]
async fn a_oneoff_measurement_is_created_awaited_read_and_deleted() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let mut measurer = KubeMeasurer::new(
        Client::new(service, "vantage"),
        "vantage",
        Arc::new(Results),
    );
    measurer.poll = Duration::from_millis(10);
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let (req, send) = handle.next_request().await.expect("create");
        assert_eq!(req.method(), Method::POST);
        assert_eq!(
            req.uri().path(),
            "/apis/vantage.dev/v1alpha1/namespaces/vantage/measurements"
        );
        let bytes = req.into_body().collect_bytes().await.expect("body");
        let mut created: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(created["spec"]["type"], "ping");
        assert_eq!(created["spec"]["target"], "193.0.14.129");
        assert_eq!(created["spec"]["is_oneoff"], true);
        assert_eq!(
            created["spec"]["probes"],
            json!([{"type": "probes", "value": "3,5", "requested": 2}])
        );
        let name = created["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_owned();
        assert!(name.starts_with("geo-193-0-14-129-"), "{name}");
        respond(send, &created);
        // First read: no id yet; second: the operator gave it one.
        let (req, send) = handle.next_request().await.expect("get");
        assert_eq!(req.method(), Method::GET);
        assert!(req.uri().path().ends_with(&name));
        respond(send, &created);
        let (req, send) = handle.next_request().await.expect("get again");
        assert_eq!(req.method(), Method::GET);
        created["status"] =
            json!({"id": 1_000_042, "state": "Ongoing", "probes": [3, 5], "probeCount": 2});
        respond(send, &created);
        let (req, send) = handle.next_request().await.expect("delete");
        assert_eq!(req.method(), Method::DELETE);
        assert!(req.uri().path().ends_with(&name));
        respond(send, &created);
    });
    let ip: IpAddr = "193.0.14.129".parse().expect("ip");
    let got = measurer.ping(ip, &[3, 5]).await.expect("measured");
    assert_eq!(got, vec![(3, 0.4), (5, 2.9)]);
    server.await.expect("server");
}

#[tokio::test]
async fn a_measurement_without_suitable_probes_is_an_error_and_is_deleted() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let measurer = KubeMeasurer::new(
        Client::new(service, "vantage"),
        "vantage",
        Arc::new(Results),
    );
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let (req, send) = handle.next_request().await.expect("create");
        let bytes = req.into_body().collect_bytes().await.expect("body");
        let mut created: Value = serde_json::from_slice(&bytes).expect("json");
        respond(send, &created);
        let (_, send) = handle.next_request().await.expect("get");
        created["status"] = json!({"state": "NoSuitableProbes"});
        respond(send, &created);
        let (req, send) = handle.next_request().await.expect("delete");
        assert_eq!(req.method(), Method::DELETE);
        respond(send, &created);
    });
    let err = measurer
        .ping("193.0.14.129".parse().expect("ip"), &[9])
        .await
        .expect_err("no probes");
    assert!(err.to_string().contains("NoSuitableProbes"), "{err}");
    server.await.expect("server");
}
