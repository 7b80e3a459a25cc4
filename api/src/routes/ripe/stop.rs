//! `DELETE /api/v2/measurements/{id}/`: stop a measurement (cousteau's
//! `AtlasStopRequest`). Only the API key that created it may; the Measurement gets
//! `spec.stopped: true`, which the operator turns into state Stopped (RIPE Atlas status
//! 4) on every probe, keeping the resource and its results.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kube::ResourceExt;
use serde_json::json;

use super::create::{catalog_error, key_owner_of, owned_measurement};
use crate::error::ApiError;
use crate::routes::state::{params, parse_id, Params, St};

pub(crate) async fn stop_measurement(
    State(state): St,
    headers: HeaderMap,
    q: Params,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let params = params(q)?;
    let id = parse_id("measurement", &id)?;
    let owner = key_owner_of(&state, &headers, &params)?;
    let m = owned_measurement(&state, id, &owner)?;
    if !m.spec.stopped {
        state
            .catalog
            .patch_measurement(
                &owner.namespace,
                &m.name_any(),
                json!({"spec": {"stopped": true}}),
            )
            .await
            .map_err(|e| catalog_error(e, &owner.namespace))?;
        tracing::info!(id, namespace = %owner.namespace, name = %m.name_any(), key = %owner.secret, "measurement stopped");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
