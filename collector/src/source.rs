//! Data sources the intake follows: the fingerprints and the test lists, read from a
//! local directory, a git repository or an HTTPS URL and refreshed on an interval, the
//! way OONI's fastpath follows `ooni/blocking-fingerprints` and its probe services follow
//! `citizenlab/test-lists`.
//!
//! * [`SourceSpec`] — where a set comes from (`--fingerprints-url`, `--test-lists-url`).
//! * [`Snapshot`] — one version of it: relative paths to bytes, and a version string
//!   (`git:<commit>` or `sha256:<hash of the content>`).
//! * [`Dataset`] — what a set is built from a snapshot: the fingerprints, the test lists.
//!   A bad line is reported ([`BadLine`]) and skipped; a snapshot that cannot be used at
//!   all is refused ([`DatasetError`]) and the last good set stays.
//! * [`Watched`] — the set in force, swapped atomically on reload.
//! * [`follow`] — the refresh loop, with its metrics and `/healthz` detail.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use vantage_platform::obs::Health;

/// Bounds on what one snapshot may hold (a test-list repository is ~3 MB in ~200 files).
pub const MAX_FILES: usize = 10_000;
pub const MAX_BYTES: u64 = 256 << 20;
/// How long one git or HTTP fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Where a dataset comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// A local directory (read recursively) or file.
    Path(PathBuf),
    /// A git repository, cloned shallow and pulled on every refresh (`git` on `PATH`).
    /// `branch` from a `#branch` suffix; otherwise the remote's default branch.
    Git { url: String, branch: Option<String> },
    /// An HTTPS (or HTTP) URL: a `.tar.gz`/`.tgz` archive (unpacked, its single top
    /// directory stripped, as GitHub's archives have) or one file.
    Http { url: String },
}

impl FromStr for SourceSpec {
    type Err = SourceError;

    /// `git+https://host/repo`, `https://host/repo.git`, `ssh://…`, `git@host:repo`
    /// (optionally `#branch`) are git; other `http(s)://` URLs are downloads; anything
    /// else is a local path.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SourceError::Spec {
                spec: s.to_owned(),
                reason: "empty: give a directory, a git URL or an HTTPS URL".into(),
            });
        }
        let (base, fragment) = match s.split_once('#') {
            Some((b, f)) => (b, Some(f.to_owned()).filter(|f| !f.is_empty())),
            None => (s, None),
        };
        if let Some(url) = base.strip_prefix("git+") {
            return Ok(Self::Git {
                url: url.to_owned(),
                branch: fragment,
            });
        }
        let is_http = base.starts_with("https://") || base.starts_with("http://");
        if base.ends_with(".git")
            || base.starts_with("ssh://")
            || base.starts_with("git://")
            || base.starts_with("git@")
        {
            return Ok(Self::Git {
                url: base.to_owned(),
                branch: fragment,
            });
        }
        if is_http {
            if fragment.is_some() {
                return Err(SourceError::Spec {
                    spec: s.to_owned(),
                    reason: "a #branch applies to git sources: write git+https://… or a URL ending in .git".into(),
                });
            }
            return Ok(Self::Http { url: s.to_owned() });
        }
        if base.contains("://") {
            return Err(SourceError::Spec {
                spec: s.to_owned(),
                reason: "unknown scheme: use a path, git+<url>, <url>.git, or https://".into(),
            });
        }
        Ok(Self::Path(PathBuf::from(s)))
    }
}

impl From<PathBuf> for SourceSpec {
    fn from(p: PathBuf) -> Self {
        Self::Path(p)
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(p) => write!(f, "{}", p.display()),
            Self::Git { url, branch: None } => write!(f, "git+{url}"),
            Self::Git {
                url,
                branch: Some(b),
            } => write!(f, "git+{url}#{b}"),
            Self::Http { url } => f.write_str(url),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {spec:?}: {reason}")]
    Spec { spec: String, reason: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    TooLarge { path: String, reason: String },
    #[error("git {action} {url}: {reason}; check the URL and that `git` can reach it")]
    Git {
        action: &'static str,
        url: String,
        reason: String,
    },
    #[error("GET {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("archive from {url} is not a valid .tar.gz: {source}")]
    Archive {
        url: String,
        #[source]
        source: std::io::Error,
    },
}

/// One version of a source: relative paths (`/`-separated) to bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub version: String,
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Snapshot {
    /// A snapshot of `files`, versioned by the SHA-256 of its content.
    pub fn from_files(files: BTreeMap<String, Vec<u8>>) -> Self {
        let version = content_version(&files);
        Self { version, files }
    }

    /// Read a directory (recursively, skipping hidden entries such as `.git`) or a single
    /// file (named by its file name); versioned by content.
    pub fn read_path(path: &Path) -> Result<Snapshot, SourceError> {
        let read_err = |source| SourceError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let mut files = BTreeMap::new();
        if meta.is_file() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            check_size(path, meta.len(), 0)?;
            files.insert(name, std::fs::read(path).map_err(read_err)?);
            return Ok(Self::from_files(files));
        }
        let mut total = 0u64;
        let walk = walkdir::WalkDir::new(path)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
        for entry in walk {
            let entry = entry.map_err(|e| SourceError::Read {
                path: path.to_owned(),
                source: e.into(),
            })?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(path)
                .unwrap_or(entry.path())
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            total = total.saturating_add(len);
            check_size(path, total, files.len())?;
            let bytes = std::fs::read(entry.path()).map_err(|source| SourceError::Read {
                path: entry.path().to_owned(),
                source,
            })?;
            files.insert(rel, bytes);
        }
        Ok(Self::from_files(files))
    }

    /// Files whose last path component is `name`, in path order.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        self.files
            .iter()
            .filter(move |(p, _)| p.rsplit('/').next() == Some(name))
            .map(|(p, b)| (p.as_str(), b.as_slice()))
    }
}

fn check_size(path: &Path, total: u64, files: usize) -> Result<(), SourceError> {
    if total > MAX_BYTES || files >= MAX_FILES {
        return Err(SourceError::TooLarge {
            path: path.display().to_string(),
            reason: format!(
                "more than {MAX_FILES} files or {MAX_BYTES} bytes: point the source at the directory holding the data only"
            ),
        });
    }
    Ok(())
}

/// `sha256:<12 hex>` over the sorted paths and contents.
fn content_version(files: &BTreeMap<String, Vec<u8>>) -> String {
    let mut h = Sha256::new();
    for (path, bytes) in files {
        h.update((path.len() as u64).to_le_bytes());
        h.update(path.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    format!("sha256:{}", &hex::encode(h.finalize())[..12])
}

/// A line a dataset could not use; the rest of its file is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    pub file: String,
    /// 1-based, the header being line 1.
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for BadLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// Why a whole snapshot cannot be used (a required file is missing, a header is wrong).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DatasetError(pub String);

/// A dataset built from a snapshot.
pub trait Dataset: Sized + Send + Sync + 'static {
    /// `fingerprints` or `test_lists`: the metric label and log field.
    const KIND: &'static str;
    fn from_snapshot(snapshot: &Snapshot) -> Result<(Self, Vec<BadLine>), DatasetError>;
}

/// The set in force, swapped atomically on reload: cheap to clone and to read.
pub struct Watched<T>(Arc<RwLock<Arc<T>>>);

impl<T> Clone for Watched<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: Send + Sync + 'static> Watched<T> {
    pub fn new(value: T) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(value))))
    }

    /// The set in force now.
    pub fn get(&self) -> Arc<T> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Put `value` in force.
    pub fn set(&self, value: T) {
        let value = Arc::new(value);
        match self.0.write() {
            Ok(mut g) => *g = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileLabel {
    pub kind: String,
    pub file: String,
}

/// Metrics of every followed source (`vantage_intake_source_*`).
#[derive(Clone, Default)]
pub struct SourceMetrics {
    /// New versions put in force.
    pub reloads: Family<KindLabel, Counter>,
    /// Fetches or loads that failed (the last good set stayed).
    pub failures: Family<KindLabel, Counter>,
    /// Lines skipped in the set in force, per file.
    pub bad_lines: Family<FileLabel, Gauge>,
    /// Unix time of the last fetch that succeeded (0: none yet; the set in force is the
    /// cached or built-in one).
    pub last_success: Family<KindLabel, Gauge>,
}

impl SourceMetrics {
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("source");
        r.register(
            "reloads",
            "New versions of a source put in force",
            self.reloads.clone(),
        );
        r.register(
            "failures",
            "Source fetches or loads that failed; the last good set stayed",
            self.failures.clone(),
        );
        r.register(
            "bad_lines",
            "Lines skipped in the set in force, per file",
            self.bad_lines.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "Unix time of the last successful fetch (0: none yet)",
            self.last_success.clone(),
        );
    }
}

/// How a dataset is followed.
#[derive(Clone, Debug)]
pub struct Follow {
    pub spec: SourceSpec,
    pub every: Duration,
    /// Where git clones and the last good copy of remote sources live.
    pub cache_dir: PathBuf,
}

/// What `/healthz` says about a source.
#[derive(Clone, Debug, serde::Serialize)]
struct Status {
    source: String,
    version: String,
    /// `cached` / `built-in` when the first fetch failed and an older set is in force.
    origin: &'static str,
    last_success: Option<i64>,
    last_error: Option<String>,
    bad_lines: usize,
    /// Files whose `bad_lines` gauge is set, to zero them when a new set comes.
    #[serde(skip)]
    gauged: Vec<String>,
}

/// Load the first set (from the source; else the last good copy in the cache; else
/// `fallback`) and keep it fresh every `follow.every`. Never fails: a broken source is
/// counted, logged and shown in `/healthz`, and the set in force stays.
pub async fn follow<T: Dataset>(
    follow: Follow,
    fallback: impl FnOnce() -> T,
    metrics: SourceMetrics,
    health: Health,
) -> (Watched<T>, tokio::task::JoinHandle<()>) {
    let kind = KindLabel {
        kind: T::KIND.to_owned(),
    };
    let mut status = Status {
        source: follow.spec.to_string(),
        version: String::new(),
        origin: "source",
        last_success: None,
        last_error: None,
        bad_lines: 0,
        gauged: Vec::new(),
    };
    let cache = follow.cache_dir.join(T::KIND);
    let first = match fetch(&follow.spec, &cache).await {
        Ok(snapshot) => match T::from_snapshot(&snapshot) {
            Ok((set, bad)) => Some((snapshot, set, bad)),
            Err(e) => {
                status.last_error = Some(e.to_string());
                None
            }
        },
        Err(e) => {
            status.last_error = Some(e.to_string());
            None
        }
    };
    let watched = match first {
        Some((snapshot, set, bad)) => {
            put_in_force(
                T::KIND,
                &follow,
                &cache,
                &snapshot,
                &bad,
                &mut status,
                &metrics,
            );
            status.last_success = Some(chrono::Utc::now().timestamp());
            metrics
                .last_success
                .get_or_create(&kind)
                .set(chrono::Utc::now().timestamp());
            Watched::new(set)
        }
        None => {
            metrics.failures.get_or_create(&kind).inc();
            tracing::warn!(kind = T::KIND, source = %follow.spec, error = status.last_error.as_deref().unwrap_or(""), "source unavailable at start");
            match read_cached(&cache).and_then(|s| T::from_snapshot(&s).ok().map(|d| (s, d))) {
                Some((snapshot, (set, bad))) => {
                    status.origin = "cached";
                    status.version = snapshot.version.clone();
                    status.bad_lines = bad.len();
                    tracing::warn!(kind = T::KIND, version = %snapshot.version, "using the last good copy from the cache");
                    Watched::new(set)
                }
                None => {
                    status.origin = "built-in";
                    status.version = "built-in".into();
                    tracing::warn!(kind = T::KIND, "using the built-in set");
                    Watched::new(fallback())
                }
            }
        }
    };
    publish(&health, T::KIND, &status);
    let w = watched.clone();
    let task = tokio::spawn(async move {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + follow.every, follow.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            refresh(&follow, &cache, &w, &mut status, &metrics).await;
            publish(&health, T::KIND, &status);
        }
    });
    (watched, task)
}

async fn refresh<T: Dataset>(
    follow: &Follow,
    cache: &Path,
    watched: &Watched<T>,
    status: &mut Status,
    metrics: &SourceMetrics,
) {
    let kind = KindLabel {
        kind: T::KIND.to_owned(),
    };
    let outcome = match fetch(&follow.spec, cache).await {
        Err(e) => Err(e.to_string()),
        Ok(snapshot) if snapshot.version == status.version && status.origin == "source" => Ok(None),
        Ok(snapshot) => match T::from_snapshot(&snapshot) {
            Ok((set, bad)) => Ok(Some((snapshot, set, bad))),
            Err(e) => Err(format!("version {} refused: {e}", snapshot.version)),
        },
    };
    match outcome {
        Ok(new) => {
            let now = chrono::Utc::now().timestamp();
            status.last_success = Some(now);
            status.last_error = None;
            metrics.last_success.get_or_create(&kind).set(now);
            if let Some((snapshot, set, bad)) = new {
                put_in_force(T::KIND, follow, cache, &snapshot, &bad, status, metrics);
                watched.set(set);
                metrics.reloads.get_or_create(&kind).inc();
            }
        }
        Err(e) => {
            metrics.failures.get_or_create(&kind).inc();
            tracing::warn!(kind = T::KIND, source = %follow.spec, error = %e, version = %status.version, "source refresh failed; the set in force stays");
            status.last_error = Some(e);
        }
    }
}

/// Log and count the bad lines of a new set, keep a copy of a remote one, update status.
fn put_in_force(
    kind: &str,
    follow: &Follow,
    cache: &Path,
    snapshot: &Snapshot,
    bad: &[BadLine],
    status: &mut Status,
    metrics: &SourceMetrics,
) {
    for b in bad {
        tracing::warn!(kind = %kind, file = %b.file, line = b.line, reason = %b.reason, version = %snapshot.version, "bad line skipped");
    }
    // Zero the per-file gauges of the previous set, then count this one's.
    for file in status.gauged.drain(..) {
        metrics
            .bad_lines
            .get_or_create(&FileLabel {
                kind: kind.to_owned(),
                file,
            })
            .set(0);
    }
    for b in bad {
        status.gauged.push(b.file.clone());
        metrics
            .bad_lines
            .get_or_create(&FileLabel {
                kind: kind.to_owned(),
                file: b.file.clone(),
            })
            .inc();
    }
    tracing::info!(kind = %kind, source = %follow.spec, version = %snapshot.version, files = snapshot.files.len(), bad_lines = bad.len(), "source version in force");
    status.version = snapshot.version.clone();
    status.origin = "source";
    status.bad_lines = bad.len();
    if !matches!(follow.spec, SourceSpec::Path(_)) {
        if let Err(e) = write_cached(cache, snapshot) {
            tracing::warn!(kind = %kind, error = %e, "cannot keep a copy of the source in the cache");
        }
    }
}

fn publish(health: &Health, kind: &str, status: &Status) {
    health.set_detail(
        &format!("source.{kind}"),
        serde_json::to_value(status).unwrap_or_default(),
    );
}

/// Fetch the current version of a source (git clones live in `cache/repo`).
pub async fn fetch(spec: &SourceSpec, cache: &Path) -> Result<Snapshot, SourceError> {
    match spec {
        SourceSpec::Path(p) => {
            let p = p.clone();
            tokio::task::spawn_blocking(move || Snapshot::read_path(&p))
                .await
                .map_err(|e| SourceError::Read {
                    path: PathBuf::new(),
                    source: std::io::Error::other(e),
                })?
        }
        SourceSpec::Git { url, branch } => {
            fetch_git(url, branch.as_deref(), &cache.join("repo")).await
        }
        SourceSpec::Http { url } => fetch_http(url).await,
    }
}

async fn git(args: &[&str], url: &str, action: &'static str) -> Result<String, SourceError> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(FETCH_TIMEOUT, cmd.output())
        .await
        .map_err(|_| SourceError::Git {
            action,
            url: url.to_owned(),
            reason: format!("no answer within {}s", FETCH_TIMEOUT.as_secs()),
        })?
        .map_err(|e| SourceError::Git {
            action,
            url: url.to_owned(),
            reason: format!("cannot run git: {e}"),
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(SourceError::Git {
            action,
            url: url.to_owned(),
            reason: err.trim().lines().last().unwrap_or("failed").to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

async fn fetch_git(url: &str, branch: Option<&str>, dir: &Path) -> Result<Snapshot, SourceError> {
    let d = dir.to_string_lossy().into_owned();
    if dir.join(".git").is_dir() {
        let refspec = branch.unwrap_or("HEAD");
        git(
            &["-C", &d, "fetch", "--depth", "1", "origin", refspec],
            url,
            "fetch",
        )
        .await?;
        git(
            &["-C", &d, "reset", "--hard", "-q", "FETCH_HEAD"],
            url,
            "fetch",
        )
        .await?;
    } else {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|source| SourceError::Read {
                path: parent.to_owned(),
                source,
            })?;
        }
        let _ = std::fs::remove_dir_all(dir);
        let mut args = vec!["clone", "-q", "--depth", "1"];
        if let Some(b) = branch {
            args.extend(["--branch", b]);
        }
        args.extend(["--", url, &d]);
        git(&args, url, "clone").await?;
    }
    let commit = git(&["-C", &d, "rev-parse", "HEAD"], url, "rev-parse").await?;
    let dir = dir.to_owned();
    let mut snapshot = tokio::task::spawn_blocking(move || Snapshot::read_path(&dir))
        .await
        .map_err(|e| SourceError::Read {
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })??;
    snapshot.version = format!("git:{}", commit.get(..12).unwrap_or(&commit));
    Ok(snapshot)
}

async fn fetch_http(url: &str) -> Result<Snapshot, SourceError> {
    let err = |reason: String| SourceError::Http {
        url: url.to_owned(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .user_agent(concat!("vantage-intake/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| err(e.to_string()))?;
    let mut resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(err(format!("answered {}", resp.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| err(e.to_string()))? {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > MAX_BYTES {
            return Err(err(format!("larger than {MAX_BYTES} bytes")));
        }
    }
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .trim_end_matches('/');
    let name = path.rsplit('/').next().unwrap_or("download").to_owned();
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        let url = url.to_owned();
        return tokio::task::spawn_blocking(move || untar(&url, &body))
            .await
            .map_err(|e| SourceError::Http {
                url: String::new(),
                reason: e.to_string(),
            })?;
    }
    Ok(Snapshot::from_files(BTreeMap::from([(name, body)])))
}

/// Unpack a `.tar.gz` in memory; a single top directory (GitHub's `repo-branch/`) is
/// stripped.
fn untar(url: &str, gz: &[u8]) -> Result<Snapshot, SourceError> {
    let bad = |source| SourceError::Archive {
        url: url.to_owned(),
        source,
    };
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(bad)?;
        let rel: Vec<String> = path
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        if rel.is_empty() || rel.iter().any(|c| c.starts_with('.')) {
            continue;
        }
        total = total.saturating_add(entry.size());
        if total > MAX_BYTES || files.len() >= MAX_FILES {
            return Err(SourceError::TooLarge {
                path: url.to_owned(),
                reason: format!("archive holds more than {MAX_FILES} files or {MAX_BYTES} bytes"),
            });
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(bad)?;
        files.insert(rel.join("/"), bytes);
    }
    let tops: std::collections::BTreeSet<&str> = files
        .keys()
        .map(|k| k.split('/').next().unwrap_or(""))
        .collect();
    let single_top = tops.len() == 1 && files.keys().all(|k| k.contains('/'));
    let files = if single_top {
        files
            .into_iter()
            .map(|(k, v)| {
                (
                    k.split_once('/').map_or(k.clone(), |(_, r)| r.to_owned()),
                    v,
                )
            })
            .collect()
    } else {
        files
    };
    Ok(Snapshot::from_files(files))
}

/// The last good copy of a remote source: `cache/last-good/` plus `cache/last-good.version`.
fn write_cached(cache: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    let tmp = cache.join("last-good.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    for (path, bytes) in &snapshot.files {
        let target = tmp.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(target, bytes)?;
    }
    std::fs::create_dir_all(&tmp)?;
    let dest = cache.join("last-good");
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&tmp, &dest)?;
    std::fs::write(cache.join("last-good.version"), &snapshot.version)
}

fn read_cached(cache: &Path) -> Option<Snapshot> {
    let version = std::fs::read_to_string(cache.join("last-good.version")).ok()?;
    let mut snapshot = Snapshot::read_path(&cache.join("last-good")).ok()?;
    snapshot.version = version.trim().to_owned();
    Some(snapshot)
}

#[cfg(test)]
mod tests;
