//! The stall check against the stack's nats-server: it must see revisions written after
//! the bucket handle was bound (`kv::Store::status` returns the info cached at binding,
//! with which a stalled watch was never noticed in the NATS failover test).

use async_nats::jetstream::{self, kv};
use vantage_controller::stall::StallCheck;

#[tokio::test]
async fn the_check_sees_revisions_written_after_the_bucket_was_bound() {
    let test = "the_check_sees_revisions_written_after_the_bucket_was_bound";
    let Some(url) = vantage_testkit::stack_var("NATS_URL", test) else {
        return;
    };
    let client = vantage_platform::bus::connect(&url, test)
        .await
        .expect("connect to the stack's NATS");
    let js = jetstream::new(client);
    let name = format!("stall-test-{}", std::process::id());
    let store = js
        .create_key_value(kv::Config {
            bucket: name.clone(),
            history: 1,
            ..Default::default()
        })
        .await
        .expect("create the test bucket");
    let mut last = 0;
    for i in 0..3 {
        last = store
            .put(format!("probe.{i}"), b"{}".to_vec().into())
            .await
            .expect("put");
    }
    let mut check = StallCheck::default();
    // A watch that delivered everything is not stalled, however often it is checked.
    for _ in 0..3 {
        assert!(!check.check(&store, last + 1).await);
    }
    // One more write the watch does not deliver: behind once, then stalled.
    let newer = store
        .put("probe.9", b"{}".to_vec().into())
        .await
        .expect("put");
    assert_eq!(newer, last + 1);
    assert!(
        !check.check(&store, last + 1).await,
        "behind once is not stalled"
    );
    assert!(
        check.check(&store, last + 1).await,
        "behind twice at the same revision is stalled"
    );
    js.delete_key_value(&name).await.expect("clean up");
}
