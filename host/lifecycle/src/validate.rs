//! Validation of a candidate plugin before anyone may approve it: a rule plugin against the
//! release set it would join, over the payer's regression corpus; a converter by the round
//! trip over the payer's master files. Both end in a [`ValidationReport`] with named gates.

use std::collections::BTreeMap;

use tenken_model::{Digest, Finding, MasterKind};
use tenken_store::{Gate, RuleDelta, ValidationReport};

/// Examples kept per rule (or field) in a report.
const EXAMPLES_PER_RULE_MAX: usize = 3;

/// The bounds a rule plugin's validation is gated on (the payer's configuration).
#[derive(Debug, Clone, Copy)]
pub struct Gates {
    /// `validation_delta_max`: findings that may change over the corpus.
    pub delta_max: usize,
    /// `validation_plugin_failures_max`: `plugin.*` findings allowed.
    pub plugin_failures_max: usize,
}

/// A rule plugin's validation, case by case.
#[derive(Debug)]
pub struct CheckerValidation {
    report: ValidationReport,
}

impl CheckerValidation {
    /// `candidate` joins release set `base` (replacing `replaces`, the plugin of its name).
    pub fn new(candidate: Digest, base: i64, replaces: Option<Digest>) -> CheckerValidation {
        CheckerValidation {
            report: ValidationReport {
                candidate,
                base_release_set: base,
                replaces,
                cases: 0,
                new_findings: 0,
                vanished_findings: 0,
                plugin_failures: 0,
                by_rule: BTreeMap::new(),
                gates: Vec::new(),
                passed: false,
            },
        }
    }

    /// One regression case: what it expects and what the candidate's set found.
    pub fn add_case(&mut self, name: &str, expected: &[Finding], got: &[Finding]) {
        let r = &mut self.report;
        r.cases += 1;
        r.plugin_failures += got.iter().filter(|f| f.rule.starts_with(tenken_model::HOST_RULE_PREFIX)).count();
        let delta = crate::delta(expected, got);
        let changes = delta.new.iter().map(|f| (true, *f)).chain(delta.vanished.iter().map(|f| (false, *f)));
        for (is_new, f) in changes {
            let d = r.by_rule.entry(f.rule.clone()).or_default();
            if is_new {
                d.new += 1;
                r.new_findings += 1;
            } else {
                d.vanished += 1;
                r.vanished_findings += 1;
            }
            let example = format!(
                "{name} {}: receipt {:?} line {:?}: {}",
                if is_new { "new" } else { "vanished" },
                f.receipt,
                f.line,
                f.message
            );
            // (a finding repeated n times is n changes but one example)
            if d.examples.len() < EXAMPLES_PER_RULE_MAX && !d.examples.contains(&example) {
                d.examples.push(example);
            }
        }
    }

    /// The report with its gates: a corpus to compare on, few enough plugin failures, and a
    /// small enough delta.
    pub fn finish(mut self, gates: Gates) -> ValidationReport {
        let r = &mut self.report;
        let delta = r.new_findings + r.vanished_findings;
        r.gates = vec![
            Gate { name: "regression-corpus".into(), passed: r.cases > 0, detail: format!("{} case(s)", r.cases) },
            Gate {
                name: "plugin-failures".into(),
                passed: r.plugin_failures <= gates.plugin_failures_max,
                detail: format!(
                    "{} plugin.* finding(s); at most {} (validation_plugin_failures_max)",
                    r.plugin_failures, gates.plugin_failures_max
                ),
            },
            Gate {
                name: "delta".into(),
                passed: delta <= gates.delta_max,
                detail: format!("{delta} finding(s) changed; at most {} (validation_delta_max)", gates.delta_max),
            },
        ];
        r.passed = r.gates.iter().all(|g| g.passed);
        self.report
    }
}

/// A converter's validation: every master file of the payer decoded by its own format's
/// converter, then encoded with the candidate and decoded again ([`crate::round_trip_through`]).
#[derive(Debug)]
pub struct ConverterValidation {
    report: ValidationReport,
    failures: Vec<String>,
}

impl ConverterValidation {
    pub fn new(candidate: Digest) -> ConverterValidation {
        ConverterValidation { report: CheckerValidation::new(candidate, 0, None).report, failures: Vec::new() }
    }

    /// One master file (its rows as its own converter decoded them) through the candidate.
    pub fn add_file(
        &mut self,
        candidate: &tenken_runtime::Converter,
        name: &str,
        kind: MasterKind,
        rows: &[tenken_model::CanonRow],
    ) {
        self.report.cases += 1;
        match crate::round_trip_through(candidate, kind, rows, 5) {
            Err(e) => self.failures.push(format!("{name}: {e}")),
            Ok(proof) => {
                for d in proof.diffs {
                    let e: &mut RuleDelta = self.report.by_rule.entry(format!("field {}", d.field)).or_default();
                    e.new += 1;
                    if e.examples.len() < EXAMPLES_PER_RULE_MAX {
                        e.examples.push(format!("{name} {}: expected {:?}, got {:?}", d.code, d.expected, d.got));
                    }
                    self.report.new_findings += 1;
                }
            }
        }
    }

    /// A file that could not be read or decoded: the converter cannot be shown to work on it.
    pub fn add_failure(&mut self, what: String) {
        self.failures.push(what);
    }

    /// The report with its gates: files to try, no converter failure, an exact round trip.
    pub fn finish(mut self) -> ValidationReport {
        let r = &mut self.report;
        r.plugin_failures = self.failures.len();
        r.gates = vec![
            Gate { name: "masters".into(), passed: r.cases > 0, detail: format!("{} master file(s) tried", r.cases) },
            Gate {
                name: "converter-failures".into(),
                passed: self.failures.is_empty(),
                detail: self.failures.join("; "),
            },
            Gate {
                name: "round-trip".into(),
                passed: r.new_findings == 0,
                detail: format!("{} field(s) differ after encode → decode", r.new_findings),
            },
        ];
        r.passed = r.gates.iter().all(|g| g.passed);
        self.report
    }
}
