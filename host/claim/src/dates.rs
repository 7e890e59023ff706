//! Dates as UKE records them: 西暦 `YYYYMM` / `YYYYMMDD`, or 和暦 `GYYMM` / `GYYMMDD`.

use tenken_model::{Date, YearMonth};

/// 別表4 元号: (code, year before 元年). 明治 1867, 大正 1911, 昭和 1925, 平成 1988, 令和 2018.
fn era_base(code: u8) -> Option<u16> {
    match code {
        b'1' => Some(1867),
        b'2' => Some(1911),
        b'3' => Some(1925),
        b'4' => Some(1988),
        b'5' => Some(2018),
        _ => None,
    }
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYYMM` (西暦, current spec) or `GYYMM` (和暦, older files); chosen by length.
pub fn parse_year_month(s: &str) -> Option<YearMonth> {
    if !digits(s) {
        return None;
    }
    match s.len() {
        6 => YearMonth::new(s[0..4].parse().ok()?, s[4..6].parse().ok()?),
        5 => YearMonth::new(era_base(s.as_bytes()[0])? + s[1..3].parse::<u16>().ok()?, s[3..5].parse().ok()?),
        _ => None,
    }
}

/// `YYYYMMDD` (西暦) or `GYYMMDD` (和暦); chosen by length.
pub fn parse_date(s: &str) -> Option<Date> {
    if !digits(s) {
        return None;
    }
    match s.len() {
        8 => Date::new(s[0..4].parse().ok()?, s[4..6].parse().ok()?, s[6..8].parse().ok()?),
        7 => Date::new(era_base(s.as_bytes()[0])? + s[1..3].parse::<u16>().ok()?, s[3..5].parse().ok()?, s[5..7].parse().ok()?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seireki_and_wareki() {
        assert_eq!(parse_year_month("202110"), YearMonth::new(2021, 10));
        assert_eq!(parse_year_month("43101"), YearMonth::new(2019, 1)); // 平成31年1月
        assert_eq!(parse_year_month("50412"), YearMonth::new(2022, 12)); // 令和4年12月
        assert_eq!(parse_date("19911121"), Date::new(1991, 11, 21));
        assert_eq!(parse_date("4070208"), Date::new(1995, 2, 8)); // 平成7年2月8日
        assert_eq!(parse_date("3630107"), Date::new(1988, 1, 7)); // 昭和63年
        assert_eq!(parse_date("20210230"), None);
        assert_eq!(parse_date("9070208"), None);
        assert_eq!(parse_year_month("2021-1"), None);
        assert_eq!(parse_year_month(""), None);
    }
}
