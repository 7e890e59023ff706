//! Generator of realistic, valid RECEIPTC.UKE claim files for tests and benchmarks.
//!
//! Why a generator: the real corpus holds one 75-receipt sample; tests need thousands of
//! receipts that the office checks accept (so that every finding in a test is one we put
//! there), and benchmarks need files of hospital size. Every code comes from the master set
//! given, chosen among those the rulepack will see as in force on the service date, so the
//! files stay valid whatever masters are loaded (demo or real).
//!
//! Layout: [`pools`] picks the usable codes out of the masters once, [`receipt`] plans and
//! writes one receipt, [`names`] holds the synthetic name tables, [`write`] the byte-level
//! writer (CP932 text is encoded once per table entry, the rest is ASCII written directly).
//!
//! Decisions ([U] in the domain notes, kept easy to change):
//! - service month = billing month − 1; every receipt of a file has that service month.
//! - `payer: None`: each institution's file goes to one payer, 支払基金 for ~60% of the
//!   institutions and 国保連 for the rest; a file holds only patients that payer handles
//!   (支払基金: 被用者保険 8-digit insurers and 生活保護 公費単独; 国保連: 6-digit 国保 and
//!   後期高齢者 法別39), so `id.payer.insurer` never fires.
//! - every file ends with CRLF then one 0x1A (EOF), as generators in the field write it.

#![forbid(unsafe_code)]

mod names;
mod pools;
mod receipt;
mod write;

use std::fmt;
use std::str::FromStr;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tenken_master::MasterSet;
use tenken_model::{Payer, YearMonth};

pub use write::check_digit;

/// What to generate. `Default` gives 1,000 receipts, one institution, seed 0, billing month
/// 2021-11 (service month 2021-10, as in the corpus sample), payer mix, no injections.
#[derive(Debug, Clone, PartialEq)]
pub struct GenOptions {
    /// Receipts over all files.
    pub receipts: usize,
    /// Institutions (= files). Capped at `receipts` so that no file is empty.
    pub institutions: usize,
    pub seed: u64,
    /// 請求年月; the service month (診療年月) is the month before.
    pub billing_month: YearMonth,
    /// The receiving payer of every file; None = a mix (one payer per institution).
    pub payer: Option<Payer>,
    /// Errors to inject: (kind, probability per receipt in 0..=1).
    pub inject: Vec<(InjectKind, f64)>,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            receipts: 1000,
            institutions: 1,
            seed: 0,
            billing_month: YearMonth { year: 2021, month: 11 },
            payer: None,
            inject: Vec::new(),
        }
    }
}

/// One generated claim file (one institution, one payer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// IR 医療機関コード (7 digits, valid check digit).
    pub institution_code: String,
    pub payer: Payer,
    pub receipts: usize,
    /// The RECEIPTC.UKE bytes: CP932, CRLF, trailing 0x1A.
    pub bytes: Vec<u8>,
    /// The errors injected, in file order.
    pub injections: Vec<Injection>,
}

/// One injected error: where it is and the rule expected to report it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    /// The `InjectKind` name (kebab-case).
    pub kind: String,
    /// RE レセプト番号 in this file.
    pub receipt: u32,
    /// 1-based line the expected finding points at.
    pub line: u32,
    pub expected_rule: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("invalid options: {0}")]
    Options(String),
    #[error("the masters have no {what} usable for service month {month}")]
    NoCandidates { what: &'static str, month: YearMonth },
    #[error("cannot inject `{kind}`: {why}")]
    InjectionUnavailable { kind: &'static str, why: String },
}

/// The errors the generator can inject, each aimed at one rule of the default rulepack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InjectKind {
    /// HO 保険者番号 with a wrong 検証番号 → `id.insurer.check-digit`.
    InsurerCheckDigit,
    /// KO 公費負担者番号 with a wrong 検証番号 → `id.public.check-digit`.
    PublicCheckDigit,
    /// KO 公費受給者番号 with a wrong 検証番号 → `id.recipient.check-digit`.
    RecipientCheckDigit,
    /// An SI line with a 診療行為コード not in the master → `master.procedure.unknown`.
    UnknownProcedure,
    /// An IY line with a 医薬品コード not in the master → `master.drug.unknown`.
    UnknownDrug,
    /// A code abolished before the service month → `master.{procedure,drug,material,disease}.abolished`.
    AbolishedCode,
    /// A code listed only after the service month → `master.{…}.not-yet-listed`.
    NotYetListed,
    /// A 入院のみ code on an outpatient receipt (入院外のみ on inpatient) → `master.procedure.inout`.
    InoutMismatch,
    /// HO 合計点数 ≠ Σ(点数×回数) → `totals.ho.points`.
    HoTotal,
    /// 第1公費 KO 合計点数 ≠ Σ(点数×回数) → `totals.ko.points`.
    KoTotal,
    /// A line whose 回数 ≠ Σ算定日 → `totals.line.count`.
    CountDays,
    /// A line whose 負担区分 names a payer the receipt has no HO/KO for → `totals.burden.payer`.
    BurdenPayer,
    /// A receipt without SY → `diagnosis.missing`.
    MissingDiagnosis,
    /// SY 0000999 without 傷病名称 → `diagnosis.uncoded.name`.
    UncodedNoName,
    /// SY 診療開始日 after the end of the service month → `diagnosis.start-date`.
    StartDate,
}

impl InjectKind {
    pub const ALL: [InjectKind; 15] = [
        InjectKind::InsurerCheckDigit,
        InjectKind::PublicCheckDigit,
        InjectKind::RecipientCheckDigit,
        InjectKind::UnknownProcedure,
        InjectKind::UnknownDrug,
        InjectKind::AbolishedCode,
        InjectKind::NotYetListed,
        InjectKind::InoutMismatch,
        InjectKind::HoTotal,
        InjectKind::KoTotal,
        InjectKind::CountDays,
        InjectKind::BurdenPayer,
        InjectKind::MissingDiagnosis,
        InjectKind::UncodedNoName,
        InjectKind::StartDate,
    ];

    /// The kebab-case name used on the command line (`--inject NAME=RATE`).
    pub fn name(self) -> &'static str {
        match self {
            InjectKind::InsurerCheckDigit => "insurer-check-digit",
            InjectKind::PublicCheckDigit => "public-check-digit",
            InjectKind::RecipientCheckDigit => "recipient-check-digit",
            InjectKind::UnknownProcedure => "unknown-procedure",
            InjectKind::UnknownDrug => "unknown-drug",
            InjectKind::AbolishedCode => "abolished-code",
            InjectKind::NotYetListed => "not-yet-listed",
            InjectKind::InoutMismatch => "inout-mismatch",
            InjectKind::HoTotal => "ho-total",
            InjectKind::KoTotal => "ko-total",
            InjectKind::CountDays => "count-days",
            InjectKind::BurdenPayer => "burden-payer",
            InjectKind::MissingDiagnosis => "missing-diagnosis",
            InjectKind::UncodedNoName => "uncoded-no-name",
            InjectKind::StartDate => "start-date",
        }
    }

    /// The rule expected to fire. For `AbolishedCode` and `NotYetListed` the master kind is
    /// chosen per injection (see `Injection::expected_rule`); this names the procedure rule.
    pub fn rule(self) -> &'static str {
        match self {
            InjectKind::InsurerCheckDigit => "id.insurer.check-digit",
            InjectKind::PublicCheckDigit => "id.public.check-digit",
            InjectKind::RecipientCheckDigit => "id.recipient.check-digit",
            InjectKind::UnknownProcedure => "master.procedure.unknown",
            InjectKind::UnknownDrug => "master.drug.unknown",
            InjectKind::AbolishedCode => "master.procedure.abolished",
            InjectKind::NotYetListed => "master.procedure.not-yet-listed",
            InjectKind::InoutMismatch => "master.procedure.inout",
            InjectKind::HoTotal => "totals.ho.points",
            InjectKind::KoTotal => "totals.ko.points",
            InjectKind::CountDays => "totals.line.count",
            InjectKind::BurdenPayer => "totals.burden.payer",
            InjectKind::MissingDiagnosis => "diagnosis.missing",
            InjectKind::UncodedNoName => "diagnosis.uncoded.name",
            InjectKind::StartDate => "diagnosis.start-date",
        }
    }

    /// The kind names, comma-separated, for help texts and error messages.
    pub fn names() -> String {
        InjectKind::ALL.iter().map(|k| k.name()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for InjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for InjectKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InjectKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown injection kind `{s}`; expected one of: {}", InjectKind::names()))
    }
}

/// Parses the CLI form `KIND=RATE` (rate a probability per receipt in 0..=1).
pub fn parse_inject(spec: &str) -> Result<(InjectKind, f64), String> {
    let (kind, rate) =
        spec.split_once('=').ok_or_else(|| format!("`{spec}`: expected KIND=RATE, e.g. insurer-check-digit=0.01"))?;
    let kind: InjectKind = kind.trim().parse()?;
    let rate: f64 = rate.trim().parse().map_err(|_| format!("`{spec}`: rate `{rate}` is not a number"))?;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("`{spec}`: rate must be between 0 and 1"));
    }
    Ok((kind, rate))
}

/// Generates the claim files: one per institution, receipts split over the institutions
/// with a heavy tail. Deterministic for a given (options, masters).
pub fn generate(opts: &GenOptions, masters: &MasterSet) -> Result<Vec<GeneratedFile>, GenError> {
    if opts.receipts == 0 {
        return Err(GenError::Options("receipts must be at least 1".into()));
    }
    if opts.institutions == 0 {
        return Err(GenError::Options("institutions must be at least 1".into()));
    }
    if YearMonth::new(opts.billing_month.year, opts.billing_month.month).is_none() || opts.billing_month.year < 1900 {
        return Err(GenError::Options(format!("billing month {} is not a valid month", opts.billing_month)));
    }
    for (k, rate) in &opts.inject {
        if !(0.0..=1.0).contains(rate) {
            return Err(GenError::Options(format!("rate of {k} must be between 0 and 1, not {rate}")));
        }
    }
    let service = opts.billing_month.prev();
    let pools = pools::Pools::build(masters, service)?;
    for (k, rate) in &opts.inject {
        if *rate > 0.0 {
            pools.check_injectable(*k)?;
        }
    }
    let institutions = opts.institutions.min(opts.receipts);
    let mut rng = SmallRng::seed_from_u64(opts.seed);
    let sizes = split_sizes(opts.receipts, institutions, &mut rng);
    let mut files = Vec::with_capacity(institutions);
    for (i, &n) in sizes.iter().enumerate() {
        // One stream per institution, so a file does not change when another one's size does.
        let mut frng = SmallRng::seed_from_u64(opts.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let payer = opts.payer.unwrap_or_else(|| if frng.random_bool(0.6) { Payer::Ssk } else { Payer::Kokuho });
        files.push(receipt::file(&pools, opts, service, i, n, payer, &mut frng));
    }
    Ok(files)
}

/// The injection kinds `masters` can support for `billing_month` (e.g. `abolished-code`
/// needs a code abolished before the service month).
pub fn injectable(masters: &MasterSet, billing_month: YearMonth) -> Result<Vec<InjectKind>, GenError> {
    let pools = pools::Pools::build(masters, billing_month.prev())?;
    Ok(InjectKind::ALL.into_iter().filter(|k| pools.check_injectable(*k).is_ok()).collect())
}

/// Splits `total` receipts over `n` institutions with a heavy tail (Pareto weights, α 1.1):
/// most get a few tens, a few get thousands. Every institution gets at least one.
fn split_sizes(total: usize, n: usize, rng: &mut SmallRng) -> Vec<usize> {
    if n == 1 {
        return vec![total];
    }
    let weights: Vec<f64> = (0..n)
        .map(|_| {
            let u: f64 = rng.random::<f64>();
            // Capped so that one institution does not take everything in small runs.
            (1.0 - u).max(1e-4).powf(-1.0 / 1.1).min(400.0)
        })
        .collect();
    let sum: f64 = weights.iter().sum();
    let spare = total - n;
    let mut sizes: Vec<usize> = weights.iter().map(|w| 1 + (spare as f64 * w / sum).floor() as usize).collect();
    let mut left = total - sizes.iter().sum::<usize>();
    // Hand out the rounding remainder to the largest weights first (deterministic).
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|a, b| weights[*b].total_cmp(&weights[*a]));
    let mut k = 0;
    while left > 0 {
        sizes[order[k % n]] += 1;
        left -= 1;
        k += 1;
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_add_up_and_have_a_tail() {
        let mut rng = SmallRng::seed_from_u64(7);
        let s = split_sizes(2000, 20, &mut rng);
        assert_eq!(s.iter().sum::<usize>(), 2000);
        assert!(s.iter().all(|n| *n >= 1));
        let max = *s.iter().max().unwrap();
        let mut sorted = s.clone();
        sorted.sort();
        assert!(max > 2 * sorted[10], "{s:?}");
        assert_eq!(split_sizes(5, 5, &mut rng), vec![1; 5]);
    }

    #[test]
    fn inject_specs_parse() {
        assert_eq!(parse_inject("insurer-check-digit=0.01"), Ok((InjectKind::InsurerCheckDigit, 0.01)));
        assert!(parse_inject("nope=0.1").is_err());
        assert!(parse_inject("ho-total=2").is_err());
        assert!(parse_inject("ho-total").is_err());
        for k in InjectKind::ALL {
            assert_eq!(k.name().parse::<InjectKind>(), Ok(k));
        }
    }
}
