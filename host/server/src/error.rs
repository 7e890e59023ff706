//! The one error type that becomes an HTTP response: a stable code, a message a person can
//! act on, and the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tenken_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable (`body-too-large`, `window-closed`, ...).
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 503/429.
    pub retry_after: Option<u64>,
    pub request_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None, request_id: None }
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = code;
        self
    }

    pub fn retry_after(mut self, s: u64) -> ApiError {
        self.retry_after = Some(s);
        self
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", what)
    }

    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to complete the request; retry later, and report the request id if it persists",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::AlreadyConfirmed { .. } => {
                ApiError::new(StatusCode::CONFLICT, "already-confirmed", e.to_string())
            }
            StoreError::IdempotencyConflict { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused", e.to_string())
            }
            StoreError::NotFound(_) => ApiError::not_found(e.to_string()),
            StoreError::WrongState { .. } => ApiError::new(StatusCode::CONFLICT, "wrong-state", e.to_string()),
            StoreError::Refused(ref r) => {
                let code = match r {
                    tenken_store::Refusal::SelfApproval => "self-approval",
                    tenken_store::Refusal::OtherPayer { .. } => "other-payer",
                    tenken_store::Refusal::NotApprovable { .. } => "not-validated",
                    tenken_store::Refusal::InUse { .. } => "in-use",
                    tenken_store::Refusal::NotApproved { .. } | tenken_store::Refusal::MasterNotApproved { .. } => {
                        "not-approved"
                    }
                    _ => "wrong-state",
                };
                let status = match r {
                    tenken_store::Refusal::SelfApproval | tenken_store::Refusal::OtherPayer { .. } => {
                        StatusCode::FORBIDDEN
                    }
                    _ => StatusCode::CONFLICT,
                };
                ApiError::new(status, code, e.to_string())
            }
            StoreError::Missing { .. } => ApiError::not_found(e.to_string()),
            StoreError::Unavailable(ref why) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database-unavailable",
                format!("the database is unavailable ({why}); nothing was stored; retry after the Retry-After delay"),
            )
            .retry_after(2),
            StoreError::Busy { .. } | StoreError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-busy",
                "the server cannot store more right now; retry after the Retry-After delay",
            )
            .retry_after(1),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "request_id": self.request_id,
            }
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        // The request-id middleware fills the id into the body of errors it sees; the
        // extension marks the response as an error for the access log.
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}

/// Marks an error response with its code (read by the middleware for logs and metrics).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// A `from` month of a request: absent or empty = from the beginning; otherwise exactly
/// `YYYY-MM` (`2024-6`, `+2024-06`, `2024-13` are refused with the expected form), so the
/// store never sees two spellings of one month.
/// A required `YYYY-MM` (a path segment): 400 `bad-month` naming the expected form.
pub fn month_required(s: &str) -> Result<tenken_model::YearMonth, ApiError> {
    s.parse().map_err(|e: tenken_model::MonthError| ApiError::new(StatusCode::BAD_REQUEST, "bad-month", e.to_string()))
}

/// A `Digest` from a path or body: 400 `bad-digest` naming the expected form.
pub fn digest_param(s: &str) -> Result<tenken_model::Digest, ApiError> {
    s.parse()
        .map_err(|e: tenken_model::DigestError| ApiError::new(StatusCode::BAD_REQUEST, "bad-digest", e.to_string()))
}

pub fn month_param(s: Option<&str>) -> Result<Option<tenken_model::YearMonth>, ApiError> {
    match s {
        None | Some("") => Ok(None),
        Some(f) => f
            .parse()
            .map(Some)
            .map_err(|e: tenken_model::MonthError| ApiError::new(StatusCode::BAD_REQUEST, "bad-month", e.to_string())),
    }
}
