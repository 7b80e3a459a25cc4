//! Revoking a disabled probe's assignment against the stack's nats-server, with the
//! bucket gone for a while (as while a NATS cluster elects a new leader): the revoke is
//! retried until NATS takes it, and given up when the probe is enabled again.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use vantage_controller::revoke::{revoke, revoke_once, Revoked};
use vantage_core::nats::probe_key;

async fn stack(test: &str) -> Option<jetstream::Context> {
    let url = vantage_testkit::stack_var("NATS_URL", test)?;
    let client = vantage_platform::bus::connect(&url, test)
        .await
        .expect("connect to the stack's NATS");
    Some(jetstream::new(client))
}

async fn bucket(js: &jetstream::Context, name: &str) -> kv::Store {
    js.create_key_value(kv::Config {
        bucket: name.to_owned(),
        history: 1,
        ..Default::default()
    })
    .await
    .expect("create the test bucket")
}

/// The bucket (created if it is gone) with `probe` assigned.
async fn with_assignment(js: &jetstream::Context, name: &str, probe: u32) -> kv::Store {
    let store = bucket(js, name).await;
    store
        .put(probe_key(probe), b"{}".to_vec().into())
        .await
        .expect("put");
    store
}

async fn assigned(store: &kv::Store, probe: u32) -> bool {
    store
        .entry(probe_key(probe))
        .await
        .expect("read the assignment")
        .is_some_and(|e| e.operation == kv::Operation::Put)
}

#[tokio::test]
async fn a_revoke_nats_refuses_is_retried_until_nats_takes_it() {
    let Some(js) = stack("a_revoke_nats_refuses_is_retried_until_nats_takes_it").await else {
        return;
    };
    let name = format!("revoke-test-{}-a", std::process::id());
    let probe = 7;
    let store = with_assignment(&js, &name, probe).await;
    // Nothing to revoke for a probe without an assignment.
    assert_eq!(
        revoke_once(&store, probe + 1).await.expect("revoke"),
        Revoked::NotAssigned
    );

    // The bucket is gone: every attempt fails.
    js.delete_key_value(&name).await.expect("delete the bucket");
    assert!(revoke_once(&store, probe).await.is_err());
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    let task = tokio::spawn({
        let store = store.clone();
        async move {
            revoke(&store, probe, move || {
                counted.fetch_add(1, Ordering::SeqCst);
                true
            })
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!task.is_finished(), "the revoke gave up while NATS failed");
    assert!(
        attempts.load(Ordering::SeqCst) >= 2,
        "no retry within 1.5 s ({} attempts)",
        attempts.load(Ordering::SeqCst)
    );

    // The bucket is back (a new leader), with the assignment: the retry deletes it.
    let back = with_assignment(&js, &name, probe).await;
    let done = tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("revoked within 15 s of NATS answering again")
        .expect("task");
    assert_eq!(done, Revoked::Deleted);
    assert!(
        !assigned(&back, probe).await,
        "the assignment is still there"
    );
    js.delete_key_value(&name).await.expect("clean up");
}

#[tokio::test]
async fn a_probe_enabled_again_during_the_outage_keeps_its_assignment() {
    let Some(js) = stack("a_probe_enabled_again_during_the_outage_keeps_its_assignment").await
    else {
        return;
    };
    let name = format!("revoke-test-{}-b", std::process::id());
    let probe = 8;
    let store = bucket(&js, &name).await;
    js.delete_key_value(&name).await.expect("delete the bucket");
    let disabled = Arc::new(AtomicBool::new(true));
    let flag = disabled.clone();
    let task = tokio::spawn({
        let store = store.clone();
        async move { revoke(&store, probe, move || flag.load(Ordering::SeqCst)).await }
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    disabled.store(false, Ordering::SeqCst);
    let back = with_assignment(&js, &name, probe).await;
    let done = tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("ended within 15 s")
        .expect("task");
    assert_eq!(done, Revoked::NoLongerDisabled);
    assert!(
        assigned(&back, probe).await,
        "the re-enabled probe lost its assignment"
    );
    js.delete_key_value(&name).await.expect("clean up");
}
