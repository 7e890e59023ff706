//! The byte-level record writer, CP932 encoding and the 検証番号 (check digit) algorithm.
//!
//! Why bytes and not a `String`: a 100,000-receipt file is ~100 MB; writing ASCII numbers and
//! codes straight into the output and encoding each Japanese table entry once (at setup)
//! keeps generation to a few seconds.

pub use tenken_model::check_digit;

/// `base` followed by its check digit.
pub(crate) fn with_check(base: &str) -> String {
    let mut s = String::with_capacity(base.len() + 1);
    s.push_str(base);
    s.push((b'0' + check_digit(base.as_bytes())) as char);
    s
}

/// Replaces the last digit with a different one (a wrong check digit).
pub(crate) fn break_check(s: &mut String, bump: u8) {
    let last = s.pop().expect("non-empty number");
    let d = last as u8 - b'0';
    s.push((b'0' + (d + 1 + bump % 9) % 10) as char);
}

/// CP932 bytes of a text from the generator's own tables (always representable).
pub(crate) fn sjis(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(text);
    debug_assert!(!unmappable, "{text} is not representable in CP932");
    bytes.into_owned()
}

/// Appends records to the output, counting lines.
pub(crate) struct Writer {
    pub buf: Vec<u8>,
    /// Number of the line being written (1-based).
    pub line: u32,
}

impl Writer {
    pub fn new(capacity: usize) -> Writer {
        Writer { buf: Vec::with_capacity(capacity), line: 1 }
    }

    /// Starts a record: its id, no comma.
    pub fn rec(&mut self, id: &str) {
        self.buf.extend_from_slice(id.as_bytes());
    }

    /// A field of bytes (already CP932 or ASCII).
    pub fn f(&mut self, v: &[u8]) {
        self.buf.push(b',');
        self.buf.extend_from_slice(v);
    }

    pub fn s(&mut self, v: &str) {
        self.f(v.as_bytes());
    }

    pub fn n(&mut self, v: u64) {
        self.buf.push(b',');
        self.num(v);
    }

    /// A number field, empty when zero.
    pub fn nz(&mut self, v: u64) {
        self.buf.push(b',');
        if v != 0 {
            self.num(v);
        }
    }

    fn num(&mut self, mut v: u64) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.buf.extend_from_slice(&tmp[i..]);
    }

    /// `n` empty fields.
    pub fn empty(&mut self, n: usize) {
        for _ in 0..n {
            self.buf.push(b',');
        }
    }

    /// A date `YYYYMMDD` (or `YYYYMM` with `day` None).
    pub fn date(&mut self, year: u16, month: u8, day: Option<u8>) {
        self.buf.push(b',');
        self.digits(year as u32, 4);
        self.digits(month as u32, 2);
        if let Some(d) = day {
            self.digits(d as u32, 2);
        }
    }

    fn digits(&mut self, v: u32, width: u32) {
        let mut p = 10u32.pow(width - 1);
        while p > 0 {
            self.buf.push(b'0' + ((v / p) % 10) as u8);
            p /= 10;
        }
    }

    /// Ends the record (CRLF).
    pub fn end(&mut self) {
        self.buf.extend_from_slice(b"\r\n");
        self.line += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits_follow_the_worked_examples() {
        assert_eq!(with_check("3312001"), "33120015");
        assert_eq!(with_check("8312007"), "83120071");
        assert_eq!(with_check("13306"), "133066");
        assert_eq!(with_check("000000"), "0000000");
        assert_eq!(with_check("011011371"), "0110113719");
        let mut s = "33120015".to_string();
        for bump in 0..20 {
            let mut t = s.clone();
            break_check(&mut t, bump);
            assert_ne!(t, s);
            assert_eq!(t.len(), 8);
        }
        s.clear();
    }

    #[test]
    fn writer_writes_fields() {
        let mut w = Writer::new(64);
        w.rec("GO");
        w.n(140);
        w.n(0);
        w.nz(0);
        w.date(2021, 10, Some(5));
        w.date(2021, 10, None);
        w.end();
        assert_eq!(w.buf, b"GO,140,0,,20211005,202110\r\n");
        assert_eq!(w.line, 2);
    }
}
