//! An acceptance whose commit may still be pending, awaitable without holding a thread.
//!
//! Why: a submission waits for its group commit (an fsync) for milliseconds. A blocked
//! thread per waiting request meant hundreds of threads at 1,000 connections, and their
//! context switches cost more CPU than the storing itself; a waiting future costs nothing.
//! The channel is an implementation detail: backends get a [`Completer`], never a tokio type.

use crate::{Accepted, StoreError};

/// See [`crate::SubmissionStore::accept_start`]. Resolve it with [`PendingAccept::wait`]
/// (blocking threads) or [`PendingAccept::done`] (async tasks).
pub struct PendingAccept(Pending);

enum Pending {
    Ready(Result<Accepted, StoreError>),
    Committing(tokio::sync::oneshot::Receiver<Result<Accepted, StoreError>>),
}

/// The backend's half: completes the [`PendingAccept`] it was made with.
pub struct Completer(tokio::sync::oneshot::Sender<Result<Accepted, StoreError>>);

impl Completer {
    /// Resolves the pending acceptance (a dropped waiter is not an error: the submission is
    /// stored either way and a retry with its Idempotency-Key finds it).
    pub fn complete(self, r: Result<Accepted, StoreError>) {
        let _ = self.0.send(r);
    }
}

impl PendingAccept {
    /// Already decided (e.g. an idempotent replay, or a refusal).
    pub fn ready(r: Result<Accepted, StoreError>) -> Self {
        PendingAccept(Pending::Ready(r))
    }

    /// Decided when the backend calls [`Completer::complete`]; dropping the completer
    /// resolves it to [`StoreError::Closed`].
    pub fn channel() -> (Completer, PendingAccept) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Completer(tx), PendingAccept(Pending::Committing(rx)))
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
