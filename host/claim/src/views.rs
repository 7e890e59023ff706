//! Typed views of the records rules commonly need, built from raw records.
//!
//! A value that does not parse becomes `None` here; the raw record keeps it verbatim for the
//! format rules to report.

use tenken_model::{
    CommentRecord, Diagnosis, FileHeader, FileTrailer, Insurance, LineComment, LineKind, Payer, PublicExpense, RawRecord,
    Receipt, ReceiptSummary, ServiceLine,
};

use crate::dates::{parse_date, parse_year_month};

fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn text(r: &RawRecord, i: usize) -> String {
    r.field(i).to_string()
}

pub(crate) fn header(r: &RawRecord) -> FileHeader {
    FileHeader {
        line: r.line,
        payer: Payer::from_ir_code(r.field(1)),
        prefecture: text(r, 2),
        fee_table: text(r, 3),
        institution_code: text(r, 4),
        institution_name: r.field(6).trim_end_matches([' ', '\u{3000}']).to_string(),
        billing_month: parse_year_month(r.field(7)),
        volume: text(r, 8),
        phone: text(r, 9),
    }
}

pub(crate) fn trailer(r: &RawRecord) -> FileTrailer {
    FileTrailer { line: r.line, total_count: num(r.field(1)), total_points: num(r.field(2)), volume: text(r, 3) }
}

/// Builds one receipt record by record, carrying 診療識別 over continuation lines.
pub(crate) struct ReceiptBuilder {
    receipt: Receipt,
    /// The 診療識別 of the previous SI/IY/TO/CO line of this receipt.
    category: String,
}

impl ReceiptBuilder {
    pub(crate) fn new(re: RawRecord) -> ReceiptBuilder {
        let receipt = Receipt {
            line: re.line,
            number: num(re.field(1)),
            kind: text(&re, 2),
            service_month: parse_year_month(re.field(3)),
            name: text(&re, 4),
            sex: text(&re, 5),
            birth_date: parse_date(re.field(6)),
            admission_date: parse_date(re.field(8)),
            special_notes: text(&re, 11),
            insurance: None,
            public_expenses: Vec::new(),
            diagnoses: Vec::new(),
            lines: Vec::new(),
            comments: Vec::new(),
            records: vec![re],
        };
        ReceiptBuilder { receipt, category: String::new() }
    }

    /// The current 診療識別: the field's own value, else the carried one.
    fn category(&mut self, own: &str) -> (String, bool) {
        if own.trim().is_empty() {
            (self.category.clone(), true)
        } else {
            self.category = own.trim().to_string();
            (self.category.clone(), false)
        }
    }

    pub(crate) fn push(&mut self, r: RawRecord) {
        let line = r.line;
        match r.id() {
            // A second HO is kept raw only; the format rules report it.
            "HO" if self.receipt.insurance.is_none() => {
                self.receipt.insurance = Some(Insurance {
                    line,
                    insurer_number: r.field(1).trim().to_string(),
                    symbol: text(&r, 2),
                    number: text(&r, 3),
                    days: num(r.field(4)),
                    total_points: num(r.field(5)),
                })
            }
            "KO" => self.receipt.public_expenses.push(PublicExpense {
                line,
                payer_number: r.field(1).trim().to_string(),
                recipient_number: r.field(2).trim().to_string(),
                days: num(r.field(4)),
                total_points: num(r.field(5)),
            }),
            "SY" => self.receipt.diagnoses.push(Diagnosis {
                line,
                code: r.field(1).trim().to_string(),
                start_date: parse_date(r.field(2)),
                outcome: text(&r, 3),
                modifiers: r.field(4).trim().to_string(),
                name: text(&r, 5),
                primary: r.field(6) == "01",
                note: text(&r, 7),
            }),
            id @ ("SI" | "IY" | "TO") => {
                let kind = match id {
                    "SI" => LineKind::Procedure,
                    "IY" => LineKind::Drug,
                    _ => LineKind::Material,
                };
                // TO has 単位コード/単価/予備/商品名 between 回数 and the comments.
                let (comment_base, day_base) = if kind == LineKind::Material { (11, 17) } else { (7, 13) };
                let (category, carried) = self.category(r.field(1));
                let comments = (0..3)
                    .map(|k| comment_base + 2 * k)
                    .filter(|&i| !r.field(i).trim().is_empty())
                    .map(|i| LineComment { code: r.field(i).trim().to_string(), text: text(&r, i + 1), field: i as u32 })
                    .collect();
                let days = (0..31).map(|d| num(r.field(day_base + d)).unwrap_or(0)).collect();
                self.receipt.lines.push(ServiceLine {
                    line,
                    kind,
                    category,
                    category_carried: carried,
                    burden: text(&r, 2),
                    code: r.field(3).trim().to_string(),
                    quantity: r.field(4).trim().to_string(),
                    points: num(r.field(5)),
                    count: num(r.field(6)),
                    days,
                    comments,
                })
            }
            "CO" => {
                let (category, _) = self.category(r.field(1));
                self.receipt.comments.push(CommentRecord {
                    line,
                    category,
                    burden: text(&r, 2),
                    code: r.field(3).trim().to_string(),
                    text: text(&r, 4),
                })
            }
            _ => {}
        }
        self.receipt.records.push(r);
    }

    pub(crate) fn finish(self) -> Receipt {
        self.receipt
    }
}

pub(crate) fn summary(r: &Receipt) -> ReceiptSummary {
    let count = |id: &str| r.records.iter().filter(|x| x.id() == id).count() as u32;
    ReceiptSummary {
        line: r.line,
        number: r.number,
        number_raw: r.records.first().map(|re| re.field(1).to_string()).unwrap_or_default(),
        service_month: r.service_month,
        insurance_records: count("HO"),
        public_records: count("KO"),
        main_points: match &r.insurance {
            Some(h) => h.total_points,
            None => r.public_expenses.first().and_then(|k| k.total_points),
        },
    }
}
