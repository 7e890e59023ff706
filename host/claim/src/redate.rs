//! Re-dating a claim file to another 診療年月, for the master impact check: a proposed
//! master that starts next month changes nothing for this month's claims, so recent real
//! claims are re-checked *as if* they were of the new month (old and new master alike).
//!
//! Byte-level on purpose: only ASCII digit fields are rewritten (RE 診療年月 and 入院年月日,
//! IR 請求年月, SY 診療開始日), every other byte — CP932 names, line ends, the EOF mark —
//! stays as sent. A comma is never a CP932 trail byte, so splitting fields on it is safe.

use tenken_model::{Date, YearMonth};

use crate::date::{parse_date, parse_year_month};

/// `bytes` with every receipt moved to `month` (dates shifted by the same number of months,
/// the day clamped to the month's end) and the file's 請求年月 to the month after. Fields
/// that are not dates are left alone; a file that is not a claim comes back unchanged.
pub fn as_of_month(bytes: &[u8], month: YearMonth) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 64);
    let mut shift = 0i32;
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        let mut fields: Vec<Vec<u8>> = line.split(|b| *b == b',').map(<[u8]>::to_vec).collect();
        let set = |fields: &mut Vec<Vec<u8>>, i: usize, text: String| {
            if let Some(f) = fields.get_mut(i) {
                // Keep a line end that sits in the last field.
                let tail: Vec<u8> = f.iter().rev().take_while(|b| **b == b'\r' || **b == b'\n').copied().collect();
                *f = text.into_bytes();
                f.extend(tail.into_iter().rev());
            }
        };
        let text = |f: &[u8]| String::from_utf8_lossy(f).trim_end_matches(['\r', '\n']).to_owned();
        match fields.first().map(Vec::as_slice) {
            Some(b"IR") => {
                if fields.get(7).is_some_and(|f| parse_year_month(&text(f)).is_some()) {
                    set(&mut fields, 7, ym(month.next()));
                }
            }
            Some(b"RE") => {
                if let Some(old) = fields.get(3).and_then(|f| parse_year_month(&text(f))) {
                    shift = old.months_until(month);
                    set(&mut fields, 3, ym(month));
                }
                if let Some(d) = fields.get(8).and_then(|f| parse_date(&text(f))) {
                    set(&mut fields, 8, ymd(moved(d, shift)));
                }
            }
            Some(b"SY") => {
                if let Some(d) = fields.get(2).and_then(|f| parse_date(&text(f))) {
                    set(&mut fields, 2, ymd(moved(d, shift)));
                }
            }
            _ => {}
        }
        out.extend_from_slice(&fields.join(&b","[..]));
    }
    out
}

fn ym(m: YearMonth) -> String {
    format!("{:04}{:02}", m.year, m.month)
}

fn ymd(d: Date) -> String {
    format!("{:04}{:02}{:02}", d.year, d.month, d.day)
}

fn moved(d: Date, months: i32) -> Date {
    let n = d.year as i32 * 12 + (d.month as i32 - 1) + months;
    let m = YearMonth { year: n.div_euclid(12).max(1) as u16, month: (n.rem_euclid(12) + 1) as u8 };
    m.day(d.day.min(m.days())).unwrap_or_else(|| m.first_day())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_move_to_the_month_and_nothing_else_changes() {
        let file = "IR,1,13,1,1234567,,テスト医院,202110,00,\r\nRE,1,1112,202109,患者,1,19800101,,20210830,,,,,\r\nSY,8842116,20210731,1,,\r\nSI,11,1,111000110,,282,1,,,,,,,1\r\nGO,1,282,99\r\n";
        let bytes = encoding_rs::SHIFT_JIS.encode(file).0.into_owned();
        let month = YearMonth { year: 2022, month: 4 };
        let out = as_of_month(&bytes, month);
        let text = encoding_rs::SHIFT_JIS.decode(&out).0.into_owned();
        assert_eq!(
            text,
            "IR,1,13,1,1234567,,テスト医院,202205,00,\r\nRE,1,1112,202204,患者,1,19800101,,20220330,,,,,\r\nSY,8842116,20220228,1,,\r\nSI,11,1,111000110,,282,1,,,,,,,1\r\nGO,1,282,99\r\n"
        );
        let claim = crate::parse(&out, &tenken_limits::Limits::default());
        assert_eq!(claim.receipts[0].service_month, Some(month));
        // Seven months on: 2021-08-30 → 2022-03-30, 2021-07-31 → 2022-02-28 (clamped).
        assert_eq!(moved(Date { year: 2021, month: 8, day: 31 }, 2), Date { year: 2021, month: 10, day: 31 });
        assert_eq!(moved(Date { year: 2022, month: 1, day: 31 }, 1), Date { year: 2022, month: 2, day: 28 });
    }
}
