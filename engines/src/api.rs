//! The HTTP API, shaped like RIPE IPmap's (`/api/v1/locate/{ip}/`, `/worlds/...`,
//! `POST /crowdsource/{ip}`): the axum handlers over the locate service
//! ([`crate::locate`]). Errors are JSON `{"error": <reason>, "message": <text>}`.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::engine::crowd::{unix_now, Report};
use crate::engine::Scope;
use crate::geo;
use crate::reducer::{Contribution, Located};
use crate::rir::country_code;
use crate::world::City;

/// The locate service the handlers serve.
pub use crate::locate::Api;

/// A 4xx/5xx answer with a reason.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
        }
    }
    fn body(&self) -> Value {
        json!({"error": self.reason, "message": self.message})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// The `413` for a declared body length over the limit, in this API's error shape.
pub fn too_large(declared: u64, max: u64) -> Response {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "the request body is {declared} bytes, over the limit of {max}; send a smaller body"
        ),
    )
    .into_response()
}

/// Why an address is not on the public Internet, if it is not.
pub fn reserved(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => reserved_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return reserved_v4(v4).or(Some(
                    "an IPv4-mapped IPv6 address (::ffff:0:0/96); ask for the IPv4 address",
                ));
            }
            let s = v6.segments();
            if v6.is_unspecified() {
                Some("the unspecified address (::)")
            } else if v6.is_loopback() {
                Some("loopback (::1)")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("a unique local address (fc00::/7, RFC 4193)")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local (fe80::/10)")
            } else if v6.is_multicast() {
                Some("multicast (ff00::/8)")
            } else if s[0] == 0x2001 && s[1] == 0x0db8 {
                Some("documentation (2001:db8::/32, RFC 3849)")
            } else if s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0 {
                Some("discard-only (100::/64, RFC 6666)")
            } else if s[0] & 0xe000 != 0x2000 {
                Some("outside global unicast (2000::/3)")
            } else {
                None
            }
        }
    }
}

fn reserved_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if o[0] == 0 {
        Some("\"this network\" (0.0.0.0/8)")
    } else if ip.is_private() {
        Some("private (RFC 1918: 10/8, 172.16/12, 192.168/16)")
    } else if ip.is_loopback() {
        Some("loopback (127.0.0.0/8)")
    } else if ip.is_link_local() {
        Some("link-local (169.254.0.0/16)")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared address space for carrier-grade NAT (100.64.0.0/10, RFC 6598)")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignments (192.0.0.0/24)")
    } else if ip.is_documentation() {
        Some("documentation (192.0.2/24, 198.51.100/24, 203.0.113/24, RFC 5737)")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        Some("benchmarking (198.18.0.0/15, RFC 2544)")
    } else if ip.is_multicast() {
        Some("multicast (224.0.0.0/4)")
    } else if ip.is_broadcast() {
        Some("broadcast (255.255.255.255)")
    } else if o[0] >= 240 {
        Some("reserved (240.0.0.0/4)")
    } else {
        None
    }
}

/// Parse and check an address: 400 when it is not one, 422 when it is not public.
pub fn public_ip(text: &str) -> Result<IpAddr, ApiError> {
    let ip: IpAddr = text.trim().parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_ip",
            format!("{:?} is not an IPv4 or IPv6 address", truncate(text, 80)),
        )
    })?;
    if let Some(why) = reserved(ip) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved_address",
            format!("{ip} is {why}: it has no public location and is not measured"),
        ));
    }
    Ok(ip)
}

/// 422 `unrouted_address` when an ASN table is loaded, has routes of the address's
/// family, and none of them covers the address. Without a table nothing is checked.
fn routed(api: &Api, ip: IpAddr) -> Result<(), ApiError> {
    let Some(routes) = api.locator().routes() else {
        return Ok(());
    };
    if routes.covers(ip) == Some(false) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unrouted_address",
            format!(
                "no BGP route covers {ip} in the loaded ASN table ({}): it is not announced, so it has no location to find; if it should be routed, refresh that table (--asn-table)",
                routes.source()
            ),
        ));
    }
    Ok(())
}

/// A public address that a route covers (when an ASN table is loaded).
fn locatable(api: &Api, text: &str) -> Result<IpAddr, ApiError> {
    let ip = public_ip(text)?;
    routed(api, ip)?;
    Ok(ip)
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// A location as IPmap answers it, with its `scope`: a `city`, or only a `country`
/// (then `id`, `cityName` and `stateAnsiCode` are null, and the coordinates are those of
/// the country's most populous city: a point in the country, not a location).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    pub id: Option<u32>,
    pub city_name: Option<String>,
    pub state_ansi_code: Option<String>,
    pub country_code_alpha2: String,
    pub latitude: f64,
    pub longitude: f64,
    pub score: f64,
    pub contributions: BTreeMap<String, Contribution>,
    pub scope: Scope,
}

fn location(api: &Api, s: &crate::reducer::Scored) -> Option<Location> {
    let world = &api.locator().world;
    let c = world.city(s.city_id)?;
    if s.scope == Scope::Country {
        let point = country_code(&c.country)
            .and_then(|cc| api.locator().representative(cc))
            .and_then(|id| world.city(id))
            .unwrap_or(c);
        return Some(Location {
            id: None,
            city_name: None,
            state_ansi_code: None,
            country_code_alpha2: c.country.clone(),
            latitude: point.latitude,
            longitude: point.longitude,
            score: s.score,
            contributions: s.contributions.clone(),
            scope: Scope::Country,
        });
    }
    Some(Location {
        id: Some(c.id),
        city_name: Some(c.name.clone()),
        state_ansi_code: Some(c.admin1.clone()),
        country_code_alpha2: c.country.clone(),
        latitude: c.latitude,
        longitude: c.longitude,
        score: s.score,
        contributions: s.contributions.clone(),
        scope: Scope::City,
    })
}

/// The answer's locations, best first; a country appears once at country scope (its
/// best-ranked entry), since its entries would differ only in score.
fn locations(api: &Api, located: &Located) -> Vec<Location> {
    let mut countries = HashSet::new();
    located
        .scored
        .iter()
        .filter_map(|s| location(api, s))
        .filter(|l| l.scope == Scope::City || countries.insert(l.country_code_alpha2.clone()))
        .collect()
}

fn answer(api: &Api, located: &Located) -> Value {
    json!({
        "ip": located.ip,
        "anycast": located.anycast,
        "locations": locations(api, located),
    })
}

/// The `?engines=` filter: known names only.
fn engine_filter(api: &Api, q: &LocateQuery) -> Result<Option<HashSet<String>>, ApiError> {
    let Some(list) = q.engines.as_deref() else {
        return Ok(None);
    };
    let known = api.locator().engine_names();
    let mut set = HashSet::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !known.iter().any(|k| k == name) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_engine",
                format!(
                    "no engine {:?}; known: {}",
                    truncate(name, 60),
                    known.join(", ")
                ),
            ));
        }
        set.insert(name.to_owned());
    }
    if set.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_engine",
            "engines= names no engine",
        ));
    }
    Ok(Some(set))
}

/// One locate request: a public address and a valid `engines=` filter, or a refusal.
async fn locate_request(
    api: &Api,
    ip: &str,
    q: &LocateQuery,
) -> Result<(IpAddr, Arc<Located>), ApiError> {
    let ip = locatable(api, ip).map_err(|e| refuse(api, e))?;
    let only = engine_filter(api, q).map_err(|e| refuse(api, e))?;
    Ok((ip, api.locate(ip, only.as_ref()).await))
}

fn refuse(api: &Api, e: ApiError) -> ApiError {
    if e.status.is_client_error() {
        api.count_bad_request();
    }
    e
}

#[derive(Debug, Default, Deserialize)]
pub struct LocateQuery {
    engines: Option<String>,
    resources: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct WorldsQuery {
    search: Option<String>,
    country: Option<String>,
    limit: Option<usize>,
}

type ApiResult = Result<Json<Value>, ApiError>;

/// One route of the locate API: method, path (served with and without the trailing
/// slash), summary, parameters. The router and the OpenAPI document
/// ([`crate::openapi`]) are both built from [`table`].
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub params: &'static [crate::openapi::Param],
}

/// Every route with its handler.
pub fn table() -> Vec<(RouteDoc, axum::routing::MethodRouter<Arc<Api>>)> {
    use crate::openapi::Param::*;
    let r = |method, path, summary, params| RouteDoc {
        method,
        path,
        summary,
        params,
    };
    vec![
        (
            r(
                "get",
                "/api/v1/locate/all",
                "Locate a batch of addresses",
                &[Resources, Engines],
            ),
            get(locate_all),
        ),
        (
            r(
                "get",
                "/api/v1/locate/{ip}",
                "Every candidate location of an address, best first",
                &[Ip, Engines],
            ),
            get(locate),
        ),
        (
            r(
                "get",
                "/api/v1/locate/{ip}/best",
                "The best location of an address",
                &[Ip, Engines],
            ),
            get(best),
        ),
        (
            r(
                "get",
                "/api/v1/locate/{ip}/partials",
                "Each engine's answer for an address",
                &[Ip, Engines],
            ),
            get(partials),
        ),
        (
            r(
                "get",
                "/api/v1/locate/{ip}/partials/{engine}",
                "One engine's answer for an address",
                &[Ip, Engine],
            ),
            get(partial),
        ),
        (
            r(
                "get",
                "/api/v1/worlds",
                "Search the cities of the world dataset (largest first)",
                &[Search, Country, Limit],
            ),
            get(worlds),
        ),
        (
            r(
                "get",
                "/api/v1/worlds/reverse/{lat}/{lon}",
                "The city nearest a point",
                &[Lat, Lon],
            ),
            get(reverse),
        ),
        (
            r(
                "get",
                "/api/v1/worlds/{id}",
                "One city by GeoNames id",
                &[CityId],
            ),
            get(world_city),
        ),
        (
            r(
                "post",
                "/api/v1/crowdsource/{ip}",
                "Report where an address is (crowdsourced engine)",
                &[Ip],
            ),
            post(crowdsource),
        ),
        (
            r(
                "get",
                crate::openapi::PATH,
                "This document (OpenAPI 3.1)",
                &[],
            ),
            get(crate::openapi::serve),
        ),
    ]
}

/// The API routes (`/api/v1/...`, each also with a trailing slash) and the OpenAPI
/// document.
pub fn router(api: Arc<Api>) -> Router {
    let mut router = Router::new();
    for (doc, handler) in table() {
        if doc.path.starts_with("/api/v1/") {
            router = router.route(&format!("{}/", doc.path), handler.clone());
        }
        router = router.route(doc.path, handler);
    }
    router
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see /openapi.json and docs/GEOLOCATION.md",
            )
        })
        .with_state(api)
}

async fn locate(
    State(api): State<Arc<Api>>,
    Path(ip): Path<String>,
    Query(q): Query<LocateQuery>,
) -> ApiResult {
    let (_, located) = locate_request(&api, &ip, &q).await?;
    Ok(Json(answer(&api, &located)))
}

async fn best(
    State(api): State<Arc<Api>>,
    Path(ip): Path<String>,
    Query(q): Query<LocateQuery>,
) -> ApiResult {
    let (ip, located) = locate_request(&api, &ip, &q).await?;
    let best = located.scored.first().and_then(|s| location(&api, s));
    Ok(Json(
        json!({"ip": ip, "anycast": located.anycast, "location": best}),
    ))
}

fn partial_json(api: &Api, p: &crate::reducer::Partial) -> Value {
    let cities: Vec<Value> = p
        .candidates
        .iter()
        .filter_map(|c| {
            let city = api.locator().world.city(c.city_id)?;
            Some(json!({
                "id": city.id,
                "cityName": city.name,
                "stateAnsiCode": city.admin1,
                "countryCodeAlpha2": city.country,
                "latitude": city.latitude,
                "longitude": city.longitude,
                "score": c.score,
            }))
        })
        .collect();
    json!({"engine": p.engine, "weight": p.weight, "scope": p.scope, "error": p.error, "locations": cities})
}

async fn partials(
    State(api): State<Arc<Api>>,
    Path(ip): Path<String>,
    Query(q): Query<LocateQuery>,
) -> ApiResult {
    let (ip, located) = locate_request(&api, &ip, &q).await?;
    let parts: Vec<Value> = located
        .partials
        .iter()
        .map(|p| partial_json(&api, p))
        .collect();
    Ok(Json(json!({"ip": ip, "partials": parts})))
}

async fn partial(
    State(api): State<Arc<Api>>,
    Path((ip, engine)): Path<(String, String)>,
) -> ApiResult {
    let q = LocateQuery {
        engines: Some(engine),
        resources: None,
    };
    let (ip, located) = locate_request(&api, &ip, &q).await?;
    let part = located.partials.first().map(|p| partial_json(&api, p));
    Ok(Json(json!({"ip": ip, "partial": part})))
}

async fn locate_all(State(api): State<Arc<Api>>, Query(q): Query<LocateQuery>) -> ApiResult {
    let only = engine_filter(&api, &q).map_err(|e| refuse(&api, e))?;
    let Some(resources) = q.resources.as_deref() else {
        return Err(refuse(
            &api,
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_resources",
                "give the addresses as resources=192.0.2.1,2001:db8::1",
            ),
        ));
    };
    let list: Vec<&str> = resources
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    if list.is_empty() {
        return Err(refuse(
            &api,
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_resources",
                "resources= is empty",
            ),
        ));
    }
    if list.len() > api.max_batch() {
        return Err(refuse(
            &api,
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "batch_too_large",
                format!(
                    "{} addresses asked for; one batch takes at most {}",
                    list.len(),
                    api.max_batch()
                ),
            ),
        ));
    }
    let mut results = serde_json::Map::new();
    let mut errors = serde_json::Map::new();
    let mut good = Vec::new();
    for r in &list {
        match locatable(&api, r) {
            Ok(ip) => good.push(ip),
            Err(e) => {
                errors.insert((*r).to_owned(), e.body());
            }
        }
    }
    let only = only.as_ref();
    let api_ref = &api;
    let answers: Vec<Arc<Located>> = futures::stream::iter(good)
        .map(|ip| async move { api_ref.locate(ip, only).await })
        .buffer_unordered(16)
        .collect()
        .await;
    for located in answers {
        results.insert(located.ip.to_string(), answer(&api, &located));
    }
    Ok(Json(json!({"results": results, "errors": errors})))
}

fn city_json(c: &City) -> Value {
    json!(c)
}

async fn worlds(
    State(api): State<Arc<Api>>,
    q: Result<Query<WorldsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| {
        refuse(
            &api,
            ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()),
        )
    })?;
    let limit = q.limit.unwrap_or(20);
    if limit == 0 || limit > 1000 {
        return Err(refuse(
            &api,
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_limit",
                "limit must be 1..=1000",
            ),
        ));
    }
    // Neither search= nor country=: the largest cities of the world.
    let hits = api
        .locator()
        .world
        .search(q.search.as_deref(), q.country.as_deref(), limit);
    let cities: Vec<Value> = hits.into_iter().map(city_json).collect();
    Ok(Json(
        json!({"cities": cities, "dataset": api.locator().world.version()}),
    ))
}

async fn world_city(State(api): State<Arc<Api>>, Path(id): Path<String>) -> ApiResult {
    let id: u32 = id.parse().map_err(|_| {
        refuse(
            &api,
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_id",
                "a city id is a GeoNames id (a number)",
            ),
        )
    })?;
    match api.locator().world.city(id) {
        Some(c) => Ok(Json(city_json(c))),
        None => Err(refuse(
            &api,
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_city",
                format!("no city with GeoNames id {id}"),
            ),
        )),
    }
}

async fn reverse(
    State(api): State<Arc<Api>>,
    Path((lat, lon)): Path<(String, String)>,
) -> ApiResult {
    let coords = lat
        .parse::<f64>()
        .ok()
        .zip(lon.parse::<f64>().ok())
        .filter(|(a, o)| geo::valid_coordinates(*a, *o));
    let Some((lat, lon)) = coords else {
        return Err(refuse(
            &api,
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_coordinates",
                "latitude must be in -90..=90 and longitude in -180..=180, as decimal degrees",
            ),
        ));
    };
    match api.locator().world.nearest(lat, lon) {
        Some((c, d)) => Ok(Json(json!({"city": c, "distanceKm": d}))),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "empty_world",
            "the world dataset is empty",
        )),
    }
}

#[derive(Debug, Deserialize)]
pub struct CrowdBody {
    latitude: Option<f64>,
    longitude: Option<f64>,
    /// A JSON number, so that `2759794.0` (an integer to JSON Schema) is taken too.
    id: Option<f64>,
    user: Option<String>,
}

/// A GeoNames id given as a JSON number: whole, and within 32 bits.
fn city_id(id: f64) -> Option<u32> {
    (id.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&id)).then_some(id as u32)
}

async fn crowdsource(
    State(api): State<Arc<Api>>,
    Path(ip): Path<String>,
    headers: HeaderMap,
    body: Result<Json<CrowdBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let ip = public_ip(&ip).map_err(|e| refuse(&api, e))?;
    let Json(body) = body.map_err(|e| {
        refuse(
            &api,
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.body_text()),
        )
    })?;
    let Some(crowd) = api.crowd() else {
        return Err(refuse(
            &api,
            ApiError::new(
                StatusCode::NOT_FOUND,
                "engine_disabled",
                "the crowdsourced engine is not configured",
            ),
        ));
    };
    let user = body
        .user
        .clone()
        .or_else(|| {
            headers
                .get("x-vantage-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty() && u.chars().count() <= 128);
    let Some(user) = user else {
        return Err(refuse(&api, ApiError::new(
            StatusCode::BAD_REQUEST,
            "missing_user",
            "say who reports: \"user\" in the body or the X-Vantage-User header (at most 128 characters)",
        )));
    };
    let world = &api.locator().world;
    let city = match (body.id.map(city_id), body.latitude, body.longitude) {
        (Some(Some(id)), None, None) => world.city(id).ok_or_else(|| {
            refuse(&api, ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "unknown_city", format!("no city with GeoNames id {id}")))
        })?,
        (None, Some(lat), Some(lon)) if geo::valid_coordinates(lat, lon) => world
            .nearest(lat, lon)
            .map(|(c, _)| c)
            .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "empty_world", "the world dataset is empty"))?,
        _ => {
            return Err(refuse(&api, ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_location",
                "give either {\"id\": <GeoNames id>} or {\"latitude\": <-90..90>, \"longitude\": <-180..180>}",
            )))
        }
    };
    let (lat, lon) = match (body.latitude, body.longitude) {
        (Some(a), Some(o)) => (a, o),
        _ => (city.latitude, city.longitude),
    };
    let report = Report {
        ip: ip.to_string(),
        user,
        city_id: city.id,
        latitude: lat,
        longitude: lon,
        reported_at: unix_now(),
    };
    api.accept_report(&crowd, ip, report).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        )
    })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"ip": ip, "accepted": true, "city": city})),
    ))
}
