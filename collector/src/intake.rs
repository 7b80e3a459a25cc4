//! The submission API for software probes, OONI style, and the intake process around it:
//! disk queue, fastpath worker, archive uploader, fingerprint reloader, metrics.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `POST /report` | `{data_format_version, format, probe_asn, probe_cc, software_name, software_version, test_name, test_start_time, test_version}` | `{report_id, backend_version, supported_formats}` |
//! | `POST /report/{id}` | `{format: "json", content: {…}}`, optionally `Content-Encoding: zstd` | `{measurement_uid}` |
//! | `POST /report/{id}/close` | — | `{}` |
//! | `GET /api/v1/measurement/{uid}` | — | the measurement, from the queue or the archive |
//!
//! Errors are `{"error": reason}` with a 4xx status: 400 malformed JSON or body,
//! 404 unknown report or measurement, 413 body (or decompressed body) too large,
//! 415 unsupported `Content-Encoding`.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, Mutex};
use vantage_platform::store::{FastpathRow, Store, StoreError};

use crate::archive::{open_s3, Archive, ArchiveError, S3Config, UploadSummary};
use crate::fastpath::{parse_asn, Scorer};
use crate::fingerprints::{FingerprintError, FingerprintSet, Fingerprints};
use crate::queue::Queue;
use crate::uid::{content_hash, is_safe_id, new_report_id, UidClock};

/// What `POST /report` answers in `backend_version`.
pub const BACKEND_VERSION: &str = concat!("vantage-", env!("CARGO_PKG_VERSION"));

/// Body limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body on the wire (compressed or not).
    pub max_body: usize,
    /// Largest body after zstd decompression.
    pub max_decoded: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: 4 << 20,
            max_decoded: 16 << 20,
        }
    }
}

/// Everything the intake needs.
#[derive(Clone, Debug)]
pub struct IntakeConfig {
    /// Where the submission API listens (`127.0.0.1:0` picks a port).
    pub listen: SocketAddr,
    /// Where `/metrics` and `/healthz` listen; `None` serves none.
    pub metrics_addr: Option<SocketAddr>,
    pub queue_dir: PathBuf,
    pub fingerprints: PathBuf,
    pub fingerprints_reload: Duration,
    pub clickhouse_url: String,
    pub clickhouse_db: String,
    pub s3: S3Config,
    /// How often the uploader archives the queue (OONI: hourly).
    pub upload_interval: Duration,
    pub limits: Limits,
    /// Fastpath rows per INSERT at most, and how long a batch waits to fill.
    pub fastpath_batch: usize,
    pub fastpath_wait: Duration,
}

impl IntakeConfig {
    /// Defaults for everything but the addresses, paths and backends.
    pub fn new(
        queue_dir: PathBuf,
        fingerprints: PathBuf,
        clickhouse_url: &str,
        clickhouse_db: &str,
        s3: S3Config,
    ) -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            metrics_addr: None,
            queue_dir,
            fingerprints,
            fingerprints_reload: Duration::from_secs(30),
            clickhouse_url: clickhouse_url.to_owned(),
            clickhouse_db: clickhouse_db.to_owned(),
            s3,
            upload_interval: Duration::from_secs(3600),
            limits: Limits::default(),
            fastpath_batch: 1_000,
            fastpath_wait: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("disk queue {path}: {source}")]
    Queue {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Fingerprints(#[from] FingerprintError),
    #[error("the submission API stopped: {0}")]
    Stopped(String),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// The intake's metrics (`vantage_intake_*`).
#[derive(Clone, Default)]
pub struct IntakeMetrics {
    pub reports_opened: Counter,
    pub accepted: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    pub fastpath_rows: Counter,
    pub fastpath_insert_failures: Counter,
    pub archived_measurements: Counter,
    pub archived_objects: Counter,
    pub upload_failures: Counter,
    pub fingerprint_reloads: Counter,
}

impl IntakeMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "reports_opened",
            "Reports opened",
            self.reports_opened.clone(),
        );
        r.register("accepted", "Measurements queued", self.accepted.clone());
        r.register(
            "rejected",
            "Requests refused, by reason",
            self.rejected.clone(),
        );
        r.register(
            "fastpath_rows",
            "Fastpath rows stored",
            self.fastpath_rows.clone(),
        );
        r.register(
            "fastpath_insert_failures",
            "Failed fastpath INSERTs (retried)",
            self.fastpath_insert_failures.clone(),
        );
        r.register(
            "archived_measurements",
            "Measurements uploaded to the archive",
            self.archived_measurements.clone(),
        );
        r.register(
            "archived_objects",
            "JSONL objects uploaded",
            self.archived_objects.clone(),
        );
        r.register(
            "upload_failures",
            "Failed upload rounds",
            self.upload_failures.clone(),
        );
        r.register(
            "fingerprint_reloads",
            "Fingerprint file reloads",
            self.fingerprint_reloads.clone(),
        );
    }
}

/// A 4xx/5xx answer with `{"error": reason}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Short label for the metric.
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// A measurement on its way to the fastpath: its sequence number (uid order) and the
/// measurement, or `None` when it could not be queued (the fastpath skips the number).
type Queued = (u64, Option<Value>);

/// Uid clock and sequence numbers, taken together so that sequence order is uid order.
#[derive(Default)]
struct Order {
    clock: UidClock,
    next_seq: u64,
}

struct Inner {
    queue: Queue,
    limits: Limits,
    /// Hands out uids with sequence numbers; the fastpath scores in sequence order.
    order: std::sync::Mutex<Order>,
    fastpath: mpsc::Sender<Queued>,
    archive: Archive,
    metrics: IntakeMetrics,
}

#[derive(Clone)]
struct AppState(Arc<Inner>);

impl AppState {
    fn reject(&self, e: ApiError) -> Response {
        self.0
            .metrics
            .rejected
            .get_or_create(&ReasonLabel {
                reason: e.kind.to_owned(),
            })
            .inc();
        tracing::debug!(status = %e.status, reason = %e.message, "request refused");
        e.into_response()
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "intake failure");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("internal error: {e}"),
    )
}

/// Read a body within `limits`, undoing `Content-Encoding: zstd`.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: Limits,
) -> Result<Vec<u8>, ApiError> {
    let encoding = match headers.get(header::CONTENT_ENCODING) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "encoding",
                        "unsupported content encoding",
                    )
                })?
                .trim()
                .to_ascii_lowercase(),
        ),
    };
    let zstd = match encoding.as_deref() {
        None | Some("") | Some("identity") => false,
        Some("zstd") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "encoding",
                format!("unsupported content encoding {other:?}: send zstd or none"),
            ))
        }
    };
    let raw = axum::body::to_bytes(body, limits.max_body)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body exceeds {} bytes", limits.max_body),
            )
        })?;
    if !zstd {
        return Ok(raw.to_vec());
    }
    decode_zstd(&raw, limits.max_decoded)
}

/// Decompress at most `max` bytes; more is a zstd bomb (413).
pub fn decode_zstd(raw: &[u8], max: usize) -> Result<Vec<u8>, ApiError> {
    let bad = |e: std::io::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_zstd",
            format!("body is not valid zstd: {e}"),
        )
    };
    let decoder = zstd::stream::read::Decoder::new(raw).map_err(bad)?;
    let mut out = Vec::new();
    let cap = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    decoder.take(cap).read_to_end(&mut out).map_err(bad)?;
    if out.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "zstd_bomb",
            format!("decompressed body exceeds {max} bytes"),
        ));
    }
    Ok(out)
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("body is not JSON: {e}"),
        )
    })
}

fn check_format(body: &Value) -> Result<(), ApiError> {
    match body.get("format") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(f)) if f == "json" => Ok(()),
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "format",
            format!("unsupported format {other}: only \"json\""),
        )),
    }
}

/// Fields a report carries into every measurement that lacks them.
const REPORT_FIELDS: &[&str] = &[
    "probe_asn",
    "probe_cc",
    "software_name",
    "software_version",
    "test_name",
    "test_start_time",
    "test_version",
    "data_format_version",
];

async fn open_report(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match open_report_inner(&st, &headers, body).await {
        Ok(r) => r,
        Err(e) => st.reject(e),
    }
}

async fn open_report_inner(
    st: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(headers, body, st.0.limits).await?;
    let req = parse_json(&bytes)?;
    let Some(obj) = req.as_object() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_object",
            "body must be a JSON object",
        ));
    };
    check_format(&req)?;
    let s = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or("");
    let report_id = new_report_id(
        chrono::Utc::now(),
        s("test_name"),
        s("probe_cc"),
        parse_asn(obj.get("probe_asn")),
    );
    let meta: Map<String, Value> = REPORT_FIELDS
        .iter()
        .filter_map(|k| obj.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    let meta = serde_json::to_vec(&meta).map_err(internal)?;
    st.0.queue
        .put_report(&report_id, &meta)
        .await
        .map_err(internal)?;
    st.0.metrics.reports_opened.inc();
    Ok(Json(json!({
        "report_id": report_id,
        "backend_version": BACKEND_VERSION,
        "supported_formats": ["json"],
    }))
    .into_response())
}

async fn report_meta(st: &AppState, report_id: &str) -> Result<Map<String, Value>, ApiError> {
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_report",
            format!("unknown report id {report_id:?}"),
        )
    };
    if !is_safe_id(report_id) {
        return Err(unknown());
    }
    let meta =
        st.0.queue
            .get_report(report_id)
            .await
            .map_err(internal)?
            .ok_or_else(unknown)?;
    Ok(serde_json::from_slice(&meta).unwrap_or_default())
}

async fn submit(
    State(st): State<AppState>,
    Path(report_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match submit_inner(&st, &report_id, &headers, body).await {
        Ok(r) => r,
        Err(e) => st.reject(e),
    }
}

async fn submit_inner(
    st: &AppState,
    report_id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let meta = report_meta(st, report_id).await?;
    let bytes = read_body(headers, body, st.0.limits).await?;
    let req = parse_json(&bytes)?;
    check_format(&req)?;
    let Some(Value::Object(mut content)) = req.get("content").cloned() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "no_content",
            "body must be {\"format\": \"json\", \"content\": {measurement}}",
        ));
    };
    for (k, v) in meta {
        if content.get(&k).is_none_or(Value::is_null) {
            content.insert(k, v);
        }
    }
    content.insert("report_id".into(), Value::String(report_id.to_owned()));
    let cc = content
        .get("probe_cc")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let test = content
        .get("test_name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let hash = content_hash(&bytes);
    // The uid and its sequence number are taken together (no await in between), and
    // every number is handed to the fastpath exactly once, by a task of its own that a
    // client hanging up cannot cancel: the fastpath scores in uid order.
    let (seq, uid) = {
        let mut order = match st.0.order.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let at = order.clock.next_time(chrono::Utc::now());
        let seq = order.next_seq;
        order.next_seq += 1;
        let uid = crate::uid::format_uid(
            at,
            &crate::uid::sanitize_cc(&cc),
            &crate::uid::sanitize_test_name(&test),
            &hash,
        );
        (seq, uid)
    };
    let inner = st.0.clone();
    let task_uid = uid.clone();
    let queued = tokio::spawn(async move {
        content.insert("measurement_uid".into(), Value::String(task_uid.clone()));
        let msm = Value::Object(content);
        let written = match serde_json::to_vec(&msm) {
            Ok(line) => inner.queue.push(&task_uid, &line).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let item = written.is_ok().then_some(msm);
        if inner.fastpath.send((seq, item)).await.is_err() {
            tracing::error!(uid = %task_uid, "fastpath worker is gone; the measurement is queued and archived but not scored");
        }
        written
    })
    .await;
    match queued {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(internal(e)),
        Err(e) => return Err(internal(e)),
    }
    st.0.metrics.accepted.inc();
    Ok(Json(json!({ "measurement_uid": uid })).into_response())
}

async fn close_report(State(st): State<AppState>, Path(report_id): Path<String>) -> Response {
    match report_meta(&st, &report_id).await {
        Ok(_) => Json(json!({})).into_response(),
        Err(e) => st.reject(e),
    }
}

async fn get_measurement(State(st): State<AppState>, Path(uid): Path<String>) -> Response {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_measurement",
            format!("no measurement {uid:?}"),
        )
    };
    if !is_safe_id(&uid) {
        return st.reject(not_found());
    }
    let found = match st.0.queue.get(&uid).await {
        Ok(Some(b)) => Some(b),
        Ok(None) => match st.0.archive.fetch(&uid).await {
            Ok(found) => found,
            Err(e) => return st.reject(internal(e)),
        },
        Err(e) => return st.reject(internal(e)),
    };
    match found {
        Some(b) => ([(header::CONTENT_TYPE, "application/json")], b).into_response(),
        None => st.reject(not_found()),
    }
}

/// The submission API's routes.
fn router(state: AppState) -> Router {
    Router::new()
        .route("/report", post(open_report))
        .route("/report/{id}", post(submit))
        .route("/report/{id}/close", post(close_report))
        .route("/api/v1/measurement/{uid}", get(get_measurement))
        .with_state(state)
}

/// Put measurements back in sequence (= uid) order, score them, and INSERT them in
/// batches (at `batch` rows or `wait` after the first ready one); retry a failed INSERT
/// with backoff (the channel fills, and the API waits: backpressure).
pub async fn fastpath_worker(
    mut rx: mpsc::Receiver<Queued>,
    fingerprints: FingerprintSet,
    store: Store,
    batch: usize,
    wait: Duration,
    metrics: IntakeMetrics,
) {
    let mut scorer = Scorer::default();
    let mut reorder = Reorder::default();
    let mut ready: Vec<Value> = Vec::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let received = match deadline {
            None => rx.recv().await.map(Some),
            Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                Ok(r) => r.map(Some),
                Err(_) => Some(None),
            },
        };
        let closed = match received {
            None => true,
            Some(Some((seq, item))) => {
                ready.extend(reorder.push(seq, item));
                if !ready.is_empty() && deadline.is_none() {
                    deadline = Some(tokio::time::Instant::now() + wait);
                }
                false
            }
            Some(None) => false,
        };
        let due = deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
        if ready.is_empty() || !(closed || due || ready.len() >= batch) {
            if closed {
                return;
            }
            continue;
        }
        let fp = fingerprints.get();
        let rows: Vec<FastpathRow> = ready.drain(..).map(|m| scorer.next(&m, &fp)).collect();
        deadline = None;
        let mut delay = Duration::from_millis(200);
        while let Err(e) = store.insert_fastpath(&rows).await {
            metrics.fastpath_insert_failures.inc();
            tracing::warn!(error = %e, rows = rows.len(), retry_in = ?delay, "fastpath INSERT failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        metrics.fastpath_rows.inc_by(rows.len() as u64);
        if closed {
            return;
        }
    }
}

/// Releases items in sequence order, holding back those that arrive early.
#[derive(Debug, Default)]
pub struct Reorder<T> {
    next: u64,
    early: std::collections::BTreeMap<u64, Option<T>>,
}

impl<T> Reorder<T> {
    /// Take item `seq` (`None`: skip the number); return the items now in order.
    pub fn push(&mut self, seq: u64, item: Option<T>) -> Vec<T> {
        let mut out = Vec::new();
        if seq < self.next {
            return out;
        }
        self.early.insert(seq, item);
        while let Some(item) = self.early.remove(&self.next) {
            self.next += 1;
            out.extend(item);
        }
        out
    }
}

/// A running intake (for tests and embedding): its address and handles.
pub struct Intake {
    pub addr: SocketAddr,
    pub metrics: IntakeMetrics,
    pub queue: Queue,
    pub archive: Archive,
    pub fingerprints: FingerprintSet,
    upload_lock: Arc<Mutex<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Intake {
    /// Run one upload round now (it does not overlap the periodic one).
    pub async fn upload_now(&self) -> Result<UploadSummary, ArchiveError> {
        upload_round(&self.upload_lock, &self.archive, &self.queue, &self.metrics).await
    }

    /// Wait until the server stops (it does not on its own).
    pub async fn wait(mut self) -> Result<(), IntakeError> {
        let r = (&mut self.server).await;
        self.stop();
        match r {
            Ok(Ok(())) => Err(IntakeError::Stopped("server returned".into())),
            Ok(Err(e)) => Err(IntakeError::Stopped(e.to_string())),
            Err(e) => Err(IntakeError::Stopped(e.to_string())),
        }
    }

    /// Stop every task.
    pub fn stop(&self) {
        self.server.abort();
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn upload_round(
    lock: &Mutex<()>,
    archive: &Archive,
    queue: &Queue,
    metrics: &IntakeMetrics,
) -> Result<UploadSummary, ArchiveError> {
    let _guard = lock.lock().await;
    match archive.upload_once(queue).await {
        Ok(s) => {
            metrics.archived_objects.inc_by(s.objects as u64);
            metrics.archived_measurements.inc_by(s.measurements as u64);
            Ok(s)
        }
        Err(e) => {
            metrics.upload_failures.inc();
            Err(e)
        }
    }
}

/// Start the intake: migrate, open the queue, start the fastpath, uploader, fingerprint
/// reloader and metrics, and serve the API. Measurements still queued from an earlier
/// run are scored again first (the fastpath table replaces rows by key).
pub async fn start_intake(cfg: IntakeConfig) -> Result<Intake, IntakeError> {
    let store = Store::new(&cfg.clickhouse_url, &cfg.clickhouse_db)?;
    let version = store.migrate().await?;
    tracing::info!(version, "ClickHouse schema is current");
    let queue = Queue::open(&cfg.queue_dir)
        .await
        .map_err(|source| IntakeError::Queue {
            path: cfg.queue_dir.clone(),
            source,
        })?;
    let fingerprints = FingerprintSet::new(Fingerprints::load(&cfg.fingerprints)?);
    let s3 = open_s3(&cfg.s3)?;
    let archive = Archive {
        s3,
        bucket: cfg.s3.bucket.clone(),
        store: store.clone(),
    };
    let metrics = IntakeMetrics::default();
    let mut tasks = Vec::new();

    let (tx, rx) = mpsc::channel::<Queued>(cfg.fastpath_batch.max(1) * 4);
    tasks.push(tokio::spawn(fastpath_worker(
        rx,
        fingerprints.clone(),
        store.clone(),
        cfg.fastpath_batch.max(1),
        cfg.fastpath_wait,
        metrics.clone(),
    )));
    // Replay what an earlier run queued but did not archive, in uid order.
    let leftover = queue.list().await.map_err(|source| IntakeError::Queue {
        path: cfg.queue_dir.clone(),
        source,
    })?;
    if !leftover.is_empty() {
        tracing::info!(
            measurements = leftover.len(),
            "scoring measurements left in the queue"
        );
    }
    let mut order = Order::default();
    for uid in leftover {
        let item = match queue.get(&uid).await {
            Ok(Some(line)) => serde_json::from_slice::<Value>(&line).ok(),
            _ => None,
        };
        let _ = tx.send((order.next_seq, item)).await;
        order.next_seq += 1;
    }
    let order = std::sync::Mutex::new(order);

    let m = metrics.clone();
    tasks.push(tokio::spawn(fingerprints.clone().watch(
        cfg.fingerprints.clone(),
        cfg.fingerprints_reload,
        move |_| {
            m.fingerprint_reloads.inc();
        },
    )));

    let upload_lock = Arc::new(Mutex::new(()));
    {
        let (lock, archive, queue, metrics) = (
            upload_lock.clone(),
            archive.clone(),
            queue.clone(),
            metrics.clone(),
        );
        let every = cfg.upload_interval;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = upload_round(&lock, &archive, &queue, &metrics).await {
                    tracing::warn!(error = %e, "upload failed; the files stay queued for the next round");
                }
            }
        }));
    }

    let health = vantage_platform::obs::Health::default();
    if let Some(addr) = cfg.metrics_addr {
        let mut registry = Registry::with_prefix("vantage_intake");
        metrics.register(&mut registry);
        let h = health.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = vantage_platform::obs::serve(addr, registry, h).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        }));
    }

    let state = AppState(Arc::new(Inner {
        queue: queue.clone(),
        limits: cfg.limits,
        order,
        fastpath: tx,
        archive: archive.clone(),
        metrics: metrics.clone(),
    }));
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| IntakeError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| IntakeError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let app = router(state);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    health.set_ready(true);
    tracing::info!(%addr, queue = %cfg.queue_dir.display(), bucket = %cfg.s3.bucket, "intake serving");
    Ok(Intake {
        addr,
        metrics,
        queue,
        archive,
        fingerprints,
        upload_lock,
        tasks,
        server,
    })
}

/// Run the intake until it fails: submission API, disk queue, fastpath, uploader, and
/// `/metrics` + `/healthz`.
pub async fn serve_intake(cfg: IntakeConfig) -> Result<(), IntakeError> {
    start_intake(cfg).await?.wait().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorder_releases_in_sequence_and_skips_holes() {
        let mut r = Reorder::default();
        assert_eq!(r.push(1, Some("b")), Vec::<&str>::new());
        assert_eq!(r.push(2, None), Vec::<&str>::new());
        assert_eq!(r.push(0, Some("a")), vec!["a", "b"]);
        assert_eq!(r.push(3, Some("d")), vec!["d"]);
        assert_eq!(r.push(1, Some("late duplicate")), Vec::<&str>::new());
    }

    #[test]
    fn zstd_within_limit_bomb_and_junk() {
        let small = zstd::encode_all(&b"{\"a\":1}"[..], 3).expect("zstd");
        assert_eq!(decode_zstd(&small, 100).expect("ok"), b"{\"a\":1}");
        let bomb = zstd::encode_all(&vec![b'a'; 10_000_000][..], 19).expect("zstd");
        assert!(bomb.len() < 10_000);
        let e = decode_zstd(&bomb, 1 << 20).expect_err("bomb");
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let e = decode_zstd(b"not zstd at all", 100).expect_err("junk");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
