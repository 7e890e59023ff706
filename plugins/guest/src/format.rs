//! The `master-format` world on the guest side: the [`MasterFormat`] trait a converter
//! author implements over canonical rows (`tenken_model::CanonRow`), the WIT ⇄ model
//! conversions of `master-rows`, and the `master_format!` export macro.
//!
//! Why a trait and a macro: every converter (the shipped ones, test fixtures, a payer's own)
//! differs only in its format code; the glue to the contract is written once, here.

use tenken_model::{CanonRow, MasterKind};

use crate::converter_bindings::tenken::plugin::master_rows::{self as wr, ChangeKind};
use crate::office::{date_from, date_to, kind_from, kind_to};

/// Why a converter refused its input: a message and, when known, where (1-based line and
/// column of the input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub message: String,
    pub line: Option<u32>,
    pub column: Option<u32>,
}

impl DecodeError {
    /// An error without a position.
    pub fn new(message: impl Into<String>) -> DecodeError {
        DecodeError { message: message.into(), line: None, column: None }
    }

    /// An error at a 1-based line of the input.
    pub fn at_line(message: impl Into<String>, line: u32) -> DecodeError {
        DecodeError { message: message.into(), line: Some(line), column: None }
    }
}

/// A master-file format: decode a file of one master kind into canonical rows and encode rows
/// back. A round trip must lose nothing (the host proves it before it converts a master set).
/// Export an implementation with [`master_format!`](crate::master_format).
pub trait MasterFormat {
    /// The name the format is known by (`ssk-csv`, `kokuho-fixed`): the host finds a
    /// converter by the name its `describe` reports.
    const NAME: &'static str;
    const VERSION: &'static str = "1.0.0";

    /// The master kinds the format can carry (all six unless overridden).
    fn kinds() -> Vec<MasterKind> {
        MasterKind::ALL.to_vec()
    }

    /// Parses one master file of `kind`.
    fn decode(kind: MasterKind, bytes: &[u8]) -> Result<Vec<CanonRow>, DecodeError>;

    /// Writes rows of `kind` as one master file.
    fn encode(kind: MasterKind, rows: Vec<CanonRow>) -> Result<Vec<u8>, String>;
}

fn change_to(c: char) -> ChangeKind {
    match c {
        '1' => ChangeKind::Deleted,
        '2' => ChangeKind::Restored,
        '3' => ChangeKind::Added,
        '5' => ChangeKind::Changed,
        '9' => ChangeKind::Abolished,
        _ => ChangeKind::Unchanged,
    }
}

fn change_from(c: ChangeKind) -> char {
    match c {
        ChangeKind::Unchanged => '0',
        ChangeKind::Deleted => '1',
        ChangeKind::Restored => '2',
        ChangeKind::Added => '3',
        ChangeKind::Changed => '5',
        ChangeKind::Abolished => '9',
    }
}

fn row_to(r: CanonRow) -> wr::MasterRow {
    wr::MasterRow {
        kind: kind_to(r.kind),
        change: change_to(r.change),
        code: r.code,
        name: r.name,
        value_kind: r.value_kind,
        value: r.value,
        changed_on: r.changed_on.map(date_to),
        abolished_on: r.abolished_on.map(date_to),
        extra: r.extra,
    }
}

fn row_from(kind: MasterKind, r: wr::MasterRow) -> CanonRow {
    CanonRow {
        kind,
        change: change_from(r.change),
        code: r.code,
        name: r.name,
        value_kind: r.value_kind,
        value: r.value,
        changed_on: r.changed_on.map(date_from),
        abolished_on: r.abolished_on.map(date_from),
        extra: r.extra,
    }
}

/// `describe` of a format (called by the code `master_format!` generates).
#[doc(hidden)]
pub fn describe<F: MasterFormat>() -> wr::FormatInfo {
    wr::FormatInfo {
        name: F::NAME.into(),
        version: F::VERSION.into(),
        kinds: F::kinds().into_iter().map(kind_to).collect(),
    }
}

/// `decode` of a format (called by the code `master_format!` generates).
#[doc(hidden)]
pub fn decode<F: MasterFormat>(
    kind: crate::bindings::tenken::plugin::types::MasterKind,
    bytes: Vec<u8>,
) -> Result<Vec<wr::MasterRow>, wr::DecodeError> {
    F::decode(kind_from(kind), &bytes).map(|rows| rows.into_iter().map(row_to).collect()).map_err(|e| wr::DecodeError {
        message: e.message,
        line: e.line,
        column: e.column,
    })
}

/// `encode` of a format (called by the code `master_format!` generates).
#[doc(hidden)]
pub fn encode<F: MasterFormat>(
    kind: crate::bindings::tenken::plugin::types::MasterKind,
    rows: Vec<wr::MasterRow>,
) -> Result<Vec<u8>, String> {
    let kind = kind_from(kind);
    F::encode(kind, rows.into_iter().map(|r| row_from(kind, r)).collect())
}

/// Exports a [`MasterFormat`] implementation as a `master-format` component (the
/// `converter` interface).
///
/// ```text
/// struct SskCsv;
/// impl tenken_guest::MasterFormat for SskCsv { const NAME: &'static str = "ssk-csv"; /* decode, encode */ }
/// tenken_guest::master_format!(SskCsv);
/// ```
#[macro_export]
macro_rules! master_format {
    ($format:ty) => {
        struct Converter;

        impl $crate::converter_bindings::exports::tenken::plugin::converter::Guest for Converter {
            fn describe() -> $crate::converter_bindings::tenken::plugin::master_rows::FormatInfo {
                $crate::format::describe::<$format>()
            }

            fn decode(
                kind: $crate::bindings::tenken::plugin::types::MasterKind,
                bytes: Vec<u8>,
            ) -> Result<
                Vec<$crate::converter_bindings::tenken::plugin::master_rows::MasterRow>,
                $crate::converter_bindings::tenken::plugin::master_rows::DecodeError,
            > {
                $crate::format::decode::<$format>(kind, bytes)
            }

            fn encode(
                kind: $crate::bindings::tenken::plugin::types::MasterKind,
                rows: Vec<$crate::converter_bindings::tenken::plugin::master_rows::MasterRow>,
            ) -> Result<Vec<u8>, String> {
                $crate::format::encode::<$format>(kind, rows)
            }
        }

        $crate::converter_bindings::export!(Converter);
    };
}
