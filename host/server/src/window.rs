//! Acceptance windows: when a payer accepts files for a 請求年月 (Asia/Tokyo).
//!
//! Default: from the `open_day` 00:00 to the `close_day` 24:00 of the billing month itself
//! (online 請求 runs on the 5th–10th for the previous month's care). Staff overrides per
//! payer and month come from the store.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::config::{WindowConfig, WindowMode};

/// Japan Standard Time; Japan has no daylight saving.
pub fn jst() -> UtcOffset {
    UtcOffset::from_hms(9, 0, 0).expect("JST offset")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub opens_ms: i64,
    pub closes_ms: i64,
    pub extended: bool,
}

fn at(y: i32, m: Month, day: u8) -> Option<i64> {
    let d = Date::from_calendar_date(y, m, day).ok()?;
    Some((PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_offset(jst()).unix_timestamp()) * 1000)
}

/// The default window for `billing_month`.
pub fn default_window(cfg: &WindowConfig, billing_month: tenken_model::YearMonth) -> Option<Window> {
    let (y, m) = (billing_month.year as i32, Month::try_from(billing_month.month).ok()?);
    let opens = at(y, m, cfg.open_day.clamp(1, 28))?;
    // "10th 24:00" is the 11th 00:00.
    let closes = at(y, m, cfg.close_day.clamp(1, 28))? + 24 * 3600 * 1000;
    Some(Window { opens_ms: opens, closes_ms: closes, extended: false })
}

pub fn is_open(cfg: &WindowConfig, w: Option<Window>, now_ms: i64) -> bool {
    cfg.mode == WindowMode::AlwaysOpen || w.is_some_and(|w| w.opens_ms <= now_ms && now_ms < w.closes_ms)
}

/// `2026-11-05 00:00 JST`.
pub fn format_jst(ms: i64) -> String {
    let t =
        OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(OffsetDateTime::UNIX_EPOCH).to_offset(jst());
    format!("{:04}-{:02}-{:02} {:02}:{:02} JST", t.year(), t.month() as u8, t.day(), t.hour(), t.minute())
}

/// A closing time in the `2026-11-10 24:00 JST` style, as people in Japan write deadlines.
pub fn format_jst_close(ms: i64) -> String {
    let t =
        OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(OffsetDateTime::UNIX_EPOCH).to_offset(jst());
    if t.hour() == 0 && t.minute() == 0 {
        let prev = t - time::Duration::days(1);
        format!("{:04}-{:02}-{:02} 24:00 JST", prev.year(), prev.month() as u8, prev.day())
    } else {
        format!("{:04}-{:02}-{:02} {:02}:{:02} JST", t.year(), t.month() as u8, t.day(), t.hour(), t.minute())
    }
}

/// Parses `YYYY-MM-DDTHH:MM` (JST) or an RFC 3339 time into Unix ms.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Some(t.unix_timestamp() * 1000);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    if let Ok(p) = PrimitiveDateTime::parse(s, &fmt) {
        return Some(p.assume_offset(jst()).unix_timestamp() * 1000);
    }
    // "24:00" as people write it.
    let (date, hm) = s.split_once('T')?;
    if hm == "24:00" {
        let d = Date::parse(date, &time::macros::format_description!("[year]-[month]-[day]")).ok()?;
        return Some(
            PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_offset(jst()).unix_timestamp() * 1000 + 86_400_000,
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_window_is_5th_to_10th_jst() {
        let w = default_window(&WindowConfig::default(), "2026-11".parse().unwrap()).unwrap();
        assert_eq!(format_jst(w.opens_ms), "2026-11-05 00:00 JST");
        assert_eq!(format_jst_close(w.closes_ms), "2026-11-10 24:00 JST");
        assert_eq!(parse_time("2026-11-12T21:00"), Some(w.closes_ms + 45 * 3600 * 1000));
        assert_eq!(parse_time("2026-11-10T24:00"), Some(w.closes_ms));
        let cfg = WindowConfig::default();
        assert!(is_open(&cfg, Some(w), w.opens_ms));
        assert!(!is_open(&cfg, Some(w), w.closes_ms));
        assert!(!is_open(&cfg, Some(w), w.opens_ms - 1));
    }
}

/// An RFC 3339 time in JST (`2026-11-10T09:00:00+09:00`), as the API writes times.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .to_offset(jst())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
