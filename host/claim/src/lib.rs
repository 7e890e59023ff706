//! RECEIPTC.UKE claim-file parser: bytes in, a `Claim` out; no I/O, never panics, linear time.
//!
//! Why the parser reports instead of failing: a claim file is the institution's whole
//! month of work; telling them every line that is wrong (as file-level `format.` findings)
//! is worth more than stopping at the first. Structural problems (no IR, no GO, records
//! before the first RE, bad encoding, over-long lines) are the parser's to report; field
//! level checks belong to the `format` rule plugin, which sees every raw record.

#![forbid(unsafe_code)]

mod dates;
mod views;

pub use dates::{parse_date, parse_year_month};

use tenken_limits::Limits;
use tenken_model::{Claim, FileView, Finding, RawRecord, Receipt};

/// Every rule id the parser emits, with severity and meaning (for docs/RULES.md and tests).
pub const PARSER_RULES: &[(&str, &str, &str)] = &[
    ("format.file.empty", "error", "the file is empty"),
    ("format.file.too-large", "error", "the file is larger than claim_bytes_max; nothing was parsed"),
    ("format.encoding", "error", "a line is not valid Shift_JIS (CP932); it was decoded with replacement characters"),
    ("format.control-character", "error", "a line contains a NUL, 0x1A or other control byte (only one 0x1A at the very end is allowed)"),
    ("format.line.empty", "warning", "an empty line (skipped)"),
    ("format.line.too-long", "error", "a line is longer than claim_line_bytes_max (record skipped)"),
    ("format.fields.too-many", "error", "a record has more than claim_fields_per_record_max fields (record skipped)"),
    ("format.records.too-many", "error", "the file has more than claim_records_max records; the rest was not read"),
    ("format.ir.missing", "error", "there is no IR record"),
    ("format.ir.not-first", "error", "the IR record is not the first record"),
    ("format.ir.duplicate", "error", "a second IR record"),
    ("format.go.missing", "error", "there is no GO record"),
    ("format.go.not-last", "error", "records follow the GO record"),
    ("format.go.duplicate", "error", "a second GO record"),
    ("format.record.outside-receipt", "error", "a record that belongs to a receipt appears before the first RE (or after GO)"),
    ("format.findings.truncated", "error", "more parser findings than claim_parse_findings_max; the rest are not listed"),
];

/// Collects parser findings up to the limit, then one `format.findings.truncated`.
struct Findings {
    list: Vec<Finding>,
    max: usize,
    truncated: bool,
}

impl Findings {
    fn push(&mut self, f: Finding) {
        if self.list.len() < self.max {
            self.list.push(f);
        } else if !self.truncated {
            self.truncated = true;
            self.list.push(Finding::error(
                "format.findings.truncated",
                format!("{} 件を超える形式エラーは省略しました (claim_parse_findings_max): more format errors than the limit; fix these first", self.max),
            ));
        }
    }
}

/// Where a record goes in the file structure.
#[derive(PartialEq)]
enum State {
    BeforeIr,
    /// After IR, before the first RE.
    Header,
    InReceipt,
    AfterGo,
}

/// Parses a claim file. Never fails: what is wrong is in `Claim::parse_findings`.
pub fn parse(bytes: &[u8], limits: &Limits) -> Claim {
    let mut findings = Findings { list: Vec::new(), max: limits.claim_parse_findings_max as usize, truncated: false };
    let mut file = FileView { header: None, trailer: None, records: Vec::new(), receipts: Vec::new(), line_count: 0 };
    let mut receipts: Vec<Receipt> = Vec::new();

    if bytes.len() as u64 > limits.claim_bytes_max {
        findings.push(Finding::error(
            "format.file.too-large",
            format!(
                "ファイルが大きすぎます: {} bytes; the limit is {} (claim_bytes_max). Split the claim into volumes or check that this is a RECEIPTC.UKE",
                bytes.len(),
                limits.claim_bytes_max
            ),
        ));
        return Claim { file, receipts, parse_findings: findings.list };
    }
    // One 0x1A (EOF) is allowed at the very end, after the last line break or as the last byte.
    let body = bytes.strip_suffix(&[0x1a]).unwrap_or(bytes);
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        findings.push(Finding::error("format.file.empty", "ファイルが空です: the file has no records; send the RECEIPTC.UKE produced by the レセコン"));
        return Claim { file, receipts, parse_findings: findings.list };
    }

    let mut state = State::BeforeIr;
    let mut records_seen: u32 = 0;
    let mut current: Option<views::ReceiptBuilder> = None;
    let mut line_no: u32 = 0;
    let mut lines = body.split(|b| *b == b'\n').peekable();
    while let Some(raw_line) = lines.next() {
        line_no = line_no.saturating_add(1);
        // The final line break leaves an empty last piece: not a line.
        if raw_line.is_empty() && lines.peek().is_none() {
            line_no -= 1;
            break;
        }
        let line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
        if line.len() > limits.claim_line_bytes_max as usize {
            findings.push(
                Finding::error(
                    "format.line.too-long",
                    format!(
                        "{line_no} 行目が長すぎます: {} bytes; the limit is {} (claim_line_bytes_max). The record was skipped; check the file is a RECEIPTC.UKE",
                        line.len(),
                        limits.claim_line_bytes_max
                    ),
                )
                .at_line(line_no),
            );
            continue;
        }
        if line.is_empty() {
            findings.push(Finding::warning("format.line.empty", format!("{line_no} 行目が空行です: empty line skipped")).at_line(line_no));
            continue;
        }
        if records_seen >= limits.claim_records_max {
            findings.push(
                Finding::error(
                    "format.records.too-many",
                    format!("レコード数が上限 {} を超えました (claim_records_max); the rest of the file was not read", limits.claim_records_max),
                )
                .at_line(line_no),
            );
            break;
        }
        records_seen += 1;

        if let Some(pos) = line.iter().position(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f) {
            findings.push(
                Finding::error(
                    "format.control-character",
                    format!("{line_no} 行目の {} バイト目に制御文字 0x{:02X} があります: remove it (only one 0x1A is allowed, at the very end)", pos + 1, line[pos]),
                )
                .at_line(line_no),
            );
        }
        let (text, had_errors) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(line);
        if had_errors {
            findings.push(
                Finding::error(
                    "format.encoding",
                    format!("{line_no} 行目が Shift_JIS (CP932) として読めません: save the file as Shift_JIS; undecodable bytes were replaced"),
                )
                .at_line(line_no),
            );
        }
        let fields: Vec<String> = text.split(',').map(str::to_owned).collect();
        if fields.len() > limits.claim_fields_per_record_max as usize {
            findings.push(
                Finding::error(
                    "format.fields.too-many",
                    format!("{line_no} 行目の項目数 {} が上限 {} を超えています (claim_fields_per_record_max): record skipped", fields.len(), limits.claim_fields_per_record_max),
                )
                .at_line(line_no),
            );
            continue;
        }
        let record = RawRecord { line: line_no, fields };
        let id = record.id().to_string();

        match id.as_str() {
            "IR" => {
                if file.header.is_some() {
                    findings.push(Finding::error("format.ir.duplicate", "IR レコードが複数あります: one IR per file (volume)").at(line_no, "IR", None));
                } else {
                    if state != State::BeforeIr {
                        findings.push(Finding::error("format.ir.not-first", "IR レコードが先頭にありません: IR must be the first record").at(line_no, "IR", None));
                    }
                    file.header = Some(views::header(&record));
                }
                if state == State::BeforeIr {
                    state = State::Header;
                }
                file.records.push(record);
            }
            "GO" => {
                if let Some(b) = current.take() {
                    receipts.push(b.finish());
                }
                if file.trailer.is_some() {
                    findings.push(Finding::error("format.go.duplicate", "GO レコードが複数あります: one GO per file (volume)").at(line_no, "GO", None));
                } else {
                    file.trailer = Some(views::trailer(&record));
                }
                state = State::AfterGo;
                file.records.push(record);
            }
            "RE" => {
                if state == State::AfterGo {
                    findings.push(Finding::error("format.go.not-last", "GO レコードの後にレコードがあります: GO must be the last record").at(line_no, "RE", None));
                }
                if state == State::BeforeIr {
                    state = State::Header;
                }
                if let Some(b) = current.take() {
                    receipts.push(b.finish());
                }
                current = Some(views::ReceiptBuilder::new(record));
                if state != State::AfterGo {
                    state = State::InReceipt;
                }
            }
            _ => match (&state, current.as_mut()) {
                (State::InReceipt, Some(b)) => b.push(record),
                (State::AfterGo, _) => {
                    findings.push(
                        Finding::error("format.go.not-last", format!("GO レコードの後に {id} レコードがあります: GO must be the last record")).at(line_no, &id, None),
                    );
                    file.records.push(record);
                }
                _ => {
                    findings.push(
                        Finding::error(
                            "format.record.outside-receipt",
                            format!("{id} レコードが最初の RE より前にあります: every record after IR belongs to a receipt that starts with RE"),
                        )
                        .at(line_no, &id, None),
                    );
                    file.records.push(record);
                }
            },
        }
    }
    if let Some(b) = current.take() {
        receipts.push(b.finish());
    }
    file.line_count = line_no;

    if file.header.is_none() {
        findings.push(Finding::error("format.ir.missing", "IR (医療機関情報) レコードがありません: the file must start with an IR record"));
    }
    if file.trailer.is_none() {
        findings.push(Finding::error("format.go.missing", "GO (診療報酬請求書) レコードがありません: the file must end with a GO record; was it cut short?"));
    }
    file.receipts = receipts.iter().map(views::summary).collect();
    Claim { file, receipts, parse_findings: findings.list }
}
