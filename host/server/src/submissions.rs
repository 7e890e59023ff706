//! Submissions: what institutions send and act on (submit, status, findings, confirm,
//! withdraw), and what staff read of them.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use tenken_model::{Finding, Payer, Severity, YearMonth};
use tenken_store::{Accepted, ListFilter, NewSubmission, Role, State as SubState, Submission, SubmissionId};

use crate::access::{NoticeView, effective_window, notice_view};
use crate::app::{App, AppState};
use crate::auth::Principal;
use crate::blocking::blocking;
use crate::error::ApiError;
use crate::extract::PayerPath;
use crate::metrics::OutcomeLabel;
use crate::window;
use tenken_store::{Audience, chunk_count};

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
    /// 請求年月 (`YYYY-MM`).
    pub billing_month: Option<String>,
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
    /// The release sets and master versions that checked it (`GET /v1/submissions/{id}`
    /// only; lists leave it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_with: Option<Vec<CheckedWith>>,
}

/// What checked (part of) a file: a release set and a master version, and how many of its
/// receipts they checked (from the decision records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckedWith {
    pub release_set: i64,
    pub master_version: i64,
    pub receipts: u32,
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

pub fn view(s: &Submission) -> SubmissionView {
    SubmissionView {
        id: s.id,
        reception: s.reception.clone(),
        payer: s.payer.to_string(),
        institution: s.institution.clone(),
        billing_month: s.billing_month.map(|m| m.to_string()),
        state: s.state.to_string(),
        receipts: s.receipts,
        bytes: s.bytes,
        digest: s.digest.to_string(),
        progress: Progress {
            chunks_done: s.chunks_done,
            chunks: s.chunks,
            fraction: if s.chunks == 0 { 1.0 } else { s.chunks_done as f64 / s.chunks as f64 },
        },
        counts: CountsView { error: s.counts.error, warning: s.counts.warning, info: s.counts.info },
        findings_dropped: s.findings_dropped,
        accepted_at: window::rfc3339(s.accepted_ms),
        checked_at: s.checked_ms.map(window::rfc3339),
        confirmed_at: s.confirmed_ms.map(window::rfc3339),
        supersedes: s.supersedes,
        superseded_by: s.superseded_by,
        withdrawn_receipts: s.withdrawn_receipts.clone(),
        checked_with: None,
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

pub async fn submit_any(app: AppState, who: Principal, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    submit(app, who, None, headers, body).await
}

pub async fn submit_to_payer(
    app: AppState,
    who: Principal,
    PayerPath(payer): PayerPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
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
            let max = app.config.api.idempotency_key_bytes_max as usize;
            let k =
                v.to_str().ok().filter(|k| !k.is_empty() && k.len() <= max && k.bytes().all(|b| b.is_ascii_graphic()));
            Some(k.map(str::to_owned).ok_or_else(|| {
                app.refuse(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad-idempotency-key",
                    format!("Idempotency-Key must be 1–{max} visible ASCII characters (a UUID is a good choice)"),
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
    let Some(month) = ir.billing_month else {
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
    let now = app.now_ms();
    check_window(&app, payer, month, now).await?;
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
        billing_month: Some(month),
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

async fn check_window(app: &App, payer: Payer, month: YearMonth, now: i64) -> Result<(), ApiError> {
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

pub async fn status(
    State(app): AppState,
    who: Principal,
    Path(id): Path<SubmissionId>,
) -> Result<Json<SubmissionView>, ApiError> {
    let s = visible(&app, &who, id).await?;
    let store = app.store.clone();
    let decisions = blocking(move || store.decisions(id)).await?;
    let mut used: Vec<CheckedWith> = Vec::new();
    for e in decisions.iter().flat_map(|(_, d)| &d.sets) {
        let n = e.receipts.map(|(a, b)| b.saturating_sub(a)).unwrap_or(0);
        match used.iter_mut().find(|u| u.release_set == e.release_set && u.master_version == e.master_version) {
            Some(u) => u.receipts += n,
            None => {
                used.push(CheckedWith { release_set: e.release_set, master_version: e.master_version, receipts: n })
            }
        }
    }
    Ok(Json(SubmissionView { checked_with: Some(used), ..view(&s) }))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub before: Option<SubmissionId>,
    pub limit: Option<u32>,
    pub institution: Option<String>,
}

pub async fn list_submissions(
    State(app): AppState,
    who: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<SubmissionView>>, ApiError> {
    let api = &app.config.api;
    let limit = q.limit.unwrap_or(api.list_page_default).clamp(1, api.list_page_max);
    let mut filter = ListFilter { before: q.before, limit, ..Default::default() };
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

pub async fn history(
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
    // None: superseded or withdrawn before the check finished.
    Ok(blocking(move || store.findings(id)).await?.unwrap_or_default())
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    pub offset: Option<usize>,
    pub limit: Option<usize>,
    pub severity: Option<String>,
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

pub async fn findings(
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

pub async fn findings_csv(
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

pub async fn confirm(
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
    let now = app.now_ms();
    let s = blocking(move || store.confirm(id, now)).await?;
    tracing::info!(submission = id, "confirmed");
    Ok(Json(view(&s)))
}

pub async fn withdraw(
    State(app): AppState,
    who: Principal,
    Path(id): Path<SubmissionId>,
) -> Result<Json<SubmissionView>, ApiError> {
    owned(&app, &who, id).await?;
    let store = app.store.clone();
    let now = app.now_ms();
    let s = blocking(move || store.withdraw(id, now)).await?;
    app.work.forget(s.payer, id);
    Ok(Json(view(&s)))
}

pub async fn withdraw_receipt(
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
