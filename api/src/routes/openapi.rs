//! The OpenAPI 3.1 document, built from the route [`table`](super::table) so that it
//! lists exactly the routes the router serves.

use axum::Json;
use serde_json::{json, Value};

use super::table;

/// The OpenAPI 3.1 document of [`table`].
pub fn openapi_doc() -> Value {
    let mut paths = serde_json::Map::new();
    for (doc, _) in table() {
        let params: Vec<Value> = doc
            .params
            .iter()
            .map(|(name, at, desc)| {
                json!({"name": name, "in": at, "required": *at == "path", "description": desc,
                       "schema": {"type": if *at == "path" { "integer" } else { "string" }}})
            })
            .collect();
        let mut op = json!({
            "summary": doc.summary,
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                "400": {"description": "Bad input; the RIPE Atlas error object names the parameter or field", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if doc.path == "/stream/" {
            op["responses"] = json!({
                "101": {"description": "Switching to WebSocket: the RIPE Atlas streaming protocol (JSON arrays `[\"atlas_<message>\", payload]`)"},
                "400": {"description": "Not a WebSocket upgrade", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            });
        } else if doc.path.ends_with("/stream/") {
            op["responses"]["200"] = json!({"description": "Server-sent events, one `result` event per result", "content": {"text/event-stream": {}}});
        }
        if doc.method == "post" || doc.method == "delete" {
            op["responses"]["403"] = json!({"description": "Missing or unknown API key, or not the key that created the measurement"});
            op["security"] = json!([{"ApiKeyHeader": []}, {"ApiKeyQuery": []}]);
        }
        if doc.method == "delete" {
            op["responses"]["204"] = json!({"description": "Stopped"});
            if let Some(r) = op["responses"].as_object_mut() {
                r.remove("200");
            }
        }
        if doc.method == "post" {
            let (schema, created) = if doc.path.ends_with("/participation-requests/") {
                (
                    "ParticipationRequests",
                    "Created: {\"request_ids\": [id, ...]}",
                )
            } else {
                ("CreateRequest", "Created: {\"measurements\": [id, ...]}")
            };
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
            op["responses"]["201"] = json!({"description": created});
            op["responses"]["413"] = json!({"description": "Body over the limit", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
            if let Some(r) = op["responses"].as_object_mut() {
                r.remove("200");
            }
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
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                    "status": {"type": "integer"}, "code": {"type": "integer"}, "title": {"type": "string"}, "detail": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "object", "properties": {
                        "source": {"type": "object", "properties": {"pointer": {"type": "string"}}}, "detail": {"type": "string"}}}}}}}},
                "CreateRequest": {"type": "object", "required": ["definitions", "probes"], "properties": {
                    "definitions": {"type": "array", "items": {"type": "object", "description": "RIPE Atlas definition: type, af, target, description, interval, packets, ..."}},
                    "probes": {"type": "array", "items": {"type": "object", "required": ["type", "value", "requested"], "properties": {
                        "type": {"type": "string"}, "value": {"type": "string"}, "requested": {"type": "integer"},
                        "tags": {"type": "object", "properties": {"include": {"type": "array", "items": {"type": "string"}}, "exclude": {"type": "array", "items": {"type": "string"}}}}}}},
                    "start_time": {"type": ["integer", "string"]}, "stop_time": {"type": ["integer", "string"]}, "is_oneoff": {"type": "boolean"}}},
                "ParticipationRequests": {"type": "array", "items": {"type": "object", "required": ["action", "type", "value", "requested"], "properties": {
                    "action": {"type": "string", "enum": ["add", "remove"]}, "type": {"type": "string"}, "value": {"type": "string"}, "requested": {"type": "integer"}}}},
            },
        },
    })
}

pub(crate) async fn openapi() -> Json<Value> {
    Json(openapi_doc())
}
