//! The intake's OpenAPI 3.1 document, served at [`PATH`] and built from the route
//! [`table`](super::http::table) the router is built from. OpenAPI links tie a report
//! opened to its submissions and close, and a submission to its measurement, so that a
//! stateful client (schemathesis) follows the OONI flow.

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
        _ => {
            r.insert("200".into(), json!({"description": "This document", "content": {"application/json": {"schema": {"type": "object"}}}}));
        }
    }
    if doc.method == "post" {
        r.insert("400".into(), error("Not JSON, not an object, a format other than \"json\", no `content` object, or invalid zstd"));
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
    json!({
        "openapi": "3.1.0",
        "info": {"title": "vantage intake", "version": env!("CARGO_PKG_VERSION"),
                 "description": "OONI's collector API: open a report, submit measurements (optionally `Content-Encoding: zstd`), close it; read a measurement back. Errors are `{\"error\": reason}`."},
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
    })
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
}
