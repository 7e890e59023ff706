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
use tenken_model::{Digest, Payer, YearMonth};
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

/// Who a token is, as staff read it: its id and its label (`token create --label`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Person {
    pub token: i64,
    pub label: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payer: Option<Payer>,
}

/// A master version as the API answers it: the stored version, the people by name, and
/// warnings staff must see (the payers' masters differ for a month it is in force).
#[derive(Debug, Clone, serde::Serialize)]
pub struct VersionView {
    #[serde(flatten)]
    pub version: MasterVersion,
    pub proposed_by: Person,
    pub approved_by: Vec<Person>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Token labels by id (the token table is small: staff, institutions, admins).
fn labels(store: &dyn tenken_store::Store) -> Result<std::collections::HashMap<i64, String>, ApiError> {
    let mut m: std::collections::HashMap<i64, String> =
        store.list_tokens()?.into_iter().map(|t| (t.id, t.label)).collect();
    m.insert(0, "tenken (operator or system)".into());
    Ok(m)
}

fn view(v: MasterVersion, labels: &std::collections::HashMap<i64, String>, divergence: &[Divergence]) -> VersionView {
    let person = |token: i64, payer: Option<Payer>| Person {
        token,
        label: labels.get(&token).cloned().unwrap_or_else(|| format!("token {token}")),
        payer,
    };
    let warnings = if v.state == MasterState::Active {
        divergence.iter().filter(|d| d.involves(v.payer, v.id)).map(|d| d.message.clone()).collect()
    } else {
        Vec::new()
    };
    VersionView {
        proposed_by: person(v.created_by, None),
        approved_by: v.approvals.iter().map(|(t, p)| person(*t, Some(*p))).collect(),
        warnings,
        version: v,
    }
}

/// A month for which the two payers check claims with different masters.
#[derive(Debug, Clone)]
pub struct Divergence {
    pub ssk: i64,
    pub kokuho: i64,
    pub message: String,
}

impl Divergence {
    fn involves(&self, payer: Payer, id: i64) -> bool {
        match payer {
            Payer::Ssk => self.ssk == id,
            Payer::Kokuho => self.kokuho == id,
        }
    }
}

/// Where the payers' live masters differ: for every month at which either payer's master
/// changes, the version each payer has in force. They agree when they are the same files
/// (the same digest) or one is the proven conversion of the other; otherwise the month is
/// named, with both versions and what would bring them together. (May 2022: the two
/// payers ended up checking one month with different masters, and nobody saw it.)
pub fn divergence(app: &App) -> Result<Vec<Divergence>, ApiError> {
    let (s, k) = (app.work.registry.table(Payer::Ssk), app.work.registry.table(Payer::Kokuho));
    if s.masters.is_empty() || k.masters.is_empty() {
        return Ok(Vec::new());
    }
    let mut months: Vec<Option<YearMonth>> = s.masters.iter().chain(&k.masters).map(|m| m.from).collect();
    months.sort();
    months.dedup();
    let mut out: Vec<Divergence> = Vec::new();
    for month in months {
        let (Some(a), Some(b)) = (s.master_in_force_for(month), k.master_in_force_for(month)) else { continue };
        if a.digest == b.digest || out.iter().any(|d| d.ssk == a.id && d.kokuho == b.id) {
            continue;
        }
        let converted_from = |payer: Payer, id: i64| -> Result<Option<i64>, ApiError> {
            Ok(app.store.master_version(payer, id)?.and_then(|v| v.report.from_version))
        };
        let (kf, sf) = (converted_from(Payer::Kokuho, b.id)?, converted_from(Payer::Ssk, a.id)?);
        if kf == Some(a.id) || sf == Some(b.id) {
            continue;
        }
        let when = month.map(|m| m.to_string()).unwrap_or_else(|| "the months before any later version".into());
        out.push(Divergence {
            ssk: a.id,
            kokuho: b.id,
            message: format!(
                "the payers check {when} with different masters: ssk with version {}, kokuho with version {}{}. Convert ssk version {} for kokuho (`tenken master act --payer ssk convert-for-kokuho {}`) and approve it jointly, or roll back the version that should not be in force",
                a.id,
                b.id,
                kf.map(|f| format!(" (converted from ssk version {f})")).unwrap_or_default(),
                a.id,
                a.id
            ),
        });
    }
    Ok(out)
}

/// One version with names and warnings, where blocking is allowed (a job).
fn view_now(app: &App, v: MasterVersion) -> Result<serde_json::Value, ApiError> {
    let v = view(v, &labels(&*app.store)?, &divergence(app)?);
    serde_json::to_value(v).map_err(ApiError::internal)
}

/// Versions with names and warnings (a store read plus the live tables).
async fn views(app: &Arc<App>, versions: Vec<MasterVersion>) -> Result<Vec<VersionView>, ApiError> {
    let app = app.clone();
    blocking(move || -> Result<_, ApiError> {
        let (labels, divergence) = (labels(&*app.store)?, divergence(&app)?);
        Ok(versions.into_iter().map(|v| view(v, &labels, &divergence)).collect())
    })
    .await
}

async fn one_view(app: &Arc<App>, v: MasterVersion) -> Result<Json<VersionView>, ApiError> {
    let mut v = views(app, vec![v]).await?;
    Ok(Json(v.remove(0)))
}

pub async fn list(
    State(app): AppState,
    StaffOrAdmin { payer, .. }: StaffOrAdmin,
) -> Result<Json<Vec<VersionView>>, ApiError> {
    let store = app.store.clone();
    let versions = blocking(move || store.master_versions(payer)).await?;
    Ok(Json(views(&app, versions).await?))
}

/// One version: its files, state, people, and the full report (diff lists and impact).
pub async fn show(
    State(app): AppState,
    StaffOrAdmin { payer, .. }: StaffOrAdmin,
    Path((_, id)): Path<(String, i64)>,
) -> Result<Json<VersionView>, ApiError> {
    let v = version(&app, payer, id).await?;
    one_view(&app, v).await
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

/// Impact check: files re-checked with the release set in force for the proposal's first
/// 診療年月, under the master in force for it and under the proposed one
/// (`tenken_lifecycle::Impact`: findings delta per rule with example receipts).
///
/// The files are the payer's real submissions once it has any (the newest checked ones,
/// bounded in files and receipts) plus the cases staff added to the regression corpus; the
/// generated seed cases (the project's demo data, which real masters mostly do not know)
/// count only while no real submission exists. A proposal for a month reached by no claim
/// yet changes nothing for the claims of earlier months, so each file is re-checked *as if*
/// it were of that month (`tenken_claim::as_of_month`); the report says so.
fn impact_report(
    app: &App,
    payer: Payer,
    from: Option<YearMonth>,
    new: &Arc<tenken_master::MasterSet>,
    progress: &Progress,
) -> Result<ImpactReport, ApiError> {
    let reg = &app.work.registry;
    let table = reg.table(payer);
    let set = table.sets.get(table.index_for(from)).ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "payer-not-ready",
            format!("{payer} has no active release set: the impact check needs the rules in force; activate a release set first"),
        )
    })?;
    let current = table.master_in_force_for(from).ok_or_else(|| ApiError::internal("no master version"))?;
    let old_checker = reg.checker_with(&set.plugins, current.set.clone()).map_err(ApiError::internal)?;
    let new_checker = reg.checker_with(&set.plugins, new.clone()).map_err(ApiError::internal)?;
    let pc = app.config.payer(payer);
    let (files_max, receipts_max) =
        (pc.master_impact_sample_files_max as usize, pc.master_impact_sample_receipts_max as u64);
    // What institutions actually sent: the newest checked submissions, bounded.
    let mut files: Vec<(String, Digest)> = Vec::new();
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
            if files.len() >= files_max {
                break;
            }
            if sampled_receipts + s.receipts as u64 > receipts_max || files.iter().any(|(_, d)| *d == s.digest) {
                continue;
            }
            sampled_receipts += s.receipts as u64;
            files.push((format!("submission {}", s.reception), s.digest));
        }
    }
    let sampled = files.len();
    // Staff-added cases always; the generated seeds (added by the system, id 0) only while
    // there is nothing real to look at.
    let cases: Vec<_> = app.store.regression(payer)?.into_iter().filter(|c| c.added_by != 0 || sampled == 0).collect();
    for c in &cases {
        if !files.iter().any(|(_, d)| *d == c.digest) {
            files.push((c.name.clone(), c.digest));
        }
    }
    let mut impact = tenken_lifecycle::Impact::new(tenken_lifecycle::ExampleLimits::PROPOSAL);
    progress.add_total(files.len() as u64);
    let limits = &reg.limits;
    let mut redated = 0usize;
    for (name, digest) in &files {
        // Parsed once for both checks (and once more only when it is re-dated).
        let bytes = app.store.bytes(digest)?;
        let mut claim = Arc::new(tenken_claim::parse(&bytes, limits));
        if let Some(month) = from
            && claim.receipts.iter().any(|r| r.service_month.is_some_and(|m| m < month))
        {
            claim = Arc::new(tenken_claim::parse(&tenken_claim::as_of_month(&bytes, month), limits));
            redated += 1;
        }
        let a = old_checker.check_claim(claim.clone(), Some(payer)).map_err(ApiError::internal)?.findings;
        let b = new_checker.check_claim(claim, Some(payer)).map_err(ApiError::internal)?.findings;
        impact.add(name, &a, &b);
        progress.step();
    }
    let mut report = impact.report(cases.len(), sampled, sampled_receipts, pc.master_impact_delta_max as usize);
    report.as_of = from.filter(|_| redated > 0);
    report.redated_files = redated;
    Ok(report)
}

/// The report staff approve a proposal on: the semantic diff against the version in force
/// for its first month, and the impact check.
fn proposal_report(
    app: &App,
    payer: Payer,
    from: Option<YearMonth>,
    new: &Arc<tenken_master::MasterSet>,
    progress: &Progress,
) -> Result<MasterReport, ApiError> {
    let table = app.work.registry.table(payer);
    let current = table.master_in_force_for(from).ok_or_else(|| ApiError::internal("no master version"))?;
    let limits = tenken_lifecycle::DiffLimits {
        codes_listed_max: app.config.api.master_diff_codes_listed_max as usize,
        examples_max: app.config.api.master_diff_examples_max as usize,
    };
    Ok(MasterReport {
        diff: tenken_lifecycle::diff_report(&current.set, new, limits),
        impact: Some(impact_report(app, payer, from, new, progress)?),
        compared_with: Some(current.id),
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
        let report = proposal_report(&app2, payer, from, &set, progress)?;
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
        Ok((StatusCode::CREATED, view_now(&app2, v)?))
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
                    "master version {id} has no impact check to approve it on: {why} (a forced import, or a stored report that cannot be read). Run the check: POST …/masters/{id}/recheck (CLI `tenken master act recheck {id}`), read the report, then approve"
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
) -> Result<Json<VersionView>, ApiError> {
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
    stale_gate(&app, &v)?;
    let note = impact_gate(id, &v.report, &req)?;
    let (store, by) = (app.store.clone(), who.token_id);
    let v = blocking(move || store.approve_master(payer, id, by, approver_payer, &note, now_ms())).await?;
    one_view(&app, v).await
}

/// A report compared with a version that is no longer the one in force for the proposal's
/// month (another revision was activated meanwhile) says nothing about what this one would
/// change: approval waits for a re-check.
fn stale_gate(app: &App, v: &MasterVersion) -> Result<(), ApiError> {
    let Some(compared) = v.report.compared_with else { return Ok(()) };
    let table = app.work.registry.table(v.payer);
    let Some(now) = table.master_in_force_for(v.from_month) else { return Ok(()) };
    if now.id == compared || v.state != MasterState::Proposed {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "report-stale",
        format!(
            "master version {}'s diff and impact were computed against version {compared}, but version {} is in force for its month now: the report is stale. Re-check it (POST /v1/payers/{}/masters/{}/recheck, CLI `tenken master act --payer {} recheck {}`), read the new report, then approve",
            v.id, now.id, v.payer, v.id, v.payer, v.id
        ),
    ))
}

/// Runs a proposed version's diff and impact check again, against the version now in force
/// for its month, as a job; its result is the version with the new report.
pub async fn recheck(
    State(app): AppState,
    Staff { payer, who }: Staff,
    Path((_, id)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    let v = version(&app, payer, id).await?;
    if v.state != MasterState::Proposed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "wrong-state",
            format!("master version {id} is {}: only a proposed version is re-checked", v.state),
        ));
    }
    let app2 = app.clone();
    let by = who.token_id;
    let job = app.jobs.submit(
        payer,
        "recheck",
        format!("master version {id}"),
        by,
        app.now_ms(),
        app.retry_after(),
        move |progress| {
            let set = app2.work.registry.master_set(&v).map_err(ApiError::internal)?;
            let fresh = proposal_report(&app2, payer, v.from_month, &set, progress)?;
            let report = MasterReport { proof: v.report.proof.clone(), from_version: v.report.from_version, ..fresh };
            let out = app2.store.set_master_report(payer, id, &report, by, now_ms())?;
            Ok((StatusCode::OK, view_now(&app2, out)?))
        },
    )?;
    Ok(crate::job_status::accepted(job))
}

/// Takes back a proposal of the payer's (before activation): it can then be neither
/// approved nor activated, and it stays listed, audited.
pub async fn withdraw(
    State(app): AppState,
    Staff { payer, who }: Staff,
    Path((_, id)): Path<(String, i64)>,
    body: Option<Json<ReasonRequest>>,
) -> Result<Json<VersionView>, ApiError> {
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
    one_view(&app, v).await
}

/// Body of a withdrawal, activation or rollback (optional): why, for the audit log (a swap
/// needs one while an acceptance window whose claims it affects is open).
#[derive(Debug, Default, Deserialize)]
pub struct ReasonRequest {
    #[serde(default)]
    pub reason: String,
}

pub async fn activate(
    State(app): AppState,
    Staff { payer, who }: Staff,
    Path((_, id)): Path<(String, i64)>,
    body: Option<Json<ReasonRequest>>,
) -> Result<Json<VersionView>, ApiError> {
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
    stale_gate(&app, &v)?;
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    swap(&app, &v, who.token_id, false, reason).await
}

pub async fn rollback(
    State(app): AppState,
    Staff { payer, who }: Staff,
    Path((_, id)): Path<(String, i64)>,
    body: Option<Json<ReasonRequest>>,
) -> Result<Json<VersionView>, ApiError> {
    let v = version(&app, payer, id).await?;
    if v.state == MasterState::Proposed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "wrong-state",
            format!("master version {id} was never active"),
        ));
    }
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    swap(&app, &v, who.token_id, true, reason).await
}

/// The acceptance window open now whose claims a version starting at `from` would check:
/// the window of this month's 請求年月 (claims of the months before it), when `from` is not
/// later than those claims' month. None when no such window is open.
async fn open_window_affected(app: &App, payer: Payer, from: Option<YearMonth>) -> Result<Option<String>, ApiError> {
    let now = app.now_ms();
    let t = time::OffsetDateTime::from_unix_timestamp(now.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(crate::window::jst());
    let billing = YearMonth { year: t.year() as u16, month: t.month() as u8 };
    let mut out = None;
    // This month's window, and last month's (a staff extension can keep it open).
    for b in [billing, billing.prev()] {
        if from.is_some_and(|f| f > b.prev()) {
            continue;
        }
        let w = crate::access::effective_window(app, payer, b).await?;
        if crate::window::is_open(&app.config.windows, w, now) {
            let until = w.map(|w| crate::window::format_jst_close(w.closes_ms)).unwrap_or_else(|| "always open".into());
            out = Some(format!(
                "{payer}'s acceptance window for 請求年月 {b} (claims of {} and earlier) is open (closes: {until})",
                b.prev()
            ));
            break;
        }
    }
    Ok(out)
}

async fn swap(
    app: &Arc<App>,
    v: &MasterVersion,
    by: i64,
    rollback: bool,
    reason: String,
) -> Result<Json<VersionView>, ApiError> {
    let (payer, id) = (v.payer, v.id);
    // During an open window claims are arriving and being checked: a swap then is a
    // deliberate decision (files already being checked keep the master they started with).
    let open = open_window_affected(app, payer, v.from_month).await?;
    if let Some(w) = &open
        && reason.trim().is_empty()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "window-open",
            format!(
                "{w}: {} master version {id} now changes the master claims arriving in it are checked with (files already being checked finish with the master they started with). To do it anyway, give a reason: {{\"reason\": \"…\"}} (CLI: --reason …); it is audited",
                if rollback { "rolling back to" } else { "activating" }
            ),
        ));
    }
    let app2 = app.clone();
    let (requested, requested_ms) = (std::time::Instant::now(), now_ms());
    let reason = reason.trim().to_owned();
    let v = blocking(move || -> Result<_, ApiError> {
        let v = app2.store.activate_master(payer, id, by, rollback, &reason, now_ms())?;
        let action = if rollback { "master-rollback" } else { "master-activate" };
        let cause = crate::registry::SwapCause::since(action, id, requested, requested_ms);
        let before = app2.work.registry.table(payer);
        app2.work.registry.reload(payer, cause).map_err(ApiError::internal)?;
        // A rolled-back master never finishes a file: files pinned to it start over.
        let restarted = if rollback { app2.work.restart_rolled_back(payer, &before)? } else { 0 };
        // Institutions learn which master their claims are now checked with.
        let table = app2.work.registry.table(payer);
        let live: Vec<String> = table
            .masters
            .iter()
            .map(|m| {
                format!("{} from {}", m.id, m.from.map(|f| f.to_string()).unwrap_or_else(|| "the beginning".into()))
            })
            .collect();
        let summary: Vec<String> = v
            .report
            .diff
            .iter()
            .filter(|d| d.added + d.changed + d.abolished + d.restored + d.removed > 0)
            .map(|d| {
                format!(
                    "{}: 新規 {}, 変更 {} (点数 {}), 廃止 {}",
                    d.kind.map(|k| k.as_str()).unwrap_or("?"),
                    d.added,
                    d.changed,
                    d.value_changed,
                    d.abolished
                )
            })
            .collect();
        let text = format!(
            "{payer}: master version {id} {} at {} for 診療年月 {}{}. Claims are checked with master versions {} ({})",
            if rollback { "was rolled back / restored" } else { "is in force" },
            crate::window::format_jst(now_ms()),
            v.from_month.map(|m| format!("{m} onward")).unwrap_or_else(|| "all months".into()),
            if summary.is_empty() { String::new() } else { format!(" ({})", summary.join("; ")) },
            live.join(", "),
            if restarted > 0 {
                format!(
                    "{restarted} file(s) being checked with the version taken back are checked again from the start"
                )
            } else {
                "files already being checked finish with the one they started with".into()
            }
        );
        app2.store.add_notice(Some(payer), tenken_store::Audience::Institutions, &text, by, now_ms())?;
        Ok(v)
    })
    .await?;
    tracing::info!(%payer, version = id, rollback, "master version swapped in");
    let mut out = one_view(app, v).await?;
    if let Some(w) = open {
        out.0.warnings.insert(0, format!("{w}; swapped with the reason given"));
    }
    Ok(out)
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
        let report = MasterReport {
            proof: proven,
            from_version: Some(v.id),
            ..proposal_report(&app2, other, v.from_month, &set, progress)?
        };
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
        Ok((StatusCode::CREATED, view_now(&app2, out)?))
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
                as_of: None,
                redated_files: 0,
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
