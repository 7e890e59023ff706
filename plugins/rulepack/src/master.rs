//! `master.` rules: every code against the right SSK master, in force on the service date;
//! and, for codes in force, the master's fixed points, age limits, 上限回数 and 入外適用区分.
//!
//! Dates: a line's codes (and its comment codes) are looked up on its first 算定日, else the
//! 1st of the service month; CO, SY and 修飾語 codes on the 1st of the service month [U]
//! (they carry no day). A receipt whose 診療年月 is unreadable is skipped (format reports it).
//!
//! Cost: each distinct (master, code, date) is looked up once per receipt — in the sandbox a
//! lookup is a host call. Lines of one code almost always share their first day, so this is
//! in practice one lookup per distinct code per receipt; keying on the date as well keeps a
//! code abolished mid-month from being missed on its later lines.

use crate::util::{RuleDecl, finding, line_date, rule_infos};
use tenken_model::{
    CheckContext, Date, FileView, Finding, LineKind, Lookup, MasterEntry, MasterKind, Masters, Receipt, RuleInfo,
    Severity,
};

use Severity::{Error, Warning};

const RULES: &[RuleDecl] = &[
    ("master.procedure.unknown", Error, "診療行為コードが診療行為マスターにない"),
    ("master.procedure.abolished", Error, "診療行為コードが算定日に廃止済み"),
    ("master.procedure.not-yet-listed", Error, "診療行為コードが算定日にまだ収載されていない"),
    ("master.drug.unknown", Error, "医薬品コードが医薬品マスターにない"),
    ("master.drug.abolished", Error, "医薬品コードが使用日に廃止済み (経過措置期間後)"),
    ("master.drug.not-yet-listed", Error, "医薬品コードが使用日にまだ収載されていない"),
    ("master.material.unknown", Error, "特定器材コードが特定器材マスターにない"),
    ("master.material.abolished", Error, "特定器材コードが使用日に廃止済み"),
    ("master.material.not-yet-listed", Error, "特定器材コードが使用日にまだ収載されていない"),
    ("master.comment.unknown", Error, "コメントコードがコメントマスターにない (SI/IY/TO のコメント欄, CO)"),
    ("master.comment.abolished", Error, "コメントコードが廃止済み"),
    ("master.comment.not-yet-listed", Error, "コメントコードがまだ収載されていない"),
    ("master.disease.unknown", Error, "傷病名コードが傷病名マスターにない"),
    ("master.disease.abolished", Error, "傷病名コードが診療月に廃止済み"),
    ("master.disease.not-yet-listed", Error, "傷病名コードが診療月にまだ収載されていない"),
    ("master.modifier.unknown", Error, "修飾語コードが修飾語マスターにない"),
    ("master.modifier.abolished", Error, "修飾語コードが診療月に廃止済み"),
    ("master.modifier.not-yet-listed", Error, "修飾語コードが診療月にまだ収載されていない"),
    (
        "master.procedure.points",
        Error,
        "点数がマスターの新又は現点数と異なる (1 行の算定単位・点数識別 3・数量データなしのときのみ)",
    ),
    ("master.procedure.inout", Error, "入外適用区分に反する (1 入院のみ を外来で, 2 入院外のみ を入院で算定)"),
    ("master.procedure.count-max", Warning, "月の回数の合計がマスターの上限回数を超える"),
    ("master.age.min", Warning, "算定日の年齢がマスターの下限年齢未満"),
    ("master.age.max", Warning, "算定日の年齢がマスターの上限年齢以上 (上限年齢 N = N 歳未満)"),
];

pub fn rules() -> Vec<RuleInfo> {
    rule_infos(RULES)
}

/// No file-level master rules (the facility registry is not a master here).
pub fn check_file(ctx: &CheckContext, file: &FileView) -> Vec<Finding> {
    crate::no_file_rules(ctx, file)
}

#[derive(Clone, Copy)]
enum Status {
    Unknown,
    Abolished,
    NotYetListed,
}

fn rule_id(kind: MasterKind, s: Status) -> &'static str {
    use MasterKind::*;
    use Status::*;
    match (kind, s) {
        (Procedure, Unknown) => "master.procedure.unknown",
        (Procedure, Abolished) => "master.procedure.abolished",
        (Procedure, NotYetListed) => "master.procedure.not-yet-listed",
        (Drug, Unknown) => "master.drug.unknown",
        (Drug, Abolished) => "master.drug.abolished",
        (Drug, NotYetListed) => "master.drug.not-yet-listed",
        (Material, Unknown) => "master.material.unknown",
        (Material, Abolished) => "master.material.abolished",
        (Material, NotYetListed) => "master.material.not-yet-listed",
        (Comment, Unknown) => "master.comment.unknown",
        (Comment, Abolished) => "master.comment.abolished",
        (Comment, NotYetListed) => "master.comment.not-yet-listed",
        (Disease, Unknown) => "master.disease.unknown",
        (Disease, Abolished) => "master.disease.abolished",
        (Disease, NotYetListed) => "master.disease.not-yet-listed",
        (Modifier, Unknown) => "master.modifier.unknown",
        (Modifier, Abolished) => "master.modifier.abolished",
        (Modifier, NotYetListed) => "master.modifier.not-yet-listed",
    }
}

/// Lookups of one receipt, keyed by (master, code, date). Linear search: a receipt has tens
/// of distinct codes, and the vector is reused across the receipts of a batch.
struct Cache<'a> {
    entries: Vec<(MasterKind, &'a str, Date, Lookup)>,
}

impl<'a> Cache<'a> {
    fn get(&mut self, masters: &dyn Masters, kind: MasterKind, code: &'a str, on: Date) -> usize {
        if let Some(i) = self.entries.iter().position(|(k, c, d, _)| *k == kind && *c == code && *d == on) {
            return i;
        }
        self.entries.push((kind, code, on, masters.lookup(kind, code, on)));
        self.entries.len() - 1
    }
}

/// Where a finding about a code points.
struct At<'r> {
    receipt: Option<u32>,
    line: u32,
    record: &'r str,
    field: u32,
}

/// Reports a code that is not in force; returns the entry when it is.
fn in_force<'l>(
    lookup: &'l Lookup,
    kind: MasterKind,
    code: &str,
    on: Date,
    at: &At,
    out: &mut Vec<Finding>,
) -> Option<&'l MasterEntry> {
    let (status, message) = match lookup {
        Lookup::InForce(e) => return Some(e),
        Lookup::Unknown => {
            (Status::Unknown, format!("{}コード {code} は{}マスターにありません", kind.japanese(), kind.japanese()))
        }
        Lookup::Abolished(e) => (
            Status::Abolished,
            format!(
                "{}コード {code} ({}) は {} に廃止されています ({on} 時点)",
                kind.japanese(),
                e.name,
                e.abolished_on.map(|d| d.to_string()).unwrap_or_else(|| "—".into())
            ),
        ),
        Lookup::NotYetListed(e) => (
            Status::NotYetListed,
            format!(
                "{}コード {code} ({}) は {on} 時点でまだ収載されていません{}",
                kind.japanese(),
                e.name,
                e.changed_on.map(|d| format!(" ({d} 収載)")).unwrap_or_default()
            ),
        ),
    };
    out.push(finding(rule_id(kind, status), Error, at.receipt, at.line, at.record, Some(at.field), message));
    None
}

/// A two-digit numeric age code other than "00" (no limit). [U] letter codes (AA, BK, B6,
/// MG, …) have unknown meanings and are not checked.
fn age_code(c: &str) -> Option<i32> {
    let b = c.as_bytes();
    (b.len() == 2 && b.iter().all(u8::is_ascii_digit) && c != "00").then(|| ((b[0] - b'0') * 10 + (b[1] - b'0')) as i32)
}

fn check_age(e: &MasterEntry, birth: Option<Date>, on: Date, code: &str, at: &At, out: &mut Vec<Finding>) {
    let Some(birth) = birth else { return };
    let age = birth.age_on(on);
    if age < 0 {
        return; // born after the date: format.re.birth-date reports it
    }
    // [U] Decided from the master itself: 160155390 「乳幼児加算（３歳未満）」 has 上限年齢 03
    // and 111000370 乳幼児加算（初診）(6歳未満) has 06, so 上限年齢 N means "under N";
    // 下限年齢 N means "N or older" (170034170 幼児加算, 3歳以上6歳未満: 03 / 06).
    if let Some(min) = age_code(&e.age_min)
        && age < min
    {
        out.push(finding(
            "master.age.min",
            Warning,
            at.receipt,
            at.line,
            at.record,
            Some(at.field),
            format!("{code} ({}) は {min} 歳以上が対象ですが、{on} の年齢は {age} 歳です", e.name),
        ));
    }
    if let Some(max) = age_code(&e.age_max)
        && age >= max
    {
        out.push(finding(
            "master.age.max",
            Warning,
            at.receipt,
            at.line,
            at.record,
            Some(at.field),
            format!("{code} ({}) は {max} 歳未満が対象ですが、{on} の年齢は {age} 歳です", e.name),
        ));
    }
}

pub fn check_receipts(_ctx: &CheckContext, receipts: &[Receipt], masters: &dyn Masters) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut cache = Cache { entries: Vec::new() };
    // (code, Σ回数, reported) for 上限回数, reused across receipts.
    let mut counts: Vec<(&str, u64, bool)> = Vec::new();
    for r in receipts {
        cache.entries.clear();
        counts.clear();
        check_receipt(r, masters, &mut cache, &mut counts, &mut out);
    }
    out
}

fn check_receipt<'a>(
    r: &'a Receipt,
    masters: &dyn Masters,
    cache: &mut Cache<'a>,
    counts: &mut Vec<(&'a str, u64, bool)>,
    out: &mut Vec<Finding>,
) {
    let Some(month) = r.service_month else { return };
    let no = r.number;
    let inpatient = r.is_inpatient();
    // A 点数・回数算定単位 ends on the line that carries 点数; a line with 点数 whose
    // predecessor also had 点数 (or that is the receipt's first line) is a unit by itself.
    let mut unit_start = true;
    for l in &r.lines {
        let single_line_unit = unit_start && l.points.is_some();
        unit_start = l.points.is_some();
        let on = line_date(month, l);
        let record = l.kind.record_id();
        if !l.code.is_empty() {
            let kind = match l.kind {
                LineKind::Procedure => MasterKind::Procedure,
                LineKind::Drug => MasterKind::Drug,
                LineKind::Material => MasterKind::Material,
            };
            let at = At { receipt: no, line: l.line, record, field: 3 };
            let i = cache.get(masters, kind, &l.code, on);
            if let Some(e) = in_force(&cache.entries[i].3, kind, &l.code, on, &at, out) {
                check_age(e, r.birth_date, on, &l.code, &at, out);
                if kind == MasterKind::Procedure {
                    if let Some(inp) = inpatient {
                        let bad = match e.inout.as_str() {
                            "1" if !inp => Some("入院のみ"),
                            "2" if inp => Some("入院外のみ"),
                            _ => None,
                        };
                        if let Some(what) = bad {
                            out.push(finding(
                                "master.procedure.inout",
                                Error,
                                no,
                                l.line,
                                record,
                                Some(3),
                                format!(
                                    "{} ({}) は{what}の診療行為ですが、{}レセプトです (入外適用区分 {})",
                                    l.code,
                                    e.name,
                                    if inp { "入院" } else { "入院外" },
                                    e.inout
                                ),
                            ));
                        }
                    }
                    if single_line_unit
                        && e.value_kind == "3"
                        && l.quantity.is_empty()
                        && let (Some(v), Some(p)) = (e.value, l.points)
                        && v.fract() == 0.0
                        && v >= 0.0
                        && (v as u64) != p
                    {
                        out.push(finding(
                            "master.procedure.points",
                            Error,
                            no,
                            l.line,
                            record,
                            Some(5),
                            format!("{} ({}) の点数 {p} ≠ マスターの点数 {} ({on} 時点)", l.code, e.name, v as u64),
                        ));
                    }
                    if e.count_max > 0
                        && let Some(c) = l.count
                    {
                        // [U] 上限回数 is read as per receipt (= per month): the master's
                        // values (判断料 1, 特定疾患療養管理料 2, 人工腎臓 14) are monthly.
                        let slot = match counts.iter().position(|(code, _, _)| *code == l.code) {
                            Some(s) => s,
                            None => {
                                counts.push((&l.code, 0, false));
                                counts.len() - 1
                            }
                        };
                        let (_, sum, reported) = &mut counts[slot];
                        *sum += c as u64;
                        if *sum > e.count_max as u64 && !*reported {
                            *reported = true;
                            out.push(finding(
                                "master.procedure.count-max",
                                Warning,
                                no,
                                l.line,
                                record,
                                Some(6),
                                format!(
                                    "{} ({}) の回数 (月計 {sum}) がマスターの上限回数 {} を超えています",
                                    l.code, e.name, e.count_max
                                ),
                            ));
                        }
                    }
                }
            }
        }
        for c in &l.comments {
            if c.code.is_empty() {
                continue;
            }
            let at = At { receipt: no, line: l.line, record, field: c.field };
            let i = cache.get(masters, MasterKind::Comment, &c.code, on);
            in_force(&cache.entries[i].3, MasterKind::Comment, &c.code, on, &at, out);
        }
    }
    let first = month.first_day();
    for c in &r.comments {
        if c.code.is_empty() {
            continue;
        }
        let at = At { receipt: no, line: c.line, record: "CO", field: 3 };
        let i = cache.get(masters, MasterKind::Comment, &c.code, first);
        in_force(&cache.entries[i].3, MasterKind::Comment, &c.code, first, &at, out);
    }
    for d in &r.diagnoses {
        // 0000999 = 未コード化傷病名: its name is checked by the diagnosis pack.
        if !d.code.is_empty() && d.code != "0000999" {
            let at = At { receipt: no, line: d.line, record: "SY", field: 1 };
            let i = cache.get(masters, MasterKind::Disease, &d.code, first);
            in_force(&cache.entries[i].3, MasterKind::Disease, &d.code, first, &at, out);
        }
        // Malformed 修飾語 fields are reported by format.sy.modifier.
        if d.modifiers.is_ascii() && d.modifiers.len() % 4 == 0 {
            for k in (0..d.modifiers.len()).step_by(4) {
                let code = &d.modifiers[k..k + 4];
                let at = At { receipt: no, line: d.line, record: "SY", field: 4 };
                let i = cache.get(masters, MasterKind::Modifier, code, first);
                in_force(&cache.entries[i].3, MasterKind::Modifier, code, first, &at, out);
            }
        }
    }
}
