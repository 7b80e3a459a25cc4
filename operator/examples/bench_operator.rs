//! Benchmark: the operator's Measurement path, as production runs it, with 10,000 Probes
//! and 1,000 Measurements, in process.
//!
//! What is production's: the Measurement Controller (`run::measurement_controller`, at
//! most `RECONCILE_CONCURRENCY` reconciles at once) with its reflector store, fed by its
//! own watcher, which decodes every watch event from the JSON bytes an API server sends;
//! the reconciler (finalizer, TenantPolicy limits, validation, selection, id, status
//! patch, Kubernetes event); ids from `KvIds` and schedules through `KvSchedules` on the
//! stack's NATS (`NATS_URL`), in two scratch buckets deleted afterwards; the debounced
//! schedule loop.
//!
//! What is not: the Kubernetes API. The kmock stand-in cannot hold this load, so the API
//! is a fake on a tower-test channel that keeps the objects, answers lists, finalizer
//! patches (JSON Patch with its `test`), status applies (server-side apply by one field
//! manager: the status sent is the status) and event writes at once,
//! and answers the Controller's watch with every event after the requested
//! resourceVersion (each answer ends the watch, and the watcher watches again from the
//! last resourceVersion, as after an API server's watch timeout). Probes (all
//! connected), sessions and TenantPolicies are put into their stores directly.
//!
//! "Apply" is every Measurement created at once, without the finalizer, so each takes the
//! production path: a reconcile that adds the finalizer, one that allocates the id and
//! writes status, one that sees its own status. Reports: time from apply to every status
//! written and to every schedule published (the schedule loop's last KV put); API writes;
//! ids (checked consecutive); a steady-state window (every Measurement requeued each 5 s)
//! with its CPU time; RSS (VmRSS, VmHWM; includes the fake API's copy of the objects).
//!
//! Load: the measurements on each probe once every status is written (max, mean over
//! the eligible probes, probes used), beside what the selection before issue 15 (lowest
//! probe ids per ASN, no load) gives for the same measurements, computed offline.
//! Measurements are world-wide, 35 probes each (`--sources ww`, the default), or a
//! country, an ASN and a world-wide source (`--sources mixed`, 10 + 5 + 20).
//!
//! ```sh
//! source /tmp/vantage-stack/env
//! cargo run --release -p vantage-operator --example bench_operator -- --probes 10000 --measurements 1000
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller;
use kube::runtime::reflector;
use kube::runtime::watcher;
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tower_test::mock;
use vantage_core::definition::{Source, DEFAULT_MAX_REQUESTED};
use vantage_core::nats::{ScheduleDoc, Session};
use vantage_crd::Measurement;
use vantage_crd::{Probe, TenantPolicy};
use vantage_operator::events::Events;
use vantage_operator::limits::Ledger;
use vantage_operator::load::{ProbeLoad, DEFAULT_MAX_MEASUREMENTS_PER_PROBE};
use vantage_operator::measurement::{
    error_policy, reconcile, Ctx, KvIds, Metrics, FIRST_MSM_ID, RECONCILE_CONCURRENCY,
};
use vantage_operator::probes::Sessions;
use vantage_operator::schedules::{desired, KvSchedules, PublishError, SchedulePublisher, Syncer};
use vantage_operator::selection::{matches, Candidate};
use vantage_operator::stats::ResultStats;

const GROUP_VERSION: &str = "vantage.dev/v1alpha1";
/// The steady-state window: two requeue periods of the reconciler.
const STEADY: Duration = Duration::from_secs(10);

struct Args {
    probes: u32,
    measurements: u32,
    namespaces: u32,
    concurrency: u16,
    /// Give up waiting for every schedule after this long.
    give_up: Duration,
    /// The measurements' sources: one world-wide source of 35, or mixed.
    mixed: bool,
    /// `--max-measurements-per-probe` (0: no cap).
    max_per_probe: u32,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        probes: 10_000,
        measurements: 1_000,
        namespaces: 10,
        concurrency: RECONCILE_CONCURRENCY,
        give_up: Duration::from_secs(600),
        mixed: false,
        max_per_probe: DEFAULT_MAX_MEASUREMENTS_PER_PROBE,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--probes" => a.probes = value.parse()?,
            "--measurements" => a.measurements = value.parse()?,
            "--namespaces" => a.namespaces = value.parse()?,
            "--concurrency" => a.concurrency = value.parse()?,
            "--give-up-secs" => a.give_up = Duration::from_secs(value.parse()?),
            "--sources" => {
                a.mixed = match value.as_str() {
                    "ww" => false,
                    "mixed" => true,
                    other => bail!("--sources {other}: use ww or mixed"),
                }
            }
            "--max-measurements-per-probe" => a.max_per_probe = value.parse()?,
            other => bail!(
                "unknown flag {other}; use --probes, --measurements, --namespaces, \
                 --concurrency (default: RECONCILE_CONCURRENCY = {RECONCILE_CONCURRENCY}), \
                 --give-up-secs (default 600), --sources ww|mixed (default ww), \
                 --max-measurements-per-probe (default {DEFAULT_MAX_MEASUREMENTS_PER_PROBE})"
            ),
        }
    }
    Ok(a)
}

/// `KvSchedules`, remembering what it published (probe → measurement ids) and when,
/// and the puts NATS refused.
struct Recording {
    kv: KvSchedules,
    published: Mutex<HashMap<u32, Vec<u64>>>,
    puts: AtomicU64,
    last_put: Mutex<Option<Instant>>,
    most_tasks: AtomicU64,
    /// JSON size of the schedule with the most tasks.
    largest_bytes: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Recording {
    fn new(kv: KvSchedules) -> Self {
        Self {
            kv,
            published: Mutex::default(),
            puts: AtomicU64::new(0),
            last_put: Mutex::default(),
            most_tasks: AtomicU64::new(0),
            largest_bytes: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_error: Mutex::default(),
        }
    }
}

impl SchedulePublisher for Recording {
    async fn put(&self, doc: &ScheduleDoc) -> Result<(), PublishError> {
        if let Err(e) = self.kv.put(doc).await {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut last) = self.last_error.lock() {
                *last = Some(format!("{e} ({} tasks)", doc.tasks.len()));
            }
            return Err(e);
        }
        self.puts.fetch_add(1, Ordering::Relaxed);
        let tasks = doc.tasks.len() as u64;
        if self.most_tasks.fetch_max(tasks, Ordering::Relaxed) < tasks {
            let bytes = serde_json::to_vec(doc).map(|b| b.len()).unwrap_or(0);
            self.largest_bytes.store(bytes as u64, Ordering::Relaxed);
        }
        if let Ok(mut published) = self.published.lock() {
            if doc.tasks.is_empty() {
                published.remove(&doc.probe_id);
            } else {
                published.insert(doc.probe_id, doc.tasks.iter().map(|t| t.msm_id).collect());
            }
        }
        if let Ok(mut last) = self.last_put.lock() {
            *last = Some(Instant::now());
        }
        Ok(())
    }
}

fn country(n: u32) -> String {
    let letters = [b'A' + (n / 26 % 26) as u8, b'A' + (n % 26) as u8];
    String::from_utf8_lossy(&letters).into_owned()
}

fn probe(i: u32) -> anyhow::Result<Probe> {
    let id = 100_000 + i;
    Ok(serde_json::from_value(json!({
        "apiVersion": GROUP_VERSION, "kind": "Probe",
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
    }))?)
}

/// A Measurement as `kubectl apply` sends it: no finalizer, no status; the fake API
/// stamps uid, resourceVersion and generation.
fn measurement(i: u32, namespaces: u32, mixed: bool) -> Value {
    let kind = ["ping", "traceroute", "dns", "http"][(i % 4) as usize];
    let probes = if mixed {
        json!([
            {"type": "country", "value": country(i % 60), "requested": 10},
            {"type": "asn", "value": format!("{}", 64_512 + i % 300), "requested": 5,
             "tags": {"include": ["system-ipv4-works"]}},
            {"type": "area", "value": "WW", "requested": 20, "tags": {"exclude": ["home"]}},
        ])
    } else {
        json!([{"type": "area", "value": "WW", "requested": 35}])
    };
    let mut spec = json!({
        "type": kind, "target": "example.net", "interval": 300 + 60 * (i % 10),
        "probes": probes
    });
    if kind == "dns" {
        spec["query_argument"] = json!("example.net");
    }
    json!({
        "apiVersion": GROUP_VERSION, "kind": "Measurement",
        "metadata": {"name": format!("m-{i}"), "namespace": format!("tenant-{}", i % namespaces)},
        "spec": spec
    })
}

fn policy(ns: u32) -> anyhow::Result<TenantPolicy> {
    Ok(serde_json::from_value(json!({
        "apiVersion": GROUP_VERSION, "kind": "TenantPolicy",
        "metadata": {"name": "default", "namespace": format!("tenant-{ns}"), "resourceVersion": "1"},
        "spec": {"max_concurrent_measurements": 1000, "max_probes_per_measurement": 100,
                 "min_interval": 60, "max_results_per_day": 100_000_000u64}
    }))?)
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

/// CPU time of this process (user + system), from /proc/self/stat (USER_HZ = 100).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3 of the full line, utime 14 and stime 15.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// API calls the fake API answered, by kind.
#[derive(Default)]
struct Calls {
    lists: AtomicU64,
    watches: AtomicU64,
    finalizer_patches: AtomicU64,
    status_patches: AtomicU64,
    events: AtomicU64,
    refused: AtomicU64,
    last_status_patch: Mutex<Option<Instant>>,
}

impl Calls {
    fn writes(&self) -> u64 {
        self.finalizer_patches.load(Ordering::Relaxed)
            + self.status_patches.load(Ordering::Relaxed)
            + self.events.load(Ordering::Relaxed)
    }
}

type Reply = mock::SendResponse<Response<Body>>;

/// The fake Kubernetes API: the Measurement objects, their resourceVersions, the watch
/// events not yet delivered, and the Controller's watch request while nothing is new.
struct FakeApi {
    /// Kept serialized: the fake's memory counts in the RSS figures.
    objects: HashMap<(String, String), Vec<u8>>,
    rv: u64,
    log: VecDeque<(u64, Vec<u8>)>,
    held: Option<(u64, Reply)>,
    calls: Arc<Calls>,
}

fn respond(send: Reply, code: StatusCode, body: &Value) {
    let mut resp = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *resp.status_mut() = code;
    send.send_response(resp);
}

fn status_error(code: StatusCode, reason: &str, message: String) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code.as_u16()})
}

/// The JSON Patch operations kube's finalizer helper sends: `test`, `add` (to a path or
/// appended with `-`) and `remove`, on `/metadata/finalizers`.
fn json_patch(obj: &mut Value, ops: &[Value]) -> Result<(), String> {
    for op in ops {
        let path = op["path"].as_str().unwrap_or_default();
        match op["op"].as_str().unwrap_or_default() {
            "test" => {
                let have = obj.pointer(path).cloned().unwrap_or(Value::Null);
                if have != op["value"] {
                    return Err(format!("test of {path} failed: {have} != {}", op["value"]));
                }
            }
            "add" | "remove" => {
                let (parent, last) = path.rsplit_once('/').ok_or("bad path")?;
                let value = op.get("value").cloned();
                let target = obj.pointer_mut(parent).ok_or("no such parent")?;
                match (target, last, value) {
                    (Value::Array(list), "-", Some(v)) => list.push(v),
                    (Value::Array(list), i, None) => {
                        let i: usize = i.parse().map_err(|_| "bad index")?;
                        if i >= list.len() {
                            return Err("index out of range".into());
                        }
                        list.remove(i);
                    }
                    (Value::Object(map), key, Some(v)) => {
                        map.insert(key.to_owned(), v);
                    }
                    _ => return Err(format!("unsupported operation {op}")),
                }
            }
            other => return Err(format!("unsupported operation {other}")),
        }
    }
    Ok(())
}

impl FakeApi {
    /// Store a new version of an object and queue its watch event, as the API server.
    fn write(&mut self, key: (String, String), mut obj: Value, kind: &str) -> Value {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let event = json!({"type": kind, "object": obj});
        self.log
            .push_back((self.rv, serde_json::to_vec(&event).unwrap_or_default()));
        self.objects
            .insert(key, serde_json::to_vec(&obj).unwrap_or_default());
        obj
    }

    /// Answer the held watch with every event after its resourceVersion, if any.
    fn flush(&mut self) {
        let Some((from, _)) = &self.held else { return };
        let from = *from;
        while self.log.front().is_some_and(|(rv, _)| *rv <= from) {
            self.log.pop_front();
        }
        if self.log.is_empty() {
            return;
        }
        let Some((_, send)) = self.held.take() else {
            return;
        };
        let mut body = Vec::new();
        for (_, line) in self.log.drain(..) {
            body.extend_from_slice(&line);
            body.push(b'\n');
        }
        send.send_response(Response::new(Body::from(body)));
    }

    fn create(&mut self, objects: Vec<Value>) {
        for mut obj in objects {
            let ns = obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned();
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
            obj["metadata"]["uid"] = json!(format!("uid-{ns}-{name}"));
            obj["metadata"]["generation"] = json!(1);
            obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
            self.write((ns, name), obj, "ADDED");
        }
        self.flush();
    }

    async fn handle(&mut self, req: Request<Body>, send: Reply) {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let is_apply = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v == "application/apply-patch+yaml");
        let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let calls = self.calls.clone();
        match (method, segs.as_slice()) {
            (Method::GET, ["apis", "vantage.dev", "v1alpha1", "measurements"]) => {
                if query.split('&').any(|p| p == "watch=true") {
                    calls.watches.fetch_add(1, Ordering::Relaxed);
                    let from = query
                        .split('&')
                        .find_map(|p| p.strip_prefix("resourceVersion="))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    self.held = Some((from, send));
                    self.flush();
                } else {
                    calls.lists.fetch_add(1, Ordering::Relaxed);
                    let items: Vec<Value> = self
                        .objects
                        .values()
                        .filter_map(|b| serde_json::from_slice(b).ok())
                        .collect();
                    respond(
                        send,
                        StatusCode::OK,
                        &json!({"apiVersion": GROUP_VERSION, "kind": "MeasurementList",
                                "metadata": {"resourceVersion": self.rv.to_string()},
                                "items": items}),
                    );
                }
            }
            (
                Method::PATCH,
                ["apis", "vantage.dev", "v1alpha1", "namespaces", ns, "measurements", name, rest @ ..],
            ) => {
                let key = ((*ns).to_owned(), (*name).to_owned());
                let stored = self.objects.get(&key);
                let Some(mut obj) = stored.and_then(|b| serde_json::from_slice::<Value>(b).ok())
                else {
                    let msg = format!("measurements {name} not found");
                    respond(
                        send,
                        StatusCode::NOT_FOUND,
                        &status_error(StatusCode::NOT_FOUND, "NotFound", msg),
                    );
                    return;
                };
                let applied = match rest {
                    ["status"] => {
                        calls.status_patches.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut last) = calls.last_status_patch.lock() {
                            *last = Some(Instant::now());
                        }
                        // The operator is the status' only field manager: what it
                        // applies is the whole status.
                        if is_apply && query.contains("force=true") {
                            obj["status"] = body["status"].clone();
                            Ok(())
                        } else {
                            Err("status is written by server-side apply with force".into())
                        }
                    }
                    [] => {
                        calls.finalizer_patches.fetch_add(1, Ordering::Relaxed);
                        match body.as_array() {
                            Some(ops) => json_patch(&mut obj, ops),
                            None => Err("only JSON Patch is expected here".into()),
                        }
                    }
                    _ => Err(format!("unexpected path {path}")),
                };
                match applied {
                    Ok(()) => {
                        let obj = self.write(key, obj, "MODIFIED");
                        respond(send, StatusCode::OK, &obj);
                        self.flush();
                    }
                    Err(message) => {
                        calls.refused.fetch_add(1, Ordering::Relaxed);
                        let code = StatusCode::UNPROCESSABLE_ENTITY;
                        respond(send, code, &status_error(code, "Invalid", message));
                    }
                }
            }
            (Method::POST | Method::PATCH, ["apis", "events.k8s.io", "v1", "namespaces", ..]) => {
                calls.events.fetch_add(1, Ordering::Relaxed);
                respond(send, StatusCode::CREATED, &body);
            }
            (method, _) => {
                calls.refused.fetch_add(1, Ordering::Relaxed);
                let code = StatusCode::NOT_FOUND;
                let msg = format!("{method} {path} is not served by the fake API");
                respond(send, code, &status_error(code, "NotFound", msg));
            }
        }
    }
}

/// Run the fake API until the handle closes; `create` takes objects to create.
fn fake_api(
    handle: mock::Handle<Request<Body>, Response<Body>>,
    mut create: mpsc::UnboundedReceiver<Vec<Value>>,
    calls: Arc<Calls>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut handle = pin!(handle);
        let mut api = FakeApi {
            objects: HashMap::new(),
            rv: 1,
            log: VecDeque::new(),
            held: None,
            calls,
        };
        loop {
            tokio::select! {
                req = handle.next_request() => match req {
                    Some((req, send)) => api.handle(req, send).await,
                    None => break,
                },
                objects = create.recv() => match objects {
                    Some(objects) => api.create(objects),
                    None => break,
                },
            }
        }
    })
}

/// Measurements per eligible probe (enabled and connected).
struct LoadStats {
    eligible: usize,
    used: usize,
    max: usize,
    mean: f64,
}

impl LoadStats {
    fn of(eligible: &[u32], load: &HashMap<u32, usize>) -> Self {
        let loads: Vec<usize> = eligible
            .iter()
            .map(|p| load.get(p).copied().unwrap_or(0))
            .collect();
        Self {
            eligible: eligible.len(),
            used: loads.iter().filter(|n| **n > 0).count(),
            max: loads.iter().copied().max().unwrap_or(0),
            mean: loads.iter().sum::<usize>() as f64 / eligible.len().max(1) as f64,
        }
    }

    fn line(&self) -> String {
        format!(
            "max {}, mean {:.2} (max/mean {:.2}), {} of {} eligible probes used ({:.1} %)",
            self.max,
            self.mean,
            self.max as f64 / self.mean.max(f64::MIN_POSITIVE),
            self.used,
            self.eligible,
            100.0 * self.used as f64 / self.eligible.max(1) as f64
        )
    }
}

/// The selection before issue 15, for comparison: round-robin over ASNs (ASNs no earlier
/// source used first, then by ASN), lowest probe ids first; no load, no seed.
fn old_select(sources: &[Source], candidates: &[Candidate]) -> Vec<u32> {
    let none = HashMap::new();
    let mut taken = BTreeSet::new();
    let mut used_asns: BTreeSet<Option<u32>> = BTreeSet::new();
    for source in sources {
        let mut by_asn: BTreeMap<Option<u32>, Vec<u32>> = BTreeMap::new();
        for c in candidates {
            if c.enabled && c.connected && !taken.contains(&c.id) && matches(source, c, &none) {
                by_asn.entry(c.asn).or_default().push(c.id);
            }
        }
        let mut groups: Vec<(Option<u32>, std::vec::IntoIter<u32>)> = by_asn
            .into_iter()
            .map(|(asn, mut ids)| {
                ids.sort_unstable();
                (asn, ids.into_iter())
            })
            .collect();
        groups.sort_by_key(|(asn, _)| (used_asns.contains(asn), *asn));
        let mut wanted = source.requested as usize;
        while wanted > 0 {
            let mut progressed = false;
            for (asn, group) in &mut groups {
                if wanted == 0 {
                    break;
                }
                if let Some(id) = group.next() {
                    taken.insert(id);
                    used_asns.insert(*asn);
                    wanted -= 1;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
    }
    taken.into_iter().collect()
}

/// The load the old selection gives the same measurements, chosen one after the other.
fn old_load(state: &[Arc<Measurement>], candidates: &[Candidate]) -> HashMap<u32, usize> {
    let mut load = HashMap::new();
    for m in state {
        let Ok((_, sources)) = vantage_operator::plan::validate(m, 0) else {
            continue;
        };
        for p in old_select(&sources, candidates) {
            *load.entry(p).or_default() += 1;
        }
    }
    load
}

struct Report {
    load: LoadStats,
    old_load: LoadStats,
    statuses_written: Duration,
    published: Duration,
    reconciles: u64,
    failures: u64,
    puts: u64,
    most_tasks: u64,
    largest_bytes: u64,
    schedules: usize,
    admitted: usize,
    steady_reconciles: u64,
    steady_writes: u64,
    steady_puts: u64,
    steady_cpu: Duration,
    rss_loaded: (u64, u64),
}

async fn scratch_bucket(
    js: &async_nats::jetstream::Context,
    name: &str,
) -> anyhow::Result<async_nats::jetstream::kv::Store> {
    let _ = js.delete_key_value(name).await;
    js.create_key_value(async_nats::jetstream::kv::Config {
        bucket: name.into(),
        history: 1,
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await
    .with_context(|| format!("cannot create the scratch KV bucket {name}"))
}

async fn run(
    a: &Args,
    meta: async_nats::jetstream::kv::Store,
    schedules: async_nats::jetstream::kv::Store,
) -> anyhow::Result<Report> {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let calls = Arc::new(Calls::default());
    let (create, create_rx) = mpsc::unbounded_channel();
    let api = fake_api(handle, create_rx, calls.clone());
    let client = Client::new(service, "default");

    // Probes, all connected; TenantPolicies.
    let (probes, mut probe_writer) = reflector::store::<Probe>();
    let sessions = Sessions::default();
    for i in 0..a.probes {
        let p = probe(i)?;
        sessions.up(Session {
            v: 1,
            probe_id: p.spec.id,
            controller: format!("ctl-{}", i % 4),
            address: "192.0.2.1".into(),
            connected_since_ms: 0,
            fw: 5020,
            schedule: vantage_core::nats::Delivery::Delivered,
        });
        probe_writer.apply_watcher_event(&watcher::Event::Apply(p));
    }
    let (policies, mut policy_writer) = reflector::store::<TenantPolicy>();
    for ns in 0..a.namespaces {
        policy_writer.apply_watcher_event(&watcher::Event::Apply(policy(ns)?));
    }

    let mut msm_controller = vantage_operator::run::measurement_controller(client.clone());
    if a.concurrency != RECONCILE_CONCURRENCY {
        msm_controller =
            msm_controller.with_config(controller::Config::default().concurrency(a.concurrency));
    }
    let publisher = Recording::new(KvSchedules(schedules));
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        probes,
        measurements: msm_controller.store(),
        policies,
        ledger: Arc::new(Ledger::default()),
        load: Arc::new(ProbeLoad::new(Some(a.max_per_probe), DEFAULT_MAX_REQUESTED)),
        events: Events::kube(client),
        candidates: Default::default(),
        sessions,
        stats: ResultStats::default(),
        ids: KvIds::new(meta),
        schedules: tokio::sync::Mutex::new(Syncer::default()),
        publisher,
        sync_requested: tokio::sync::Notify::new(),
        metrics: Metrics::default(),
    });
    let schedule_loop = tokio::spawn(ctx.clone().schedule_loop());
    let controller_task = tokio::spawn(
        msm_controller
            .run(reconcile, error_policy, ctx.clone())
            .for_each(|r| async move {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "reconcile result");
                }
            }),
    );
    // The Controller has listed (nothing yet) and is watching.
    let ready = Instant::now();
    while calls.watches.load(Ordering::Relaxed) == 0 {
        if ready.elapsed() > Duration::from_secs(10) {
            bail!("the Controller did not start watching");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rss_loaded = rss_kib();
    println!(
        "loaded: {} probes, RSS {:.1} MiB",
        a.probes,
        rss_loaded.0 as f64 / 1024.0
    );

    // Apply: every Measurement created at once.
    let start = Instant::now();
    create
        .send(
            (0..a.measurements)
                .map(|i| measurement(i, a.namespaces, a.mixed))
                .collect(),
        )
        .context("fake API gone")?;
    let n = a.measurements as usize;
    let mut next_progress = Duration::from_secs(30);
    let mut compared_at_puts = None;
    let mut all_statuses: Option<Duration> = None;
    let (statuses_written, published) = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let puts = ctx.publisher.puts.load(Ordering::Relaxed);
        let state = ctx.measurements.state();
        let with_status = state
            .iter()
            .filter(|m| {
                m.status
                    .as_ref()
                    .is_some_and(|s| s.observed_generation == m.metadata.generation)
            })
            .count();
        if with_status == n && all_statuses.is_none() {
            all_statuses = Some(start.elapsed());
        }
        let give_up = start.elapsed() > a.give_up;
        if start.elapsed() > next_progress || give_up {
            let last_error = ctx.publisher.last_error.lock().ok().and_then(|e| e.clone());
            let progress = format!(
                "{:.0} s after apply: {with_status} of {n} statuses in the store{}, {} reconciles, \
                 {puts} schedule puts ({} refused, last: {}), RSS {:.0} MiB (peak {:.0} MiB)",
                start.elapsed().as_secs_f64(),
                all_statuses
                    .map(|t| format!(" (all at {:.1} s)", t.as_secs_f64()))
                    .unwrap_or_default(),
                ctx.metrics.reconciles.get(),
                ctx.publisher.failed.load(Ordering::Relaxed),
                last_error.as_deref().unwrap_or("none"),
                rss_kib().0 as f64 / 1024.0,
                rss_kib().1 as f64 / 1024.0,
            );
            if give_up {
                bail!("gave up: {progress}");
            }
            println!("{progress}");
            next_progress += Duration::from_secs(30);
        }
        // Done when every status is in the store, no sync is running or due (no put
        // for longer than the loop's debounce), and what was published is what every
        // status asks for. That comparison is costly: once per quiet spell.
        let last_put = ctx.publisher.last_put.lock().ok().and_then(|l| *l);
        let quiet = last_put.is_some_and(|t| t.elapsed() > Duration::from_millis(400))
            && ctx.schedules.try_lock().is_ok();
        if with_status < n || !quiet || compared_at_puts == Some(puts) {
            continue;
        }
        compared_at_puts = Some(puts);
        let want: HashMap<u32, Vec<u64>> = desired(&state)
            .into_iter()
            .map(|(p, tasks)| (p, tasks.iter().map(|t| t.msm_id).collect()))
            .collect();
        let done = ctx
            .publisher
            .published
            .lock()
            .is_ok_and(|published| *published == want);
        if !done {
            continue;
        }
        let last_status = calls.last_status_patch.lock().ok().and_then(|l| *l);
        match (last_status, last_put) {
            (Some(s), Some(p)) => break (s - start, p - start),
            _ => bail!("every measurement reconciled but nothing was written"),
        }
    };

    // Checks: ids consecutive from FIRST_MSM_ID; one schedule per probe with tasks.
    let state = ctx.measurements.state();
    let ids: BTreeSet<u64> = state.iter().filter_map(|m| m.status.as_ref()?.id).collect();
    let with_id = state
        .iter()
        .filter(|m| m.status.as_ref().is_some_and(|s| s.id.is_some()))
        .count();
    if ids.len() != with_id {
        bail!("duplicate ids: {with_id} measurements, {} ids", ids.len());
    }
    let want: BTreeSet<u64> = (FIRST_MSM_ID..FIRST_MSM_ID + ids.len() as u64).collect();
    if ids != want {
        bail!("ids are not consecutive from {FIRST_MSM_ID}");
    }
    let admitted = state
        .iter()
        .filter(|m| {
            m.status
                .as_ref()
                .is_some_and(|s| vantage_operator::limits::is_admitted_state(s.state))
        })
        .count();
    let with_tasks: BTreeMap<u32, Vec<vantage_core::definition::Task>> = desired(&state);
    let schedules = ctx.publisher.published.lock().map(|p| p.len()).unwrap_or(0);
    if with_tasks.len() != schedules {
        bail!(
            "{} probes have tasks but {schedules} have a schedule",
            with_tasks.len()
        );
    }
    // Load: measurements per eligible probe, now and with the old selection.
    let candidates: Vec<Candidate> = ctx
        .probes
        .state()
        .iter()
        .map(|p| Candidate::from_probe(p, true))
        .collect();
    let eligible: Vec<u32> = candidates
        .iter()
        .filter(|c| c.enabled && c.connected)
        .map(|c| c.id)
        .collect();
    let load: HashMap<u32, usize> = with_tasks.iter().map(|(p, t)| (*p, t.len())).collect();
    let load = LoadStats::of(&eligible, &load);
    let old_load = LoadStats::of(&eligible, &old_load(&state, &candidates));
    drop(state);
    let reconciles = ctx.metrics.reconciles.get();
    let failures: u64 = ["kube", "finalizer", "nats", "ids"]
        .iter()
        .map(|k| {
            ctx.metrics
                .failures
                .get_or_create(&vec![("kind".to_owned(), (*k).to_owned())])
                .get()
        })
        .sum();
    let puts = ctx.publisher.puts.load(Ordering::Relaxed);
    let most_tasks = ctx.publisher.most_tasks.load(Ordering::Relaxed);
    let largest_bytes = ctx.publisher.largest_bytes.load(Ordering::Relaxed);

    // Steady state: every Measurement is requeued each 5 s; nothing should change.
    let (r0, w0, p0, c0) = (
        ctx.metrics.reconciles.get(),
        calls.writes(),
        ctx.publisher.puts.load(Ordering::Relaxed),
        cpu_time(),
    );
    tokio::time::sleep(STEADY).await;
    let steady_reconciles = ctx.metrics.reconciles.get() - r0;
    let steady_writes = calls.writes() - w0;
    let steady_puts = ctx.publisher.puts.load(Ordering::Relaxed) - p0;
    let steady_cpu = cpu_time().saturating_sub(c0);

    controller_task.abort();
    schedule_loop.abort();
    let _ = controller_task.await;
    let _ = schedule_loop.await;
    drop(ctx);
    drop(create);
    api.abort();
    let _ = api.await;
    let refused = calls.refused.load(Ordering::Relaxed);
    if refused > 0 {
        println!("note: the fake API refused {refused} requests");
    }
    println!(
        "API calls: {} lists, {} watches, {} finalizer patches, {} status patches, {} events",
        calls.lists.load(Ordering::Relaxed),
        calls.watches.load(Ordering::Relaxed),
        calls.finalizer_patches.load(Ordering::Relaxed),
        calls.status_patches.load(Ordering::Relaxed),
        calls.events.load(Ordering::Relaxed),
    );
    Ok(Report {
        load,
        old_load,
        statuses_written,
        published,
        reconciles,
        failures,
        puts,
        most_tasks,
        largest_bytes,
        schedules,
        admitted,
        steady_reconciles,
        steady_writes,
        steady_puts,
        steady_cpu,
        rss_loaded,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let url = std::env::var("NATS_URL")
        .context("set NATS_URL (source /tmp/vantage-stack/env): ids and schedules go to NATS KV")?;
    println!(
        "operator benchmark: {} probes, {} measurements ({}) in {} namespaces (TenantPolicy in each), \
         Controller concurrency {} (RECONCILE_CONCURRENCY = {RECONCILE_CONCURRENCY}), \
         --max-measurements-per-probe {}, NATS at {url}",
        a.probes,
        a.measurements,
        if a.mixed {
            "country 10 + ASN 5 + WW 20 probes"
        } else {
            "WW, 35 probes"
        },
        a.namespaces,
        a.concurrency,
        a.max_per_probe,
    );
    let rss0 = rss_kib();
    let nc = async_nats::connect(&url)
        .await
        .with_context(|| format!("cannot connect to NATS at {url}"))?;
    let js = async_nats::jetstream::new(nc);
    let (meta_bucket, schedules_bucket) = ("vantage-bench-meta", "vantage-bench-schedules");
    let meta = scratch_bucket(&js, meta_bucket).await?;
    let schedules = scratch_bucket(&js, schedules_bucket).await?;
    let cpu0 = cpu_time();
    let r = run(&a, meta, schedules).await;
    let _ = js.delete_key_value(meta_bucket).await;
    let _ = js.delete_key_value(schedules_bucket).await;
    let r = r?;
    let cpu = cpu_time().saturating_sub(cpu0);
    let (rss_end, hwm) = rss_kib();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "apply → every status written {:.0} ms; → every schedule published {:.0} ms \
         ({} reconciles, {} failed; {} KV schedule puts for {} probes, at most {} tasks ({:.0} KiB) in one; \
         {} admitted, ids consecutive)",
        ms(r.statuses_written),
        ms(r.published),
        r.reconciles,
        r.failures,
        r.puts,
        r.schedules,
        r.most_tasks,
        r.largest_bytes as f64 / 1024.0,
        r.admitted,
    );
    println!(
        "steady state, {:.0} s: {} reconciles, {} API writes, {} KV puts, CPU {:.0} ms ({:.1} % of one core)",
        STEADY.as_secs_f64(),
        r.steady_reconciles,
        r.steady_writes,
        r.steady_puts,
        ms(r.steady_cpu),
        100.0 * r.steady_cpu.as_secs_f64() / STEADY.as_secs_f64(),
    );
    println!("probe load, this selection: {}", r.load.line());
    println!(
        "probe load, old selection (lowest ids per ASN, offline, same measurements): {}",
        r.old_load.line()
    );
    println!(
        "RSS: {:.1} MiB at start, {:.1} MiB with the probes loaded, {:.1} MiB at the end; peak {:.1} MiB; CPU {:.1} s in all",
        rss0.0 as f64 / 1024.0,
        r.rss_loaded.0 as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        hwm as f64 / 1024.0,
        cpu.as_secs_f64(),
    );
    Ok(())
}
