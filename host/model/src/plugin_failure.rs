//! The kinds of plugin failure the host reports, and the `plugin.` rule ids they go under.
//!
//! Why one type here: the runtime classifies failures, the check pipeline adds its own
//! (`plugin.skipped`, a native pack's panic), and the server counts them for auto-rollback.
//! With one enum in the crate all three share, the rule-id strings exist exactly once.

/// The rule-id prefix reserved for the host: only the host reports `plugin.` findings; a
/// plugin returning one breaks the contract (reported as [`PluginFailure::Contract`]).
pub const HOST_RULE_PREFIX: &str = "plugin.";

/// Whether `rule` is in the host's reserved `plugin.` namespace.
pub fn is_host_rule(rule: &str) -> bool {
    rule.starts_with(HOST_RULE_PREFIX)
}

/// Why the host reported a plugin's failure instead of (or besides) its findings. Each kind
/// is a `plugin.` rule id ([`PluginFailure::rule_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum PluginFailure {
    /// The call's epoch deadline passed (`plugin_call_ms_max`, file calls longer).
    Timeout,
    /// Linear memory could not grow (`plugin_memory_bytes_max`).
    Memory,
    /// The wasm stack limit was hit (`plugin_stack_bytes_max`).
    StackOverflow,
    /// Guest stdout/stderr exceeded `plugin_output_bytes_max`, or a call returned more than
    /// `plugin_findings_per_call_max` findings.
    Output,
    /// Any other trap (a panic, `unreachable`, a bad conversion), or a native pack's panic.
    Trap,
    /// The plugin had used up its failure budget in this file (`plugin_failures_per_file_max`)
    /// and the host did not run it.
    Skipped,
    /// The plugin returned a finding that breaks the contract (a `plugin.` or undeclared rule
    /// id, a receipt outside its input, an over-long string); the finding was dropped.
    Contract,
}

impl PluginFailure {
    /// Every kind, in declaration order.
    pub const ALL: [PluginFailure; 7] = [
        PluginFailure::Timeout,
        PluginFailure::Memory,
        PluginFailure::StackOverflow,
        PluginFailure::Output,
        PluginFailure::Trap,
        PluginFailure::Skipped,
        PluginFailure::Contract,
    ];

    /// The `plugin.` rule id findings of this kind are reported under.
    pub fn rule_id(&self) -> &'static str {
        match self {
            PluginFailure::Timeout => "plugin.timeout",
            PluginFailure::Memory => "plugin.memory",
            PluginFailure::StackOverflow => "plugin.stack-overflow",
            PluginFailure::Output => "plugin.output",
            PluginFailure::Trap => "plugin.trap",
            PluginFailure::Skipped => "plugin.skipped",
            PluginFailure::Contract => "plugin.contract",
        }
    }

    /// The kind a rule id names; `None` for any other rule (also an unknown `plugin.` id).
    pub fn from_rule(rule: &str) -> Option<PluginFailure> {
        PluginFailure::ALL.into_iter().find(|k| k.rule_id() == rule)
    }

    /// Whether a finding of this kind counts as a failure of the plugin for auto-rollback.
    ///
    /// Every kind does: `Skipped` is only ever reported after the plugin failed
    /// `plugin_failures_per_file_max` times, so its receipts went unchecked because of the
    /// plugin; `Contract` means the plugin returned findings the host had to drop; `Output`
    /// means its output was cut. A new kind must decide here (the match is exhaustive).
    pub fn counts_as_failure(&self) -> bool {
        match self {
            PluginFailure::Timeout
            | PluginFailure::Memory
            | PluginFailure::StackOverflow
            | PluginFailure::Output
            | PluginFailure::Trap
            | PluginFailure::Skipped
            | PluginFailure::Contract => true,
        }
    }
}

impl std::fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.rule_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_round_trip_and_are_host_rules() {
        for k in PluginFailure::ALL {
            assert_eq!(PluginFailure::from_rule(k.rule_id()), Some(k));
            assert!(is_host_rule(k.rule_id()), "{k}");
            assert!(k.counts_as_failure());
        }
        let mut ids: Vec<_> = PluginFailure::ALL.iter().map(|k| k.rule_id()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), PluginFailure::ALL.len(), "two kinds share a rule id");
        assert_eq!(PluginFailure::from_rule("plugin.unknown"), None);
        assert_eq!(PluginFailure::from_rule("totals.mismatch"), None);
        assert!(!is_host_rule("x.plugin.trap"));
    }

    #[test]
    fn a_finding_says_which_failure_it_reports() {
        let f = crate::Finding::error("plugin.stack-overflow", "deep");
        assert_eq!(f.plugin_failure(), Some(PluginFailure::StackOverflow));
        assert_eq!(crate::Finding::error("id.insurer-check-digit", "x").plugin_failure(), None);
    }
}
