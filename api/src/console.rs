//! The web console, served by `vantage api` on the same origin as the API: the page
//! (`index.html`, never cached) at each of the console's URLs, and its hashed files
//! under `/assets/` (cached for good), gzip-compressed when the client accepts it.
//! The files are embedded at compile time (`build.rs`) behind [`Assets`], so that the
//! routes are tested with a fixture set. A binary built without the console answers
//! its pages with a 503 that says how to build it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use crate::routes::AppState;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/console_files.rs"));
}

/// The console's page URLs (axum syntax): each answers `index.html` to a GET.
pub const PAGES: &[&str] = &[
    "/",
    "/probes",
    "/probes/{id}",
    "/measurements",
    "/measurements/new",
    "/measurements/{id}",
    "/locate",
    "/censorship",
];

/// The Content-Security-Policy of console responses: everything from this origin, no
/// inline scripts, no framing.
pub const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// One file of the console.
#[derive(Clone, Debug)]
pub struct Asset {
    pub bytes: Bytes,
    /// The same bytes gzip-compressed, when that is smaller.
    pub gzip: Option<Bytes>,
    pub content_type: &'static str,
}

/// The console's files by path under `dist/` (`index.html`, `assets/index-abc.js`).
pub trait Assets: Send + Sync + 'static {
    fn get(&self, path: &str) -> Option<Asset>;
}

/// The files embedded in this binary at compile time (none when it was built without
/// `console/dist`).
pub struct EmbeddedAssets;

impl EmbeddedAssets {
    /// Whether this binary holds the console.
    pub fn built() -> bool {
        embedded::FILES.iter().any(|(p, _, _)| *p == "index.html")
    }
}

impl Assets for EmbeddedAssets {
    fn get(&self, path: &str) -> Option<Asset> {
        embedded::FILES
            .iter()
            .find(|(p, _, _)| *p == path)
            .map(|(p, bytes, gz)| Asset {
                bytes: Bytes::from_static(bytes),
                gzip: gz.map(Bytes::from_static),
                content_type: content_type(p),
            })
    }
}

/// The Content-Type of a file, from its extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Whether `Accept-Encoding` takes gzip (a `q=0` refuses it).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

/// The routes of the console's pages and files, GET only (other paths keep the API's
/// JSON 404).
pub fn routes() -> Router<Arc<AppState>> {
    let mut router = Router::new();
    for page in PAGES {
        router = router.route(page, get(page_handler));
    }
    router.route("/assets/{*path}", get(asset_handler))
}

/// Headers every console response carries.
fn secured(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// `asset`, compressed if the client takes gzip, with `cache_control`.
fn serve(asset: Asset, headers: &HeaderMap, cache_control: &'static str) -> Response {
    let (body, gzipped) = match asset.gzip {
        Some(gz) if accepts_gzip(headers) => (gz, true),
        _ => (asset.bytes, false),
    };
    let mut resp = (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, cache_control),
            (header::VARY, "Accept-Encoding"),
        ],
        Body::from(body),
    )
        .into_response();
    if gzipped {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    secured(resp)
}

/// What a binary built without the console answers at its pages.
const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>vantage console not built</title></head>\
<body><h1>The console is not in this binary</h1><p>This binary was built without the console; build it with \
<code>make console</code> (npm in console/ writes console/dist), then rebuild vantage. The API itself works: see \
<a href=\"/api/openapi.json\">/api/openapi.json</a>.</p></body></html>";

/// The page, for any of the console's URLs (the front end routes by path).
pub fn index(assets: &dyn Assets, headers: &HeaderMap) -> Response {
    match assets.get("index.html") {
        Some(page) => serve(page, headers, "no-cache"),
        None => secured(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                NOT_BUILT,
            )
                .into_response(),
        ),
    }
}

/// A file under `/assets/`: hashed names, so cached for a year and never revalidated.
pub fn asset(assets: &dyn Assets, path: &str, headers: &HeaderMap) -> Response {
    let found = (!path
        .split('/')
        .any(|s| s.is_empty() || s == ".." || s == "."))
    .then(|| assets.get(&format!("assets/{path}")))
    .flatten();
    match found {
        Some(a) => serve(a, headers, "public, max-age=31536000, immutable"),
        None => secured(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("no console file assets/{path}; reload the page to get the current ones"),
            )
                .into_response(),
        ),
    }
}

async fn page_handler(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    index(state.console.as_ref(), &headers)
}

async fn asset_handler(
    State(state): State<Arc<AppState>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    asset(state.console.as_ref(), &path, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(accept).expect("header"),
        );
        h
    }

    #[test]
    fn gzip_acceptance() {
        assert!(accepts_gzip(&headers("gzip, deflate, br")));
        assert!(accepts_gzip(&headers("br;q=1.0, gzip;q=0.8")));
        assert!(accepts_gzip(&headers("*")));
        assert!(!accepts_gzip(&headers("gzip;q=0, br")));
        assert!(!accepts_gzip(&headers("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("assets/index-x.JS"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("assets/a.woff2"), "font/woff2");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }

    struct Two;
    impl Assets for Two {
        fn get(&self, path: &str) -> Option<Asset> {
            (path == "assets/a.js").then(|| Asset {
                bytes: Bytes::from_static(b"x"),
                gzip: None,
                content_type: "text/javascript; charset=utf-8",
            })
        }
    }

    #[test]
    fn asset_paths_stay_in_the_folder() {
        let h = HeaderMap::new();
        assert_eq!(asset(&Two, "a.js", &h).status(), StatusCode::OK);
        assert_eq!(asset(&Two, "../a.js", &h).status(), StatusCode::NOT_FOUND);
        assert_eq!(asset(&Two, "x//a.js", &h).status(), StatusCode::NOT_FOUND);
        let missing = index(&Two, &h);
        assert_eq!(missing.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            missing.headers()[header::CONTENT_SECURITY_POLICY],
            HeaderValue::from_static(CSP)
        );
    }
}
