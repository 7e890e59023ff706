//! The plugin contract on what a guest declares and returns, checked by the host.
//!
//! Why the host checks: findings are the product. A guest that reports under a `plugin.` id
//! would be counted as a host-detected failure (or hide one); an undeclared id has no
//! description or severity an operator can look up; a finding on a receipt the call was not
//! given lands on someone else's claim; an unbounded string is a memory and storage bomb.
//! A violating finding is dropped, and each call gets at most one `plugin.contract` finding
//! per kind of violation (with a count), so a guest cannot flood the report through them.
//!
//! Pure functions over model types, so they are unit-tested without a component.

use tenken_limits::Limits;
use tenken_model::{self as m, PluginFailure};

/// The receipts one call was given: a finding may name only these, or none.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    /// What the call was given, for the message: `batch` or `file`.
    what: &'static str,
    /// (receipt number, line of its RE record), sorted by number. Receipts whose number
    /// could not be read are not in it: no finding can name them.
    receipts: Vec<(u32, u32)>,
}

impl Scope {
    /// `receipts`: (RE レセプト番号 if it is a number, line of the RE record).
    pub(crate) fn new(what: &'static str, receipts: impl IntoIterator<Item = (Option<u32>, u32)>) -> Scope {
        let mut receipts: Vec<(u32, u32)> = receipts.into_iter().filter_map(|(n, line)| Some((n?, line))).collect();
        receipts.sort_unstable();
        Scope { what, receipts }
    }

    /// The RE line of receipt `number`, if the call was given it.
    fn line_of(&self, number: u32) -> Option<u32> {
        let i = self.receipts.partition_point(|(n, _)| *n < number);
        self.receipts.get(i).filter(|(n, _)| *n == number).map(|(_, line)| *line)
    }

    /// The receipt numbers, short: `1..=64`, or `3 receipts, 5 to 70` when not contiguous.
    fn numbers(&self) -> String {
        let (Some(first), Some(last)) = (self.receipts.first(), self.receipts.last()) else {
            return "it has no numbered receipts".into();
        };
        let mut distinct = self.receipts.iter().map(|(n, _)| *n).collect::<Vec<_>>();
        distinct.dedup();
        if u64::from(last.0 - first.0) + 1 == distinct.len() as u64 {
            format!("{}..={}", first.0, last.0)
        } else {
            format!("{} receipts, {} to {}", distinct.len(), first.0, last.0)
        }
    }
}

/// The kinds of violation, in the order a finding is checked and contract findings listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Violation {
    RuleIdTooLong,
    ReservedRule,
    UndeclaredRule,
    ForeignReceipt,
    MessageTooLong,
    RecordTooLong,
}

/// A quoted piece of guest text, cut so that a contract message stays short.
fn clip(s: &str) -> String {
    const CHARS: usize = 60;
    if s.chars().count() > CHARS { format!("{}…", s.chars().take(CHARS).collect::<String>()) } else { s.to_string() }
}

/// What is wrong with `f`, if anything: the first violation in [`Violation`] order.
fn violation(f: &m::Finding, declared: &[String], scope: &Scope, limits: &Limits) -> Option<Violation> {
    if f.rule.len() > limits.plugin_rule_id_bytes_max as usize {
        Some(Violation::RuleIdTooLong)
    } else if m::is_host_rule(&f.rule) {
        Some(Violation::ReservedRule)
    } else if declared.binary_search_by(|d| d.as_str().cmp(&f.rule)).is_err() {
        Some(Violation::UndeclaredRule)
    } else if f.receipt.is_some_and(|n| scope.line_of(n).is_none()) {
        Some(Violation::ForeignReceipt)
    } else if f.message.len() > limits.plugin_finding_message_bytes_max as usize {
        Some(Violation::MessageTooLong)
    } else if f.record.as_ref().is_some_and(|r| r.len() > limits.plugin_finding_record_bytes_max as usize) {
        Some(Violation::RecordTooLong)
    } else {
        None
    }
}

/// The sentence saying what `f` did wrong (after "broke the plugin contract: ").
fn explain(v: Violation, f: &m::Finding, scope: &Scope, limits: &Limits) -> String {
    let rule = clip(&f.rule);
    match v {
        Violation::RuleIdTooLong => format!(
            "it returned a rule id of {} bytes (`{rule}`); rule ids are at most {} bytes (plugin_rule_id_bytes_max)",
            f.rule.len(),
            limits.plugin_rule_id_bytes_max
        ),
        Violation::ReservedRule => format!("rule id `{rule}` is reserved for the host (the `plugin.` prefix)"),
        Violation::UndeclaredRule => format!("rule `{rule}` was not declared in describe"),
        Violation::ForeignReceipt => format!(
            "a `{rule}` finding names receipt {}, which is not in this {} ({})",
            f.receipt.unwrap_or_default(),
            scope.what,
            scope.numbers()
        ),
        Violation::MessageTooLong => format!(
            "a `{rule}` finding has a message of {} bytes; messages are at most {} bytes (plugin_finding_message_bytes_max)",
            f.message.len(),
            limits.plugin_finding_message_bytes_max
        ),
        Violation::RecordTooLong => format!(
            "a `{rule}` finding names a record id of {} bytes (`{}`); record ids are at most {} bytes (plugin_finding_record_bytes_max)",
            f.record.as_deref().map_or(0, str::len),
            clip(f.record.as_deref().unwrap_or_default()),
            limits.plugin_finding_record_bytes_max
        ),
    }
}

/// Keeps in `findings` only those that keep the contract and returns, for each kind of
/// violation among the others, one `plugin.contract` error naming the plugin, what the first
/// such finding did wrong and how many were dropped. The contract finding is put on the
/// first offender's receipt when that receipt is in `scope`, else it is file-level.
///
/// `declared` are the rule ids of the plugin's `describe`, sorted.
pub(crate) fn enforce(
    plugin: &str,
    declared: &[String],
    scope: &Scope,
    limits: &Limits,
    findings: &mut Vec<m::Finding>,
) -> Vec<m::Finding> {
    // Per kind: (what the first offender did, its receipt if in scope, how many).
    let mut seen: Vec<(Violation, String, Option<u32>, usize)> = Vec::new();
    findings.retain(|f| {
        let Some(v) = violation(f, declared, scope, limits) else { return true };
        match seen.iter_mut().find(|(k, ..)| *k == v) {
            Some((_, _, _, count)) => *count += 1,
            None => {
                let receipt = f.receipt.filter(|n| scope.line_of(*n).is_some());
                seen.push((v, explain(v, f, scope, limits), receipt, 1));
            }
        }
        false
    });
    seen.sort_by_key(|(v, ..)| *v);
    seen.into_iter()
        .map(|(_, what, receipt, count)| {
            let dropped = match count {
                1 => "the finding was dropped".to_string(),
                n => format!("{n} such findings in this call were dropped"),
            };
            let f = m::Finding::error(
                PluginFailure::Contract.rule_id(),
                format!("plugin {plugin} broke the plugin contract: {what}; {dropped}"),
            );
            match receipt.and_then(|n| Some((n, scope.line_of(n)?))) {
                Some((n, line)) => f.receipt(Some(n)).at(line, "RE", None),
                None => f,
            }
        })
        .collect()
}

/// Checks the rules a plugin declares in `describe`: none in the host's `plugin.` namespace,
/// none longer than `plugin_rule_id_bytes_max`. A plugin that fails this is refused at load.
pub(crate) fn check_declared(info: &m::PluginInfo, limits: &Limits) -> Result<(), String> {
    for r in &info.rules {
        if r.id.len() > limits.plugin_rule_id_bytes_max as usize {
            return Err(format!(
                "it declares a rule id of {} bytes (`{}`); rule ids are at most {} bytes (plugin_rule_id_bytes_max)",
                r.id.len(),
                clip(&r.id),
                limits.plugin_rule_id_bytes_max
            ));
        }
        if m::is_host_rule(&r.id) {
            return Err(format!(
                "it declares rule `{}`, but the `{}` prefix is reserved for the host",
                clip(&r.id),
                m::HOST_RULE_PREFIX
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> Vec<String> {
        let mut d = vec!["x.ok".to_string(), "x.also".to_string()];
        d.sort();
        d
    }

    /// A batch of receipts 1..=64 (RE lines 10, 20, ...).
    fn batch() -> Scope {
        Scope::new("batch", (1..=64u32).map(|n| (Some(n), n * 10)))
    }

    fn ok(receipt: u32) -> m::Finding {
        m::Finding::error("x.ok", "fine").receipt(Some(receipt)).at(receipt * 10 + 1, "SI", Some(3))
    }

    fn run(findings: Vec<m::Finding>) -> (Vec<m::Finding>, Vec<m::Finding>) {
        let mut kept = findings;
        let contract = enforce("p", &declared(), &batch(), &Limits::default(), &mut kept);
        (kept, contract)
    }

    #[test]
    fn findings_that_keep_the_contract_pass_unchanged() {
        let good = vec![ok(1), ok(64), m::Finding::warning("x.also", "file-level, no receipt")];
        let (kept, contract) = run(good.clone());
        assert_eq!(kept, good);
        assert!(contract.is_empty());
    }

    #[test]
    fn a_reserved_rule_id_is_dropped_and_reported() {
        let bad = m::Finding::error("plugin.trap", "I am the host").receipt(Some(3));
        let (kept, contract) = run(vec![ok(1), bad]);
        assert_eq!(kept, vec![ok(1)]);
        assert_eq!(contract.len(), 1);
        let c = &contract[0];
        assert_eq!(c.plugin_failure(), Some(PluginFailure::Contract));
        assert_eq!(c.severity, m::Severity::Error);
        assert!(
            c.message.contains("plugin p ") && c.message.contains("rule id `plugin.trap` is reserved for the host")
        );
        // On the offender's receipt, which was in the batch.
        assert_eq!((c.receipt, c.line, c.record.as_deref()), (Some(3), Some(30), Some("RE")));
    }

    #[test]
    fn an_undeclared_rule_is_dropped_and_reported() {
        let (kept, contract) = run(vec![m::Finding::error("x.undeclared", "?").receipt(Some(2))]);
        assert!(kept.is_empty());
        assert_eq!(contract.len(), 1);
        assert!(contract[0].message.contains("rule `x.undeclared` was not declared in describe"), "{contract:?}");
    }

    #[test]
    fn a_receipt_outside_the_batch_is_dropped_and_reported_file_level() {
        let (kept, contract) = run(vec![ok(99), ok(5)]);
        assert_eq!(kept, vec![ok(5)]);
        assert_eq!(contract.len(), 1);
        assert!(contract[0].message.contains("receipt 99, which is not in this batch (1..=64)"), "{contract:?}");
        assert_eq!(contract[0].receipt, None, "receipt 99 is not this call's to report on");
    }

    #[test]
    fn a_file_call_may_name_the_files_receipts_or_none() {
        let file = Scope::new("file", [(Some(1), 2), (None, 9), (Some(7), 20)]);
        let mut findings = vec![ok(1), ok(7), m::Finding::error("x.ok", "file-level"), ok(2)];
        let contract = enforce("p", &declared(), &file, &Limits::default(), &mut findings);
        assert_eq!(findings.len(), 3);
        assert_eq!(contract.len(), 1);
        assert!(
            contract[0].message.contains("receipt 2, which is not in this file (2 receipts, 1 to 7)"),
            "{contract:?}"
        );
    }

    #[test]
    fn over_long_strings_are_dropped_and_reported_with_their_limit() {
        let limits = Limits::default();
        let long_message = m::Finding { message: "あ".repeat(40_000), ..ok(1) };
        let long_rule = m::Finding::error("x.".repeat(100), "m");
        let long_record =
            m::Finding { record: Some("R".repeat(limits.plugin_finding_record_bytes_max as usize + 1)), ..ok(2) };
        let (kept, contract) = run(vec![long_message, long_rule, long_record, ok(3)]);
        assert_eq!(kept, vec![ok(3)]);
        assert_eq!(contract.len(), 3, "{contract:#?}");
        assert!(
            contract[0].message.contains("rule id of 200 bytes")
                && contract[0].message.contains("plugin_rule_id_bytes_max")
        );
        assert!(contract[1].message.contains("message of 120000 bytes"), "{}", contract[1].message);
        assert!(contract[1].message.contains(&format!("at most {} bytes", limits.plugin_finding_message_bytes_max)));
        assert!(contract[2].message.contains("plugin_finding_record_bytes_max"));
        // The contract messages themselves stay short: guest text is quoted clipped.
        assert!(contract.iter().all(|c| c.message.len() < 400), "{contract:#?}");
    }

    #[test]
    fn one_contract_finding_per_kind_of_violation_per_call() {
        let mut flood: Vec<m::Finding> =
            (0..10_000).map(|i| m::Finding::error(format!("plugin.fake-{i}"), "x").receipt(Some(1))).collect();
        flood.extend((0..500).map(|_| ok(1000)));
        flood.push(ok(1));
        let (kept, contract) = run(flood);
        assert_eq!(kept, vec![ok(1)]);
        assert_eq!(contract.len(), 2, "{contract:#?}");
        assert!(contract[0].message.contains("plugin.fake-0") && contract[0].message.contains("10000 such findings"));
        assert!(contract[1].message.contains("receipt 1000") && contract[1].message.contains("500 such findings"));
    }

    #[test]
    fn describe_may_not_declare_host_rules_or_over_long_ids() {
        let limits = Limits::default();
        let info = |id: &str| m::PluginInfo {
            name: "p".into(),
            version: "1".into(),
            rules: vec![m::RuleInfo { id: id.into(), severity: m::Severity::Error, description: String::new() }],
        };
        assert!(check_declared(&info("x.ok"), &limits).is_ok());
        let e = check_declared(&info("plugin.trap"), &limits).unwrap_err();
        assert!(e.contains("reserved for the host"), "{e}");
        let e = check_declared(&info(&"y".repeat(129)), &limits).unwrap_err();
        assert!(e.contains("plugin_rule_id_bytes_max"), "{e}");
    }
}
