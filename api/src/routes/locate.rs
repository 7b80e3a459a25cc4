//! Geolocation for the console, proxied to `vantage engines` ([`crate::engines`]):
//! `GET /api/v1/locate/{ip}`, `/api/v1/locate/{ip}/partials` and `/api/v1/worlds/{id}`
//! (query string passed on). The path parameters are checked here; the engines' status
//! and body come back as they are. These routes are the engines' API, documented in
//! the engines' OpenAPI document, so they are not in this API's route table.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::state::{AppState, St};
use crate::error::ApiError;

/// The routes, with and without a trailing slash.
pub fn routes() -> Router<std::sync::Arc<AppState>> {
    let mut router = Router::new();
    for (path, handler) in [
        ("/api/v1/locate/{ip}", get(locate)),
        ("/api/v1/locate/{ip}/partials", get(partials)),
        ("/api/v1/worlds/{id}", get(world)),
    ] {
        router = router
            .route(&format!("{path}/"), handler.clone())
            .route(path, handler);
    }
    router
}

fn ip(ip: &str) -> Result<IpAddr, ApiError> {
    ip.parse().map_err(|_| {
        ApiError::param(
            "ip",
            format!("{ip:?} is not an IPv4 or IPv6 address; give one such as 193.0.14.129"),
        )
    })
}

async fn forward(state: &AppState, path: String, uri: &Uri) -> Result<Response, ApiError> {
    let Some(engines) = state.engines.as_ref() else {
        return Err(ApiError::unavailable(
            "geolocation is off: this API was started without --engines-url (VANTAGE_ENGINES_URL); \
             start it with the URL of `vantage engines`",
        ));
    };
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let answer = engines.get(&path_and_query).await.map_err(|e| {
        tracing::warn!(error = %e, "locate engines unreachable");
        ApiError::unavailable(e.to_string())
    })?;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer
        .content_type
        .unwrap_or_else(|| "application/json".to_owned());
    Ok((status, [(header::CONTENT_TYPE, content_type)], answer.body).into_response())
}

async fn locate(
    State(state): St,
    Path(addr): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let addr = ip(&addr)?;
    forward(&state, format!("/api/v1/locate/{addr}"), &uri).await
}

async fn partials(
    State(state): St,
    Path(addr): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let addr = ip(&addr)?;
    forward(&state, format!("/api/v1/locate/{addr}/partials"), &uri).await
}

async fn world(State(state): St, Path(id): Path<String>, uri: Uri) -> Result<Response, ApiError> {
    if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::param(
            "id",
            format!("{id:?} is not a world id; ids are decimal numbers (GeoNames ids)"),
        ));
    }
    forward(&state, format!("/api/v1/worlds/{id}"), &uri).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        assert!(ip("193.0.14.129").is_ok());
        assert!(ip("2001:db8::1").is_ok());
        let e = ip("../worlds").expect_err("not an address");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.pointer.as_deref(), Some("?ip"));
    }
}
