//! The master impact check: the same claim files checked under the current and a proposed
//! master, and the findings that changed per rule, with example receipts. The server runs it
//! on every proposal (regression corpus + a sample of real submissions) and the CLI's
//! `tenken master impact` on files given to it; both through this one accumulator.

use std::collections::BTreeMap;

use tenken_model::Finding;
use tenken_store::{ImpactReport, RuleImpact};

/// How many example receipts a report keeps.
#[derive(Debug, Clone, Copy)]
pub struct ExampleLimits {
    /// Per rule and file: so every affected file shows up.
    pub per_file: usize,
    /// Per rule, in all.
    pub per_rule: usize,
}

impl ExampleLimits {
    /// What the server stores with a proposal (the report staff approve on).
    pub const PROPOSAL: ExampleLimits = ExampleLimits { per_file: 5, per_rule: 40 };
    /// Every changed receipt (the CLI, on files its user chose).
    pub const ALL: ExampleLimits = ExampleLimits { per_file: usize::MAX, per_rule: usize::MAX };
}

/// Findings changed file by file; [`Impact::report`] sums them up.
#[derive(Debug)]
pub struct Impact {
    by_rule: BTreeMap<String, RuleImpact>,
    limits: ExampleLimits,
    files: usize,
}

impl Impact {
    pub fn new(limits: ExampleLimits) -> Impact {
        Impact { by_rule: BTreeMap::new(), limits, files: 0 }
    }

    /// Adds one file's findings under the current (`before`) and proposed (`after`) master,
    /// compared as multisets (one definition of the same finding: [`crate::delta`]).
    pub fn add(&mut self, file: &str, before: &[Finding], after: &[Finding]) {
        self.files += 1;
        let d = crate::delta(before, after);
        let changes = d.new.iter().map(|f| (true, *f)).chain(d.vanished.iter().map(|f| (false, *f)));
        for (is_new, f) in changes {
            let e = self.by_rule.entry(f.rule.clone()).or_insert_with(|| RuleImpact {
                rule: f.rule.clone(),
                new: 0,
                vanished: 0,
                receipts: Vec::new(),
            });
            if is_new {
                e.new += 1;
            } else {
                e.vanished += 1;
            }
            let prefix = format!("{file}#");
            let example = format!("{prefix}{}", f.receipt.map(|r| r.to_string()).unwrap_or("-".into()));
            // One entry per receipt: a receipt with three changed lines is one place to look.
            if e.receipts.len() < self.limits.per_rule
                && !e.receipts.contains(&example)
                && e.receipts.iter().filter(|r| r.starts_with(&prefix)).count() < self.limits.per_file
            {
                e.receipts.push(example);
            }
        }
    }

    /// Files added so far.
    pub fn files(&self) -> usize {
        self.files
    }

    /// Findings changed so far (new + vanished, every rule).
    pub fn changed(&self) -> usize {
        self.by_rule.values().map(|r| r.new + r.vanished).sum()
    }

    /// The report: flagged when more than `threshold` findings changed. `cases` and the
    /// sample counts say what the files were (regression cases, sampled submissions).
    pub fn report(
        self,
        cases: usize,
        sampled_submissions: usize,
        sampled_receipts: u64,
        threshold: usize,
    ) -> ImpactReport {
        let changed = self.changed();
        ImpactReport {
            cases,
            sampled_submissions,
            sampled_receipts,
            changed,
            threshold,
            flagged: changed > threshold,
            rules: self.by_rule.into_values().collect(),
            as_of: None,
            redated_files: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenken_model::Severity;

    fn f(receipt: u32, rule: &str) -> Finding {
        Finding {
            receipt: Some(receipt),
            line: Some(1),
            record: Some("SI".into()),
            field: None,
            rule: rule.into(),
            severity: Severity::Error,
            message: "m".into(),
        }
    }

    #[test]
    fn changes_are_counted_per_rule_with_bounded_examples_per_file() {
        let mut i = Impact::new(ExampleLimits { per_file: 2, per_rule: 3 });
        let before = vec![f(1, "a"), f(1, "a"), f(2, "b")];
        let after = vec![f(1, "a"), f(3, "a"), f(4, "a"), f(5, "a")];
        i.add("x.UKE", &before, &after);
        i.add("y.UKE", &[], &[f(9, "a")]);
        let r = i.report(2, 0, 0, 4);
        let a = &r.rules[0];
        assert_eq!((a.rule.as_str(), a.new, a.vanished), ("a", 4, 1));
        // new before vanished: two examples of x (per_file; x#5 and the vanished x#1 cut),
        // then one of y (per_rule 3)
        assert_eq!(a.receipts, ["x.UKE#3", "x.UKE#4", "y.UKE#9"]);
        assert_eq!((r.rules[1].rule.as_str(), r.rules[1].vanished), ("b", 1));
        assert_eq!((r.changed, r.flagged), (6, true));
    }
}
