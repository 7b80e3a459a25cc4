//! Drain signals: the operator asks controllers to drain, and calls it off, through the
//! `vantage-meta` keys `drain.<controller>` that controllers watch.

use vantage_core::nats::{drain_key, DrainRequest};

use super::PoolError;

/// Asks controllers to drain, and calls it off. NATS KV in production ([`KvDrain`]).
pub trait DrainSignal: Send + Sync {
    /// Ask `controllers` to drain (idempotent).
    fn drain(
        &self,
        controllers: &[String],
    ) -> impl std::future::Future<Output = Result<(), PoolError>> + Send;
    /// Withdraw any drain request for `controllers` (idempotent).
    fn undrain(
        &self,
        controllers: &[String],
    ) -> impl std::future::Future<Output = Result<(), PoolError>> + Send;
}

/// Drain requests as `vantage-meta` keys `drain.<controller>`, which controllers watch.
pub struct KvDrain(pub async_nats::jetstream::kv::Store);

impl DrainSignal for KvDrain {
    async fn drain(&self, controllers: &[String]) -> Result<(), PoolError> {
        for c in controllers {
            let req = DrainRequest {
                v: 1,
                controller: c.clone(),
                at_ms: vantage_platform::bus::now_ms(),
            };
            let bytes = serde_json::to_vec(&req).map_err(|source| PoolError::Encode {
                what: "drain request".into(),
                source,
            })?;
            self.0
                .put(drain_key(c), bytes.into())
                .await
                .map_err(|source| PoolError::DrainPut {
                    controller: c.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    async fn undrain(&self, controllers: &[String]) -> Result<(), PoolError> {
        for c in controllers {
            let key = drain_key(c);
            let present = self
                .0
                .get(&key)
                .await
                .map_err(|source| PoolError::DrainRead {
                    controller: c.clone(),
                    source,
                })?
                .is_some();
            if present {
                self.0
                    .delete(&key)
                    .await
                    .map_err(|source| PoolError::DrainDelete {
                        controller: c.clone(),
                        source,
                    })?;
            }
        }
        Ok(())
    }
}
