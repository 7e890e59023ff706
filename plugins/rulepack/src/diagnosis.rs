//! `diagnosis.` rules: 傷病名 (SY) presence, 未コード化傷病名, 主傷病, 診療開始日, duplicates.

use crate::util::{RuleDecl, finding, rule_infos};
use tenken_model::{CheckContext, FileView, Finding, Masters, Receipt, RuleInfo, Severity};

use Severity::{Error, Info, Warning};

const RULES: &[RuleDecl] = &[
    ("diagnosis.missing", Error, "傷病名 (SY) が 1 件もない"),
    ("diagnosis.uncoded.name", Error, "未コード化傷病名 (0000999) に傷病名称がない"),
    ("diagnosis.uncoded", Info, "未コード化傷病名 (0000999) を使用している (コード化を推奨)"),
    ("diagnosis.primary.missing", Warning, "主傷病 (01) の傷病名がない"),
    ("diagnosis.start-date", Error, "診療開始日が診療月の末日より後"),
    ("diagnosis.duplicate", Warning, "同じ傷病名 (コード・修飾語・名称) が重複している"),
];

pub fn rules() -> Vec<RuleInfo> {
    rule_infos(RULES)
}

/// No file-level diagnosis rules.
pub fn check_file(ctx: &CheckContext, file: &FileView) -> Vec<Finding> {
    crate::no_file_rules(ctx, file)
}

pub fn check_receipts(_ctx: &CheckContext, receipts: &[Receipt], _masters: &dyn Masters) -> Vec<Finding> {
    let mut out = Vec::new();
    for r in receipts {
        check_receipt(r, &mut out);
    }
    out
}

fn check_receipt(r: &Receipt, out: &mut Vec<Finding>) {
    let no = r.number;
    if r.diagnoses.is_empty() {
        out.push(finding(
            "diagnosis.missing",
            Error,
            no,
            r.line,
            "RE",
            None,
            "傷病名 (SY レコード) が記録されていません".into(),
        ));
        return;
    }
    let end = r.service_month.map(|m| m.last_day());
    for (i, d) in r.diagnoses.iter().enumerate() {
        if d.code == "0000999" {
            if d.name.is_empty() {
                out.push(finding(
                    "diagnosis.uncoded.name",
                    Error,
                    no,
                    d.line,
                    "SY",
                    Some(5),
                    "未コード化傷病名 (0000999) には傷病名称を記録します".into(),
                ));
            } else {
                out.push(finding(
                    "diagnosis.uncoded",
                    Info,
                    no,
                    d.line,
                    "SY",
                    Some(1),
                    format!("未コード化傷病名「{}」: 傷病名マスターのコードがあれば使用してください", d.name),
                ));
            }
        }
        if let (Some(s), Some(end)) = (d.start_date, end)
            && s > end
        {
            out.push(finding(
                "diagnosis.start-date",
                Error,
                no,
                d.line,
                "SY",
                Some(2),
                format!("診療開始日 {s} が診療月の末日 {end} より後です"),
            ));
        }
        // Quadratic over a receipt's diagnoses, which number in the tens at most.
        if !d.code.is_empty()
            && r.diagnoses[..i].iter().any(|e| e.code == d.code && e.modifiers == d.modifiers && e.name == d.name)
        {
            out.push(finding(
                "diagnosis.duplicate",
                Warning,
                no,
                d.line,
                "SY",
                Some(1),
                format!(
                    "傷病名 {}{} が重複しています",
                    d.code,
                    if d.name.is_empty() { String::new() } else { format!(" ({})", d.name) }
                ),
            ));
        }
    }
    if !r.diagnoses.iter().any(|d| d.primary) {
        out.push(finding(
            "diagnosis.primary.missing",
            Warning,
            no,
            r.line,
            "RE",
            None,
            "主傷病 (SY 主傷病 = 01) の傷病名がありません".into(),
        ));
    }
}
