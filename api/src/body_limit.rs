//! Request bodies over [`MAX_BODY_BYTES`] get `413` with the RIPE Atlas error object,
//! never buffered whole.
//!
//! A body that declares its length (`Content-Length`) over the limit is answered
//! before any handler runs. HTTP/1 clients such as python-requests send the whole body
//! before they read an answer, and a server that answers and closes early makes them
//! see a reset connection instead of the 413; so the rest of the body is read and
//! thrown away first (at most [`DRAIN_MAX_BYTES`] for [`DRAIN_MAX_TIME`]: memory stays
//! one read buffer), then the answer closes the connection. A body without a declared
//! length is cut at the limit while the handler reads it (the router's
//! `DefaultBodyLimit` of [`MAX_BODY_BYTES`]); that `413` gets the same error object.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::error::ApiError;

/// The largest request body accepted: far above any RIPE Atlas creation body (at most
/// 100 definitions) or participation request.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// How much of an oversized body is read and discarded before the 413 is sent.
pub const DRAIN_MAX_BYTES: u64 = 64 << 20;

/// How long an oversized body is read and discarded before the 413 is sent.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(10);

/// The 413 answer; `declared` is the body's declared length, if any.
pub fn too_large(declared: Option<u64>) -> Response {
    let size = declared.map_or_else(|| "is".to_owned(), |n| format!("is {n} bytes,"));
    let mut resp = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body {size} over the limit of {MAX_BODY_BYTES} bytes; send a smaller body (split the definitions over several requests)"
        ),
    )
    .into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Read and discard `body`, up to [`DRAIN_MAX_BYTES`] and [`DRAIN_MAX_TIME`].
async fn drain(body: Body) {
    let mut data = body.into_data_stream();
    let mut seen = 0u64;
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        while let Some(Ok(chunk)) = data.next().await {
            seen = seen.saturating_add(chunk.len() as u64);
            if seen > DRAIN_MAX_BYTES {
                break;
            }
        }
    })
    .await;
}

/// The middleware (`axum::middleware::from_fn`).
pub async fn limit_bodies(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        drain(req.into_body()).await;
        return too_large(declared);
    }
    let resp = next.run(req).await;
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if resp.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        return too_large(None);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_413_is_the_ripe_error_object_and_closes() {
        let resp = too_large(Some(20_000_000));
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(resp.headers()[header::CONNECTION], "close");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["error"]["status"], 413);
        assert_eq!(v["error"]["code"], 413);
        assert_eq!(v["error"]["title"], "Payload Too Large");
        let detail = v["error"]["detail"].as_str().expect("detail");
        assert!(
            detail.contains("20000000 bytes") && detail.contains("1048576"),
            "{detail}"
        );
    }
}
