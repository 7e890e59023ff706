//! Rust twin of `examples/js-rule` (JavaScript): the same two rules, finding for finding
//! (rule id, severity, message, receipt, line, record, field). `tests/all/languages.rs` runs
//! both through the host on the same files and requires identical findings; the twin is also
//! the baseline of the per-language cost in docs/PERFORMANCE.md.
//!
//! - `diagnosis.js.uncoded-no-name` (error): 未コード化傷病名 0000999 without a 傷病名称.
//! - `diagnosis.js.suspected-open` (warning): a 疑い病名 (a 修飾語 whose master name contains
//!   「疑い」, looked up through the host on the 1st of the 診療年月) still open (転帰区分 1 or
//!   blank) though it started more than 2 months before the receipt's 診療年月.

use std::collections::HashMap;

use tenken_guest::Pack;
use tenken_guest::tenken_model::{
    CheckContext, Date, FileView, Finding, Lookup, MasterKind, Masters, Receipt, RuleInfo, Severity,
};

const PACK: Pack = Pack { name: "example-js-rule", version: "1.0.0", rules, check_file, check_receipts };

tenken_guest::office_check!(PACK);

fn rules() -> Vec<RuleInfo> {
    vec![
        RuleInfo {
            id: "diagnosis.js.uncoded-no-name".into(),
            severity: Severity::Error,
            description: "未コード化傷病名 (0000999) に傷病名称がない".into(),
        },
        RuleInfo {
            id: "diagnosis.js.suspected-open".into(),
            severity: Severity::Warning,
            description: "疑い病名が診療年月の 2 か月より前から転帰なし (継続) のまま".into(),
        },
    ]
}

fn check_file(_: &CheckContext, _: &FileView) -> Vec<Finding> {
    Vec::new()
}

fn check_receipts(_: &CheckContext, receipts: &[Receipt], masters: &dyn Masters) -> Vec<Finding> {
    let mut out = Vec::new();
    // (modifier code, lookup date) → is a 疑い modifier; lives for this call only, as in JS.
    let mut cache: HashMap<(String, Date), bool> = HashMap::new();
    for r in receipts {
        for d in &r.diagnoses {
            if d.code == "0000999" && d.name.is_empty() {
                out.push(
                    Finding::error(
                        "diagnosis.js.uncoded-no-name",
                        "未コード化傷病名 (0000999) には傷病名称を記録してください",
                    )
                    .receipt(r.number)
                    .at(d.line, "SY", Some(5)),
                );
            }
            let (Some(sm), Some(start)) = (r.service_month, d.start_date) else { continue };
            if d.outcome != "1" && !d.outcome.is_empty() {
                continue;
            }
            let months = start.year_month().months_until(sm);
            if months <= 2 || d.modifiers.is_empty() {
                continue;
            }
            let on = sm.first_day();
            // 4-character codes; a trailing partial code is ignored (JS: `i + 4 <= length`).
            let chars: Vec<char> = d.modifiers.chars().collect();
            let suspected = chars.chunks_exact(4).any(|c| {
                let code: String = c.iter().collect();
                *cache.entry((code.clone(), on)).or_insert_with(|| {
                    matches!(masters.lookup(MasterKind::Modifier, &code, on), Lookup::InForce(e) if e.name.contains("疑い"))
                })
            });
            if !suspected {
                continue;
            }
            out.push(
                Finding::warning(
                    "diagnosis.js.suspected-open",
                    format!(
                        "疑い病名 {} (修飾語 {}) が診療開始日 {start} から {months} か月、転帰なし (継続) のままです",
                        d.code, d.modifiers
                    ),
                )
                .receipt(r.number)
                .at(d.line, "SY", Some(2)),
            );
        }
    }
    out
}
