//! The registration server (RIPE Atlas `reginit`): a probe logs in with its key and runs
//! `INIT`; the server checks the key against the `Probe` resources, picks a controller
//! from the heartbeats, records the assignment in NATS KV and answers with the
//! controller's address and host key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::reflector::Store;
use kube::ResourceExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use vantage_core::frame::{
    parse_register, FirmwareOffer, RegistrationReply, FETCH_COMMAND, REGISTER_COMMAND,
};
use vantage_core::nats::{probe_key, Assignment, Heartbeat, HEARTBEAT_WILDCARD};
use vantage_core::WIRE_VERSION;
use vantage_crd::Probe;
use vantage_platform::bus::now_ms;

use crate::assign::{choose, ProbeInfo};
use crate::by_reason::ByReason;
use crate::keys::fingerprint;
use crate::preauth::{self, Gate, PreAuthLimits, PreAuthMetrics, Ticket};

/// Finds probes by public key.
pub trait Directory: Send + Sync + 'static {
    fn lookup(&self, key: &PublicKey) -> Option<ProbeInfo>;
}

/// The directory backed by a reflector over `Probe` resources, with an index from key
/// to Probe name. The index is rebuilt (one pass over the cache) when a key is not in
/// it and the cache changed size or the index is older than [`INDEX_MAX_AGE`]; an
/// indexed name is always checked against the Probe's current spec. A login costs a
/// hash lookup instead of a pass over every Probe (at 19,000 Probes that pass made
/// registration the slowest step of a reconnect storm).
pub struct KubeDirectory {
    store: Store<Probe>,
    index: RwLock<KeyIndex>,
}

/// How stale the key index may be for a key it does not know (a Probe whose key was
/// replaced in place, with no Probe added or removed, is found after at most this).
pub const INDEX_MAX_AGE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct KeyIndex {
    by_key: HashMap<String, String>,
    probes: usize,
    built: Option<std::time::Instant>,
}

/// `algorithm base64` of an OpenSSH public key line (no comment).
fn key_words(line: &str) -> Option<(&str, &str)> {
    let mut parts = line.split_whitespace();
    Some((parts.next()?, parts.next()?))
}

fn info(p: &Probe) -> ProbeInfo {
    ProbeInfo {
        id: p.spec.id,
        enabled: p.spec.enabled,
        country: p.spec.country_code.clone(),
    }
}

impl KubeDirectory {
    pub fn new(store: Store<Probe>) -> Self {
        Self {
            store,
            index: RwLock::new(KeyIndex::default()),
        }
    }

    /// The Probe the index names for `wanted`, if its spec still lists that key.
    fn indexed(&self, wanted: &str) -> Option<ProbeInfo> {
        let name = self.index.read().ok()?.by_key.get(wanted)?.clone();
        let probe = self
            .store
            .get(&kube::runtime::reflector::ObjectRef::new(&name))?;
        let listed = key_words(&probe.spec.public_key)?;
        (key_words(wanted)? == listed).then(|| info(&probe))
    }

    fn rebuild(&self) {
        let probes = self.store.state();
        let by_key = probes
            .iter()
            .filter_map(|p| {
                let (alg, data) = key_words(&p.spec.public_key)?;
                Some((format!("{alg} {data}"), p.name_any()))
            })
            .collect();
        if let Ok(mut index) = self.index.write() {
            *index = KeyIndex {
                by_key,
                probes: probes.len(),
                built: Some(std::time::Instant::now()),
            };
        }
    }

    fn stale(&self) -> bool {
        self.index.read().map_or(true, |i| {
            i.probes != self.store.len() || i.built.is_none_or(|t| t.elapsed() > INDEX_MAX_AGE)
        })
    }
}

impl Directory for KubeDirectory {
    fn lookup(&self, key: &PublicKey) -> Option<ProbeInfo> {
        let line = crate::keys::public_line(key);
        let (alg, data) = key_words(&line)?;
        let wanted = format!("{alg} {data}");
        if let Some(found) = self.indexed(&wanted) {
            return Some(found);
        }
        if self.stale() {
            self.rebuild();
            return self.indexed(&wanted);
        }
        None
    }
}

/// Where assignments are recorded (NATS KV `vantage-assignments`).
pub trait Assignments: Send + Sync + 'static {
    fn record(
        &self,
        a: &Assignment,
    ) -> impl std::future::Future<Output = Result<(), RecordError>> + Send;
}

/// Why an assignment could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot encode the assignment of probe {probe}: {source}")]
    Encode {
        probe: u32,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write the assignment of probe {probe} to NATS KV: {source}; is NATS up and the assignments bucket declared?")]
    Put {
        probe: u32,
        #[source]
        source: async_nats::jetstream::kv::PutError,
    },
}

pub struct KvAssignments(pub async_nats::jetstream::kv::Store);

impl Assignments for KvAssignments {
    async fn record(&self, a: &Assignment) -> Result<(), RecordError> {
        let probe = a.probe_id;
        let bytes =
            serde_json::to_vec(a).map_err(|source| RecordError::Encode { probe, source })?;
        self.0
            .put(probe_key(probe), bytes.into())
            .await
            .map(|_| ())
            .map_err(|source| RecordError::Put { probe, source })
    }
}

/// The latest heartbeat of each controller.
#[derive(Clone, Default)]
pub struct Heartbeats(Arc<RwLock<HashMap<String, Heartbeat>>>);

impl Heartbeats {
    pub fn snapshot(&self) -> Vec<Heartbeat> {
        self.0
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn record(&self, hb: Heartbeat) {
        if let Ok(mut m) = self.0.write() {
            m.insert(hb.controller.clone(), hb);
        }
    }

    /// Count a probe just sent to `controller` until its next heartbeat says how many it
    /// really holds. Without it, every probe that registers within one heartbeat period
    /// (2 s) sees the same loads, and a reconnect storm lands on one controller.
    pub fn assigned(&self, controller: &str) {
        if let Ok(mut m) = self.0.write() {
            if let Some(hb) = m.get_mut(controller) {
                hb.connected = hb.connected.saturating_add(1);
            }
        }
    }

    /// Follow `vantage.heartbeat.*` forever.
    pub async fn follow(self, client: async_nats::Client) {
        loop {
            match client.subscribe(HEARTBEAT_WILDCARD).await {
                Ok(mut sub) => {
                    while let Some(msg) = sub.next().await {
                        match serde_json::from_slice::<Heartbeat>(&msg.payload) {
                            Ok(hb) => self.record(hb),
                            Err(e) => {
                                tracing::warn!(subject = %msg.subject, error = %e, "unreadable heartbeat")
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to heartbeats"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Counters of the registration server.
#[derive(Clone, Default)]
pub struct RegistrationMetrics {
    pub registrations: Counter,
    /// Refused logins and requests, by reason.
    pub refused: ByReason,
    /// Connections that have not authenticated, and those dropped before they did.
    pub preauth: PreAuthMetrics,
}

impl RegistrationMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "registrations",
            "Probes registered and sent to a controller",
            self.registrations.clone(),
        );
        registry.register(
            "refused",
            "Refused logins and requests, by reason",
            self.refused.0.clone(),
        );
        self.preauth.register(registry);
    }

    fn refuse(&self, reason: &str) {
        self.refused.count(reason);
    }
}

/// The port a probe forwards for its command channel. Unique per probe id (mod the range),
/// as RIPE Atlas allocates one port per probe on its controller.
pub fn command_port(probe_id: u32) -> u32 {
    20_000 + probe_id % 40_000
}

struct Shared<D, A> {
    directory: D,
    assignments: A,
    heartbeats: Heartbeats,
    releases: Arc<dyn Releases>,
    metrics: RegistrationMetrics,
}

/// A firmware release the registration server can offer and serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub version: u32,
    pub digest: String,
    pub signature: String,
    pub forced: bool,
    pub percentage: Option<u8>,
    /// Where the bundle's bytes are.
    pub path: std::path::PathBuf,
}

/// The newest firmware release, if any.
pub trait Releases: Send + Sync + 'static {
    fn newest(&self) -> Option<Release>;
}

/// No firmware releases.
pub struct NoReleases;
impl Releases for NoReleases {
    fn newest(&self) -> Option<Release> {
        None
    }
}

/// Releases from `ProbeFirmware` resources; bundles in `dir`.
#[derive(Clone)]
pub struct KubeReleases {
    pub store: Store<vantage_crd::ProbeFirmware>,
    pub dir: std::path::PathBuf,
}

impl Releases for KubeReleases {
    fn newest(&self) -> Option<Release> {
        let fw = self
            .store
            .state()
            .into_iter()
            .max_by_key(|f| f.spec.version)?;
        // The bundle is a file name in the firmware directory, never a path elsewhere.
        let name = std::path::Path::new(&fw.spec.bundle).file_name()?;
        Some(Release {
            version: fw.spec.version,
            digest: fw.spec.digest.clone(),
            signature: fw.spec.signature.clone(),
            forced: fw.spec.rollout == "forced",
            percentage: fw.spec.percentage,
            path: self.dir.join(name),
        })
    }
}

/// Largest firmware bundle served.
pub const MAX_BUNDLE_BYTES: u64 = 64 << 20;

/// The registration SSH server.
pub struct RegistrationServer<D, A> {
    shared: Arc<Shared<D, A>>,
    preauth: PreAuthLimits,
}

impl<D: Directory, A: Assignments> RegistrationServer<D, A> {
    pub fn new(
        directory: D,
        assignments: A,
        heartbeats: Heartbeats,
        releases: Arc<dyn Releases>,
        metrics: RegistrationMetrics,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                directory,
                assignments,
                heartbeats,
                releases,
                metrics,
            }),
            preauth: PreAuthLimits::default(),
        }
    }

    /// Limits on connections that have not authenticated (default [`PreAuthLimits::default`]).
    pub fn preauth(mut self, limits: PreAuthLimits) -> Self {
        self.preauth = limits;
        self
    }

    /// Serve on `listener` until the task is dropped.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        host_key: PrivateKey,
    ) -> std::io::Result<()> {
        let config = Arc::new(russh::server::Config {
            keys: vec![host_key],
            methods: (&[russh::MethodKind::PublicKey][..]).into(),
            auth_rejection_time: Duration::from_millis(300),
            auth_rejection_time_initial: Some(Duration::from_millis(0)),
            inactivity_timeout: Some(Duration::from_secs(30)),
            ..Default::default()
        });
        let gate = Gate::new(self.preauth, self.shared.metrics.preauth.clone());
        let shared = self.shared;
        preauth::serve(&listener, config, gate, move |peer, ticket| {
            RegistrationHandler {
                shared: shared.clone(),
                peer: Some(peer),
                ticket,
                probe: None,
            }
        })
        .await
    }
}

pub struct RegistrationHandler<D, A> {
    shared: Arc<Shared<D, A>>,
    peer: Option<SocketAddr>,
    /// Its place among the unauthenticated connections, left when a key is accepted.
    ticket: Arc<Ticket>,
    probe: Option<(ProbeInfo, PublicKey)>,
}

impl<D: Directory, A: Assignments> RegistrationHandler<D, A> {
    /// `FETCH <version>`: stream the bundle of the newest release, if that is its version.
    fn fetch(
        &self,
        channel: ChannelId,
        session: &mut Session,
        probe: u32,
        version: &str,
    ) -> Result<(), russh::Error> {
        let release = self
            .shared
            .releases
            .newest()
            .filter(|r| version.parse() == Ok(r.version));
        let Some(release) = release else {
            self.shared.metrics.refuse("fetch");
            return self.fail(
                channel,
                session,
                &format!("no firmware release {version:?}"),
            );
        };
        match std::fs::read(&release.path) {
            Ok(bytes) if bytes.len() as u64 <= MAX_BUNDLE_BYTES => {
                tracing::info!(
                    probe,
                    version = release.version,
                    bytes = bytes.len(),
                    "serving firmware"
                );
                for chunk in bytes.chunks(32 * 1024) {
                    session.data(channel, chunk.to_vec())?;
                }
                session.exit_status_request(channel, 0)?;
                session.eof(channel)?;
                session.close(channel)
            }
            Ok(_) => self.fail(channel, session, "firmware bundle too large"),
            Err(e) => {
                tracing::warn!(probe, error = %e, "cannot read firmware bundle");
                self.fail(channel, session, "firmware bundle unavailable; retry later")
            }
        }
    }

    fn fail(
        &self,
        channel: ChannelId,
        session: &mut Session,
        message: &str,
    ) -> Result<(), russh::Error> {
        session.extended_data(channel, 1, format!("{message}\n").into_bytes())?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)
    }

    /// The firmware to offer a probe running `fw`, if any.
    fn offer(&self, probe: u32, fw: u32) -> Option<FirmwareOffer> {
        let r = self.shared.releases.newest()?;
        if r.version <= fw || !vantage_firmware::in_rollout(probe, r.version, r.percentage) {
            return None;
        }
        match std::fs::metadata(&r.path) {
            Ok(m) if m.len() <= MAX_BUNDLE_BYTES => Some(FirmwareOffer {
                version: r.version,
                digest: r.digest,
                signature: r.signature,
                size: m.len(),
            }),
            Ok(m) => {
                tracing::warn!(
                    version = r.version,
                    bytes = m.len(),
                    "firmware bundle too large; not offered"
                );
                None
            }
            Err(e) => {
                tracing::warn!(version = r.version, path = %r.path.display(), error = %e, "firmware bundle missing; not offered");
                None
            }
        }
    }

    async fn register(
        &self,
        probe: &ProbeInfo,
        key: &PublicKey,
        fw: u32,
    ) -> Result<RegistrationReply, String> {
        let now = now_ms();
        let Some(choice) = choose(probe, &self.shared.heartbeats.snapshot(), now) else {
            self.shared.metrics.refuse("no_controller");
            return Err("no controller can take this probe now; retry later".into());
        };
        let port = command_port(probe.id);
        let assignment = Assignment {
            v: WIRE_VERSION,
            probe_id: probe.id,
            controller: choice.controller.controller.clone(),
            public_key: crate::keys::public_line(key),
            command_port: port,
            at_ms: now,
            fw,
        };
        self.shared
            .assignments
            .record(&assignment)
            .await
            .map_err(|e| {
                tracing::warn!(probe = probe.id, error = %e, "cannot record assignment");
                "registration is temporarily unavailable; retry later".to_owned()
            })?;
        self.shared
            .heartbeats
            .assigned(&choice.controller.controller);
        tracing::info!(probe = probe.id, peer = ?self.peer, controller = %choice.controller.controller, why = %choice.reason, "probe registered");
        self.shared.metrics.registrations.inc();
        Ok(RegistrationReply {
            v: WIRE_VERSION,
            probe_id: probe.id,
            controller: choice.controller.controller,
            controller_addr: choice.controller.ssh_addr,
            controller_host_key: choice.controller.host_key,
            command_port: port,
            firmware: self.offer(probe.id, fw),
        })
    }
}

impl<D: Directory, A: Assignments> russh::server::Handler for RegistrationHandler<D, A> {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fp = fingerprint(key.public_key);
        match self.shared.directory.lookup(key.public_key) {
            None => {
                tracing::warn!(peer = ?self.peer, key = %fp, "refused: no Probe resource lists this key");
                self.shared.metrics.refuse("unknown_key");
                Ok(Auth::reject())
            }
            Some(p) if !p.enabled => {
                tracing::warn!(peer = ?self.peer, probe = p.id, "refused: probe is disabled (spec.enabled: false)");
                self.shared.metrics.refuse("disabled");
                Ok(Auth::reject())
            }
            Some(p) => {
                self.probe = Some((p, key.public_key.clone()));
                self.ticket.authenticated();
                Ok(Auth::Accept)
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
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
        let Some((probe, key)) = self.probe.clone() else {
            return self.fail(channel, session, "not authenticated");
        };
        let command = String::from_utf8_lossy(data);
        if let Some(version) = command.trim().strip_prefix(FETCH_COMMAND).map(str::trim) {
            return self.fetch(channel, session, probe.id, version);
        }
        let Some(fw) = parse_register(&command) else {
            self.shared.metrics.refuse("exec");
            tracing::warn!(probe = probe.id, command = %command.chars().take(64).collect::<String>(), "refused command");
            return self.fail(
                channel,
                session,
                &format!("unknown command; probes run {REGISTER_COMMAND}"),
            );
        };
        match self.register(&probe, &key, fw).await {
            Ok(reply) => {
                let mut line =
                    serde_json::to_vec(&reply).map_err(|e| russh::Error::IO(e.into()))?;
                line.push(b'\n');
                session.data(channel, line)?;
                session.exit_status_request(channel, 0)?;
                session.eof(channel)?;
                session.close(channel)
            }
            Err(message) => self.fail(channel, session, &message),
        }
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.shared.metrics.refuse("shell");
        session.channel_failure(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.shared.metrics.refuse("subsystem");
        session.channel_failure(channel)
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host: &str,
        _port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.shared.metrics.refuse("forward");
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        _port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.shared.metrics.refuse("forward");
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(name: &str, connected: u32) -> Heartbeat {
        Heartbeat {
            v: WIRE_VERSION,
            controller: name.into(),
            ssh_addr: format!("{name}:443"),
            host_key: String::new(),
            connected,
            capacity: 100,
            draining: false,
            regions: Vec::new(),
            at_ms: now_ms(),
        }
    }

    fn probe(name: &str, id: u32, key: &russh::keys::PrivateKey) -> Probe {
        let line = crate::keys::public_line(key.public_key());
        let mut p = Probe::new(
            name,
            vantage_crd::ProbeSpec::new(id, format!("{line} a comment")),
        );
        p.metadata.resource_version = Some("1".into());
        p
    }

    fn key() -> russh::keys::PrivateKey {
        russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
            .expect("key")
    }

    #[test]
    fn the_directory_finds_probes_by_key_and_follows_the_cache() {
        use kube::runtime::watcher::Event;
        let (store, mut writer) = kube::runtime::reflector::store::<Probe>();
        let (a, b, c) = (key(), key(), key());
        writer.apply_watcher_event(&Event::Apply(probe("a", 1, &a)));
        writer.apply_watcher_event(&Event::Apply(probe("b", 2, &b)));
        let dir = KubeDirectory::new(store);
        assert_eq!(dir.lookup(a.public_key()).map(|p| p.id), Some(1));
        assert_eq!(dir.lookup(b.public_key()).map(|p| p.id), Some(2));
        assert!(dir.lookup(c.public_key()).is_none(), "unknown key");
        // A Probe added later is found (the cache grew, so the index is rebuilt).
        writer.apply_watcher_event(&Event::Apply(probe("c", 3, &c)));
        assert_eq!(dir.lookup(c.public_key()).map(|p| p.id), Some(3));
        // Disabled in place: the indexed name is read from the current cache.
        let mut off = probe("a", 1, &a);
        off.spec.enabled = false;
        writer.apply_watcher_event(&Event::Apply(off));
        assert_eq!(dir.lookup(a.public_key()).map(|p| p.enabled), Some(false));
        // A key replaced in place: the old key no longer finds the Probe.
        let d = key();
        writer.apply_watcher_event(&Event::Apply(probe("b", 2, &d)));
        assert!(dir.lookup(b.public_key()).is_none(), "replaced key");
        // Deleted: gone at once.
        writer.apply_watcher_event(&Event::Delete(probe("c", 3, &c)));
        assert!(dir.lookup(c.public_key()).is_none(), "deleted probe");
    }

    #[test]
    fn a_registration_storm_spreads_over_controllers_between_heartbeats() {
        let beats = Heartbeats::default();
        beats.record(beat("a", 0));
        beats.record(beat("b", 0));
        let probe = ProbeInfo {
            id: 1,
            enabled: true,
            country: None,
        };
        let mut sent: HashMap<String, u32> = HashMap::new();
        for _ in 0..100 {
            let choice = choose(&probe, &beats.snapshot(), now_ms()).expect("a controller");
            beats.assigned(&choice.controller.controller);
            *sent.entry(choice.controller.controller).or_default() += 1;
        }
        assert_eq!(sent.get("a"), Some(&50), "{sent:?}");
        assert_eq!(sent.get("b"), Some(&50), "{sent:?}");
        // The next heartbeat replaces the estimate with the real count.
        beats.record(beat("a", 3));
        let a = beats
            .snapshot()
            .into_iter()
            .find(|h| h.controller == "a")
            .expect("a");
        assert_eq!(a.connected, 3);
    }
}
