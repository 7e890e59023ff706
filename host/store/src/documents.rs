//! The lifecycle documents the store keeps (what a plugin described, validation and impact
//! reports, master sources, decision records), as types: backends serialize them at their
//! edge and parse them strictly when read, so no caller ever pokes at JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tenken_model::{Digest, MasterKind, RuleInfo};

/// What a plugin is: the two worlds of the WIT contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// An `office-check` rule plugin: joins release sets.
    Checker,
    /// A `master-format` converter: decodes and encodes master files.
    Converter,
}

impl PluginKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Checker => "checker",
            PluginKind::Converter => "converter",
        }
    }
}

/// What a plugin's `describe` reported, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Described {
    Checker { rules: Vec<RuleInfo> },
    Converter { kinds: Vec<MasterKind> },
}

impl Described {
    pub fn kind(&self) -> PluginKind {
        match self {
            Described::Checker { .. } => PluginKind::Checker,
            Described::Converter { .. } => PluginKind::Converter,
        }
    }
}

/// One gate of a validation: passed or not, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gate {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// Changes of one rule (or, for a converter, one field) in a validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleDelta {
    pub new: usize,
    pub vanished: usize,
    pub examples: Vec<String>,
}

/// A validation report: a rule plugin against the release set it would join over the
/// payer's regression corpus, or a converter's round trip over the payer's master files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub candidate: Digest,
    /// The release set the candidate was compared against (0 for a converter).
    pub base_release_set: i64,
    /// The plugin of the same name the candidate replaces in that set.
    pub replaces: Option<Digest>,
    pub cases: usize,
    pub new_findings: usize,
    pub vanished_findings: usize,
    pub plugin_failures: usize,
    pub by_rule: BTreeMap<String, RuleDelta>,
    pub gates: Vec<Gate>,
    pub passed: bool,
}

/// Where a master version is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MasterState {
    /// Waiting for approval and activation.
    Proposed,
    Active,
    /// Replaced by a later activation for the same months.
    Superseded,
    /// Replaced by a rollback to an earlier version.
    RolledBack,
    /// A proposal its payer's staff took back before activation: never activatable.
    Withdrawn,
}

impl MasterState {
    pub fn as_str(self) -> &'static str {
        match self {
            MasterState::Proposed => "proposed",
            MasterState::Active => "active",
            MasterState::Superseded => "superseded",
            MasterState::RolledBack => "rolled-back",
            MasterState::Withdrawn => "withdrawn",
        }
    }

    /// Strict: the spellings `as_str` gives.
    pub fn parse(s: &str) -> Option<MasterState> {
        [
            MasterState::Proposed,
            MasterState::Active,
            MasterState::Superseded,
            MasterState::RolledBack,
            MasterState::Withdrawn,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

impl std::fmt::Display for MasterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One source file of a master version: its name (which says its kind and whether it is a
/// 差分), its bytes by digest, and the format (converter name) that decodes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterSource {
    pub name: String,
    pub blob: Digest,
    pub format: String,
}

impl MasterSource {
    /// The master kind its name's first letter says (`s_…` procedure, `y_…` drug, …).
    pub fn kind(&self) -> Option<MasterKind> {
        let c = self.name.chars().next()?.to_ascii_lowercase();
        MasterKind::ALL.into_iter().find(|k| k.letter() == c)
    }
}

/// Findings changed by a proposed master, for one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleImpact {
    pub rule: String,
    pub new: usize,
    pub vanished: usize,
    /// Examples as `file#receipt` (`-` for a file-level finding).
    pub receipts: Vec<String>,
}

/// The impact check of a proposed master: files re-checked under the current and the
/// proposed master with the release set in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpactReport {
    /// Regression-corpus cases re-checked.
    pub cases: usize,
    /// Stored submissions sampled and their receipts (absent in reports of releases that
    /// did not sample yet).
    #[serde(default)]
    pub sampled_submissions: usize,
    #[serde(default)]
    pub sampled_receipts: u64,
    /// Findings changed in all (new + vanished).
    pub changed: usize,
    /// `master_impact_delta_max` when it ran.
    pub threshold: usize,
    /// `changed > threshold`: approval then needs a deliberate acceptance with a reason.
    pub flagged: bool,
    pub rules: Vec<RuleImpact>,
}

/// A changed master entry in a diff's examples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedEntry {
    pub code: String,
    /// `field old → new`.
    pub fields: Vec<String>,
}

/// The semantic diff of one master kind against the version in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindDiff {
    pub kind: Option<MasterKind>,
    pub added: usize,
    pub changed: usize,
    pub abolished: usize,
    pub restored: usize,
    pub removed: usize,
    pub examples: Vec<ChangedEntry>,
}

/// One converted file of a version converted for the other payer, proven by a round trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenFile {
    pub name: String,
    pub rows: usize,
    pub source_blob: Digest,
    pub blob: Digest,
}

/// What staff approve a master version on. A version installed by the operator has none
/// of it; a proposed one has its diff and impact; a converted one also its proof.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterReport {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<KindDiff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<ImpactReport>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proof: Vec<ProvenFile>,
    /// For a converted version: the other payer's version it was converted from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_version: Option<i64>,
}

/// Which release set and master produced a part of a chunk's findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionEntry {
    pub release_set: i64,
    /// When the chunk started on that set (Unix ms).
    pub started_ms: i64,
    /// Plugin digests, in run order.
    pub plugins: Vec<Digest>,
    pub master_version: i64,
    /// The master set's digest.
    pub masters: Digest,
    /// The receipt index range `[from, to)` of the chunk it covers; None: the whole chunk.
    pub receipts: Option<(u32, u32)>,
}

/// The decision record of a chunk: what it was checked with, so a replay reproduces it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecord {
    /// The node that checked it (absent in records written before nodes had names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub sets: Vec<DecisionEntry>,
}
