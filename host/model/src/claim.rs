//! The parsed claim file (RECEIPTC.UKE): header, receipts with typed views, and raw records.
//!
//! Typed views hold what rules commonly need, already parsed; a value that does not parse is
//! `None` in the view and still present verbatim in the raw record, so a format rule can say
//! exactly what was wrong. Every record of a receipt is also kept raw (`Receipt::records`),
//! including record ids this version does not know, so a rule can read any field.

use crate::{Date, Payer, YearMonth};

/// One physical record: its 1-based line number and its text (decoded, without the line
/// break). The fields are `text` split on `,` — UKE has no quoting — so field 0 is the record
/// id and field `i` is CSV index `i` (the finding `field`).
///
/// Why one string and not a list of fields: a big file has tens of millions of fields, and
/// every one of them would be allocated by the parser, copied into each plugin's memory and
/// allocated again there. One string per record made the sandboxed pipeline several times
/// faster (docs/PERFORMANCE.md).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RawRecord {
    pub line: u32,
    pub text: String,
}

impl RawRecord {
    pub fn new(line: u32, text: impl Into<String>) -> RawRecord {
        RawRecord { line, text: text.into() }
    }

    /// The record id (field 0).
    pub fn id(&self) -> &str {
        self.text.split(',').next().unwrap_or("")
    }

    /// Field `i`, or "" when the record is shorter. Scans the line: for many fields of one
    /// record, collect [`RawRecord::fields`] once.
    pub fn field(&self, i: usize) -> &str {
        self.text.split(',').nth(i).unwrap_or("")
    }

    /// All fields, in CSV order.
    pub fn fields(&self) -> std::str::Split<'_, char> {
        self.text.split(',')
    }

    /// Number of CSV fields (commas + 1).
    pub fn field_count(&self) -> usize {
        self.text.bytes().filter(|b| *b == b',').count() + 1
    }
}

/// IR 医療機関情報レコード.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FileHeader {
    pub line: u32,
    /// IR field 1 as a payer, None when not 1 or 2.
    pub payer: Option<Payer>,
    pub prefecture: String,
    pub fee_table: String,
    pub institution_code: String,
    pub institution_name: String,
    pub billing_month: Option<YearMonth>,
    pub volume: String,
    pub phone: String,
}

/// GO 診療報酬請求書レコード.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FileTrailer {
    pub line: u32,
    pub total_count: Option<u64>,
    pub total_points: Option<u64>,
    pub volume: String,
}

/// HO 保険者レコード.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Insurance {
    pub line: u32,
    /// 保険者番号 with the padding spaces removed.
    pub insurer_number: String,
    pub symbol: String,
    pub number: String,
    pub days: Option<u32>,
    pub total_points: Option<u64>,
}

/// KO 公費レコード (第1..第4公費 in order).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PublicExpense {
    pub line: u32,
    pub payer_number: String,
    pub recipient_number: String,
    pub days: Option<u32>,
    pub total_points: Option<u64>,
}

/// SY 傷病名レコード.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Diagnosis {
    pub line: u32,
    pub code: String,
    pub start_date: Option<Date>,
    pub outcome: String,
    /// 修飾語コード: the raw concatenation of 4-character codes.
    pub modifiers: String,
    pub name: String,
    pub primary: bool,
    pub note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum LineKind {
    /// SI 診療行為.
    Procedure,
    /// IY 医薬品.
    Drug,
    /// TO 特定器材.
    Material,
}

impl LineKind {
    pub fn record_id(self) -> &'static str {
        match self {
            LineKind::Procedure => "SI",
            LineKind::Drug => "IY",
            LineKind::Material => "TO",
        }
    }
}

/// A comment attached to a line (コメントコード + 文字データ).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LineComment {
    pub code: String,
    pub text: String,
    /// CSV index of the comment code field.
    pub field: u32,
}

/// An SI / IY / TO line.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ServiceLine {
    pub line: u32,
    pub kind: LineKind,
    /// 診療識別, carried over from the previous line of the receipt when blank.
    pub category: String,
    /// True when `category` was carried over (the field itself was blank).
    pub category_carried: bool,
    /// 負担区分 (別表21).
    pub burden: String,
    pub code: String,
    /// 数量データ / 使用量, as recorded.
    pub quantity: String,
    /// 点数 (only on the last line of a 算定単位).
    pub points: Option<u64>,
    pub count: Option<u32>,
    /// Times on day 1..=31 (index 0 = day 1); 0 when blank.
    pub days: Vec<u32>,
    pub comments: Vec<LineComment>,
}

impl ServiceLine {
    pub fn day_total(&self) -> u64 {
        self.days.iter().map(|d| *d as u64).sum()
    }

    /// First day of the month with a 算定日, if any.
    pub fn first_day(&self) -> Option<u8> {
        self.days.iter().position(|d| *d > 0).map(|i| i as u8 + 1)
    }

    /// CSV index of the first day field (day 1).
    pub fn day_field_base(&self) -> u32 {
        match self.kind {
            LineKind::Material => 17,
            _ => 13,
        }
    }
}

/// A CO コメントレコード.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CommentRecord {
    pub line: u32,
    pub category: String,
    pub burden: String,
    pub code: String,
    pub text: String,
}

/// One receipt: an RE record and everything up to the next RE or GO.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Receipt {
    /// Line of the RE record.
    pub line: u32,
    /// レセプト番号; None when not a number.
    pub number: Option<u32>,
    /// レセプト種別 (4 digits, 別表5).
    pub kind: String,
    pub service_month: Option<YearMonth>,
    pub name: String,
    pub sex: String,
    pub birth_date: Option<Date>,
    pub admission_date: Option<Date>,
    /// レセプト特記事項 (concatenated 2-digit codes).
    pub special_notes: String,
    pub insurance: Option<Insurance>,
    pub public_expenses: Vec<PublicExpense>,
    pub diagnoses: Vec<Diagnosis>,
    pub lines: Vec<ServiceLine>,
    pub comments: Vec<CommentRecord>,
    /// Every record of the receipt, RE first, in file order.
    pub records: Vec<RawRecord>,
}

impl Receipt {
    /// True for 入院 receipts (last digit of レセプト種別 odd).
    pub fn is_inpatient(&self) -> Option<bool> {
        let last = self.kind.as_bytes().get(3)?;
        last.is_ascii_digit().then(|| (last - b'0') % 2 == 1)
    }
}

/// File-level facts a file check needs, without the receipts' content.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ReceiptSummary {
    pub line: u32,
    pub number: Option<u32>,
    pub number_raw: String,
    pub service_month: Option<YearMonth>,
    /// Number of HO records in the receipt.
    pub insurance_records: u32,
    /// Number of KO records in the receipt.
    pub public_records: u32,
    /// 主保険点数: HO 合計点数, or the first KO's when there is no HO.
    pub main_points: Option<u64>,
}

/// What the plugins see of the whole file: IR, GO, records outside receipts, one summary
/// per receipt.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FileView {
    pub header: Option<FileHeader>,
    pub trailer: Option<FileTrailer>,
    /// IR, GO and records that belong to no receipt (before the first RE, after GO), in order.
    pub records: Vec<RawRecord>,
    pub receipts: Vec<ReceiptSummary>,
    pub line_count: u32,
}

/// A parsed claim file: the file view, the receipts, and what the parser itself found wrong
/// (file-level `format.` findings: encoding, line length, structure).
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub file: FileView,
    pub receipts: Vec<Receipt>,
    pub parse_findings: Vec<crate::Finding>,
}

impl Claim {
    pub fn payer(&self) -> Option<Payer> {
        self.file.header.as_ref().and_then(|h| h.payer)
    }
}

/// Context passed with every check call.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckContext {
    /// The payer receiving (checking) the file.
    pub payer: Payer,
    /// The file's IR, if any.
    pub header: Option<FileHeader>,
}
