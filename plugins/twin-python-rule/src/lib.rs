//! Rust twin of `examples/python-rule` (Python): the same two rules, finding for finding
//! (rule id, severity, message, receipt, line, record, field). `tests/all/languages.rs` runs
//! both through the host on the same files and requires identical findings; the twin is also
//! the baseline of the per-language cost in docs/PERFORMANCE.md.
//!
//! - `diagnosis.py.primary-missing` (warning): 傷病名 recorded but none marked 主傷病 (01).
//! - `diagnosis.py.primary-multiple` (warning): more than one 主傷病; one finding on each
//!   主傷病 after the first. A receipt without SY is left to `diagnosis.missing`.

use tenken_guest::Pack;
use tenken_guest::tenken_model::{CheckContext, FileView, Finding, Masters, Receipt, RuleInfo, Severity};

const PACK: Pack = Pack { name: "example-python-rule", version: "1.0.0", rules, check_file, check_receipts };

tenken_guest::office_check!(PACK);

fn rules() -> Vec<RuleInfo> {
    vec![
        RuleInfo {
            id: "diagnosis.py.primary-missing".into(),
            severity: Severity::Warning,
            description: "傷病名はあるが主傷病 (01) の傷病名がない".into(),
        },
        RuleInfo {
            id: "diagnosis.py.primary-multiple".into(),
            severity: Severity::Warning,
            description: "主傷病 (01) の傷病名が 2 件以上ある".into(),
        },
    ]
}

fn check_file(_: &CheckContext, _: &FileView) -> Vec<Finding> {
    Vec::new()
}

fn check_receipts(_: &CheckContext, receipts: &[Receipt], _: &dyn Masters) -> Vec<Finding> {
    let mut out = Vec::new();
    for r in receipts {
        if r.diagnoses.is_empty() {
            continue;
        }
        let primaries: Vec<_> = r.diagnoses.iter().filter(|d| d.primary).collect();
        let Some(first) = primaries.first() else {
            out.push(
                Finding::warning(
                    "diagnosis.py.primary-missing",
                    "主傷病 (SY 主傷病 = 01) の傷病名がありません: 主たる傷病に 01 を記録してください",
                )
                .receipt(r.number)
                .at(r.line, "RE", None),
            );
            continue;
        };
        for d in &primaries[1..] {
            out.push(
                Finding::warning(
                    "diagnosis.py.primary-multiple",
                    format!(
                        "主傷病 (01) が {} 件あります: {} 行目の傷病名のほかは主傷病を外してください",
                        primaries.len(),
                        first.line
                    ),
                )
                .receipt(r.number)
                .at(d.line, "SY", Some(6)),
            );
        }
    }
    out
}
