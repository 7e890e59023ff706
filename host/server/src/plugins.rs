//! The plugin lifecycle API for payer staff: upload (signed, precompiled, contract-checked),
//! validate against the regression corpus, approve (someone else), activate release sets by
//! 診療年月, roll back, audit; plus decision records per submission.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use tenken_model::Payer;
use tenken_store::{
    AuditEvent, Described, MasterState, NewPlugin, PluginKind, PluginRecord, PluginState, RegressionCase, ReleaseSet,
    ValidationReport,
};

use crate::app::App;
use crate::auth::Principal;
use crate::blocking::blocking;
use crate::error::ApiError;
use crate::extract::{Staff, StaffOrAdmin};
use crate::jobs::Progress;
use crate::work::now_ms;

type AppState = State<Arc<App>>;

/// What a rule plugin's `describe` said, as the registry keeps it.
pub fn described(p: &tenken_runtime::Plugin) -> Described {
    Described::Checker { rules: p.info.rules.clone() }
}

/// What a converter's `describe` said, as the registry keeps it.
pub fn described_converter(c: &tenken_runtime::Converter) -> Described {
    Described::Converter { kinds: c.info.kinds.clone() }
}

/// Validates a converter candidate: every source file of the payer's current master versions
/// is decoded with its format's converter, encoded with the candidate, decoded with it again
/// and compared field by field (the round-trip proof).
fn run_converter_validation(
    app: &App,
    payer: Payer,
    candidate: &PluginRecord,
    progress: &Progress,
) -> Result<ValidationReport, ApiError> {
    let reg = &app.work.registry;
    let conv = reg.converter(&candidate.digest).map_err(|e| bad("plugin-refused", e.to_string()))?;
    let mut v = tenken_lifecycle::ConverterValidation::new(candidate.digest);
    let versions: Vec<_> =
        app.store.master_versions(payer)?.into_iter().filter(|v| v.state == MasterState::Active).collect();
    progress.set_total(versions.iter().map(|v| v.sources.len() as u64).sum());
    for version in &versions {
        for src in &version.sources {
            progress.step();
            let Some(kind) = src.kind() else { continue };
            let Some(source) = reg.converters.get(&src.format) else {
                v.add_failure(format!("{}: no converter for its format {:?}", src.name, src.format));
                continue;
            };
            let bytes = app.store.bytes(&src.blob)?;
            match source.decode(kind, &bytes) {
                Ok(rows) => v.add_file(&conv, &src.name, kind, &rows),
                Err(e) => v.add_failure(format!("{}: its own converter cannot decode it: {e}", src.name)),
            }
        }
    }
    Ok(v.finish())
}

fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, msg)
}

/// A plugin of the payer by its digest (as a path or body gives it: parsed strictly).
async fn must_plugin(app: &App, payer: Payer, digest: &str) -> Result<PluginRecord, ApiError> {
    let d = crate::error::digest_param(digest)?;
    let store = app.store.clone();
    blocking(move || store.plugin(payer, &d))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{payer} has no plugin {d}")))
}

/// Verifies an ed25519 signature (hex) over the digest string with any of the keys (hex).
pub fn verify_signature(keys: &[String], digest: &str, signature_hex: &str) -> Option<String> {
    let sig = hex::decode(signature_hex.trim()).ok()?;
    let sig = ed25519_dalek::Signature::from_slice(&sig).ok()?;
    keys.iter()
        .find(|k| {
            let Ok(bytes) = hex::decode(k) else { return false };
            let Ok(arr) = <[u8; 32]>::try_from(bytes.as_slice()) else { return false };
            let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&arr) else { return false };
            key.verify_strict(digest.as_bytes(), &sig).is_ok()
        })
        .cloned()
}

pub async fn upload(
    State(app): AppState,
    Staff { payer, who }: Staff,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<PluginRecord>), ApiError> {
    let pc = app.config.payer(payer).clone();
    let max = pc.plugin_upload_bytes_max.min(app.config.limits.plugin_component_bytes_max);
    let bytes = axum::body::to_bytes(body, max as usize).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            format!("the component is larger than {max} bytes (plugin_upload_bytes_max)"),
        )
    })?;
    if bytes.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "empty-body",
            "send the component (.wasm) bytes as the body",
        ));
    }
    let digest = tenken_store::digest(&bytes).to_string();
    let store = app.store.clone();
    let keys = blocking(move || store.signing_keys(payer)).await?;
    let signature = headers.get("x-tenken-signature").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let signed_by = match (&signature, keys.is_empty()) {
        (None, false) => {
            return Err(ApiError::forbidden(format!(
                "{payer} requires signed plugins: send X-Tenken-Signature (hex ed25519 signature of the text {digest}) made with a registered key"
            ))
            .with_code("signature-required"));
        }
        (None, true) => None,
        (Some(sig), _) => Some(verify_signature(&keys, &digest, sig).ok_or_else(|| {
            ApiError::forbidden(format!(
                "the signature does not verify for {digest} with any of {payer}'s {} registered key(s); sign the digest text exactly",
                keys.len()
            ))
            .with_code("bad-signature")
        })?),
    };
    // Compile now (precompile into the artifact cache), bounded in time, so that activation
    // never compiles. A component for another contract version, or one that does not link,
    // is refused here with the runtime's message naming what is wrong.
    let runtime = app.work.registry.runtime.clone();
    let b = bytes.to_vec();
    // An office-check plugin, or else a master-format converter (same registry, same rules).
    let load = tokio::task::spawn_blocking(move || match tenken_runtime::Plugin::load(&runtime, &b) {
        Ok(p) => Ok((p.digest, p.info.name.clone(), p.info.version.clone(), p.contract.clone(), described(&p))),
        Err(e @ tenken_runtime::RuntimeError::NotOfficeCheck(_)) => match tenken_runtime::Converter::load(&runtime, &b)
        {
            Ok(c) => {
                Ok((c.digest, c.info.name.clone(), c.info.version.clone(), c.contract.clone(), described_converter(&c)))
            }
            Err(tenken_runtime::RuntimeError::NotOfficeCheck(_)) => Err(e),
            Err(other) => Err(other),
        },
        Err(e) => Err(e),
    });
    let (digest, name, version, contract, info) =
        match tokio::time::timeout(Duration::from_millis(pc.plugin_compile_ms_max), load).await {
            Err(_) => {
                return Err(bad(
                    "compile-timeout",
                    format!(
                        "the component did not compile within {} ms (plugin_compile_ms_max)",
                        pc.plugin_compile_ms_max
                    ),
                ));
            }
            Ok(joined) => joined.map_err(ApiError::internal)?.map_err(|e| bad("plugin-refused", format!("{e}")))?,
        };
    let record = NewPlugin {
        payer,
        digest,
        bytes: bytes.to_vec(),
        name,
        version,
        contract,
        described: info,
        uploaded_by: who.token_id,
        signed_by,
        state: PluginState::Uploaded,
        now_ms: now_ms(),
    };
    let store = app.store.clone();
    let (rec, new) = blocking(move || store.put_plugin(record)).await?;
    tracing::info!(%payer, digest = %rec.digest, name = %rec.name, version = %rec.version, new, "plugin uploaded");
    Ok((if new { StatusCode::CREATED } else { StatusCode::OK }, Json(rec)))
}

pub async fn list(
    State(app): AppState,
    StaffOrAdmin { payer, .. }: StaffOrAdmin,
) -> Result<Json<Vec<PluginRecord>>, ApiError> {
    let store = app.store.clone();
    Ok(Json(blocking(move || store.plugins(payer)).await?))
}

pub async fn show(
    State(app): AppState,
    StaffOrAdmin { payer, .. }: StaffOrAdmin,
    Path((_, digest)): Path<(String, String)>,
) -> Result<Json<PluginRecord>, ApiError> {
    Ok(Json(must_plugin(&app, payer, &digest).await?))
}

/// Runs the candidate on every regression case and compares with the expected findings.
pub fn run_validation(
    app: &App,
    payer: Payer,
    candidate: &PluginRecord,
    progress: &Progress,
) -> Result<ValidationReport, ApiError> {
    let reg = &app.work.registry;
    let table = reg.table(payer);
    let base = table.sets.last().ok_or_else(|| ApiError::internal("no release set"))?;
    let mut plugins = base.plugins.clone();
    let mut replaces = None;
    for d in plugins.iter_mut() {
        let p = reg.plugin(d).map_err(ApiError::internal)?;
        if p.info.name == candidate.name {
            replaces = Some(*d);
            *d = candidate.digest;
        }
    }
    if replaces.is_none() {
        plugins.push(candidate.digest);
    }
    let checker = reg.checker(payer, &plugins).map_err(|e| bad("plugin-refused", e.to_string()))?;
    let mut v = tenken_lifecycle::CheckerValidation::new(candidate.digest, base.id, replaces);
    let cases = app.store.regression(payer)?;
    progress.set_total(cases.len() as u64);
    for case in cases {
        let bytes = app.store.bytes(&case.digest)?;
        let got = checker.check_bytes(&bytes, Some(payer)).map_err(ApiError::internal)?.findings;
        v.add_case(&case.name, &case.expected, &got);
        progress.step();
    }
    let pc = app.config.payer(payer);
    Ok(v.finish(tenken_lifecycle::Gates {
        delta_max: pc.validation_delta_max as usize,
        plugin_failures_max: pc.validation_plugin_failures_max as usize,
    }))
}

pub async fn validate(
    State(app): AppState,
    Staff { payer, who }: Staff,
    Path((_, digest)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let rec = must_plugin(&app, payer, &digest).await?;
    if rec.state == PluginState::Retired {
        return Err(ApiError::new(StatusCode::CONFLICT, "wrong-state", format!("plugin {digest} is retired")));
    }
    let app2 = app.clone();
    let by = who.token_id;
    let subject = rec.digest.to_string();
    let job = app.jobs.submit(payer, "validate", subject, by, app.now_ms(), app.retry_after(), move |progress| {
        let report = match rec.kind() {
            PluginKind::Converter => run_converter_validation(&app2, payer, &rec, progress)?,
            PluginKind::Checker => run_validation(&app2, payer, &rec, progress)?,
        };
        // An approved plugin keeps its approvals when re-validated successfully.
        let state = match (report.passed, rec.state) {
            (true, PluginState::Approved) => PluginState::Approved,
            (true, _) => PluginState::Validated,
            (false, _) => PluginState::Failed,
        };
        let why = if report.passed { "validation passed".to_owned() } else { "validation failed a gate".to_owned() };
        app2.store.set_plugin_state(payer, &rec.digest, state, Some(report.clone()), by, &why, now_ms())?;
        Ok((StatusCode::OK, serde_json::to_value(report).map_err(ApiError::internal)?))
    })?;
    Ok(crate::job_status::accepted(job))
}

pub async fn approve(
    State(app): AppState,
    Staff { payer, who }: Staff,
    Path((_, digest)): Path<(String, String)>,
) -> Result<Json<PluginRecord>, ApiError> {
    let rec = must_plugin(&app, payer, &digest).await?;
    if rec.uploaded_by == who.token_id {
        return Err(ApiError::forbidden(
            "the uploader cannot approve their own upload; another member of the payer's staff must approve it",
        )
        .with_code("self-approval"));
    }
    if !matches!(rec.state, PluginState::Validated | PluginState::Approved) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not-validated",
            format!(
                "plugin {digest} is {}; only a validated plugin can be approved (POST …/validate first)",
                rec.state.as_str()
            ),
        ));
    }
    // The store enforces who may approve and promotes the plugin at `need` approvals, in
    // its transaction; the checks above only give the common refusals a precise message.
    let need = app.config.payer(payer).approvals_required.max(1);
    let (store, by) = (app.store.clone(), who.token_id);
    let approver_payer = who.staff_payer().unwrap_or(payer);
    let rec = blocking(move || store.approve_plugin(payer, &rec.digest, by, approver_payer, need, now_ms())).await?;
    Ok(Json(rec))
}

/// Retires a plugin version that no live release set uses; it can no longer be activated.
pub async fn retire(
    State(app): AppState,
    Staff { payer, who }: Staff,
    Path((_, digest)): Path<(String, String)>,
) -> Result<Json<PluginRecord>, ApiError> {
    let rec = must_plugin(&app, payer, &digest).await?;
    let (store, by) = (app.store.clone(), who.token_id);
    // The store refuses (409 in-use) in the same transaction while a live set uses it, so a
    // racing activation cannot slip between a check here and the write.
    let rec = blocking(move || -> Result<_, ApiError> {
        Ok(store.set_plugin_state(payer, &rec.digest, PluginState::Retired, None, by, "retired", now_ms())?)
    })
    .await?;
    Ok(Json(rec))
}

pub async fn releases(
    State(app): AppState,
    StaffOrAdmin { payer, .. }: StaffOrAdmin,
) -> Result<Json<Vec<ReleaseSet>>, ApiError> {
    let store = app.store.clone();
    Ok(Json(blocking(move || store.release_sets(payer)).await?))
}

/// The payer's recent hot swaps (this process): when each activation or rollback was asked
/// for, when its table went live, and when the first chunk started on it.
pub async fn swaps(
    State(app): AppState,
    StaffOrAdmin { payer, .. }: StaffOrAdmin,
) -> Result<Json<Vec<crate::registry::SwapRecord>>, ApiError> {
    Ok(Json(app.work.registry.swaps(payer)))
}

#[derive(Debug, Deserialize)]
pub struct ActivateRequest {
    /// First 診療年月 (`YYYY-MM`) the set applies to; omitted = from the beginning.
    pub from: Option<String>,
    /// Plugin digests (`sha256:<hex>`), in run order.
    pub plugins: Vec<String>,
    #[serde(default)]
    pub reason: String,
}

pub async fn activate(
    State(app): AppState,
    Staff { payer, who }: Staff,
    Json(req): Json<ActivateRequest>,
) -> Result<(StatusCode, Json<ReleaseSet>), ApiError> {
    let (requested, requested_ms) = (std::time::Instant::now(), now_ms());
    let from = crate::error::month_param(req.from.as_deref())?;
    let max = app.config.api.release_set_plugins_max as usize;
    if req.plugins.is_empty() || req.plugins.len() > max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-release",
            format!("a release set has 1–{max} plugins (api.release_set_plugins_max)"),
        ));
    }
    let mut digests = Vec::with_capacity(req.plugins.len());
    for d in &req.plugins {
        let rec = must_plugin(&app, payer, d).await?;
        digests.push(rec.digest);
        if rec.kind() == PluginKind::Converter {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not-a-rule-plugin",
                format!(
                    "{d} is a master-format converter; use it with …/masters/{{id}}/convert-for/{{payer}}?converter={d}"
                ),
            ));
        }
        if rec.state != PluginState::Approved {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not-approved",
                format!(
                    "plugin {} {} ({d}) is {}; only approved plugins can be activated",
                    rec.name,
                    rec.version,
                    rec.state.as_str()
                ),
            ));
        }
    }
    let app2 = app.clone();
    let by = who.token_id;
    let set = blocking(move || -> Result<_, ApiError> {
        // Load everything first: a set that cannot run is refused before it is recorded.
        app2.work.registry.checker(payer, &digests).map_err(|e| bad("plugin-refused", e.to_string()))?;
        let set = app2.store.activate(payer, from, &digests, by, &req.reason, now_ms())?;
        let cause = crate::registry::SwapCause::since("activate", set.id, requested, requested_ms);
        app2.work.registry.reload(payer, cause).map_err(ApiError::internal)?;
        Ok(set)
    })
    .await?;
    tracing::info!(%payer, set = set.id, from = ?set.from_month, "release set activated");
    Ok((StatusCode::CREATED, Json(set)))
}

#[derive(Debug, Deserialize, Default)]
pub struct RollbackRequest {
    #[serde(default)]
    pub reason: String,
}

pub async fn rollback(
    State(app): AppState,
    Staff { payer, who }: Staff,
    Path((_, id)): Path<(String, i64)>,
    body: Option<Json<RollbackRequest>>,
) -> Result<Json<ReleaseSet>, ApiError> {
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    let app2 = app.clone();
    let by = who.token_id;
    let set = blocking(move || -> Result<_, ApiError> {
        let sets = app2.store.release_sets(payer)?;
        if !sets.iter().any(|s| s.id == id) {
            return Err(ApiError::not_found(format!("{payer} has no release set {id}")));
        }
        let cause = crate::registry::SwapCause::now("rollback", id);
        let set = app2.store.rollback(payer, id, by, &reason, now_ms())?;
        let before = app2.work.registry.table(payer);
        app2.work.registry.reload(payer, cause).map_err(ApiError::internal)?;
        app2.work.restart_rolled_back(payer, &before)?;
        Ok(set)
    })
    .await?;
    Ok(Json(set))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    pub limit: Option<u32>,
}

pub async fn audit(
    State(app): AppState,
    StaffOrAdmin { payer, .. }: StaffOrAdmin,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEvent>>, ApiError> {
    let store = app.store.clone();
    let api = &app.config.api;
    let limit = q.limit.unwrap_or(api.audit_page_default).clamp(1, api.audit_page_max);
    Ok(Json(blocking(move || store.audit(payer, limit)).await?))
}

#[derive(Debug, Deserialize)]
pub struct KeyRequest {
    /// 32-byte ed25519 public key, hex.
    pub public_key: String,
}

pub async fn add_key(
    State(app): AppState,
    Staff { payer, who }: Staff,
    Json(req): Json<KeyRequest>,
) -> Result<StatusCode, ApiError> {
    let k = req.public_key.trim().to_ascii_lowercase();
    let ok = hex::decode(&k)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .is_some_and(|a| ed25519_dalek::VerifyingKey::from_bytes(&a).is_ok());
    if !ok {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-key",
            "public_key must be a 32-byte ed25519 public key in hex",
        ));
    }
    let (store, by) = (app.store.clone(), who.token_id);
    blocking(move || store.add_signing_key(payer, &k, by, now_ms())).await?;
    Ok(StatusCode::CREATED)
}

#[derive(Debug, Deserialize)]
pub struct CaseQuery {
    pub name: Option<String>,
}

/// Adds a claim file to the regression corpus; its expected findings are what the payer's
/// release set in force finds today (the baseline candidates are compared against).
pub async fn add_regression(
    State(app): AppState,
    Staff { payer, who }: Staff,
    Query(q): Query<CaseQuery>,
    body: Body,
) -> Result<(StatusCode, Json<RegressionCase>), ApiError> {
    let max = app.config.admission.submission_bytes_max as usize;
    let bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", "the claim file is too large"))?;
    let app2 = app.clone();
    let by = who.token_id;
    let name = q.name.unwrap_or_else(|| format!("case-{}", now_ms()));
    let case = blocking(move || add_case(&app2, payer, &name, &bytes, by)).await?;
    Ok((StatusCode::CREATED, Json(case)))
}

pub fn add_case(app: &App, payer: Payer, name: &str, bytes: &[u8], by: i64) -> Result<RegressionCase, ApiError> {
    let table = app.work.registry.table(payer);
    if let Some(why) = table.not_ready() {
        return Err(ApiError::new(StatusCode::CONFLICT, "payer-not-ready", why.message(payer)));
    }
    let expected = table.expected(bytes, payer, &app.config.limits).map_err(ApiError::internal)?;
    Ok(app.store.add_regression(payer, name, bytes, &expected, by, now_ms())?)
}

pub async fn list_regression(
    State(app): AppState,
    StaffOrAdmin { payer, .. }: StaffOrAdmin,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let store = app.store.clone();
    let cases = blocking(move || store.regression(payer)).await?;
    Ok(Json(
        cases
            .iter()
            .map(|c| serde_json::json!({"id": c.id, "name": c.name, "digest": c.digest, "added_by": c.added_by, "added_ms": c.added_ms}))
            .collect(),
    ))
}

pub async fn decisions(
    State(app): AppState,
    who: Principal,
    Path(id): Path<i64>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    crate::submissions::visible(&app, &who, id).await?;
    let store = app.store.clone();
    let rows = blocking(move || store.decisions(id)).await?;
    Ok(Json(
        rows.into_iter()
            .map(|(idx, d)| {
                let mut v = serde_json::to_value(d).unwrap_or_default();
                v["chunk"] = idx.into();
                v
            })
            .collect(),
    ))
}
