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
    /// The files were re-checked as if they were of this 診療年月 (the proposal's first
    /// month, which the files' own months precede); None: at their own months.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_month")]
    pub as_of: Option<tenken_model::YearMonth>,
    /// How many of the files were re-dated to `as_of`.
    #[serde(default)]
    pub redated_files: usize,
}

/// One field of a changed master entry: the canonical field (`value`, `c035`), what the
/// column is called (`新又は現点数`, `上限回数`), the old and the new value (dates as
/// `YYYY-MM-DD`, an absent date as `-`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "FieldChangeRepr")]
pub struct FieldChange {
    pub field: String,
    pub label: String,
    pub old: String,
    pub new: String,
}

/// Reports stored before fields were typed hold `"field old → new"` strings; they are read
/// into the typed form (the label is then the canonical field).
#[derive(Deserialize)]
#[serde(untagged)]
enum FieldChangeRepr {
    Typed { field: String, label: String, old: String, new: String },
    Legacy(String),
}

impl From<FieldChangeRepr> for FieldChange {
    fn from(r: FieldChangeRepr) -> FieldChange {
        match r {
            FieldChangeRepr::Typed { field, label, old, new } => FieldChange { field, label, old, new },
            FieldChangeRepr::Legacy(s) => {
                let (field, rest) = s.split_once(' ').unwrap_or((s.as_str(), ""));
                let (old, new) = rest.split_once(" → ").unwrap_or((rest, ""));
                FieldChange {
                    field: field.to_owned(),
                    label: field.to_owned(),
                    old: old.to_owned(),
                    new: new.to_owned(),
                }
            }
        }
    }
}

/// A changed master entry: its code, its name, and each changed field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedEntry {
    pub code: String,
    #[serde(default)]
    pub name: String,
    pub fields: Vec<FieldChange>,
}

/// An added, abolished or removed master entry as staff read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeEntry {
    pub code: String,
    pub name: String,
    /// 点数 / 金額 as the master states it (empty for masters without one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// 変更年月日 (added) or 廃止年月日 (abolished), `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_date")]
    pub date: Option<tenken_model::Date>,
}

/// A 点数 / 金額 change of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueChange {
    pub code: String,
    pub name: String,
    pub old: String,
    pub new: String,
}

/// Months in documents as `YYYY-MM`.
mod opt_month {
    use serde::{Deserialize, Deserializer, Serializer};
    use tenken_model::YearMonth;

    pub fn serialize<S: Serializer>(m: &Option<YearMonth>, s: S) -> Result<S::Ok, S::Error> {
        match m {
            Some(m) => s.serialize_str(&m.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<YearMonth>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else { return Ok(None) };
        s.parse().map(Some).map_err(|e: tenken_model::MonthError| serde::de::Error::custom(e.to_string()))
    }
}

/// Dates in reports as `YYYY-MM-DD`.
mod opt_date {
    use serde::{Deserialize, Deserializer, Serializer};
    use tenken_model::Date;

    pub fn serialize<S: Serializer>(d: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&d.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else { return Ok(None) };
        Date::parse_yyyymmdd(&s.replace('-', ""))
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("not a date (YYYY-MM-DD): {s:?}")))
    }
}

/// The semantic diff of one master kind against the version in force for the proposal's
/// first month: counts of every kind of change, and the entries themselves (each list
/// bounded by `api.master_diff_codes_listed_max`, the field-by-field examples by
/// `api.master_diff_examples_max`; the counts are always the totals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindDiff {
    pub kind: Option<MasterKind>,
    pub added: usize,
    pub changed: usize,
    pub abolished: usize,
    pub restored: usize,
    pub removed: usize,
    /// Entries whose 点数 / 金額 changed (counted among `changed`).
    #[serde(default)]
    pub value_changed: usize,
    /// Changed entries, field by field (the first ones).
    pub examples: Vec<ChangedEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub added_codes: Vec<CodeEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_changes: Vec<ValueChange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub abolished_codes: Vec<CodeEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restored_codes: Vec<CodeEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_codes: Vec<CodeEntry>,
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
    /// The version the diff and the impact compare against: the one in force for the
    /// proposal's first 診療年月 when it was proposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compared_with: Option<i64>,
}

/// A live release set or master version as a check pin names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pinned {
    pub id: i64,
    /// Its first 診療年月 (None = from the beginning).
    #[serde(with = "opt_month")]
    pub from: Option<tenken_model::YearMonth>,
}

/// What a claim file is checked with, taken when its checking starts: the payer's live
/// release sets and master versions at that moment (each sorted by month). Every chunk of
/// the file, on any node and after any swap or restart, picks its set and master per
/// 診療年月 from these, so one file is never split between two masters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckPin {
    /// When the pin was taken (Unix ms).
    pub taken_ms: i64,
    pub sets: Vec<Pinned>,
    pub masters: Vec<Pinned>,
}

impl CheckPin {
    /// The same sets and masters (the time it was taken aside).
    pub fn same_tables(&self, other: &CheckPin) -> bool {
        self.sets == other.sets && self.masters == other.masters
    }
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
    /// When the file's check pin was taken (its checking started): the set and master are
    /// those in force then (absent in records written before files were pinned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_ms: Option<i64>,
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
