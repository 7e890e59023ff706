//! The HTTP API (`/v1`, JSON): submissions for institutions, windows and notices for staff,
//! tokens for admins, and the operations endpoints. Only this crate knows HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tenken_model::{Finding, Payer, Severity};
use tenken_store::{
    Accepted, ListFilter, NewSubmission, Notice, Role, State as SubState, Store, Submission, SubmissionId,
    WindowOverride,
};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::auth::{Authenticator, Principal};
use crate::blocking::blocking;
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::metrics::{Metrics, OutcomeLabel, StatusLabel};
use crate::window;
use crate::work::{Work, now_ms};
use tenken_store::{Audience, chunk_count};

type Limiter = governor::DefaultKeyedRateLimiter<String>;

pub struct App {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub work: Arc<Work>,
    pub auth: Box<dyn Authenticator>,
    pub metrics: Arc<Metrics>,
    pub uploads: Arc<Semaphore>,
    pub limiter: Limiter,
    pub ready: AtomicBool,
    /// The bundled master-format converters by format name.
    pub converters: Arc<std::collections::HashMap<String, Arc<tenken_runtime::Converter>>>,
    pub next_request: AtomicU64,
    pub boot: u64,
}

impl App {
    /// Retry-After with jitter, so refused clients spread out instead of returning together.
    pub fn retry_after(&self) -> u64 {
        let base = self.config.admission.retry_after_s.max(1);
        base + rand::random_range(0..=base)
    }

    fn refuse(&self, e: ApiError) -> ApiError {
        self.metrics.refused(e.code);
        e
    }
}

type AppState = State<Arc<App>>;

/// The request id given to every request (`x-request-id`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub fn router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
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
        .merge(crate::plugins::routes())
        .merge(crate::masters::routes())
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

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(app): AppState) -> Response {
    if app.ready.load(Ordering::SeqCst) {
        // Serving; a payer that cannot check claims yet is named (each payer is its own
        // bulkhead, so the server is ready for the other one).
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

// ---------------------------------------------------------------------------------------
// Submissions

/// What a submission looks like in responses.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmissionView {
    pub id: SubmissionId,
    /// 受付番号.
    pub reception: String,
    pub payer: String,
    pub institution: String,
    pub billing_month: String,
    pub state: String,
    pub receipts: u32,
    pub bytes: u64,
    pub digest: String,
    pub progress: Progress,
    pub counts: CountsView,
    pub findings_dropped: u64,
    pub accepted_at: String,
    pub checked_at: Option<String>,
    pub confirmed_at: Option<String>,
    pub supersedes: Option<SubmissionId>,
    pub superseded_by: Option<SubmissionId>,
    pub withdrawn_receipts: Vec<u32>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    pub chunks_done: u32,
    pub chunks: u32,
    /// 0.0 ..= 1.0.
    pub fraction: f64,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CountsView {
    pub error: u64,
    pub warning: u64,
    pub info: u64,
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(window::jst())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub fn view(s: &Submission) -> SubmissionView {
    SubmissionView {
        id: s.id,
        reception: s.reception.clone(),
        payer: s.payer.to_string(),
        institution: s.institution.clone(),
        billing_month: s.billing_month.clone(),
        state: s.state.to_string(),
        receipts: s.receipts,
        bytes: s.bytes,
        digest: s.digest.clone(),
        progress: Progress {
            chunks_done: s.chunks_done,
            chunks: s.chunks,
            fraction: if s.chunks == 0 { 1.0 } else { s.chunks_done as f64 / s.chunks as f64 },
        },
        counts: CountsView { error: s.counts.error, warning: s.counts.warning, info: s.counts.info },
        findings_dropped: s.findings_dropped,
        accepted_at: rfc3339(s.accepted_ms),
        checked_at: s.checked_ms.map(rfc3339),
        confirmed_at: s.confirmed_ms.map(rfc3339),
        supersedes: s.supersedes,
        superseded_by: s.superseded_by,
        withdrawn_receipts: s.withdrawn_receipts.clone(),
    }
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubmitResponse {
    pub submission: SubmissionView,
    /// True when the Idempotency-Key matched an earlier submission: nothing new was stored.
    pub replayed: bool,
    pub status_url: String,
    pub notices: Vec<NoticeView>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NoticeView {
    pub id: i64,
    pub payer: Option<String>,
    pub message: String,
    pub posted_at: String,
}

fn notice_view(n: &Notice) -> NoticeView {
    NoticeView {
        id: n.id,
        payer: n.payer.map(|p| p.to_string()),
        message: n.message.clone(),
        posted_at: rfc3339(n.created_ms),
    }
}

async fn submit_any(app: AppState, who: Principal, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    submit(app, who, None, headers, body).await
}

async fn submit_to_payer(
    app: AppState,
    who: Principal,
    Path(payer): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let payer: Payer = payer.parse().map_err(|e: String| ApiError::new(StatusCode::NOT_FOUND, "unknown-payer", e))?;
    submit(app, who, Some(payer), headers, body).await
}

async fn submit(
    State(app): AppState,
    who: Principal,
    url_payer: Option<Payer>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let t0 = std::time::Instant::now();
    let adm = &app.config.admission;
    // Refusals before the body is read still read (and discard) a bounded amount of it, so
    // the client gets the answer instead of a reset connection.
    let early = admit(&app, &who);
    let (institution, _permit) = match early {
        Ok(x) => x,
        Err(e) => {
            let drain_ms = adm.body_read_timeout_ms.min(1_000);
            let _ = tokio::time::timeout(Duration::from_millis(drain_ms), read_body(body, 0, adm.body_drain_bytes_max))
                .await;
            return Err(e);
        }
    };
    let max = adm.submission_bytes_max;
    let too_large = || {
        app.refuse(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!(
                "the file is larger than {max} bytes (submission_bytes_max); split it into volumes (マルチボリューム)"
            ),
        ))
    };
    let drain = adm.body_drain_bytes_max.max(max);
    if let Some(len) = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && len > drain
    {
        return Err(too_large());
    }
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k =
                v.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 200 && k.bytes().all(|b| b.is_ascii_graphic()));
            Some(k.map(str::to_owned).ok_or_else(|| {
                app.refuse(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad-idempotency-key",
                    "Idempotency-Key must be 1–200 visible ASCII characters (a UUID is a good choice)",
                ))
            })?)
        }
    };
    let read = read_body(body, max, drain);
    let bytes = match tokio::time::timeout(Duration::from_millis(adm.body_read_timeout_ms), read).await {
        Err(_) => {
            return Err(app.refuse(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                format!("the file did not arrive within {} ms (body_read_timeout_ms); retry", adm.body_read_timeout_ms),
            )));
        }
        Ok(Ok(Some(b))) => b,
        Ok(Ok(None)) => return Err(too_large()),
        Ok(Err(e)) => {
            return Err(app.refuse(ApiError::new(
                StatusCode::BAD_REQUEST,
                "body-unreadable",
                format!("the request body could not be read: {e}"),
            )));
        }
    };
    if bytes.is_empty() {
        return Err(app.refuse(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty-body",
            "the request body is empty; send the claim file (RECEIPTC.UKE) bytes as the body",
        )));
    }
    let scan = tenken_claim::scan(&bytes);
    let Some(ir) = scan.header.clone() else {
        return Err(app.refuse(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not-a-claim-file",
            "this is not a claim file: its first record is not an IR record (医療機関情報). Send RECEIPTC.UKE as it is",
        )));
    };
    let payer = match (ir.payer, url_payer) {
        (Some(a), Some(b)) if a != b => {
            return Err(app.refuse(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "payer-mismatch",
                format!(
                    "the file's IR record names {a} (審査支払機関 {}) but it was sent to {b}; send it to {a}, or fix the IR record",
                    a.ir_code()
                ),
            )));
        }
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => {
            return Err(app.refuse(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-payer",
                "the IR record's 審査支払機関 (field 2) is neither 1 (ssk) nor 2 (kokuho); fix it, or send the file to /v1/payers/{payer}/submissions",
            )));
        }
    };
    if ir.institution_code != institution {
        return Err(app.refuse(ApiError::forbidden(format!(
            "the file is from institution {:?} (IR 医療機関コード) but this token belongs to institution {institution}",
            ir.institution_code
        ))));
    }
    let Some(month) = ir.billing_month.map(|m| m.to_string()) else {
        return Err(app.refuse(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no-billing-month",
            "the IR record's 請求年月 (field 8) is missing or not a month, so the file cannot be placed in a billing window",
        )));
    };
    if let Some(why) = app.work.registry.table(payer).not_ready() {
        // Not retryable by the client: the operator (or staff) must act first.
        return Err(app.refuse(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "payer-not-ready", why.message(payer))));
    }
    let now = now_ms();
    check_window(&app, payer, &month, now).await?;
    let pw = app.work.payer(payer);
    let chunks = chunk_count(scan.receipts, app.config.schedule.chunk_receipts);
    if pw.backlog() + chunks as u64 > pw.queue_chunks_max as u64 {
        return Err(app.refuse(
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "payer-busy",
                format!("{payer}'s check queue is full; your file was not stored. Retry after the Retry-After delay"),
            )
            .retry_after(app.retry_after()),
        ));
    }
    let new = NewSubmission {
        payer,
        institution,
        billing_month: month,
        bytes: bytes.to_vec(),
        idempotency_key: key,
        token_id: who.token_id,
        receipts: scan.receipts,
        chunks,
        chunk_receipts: app.config.schedule.chunk_receipts,
        now_ms: now,
    };
    let store = app.store.clone();
    // The blocking part (blob write, queueing the row) holds a thread; the wait for the
    // group commit does not (see `PendingAccept`).
    let started = blocking(move || -> Result<_, tenken_store::StoreError> {
        let pending = store.accept_start(new)?;
        let n = store.notices(Some(payer), Audience::Institutions, 5)?;
        Ok((pending, n))
    })
    .await;
    let (pending, notices) = match started {
        Ok(x) => x,
        Err(e) => return Err(app.refuse(e)),
    };
    // Queued for checking in a task of its own: if the client goes away while the commit
    // is pending, this request's future is dropped, but a committed submission must still
    // reach the workers now, not at the next restart.
    let app2 = app.clone();
    let committed = tokio::spawn(async move {
        let accepted = pending.done().await?;
        let s = &accepted.submission;
        if !accepted.replayed {
            if let Some(prev) = s.supersedes {
                app2.work.forget(payer, prev);
            }
            app2.work.enqueue(s);
        }
        Ok::<_, tenken_store::StoreError>(accepted)
    });
    let accepted: Accepted = match committed.await {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => return Err(app.refuse(e.into())),
        Err(e) => return Err(app.refuse(ApiError::internal(e))),
    };
    let s = &accepted.submission;
    app.metrics
        .submissions
        .get_or_create(&OutcomeLabel { outcome: if accepted.replayed { "replayed" } else { "accepted" }.into() })
        .inc();
    app.metrics.accept_latency.observe(t0.elapsed().as_secs_f64());
    tracing::info!(submission = s.id, reception = %s.reception, replayed = accepted.replayed, "accepted");
    let body = SubmitResponse {
        submission: view(s),
        replayed: accepted.replayed,
        status_url: format!("/v1/submissions/{}", s.id),
        notices: notices.iter().map(notice_view).collect(),
    };
    let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
    resp.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&format!("/v1/submissions/{}", s.id)).unwrap());
    Ok(resp)
}

/// Reads at most `max` bytes; `Ok(None)` when the body is larger. The excess is read and
/// discarded up to `drain` bytes so the client can read the 413 (see `body_drain_bytes_max`).
async fn read_body(mut body: Body, max: u64, drain: u64) -> Result<Option<bytes::Bytes>, axum::Error> {
    let mut buf = bytes::BytesMut::new();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        total += data.len() as u64;
        if total > max {
            if total > drain {
                break;
            }
        } else {
            buf.extend_from_slice(&data);
        }
    }
    Ok((total <= max).then(|| buf.freeze()))
}

/// The checks that need no body: who may submit, upload slots, the institution's rate.
fn admit(app: &App, who: &Principal) -> Result<(String, tokio::sync::OwnedSemaphorePermit), ApiError> {
    let adm = &app.config.admission;
    let Some(institution) = who.institution().map(str::to_owned) else {
        return Err(app.refuse(ApiError::forbidden(format!(
            "{} cannot submit claim files; use the token of the institution (医療機関) that sends them",
            who.describe()
        ))));
    };
    // Bounded concurrent uploads: beyond, refuse at once rather than queue in memory.
    let Ok(permit) = app.uploads.clone().try_acquire_owned() else {
        return Err(app.refuse(
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the server is receiving as many files as it can; retry after the Retry-After delay",
            )
            .retry_after(app.retry_after()),
        ));
    };
    if let Err(not_until) = app.limiter.check_key(&institution) {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
        return Err(app.refuse(
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                format!(
                    "institution {institution} sent more than {} submissions a minute; retry after the Retry-After delay",
                    adm.submissions_per_institution_per_minute_max
                ),
            )
            .retry_after(wait.as_secs() + 1 + rand::random_range(0..=app.config.admission.retry_after_s)),
        ));
    }
    Ok((institution, permit))
}

async fn effective_window(app: &App, payer: Payer, month: &str) -> Result<Option<window::Window>, ApiError> {
    let store = app.store.clone();
    let m = month.to_owned();
    let over = blocking(move || store.window(payer, &m)).await?;
    Ok(match over {
        Some(o) => Some(window::Window { opens_ms: o.opens_ms, closes_ms: o.closes_ms, extended: true }),
        None => window::default_window(&app.config.windows, month),
    })
}

async fn check_window(app: &App, payer: Payer, month: &str, now: i64) -> Result<(), ApiError> {
    let w = effective_window(app, payer, month).await?;
    if window::is_open(&app.config.windows, w, now) {
        return Ok(());
    }
    let msg = match w {
        Some(w) if now < w.opens_ms => format!(
            "{payer} accepts files for billing month {month} from {} to {}; the window is not open yet",
            window::format_jst(w.opens_ms),
            window::format_jst_close(w.closes_ms)
        ),
        Some(w) => format!(
            "{payer}'s window for billing month {month} closed at {}; ask {payer} if it can be extended",
            window::format_jst_close(w.closes_ms)
        ),
        None => format!("billing month {month} has no acceptance window"),
    };
    Err(app.refuse(ApiError::new(StatusCode::FORBIDDEN, "window-closed", msg)))
}

/// Loads a submission the caller may see: its institution, its payer's staff, or an admin.
pub async fn visible(app: &App, who: &Principal, id: SubmissionId) -> Result<Submission, ApiError> {
    let store = app.store.clone();
    let s = blocking(move || store.get(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("submission {id} not found")))?;
    let allowed = match &who.role {
        Role::Institution { institution } => *institution == s.institution,
        Role::Staff { payer } => *payer == s.payer,
        Role::Admin => true,
    };
    if !allowed {
        tracing::warn!(submission = id, who = %who.describe(), "refused: not the caller's submission");
        return Err(ApiError::forbidden(format!("{} may not access submission {id}", who.describe())));
    }
    Ok(s)
}

/// Only the submitting institution acts on its submission.
async fn owned(app: &App, who: &Principal, id: SubmissionId) -> Result<Submission, ApiError> {
    let s = visible(app, who, id).await?;
    if who.institution() != Some(s.institution.as_str()) {
        return Err(ApiError::forbidden(format!(
            "only institution {} may confirm or withdraw submission {id}; {} may only read it",
            s.institution,
            who.describe()
        )));
    }
    Ok(s)
}

async fn status(
    State(app): AppState,
    who: Principal,
    Path(id): Path<SubmissionId>,
) -> Result<Json<SubmissionView>, ApiError> {
    Ok(Json(view(&visible(&app, &who, id).await?)))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    before: Option<SubmissionId>,
    limit: Option<u32>,
    institution: Option<String>,
}

async fn list_submissions(
    State(app): AppState,
    who: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<SubmissionView>>, ApiError> {
    let mut filter = ListFilter { before: q.before, limit: q.limit.unwrap_or(100).min(1000), ..Default::default() };
    match &who.role {
        Role::Institution { institution } => filter.institution = Some(institution.clone()),
        Role::Staff { payer } => {
            filter.payer = Some(*payer);
            filter.institution = q.institution;
        }
        Role::Admin => filter.institution = q.institution,
    }
    let store = app.store.clone();
    let list = blocking(move || store.list(&filter)).await?;
    Ok(Json(list.iter().map(view).collect()))
}

async fn history(
    State(app): AppState,
    who: Principal,
    Path(id): Path<SubmissionId>,
) -> Result<Json<Vec<SubmissionView>>, ApiError> {
    visible(&app, &who, id).await?;
    let store = app.store.clone();
    let list = blocking(move || store.history(id)).await?;
    Ok(Json(list.iter().map(view).collect()))
}

async fn load_findings(app: &App, s: &Submission) -> Result<Vec<Finding>, ApiError> {
    if matches!(s.state, SubState::Queued | SubState::Checking) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not-checked-yet",
            format!(
                "submission {} is still being checked ({}/{} chunks); poll its status and fetch findings when it is checked",
                s.id, s.chunks_done, s.chunks
            ),
        )
        .retry_after(1));
    }
    let store = app.store.clone();
    let id = s.id;
    let json = blocking(move || store.findings(id)).await?;
    match json {
        Some(j) => serde_json::from_str(&j).map_err(ApiError::internal),
        // Superseded or withdrawn before the check finished.
        None => Ok(Vec::new()),
    }
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    offset: Option<usize>,
    limit: Option<usize>,
    severity: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FindingsPage {
    pub submission: SubmissionId,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    #[schema(value_type = Vec<Object>)]
    pub findings: Vec<Finding>,
}

async fn findings(
    State(app): AppState,
    who: Principal,
    Path(id): Path<SubmissionId>,
    Query(q): Query<PageQuery>,
) -> Result<Json<FindingsPage>, ApiError> {
    let s = visible(&app, &who, id).await?;
    let mut all = load_findings(&app, &s).await?;
    if let Some(sev) = &q.severity {
        all.retain(|f| f.severity.as_str() == sev);
    }
    let max = app.config.admission.findings_page_max as usize;
    let limit = q.limit.unwrap_or(max).clamp(1, max);
    let offset = q.offset.unwrap_or(0);
    let total = all.len();
    let page = all.into_iter().skip(offset).take(limit).collect();
    Ok(Json(FindingsPage { submission: id, total, offset, limit, findings: page }))
}

async fn findings_csv(
    State(app): AppState,
    who: Principal,
    Path(id): Path<SubmissionId>,
) -> Result<Response, ApiError> {
    let s = visible(&app, &who, id).await?;
    let all = load_findings(&app, &s).await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let opt = |v: Option<u32>| v.map(|n| n.to_string()).unwrap_or_default();
    let _ = w.write_record(["receipt", "line", "record", "field", "rule", "severity", "message"]);
    for f in &all {
        let _ = w.write_record([
            opt(f.receipt),
            opt(f.line),
            f.record.clone().unwrap_or_default(),
            opt(f.field),
            f.rule.clone(),
            f.severity.as_str().to_owned(),
            f.message.clone(),
        ]);
    }
    let bytes = w.into_inner().map_err(ApiError::internal)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}-findings.csv\"", s.reception)),
        ],
        bytes,
    )
        .into_response())
}

/// The 請求確定 gate: no error finding may remain on a receipt that is not withdrawn,
/// counting the errors the per-file findings cap (`cap`) cut from the stored list `stored`.
fn confirm_gate(
    id: SubmissionId,
    counts: &tenken_store::Counts,
    findings_dropped: u64,
    withdrawn: &[u32],
    stored: &[Finding],
    cap: u32,
) -> Result<(), ApiError> {
    // Findings cut by the cap are not stored, so which receipts they are on is unknown and
    // withdrawing receipts cannot clear them. When the counts cover every finding (they add
    // up to the stored list plus the cut ones: counted before the cap), the cut errors are
    // the counted errors minus the stored ones; when they do not (counted after the cap, as
    // earlier releases did), any cut finding may be an error.
    if findings_dropped > 0 {
        let stored_errors = stored.iter().filter(|f| f.severity == Severity::Error).count() as u64;
        let before_cap = counts.error + counts.warning + counts.info == stored.len() as u64 + findings_dropped;
        let cut_errors = before_cap.then(|| counts.error.saturating_sub(stored_errors));
        if cut_errors != Some(0) {
            let what = match cut_errors {
                Some(n) => format!("{n} error finding(s) were cut"),
                None => format!("{findings_dropped} finding(s), which may include errors, were cut"),
            };
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "errors-beyond-findings-cap",
                format!(
                    "submission {id} cannot be confirmed (請求確定): {what} from its findings list by the per-file cap \
                     (check_findings_per_file_max = {cap}), so which receipts they are on is not known and withdrawing \
                     receipts cannot clear them. Correct the {stored_errors} error finding(s) listed and resubmit the \
                     corrected file; its check lists what remains"
                ),
            ));
        }
    }
    let blocking_errors: Vec<&Finding> = stored
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .filter(|f| f.receipt.is_none_or(|r| !withdrawn.contains(&r)))
        .collect();
    if !blocking_errors.is_empty() {
        let file_level = blocking_errors.iter().filter(|f| f.receipt.is_none()).count();
        let mut receipts: Vec<u32> = blocking_errors.iter().filter_map(|f| f.receipt).collect();
        receipts.dedup();
        let shown: Vec<String> = receipts.iter().take(10).map(|r| r.to_string()).collect();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "unresolved-errors",
            format!(
                "{} error finding(s) remain ({file_level} file-level; receipts {}{}). Withdraw those receipts \
                 (POST /v1/submissions/{id}/receipts/N/withdraw) or resubmit a corrected file, then confirm",
                blocking_errors.len(),
                if shown.is_empty() { "none".to_owned() } else { shown.join(", ") },
                if receipts.len() > 10 { ", …" } else { "" }
            ),
        ));
    }
    Ok(())
}

async fn confirm(
    State(app): AppState,
    who: Principal,
    Path(id): Path<SubmissionId>,
) -> Result<Json<SubmissionView>, ApiError> {
    let s = owned(&app, &who, id).await?;
    if s.state != SubState::Checked {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "wrong-state",
            format!("submission {id} is {}; only a checked submission can be confirmed (請求確定)", s.state),
        ));
    }
    let all = load_findings(&app, &s).await?;
    confirm_gate(
        id,
        &s.counts,
        s.findings_dropped,
        &s.withdrawn_receipts,
        &all,
        app.config.limits.check_findings_per_file_max,
    )?;
    let store = app.store.clone();
    let s = blocking(move || store.confirm(id, now_ms())).await?;
    tracing::info!(submission = id, "confirmed");
    Ok(Json(view(&s)))
}

async fn withdraw(
    State(app): AppState,
    who: Principal,
    Path(id): Path<SubmissionId>,
) -> Result<Json<SubmissionView>, ApiError> {
    owned(&app, &who, id).await?;
    let store = app.store.clone();
    let s = blocking(move || store.withdraw(id, now_ms())).await?;
    app.work.forget(s.payer, id);
    Ok(Json(view(&s)))
}

async fn withdraw_receipt(
    State(app): AppState,
    who: Principal,
    Path((id, number)): Path<(SubmissionId, u32)>,
) -> Result<Json<SubmissionView>, ApiError> {
    let s = owned(&app, &who, id).await?;
    if number == 0 || number > s.receipts.max(1) * 2 {
        return Err(ApiError::not_found(format!("submission {id} has no receipt {number}")));
    }
    let store = app.store.clone();
    let s = blocking(move || store.withdraw_receipt(id, number)).await?;
    Ok(Json(view(&s)))
}

// ---------------------------------------------------------------------------------------
// Notices, windows, tokens

fn staff_of(who: &Principal, payer: Payer) -> Result<(), ApiError> {
    if who.is_admin() || who.staff_payer() == Some(payer) {
        Ok(())
    } else {
        tracing::warn!(who = %who.describe(), %payer, "refused: not this payer's staff");
        Err(ApiError::forbidden(format!("only {payer} staff may do this; {} may not", who.describe())))
    }
}

async fn list_notices(State(app): AppState, who: Principal) -> Result<Json<Vec<NoticeView>>, ApiError> {
    // Institutions see what was posted for institutions; a payer's staff also see the
    // notices meant for them (an automatic rollback), newest first.
    let payer = who.staff_payer();
    let store = app.store.clone();
    let list = blocking(move || -> Result<_, tenken_store::StoreError> {
        let mut list = store.notices(payer, Audience::Institutions, 100)?;
        if payer.is_some() {
            list.extend(store.notices(payer, Audience::Staff, 100)?);
            list.sort_by(|a, b| b.id.cmp(&a.id));
            list.truncate(100);
        }
        Ok(list)
    })
    .await?;
    Ok(Json(list.iter().map(notice_view).collect()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NoticeRequest {
    pub message: String,
}

async fn post_notice(
    State(app): AppState,
    who: Principal,
    Path(payer): Path<String>,
    Json(req): Json<NoticeRequest>,
) -> Result<(StatusCode, Json<NoticeView>), ApiError> {
    let payer: Payer = payer.parse().map_err(|e: String| ApiError::new(StatusCode::NOT_FOUND, "unknown-payer", e))?;
    staff_of(&who, payer)?;
    let msg = req.message.trim().to_owned();
    if msg.is_empty() || msg.chars().count() > 2000 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-notice", "a notice is 1–2000 characters"));
    }
    let store = app.store.clone();
    let by = who.token_id;
    let n = blocking(move || store.add_notice(Some(payer), Audience::Institutions, &msg, by, now_ms())).await?;
    Ok((StatusCode::CREATED, Json(notice_view(&n))))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WindowView {
    pub payer: String,
    pub billing_month: String,
    pub opens_at: Option<String>,
    pub closes_at: Option<String>,
    /// People's form: `2026-11-10 24:00 JST`.
    pub opens: Option<String>,
    pub closes: Option<String>,
    pub extended: bool,
    pub open_now: bool,
}

async fn window_view(app: &App, payer: Payer, month: &str) -> Result<WindowView, ApiError> {
    if window::parse_month(month).is_none() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-month",
            format!("{month:?} is not a month; use YYYY-MM"),
        ));
    }
    let w = effective_window(app, payer, month).await?;
    Ok(WindowView {
        payer: payer.to_string(),
        billing_month: month.to_owned(),
        opens_at: w.map(|w| rfc3339(w.opens_ms)),
        closes_at: w.map(|w| rfc3339(w.closes_ms)),
        opens: w.map(|w| window::format_jst(w.opens_ms)),
        closes: w.map(|w| window::format_jst_close(w.closes_ms)),
        extended: w.is_some_and(|w| w.extended),
        open_now: window::is_open(&app.config.windows, w, now_ms()),
    })
}

async fn get_window(
    State(app): AppState,
    _who: Principal,
    Path((payer, month)): Path<(String, String)>,
) -> Result<Json<WindowView>, ApiError> {
    let payer: Payer = payer.parse().map_err(|e: String| ApiError::new(StatusCode::NOT_FOUND, "unknown-payer", e))?;
    Ok(Json(window_view(&app, payer, &month).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct WindowRequest {
    /// `YYYY-MM-DDTHH:MM` (JST, `24:00` allowed) or RFC 3339; default: unchanged.
    pub opens_at: Option<String>,
    pub closes_at: String,
    /// Posted as a notice to the payer's institutions when given.
    pub notice: Option<String>,
}

async fn put_window(
    State(app): AppState,
    who: Principal,
    Path((payer, month)): Path<(String, String)>,
    Json(req): Json<WindowRequest>,
) -> Result<Json<WindowView>, ApiError> {
    let payer: Payer = payer.parse().map_err(|e: String| ApiError::new(StatusCode::NOT_FOUND, "unknown-payer", e))?;
    staff_of(&who, payer)?;
    let current = window_view(&app, payer, &month).await?;
    let bad = |what: &str, v: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-time",
            format!("{what} {v:?} is not a time; use 2026-11-12T21:00 (JST)"),
        )
    };
    let closes = window::parse_time(&req.closes_at).ok_or_else(|| bad("closes_at", &req.closes_at))?;
    let opens = match &req.opens_at {
        Some(o) => window::parse_time(o).ok_or_else(|| bad("opens_at", o))?,
        None => current.opens_at.as_deref().and_then(window::parse_time).unwrap_or(closes),
    };
    if closes <= opens {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bad-window", "closes_at must be after opens_at"));
    }
    let store = app.store.clone();
    let by = who.token_id;
    let m = month.clone();
    let notice = req.notice.clone();
    blocking(move || -> Result<_, tenken_store::StoreError> {
        let now = now_ms();
        store.set_window(WindowOverride {
            payer,
            billing_month: m,
            opens_ms: opens,
            closes_ms: closes,
            updated_by: by,
            updated_ms: now,
        })?;
        if let Some(n) = notice.filter(|n| !n.trim().is_empty()) {
            store.add_notice(Some(payer), Audience::Institutions, n.trim(), by, now)?;
        }
        Ok(())
    })
    .await?;
    tracing::info!(%payer, month, "window changed");
    Ok(Json(window_view(&app, payer, &month).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    /// `institution`, `staff` or `admin`.
    pub role: String,
    pub institution: Option<String>,
    pub payer: Option<String>,
    #[serde(default)]
    pub label: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenCreated {
    pub id: i64,
    /// Shown once; only its hash is stored.
    pub token: String,
}

pub fn parse_role(role: &str, institution: Option<&str>, payer: Option<&str>) -> Result<Role, String> {
    match role {
        "institution" => {
            let i = institution.ok_or("an institution token needs `institution` (the 7-digit 医療機関コード)")?;
            if i.len() != 7 || !i.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("institution {i:?} is not a 7-digit 医療機関コード"));
            }
            Ok(Role::Institution { institution: i.to_owned() })
        }
        "staff" => Ok(Role::Staff { payer: payer.ok_or("a staff token needs `payer` (ssk or kokuho)")?.parse()? }),
        "admin" => Ok(Role::Admin),
        other => Err(format!("unknown role {other:?}: expected institution, staff or admin")),
    }
}

fn admin_only(who: &Principal) -> Result<(), ApiError> {
    if who.is_admin() {
        Ok(())
    } else {
        tracing::warn!(who = %who.describe(), "refused: admin only");
        Err(ApiError::forbidden(format!("only admins manage tokens; {} may not", who.describe())))
    }
}

async fn create_token(
    State(app): AppState,
    who: Principal,
    Json(req): Json<TokenRequest>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    admin_only(&who)?;
    let role = parse_role(&req.role, req.institution.as_deref(), req.payer.as_deref())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-token-request", e))?;
    let store = app.store.clone();
    let (id, token) = blocking(move || store.create_token(role, &req.label, now_ms())).await?;
    Ok((StatusCode::CREATED, Json(TokenCreated { id, token })))
}

async fn list_tokens(State(app): AppState, who: Principal) -> Result<Json<Vec<tenken_store::TokenInfo>>, ApiError> {
    admin_only(&who)?;
    let store = app.store.clone();
    Ok(Json(blocking(move || store.list_tokens()).await?))
}

async fn revoke_token(State(app): AppState, who: Principal, Path(id): Path<i64>) -> Result<StatusCode, ApiError> {
    admin_only(&who)?;
    let store = app.store.clone();
    if blocking(move || store.revoke_token(id)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("token {id} not found")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenken_store::Counts;

    fn error(receipt: u32) -> Finding {
        Finding::error("diagnosis.missing", "no SY record").receipt(Some(receipt))
    }

    /// The confirmation gate with findings cut by the cap: refused whenever a cut finding is,
    /// or may be, an error; allowed when the counts prove none is.
    #[test]
    fn the_confirm_gate_counts_errors_cut_by_the_findings_cap() {
        let stored = vec![error(1), error(2)];
        let counts = |error, warning| Counts { error, warning, info: 0 };
        // Counted before the cap: 5 errors, 2 stored, 3 cut. Withdrawing 1 and 2 cannot help.
        let e = confirm_gate(9, &counts(5, 0), 3, &[1, 2], &stored, 2).unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::CONFLICT, "errors-beyond-findings-cap"));
        assert!(e.message.contains("3 error finding(s)") && e.message.contains("check_findings_per_file_max = 2"));
        // Counted before the cap, and only warnings were cut: the visible errors decide.
        assert!(confirm_gate(9, &counts(2, 3), 3, &[1, 2], &stored, 2).is_ok());
        assert_eq!(confirm_gate(9, &counts(2, 3), 3, &[1], &stored, 2).unwrap_err().code, "unresolved-errors");
        // Counted after the cap (an earlier release): the cut findings may be errors.
        let e = confirm_gate(9, &counts(2, 0), 3, &[1, 2], &stored, 2).unwrap_err();
        assert_eq!(e.code, "errors-beyond-findings-cap");
        assert!(e.message.contains("may include errors"), "{}", e.message);
        // Nothing cut: the errors on withdrawn receipts no longer block.
        assert!(confirm_gate(9, &counts(2, 0), 0, &[1, 2], &stored, 2).is_ok());
    }
}
