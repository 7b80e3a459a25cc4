//! NATS: connection and the JetStream layout (see `vantage_core::nats` for the map).

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use vantage_core::nats as names;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}: {source}; check that the server runs and --nats-url is right")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error(
        "cannot declare JetStream stream {name}: {source}; is JetStream enabled on the server?"
    )]
    Stream {
        name: String,
        #[source]
        source: async_nats::jetstream::context::CreateStreamError,
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
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            results_max_age: Duration::from_secs(7 * 24 * 3600),
            results_max_bytes: 8 << 30,
            dedup_window: Duration::from_secs(15 * 60),
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

/// Connect to NATS. The client reconnects by itself after this first connection.
///
/// Credentials in the URL (`nats://user:password@host:4222`, or `nats://token@host`) are
/// used: async-nats itself ignores them.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, BusError> {
    let mut options = async_nats::ConnectOptions::new();
    if let Ok(addr) = url
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .parse::<async_nats::ServerAddr>()
    {
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
        .connect(url)
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
        js.create_or_update_stream(stream::Config {
            name: names::RESULTS_STREAM.to_owned(),
            subjects: vec![names::RESULTS_SUBJECTS.to_owned()],
            max_age: retention.results_max_age,
            max_bytes: retention.results_max_bytes,
            duplicate_window: retention.dedup_window,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|source| BusError::Stream {
            name: names::RESULTS_STREAM.to_owned(),
            source,
        })?;
        let schedules = declare_bucket(&js, names::SCHEDULES_BUCKET, 5).await?;
        let assignments = declare_bucket(&js, names::ASSIGNMENTS_BUCKET, 1).await?;
        let sessions = declare_bucket(&js, names::SESSIONS_BUCKET, 1).await?;
        let meta = declare_bucket(&js, names::META_BUCKET, 1).await?;
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
) -> Result<kv::Store, BusError> {
    js.create_or_update_key_value(kv::Config {
        bucket: name.to_owned(),
        history,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|source| BusError::Bucket {
        name: name.to_owned(),
        source,
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
