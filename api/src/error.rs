//! Errors as RIPE Atlas answers them:
//! `{"error": {"status", "code", "title", "detail", "errors": [{"source": {"pointer"}, "detail"}]}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// A 4xx/5xx answer. `detail` says what was wrong and how to fix it; `pointer` names the
/// offending field or parameter (JSON pointer for bodies, `?name` for query parameters).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    pub pointer: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            pointer: None,
        }
    }

    /// 400 naming a query parameter.
    pub fn param(name: &str, detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            detail: format!("{name}: {}", detail.into()),
            pointer: Some(format!("?{name}")),
        }
    }

    /// 400 naming a body field (`definitions[0].packets` becomes `/definitions/0/packets`).
    pub fn field(field: &str, detail: impl Into<String>) -> Self {
        let pointer = field
            .replace('[', ".")
            .replace(']', "")
            .split('.')
            .filter(|s| !s.is_empty())
            .fold(String::new(), |mut acc, seg| {
                acc.push('/');
                acc.push_str(seg);
                acc
            });
        Self {
            status: StatusCode::BAD_REQUEST,
            detail: format!("{field}: {}", detail.into()),
            pointer: Some(pointer),
        }
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }

    /// RIPE Atlas error codes: 102 validation, 103 not found, 104 forbidden; else the status.
    pub fn code(&self) -> u16 {
        match self.status {
            StatusCode::BAD_REQUEST => 102,
            StatusCode::NOT_FOUND => 103,
            StatusCode::FORBIDDEN => 104,
            s => s.as_u16(),
        }
    }

    pub fn body(&self) -> Value {
        let errors: Vec<Value> = self
            .pointer
            .iter()
            .map(|p| json!({"source": {"pointer": p}, "detail": self.detail}))
            .collect();
        json!({"error": {
            "status": self.status.as_u16(),
            "code": self.code(),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "detail": self.detail,
            "errors": errors,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_pointer_and_shape() {
        let e = ApiError::field("definitions[0].packets", "-2 is out of range");
        assert_eq!(e.pointer.as_deref(), Some("/definitions/0/packets"));
        let b = e.body();
        assert_eq!(b["error"]["status"], 400);
        assert_eq!(b["error"]["code"], 102);
        assert_eq!(b["error"]["title"], "Bad Request");
        assert_eq!(
            b["error"]["detail"],
            "definitions[0].packets: -2 is out of range"
        );
        assert_eq!(
            b["error"]["errors"][0]["source"]["pointer"],
            "/definitions/0/packets"
        );
        assert_eq!(ApiError::forbidden("x").body()["error"]["code"], 104);
    }
}
