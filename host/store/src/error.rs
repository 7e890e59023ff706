//! The store's one error type: backend-neutral, so callers never see SQLite (or PostgreSQL).

use crate::{State, SubmissionId};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The backend failed (a database error, a failed commit); the message is the backend's.
    #[error("database error: {0}")]
    Backend(String),
    /// The database cannot be reached (restarting, network trouble): nothing was written;
    /// retry later. The server answers 503 + Retry-After, never 500.
    #[error("the database is unavailable ({0}); retry later")]
    Unavailable(String),
    #[error("the store is shutting down")]
    Closed,
    /// A bound was reached (the write queue is full): retry later. Never a wait.
    #[error("the store is busy ({what} is full); retry later")]
    Busy { what: &'static str },
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
    /// A lifecycle rule refused the change (checked inside the store's transaction, so no
    /// concurrent change can slip between the check and the write).
    #[error("{0}")]
    Refused(Refusal),
    #[error("{what} not found")]
    Missing { what: String },
    #[error("blob {0} is missing or damaged")]
    Blob(String),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

/// Why a lifecycle change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("plugin {digest} is {state}; only approved plugins can be activated (validate and approve it first)")]
    NotApproved { digest: String, state: String },
    #[error("the uploader of a plugin cannot approve it; another member of the payer's staff must")]
    SelfApproval,
    #[error("staff of {approver} cannot approve a {payer} change; {payer} staff must")]
    OtherPayer { approver: tenken_model::Payer, payer: tenken_model::Payer },
    #[error("plugin {digest} is {state}; it cannot be approved in that state (validate it first)")]
    NotApprovable { digest: String, state: String },
    #[error("master version {id} is {state}; {action} is not possible in that state")]
    MasterState { id: i64, state: crate::MasterState, action: &'static str },
    #[error("master version {id} needs approval by {needed} before it can be activated")]
    MasterNotApproved { id: i64, needed: String },
    #[error("release set {id} is {state}; it cannot be rolled back to")]
    ReleaseState { id: i64, state: String },
    #[error("plugin {digest} is in live release set(s) {sets:?}; activate sets without it first")]
    InUse { digest: String, sets: Vec<i64> },
}
