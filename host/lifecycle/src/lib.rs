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

/// How much of a diff a report lists (the counts are always the totals).
#[derive(Debug, Clone, Copy)]
pub struct DiffLimits {
    /// Entries listed per kind and list (added, 点数 changes, abolished, restored, removed).
    pub codes_listed_max: usize,
    /// Changed entries shown field by field per kind.
    pub examples_max: usize,
}

impl DiffLimits {
    /// Everything (the CLI on two directories).
    pub const ALL: DiffLimits = DiffLimits { codes_listed_max: usize::MAX, examples_max: usize::MAX };
}

/// The semantic diff of a proposed master set against the one in force, per kind: totals,
/// the added / abolished / restored / removed entries and the 点数 changes with their names,
/// and the changed entries field by field with each field in words (what staff read before
/// approving).
pub fn diff_report(
    current: &tenken_master::MasterSet,
    proposed: &tenken_master::MasterSet,
    limits: DiffLimits,
) -> Vec<tenken_store::KindDiff> {
    use std::collections::HashMap;
    use tenken_master::canon::to_canon;
    use tenken_model::CanonRow;
    tenken_master::canon::semantic_diff(current, proposed)
        .into_iter()
        .map(|d| {
            let kind = d.kind;
            let rows = |set: &tenken_master::MasterSet| -> HashMap<String, CanonRow> {
                match kind {
                    Some(k) => set.rows(k).map(|r| (r.code.clone(), to_canon(r))).collect(),
                    None => HashMap::new(),
                }
            };
            let (old, new) = (rows(current), rows(proposed));
            let name = |code: &str| new.get(code).or_else(|| old.get(code)).map(|r| r.name.clone()).unwrap_or_default();
            let entry = |r: Option<&CanonRow>, code: &str, date: Option<tenken_model::Date>| tenken_store::CodeEntry {
                code: code.to_owned(),
                name: name(code),
                value: r.map(|r| r.value.clone()).unwrap_or_default(),
                date,
            };
            let list = |codes: &[String], pick: &dyn Fn(&str) -> tenken_store::CodeEntry| {
                codes.iter().take(limits.codes_listed_max).map(|c| pick(c)).collect::<Vec<_>>()
            };
            let value_changes: Vec<tenken_store::ValueChange> = d
                .changed
                .iter()
                .filter(|(_, fields)| fields.iter().any(|f| f.field == "value"))
                .map(|(code, fields)| {
                    let f = fields.iter().find(|f| f.field == "value").expect("filtered on it");
                    tenken_store::ValueChange {
                        code: code.clone(),
                        name: name(code),
                        old: f.expected.clone(),
                        new: f.got.clone(),
                    }
                })
                .collect();
            tenken_store::KindDiff {
                kind,
                added: d.added.len(),
                changed: d.changed.len(),
                abolished: d.abolished.len(),
                restored: d.restored.len(),
                removed: d.removed.len(),
                value_changed: value_changes.len(),
                examples: d
                    .changed
                    .iter()
                    .take(limits.examples_max)
                    .map(|(code, fields)| tenken_store::ChangedEntry {
                        code: code.clone(),
                        name: name(code),
                        fields: fields
                            .iter()
                            .map(|f| tenken_store::FieldChange {
                                label: kind
                                    .map(|k| tenken_master::labels::field_label(k, &f.field))
                                    .unwrap_or_else(|| f.field.clone()),
                                field: f.field.clone(),
                                old: f.expected.clone(),
                                new: f.got.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
                added_codes: list(&d.added, &|c| entry(new.get(c), c, new.get(c).and_then(|r| r.changed_on))),
                value_changes: value_changes.into_iter().take(limits.codes_listed_max).collect(),
                abolished_codes: list(&d.abolished, &|c| entry(new.get(c), c, new.get(c).and_then(|r| r.abolished_on))),
                restored_codes: list(&d.restored, &|c| entry(new.get(c), c, new.get(c).and_then(|r| r.changed_on))),
                removed_codes: list(&d.removed, &|c| entry(old.get(c), c, None)),
            }
        })
        .collect()
}
