//! Physical lines of a claim file: splitting, one-pass byte scan, CP932 decoding into fields.
//!
//! Why decode per line (and per field on error): an undecodable byte sequence must be
//! reported at its line and field, and the rest of the file must still parse. Splitting the
//! raw bytes on `,` before decoding is safe because `,` (0x2C) is never a Shift_JIS trail
//! byte (trail bytes are 0x40..=0x7E, 0x80..=0xFC), and neither is any C0 control byte.

use encoding_rs::SHIFT_JIS;

/// The end-of-file mark some generators append after the last CRLF (or after the last byte).
pub(crate) const EOF_MARK: u8 = 0x1A;

/// Iterates the physical lines of `body` (LF or CRLF; the terminator is not included).
/// A final line break does not start another (empty) line; an empty body has no lines.
pub(crate) fn physical_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    // Dropping the final '\n' first makes `split` yield exactly one segment per line.
    let trimmed = match body.split_last() {
        Some((b'\n', rest)) => rest,
        _ => body,
    };
    let empty = body.is_empty();
    trimmed.split(|b| *b == b'\n').filter(move |_| !empty).map(|line| match line.split_last() {
        Some((b'\r', rest)) => rest,
        _ => line,
    })
}

/// What one pass over a line's bytes found.
pub(crate) struct Scan {
    /// Any byte ≥ 0x80: the line needs the Shift_JIS decoder.
    pub non_ascii: bool,
    pub commas: usize,
    /// Byte offset and value of the first control byte (C0 or DEL), and how many there are.
    pub first_control: Option<(usize, u8)>,
    pub controls: usize,
}

pub(crate) fn scan(line: &[u8]) -> Scan {
    let mut s = Scan { non_ascii: false, commas: 0, first_control: None, controls: 0 };
    for (i, &b) in line.iter().enumerate() {
        if b == b',' {
            s.commas += 1;
        } else if b >= 0x80 {
            s.non_ascii = true;
        } else if b < 0x20 || b == 0x7F {
            // Tab, NUL, a stray CR, 0x1A in the middle of the file: none is allowed in any
            // UKE field (modes 数字/英数/漢字 have no control characters).
            s.controls += 1;
            if s.first_control.is_none() {
                s.first_control = Some((i, b));
            }
        }
    }
    s
}

/// The CSV index of the field containing byte offset `pos`.
pub(crate) fn field_at(line: &[u8], pos: usize) -> usize {
    line[..pos.min(line.len())].iter().filter(|b| **b == b',').count()
}

/// Splits a decoded line into owned fields. Empty fields (most of an SI record) cost no
/// allocation.
/// Decodes a line to its text. Returns the text and, when some bytes were not valid
/// CP932, the 0-based index of the first field that had them (decoded with U+FFFD).
pub(crate) fn decode_line(line: &[u8], scan: &Scan) -> (String, Option<usize>) {
    if !scan.non_ascii {
        // ASCII is the same in CP932 and UTF-8; from_utf8 cannot fail here, but fall through
        // to the decoder rather than unwrap.
        if let Ok(text) = std::str::from_utf8(line) {
            return (text.to_owned(), None);
        }
    }
    if let Some(text) = SHIFT_JIS.decode_without_bom_handling_and_without_replacement(line) {
        return (text.into_owned(), None);
    }
    // Slow path, only for broken lines: decode field by field to find the bad one.
    let mut text = String::with_capacity(line.len() + 16);
    let mut first_bad = None;
    for (i, raw) in line.split(|b| *b == b',').enumerate() {
        if i > 0 {
            text.push(',');
        }
        match SHIFT_JIS.decode_without_bom_handling_and_without_replacement(raw) {
            Some(t) => text.push_str(&t),
            None => {
                first_bad.get_or_insert(i);
                text.push_str(&SHIFT_JIS.decode_without_bom_handling(raw).0);
            }
        }
    }
    (text, first_bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(b: &[u8]) -> Vec<&[u8]> {
        physical_lines(b).collect()
    }

    #[test]
    fn splits_lf_and_crlf() {
        assert!(lines(b"").is_empty());
        assert_eq!(lines(b"\n"), vec![b"" as &[u8]]);
        assert_eq!(lines(b"a\r\nb\r\n"), vec![b"a" as &[u8], b"b"]);
        assert_eq!(lines(b"a\nb"), vec![b"a" as &[u8], b"b"]);
        assert_eq!(lines(b"a\n\n"), vec![b"a" as &[u8], b""]);
        assert_eq!(lines(b"a\r\r\n"), vec![b"a\r" as &[u8]]);
    }

    #[test]
    fn decodes_cp932_and_locates_bad_field() {
        // "テスト" in CP932, then a lone lead byte in field 2.
        let line = b"RE,\x83\x65\x83\x58\x83\x67,\x83";
        let s = scan(line);
        let (text, bad) = decode_line(line, &s);
        let fields: Vec<&str> = text.split(',').collect();
        assert_eq!(fields[1], "テスト");
        assert_eq!(bad, Some(2));
        assert_eq!(fields.len(), 3);
        // NEC special character ① (0x8740) is CP932, not plain Shift_JIS.
        let (text, bad) = decode_line(b"\x87\x40", &scan(b"\x87\x40"));
        assert_eq!((text.as_str(), bad), ("①", None));
    }
}
