//! NATS: connection and the JetStream layout (see `vantage_core::nats` for the map).

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use vantage_core::nats as names;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("--nats-url / NATS_URL: {reason}; give one or more comma-separated URLs such as nats://127.0.0.1:4222,nats://127.0.0.1:4223")]
    EmptyUrl { reason: &'static str },
    #[error("--nats-url / NATS_URL: entry {position} {entry:?} is not a NATS URL ({source}); give comma-separated URLs such as nats://127.0.0.1:4222,nats://127.0.0.1:4223")]
    BadUrl {
        /// 1-based position of the entry in the comma-separated list.
        position: usize,
        entry: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to NATS at {url}: {source}; check that the server runs and --nats-url is right")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error(
        "cannot declare JetStream stream {name}: {source}; is JetStream enabled on the server? In a cluster, are at least --nats-replicas / NATS_REPLICAS JetStream servers up, and is --results-max-mib / VANTAGE_RESULTS_MAX_MIB within each server's max_file_store?"
    )]
    Stream {
        name: String,
        #[source]
        source: async_nats::jetstream::context::CreateStreamError,
    },
    #[error("cannot give JetStream {what} {name} {wanted} replica(s) (it has {current}): {source}; --nats-replicas / NATS_REPLICAS must not exceed the number of JetStream servers in the NATS cluster (1 on a single server), and JetStream must allow changing the replica count of an existing {what} (nats-server 2.10 or later)")]
    Replicas {
        what: &'static str,
        name: String,
        wanted: usize,
        current: usize,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot declare the JetStream consumer {name}: {source}")]
    Consumer {
        name: String,
        /// Reading the stream or creating the consumer failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot declare KV bucket {name}: {source}; is JetStream enabled on the server?")]
    Bucket {
        name: String,
        #[source]
        source: async_nats::jetstream::context::CreateKeyValueError,
    },
}

/// Handles to everything vantage keeps in NATS.
#[derive(Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub schedules: kv::Store,
    pub assignments: kv::Store,
    pub sessions: kv::Store,
    pub meta: kv::Store,
}

/// How long results are kept in the stream, and the deduplication window.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    pub results_max_age: Duration,
    pub results_max_bytes: i64,
    pub dedup_window: Duration,
    /// Replicas of the RESULTS stream and of every KV bucket (`--nats-replicas`): 1 on
    /// a single server, 3 on a three-node JetStream cluster.
    pub replicas: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            results_max_age: Duration::from_secs(7 * 24 * 3600),
            results_max_bytes: 8 << 30,
            dedup_window: Duration::from_secs(15 * 60),
            replicas: 1,
        }
    }
}

/// The reply inbox prefix of a connection named `vantage-<role>[-<instance>]`:
/// `_INBOX.<role>`. NATS permissions give each role only its own inbox (see the
/// operator's `nats_auth`), so no component can read another's replies.
pub fn inbox_prefix(name: &str) -> String {
    let role = name
        .strip_prefix("vantage-")
        .unwrap_or(name)
        .split(['-', '.', '*', '>', ' '])
        .next()
        .filter(|r| !r.is_empty())
        .unwrap_or("client");
    format!("_INBOX.{role}")
}

/// The servers of `--nats-url` / `NATS_URL`: one URL or a comma-separated list
/// (`nats://a:4222,nats://b:4222,nats://c:4222`). Blank entries around commas are
/// ignored; an entry that is not a URL is an error naming it and the flag.
pub fn parse_nats_urls(urls: &str) -> Result<Vec<async_nats::ServerAddr>, BusError> {
    let mut out = Vec::new();
    for (i, entry) in urls.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let addr = entry
            .parse::<async_nats::ServerAddr>()
            .map_err(|source| BusError::BadUrl {
                position: i + 1,
                entry: entry.to_owned(),
                source,
            })?;
        out.push(addr);
    }
    if out.is_empty() {
        return Err(BusError::EmptyUrl {
            reason: "no server URL given",
        });
    }
    Ok(out)
}

/// Connect to NATS: `url` is one URL or a comma-separated list (see [`parse_nats_urls`]).
/// The first connection goes to whichever listed server answers (the others may be down),
/// and the client reconnects by itself, across all of them and the servers the cluster
/// announces, after that.
///
/// Credentials in the URL (`nats://user:password@host:4222`, or `nats://token@host`) are
/// used (those of the first entry that has any): async-nats itself ignores them.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, BusError> {
    let servers = parse_nats_urls(url)?;
    let mut options = async_nats::ConnectOptions::new();
    if let Some(addr) = servers.iter().find(|a| a.username().is_some()) {
        match (addr.username(), addr.password()) {
            (Some(user), Some(password)) => {
                options = options.user_and_password(user.to_owned(), password.to_owned())
            }
            (Some(token), None) => options = options.token(token.to_owned()),
            _ => {}
        }
    }
    options
        .name(name)
        .custom_inbox_prefix(inbox_prefix(name))
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .connect(servers)
        .await
        .map_err(|source| BusError::Connect {
            url: url.to_owned(),
            source,
        })
}

impl Bus {
    /// Connect and declare the streams and buckets (idempotent: existing ones are updated).
    pub async fn open(url: &str, name: &str, retention: Retention) -> Result<Self, BusError> {
        let client = connect(url, name).await?;
        let js = jetstream::new(client.clone());
        let replicas = retention.replicas.max(1);
        let results = stream::Config {
            name: names::RESULTS_STREAM.to_owned(),
            subjects: vec![names::RESULTS_SUBJECTS.to_owned()],
            max_age: retention.results_max_age,
            max_bytes: retention.results_max_bytes,
            duplicate_window: retention.dedup_window,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let current = current_replicas(&js, names::RESULTS_STREAM).await;
        note_replica_change("stream", names::RESULTS_STREAM, current, replicas);
        js.create_or_update_stream(results)
            .await
            .map_err(|source| match current {
                Some(current) if current != replicas => BusError::Replicas {
                    what: "stream",
                    name: names::RESULTS_STREAM.to_owned(),
                    wanted: replicas,
                    current,
                    source: Box::new(source),
                },
                _ => BusError::Stream {
                    name: names::RESULTS_STREAM.to_owned(),
                    source,
                },
            })?;
        let schedules = declare_bucket(&js, names::SCHEDULES_BUCKET, 5, replicas).await?;
        let assignments = declare_bucket(&js, names::ASSIGNMENTS_BUCKET, 1, replicas).await?;
        let sessions = declare_bucket(&js, names::SESSIONS_BUCKET, 1, replicas).await?;
        let meta = declare_bucket(&js, names::META_BUCKET, 1, replicas).await?;
        declare_collector_consumer(&js).await?;
        Ok(Self {
            client,
            js,
            schedules,
            assignments,
            sessions,
            meta,
        })
    }

    /// Connect and bind to the streams and buckets the operator declared, waiting for
    /// them if they do not exist yet. Components other than the operator use this: their
    /// NATS users may read and write their subjects, but not change the layout.
    pub async fn attach(url: &str, name: &str) -> Result<Self, BusError> {
        let client = connect(url, name).await?;
        let js = jetstream::new(client.clone());
        let mut waited = 0u32;
        loop {
            match bind(&js).await {
                Ok((schedules, assignments, sessions, meta)) => {
                    return Ok(Self {
                        client,
                        js,
                        schedules,
                        assignments,
                        sessions,
                        meta,
                    })
                }
                Err(e) => {
                    if waited.is_multiple_of(15) {
                        tracing::warn!(error = %e, "waiting for the operator to declare the NATS streams and buckets (is `vantage operator` running, and may this NATS user read them?)");
                    }
                    waited += 1;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }
}

async fn bind(
    js: &jetstream::Context,
) -> Result<(kv::Store, kv::Store, kv::Store, kv::Store), String> {
    js.get_stream(names::RESULTS_STREAM)
        .await
        .map_err(|e| format!("stream {}: {e}", names::RESULTS_STREAM))?;
    let get = |name: &'static str| async move {
        js.get_key_value(name)
            .await
            .map_err(|e| format!("KV bucket {name}: {e}"))
    };
    Ok((
        get(names::SCHEDULES_BUCKET).await?,
        get(names::ASSIGNMENTS_BUCKET).await?,
        get(names::SESSIONS_BUCKET).await?,
        get(names::META_BUCKET).await?,
    ))
}

/// The collector's durable pull consumer on `RESULTS` (kept if it exists).
async fn declare_collector_consumer(js: &jetstream::Context) -> Result<(), BusError> {
    use jetstream::consumer::{pull, AckPolicy};
    let err = |source: Box<dyn std::error::Error + Send + Sync>| BusError::Consumer {
        name: names::COLLECTOR_DURABLE.to_owned(),
        source,
    };
    let stream = js
        .get_stream(names::RESULTS_STREAM)
        .await
        .map_err(|e| err(Box::new(e)))?;
    stream
        .get_or_create_consumer(
            names::COLLECTOR_DURABLE,
            pull::Config {
                durable_name: Some(names::COLLECTOR_DURABLE.into()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(60),
                max_ack_pending: 20_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| err(Box::new(e)))?;
    Ok(())
}

async fn declare_bucket(
    js: &jetstream::Context,
    name: &str,
    history: i64,
    replicas: usize,
) -> Result<kv::Store, BusError> {
    let stream_name = format!("KV_{name}");
    let current = current_replicas(js, &stream_name).await;
    note_replica_change("KV bucket", name, current, replicas);
    js.create_or_update_key_value(kv::Config {
        bucket: name.to_owned(),
        history,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    })
    .await
    .map_err(|source| match current {
        Some(current) if current != replicas => BusError::Replicas {
            what: "KV bucket",
            name: name.to_owned(),
            wanted: replicas,
            current,
            source: Box::new(source),
        },
        _ => BusError::Bucket {
            name: name.to_owned(),
            source,
        },
    })
}

/// The replica count of an existing stream (`None`: it does not exist yet, or cannot be read).
async fn current_replicas(js: &jetstream::Context, stream: &str) -> Option<usize> {
    let mut s = js.get_stream(stream).await.ok()?;
    s.info().await.ok().map(|i| i.config.num_replicas)
}

fn note_replica_change(what: &str, name: &str, current: Option<usize>, wanted: usize) {
    if let Some(current) = current.filter(|c| *c != wanted) {
        tracing::warn!(
            what,
            name,
            current,
            wanted,
            "changing the replica count to --nats-replicas / NATS_REPLICAS"
        );
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comma_separated_list_gives_every_server() {
        let servers =
            parse_nats_urls(" nats://127.0.0.1:4222, nats://127.0.0.1:4223,,127.0.0.1:4224 ")
                .expect("three good URLs");
        let ports: Vec<u16> = servers.iter().map(|s| s.port()).collect();
        assert_eq!(ports, [4222, 4223, 4224]);
        assert_eq!(
            parse_nats_urls("nats://u:p@h:4222")
                .expect("one URL with credentials")
                .len(),
            1
        );
    }

    #[test]
    fn a_bad_entry_is_named_with_the_flag() {
        let err = parse_nats_urls("nats://127.0.0.1:4222,http://127.0.0.1:4223")
            .expect_err("http is not a NATS scheme");
        let msg = err.to_string();
        assert!(msg.contains("--nats-url"), "{msg}");
        assert!(msg.contains("NATS_URL"), "{msg}");
        assert!(msg.contains("entry 2"), "{msg}");
        assert!(msg.contains("\"http://127.0.0.1:4223\""), "{msg}");

        let err = parse_nats_urls("nats://127.0.0.1:4222,nats://host:notaport")
            .expect_err("a port must be a number");
        assert!(err.to_string().contains("nats://host:notaport"), "{err}");

        let err = parse_nats_urls(" , ").expect_err("no URL at all");
        assert!(err.to_string().contains("--nats-url"), "{err}");
    }

    #[tokio::test]
    async fn connect_refuses_a_bad_list_before_trying_a_server() {
        let err = connect("nats://127.0.0.1:1,nats://bad host", "vantage-test")
            .await
            .expect_err("a bad entry");
        assert!(matches!(err, BusError::BadUrl { position: 2, .. }), "{err}");
    }
}
