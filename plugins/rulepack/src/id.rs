//! `id.` rules: formats and check digits (§5) of 保険者番号, 後期高齢者 被保険者番号,
//! 公費負担者番号, 公費受給者番号 and 医療機関コード; the receiving payer against IR and
//! against the insurer numbers.

use crate::util::{RuleDecl, ascii_digits, check_digit, check_digit_ok, finding, is_digits, rule_infos};
use tenken_model::{CheckContext, FileView, Finding, Masters, Payer, Receipt, RuleInfo, Severity};

use Severity::{Error, Warning};

const RULES: &[RuleDecl] = &[
    ("id.institution.format", Error, "医療機関コードが 7 桁の数字でない"),
    ("id.institution.check-digit", Error, "医療機関コードの検証番号誤り (都道府県+点数表+7桁で計算)"),
    ("id.payer.receiving", Error, "IR 審査支払機関が受付先 (このファイルを受け付けた審査支払機関) と異なる"),
    (
        "id.payer.insurer",
        Warning,
        "保険者番号から見た請求先 (6桁国保・法別39/67 → 国保連, 他 → 支払基金) が IR 審査支払機関と異なる",
    ),
    ("id.insurer.format", Error, "保険者番号が 6 桁 (国保) または 8 桁の数字でない"),
    ("id.insurer.check-digit", Error, "保険者番号の検証番号誤り"),
    ("id.insured.check-digit", Error, "後期高齢者 (法別39) 被保険者番号が 8 桁でないか検証番号誤り"),
    ("id.public.format", Error, "公費負担者番号が 8 桁の数字でない"),
    ("id.public.check-digit", Error, "公費負担者番号の検証番号誤り"),
    ("id.recipient.format", Error, "公費受給者番号が 7 桁以内の数字でない"),
    ("id.recipient.check-digit", Error, "公費受給者番号の検証番号誤り"),
];

pub fn rules() -> Vec<RuleInfo> {
    rule_infos(RULES)
}

pub fn check_file(ctx: &CheckContext, file: &FileView) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(h) = &file.header else { return out };
    let code = h.institution_code.as_str();
    if !code.is_empty() {
        if code.len() != 7 || !is_digits(code) {
            out.push(finding(
                "id.institution.format",
                Error,
                None,
                h.line,
                "IR",
                Some(4),
                format!("医療機関コード「{code}」は 7 桁の数字で記録します"),
            ));
        } else if is_digits(&h.prefecture)
            && h.prefecture.len() == 2
            && is_digits(&h.fee_table)
            && h.fee_table.len() == 1
        {
            // §5: the check digit covers 都道府県(2) + 点数表(1) + the first 6 digits.
            // [U] An all-zero code is a placeholder (the synthetic corpus uses 0000000 with
            // 都道府県 12); no real code is all zeros, so it is not held to the check digit.
            if code != "0000000" {
                let mut base = [0u8; 9];
                base[..2].copy_from_slice(h.prefecture.as_bytes());
                base[2] = h.fee_table.as_bytes()[0];
                base[3..].copy_from_slice(&code.as_bytes()[..6]);
                let want = check_digit(&base);
                if code.as_bytes()[6] - b'0' != want {
                    out.push(finding(
                        "id.institution.check-digit",
                        Error,
                        None,
                        h.line,
                        "IR",
                        Some(4),
                        format!(
                            "医療機関コード {code} の検証番号は {want} (都道府県 {} + 点数表 {} + {} で計算)",
                            h.prefecture,
                            h.fee_table,
                            &code[..6]
                        ),
                    ));
                }
            }
        }
    }
    if let Some(p) = h.payer
        && p != ctx.payer
    {
        out.push(finding(
            "id.payer.receiving",
            Error,
            None,
            h.line,
            "IR",
            Some(1),
            format!(
                "IR 審査支払機関 {} ({}) ですが、このファイルは {} ({}) が受け付けています",
                p.ir_code(),
                payer_name(p),
                ctx.payer.ir_code(),
                payer_name(ctx.payer)
            ),
        ));
    }
    out
}

fn payer_name(p: Payer) -> &'static str {
    match p {
        Payer::Ssk => "支払基金",
        Payer::Kokuho => "国保連",
    }
}

/// The payer an insurer number's claims go to. [U] 6-digit (国保), 法別 39 (後期高齢者) and
/// 67 (退職者医療, administered by 国保) go to 国保連; everything else to 支払基金.
fn payer_of_insurer(n: &str) -> Payer {
    if n.len() == 6 || n.starts_with("39") || n.starts_with("67") { Payer::Kokuho } else { Payer::Ssk }
}

pub fn check_receipts(ctx: &CheckContext, receipts: &[Receipt], _masters: &dyn Masters) -> Vec<Finding> {
    let mut out = Vec::new();
    let ir_payer = ctx.header.as_ref().and_then(|h| h.payer).unwrap_or(ctx.payer);
    for r in receipts {
        let no = r.number;
        if let Some(ho) = &r.insurance {
            let n = ho.insurer_number.as_str();
            if !n.is_empty() {
                if !(is_digits(n) && (n.len() == 6 || n.len() == 8)) {
                    out.push(finding(
                        "id.insurer.format",
                        Error,
                        no,
                        ho.line,
                        "HO",
                        Some(1),
                        format!("保険者番号「{n}」は 6 桁 (国保) または 8 桁の数字で記録します"),
                    ));
                } else {
                    if !check_digit_ok(n) {
                        out.push(finding(
                            "id.insurer.check-digit",
                            Error,
                            no,
                            ho.line,
                            "HO",
                            Some(1),
                            format!(
                                "保険者番号 {n} の検証番号 (末尾) は {} のはずです: check digit should be {}",
                                expected_check(n),
                                expected_check(n)
                            ),
                        ));
                    }
                    let want = payer_of_insurer(n);
                    if want != ir_payer {
                        out.push(finding(
                            "id.payer.insurer",
                            Warning,
                            no,
                            ho.line,
                            "HO",
                            Some(1),
                            format!(
                                "保険者番号 {n} の請求先は {} ですが、IR 審査支払機関は {} です",
                                payer_name(want),
                                payer_name(ir_payer)
                            ),
                        ));
                    }
                    if n.len() == 8 && n.starts_with("39") {
                        check_kouki_number(no, ho.line, &ho.number, &mut out);
                    }
                }
            }
        }
        for ko in &r.public_expenses {
            let n = ko.payer_number.as_str();
            if !n.is_empty() {
                if n.len() != 8 || !is_digits(n) {
                    out.push(finding(
                        "id.public.format",
                        Error,
                        no,
                        ko.line,
                        "KO",
                        Some(1),
                        format!("公費負担者番号「{n}」は 8 桁の数字で記録します"),
                    ));
                } else if !check_digit_ok(n) {
                    out.push(finding(
                        "id.public.check-digit",
                        Error,
                        no,
                        ko.line,
                        "KO",
                        Some(1),
                        format!(
                            "公費負担者番号 {n} の検証番号 (末尾) は {} のはずです: check digit should be {}",
                            expected_check(n),
                            expected_check(n)
                        ),
                    ));
                }
            }
            // 受給者番号: 数字 7 可変 — omitted for 法別30; shorter values are left-padded.
            let rn = ko.recipient_number.as_str();
            if !rn.is_empty() {
                if rn.len() > 7 || !is_digits(rn) {
                    out.push(finding(
                        "id.recipient.format",
                        Error,
                        no,
                        ko.line,
                        "KO",
                        Some(2),
                        format!("公費受給者番号「{rn}」は 7 桁以内の数字で記録します"),
                    ));
                } else {
                    let mut padded = [b'0'; 7];
                    padded[7 - rn.len()..].copy_from_slice(rn.as_bytes());
                    let want = check_digit(&padded[..6]);
                    if padded[6] - b'0' != want {
                        out.push(finding(
                            "id.recipient.check-digit",
                            Error,
                            no,
                            ko.line,
                            "KO",
                            Some(2),
                            format!("公費受給者番号 {rn} の検証番号 (末尾) は {want} のはずです: check digit should be {want}"),
                        ));
                    }
                }
            }
        }
    }
    out
}

fn expected_check(n: &str) -> u8 {
    check_digit(&n.as_bytes()[..n.len() - 1])
}

/// 後期高齢者 被保険者番号 (HO 番号): 8 digits (全角 allowed, 漢字 mode) with a check digit.
fn check_kouki_number(no: Option<u32>, line: u32, number: &str, out: &mut Vec<Finding>) {
    if number.is_empty() {
        return; // required-ness of 番号 is not decided here
    }
    let digits = ascii_digits(number);
    let ok = digits.as_deref().is_some_and(|d| d.len() == 8 && check_digit_ok(d));
    if !ok {
        let detail = match digits.as_deref() {
            Some(d) if d.len() == 8 => format!("検証番号は {}", expected_check(d)),
            _ => "8 桁の数字で記録します".to_string(),
        };
        out.push(finding(
            "id.insured.check-digit",
            Error,
            no,
            line,
            "HO",
            Some(3),
            format!("後期高齢者 被保険者番号「{number}」: {detail}"),
        ));
    }
}
