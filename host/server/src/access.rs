//! Access and communication: notices, acceptance windows and API tokens.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tenken_model::{Payer, YearMonth};
use tenken_store::{Audience, Notice, Role, WindowOverride};

use crate::app::{App, AppState};
use crate::auth::Principal;
use crate::blocking::blocking;
use crate::error::ApiError;
use crate::extract::{Admin, PayerPath, StaffOrAdmin};
use crate::window;

// ---------------------------------------------------------------------------------------
// Notices

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NoticeView {
    pub id: i64,
    pub payer: Option<String>,
    pub message: String,
    pub posted_at: String,
}

pub(crate) fn notice_view(n: &Notice) -> NoticeView {
    NoticeView {
        id: n.id,
        payer: n.payer.map(|p| p.to_string()),
        message: n.message.clone(),
        posted_at: window::rfc3339(n.created_ms),
    }
}

pub async fn list_notices(State(app): AppState, who: Principal) -> Result<Json<Vec<NoticeView>>, ApiError> {
    // Institutions see what was posted for institutions; a payer's staff also see the
    // notices meant for them (an automatic rollback), newest first.
    let payer = who.staff_payer();
    let store = app.store.clone();
    let max = app.config.api.notices_listed_max;
    let list = blocking(move || -> Result<_, tenken_store::StoreError> {
        let mut list = store.notices(payer, Audience::Institutions, max)?;
        if payer.is_some() {
            list.extend(store.notices(payer, Audience::Staff, max)?);
            list.sort_by(|a, b| b.id.cmp(&a.id));
            list.truncate(max as usize);
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

pub async fn post_notice(
    State(app): AppState,
    StaffOrAdmin { payer, who }: StaffOrAdmin,
    Json(req): Json<NoticeRequest>,
) -> Result<(StatusCode, Json<NoticeView>), ApiError> {
    let msg = req.message.trim().to_owned();
    let max = app.config.api.notice_chars_max as usize;
    if msg.is_empty() || msg.chars().count() > max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-notice",
            format!("a notice is 1–{max} characters (api.notice_chars_max)"),
        ));
    }
    let store = app.store.clone();
    let by = who.token_id;
    let now = app.now_ms();
    let n = blocking(move || store.add_notice(Some(payer), Audience::Institutions, &msg, by, now)).await?;
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

// ---------------------------------------------------------------------------------------
// Acceptance windows

pub(crate) async fn effective_window(
    app: &App,
    payer: Payer,
    month: YearMonth,
) -> Result<Option<window::Window>, ApiError> {
    let store = app.store.clone();
    let over = blocking(move || store.window(payer, month)).await?;
    Ok(match over {
        Some(o) => Some(window::Window { opens_ms: o.opens_ms, closes_ms: o.closes_ms, extended: true }),
        None => window::default_window(&app.config.windows, month),
    })
}

async fn window_view(app: &App, payer: Payer, month: YearMonth) -> Result<WindowView, ApiError> {
    let w = effective_window(app, payer, month).await?;
    Ok(WindowView {
        payer: payer.to_string(),
        billing_month: month.to_string(),
        opens_at: w.map(|w| window::rfc3339(w.opens_ms)),
        closes_at: w.map(|w| window::rfc3339(w.closes_ms)),
        opens: w.map(|w| window::format_jst(w.opens_ms)),
        closes: w.map(|w| window::format_jst_close(w.closes_ms)),
        extended: w.is_some_and(|w| w.extended),
        open_now: window::is_open(&app.config.windows, w, app.now_ms()),
    })
}

pub async fn get_window(
    State(app): AppState,
    _who: Principal,
    PayerPath(payer): PayerPath,
    Path((_, month)): Path<(String, String)>,
) -> Result<Json<WindowView>, ApiError> {
    Ok(Json(window_view(&app, payer, crate::error::month_required(&month)?).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct WindowRequest {
    /// `YYYY-MM-DDTHH:MM` (JST, `24:00` allowed) or RFC 3339; default: unchanged.
    pub opens_at: Option<String>,
    pub closes_at: String,
    /// Posted as a notice to the payer's institutions when given.
    pub notice: Option<String>,
}

pub async fn put_window(
    State(app): AppState,
    StaffOrAdmin { payer, who }: StaffOrAdmin,
    Path((_, month)): Path<(String, String)>,
    Json(req): Json<WindowRequest>,
) -> Result<Json<WindowView>, ApiError> {
    let month = crate::error::month_required(&month)?;
    let current = window_view(&app, payer, month).await?;
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
    let m = month;
    let notice = req.notice.clone();
    let now = app.now_ms();
    blocking(move || -> Result<_, tenken_store::StoreError> {
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
    tracing::info!(%payer, %month, "window changed");
    Ok(Json(window_view(&app, payer, month).await?))
}

// ---------------------------------------------------------------------------------------
// Tokens

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

pub async fn create_token(
    State(app): AppState,
    Admin(_who): Admin,
    Json(req): Json<TokenRequest>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let role = parse_role(&req.role, req.institution.as_deref(), req.payer.as_deref())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad-token-request", e))?;
    let (store, now) = (app.store.clone(), app.now_ms());
    let (id, token) = blocking(move || store.create_token(role, &req.label, now)).await?;
    Ok((StatusCode::CREATED, Json(TokenCreated { id, token })))
}

pub async fn list_tokens(
    State(app): AppState,
    Admin(_who): Admin,
) -> Result<Json<Vec<tenken_store::TokenInfo>>, ApiError> {
    let store = app.store.clone();
    Ok(Json(blocking(move || store.list_tokens()).await?))
}

pub async fn revoke_token(
    State(app): AppState,
    Admin(_who): Admin,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let store = app.store.clone();
    if blocking(move || store.revoke_token(id)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("token {id} not found")))
    }
}
