//! `POST /api/v2/measurements/{id}/participation-requests/`: add probes to, or remove
//! probes from, a running measurement (cousteau's `AtlasChangeRequest`), answered with
//! `{"request_ids": [...]}` as RIPE Atlas does. Only the API key that created the
//! measurement may.
//!
//! The requests are appended, with their ids, to the Measurement's annotation
//! `vantage.dev/participation-requests` (a JSON list); the operator applies each entry
//! once to the measurement's probes and counts the applied entries in its status, so
//! a repeated reconcile never applies one twice. The append names the resourceVersion
//! it read, so two requests at once cannot overwrite each other: the loser reads the
//! measurement again and retries.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kube::ResourceExt;
use serde_json::json;
use vantage_crd::{ParticipationRequest, PARTICIPATION_ANNOTATION};

use super::create::{catalog_error, key_owner_of, owned_measurement};
use crate::catalog::CatalogError;
use crate::error::ApiError;
use crate::ripe;
use crate::routes::state::{params, parse_id, Params, St};

/// How long concurrent appends may keep conflicting before the request gives up.
const CONFLICT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) async fn participation_requests(
    State(state): St,
    headers: HeaderMap,
    q: Params,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = params(q)?;
    let id = parse_id("measurement", &id)?;
    let owner = key_owner_of(&state, &headers, &params)?;
    let entries = ripe::change_entries(&body)?;
    let deadline = Instant::now() + CONFLICT_TIMEOUT;
    loop {
        let m = owned_measurement(&state, id, &owner)?;
        let status = m.status.clone().unwrap_or_default();
        let running = !m.spec.stopped && status.state.is_some_and(|s| !s.is_final());
        if !running {
            let (_, name) = ripe::measurement_status(status.state);
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "measurement {id} is {name}; participation requests change running measurements only"
                ),
            ));
        }
        let added: Vec<(String, i64)> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.action == "add")
            .map(|(i, e)| (format!("[{i}]"), e.source.requested))
            .collect();
        ripe::requested_within(&added, u64::from(status.probe_count), state.max_requested)?;
        let mut log = m.participation_requests();
        let first = u32::try_from(m.spec.probes.len() + log.len() + 1).unwrap_or(u32::MAX);
        let ids: Vec<u32> = (0..entries.len())
            .map(|i| first.saturating_add(u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        log.extend(
            entries
                .iter()
                .zip(&ids)
                .map(|(e, id)| ParticipationRequest {
                    id: *id,
                    action: e.action.clone(),
                    source: e.source.clone(),
                }),
        );
        let text = serde_json::to_string(&log)
            .map_err(|e| ApiError::unavailable(format!("cannot encode the requests: {e}")))?;
        let patch = json!({"metadata": {
            "resourceVersion": m.resource_version(),
            "annotations": BTreeMap::from([(PARTICIPATION_ANNOTATION, text)]),
        }});
        match state
            .catalog
            .patch_measurement(&owner.namespace, &m.name_any(), patch)
            .await
        {
            Ok(()) => {
                tracing::info!(id, ?ids, namespace = %owner.namespace, name = %m.name_any(), "participation requests added");
                return Ok((StatusCode::CREATED, Json(json!({"request_ids": ids}))).into_response());
            }
            Err(CatalogError::Refused { code: 409, .. }) if Instant::now() < deadline => {
                // Someone changed it since our copy: wait for the newer copy and retry.
                let seen = m.resource_version();
                while Instant::now() < deadline
                    && state
                        .catalog
                        .measurement_by_id(id)
                        .is_some_and(|n| n.resource_version() == seen)
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Err(e) => return Err(catalog_error(e, &owner.namespace)),
        }
    }
}
