//! Benchmark: the operator's Measurement logic with 10,000 Probes and 1,000 Measurements,
//! in-process.
//!
//! The Kubernetes API stand-in cannot hold this load, so the operator's reflector stores
//! are fed directly (as the watch would), and the reconciler's API calls (status
//! patches) go to a fast fake API on a tower-test channel that answers at once. Every
//! reconcile runs the real pipeline: TenantPolicy limits, validation, selection over
//! 10,000 candidates, id allocation (in memory), status, event (in memory); then the
//! schedule syncer computes every probe's schedule and publishes it, side by side:
//!   * to an in-memory publisher (the `SchedulePublisher` trait), and
//!   * to NATS KV (`KvSchedules`, the operator's own publisher) on a scratch bucket of
//!     the stack's NATS (`NATS_URL`), deleted afterwards; skipped without NATS_URL.
//!
//! Reports: time from "apply" (1,000 new Measurements in the store) to every schedule
//! published; full-resync time (every Measurement reconciled again, nothing changed, and
//! a sync that writes nothing); RSS (VmRSS, VmHWM).
//!
//! ```sh
//! source /tmp/vantage-stack/env   # optional: NATS for the KV publisher
//! cargo run --release -p vantage-operator --example bench_operator -- --probes 10000 --measurements 1000
//! ```

use std::collections::BTreeSet;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use http::{Request, Response};
use kube::client::Body;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use kube::Client;
use serde_json::{json, Value};
use tower_test::mock;
use vantage_core::nats::{ScheduleDoc, Session};
use vantage_crd::{Measurement, MeasurementStatus, Probe, TenantPolicy};
use vantage_operator::limits::Ledger;
use vantage_operator::measurement::{
    reconcile, Ctx, Error, Events, IdAllocator, Metrics, FINALIZER,
};
use vantage_operator::probes::Sessions;
use vantage_operator::schedules::{KvSchedules, PublishError, SchedulePublisher, Syncer};
use vantage_operator::stats::ResultStats;

struct Args {
    probes: u32,
    measurements: u32,
    namespaces: u32,
    concurrency: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        probes: 10_000,
        measurements: 1_000,
        namespaces: 10,
        concurrency: 32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--probes" => a.probes = value.parse()?,
            "--measurements" => a.measurements = value.parse()?,
            "--namespaces" => a.namespaces = value.parse()?,
            "--concurrency" => a.concurrency = value.parse()?,
            other => bail!(
                "unknown flag {other}; use --probes, --measurements, --namespaces, --concurrency"
            ),
        }
    }
    Ok(a)
}

struct Ids(AtomicU64);
impl IdAllocator for Ids {
    async fn next(&self) -> Result<u64, Error> {
        Ok(self.0.fetch_add(1, Ordering::Relaxed))
    }
}

/// In-memory publisher: counts documents and tasks.
#[derive(Default)]
struct Memory {
    docs: AtomicUsize,
    tasks: AtomicUsize,
}
impl SchedulePublisher for Memory {
    async fn put(&self, doc: &ScheduleDoc) -> Result<(), PublishError> {
        self.docs.fetch_add(1, Ordering::Relaxed);
        self.tasks.fetch_add(doc.tasks.len(), Ordering::Relaxed);
        Ok(())
    }
}

/// Either publisher behind one type, so one Ctx type serves both runs.
enum Publisher {
    Memory(Memory),
    Kv(Box<KvSchedules>),
}
impl SchedulePublisher for Publisher {
    async fn put(&self, doc: &ScheduleDoc) -> Result<(), PublishError> {
        match self {
            Self::Memory(m) => m.put(doc).await,
            Self::Kv(k) => k.put(doc).await,
        }
    }
}

fn country(n: u32) -> String {
    let letters = [b'A' + (n / 26 % 26) as u8, b'A' + (n % 26) as u8];
    String::from_utf8_lossy(&letters).into_owned()
}

fn probe(i: u32) -> Probe {
    let id = 100_000 + i;
    serde_json::from_value(json!({
        "apiVersion": "vantage.dev/v1alpha1", "kind": "Probe",
        "metadata": {"name": format!("probe-{id}"), "resourceVersion": "1"},
        "spec": {
            "id": id,
            "public_key": format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{id:0>32}"),
            "enabled": !i.is_multiple_of(50),
            "country_code": country(i % 60),
            "asn_v4": 64_512 + i % 300,
            "prefix_v4": format!("10.{}.{}.0/24", (i / 256) % 256, i % 256),
            "location": {"latitude": f64::from(i % 140) - 70.0, "longitude": f64::from(i % 360) - 180.0},
            "tags": if i.is_multiple_of(3) { vec!["system-ipv4-works", "home"] } else { vec!["system-ipv4-works"] },
        }
    }))
    .expect("probe")
}

fn measurement(i: u32, namespaces: u32) -> Measurement {
    let kind = ["ping", "traceroute", "dns", "http"][(i % 4) as usize];
    let mut spec = json!({
        "type": kind, "target": "example.net", "interval": 300 + 60 * (i % 10),
        "probes": [
            {"type": "country", "value": country(i % 60), "requested": 10},
            {"type": "asn", "value": format!("{}", 64_512 + i % 300), "requested": 5,
             "tags": {"include": ["system-ipv4-works"]}},
            {"type": "area", "value": "WW", "requested": 20, "tags": {"exclude": ["home"]}},
        ]
    });
    if kind == "dns" {
        spec["query_argument"] = json!("example.net");
    }
    serde_json::from_value(json!({
        "apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement",
        "metadata": {"name": format!("m-{i}"), "namespace": format!("tenant-{}", i % namespaces),
                     "generation": 1, "resourceVersion": "1", "uid": format!("uid-{i}"),
                     "finalizers": [FINALIZER]},
        "spec": spec
    }))
    .expect("measurement")
}

fn policy(ns: u32) -> TenantPolicy {
    serde_json::from_value(json!({
        "apiVersion": "vantage.dev/v1alpha1", "kind": "TenantPolicy",
        "metadata": {"name": "default", "namespace": format!("tenant-{ns}"), "resourceVersion": "1"},
        "spec": {"max_concurrent_measurements": 1000, "max_probes_per_measurement": 100,
                 "min_interval": 60, "max_results_per_day": 100_000_000u64}
    }))
    .expect("policy")
}

fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Run {
    apply_to_published: Duration,
    reconcile_pass: Duration,
    first_sync: Duration,
    resync: Duration,
    resync_sync: Duration,
    docs: usize,
    admitted: usize,
}

/// Reconcile every measurement (as the Controller would, `concurrency` at once), feed
/// each new status back into the store (as the watch would), then sync schedules.
async fn pass(
    ctx: &Arc<Ctx<Ids, Publisher>>,
    writer: &Arc<Mutex<Writer<Measurement>>>,
    concurrency: usize,
) -> anyhow::Result<usize> {
    let all = ctx.measurements.state();
    let admitted = AtomicUsize::new(0);
    futures::stream::iter(all)
        .for_each_concurrent(concurrency, |m| {
            let ctx = ctx.clone();
            let writer = writer.clone();
            let admitted = &admitted;
            async move {
                let mut m = (*m).clone();
                // The reconciler patches status; read back what it would see from the watch.
                if reconcile(Arc::new(m.clone()), ctx.clone()).await.is_err() {
                    return;
                }
                let status = recorded_status(&m);
                if let Some(s) = status {
                    if vantage_operator::limits::is_admitted_state(s.state) {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    m.status = Some(s);
                    if let Ok(mut w) = writer.lock() {
                        w.apply_watcher_event(&watcher::Event::Apply(m));
                    }
                }
            }
        })
        .await;
    Ok(admitted.into_inner())
}

/// The status the last patch for `m` carried (kept by the recording fake below).
fn recorded_status(m: &Measurement) -> Option<MeasurementStatus> {
    LAST_STATUS
        .lock()
        .ok()?
        .remove(&(m.metadata.namespace.clone()?, m.metadata.name.clone()?))
        .or_else(|| m.status.clone())
}

static LAST_STATUS: std::sync::LazyLock<
    Mutex<std::collections::HashMap<(String, String), MeasurementStatus>>,
> = std::sync::LazyLock::new(Default::default);

/// The fake API: answers every status patch at once with the object carrying the
/// patched status, and remembers the status for [`recorded_status`].
fn recording_api(
    handle: mock::Handle<Request<Body>, Response<Body>>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut handle = pin!(handle);
        let mut n = 0;
        while let Some((req, send)) = handle.next_request().await {
            n += 1;
            let path = req.uri().path().to_owned();
            let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let parts: Vec<&str> = path.split('/').collect();
            let (ns, name) = match parts.iter().position(|p| *p == "namespaces") {
                Some(i) if parts.len() > i + 3 => {
                    (parts[i + 1].to_owned(), parts[i + 3].to_owned())
                }
                _ => ("default".to_owned(), "unknown".to_owned()),
            };
            if let Some(status) = body
                .get("status")
                .and_then(|s| serde_json::from_value::<MeasurementStatus>(s.clone()).ok())
            {
                if let Ok(mut last) = LAST_STATUS.lock() {
                    last.insert((ns.clone(), name.clone()), status);
                }
            }
            let obj = json!({
                "apiVersion": "vantage.dev/v1alpha1", "kind": "Measurement",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"type": "ping", "target": "example.net", "probes": []},
                "status": body.get("status").cloned().unwrap_or(Value::Null),
            });
            send.send_response(Response::new(Body::from(
                serde_json::to_vec(&obj).unwrap_or_default(),
            )));
        }
        n
    })
}

async fn run(a: &Args, publisher: Publisher) -> anyhow::Result<Run> {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let api = recording_api(handle);
    let client = Client::new(service, "default");

    // Probes, all connected.
    let (probes, mut probe_writer) = reflector::store::<Probe>();
    let sessions = Sessions::default();
    for i in 0..a.probes {
        let p = probe(i);
        sessions.up(Session {
            v: 1,
            probe_id: p.spec.id,
            controller: format!("ctl-{}", i % 4),
            address: "192.0.2.1".into(),
            connected_since_ms: 0,
            fw: 5020,
        });
        probe_writer.apply_watcher_event(&watcher::Event::Apply(p));
    }
    let (policies, mut policy_writer) = reflector::store::<TenantPolicy>();
    for ns in 0..a.namespaces {
        policy_writer.apply_watcher_event(&watcher::Event::Apply(policy(ns)));
    }
    let (measurements, msm_writer) = reflector::store::<Measurement>();
    let writer = Arc::new(Mutex::new(msm_writer));
    let ctx = Arc::new(Ctx {
        client,
        probes,
        measurements,
        policies,
        ledger: Arc::new(Ledger::default()),
        events: Events::Memory(Arc::default()),
        candidates: Default::default(),
        sessions,
        stats: ResultStats::default(),
        ids: Ids(AtomicU64::new(1_000_001)),
        schedules: tokio::sync::Mutex::new(Syncer::default()),
        publisher,
        sync_requested: tokio::sync::Notify::new(),
        metrics: Metrics::default(),
    });

    // Apply: 1,000 new Measurements arrive.
    let start = Instant::now();
    if let Ok(mut w) = writer.lock() {
        for i in 0..a.measurements {
            w.apply_watcher_event(&watcher::Event::Apply(measurement(i, a.namespaces)));
        }
    }
    let admitted = pass(&ctx, &writer, a.concurrency).await?;
    let reconcile_pass = start.elapsed();
    let before_sync = Instant::now();
    ctx.sync_schedules().await?;
    let first_sync = before_sync.elapsed();
    let apply_to_published = start.elapsed();
    let docs = ctx.metrics.schedules_published.get() as usize;

    // Full resync: everything again, nothing changed.
    let start = Instant::now();
    pass(&ctx, &writer, a.concurrency).await?;
    let before_sync = Instant::now();
    ctx.sync_schedules().await?;
    let resync_sync = before_sync.elapsed();
    let resync = start.elapsed();
    let resync_docs = ctx.metrics.schedules_published.get() as usize - docs;
    if resync_docs != 0 {
        bail!("a resync with nothing changed wrote {resync_docs} schedules");
    }
    let probes_with_tasks: BTreeSet<u32> = ctx
        .measurements
        .state()
        .iter()
        .filter_map(|m| m.status.as_ref())
        .flat_map(|s| s.probes.clone())
        .collect();
    if probes_with_tasks.len() != docs {
        bail!(
            "{} probes have tasks but {docs} schedules were published",
            probes_with_tasks.len()
        );
    }
    drop(ctx);
    api.await.context("fake API")?;
    Ok(Run {
        apply_to_published,
        reconcile_pass,
        first_sync,
        resync,
        resync_sync,
        docs,
        admitted,
    })
}

fn print(name: &str, r: &Run) {
    println!(
        "{name:<10} apply→published {:>7.0} ms (reconcile {:>6.0} ms + sync {:>6.0} ms, {} schedules, {} admitted) | full resync {:>6.0} ms (sync {:>4.0} ms)",
        r.apply_to_published.as_secs_f64() * 1e3,
        r.reconcile_pass.as_secs_f64() * 1e3,
        r.first_sync.as_secs_f64() * 1e3,
        r.docs,
        r.admitted,
        r.resync.as_secs_f64() * 1e3,
        r.resync_sync.as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    println!(
        "operator benchmark: {} probes, {} measurements in {} namespaces (TenantPolicy in each), {} reconciles at once",
        a.probes, a.measurements, a.namespaces, a.concurrency
    );
    let (rss0, _) = rss_kib();
    let memory = run(&a, Publisher::Memory(Memory::default())).await?;
    let (rss_mem, hwm_mem) = rss_kib();
    print("memory", &memory);

    let mut kv_run = None;
    if let Ok(url) = std::env::var("NATS_URL") {
        let nc = async_nats::connect(&url)
            .await
            .with_context(|| format!("cannot connect to NATS at {url}"))?;
        let js = async_nats::jetstream::new(nc);
        let bucket = "vantage-bench-schedules";
        let _ = js.delete_key_value(bucket).await;
        let kv = js
            .create_key_value(async_nats::jetstream::kv::Config {
                bucket: bucket.into(),
                history: 1,
                ..Default::default()
            })
            .await
            .context("cannot create the scratch KV bucket")?;
        let r = run(&a, Publisher::Kv(Box::new(KvSchedules(kv)))).await;
        let _ = js.delete_key_value(bucket).await;
        let r = r?;
        print("nats-kv", &r);
        kv_run = Some(r);
    } else {
        println!("nats-kv    skipped: set NATS_URL (source /tmp/vantage-stack/env)");
    }
    let (rss_end, hwm_end) = rss_kib();
    println!(
        "RSS: {:.1} MiB at start, {:.1} MiB after the in-memory run (peak {:.1} MiB), {:.1} MiB at the end (peak {:.1} MiB)",
        rss0 as f64 / 1024.0,
        rss_mem as f64 / 1024.0,
        hwm_mem as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        hwm_end as f64 / 1024.0
    );
    if let Some(kv) = kv_run {
        println!(
            "ratio: NATS KV publishing / in-memory publishing of the first sync = {:.1}x; apply→published {:.2}x",
            kv.first_sync.as_secs_f64() / memory.first_sync.as_secs_f64().max(1e-9),
            kv.apply_to_published.as_secs_f64() / memory.apply_to_published.as_secs_f64().max(1e-9)
        );
    }
    println!(
        "ratio: full resync / first apply (in memory) = {:.2}",
        memory.resync.as_secs_f64() / memory.apply_to_published.as_secs_f64().max(1e-9)
    );
    Ok(())
}
