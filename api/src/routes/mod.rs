//! The HTTP routes. One [`table`] lists every route with its documentation: the router
//! and the OpenAPI document ([`openapi_doc`]) are both built from it, so neither can
//! miss a route. The handlers are grouped by API family, one module each: `ripe` (RIPE
//! Atlas API v2), `ooni` (OONI-style search), `vantage` (the console's own routes under
//! `/api/vantage/v1/`) and `openapi`; `state` holds what they share ([`AppState`],
//! [`Metrics`], request helpers). The console's pages ([`crate::console`]) and the
//! geolocation proxy (`locate`) are routed beside the table, outside the document.

mod locate;
mod ooni;
mod openapi;
mod ripe;
mod state;
mod vantage;

use std::sync::Arc;

use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;

pub use openapi::{openapi_doc, Ty};
pub use ripe::{latest_sql, results_sql};
pub use state::{AppState, Metrics};

use crate::error::ApiError;
use ooni::{OONI_AGG, OONI_LIST};
use ripe::{ID, LATEST_PARAMS, MSM_FILTERS, PROBE_FILTERS, RESULT_PARAMS};

/// A parameter in the OpenAPI document: name, location (`path`/`query`), description,
/// and how the handler reads it.
pub type ParamDoc = (&'static str, &'static str, &'static str, Ty);

/// One route: method, path (axum syntax, which is also OpenAPI's), summary, parameters,
/// whether the other trailing-slash form is served too (RIPE Atlas clients use both).
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub params: &'static [ParamDoc],
    pub slash_alias: bool,
}

/// Every route with its handler.
pub fn table() -> Vec<(RouteDoc, MethodRouter<Arc<AppState>>)> {
    let r = |method, path, summary, params, slash_alias| RouteDoc {
        method,
        path,
        summary,
        params,
        slash_alias,
    };
    vec![
        (r("get", "/api/v2/measurements/", "List measurements (RIPE Atlas filters and pages)", MSM_FILTERS, true), get(ripe::list_measurements)),
        (r("post", "/api/v2/measurements/", "Create measurements (RIPE Atlas body; API key: `Authorization: Key <key>` or `?key=`)", &[], true), post(ripe::create_measurements)),
        (r("get", "/api/v2/measurements/{id}/", "One measurement", &[ID], true), get(ripe::one_measurement)),
        (r("delete", "/api/v2/measurements/{id}/", "Stop a measurement (only the API key that created it)", &[ID], true), delete(ripe::stop_measurement)),
        (r("post", "/api/v2/measurements/{id}/participation-requests/", "Add or remove probes of a running measurement: [{action, type, value, requested}]; answers {request_ids}", &[ID], true), post(ripe::participation_requests)),
        (r("get", "/api/v2/measurements/{id}/results/", "Results of a measurement, streamed", RESULT_PARAMS, true), get(ripe::results)),
        (r("get", "/api/v2/measurements/{id}/latest/", "The newest result of each probe", LATEST_PARAMS, true), get(ripe::latest)),
        (r("get", "/api/v2/measurements/{id}/stream/", "Live results (server-sent events `result`)", &[ID], true), get(ripe::stream)),
        (r("get", "/api/v2/probes/", "List probes", PROBE_FILTERS, true), get(ripe::list_probes)),
        (r("get", "/api/v2/probes/{id}/", "One probe", &[ripe::PROBE_ID], true), get(ripe::one_probe)),
        (r("get", "/api/v1/measurements", "Search fastpath measurements (OONI)", OONI_LIST, false), get(ooni::ooni_measurements)),
        (r("get", "/api/v1/aggregation", "Count fastpath measurements by axes (OONI)", OONI_AGG, false), get(ooni::ooni_aggregation)),
        (r("get", "/api/vantage/v1/probes/map", "vantage: every probe as one compact row (id, lat, lon, status, is_anchor, asn_v4, country_code, tags), sorted by id; gzip when accepted", &[], false), get(vantage::probe_map)),
        (r("get", "/api/vantage/v1/probes/{id}/measurements", "vantage: the measurements this probe takes part in", &[vantage::PROBE_ID], false), get(vantage::probe_measurements)),
        (r("get", "/api/vantage/v1/probes/{id}/results", "vantage: the newest results of this probe, newest first", vantage::PROBE_RESULTS_PARAMS, false), get(vantage::probe_results)),
        (r("get", "/api/vantage/v1/probes/{id}/connections", "vantage: this probe's connections and disconnections, newest first", vantage::CONNECTIONS_PARAMS, false), get(vantage::probe_connections)),
        (r("get", "/api/vantage/v1/measurements/{id}/summary", "vantage: the results aggregated in time buckets (per-type fields) and a breakdown", vantage::SUMMARY_PARAMS, false), get(vantage::measurement_summary)),
        (r("get", "/api/vantage/v1/measurements/{id}/probes", "vantage: the results aggregated per probe", vantage::PROBES_PARAMS, false), get(vantage::measurement_probes)),
        (r("get", "/api/openapi.json", "This document", &[], false), get(openapi::openapi)),
        (r("get", "/stream/", "RIPE Atlas streaming API (WebSocket): send [\"atlas_subscribe\", {\"stream_type\": \"result\", \"msm\": <id>}]; stream types result (msm, prb, type, sourceAddress, sendBacklog), probestatus (prb, enrichProbes), metadata (msm, type)", &[], true), get(crate::stream::upgrade)),
    ]
}

/// The router: every route of [`table`], both trailing-slash forms where marked, and a
/// RIPE-style 404 for anything else.
pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new();
    for (doc, handler) in table() {
        router = router.route(doc.path, handler.clone());
        if doc.slash_alias {
            let alias = doc.path.trim_end_matches('/');
            router = router.route(alias, handler);
        }
    }
    // Behind a public URL with a path (`https://host/atlas`), clients that build the
    // stream address from it (cousteau's AtlasStream) ask for `/atlas/stream/`.
    if let Some(prefix) = state.public_url.as_deref().and_then(url_path_prefix) {
        let path = format!("{prefix}/stream/");
        router = router
            .route(&path, get(crate::stream::upgrade))
            .route(path.trim_end_matches('/'), get(crate::stream::upgrade));
    }
    let router = router
        .merge(crate::console::routes())
        .merge(locate::routes());
    let metrics = state.metrics.clone();
    router
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::not_found(format!(
                "no route for {}; see /api/openapi.json",
                uri.path()
            ))
        })
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::body_limit::MAX_BODY_BYTES,
        ))
        .layer(axum::middleware::from_fn(crate::body_limit::limit_bodies))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let metrics = metrics.clone();
                async move {
                    let route = route_label(req.uri().path());
                    let method = req.method().to_string();
                    let resp = next.run(req).await;
                    metrics
                        .requests
                        .get_or_create(&vec![
                            ("method".to_owned(), method),
                            ("route".to_owned(), route),
                            ("code".to_owned(), resp.status().as_u16().to_string()),
                        ])
                        .inc();
                    resp
                }
            },
        ))
        .with_state(state)
}

/// The path of a URL (`https://host/atlas/` gives `/atlas`), if it has one.
fn url_path_prefix(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map(|i| &rest[i..])?;
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let path = path.trim_end_matches('/');
    (!path.is_empty()).then(|| path.to_owned())
}

/// The route a path belongs to, with ids folded (bounded label values).
fn route_label(path: &str) -> String {
    let folded: Vec<&str> = path
        .trim_end_matches('/')
        .split('/')
        .map(|seg| {
            if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                seg
            }
        })
        .collect();
    let label = folded.join("/");
    if label.starts_with("/api/v1/locate/") || label.starts_with("/api/v1/worlds/") {
        return "/api/v1/locate".to_owned();
    }
    let page = if label.is_empty() {
        "/"
    } else {
        label.as_str()
    };
    if crate::console::PAGES.contains(&page) || label.starts_with("/assets/") {
        return "console".to_owned();
    }
    if table()
        .iter()
        .any(|(d, _)| d.path.trim_end_matches('/') == label)
    {
        label
    } else {
        "other".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_are_bounded() {
        assert_eq!(
            route_label("/api/v2/measurements/123/results"),
            "/api/v2/measurements/{id}/results"
        );
        assert_eq!(route_label("/api/v2/measurements/"), "/api/v2/measurements");
        assert_eq!(route_label("/wp-admin/123"), "other");
        assert_eq!(route_label("/stream/"), "/stream");
        assert_eq!(
            route_label("/api/v1/locate/192.0.2.1/partials"),
            "/api/v1/locate"
        );
        assert_eq!(route_label("/"), "console");
        assert_eq!(route_label("/measurements/12"), "console");
        assert_eq!(route_label("/assets/index-abc.js"), "console");
        assert_eq!(
            route_label("/api/vantage/v1/measurements/5/summary"),
            "/api/vantage/v1/measurements/{id}/summary"
        );
    }

    #[test]
    fn public_url_paths() {
        assert_eq!(
            url_path_prefix("https://h.example/atlas/"),
            Some("/atlas".into())
        );
        assert_eq!(
            url_path_prefix("https://h.example/a/b"),
            Some("/a/b".into())
        );
        assert_eq!(url_path_prefix("https://h.example"), None);
        assert_eq!(url_path_prefix("https://h.example/"), None);
    }
}
