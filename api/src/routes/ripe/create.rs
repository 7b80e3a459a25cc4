//! `POST /api/v2/measurements/`: a RIPE Atlas creation body, authorised by an API key,
//! becomes Measurement resources in the key's namespace (the key's Secret recorded in
//! an annotation: the owner); the answer waits for the ids the operator gives them.
//! Also the key and ownership checks that stopping and participation requests share.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kube::api::ObjectMeta;
use serde_json::json;
use vantage_crd::Measurement;

use crate::catalog::{CatalogError, KeyOwner, CREATED_BY_LABEL, KEY_ANNOTATION};
use crate::error::ApiError;
use crate::ripe;
use crate::routes::state::{params, AppState, Params, St};

/// The API key of a request: `Authorization: Key <key>` or `?key=`.
fn api_key(headers: &HeaderMap, params: &BTreeMap<String, String>) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().strip_prefix("Key ").map(|k| k.trim().to_owned()))
        .or_else(|| params.get("key").map(|k| k.trim().to_owned()))
        .filter(|k| !k.is_empty())
}

/// The owner of the request's API key, or 403 saying what is missing.
pub(crate) fn key_owner_of(
    state: &AppState,
    headers: &HeaderMap,
    params: &BTreeMap<String, String>,
) -> Result<KeyOwner, ApiError> {
    let Some(key) = api_key(headers, params) else {
        state.metrics.refused_keys.inc();
        return Err(ApiError::forbidden(
            "no API key: send `Authorization: Key <key>` or `?key=<key>`; keys are Secrets labelled vantage.dev/api-key=true",
        ));
    };
    state.catalog.key_owner(&key).ok_or_else(|| {
        state.metrics.refused_keys.inc();
        ApiError::forbidden(
            "the API key is not known; check it, or ask for a key in your namespace",
        )
    })
}

/// Whether `owner`'s key created `m` (the key Secret recorded in [`KEY_ANNOTATION`] at
/// creation, in the same namespace).
pub(crate) fn owned_by(m: &Measurement, owner: &KeyOwner) -> bool {
    m.metadata.namespace.as_deref() == Some(owner.namespace.as_str())
        && m.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(KEY_ANNOTATION))
            == Some(&owner.secret)
}

/// The measurement `id` if `owner` created it: 404 if there is none, 403 if another
/// key created it.
pub(crate) fn owned_measurement(
    state: &AppState,
    id: u64,
    owner: &KeyOwner,
) -> Result<std::sync::Arc<Measurement>, ApiError> {
    let m = state
        .catalog
        .measurement_by_id(id)
        .filter(|m| m.metadata.deletion_timestamp.is_none())
        .ok_or_else(|| ApiError::not_found(format!("measurement {id} does not exist")))?;
    if !owned_by(&m, owner) {
        return Err(ApiError::forbidden(format!(
            "measurement {id} was not created with this API key; only the key that created it may change it"
        )));
    }
    Ok(m)
}

/// A Kubernetes refusal or failure as an API error.
pub(crate) fn catalog_error(e: CatalogError, namespace: &str) -> ApiError {
    match e {
        CatalogError::Refused { code, message, .. } if (400..500).contains(&code) => ApiError::new(
            if code == 403 {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::BAD_REQUEST
            },
            format!("the measurement was refused in namespace {namespace}: {message}"),
        ),
        e => ApiError::unavailable(e.to_string()),
    }
}

pub(crate) async fn create_measurements(
    State(state): St,
    headers: HeaderMap,
    q: Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = params(q)?;
    let owner = key_owner_of(&state, &headers, &params)?;
    let req: ripe::CreateRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::field("body", format!("is not a RIPE Atlas measurement request ({e}); send {{\"definitions\": [...], \"probes\": [...]}}"))
    })?;
    let requested: Vec<(String, i64)> = req
        .probes
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("probes[{i}]"), p.requested))
        .collect();
    ripe::requested_within(&requested, 0, state.max_requested)?;
    let now = chrono::Utc::now().timestamp();
    let specs = ripe::specs_of(&req, now)?;
    let mut names = Vec::new();
    for spec in specs {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("api-{}-{}", spec.definition.kind, &suffix[..10]);
        let msm = Measurement {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(owner.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    CREATED_BY_LABEL.to_owned(),
                    "api".to_owned(),
                )])),
                annotations: Some(BTreeMap::from([(
                    KEY_ANNOTATION.to_owned(),
                    owner.secret.clone(),
                )])),
                ..Default::default()
            },
            spec,
            status: None,
        };
        let created = state
            .catalog
            .create(msm)
            .await
            .map_err(|e| catalog_error(e, &owner.namespace))?;
        state.metrics.created.inc();
        tracing::info!(namespace = %owner.namespace, name = %created, key = %owner.secret, "measurement created");
        names.push(created);
    }
    let ids = wait_for_ids(&state, &owner.namespace, &names).await?;
    Ok((StatusCode::CREATED, Json(json!({"measurements": ids}))).into_response())
}

/// Wait until the operator gave each measurement its id. A measurement it marked Failed
/// is answered with its Invalid condition's message.
pub(crate) async fn wait_for_ids(
    state: &AppState,
    namespace: &str,
    names: &[String],
) -> Result<Vec<u64>, ApiError> {
    let deadline = Instant::now() + state.create_timeout;
    loop {
        let mut ids = Vec::new();
        for name in names {
            let Some(m) = state.catalog.measurement_named(namespace, name) else {
                break;
            };
            let status = m.status.clone().unwrap_or_default();
            if let Some(id) = status.id {
                ids.push(id);
                continue;
            }
            let failed = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Invalid" && c.status == "True");
            if let Some(c) = failed {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("{namespace}/{name} is invalid: {}", c.message),
                ));
            }
            break;
        }
        if ids.len() == names.len() {
            return Ok(ids);
        }
        if Instant::now() >= deadline {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "created {} in namespace {namespace}, but the operator gave no id within {:?}; check that the operator runs (kubectl get msm -n {namespace})",
                    names.join(", "),
                    state.create_timeout
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
