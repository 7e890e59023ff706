//! The durable store: what the server has acknowledged, behind the [`Store`] trait.
//!
//! Why a trait: the embedded default is one process with SQLite ([`SqliteStore`]); the
//! multi-node deployment (a later issue) puts the same operations on PostgreSQL. The
//! server only ever talks to `dyn Store`.
//!
//! Durability contract (what every implementation must keep):
//! - [`Store::accept`] returns only after the claim bytes and the submission row are on
//!   stable storage; a crash at any moment leaves either nothing or the whole submission.
//! - [`Store::complete_chunk`] records a chunk's findings at most once per (submission,
//!   chunk), and only while the caller's node lease is valid (the fence against a paused or
//!   partitioned worker finishing a chunk that was already handed to another).
//!
//! Methods block (file and database I/O); async callers run them on a blocking thread.

mod blobs;
mod sqlite;

pub use blobs::BlobStore;
pub use sqlite::{SqliteStore, StoreOptions};

use serde::Serialize;
use tenken_model::Payer;

pub type SubmissionId = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("the store is shutting down")]
    Closed,
    #[error("the store's write queue is full")]
    Busy,
    #[error(
        "a submission for this institution, payer and billing month ({reception}) is already confirmed (請求確定); it cannot be replaced"
    )]
    AlreadyConfirmed { reception: String },
    #[error(
        "Idempotency-Key {key:?} was already used for a different file ({reception}); use a new key for a new file"
    )]
    IdempotencyConflict { key: String, reception: String },
    #[error("submission {0} not found")]
    NotFound(SubmissionId),
    #[error("submission {id} is {state}; {action} is not possible in that state")]
    WrongState { id: SubmissionId, state: State, action: &'static str },
    #[error("blob {0} is missing or damaged")]
    Blob(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

/// Where a submission is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Durable, waiting for a worker.
    Queued,
    /// At least one chunk is checked.
    Checking,
    /// Every chunk is checked; findings are final.
    Checked,
    /// 請求確定.
    Confirmed,
    /// Withdrawn by the institution before confirmation.
    Withdrawn,
    /// Replaced by a later submission for the same billing month (history kept).
    Superseded,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Checking => "checking",
            State::Checked => "checked",
            State::Confirmed => "confirmed",
            State::Withdrawn => "withdrawn",
            State::Superseded => "superseded",
        }
    }

    fn parse(s: &str) -> Result<State, StoreError> {
        Ok(match s {
            "queued" => State::Queued,
            "checking" => State::Checking,
            "checked" => State::Checked,
            "confirmed" => State::Confirmed,
            "withdrawn" => State::Withdrawn,
            "superseded" => State::Superseded,
            other => return Err(StoreError::Corrupt(format!("unknown state {other}"))),
        })
    }

    /// Still to be checked.
    pub fn is_pending(self) -> bool {
        matches!(self, State::Queued | State::Checking)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A submission to store.
#[derive(Debug, Clone)]
pub struct NewSubmission {
    pub payer: Payer,
    pub institution: String,
    /// `YYYY-MM` (請求年月), or "" when the IR does not say.
    pub billing_month: String,
    pub bytes: Vec<u8>,
    pub idempotency_key: Option<String>,
    /// The token that submitted it.
    pub token_id: i64,
    pub receipts: u32,
    /// How many chunks the file is split into (chunk 0 is the file-level work).
    pub chunks: u32,
    /// Receipts per receipt chunk.
    pub chunk_receipts: u32,
    /// Acceptance time, Unix milliseconds.
    pub now_ms: i64,
}

/// Counts of findings by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub error: u64,
    pub warning: u64,
    pub info: u64,
}

/// A stored submission (without its bytes or findings).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Submission {
    pub id: SubmissionId,
    /// 受付番号.
    pub reception: String,
    pub payer: Payer,
    pub institution: String,
    pub billing_month: String,
    pub digest: String,
    pub bytes: u64,
    pub receipts: u32,
    pub state: State,
    pub chunks: u32,
    pub chunk_receipts: u32,
    pub chunks_done: u32,
    pub counts: Counts,
    pub findings_dropped: u64,
    pub idempotency_key: Option<String>,
    pub token_id: i64,
    pub accepted_ms: i64,
    pub checked_ms: Option<i64>,
    pub confirmed_ms: Option<i64>,
    /// The submission this one replaced.
    pub supersedes: Option<SubmissionId>,
    pub superseded_by: Option<SubmissionId>,
    pub withdrawn_receipts: Vec<u32>,
}

/// What [`Store::accept`] did.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub submission: Submission,
    /// True when the Idempotency-Key matched an earlier submission of the same bytes: nothing
    /// new was stored.
    pub replayed: bool,
}

/// An acceptance whose blocking work is done and whose commit may still be pending: see
/// [`Store::accept_start`]. Resolve it with [`PendingAccept::wait`] (blocking threads) or
/// [`PendingAccept::done`] (async tasks).
///
/// Why: a submission waits for its group commit (an fsync) for milliseconds. A blocked
/// thread per waiting request meant hundreds of threads at 1,000 connections, and their
/// context switches cost more CPU than the storing itself; a waiting future costs nothing.
pub struct PendingAccept(Pending);

enum Pending {
    Ready(Result<Accepted, StoreError>),
    Committing(tokio::sync::oneshot::Receiver<Result<Accepted, StoreError>>),
}

impl PendingAccept {
    /// Already decided (e.g. an idempotent replay, or a refusal).
    pub fn ready(r: Result<Accepted, StoreError>) -> Self {
        PendingAccept(Pending::Ready(r))
    }

    /// Decided when the writer answers on `rx`.
    pub fn committing(rx: tokio::sync::oneshot::Receiver<Result<Accepted, StoreError>>) -> Self {
        PendingAccept(Pending::Committing(rx))
    }

    /// Blocks until durable (or refused). Must not be called on an async runtime thread.
    pub fn wait(self) -> Result<Accepted, StoreError> {
        match self.0 {
            Pending::Ready(r) => r,
            Pending::Committing(rx) => rx.blocking_recv().map_err(|_| StoreError::Closed)?,
        }
    }

    /// Resolves once durable (or refused), without holding a thread.
    pub async fn done(self) -> Result<Accepted, StoreError> {
        match self.0 {
            Pending::Ready(r) => r,
            Pending::Committing(rx) => rx.await.map_err(|_| StoreError::Closed)?,
        }
    }
}

/// A chunk's findings, as the worker hands them in.
#[derive(Debug, Clone)]
pub struct ChunkResult {
    pub submission: SubmissionId,
    pub index: u32,
    /// The node lease of the worker's process.
    pub owner: i64,
    /// The chunk's findings, serialized by the caller (JSON).
    pub findings: String,
    /// The decision record (JSON): release set(s), plugin digests, master version.
    pub decision: String,
    pub counts: Counts,
    pub now_ms: i64,
}

/// What [`Store::complete_chunk`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Recorded now; `all_done` when it was the submission's last missing chunk.
    Recorded { all_done: bool },
    /// Already recorded earlier (a re-run after a crash or a lease loss): nothing changed.
    Duplicate,
    /// The caller's lease expired (or the submission is no longer pending): not recorded.
    Fenced,
}

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Role {
    Institution { institution: String },
    Staff { payer: Payer },
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: i64,
    #[serde(flatten)]
    pub role: Role,
    pub label: String,
    pub created_ms: i64,
    pub revoked: bool,
}

/// A staff override of a payer's acceptance window for one billing month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowOverride {
    pub payer: Payer,
    pub billing_month: String,
    pub opens_ms: i64,
    pub closes_ms: i64,
    pub updated_by: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub id: i64,
    /// None: for institutions of both payers.
    pub payer: Option<Payer>,
    pub message: String,
    pub created_ms: i64,
    pub created_by: i64,
}

/// Which submissions a listing returns.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub payer: Option<Payer>,
    pub institution: Option<String>,
    /// Only ids below this (paging backwards from the newest).
    pub before: Option<SubmissionId>,
    pub limit: u32,
}

/// Where a plugin version is in its life (see docs/PLUGINS-LIFECYCLE.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    Uploaded,
    Validated,
    /// Validation ran and a gate failed.
    Failed,
    Approved,
    Retired,
}

impl PluginState {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginState::Uploaded => "uploaded",
            PluginState::Validated => "validated",
            PluginState::Failed => "failed",
            PluginState::Approved => "approved",
            PluginState::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Result<PluginState, StoreError> {
        Ok(match s {
            "uploaded" => PluginState::Uploaded,
            "validated" => PluginState::Validated,
            "failed" => PluginState::Failed,
            "approved" => PluginState::Approved,
            "retired" => PluginState::Retired,
            other => return Err(StoreError::Corrupt(format!("unknown plugin state {other}"))),
        })
    }
}

/// A plugin version to register.
#[derive(Debug, Clone)]
pub struct NewPlugin {
    pub payer: Payer,
    /// `sha256:<hex>`.
    pub digest: String,
    pub bytes: Vec<u8>,
    pub name: String,
    pub version: String,
    pub contract: String,
    /// What `describe` reported (JSON).
    pub info_json: String,
    /// Token id of the uploader; 0 = the system (bundled defaults).
    pub uploaded_by: i64,
    /// Hex public key whose signature verified, if any.
    pub signed_by: Option<String>,
    /// Bundled defaults are registered already approved.
    pub state: PluginState,
    pub now_ms: i64,
}

/// A registered plugin version (immutable bytes; state, validation and approvals change).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginRecord {
    pub payer: Payer,
    pub digest: String,
    pub name: String,
    pub version: String,
    pub contract: String,
    pub info_json: String,
    pub bytes: u64,
    pub uploaded_by: i64,
    pub uploaded_ms: i64,
    pub signed_by: Option<String>,
    pub state: PluginState,
    /// The last validation report (JSON).
    pub validation: Option<String>,
    pub approvals: Vec<i64>,
}

/// A payer's rule configuration effective from a 診療年月.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseSet {
    pub id: i64,
    pub payer: Payer,
    /// `YYYY-MM`; `0000-01` = from the beginning.
    pub from_month: String,
    /// Plugin digests, in run order.
    pub plugins: Vec<String>,
    /// `active`, `superseded` (replaced by a later activation) or `rolled-back`.
    pub state: String,
    pub created_by: i64,
    pub created_ms: i64,
    pub reason: String,
}

/// An append-only audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    pub id: i64,
    pub payer: Payer,
    /// Token id; 0 = the system.
    pub actor: i64,
    pub at_ms: i64,
    pub action: String,
    pub digest: Option<String>,
    pub release_set: Option<i64>,
    pub reason: String,
}

/// One claim file of a payer's regression corpus and its expected findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegressionCase {
    pub id: i64,
    pub payer: Payer,
    pub name: String,
    pub digest: String,
    /// JSON list of findings.
    pub expected: String,
    pub added_by: i64,
    pub added_ms: i64,
}

/// A master version of one payer: immutable source files (by digest, with their format),
/// effective from a 診療年月.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MasterVersion {
    pub id: i64,
    pub payer: Payer,
    /// `YYYY-MM`; `0000-01` = from the beginning.
    pub from_month: String,
    /// The master set's digest (its version id in decision records).
    pub digest: String,
    /// JSON list of `{"name", "blob", "format"}` in load order.
    pub sources: String,
    /// `proposed`, `active`, `superseded`, `rolled-back`.
    pub state: String,
    /// For a master converted from another payer's: that payer (joint approval needed).
    pub provided_by: Option<Payer>,
    /// Conversion proof / diff report (JSON).
    pub report: String,
    pub created_by: i64,
    pub created_ms: i64,
    pub reason: String,
    /// (approver token id, approver's payer)
    pub approvals: Vec<(i64, Payer)>,
}

/// The operations the server needs. See the module docs for the durability contract.
pub trait Store: Send + Sync {
    /// Stores the bytes and the submission; returns after both are durable. A new
    /// submission for the same (payer, institution, billing month) as a pending or checked
    /// one supersedes it (returned in `Accepted::submission.supersedes`).
    fn accept(&self, new: NewSubmission) -> Result<Accepted, StoreError> {
        self.accept_start(new)?.wait()
    }
    /// `accept` in two steps: does the blocking work that needs no waiting (hashing, the
    /// blob write, queueing the row for the next group commit) and returns what resolves
    /// once both are durable. Nothing may be acknowledged before it resolves to `Ok`.
    fn accept_start(&self, new: NewSubmission) -> Result<PendingAccept, StoreError>;
    fn get(&self, id: SubmissionId) -> Result<Option<Submission>, StoreError>;
    fn list(&self, filter: &ListFilter) -> Result<Vec<Submission>, StoreError>;
    /// Every submission for the same payer, institution and billing month, oldest first.
    fn history(&self, id: SubmissionId) -> Result<Vec<Submission>, StoreError>;
    fn bytes(&self, digest: &str) -> Result<Vec<u8>, StoreError>;
    /// Pending submissions (queued or checking) with the chunk indices still missing, oldest
    /// first: the work to resume after a restart.
    fn pending(&self) -> Result<Vec<(Submission, Vec<u32>)>, StoreError>;
    fn complete_chunk(&self, result: ChunkResult) -> Result<ChunkOutcome, StoreError>;
    /// The recorded chunk findings (JSON, as handed in), by chunk index.
    fn chunk_findings(&self, id: SubmissionId) -> Result<Vec<(u32, String)>, StoreError>;
    /// Stores the final, sorted findings of a fully checked submission and marks it checked.
    /// Idempotent.
    fn finalize(
        &self,
        id: SubmissionId,
        findings: String,
        counts: Counts,
        dropped: u64,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// The final findings (JSON) of a checked submission.
    fn findings(&self, id: SubmissionId) -> Result<Option<String>, StoreError>;
    fn confirm(&self, id: SubmissionId, now_ms: i64) -> Result<Submission, StoreError>;
    fn withdraw(&self, id: SubmissionId, now_ms: i64) -> Result<Submission, StoreError>;
    fn withdraw_receipt(&self, id: SubmissionId, receipt: u32) -> Result<Submission, StoreError>;

    /// Registers this process as a worker node with a lease of `ttl_ms`; returns its owner id.
    fn register_node(&self, now_ms: i64, ttl_ms: i64) -> Result<i64, StoreError>;
    /// Extends the lease; false when it had already expired (the node must stop recording).
    fn renew_node(&self, owner: i64, now_ms: i64, ttl_ms: i64) -> Result<bool, StoreError>;

    /// Creates a token; returns its id and the secret (shown once; only its hash is kept).
    fn create_token(&self, role: Role, label: &str, now_ms: i64) -> Result<(i64, String), StoreError>;
    fn find_token(&self, secret: &str) -> Result<Option<TokenInfo>, StoreError>;
    fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError>;
    fn revoke_token(&self, id: i64) -> Result<bool, StoreError>;

    fn window(&self, payer: Payer, billing_month: &str) -> Result<Option<WindowOverride>, StoreError>;
    fn set_window(&self, w: WindowOverride) -> Result<(), StoreError>;
    fn add_notice(&self, payer: Option<Payer>, message: &str, by: i64, now_ms: i64) -> Result<Notice, StoreError>;
    /// Newest first.
    fn notices(&self, payer: Option<Payer>, limit: u32) -> Result<Vec<Notice>, StoreError>;

    // --- plugin registry and release sets (every change is audited in the same transaction)
    /// Stores the bytes and the record; an existing (payer, digest) is returned unchanged.
    fn put_plugin(&self, p: NewPlugin) -> Result<(PluginRecord, bool), StoreError>;
    fn plugin(&self, payer: Payer, digest: &str) -> Result<Option<PluginRecord>, StoreError>;
    fn plugins(&self, payer: Payer) -> Result<Vec<PluginRecord>, StoreError>;
    /// Bytes of a plugin by its `sha256:` digest (verified).
    fn plugin_bytes(&self, digest: &str) -> Result<Vec<u8>, StoreError>;
    fn set_plugin_state(
        &self,
        payer: Payer,
        digest: &str,
        state: PluginState,
        validation: Option<String>,
        actor: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<PluginRecord, StoreError>;
    /// Records an approval; the caller checks who may approve.
    fn approve_plugin(
        &self,
        payer: Payer,
        digest: &str,
        approver: i64,
        now_ms: i64,
    ) -> Result<PluginRecord, StoreError>;
    fn add_signing_key(&self, payer: Payer, key_hex: &str, actor: i64, now_ms: i64) -> Result<(), StoreError>;
    fn signing_keys(&self, payer: Payer) -> Result<Vec<String>, StoreError>;
    /// Makes a new release set active from `from_month`, superseding the active one with the
    /// same `from_month`, atomically.
    fn activate(
        &self,
        payer: Payer,
        from_month: &str,
        plugins: &[String],
        actor: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<ReleaseSet, StoreError>;
    /// Makes an earlier release set active again (the active one with its `from_month` is
    /// marked rolled-back), atomically.
    fn rollback(&self, payer: Payer, to: i64, actor: i64, reason: &str, now_ms: i64) -> Result<ReleaseSet, StoreError>;
    /// Every release set of a payer, newest first.
    fn release_sets(&self, payer: Payer) -> Result<Vec<ReleaseSet>, StoreError>;
    fn audit(&self, payer: Payer, limit: u32) -> Result<Vec<AuditEvent>, StoreError>;
    fn add_audit(&self, e: AuditEvent) -> Result<(), StoreError>;
    fn add_regression(
        &self,
        payer: Payer,
        name: &str,
        bytes: &[u8],
        expected: &str,
        actor: i64,
        now_ms: i64,
    ) -> Result<RegressionCase, StoreError>;
    fn regression(&self, payer: Payer) -> Result<Vec<RegressionCase>, StoreError>;
    /// The decision records of a submission: per chunk, the release set, plugin digests and
    /// master version that produced its findings (JSON, as recorded).
    fn decisions(&self, id: SubmissionId) -> Result<Vec<(u32, String)>, StoreError>;

    // --- master versions
    /// Stores a file durably; returns its digest (hex).
    fn put_file(&self, bytes: &[u8]) -> Result<String, StoreError>;
    #[allow(clippy::too_many_arguments)]
    fn add_master_version(
        &self,
        payer: Payer,
        from_month: &str,
        digest: &str,
        sources: &str,
        provided_by: Option<Payer>,
        report: &str,
        actor: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<MasterVersion, StoreError>;
    fn master_versions(&self, payer: Payer) -> Result<Vec<MasterVersion>, StoreError>;
    /// Records an approval; `note` goes into the audit event (e.g. why a flagged impact was
    /// accepted).
    fn approve_master(
        &self,
        payer: Payer,
        id: i64,
        approver: i64,
        approver_payer: Payer,
        note: &str,
        now_ms: i64,
    ) -> Result<MasterVersion, StoreError>;
    /// Makes a version active (superseding the active one with the same `from_month`), or
    /// an earlier one active again (`rollback`), atomically, audited.
    fn activate_master(
        &self,
        payer: Payer,
        id: i64,
        actor: i64,
        rollback: bool,
        reason: &str,
        now_ms: i64,
    ) -> Result<MasterVersion, StoreError>;
}

/// sha256 of a token secret, hex: what the store keeps instead of the secret.
pub fn token_hash(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// sha256 of bytes, hex: a blob's address.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
