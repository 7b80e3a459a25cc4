//! A minimal russh server on 127.0.0.1 plays registration server and controller, to
//! prove the probe's side of the protocol: registration parsing, host-key pinning,
//! refusal reasons, and a full session (forward, schedule, ack, results).

use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};
use russh::server::{self, Auth, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelMsg};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use vantage_core::definition::{PingOptions, Task, TaskKind};
use vantage_core::frame::{
    encode, Down, RegistrationReply, Up, INTAKE_HOST, INTAKE_PORT, PROBE_USER,
};
use vantage_core::WIRE_VERSION;
use vantage_probe::anchor::{Anchor, RegistrationServer};
use vantage_probe::identity::generate_key;
use vantage_probe::outbox::Outbox;
use vantage_probe::scheduler::{Measure, Scheduler};
use vantage_probe::ProbeError;

#[derive(Clone)]
struct Shared {
    host_key: PublicKey,
    addr: String,
    probe_key: PublicKey,
    refuse: bool,
    /// Cut the first controller session right after its Hello.
    cut_first: bool,
    intakes: Arc<std::sync::atomic::AtomicUsize>,
    /// Lines the probe wrote on its intake channel.
    intake_tx: mpsc::UnboundedSender<Value>,
}

struct TestServer {
    shared: Shared,
}

impl server::Handler for TestServer {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if user == PROBE_USER && key.public_key.key_data() == self.shared.probe_key.key_data() {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        if vantage_core::frame::parse_register(&String::from_utf8_lossy(data)).is_none()
            || self.shared.refuse
        {
            session.extended_data(channel, 1, &b"probe key is not enrolled\n"[..])?;
            session.exit_status_request(channel, 1)?;
        } else {
            let reply = RegistrationReply {
                v: WIRE_VERSION,
                probe_id: 4242,
                controller: "ctl-test".into(),
                controller_addr: self.shared.addr.clone(),
                controller_host_key: self.shared.host_key.to_openssh().expect("openssh"),
                command_port: 20001,
                firmware: None,
            };
            session.data(channel, encode(&reply).expect("encode"))?;
            session.exit_status_request(channel, 0)?;
        }
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        assert_eq!(*port, 20001);
        let handle = session.handle();
        let address = address.to_owned();
        let port = *port;
        tokio::spawn(async move {
            let channel = handle
                .channel_open_forwarded_tcpip(address, port, "127.0.0.1", 40000)
                .await
                .expect("open forwarded-tcpip");
            let task = Task {
                msm_id: 77,
                af: 4,
                target: "127.0.0.1".into(),
                interval: 60,
                spread: 0,
                start_time: None,
                stop_time: None,
                is_oneoff: false,
                kind: TaskKind::Ping(PingOptions {
                    packets: 3,
                    size: 48,
                    packet_interval_ms: 1000,
                }),
            };
            let mut bytes = b"this is not json\n".to_vec();
            bytes.extend(
                encode(&Down::Schedule {
                    v: WIRE_VERSION,
                    revision: 5,
                    tasks: vec![task],
                })
                .expect("encode"),
            );
            channel.data(&bytes[..]).await.expect("send schedule");
            // Keep the channel open for the session's lifetime.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        Ok(true)
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        mut channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: server::ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        assert_eq!(
            (host_to_connect, port_to_connect),
            (INTAKE_HOST, INTAKE_PORT)
        );
        reply.accept().await;
        let tx = self.shared.intake_tx.clone();
        let first = self
            .shared
            .intakes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            == 0;
        let cut = (first && self.shared.cut_first).then(|| session.handle());
        tokio::spawn(async move {
            let mut lines = vantage_core::frame::LineBuffer::default();
            while let Some(msg) = channel.wait().await {
                if let ChannelMsg::Data { data } = msg {
                    for line in lines.push(&data) {
                        let value =
                            serde_json::from_slice(&line.expect("line")).expect("json frame");
                        let _ = tx.send(value);
                        if let Some(handle) = &cut {
                            let _ = handle
                                .disconnect(
                                    russh::Disconnect::ByApplication,
                                    "cut".into(),
                                    "en".into(),
                                )
                                .await;
                        }
                    }
                }
            }
        });
        Ok(())
    }
}

struct Fixture {
    addr: String,
    host_key: PublicKey,
    probe_key: Arc<PrivateKey>,
    intake_rx: mpsc::UnboundedReceiver<Value>,
}

async fn start_server(refuse: bool) -> Fixture {
    start_server_with(refuse, false).await
}

async fn start_server_with(refuse: bool, cut_first: bool) -> Fixture {
    let host = generate_key();
    let probe = generate_key();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let (intake_tx, intake_rx) = mpsc::unbounded_channel();
    let shared = Shared {
        host_key: host.public_key().clone(),
        addr: addr.clone(),
        probe_key: probe.public_key().clone(),
        refuse,
        cut_first,
        intakes: Arc::default(),
        intake_tx,
    };
    let config = Arc::new(server::Config {
        keys: vec![host.clone()],
        auth_rejection_time: Duration::from_millis(10),
        auth_rejection_time_initial: Some(Duration::ZERO),
        ..Default::default()
    });
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let handler = TestServer {
                shared: shared.clone(),
            };
            let config = config.clone();
            tokio::spawn(async move {
                if let Ok(session) = server::run_stream(config, socket, handler).await {
                    let _ = session.await;
                }
            });
        }
    });
    Fixture {
        addr,
        host_key: host.public_key().clone(),
        probe_key: Arc::new(probe),
        intake_rx,
    }
}

#[tokio::test]
async fn registration_returns_the_reply() {
    let f = start_server(false).await;
    let reply = vantage_probe::ssh::register(&f.addr, &f.host_key, f.probe_key.clone(), 5020)
        .await
        .expect("register");
    assert_eq!(reply.probe_id, 4242);
    assert_eq!(reply.controller_addr, f.addr);
    assert_eq!(reply.command_port, 20001);
}

#[tokio::test]
async fn registration_refuses_a_wrong_host_key() {
    let f = start_server(false).await;
    let other = generate_key();
    let err = vantage_probe::ssh::register(&f.addr, other.public_key(), f.probe_key.clone(), 5020)
        .await
        .expect_err("must refuse");
    assert!(matches!(err, ProbeError::HostKeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("refusing"), "{err}");
}

#[tokio::test]
async fn registration_reports_the_servers_reason() {
    let f = start_server(true).await;
    let err = vantage_probe::ssh::register(&f.addr, &f.host_key, f.probe_key.clone(), 5020)
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("probe key is not enrolled"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unknown_probe_key_is_rejected() {
    let f = start_server(false).await;
    let err = vantage_probe::ssh::register(&f.addr, &f.host_key, Arc::new(generate_key()), 5020)
        .await
        .expect_err("rejected");
    assert!(matches!(err, ProbeError::AuthRejected { .. }), "{err:?}");
}

struct FakeMeasure;

impl Measure for FakeMeasure {
    async fn run(&self, task: &Task) -> Option<Value> {
        Some(
            json!({"result_id": uuid::Uuid::now_v7().to_string(), "msm_id": task.msm_id, "type": "ping"}),
        )
    }
}

#[tokio::test]
async fn session_applies_schedule_acks_and_sends_results() {
    let mut f = start_server(false).await;
    let anchor = Anchor {
        registration: vec![RegistrationServer {
            addr: f.addr.clone(),
            host_key: f.host_key.clone(),
        }],
        firmware_keys: vec![],
    };
    let outbox = Arc::new(Outbox::new(100));
    // A result produced before any session is flushed first.
    outbox.push(json!({"result_id": "queued-before", "msm_id": 1}));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let key = f.probe_key.clone();
    let agent = tokio::spawn({
        let outbox = outbox.clone();
        async move {
            let prb_id = AtomicU32::new(0);
            let mut scheduler = Scheduler::new(Arc::new(FakeMeasure), outbox.clone(), 4);
            vantage_probe::agent::run_loop(
                key,
                &anchor,
                &no_firmware(),
                &mut scheduler,
                &outbox,
                &prb_id,
                stop_rx,
            )
            .await;
            prb_id.into_inner()
        }
    });

    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while frames.len() < 4 {
        let frame = tokio::time::timeout_at(deadline, f.intake_rx.recv())
            .await
            .expect("frames in time")
            .expect("frame");
        frames.push(serde_json::from_value::<Up>(frame).expect("Up frame"));
    }
    assert!(
        matches!(
            frames[0],
            Up::Hello {
                v: WIRE_VERSION,
                ..
            }
        ),
        "{frames:?}"
    );
    assert!(
        frames.contains(&Up::ScheduleAck {
            v: WIRE_VERSION,
            revision: 5
        }),
        "{frames:?}"
    );
    let results: Vec<&Value> = frames
        .iter()
        .filter_map(|u| {
            if let Up::Result { result, .. } = u {
                Some(result)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(results.len(), 2, "{frames:?}");
    assert_eq!(results[0]["result_id"], "queued-before");
    assert_eq!(results[1]["msm_id"], 77);

    stop_tx.send(true).expect("stop");
    let prb_id = tokio::time::timeout(Duration::from_secs(5), agent)
        .await
        .expect("stops")
        .expect("join");
    assert_eq!(prb_id, 4242);
}

#[tokio::test]
async fn a_cut_session_is_re_established_through_registration() {
    let mut f = start_server_with(false, true).await;
    let anchor = Anchor {
        registration: vec![RegistrationServer {
            addr: f.addr.clone(),
            host_key: f.host_key.clone(),
        }],
        firmware_keys: vec![],
    };
    let outbox = Arc::new(Outbox::new(100));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let key = f.probe_key.clone();
    let agent = tokio::spawn(async move {
        let prb_id = AtomicU32::new(0);
        let mut scheduler = Scheduler::new(Arc::new(FakeMeasure), outbox.clone(), 4);
        vantage_probe::agent::run_loop(
            key,
            &anchor,
            &no_firmware(),
            &mut scheduler,
            &outbox,
            &prb_id,
            stop_rx,
        )
        .await;
    });
    let mut hellos = 0;
    let mut acks = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hellos < 2 || acks < 1 {
        let frame = tokio::time::timeout_at(deadline, f.intake_rx.recv())
            .await
            .expect("reconnected in time")
            .expect("frame");
        match serde_json::from_value::<Up>(frame).expect("Up frame") {
            Up::Hello { .. } => hellos += 1,
            Up::ScheduleAck { .. } => acks += 1,
            Up::Result { .. } => {}
        }
    }
    stop_tx.send(true).expect("stop");
    tokio::time::timeout(Duration::from_secs(5), agent)
        .await
        .expect("stops")
        .expect("join");
}

/// A firmware state that never updates (no firmware keys).
fn no_firmware() -> vantage_probe::firmware::Firmware {
    let dir = std::env::temp_dir();
    vantage_probe::firmware::Firmware::load(
        dir.join("vantage-probe-test-exe"),
        dir.join("vantage-probe-test.fw"),
        vec![],
    )
}
