//! `413` before the body is read: a request whose `Content-Length` is over the limit is
//! answered at once (with `Connection: close`), in the server's own error shape.
//!
//! The body is still read and thrown away behind the answer, in its own task (at most
//! [`DRAIN_MAX_BYTES`] for [`DRAIN_MAX_TIME`], and within the connection's body
//! timeout): HTTP/1 clients such as python-requests send the whole body before they
//! read an answer, and would see a reset connection instead of the `413` if the server
//! closed with their bytes unread. Bodies without a declared length are the handler's to
//! cut (e.g. `axum::body::to_bytes` with a limit).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;

/// How much of an oversized body is read and discarded behind the `413`.
pub const DRAIN_MAX_BYTES: u64 = 64 << 20;

/// How long an oversized body is read and discarded behind the `413`.
pub const DRAIN_MAX_TIME: Duration = Duration::from_secs(10);

/// The limit and the server's `413` (given the declared length and the limit).
#[derive(Clone, Copy, Debug)]
pub struct DeclaredLimit {
    pub max_bytes: u64,
    pub too_large: fn(declared: u64, max_bytes: u64) -> Response,
}

/// The middleware (`axum::middleware::from_fn_with_state(limit, refuse_declared_over)`).
pub async fn refuse_declared_over(
    State(limit): State<DeclaredLimit>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit.max_bytes => {
            tokio::spawn(drain(req.into_body()));
            let mut resp = (limit.too_large)(n, limit.max_bytes);
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
        _ => next.run(req).await,
    }
}

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
