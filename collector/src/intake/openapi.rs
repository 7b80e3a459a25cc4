//! The intake's OpenAPI 3.1 document, served at [`PATH`] and built from the route
//! [`table`](super::http::table) the router is built from. OpenAPI links tie a report
//! opened to its submissions and close, and a submission to its measurement, so that a
//! stateful client (schemathesis) follows the OONI flow; a check-in's report id links to
//! the same submissions.

use axum::Json;
use serde_json::{json, Map, Value};

/// Where the document is served (the path of OONI's FastAPI services).
pub const PATH: &str = "/openapi.json";

/// One route: method, path, summary.
pub struct RouteDoc {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
}

impl RouteDoc {
    pub(super) const fn new(
        method: &'static str,
        path: &'static str,
        summary: &'static str,
    ) -> Self {
        Self {
            method,
            path,
            summary,
        }
    }
}

fn error(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn body(schema: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

fn path_param(name: &str, desc: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": desc, "schema": {"type": "string"}})
}

/// `post_report_report_id` for `POST /report/{report_id}`.
fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<&str> = path
        .split(['/', '{', '}', '.'])
        .filter(|w| !w.is_empty())
        .collect();
    format!("{method}_{}", words.join("_"))
}

/// The operation of one route: parameters, body, every status it answers.
fn operation(doc: &RouteDoc) -> Value {
    let mut r = Map::new();
    let mut op = json!({"summary": doc.summary, "operationId": operation_id(doc.method, doc.path)});
    match doc.path {
        "/report" => {
            op["requestBody"] = body("OpenReport");
            r.insert("200".into(), json!({"description": "The report is open", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReportOpened"}}},
                "links": {
                    "submit": {"operationId": operation_id("post", "/report/{report_id}"), "parameters": {"report_id": "$response.body#/report_id"}},
                    "close": {"operationId": operation_id("post", "/report/{report_id}/close"), "parameters": {"report_id": "$response.body#/report_id"}}}}));
        }
        "/report/{report_id}" => {
            op["parameters"] = json!([path_param("report_id", "the id `POST /report` answered")]);
            op["requestBody"] = body("Submission");
            r.insert("200".into(), json!({"description": "Queued", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["measurement_uid"], "properties": {"measurement_uid": {"type": "string"}}}}},
                "links": {"get": {"operationId": operation_id("get", "/api/v1/measurement/{measurement_uid}"), "parameters": {"measurement_uid": "$response.body#/measurement_uid"}}}}));
            r.insert("404".into(), error("No open report with this id"));
        }
        "/report/{report_id}/close" => {
            op["parameters"] = json!([path_param("report_id", "the id `POST /report` answered")]);
            r.insert("200".into(), json!({"description": "Closed", "content": {"application/json": {"schema": {"type": "object", "maxProperties": 0}}}}));
            r.insert("404".into(), error("No open report with this id"));
        }
        "/api/v1/measurement/{measurement_uid}" => {
            op["parameters"] = json!([path_param(
                "measurement_uid",
                "the uid a submission answered"
            )]);
            r.insert("200".into(), json!({"description": "The measurement as stored (OONI data format)", "content": {"application/json": {"schema": {
                "type": "object", "required": ["measurement_uid", "report_id"]}}}}));
            r.insert("404".into(), error("No such measurement"));
        }
        "/api/v1/check-in" => {
            op["requestBody"] = body("CheckIn");
            let report_id = "$response.body#/tests/web_connectivity/report_id";
            r.insert("200".into(), json!({"description": "A web_connectivity report is open; the URLs to test, least recently measured in the probe's country first",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckInResult"}}},
                "links": {
                    "submit": {"operationId": operation_id("post", "/report/{report_id}"), "parameters": {"report_id": report_id}},
                    "close": {"operationId": operation_id("post", "/report/{report_id}/close"), "parameters": {"report_id": report_id}}}}));
            r.insert("400".into(), error("Not JSON or not an object; a required field missing or empty; probe_cc not an ISO 3166-1 alpha-2 code or ZZ; probe_asn not AS<number>; an unknown category code or more than 64; a field of the wrong type; invalid zstd"));
        }
        "/api/v1/test-list/urls" => {
            op["parameters"] = json!([
                {"name": "country_code", "in": "query", "required": false, "description": "Two uppercase letters (ISO 3166-1 alpha-2); ZZ or none: the global list only",
                 "schema": {"type": "string", "enum": crate::testlists::country_codes()}},
                {"name": "probe_cc", "in": "query", "required": false, "description": "The same as country_code (which wins when both are given)",
                 "schema": {"type": "string", "enum": crate::testlists::country_codes()}},
                {"name": "category_codes", "in": "query", "required": false, "description": "Comma-separated Citizen Lab category codes, at most 64; none or empty: every category",
                 "schema": {"type": "string", "pattern": category_list_pattern()}},
                {"name": "limit", "in": "query", "required": false, "description": "The most URLs to return (default and maximum 9999)",
                 "schema": {"type": "integer", "minimum": 1, "maximum": super::checkin::MAX_LIMIT}},
            ]);
            r.insert("200".into(), json!({"description": "The URLs, least recently measured in the country first", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TestListResult"}}}}));
            r.insert("400".into(), error("An unknown country code, an unknown category code or more than 64, a limit out of 1..9999"));
        }
        _ => {
            r.insert("200".into(), json!({"description": "This document", "content": {"application/json": {"schema": {"type": "object"}}}}));
        }
    }
    if doc.method == "post" {
        r.entry("400").or_insert_with(|| error("Not JSON, not an object, a format other than \"json\", no `content` object, or invalid zstd"));
        r.insert(
            "415".into(),
            error("A Content-Encoding other than zstd or identity"),
        );
    }
    // A declared body over --max-body is refused on every route before it is read.
    r.insert(
        "413".into(),
        error("The body (or its zstd decompression) is over the limit"),
    );
    r.insert(
        "431".into(),
        json!({"description": "Request line and headers over the server's limit; no body"}),
    );
    if doc.path != PATH {
        r.insert("500".into(), error("The disk queue or the archive failed"));
    }
    op["responses"] = Value::Object(r);
    op
}

/// `category_codes` of the test-list API: up to 64 known codes, comma separated, or "".
fn category_list_pattern() -> String {
    let one = format!(
        "({})",
        crate::testlists::CATEGORY_CODES
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
            .join("|")
    );
    format!(
        "^({one}(,{one}){{0,{}}})?$",
        super::checkin::MAX_CATEGORIES - 1
    )
}

/// The schemas of the check-in and test-list routes.
fn checkin_schemas() -> Vec<(&'static str, Value)> {
    use super::checkin::{ASN_PATTERN, MAX_CATEGORIES, MAX_FIELD_CHARS};
    let categories: Vec<&str> = crate::testlists::CATEGORY_CODES
        .iter()
        .map(|(c, _)| *c)
        .collect();
    let url_info = json!({"type": "object", "required": ["category_code", "country_code", "url"], "properties": {
        "category_code": {"type": "string", "enum": categories},
        "country_code": {"type": "string", "description": "the list's country, XX for the global list"},
        "url": {"type": "string"}}});
    let text = |desc: &str| json!({"type": "string", "minLength": 1, "maxLength": MAX_FIELD_CHARS, "description": desc});
    vec![
        ("UrlInfo", url_info),
        (
            "CheckIn",
            json!({"type": "object", "required": ["probe_cc", "probe_asn", "software_name", "software_version"],
            "description": "What OONI Probe sends (probe-cli's OOAPICheckInConfig). Optional fields may be null.",
            "properties": {
                "probe_cc": {"type": "string", "enum": crate::testlists::country_codes(), "description": "ISO 3166-1 alpha-2, uppercase; ZZ (unknown location): the global list only"},
                "probe_asn": {"type": "string", "pattern": ASN_PATTERN, "description": "AS and the number, e.g. AS64500; AS0 when unknown"},
                "software_name": text("e.g. ooniprobe-cli"),
                "software_version": text("e.g. 3.22.0"),
                "platform": {"type": ["string", "null"], "maxLength": MAX_FIELD_CHARS},
                "run_type": {"enum": ["timed", "manual", null], "description": "manual: the whole list (up to 9999 URLs); timed: 100 URLs when charging, 20 otherwise"},
                "charging": {"type": ["boolean", "null"]},
                "on_wifi": {"type": ["boolean", "null"]},
                "web_connectivity": {"type": ["object", "null"], "properties": {
                    "category_codes": {"type": ["array", "null"], "maxItems": MAX_CATEGORIES, "items": {"type": "string", "enum": categories},
                        "description": "Citizen Lab category codes; none or empty: every category"}}}}}),
        ),
        (
            "CheckInResult",
            json!({"type": "object", "required": ["v", "probe_cc", "probe_asn", "utc_time", "conf", "tests"], "properties": {
            "v": {"const": 1},
            "probe_cc": {"type": "string"},
            "probe_asn": {"type": "string"},
            "utc_time": {"type": "string", "description": "YYYY-mm-ddTHH:MM:SSZ"},
            "conf": {"type": "object", "required": ["features", "test_helpers"], "properties": {
                "features": {"type": "object"},
                "test_helpers": {"type": "object", "description": "web-connectivity: the test helpers (oohelperd) the installation advertises (--test-helper); {} when none",
                    "additionalProperties": {"type": "array", "items": {"type": "object", "required": ["address", "type"], "properties": {"address": {"type": "string"}, "type": {"type": "string"}}}}}}},
            "tests": {"type": "object", "required": ["web_connectivity"], "properties": {
                "web_connectivity": {"type": "object", "required": ["report_id", "urls"], "properties": {
                    "report_id": {"type": "string", "description": "an open report: submit with POST /report/{report_id}"},
                    "urls": {"type": "array", "items": {"$ref": "#/components/schemas/UrlInfo"}}}}}}}}),
        ),
        (
            "TestListResult",
            json!({"type": "object", "required": ["metadata", "results"], "properties": {
            "metadata": {"type": "object", "required": ["count", "current_page", "limit", "next_url", "pages"], "properties": {
                "count": {"type": "integer", "minimum": 0}, "current_page": {"const": 1}, "limit": {"type": "integer"},
                "next_url": {"const": ""}, "pages": {"const": 1}}},
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/UrlInfo"}}}}),
        ),
    ]
}

/// The document of [`super::http::table`].
pub fn openapi_doc() -> Value {
    let mut paths = Map::new();
    for (doc, _) in super::http::table() {
        let entry = paths
            .entry(doc.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[doc.method] = operation(&doc);
    }
    let format = json!({"enum": ["json", null], "description": "only \"json\" (the default)"});
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "vantage intake", "version": env!("CARGO_PKG_VERSION"),
                 "description": "OONI's collector and probe-services API: check in for a report id and test-list URLs, or open a report; submit measurements (optionally `Content-Encoding: zstd`), close it; read a measurement back; list test-list URLs. Errors are `{\"error\": reason}`."},
        "paths": paths,
        "components": {"schemas": {
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "OpenReport": {"type": "object", "properties": {
                "format": format,
                "probe_asn": {"description": "AS1234 (kept as sent)"}, "probe_cc": {"description": "kept as sent"},
                "software_name": {}, "software_version": {}, "test_name": {}, "test_start_time": {},
                "test_version": {}, "data_format_version": {}},
                "description": "OONI's report header; its fields are kept as sent and given to each measurement that lacks them"},
            "ReportOpened": {"type": "object", "required": ["report_id", "backend_version", "supported_formats"], "properties": {
                "report_id": {"type": "string"}, "backend_version": {"type": "string"},
                "supported_formats": {"type": "array", "items": {"const": "json"}}}},
            "Submission": {"type": "object", "required": ["content"], "properties": {
                "format": format,
                "content": {"type": "object", "description": "the measurement (OONI data format)"}}},
        }},
    });
    for (name, schema) in checkin_schemas() {
        doc["components"]["schemas"][name] = schema;
    }
    doc
}

pub(super) async fn serve() -> Json<Value> {
    Json(openapi_doc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_and_links_name_real_operations() {
        let doc = openapi_doc();
        let paths = doc["paths"].as_object().expect("paths");
        assert_eq!(paths.len(), super::super::http::table().len());
        let ids: Vec<&str> = paths
            .values()
            .flat_map(|ops| ops.as_object().into_iter().flatten())
            .filter_map(|(_, op)| op["operationId"].as_str())
            .collect();
        for (_, ops) in paths {
            for (_, op) in ops.as_object().expect("ops") {
                for (_, resp) in op["responses"].as_object().expect("responses") {
                    for (_, link) in resp["links"].as_object().into_iter().flatten() {
                        let target = link["operationId"].as_str().expect("operationId");
                        assert!(
                            ids.contains(&target),
                            "link to {target}; operations {ids:?}"
                        );
                    }
                }
            }
        }
        assert!(paths["/report/{report_id}"]["post"]["responses"]
            .get("404")
            .is_some());
    }

    #[test]
    fn check_in_routes_are_documented_exactly() {
        let doc = openapi_doc();
        let check_in = &doc["paths"]["/api/v1/check-in"]["post"];
        assert_eq!(
            check_in["responses"]["200"]["links"]["submit"]["parameters"]["report_id"],
            "$response.body#/tests/web_connectivity/report_id"
        );
        assert!(check_in["responses"]["400"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("ISO 3166-1")));
        let schema = &doc["components"]["schemas"]["CheckIn"];
        let ccs = schema["properties"]["probe_cc"]["enum"]
            .as_array()
            .expect("enum");
        assert!(
            ccs.contains(&json!("ZZ")) && ccs.contains(&json!("IT")) && !ccs.contains(&json!("QQ"))
        );
        assert_eq!(
            schema["properties"]["web_connectivity"]["properties"]["category_codes"]["maxItems"],
            64
        );
        let list = &doc["paths"]["/api/v1/test-list/urls"]["get"];
        assert_eq!(list["parameters"][3]["schema"]["maximum"], 9999);
        let pattern = list["parameters"][2]["schema"]["pattern"]
            .as_str()
            .expect("pattern");
        assert!(
            pattern.starts_with("^((ALDR|") && pattern.ends_with("){0,63})?$"),
            "{pattern}"
        );
    }
}
