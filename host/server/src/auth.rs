//! Who is calling: per-institution, per-payer staff and admin API tokens.
//!
//! Why a trait: mTLS client certificates (the real online 請求 network issues them per
//! institution) can be added as another [`Authenticator`] that maps a verified certificate to
//! the same [`Principal`]; handlers only see the principal. Tokens are stored only as sha256
//! hashes; lookups are cached briefly (bounded, `token_cache_ms`) so a surge of submissions
//! does not become a surge of database reads.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::request::Parts;
use tenken_model::Payer;
use tenken_store::{Role, Store, TokenInfo};

use crate::error::ApiError;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: i64,
    pub role: Role,
}

impl Principal {
    pub fn institution(&self) -> Option<&str> {
        match &self.role {
            Role::Institution { institution } => Some(institution),
            _ => None,
        }
    }

    pub fn staff_payer(&self) -> Option<Payer> {
        match &self.role {
            Role::Staff { payer } => Some(*payer),
            _ => None,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn describe(&self) -> String {
        match &self.role {
            Role::Institution { institution } => format!("institution {institution}"),
            Role::Staff { payer } => format!("{payer} staff"),
            Role::Admin => "an admin".into(),
        }
    }
}

pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<Principal, ApiError>> + Send + 'a>>;

pub trait Authenticator: Send + Sync {
    fn authenticate<'a>(&'a self, parts: &'a Parts) -> AuthFuture<'a>;
}

/// `Authorization: Bearer tk_…`.
pub struct TokenAuth {
    store: Arc<dyn Store>,
    cache: Mutex<HashMap<String, (Option<TokenInfo>, Instant)>>,
    ttl: Duration,
    entries_max: usize,
}

impl TokenAuth {
    pub fn new(store: Arc<dyn Store>, ttl: Duration, entries_max: usize) -> TokenAuth {
        TokenAuth { store, cache: Mutex::new(HashMap::new()), ttl, entries_max: entries_max.max(1) }
    }

    async fn lookup(&self, secret: &str) -> Result<Option<TokenInfo>, ApiError> {
        let hash = tenken_store::token_hash(secret);
        if let Some((info, at)) = self.cache.lock().unwrap().get(&hash)
            && at.elapsed() < self.ttl
        {
            return Ok(info.clone());
        }
        let store = self.store.clone();
        let secret = secret.to_owned();
        let info =
            tokio::task::spawn_blocking(move || store.find_token(&secret)).await.map_err(ApiError::internal)??;
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= self.entries_max {
            let ttl = self.ttl;
            cache.retain(|_, (_, at)| at.elapsed() < ttl);
            if cache.len() >= self.entries_max {
                cache.clear();
            }
        }
        cache.insert(hash, (info.clone(), Instant::now()));
        Ok(info)
    }
}

impl Authenticator for TokenAuth {
    fn authenticate<'a>(&'a self, parts: &'a Parts) -> AuthFuture<'a> {
        Box::pin(async move {
            let header = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or_else(|| {
                ApiError::unauthorized(
                    "no Authorization header: send `Authorization: Bearer <token>` with the token your payer issued",
                )
            })?;
            let value = header.to_str().unwrap_or("");
            let secret = value
                .strip_prefix("Bearer ")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `Bearer <token>`"))?;
            if secret.len() > 200 {
                return Err(ApiError::unauthorized("the token is not valid"));
            }
            match self.lookup(secret).await? {
                Some(info) if !info.revoked => Ok(Principal { token_id: info.id, role: info.role }),
                Some(_) => Err(ApiError::unauthorized("this token was revoked; ask your payer for a new one")),
                None => {
                    Err(ApiError::unauthorized("the token is not valid; check it, or ask your payer for a new one"))
                }
            }
        })
    }
}
