//! Every route of the API in one table, the middleware every request passes (request id,
//! tracing span, metrics, one JSON error shape), and the operations endpoints.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tenken_model::Payer;
use tracing::Instrument;

use crate::access::*;
use crate::app::{App, AppState};
use crate::error::{ApiError, ErrorCode};
use crate::metrics::StatusLabel;
use crate::submissions::*;
use crate::{job_status, masters, plugins};

/// The request id given to every request (`x-request-id`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/cluster", get(crate::cluster::cluster))
        .route("/v1/submissions", post(submit_any).get(list_submissions))
        .route("/v1/payers/{payer}/submissions", post(submit_to_payer))
        .route("/v1/submissions/{id}", get(status))
        .route("/v1/submissions/{id}/findings", get(findings))
        .route("/v1/submissions/{id}/findings.csv", get(findings_csv))
        .route("/v1/submissions/{id}/history", get(history))
        .route("/v1/submissions/{id}/confirm", post(confirm))
        .route("/v1/submissions/{id}/withdraw", post(withdraw))
        .route("/v1/submissions/{id}/receipts/{number}/withdraw", post(withdraw_receipt))
        .route("/v1/notices", get(list_notices))
        .route("/v1/payers/{payer}/notices", post(post_notice))
        .route("/v1/payers/{payer}/windows/{month}", get(get_window).put(put_window))
        .route("/v1/tokens", post(create_token).get(list_tokens))
        .route("/v1/tokens/{id}/revoke", post(revoke_token))
        // Rules: plugins, release sets, audit, regression corpus (staff of the payer).
        .route("/v1/payers/{payer}/plugins", post(plugins::upload).get(plugins::list))
        .route("/v1/payers/{payer}/plugins/{digest}", get(plugins::show))
        .route("/v1/payers/{payer}/plugins/{digest}/validate", post(plugins::validate))
        .route("/v1/payers/{payer}/plugins/{digest}/approve", post(plugins::approve))
        .route("/v1/payers/{payer}/plugins/{digest}/retire", post(plugins::retire))
        .route("/v1/payers/{payer}/releases", get(plugins::releases).post(plugins::activate))
        .route("/v1/payers/{payer}/releases/{id}/rollback", post(plugins::rollback))
        .route("/v1/payers/{payer}/swaps", get(plugins::swaps))
        .route("/v1/payers/{payer}/jobs", get(job_status::list_jobs))
        .route("/v1/payers/{payer}/jobs/{id}", get(job_status::get_job))
        .route("/v1/payers/{payer}/audit", get(plugins::audit))
        .route("/v1/payers/{payer}/signing-keys", post(plugins::add_key))
        .route("/v1/payers/{payer}/regression", post(plugins::add_regression).get(plugins::list_regression))
        .route("/v1/submissions/{id}/decisions", get(plugins::decisions))
        // Masters: versions, proposals, approvals, conversion (staff of the payer).
        .route("/v1/payers/{payer}/masters", get(masters::list).post(masters::propose))
        .route("/v1/payers/{payer}/masters/files", post(masters::upload_file))
        .route("/v1/payers/{payer}/masters/{id}", get(masters::show))
        .route("/v1/payers/{payer}/masters/{id}/approve", post(masters::approve))
        .route("/v1/payers/{payer}/masters/{id}/recheck", post(masters::recheck))
        .route("/v1/payers/{payer}/masters/{id}/activate", post(masters::activate))
        .route("/v1/payers/{payer}/masters/{id}/rollback", post(masters::rollback))
        .route("/v1/payers/{payer}/masters/{id}/convert-for/{other}", post(masters::convert_for))
        .route("/v1/payers/{payer}/masters/{id}/withdraw", post(masters::withdraw))
        .route("/v1/payers/{payer}/masters/{id}/files/{name}", get(masters::download))
        .fallback(|| async { ApiError::not_found("no such endpoint; the API is under /v1 (see /v1/openapi.json)") })
        .layer(axum::middleware::from_fn_with_state(app.clone(), request_context))
        .with_state(app)
}

/// Request id, tracing span, metrics, and one JSON error shape for every error (also the
/// rejections axum produces itself, e.g. a malformed path).
async fn request_context(State(app): AppState, mut req: Request, next: Next) -> Response {
    let id = format!("{:x}-{}", app.boot, app.next_request.fetch_add(1, Ordering::Relaxed));
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("request", id = %id, method = %req.method(), path = %req.uri().path());
    let mut resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status();
    app.metrics.responses.get_or_create(&StatusLabel { status: status.as_u16().to_string() }).inc();
    if status.is_client_error() || status.is_server_error() {
        let code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let mut json: serde_json::Value = match code {
            Some(_) => serde_json::from_slice(&bytes).unwrap_or_default(),
            None => serde_json::json!({"error": {
                "code": if status == StatusCode::NOT_FOUND { "not-found" } else { "bad-request" },
                "message": String::from_utf8_lossy(&bytes),
            }}),
        };
        json["error"]["request_id"] = serde_json::Value::String(id.clone());
        // Overload refusals are counted in /metrics; logging each one at info would turn a
        // surge into a logging surge.
        span.in_scope(|| {
            if matches!(status.as_u16(), 503 | 429) {
                tracing::debug!(status = status.as_u16(), code = ?json["error"]["code"], "refused")
            } else {
                tracing::info!(status = status.as_u16(), code = ?json["error"]["code"], "refused")
            }
        });
        let mut r = Response::from_parts(parts, Body::from(json.to_string()));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r.headers_mut().remove(header::CONTENT_LENGTH);
        resp = r;
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Liveness: 200 while the process serves, with the database's trouble named when there is
/// some (the node recovers by itself when the database is back; meanwhile new submissions
/// are answered 503 + Retry-After).
async fn healthz(State(app): AppState) -> String {
    match app.work.database_trouble() {
        None => "ok\n".into(),
        Some((why, since_ms)) => format!(
            "ok\ndatabase: unavailable for {} ms ({why}); submissions are answered 503 + Retry-After until it is back\n",
            (app.now_ms() - since_ms).max(0)
        ),
    }
}

async fn readyz(State(app): AppState) -> Response {
    if app.ready.load(Ordering::SeqCst) {
        // Serving; a payer that cannot check claims yet is named (each payer is its own
        // bulkhead, so the server is ready for the other one).
        if let Some((why, _)) = app.work.database_trouble() {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database-unavailable",
                format!("the database is unavailable ({why})"),
            )
            .retry_after(2)
            .into_response();
        }
        let mut text = String::from("ready\n");
        for payer in Payer::ALL {
            if let Some(why) = app.work.registry.table(payer).not_ready() {
                text.push_str(&format!("{payer}: not ready: {}\n", why.message(payer)));
            }
        }
        text.into_response()
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "starting or shutting down")
            .retry_after(1)
            .into_response()
    }
}

async fn metrics(State(app): AppState) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.metrics.encode())
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::document()).into_response()
}
