//! TenantPolicy status: every period, the status [`limits::policy_status`] computes
//! (pure) from the stores and the admission ledger, written where it changed.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use vantage_crd::{apply_status, Measurement, TenantPolicy};

use crate::limits::{self, Ledger};
use crate::FIELD_MANAGER;

/// Write changed TenantPolicy statuses every `period`, forever. A failed write is
/// logged and tried again at the next period.
pub async fn policy_status_loop(
    client: Client,
    policies: Store<TenantPolicy>,
    measurements: Store<Measurement>,
    ledger: Arc<Ledger>,
    period: Duration,
) {
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let all = policies.state();
        if all.is_empty() {
            continue;
        }
        let msms = measurements.state();
        let decisions = ledger.0.lock().map(|l| l.clone()).unwrap_or_default();
        let now = k8s_openapi::jiff::Timestamp::now();
        for p in &all {
            let want =
                limits::policy_status(p, &all, &msms, &decisions, now.as_second(), Time(now));
            if p.status.as_ref() == Some(&want) {
                continue;
            }
            let api: Api<TenantPolicy> =
                Api::namespaced(client.clone(), &p.namespace().unwrap_or_default());
            if let Err(e) = apply_status(&api, &p.name_any(), FIELD_MANAGER, &want).await {
                tracing::warn!(policy = %p.name_any(), error = %e, "cannot write TenantPolicy status");
            }
        }
    }
}
