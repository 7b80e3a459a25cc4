//! `KvIds`, the measurement id allocator, against the real NATS of the local stack
//! (`NATS_URL`; `source /tmp/vantage-stack/env`), each test on a scratch KV bucket it
//! deletes afterwards. Without NATS_URL the tests print SKIPPED, except under `CI=true`,
//! where a missing NATS is a failure.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, stream};
use futures::{StreamExt, TryStreamExt};
use vantage_core::nats::MSM_SEQ_KEY;
use vantage_operator::measurement::{IdAllocator, KvIds, FIRST_MSM_ID};

const ALLOCATORS: usize = 8;
const IDS: usize = 10_000;
/// Allocations in flight per allocator, as concurrent reconciles of one operator.
const TASKS_PER_ALLOCATOR: usize = 4;

fn nats_url() -> Option<String> {
    vantage_testkit::stack_var("NATS_URL", "KvIds tests of vantage-operator")
}

/// A scratch bucket configured like `vantage-meta` (history 1, file storage).
async fn scratch_bucket(js: &jetstream::Context, tag: &str) -> (String, kv::Store) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("vantage-test-ids-{tag}-{}-{nanos}", std::process::id());
    let store = js
        .create_key_value(kv::Config {
            bucket: name.clone(),
            history: 1,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("create the scratch bucket");
    (name, store)
}

async fn connect(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.expect("connect to NATS"))
}

async fn counter(store: &kv::Store) -> Option<u64> {
    let value = store.get(MSM_SEQ_KEY).await.expect("read the counter")?;
    std::str::from_utf8(&value).ok()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_allocators_hand_out_10000_consecutive_ids() {
    let Some(url) = nats_url() else { return };
    let admin = connect(&url).await;
    let (bucket, store) = scratch_bucket(&admin, "contention").await;

    // Eight allocators, each on its own NATS connection (as eight operator processes),
    // each with several allocations in flight (as concurrent reconciles).
    let mut allocators = Vec::new();
    for _ in 0..ALLOCATORS {
        let js = connect(&url).await;
        let kv = js.get_key_value(&bucket).await.expect("open the bucket");
        allocators.push(Arc::new(KvIds::new(kv)));
    }
    let started = Instant::now();
    let per_allocator = IDS / ALLOCATORS;
    let runs = allocators.iter().map(|ids| {
        let ids = ids.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..per_allocator)
                .map(|_| {
                    let ids = ids.clone();
                    async move {
                        let asked = Instant::now();
                        ids.next().await.map(|id| (id, asked.elapsed()))
                    }
                })
                .buffer_unordered(TASKS_PER_ALLOCATOR)
                .try_collect::<Vec<(u64, Duration)>>()
                .await
        })
    });
    let results = futures::future::join_all(runs).await;
    let elapsed = started.elapsed();
    let last = counter(&store).await;
    let _ = admin.delete_key_value(&bucket).await;

    let mut all = Vec::with_capacity(IDS);
    let mut slowest = Duration::ZERO;
    for r in results {
        for (id, took) in r
            .expect("allocator task")
            .expect("every allocation succeeds")
        {
            all.push(id);
            slowest = slowest.max(took);
        }
    }
    let unique: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "duplicate ids handed out");
    // No gaps: exactly FIRST_MSM_ID..FIRST_MSM_ID+10,000, and the counter at the last.
    let want: BTreeSet<u64> = (FIRST_MSM_ID..FIRST_MSM_ID + IDS as u64).collect();
    if unique != want {
        let missing: Vec<_> = want.difference(&unique).take(10).collect();
        let extra: Vec<_> = unique.difference(&want).take(10).collect();
        panic!("ids are not consecutive: missing {missing:?}..., unexpected {extra:?}...");
    }
    assert_eq!(last, Some(FIRST_MSM_ID + IDS as u64 - 1));
    eprintln!(
        "{IDS} ids from {ALLOCATORS} allocators × {TASKS_PER_ALLOCATOR} tasks in {:.2} s ({:.0} ids/s); slowest allocation {:.0} ms (waiting for its turn included)",
        elapsed.as_secs_f64(),
        IDS as f64 / elapsed.as_secs_f64(),
        slowest.as_secs_f64() * 1e3
    );
}

#[tokio::test]
async fn continues_an_existing_counter_and_rereads_a_stale_one() {
    let Some(url) = nats_url() else { return };
    let admin = connect(&url).await;
    let (bucket, store) = scratch_bucket(&admin, "existing").await;
    let ids = KvIds::new(store.clone());

    store
        .put(MSM_SEQ_KEY, "5000000".into())
        .await
        .expect("seed the counter");
    let first = ids.next().await;
    // Another writer advances the counter behind this allocator's back.
    store
        .put(MSM_SEQ_KEY, "6000000".into())
        .await
        .expect("advance the counter");
    let after_other = ids.next().await;
    store
        .put(MSM_SEQ_KEY, "not a number".into())
        .await
        .expect("break the counter");
    let broken = tokio::time::timeout(Duration::from_secs(5), ids.next()).await;
    let _ = admin.delete_key_value(&bucket).await;

    assert_eq!(first.expect("id"), 5_000_001);
    assert_eq!(
        after_other.expect("id"),
        6_000_001,
        "a stale revision is re-read"
    );
    let err = broken
        .expect("a broken counter fails at once")
        .expect_err("not a number");
    assert!(err.to_string().contains("not a number"), "{err}");
}
