//! A cheap pre-parse for acceptance: the IR facts needed to route a file, and a receipt count.
//!
//! Why separate from [`crate::parse`]: the server must answer a submission quickly and
//! durably; it needs only the payer, the institution, the 請求年月 and how many chunks the
//! file will be split into. A full parse (about 10 µs per receipt) happens later, on a
//! worker. The scan does no I/O and allocates only the IR line.

use tenken_model::{FileHeader, Payer};

/// What the scan learned.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    /// The IR record, when the first record is one.
    pub header: Option<FileHeader>,
    /// Lines that start an RE record.
    pub receipts: u32,
}

impl Scan {
    pub fn payer(&self) -> Option<Payer> {
        self.header.as_ref().and_then(|h| h.payer)
    }
}

/// Scans `bytes`: decodes only the first line (CP932) and counts `RE,` line starts.
/// `header` is None when the first record is not an IR record.
pub fn scan(bytes: &[u8]) -> Scan {
    // A UTF-8 BOM is not valid UKE, but the parser reports it; routing can still work.
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first_end = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
    let first = body[..first_end].strip_suffix(b"\r").unwrap_or(&body[..first_end]);
    let header = if first.starts_with(b"IR,") {
        let (text, _, _) = encoding_rs::SHIFT_JIS.decode(first);
        let fields: Vec<&str> = text.split(',').collect();
        Some(crate::views::header(1, &fields))
    } else {
        None
    };
    let mut receipts = 0u32;
    let mut at_line_start = true;
    for (i, &b) in body.iter().enumerate() {
        if at_line_start && b == b'R' && body.get(i + 1..i + 3) == Some(b"E,") {
            receipts = receipts.saturating_add(1);
        }
        at_line_start = b == b'\n';
    }
    Scan { header, receipts }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ir_and_counts_receipts() {
        let text = "IR,1,13,1,1234567,,デモ医院,202611,00,0312345678\r\nRE,1,1112,202610\r\nHO,x\r\nRE,2,1112,202610\r\nGO,2,100,99\r\n";
        let (bytes, _, _) = encoding_rs::SHIFT_JIS.encode(text);
        let s = scan(&bytes);
        let h = s.header.clone().unwrap();
        assert_eq!(s.payer(), Some(Payer::Ssk));
        assert_eq!(h.institution_code, "1234567");
        assert_eq!(h.billing_month.unwrap().to_string(), "2026-11");
        assert_eq!(h.institution_name, "デモ医院");
        assert_eq!(s.receipts, 2);
    }

    #[test]
    fn no_ir_means_no_header() {
        assert_eq!(scan(b"RE,1\r\n").header, None);
        assert_eq!(scan(b"").header, None);
        assert_eq!(scan(b"\x00\x01garbage").receipts, 0);
    }
}
