//! The ControllerPool reconciler: read (the pool, its StatefulSet, the probe sessions),
//! decide (pure: [`render::validate`], [`plan::step`] over [`scale::decide`],
//! [`render::render`]), apply (drain signals over NATS, [`drain`]; server-side apply of
//! the workloads, pruning of per-pod Services and of registration objects no longer
//! rendered, [`apply`]), then status and Events ([`run`]).
//!
//! Scale-down drains first: the operator writes `vantage-meta/drain.<controller>` for
//! the highest ordinals; those controllers announce `draining` (registration stops
//! choosing them) and send their probes back to registration. Only when their sessions
//! are gone, or the drain timeout has passed, are the replicas lowered.

pub mod apply;
pub mod drain;
pub mod plan;
pub mod render;
pub mod run;
pub mod scale;

use vantage_crd::StatusError;

pub use drain::{DrainSignal, KvDrain};
pub use plan::{event_reason, events, invalid_status, next_status, step, Step};
pub use run::{error_policy, reconcile, run_controller, PoolCtx, PoolMetrics};

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[source] kube::Error),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error("cannot ask controller {controller} to drain (NATS KV put): {source}")]
    DrainPut {
        controller: String,
        #[source]
        source: async_nats::jetstream::kv::PutError,
    },
    #[error("cannot read the drain request of controller {controller} from NATS KV: {source}")]
    DrainRead {
        controller: String,
        #[source]
        source: async_nats::jetstream::kv::EntryError,
    },
    #[error(
        "cannot withdraw the drain request of controller {controller} (NATS KV delete): {source}"
    )]
    DrainDelete {
        controller: String,
        #[source]
        source: async_nats::jetstream::kv::DeleteError,
    },
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

impl PoolError {
    /// The `kind` label of `pool_reconcile_failures`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) | Self::Status(StatusError::Apply { .. }) => "kube",
            Self::DrainPut { .. } | Self::DrainRead { .. } | Self::DrainDelete { .. } => "nats",
            Self::Encode { .. } | Self::Status(StatusError::Encode { .. }) => "encode",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_name_the_failing_dependency() {
        let encode = || serde_json::from_str::<u8>("x").expect_err("not json");
        let status = PoolError::Status(StatusError::Encode {
            kind: "ControllerPool".into(),
            name: "p".into(),
            source: encode(),
        });
        assert_eq!(status.metric_label(), "encode");
        let drain = PoolError::Encode {
            what: "drain request".into(),
            source: encode(),
        };
        assert_eq!(drain.metric_label(), "encode");
    }
}
