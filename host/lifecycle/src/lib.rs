//! The lifecycle domain that the server and the CLI share, so each is defined once: what
//! "the same finding" is when two runs are compared ([`delta`]), the round-trip proof a
//! master conversion must pass before it is used ([`proof`]), the master impact check
//! ([`impact`]) and its semantic diff ([`diff_report`]), plugin validation ([`validate`])
//! and the regression corpus a payer starts with ([`regression`]). It computes reports from what it is handed; the caller reads files and
//! the store.
//!
//! Why a crate of its own: the server (validation, impact check, `convert-for`, replay) and
//! the CLI (`tenken master impact`, `bench-masters`) each carried copies of these, with
//! three different "same finding" keys. Nothing here knows HTTP or a store.

#![forbid(unsafe_code)]

pub mod delta;
pub mod impact;
pub mod proof;
pub mod regression;
pub mod validate;

pub use delta::{Delta, delta};
pub use impact::{ExampleLimits, Impact};
pub use proof::{Proof, ProofError, round_trip, round_trip_through};
pub use regression::{SeedCase, seed_cases};
pub use validate::{CheckerValidation, ConverterValidation, Gates};

/// Changed entries shown per master kind in a diff report.
const DIFF_EXAMPLES_MAX: usize = 5;

/// The semantic diff of a proposed master set against the one in force, per kind: counts
/// plus the first changed entries (what staff read before approving).
pub fn diff_report(
    current: &tenken_master::MasterSet,
    proposed: &tenken_master::MasterSet,
) -> Vec<tenken_store::KindDiff> {
    tenken_master::canon::semantic_diff(current, proposed)
        .iter()
        .map(|d| tenken_store::KindDiff {
            kind: d.kind,
            added: d.added.len(),
            changed: d.changed.len(),
            abolished: d.abolished.len(),
            restored: d.restored.len(),
            removed: d.removed.len(),
            examples: d
                .changed
                .iter()
                .take(DIFF_EXAMPLES_MAX)
                .map(|(code, fields)| tenken_store::ChangedEntry {
                    code: code.clone(),
                    fields: fields.iter().map(|f| format!("{} {} → {}", f.field, f.expected, f.got)).collect(),
                })
                .collect(),
        })
        .collect()
}
