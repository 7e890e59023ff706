//! `totals.` rules: GO totals against the receipts, HO/KO 合計点数 against the lines by
//! 負担区分 (別表21), 回数 = Σ算定日, and 負担区分 validity.

use crate::util::{RuleDecl, burden_payers, finding, rule_infos};
use tenken_model::{CheckContext, FileView, Finding, Masters, Receipt, RuleInfo, Severity};

use Severity::Error;

const RULES: &[RuleDecl] = &[
    ("totals.go.count", Error, "GO 総件数 ≠ HO レコード数 + KO レコード数"),
    ("totals.go.points", Error, "GO 総合計点数 ≠ Σ 主保険点数 (HO 合計点数、HO がなければ第1公費の合計点数)"),
    ("totals.ho.points", Error, "HO 合計点数 ≠ Σ(点数×回数) (負担区分に医保を含む行)"),
    ("totals.ko.points", Error, "KO 合計点数 ≠ Σ(点数×回数) (負担区分に当該公費を含む行)"),
    ("totals.line.count", Error, "回数 ≠ 算定日 (1日–31日) の合計"),
    ("totals.burden.invalid", Error, "負担区分が別表21にない"),
    ("totals.burden.payer", Error, "負担区分が記録のない保険 (HO) / 公費 (KO) を含む"),
];

pub fn rules() -> Vec<RuleInfo> {
    rule_infos(RULES)
}

pub fn check_file(_ctx: &CheckContext, file: &FileView) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(go) = &file.trailer else { return out };
    // [U] Totals are only comparable in a single-volume file (IR マルチボリューム 00 and GO 99):
    // in a multi-volume submission the final GO counts every volume, which this file alone
    // does not hold.
    let first_volume = file.header.as_ref().is_none_or(|h| h.volume == "00" || h.volume.is_empty());
    if go.volume != "99" || !first_volume {
        return out;
    }
    if let Some(total) = go.total_count {
        let sum: u64 = file.receipts.iter().map(|s| s.insurance_records as u64 + s.public_records as u64).sum();
        if total != sum {
            out.push(finding(
                "totals.go.count",
                Error,
                None,
                go.line,
                "GO",
                Some(1),
                format!("GO 総件数 {total} ≠ HO + KO レコード数 {sum}"),
            ));
        }
    }
    if let Some(total) = go.total_points {
        // A receipt without a readable 主保険点数 is reported by format rules; the sum would be
        // meaningless, so the comparison is skipped.
        let sum: Option<u64> = file.receipts.iter().map(|s| s.main_points).sum();
        if let Some(sum) = sum
            && total != sum
        {
            out.push(finding(
                "totals.go.points",
                Error,
                None,
                go.line,
                "GO",
                Some(2),
                format!("GO 総合計点数 {total} ≠ Σ 主保険点数 {sum}"),
            ));
        }
    }
    out
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
    // Payers present: bit 0 = HO, bit i = KO i.
    let mut present = 0u8;
    if r.insurance.is_some() {
        present |= 1;
    }
    for i in 0..r.public_expenses.len().min(4) {
        present |= 2 << i;
    }
    // Σ(点数×回数) per payer slot (0 = HO, 1..=4 = KO i).
    let mut sums = [0u64; 5];
    // Totals are compared only when every contributing line is readable; otherwise the
    // format / burden findings already explain the difference.
    let mut comparable = true;
    for l in &r.lines {
        let rec = l.kind.record_id();
        if let Some(c) = l.count {
            let days = l.day_total();
            if days != c as u64 {
                out.push(finding(
                    "totals.line.count",
                    Error,
                    no,
                    l.line,
                    rec,
                    Some(6),
                    format!("回数 {c} ≠ 算定日の合計 {days}"),
                ));
            }
        }
        let Some(mask) = burden(no, l.line, rec, &l.burden, present, out) else {
            comparable = false;
            continue;
        };
        if let Some(p) = l.points {
            let Some(c) = l.count else {
                comparable = false;
                continue;
            };
            let v = p.saturating_mul(c as u64);
            for (slot, sum) in sums.iter_mut().enumerate() {
                if mask & (1 << slot) != 0 {
                    *sum = sum.saturating_add(v);
                }
            }
        }
    }
    for c in &r.comments {
        if !c.burden.is_empty() {
            burden(no, c.line, "CO", &c.burden, present, out);
        }
    }
    if !comparable {
        return;
    }
    if let Some(ho) = &r.insurance
        && let Some(t) = ho.total_points
        && t != sums[0]
    {
        out.push(finding(
            "totals.ho.points",
            Error,
            no,
            ho.line,
            "HO",
            Some(5),
            format!("HO 合計点数 {t} ≠ Σ(点数×回数) {} (負担区分に医保を含む行)", sums[0]),
        ));
    }
    for (i, ko) in r.public_expenses.iter().take(4).enumerate() {
        if let Some(t) = ko.total_points {
            let s = sums[i + 1];
            if t != s {
                out.push(finding(
                    "totals.ko.points",
                    Error,
                    no,
                    ko.line,
                    "KO",
                    Some(5),
                    format!("KO (第{}公費) 合計点数 {t} ≠ Σ(点数×回数) {s} (負担区分に第{}公費を含む行)", i + 1, i + 1),
                ));
            }
        }
    }
}

/// Validates one 負担区分 and returns its payer mask, or None (after reporting) when invalid.
/// An empty value is reported by format.field.required and only makes the totals incomparable.
fn burden(no: Option<u32>, line: u32, rec: &str, code: &str, present: u8, out: &mut Vec<Finding>) -> Option<u8> {
    if code.is_empty() {
        return None;
    }
    let Some(mask) = burden_payers(code) else {
        out.push(finding(
            "totals.burden.invalid",
            Error,
            no,
            line,
            rec,
            Some(2),
            format!("負担区分「{code}」は別表21にありません"),
        ));
        return None;
    };
    let missing = mask & !present;
    if missing != 0 {
        let mut names = Vec::new();
        if missing & 1 != 0 {
            names.push("医保 (HO)".to_string());
        }
        for i in 1..=4 {
            if missing & (1 << i) != 0 {
                names.push(format!("第{i}公費 (KO)"));
            }
        }
        out.push(finding(
            "totals.burden.payer",
            Error,
            no,
            line,
            rec,
            Some(2),
            format!("負担区分「{code}」が記録のない {} を含みます", names.join("・")),
        ));
    }
    Some(mask)
}
