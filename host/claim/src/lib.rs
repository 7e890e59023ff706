//! RECEIPTC.UKE claim-file parser: bytes in, a `Claim` out; no I/O, never panics, linear time.
//!
//! Why the parser reports instead of failing: a claim file is the institution's whole
//! month of work; telling them every line that is wrong (as file-level `format.` findings)
//! is worth more than stopping at the first. Structural problems (no IR, no GO, records
//! before the first RE, bad encoding, over-long lines) are the parser's to report; field
//! level checks belong to the format rules, which see every raw record.
//!
//! Layout: [`lines`] splits and decodes physical lines, [`views`] builds the typed views,
//! this module walks the record structure (IR → RE… → GO) and enforces the limits.

#![forbid(unsafe_code)]

mod date;
mod lines;
mod redate;
mod scan;
mod views;

pub use date::{parse_date, parse_year_month};
pub use redate::as_of_month;
pub use scan::{Scan, scan};

use tenken_limits::Limits;
use tenken_model::{Claim, FileView, Finding, LineKind, RawRecord, Receipt, ReceiptSummary, Severity};

/// Every rule id the parser emits: (id, severity, meaning). For docs/RULES.md and tests.
pub const PARSER_RULES: &[(&str, Severity, &str)] = &[
    ("format.file.empty", Severity::Error, "the file has no records (empty, or only line breaks)"),
    ("format.file.too-large", Severity::Error, "the file is larger than claim_bytes_max; nothing was parsed"),
    ("format.encoding", Severity::Error, "bytes that are not CP932 (Shift_JIS); the field was decoded with U+FFFD"),
    (
        "format.control-character",
        Severity::Error,
        "a NUL, TAB, stray CR, 0x1A or other control byte inside a line (one 0x1A at the very end is allowed)",
    ),
    ("format.line.empty", Severity::Warning, "an empty line (skipped)"),
    ("format.line.too-long", Severity::Error, "a line longer than claim_line_bytes_max (record skipped)"),
    (
        "format.fields.too-many",
        Severity::Error,
        "a record with more than claim_fields_per_record_max fields (record skipped)",
    ),
    (
        "format.records.too-many",
        Severity::Error,
        "more than claim_records_max records; the rest of the file was not read",
    ),
    ("format.ir.missing", Severity::Error, "there is no IR record"),
    ("format.ir.not-first", Severity::Error, "the IR record is not the first record"),
    ("format.ir.duplicate", Severity::Error, "a second IR record (kept in FileView.records only)"),
    ("format.go.missing", Severity::Error, "there is no GO record"),
    ("format.go.not-last", Severity::Error, "records follow the GO record (reported once, at the first)"),
    ("format.go.duplicate", Severity::Error, "a second GO record (the first one is the trailer)"),
    ("format.record.outside-receipt", Severity::Error, "a record other than IR/GO before the first RE"),
    (
        "format.findings.truncated",
        Severity::Warning,
        "more parser findings than claim_parse_findings_max; the rest are not reported",
    ),
];

/// `9000` → `9,000`: sizes in messages are read by clerks, not parsed.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Collects parser findings up to the limit, then one `format.findings.truncated`.
/// Findings are built lazily so a file with a million bad lines formats only `max` messages.
struct Findings {
    list: Vec<Finding>,
    max: usize,
    truncated: bool,
}

impl Findings {
    fn push(&mut self, make: impl FnOnce() -> Finding) {
        if self.list.len() < self.max {
            self.list.push(make());
        } else if !self.truncated {
            self.truncated = true;
            let at = make().line;
            let from = at.map(|l| format!(" from line {l} on")).unwrap_or_default();
            let mut f = Finding::warning(
                "format.findings.truncated",
                format!(
                    "形式エラーが {} 件を超えたため以降は省略します: further parser findings{from} are not reported \
                     (claim_parse_findings_max); fix these first, or check the file is a RECEIPTC.UKE",
                    self.max
                ),
            );
            f.line = at;
            self.list.push(f);
        }
    }
}

/// A receipt being filled, with what the summary and 診療識別 carry-over need.
struct Open {
    receipt: Receipt,
    ho: u32,
    ko: u32,
    /// 診療識別 of the previous SI/IY/TO/CO line of this receipt ("" before the first).
    category: String,
}

impl Open {
    fn new(record: RawRecord) -> Open {
        let fields: Vec<&str> = record.fields().collect();
        let mut receipt = views::receipt(record.line, &fields);
        receipt.records.push(record);
        Open { receipt, ho: 0, ko: 0, category: String::new() }
    }

    /// The 診療識別 of a tekiyou line: its own when recorded, else the previous line's.
    /// With no previous line there is nothing to carry: "" and not carried, so a rule can
    /// flag the missing 診療識別.
    fn category(&mut self, field: &str) -> (String, bool) {
        if field.trim_matches(' ').is_empty() {
            let carried = !self.category.is_empty();
            (self.category.clone(), carried)
        } else {
            self.category.clear();
            self.category.push_str(field);
            (self.category.clone(), false)
        }
    }

    fn push(&mut self, record: RawRecord) {
        let fields: Vec<&str> = record.fields().collect();
        let (line, r) = (record.line, &fields[..]);
        let kind = match record.id() {
            "SI" => Some(LineKind::Procedure),
            "IY" => Some(LineKind::Drug),
            "TO" => Some(LineKind::Material),
            _ => None,
        };
        if let Some(kind) = kind {
            let (category, carried) = self.category(record.field(1));
            self.receipt.lines.push(views::service_line(line, kind, r, category, carried));
        } else {
            match record.id() {
                "HO" => {
                    self.ho += 1;
                    // Only one HO is valid; the first is the view, the count tells a rule more.
                    if self.receipt.insurance.is_none() {
                        self.receipt.insurance = Some(views::insurance(line, r));
                    }
                }
                "KO" => {
                    self.ko += 1;
                    self.receipt.public_expenses.push(views::public_expense(line, r));
                }
                "SY" => self.receipt.diagnoses.push(views::diagnosis(line, r)),
                "CO" => {
                    let (category, _) = self.category(record.field(1));
                    self.receipt.comments.push(views::comment(line, r, category));
                }
                _ => {}
            }
        }
        self.receipt.records.push(record);
    }

    fn close(self, receipts: &mut Vec<Receipt>, summaries: &mut Vec<ReceiptSummary>) {
        let r = &self.receipt;
        // 主保険点数: HO when there is one (even if its 合計点数 does not parse), else 第1公費.
        let main_points = if self.ho > 0 {
            r.insurance.as_ref().and_then(|h| h.total_points)
        } else {
            r.public_expenses.first().and_then(|k| k.total_points)
        };
        summaries.push(ReceiptSummary {
            line: r.line,
            number: r.number,
            number_raw: r.records.first().map(|re| re.field(1).to_owned()).unwrap_or_default(),
            service_month: r.service_month,
            insurance_records: self.ho,
            public_records: self.ko,
            main_points,
        });
        receipts.push(self.receipt);
    }
}

/// Parses a claim file. Never fails: what is wrong is in `Claim::parse_findings` (all
/// file-level, `receipt: None`).
pub fn parse(bytes: &[u8], limits: &Limits) -> Claim {
    let mut findings = Findings { list: Vec::new(), max: limits.claim_parse_findings_max as usize, truncated: false };
    let mut file = FileView { header: None, trailer: None, records: Vec::new(), receipts: Vec::new(), line_count: 0 };
    let mut receipts: Vec<Receipt> = Vec::new();

    if bytes.len() as u64 > limits.claim_bytes_max {
        findings.push(|| {
            Finding::error(
                "format.file.too-large",
                format!(
                    "ファイルが大きすぎます: the file is {} bytes; the limit is {} (claim_bytes_max). Nothing was read: \
                     check the file is a RECEIPTC.UKE, or split it into volumes",
                    group(bytes.len() as u64),
                    group(limits.claim_bytes_max)
                ),
            )
        });
        return Claim { file, receipts, parse_findings: findings.list };
    }

    // One 0x1A (EOF) is allowed as the very last byte, after the last line break or not.
    let body = bytes.strip_suffix(&[lines::EOF_MARK]).unwrap_or(bytes);
    let line_max = limits.claim_line_bytes_max as usize;
    let fields_max = limits.claim_fields_per_record_max as usize;

    let mut line_no: u32 = 0;
    // Non-empty lines met (records read or skipped); decides between "empty" and "no IR".
    let mut records: u32 = 0;
    // Records actually placed in the structure.
    let mut placed: u32 = 0;
    let mut stopped = false;
    let mut go_line: Option<u32> = None;
    let mut after_go_reported = false;
    let mut open: Option<Open> = None;

    for line in lines::physical_lines(body) {
        line_no = line_no.saturating_add(1);
        if stopped {
            // Keep counting lines (cheap) so line_count stays the file's, not the prefix's.
            continue;
        }
        let n = line_no;
        if line.is_empty() {
            findings.push(|| {
                Finding::warning(
                    "format.line.empty",
                    format!("{n} 行目が空行です: line {n} is empty and was skipped; remove it"),
                )
                .at_line(n)
            });
            continue;
        }
        records = records.saturating_add(1);
        if records > limits.claim_records_max {
            stopped = true;
            findings.push(|| {
                Finding::error(
                    "format.records.too-many",
                    format!(
                        "レコード数が上限を超えました: more than {} records (claim_records_max); lines {n} onwards were not read. \
                         Split the file into volumes or raise the limit",
                        group(limits.claim_records_max as u64)
                    ),
                )
                .at_line(n)
            });
            continue;
        }
        if line.len() > line_max {
            findings.push(|| {
                Finding::error(
                    "format.line.too-long",
                    format!(
                        "{n} 行目が長すぎます: line {n} is {} bytes; the limit is {} (claim_line_bytes_max). \
                         The record was skipped: check the file is a RECEIPTC.UKE with CR LF line breaks",
                        group(line.len() as u64),
                        group(line_max as u64)
                    ),
                )
                .at_line(n)
            });
            continue;
        }
        let scan = lines::scan(line);
        if scan.commas >= fields_max {
            findings.push(|| {
                Finding::error(
                    "format.fields.too-many",
                    format!(
                        "{n} 行目の項目数が多すぎます: line {n} has {} fields; the limit is {fields_max} \
                         (claim_fields_per_record_max). The record was skipped: values must not contain commas",
                        scan.commas + 1
                    ),
                )
                .at_line(n)
            });
            continue;
        }
        let (text, bad_field) = lines::decode_line(line, &scan);
        let id = text.split(',').next().unwrap_or("");
        if let Some((pos, byte)) = scan.first_control {
            let field = lines::field_at(line, pos) as u32;
            let more = if scan.controls > 1 {
                format!(" ({} control bytes on this line)", scan.controls)
            } else {
                String::new()
            };
            findings.push(|| {
                Finding::error(
                    "format.control-character",
                    format!(
                        "{n} 行目 項目 {field} に制御文字 0x{byte:02X} があります: line {n}, byte {}{more}. \
                         Remove it; only one 0x1A (EOF) is allowed, as the last byte of the file",
                        pos + 1
                    ),
                )
                .at(n, id, Some(field))
            });
        }
        if let Some(field) = bad_field {
            findings.push(|| {
                Finding::error(
                    "format.encoding",
                    format!(
                        "{n} 行目 項目 {field} が CP932 (Shift_JIS) として読めません: line {n}, field {field} has bytes that \
                         are not Shift_JIS; they were replaced with U+FFFD. Save the file as Shift_JIS (CP932)"
                    ),
                )
                .at(n, id, Some(field as u32))
            });
        }
        let record = RawRecord { line: n, text };
        let first = placed == 0;
        placed += 1;
        place(record, first, &mut file, &mut receipts, &mut open, &mut go_line, &mut after_go_reported, &mut findings);
    }
    if let Some(o) = open.take() {
        o.close(&mut receipts, &mut file.receipts);
    }
    file.line_count = line_no;

    if records == 0 {
        findings.push(|| {
            Finding::error(
                "format.file.empty",
                format!(
                    "ファイルにレコードがありません: the file has no records ({} bytes, {line_no} lines). \
                     Send the RECEIPTC.UKE the レセコン produced",
                    group(bytes.len() as u64)
                ),
            )
        });
    } else {
        if file.header.is_none() {
            findings.push(|| {
                Finding::error(
                    "format.ir.missing",
                    "IR (医療機関情報) レコードがありません: there is no IR record; the file must start with one. \
                     Check the file is a RECEIPTC.UKE and was not cut short at the start",
                )
            });
        }
        // When reading stopped at claim_records_max the GO may simply be in the unread part.
        if file.trailer.is_none() && !stopped {
            findings.push(|| {
                Finding::error(
                    "format.go.missing",
                    "GO (診療報酬請求書) レコードがありません: there is no GO record; the file must end with one. \
                     Was the file cut short?",
                )
            });
        }
    }
    Claim { file, receipts, parse_findings: findings.list }
}

/// Puts one record where the structure says it belongs and reports structural problems.
#[allow(clippy::too_many_arguments)]
fn place(
    record: RawRecord,
    first: bool,
    file: &mut FileView,
    receipts: &mut Vec<Receipt>,
    open: &mut Option<Open>,
    go_line: &mut Option<u32>,
    after_go_reported: &mut bool,
    findings: &mut Findings,
) {
    let n = record.line;
    if let Some(go) = *go_line
        && !*after_go_reported
    {
        *after_go_reported = true;
        let id = record.id();
        findings.push(|| {
            Finding::error(
                "format.go.not-last",
                format!(
                    "GO レコード ({go} 行目) の後にレコードがあります: line {n} ({id}) follows the GO record on line {go}; \
                     GO must be the last record. Remove what follows or merge the files properly"
                ),
            )
            .at(n, id, None)
        });
    }
    match record.id() {
        "IR" => {
            if file.header.is_some() {
                findings.push(|| {
                    Finding::error(
                        "format.ir.duplicate",
                        format!(
                            "IR レコードが複数あります: a second IR record on line {n}; one file (volume) has one IR"
                        ),
                    )
                    .at(n, "IR", None)
                });
            } else {
                if !first {
                    findings.push(|| {
                        Finding::error(
                            "format.ir.not-first",
                            format!("IR レコードが先頭にありません: the IR record is on line {n}; it must be the first record"),
                        )
                        .at(n, "IR", None)
                    });
                }
                // Still used as the header: its 請求年月 and payer are needed either way.
                file.header = Some(views::header(n, &record.fields().collect::<Vec<_>>()));
            }
            file.records.push(record);
        }
        "GO" => {
            if let Some(o) = open.take() {
                o.close(receipts, &mut file.receipts);
            }
            if file.trailer.is_some() {
                findings.push(|| {
                    Finding::error(
                        "format.go.duplicate",
                        format!(
                            "GO レコードが複数あります: a second GO record on line {n}; one file (volume) has one GO"
                        ),
                    )
                    .at(n, "GO", None)
                });
            } else {
                file.trailer = Some(views::trailer(n, &record.fields().collect::<Vec<_>>()));
                *go_line = Some(n);
            }
            file.records.push(record);
        }
        "RE" => {
            // An RE after GO still starts a receipt: its content stays checkable.
            if let Some(o) = open.take() {
                o.close(receipts, &mut file.receipts);
            }
            *open = Some(Open::new(record));
        }
        _ => match open.as_mut() {
            Some(o) => o.push(record),
            None => {
                // After GO the go.not-last finding already covers it.
                if go_line.is_none() {
                    let id = record.id();
                    findings.push(|| {
                        Finding::error(
                            "format.record.outside-receipt",
                            format!(
                                "{id} レコードが最初の RE より前にあります: line {n} ({id}) comes before the first RE record; \
                                 every record between IR and GO belongs to a receipt that starts with RE"
                            ),
                        )
                        .at(n, id, None)
                    });
                }
                file.records.push(record);
            }
        },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_thousands() {
        assert_eq!(super::group(0), "0");
        assert_eq!(super::group(999), "999");
        assert_eq!(super::group(9000), "9,000");
        assert_eq!(super::group(268_435_456), "268,435,456");
    }
}
