//! Live results per measurement, from NATS: every result a controller publishes on
//! `vantage.results.<type>.<msm_id>` is also delivered to core subscribers, so a
//! plain subscription sees results as they arrive, before the collector stores them.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("NATS subscription failed: {0}; check that NATS is reachable")]
    Subscribe(#[source] async_nats::SubscribeError),
    #[error("NATS subscription failed: {0}; check that NATS is reachable")]
    Flush(#[source] async_nats::client::FlushError),
}

/// A source of live results.
pub trait Live: Send + Sync + 'static {
    /// Results of measurement `msm_id` from now on. The subscription is in force when
    /// the future resolves.
    fn subscribe(&self, msm_id: u64)
        -> BoxFuture<'_, Result<BoxStream<'static, Bytes>, LiveError>>;
}

/// The NATS subject pattern of one measurement's results, whatever its type.
pub fn subject(msm_id: u64) -> String {
    format!("vantage.results.*.{msm_id}")
}

/// Live results from a NATS connection.
pub struct NatsLive(pub async_nats::Client);

impl Live for NatsLive {
    fn subscribe(
        &self,
        msm_id: u64,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Bytes>, LiveError>> {
        Box::pin(async move {
            let sub = self
                .0
                .subscribe(subject(msm_id))
                .await
                .map_err(LiveError::Subscribe)?;
            // The SUB reaches the server before the client learns the stream is open.
            self.0.flush().await.map_err(LiveError::Flush)?;
            Ok(sub.map(|m| m.payload).boxed())
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn subject_matches_every_type() {
        assert_eq!(super::subject(1000001), "vantage.results.*.1000001");
        assert_eq!(
            vantage_core::nats::result_subject("ping", 1000001)
                .rsplit_once('.')
                .map(|(_, id)| id),
            Some("1000001")
        );
    }
}
