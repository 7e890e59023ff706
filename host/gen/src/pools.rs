//! The codes a generated claim may use, picked once per run out of the master set.
//!
//! Why through `Masters::lookup` and not the raw rows: the rulepack judges every code by
//! `lookup` on the line's date, so a code is usable only if `lookup` answers `InForce` on
//! both the first and the last day of the service month with the same version (a code
//! revised or abolished mid-month is left out). This also makes a code whose only row is
//! dated after the month, but which `lookup` answers with its 旧点数, usable at that value,
//! exactly as the rulepack will check it.
//!
//! Filters ([U] decisions, each keeping the claim clear of rulepack findings):
//! - 診療行為: 点数識別 3 with a whole positive 点数, no きざみ (col 29), no age limit
//!   (下限/上限年齢 "00"/empty; letter codes of unknown meaning are avoided as well), and
//!   入外適用区分 0/1/2. Codes with a 上限回数 are kept but used at most that many times.
//! - 医薬品: 金額種別 1, 薬価 0 < p ≤ 2,000 円, 剤形 (col 27) 1 内用, 4 注射 or 6 外用.
//! - 特定器材: 金額種別 1, 1 ≤ 価格 ≤ 50,000 円, no age limit.
//! - 傷病名: not 単独使用禁止, not 保険請求外 (col 19), not 0000999.
//! - コメント: パターン 10 (free text) only.

use tenken_master::MasterSet;
use tenken_model::{Date, Lookup, MasterEntry, MasterKind, Masters, YearMonth};

use crate::{GenError, InjectKind};

/// What a procedure is used for; decides the 診療識別 group and how a receipt uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Initial,
    Revisit,
    Management,
    Home,
    DrugFee,
    Injection,
    Treatment,
    Surgery,
    Test,
    Imaging,
    Rehab,
    Ward,
}

const PURPOSES: usize = 12;

impl Purpose {
    fn index(self) -> usize {
        self as usize
    }
}

/// A usable 診療行為.
#[derive(Debug, Clone)]
pub(crate) struct Proc<'a> {
    pub code: &'a str,
    pub points: u64,
    /// 上限回数 (0 = none).
    pub count_max: u32,
    /// 診療識別 of the group the code is written in.
    pub category: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    Oral,
    Injection,
    External,
}

#[derive(Debug, Clone)]
pub(crate) struct Drug<'a> {
    pub code: &'a str,
    /// 薬価 in 1/100 円.
    pub price_centi: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Material<'a> {
    pub code: &'a str,
    pub price_centi: u64,
}

/// A code not in force on the service month (abolished before it or listed after it).
#[derive(Debug, Clone)]
pub(crate) struct OffCode<'a> {
    pub kind: MasterKind,
    pub code: &'a str,
    /// 点数 (procedure) or price in 1/100 円 (drug, material); 0 when the master has none.
    pub value: u64,
    pub category: &'static str,
}

pub(crate) struct Pools<'a> {
    pub month: YearMonth,
    pub procs: Vec<Proc<'a>>,
    /// Indices into `procs` by purpose, for [outpatient, inpatient] receipts.
    pub by_purpose: [[Vec<u32>; 2]; PURPOSES],
    pub any: [Vec<u32>; 2],
    /// 初診料 111000110 / 再診料 112007410 when usable: the commonest lines of all.
    pub initial: Option<u32>,
    pub revisit: Option<u32>,
    pub drugs: [Vec<Drug<'a>>; 3],
    pub materials: Vec<Material<'a>>,
    pub diseases: Vec<&'a str>,
    pub modifiers: Vec<&'a str>,
    pub comments: Vec<&'a str>,
    /// 入院のみ procedures (for `InoutMismatch` on outpatient receipts).
    pub inpatient_only: Vec<u32>,
    pub abolished: Vec<OffCode<'a>>,
    pub not_yet_listed: Vec<OffCode<'a>>,
    pub unknown_procs: Vec<String>,
    pub unknown_drugs: Vec<String>,
}

fn form_index(f: Form) -> usize {
    match f {
        Form::Oral => 0,
        Form::Injection => 1,
        Form::External => 2,
    }
}

impl<'a> Pools<'a> {
    pub fn drugs(&self, f: Form) -> &[Drug<'a>] {
        &self.drugs[form_index(f)]
    }

    pub fn purpose(&self, p: Purpose, inpatient: bool) -> &[u32] {
        &self.by_purpose[p.index()][inpatient as usize]
    }
}

fn digits(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
}

/// No age limit the rulepack (or a reader) would apply.
fn no_age_limit(s: &str) -> bool {
    matches!(s.trim(), "" | "0" | "00" | "000")
}

/// The entry in force on both `first` and `last`, from the same master version.
fn steady(masters: &MasterSet, kind: MasterKind, code: &str, first: Date, last: Date) -> Option<MasterEntry> {
    let Lookup::InForce(a) = masters.lookup(kind, code, first) else { return None };
    let Lookup::InForce(b) = masters.lookup(kind, code, last) else { return None };
    (a.changed_on == b.changed_on && a.value == b.value && a.value_kind == b.value_kind && a.inout == b.inout)
        .then_some(a)
}

/// 診療識別 and purpose of a procedure code, from its 区分 (code digits 2–3) and name.
/// [U] realism only: the rulepack checks that the 診療識別 is in 別表20, not that it fits.
fn classify(code: &str, name: &str) -> Option<(Purpose, &'static str)> {
    Some(match &code[..3] {
        "111" => (Purpose::Initial, "11"),
        "112" => (Purpose::Revisit, "12"),
        "113" => (Purpose::Management, "13"),
        "114" => (Purpose::Home, "14"),
        "120" | "121" | "122" => {
            let cat = if name.contains("処方箋") {
                "80"
            } else if name.contains("調剤技術基本料") {
                "27"
            } else if name.contains("調剤料") {
                "21"
            } else {
                "25"
            };
            (Purpose::DrugFee, cat)
        }
        "130" | "131" | "132" => {
            let cat = if name.contains("静脈内") {
                "32"
            } else if name.contains("皮下") || name.contains("筋肉内") {
                "31"
            } else {
                "33"
            };
            (Purpose::Injection, cat)
        }
        s if s.starts_with("14") => (Purpose::Treatment, "40"),
        s if s.starts_with("15") => (Purpose::Surgery, "50"),
        s if s.starts_with("16") => (Purpose::Test, "60"),
        s if s.starts_with("17") => (Purpose::Imaging, "70"),
        s if s.starts_with("18") => (Purpose::Rehab, "80"),
        s if s.starts_with("19") => (Purpose::Ward, "90"),
        _ => return None,
    })
}

fn centi(v: f64) -> u64 {
    (v * 100.0).round() as u64
}

impl<'a> Pools<'a> {
    pub fn build(masters: &'a MasterSet, month: YearMonth) -> Result<Pools<'a>, GenError> {
        let (first, last) = (month.first_day(), month.last_day());
        let mut p = Pools {
            month,
            procs: Vec::new(),
            by_purpose: Default::default(),
            any: Default::default(),
            initial: None,
            revisit: None,
            drugs: Default::default(),
            materials: Vec::new(),
            diseases: Vec::new(),
            modifiers: Vec::new(),
            comments: Vec::new(),
            inpatient_only: Vec::new(),
            abolished: Vec::new(),
            not_yet_listed: Vec::new(),
            unknown_procs: Vec::new(),
            unknown_drugs: Vec::new(),
        };
        // Codes not in force on the month, for the abolished / not-yet-listed injections.
        let off = |kind: MasterKind, code: &'a str, value: u64, category: &'static str| match masters
            .lookup(kind, code, first)
        {
            Lookup::Abolished(_) => p_abolished_push(kind, code, value, category),
            Lookup::NotYetListed(_) if matches!(masters.lookup(kind, code, last), Lookup::NotYetListed(_)) => {
                Some((false, OffCode { kind, code, value, category }))
            }
            _ => None,
        };
        let mut offs: Vec<(bool, OffCode<'a>)> = Vec::new();

        for row in masters.rows(MasterKind::Procedure) {
            let code = row.code.as_str();
            if !digits(code, 9) || !code.starts_with('1') {
                continue;
            }
            let Some((purpose, category)) = classify(code, row.name()) else { continue };
            let Some(e) = steady(masters, MasterKind::Procedure, code, first, last) else {
                let value = row.value().filter(|v| *v > 0.0 && v.fract() == 0.0).map(|v| v as u64).unwrap_or(10);
                offs.extend(off(MasterKind::Procedure, code, value, category));
                continue;
            };
            let Some(v) = e.value else { continue };
            if e.value_kind != "3" || v <= 0.0 || v.fract() != 0.0 || v >= 1_000_000.0 {
                continue;
            }
            if !no_age_limit(&e.age_min) || !no_age_limit(&e.age_max) || !matches!(row.col(29).trim(), "" | "0") {
                continue;
            }
            let io = match e.inout.as_str() {
                "0" => [true, true],
                "1" => [false, true],
                "2" => [true, false],
                _ => continue,
            };
            let idx = p.procs.len() as u32;
            p.procs.push(Proc { code, points: v as u64, count_max: e.count_max, category });
            for (inp, ok) in io.into_iter().enumerate() {
                if ok {
                    p.by_purpose[purpose.index()][inp].push(idx);
                    p.any[inp].push(idx);
                }
            }
            if e.inout == "1" {
                p.inpatient_only.push(idx);
            }
            match code {
                "111000110" if io[0] => p.initial = Some(idx),
                "112007410" if io[0] => p.revisit = Some(idx),
                _ => {}
            }
        }

        for row in masters.rows(MasterKind::Drug) {
            let code = row.code.as_str();
            if !digits(code, 9) || !code.starts_with('6') {
                continue;
            }
            let form = match row.col(27).trim() {
                "1" => Form::Oral,
                "4" => Form::Injection,
                "6" => Form::External,
                _ => continue,
            };
            let Some(e) = steady(masters, MasterKind::Drug, code, first, last) else {
                let value = row.value().filter(|v| *v > 0.0).map(centi).unwrap_or(1000);
                offs.extend(off(MasterKind::Drug, code, value, "21"));
                continue;
            };
            match e.value {
                Some(v) if e.value_kind == "1" && v > 0.0 && v <= 2000.0 => {
                    p.drugs[form_index(form)].push(Drug { code, price_centi: centi(v) })
                }
                _ => {}
            }
        }

        for row in masters.rows(MasterKind::Material) {
            let code = row.code.as_str();
            if !digits(code, 9) || !code.starts_with('7') {
                continue;
            }
            let Some(e) = steady(masters, MasterKind::Material, code, first, last) else {
                let value = row.value().filter(|v| *v > 0.0).map(centi).unwrap_or(1000);
                offs.extend(off(MasterKind::Material, code, value, "40"));
                continue;
            };
            match e.value {
                Some(v)
                    if e.value_kind == "1"
                        && (1.0..=50_000.0).contains(&v)
                        && no_age_limit(&e.age_min)
                        && no_age_limit(&e.age_max) =>
                {
                    p.materials.push(Material { code, price_centi: centi(v) })
                }
                _ => {}
            }
        }

        for row in masters.rows(MasterKind::Disease) {
            let code = row.code.as_str();
            if !digits(code, 7) || code == "0000999" {
                continue;
            }
            // SY codes are looked up on the 1st of the service month only.
            match masters.lookup(MasterKind::Disease, code, first) {
                Lookup::InForce(e) => {
                    if matches!(e.flags.trim(), "" | "0" | "00") && matches!(row.col(19).trim(), "" | "0" | "00") {
                        p.diseases.push(code);
                    }
                }
                Lookup::Abolished(_) => {
                    offs.push((true, OffCode { kind: MasterKind::Disease, code, value: 0, category: "" }))
                }
                Lookup::NotYetListed(_) => {
                    offs.push((false, OffCode { kind: MasterKind::Disease, code, value: 0, category: "" }))
                }
                Lookup::Unknown => {}
            }
        }

        for row in masters.rows(MasterKind::Modifier) {
            let code = row.code.as_str();
            if code.len() == 4
                && code.bytes().all(|b| b.is_ascii_alphanumeric())
                && let Lookup::InForce(_) = masters.lookup(MasterKind::Modifier, code, first)
            {
                p.modifiers.push(code);
            }
        }

        for row in masters.rows(MasterKind::Comment) {
            let code = row.code.as_str();
            if digits(code, 9)
                && code.starts_with("810")
                && let Some(e) = steady(masters, MasterKind::Comment, code, first, last)
                && e.flags.trim() == "10"
            {
                p.comments.push(code);
            }
        }

        for (abolished, o) in offs {
            if abolished { p.abolished.push(o) } else { p.not_yet_listed.push(o) }
        }
        // Codes shaped like real ones that the masters do not have.
        for i in 0..1000u32 {
            let c = format!("160{:06}", 999_999 - i * 7);
            if matches!(masters.lookup(MasterKind::Procedure, &c, first), Lookup::Unknown) {
                p.unknown_procs.push(c);
            }
            let d = format!("620{:06}", 999_999 - i * 7);
            if matches!(masters.lookup(MasterKind::Drug, &d, first), Lookup::Unknown) {
                p.unknown_drugs.push(d);
            }
            if p.unknown_procs.len() >= 16 && p.unknown_drugs.len() >= 16 {
                break;
            }
        }
        if p.any[0].is_empty() {
            return Err(GenError::NoCandidates {
                what: "診療行為 codes (点数識別 3, in force, no age limit)", month
            });
        }
        Ok(p)
    }

    /// Fails when the masters give nothing to inject `kind` with.
    pub fn check_injectable(&self, kind: InjectKind) -> Result<(), GenError> {
        let why = match kind {
            InjectKind::AbolishedCode if self.abolished.is_empty() => {
                format!("no code in the masters was abolished before {}", self.month)
            }
            InjectKind::NotYetListed if self.not_yet_listed.is_empty() => {
                format!("no code in the masters is listed only after {}", self.month)
            }
            InjectKind::InoutMismatch if self.inpatient_only.is_empty() => {
                "the 診療行為 master has no usable 入院のみ code".to_string()
            }
            InjectKind::UnknownProcedure if self.unknown_procs.is_empty() => "no unused procedure code found".into(),
            InjectKind::UnknownDrug if self.unknown_drugs.is_empty() => "no unused drug code found".into(),
            _ => return Ok(()),
        };
        Err(GenError::InjectionUnavailable { kind: kind.name(), why })
    }
}

/// An abolished code, tagged for the abolished list (helper so the closure stays small).
fn p_abolished_push<'a>(
    kind: MasterKind,
    code: &'a str,
    value: u64,
    category: &'static str,
) -> Option<(bool, OffCode<'a>)> {
    Some((true, OffCode { kind, code, value, category }))
}
