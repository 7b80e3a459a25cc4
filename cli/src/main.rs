//! `vantage`: one server binary, one subcommand per component.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod http_args;

#[derive(Parser)]
#[command(
    name = "vantage",
    version,
    about = "vantage: an open, Kubernetes-native Internet measurement network"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct NatsArgs {
    /// NATS server URL, or a comma-separated list of a cluster's servers
    /// (`nats://a:4222,nats://b:4222,nats://c:4222`): the client starts on those that
    /// answer and reconnects across all of them.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
}

/// The JetStream layout the operator declares, and where it renders ControllerPools.
#[derive(Args, Clone)]
struct RoutingArgs {
    /// Hours results stay in the RESULTS stream (the collector normally stores them in
    /// seconds; this is how long an outage of ClickHouse may last).
    #[arg(long, env = "VANTAGE_RESULTS_MAX_AGE_HOURS", default_value_t = 168)]
    results_max_age_hours: u64,
    /// Largest RESULTS stream, in MiB; the oldest results go first.
    #[arg(long, env = "VANTAGE_RESULTS_MAX_MIB", default_value_t = 8192)]
    results_max_mib: i64,
    /// Minutes within which a result id published twice is stored once.
    #[arg(long, env = "VANTAGE_DEDUP_WINDOW_MINUTES", default_value_t = 15)]
    dedup_window_minutes: u64,
    /// Replicas of the RESULTS stream and of every KV bucket: 1 on a single NATS server,
    /// 3 on a three-node JetStream cluster (at most the number of JetStream servers).
    /// An existing stream or bucket is changed to this count.
    #[arg(long, env = "NATS_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=5))]
    nats_replicas: u16,
    /// Namespace whose ControllerPools the operator renders (in a cluster: its own,
    /// `POD_NAMESPACE`); unset: every namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pool_namespace: Option<String>,
}

/// Operator high availability: leader election on a Lease.
#[derive(Args, Clone)]
struct LeaderArgs {
    /// Run the reconcilers and schedule publishing only while holding the Lease
    /// --lease-name (several replicas: one leader, the others wait and take over).
    /// Off: this replica always does them, so run only one.
    #[arg(long, env = "VANTAGE_LEADER_ELECT")]
    leader_elect: bool,
    /// Name of the coordination.k8s.io/v1 Lease the replicas elect a leader on.
    #[arg(long, env = "VANTAGE_LEASE_NAME", default_value = vantage_operator::lease::DEFAULT_LEASE_NAME)]
    lease_name: String,
    /// Namespace of the Lease (in a cluster: the operator's own, `POD_NAMESPACE`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// This replica's identity in the Lease (in a cluster: `POD_NAME`); unset: the host
    /// name and process id.
    #[arg(long, env = "POD_NAME")]
    lease_identity: Option<String>,
    /// Seconds a Lease stays held after its last renewal; the holder gives up after
    /// two thirds of it without a renewal, and renews (others retry) every 2 s.
    #[arg(long, env = "VANTAGE_LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=3600))]
    lease_duration_seconds: u64,
}

impl LeaderArgs {
    fn config(self) -> Option<vantage_operator::lease::LeaseConfig> {
        if !self.leader_elect {
            return None;
        }
        let identity = vantage_operator::lease::default_identity(self.lease_identity.as_deref());
        let mut cfg = vantage_operator::lease::LeaseConfig::new(
            &self.lease_name,
            &self.lease_namespace,
            &identity,
        );
        cfg.lease_duration = Duration::from_secs(self.lease_duration_seconds);
        cfg.renew_deadline = Duration::from_secs(self.lease_duration_seconds * 2 / 3);
        cfg.retry_period = vantage_operator::lease::RETRY_PERIOD.min(cfg.renew_deadline / 2);
        Some(cfg)
    }
}

/// How the operator chooses probes.
#[derive(Args, Clone)]
struct SelectionArgs {
    /// A probe already on this many measurements (Scheduled or Ongoing) is full:
    /// selection skips it. 0: no cap.
    #[arg(long, env = "VANTAGE_MAX_MEASUREMENTS_PER_PROBE", default_value_t = vantage_operator::load::DEFAULT_MAX_MEASUREMENTS_PER_PROBE)]
    max_measurements_per_probe: u32,
    /// Most probes one measurement may request (`requested`, per source and summed);
    /// a Measurement asking for more is Invalid. Keep it equal to the API's.
    #[arg(long, env = "VANTAGE_MAX_REQUESTED", default_value_t = vantage_operator::load::DEFAULT_MAX_REQUESTED)]
    max_requested: u32,
}

/// Built-in measurements every probe runs, and the system tags derived from them.
#[derive(Args, Clone)]
struct BuiltinArgs {
    /// Built-in ping and traceroute targets, comma-separated IP addresses or host names
    /// (production: the DNS root servers; anchors are added for anchors). Empty: none.
    #[arg(long, env = "VANTAGE_BUILTIN_TARGETS", value_delimiter = ',')]
    builtin_targets: Vec<String>,
    /// Name the built-in DNS check resolves (A and AAAA) through each probe's resolvers.
    #[arg(long, env = "VANTAGE_BUILTIN_DNS_NAME")]
    builtin_dns_name: Option<String>,
    /// Addresses a correct A answer for --builtin-dns-name holds (comma-separated);
    /// empty: any A record.
    #[arg(long, env = "VANTAGE_BUILTIN_DNS_EXPECT_A", value_delimiter = ',')]
    builtin_dns_expect_a: Vec<std::net::IpAddr>,
    /// Addresses a correct AAAA answer holds; empty: any AAAA record.
    #[arg(long, env = "VANTAGE_BUILTIN_DNS_EXPECT_AAAA", value_delimiter = ',')]
    builtin_dns_expect_aaaa: Vec<std::net::IpAddr>,
    /// Seconds between built-in pings (targets and the anchoring mesh).
    #[arg(long, default_value_t = 240)]
    builtin_ping_interval: u32,
    /// Seconds between built-in traceroutes.
    #[arg(long, default_value_t = 1800)]
    builtin_traceroute_interval: u32,
    /// Seconds between built-in DNS checks.
    #[arg(long, default_value_t = 1800)]
    builtin_dns_interval: u32,
    /// Only probes with this user tag run built-ins and get system tags (a staged
    /// roll-out, or test isolation on a shared stack); unset: every probe.
    #[arg(long, env = "VANTAGE_BUILTIN_PROBE_TAG")]
    builtin_probe_tag: Option<String>,
    /// Anchoring mesh: how many of its nearest anchors (by great-circle distance from
    /// its location) each probe that is not an anchor pings, so that its access delay
    /// can be calibrated. Anchors ping every other anchor whatever this is.
    #[arg(long, default_value_t = vantage_operator::builtin::DEFAULT_MESH_NEAR)]
    builtin_mesh_near: u32,
    /// Anchoring mesh: how many more anchors each such probe pings, spread from near to
    /// far. --builtin-mesh-near 0 --builtin-mesh-spread 0: probes ping no anchor. At most
    /// 100 together.
    #[arg(long, default_value_t = vantage_operator::builtin::DEFAULT_MESH_SPREAD)]
    builtin_mesh_spread: u32,
    /// Seconds between two derivations of the system tags.
    #[arg(long, default_value_t = 60)]
    system_tags_period_secs: u64,
    /// Seconds of built-in results the works, capable and resolves tags look at: a probe
    /// loses `system-ipv4-works` at most this plus --system-tags-period-secs after its
    /// last answered built-in ping.
    #[arg(long, default_value_t = 900)]
    system_tags_window_secs: u64,
}

impl BuiltinArgs {
    fn configs(
        self,
    ) -> (
        vantage_operator::builtin::BuiltinConfig,
        vantage_operator::system_tags::TagConfig,
    ) {
        (
            vantage_operator::builtin::BuiltinConfig {
                targets: self
                    .builtin_targets
                    .into_iter()
                    .filter(|t| !t.trim().is_empty())
                    .collect(),
                dns_name: self.builtin_dns_name.filter(|n| !n.trim().is_empty()),
                ping_interval: self.builtin_ping_interval,
                traceroute_interval: self.builtin_traceroute_interval,
                dns_interval: self.builtin_dns_interval,
                probe_tag: self.builtin_probe_tag.filter(|t| !t.trim().is_empty()),
                mesh_near: self.builtin_mesh_near,
                mesh_spread: self.builtin_mesh_spread,
            },
            vantage_operator::system_tags::TagConfig {
                period: Duration::from_secs(self.system_tags_period_secs.max(1)),
                window: Duration::from_secs(self.system_tags_window_secs.max(1)),
                expect_a: self.builtin_dns_expect_a,
                expect_aaaa: self.builtin_dns_expect_aaaa,
            },
        )
    }
}

#[derive(Args, Clone)]
struct ClickHouseArgs {
    /// ClickHouse HTTP URL.
    #[arg(long, env = "CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    clickhouse_url: String,
    /// ClickHouse database.
    #[arg(long, env = "CLICKHOUSE_DB", default_value = "vantage")]
    clickhouse_db: String,
    /// ClickHouse cluster (a name in system.clusters): tables are created ON CLUSTER as
    /// Replicated*MergeTree behind Distributed tables. Unset: one node.
    #[arg(long, env = "CLICKHOUSE_CLUSTER")]
    clickhouse_cluster: Option<String>,
}

#[derive(Args, Clone)]
struct SshArgs {
    /// Address the SSH server listens on.
    #[arg(long, default_value = "0.0.0.0:443")]
    listen: SocketAddr,
    /// ed25519 host key (OpenSSH format); created when missing.
    #[arg(long)]
    host_key: PathBuf,
    /// Seconds a connection has to authenticate before it is closed (OpenSSH's
    /// LoginGraceTime).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=600))]
    preauth_grace: u64,
    /// Unauthenticated connections: start:rate:full as OpenSSH's MaxStartups. From `start`
    /// on, a new one is refused with probability rate %, rising to 100 % at `full`.
    #[arg(long, default_value = "200:30:1000")]
    max_startups: vantage_controller::preauth::MaxStartups,
    /// Unauthenticated connections one source (an IPv4 address or an IPv6 /64) may hold; 0:
    /// no limit.
    #[arg(long, default_value_t = 32)]
    max_startups_per_source: u32,
}

impl SshArgs {
    fn preauth(&self) -> vantage_controller::preauth::PreAuthLimits {
        vantage_controller::preauth::PreAuthLimits {
            grace: std::time::Duration::from_secs(self.preauth_grace),
            startups: self.max_startups,
            per_source: self.max_startups_per_source,
        }
    }
}

#[derive(Args, Clone)]
struct S3Args {
    /// S3 bucket of the measurement archive.
    #[arg(long, env = "S3_BUCKET", default_value = "vantage-archive")]
    s3_bucket: String,
    /// S3 endpoint (moto, MinIO); empty for AWS. Credentials come from AWS_*.
    #[arg(long, env = "S3_ENDPOINT", default_value = "")]
    s3_endpoint: String,
}

impl S3Args {
    fn config(self) -> vantage_collector::archive::S3Config {
        vantage_collector::archive::S3Config {
            bucket: self.s3_bucket,
            endpoint: (!self.s3_endpoint.is_empty()).then_some(self.s3_endpoint),
            region: None,
        }
    }
}

#[derive(Args, Clone)]
struct FingerprintArgs {
    /// Blockpage fingerprints in OONI's format (`fingerprints_dns.csv` and
    /// `fingerprints_http.csv`): a directory, a git repository (`git+https://…`, `….git`,
    /// optional `#branch`) or an HTTPS URL of a `.tar.gz`, e.g.
    /// https://github.com/ooni/blocking-fingerprints.git. Remote sources are refreshed
    /// every `--fingerprints-reload-secs`; one that fails keeps the last good set.
    #[arg(
        long = "fingerprints-url",
        visible_alias = "fingerprints",
        env = "VANTAGE_FINGERPRINTS",
        default_value = "/etc/vantage/fingerprints"
    )]
    fingerprints: vantage_collector::source::SourceSpec,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile Measurements and Probes, publish schedules, fold in result counts.
    Operator {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        ch: ClickHouseArgs,
        #[arg(long, default_value = "0.0.0.0:9090")]
        metrics_addr: SocketAddr,
        #[command(flatten)]
        routing: RoutingArgs,
        #[command(flatten)]
        selection: SelectionArgs,
        #[command(flatten)]
        builtins: BuiltinArgs,
        #[command(flatten)]
        leader: LeaderArgs,
    },
    /// Print the NATS server `authorization` block: one user per vantage role, with
    /// subject permissions as narrow as the role (passwords from `$VANTAGE_NATS_<ROLE>`).
    NatsAuth,
    /// The registration SSH server probes dial first. (`registry` is a deprecated alias.)
    #[command(alias = "registry")]
    Registration {
        #[command(flatten)]
        ssh: SshArgs,
        #[command(flatten)]
        nats: NatsArgs,
        #[arg(long, default_value = "0.0.0.0:9091")]
        metrics_addr: SocketAddr,
        /// Directory holding the firmware bundles that ProbeFirmware resources name.
        #[arg(long, default_value = "/var/lib/vantage/firmware")]
        firmware_dir: PathBuf,
    },
    /// A probe controller: holds probe sessions, relays schedules and results.
    Controller {
        /// Unique controller name (the pod name in Kubernetes).
        #[arg(long, env = "POD_NAME")]
        name: String,
        /// `host:port` probes dial to reach this controller.
        #[arg(long)]
        advertise: String,
        /// Probes this controller takes at most.
        #[arg(long, default_value_t = 20_000)]
        capacity: u32,
        /// Countries (ISO codes) this controller prefers, comma-separated.
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
        /// Directory of the disk spool that holds results while NATS is unreachable.
        #[arg(long, default_value = "/var/lib/vantage/spool")]
        spool_dir: PathBuf,
        /// Largest spool, in MiB; beyond it results are dropped and counted.
        #[arg(long, default_value_t = 1024)]
        spool_max_mib: u64,
        #[command(flatten)]
        ssh: SshArgs,
        #[command(flatten)]
        nats: NatsArgs,
        #[arg(long, default_value = "0.0.0.0:9092")]
        metrics_addr: SocketAddr,
    },
    /// Write results from JetStream to ClickHouse.
    Collector {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        ch: ClickHouseArgs,
        /// Rows per INSERT at most.
        #[arg(long, default_value_t = 5_000)]
        max_batch: usize,
        /// Milliseconds a batch waits to fill.
        #[arg(long, default_value_t = 500)]
        max_wait_ms: u64,
        /// Seconds JetStream waits for an ack before redelivering a result to another
        /// (or a restarted) collector.
        #[arg(long, default_value_t = 30)]
        ack_wait_secs: u64,
        #[arg(long, default_value = "0.0.0.0:9093")]
        metrics_addr: SocketAddr,
    },
    /// The OONI-style intake: submission API, disk queue, fastpath, S3 archive uploader.
    Intake {
        #[command(flatten)]
        ch: ClickHouseArgs,
        #[command(flatten)]
        s3: S3Args,
        /// Address of the submission API (`POST /report`, `GET /api/v1/measurement/{uid}`).
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: SocketAddr,
        #[arg(long, default_value = "0.0.0.0:9094")]
        metrics_addr: SocketAddr,
        /// Disk queue directory.
        #[arg(
            long,
            env = "VANTAGE_QUEUE_DIR",
            default_value = "/var/lib/vantage/queue"
        )]
        queue_dir: PathBuf,
        #[command(flatten)]
        fp: FingerprintArgs,
        /// Seconds between fingerprint source refreshes (a git fetch, a download or a
        /// directory read).
        #[arg(long, default_value_t = 300)]
        fingerprints_reload_secs: u64,
        /// Seconds between archive uploads (OONI: hourly).
        #[arg(long, default_value_t = 3600)]
        upload_interval_secs: u64,
        /// Hours an open report (from `POST /report` or a check-in) is kept; later
        /// submissions to it get 404 and the probe opens a new one.
        #[arg(long, default_value_t = 48)]
        report_ttl_hours: u64,
        /// Largest request body in bytes.
        #[arg(long, default_value_t = 4 << 20)]
        max_body: usize,
        /// Largest body after zstd decompression, in bytes.
        #[arg(long, default_value_t = 16 << 20)]
        max_decoded: usize,
        #[command(flatten)]
        http: http_args::HttpArgs,
        /// Citizen Lab test lists for `POST /api/v1/check-in` and `GET /api/v1/test-list/urls`:
        /// `global.csv` and `<cc>.csv` files (or Citizen Lab's `lists/`) in a directory, a git
        /// repository (e.g. https://github.com/citizenlab/test-lists.git) or an HTTPS
        /// `.tar.gz`. Without it, probes are offered no URLs.
        #[arg(
            long = "test-lists-url",
            visible_alias = "test-lists",
            env = "VANTAGE_TEST_LISTS"
        )]
        test_lists: Option<vantage_collector::source::SourceSpec>,
        /// Seconds between test-list source refreshes.
        #[arg(long, default_value_t = 300)]
        test_lists_reload_secs: u64,
        /// A web_connectivity test helper (OONI's oohelperd) that check-ins advertise, e.g.
        /// https://th.example.org; repeat for several. None: probes get no helper from here.
        #[arg(long = "test-helper", value_parser = vantage_collector::intake::parse_test_helper)]
        test_helpers: Vec<String>,
    },
    /// Rebuild `fastpath` and the `jsonl` index from the S3 archive alone.
    Reprocess {
        #[command(flatten)]
        ch: ClickHouseArgs,
        #[command(flatten)]
        s3: S3Args,
        #[command(flatten)]
        fp: FingerprintArgs,
        /// Empty the tables first (otherwise rows are replaced by key).
        #[arg(long)]
        truncate: bool,
    },
    /// The geolocation API (RIPE IPmap design): engines, reducer, worlds.
    Engines {
        #[command(flatten)]
        ch: ClickHouseArgs,
        /// Address of the API (`/api/v1/locate/...`, `/api/v1/worlds/...`).
        #[arg(long, default_value = "0.0.0.0:8081")]
        listen: SocketAddr,
        #[arg(long, default_value = "0.0.0.0:9095")]
        metrics_addr: SocketAddr,
        /// Run without ClickHouse: RTT engines have no data, crowdsourced reports stay in memory.
        #[arg(long)]
        no_clickhouse: bool,
        /// Namespace whose GeolocationEngine resources give the enabled engines and weights.
        #[arg(long, env = "VANTAGE_ENGINES_NAMESPACE", default_value = "vantage")]
        namespace: String,
        /// Run without Kubernetes: every built-in engine, enabled, weight 1.
        #[arg(long)]
        no_kube: bool,
        /// NATS server URL (or a comma-separated list of a cluster's), for external
        /// engines answering on a NATS subject.
        #[arg(long, env = "NATS_URL")]
        nats_url: Option<String>,
        /// Never measure for single-radius (no one-off ping Measurements); read stored RTTs only.
        #[arg(long)]
        no_active: bool,
        /// On-demand pings per located address at most: the first from the probes the
        /// hints point to, each further one from those nearest the region the RTTs allow.
        #[arg(long, default_value_t = 2)]
        active_rounds: usize,
        /// Probes per on-demand ping.
        #[arg(long, default_value_t = 10)]
        active_probes: usize,
        /// Stop measuring once a probe answers faster than this (ms); IPmap's 10 ms
        /// bound of single-radius, lower for probes nearer the target.
        #[arg(long, default_value_t = 10.0)]
        active_enough_ms: f64,
        /// A BGP prefix → origin ASN dump (pyasn `ipasn.dat` or CAIDA prefix2as):
        /// single-radius then asks probes in the target's ASN first.
        #[arg(long)]
        asn_table: Option<std::path::PathBuf>,
        /// An RIR statistics file (`delegated-<rir>-extended-latest`; repeat for each
        /// RIR): the `rir` engine and a country hint for single-radius.
        // `--registry-file` is the deprecated, hidden former name.
        #[arg(long = "rir-file", alias = "registry-file")]
        rir_files: Vec<std::path::PathBuf>,
        /// An RPSL database dump (e.g. ripe.db.inetnum.gz; repeat for each) whose
        /// inetnum/inet6num `geofeed:` references (RFC 9632) name geofeeds: read from
        /// --geofeed-dir, each only for its inetnum's space. Turns on the `geofeed` engine.
        #[arg(long = "geofeed-refs")]
        geofeed_refs: Vec<std::path::PathBuf>,
        /// The mirror of the referenced geofeed URLs: https://host/path is read from
        /// <dir>/<host>/<path> (what `wget --force-directories` writes).
        #[arg(long = "geofeed-dir")]
        geofeed_dir: Option<std::path::PathBuf>,
        /// A geofeed CSV (RFC 8805: prefix,country,region,city,postal) read directly,
        /// e.g. your own network's; repeat for several. Turns on the `geofeed` engine.
        #[arg(long = "geofeed-file")]
        geofeed_files: Vec<std::path::PathBuf>,
        /// Answers (memory and ClickHouse) older than this many seconds are located again.
        #[arg(long, default_value_t = 3600)]
        cache_max_age_s: u64,
        /// With ClickHouse, CBG's calibration (each probe's access delay and slope,
        /// fitted to its pings of the anchoring mesh) is fitted again at most this often
        /// (seconds, 1 to 604800: a week).
        #[arg(long = "calibration-refresh-seconds", value_name = "SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
        calibration_refresh_s: u64,
        #[command(flatten)]
        http: http_args::HttpArgs,
    },
    /// The data API: RIPE Atlas API v2 subset, OONI-style search, live results, OpenAPI.
    Api {
        #[command(flatten)]
        ch: ClickHouseArgs,
        /// Address of the API (`/api/v2/...`, `/api/v1/...`, `/api/openapi.json`).
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: SocketAddr,
        #[arg(long, default_value = "0.0.0.0:9096")]
        metrics_addr: SocketAddr,
        /// NATS server URL (or a comma-separated list of a cluster's) for live results
        /// (`/stream/`); empty turns them off.
        #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats_url: String,
        /// TLS certificate chain (PEM); with --tls-key the API serves HTTPS, else HTTP.
        #[arg(long, env = "VANTAGE_API_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, env = "VANTAGE_API_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Public URL for links in answers (e.g. https://atlas.example.net); default from Host.
        #[arg(long, env = "VANTAGE_API_PUBLIC_URL")]
        public_url: Option<String>,
        /// Seconds a creation waits for the operator to give measurement ids.
        #[arg(long, default_value_t = 20)]
        create_timeout_secs: u64,
        /// Most probes one measurement may request (`requested`, summed over its sources
        /// and participation requests); more is refused with 400.
        #[arg(long, env = "VANTAGE_MAX_REQUESTED", default_value_t = vantage_api::DEFAULT_MAX_REQUESTED)]
        max_requested: u32,
        /// URL of `vantage engines` (e.g. http://vantage-engines:8080): the console's
        /// geolocation (`/api/v1/locate/...`, `/api/v1/worlds/...`) is proxied there;
        /// without it those routes answer 503.
        #[arg(long, env = "VANTAGE_ENGINES_URL")]
        engines_url: Option<String>,
        #[command(flatten)]
        http: http_args::HttpArgs,
        #[command(flatten)]
        rate: http_args::RateLimitArgs,
    },
    /// Apply the ClickHouse schema migrations and print the version.
    Migrate {
        #[command(flatten)]
        ch: ClickHouseArgs,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    vantage_platform::obs::init_tracing();
    if std::env::args().nth(1).as_deref() == Some("registry") {
        tracing::warn!(
            "`vantage registry` is deprecated and will be removed: run `vantage registration`"
        );
    }
    if std::env::args().any(|a| a == "--registry-file" || a.starts_with("--registry-file=")) {
        tracing::warn!("`--registry-file` is deprecated and will be removed: use `--rir-file`");
    }
    // With more than one rustls backend compiled in, rustls cannot choose: choose ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let command = Cli::parse().command;
    // Servers hold a file descriptor per connection: give them all the hard limit allows.
    if !matches!(
        command,
        Command::NatsAuth | Command::Migrate { .. } | Command::Reprocess { .. }
    ) {
        vantage_platform::fds::raise_nofile_limit();
    }
    match command {
        Command::Operator {
            nats,
            ch,
            metrics_addr,
            routing,
            selection,
            builtins,
            leader,
        } => {
            let (builtins, system_tags) = builtins.configs();
            vantage_operator::run::run(vantage_operator::run::Config {
                nats_url: nats.nats_url,
                clickhouse_url: ch.clickhouse_url,
                clickhouse_db: ch.clickhouse_db,
                clickhouse_cluster: ch.clickhouse_cluster,
                metrics_addr,
                retention: vantage_platform::bus::Retention {
                    results_max_age: Duration::from_secs(routing.results_max_age_hours * 3600),
                    results_max_bytes: routing.results_max_mib.saturating_mul(1 << 20),
                    dedup_window: Duration::from_secs(routing.dedup_window_minutes * 60),
                    replicas: usize::from(routing.nats_replicas),
                },
                pool_namespace: routing.pool_namespace,
                max_measurements_per_probe: selection.max_measurements_per_probe,
                max_requested: selection.max_requested,
                builtins,
                system_tags,
                leader_election: leader.config(),
            })
            .await?
        }
        Command::NatsAuth => {
            print!(
                "{}",
                vantage_operator::nats_auth::render_authorization(
                    &vantage_operator::nats_auth::default_users()
                )
            );
        }
        Command::Registration {
            ssh,
            nats,
            metrics_addr,
            firmware_dir,
        } => {
            vantage_controller::run::registration(
                vantage_controller::run::Common {
                    preauth: ssh.preauth(),
                    listen: ssh.listen,
                    host_key: ssh.host_key,
                    nats_url: nats.nats_url,
                    metrics_addr,
                },
                firmware_dir,
            )
            .await?
        }
        Command::Controller {
            name,
            advertise,
            capacity,
            regions,
            spool_dir,
            spool_max_mib,
            ssh,
            nats,
            metrics_addr,
        } => {
            vantage_controller::run::controller(
                vantage_controller::run::Common {
                    preauth: ssh.preauth(),
                    listen: ssh.listen,
                    host_key: ssh.host_key,
                    nats_url: nats.nats_url,
                    metrics_addr,
                },
                vantage_controller::controller::Identity {
                    name,
                    advertise,
                    capacity,
                    regions,
                },
                vantage_controller::run::SpoolConfig {
                    dir: spool_dir,
                    max_bytes: spool_max_mib << 20,
                },
            )
            .await?
        }
        Command::Collector {
            nats,
            ch,
            max_batch,
            max_wait_ms,
            ack_wait_secs,
            metrics_addr,
        } => {
            let store = vantage_platform::store::Store::new(&ch.clickhouse_url, &ch.clickhouse_db)?
                .with_cluster(ch.clickhouse_cluster.as_deref())?;
            let cfg = vantage_collector::Config {
                max_batch,
                max_wait: Duration::from_millis(max_wait_ms),
                ack_wait: Duration::from_secs(ack_wait_secs.max(1)),
            };
            vantage_collector::serve(&nats.nats_url, store, cfg, metrics_addr).await?
        }
        Command::Intake {
            ch,
            s3,
            listen,
            metrics_addr,
            queue_dir,
            fp,
            fingerprints_reload_secs,
            upload_interval_secs,
            report_ttl_hours,
            max_body,
            max_decoded,
            http,
            test_lists,
            test_lists_reload_secs,
            test_helpers,
        } => {
            let mut cfg = vantage_collector::IntakeConfig::new(
                queue_dir,
                fp.fingerprints,
                &ch.clickhouse_url,
                &ch.clickhouse_db,
                s3.config(),
            );
            cfg.listen = listen;
            cfg.clickhouse_cluster = ch.clickhouse_cluster;
            cfg.metrics_addr = Some(metrics_addr);
            cfg.fingerprints_reload = Duration::from_secs(fingerprints_reload_secs.max(1));
            cfg.upload_interval = Duration::from_secs(upload_interval_secs.max(1));
            cfg.report_ttl = Duration::from_secs(report_ttl_hours.max(1) * 3600);
            cfg.limits = vantage_collector::Limits {
                max_body,
                max_decoded,
            };
            cfg.http = http.limits();
            cfg.test_lists = test_lists;
            cfg.test_lists_reload = Duration::from_secs(test_lists_reload_secs.max(1));
            cfg.test_helpers = test_helpers;
            vantage_collector::serve_intake(cfg).await?
        }
        Command::Reprocess {
            ch,
            s3,
            fp,
            truncate,
        } => {
            let summary = vantage_collector::reprocess(vantage_collector::ReprocessConfig {
                clickhouse_url: ch.clickhouse_url,
                clickhouse_db: ch.clickhouse_db,
                clickhouse_cluster: ch.clickhouse_cluster,
                s3: s3.config(),
                fingerprints: fp.fingerprints,
                truncate,
                batch: 10_000,
            })
            .await?;
            println!(
                "reprocessed {} measurements from {} objects ({} lines skipped)",
                summary.measurements, summary.objects, summary.skipped
            );
        }
        Command::Engines {
            ch,
            listen,
            metrics_addr,
            no_clickhouse,
            namespace,
            no_kube,
            nats_url,
            no_active,
            active_rounds,
            active_probes,
            active_enough_ms,
            asn_table,
            rir_files,
            geofeed_refs,
            geofeed_dir,
            geofeed_files,
            cache_max_age_s,
            calibration_refresh_s,
            http,
        } => {
            let mut cfg = vantage_engines::Config::new(listen, metrics_addr);
            cfg.kube_namespace = (!no_kube).then_some(namespace);
            cfg.nats_url = nats_url;
            cfg.active_measurement = !no_active;
            cfg.active = vantage_engines::ActiveConfig {
                rounds: active_rounds,
                probes: active_probes,
                enough_rtt_ms: active_enough_ms,
            };
            cfg.asn_table = asn_table;
            cfg.rir_files = rir_files;
            if !geofeed_refs.is_empty() && geofeed_dir.is_none() {
                anyhow::bail!("--geofeed-refs needs --geofeed-dir: the directory the referenced geofeed URLs are mirrored into (<dir>/<host>/<path>)");
            }
            cfg.geofeed_refs = geofeed_refs;
            cfg.geofeed_dir = geofeed_dir;
            cfg.geofeed_files = geofeed_files;
            cfg.cache_max_age = std::time::Duration::from_secs(cache_max_age_s);
            cfg.calibration_refresh = std::time::Duration::from_secs(calibration_refresh_s);
            cfg.http = http.limits();
            if !no_clickhouse {
                cfg.clickhouse = Some(vantage_engines::ClickHouseConfig {
                    url: ch.clickhouse_url,
                    database: ch.clickhouse_db,
                    cluster: ch.clickhouse_cluster,
                });
            }
            vantage_engines::serve(cfg).await?
        }
        Command::Api {
            ch,
            listen,
            metrics_addr,
            nats_url,
            tls_cert,
            tls_key,
            public_url,
            create_timeout_secs,
            max_requested,
            engines_url,
            http,
            rate,
        } => {
            // The API reads the same table names on one node and on a cluster (there
            // they are Distributed); a cluster named here must exist all the same.
            if ch.clickhouse_cluster.is_some() {
                vantage_platform::store::Store::new(&ch.clickhouse_url, &ch.clickhouse_db)?
                    .with_cluster(ch.clickhouse_cluster.as_deref())?
                    .check_cluster()
                    .await?;
            }
            vantage_api::serve(vantage_api::Config {
                listen,
                metrics_addr,
                clickhouse_url: ch.clickhouse_url,
                clickhouse_db: ch.clickhouse_db,
                nats_url: (!nats_url.is_empty()).then_some(nats_url),
                tls: tls_cert
                    .zip(tls_key)
                    .map(|(cert, key)| vantage_api::TlsFiles { cert, key }),
                public_url,
                create_timeout: Duration::from_secs(create_timeout_secs.max(1)),
                max_requested,
                http: http.limits(),
                rate_limit: rate.limit(),
                engines_url: engines_url.filter(|u| !u.is_empty()),
            })
            .await?
        }
        Command::Migrate { ch } => {
            let store = vantage_platform::store::Store::new(&ch.clickhouse_url, &ch.clickhouse_db)?
                .with_cluster(ch.clickhouse_cluster.as_deref())?;
            println!("schema version {}", store.migrate().await?);
        }
    }
    Ok(())
}
