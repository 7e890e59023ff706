//! One claim file: IR, receipts (planned as plain structs, then written), GO.
//!
//! Why plan first and write after: HO/KO 合計点数 and 実日数 precede the lines they sum, and
//! injected errors must be recorded with the line they end up on. A receipt is planned as
//! units (one 点数・回数算定単位 each: a single SI/TO line, or the lines of one 剤), sorted
//! into 診療識別 groups, and only then written, counting lines.

use rand::Rng;
use rand::rngs::SmallRng;
use tenken_model::{Date, MasterKind, Payer, YearMonth, days_in_month};

use crate::names::{self, Names};
use crate::pools::{Form, Pools, Proc, Purpose};
use crate::write::{Writer, break_check, check_digit, with_check};
use crate::{GenOptions, GeneratedFile, InjectKind, Injection};

/// 負担区分 codes the generator writes, with their payers (bit 0 HO, bit i 第i公費), as 別表21.
fn burden_mask(code: u8) -> u8 {
    match code {
        b'1' => 1,
        b'2' => 1 | 2,
        b'3' => 1 | 4,
        b'4' => 1 | 2 | 4,
        b'5' => 2,
        b'7' => 2 | 4,
        b'E' => 1 | 8,
        _ => 0,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Rec {
    Si,
    Iy,
    To,
}

type Tag = Option<(InjectKind, &'static str)>;

struct Line<'a> {
    rec: Rec,
    code: &'a str,
    /// 使用量 in 1/1000 (IY, TO); 0 = not recorded (SI).
    qty_milli: u32,
    points: Option<u64>,
    /// 回数 as written (differs from Σdays only when injected).
    count: u32,
    days: [u16; 31],
    count_max: u32,
    tag: Tag,
}

impl<'a> Line<'a> {
    fn new(rec: Rec, code: &'a str, qty_milli: u32, points: Option<u64>, days: &[u8], per_day: u16) -> Line<'a> {
        let mut d = [0u16; 31];
        for &day in days {
            d[day as usize - 1] += per_day;
        }
        let count = d.iter().map(|v| *v as u32).sum();
        Line { rec, code, qty_milli, points, count, days: d, count_max: 0, tag: None }
    }

    fn day_bits(&self) -> u32 {
        self.days.iter().enumerate().filter(|(_, v)| **v > 0).fold(0, |m, (i, _)| m | 1 << i)
    }
}

struct Unit<'a> {
    category: &'static str,
    lines: Vec<Line<'a>>,
    /// CO (コメントコード, 文字データ index) written after the lines.
    comment: Option<(&'a str, usize)>,
    burden: u8,
}

impl<'a> Unit<'a> {
    fn one(category: &'static str, line: Line<'a>) -> Unit<'a> {
        Unit { category, lines: vec![line], comment: None, burden: 0 }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Coverage {
    /// 被用者保険 (8-digit insurer).
    Shaho,
    /// 国民健康保険 (6-digit insurer).
    Kokuho,
    /// 後期高齢者医療 (法別39).
    Kouki,
    /// 公費単独 (生活保護 法別12).
    KohiOnly,
}

struct Ho {
    insurer: String,
    symbol: String,
    number: String,
}

struct Ko {
    payer: String,
    recipient: String,
}

struct Sy<'a> {
    code: &'a str,
    start: Date,
    outcome: u8,
    modifier: Option<&'a str>,
    /// Index into `Names::uncoded`, for 0000999 with a name.
    name: Option<usize>,
    primary: bool,
}

#[derive(Clone, Copy)]
enum Target {
    Re,
    Ho,
    Ko(usize),
    Sy(usize),
}

/// Per-file state shared by its receipts.
struct FileCtx<'p, 'a> {
    pools: &'p Pools<'a>,
    names: &'p Names,
    month: YearMonth,
    pref: u8,
    hospital: bool,
    /// Injection kinds with their rates.
    inject: &'p [(InjectKind, f64)],
}

/// Generates one institution's file of `n` receipts.
pub(crate) fn file(
    pools: &Pools<'_>,
    opts: &GenOptions,
    month: YearMonth,
    index: usize,
    n: usize,
    payer: Payer,
    rng: &mut SmallRng,
) -> GeneratedFile {
    let names = Names::new();
    let pref: u8 = rng.random_range(1..=47);
    // [U] "hospital" = an institution big enough to have wards: a tenth of its receipts are
    // inpatient ones.
    let hospital = n >= 200;
    let ctx = FileCtx { pools, names: &names, month, pref, hospital, inject: &opts.inject };
    // 医療機関コード: 郡市区 2 + 医療機関番号 4 + 検証番号 over 都道府県 + 点数表 1 + those 6.
    let six =
        format!("{:02}{:04}", rng.random_range(1..=99u32), (index as u32 * 37 + rng.random_range(0..37u32)) % 10_000);
    let base = format!("{pref:02}1{six}");
    let code = format!("{six}{}", check_digit(base.as_bytes()));
    let mut w = Writer::new(n * 640 + 256);
    let mut injections = Vec::new();
    w.rec("IR");
    w.s(payer.ir_code());
    w.s(&format!("{pref:02}"));
    w.s("1");
    w.s(&code);
    w.empty(1);
    w.f(&names::institution_name(hospital, rng.random_range(0..1000), rng.random_range(0..1000)));
    w.date(opts.billing_month.year, opts.billing_month.month, None);
    w.s("00");
    w.s(&format!(
        "0{}-{:03}-{:04}",
        rng.random_range(10..=99u32),
        rng.random_range(100..=999u32),
        rng.random_range(0..10_000u32)
    ));
    w.end();
    let (mut count, mut points) = (0u64, 0u64);
    for no in 1..=n as u32 {
        let (c, p) = receipt(&ctx, payer, no, rng, &mut w, &mut injections);
        count += c;
        points += p;
    }
    w.rec("GO");
    w.n(count);
    w.n(points);
    w.s("99");
    w.end();
    w.buf.push(0x1A);
    GeneratedFile { institution_code: code, payer, receipts: n, bytes: w.buf, injections }
}

fn pick<T: Copy>(rng: &mut SmallRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// Picks from weighted choices: (weight, value).
fn weighted<T: Copy>(rng: &mut SmallRng, items: &[(u32, T)]) -> T {
    let total: u32 = items.iter().map(|(w, _)| w).sum();
    let mut r = rng.random_range(0..total);
    for (w, v) in items {
        if r < *w {
            return *v;
        }
        r -= w;
    }
    items[items.len() - 1].1
}

/// Distinct sorted days of the month.
fn distinct_days(rng: &mut SmallRng, k: usize, month_days: u8) -> Vec<u8> {
    let mut days: Vec<u8> = Vec::with_capacity(k);
    while days.len() < k.min(month_days as usize) {
        let d = rng.random_range(1..=month_days);
        if !days.contains(&d) {
            days.push(d);
        }
    }
    days.sort_unstable();
    days
}

/// 薬剤料 of one 剤 from Σ(薬価 × 使用量), in 1/100000 円: 15 円以下 1 点, otherwise 円/10
/// rounded 五捨五超入 (receipt-domain.md §6.2). [U] the rulepack does not check 薬剤料.
fn drug_points(total: u64) -> u64 {
    if total <= 1_500_000 {
        1
    } else {
        let (p, r) = (total / 1_000_000, total % 1_000_000);
        if r > 500_000 { p + 1 } else { p }
    }
}

/// 特定器材 points: price × quantity / 10 円, rounded half up, at least 1.
fn material_points(total: u64) -> u64 {
    ((total + 500_000) / 1_000_000).max(1)
}

struct Patient {
    coverage: Coverage,
    age: i32,
    birth: Date,
    male: bool,
    /// レセプト種別 4th digit for outpatient (2 本外, 4 六外, 6 家外, 8 高外一, 0 高外7).
    type_digit: u8,
}

fn patient(rng: &mut SmallRng, payer: Payer, month: YearMonth, need_ho: bool) -> Patient {
    let coverage = match payer {
        Payer::Ssk if !need_ho && rng.random_bool(0.03) => Coverage::KohiOnly,
        Payer::Ssk => Coverage::Shaho,
        Payer::Kokuho if rng.random_bool(0.45) => Coverage::Kouki,
        Payer::Kokuho => Coverage::Kokuho,
    };
    let bucket: (i32, i32) = match coverage {
        Coverage::Shaho => {
            weighted(rng, &[(8, (0, 5)), (8, (6, 14)), (30, (15, 39)), (40, (40, 64)), (8, (65, 69)), (6, (70, 74))])
        }
        Coverage::Kokuho => {
            weighted(rng, &[(5, (0, 5)), (5, (6, 14)), (15, (15, 39)), (25, (40, 64)), (20, (65, 69)), (30, (70, 74))])
        }
        Coverage::Kouki => weighted(rng, &[(45, (75, 79)), (35, (80, 89)), (20, (90, 99))]),
        Coverage::KohiOnly => (20, 89),
    };
    let age = rng.random_range(bucket.0..=bucket.1);
    // Born on a day such that the age on the 1st of the service month is `age`.
    let bm: u8 = rng.random_range(1..=12);
    // A birthday later in the year than the 1st of the service month is not reached yet.
    let by = (month.year as i32 - age - (bm > month.month) as i32) as u16;
    // Born in the service month: on the 1st, so that the age on the 1st is exactly `age`.
    let bd: u8 = if bm == month.month { 1 } else { rng.random_range(1..=days_in_month(by, bm)) };
    let birth = Date { year: by, month: bm, day: bd };
    let male = rng.random_bool(0.5);
    let type_digit = match coverage {
        Coverage::Kouki => {
            if rng.random_bool(0.9) {
                b'8'
            } else {
                b'0'
            }
        }
        _ if age < 6 => b'4',
        _ if age >= 70 => {
            if rng.random_bool(0.8) {
                b'8'
            } else {
                b'0'
            }
        }
        Coverage::Shaho if age >= 18 && rng.random_bool(0.55) => b'2',
        Coverage::Shaho => b'6',
        Coverage::Kokuho if rng.random_bool(0.5) => b'2',
        Coverage::Kokuho => b'6',
        Coverage::KohiOnly => b'2',
    };
    Patient { coverage, age, birth, male, type_digit }
}

fn digits_str(rng: &mut SmallRng, n: usize) -> String {
    (0..n).map(|_| (b'0' + rng.random_range(0..10u8)) as char).collect()
}

fn insurance(rng: &mut SmallRng, p: &Patient, pref: u8) -> Ho {
    // Mostly insurers of the institution's prefecture.
    let ipref = if rng.random_bool(0.85) { pref } else { rng.random_range(1..=47) };
    match p.coverage {
        Coverage::Shaho => {
            let hou = weighted(rng, &[(45, "01"), (35, "06"), (4, "31"), (4, "32"), (4, "33"), (3, "34"), (5, "63")]);
            let insurer = with_check(&format!("{hou}{ipref:02}{}", digits_str(rng, 3)));
            let symbol = if hou == "01" { digits_str(rng, 8) } else { rng.random_range(1..10_000u32).to_string() };
            Ho { insurer, symbol, number: rng.random_range(1..10_000_000u32).to_string() }
        }
        Coverage::Kokuho => Ho {
            insurer: with_check(&format!("{ipref:02}{}", digits_str(rng, 3))),
            symbol: rng.random_range(1..1000u32).to_string(),
            number: rng.random_range(1..1_000_000u32).to_string(),
        },
        Coverage::Kouki => Ho {
            insurer: with_check(&format!("39{ipref:02}1{}", digits_str(rng, 2))),
            symbol: String::new(),
            // 被保険者番号: 8 digits with a 検証番号 (id.insured.check-digit).
            number: with_check(&digits_str(rng, 7)),
        },
        Coverage::KohiOnly => unreachable!("公費単独 has no HO"),
    }
}

fn public_expense(rng: &mut SmallRng, hou: &str, pref: u8) -> Ko {
    Ko {
        payer: with_check(&format!("{hou}{pref:02}{}", digits_str(rng, 3))),
        recipient: with_check(&digits_str(rng, 6)),
    }
}

/// Picks a procedure for `purpose` not used yet in the receipt; falls back to any usable one.
fn pick_proc<'p, 'a>(
    rng: &mut SmallRng,
    pools: &'p Pools<'a>,
    purpose: Purpose,
    inpatient: bool,
    used: &mut Vec<&'a str>,
    fallback: bool,
    days: usize,
) -> Option<&'p Proc<'a>> {
    let preferred = match purpose {
        Purpose::Initial if !inpatient => pools.initial,
        Purpose::Revisit if !inpatient => pools.revisit,
        _ => None,
    };
    if let Some(i) = preferred
        && rng.random_bool(0.8)
    {
        let p = &pools.procs[i as usize];
        if !used.contains(&p.code) {
            used.push(p.code);
            return Some(p);
        }
    }
    let list = pools.purpose(purpose, inpatient);
    let list = if list.is_empty() && fallback { &pools.any[inpatient as usize][..] } else { list };
    if list.is_empty() {
        return None;
    }
    // Prefer a code whose 上限回数 allows `days` (a ward fee on every day of the stay); else
    // take one whose days `si` truncates to its 上限回数.
    let mut second: Option<&Proc<'a>> = None;
    for _ in 0..12 {
        let p = &pools.procs[pick(rng, list) as usize];
        if used.contains(&p.code) {
            continue;
        }
        if p.count_max == 0 || p.count_max as usize >= days {
            used.push(p.code);
            return Some(p);
        }
        second.get_or_insert(p);
    }
    let p = second?;
    used.push(p.code);
    Some(p)
}

/// An SI unit of `p` on `days` (once a day), truncated to its 上限回数.
fn si<'a>(p: &Proc<'a>, days: &[u8]) -> Unit<'a> {
    let days = if p.count_max > 0 && days.len() > p.count_max as usize { &days[..p.count_max as usize] } else { days };
    let mut l = Line::new(Rec::Si, p.code, 0, Some(p.points), days, 1);
    l.count_max = p.count_max;
    Unit::one(p.category, l)
}

/// A 剤 of 1..=k distinct drugs of `form`: points on the last line.
fn drug_unit<'a>(
    rng: &mut SmallRng,
    pools: &Pools<'a>,
    form: Form,
    k: usize,
    day: u8,
    per_day: u16,
    category: &'static str,
) -> Option<Unit<'a>> {
    let list = pools.drugs(form);
    if list.is_empty() {
        return None;
    }
    let n = rng.random_range(1..=k);
    let mut lines: Vec<Line<'a>> = Vec::with_capacity(n);
    let mut total = 0u64;
    for _ in 0..n {
        let d = &list[rng.random_range(0..list.len())];
        if lines.iter().any(|l| l.code == d.code) {
            continue;
        }
        let qty: u32 = match form {
            Form::Oral => weighted(rng, &[(50, 1000), (25, 2000), (15, 3000), (10, 500)]),
            Form::Injection => 1000,
            Form::External => weighted(rng, &[(40, 1000), (30, 2000), (20, 5000), (10, 10_000)]),
        };
        total += d.price_centi * qty as u64;
        lines.push(Line::new(Rec::Iy, d.code, qty, None, &[day], per_day));
    }
    let last = lines.last_mut()?;
    last.points = Some(drug_points(total));
    Some(Unit { category, lines, comment: None, burden: 0 })
}

/// Plans and writes one receipt; returns (HO + KO records, 主保険点数) for GO.
fn receipt(
    ctx: &FileCtx<'_, '_>,
    payer: Payer,
    no: u32,
    rng: &mut SmallRng,
    w: &mut Writer,
    injections: &mut Vec<Injection>,
) -> (u64, u64) {
    let pools = ctx.pools;
    let month = ctx.month;
    let mdays = month.days();
    // --- which errors go into this receipt
    let mut inj: Vec<InjectKind> =
        ctx.inject.iter().filter(|(_, r)| *r > 0.0 && rng.random_bool(*r)).map(|(k, _)| *k).collect();
    let has = |inj: &[InjectKind], k: InjectKind| inj.contains(&k);
    if has(&inj, InjectKind::MissingDiagnosis) {
        inj.retain(|k| !matches!(k, InjectKind::UncodedNoName | InjectKind::StartDate));
    }
    let need_ho = has(&inj, InjectKind::InsurerCheckDigit) || has(&inj, InjectKind::HoTotal);
    let need_ko = has(&inj, InjectKind::PublicCheckDigit)
        || has(&inj, InjectKind::RecipientCheckDigit)
        || has(&inj, InjectKind::KoTotal);

    // --- patient and payers
    let pt = patient(rng, payer, month, need_ho);
    let inpatient = ctx.hospital && !has(&inj, InjectKind::InoutMismatch) && rng.random_bool(0.1);
    let ho = (pt.coverage != Coverage::KohiOnly).then(|| insurance(rng, &pt, ctx.pref));
    let mut kos: Vec<Ko> = Vec::new();
    if pt.coverage == Coverage::KohiOnly {
        kos.push(public_expense(rng, "12", ctx.pref));
    } else {
        let r: f64 = rng.random();
        let n_ko = if r < 0.03 {
            2
        } else if r < 0.15 || need_ko {
            1
        } else {
            0
        };
        let choices: &[&str] = if pt.age < 15 { &["88", "52"] } else { &["21", "54", "51", "15", "82"] };
        let first = pick(rng, choices);
        if n_ko >= 1 {
            kos.push(public_expense(rng, first, ctx.pref));
        }
        if n_ko == 2 {
            let second = if first == "88" {
                "52"
            } else if first == "82" {
                "21"
            } else {
                "82"
            };
            kos.push(public_expense(rng, second, ctx.pref));
        }
    }

    // --- visits (outpatient) or stay (inpatient)
    let mut admission: Option<Date> = None;
    let days: Vec<u8> = if inpatient {
        let from = if rng.random_bool(0.5) {
            let ym = month.prev_n(rng.random_range(1..=6));
            admission = ym.day(rng.random_range(1..=ym.days()));
            1
        } else {
            let d = rng.random_range(1..=mdays - 3);
            admission = month.day(d);
            d
        };
        let to = if rng.random_bool(0.5) { mdays } else { rng.random_range(from..=mdays) };
        (from..=to).collect()
    } else {
        let k = weighted(rng, &[(55, 1usize), (25, 2), (10, 3), (6, 4), (3, 6), (1, 10)]);
        distinct_days(rng, k, mdays)
    };
    let some_day = |rng: &mut SmallRng| pick(rng, &days);

    // --- lines
    let mut used: Vec<&str> = Vec::new();
    let mut units: Vec<Unit> = Vec::new();
    let initial = !inpatient && rng.random_bool(0.3);
    if inpatient {
        if let Some(p) = pick_proc(rng, pools, Purpose::Ward, true, &mut used, true, days.len()) {
            units.push(si(p, &days));
        }
    } else if initial {
        if let Some(p) = pick_proc(rng, pools, Purpose::Initial, false, &mut used, true, 1) {
            units.push(si(p, &days[..1]));
        }
        if days.len() > 1
            && let Some(p) = pick_proc(rng, pools, Purpose::Revisit, false, &mut used, true, days.len() - 1)
        {
            units.push(si(p, &days[1..]));
        }
    } else if let Some(p) = pick_proc(rng, pools, Purpose::Revisit, false, &mut used, true, days.len()) {
        units.push(si(p, &days));
    }
    // Optional groups, each with its rate as [outpatient, inpatient].
    let rate = |r: [f64; 2]| r[inpatient as usize];
    if rng.random_bool(rate([0.25, 0.10]))
        && let Some(p) = pick_proc(rng, pools, Purpose::Management, inpatient, &mut used, false, 1)
    {
        let d = some_day(rng);
        units.push(si(p, &[d]));
    }
    if rng.random_bool(rate([0.02, 0.0]))
        && let Some(p) = pick_proc(rng, pools, Purpose::Home, inpatient, &mut used, false, 1)
    {
        let d = some_day(rng);
        units.push(si(p, &[d]));
    }
    if rng.random_bool(rate([0.5, 0.6])) {
        let d = some_day(rng);
        let n = weighted(rng, &[(50, 1usize), (35, 2), (15, 3)]);
        for _ in 0..n {
            let supply: u16 = if inpatient { pick(rng, &[3, 7]) } else { pick(rng, &[3, 5, 7, 14, 14, 28, 30]) };
            if let Some(mut u) = drug_unit(rng, pools, Form::Oral, 3, d, supply, "21") {
                if !pools.comments.is_empty() && rng.random_bool(0.15) {
                    u.comment = Some((pick(rng, &pools.comments), rng.random_range(0..ctx.names.comments.len())));
                }
                units.push(u);
            }
        }
        if rng.random_bool(0.25)
            && let Some(u) = drug_unit(rng, pools, Form::External, 1, d, 1, "23")
        {
            units.push(u);
        }
        if let Some(p) = pick_proc(rng, pools, Purpose::DrugFee, inpatient, &mut used, false, 1) {
            units.push(si(p, &[d]));
        }
    }
    if rng.random_bool(rate([0.08, 0.4]))
        && let ds = if inpatient { distinct_in(rng, &days, 5) } else { vec![some_day(rng)] }
        && let Some(p) = pick_proc(rng, pools, Purpose::Injection, inpatient, &mut used, false, ds.len())
    {
        // The 剤 goes with the procedure's days as written (after any 上限回数 truncation).
        let unit = si(p, &ds);
        let ds: Vec<u8> = (1..=31u8).filter(|d| unit.lines[0].days[*d as usize - 1] > 0).collect();
        units.push(unit);
        if let Some(mut u) = drug_unit(rng, pools, Form::Injection, 2, ds[0], 1, p.category) {
            // The same 剤 on every injection day.
            for l in &mut u.lines {
                for &d in &ds[1..] {
                    l.days[d as usize - 1] += 1;
                }
                l.count = l.days.iter().map(|v| *v as u32).sum();
            }
            units.push(u);
        }
    }
    if rng.random_bool(rate([0.12, 0.15])) {
        let ds = if inpatient { vec![some_day(rng)] } else { days.clone() };
        if let Some(p) = pick_proc(rng, pools, Purpose::Treatment, inpatient, &mut used, false, ds.len()) {
            units.push(si(p, &ds));
        }
    }
    if rng.random_bool(rate([0.01, 0.08]))
        && let Some(p) = pick_proc(rng, pools, Purpose::Surgery, inpatient, &mut used, false, 1)
    {
        let d = some_day(rng);
        units.push(si(p, &[d]));
    }
    if rng.random_bool(rate([0.35, 0.6])) {
        let d = some_day(rng);
        for _ in 0..weighted(rng, &[(30, 1usize), (25, 2), (20, 3), (15, 4), (10, 6)]) {
            if let Some(p) = pick_proc(rng, pools, Purpose::Test, inpatient, &mut used, false, 1) {
                units.push(si(p, &[d]));
            }
        }
    }
    if rng.random_bool(rate([0.08, 0.25])) {
        let d = some_day(rng);
        if let Some(p) = pick_proc(rng, pools, Purpose::Imaging, inpatient, &mut used, false, 1) {
            units.push(si(p, &[d]));
            if !pools.materials.is_empty() && rng.random_bool(0.5) {
                let m = &pools.materials[rng.random_range(0..pools.materials.len())];
                let qty = 1000u32;
                let pts = material_points(m.price_centi * qty as u64);
                units.push(Unit::one(p.category, Line::new(Rec::To, m.code, qty, Some(pts), &[d], 1)));
            }
        }
    }
    if rng.random_bool(rate([0.04, 0.1])) {
        let ds = if inpatient { distinct_in(rng, &days, 4) } else { days.clone() };
        if let Some(p) = pick_proc(rng, pools, Purpose::Rehab, inpatient, &mut used, false, ds.len()) {
            units.push(si(p, &ds));
        }
    }

    // --- line-level injections (new lines carry their tag)
    for &k in &inj {
        match k {
            InjectKind::UnknownProcedure => {
                let code = pools.unknown_procs[rng.random_range(0..pools.unknown_procs.len())].as_str();
                let mut l = Line::new(Rec::Si, code, 0, Some(rng.random_range(10..300)), &[some_day(rng)], 1);
                l.tag = Some((k, k.rule()));
                units.push(Unit::one("60", l));
            }
            InjectKind::UnknownDrug => {
                let code = pools.unknown_drugs[rng.random_range(0..pools.unknown_drugs.len())].as_str();
                let mut l = Line::new(Rec::Iy, code, 1000, Some(rng.random_range(1..50)), &[some_day(rng)], 7);
                l.tag = Some((k, k.rule()));
                units.push(Unit::one("21", l));
            }
            InjectKind::InoutMismatch => {
                let p = &pools.procs[pick(rng, &pools.inpatient_only) as usize];
                let mut l = Line::new(Rec::Si, p.code, 0, Some(p.points), &[some_day(rng)], 1);
                l.tag = Some((k, k.rule()));
                units.push(Unit::one(p.category, l));
            }
            _ => {}
        }
    }
    // Abolished / not yet listed: a line, or an SY (added with the diagnoses below).
    let mut off_disease: Vec<(&str, InjectKind, &'static str)> = Vec::new();
    for &k in &inj {
        let list = match k {
            InjectKind::AbolishedCode => &pools.abolished,
            InjectKind::NotYetListed => &pools.not_yet_listed,
            _ => continue,
        };
        let no_sy = has(&inj, InjectKind::MissingDiagnosis);
        let candidates: Vec<usize> =
            (0..list.len()).filter(|i| !(no_sy && list[*i].kind == MasterKind::Disease)).collect();
        if candidates.is_empty() {
            continue;
        }
        let o = &list[pick(rng, &candidates)];
        let abolished = k == InjectKind::AbolishedCode;
        let rule = off_rule(o.kind, abolished);
        let d = some_day(rng);
        let mut line = match o.kind {
            MasterKind::Procedure => Line::new(Rec::Si, o.code, 0, Some(o.value), &[d], 1),
            MasterKind::Drug => Line::new(Rec::Iy, o.code, 1000, Some(drug_points(o.value * 1000)), &[d], 1),
            MasterKind::Material => Line::new(Rec::To, o.code, 1000, Some(material_points(o.value * 1000)), &[d], 1),
            _ => {
                off_disease.push((o.code, k, rule));
                continue;
            }
        };
        line.tag = Some((k, rule));
        let cat = if o.category.is_empty() { "80" } else { o.category };
        units.push(Unit::one(cat, line));
    }

    // --- group by 診療識別 (stable: a 剤 stays after its procedure), then 負担区分
    units.sort_by_key(|u| u.category.parse::<u8>().unwrap_or(99));
    let has_ho = ho.is_some();
    let n_ko = kos.len();
    for (ui, u) in units.iter_mut().enumerate() {
        u.burden = match (has_ho, n_ko) {
            (true, 0) => b'1',
            (true, 1) if ui == 0 || rng.random_bool(0.85) => b'2',
            (true, 1) => b'1',
            (true, _) if ui == 0 => b'4',
            (true, _) => weighted(rng, &[(70, b'4'), (15, b'2'), (15, b'1')]),
            (false, 1) => b'5',
            (false, _) if ui == 0 || rng.random_bool(0.8) => b'7',
            (false, _) => b'5',
        };
    }
    let mut targets: Vec<(Target, InjectKind, &'static str)> = Vec::new();
    for &k in &inj {
        match k {
            InjectKind::CountDays => {
                // A single SI line without 上限回数 (so only totals.line.count can fire).
                let cands: Vec<(usize, usize)> = units
                    .iter()
                    .enumerate()
                    .flat_map(|(ui, u)| u.lines.iter().enumerate().map(move |(li, l)| (ui, li, l)))
                    .filter(|(_, _, l)| l.rec == Rec::Si && l.tag.is_none() && l.count_max == 0)
                    .map(|(ui, li, _)| (ui, li))
                    .collect();
                if cands.is_empty() {
                    continue;
                }
                let (ui, li) = pick(rng, &cands);
                let l = &mut units[ui].lines[li];
                l.count = if l.count > 1 && rng.random_bool(0.5) { l.count - 1 } else { l.count + 1 };
                l.tag = Some((k, k.rule()));
            }
            InjectKind::BurdenPayer => {
                // A one-line unit without comment; its 負担区分 names a payer not on the receipt.
                let cands: Vec<usize> = (0..units.len())
                    .filter(|i| {
                        units[*i].lines.len() == 1 && units[*i].comment.is_none() && units[*i].lines[0].tag.is_none()
                    })
                    .collect();
                if cands.is_empty() {
                    continue;
                }
                let ui = pick(rng, &cands);
                units[ui].burden = match (has_ho, n_ko) {
                    (false, _) => b'1',
                    (true, 0) => b'2',
                    (true, 1) => b'3',
                    (true, _) => b'E',
                };
                units[ui].lines[0].tag = Some((k, k.rule()));
            }
            InjectKind::InsurerCheckDigit if has_ho => targets.push((Target::Ho, k, k.rule())),
            InjectKind::HoTotal if has_ho => targets.push((Target::Ho, k, k.rule())),
            InjectKind::PublicCheckDigit | InjectKind::RecipientCheckDigit | InjectKind::KoTotal if n_ko > 0 => {
                targets.push((Target::Ko(0), k, k.rule()))
            }
            InjectKind::MissingDiagnosis => targets.push((Target::Re, k, k.rule())),
            _ => {}
        }
    }

    // --- totals by payer: Σ(点数×回数) and 実日数 (days with a line for that payer)
    let mut sums = [0u64; 5];
    let mut day_bits = [0u32; 5];
    for u in &units {
        let mask = burden_mask(u.burden);
        for l in &u.lines {
            let v = l.points.map(|p| p * l.count as u64).unwrap_or(0);
            let bits = l.day_bits();
            for slot in 0..5 {
                if mask & (1 << slot) != 0 {
                    sums[slot] += v;
                    day_bits[slot] |= bits;
                }
            }
        }
    }
    let mut ho_total = sums[0];
    let mut ko_totals: Vec<u64> = (0..n_ko).map(|i| sums[i + 1]).collect();
    let mut ho = ho;
    for (t, k, _) in &targets {
        match (t, k) {
            (Target::Ho, InjectKind::HoTotal) => ho_total += rng.random_range(1..=50),
            (Target::Ho, InjectKind::InsurerCheckDigit) => {
                if let Some(h) = ho.as_mut() {
                    break_check(&mut h.insurer, rng.random_range(0..9))
                }
            }
            (Target::Ko(0), InjectKind::KoTotal) => ko_totals[0] += rng.random_range(1..=50),
            (Target::Ko(0), InjectKind::PublicCheckDigit) => break_check(&mut kos[0].payer, rng.random_range(0..9)),
            (Target::Ko(0), InjectKind::RecipientCheckDigit) => {
                break_check(&mut kos[0].recipient, rng.random_range(0..9))
            }
            _ => {}
        }
    }

    // --- diagnoses
    let mut sys: Vec<Sy> = Vec::new();
    if !has(&inj, InjectKind::MissingDiagnosis) {
        let n = weighted(rng, &[(40, 1usize), (30, 2), (20, 3), (10, 4)]);
        let first_visit = month.day(days[0]).expect("a day of the month");
        for j in 0..n {
            let start = if j == 0 && initial { first_visit } else { past_date(rng, first_visit, pt.birth) };
            if pools.diseases.is_empty() {
                sys.push(Sy {
                    code: "0000999",
                    start,
                    outcome: 1,
                    modifier: None,
                    name: Some(j % ctx.names.uncoded.len()),
                    primary: j == 0,
                });
                continue;
            }
            let code = pick(rng, &pools.diseases);
            if sys.iter().any(|s| s.code == code) {
                continue;
            }
            let modifier = (!pools.modifiers.is_empty() && rng.random_bool(0.15)).then(|| pick(rng, &pools.modifiers));
            let outcome = if j > 0 && rng.random_bool(0.08) { 2 } else { 1 };
            sys.push(Sy { code, start, outcome, modifier, name: None, primary: j == 0 });
        }
        if rng.random_bool(0.02) {
            let name = rng.random_range(0..ctx.names.uncoded.len());
            sys.push(Sy {
                code: "0000999",
                start: past_date(rng, first_visit, pt.birth),
                outcome: 1,
                modifier: None,
                name: Some(name),
                primary: false,
            });
        }
        for (code, k, rule) in &off_disease {
            targets.push((Target::Sy(sys.len()), *k, *rule));
            sys.push(Sy {
                code,
                start: past_date(rng, first_visit, pt.birth),
                outcome: 1,
                modifier: None,
                name: None,
                primary: false,
            });
        }
        if has(&inj, InjectKind::UncodedNoName) {
            let k = InjectKind::UncodedNoName;
            targets.push((Target::Sy(sys.len()), k, k.rule()));
            sys.push(Sy {
                code: "0000999",
                start: past_date(rng, first_visit, pt.birth),
                outcome: 1,
                modifier: None,
                name: None,
                primary: false,
            });
        }
        if has(&inj, InjectKind::StartDate) {
            let k = InjectKind::StartDate;
            let i = rng.random_range(0..sys.len());
            let next = month.next();
            sys[i].start = next.day(rng.random_range(1..=28)).expect("a day of next month");
            targets.push((Target::Sy(i), k, k.rule()));
        }
    }

    // --- write
    let re_line = w.line;
    let kind = {
        let d2 = match pt.coverage {
            Coverage::Shaho | Coverage::Kokuho => b'1',
            Coverage::Kouki => b'3',
            Coverage::KohiOnly => b'2',
        };
        let d3 = b'0' + if has_ho { 1 + n_ko as u8 } else { n_ko as u8 };
        // Inpatient: the odd digit before the outpatient one (2→1, 4→3, 6→5, 8→7, 0→9).
        let d4 = if inpatient { if pt.type_digit == b'0' { b'9' } else { pt.type_digit - 1 } } else { pt.type_digit };
        [b'1', d2, d3, d4]
    };
    w.rec("RE");
    w.n(no as u64);
    w.f(&kind);
    w.date(month.year, month.month, None);
    let fam = &ctx.names.family[rng.random_range(0..ctx.names.family.len())];
    let given_list = if pt.male { &ctx.names.male } else { &ctx.names.female };
    let given = &given_list[rng.random_range(0..given_list.len())];
    let katakana_only = rng.random_bool(0.08);
    let mut name = Vec::with_capacity(32);
    for (i, part) in [fam, given].into_iter().enumerate() {
        if i == 1 {
            name.extend_from_slice(&ctx.names.space);
        }
        name.extend_from_slice(if katakana_only { &part.kana } else { &part.kanji });
    }
    w.f(&name);
    w.s(if pt.male { "1" } else { "2" });
    w.date(pt.birth.year, pt.birth.month, Some(pt.birth.day));
    // 給付割合: recorded for 国保 only (§2).
    w.s(match pt.coverage {
        Coverage::Kokuho if pt.type_digit == b'4' || pt.type_digit == b'8' => "80",
        Coverage::Kokuho => "70",
        _ => "",
    });
    match admission {
        Some(a) => w.date(a.year, a.month, Some(a.day)),
        None => w.empty(1),
    }
    w.empty(2); // 病棟区分, 一部負担金区分
    w.s(if pt.type_digit == b'0' { "26" } else { "" }); // 特記事項: 区ア for 現役並み
    w.empty(1); // 病床数
    w.s(&format!("{:06}", rng.random_range(1..1_000_000u32))); // カルテ番号
    w.empty(22); // 14–35
    let mut kana = Vec::with_capacity(32);
    kana.extend_from_slice(&fam.kana);
    kana.extend_from_slice(&ctx.names.space);
    kana.extend_from_slice(&given.kana);
    w.f(&kana);
    w.empty(1);
    w.end();
    let record = |t: Target, line: u32, injections: &mut Vec<Injection>| {
        for (tt, k, rule) in &targets {
            let same = match (tt, t) {
                (Target::Re, Target::Re) | (Target::Ho, Target::Ho) => true,
                (Target::Ko(a), Target::Ko(b)) => *a == b,
                (Target::Sy(a), Target::Sy(b)) => *a == b,
                _ => false,
            };
            if same {
                injections.push(Injection { kind: k.name().into(), receipt: no, line, expected_rule: (*rule).into() });
            }
        }
    };
    record(Target::Re, re_line, injections);
    if let Some(h) = &ho {
        let line = w.line;
        w.rec("HO");
        let mut padded = [b' '; 8];
        padded[8 - h.insurer.len()..].copy_from_slice(h.insurer.as_bytes());
        w.f(&padded);
        w.s(&h.symbol);
        w.s(&h.number);
        w.n(day_bits[0].count_ones() as u64);
        w.n(ho_total);
        w.empty(9);
        w.end();
        record(Target::Ho, line, injections);
    }
    for (i, k) in kos.iter().enumerate() {
        let line = w.line;
        w.rec("KO");
        w.s(&k.payer);
        w.s(&k.recipient);
        w.empty(1);
        w.n(day_bits[i + 1].count_ones() as u64);
        w.n(ko_totals[i]);
        w.empty(6);
        w.end();
        record(Target::Ko(i), line, injections);
    }
    if has_ho && rng.random_bool(0.4) {
        w.buf.extend_from_slice(b"SN,1,01,,,,00,,");
        w.end();
    }
    for (i, s) in sys.iter().enumerate() {
        let line = w.line;
        w.rec("SY");
        w.s(s.code);
        w.date(s.start.year, s.start.month, Some(s.start.day));
        w.n(s.outcome as u64);
        w.s(s.modifier.unwrap_or(""));
        match s.name {
            Some(n) => w.f(&ctx.names.uncoded[n]),
            None => w.empty(1),
        }
        w.s(if s.primary { "01" } else { "" });
        w.empty(1);
        w.end();
        record(Target::Sy(i), line, injections);
    }
    let mut prev_cat = "";
    for u in &units {
        for l in &u.lines {
            if let Some((k, rule)) = l.tag {
                injections.push(Injection {
                    kind: k.name().into(),
                    receipt: no,
                    line: w.line,
                    expected_rule: rule.into(),
                });
            }
            w.rec(match l.rec {
                Rec::Si => "SI",
                Rec::Iy => "IY",
                Rec::To => "TO",
            });
            // 診療識別 on the first line of each group only.
            if u.category != prev_cat {
                w.s(u.category);
                prev_cat = u.category;
            } else {
                w.empty(1);
            }
            w.f(&[u.burden]);
            w.s(l.code);
            if l.qty_milli == 0 {
                w.empty(1);
            } else {
                write_qty(w, l.qty_milli);
            }
            match l.points {
                Some(p) => w.n(p),
                None => w.empty(1),
            }
            w.n(l.count as u64);
            w.empty(if l.rec == Rec::To { 10 } else { 6 });
            for v in l.days {
                w.nz(v as u64);
            }
            w.end();
        }
        if let Some((code, text)) = u.comment {
            w.rec("CO");
            w.empty(1);
            w.f(&[u.burden]);
            w.s(code);
            w.f(&ctx.names.comments[text]);
            w.end();
        }
    }
    let main = if has_ho { ho_total } else { ko_totals.first().copied().unwrap_or(0) };
    (has_ho as u64 + n_ko as u64, main)
}

/// 使用量 as 数字 with a decimal point when needed: 1000 → `1`, 500 → `0.5`.
fn write_qty(w: &mut Writer, milli: u32) {
    let (int, frac) = (milli / 1000, milli % 1000);
    if frac == 0 {
        w.n(int as u64);
    } else {
        let mut s = format!("{int}.{frac:03}");
        while s.ends_with('0') {
            s.pop();
        }
        w.s(&s);
    }
}

fn off_rule(kind: MasterKind, abolished: bool) -> &'static str {
    match (kind, abolished) {
        (MasterKind::Procedure, true) => "master.procedure.abolished",
        (MasterKind::Procedure, false) => "master.procedure.not-yet-listed",
        (MasterKind::Drug, true) => "master.drug.abolished",
        (MasterKind::Drug, false) => "master.drug.not-yet-listed",
        (MasterKind::Material, true) => "master.material.abolished",
        (MasterKind::Material, false) => "master.material.not-yet-listed",
        (_, true) => "master.disease.abolished",
        (_, false) => "master.disease.not-yet-listed",
    }
}

/// Up to `k` distinct days out of `days`, sorted.
fn distinct_in(rng: &mut SmallRng, days: &[u8], k: usize) -> Vec<u8> {
    let mut out: Vec<u8> = (0..k).map(|_| pick(rng, days)).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// A 診療開始日 between 3 years before `upto` and `upto`, not before birth.
fn past_date(rng: &mut SmallRng, upto: Date, birth: Date) -> Date {
    let back: i32 = weighted(rng, &[(30, 0), (30, 2), (25, 12), (15, 36)]);
    let months_back = if back == 0 { 0 } else { rng.random_range(1..=back) };
    let ym = upto.year_month().prev_n(months_back as u32);
    let day = if months_back == 0 { rng.random_range(1..=upto.day) } else { rng.random_range(1..=ym.days()) };
    let d = Date { year: ym.year, month: ym.month, day };
    d.max(birth)
}

/// `n` months back (the model's `YearMonth` steps one month at a time).
trait MonthExt {
    fn prev_n(self, n: u32) -> YearMonth;
}

impl MonthExt for YearMonth {
    fn prev_n(self, n: u32) -> YearMonth {
        (0..n).fold(self, |m, _| m.prev())
    }
}
