//! Leader election's API calls against a tower-test mock: create when missing, a
//! conditional PUT with the resourceVersion read, 409 as a lost race, no write while
//! another replica holds a live lease, giving up at the renew deadline or when another
//! holder appears, and the release on shutdown.

use std::pin::pin;
use std::time::Duration;

use http::{Method, Request, Response};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tower_test::mock;
use vantage_operator::lease::{Attempt, Elector, LeaseConfig, Lost};

type Handle = mock::Handle<Request<Body>, Response<Body>>;

const PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/vantage/leases";

fn elector(identity: &str) -> (Elector, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let cfg = LeaseConfig::new("vantage-operator", "vantage", identity);
    (Elector::new(Client::new(service, "default"), cfg), handle)
}

fn respond(send: mock::SendResponse<Response<Body>>, code: u16, body: &Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).expect("json")))
            .expect("response"),
    );
}

async fn body(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.expect("body");
    serde_json::from_slice(&bytes).expect("json body")
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}

/// A Lease held by `holder`, renewed `ago` before now, at resourceVersion `rv`.
fn lease(holder: &str, ago: Duration, rv: &str) -> Value {
    let renewed = Timestamp::now()
        .checked_sub(SignedDuration::try_from(ago).expect("duration"))
        .expect("time");
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": "vantage-operator", "namespace": "vantage", "resourceVersion": rv},
           "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                    "acquireTime": "2026-01-01T00:00:00.000000Z",
                    "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                    "leaseTransitions": 2}})
}

async fn expect_get(handle: &mut std::pin::Pin<&mut Handle>) -> mock::SendResponse<Response<Body>> {
    let (req, send) = handle.next_request().await.expect("a GET");
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri().path(), format!("{PATH}/vantage-operator"));
    send
}

#[tokio::test]
async fn a_missing_lease_is_created_held_by_us() {
    let (e, handle) = elector("op-a");
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        respond(expect_get(&mut handle).await, 404, &status(404, "NotFound"));
        let (req, send) = handle.next_request().await.expect("a POST");
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri().path(), PATH);
        let b = body(req).await;
        assert_eq!(b["metadata"]["name"], "vantage-operator");
        assert_eq!(b["spec"]["holderIdentity"], "op-a");
        assert_eq!(b["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(b["spec"]["leaseTransitions"], 0);
        assert!(b["spec"]["renewTime"].is_string(), "{b}");
        respond(send, 201, &b);
    });
    let got = e.try_acquire_or_renew().await.expect("attempt");
    server.await.expect("server");
    assert_eq!(got, Attempt::Held { acquired: true });
}

#[tokio::test]
async fn an_expired_lease_is_taken_with_a_conditional_put() {
    let (e, handle) = elector("op-b");
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        respond(
            expect_get(&mut handle).await,
            200,
            &lease("op-a", Duration::from_secs(16), "77"),
        );
        let (req, send) = handle.next_request().await.expect("a PUT");
        assert_eq!(req.method(), Method::PUT);
        assert_eq!(req.uri().path(), format!("{PATH}/vantage-operator"));
        let b = body(req).await;
        assert_eq!(
            b["metadata"]["resourceVersion"], "77",
            "the write is conditional on what was read"
        );
        assert_eq!(b["spec"]["holderIdentity"], "op-b");
        assert_eq!(b["spec"]["leaseTransitions"], 3);
        respond(send, 200, &b);
    });
    let got = e.try_acquire_or_renew().await.expect("attempt");
    server.await.expect("server");
    assert_eq!(got, Attempt::Held { acquired: true });
}

#[tokio::test]
async fn a_stale_write_is_a_lost_race_not_leadership() {
    let (e, handle) = elector("op-b");
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        respond(
            expect_get(&mut handle).await,
            200,
            &lease("op-a", Duration::from_secs(30), "77"),
        );
        let (_, send) = handle.next_request().await.expect("a PUT");
        respond(send, 409, &status(409, "Conflict"));
    });
    let got = e.try_acquire_or_renew().await.expect("attempt");
    server.await.expect("server");
    assert_eq!(got, Attempt::Conflict);
}

#[tokio::test]
async fn a_live_lease_of_another_replica_is_not_written() {
    let (e, handle) = elector("op-b");
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        respond(
            expect_get(&mut handle).await,
            200,
            &lease("op-a", Duration::from_secs(3), "77"),
        );
        // No PUT follows: the next request would fail this test's mock with no response.
    });
    let got = e.try_acquire_or_renew().await.expect("attempt");
    server.await.expect("server");
    assert!(
        matches!(&got, Attempt::HeldBy { holder, .. } if holder == "op-a"),
        "{got:?}"
    );
}

#[tokio::test]
async fn other_errors_name_the_lease_and_the_permission() {
    let (e, handle) = elector("op-a");
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        respond(
            expect_get(&mut handle).await,
            403,
            &status(403, "Forbidden"),
        );
    });
    let err = e.try_acquire_or_renew().await.expect_err("forbidden");
    server.await.expect("server");
    let msg = err.to_string();
    assert!(msg.contains("vantage/vantage-operator"), "{msg}");
    assert!(msg.contains("get, create and update leases"), "{msg}");
}

#[tokio::test(start_paused = true)]
async fn the_holder_renews_and_stops_when_another_holds_the_lease() {
    let (e, handle) = elector("op-a");
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        // First renewal: ours, written back with the rv read.
        respond(
            expect_get(&mut handle).await,
            200,
            &lease("op-a", Duration::from_secs(2), "10"),
        );
        let (req, send) = handle.next_request().await.expect("a renewal PUT");
        assert_eq!(req.method(), Method::PUT);
        let b = body(req).await;
        assert_eq!(b["metadata"]["resourceVersion"], "10");
        assert_eq!(
            b["spec"]["leaseTransitions"], 2,
            "a renewal is no transition"
        );
        respond(send, 200, &b);
        // Then another replica holds it (we were partitioned, it took over).
        respond(
            expect_get(&mut handle).await,
            200,
            &lease("op-b", Duration::from_secs(1), "12"),
        );
    });
    let lost = e.hold().await;
    server.await.expect("server");
    assert_eq!(
        lost,
        Lost::Taken {
            holder: "op-b".into()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn the_holder_gives_up_at_the_renew_deadline() {
    let (e, handle) = elector("op-a");
    let started = tokio::time::Instant::now();
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let mut failures = 0;
        while let Some((_, send)) = handle.next_request().await {
            respond(send, 500, &status(500, "InternalError"));
            failures += 1;
        }
        failures
    });
    let lost = e.hold().await;
    let took = started.elapsed();
    drop(e);
    let failures = server.await.expect("server");
    match lost {
        Lost::Deadline {
            since_renewal,
            last_error,
        } => {
            assert!(
                since_renewal >= Duration::from_secs(10),
                "{since_renewal:?}"
            );
            let last_error = last_error.expect("the last failure");
            assert!(last_error.contains("InternalError"), "{last_error}");
        }
        other => panic!("expected the renew deadline, got {other:?}"),
    }
    // Tried every 2 s: at 2, 4, 6 and 8 s; gave up at 10 s, before the lease (15 s)
    // could expire for the others.
    assert_eq!(failures, 4);
    assert!(took < Duration::from_secs(15), "{took:?}");
}

#[tokio::test]
async fn release_clears_the_holder_only_if_it_is_us() {
    let (e, handle) = elector("op-a");
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        respond(
            expect_get(&mut handle).await,
            200,
            &lease("op-a", Duration::from_secs(1), "20"),
        );
        let (req, send) = handle.next_request().await.expect("a release PUT");
        assert_eq!(req.method(), Method::PUT);
        let b = body(req).await;
        assert_eq!(b["metadata"]["resourceVersion"], "20");
        assert!(b["spec"]["holderIdentity"].is_null(), "{b}");
        assert_eq!(b["spec"]["leaseDurationSeconds"], 1);
        respond(send, 200, &b);
        // Second call: someone else holds it; nothing is written.
        respond(
            expect_get(&mut handle).await,
            200,
            &lease("op-b", Duration::from_secs(1), "21"),
        );
    });
    assert!(e.release().await.expect("release"), "released");
    assert!(!e.release().await.expect("release"), "not ours: untouched");
    server.await.expect("server");
}
