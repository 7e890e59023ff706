//! The OpenAPI document served at `/v1/openapi.json`, built from one table of routes and the
//! response types' `utoipa::ToSchema` derives.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApiBuilder, PathItem, PathsBuilder, Ref, Required,
    ResponseBuilder,
};

use crate::access::*;
use crate::submissions::*;

/// (method, path, summary, request body, success status, success schema)
const ROUTES: &[(HttpMethod, &str, &str, Body, &str, Option<&str>)] = &[
    (
        HttpMethod::Post,
        "/v1/submissions",
        "Submit a claim file (raw RECEIPTC.UKE bytes); the payer comes from the IR record. Optional Idempotency-Key header. 202 only after the file is durable.",
        Body::Uke,
        "202",
        Some("SubmitResponse"),
    ),
    (
        HttpMethod::Get,
        "/v1/submissions",
        "List the caller's submissions (institution: its own; staff: its payer's), newest first.",
        Body::None,
        "200",
        None,
    ),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/submissions",
        "Submit to a chosen payer; a file whose IR names the other payer is refused (422 payer-mismatch).",
        Body::Uke,
        "202",
        Some("SubmitResponse"),
    ),
    (
        HttpMethod::Get,
        "/v1/submissions/{id}",
        "Status: queued / checking (with progress) / checked (with counts by severity) / confirmed / withdrawn / superseded.",
        Body::None,
        "200",
        Some("SubmissionView"),
    ),
    (
        HttpMethod::Get,
        "/v1/submissions/{id}/findings",
        "Findings of a checked submission, paged (offset, limit, severity).",
        Body::None,
        "200",
        Some("FindingsPage"),
    ),
    (HttpMethod::Get, "/v1/submissions/{id}/findings.csv", "Findings as a CSV download.", Body::None, "200", None),
    (
        HttpMethod::Get,
        "/v1/submissions/{id}/history",
        "Every submission for the same payer, institution and billing month, oldest first.",
        Body::None,
        "200",
        None,
    ),
    (
        HttpMethod::Post,
        "/v1/submissions/{id}/confirm",
        "請求確定: refused (409 unresolved-errors) while error findings remain on receipts that are not withdrawn.",
        Body::None,
        "200",
        Some("SubmissionView"),
    ),
    (
        HttpMethod::Post,
        "/v1/submissions/{id}/withdraw",
        "Withdraw a submission before confirmation.",
        Body::None,
        "200",
        Some("SubmissionView"),
    ),
    (
        HttpMethod::Post,
        "/v1/submissions/{id}/receipts/{number}/withdraw",
        "Withdraw one receipt (取り下げ) so the rest can be confirmed.",
        Body::None,
        "200",
        Some("SubmissionView"),
    ),
    (HttpMethod::Get, "/v1/notices", "Notices from the payers, newest first.", Body::None, "200", None),
    (HttpMethod::Get, "/v1/openapi.json", "This document (OpenAPI 3.1).", Body::None, "200", None),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/notices",
        "Post a notice (payer staff).",
        Body::Json("NoticeRequest"),
        "201",
        Some("NoticeView"),
    ),
    (
        HttpMethod::Get,
        "/v1/payers/{payer}/windows/{month}",
        "The acceptance window of a billing month (YYYY-MM).",
        Body::None,
        "200",
        Some("WindowView"),
    ),
    (
        HttpMethod::Put,
        "/v1/payers/{payer}/windows/{month}",
        "Extend or move a window (payer staff), optionally posting a notice.",
        Body::Json("WindowRequest"),
        "200",
        Some("WindowView"),
    ),
    (
        HttpMethod::Post,
        "/v1/tokens",
        "Create a token (admin). The secret is shown once.",
        Body::Json("TokenRequest"),
        "201",
        Some("TokenCreated"),
    ),
    (HttpMethod::Get, "/v1/tokens", "List tokens (admin).", Body::None, "200", None),
    (HttpMethod::Post, "/v1/tokens/{id}/revoke", "Revoke a token (admin).", Body::None, "204", None),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/plugins",
        "Upload a plugin component (payer staff); optional X-Tenken-Signature (hex ed25519 over the digest text). Compiled and contract-checked at upload.",
        Body::Uke,
        "201",
        None,
    ),
    (
        HttpMethod::Get,
        "/v1/payers/{payer}/plugins",
        "The payer's plugin versions with state, validation and approvals.",
        Body::None,
        "200",
        None,
    ),
    (HttpMethod::Get, "/v1/payers/{payer}/plugins/{digest}", "One plugin version.", Body::None, "200", None),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/plugins/{digest}/validate",
        "Validate against the regression corpus (a converter: round trip over the payer's masters), as a job: 202 with the job; its result is the report (findings delta per rule, gates).",
        Body::None,
        "202",
        None,
    ),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/plugins/{digest}/approve",
        "Approve (staff of the payer other than the uploader).",
        Body::None,
        "200",
        None,
    ),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/plugins/{digest}/retire",
        "Retire a version no live release set uses.",
        Body::None,
        "200",
        None,
    ),
    (
        HttpMethod::Get,
        "/v1/payers/{payer}/releases",
        "Release sets, newest first (active, superseded, rolled-back).",
        Body::None,
        "200",
        None,
    ),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/releases",
        "Activate a release set {from: YYYY-MM, plugins: [digest], reason}; atomic, no restart.",
        Body::None,
        "201",
        None,
    ),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/releases/{id}/rollback",
        "Make an earlier release set live again; atomic.",
        Body::None,
        "200",
        None,
    ),
    (
        HttpMethod::Get,
        "/v1/payers/{payer}/swaps",
        "Recent hot swaps of this process (newest 1,024): request → live → first chunk on the new table, in ms.",
        Body::None,
        "200",
        None,
    ),
    (HttpMethod::Get, "/v1/payers/{payer}/audit", "The append-only audit log.", Body::None, "200", None),
    (
        HttpMethod::Get,
        "/v1/payers/{payer}/jobs",
        "The payer's lifecycle jobs (validate, propose, convert-for), newest first, with progress.",
        Body::None,
        "200",
        None,
    ),
    (
        HttpMethod::Get,
        "/v1/payers/{payer}/jobs/{id}",
        "One job: state (queued, running, done, failed), progress (done/total), and once finished its status and result or error.",
        Body::None,
        "200",
        None,
    ),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/signing-keys",
        "Register a trusted ed25519 public key; uploads must then be signed.",
        Body::None,
        "201",
        None,
    ),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/regression",
        "Add a claim file to the regression corpus (?name=).",
        Body::Uke,
        "201",
        None,
    ),
    (HttpMethod::Get, "/v1/payers/{payer}/regression", "The regression corpus.", Body::None, "200", None),
    (
        HttpMethod::Get,
        "/v1/submissions/{id}/decisions",
        "Decision records: per chunk, release set, plugin digests, master version, receipts, start time.",
        Body::None,
        "200",
        None,
    ),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/masters/files",
        "Store a master file; answers its blob digest.",
        Body::Uke,
        "200",
        None,
    ),
    (
        HttpMethod::Get,
        "/v1/payers/{payer}/masters",
        "Master versions, newest first, with the people by name and warnings (the payers' masters differ for a month).",
        Body::None,
        "200",
        None,
    ),
    (
        HttpMethod::Get,
        "/v1/payers/{payer}/masters/{id}",
        "One master version: files, state, proposer and approvers by name, warnings, and the report (diff with names and fields in words, the lists of new, 点数-changed, abolished codes; impact; proof).",
        Body::None,
        "200",
        None,
    ),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/masters/{id}/recheck",
        "Run a proposed version's diff and impact again against the version now in force for its month (a stale report blocks approval with 409 report-stale), as a job: 202; its result is the version.",
        Body::None,
        "202",
        None,
    ),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/masters",
        "Propose a master version {from, files: [{name, blob}], base?, reason}, as a job: 202 with the job; its result (status 201) is the version, whose report holds the semantic diff and the impact check.",
        Body::None,
        "202",
        None,
    ),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/masters/{id}/withdraw",
        "Take back a proposal before activation {reason?}: it can then be neither approved nor activated (409 wrong-state unless proposed).",
        Body::None,
        "200",
        None,
    ),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/masters/{id}/convert-for/{other}",
        "Convert a version for the other payer, proven by a round trip, as a job: 202 with the job; its result is the new version (201) or 422 conversion-not-proven.",
        Body::None,
        "202",
        None,
    ),
    (
        HttpMethod::Get,
        "/v1/payers/{payer}/masters/{id}/files/{name}",
        "Download a version's file (x-tenken-digest).",
        Body::None,
        "200",
        None,
    ),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/masters/{id}/approve",
        "Approve (not the proposer); provided masters need both payers.",
        Body::None,
        "200",
        None,
    ),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/masters/{id}/activate",
        "Activate by 診療年月 without a restart (approvals required) {reason?}: while an acceptance window whose claims it affects is open, 409 window-open unless a reason is given. Files being checked finish with the master they started with; institutions get a notice.",
        Body::None,
        "200",
        None,
    ),
    (
        HttpMethod::Post,
        "/v1/payers/{payer}/masters/{id}/rollback",
        "Make an earlier version active again, or undo the active one {reason?} (the same window rule as activation).",
        Body::None,
        "200",
        None,
    ),
    (
        HttpMethod::Get,
        "/v1/cluster",
        "The cluster (staff and admins): every node with its heartbeat, alive or not, and per payer its chunks, receipts and busy share over the stats window; per payer the balance busy max/mean over alive nodes.",
        Body::None,
        "200",
        Some("ClusterView"),
    ),
    (HttpMethod::Get, "/healthz", "Liveness; names database trouble when there is some.", Body::None, "200", None),
    (
        HttpMethod::Get,
        "/readyz",
        "Readiness: 503 while starting, shutting down or while the database is unavailable.",
        Body::None,
        "200",
        None,
    ),
    (HttpMethod::Get, "/metrics", "Prometheus metrics.", Body::None, "200", None),
];

#[derive(Clone, Copy)]
enum Body {
    None,
    Uke,
    Json(&'static str),
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("Error"))).build())
        .build()
}

pub fn document() -> String {
    let mut paths = PathsBuilder::new();
    for (method, path, summary, body, status, schema) in ROUTES {
        let mut op = OperationBuilder::new().summary(Some(*summary));
        for seg in path.split('/').filter(|s| s.starts_with('{')) {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(seg.trim_matches(|c| c == '{' || c == '}'))
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .build(),
            );
        }
        op = match body {
            Body::None => op,
            Body::Uke => op.request_body(Some(
                RequestBodyBuilder::new()
                    .description(Some("The claim file bytes (CP932), as written by the レセコン"))
                    .content("application/octet-stream", ContentBuilder::new().build())
                    .required(Some(Required::True))
                    .build(),
            )),
            Body::Json(name) => op.request_body(Some(
                RequestBodyBuilder::new()
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(Ref::from_schema_name(*name))).build(),
                    )
                    .required(Some(Required::True))
                    .build(),
            )),
        };
        let ok = match schema {
            Some(s) => ResponseBuilder::new()
                .description("success")
                .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name(*s))).build())
                .build(),
            None => ResponseBuilder::new().description("success").build(),
        };
        op = op
            .response(*status, ok)
            .response("401", error_response("missing or invalid token"))
            .response("403", error_response("not allowed for this caller, or the window is closed"))
            .response("default", error_response("the error shape: code, message, request_id"));
        if path.starts_with("/v1/") {
            op = op.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
        paths = paths.path(*path, PathItem::new(method.clone(), op.build()));
    }
    let components = ComponentsBuilder::new()
        .schema_from::<SubmissionView>()
        .schema_from::<Progress>()
        .schema_from::<CountsView>()
        .schema_from::<SubmitResponse>()
        .schema_from::<NoticeView>()
        .schema_from::<FindingsPage>()
        .schema_from::<NoticeRequest>()
        .schema_from::<WindowView>()
        .schema_from::<WindowRequest>()
        .schema_from::<TokenRequest>()
        .schema_from::<TokenCreated>()
        .schema_from::<ErrorBody>()
        .schema_from::<ErrorDetail>()
        .schema_from::<crate::cluster::ClusterView>()
        .schema_from::<crate::cluster::NodeView>()
        .schema_from::<crate::cluster::PayerBalance>()
        .security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()))
        .build();
    let doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("tenken")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Online medical-claims (レセプト) acceptance and office checks"))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .build();
    doc.to_pretty_json().unwrap_or_else(|_| "{}".into())
}

/// The error shape every non-2xx response carries.
#[derive(utoipa::ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// Stable code, e.g. `window-closed`, `body-too-large`, `unresolved-errors`.
    pub code: String,
    /// What was wrong and what to do.
    pub message: String,
    pub request_id: String,
}
