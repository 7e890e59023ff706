//! `format.` rules: record structure and order, field counts, required / numeric / date
//! fields, code-table values, レセプト種別 consistency, レセプト番号 contiguity, 診療年月.
//!
//! Works on the raw records (`RawRecord::fields`, CSV index = finding `field`) so that a value
//! the parser could not type is still reported precisely. Typed views are used only to tell
//! "digits but not a real date" (the parser's date parser is the single source of truth,
//! whichever of 西暦/和暦 it accepts).

use crate::util::{RuleDecl, finding, is_decimal, is_digits, rule_infos};
use tenken_model::{CheckContext, FileView, Finding, Masters, RawRecord, Receipt, RuleInfo, Severity};

use Severity::{Error, Warning};

const RULES: &[RuleDecl] = &[
    ("format.record.unknown", Warning, "未知のレコード識別 (unknown record id)"),
    (
        "format.record.order",
        Error,
        "レコードの順序誤り (RE, HO, KO, SN/JD/MF/GR, SY, SI/IY/TO/CO, SJ; IR 先頭, GO 末尾)",
    ),
    ("format.record.too-many", Error, "レコードの記録回数超過 (HO ≤1, KO ≤4 per receipt; IR/GO 1 per file)"),
    (
        "format.record.field-count",
        Error,
        "レコードの項目数誤り (IR 10, RE 38, HO 15, KO 12, SN 9, SY 8, SI/IY 44, TO 48, CO 5, GO 4, SJ 3, JD/MF 33)",
    ),
    ("format.field.required", Error, "必須項目が記録されていない"),
    ("format.field.numeric", Error, "数字項目に数字以外が記録されている"),
    ("format.field.date", Error, "年月 / 年月日として存在しない値"),
    (
        "format.field.code",
        Error,
        "コード表にない値 (審査支払機関, 都道府県, 点数表, 男女区分, 転帰区分, 主傷病, 負担者種別, JD 日別値)",
    ),
    ("format.re.kind", Error, "レセプト種別 (別表5) が不正"),
    ("format.re.kind-payers", Error, "レセプト種別の主保険・併用数と HO/KO レコード数が一致しない"),
    ("format.re.admission-date", Error, "入院レセプトに入院年月日がない"),
    ("format.re.birth-date", Error, "生年月日が診療年月より後"),
    ("format.re.service-month", Error, "診療年月が請求年月より前でない"),
    ("format.receipt-number.sequence", Error, "レセプト番号が 1 からの連番 (1 ずつ昇順) でない"),
    ("format.line.category-missing", Error, "レセプト最初の摘要レコード (SI/IY/TO/CO) に診療識別がない"),
    ("format.line.category", Warning, "診療識別 (別表20) にない値"),
    ("format.line.day", Error, "診療月に存在しない日 (例 30日の月の31日) に算定日がある"),
    ("format.sy.modifier", Error, "修飾語コード欄が 4 桁単位でない、または 20 個 (80 桁) を超える"),
];

pub fn rules() -> Vec<RuleInfo> {
    rule_infos(RULES)
}

/// Per record type: field count (incl. the id) and which CSV indexes are required, 数字,
/// decimal (数字 with a point), plus an inclusive range of day fields (数字).
struct Spec {
    fields: usize,
    required: &'static [u32],
    digits: &'static [u32],
    decimal: &'static [u32],
    days: Option<(u32, u32)>,
}

const fn spec(fields: usize, required: &'static [u32], digits: &'static [u32]) -> Spec {
    Spec { fields, required, digits, decimal: &[], days: None }
}

// [U] Required sets are the fields every 一次請求 record needs per §2; optional-by-case fields
// (入院年月日, 受給者番号 for 法別30, …) are checked by specific rules instead.
static IR: Spec = spec(10, &[1, 2, 3, 4, 7, 8], &[1, 2, 3, 4, 5, 7, 8]);
static RE: Spec = spec(38, &[1, 2, 3, 4, 5, 6], &[1, 2, 3, 5, 6, 7, 8, 10, 12, 14]);
static HO: Spec = spec(15, &[1, 4, 5], &[4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
static KO: Spec = spec(12, &[1, 4, 5], &[2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
static SN: Spec = spec(9, &[1, 2], &[1, 2, 7]);
static JD: Spec = Spec { fields: 33, required: &[1], digits: &[1], decimal: &[], days: Some((2, 32)) };
static MF: Spec = spec(33, &[1], &[1]);
static SY: Spec = spec(8, &[1, 2, 3], &[1, 2, 3, 6]);
static SI: Spec =
    Spec { fields: 44, required: &[2, 3, 6], digits: &[1, 3, 4, 5, 6, 7, 9, 11], decimal: &[], days: Some((13, 43)) };
static IY: Spec =
    Spec { fields: 44, required: &[2, 3, 4, 6], digits: &[1, 3, 5, 6, 7, 9, 11], decimal: &[4], days: Some((13, 43)) };
static TO: Spec = Spec {
    fields: 48,
    required: &[2, 3, 6],
    digits: &[1, 3, 5, 6, 7, 11, 13, 15],
    decimal: &[4, 8],
    days: Some((17, 47)),
};
static CO: Spec = spec(5, &[2, 3], &[1, 3]);
static SJ: Spec = spec(3, &[2], &[1]);
static GO: Spec = spec(4, &[3], &[1, 2, 3]);

fn spec_of(id: &str) -> Option<&'static Spec> {
    Some(match id {
        "IR" => &IR,
        "RE" => &RE,
        "HO" => &HO,
        "KO" => &KO,
        "SN" => &SN,
        "JD" => &JD,
        "MF" => &MF,
        "SY" => &SY,
        "SI" => &SI,
        "IY" => &IY,
        "TO" => &TO,
        "CO" => &CO,
        "SJ" => &SJ,
        "GO" => &GO,
        // GR 包括評価対象外理由: layout not known here [U]; accepted without field checks.
        _ => return None,
    })
}

/// Position class inside a receipt; records must not go back to a lower class.
fn rank(id: &str) -> Option<u8> {
    Some(match id {
        "RE" => 0,
        "HO" => 1,
        "KO" => 2,
        "SN" | "JD" | "MF" | "GR" => 3,
        "SY" => 4,
        "SI" | "IY" | "TO" | "CO" => 5,
        "SJ" => 6,
        _ => return None,
    })
}

const ORDER_TEXT: &str = "RE, HO, KO, SN/JD/MF/GR, SY, SI/IY/TO/CO, SJ";

/// 診療識別 (別表20 as collected in §3).
fn known_category(c: &str) -> bool {
    matches!(
        c,
        "01" | "11"
            | "12"
            | "13"
            | "14"
            | "21"
            | "22"
            | "23"
            | "24"
            | "25"
            | "26"
            | "27"
            | "28"
            | "31"
            | "32"
            | "33"
            | "39"
            | "40"
            | "50"
            | "54"
            | "60"
            | "70"
            | "80"
            | "90"
            | "92"
            | "97"
            | "99"
    )
}

/// Field count, required, numeric and code-table checks of one record.
fn check_fields(rec: &RawRecord, receipt: Option<u32>, out: &mut Vec<Finding>) {
    // Collected once: `RawRecord::field` scans the line, and this reads every field.
    let fields: Vec<&str> = rec.fields().collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or("");
    let id = rec.id();
    let Some(spec) = spec_of(id) else { return };
    let n = rec.field_count();
    if n != spec.fields {
        out.push(finding(
            "format.record.field-count",
            Error,
            receipt,
            rec.line,
            id,
            None,
            format!("{id} レコードの項目数 {n} ≠ {} (record has {n} fields, expected {})", spec.fields, spec.fields),
        ));
    }
    let present = |i: u32| (i as usize) < n;
    for &i in spec.required {
        // A field beyond the end is covered by the field-count finding.
        if present(i) && field(i as usize).is_empty() {
            out.push(finding(
                "format.field.required",
                Error,
                receipt,
                rec.line,
                id,
                Some(i),
                format!("{id} 項目{i} ({}) が記録されていません", field_name(id, i)),
            ));
        }
    }
    if id == "GO" && field(3) == "99" {
        // 総件数 / 総合計点数 are recorded in the final volume only.
        for i in [1u32, 2] {
            if present(i) && field(i as usize).is_empty() {
                out.push(finding(
                    "format.field.required",
                    Error,
                    receipt,
                    rec.line,
                    id,
                    Some(i),
                    format!("GO 項目{i} ({}) が最終ボリューム (99) に記録されていません", field_name(id, i)),
                ));
            }
        }
    }
    let mut numeric = |i: u32, ok: fn(&str) -> bool, what: &str| {
        let v = field(i as usize);
        if !v.is_empty() && !ok(v) {
            out.push(finding(
                "format.field.numeric",
                Error,
                receipt,
                rec.line,
                id,
                Some(i),
                format!("{id} 項目{i} ({}) は{what}で記録します: 「{v}」", field_name(id, i)),
            ));
        }
    };
    for &i in spec.digits {
        numeric(i, is_digits, "数字");
    }
    for &i in spec.decimal {
        numeric(i, is_decimal, "数字 (小数点可)");
    }
    if let Some((from, to)) = spec.days {
        for i in from..=to {
            numeric(i, is_digits, "数字");
        }
    }
    check_codes(rec, receipt, out);
}

/// Values restricted to a code table (only when the value is otherwise well-formed).
fn check_codes(rec: &RawRecord, receipt: Option<u32>, out: &mut Vec<Finding>) {
    // Collected once: `RawRecord::field` scans the line, and this reads every field.
    let fields: Vec<&str> = rec.fields().collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or("");
    let id = rec.id();
    let mut code = |i: u32, ok: bool, expected: &str| {
        let v = field(i as usize);
        if !v.is_empty() && is_digits(v) && !ok {
            out.push(finding(
                "format.field.code",
                Error,
                receipt,
                rec.line,
                id,
                Some(i),
                format!("{id} 項目{i} ({}) 「{v}」はコード表にありません (期待値: {expected})", field_name(id, i)),
            ));
        }
    };
    match id {
        "IR" => {
            code(1, matches!(field(1), "1" | "2"), "1 支払基金 / 2 国保連");
            let pref = field(2);
            code(2, pref.len() == 2 && matches!(pref.parse::<u8>(), Ok(1..=47)), "01–47");
            // [U] only 医科 (点数表 1) files are checked by these rules.
            code(3, field(3) == "1", "1 医科");
        }
        "RE" => code(5, matches!(field(5), "1" | "2"), "1 男 / 2 女"),
        "SY" => {
            code(3, matches!(field(3), "1" | "2" | "3" | "4"), "1–4");
            code(6, field(6) == "01", "01 主傷病 (または空欄)");
        }
        "SN" => code(1, matches!(field(1), "1" | "2" | "3" | "4" | "5"), "1–5"),
        "JD" => {
            code(1, matches!(field(1), "1" | "2" | "3" | "4" | "5"), "1–5");
            // [S] a validator accepts "", "1", "2" per day (meaning of 2 is [U]).
            for i in 2..=32 {
                code(i, matches!(field(i as usize), "1" | "2"), "1 / 2 (または空欄)");
            }
        }
        _ => {}
    }
}

/// Short Japanese names of the fields rules mention (for messages only).
fn field_name(id: &str, i: u32) -> &'static str {
    match (id, i) {
        ("IR", 1) => "審査支払機関",
        ("IR", 2) => "都道府県",
        ("IR", 3) => "点数表",
        ("IR", 4) => "医療機関コード",
        ("IR", 7) => "請求年月",
        ("IR", 8) => "マルチボリューム識別情報",
        ("RE", 1) => "レセプト番号",
        ("RE", 2) => "レセプト種別",
        ("RE", 3) => "診療年月",
        ("RE", 4) => "氏名",
        ("RE", 5) => "男女区分",
        ("RE", 6) => "生年月日",
        ("RE", 8) => "入院年月日",
        ("HO", 1) => "保険者番号",
        ("HO", 4) | ("KO", 4) => "診療実日数",
        ("HO", 5) | ("KO", 5) => "合計点数",
        ("KO", 1) => "公費負担者番号",
        ("KO", 2) => "公費受給者番号",
        ("SN", 1) | ("JD", 1) => "負担者種別",
        ("SN", 2) => "確認区分",
        ("MF", 1) => "窓口負担額区分",
        ("SY", 1) => "傷病名コード",
        ("SY", 2) => "診療開始日",
        ("SY", 3) => "転帰区分",
        ("SY", 4) => "修飾語コード",
        ("SY", 6) => "主傷病",
        ("SI" | "IY" | "TO" | "CO", 1) => "診療識別",
        ("SI" | "IY" | "TO" | "CO", 2) => "負担区分",
        ("SI", 3) => "診療行為コード",
        ("IY", 3) => "医薬品コード",
        ("TO", 3) => "特定器材コード",
        ("CO", 3) => "コメントコード",
        ("SI", 4) => "数量データ",
        ("IY" | "TO", 4) => "使用量",
        ("SI" | "IY" | "TO", 5) => "点数",
        ("SI" | "IY" | "TO", 6) => "回数",
        ("SJ", 2) => "症状詳記データ",
        ("GO", 1) => "総件数",
        ("GO", 2) => "総合計点数",
        ("GO", 3) => "マルチボリューム識別情報",
        ("SI" | "IY", 13..=43) | ("TO", 17..=47) | ("JD", 2..=32) => "算定日",
        _ => "",
    }
}

fn date_field(out: &mut Vec<Finding>, receipt: Option<u32>, rec: &RawRecord, i: u32, parsed: bool, what: &str) {
    let v = rec.field(i as usize);
    // Non-digits are reported by format.field.numeric; here only well-formed but impossible values.
    if !parsed && is_digits(v) {
        out.push(finding(
            "format.field.date",
            Error,
            receipt,
            rec.line,
            rec.id(),
            Some(i),
            format!(
                "{} 項目{i} ({what}) 「{v}」は存在する{}ではありません",
                rec.id(),
                if v.len() <= 6 { "年月" } else { "年月日" }
            ),
        ));
    }
}

pub fn check_file(_ctx: &CheckContext, file: &FileView) -> Vec<Finding> {
    let mut out = Vec::new();
    let (mut ir, mut go) = (0u32, 0u32);
    for rec in &file.records {
        let id = rec.id();
        match id {
            "IR" => {
                ir += 1;
                if ir > 1 {
                    out.push(finding(
                        "format.record.too-many",
                        Error,
                        None,
                        rec.line,
                        id,
                        None,
                        "IR レコードが 2 件以上あります (1 ファイル 1 件)".into(),
                    ));
                }
                check_fields(rec, None, &mut out);
                if let Some(h) = file.header.as_ref().filter(|h| h.line == rec.line) {
                    date_field(&mut out, None, rec, 7, h.billing_month.is_some(), "請求年月");
                }
            }
            "GO" => {
                go += 1;
                if go > 1 {
                    out.push(finding(
                        "format.record.too-many",
                        Error,
                        None,
                        rec.line,
                        id,
                        None,
                        "GO レコードが 2 件以上あります (1 ファイル 1 件)".into(),
                    ));
                }
                check_fields(rec, None, &mut out);
            }
            _ if rank(id).is_some() => out.push(finding(
                "format.record.order",
                Error,
                None,
                rec.line,
                id,
                None,
                format!("{id} レコードがレセプト (RE) の外 (最初の RE の前または GO の後) にあります"),
            )),
            _ => out.push(unknown_record(rec, None)),
        }
    }
    // レセプト番号: 1, 2, 3, … in file order. After a break, resynchronise on the value found
    // so one gap gives one finding, not one per following receipt.
    let mut expected = 1u32;
    for s in &file.receipts {
        let Some(n) = s.number else { continue }; // non-numeric: format.field.numeric
        if n != expected {
            out.push(
                finding(
                    "format.receipt-number.sequence",
                    Error,
                    None,
                    s.line,
                    "RE",
                    Some(1),
                    format!("レセプト番号 {n} ≠ {expected} (1 から 1 ずつ昇順の連番であること)"),
                )
                .receipt(Some(n)),
            );
        }
        expected = n.saturating_add(1);
    }
    out
}

fn unknown_record(rec: &RawRecord, receipt: Option<u32>) -> Finding {
    let id = rec.id();
    finding(
        "format.record.unknown",
        Warning,
        receipt,
        rec.line,
        id,
        None,
        format!("未知のレコード識別「{id}」(この版の医科レイアウトにないレコード)"),
    )
}

pub fn check_receipts(ctx: &CheckContext, receipts: &[Receipt], _masters: &dyn Masters) -> Vec<Finding> {
    let mut out = Vec::new();
    for r in receipts {
        check_receipt(ctx, r, &mut out);
    }
    out
}

fn check_receipt(ctx: &CheckContext, r: &Receipt, out: &mut Vec<Finding>) {
    let no = r.number;
    let month_days = r.service_month.map(|m| m.days() as u32);
    let (mut ho, mut ko) = (0u32, 0u32);
    let mut max_rank = 0u8;
    let mut seen_tekiyou = false;
    let mut dx = 0usize; // cursor into r.diagnoses (same order as the SY records)
    for rec in &r.records {
        let id = rec.id();
        match rank(id) {
            None if id == "IR" || id == "GO" => out.push(finding(
                "format.record.order",
                Error,
                no,
                rec.line,
                id,
                None,
                format!("{id} レコードがレセプトの途中にあります"),
            )),
            None => {
                out.push(unknown_record(rec, no));
                continue;
            }
            Some(k) => {
                if k < max_rank {
                    out.push(finding(
                        "format.record.order",
                        Error,
                        no,
                        rec.line,
                        id,
                        None,
                        format!("{id} レコードの位置が不正です (レセプト内の順序: {ORDER_TEXT})"),
                    ));
                } else {
                    max_rank = k;
                }
            }
        }
        check_fields(rec, no, out);
        match id {
            "RE" => {
                date_field(out, no, rec, 3, r.service_month.is_some(), "診療年月");
                date_field(out, no, rec, 6, r.birth_date.is_some(), "生年月日");
                date_field(out, no, rec, 8, r.admission_date.is_some(), "入院年月日");
            }
            "HO" => {
                ho += 1;
                if ho == 2 {
                    out.push(finding(
                        "format.record.too-many",
                        Error,
                        no,
                        rec.line,
                        id,
                        None,
                        "HO レコードが 2 件以上あります (1 レセプト 1 件まで)".into(),
                    ));
                }
            }
            "KO" => {
                ko += 1;
                if ko == 5 {
                    out.push(finding(
                        "format.record.too-many",
                        Error,
                        no,
                        rec.line,
                        id,
                        None,
                        "KO レコードが 5 件以上あります (第1–第4公費まで)".into(),
                    ));
                }
            }
            "SY" => {
                while dx < r.diagnoses.len() && r.diagnoses[dx].line < rec.line {
                    dx += 1;
                }
                if let Some(d) = r.diagnoses.get(dx).filter(|d| d.line == rec.line) {
                    date_field(out, no, rec, 2, d.start_date.is_some(), "診療開始日");
                }
                let m = rec.field(4);
                if !m.is_ascii() || m.len() % 4 != 0 || m.len() > 80 {
                    out.push(finding(
                        "format.sy.modifier",
                        Error,
                        no,
                        rec.line,
                        id,
                        Some(4),
                        format!("修飾語コード「{m}」は半角 4 桁のコードを 20 個 (80 桁) まで連結して記録します"),
                    ));
                }
            }
            "SI" | "IY" | "TO" | "CO" => {
                let cat = rec.field(1);
                if !seen_tekiyou && cat.is_empty() {
                    out.push(finding(
                        "format.line.category-missing",
                        Error,
                        no,
                        rec.line,
                        id,
                        Some(1),
                        "レセプト最初の摘要レコードに診療識別がありません".into(),
                    ));
                }
                seen_tekiyou = true;
                if is_digits(cat) && !known_category(cat) {
                    out.push(finding(
                        "format.line.category",
                        Warning,
                        no,
                        rec.line,
                        id,
                        Some(1),
                        format!("診療識別「{cat}」は別表20にありません"),
                    ));
                }
                if let (Some(days), Some((from, to))) = (month_days, spec_of(id).and_then(|s| s.days)) {
                    for i in from + days..=to {
                        let v = rec.field(i as usize);
                        if !v.is_empty() && v.bytes().any(|b| b != b'0') {
                            let day = i - from + 1;
                            out.push(finding(
                                "format.line.day",
                                Error,
                                no,
                                rec.line,
                                id,
                                Some(i),
                                format!("{day}日に算定がありますが、診療月は {days} 日までです"),
                            ));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    check_re(ctx, r, ho, ko, out);
}

/// RE-level consistency: レセプト種別, 入院年月日, 生年月日, 診療年月 vs 請求年月.
fn check_re(ctx: &CheckContext, r: &Receipt, ho: u32, ko: u32, out: &mut Vec<Finding>) {
    let no = r.number;
    let k = r.kind.as_bytes();
    let valid_kind = k.len() == 4
        && k.iter().all(u8::is_ascii_digit)
        && k[0] == b'1'
        && (b'1'..=b'4').contains(&k[1])
        && (b'1'..=b'5').contains(&k[2]);
    if !r.kind.is_empty() && !valid_kind {
        out.push(finding(
            "format.re.kind",
            Error,
            no,
            r.line,
            "RE",
            Some(2),
            format!("レセプト種別「{}」が不正です (1桁目 1 医科, 2桁目 1–4, 3桁目 1–5, 4桁目 0–9)", r.kind),
        ));
    }
    if valid_kind {
        let combined = (k[2] - b'0') as u32;
        // 2桁目 2 = 公費単独: no HO, 併用数 = #KO. Otherwise one HO and 併用数 = 1 + #KO.
        let (want_ho, want_ko) = if k[1] == b'2' { (0, combined) } else { (1, combined - 1) };
        if ho != want_ho || ko != want_ko {
            out.push(finding(
                "format.re.kind-payers",
                Error,
                no,
                r.line,
                "RE",
                Some(2),
                format!(
                    "レセプト種別 {} は HO {want_ho} 件 + KO {want_ko} 件を意味しますが、HO {ho} 件 + KO {ko} 件です",
                    r.kind
                ),
            ));
        }
    }
    let raw = |i: usize| r.records.first().map(|re| re.field(i)).unwrap_or("");
    if r.is_inpatient() == Some(true) && valid_kind && raw(8).is_empty() {
        out.push(finding(
            "format.re.admission-date",
            Error,
            no,
            r.line,
            "RE",
            Some(8),
            format!("入院レセプト (種別 {}) に入院年月日が記録されていません", r.kind),
        ));
    }
    if let (Some(b), Some(m)) = (r.birth_date, r.service_month)
        && b > m.last_day()
    {
        out.push(finding(
            "format.re.birth-date",
            Error,
            no,
            r.line,
            "RE",
            Some(6),
            format!("生年月日 {b} が診療年月 {m} より後です"),
        ));
    }
    let billing = ctx.header.as_ref().and_then(|h| h.billing_month);
    if let (Some(m), Some(bm)) = (r.service_month, billing)
        && m >= bm
    {
        out.push(finding(
            "format.re.service-month",
            Error,
            no,
            r.line,
            "RE",
            Some(3),
            format!("診療年月 {m} は請求年月 {bm} より前であること"),
        ));
    }
}
