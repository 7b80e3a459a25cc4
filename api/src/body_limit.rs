//! Request bodies over [`MAX_BODY_BYTES`] get `413` with the RIPE Atlas error object,
//! never buffered whole.
//!
//! A body that declares its length (`Content-Length`) over the limit is answered
//! before any handler runs, by the HTTP server's shared mechanism
//! ([`vantage_platform::http::declared`]: the rest of the body is read and thrown away
//! behind the answer, so that clients that send the whole body first still see the
//! 413). A body without a declared length is cut at the limit while the handler reads it
//! (the router's `DefaultBodyLimit` of [`MAX_BODY_BYTES`]); that `413` gets the same
//! error object.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use vantage_platform::http::{refuse_declared_over, DeclaredLimit};

use crate::error::ApiError;

/// The largest request body accepted: far above any RIPE Atlas creation body (at most
/// 100 definitions) or participation request.
pub const MAX_BODY_BYTES: usize = 1 << 20;

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

fn declared_too_large(declared: u64, _max: u64) -> Response {
    too_large(Some(declared))
}

const DECLARED: DeclaredLimit = DeclaredLimit {
    max_bytes: MAX_BODY_BYTES as u64,
    too_large: declared_too_large,
};

/// The middleware (`axum::middleware::from_fn`).
pub async fn limit_bodies(req: Request, next: Next) -> Response {
    let resp = refuse_declared_over(State(DECLARED), req, next).await;
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
