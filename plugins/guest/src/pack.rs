//! `Pack`: a rule plugin as plain functions over `tenken-model` types.
//!
//! Why here and without the WIT bindings: a pack is what an author writes, so the SDK owns
//! it; and the default packs (`tenken-rulepack`) are also linked natively into the host as
//! the performance baseline and differential oracle, which needs this type but none of the
//! guest bindings (the `component` feature).

use tenken_model::{CheckContext, FileView, Finding, Masters, Receipt, RuleInfo};

/// One rule group, exported as one plugin component by `office_check!`.
#[derive(Clone, Copy)]
pub struct Pack {
    /// Plugin name, e.g. "tenken-format" or "example-js-rule".
    pub name: &'static str,
    pub version: &'static str,
    /// Every rule id the pack can emit, with severity and a one-line description.
    pub rules: fn() -> Vec<RuleInfo>,
    /// File-level rules, called once per file.
    pub check_file: fn(&CheckContext, &FileView) -> Vec<Finding>,
    /// Per-receipt rules, called on arbitrary batches of whole receipts.
    pub check_receipts: fn(&CheckContext, &[Receipt], &dyn Masters) -> Vec<Finding>,
}

impl std::fmt::Debug for Pack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pack").field("name", &self.name).field("version", &self.version).finish()
    }
}
