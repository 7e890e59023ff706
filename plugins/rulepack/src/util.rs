//! Helpers shared by the rule groups: check digits, the 負担区分 table, finding builders.

use tenken_model::{Date, Finding, RuleInfo, ServiceLine, Severity, YearMonth};

/// A rule's static declaration: id, severity, one-line description.
pub(crate) type RuleDecl = (&'static str, Severity, &'static str);

pub(crate) fn rule_infos(decls: &[RuleDecl]) -> Vec<RuleInfo> {
    decls
        .iter()
        .map(|(id, severity, description)| RuleInfo {
            id: (*id).to_string(),
            severity: *severity,
            description: (*description).to_string(),
        })
        .collect()
}

/// A finding pointing at one record of a receipt (or of the file when `receipt` is None).
pub(crate) fn finding(
    rule: &str,
    severity: Severity,
    receipt: Option<u32>,
    line: u32,
    record: &str,
    field: Option<u32>,
    message: String,
) -> Finding {
    Finding::new(rule, severity, message).receipt(receipt).at(line, record, field)
}

pub(crate) fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// 数字 mode with a decimal point allowed (使用量, 単価): `12`, `0.5`, `1.25`.
pub(crate) fn is_decimal(s: &str) -> bool {
    let mut parts = s.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    match parts.next() {
        None => is_digits(int),
        Some(frac) => is_digits(int) && is_digits(frac),
    }
}

pub(crate) use tenken_model::check_digit;

/// True when the last digit of `digits` is the check digit of the others.
pub(crate) fn check_digit_ok(digits: &str) -> bool {
    let b = digits.as_bytes();
    b.len() >= 2 && b.iter().all(u8::is_ascii_digit) && check_digit(&b[..b.len() - 1]) == b[b.len() - 1] - b'0'
}

/// 負担区分 (別表21) → payers as a bit set: bit 0 = 医療保険 (HO), bit i = 第i公費 (KO i).
pub(crate) fn burden_payers(code: &str) -> Option<u8> {
    const H: u8 = 1; // 医保
    const P1: u8 = 2;
    const P2: u8 = 4;
    const P3: u8 = 8;
    const P4: u8 = 16;
    let c = match code.as_bytes() {
        [c] => *c,
        _ => return None,
    };
    Some(match c {
        b'1' => H,
        b'5' => P1,
        b'6' => P2,
        b'B' => P3,
        b'C' => P4,
        b'2' => H | P1,
        b'3' => H | P2,
        b'E' => H | P3,
        b'G' => H | P4,
        b'7' => P1 | P2,
        b'H' => P1 | P3,
        b'I' => P1 | P4,
        b'J' => P2 | P3,
        b'K' => P2 | P4,
        b'L' => P3 | P4,
        b'4' => H | P1 | P2,
        b'M' => H | P1 | P3,
        b'N' => H | P1 | P4,
        b'O' => H | P2 | P3,
        b'P' => H | P2 | P4,
        b'Q' => H | P3 | P4,
        b'R' => P1 | P2 | P3,
        b'S' => P1 | P2 | P4,
        b'T' => P1 | P3 | P4,
        b'U' => P2 | P3 | P4,
        b'V' => H | P1 | P2 | P3,
        b'W' => H | P1 | P2 | P4,
        b'X' => H | P1 | P3 | P4,
        b'Y' => H | P2 | P3 | P4,
        b'Z' => P1 | P2 | P3 | P4,
        b'9' => H | P1 | P2 | P3 | P4,
        _ => return None,
    })
}

/// The date a line's master lookup uses: its first 算定日, else the 1st of the service month.
/// [U] a line with several 算定日 is checked on the first only (one lookup per line).
pub(crate) fn line_date(month: YearMonth, line: &ServiceLine) -> Date {
    line.first_day().and_then(|d| month.day(d)).unwrap_or_else(|| month.first_day())
}

/// Converts full-width digits (０–９) to ASCII; None when anything else appears.
/// Used for 被保険者番号, which the sample records in 漢字 mode.
pub(crate) fn ascii_digits(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '0'..='9' => out.push(ch),
            '０'..='９' => out.push(char::from(b'0' + (ch as u32 - '０' as u32) as u8)),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits_follow_the_worked_examples() {
        // §5: 33120015 (千葉県警察共済), 83120071 (carry), 国保 133066, 受給者 0000000,
        // 医療機関 0110113719 (over 都道府県+点数表+7 digits).
        for ok in ["33120015", "83120071", "133066", "138057", "0000000", "0110113719", "01010016"] {
            assert!(check_digit_ok(ok), "{ok}");
        }
        assert!(!check_digit_ok("83136019"));
        assert!(!check_digit_ok("33120016"));
        assert!(!check_digit_ok("3"));
    }

    #[test]
    fn burden_table_matches_the_examples() {
        assert_eq!(burden_payers("1"), Some(1));
        assert_eq!(burden_payers("2"), Some(1 | 2));
        assert_eq!(burden_payers("5"), Some(2));
        assert_eq!(burden_payers("9"), Some(31));
        assert_eq!(burden_payers("Z"), Some(30));
        assert_eq!(burden_payers("8"), None);
        assert_eq!(burden_payers(""), None);
        assert_eq!(burden_payers("12"), None);
    }

    #[test]
    fn decimals_and_digits() {
        assert!(is_decimal("0.5") && is_decimal("12") && !is_decimal(".5") && !is_decimal("1.") && !is_decimal("a"));
        assert_eq!(ascii_digits("１２3"), Some("123".into()));
        assert_eq!(ascii_digits("１Ａ"), None);
    }
}
