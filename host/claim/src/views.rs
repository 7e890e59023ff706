//! Typed views built from raw records: IR, GO, RE, HO, KO, SY, SI/IY/TO, CO.
//!
//! Field positions follow shared/docs/receipt-domain.md §2 (医科, current 西暦 layout). A
//! value that does not parse is `None` here; the raw record keeps it verbatim so a format
//! rule can report exactly what was wrong. Nothing in this module reports findings.

use tenken_model::{
    CommentRecord, Diagnosis, FileHeader, FileTrailer, Insurance, LineComment, LineKind, Payer, PublicExpense, Receipt,
    ServiceLine,
};

use crate::date::{parse_date, parse_year_month};

/// Field `i` of a record, "" when the record is shorter.
fn f<'a>(fields: &[&'a str], i: usize) -> &'a str {
    fields.get(i).copied().unwrap_or("")
}

/// Strict unsigned number: ASCII digits only, at least one, no sign or spaces; None on
/// overflow. Strict because a lenient view would hide the very problems format rules report.
pub(crate) fn num_u64(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(v)
}

pub(crate) fn num_u32(s: &str) -> Option<u32> {
    num_u64(s).and_then(|v| u32::try_from(v).ok())
}

pub(crate) fn header(line: u32, r: &[&str]) -> FileHeader {
    FileHeader {
        line,
        payer: Payer::from_ir_code(f(r, 1)),
        prefecture: f(r, 2).to_owned(),
        fee_table: f(r, 3).to_owned(),
        institution_code: f(r, 4).to_owned(),
        // 可変 漢字 field: some レセコン pad it to 40 bytes with (full-width) spaces.
        institution_name: f(r, 6).trim_end_matches([' ', '\u{3000}']).to_owned(),
        billing_month: parse_year_month(f(r, 7)),
        volume: f(r, 8).to_owned(),
        phone: f(r, 9).to_owned(),
    }
}

pub(crate) fn trailer(line: u32, r: &[&str]) -> FileTrailer {
    FileTrailer { line, total_count: num_u64(f(r, 1)), total_points: num_u64(f(r, 2)), volume: f(r, 3).to_owned() }
}

/// A receipt with only the RE facts filled; the caller appends the other records.
pub(crate) fn receipt(line: u32, r: &[&str]) -> Receipt {
    Receipt {
        line,
        number: num_u32(f(r, 1)),
        kind: f(r, 2).to_owned(),
        service_month: parse_year_month(f(r, 3)),
        name: f(r, 4).to_owned(),
        sex: f(r, 5).to_owned(),
        birth_date: parse_date(f(r, 6)),
        admission_date: parse_date(f(r, 8)),
        special_notes: f(r, 11).to_owned(),
        insurance: None,
        public_expenses: Vec::new(),
        diagnoses: Vec::new(),
        lines: Vec::new(),
        comments: Vec::new(),
        records: Vec::new(),
    }
}

pub(crate) fn insurance(line: u32, r: &[&str]) -> Insurance {
    Insurance {
        line,
        // 固定 8 bytes, right-justified with spaces for 6-digit 国保 numbers.
        insurer_number: f(r, 1).trim_matches(' ').to_owned(),
        symbol: f(r, 2).to_owned(),
        number: f(r, 3).to_owned(),
        days: num_u32(f(r, 4)),
        total_points: num_u64(f(r, 5)),
    }
}

pub(crate) fn public_expense(line: u32, r: &[&str]) -> PublicExpense {
    PublicExpense {
        line,
        payer_number: f(r, 1).to_owned(),
        recipient_number: f(r, 2).to_owned(),
        days: num_u32(f(r, 4)),
        total_points: num_u64(f(r, 5)),
    }
}

pub(crate) fn diagnosis(line: u32, r: &[&str]) -> Diagnosis {
    Diagnosis {
        line,
        code: f(r, 1).to_owned(),
        start_date: parse_date(f(r, 2)),
        outcome: f(r, 3).to_owned(),
        modifiers: f(r, 4).to_owned(),
        name: f(r, 5).to_owned(),
        primary: f(r, 6) == "01",
        note: f(r, 7).to_owned(),
    }
}

/// Where a line kind keeps its comment pairs and day fields.
fn layout(kind: LineKind) -> (usize, usize) {
    // (first comment code field, first day field); three (code, text) pairs each.
    match kind {
        LineKind::Material => (11, 17),
        LineKind::Procedure | LineKind::Drug => (7, 13),
    }
}

/// An SI/IY/TO line. `category` is the 診療識別 after carry-over (decided by the caller,
/// which knows the previous line of the receipt).
pub(crate) fn service_line(line: u32, kind: LineKind, r: &[&str], category: String, carried: bool) -> ServiceLine {
    let (comment_base, day_base) = layout(kind);
    let mut comments = Vec::new();
    for pair in 0..3 {
        let at = comment_base + pair * 2;
        let code = f(r, at);
        if !code.is_empty() {
            comments.push(LineComment { code: code.to_owned(), text: f(r, at + 1).to_owned(), field: at as u32 });
        }
    }
    // Blank and unparsable day fields are 0; the raw record keeps the original text.
    let days = (0..31).map(|d| num_u32(f(r, day_base + d)).unwrap_or(0)).collect();
    ServiceLine {
        line,
        kind,
        category,
        category_carried: carried,
        burden: f(r, 2).to_owned(),
        code: f(r, 3).to_owned(),
        quantity: f(r, 4).to_owned(),
        points: num_u64(f(r, 5)),
        count: num_u32(f(r, 6)),
        days,
        comments,
    }
}

pub(crate) fn comment(line: u32, r: &[&str], category: String) -> CommentRecord {
    CommentRecord { line, category, burden: f(r, 2).to_owned(), code: f(r, 3).to_owned(), text: f(r, 4).to_owned() }
}
