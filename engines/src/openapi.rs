//! The locate API's OpenAPI 3.1 document, served at [`PATH`] and built from the route
//! [`table`](crate::api::table) (the one the router is built from) and from the running
//! service: the `engines` choices are the engines in force when it is asked for, and a
//! batch's size is the service's `max_batch`.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Map, Value};

use crate::api::{table, RouteDoc};
use crate::locate::Api;

/// Where the document is served (the path FastAPI services such as OONI's use).
pub const PATH: &str = "/openapi.json";

/// A parameter of a route, as the handlers read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// `{ip}`: an IPv4 or IPv6 address (a reserved one is answered 422).
    Ip,
    /// `?engines=`: comma-separated names of engines in force.
    Engines,
    /// `{engine}`: the name of an engine in force.
    Engine,
    /// `?resources=`: comma-separated addresses, at most `max_batch`.
    Resources,
    /// `?search=`: the start of a city name.
    Search,
    /// `?country=`: ISO 3166 alpha-2.
    Country,
    /// `?limit=`: 1 to 1000.
    Limit,
    /// `{id}`: a GeoNames id.
    CityId,
    /// `{lat}`: decimal degrees, -90 to 90.
    Lat,
    /// `{lon}`: decimal degrees, -180 to 180.
    Lon,
}

/// An address in a path. Reserved addresses (private, documentation, ...) are refused
/// with 422: JSON Schema cannot tell them apart, so the document says so in words.
fn ip_schema() -> Value {
    json!({"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]})
}

fn parameter(p: Param, engines: &[String], max_batch: usize) -> Value {
    let names = if engines.is_empty() {
        // No engine in force: no name is taken.
        json!({"type": "string", "not": {}})
    } else {
        json!({"type": "string", "enum": engines})
    };
    let (name, at, desc, schema) = match p {
        Param::Ip => ("ip", "path", "IPv4 or IPv6 address; a reserved one (private, loopback, documentation, ...) is answered 422", ip_schema()),
        Param::Engines => ("engines", "query", "only these engines (comma-separated)", json!({"type": "array", "minItems": 1, "items": names})),
        Param::Engine => ("engine", "path", "an engine in force", names),
        Param::Resources => ("resources", "query", "comma-separated addresses; those that are not public addresses are listed in `errors`", json!({
            "type": "array", "minItems": 1, "maxItems": max_batch,
            "items": {"type": "string", "pattern": "^[^,]*[^,\\s][^,]*$"}})),
        Param::Search => ("search", "query", "the start of a city name (any case, accents ignored)", json!({"type": "string"})),
        Param::Country => ("country", "query", "ISO 3166 alpha-2 country code", json!({"type": "string"})),
        Param::Limit => ("limit", "query", "most cities answered (default 20)", json!({"type": "integer", "minimum": 1, "maximum": 1000})),
        Param::CityId => ("id", "path", "GeoNames id", json!({"type": "integer", "minimum": 0, "maximum": u32::MAX})),
        Param::Lat => ("lat", "path", "latitude, decimal degrees", json!({"type": "number", "minimum": -90, "maximum": 90})),
        Param::Lon => ("lon", "path", "longitude, decimal degrees", json!({"type": "number", "minimum": -180, "maximum": 180})),
    };
    let mut v = json!({"name": name, "in": at, "required": at == "path" || p == Param::Resources,
                       "description": desc, "schema": schema});
    if p == Param::Ip {
        // A public address: most generated ones are reserved (422).
        v["examples"] = json!({"ripe-ncc": {"value": "193.0.14.129"}, "ripe-ncc-v6": {"value": "2001:67c:2e8:22::c100:68b"}});
    }
    if matches!(p, Param::Engines | Param::Resources) {
        v["style"] = json!("form");
        v["explode"] = json!(false);
    }
    v
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(code: &str, description: &str, schema: Value) -> (String, Value) {
    (
        code.to_owned(),
        json!({"description": description, "content": {"application/json": {"schema": schema}}}),
    )
}

fn responses(doc: &RouteDoc) -> Value {
    let located = json!({"$ref": "#/components/schemas/Located"});
    let mut r: Map<String, Value> = Map::new();
    let path = doc.path;
    let (code, v) = match path {
        "/api/v1/locate/all" => ok(
            "200",
            "Answers by address, and the refused addresses with why",
            json!({
            "type": "object", "required": ["results", "errors"], "properties": {
                "results": {"type": "object", "additionalProperties": located},
                "errors": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Error"}}}}),
        ),
        "/api/v1/locate/{ip}" => ok("200", "Candidate locations, best first", located),
        "/api/v1/locate/{ip}/best" => ok(
            "200",
            "The best location (null when none)",
            json!({
            "type": "object", "required": ["ip", "location"], "properties": {
                "ip": {"type": "string"}, "anycast": {"type": "boolean"},
                "location": {"anyOf": [{"$ref": "#/components/schemas/Location"}, {"type": "null"}]}}}),
        ),
        "/api/v1/locate/{ip}/partials" => ok(
            "200",
            "Each engine's answer",
            json!({
            "type": "object", "required": ["ip", "partials"], "properties": {
                "ip": {"type": "string"}, "partials": {"type": "array", "items": {"type": "object"}}}}),
        ),
        "/api/v1/locate/{ip}/partials/{engine}" => ok(
            "200",
            "The engine's answer (null when it gave none)",
            json!({
            "type": "object", "required": ["ip", "partial"], "properties": {
                "ip": {"type": "string"}, "partial": {"type": ["object", "null"]}}}),
        ),
        "/api/v1/worlds" => ok(
            "200",
            "Matching cities, largest first",
            json!({
            "type": "object", "required": ["cities", "dataset"], "properties": {
                "cities": {"type": "array", "items": {"$ref": "#/components/schemas/City"}}, "dataset": {"type": "string"}}}),
        ),
        "/api/v1/worlds/reverse/{lat}/{lon}" => ok(
            "200",
            "The nearest city and its distance",
            json!({
            "type": "object", "required": ["city", "distanceKm"], "properties": {
                "city": {"$ref": "#/components/schemas/City"}, "distanceKm": {"type": "number", "minimum": 0}}}),
        ),
        "/api/v1/worlds/{id}" => ok(
            "200",
            "The city",
            json!({"$ref": "#/components/schemas/City"}),
        ),
        "/api/v1/crowdsource/{ip}" => ok(
            "202",
            "Accepted: the report counts from the next locate on",
            json!({
            "type": "object", "required": ["ip", "accepted", "city"], "properties": {
                "ip": {"type": "string"}, "accepted": {"const": true}, "city": {"$ref": "#/components/schemas/City"}}}),
        ),
        _ => ok("200", "This document", json!({"type": "object"})),
    };
    r.insert(code, v);
    if path == PATH {
        return Value::Object(r);
    }

    r.insert("400".into(), error("Bad input: not an address, an unknown engine, a value out of range; `error` says which"));
    r.insert(
        "413".into(),
        error(&format!(
            "The request declares a body over the limit ({} bytes)",
            crate::MAX_BODY_BYTES
        )),
    );
    r.insert(
        "431".into(),
        json!({"description": "Request line and headers over the server's limit; no body"}),
    );
    if path.contains("{ip}") {
        r.insert("422".into(), error(if doc.method == "post" {
            "A reserved address (private, loopback, documentation, ...), or a GeoNames id the world dataset does not have"
        } else {
            "A reserved address (private, loopback, documentation, ...): it has no public location (`reserved_address`); or, with an ASN table loaded, an address no announced BGP prefix covers (`unrouted_address`)"
        }));
    }
    if path == "/api/v1/worlds/{id}" || path == "/api/v1/crowdsource/{ip}" {
        r.insert(
            "404".into(),
            error("No such city, or the crowdsourced engine is not configured"),
        );
    }
    if path == "/api/v1/worlds/reverse/{lat}/{lon}" || path == "/api/v1/crowdsource/{ip}" {
        r.insert(
            "503".into(),
            error("The world dataset is empty, or the report store is unavailable"),
        );
    }
    Value::Object(r)
}

/// The document, for these engines in force and this batch size.
pub fn openapi_doc(engines: &[String], max_batch: usize) -> Value {
    let mut paths = Map::new();
    for (doc, _) in table() {
        let params: Vec<Value> = doc
            .params
            .iter()
            .map(|p| parameter(*p, engines, max_batch))
            .collect();
        let mut op = json!({
            "summary": doc.summary,
            "operationId": format!("{}{}", doc.method, doc.path.replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "responses": responses(&doc),
        });
        if doc.method == "post" {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CrowdReport"}}}});
        }
        let entry = paths
            .entry(doc.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[doc.method] = op;
    }
    let city = json!({"type": "object", "required": ["id", "name", "country", "latitude", "longitude"], "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"}, "country": {"type": "string"},
        "latitude": {"type": "number"}, "longitude": {"type": "number"}}});
    let location = json!({"type": "object",
        "description": "A candidate location. `scope` `city`: a city (id, cityName, stateAnsiCode set). `scope` `country`: only the country is known (no city-scoped engine named this place, or every city-scoped vote was weak): id, cityName and stateAnsiCode are null, and latitude/longitude are those of the country's most populous city: a point in the country, not a location.",
        "required": ["id", "cityName", "countryCodeAlpha2", "latitude", "longitude", "score", "scope"], "properties": {
        "id": {"type": ["integer", "null"], "description": "GeoNames id; null at country scope"},
        "cityName": {"type": ["string", "null"], "description": "null at country scope"},
        "stateAnsiCode": {"type": ["string", "null"], "description": "GeoNames admin1 code; null at country scope"},
        "countryCodeAlpha2": {"type": "string"},
        "latitude": {"type": "number", "description": "at country scope: a point in the country (its most populous city), not a location"},
        "longitude": {"type": "number", "description": "at country scope: a point in the country (its most populous city), not a location"},
        "score": {"type": "number"}, "contributions": {"type": "object"},
        "scope": {"enum": ["city", "country"], "description": "what is known: the city, or only the country"}},
        "if": {"properties": {"scope": {"const": "country"}}},
        "then": {"properties": {"id": {"type": "null"}, "cityName": {"type": "null"}, "stateAnsiCode": {"type": "null"}}},
        "else": {"properties": {"id": {"type": "integer"}, "cityName": {"type": "string"}, "stateAnsiCode": {"type": "string"}}}});
    json!({
        "openapi": "3.1.0",
        "info": {"title": "vantage locate API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Where is an IP address: RIPE IPmap's API shape (`/api/v1/locate/{ip}/`, worlds, crowdsourcing). Every `/api/v1/` path is served with and without the trailing slash."},
        "paths": paths,
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error", "message"], "properties": {
                "error": {"type": "string"}, "message": {"type": "string"}}},
            "City": city,
            "Location": location,
            "Located": {"type": "object", "required": ["ip", "locations"], "properties": {
                "ip": {"type": "string"}, "anycast": {"type": "boolean"},
                "locations": {"type": "array", "items": {"$ref": "#/components/schemas/Location"}}}},
            "CrowdReport": {
                "description": "Where the address is: a GeoNames id, or a point; and who says so (`user`, or the X-Vantage-User header), at most 128 characters",
                "anyOf": [
                    {"type": "object", "required": ["id", "user"], "properties": {
                        "id": {"type": "integer", "minimum": 0, "maximum": u32::MAX},
                        "latitude": false, "longitude": false,
                        "user": {"$ref": "#/components/schemas/User"}}},
                    {"type": "object", "required": ["latitude", "longitude", "user"], "properties": {
                        "id": false,
                        "latitude": {"type": "number", "minimum": -90, "maximum": 90},
                        "longitude": {"type": "number", "minimum": -180, "maximum": 180},
                        "user": {"$ref": "#/components/schemas/User"}}},
                ]},
            "User": {"type": "string", "maxLength": 128, "pattern": "^\\s*\\S", "description": "who reports: at most 128 characters, not only spaces"},
        }},
    })
}

/// `GET /openapi.json`.
pub(crate) async fn serve(State(api): State<Arc<Api>>) -> Json<Value> {
    Json(openapi_doc(&api.locator().engine_names(), api.max_batch()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_typed_parameters() {
        let doc = openapi_doc(&["rir".into(), "crowd".into()], 100);
        let paths = doc["paths"].as_object().expect("paths");
        assert_eq!(paths.len(), table().len());
        let all = &paths["/api/v1/locate/all"]["get"]["parameters"];
        assert_eq!(all[0]["name"], "resources");
        assert_eq!(all[0]["schema"]["maxItems"], 100);
        assert_eq!(all[1]["schema"]["items"]["enum"], json!(["rir", "crowd"]));
        let one = &paths["/api/v1/locate/{ip}"]["get"]["responses"];
        assert!(one.get("422").is_some() && one.get("400").is_some());
        let unrouted = one["422"]["description"].as_str().expect("422 text");
        assert!(unrouted.contains("unrouted_address"), "{unrouted}");
        let location = &doc["components"]["schemas"]["Location"];
        assert_eq!(
            location["properties"]["scope"]["enum"],
            json!(["city", "country"])
        );
        assert_eq!(
            location["properties"]["cityName"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(location["then"]["properties"]["id"]["type"], "null");
        let city = &paths["/api/v1/worlds/{id}"]["get"];
        assert_eq!(city["parameters"][0]["schema"]["type"], "integer");
        assert!(city["responses"].get("404").is_some());
        assert_eq!(
            openapi_doc(&[], 1)["paths"]["/api/v1/locate/{ip}/partials/{engine}"]["get"]
                ["parameters"][1]["schema"]["not"],
            json!({})
        );
    }
}
