//! The ControllerPool reconciler: rendering over YAML fixtures, the scaling table with
//! hysteresis, the drain steps, and the API calls against a tower-test mock.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Service;
use kube::client::Body;
use kube::Client;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tower_test::mock;
use vantage_core::nats::Session;
use vantage_crd::pool_conditions::{self as pc, reason};
use vantage_crd::ControllerPool;
use vantage_operator::events::Events;
use vantage_operator::pool::render::{self, Names};
use vantage_operator::pool::scale::{decide, Policy};
use vantage_operator::pool::{
    event_reason, events, reconcile, step, DrainSignal, PoolCtx, PoolError, PoolMetrics,
};
use vantage_operator::probes::Sessions;
use vantage_operator::FIELD_MANAGER;

fn pools() -> Vec<ControllerPool> {
    serde_yaml::from_str(include_str!("fixtures/pool/valid.yaml")).expect("fixture")
}

fn pool(name: &str) -> ControllerPool {
    pools()
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .expect(name)
}

/// The first place where the typed round trip of `want` differs from it.
fn first_difference(path: &str, want: &Value, got: &Value) -> Option<String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = format!("{path}.{k}");
                match g.get(k) {
                    None => return Some(format!("{p}: unknown field")),
                    Some(gv) => {
                        if let Some(d) = first_difference(&p, wv, gv) {
                            return Some(d);
                        }
                    }
                }
            }
            g.keys()
                .find(|k| !w.contains_key(*k))
                .map(|k| format!("{path}.{k}: added by the typed round trip"))
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => w
            .iter()
            .zip(g)
            .enumerate()
            .find_map(|(i, (wv, gv))| first_difference(&format!("{path}[{i}]"), wv, gv)),
        (Value::Number(w), Value::Number(g)) if w.as_f64() == g.as_f64() => None,
        _ if want == got => None,
        _ => Some(format!("{path}: rendered {want} but the type holds {got}")),
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(doc: &Value) -> T {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} does not deserialize: {e}", doc["metadata"]["name"]));
    let back = serde_json::to_value(&typed).expect("serialize");
    if let Some(d) = first_difference("", doc, &back) {
        panic!("{} {}: {d}", doc["kind"], doc["metadata"]["name"]);
    }
    typed
}

#[test]
fn every_rendered_object_deserializes_into_its_type() {
    for p in pools() {
        render::validate(&p.spec).expect("valid fixture");
        for replicas in [0, 1, 3] {
            let r = render::render(&p, replicas);
            for obj in r.objects() {
                match obj["kind"].as_str() {
                    Some("StatefulSet") => {
                        round_trip::<StatefulSet>(obj);
                    }
                    Some("Deployment") => {
                        round_trip::<Deployment>(obj);
                    }
                    Some("Service") => {
                        round_trip::<Service>(obj);
                    }
                    other => panic!("unexpected kind {other:?}"),
                }
                assert_eq!(
                    obj["metadata"]["ownerReferences"][0]["uid"],
                    json!(p.metadata.uid),
                    "owned by the pool"
                );
                assert_eq!(
                    obj["metadata"]["ownerReferences"][0]["controller"],
                    json!(true)
                );
            }
            assert_eq!(r.per_pod.len(), replicas as usize);
        }
    }
}

#[test]
fn defaults_match_the_chart() {
    let r = render::render(&pool("minimal"), 2);
    let sts: StatefulSet = round_trip(&r.statefulset);
    assert_eq!(sts.metadata.name.as_deref(), Some("minimal-controller"));
    assert_eq!(sts.spec.replicas, Some(2));
    assert_eq!(
        sts.spec.service_name.as_deref(),
        Some("minimal-controller-headless")
    );
    let pod = sts.spec.template.spec.expect("pod");
    assert_eq!(pod.automount_service_account_token, Some(false));
    let c = &pod.containers[0];
    assert_eq!(
        c.args.clone().expect("args"),
        vec![
            "controller",
            "--name=$(POD_NAME)",
            "--advertise=$(POD_NAME).$(POD_NAMESPACE).svc.cluster.local:443",
            "--capacity=20000",
            "--listen=0.0.0.0:2222",
            "--host-key=/etc/vantage/host-keys/$(POD_NAME)",
            "--spool-dir=/var/lib/vantage/spool",
            "--spool-max-mib=1024",
            "--metrics-addr=0.0.0.0:9092",
        ]
    );
    let sc = c.security_context.clone().expect("securityContext");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.and_then(|c| c.drop),
        Some(vec!["ALL".to_owned()])
    );
    let env: Vec<_> = c
        .env
        .clone()
        .expect("env")
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    assert!(env.contains(&("NATS_URL".into(), Some("nats://nats.nats.svc:4222".into()))));
    let volumes = pod.volumes.expect("volumes");
    assert_eq!(
        volumes[0]
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.clone()),
        Some("minimal-controller-host-keys".into())
    );
    assert_eq!(
        volumes[1]
            .empty_dir
            .as_ref()
            .and_then(|e| e.size_limit.clone())
            .map(|q| q.0),
        Some("1280Mi".into())
    );
    // Per-pod Services: type from the spec, one pod each.
    let svc: Service = round_trip(&r.per_pod[1]);
    assert_eq!(svc.metadata.name.as_deref(), Some("minimal-controller-1"));
    let spec = svc.spec.expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    let sel = spec.selector.expect("selector");
    assert_eq!(
        sel.get(render::POD_NAME_LABEL).map(String::as_str),
        Some("minimal-controller-1")
    );
    assert_eq!(
        spec.ports.expect("ports")[0].port,
        443,
        "probes dial the spec's ssh_port"
    );
    let headless: Service = round_trip(&r.headless);
    assert_eq!(
        headless.spec.and_then(|s| s.cluster_ip).as_deref(),
        Some("None")
    );
    // Registration.
    let dep: Deployment = round_trip(&r.registration[0]);
    assert_eq!(dep.metadata.name.as_deref(), Some("minimal-registration"));
    assert_eq!(dep.spec.replicas, Some(2));
    let reg_pod = dep.spec.template.spec.expect("pod");
    assert_eq!(reg_pod.automount_service_account_token, Some(true));
    assert_eq!(
        reg_pod.containers[0].args.clone().expect("args")[0],
        "registration"
    );
    assert_eq!(
        r.registration.len(),
        3,
        "Deployment, Service, metrics Service"
    );
}

#[test]
fn non_default_spec_reaches_the_pods() {
    let r = render::render(&pool("eu"), 3);
    let sts: StatefulSet = round_trip(&r.statefulset);
    let labels = sts.metadata.labels.clone().expect("labels");
    assert_eq!(labels.get("team").map(String::as_str), Some("netops"));
    assert_eq!(
        labels.get("app.kubernetes.io/instance").map(String::as_str),
        Some("prod")
    );
    let claims = sts.spec.volume_claim_templates.clone().expect("claims");
    assert_eq!(
        claims[0]
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone()),
        Some("fast".into())
    );
    let pod = sts.spec.template.spec.expect("pod");
    assert_eq!(pod.volumes.as_ref().map(Vec::len), Some(1), "no emptyDir");
    assert_eq!(pod.tolerations.as_ref().map(Vec::len), Some(1));
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("registry.example/vantage:1.2.3"));
    let args = c.args.clone().expect("args");
    assert!(args.contains(&"--advertise=$(POD_NAME).probes.example.net:2022".to_owned()));
    assert!(args.contains(&"--capacity=4000".to_owned()));
    assert!(args.contains(&"--regions=NL,DE".to_owned()));
    let nats = c
        .env
        .clone()
        .expect("env")
        .into_iter()
        .find(|e| e.name == "NATS_URL")
        .expect("NATS_URL");
    let secret = nats
        .value_from
        .and_then(|v| v.secret_key_ref)
        .expect("from a Secret");
    assert_eq!(
        (secret.name.as_str(), secret.key.as_str()),
        ("nats-creds", "NATS_URL")
    );
    let svc: Service = round_trip(&r.per_pod[2]);
    assert_eq!(
        svc.metadata
            .annotations
            .and_then(|a| a.get("metallb.universe.tf/address-pool").cloned()),
        Some("probes".into())
    );
    let spec = svc.spec.expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
    // Both SSH servers get the pre-authentication limits.
    let preauth = [
        "--preauth-grace=20".to_owned(),
        "--max-startups=50:40:400".to_owned(),
        "--max-startups-per-source=8".to_owned(),
    ];
    assert!(args.ends_with(&preauth), "{args:?}");
    let dep: Deployment = round_trip(&r.registration[0]);
    assert_eq!(dep.spec.replicas, Some(3));
    let reg_args = dep
        .spec
        .template
        .spec
        .clone()
        .and_then(|p| p.containers[0].args.clone())
        .expect("registration args");
    assert!(reg_args.ends_with(&preauth), "{reg_args:?}");
    let reg_svc: Service = round_trip(&r.registration[1]);
    let s = reg_svc.spec.expect("spec");
    assert_eq!(s.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(s.external_traffic_policy, None, "not on a ClusterIP");
    assert!(render::render(&pool("no-registration"), 1)
        .registration
        .is_empty());
}

#[test]
fn per_role_nats_users_from_the_password_secret() {
    let mut p = pool("minimal");
    p.spec.nats = Some(vantage_crd::NatsRef {
        url: Some("nats://a.nats:4222, tls://b.nats:4443".into()),
        password_secret: Some("nats-passwords".into()),
        ..Default::default()
    });
    render::validate(&p.spec).expect("valid");
    let r = render::render(&p, 1);
    let env_of = |obj: &Value| -> Vec<Value> {
        obj["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .cloned()
            .expect("env")
    };
    for (obj, role) in [
        (&r.statefulset, "controller"),
        (&r.registration[0], "registration"),
    ] {
        let env = env_of(obj);
        let names: Vec<&str> = env.iter().filter_map(|e| e["name"].as_str()).collect();
        let pw = names
            .iter()
            .position(|n| *n == "NATS_PASSWORD")
            .expect("NATS_PASSWORD");
        let url = names
            .iter()
            .position(|n| *n == "NATS_URL")
            .expect("NATS_URL");
        assert!(
            pw < url,
            "Kubernetes substitutes only variables defined before"
        );
        assert_eq!(
            env[pw]["valueFrom"]["secretKeyRef"],
            json!({"name": "nats-passwords", "key": role})
        );
        assert_eq!(
            env[url]["value"],
            json!(format!(
                "nats://vantage-{role}:$(NATS_PASSWORD)@a.nats:4222,tls://vantage-{role}:$(NATS_PASSWORD)@b.nats:4443"
            ))
        );
    }
    // without it, the URL as given and no password
    let env = env_of(&render::render(&pool("minimal"), 1).statefulset);
    assert!(!env.iter().any(|e| e["name"] == "NATS_PASSWORD"));
}

#[test]
fn invalid_specs_name_their_field() {
    #[derive(serde::Deserialize)]
    struct Case {
        expect: String,
        pool: ControllerPool,
    }
    let cases: Vec<Case> =
        serde_yaml::from_str(include_str!("fixtures/pool/invalid.yaml")).expect("fixture");
    assert!(cases.len() >= 8);
    for case in cases {
        let err = render::validate(&case.pool.spec).expect_err(&case.expect);
        assert!(
            err.0.starts_with(&format!("{}:", case.expect)),
            "{}: {}",
            case.expect,
            err.0
        );
    }
}

const MIN: i64 = 60_000;

#[test]
fn scaling_table_with_hysteresis() {
    let p = Policy {
        min: 1,
        max: 10,
        per_controller: 1000,
        headroom: 1.25,
        dead_band: 0.1,
        stabilization_ms: 5 * MIN,
    };
    // (connected, current, lower_since, now) -> (desired, target, lower_since)
    #[allow(clippy::type_complexity)]
    let table: &[(u32, u32, Option<i64>, i64, (u32, u32, Option<i64>))] = &[
        // Empty pool: min.
        (0, 0, None, 0, (1, 1, None)),
        // 800 × 1.25 = 1000 → 1.
        (800, 1, None, 0, (1, 1, None)),
        // 801 × 1.25 > 1000 → 2, at once.
        (801, 1, None, 0, (2, 2, None)),
        // A big jump goes all the way up at once, clamped to max.
        (20_000, 2, None, 0, (10, 10, None)),
        // Up also cancels a pending scale-down.
        (5_000, 3, Some(0), 10 * MIN, (7, 7, None)),
        // Load falls: 1 would do, but the window starts now.
        (100, 3, None, 0, (1, 3, Some(0))),
        // ... still within the window.
        (100, 3, Some(0), 4 * MIN, (1, 3, Some(0))),
        // ... held for 5 min: scale down.
        (100, 3, Some(0), 5 * MIN, (1, 1, Some(0))),
        // Dead band: 1700 × 1.25 = 2125 → 3 now, but 2125 × 1.1 = 2337.5 → 3: stay at 3.
        (1_700, 4, None, 0, (3, 4, Some(0))),
        // 1500 × 1.25 = 1875 → 2; × 1.1 = 2062.5 → 3: only to 3, not 2.
        (1_500, 4, Some(0), 6 * MIN, (2, 3, Some(0))),
        // Within the dead band of the current count: no scale-down, window reset.
        (1_700, 3, Some(0), 6 * MIN, (3, 3, None)),
        // 1500 at 3 replicas: 2 would do, but not with the dead band: stay, no window.
        (1_500, 3, Some(0), 6 * MIN, (2, 3, None)),
        // Spec changed: max lowered below the current count.
        (100, 12, None, 0, (1, 10, None)),
        // min raised above the current count.
        (0, 1, None, 0, (1, 1, None)),
    ];
    for (i, (connected, current, since, now, want)) in table.iter().enumerate() {
        let d = decide(&p, *connected, *current, *since, *now);
        assert_eq!(
            (d.desired, d.target, d.lower_since_ms),
            *want,
            "row {i}: {connected} probes at {current} replicas"
        );
    }
    let p3 = Policy { min: 3, ..p };
    assert_eq!(
        decide(&p3, 0, 1, None, 0).target,
        3,
        "below min: up at once"
    );
}

fn counts(entries: &[(&str, u32)]) -> HashMap<String, u32> {
    entries.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect()
}

fn with_status(mut p: ControllerPool, status: Value) -> ControllerPool {
    p.status = Some(serde_json::from_value(status).expect("status"));
    p
}

#[test]
fn scale_down_drains_the_highest_ordinals_first() {
    let now = 1_800_000_000_000_i64;
    let long_ago = "2020-01-01T00:00:00Z";
    // minimal: 5000 per controller, 1.25 headroom, 300 s window, 120 s drain timeout.
    let p = with_status(pool("minimal"), json!({"scaleDownSince": long_ago}));
    let load = counts(&[
        ("minimal-controller-0", 100),
        ("minimal-controller-1", 30),
        ("minimal-controller-2", 20),
        ("other-controller-0", 9000),
    ]);
    let s = step(&p, Some(3), &load, now);
    assert_eq!(s.connected, 150, "only this pool's controllers count");
    assert_eq!(s.replicas, 3, "replicas stay while draining");
    assert_eq!(s.draining, ["minimal-controller-1", "minimal-controller-2"]);
    assert_eq!(s.draining_probes, 50);
    assert_eq!(s.draining_since_ms, Some(now));
    let st = vantage_operator::pool::next_status(
        &p,
        Some(3),
        &s,
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_millisecond(now).expect("t"),
        ),
    );
    let draining = vantage_crd::conditions::get(&st.conditions, pc::DRAINING).expect("Draining");
    assert_eq!(
        (draining.status.as_str(), draining.reason.as_str()),
        ("True", reason::DRAINING)
    );

    // Next round: the probes have moved away; now the replicas go down.
    let p2 = with_status(
        pool("minimal"),
        json!({"scaleDownSince": long_ago, "draining": ["minimal-controller-1", "minimal-controller-2"],
               "drainingSince": "2027-01-15T08:00:00Z"}),
    );
    let s2 = step(
        &p2,
        Some(3),
        &counts(&[("minimal-controller-0", 150)]),
        now + 5_000,
    );
    assert_eq!(s2.replicas, 1);
    assert!(s2.draining.is_empty());
    assert_eq!(s2.drain_timed_out, None);

    // Controllers without probes are still asked to drain before their pods go, and the
    // replicas drop in the same round.
    let idle = step(&p, Some(3), &counts(&[("minimal-controller-0", 150)]), now);
    assert_eq!(idle.replicas, 1);
    assert_eq!(
        idle.signal,
        ["minimal-controller-1", "minimal-controller-2"]
    );
    assert!(idle.draining.is_empty());

    // A stuck controller: after the drain timeout the pod goes anyway.
    let since = k8s_openapi::jiff::Timestamp::from_millisecond(now - 121_000)
        .expect("t")
        .to_string();
    let p3 = with_status(
        pool("minimal"),
        json!({"scaleDownSince": long_ago, "draining": ["minimal-controller-1", "minimal-controller-2"],
               "drainingSince": since}),
    );
    let s3 = step(&p3, Some(3), &load, now);
    assert_eq!((s3.replicas, s3.drain_timed_out), (1, Some(50)));

    // Load comes back during a drain: it is called off.
    let busy = counts(&[("minimal-controller-0", 9000)]);
    let s4 = step(&p2, Some(3), &busy, now);
    assert_eq!(s4.replicas, 3);
    assert!(s4.draining.is_empty());
    assert_eq!(s4.undrain, ["minimal-controller-1", "minimal-controller-2"]);
}

#[test]
fn scale_up_withdraws_old_drain_requests_of_returning_ordinals() {
    let p = pool("minimal");
    let s = step(&p, Some(1), &counts(&[("minimal-controller-0", 12_000)]), 0);
    assert_eq!(s.replicas, 3);
    assert_eq!(s.undrain, ["minimal-controller-1", "minimal-controller-2"]);
    assert_eq!(
        Names::of("minimal").ordinal("minimal-controller-12"),
        Some(12)
    );
    assert_eq!(Names::of("minimal").ordinal("minimal-controllerx-1"), None);
}

// ---- API calls (tower-test) ----

type Calls = Vec<(String, Vec<String>)>;

#[derive(Default, Clone)]
struct DrainRecorder(Arc<Mutex<Calls>>);
impl DrainSignal for DrainRecorder {
    async fn drain(&self, c: &[String]) -> Result<(), PoolError> {
        self.0
            .lock()
            .expect("lock")
            .push(("drain".into(), c.to_vec()));
        Ok(())
    }
    async fn undrain(&self, c: &[String]) -> Result<(), PoolError> {
        self.0
            .lock()
            .expect("lock")
            .push(("undrain".into(), c.to_vec()));
        Ok(())
    }
}

fn ctx(client: Client, sessions: Sessions) -> (Arc<PoolCtx<DrainRecorder>>, DrainRecorder) {
    let drains = DrainRecorder::default();
    (
        Arc::new(PoolCtx {
            client: client.clone(),
            sessions,
            drain: drains.clone(),
            metrics: PoolMetrics::default(),
            events: Events::kube(client),
        }),
        drains,
    )
}

async fn body_json(req: Request<Body>) -> Value {
    let bytes = req.into_body().collect_bytes().await.expect("body");
    serde_json::from_slice(&bytes).expect("json body")
}

fn respond(send: mock::SendResponse<Response<Body>>, status: u16, obj: &Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(obj).expect("json")))
            .expect("response"),
    );
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})
}

const NS: &str = "/namespaces/vantage";

fn session(probe: u32, controller: &str) -> Session {
    Session {
        v: 1,
        probe_id: probe,
        controller: controller.into(),
        address: "192.0.2.1".into(),
        connected_since_ms: 0,
        fw: 0,
        schedule: vantage_core::nats::Delivery::Delivered,
    }
}

/// Serve one Event POST (events.k8s.io) about pool `minimal`; its type and reason.
async fn expect_event(
    handle: &mut std::pin::Pin<&mut mock::Handle<Request<Body>, Response<Body>>>,
) -> (String, String, String) {
    let (req, send) = handle.next_request().await.expect("an Event");
    assert_eq!(req.method(), Method::POST);
    assert_eq!(
        req.uri().path(),
        format!("/apis/events.k8s.io/v1{NS}/events")
    );
    let ev = body_json(req).await;
    assert_eq!(ev["regarding"]["kind"], "ControllerPool");
    assert_eq!(ev["regarding"]["name"], "minimal");
    assert_eq!(ev["reportingController"], "vantage-operator");
    let out = (
        ev["type"].as_str().unwrap_or_default().to_owned(),
        ev["reason"].as_str().unwrap_or_default().to_owned(),
        ev["note"].as_str().unwrap_or_default().to_owned(),
    );
    respond(send, 201, &ev);
    out
}

/// Assert that `req` is a server-side apply as the operator, forcing ownership.
fn assert_apply(req: &Request<Body>) {
    assert_eq!(req.method(), Method::PATCH, "{}", req.uri());
    let q = req.uri().query().unwrap_or_default().to_owned();
    assert!(q.contains(&format!("fieldManager={FIELD_MANAGER}")), "{q}");
    assert!(q.contains("force=true"), "{q}");
    assert_eq!(
        req.headers()["content-type"],
        "application/apply-patch+yaml"
    );
}

/// Serve one status write of pool `minimal`: a server-side apply of `apiVersion`, `kind`
/// and `status` only. Returns the body; answers with the pool.
async fn expect_status_apply(
    handle: &mut std::pin::Pin<&mut mock::Handle<Request<Body>, Response<Body>>>,
) -> Value {
    let (req, send) = handle.next_request().await.expect("a status write");
    assert_eq!(
        req.uri().path(),
        format!("/apis/vantage.dev/v1alpha1{NS}/controllerpools/minimal/status")
    );
    assert_apply(&req);
    let patch = body_json(req).await;
    assert_eq!(
        (&patch["apiVersion"], &patch["kind"]),
        (&json!("vantage.dev/v1alpha1"), &json!("ControllerPool")),
        "{patch}"
    );
    assert!(patch.get("spec").is_none(), "only the status: {patch}");
    respond(
        send,
        200,
        &serde_json::to_value(pool("minimal")).expect("obj"),
    );
    patch
}

/// Serve one server-side apply and check it; answers the object back.
async fn expect_apply(
    handle: &mut std::pin::Pin<&mut mock::Handle<Request<Body>, Response<Body>>>,
    path: &str,
) -> Value {
    let (req, send) = handle.next_request().await.expect("a request");
    assert_eq!(req.uri().path(), path);
    assert_apply(&req);
    let obj = body_json(req).await;
    respond(send, 200, &obj);
    obj
}

#[tokio::test]
async fn new_pool_renders_its_workloads_and_status() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let sessions = Sessions::default();
    // 6000 probes × 1.25 / 5000 → 2 controllers.
    for i in 0..6000 {
        sessions.up(session(i, "minimal-controller-0"));
    }
    let (ctx, drains) = ctx(Client::new(service, "default"), sessions);
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), Method::GET);
        assert_eq!(
            req.uri().path(),
            format!("/apis/apps/v1{NS}/statefulsets/minimal-controller")
        );
        respond(send, 404, &not_found());
        let sts = expect_apply(
            &mut handle,
            &format!("/apis/apps/v1{NS}/statefulsets/minimal-controller"),
        )
        .await;
        assert_eq!(sts["spec"]["replicas"], 2);
        expect_apply(
            &mut handle,
            &format!("/api/v1{NS}/services/minimal-controller-headless"),
        )
        .await;
        for i in 0..2 {
            let svc = expect_apply(
                &mut handle,
                &format!("/api/v1{NS}/services/minimal-controller-{i}"),
            )
            .await;
            assert_eq!(svc["spec"]["type"], "LoadBalancer");
        }
        expect_apply(
            &mut handle,
            &format!("/apis/apps/v1{NS}/deployments/minimal-registration"),
        )
        .await;
        expect_apply(
            &mut handle,
            &format!("/api/v1{NS}/services/minimal-registration"),
        )
        .await;
        expect_apply(
            &mut handle,
            &format!("/api/v1{NS}/services/minimal-registration-metrics"),
        )
        .await;
        // Pruning: list the per-pod Services of this pool; a stale one goes.
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), format!("/api/v1{NS}/services"));
        let q = req.uri().query().unwrap_or_default().to_owned();
        assert!(
            q.contains("vantage.dev%2Fcontroller-pool%3Dminimal")
                || q.contains("vantage.dev/controller-pool=minimal"),
            "{q}"
        );
        let svc = |n: &str| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": n, "namespace": "vantage"}});
        respond(
            send,
            200,
            &json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {},
                    "items": [svc("minimal-controller-0"), svc("minimal-controller-1"), svc("minimal-controller-5")]}),
        );
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), Method::DELETE);
        assert_eq!(
            req.uri().path(),
            format!("/api/v1{NS}/services/minimal-controller-5")
        );
        respond(send, 200, &svc("minimal-controller-5"));
        // Status last.
        let patch = expect_status_apply(&mut handle).await;
        let st = &patch["status"];
        assert_eq!(
            (&st["replicas"], &st["connectedProbes"], &st["capacity"]),
            (&json!(2), &json!(6000), &json!(10_000))
        );
        let cond = |t: &str| {
            st["conditions"]
                .as_array()
                .expect("conditions")
                .iter()
                .find(|c| c["type"] == t)
                .cloned()
                .expect(t)
        };
        assert_eq!(cond(pc::READY)["status"], "True");
        assert_eq!(cond(pc::SCALING)["reason"], reason::SCALING_UP);
        assert_eq!(cond(pc::DRAINING)["status"], "False");
        // Then the Event: scaling up from nothing to 2.
        let (ty, why, note) = expect_event(&mut handle).await;
        assert_eq!(
            (ty.as_str(), why.as_str()),
            ("Normal", event_reason::SCALING_UP)
        );
        assert!(note.starts_with("scaling up from 0 to 2"), "{note}");
    });
    let action = reconcile(Arc::new(pool("minimal")), ctx.clone())
        .await
        .expect("reconcile");
    // Without the client, a request the server still waits for (an Event) fails the test.
    drop(ctx);
    server.await.expect("server");
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(15))
    );
    // Ordinals 0 and 1 come up: any old drain request of theirs is withdrawn.
    assert_eq!(
        drains.0.lock().expect("lock").clone(),
        vec![(
            "undrain".to_owned(),
            vec![
                "minimal-controller-0".to_owned(),
                "minimal-controller-1".to_owned()
            ]
        )]
    );
}

#[tokio::test]
async fn scale_down_signals_the_drain_and_keeps_replicas() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let sessions = Sessions::default();
    sessions.up(session(1, "minimal-controller-0"));
    sessions.up(session(2, "minimal-controller-1"));
    let (ctx, drains) = ctx(Client::new(service, "default"), sessions);
    let p = with_status(
        pool("minimal"),
        json!({"replicas": 2, "scaleDownSince": "2020-01-01T00:00:00Z"}),
    );
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), Method::GET);
        respond(
            send,
            200,
            &json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "metadata": {"name": "minimal-controller", "namespace": "vantage"},
                    "spec": {"replicas": 2, "selector": {}, "serviceName": "x", "template": {}}}),
        );
        let sts = expect_apply(
            &mut handle,
            &format!("/apis/apps/v1{NS}/statefulsets/minimal-controller"),
        )
        .await;
        assert_eq!(sts["spec"]["replicas"], 2, "not lowered before the drain");
        for _ in 0..(1 + 2 + 3) {
            let (req, send) = handle.next_request().await.expect("a request");
            assert_eq!(req.method(), Method::PATCH);
            let obj = body_json(req).await;
            respond(send, 200, &obj);
        }
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), Method::GET);
        respond(
            send,
            200,
            &json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {}, "items": []}),
        );
        let patch = expect_status_apply(&mut handle).await;
        assert_eq!(patch["status"]["draining"], json!(["minimal-controller-1"]));
        assert!(patch["status"]["drainingSince"].is_string());
        // The drain starts (replicas are not lowered yet: no scaling Event).
        let (ty, why, note) = expect_event(&mut handle).await;
        assert_eq!(
            (ty.as_str(), why.as_str()),
            ("Normal", event_reason::DRAIN_STARTED)
        );
        assert!(
            note.contains("minimal-controller-1 (1 probes left)"),
            "{note}"
        );
    });
    let action = reconcile(Arc::new(p), ctx.clone())
        .await
        .expect("reconcile");
    // Without the client, a request the server still waits for (an Event) fails the test.
    drop(ctx);
    server.await.expect("server");
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(3))
    );
    assert_eq!(
        drains.0.lock().expect("lock").clone(),
        vec![("drain".to_owned(), vec!["minimal-controller-1".to_owned()])]
    );
}

#[tokio::test]
async fn invalid_pool_gets_invalid_spec_and_nothing_is_rendered() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let (ctx, drains) = ctx(Client::new(service, "default"), Sessions::default());
    let mut p = pool("minimal");
    p.spec.service_type = "ExternalName".into();
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        // Only the status is written.
        let patch = expect_status_apply(&mut handle).await;
        let ready = &patch["status"]["conditions"][0];
        assert_eq!(
            (&ready["type"], &ready["status"], &ready["reason"]),
            (
                &json!("Ready"),
                &json!("False"),
                &json!(reason::INVALID_SPEC)
            )
        );
        assert!(ready["message"]
            .as_str()
            .expect("message")
            .starts_with("spec.service_type:"));
        let (ty, why, note) = expect_event(&mut handle).await;
        assert_eq!(
            (ty.as_str(), why.as_str()),
            ("Warning", event_reason::INVALID_SPEC)
        );
        assert!(note.starts_with("spec.service_type:"), "{note}");
    });
    let action = reconcile(Arc::new(p), ctx.clone())
        .await
        .expect("reconcile");
    // Without the client, a request the server still waits for (an Event) fails the test.
    drop(ctx);
    server.await.expect("server");
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    assert!(drains.0.lock().expect("lock").is_empty());
}

#[test]
fn events_of_a_drain_and_of_scaling() {
    let reasons = |p: &ControllerPool, current: u32, c: &[(&str, u32)], now: i64| {
        let s = step(p, Some(current), &counts(c), now);
        events(p, Some(current), &s)
            .into_iter()
            .map(|e| (e.reason, e.warning))
            .collect::<Vec<_>>()
    };
    let want = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
        v.iter().map(|(r, w)| ((*r).to_owned(), *w)).collect()
    };
    let t0 = 1_700_000_000_000;
    // 3 controllers, load for 1 after the stabilization window: drain ordinal 1 and 2
    let start = with_status(
        pool("minimal"),
        json!({"replicas": 3, "scaleDownSince": "2020-01-01T00:00:00Z"}),
    );
    let c = [("minimal-controller-0", 10), ("minimal-controller-2", 4)];
    assert_eq!(
        reasons(&start, 3, &c, t0),
        want(&[(event_reason::DRAIN_STARTED, false)])
    );
    // still draining, same set: nothing new
    let draining = with_status(
        pool("minimal"),
        json!({"replicas": 3, "scaleDownSince": "2020-01-01T00:00:00Z",
               "draining": ["minimal-controller-1", "minimal-controller-2"],
               "drainingSince": "2023-11-14T22:13:20Z"}),
    );
    assert_eq!(reasons(&draining, 3, &c, t0 + 1000), vec![]);
    // the probes left: drain finished, scaled down
    assert_eq!(
        reasons(&draining, 3, &c[..1], t0 + 2000),
        want(&[
            (event_reason::DRAIN_FINISHED, false),
            (event_reason::SCALING_DOWN, false)
        ])
    );
    // the timeout passed with probes left: a Warning, scaled down anyway
    assert_eq!(
        reasons(&draining, 3, &c, t0 + 121_000),
        want(&[
            (event_reason::DRAIN_TIMED_OUT, true),
            (event_reason::SCALING_DOWN, false)
        ])
    );
    // the load came back: the drain is called off (finished), no scaling
    let busy = [
        ("minimal-controller-0", 4000),
        ("minimal-controller-1", 4000),
        ("minimal-controller-2", 4000),
    ];
    let s = step(&draining, Some(3), &counts(&busy), t0 + 3000);
    let ev = events(&draining, Some(3), &s);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0].reason, event_reason::DRAIN_FINISHED);
    assert!(ev[0].note.contains("called off"), "{}", ev[0].note);
    // steady: no Event at all
    let steady = with_status(pool("minimal"), json!({"replicas": 1}));
    assert_eq!(reasons(&steady, 1, &c[..1], t0), vec![]);
}

/// The query of `req` with the characters of label selectors decoded.
fn query(req: &Request<Body>) -> String {
    req.uri()
        .query()
        .unwrap_or_default()
        .replace("%2F", "/")
        .replace("%3D", "=")
        .replace("%2C", ",")
}

#[tokio::test]
async fn disabling_the_registration_sweeps_its_objects_by_label() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let (ctx, _) = ctx(Client::new(service, "default"), Sessions::default());
    let mut p = pool("minimal");
    p.spec.registration = Some(vantage_crd::RegistrationSpec {
        enabled: Some(false),
        ..Default::default()
    });
    let server = tokio::spawn(async move {
        let mut handle = pin!(handle);
        let (req, send) = handle.next_request().await.expect("a request");
        assert_eq!(req.method(), Method::GET);
        respond(
            send,
            200,
            &json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "metadata": {"name": "minimal-controller", "namespace": "vantage"},
                    "spec": {"replicas": 1, "selector": {}, "serviceName": "x", "template": {}}}),
        );
        // The controllers only: no registration object is applied.
        for path in [
            format!("/apis/apps/v1{NS}/statefulsets/minimal-controller"),
            format!("/api/v1{NS}/services/minimal-controller-headless"),
            format!("/api/v1{NS}/services/minimal-controller-0"),
        ] {
            expect_apply(&mut handle, &path).await;
        }
        let (req, send) = handle.next_request().await.expect("per-pod list");
        assert!(
            query(&req).contains("vantage.dev/per-pod-service=true"),
            "{}",
            query(&req)
        );
        respond(
            send,
            200,
            &json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {}, "items": []}),
        );
        let selector = "labelSelector=vantage.dev/controller-pool=minimal,app.kubernetes.io/component=registration";
        // The registration Deployment left from when registration was enabled goes ...
        let (req, send) = handle.next_request().await.expect("deployment list");
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), format!("/apis/apps/v1{NS}/deployments"));
        assert!(query(&req).contains(selector), "{}", query(&req));
        let obj = |api: &str, kind: &str, n: &str| json!({"apiVersion": api, "kind": kind, "metadata": {"name": n, "namespace": "vantage"}});
        respond(
            send,
            200,
            &json!({"apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {},
                    "items": [obj("apps/v1", "Deployment", "minimal-registration")]}),
        );
        let (req, send) = handle.next_request().await.expect("deployment delete");
        assert_eq!(req.method(), Method::DELETE);
        assert_eq!(
            req.uri().path(),
            format!("/apis/apps/v1{NS}/deployments/minimal-registration")
        );
        respond(
            send,
            200,
            &obj("apps/v1", "Deployment", "minimal-registration"),
        );
        // ... and so do its Services (one already gone is not an error).
        let (req, send) = handle.next_request().await.expect("service list");
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), format!("/api/v1{NS}/services"));
        assert!(query(&req).contains(selector), "{}", query(&req));
        respond(
            send,
            200,
            &json!({"apiVersion": "v1", "kind": "ServiceList", "metadata": {},
                    "items": [obj("v1", "Service", "minimal-registration"),
                              obj("v1", "Service", "minimal-registration-metrics")]}),
        );
        let (req, send) = handle.next_request().await.expect("service delete");
        assert_eq!(req.method(), Method::DELETE);
        assert_eq!(
            req.uri().path(),
            format!("/api/v1{NS}/services/minimal-registration")
        );
        respond(send, 200, &obj("v1", "Service", "minimal-registration"));
        let (req, send) = handle.next_request().await.expect("service delete");
        assert_eq!(req.method(), Method::DELETE);
        assert_eq!(
            req.uri().path(),
            format!("/api/v1{NS}/services/minimal-registration-metrics")
        );
        respond(send, 404, &not_found());
        // Then status.
        let patch = expect_status_apply(&mut handle).await;
        assert_eq!(patch["status"]["replicas"], 1);
    });
    reconcile(Arc::new(p), ctx.clone())
        .await
        .expect("reconcile");
    // Without the client, a request the server still waits for fails the test.
    drop(ctx);
    server.await.expect("server");
}
