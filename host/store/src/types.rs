//! The store's data types: what is persisted, typed, independent of any backend.

use serde::Serialize;
use tenken_model::{Digest, Finding, Payer, YearMonth};

use crate::{DecisionRecord, Described, MasterReport, MasterSource, MasterState, PluginKind, ValidationReport};

/// `YearMonth` as JSON: `"YYYY-MM"`.
fn month_str<S: serde::Serializer>(m: &YearMonth, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(m)
}

/// `Option<YearMonth>` as JSON: `"YYYY-MM"`, or null for "from the beginning".
fn month_json<S: serde::Serializer>(m: &Option<YearMonth>, s: S) -> Result<S::Ok, S::Error> {
    match m {
        Some(m) => s.serialize_str(&m.to_string()),
        None => s.serialize_none(),
    }
}

use crate::StoreError;

pub type SubmissionId = i64;

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

    pub fn parse(s: &str) -> Result<State, StoreError> {
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
    /// 請求年月, when the IR says one.
    pub billing_month: Option<YearMonth>,
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
    /// 請求年月 (`YYYY-MM`), when the IR says one.
    #[serde(serialize_with = "month_json")]
    pub billing_month: Option<YearMonth>,
    pub digest: Digest,
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

/// A chunk's findings, as the worker hands them in.
#[derive(Debug, Clone)]
pub struct ChunkResult {
    pub submission: SubmissionId,
    pub index: u32,
    /// The node that claimed the chunk and the fencing token of its claim: the result is
    /// recorded only while that claim is still the chunk's current one.
    pub node: NodeId,
    pub fence: Fence,
    pub findings: Vec<Finding>,
    /// What the chunk was checked with: release set(s), plugin digests, master version.
    pub decision: DecisionRecord,
    pub counts: Counts,
    pub now_ms: i64,
    /// The file's pin the chunk was checked under: recorded only while it is still the
    /// file's pin (a rollback that restarted the file dropped it), else fenced.
    pub pin: Option<crate::CheckPin>,
}

/// What [`Store::complete_chunk`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// Recorded now; `all_done` when it was the submission's last missing chunk.
    Recorded { all_done: bool },
    /// Already recorded earlier (a re-run after a crash or a lease loss): nothing changed.
    Duplicate,
    /// The caller's claim is no longer current (its node lease lapsed and the chunk was
    /// claimed again, or the submission was withdrawn or superseded): not recorded.
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
    #[serde(serialize_with = "month_str")]
    pub billing_month: YearMonth,
    pub opens_ms: i64,
    pub closes_ms: i64,
    pub updated_by: i64,
    pub updated_ms: i64,
}

/// Who a notice is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    /// The payer's institutions (what a 202 and `GET /v1/notices` show them).
    Institutions,
    /// The payer's staff only (e.g. an automatic rollback): never shown to institutions.
    Staff,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Institutions => "institutions",
            Audience::Staff => "staff",
        }
    }

    pub fn parse(s: &str) -> Result<Audience, StoreError> {
        match s {
            "institutions" => Ok(Audience::Institutions),
            "staff" => Ok(Audience::Staff),
            other => Err(StoreError::Corrupt(format!("unknown notice audience {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    pub id: i64,
    /// None: for institutions of both payers.
    pub payer: Option<Payer>,
    pub audience: Audience,
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
    pub digest: Digest,
    pub bytes: Vec<u8>,
    pub name: String,
    pub version: String,
    pub contract: String,
    /// What `describe` reported.
    pub described: Described,
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
    pub digest: Digest,
    pub name: String,
    pub version: String,
    pub contract: String,
    pub described: Described,
    pub bytes: u64,
    pub uploaded_by: i64,
    pub uploaded_ms: i64,
    pub signed_by: Option<String>,
    pub state: PluginState,
    /// The last validation report.
    pub validation: Option<ValidationReport>,
    pub approvals: Vec<i64>,
}

impl PluginRecord {
    pub fn kind(&self) -> PluginKind {
        self.described.kind()
    }
}

/// Where a release set is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseState {
    Active,
    /// Replaced by a later activation for the same months.
    Superseded,
    /// Replaced by a rollback to an earlier set.
    RolledBack,
}

impl ReleaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseState::Active => "active",
            ReleaseState::Superseded => "superseded",
            ReleaseState::RolledBack => "rolled-back",
        }
    }

    pub fn parse(s: &str) -> Result<ReleaseState, StoreError> {
        match s {
            "active" => Ok(ReleaseState::Active),
            "superseded" => Ok(ReleaseState::Superseded),
            "rolled-back" => Ok(ReleaseState::RolledBack),
            other => Err(StoreError::Corrupt(format!("unknown release set state {other:?}"))),
        }
    }
}

impl std::fmt::Display for ReleaseState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payer's rule configuration effective from a 診療年月.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseSet {
    pub id: i64,
    pub payer: Payer,
    /// The first 診療年月 it applies to; None = from the beginning.
    #[serde(serialize_with = "month_json")]
    pub from_month: Option<YearMonth>,
    /// Plugin digests, in run order.
    pub plugins: Vec<Digest>,
    pub state: ReleaseState,
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
    pub digest: Option<Digest>,
    pub release_set: Option<i64>,
    pub reason: String,
}

/// One claim file of a payer's regression corpus and its expected findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegressionCase {
    pub id: i64,
    pub payer: Payer,
    pub name: String,
    pub digest: Digest,
    /// What the release set in force found when the case was added.
    #[serde(skip)]
    pub expected: Vec<Finding>,
    pub added_by: i64,
    pub added_ms: i64,
}

/// A master version of one payer: immutable source files (by digest, with their format),
/// effective from a 診療年月.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MasterVersion {
    pub id: i64,
    pub payer: Payer,
    /// The first 診療年月 it applies to; None = from the beginning.
    #[serde(serialize_with = "month_json")]
    pub from_month: Option<YearMonth>,
    /// The master set's digest (its version id in decision records).
    pub digest: Digest,
    /// The source files, in load order (full files, then 差分 by date).
    pub sources: Vec<MasterSource>,
    pub state: MasterState,
    /// For a master converted from another payer's: that payer (joint approval needed).
    pub provided_by: Option<Payer>,
    /// What staff approve it on: diff, impact check, conversion proof.
    pub report: MasterReport,
    pub created_by: i64,
    pub created_ms: i64,
    pub reason: String,
    /// (approver token id, approver's payer)
    pub approvals: Vec<(i64, Payer)>,
}

/// A node's identity in the store: the owner of its lease. A node whose lease lapsed (a
/// long pause) registers again and gets a new one, so results computed under the old one
/// are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct NodeId(pub i64);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {}", self.0)
    }
}

/// A fencing token: strictly increasing over every claim the store hands out. A chunk's
/// result is recorded only under the fence of the chunk's current claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Fence(pub i64);

/// A chunk claimed by a node: it is the node's to check until its lease lapses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkClaim {
    pub submission: SubmissionId,
    pub index: u32,
    /// Receipts the chunk covers (1 for the file-level chunk 0): its cost in the fair order.
    pub cost: u32,
    pub fence: Fence,
}

/// A registered node: its lease and what it reported with its last heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInfo {
    pub id: NodeId,
    pub name: String,
    pub started_ms: i64,
    pub expires_ms: i64,
    /// When the node last renewed its lease (its heartbeat), ms since the epoch.
    pub heartbeat_ms: i64,
    /// What the node reported with that heartbeat.
    pub stats: NodeStats,
}

/// What a node reports with each heartbeat, per payer: its work over the last
/// `window_ms` (the cluster view's balance is computed from these).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct NodeStats {
    /// The window the figures cover, milliseconds.
    pub window_ms: i64,
    pub payers: Vec<PayerLoad>,
}

/// One payer's work on one node over the stats window.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PayerLoad {
    pub payer: tenken_model::Payer,
    /// The payer's check workers on the node.
    pub workers: u32,
    pub chunks: u64,
    pub receipts: u64,
    /// Worker-seconds spent checking / (workers × window seconds): 0 idle, 1 every worker busy.
    pub busy: f64,
}

/// What another node changed, as a node hears it (a backend for several nodes publishes
/// these; the single-node SQLite backend has no other node to hear from).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// Work of the payer became claimable (an acceptance, a restart, released claims).
    Work(tenken_model::Payer),
    /// The payer's registry changed (an activation, rollback, master change, approval…):
    /// reload the live tables.
    Swap(tenken_model::Payer),
}

/// A subscription to other nodes' changes.
pub trait ChangeFeed: Send {
    /// Waits at most `timeout` for changes; an empty list is a timeout. An error means the
    /// subscription broke (the database went away): subscribe again later; changes made
    /// meanwhile must be found by looking (the registry's audit head), not by this feed.
    fn wait(&mut self, timeout: std::time::Duration) -> Result<Vec<Change>, crate::StoreError>;
}
