//! The extractors handlers share: who is calling ([`Principal`]), the `{payer}` of the path
//! ([`PayerPath`]) and the guards over both ([`Staff`], [`StaffOrAdmin`], [`Admin`]), so each
//! handler states what it needs in its signature instead of repeating a prelude.

use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::StatusCode;
use axum::http::request::Parts;
use tenken_model::Payer;

use crate::app::App;
use crate::auth::Principal;
use crate::error::ApiError;

impl FromRequestParts<Arc<App>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let result = app.auth.authenticate(parts).await;
        if let Err(e) = &result {
            tracing::warn!(code = e.code, path = %parts.uri.path(), "request refused: {}", e.message);
        }
        result
    }
}

/// The `{payer}` segment of the path, parsed (404 `unknown-payer` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayerPath(pub Payer);

impl<S: Send + Sync> FromRequestParts<S> for PayerPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::internal(format!("path parameters: {e}")))?;
        let raw = params
            .iter()
            .find(|(k, _)| *k == "payer")
            .map(|(_, v)| v.to_owned())
            .ok_or_else(|| ApiError::internal("this route has no {payer} segment"))?;
        raw.parse().map(PayerPath).map_err(|e: String| ApiError::new(StatusCode::NOT_FOUND, "unknown-payer", e))
    }
}

/// A member of the path payer's staff (403 for anyone else, admins included: lifecycle
/// changes are the payer's own).
#[derive(Debug, Clone)]
pub struct Staff {
    pub payer: Payer,
    pub who: Principal,
}

impl FromRequestParts<Arc<App>> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let (payer, who) = payer_and_caller(parts, app, false).await?;
        Ok(Staff { payer, who })
    }
}

/// The path payer's staff, or an admin.
#[derive(Debug, Clone)]
pub struct StaffOrAdmin {
    pub payer: Payer,
    pub who: Principal,
}

impl FromRequestParts<Arc<App>> for StaffOrAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let (payer, who) = payer_and_caller(parts, app, true).await?;
        Ok(StaffOrAdmin { payer, who })
    }
}

/// An admin.
#[derive(Debug, Clone)]
pub struct Admin(pub Principal);

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let who = Principal::from_request_parts(parts, app).await?;
        if !who.is_admin() {
            return Err(ApiError::forbidden(format!("only admins manage tokens; {} may not", who.describe())));
        }
        Ok(Admin(who))
    }
}

/// The path's payer and the caller, who must be that payer's staff (or, when
/// `admin_too`, an admin).
async fn payer_and_caller(parts: &mut Parts, app: &Arc<App>, admin_too: bool) -> Result<(Payer, Principal), ApiError> {
    // Who first: an unauthenticated caller learns nothing about the path (401 before 404).
    let who = Principal::from_request_parts(parts, app).await?;
    let PayerPath(payer) = PayerPath::from_request_parts(parts, app).await?;
    if who.staff_payer() == Some(payer) || (admin_too && who.is_admin()) {
        return Ok((payer, who));
    }
    tracing::warn!(who = %who.describe(), %payer, "refused: not this payer's staff");
    Err(ApiError::forbidden(format!("only {payer} staff may do this; {} may not", who.describe())))
}
