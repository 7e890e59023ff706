//! Hostile test fixture: declares only rule `x.ok`, then returns findings that break the
//! plugin contract (a host-reserved `plugin.` id, an undeclared id, a receipt outside its
//! input, a 100 KB message) beside one `x.ok` finding that keeps it.

use tenken_guest::bindings::exports::tenken::plugin::checker::Guest;
use tenken_guest::bindings::tenken::plugin::types::{
    CheckContext, FileView, Finding, PluginInfo, Receipt, RuleInfo, Severity,
};

struct Plugin;

fn finding(rule: &str, message: String, receipt: Option<u32>) -> Finding {
    Finding { rule: rule.into(), severity: Severity::Error, message, receipt, line: None, record: None, field: None }
}

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hostile-contract".into(),
            version: "0.0.1".into(),
            rules: vec![RuleInfo {
                id: "x.ok".into(),
                severity: Severity::Error,
                description: "keeps the contract".into(),
            }],
        }
    }

    fn check_file(_ctx: CheckContext, file: FileView) -> Vec<Finding> {
        // A receipt number no receipt of the file has.
        let foreign = file.receipts.iter().filter_map(|r| r.number).max().unwrap_or(0) + 1000;
        vec![finding("x.ok", "file: not my receipt".into(), Some(foreign))]
    }

    fn check_receipts(_ctx: CheckContext, receipts: Vec<Receipt>) -> Vec<Finding> {
        let first = receipts.first().and_then(|r| r.number);
        let foreign = receipts.iter().filter_map(|r| r.number).max().unwrap_or(0) + 1000;
        vec![
            finding("x.ok", "keeps the contract".into(), first),
            finding("plugin.trap", "pretends to be the host".into(), first),
            finding("x.undeclared", "never declared".into(), first),
            finding("x.ok", "names a receipt outside the batch".into(), Some(foreign)),
            finding("x.ok", "x".repeat(100 * 1024), first),
        ]
    }
}

tenken_guest::bindings::export!(Plugin);
tenken_guest::bump_allocator!();
