//! Calendar dates and year-months as the claim and the masters record them.

/// A calendar date (西暦). Ordering is chronological.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

/// A year and month (診療年月, 請求年月). Ordering is chronological.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct YearMonth {
    pub year: u16,
    pub month: u8,
}

fn is_leap(year: u16) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days in a month; 0 for an invalid month.
pub fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

impl Date {
    /// A checked constructor: `None` unless the date exists.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        (year >= 1 && day >= 1 && day <= days_in_month(year, month)).then_some(Date { year, month, day })
    }

    /// `YYYYMMDD` as in masters (変更年月日). `99999999` and other impossible dates give `None`.
    pub fn parse_yyyymmdd(s: &str) -> Option<Date> {
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Date::new(s[0..4].parse().ok()?, s[4..6].parse().ok()?, s[6..8].parse().ok()?)
    }

    pub fn year_month(self) -> YearMonth {
        YearMonth { year: self.year, month: self.month }
    }

    /// `YYYYMMDD`.
    pub fn compact(self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }

    /// Completed years of age on `on` for someone born on `self`.
    pub fn age_on(self, on: Date) -> i32 {
        let mut age = on.year as i32 - self.year as i32;
        if (on.month, on.day) < (self.month, self.day) {
            age -= 1;
        }
        age
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl YearMonth {
    pub fn new(year: u16, month: u8) -> Option<YearMonth> {
        (year >= 1 && (1..=12).contains(&month)).then_some(YearMonth { year, month })
    }

    /// Exactly `YYYY-MM` (four digits, a hyphen, two digits, month 01–12): the one month
    /// parser of the host, so that `2024-6` and `2024-06` can never be two different months
    /// anywhere (no sign, no spaces, no short forms).
    pub fn parse(s: &str) -> Option<YearMonth> {
        s.parse().ok()
    }

    pub fn first_day(self) -> Date {
        Date { year: self.year, month: self.month, day: 1 }
    }

    pub fn last_day(self) -> Date {
        Date { year: self.year, month: self.month, day: days_in_month(self.year, self.month) }
    }

    pub fn days(self) -> u8 {
        days_in_month(self.year, self.month)
    }

    /// The date of day `day` of this month, if it exists.
    pub fn day(self, day: u8) -> Option<Date> {
        Date::new(self.year, self.month, day)
    }

    /// Months from `self` to `later` (negative if `later` is earlier).
    pub fn months_until(self, later: YearMonth) -> i32 {
        (later.year as i32 * 12 + later.month as i32) - (self.year as i32 * 12 + self.month as i32)
    }

    pub fn next(self) -> YearMonth {
        if self.month == 12 {
            YearMonth { year: self.year + 1, month: 1 }
        } else {
            YearMonth { year: self.year, month: self.month + 1 }
        }
    }

    pub fn prev(self) -> YearMonth {
        if self.month == 1 {
            YearMonth { year: self.year - 1, month: 12 }
        } else {
            YearMonth { year: self.year, month: self.month - 1 }
        }
    }
}

/// Why a text is not a `YYYY-MM` month; its message says the expected form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthError(pub String);

impl std::fmt::Display for MonthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not a month: expected YYYY-MM with a two-digit month 01–12, e.g. 2024-06", self.0)
    }
}

impl std::error::Error for MonthError {}

impl std::str::FromStr for YearMonth {
    type Err = MonthError;

    fn from_str(s: &str) -> Result<YearMonth, MonthError> {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        if b.len() != 7 || b[4] != b'-' || !digits(0..4) || !digits(5..7) {
            return Err(MonthError(s.to_owned()));
        }
        YearMonth::new(s[0..4].parse().unwrap_or(0), s[5..7].parse().unwrap_or(0))
            .ok_or_else(|| MonthError(s.to_owned()))
    }
}

impl std::fmt::Display for YearMonth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_validate_and_order() {
        assert!(Date::new(2024, 2, 29).is_some());
        assert!(Date::new(2023, 2, 29).is_none());
        assert_eq!(Date::parse_yyyymmdd("99999999"), None);
        assert_eq!(Date::parse_yyyymmdd("20220401"), Date::new(2022, 4, 1));
        assert!(Date::new(2021, 10, 31).unwrap() < Date::new(2021, 11, 1).unwrap());
        assert_eq!(Date::new(1991, 11, 21).unwrap().age_on(Date::new(2021, 10, 1).unwrap()), 29);
        assert_eq!(YearMonth::parse("2021-11"), YearMonth::new(2021, 11));
        for bad in
            ["202111", "2021-13", "2024-6", "+2024-06", "2024-00", " 2024-06", "2024-06 ", "0000-01", "２０２４-06"]
        {
            assert_eq!(YearMonth::parse(bad), None, "{bad:?}");
        }
        let e = "2024-6".parse::<YearMonth>().unwrap_err().to_string();
        assert!(e.contains("YYYY-MM") && e.contains("2024-6"), "{e}");
        assert_eq!(YearMonth::new(2021, 10).unwrap().months_until(YearMonth::new(2021, 11).unwrap()), 1);
    }
}
