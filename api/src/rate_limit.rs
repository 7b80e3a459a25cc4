//! Per-API-key rate limits on creation (`POST /api/v2/measurements/` and
//! `POST /api/v2/measurements/{id}/participation-requests/`), as RIPE Atlas limits each
//! user: a key over its rate gets `429` with `Retry-After` (seconds) and the RIPE Atlas
//! error object, before the body is read. Requests without a key pass (the handler
//! answers them 403). Keys not seen for a while are forgotten every minute.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use crate::error::ApiError;

/// Default of `--rate-limit-per-minute`.
pub const DEFAULT_PER_MINUTE: u32 = 60;
/// Default of `--rate-limit-burst`.
pub const DEFAULT_BURST: u32 = 60;

/// Creations per API key: `per_minute` on average, `burst` at once; `per_minute` 0
/// turns the limit off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub per_minute: u32,
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            per_minute: DEFAULT_PER_MINUTE,
            burst: DEFAULT_BURST,
        }
    }
}

/// The limiter shared by every connection.
pub struct CreationLimiter {
    limit: RateLimit,
    keys: Option<DefaultKeyedRateLimiter<String>>,
    /// Creations refused with 429.
    pub refused: Counter,
}

impl CreationLimiter {
    pub fn new(limit: RateLimit) -> Arc<Self> {
        let keys = NonZeroU32::new(limit.per_minute).map(|rate| {
            let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst))
        });
        Arc::new(Self {
            limit,
            keys,
            refused: Counter::default(),
        })
    }

    /// Register `creations_rate_limited_total`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "creations_rate_limited",
            "Creation requests refused with 429 (API key over --rate-limit-per-minute)",
            self.refused.clone(),
        );
    }

    /// Forget keys whose bucket is full again, every minute.
    pub fn spawn_cleanup(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                if let Some(keys) = &me.keys {
                    keys.retain_recent();
                    keys.shrink_to_fit();
                }
            }
        })
    }

    /// `None`: go ahead; `Some(wait)`: over the rate, retry after `wait`.
    fn check(&self, key: &str) -> Option<Duration> {
        let keys = self.keys.as_ref()?;
        match keys.check_key(&key.to_owned()) {
            Ok(()) => None,
            Err(not_until) => Some(not_until.wait_time_from(DefaultClock::default().now())),
        }
    }
}

/// Whether a request creates (a measurement or a participation request).
fn creates(method: &Method, path: &str) -> bool {
    if method != Method::POST {
        return false;
    }
    let Some(rest) = path.strip_prefix("/api/v2/measurements") else {
        return false;
    };
    let rest = rest.trim_matches('/');
    rest.is_empty()
        || rest
            .strip_suffix("participation-requests")
            .and_then(|id| id.strip_suffix('/'))
            .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// The API key: `Authorization: Key <key>` or `?key=<key>` (as the handlers read it).
fn api_key(req: &Request) -> Option<String> {
    let from_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().strip_prefix("Key "))
        .map(|k| k.trim().to_owned());
    from_header.or_else(|| {
        axum::extract::Query::<std::collections::BTreeMap<String, String>>::try_from_uri(req.uri())
            .ok()
            .and_then(|q| q.0.get("key").cloned())
    })
}

/// The 429 answer.
pub fn too_many(limit: RateLimit, wait: Duration) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let secs = secs.max(1);
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "this API key is over its creation rate ({} a minute, bursts of {}); retry in {secs} s",
            limit.per_minute, limit.burst
        ),
    )
    .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// The middleware (`axum::middleware::from_fn_with_state(limiter, limit_creations)`).
pub async fn limit_creations(
    State(limiter): State<Arc<CreationLimiter>>,
    req: Request,
    next: Next,
) -> Response {
    if creates(req.method(), req.uri().path()) {
        if let Some(key) = api_key(&req) {
            if let Some(wait) = limiter.check(&key) {
                limiter.refused.inc();
                tracing::debug!(wait_s = wait.as_secs_f64(), "creation rate-limited");
                return too_many(limiter.limit, wait);
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::{get, post};
    use axum::Router;
    use tower::ServiceExt;

    fn app(limiter: Arc<CreationLimiter>) -> Router {
        Router::new()
            .route("/api/v2/measurements/", post(|| async { "created" }))
            .route("/api/v2/measurements/", get(|| async { "list" }))
            .route(
                "/api/v2/measurements/{id}/participation-requests/",
                post(|| async { "added" }),
            )
            .layer(axum::middleware::from_fn_with_state(
                limiter,
                limit_creations,
            ))
    }

    fn req(method: &str, uri: &str, key: Option<&str>) -> Request {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            b = b.header("Authorization", format!("Key {k}"));
        }
        b.body(Body::empty()).expect("request")
    }

    #[test]
    fn creation_routes_are_the_posts_that_create() {
        assert!(creates(&Method::POST, "/api/v2/measurements/"));
        assert!(creates(&Method::POST, "/api/v2/measurements"));
        assert!(creates(
            &Method::POST,
            "/api/v2/measurements/1001/participation-requests/"
        ));
        assert!(!creates(&Method::GET, "/api/v2/measurements/"));
        assert!(!creates(&Method::DELETE, "/api/v2/measurements/1001/"));
        assert!(!creates(&Method::POST, "/api/v2/measurements/1001/"));
        assert!(!creates(&Method::POST, "/api/v2/probes/"));
    }

    #[tokio::test]
    async fn a_key_over_its_burst_gets_429_with_retry_after_and_the_ripe_error() {
        let limiter = CreationLimiter::new(RateLimit {
            per_minute: 2,
            burst: 3,
        });
        let app = app(limiter.clone());
        for _ in 0..3 {
            let resp = app
                .clone()
                .oneshot(req("POST", "/api/v2/measurements/", Some("k1")))
                .await
                .expect("answer");
            assert_eq!(resp.status(), StatusCode::OK);
        }
        let resp = app
            .clone()
            .oneshot(req("POST", "/api/v2/measurements/", Some("k1")))
            .await
            .expect("answer");
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        // Two a minute: the next one in 30 s.
        let retry: u64 = resp.headers()[header::RETRY_AFTER]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!((29..=30).contains(&retry), "Retry-After {retry}");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["error"]["status"], 429);
        assert_eq!(v["error"]["title"], "Too Many Requests");
        // Participation requests count against the same key.
        let resp = app
            .clone()
            .oneshot(req(
                "POST",
                "/api/v2/measurements/7/participation-requests/",
                Some("k1"),
            ))
            .await
            .expect("answer");
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limiter.refused.get(), 2);
        // Another key (also as ?key=), reads and keyless requests are not limited.
        let resp = app
            .clone()
            .oneshot(req("POST", "/api/v2/measurements/?key=k2", None))
            .await
            .expect("answer");
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = app
            .clone()
            .oneshot(req("GET", "/api/v2/measurements/", Some("k1")))
            .await
            .expect("answer");
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = app
            .oneshot(req("POST", "/api/v2/measurements/", None))
            .await
            .expect("answer");
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_rate_of_zero_turns_the_limit_off() {
        let app = app(CreationLimiter::new(RateLimit {
            per_minute: 0,
            burst: 0,
        }));
        for _ in 0..100 {
            let resp = app
                .clone()
                .oneshot(req("POST", "/api/v2/measurements/", Some("k")))
                .await
                .expect("answer");
            assert_eq!(resp.status(), StatusCode::OK);
        }
    }
}
