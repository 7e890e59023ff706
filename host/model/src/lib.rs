//! Plain data types shared by every part of tenken: the parsed claim, findings, master entries.
//!
//! Why a separate crate: the same types are used by the host (parser, runtime, native rule
//! baseline) and by the guest rule plugins compiled to `wasm32-wasip2`, so this crate has no
//! dependencies (serde only behind a feature) and does no I/O. The WIT contract in `wit/`
//! mirrors these types one to one; `tenken-runtime` (host) and `tenken-guest` (guest) convert.

#![forbid(unsafe_code)]

mod claim;
mod date;
mod digest;
mod finding;
mod master;
mod plugin_failure;

pub use claim::*;
pub use date::*;
pub use digest::*;
pub use finding::*;
pub use master::*;
pub use plugin_failure::*;

/// The receiving payer (審査支払機関), as IR field 1 records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Payer {
    /// 社会保険診療報酬支払基金 (IR 審査支払機関 = 1).
    Ssk,
    /// 国民健康保険団体連合会 (IR 審査支払機関 = 2).
    Kokuho,
}

impl Payer {
    pub const ALL: [Payer; 2] = [Payer::Ssk, Payer::Kokuho];

    /// The IR 審査支払機関 code (別表1).
    pub fn ir_code(self) -> &'static str {
        match self {
            Payer::Ssk => "1",
            Payer::Kokuho => "2",
        }
    }

    pub fn from_ir_code(code: &str) -> Option<Payer> {
        match code {
            "1" => Some(Payer::Ssk),
            "2" => Some(Payer::Kokuho),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Payer::Ssk => "ssk",
            Payer::Kokuho => "kokuho",
        }
    }
}

impl std::str::FromStr for Payer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ssk" => Ok(Payer::Ssk),
            "kokuho" => Ok(Payer::Kokuho),
            other => Err(format!("unknown payer `{other}`: expected `ssk` or `kokuho`")),
        }
    }
}

impl std::fmt::Display for Payer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The 検証番号 (check digit) of `base` (ASCII digits) used by 保険者番号, 公費負担者番号,
/// 受給者番号, 後期高齢者被保険者番号 and 医療機関コード: weights 2, 1, 2, … from the rightmost
/// digit, a two-digit product contributes its digit sum, check = (10 − sum mod 10) mod 10
/// (receipt-domain.md §5). Shared by the rules and the claim generator.
pub fn check_digit(base: &[u8]) -> u8 {
    let mut sum = 0u32;
    for (i, b) in base.iter().rev().enumerate() {
        let d = b.wrapping_sub(b'0') as u32 % 10;
        let p = if i % 2 == 0 { d * 2 } else { d };
        sum += p / 10 + p % 10;
    }
    ((10 - sum % 10) % 10) as u8
}

#[cfg(test)]
mod check_digit_tests {
    #[test]
    fn worked_examples() {
        // 33120015 (千葉県警察共済) and 公費 83120071 from receipt-domain.md §5.
        assert_eq!(super::check_digit(b"3312001"), 5);
        assert_eq!(super::check_digit(b"8312007"), 1);
        assert_eq!(super::check_digit(b"13306"), 6);
    }
}
