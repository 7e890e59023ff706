//! The durable store's contract: traits and types only, split by aggregate; backends live in
//! their own crates (`tenken-store-sqlite` today, PostgreSQL next).
//!
//! Why traits per aggregate: the server's concerns (checking submissions, the plugin
//! registry, master versions, access control) change at different times and a backend can
//! be reviewed one aggregate at a time. [`Store`] is their sum, plus the [`BlobStore`] and
//! `close()`. No SQLite or tokio type appears in any signature here.
//!
//! Durability contract (what every implementation must keep):
//! - [`SubmissionStore::accept_start`] resolves `Ok` only after the claim bytes and the
//!   submission row are on stable storage; a crash at any moment leaves either nothing or
//!   the whole submission, and its chunks are claimable from then on.
//! - Work is claimed ([`SubmissionStore::claim_chunks`]): each claim carries a fencing token
//!   and lasts while the claiming node's lease does. A chunk's findings are recorded at most
//!   once per (submission, chunk), and only under the fence of its current claim.
//! - Lifecycle rules (approved before activation, approver ≠ uploader, the other payer's
//!   staff cannot approve, both payers for a converted master) are checked inside the
//!   store's transaction, so a concurrent change cannot slip between check and write.
//!
//! Methods block (file and database I/O); async callers run them on a blocking thread.

mod chunking;
mod documents;
mod error;
mod pending;
mod types;

pub use chunking::{chunk_cost, chunk_count, chunk_range};
pub use documents::*;
pub use error::{Refusal, StoreError};
pub use pending::{Completer, PendingAccept};
pub use types::*;

use tenken_model::{Digest, Finding, Payer, YearMonth};

/// Submissions and their checking: acceptance, claimed chunks, results, finalization,
/// confirmation, withdrawal, and the node leases that fence results.
pub trait SubmissionStore: Send + Sync {
    /// Stores the bytes and the submission; returns after both are durable. A new
    /// submission for the same (payer, institution, billing month) as a pending or checked
    /// one supersedes it (returned in `Accepted::submission.supersedes`).
    fn accept(&self, new: NewSubmission) -> Result<Accepted, StoreError> {
        self.accept_start(new)?.wait()
    }
    /// `accept` in two steps: does the blocking work that needs no waiting (hashing, the
    /// blob write, queueing the row for the next group commit) and returns what resolves
    /// once both are durable. Nothing may be acknowledged before it resolves to `Ok`.
    /// A full write queue is [`StoreError::Busy`] at once, never a wait.
    fn accept_start(&self, new: NewSubmission) -> Result<PendingAccept, StoreError>;
    fn get(&self, id: SubmissionId) -> Result<Option<Submission>, StoreError>;
    fn list(&self, filter: &ListFilter) -> Result<Vec<Submission>, StoreError>;
    /// Every submission for the same payer, institution and billing month, oldest first.
    fn history(&self, id: SubmissionId) -> Result<Vec<Submission>, StoreError>;

    /// Claims up to `n` chunks of `payer` for `node`, in the fair order: across
    /// institutions by receipts served (start-time fair queueing, which an institution
    /// returning after idling does not jump), oldest first within one. A chunk is claimable
    /// when nobody holds it or its holder's lease has lapsed; each claim gets a new fence.
    fn claim_chunks(&self, node: NodeId, payer: Payer, n: u32, now_ms: i64) -> Result<Vec<ChunkClaim>, StoreError>;
    /// Chunks of `payer` waiting for a worker: unclaimed ones (a lapsed node's claims are
    /// counted once the next claim of that payer has released them).
    fn backlog(&self, payer: Payer, now_ms: i64) -> Result<u64, StoreError>;
    /// Gives a claimed chunk back (its check failed on this node, e.g. the database was away
    /// while it ran): claimable again at once, if `fence` is still its current claim by
    /// `node`. Returns whether it was released. Without this, a live node that keeps its
    /// lease would hold a failed chunk for ever.
    fn release_chunk(
        &self,
        node: NodeId,
        submission: SubmissionId,
        index: u32,
        fence: Fence,
    ) -> Result<bool, StoreError>;
    /// Records a chunk's findings if `result.fence` is the chunk's current claim and the
    /// claiming node's lease is valid.
    fn complete_chunk(&self, result: ChunkResult) -> Result<ChunkOutcome, StoreError>;
    /// Submissions whose chunks are all recorded but which are not finalized yet (a crash
    /// between the last chunk and finalization), oldest first.
    fn unfinalized(&self) -> Result<Vec<Submission>, StoreError>;
    /// The recorded chunk findings, by chunk index.
    fn chunk_findings(&self, id: SubmissionId) -> Result<Vec<(u32, Vec<Finding>)>, StoreError>;
    /// Stores the final, sorted findings of a fully checked submission and marks it checked.
    /// `counts` count every finding, including the `dropped` ones cut by the findings cap.
    /// Idempotent.
    fn finalize(
        &self,
        id: SubmissionId,
        findings: &[Finding],
        counts: Counts,
        dropped: u64,
        now_ms: i64,
    ) -> Result<(), StoreError>;
    /// The final findings of a checked submission.
    fn findings(&self, id: SubmissionId) -> Result<Option<Vec<Finding>>, StoreError>;
    fn confirm(&self, id: SubmissionId, now_ms: i64) -> Result<Submission, StoreError>;
    fn withdraw(&self, id: SubmissionId, now_ms: i64) -> Result<Submission, StoreError>;
    fn withdraw_receipt(&self, id: SubmissionId, receipt: u32) -> Result<Submission, StoreError>;
    /// The decision records of a submission: per chunk, the release set, plugin digests and
    /// master version that produced its findings.
    /// Pins what a file is checked with: stores `pin` unless the file has one already, and
    /// returns the file's pin (the first one stored wins, whichever node took it).
    fn pin_check(&self, id: SubmissionId, pin: &CheckPin) -> Result<CheckPin, StoreError>;
    /// The file's pin, if its checking has started (a read: every chunk looks, so a pin a
    /// rollback dropped is never used from a cache).
    fn check_pin(&self, id: SubmissionId) -> Result<Option<CheckPin>, StoreError>;
    /// Starts over the checks of the payer's pending files pinned to release set `set` or
    /// master version `master` (their chunk results and pin dropped, all their chunks
    /// claimable again; a result still in flight for one of them is fenced), so that a
    /// rolled-back version never finishes a file. Returns the files restarted.
    fn restart_pinned(
        &self,
        payer: Payer,
        set: Option<i64>,
        master: Option<i64>,
    ) -> Result<Vec<SubmissionId>, StoreError>;
    fn decisions(&self, id: SubmissionId) -> Result<Vec<(u32, DecisionRecord)>, StoreError>;

    /// Registers a worker node with a lease of `ttl_ms`.
    fn register_node(&self, name: &str, now_ms: i64, ttl_ms: i64) -> Result<NodeId, StoreError>;
    /// Extends the lease (the node's heartbeat, with what it reports); false when it had
    /// already lapsed (the node must register again: its claims are fenced).
    fn renew_node(&self, node: NodeId, now_ms: i64, ttl_ms: i64, stats: &NodeStats) -> Result<bool, StoreError>;
    /// Every registered node, newest first.
    fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError>;
}

/// Tokens, acceptance windows and notices.
pub trait AccessStore: Send + Sync {
    /// Creates a token; returns its id and the secret (shown once; only its hash is kept).
    fn create_token(&self, role: Role, label: &str, now_ms: i64) -> Result<(i64, String), StoreError>;
    fn find_token(&self, secret: &str) -> Result<Option<TokenInfo>, StoreError>;
    fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError>;
    fn revoke_token(&self, id: i64) -> Result<bool, StoreError>;

    fn window(&self, payer: Payer, billing_month: YearMonth) -> Result<Option<WindowOverride>, StoreError>;
    fn set_window(&self, w: WindowOverride) -> Result<(), StoreError>;
    fn add_notice(
        &self,
        payer: Option<Payer>,
        audience: Audience,
        message: &str,
        by: i64,
        now_ms: i64,
    ) -> Result<Notice, StoreError>;
    /// Newest first: the notices for `audience` of `payer` (and those for both payers).
    fn notices(&self, payer: Option<Payer>, audience: Audience, limit: u32) -> Result<Vec<Notice>, StoreError>;
}

/// Plugin versions, approvals, signing keys, release sets, the audit log and the regression
/// corpus. Every change is audited in the same transaction.
pub trait RegistryStore: Send + Sync {
    /// Stores the bytes and the record; an existing (payer, digest) is returned unchanged.
    fn put_plugin(&self, p: NewPlugin) -> Result<(PluginRecord, bool), StoreError>;
    fn plugin(&self, payer: Payer, digest: &Digest) -> Result<Option<PluginRecord>, StoreError>;
    fn plugins(&self, payer: Payer) -> Result<Vec<PluginRecord>, StoreError>;
    /// Moves a plugin to `state`. Retiring is refused (in the transaction, so a racing
    /// activation either commits first and the retire is refused, or after and is refused
    /// itself) while an active release set uses the plugin: `Refusal::InUse`.
    #[allow(clippy::too_many_arguments)]
    fn set_plugin_state(
        &self,
        payer: Payer,
        digest: &Digest,
        state: PluginState,
        validation: Option<ValidationReport>,
        actor: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<PluginRecord, StoreError>;
    /// Records an approval by `approver` (staff of `approver_payer`) and, once `required`
    /// approvals are in, marks the plugin approved. Refused (in the transaction) when the
    /// approver uploaded it, is another payer's staff, or the plugin is not validated.
    #[allow(clippy::too_many_arguments)]
    fn approve_plugin(
        &self,
        payer: Payer,
        digest: &Digest,
        approver: i64,
        approver_payer: Payer,
        required: u32,
        now_ms: i64,
    ) -> Result<PluginRecord, StoreError>;
    fn add_signing_key(&self, payer: Payer, key_hex: &str, actor: i64, now_ms: i64) -> Result<(), StoreError>;
    fn signing_keys(&self, payer: Payer) -> Result<Vec<String>, StoreError>;
    /// Makes a new release set active from `from_month`, superseding the active one with the
    /// same `from_month`, atomically. Refused unless every plugin is approved at that moment.
    fn activate(
        &self,
        payer: Payer,
        from_month: Option<YearMonth>,
        plugins: &[Digest],
        actor: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<ReleaseSet, StoreError>;
    /// Makes an earlier release set active again (the active one with its `from_month` is
    /// marked rolled-back), atomically.
    fn rollback(&self, payer: Payer, to: i64, actor: i64, reason: &str, now_ms: i64) -> Result<ReleaseSet, StoreError>;
    /// Every release set of a payer, newest first.
    fn release_sets(&self, payer: Payer) -> Result<Vec<ReleaseSet>, StoreError>;
    fn release_set(&self, payer: Payer, id: i64) -> Result<Option<ReleaseSet>, StoreError>;
    fn audit(&self, payer: Payer, limit: u32) -> Result<Vec<AuditEvent>, StoreError>;
    fn add_audit(&self, e: AuditEvent) -> Result<(), StoreError>;
    fn add_regression(
        &self,
        payer: Payer,
        name: &str,
        bytes: &[u8],
        expected: &[Finding],
        actor: i64,
        now_ms: i64,
    ) -> Result<RegressionCase, StoreError>;
    fn regression(&self, payer: Payer) -> Result<Vec<RegressionCase>, StoreError>;
}

/// Master versions of each payer.
pub trait MasterStore: Send + Sync {
    #[allow(clippy::too_many_arguments)]
    fn add_master_version(
        &self,
        payer: Payer,
        from_month: Option<YearMonth>,
        digest: &Digest,
        sources: &[MasterSource],
        provided_by: Option<Payer>,
        report: &MasterReport,
        actor: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<MasterVersion, StoreError>;
    /// Adds a version and makes it active at once, without approvals: the operator's
    /// install with direct access to the store (first start, `tenken master import`), never
    /// reachable through the API. Audited as `master-install`.
    #[allow(clippy::too_many_arguments)]
    fn install_master(
        &self,
        payer: Payer,
        from_month: Option<YearMonth>,
        digest: &Digest,
        sources: &[MasterSource],
        actor: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<MasterVersion, StoreError>;
    fn master_versions(&self, payer: Payer) -> Result<Vec<MasterVersion>, StoreError>;
    fn master_version(&self, payer: Payer, id: i64) -> Result<Option<MasterVersion>, StoreError>;
    /// Records an approval; `note` goes into the audit event (e.g. why a flagged impact was
    /// accepted). Refused (in the transaction) unless the approver is staff of the version's
    /// payer or of the payer that provided it.
    #[allow(clippy::too_many_arguments)]
    fn approve_master(
        &self,
        payer: Payer,
        id: i64,
        approver: i64,
        approver_payer: Payer,
        note: &str,
        now_ms: i64,
    ) -> Result<MasterVersion, StoreError>;
    /// Takes back a proposal (state `withdrawn`, audited): it can no longer be approved or
    /// activated. Refused (in the transaction) unless the version is still proposed.
    fn withdraw_master(
        &self,
        payer: Payer,
        id: i64,
        actor: i64,
        reason: &str,
        now_ms: i64,
    ) -> Result<MasterVersion, StoreError>;
    /// Replaces a proposed version's report (its diff and impact check run again against the
    /// version now in force for its month), audited as `master-recheck`; refused unless the
    /// version is still proposed. Approvals given on the old report are kept: the approvers
    /// saw the version's files, and approval checks the new report's impact again.
    fn set_master_report(
        &self,
        payer: Payer,
        id: i64,
        report: &MasterReport,
        actor: i64,
        now_ms: i64,
    ) -> Result<MasterVersion, StoreError>;
    /// Makes a version active (superseding the active one with the same `from_month`), or
    /// an earlier one active again (`rollback`), atomically, audited. `rollback` of the
    /// active version itself undoes it: it is rolled back, and the newest earlier version of
    /// its month (or else the versions of earlier months) is in force again; refused when no
    /// master would be in force. Activation is refused
    /// (in the transaction) unless staff of the payer, and of the providing payer for a
    /// converted master, have approved it.
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

/// Content-addressed bytes: claim files, plugin components, master source files.
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` durably; returns their digest (the blob's address).
    fn put(&self, bytes: &[u8]) -> Result<Digest, StoreError>;
    /// Reads a blob by its digest and verifies it.
    fn get(&self, digest: &Digest) -> Result<Vec<u8>, StoreError>;
}

/// Everything the server needs of its store.
pub trait Store: SubmissionStore + AccessStore + RegistryStore + MasterStore {
    fn blobs(&self) -> &dyn BlobStore;
    /// Stops taking writes after the queued ones are committed; later calls fail with
    /// [`StoreError::Closed`].
    fn close(&self);
    /// Other nodes' changes, for a backend several nodes share; `None` for one that only
    /// one process uses (SQLite).
    fn subscribe(&self) -> Result<Option<Box<dyn ChangeFeed>>, StoreError> {
        Ok(None)
    }
    /// Holds a lock across every process sharing the store until the guard is dropped, for
    /// the first start's bootstrap (first masters, first release sets, regression seeds):
    /// nodes starting together on an empty database bootstrap once. `None` where one
    /// process owns the store.
    fn bootstrap_lock(&self) -> Result<Option<Box<dyn Send>>, StoreError> {
        Ok(None)
    }
    /// Which backend this is (`sqlite`, `postgres`), for `/healthz` and the cluster view.
    fn backend(&self) -> &'static str;

    /// Bytes by digest (shorthand for `blobs().get`).
    fn bytes(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        self.blobs().get(digest)
    }
    /// Stores a file durably; returns its digest (shorthand for `blobs().put`).
    fn put_file(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        self.blobs().put(bytes)
    }
    /// Bytes of a plugin by its digest (verified).
    fn plugin_bytes(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        self.blobs().get(digest)
    }
}

/// sha256 of a token secret, hex: what the store keeps instead of the secret.
pub fn token_hash(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// sha256 of bytes: a blob's address.
pub fn digest(bytes: &[u8]) -> Digest {
    use sha2::Digest as _;
    Digest::from_sha256(sha2::Sha256::digest(bytes).into())
}

/// 受付番号: payer letter, acceptance date in Japan, submission id (`S20261208-00000042`).
/// One spelling for every backend: institutions quote it to their payer.
pub fn reception_number(payer: Payer, id: SubmissionId, now_ms: i64) -> String {
    let jst = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(time::UtcOffset::from_hms(9, 0, 0).expect("JST offset"));
    let letter = match payer {
        Payer::Ssk => 'S',
        Payer::Kokuho => 'K',
    };
    format!("{letter}{:04}{:02}{:02}-{id:08}", jst.year(), jst.month() as u8, jst.day())
}

impl AuditEvent {
    /// An event to append (its id is the store's to give).
    pub fn new(
        payer: Payer,
        actor: i64,
        at_ms: i64,
        action: &str,
        digest: Option<&Digest>,
        release_set: Option<i64>,
        reason: &str,
    ) -> AuditEvent {
        AuditEvent {
            id: 0,
            payer,
            actor,
            at_ms,
            action: action.to_owned(),
            digest: digest.copied(),
            release_set,
            reason: reason.to_owned(),
        }
    }
}
