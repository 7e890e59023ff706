//! Claim-file dates: 西暦 `YYYYMM` / `YYYYMMDD` and 和暦 `GYYMM` / `GYYMMDD`.
//!
//! Why both: the current 記録条件仕様 (R02 onward) records 西暦, older files (and 返戻 of
//! old claims) record 和暦 with an era digit (別表4). The length tells them apart, as
//! receiptisan does, so one parser reads both generations without a version switch.

use tenken_model::{Date, YearMonth};

/// 別表4 年号区分 → the year before 元年 (so 西暦 = base + 和暦年).
/// 明治 1867, 大正 1911, 昭和 1925, 平成 1988, 令和 2018.
fn era_base(era: u8) -> Option<u16> {
    match era {
        1 => Some(1867),
        2 => Some(1911),
        3 => Some(1925),
        4 => Some(1988),
        5 => Some(2018),
        _ => None,
    }
}

/// The value of an all-ASCII-digit slice; None when empty or any byte is not a digit.
/// Callers pass at most 4 digits, so the u16 cannot overflow.
fn digits(b: &[u8]) -> Option<u16> {
    if b.is_empty() {
        return None;
    }
    let mut v: u16 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u16;
    }
    Some(v)
}

/// 和暦 era + 2-digit year → 西暦. Year 00 does not exist (元年 is 01).
/// Era boundaries inside a year (e.g. 平成31年5月 does not exist) are not checked: a format
/// rule can do that with the raw value; the view only needs a calendar year.
fn era_year(era: &[u8], yy: &[u8]) -> Option<u16> {
    let base = era_base(digits(era)? as u8)?;
    let y = digits(yy)?;
    (y >= 1).then_some(base + y)
}

/// 診療年月 / 請求年月: `YYYYMM` (6 digits) or `GYYMM` (5 digits, 和暦). None otherwise
/// or when the month is not 1..=12.
pub fn parse_year_month(s: &str) -> Option<YearMonth> {
    let b = s.as_bytes();
    match b.len() {
        6 => YearMonth::new(digits(&b[0..4])?, digits(&b[4..6])? as u8),
        5 => YearMonth::new(era_year(&b[0..1], &b[1..3])?, digits(&b[3..5])? as u8),
        _ => None,
    }
}

/// 生年月日 / 入院年月日 / 診療開始日: `YYYYMMDD` (8 digits) or `GYYMMDD` (7 digits, 和暦).
/// None otherwise or when the date does not exist.
pub fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    match b.len() {
        8 => Date::new(digits(&b[0..4])?, digits(&b[4..6])? as u8, digits(&b[6..8])? as u8),
        7 => Date::new(era_year(&b[0..1], &b[1..3])?, digits(&b[3..5])? as u8, digits(&b[5..7])? as u8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seireki_and_wareki() {
        assert_eq!(parse_year_month("202110"), YearMonth::new(2021, 10));
        assert_eq!(parse_year_month("43101"), YearMonth::new(2019, 1));
        assert_eq!(parse_year_month("50412"), YearMonth::new(2022, 12));
        assert_eq!(parse_year_month("202113"), None);
        assert_eq!(parse_year_month("60101"), None);
        assert_eq!(parse_year_month("40001"), None);
        assert_eq!(parse_year_month("2021-1"), None);
        assert_eq!(parse_year_month("２０２１１０"), None);
        assert_eq!(parse_date("19911121"), Date::new(1991, 11, 21));
        assert_eq!(parse_date("4070208"), Date::new(1995, 2, 8));
        assert_eq!(parse_date("3640101"), Date::new(1989, 1, 1));
        assert_eq!(parse_date("1450101"), Date::new(1912, 1, 1));
        assert_eq!(parse_date("2010101"), Date::new(1912, 1, 1));
        assert_eq!(parse_date("20230229"), None);
        assert_eq!(parse_date(""), None);
        assert_eq!(parse_date("6021102"), None);
        assert_eq!(parse_date("2021102"), Date::new(1913, 11, 2));
        assert_eq!(parse_date("+0211021"), None);
    }
}
