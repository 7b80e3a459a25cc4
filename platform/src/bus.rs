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

/// Connect to NATS. The client reconnects by itself after this first connection.
pub async fn connect(url: &str, name: &str) -> Result<async_nats::Client, BusError> {
    async_nats::ConnectOptions::new()
        .name(name)
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
        Ok(Self {
            client,
            js,
            schedules,
            assignments,
            sessions,
            meta,
        })
    }
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
