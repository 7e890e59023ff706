//! The master-version API for payer staff: upload files, propose a version (with its
//! semantic diff against the version in force), approve (jointly for a master provided by
//! the other payer), activate by 診療年月 and roll back without a restart, and convert a
//! version for the other payer — proven by a round trip before it can even be proposed.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tenken_model::{Digest, Payer};
use tenken_store::{ImpactReport, MasterReport, MasterSource, MasterState, MasterVersion, ProvenFile};

use crate::app::App;
use crate::auth::Principal;
use crate::blocking::blocking;
use crate::error::ApiError;
use crate::extract::{PayerPath, Staff, StaffOrAdmin};
use crate::jobs::Progress;
use crate::work::now_ms;

type AppState = State<Arc<App>>;

/// A master version of the payer (a store read, so on the blocking pool).
async fn version(app: &App, payer: Payer, id: i64) -> Result<MasterVersion, ApiError> {
    let store = app.store.clone();
    blocking(move || -> Result<_, ApiError> {
        store
            .master_version(payer, id)?
            .ok_or_else(|| ApiError::not_found(format!("{payer} has no master version {id}")))
    })
    .await
}

pub async fn list(
    State(app): AppState,
    StaffOrAdmin { payer, .. }: StaffOrAdmin,
) -> Result<Json<Vec<MasterVersion>>, ApiError> {
    let store = app.store.clone();
    Ok(Json(blocking(move || store.master_versions(payer)).await?))
}

pub async fn upload_file(State(app): AppState, _staff: Staff, body: Body) -> Result<Json<serde_json::Value>, ApiError> {
    let bytes = axum::body::to_bytes(body, app.config.admission.submission_bytes_max as usize)
        .await
        .map_err(|_| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", "the master file is too large"))?;
    let store = app.store.clone();
    let blob = blocking(move || store.put_file(&bytes)).await?;
    Ok(Json(serde_json::json!({ "blob": blob })))
}

#[derive(Debug, Deserialize)]
pub struct ProposeRequest {
    /// First 診療年月 (`YYYY-MM`); omitted = from the beginning.
    pub from: Option<String>,
    /// Full files and 差分 (by name), as uploaded.
    pub files: Vec<ProposedFile>,
    /// Apply these files (差分) onto this version's sources.
    pub base: Option<i64>,
    #[serde(default)]
    pub reason: String,
}

/// Impact check: the payer's regression corpus, plus a sample of its newest checked
/// submissions, re-checked with the release set in force under the current and the proposed
/// master (`tenken_lifecycle::Impact`: findings delta per rule with example receipts).
fn impact_report(
    app: &App,
    payer: Payer,
    new: &Arc<tenken_master::MasterSet>,
    progress: &Progress,
) -> Result<ImpactReport, ApiError> {
    let reg = &app.work.registry;
    let table = reg.table(payer);
    let set = table.sets.last().ok_or_else(|| ApiError::internal("no release set"))?;
    let old_checker = reg.checker_with(&set.plugins, table.current_masters().clone()).map_err(ApiError::internal)?;
    let new_checker = reg.checker_with(&set.plugins, new.clone()).map_err(ApiError::internal)?;
    let cases = app.store.regression(payer)?;
    // The files: the regression corpus, then a sample of what institutions actually sent
    // (the newest checked submissions, bounded in files and receipts).
    let mut files: Vec<(String, Digest)> = cases.iter().map(|c| (c.name.clone(), c.digest)).collect();
    let pc = app.config.payer(payer);
    let (files_max, receipts_max) =
        (pc.master_impact_sample_files_max as usize, pc.master_impact_sample_receipts_max as u64);
    let mut sampled = 0usize;
    let mut sampled_receipts = 0u64;
    if files_max > 0 {
        let recent = app.store.list(&tenken_store::ListFilter {
            payer: Some(payer),
            institution: None,
            before: None,
            limit: app.config.api.impact_sample_scan_max,
        })?;
        for s in
            recent.iter().filter(|s| matches!(s.state, tenken_store::State::Checked | tenken_store::State::Confirmed))
        {
            if sampled >= files_max {
                break;
            }
            // Too big for what is left of the budget, or already re-checked as a corpus case.
            if sampled_receipts + s.receipts as u64 > receipts_max || files.iter().any(|(_, d)| *d == s.digest) {
                continue;
            }
            sampled += 1;
            sampled_receipts += s.receipts as u64;
            files.push((format!("submission {}", s.reception), s.digest));
        }
    }
    let mut impact = tenken_lifecycle::Impact::new(tenken_lifecycle::ExampleLimits::PROPOSAL);
    progress.add_total(files.len() as u64);
    for (name, digest) in &files {
        let bytes = app.store.bytes(digest)?;
        let a = old_checker.check_bytes(&bytes, Some(payer)).map_err(ApiError::internal)?.findings;
        let b = new_checker.check_bytes(&bytes, Some(payer)).map_err(ApiError::internal)?.findings;
        impact.add(name, &a, &b);
        progress.step();
    }
    Ok(impact.report(cases.len(), sampled, sampled_receipts, pc.master_impact_delta_max as usize))
}

/// The report staff approve a proposal on: the semantic diff against the version in force
/// and the impact check.
fn proposal_report(
    app: &App,
    payer: Payer,
    new: &Arc<tenken_master::MasterSet>,
    progress: &Progress,
) -> Result<MasterReport, ApiError> {
    let table = app.work.registry.table(payer);
    Ok(MasterReport {
        diff: tenken_lifecycle::diff_report(table.current_masters(), new),
        impact: Some(impact_report(app, payer, new, progress)?),
        ..MasterReport::default()
    })
}

/// A file of a proposal as the request names it.
#[derive(Debug, Deserialize)]
pub struct ProposedFile {
    /// The master file's name (`s_ALL20260601.csv`, `y_20260701.csv`, …): its kind and role.
    pub name: String,
    /// Its digest as `POST …/masters/files` returned it.
    pub blob: String,
}

pub async fn propose(
    State(app): AppState,
    Staff { payer, who }: Staff,
    Json(req): Json<ProposeRequest>,
) -> Result<Response, ApiError> {
    let from = crate::error::month_param(req.from.as_deref())?;
    if !app.config.payer(payer).proposes_masters {
        let other = Payer::ALL.into_iter().find(|p| *p != payer).unwrap_or(payer);
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "masters-converted-only",
            format!(
                "{payer}'s masters are published by {other}: they reach {payer} only as a proven conversion of a {other} version, approved by both payers ({other} staff: POST /v1/payers/{other}/masters/{{id}}/convert-for/{payer}, CLI `tenken master act --payer {other} convert-for-{payer} ID`); proposing master files of {payer}'s own is off ({payer}.proposes_masters)"
            ),
        ));
    }
    let format = app.config.payer(payer).master_format.clone();
    let mut sources: Vec<MasterSource> = match req.base {
        None => Vec::new(),
        Some(b) => version(&app, payer, b).await?.sources,
    };
    let proposed: Vec<String> = req.files.iter().map(|f| f.name.clone()).collect();
    for f in &req.files {
        let blob = crate::error::digest_param(&f.blob)?;
        sources.push(MasterSource { name: f.name.clone(), blob, format: format.clone() });
    }
    let app2 = app.clone();
    let by = who.token_id;
    let subject = sources.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
    let job = app.jobs.submit(payer, "propose", subject, by, app.now_ms(), app.retry_after(), move |progress| {
        let set = app2
            .work
            .registry
            .decode_sources(&sources)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "master-refused", e))?;
        // A file the set did not take (a 差分 with no full file of its kind to apply onto, or
        // one older than that full file) would make a version that silently lacks it.
        let ignored: Vec<&str> = proposed
            .iter()
            .map(String::as_str)
            .filter(|n| !set.sources().iter().any(|s| s.name == *n))
            .collect();
        if !ignored.is_empty() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "master-file-not-applied",
                format!(
                    "{} would not be applied: a 差分 needs the full file of its kind (s_ALL…, y_ALL…) in the same proposal, or \"base\": the id of the version whose files it revises, and must be newer than that full file. Nothing was stored",
                    ignored.join(", ")
                ),
            ));
        }
        if set.is_empty() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "master-empty",
                "the proposal holds no master rows: send full files (or \"base\" plus 差分). Nothing was stored",
            ));
        }
        let report = proposal_report(&app2, payer, &set, progress)?;
        let v = app2.store.add_master_version(
            payer,
            from,
            &set.digest(),
            &sources,
            None,
            &report,
            by,
            &req.reason,
            now_ms(),
        )?;
        Ok((StatusCode::CREATED, serde_json::to_value(v).map_err(ApiError::internal)?))
    })?;
    Ok(crate::job_status::accepted(job))
}

/// Body of an approval (optional).
#[derive(Debug, Default, serde::Deserialize)]
pub struct ApproveRequest {
    /// Approve although the impact check flagged the version (needs a reason).
    #[serde(default)]
    pub accept_impact: bool,
    #[serde(default)]
    pub reason: String,
}

/// The approval gate on a version's stored impact check: Ok(the note for the audit event),
/// or the refusal.
fn impact_gate(id: i64, report: &MasterReport, req: &ApproveRequest) -> Result<String, ApiError> {
    // A version without an impact check says nothing about the impact: refusing is the only
    // safe answer (approving would fail open), and accepting an impact nobody can see is no
    // deliberate decision either. (A stored report that does not parse never gets here: the
    // store refuses to read it.)
    let impact = match &report.impact {
        Some(i) => i,
        None => {
            let why = "it has no impact check result";
            tracing::error!(version = id, %why, "stored impact report unreadable; approval refused");
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "impact-report-unreadable",
                format!(
                    "the stored impact report of master version {id} cannot be read: {why}. Approval is refused because the impact check cannot be confirmed; propose the version again (same files) to re-run the impact check, and report this if it recurs"
                ),
            ));
        }
    };
    let mut note = String::new();
    // A flagged impact (a master that suddenly changes many findings: the 2022 setting
    // error) is approved only deliberately, with a reason that goes into the audit log.
    if impact.flagged {
        if !req.accept_impact {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "impact-flagged",
                format!(
                    "the impact check flagged master version {id}: {} finding(s) changed over the regression corpus (threshold {}). Review the report's \"impact\" (per rule, with receipts); to approve anyway send {{\"accept_impact\": true, \"reason\": \"…\"}} (CLI: tenken master approve --accept-impact --reason …)",
                    impact.changed, impact.threshold
                ),
            ));
        }
        if req.reason.trim().is_empty() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "reason-required",
                "accepting a flagged impact needs a reason (it goes into the audit log)",
            ));
        }
        note = format!("impact accepted: {}", req.reason.trim());
    }
    Ok(note)
}

pub async fn approve(
    State(app): AppState,
    who: Principal,
    PayerPath(payer): PayerPath,
    Path((_, id)): Path<(String, i64)>,
    body: Option<Json<ApproveRequest>>,
) -> Result<Json<MasterVersion>, ApiError> {
    let req = body.map(|b| b.0).unwrap_or_default();
    let v = version(&app, payer, id).await?;
    // The payer's own staff, or — for a master it provided — the providing payer's staff.
    let Some(approver_payer) = who.staff_payer().filter(|p| *p == payer || Some(*p) == v.provided_by) else {
        return Err(ApiError::forbidden(format!("{} may not approve {payer}'s master version {id}", who.describe())));
    };
    if v.created_by == who.token_id {
        return Err(
            ApiError::forbidden("the proposer cannot approve their own master version").with_code("self-approval")
        );
    }
    let note = impact_gate(id, &v.report, &req)?;
    let (store, by) = (app.store.clone(), who.token_id);
    Ok(Json(blocking(move || store.approve_master(payer, id, by, approver_payer, &note, now_ms())).await?))
}

#[derive(Debug, Deserialize, Default)]
pub struct WithdrawRequest {
    #[serde(default)]
    pub reason: String,
}

/// Takes back a proposal of the payer's (before activation): it can then be neither
/// approved nor activated, and it stays listed, audited.
pub async fn withdraw(
    State(app): AppState,
    Staff { payer, who }: Staff,
    Path((_, id)): Path<(String, i64)>,
    body: Option<Json<WithdrawRequest>>,
) -> Result<Json<MasterVersion>, ApiError> {
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    let reason = if reason.trim().is_empty() { "withdrawn".to_owned() } else { reason.trim().to_owned() };
    let (store, by) = (app.store.clone(), who.token_id);
    let v = blocking(move || -> Result<_, ApiError> {
        store
            .master_version(payer, id)?
            .ok_or_else(|| ApiError::not_found(format!("{payer} has no master version {id}")))?;
        Ok(store.withdraw_master(payer, id, by, &reason, now_ms())?)
    })
    .await?;
    Ok(Json(v))
}

pub async fn activate(
    State(app): AppState,
    Staff { payer, who }: Staff,
    Path((_, id)): Path<(String, i64)>,
) -> Result<Json<MasterVersion>, ApiError> {
    let v = version(&app, payer, id).await?;
    let own = v.approvals.iter().any(|(_, p)| *p == payer);
    let provider = v.provided_by.is_none_or(|q| v.approvals.iter().any(|(_, p)| *p == q));
    if !own || !provider {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not-approved",
            match v.provided_by {
                Some(q) => format!(
                    "master version {id} was provided by {q}: it needs approval by staff of both {q} and {payer} (joint check)"
                ),
                None => format!("master version {id} needs approval by {payer} staff other than its proposer"),
            },
        ));
    }
    swap(&app, payer, id, who.token_id, false).await
}

pub async fn rollback(
    State(app): AppState,
    Staff { payer, who }: Staff,
    Path((_, id)): Path<(String, i64)>,
) -> Result<Json<MasterVersion>, ApiError> {
    let v = version(&app, payer, id).await?;
    if v.state == MasterState::Proposed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "wrong-state",
            format!("master version {id} was never active"),
        ));
    }
    swap(&app, payer, id, who.token_id, true).await
}

async fn swap(app: &Arc<App>, payer: Payer, id: i64, by: i64, rollback: bool) -> Result<Json<MasterVersion>, ApiError> {
    let app2 = app.clone();
    let (requested, requested_ms) = (std::time::Instant::now(), now_ms());
    let v = blocking(move || -> Result<_, ApiError> {
        let v = app2.store.activate_master(payer, id, by, rollback, "", now_ms())?;
        let action = if rollback { "master-rollback" } else { "master-activate" };
        let cause = crate::registry::SwapCause::since(action, id, requested, requested_ms);
        app2.work.registry.reload(payer, cause).map_err(ApiError::internal)?;
        Ok(v)
    })
    .await?;
    tracing::info!(%payer, version = id, rollback, "master version swapped in");
    Ok(Json(v))
}

#[derive(Debug, Deserialize, Default)]
pub struct ConvertQuery {
    pub reason: Option<String>,
    /// Digest of an approved converter plugin of the receiving payer (default: the bundled
    /// converter of its master format).
    pub converter: Option<String>,
}

/// Converts a version of `payer` for `other`: every source is decoded with its format's
/// converter, encoded with `other`'s, decoded again and compared field by field. Any
/// difference blocks the conversion (422 with the report); a proven one becomes a proposed
/// version of `other`, provided by `payer`, needing both payers' approval.
pub async fn convert_for(
    State(app): AppState,
    Staff { payer, who }: Staff,
    Path((_, id, other)): Path<(String, i64, String)>,
    Query(q): Query<ConvertQuery>,
) -> Result<Response, ApiError> {
    let other: Payer = other.parse().map_err(|e: String| ApiError::new(StatusCode::NOT_FOUND, "unknown-payer", e))?;
    let v = version(&app, payer, id).await?;
    // The converter is settled before a job starts: refusing an unapproved one is immediate.
    let target = match &q.converter {
        None => {
            let name = &app.config.payer(other).master_format;
            app.converters.get(name).cloned().ok_or_else(|| ApiError::internal(format!("no converter {name}")))?
        }
        Some(d) => {
            let d = crate::error::digest_param(d)?;
            let (store, reg) = (app.store.clone(), app.work.registry.clone());
            blocking(move || -> Result<_, ApiError> {
                let rec = store
                    .plugin(other, &d)?
                    .ok_or_else(|| ApiError::not_found(format!("{other} has no converter {d}")))?;
                if rec.kind() != tenken_store::PluginKind::Converter || rec.state != tenken_store::PluginState::Approved
                {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "not-approved",
                        format!(
                            "{d} is not an approved converter of {other} (it is {}); validate and approve it first",
                            rec.state.as_str()
                        ),
                    ));
                }
                reg.converter(&d).map_err(ApiError::internal)
            })
            .await?
        }
    };
    let app2 = app.clone();
    let by = who.token_id;
    let subject = format!("master version {id} for {other}");
    let job = app.jobs.submit(payer, "convert-for", subject, by, app.now_ms(), app.retry_after(), move |progress| {
        progress.set_total(v.sources.len() as u64);
        let conv = |name: &str| {
            app2.converters.get(name).cloned().ok_or_else(|| ApiError::internal(format!("no converter {name}")))
        };
        let mut converted = Vec::new();
        let mut proven = Vec::new();
        for s in &v.sources {
            let name = s.name.as_str();
            let kind = s.kind().ok_or_else(|| ApiError::internal(format!("{name}: unknown master kind")))?;
            let source = conv(&s.format)?;
            let bytes = app2.store.bytes(&s.blob)?;
            let rows = source.decode(kind, &bytes).map_err(|e| {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "master-refused", format!("{name}: {e}"))
            })?;
            let proof = tenken_lifecycle::round_trip_through(
                &target,
                kind,
                &rows,
                app2.config.api.conversion_diffs_shown_max as usize,
            )
            .map_err(|e| {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "conversion-failed", format!("{name}: {e}"))
            })?;
            if !proof.proven() {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "conversion-not-proven",
                    format!(
                        "{name}: the round trip through {} differs in {} place(s): {}",
                        target.info.name,
                        proof.diffs.len(),
                        proof.describe()
                    ),
                ));
            }
            progress.step();
            let blob = app2.store.put_file(&proof.encoded)?;
            proven.push(ProvenFile { name: name.to_owned(), rows: rows.len(), source_blob: s.blob, blob });
            converted.push(MasterSource { name: name.to_owned(), blob, format: target.info.name.clone() });
        }
        // The converted files themselves are decoded (not the source version's set).
        let set = app2.work.registry.decode_sources(&converted).map_err(ApiError::internal)?;
        let report =
            MasterReport { proof: proven, from_version: Some(v.id), ..proposal_report(&app2, other, &set, progress)? };
        let reason = q.reason.unwrap_or_else(|| format!("converted from {payer} master version {}", v.id));
        let out = app2.store.add_master_version(
            other,
            v.from_month,
            &set.digest(),
            &converted,
            Some(payer),
            &report,
            by,
            &reason,
            now_ms(),
        )?;
        Ok((StatusCode::CREATED, serde_json::to_value(out).map_err(ApiError::internal)?))
    })?;
    Ok(crate::job_status::accepted(job))
}

/// The receiving payer's staff download a converted file (with its digest).
pub async fn download(
    State(app): AppState,
    Staff { payer, .. }: Staff,
    Path((_, id, name)): Path<(String, i64, String)>,
) -> Result<Response, ApiError> {
    let v = version(&app, payer, id).await?;
    let blob = v
        .sources
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no file {name} in master version {id}")))?
        .blob;
    let store = app.store.clone();
    let bytes = blocking(move || store.bytes(&blob)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::HeaderName::from_static("x-tenken-digest"), blob.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(accept: bool, reason: &str) -> ApproveRequest {
        ApproveRequest { accept_impact: accept, reason: reason.into() }
    }

    fn report(impact: Option<(bool, usize, usize)>) -> MasterReport {
        MasterReport {
            impact: impact.map(|(flagged, changed, threshold)| ImpactReport {
                cases: 2,
                sampled_submissions: 0,
                sampled_receipts: 0,
                changed,
                threshold,
                flagged,
                rules: Vec::new(),
            }),
            ..MasterReport::default()
        }
    }

    /// A version without an impact check blocks approval (even with accept_impact), naming
    /// the version: the gate never fails open.
    #[test]
    fn a_version_without_an_impact_check_blocks_approval() {
        for r in [req(false, ""), req(true, "looked at it")] {
            let e = impact_gate(7, &report(None), &r).expect_err("no impact check");
            assert_eq!((e.status, e.code), (StatusCode::CONFLICT, "impact-report-unreadable"));
            assert!(e.message.contains("master version 7"), "{}", e.message);
        }
    }

    #[test]
    fn a_flagged_impact_needs_acceptance_with_a_reason() {
        let flagged = report(Some((true, 12, 5)));
        assert_eq!(impact_gate(3, &flagged, &req(false, "")).unwrap_err().code, "impact-flagged");
        assert_eq!(impact_gate(3, &flagged, &req(true, " ")).unwrap_err().code, "reason-required");
        assert_eq!(impact_gate(3, &flagged, &req(true, "intended")).unwrap(), "impact accepted: intended");
        let fine = report(Some((false, 0, 5)));
        assert_eq!(impact_gate(3, &fine, &req(false, "")).unwrap(), "");
    }
}
