//! The OpenAPI 3.1 document, built from the route [`table`](super::table) so that it
//! lists exactly the routes the router serves, each parameter typed as the handlers
//! read it ([`Ty`]), every status code the server can answer, and the creation and
//! participation bodies with the constraints the server enforces (those of
//! [`vantage_core::definition`]).

use axum::Json;
use serde_json::{json, Map, Value};
use vantage_core::definition::{
    AREAS, DNS_QUERY_CLASSES, DNS_QUERY_TYPES, EXECUTABLE_TYPES, HTTP_METHODS, KNOWN_TYPES,
};

use super::{table, RouteDoc};
use crate::body_limit::MAX_BODY_BYTES;

/// How a handler reads a parameter, for its schema. Lists are comma-separated
/// (`style: form, explode: false`).
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    /// Any text.
    Str,
    /// A decimal integer from `.0` to `.1`.
    Int(u64, u64),
    /// One of these words.
    Enum(&'static [&'static str]),
    /// One of these integers.
    IntEnum(&'static [u64]),
    /// `true` or `false`.
    Bool,
    /// Comma-separated integers from `.0` to `.1`.
    IntList(u64, u64),
    /// Comma-separated integers, each one of these.
    IntEnumList(&'static [u64]),
    /// Comma-separated text.
    StrList,
    /// Text matching this (anchored) pattern.
    Pattern(&'static str),
}

impl Ty {
    fn schema(self) -> Value {
        match self {
            Ty::Str => json!({"type": "string"}),
            Ty::Int(min, max) => json!({"type": "integer", "minimum": min, "maximum": max}),
            Ty::Enum(words) => json!({"type": "string", "enum": words}),
            Ty::IntEnum(ids) => json!({"type": "integer", "enum": ids}),
            Ty::Bool => json!({"type": "boolean"}),
            Ty::IntList(min, max) => {
                json!({"type": "array", "items": {"type": "integer", "minimum": min, "maximum": max}})
            }
            Ty::IntEnumList(ids) => {
                json!({"type": "array", "items": {"type": "integer", "enum": ids}})
            }
            Ty::StrList => json!({"type": "array", "items": {"type": "string"}}),
            Ty::Pattern(p) => json!({"type": "string", "pattern": p}),
        }
    }

    fn is_list(self) -> bool {
        matches!(self, Ty::IntList(..) | Ty::IntEnumList(_) | Ty::StrList)
    }
}

/// Largest value of a `u64` parameter.
pub const U64: u64 = u64::MAX;
/// Largest value of a `u32` parameter (probe ids, AS numbers, Unix seconds in results).
pub const U32: u64 = u32::MAX as u64;

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(description: &str, schema: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn parameter(name: &str, at: &str, desc: &str, ty: Ty) -> Value {
    let mut p = json!({"name": name, "in": at, "required": at == "path", "description": desc,
                       "schema": ty.schema()});
    if ty.is_list() {
        p["style"] = json!("form");
        p["explode"] = json!(false);
    }
    p
}

/// The responses of one route: what its handler answers, and what every route can.
fn responses(doc: &RouteDoc) -> Value {
    let (m, p) = (doc.method, doc.path);
    let mut r = Map::new();
    let mut add = |code: &str, v: Value| {
        r.insert(code.to_owned(), v);
    };
    match (m, p) {
        ("get", "/api/v2/measurements/") => {
            add("200", ok("A page of measurements", "MeasurementPage"))
        }
        ("get", "/api/v2/probes/") => add("200", ok("A page of probes", "ProbePage")),
        ("get", "/api/v2/measurements/{id}/") => add("200", ok("The measurement", "Measurement")),
        ("get", "/api/v2/probes/{id}/") => add("200", ok("The probe", "Probe")),
        ("get", "/api/v1/measurements") => {
            add("200", ok("A page of fastpath measurements", "OoniList"))
        }
        ("get", "/api/v1/aggregation") => add("200", ok("Counts by the axes", "OoniAggregation")),
        ("get", "/api/vantage/v1/probes/map") => add(
            "200",
            ok("Every probe, one row each (gzip when accepted)", "ProbeMap"),
        ),
        ("get", "/api/vantage/v1/probes/{id}/measurements") => add(
            "200",
            ok(
                "The measurements the probe takes part in",
                "ProbeMeasurements",
            ),
        ),
        ("get", "/api/vantage/v1/probes/{id}/results") => add(
            "200",
            json!({"description": "The probe's newest results as RIPE Atlas stores them, newest first",
                   "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}),
        ),
        ("get", "/api/vantage/v1/probes/{id}/connections") => {
            add("200", ok("Connection history, newest first", "Connections"))
        }
        ("get", "/api/vantage/v1/measurements/{id}/summary") => {
            add("200", ok("Aggregates in time buckets", "Summary"))
        }
        ("get", "/api/vantage/v1/measurements/{id}/probes") => {
            add("200", ok("Aggregates per probe", "ProbeAggregates"))
        }
        ("get", "/api/openapi.json") => add(
            "200",
            json!({"description": "This document", "content": {"application/json": {"schema": {"type": "object"}}}}),
        ),
        ("post", "/api/v2/measurements/") => {
            add("201", ok("Created: the ids, one per definition", "Created"))
        }
        ("post", _) => add(
            "201",
            ok("Accepted: one request id per entry", "ParticipationCreated"),
        ),
        ("delete", _) => add(
            "204",
            json!({"description": "Stopped (or already stopped)"}),
        ),
        ("get", "/stream/") => add(
            "101",
            json!({"description": "Switching to WebSocket: the RIPE Atlas streaming protocol (JSON arrays `[\"atlas_<message>\", payload]`)"}),
        ),
        ("get", p) if p.ends_with("/stream/") => add(
            "200",
            json!({"description": "Server-sent events: `metadata` once, then one `result` per result", "content": {"text/event-stream": {"schema": {"type": "object", "required": ["event", "data"], "properties": {
                "event": {"enum": ["metadata", "result"]}, "data": {"type": "string", "description": "JSON: {msm_id, subscribed} for metadata, the result for result"}}}}}}),
        ),
        ("get", p) if p.ends_with("/results/") || p.ends_with("/latest/") => add(
            "200",
            json!({
            "description": "Results as RIPE Atlas stores them: a JSON array (`format=json`), or one result per line (`format=txt`)",
            "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
                        "application/x-ndjson": {"schema": {"type": "string"}}}}),
        ),
        _ => {}
    }
    add(
        "400",
        error(if p == "/stream/" {
            "Not a WebSocket upgrade, or a malformed query string"
        } else {
            "Bad input: the RIPE Atlas error object names the parameter (`?name`) or the body field (JSON pointer)"
        }),
    );
    if p.contains("{id}") {
        add(
            "404",
            error("No such measurement or probe (ids are positive integers)"),
        );
    } else if p == "/api/v2/measurements/" && m == "get" || p == "/api/v2/probes/" {
        add("404", error("The page is past the last page"));
    }
    if m == "post" || m == "delete" {
        add(
            "403",
            error("Missing or unknown API key, or not the key that created the measurement"),
        );
    }
    add(
        "413",
        error(&format!("The request body is over {MAX_BODY_BYTES} bytes")),
    );
    add(
        "431",
        json!({"description": "Request line and headers over the server's limit (--http-max-header-bytes); no body"}),
    );
    if m == "post" {
        add(
            "429",
            json!({
            "description": "Too many creations or participation requests for this API key: wait `Retry-After` seconds",
            "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer", "minimum": 0}}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    if (m, p) == ("post", "/api/v2/measurements/") {
        add(
            "504",
            error("Created, but the operator gave no id in time (is the operator running?)"),
        );
    }
    let unavailable = m != "get"
        || p.ends_with("/results/")
        || p.ends_with("/latest/")
        || p.ends_with("/stream/")
        || p.starts_with("/api/v1/")
        || (p.starts_with("/api/vantage/") && p != "/api/vantage/v1/probes/map");
    if unavailable {
        add("503", error("A backend (Kubernetes, ClickHouse or NATS) is unavailable, or the feature is off in this server"));
    }
    Value::Object(r)
}

/// The request body of a POST route.
fn request_body(doc: &RouteDoc) -> Option<Value> {
    let schema = match (doc.method, doc.path) {
        ("post", "/api/v2/measurements/") => "CreateRequest",
        ("post", _) => "ParticipationRequests",
        _ => return None,
    };
    Some(
        json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}),
    )
}

/// Headers the WebSocket route needs for its upgrade.
fn websocket_headers() -> Vec<Value> {
    vec![
        json!({"name": "Connection", "in": "header", "required": true, "schema": {"type": "string", "enum": ["Upgrade"]}}),
        json!({"name": "Upgrade", "in": "header", "required": true, "schema": {"type": "string", "enum": ["websocket"]}}),
        json!({"name": "Sec-WebSocket-Version", "in": "header", "required": true, "schema": {"type": "string", "enum": ["13"]}}),
        json!({"name": "Sec-WebSocket-Key", "in": "header", "required": true, "description": "16 random bytes, base64 (the answer's Sec-WebSocket-Accept is derived from it)", "schema": {"type": "string"}}),
    ]
}

/// The OpenAPI 3.1 document of [`table`].
pub fn openapi_doc() -> Value {
    let mut paths = Map::new();
    for (doc, _) in table() {
        let mut params: Vec<Value> = doc
            .params
            .iter()
            .map(|(name, at, desc, ty)| parameter(name, at, desc, *ty))
            .collect();
        if doc.path == "/stream/" {
            params.extend(websocket_headers());
        }
        let mut op = json!({
            "summary": doc.summary,
            "operationId": operation_id(&doc),
            "parameters": params,
            "responses": responses(&doc),
        });
        if doc.method == "post" || doc.method == "delete" {
            op["security"] = json!([{"ApiKeyHeader": []}, {"ApiKeyQuery": []}]);
        }
        if let Some(body) = request_body(&doc) {
            op["requestBody"] = body;
        }
        let entry = paths
            .entry(doc.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[doc.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "vantage data API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "A RIPE Atlas API v2 subset, OONI-style search over the fastpath, live results."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "Authorization", "description": "`Key <key>`"},
                "ApiKeyQuery": {"type": "apiKey", "in": "query", "name": "key"},
            },
            "schemas": schemas(),
        },
    })
}

fn operation_id(doc: &RouteDoc) -> String {
    let path: String = doc
        .path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "api")
        .map(|s| {
            s.trim_matches(|c| c == '{' || c == '}')
                .replace(['.', '-'], "_")
        })
        .collect::<Vec<_>>()
        .join("_");
    format!("{}_{path}", doc.method)
}

/// The RIPE Atlas measurement status ids ([`crate::ripe::measurement_status`]).
pub const MEASUREMENT_STATUS_IDS: &[u64] = &[0, 1, 2, 4, 5, 6, 7, 8];
/// The RIPE Atlas probe status ids ([`crate::ripe::probe_status`]).
pub const PROBE_STATUS_IDS: &[u64] = &[0, 1, 2, 3];

/// A host name as [`vantage_core::definition::is_host`] takes it (labels of letters,
/// digits, `-` and `_`, not only digits). IP addresses are taken too; the document
/// leaves them out, as their family must agree with `af`.
const HOST: &str = "^[a-z]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z]([a-z0-9-]{0,20}[a-z0-9])?){0,4}$";

fn int(min: i64, max: i64) -> Value {
    json!({"type": ["integer", "null"], "minimum": min, "maximum": max})
}

fn words(list: &[&str]) -> Value {
    let mut v: Vec<Value> = list.iter().map(|w| json!(w)).collect();
    v.push(Value::Null);
    json!({"enum": v})
}

/// The schema of a definition of type `kind`: every field typed as the server reads
/// it, and the ranges and choices that type's validation enforces.
fn definition(kind: &str) -> Value {
    let mut props = Map::new();
    for f in [
        "af",
        "interval",
        "spread",
        "packets",
        "size",
        "packet_interval",
        "paris",
        "first_hop",
        "max_hops",
        "port",
        "response_timeout",
        "udp_payload_size",
        "retry",
        "timeout",
        "header_bytes",
        "timing_verbosity",
    ] {
        props.insert(f.into(), int(i64::MIN, i64::MAX));
    }
    for f in [
        "target",
        "description",
        "protocol",
        "query_class",
        "query_type",
        "query_argument",
        "method",
        "path",
        "query_string",
        "version",
        "hostname",
    ] {
        props.insert(f.into(), json!({"type": ["string", "null"]}));
    }
    for f in [
        "resolve_on_probe",
        "dont_fragment",
        "use_probe_resolver",
        "set_rd_bit",
        "set_do_bit",
        "set_cd_bit",
        "set_nsid_bit",
        "https",
    ] {
        props.insert(f.into(), json!({"type": ["boolean", "null"]}));
    }
    let mut set = |k: &str, v: Value| {
        props.insert(k.into(), v);
    };
    set("type", json!({"const": kind}));
    set("af", json!({"enum": [4, 6, null]}));
    set("target", json!({"type": "string", "pattern": HOST}));
    set("interval", int(60, 86_400 * 7));
    set("spread", int(0, 86_400 * 7));
    let mut required = vec!["type", "target"];
    match kind {
        "ping" => {
            set("packets", int(1, 16));
            set("size", int(0, 2048));
            set("packet_interval", int(2, 300_000));
        }
        "traceroute" | "mtr" => {
            set("protocol", words(&["ICMP", "UDP", "TCP"]));
            set("paris", int(0, 64));
            set("first_hop", int(1, 255));
            set("max_hops", int(1, 255));
            set("packets", int(1, 16));
            set("size", int(0, 2048));
            set("port", int(1, 65_535));
            set("response_timeout", int(10, 60_000));
        }
        "dns" => {
            set("protocol", words(&["UDP", "TCP"]));
            set("query_class", words(DNS_QUERY_CLASSES));
            set("query_type", words(DNS_QUERY_TYPES));
            set("query_argument", json!({"type": "string", "pattern": HOST}));
            set("udp_payload_size", int(512, 4096));
            set("retry", int(0, 10));
            set("timeout", int(100, 60_000));
            required.push("query_argument");
        }
        "http" => {
            set("method", words(HTTP_METHODS));
            set(
                "path",
                json!({"type": ["string", "null"], "pattern": "^/[^\\s\\x00-\\x1f\\x7f-\\x9f]*$"}),
            );
            set(
                "query_string",
                json!({"type": ["string", "null"], "pattern": "^[^\\s\\x00-\\x1f\\x7f-\\x9f#]*$"}),
            );
            set("port", int(1, 65_535));
            set("version", words(&["1.0", "1.1"]));
            set("header_bytes", int(0, 2048));
            set("timing_verbosity", int(0, 2));
        }
        "sslcert" => {
            set("port", int(1, 65_535));
            set(
                "hostname",
                json!({"type": ["string", "null"], "pattern": HOST}),
            );
        }
        "ntp" => {
            set("packets", int(1, 16));
            set("timeout", int(100, 60_000));
        }
        _ => {}
    }
    json!({"type": "object", "required": required, "properties": props,
           "description": format!("A RIPE Atlas {kind} definition")})
}

/// A probe source (`probes[]` entry): one schema per source type.
fn probe_source(kind: &str, value: Value, requested_max: i64) -> Value {
    json!({"type": "object", "required": ["type", "value", "requested"], "properties": {
        "type": {"const": kind},
        "value": value,
        "requested": {"type": "integer", "minimum": 1, "maximum": requested_max},
        "tags": {"type": ["object", "null"], "properties": {
            "include": {"type": "array", "items": {"type": "string"}},
            "exclude": {"type": "array", "items": {"type": "string"}}}},
    }})
}

fn probe_sources() -> Value {
    let max = i64::from(vantage_core::definition::DEFAULT_MAX_REQUESTED);
    json!({"anyOf": [
        probe_source("area", json!({"type": "string", "enum": AREAS}), max),
        probe_source("country", json!({"type": "string", "pattern": "^[A-Za-z]{2}$"}), max),
        probe_source("asn", json!({"type": "string", "pattern": "^(AS)?[0-9]{1,9}$"}), max),
        probe_source("prefix", json!({"type": "string", "pattern": "^(1?[0-9]{1,2}\\.){3}1?[0-9]{1,2}/(8|16|24|32)$"}), max),
        probe_source("probes", json!({"type": "string", "pattern": "^[0-9]{1,9}(,[0-9]{1,9})*$"}), max),
        probe_source("msm", json!({"type": "string", "pattern": "^[0-9]{1,9}$"}), max),
    ]})
}

fn schemas() -> Value {
    let error = json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
        "required": ["status", "code", "title", "detail"], "properties": {
        "status": {"type": "integer"}, "code": {"type": "integer"}, "title": {"type": "string"}, "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "source": {"type": "object", "properties": {"pointer": {"type": "string"}}}, "detail": {"type": "string"}}}}}}}});
    let definitions: Vec<Value> = EXECUTABLE_TYPES.iter().map(|k| definition(k)).collect();
    let time = json!({"anyOf": [{"type": "integer", "minimum": 0, "maximum": i64::MAX},
                                {"type": "string", "format": "date-time"}, {"type": "null"}]});
    let page = |item: &str| {
        json!({"type": "object", "required": ["count", "next", "previous", "results"], "properties": {
        "count": {"type": "integer", "minimum": 0},
        "next": {"type": ["string", "null"]}, "previous": {"type": ["string", "null"]},
        "results": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}}}})
    };
    let vantage = json!({"type": "object", "description": "vantage: the Measurement resource behind it",
                "required": ["namespace", "name", "state", "conditions", "probes_reported"], "properties": {
                "namespace": {"type": ["string", "null"]}, "name": {"type": "string"}, "state": {"type": ["string", "null"]},
                "conditions": {"type": "array", "items": {"type": "object", "required": ["type", "status"], "properties": {
                    "type": {"type": "string"}, "status": {"type": "string"}, "reason": {"type": ["string", "null"]},
                    "message": {"type": ["string", "null"]}, "lastTransitionTime": {"type": ["string", "null"]}}}},
                "probes_reported": {"type": "integer", "minimum": 0}}});
    let mut all = json!({
        "Error": error,
        "CreateRequest": {"type": "object", "required": ["definitions", "probes"], "properties": {
            "definitions": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"anyOf": definitions}},
            "probes": {"type": "array", "minItems": 1, "items": probe_sources()},
            "start_time": time,
            "stop_time": time,
            "is_oneoff": {"type": "boolean"},
            "bill_to": {"type": ["string", "null"]}},
            "description": "A RIPE Atlas creation body. Rules JSON Schema cannot say, checked as RIPE Atlas does: stop_time after start_time and after now; spread at most interval; first_hop at most max_hops; an IP target of the family af; the sum of requested at most the installation's maximum (default 1000)"},
        "Created": {"type": "object", "required": ["measurements"], "properties": {
            "measurements": {"type": "array", "items": {"type": "integer", "minimum": 1}}}},
        "ParticipationRequests": {"type": "array", "minItems": 1, "items": {"anyOf": [
            {"type": "object", "required": ["action", "type", "value", "requested"], "properties": {
                "action": {"const": "remove"}, "type": {"const": "probes"},
                "value": {"type": "string", "pattern": "^[0-9]{1,9}(,[0-9]{1,9}){0,4}$"},
                "requested": {"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX}}},
            {"allOf": [{"type": "object", "required": ["action"], "properties": {"action": {"const": "add"}}}, probe_sources()]},
        ]}},
        "ParticipationCreated": {"type": "object", "required": ["request_ids"], "properties": {
            "request_ids": {"type": "array", "items": {"type": "integer", "minimum": 1}}}},
        "Measurement": {"type": "object", "required": ["id", "type", "status", "is_oneoff", "result"], "properties": {
            "id": {"type": "integer", "minimum": 1}, "type": {"type": "string", "enum": KNOWN_TYPES},
            "af": {"type": ["integer", "null"]}, "target": {"type": "string"}, "description": {"type": "string"},
            "interval": {"type": ["integer", "null"]}, "is_oneoff": {"type": "boolean"},
            "start_time": {"type": ["integer", "null"]}, "stop_time": {"type": ["integer", "null"]},
            "status": {"type": "object", "required": ["id", "name"], "properties": {
                "id": {"type": "integer", "enum": MEASUREMENT_STATUS_IDS}, "name": {"type": "string"}, "when": {"type": ["integer", "null"]}}},
            "participant_count": {"type": "integer"}, "probes_requested": {"type": "integer"},
            "result": {"type": "string"},
            "vantage": vantage}},
        "MeasurementPage": page("Measurement"),
        "Probe": {"type": "object", "required": ["id", "status", "tags", "is_anchor"], "properties": {
            "id": {"type": "integer", "minimum": 0}, "asn_v4": {"type": ["integer", "null"]}, "asn_v6": {"type": ["integer", "null"]},
            "address_v4": {"type": ["string", "null"]}, "address_v6": {"type": ["string", "null"]},
            "country_code": {"type": ["string", "null"]}, "is_anchor": {"type": "boolean"},
            "status": {"type": "object", "required": ["id", "name"], "properties": {
                "id": {"type": "integer", "enum": PROBE_STATUS_IDS}, "name": {"type": "string"}}},
            "tags": {"type": "array", "items": {"type": "object", "required": ["name", "slug"], "properties": {
                "name": {"type": "string"}, "slug": {"type": "string"}}}}}},
        "ProbePage": page("Probe"),
        "OoniList": {"type": "object", "required": ["metadata", "results"], "properties": {
            "metadata": {"type": "object", "required": ["count", "limit", "offset"], "properties": {
                "count": {"type": "integer"}, "limit": {"type": "integer"}, "offset": {"type": "integer"},
                "next_url": {"type": ["string", "null"]}}},
            "results": {"type": "array", "items": {"type": "object", "required": ["measurement_uid"]}}}},
        "OoniAggregation": {"type": "object", "required": ["dimension_count", "result"], "properties": {
            "dimension_count": {"type": "integer", "minimum": 0, "maximum": 2},
            "result": {"type": ["object", "array"]}}},
    });
    if let (Some(all), Value::Object(more)) = (all.as_object_mut(), console_schemas()) {
        all.extend(more);
    }
    all
}

/// The schemas of the console's routes (`/api/vantage/v1/`).
fn console_schemas() -> Value {
    json!({
        "ProbeMap": {"type": "object", "required": ["count", "columns", "rows"], "properties": {
            "count": {"type": "integer", "minimum": 0},
            "columns": {"type": "array", "items": {"type": "string"}},
            "rows": {"type": "array", "items": {"type": "array", "minItems": 8, "maxItems": 8,
                "description": "id, lat|null, lon|null, status id, is_anchor, asn_v4|null, country_code|null, [tag slug]"}}}},
        "ProbeMeasurements": {"type": "object", "required": ["results"], "properties": {
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/Measurement"}}}},
        "Connections": {"type": "object", "required": ["probe", "connections"], "properties": {
            "probe": {"type": "integer", "minimum": 0},
            "connections": {"type": "array", "items": {"type": "object", "required": ["event", "timestamp", "controller", "address"], "properties": {
                "event": {"enum": ["connect", "disconnect"]}, "timestamp": {"type": "integer", "minimum": 0},
                "controller": {"type": "string"}, "address": {"type": "string"}}}}}},
        "Summary": {"type": "object", "required": ["msm_id", "type", "results", "probes", "first", "last", "bucket_seconds", "series", "breakdown"], "properties": {
            "msm_id": {"type": "integer", "minimum": 0}, "type": {"type": "string"},
            "results": {"type": "integer", "minimum": 0}, "probes": {"type": "integer", "minimum": 0},
            "first": {"type": ["integer", "null"]}, "last": {"type": ["integer", "null"]},
            "bucket_seconds": {"type": "integer", "minimum": 1},
            "series": {"type": "array", "items": {"type": "object", "required": ["t", "n"], "properties": {
                "t": {"type": "integer", "minimum": 0}, "n": {"type": "integer", "minimum": 0}},
                "additionalProperties": {"type": ["number", "null"]}}},
            "breakdown": {"type": "object"}}},
        "ProbeAggregates": {"type": "object", "required": ["rows"], "properties": {
            "rows": {"type": "array", "items": {"type": "object", "required": ["prb_id", "n", "last"], "properties": {
                "prb_id": {"type": "integer", "minimum": 0}, "n": {"type": "integer", "minimum": 0}, "last": {"type": "integer", "minimum": 0}},
                "additionalProperties": {"type": ["number", "null"]}}}}}
    })
}

pub(crate) async fn openapi() -> Json<Value> {
    Json(openapi_doc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_is_typed_and_lists_are_comma_separated() {
        let doc = openapi_doc();
        let list = &doc["paths"]["/api/v2/measurements/"]["get"]["parameters"];
        let by_name = |n: &str| {
            list.as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == n))
                .cloned()
                .unwrap_or_else(|| panic!("{n} undocumented"))
        };
        assert_eq!(
            by_name("page_size")["schema"],
            json!({"type": "integer", "minimum": 1, "maximum": 500})
        );
        assert_eq!(by_name("status__in")["style"], "form");
        assert_eq!(by_name("status__in")["explode"], false);
        assert_eq!(by_name("type")["schema"]["enum"], json!(KNOWN_TYPES));
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for (method, op) in ops.as_object().expect("ops") {
                for p in op["parameters"].as_array().expect("params") {
                    assert!(p["schema"]["type"].is_string(), "{method} {path} {p}");
                }
                let codes = op["responses"].as_object().expect("responses");
                assert!(
                    codes.contains_key("400") && codes.contains_key("413"),
                    "{method} {path}"
                );
                if path.contains("{id}") {
                    assert!(codes.contains_key("404"), "{method} {path}");
                }
            }
        }
    }

    #[test]
    fn creation_documents_its_limits() {
        let doc = openapi_doc();
        let create = &doc["paths"]["/api/v2/measurements/"]["post"];
        assert_eq!(
            create["responses"]["429"]["headers"]["Retry-After"]["schema"]["type"],
            "integer"
        );
        let body = &doc["components"]["schemas"]["CreateRequest"];
        assert_eq!(body["properties"]["definitions"]["minItems"], 1);
        assert_eq!(body["properties"]["definitions"]["maxItems"], 100);
        let ping = &body["properties"]["definitions"]["items"]["anyOf"][0];
        assert_eq!(ping["properties"]["type"]["const"], "ping");
        assert_eq!(ping["properties"]["packets"]["maximum"], 16);
    }

    #[test]
    fn operation_ids_are_unique() {
        let ids: Vec<String> = table().iter().map(|(d, _)| operation_id(d)).collect();
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
    }
}
