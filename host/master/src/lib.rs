//! SSK 基本マスター: native reader, 差分 application, effective-dated lookup, demo masters.
//!
//! Column positions were checked against the real files in `shared/corpus/ssk-master`
//! (2022–2025). Where they differ from `docs/receipt-domain.md` §4:
//! - 医薬品 `y_ALL20240321.csv` has **40** columns, not 42; 薬価基準収載年月日 (col 35) holds
//!   `0` when not stated. The demo writer still emits the 42-column R06 layout; the reader
//!   accepts any row with at least 35 columns.
//! - コメント: the code is column 22; rebuilding it needs 一連番号 (col 4) zero-padded to six
//!   digits: 区分 `8` + パターン `40` + 一連番号 `109` → `840000109`.
//! - 傷病名 / 修飾語: 新規 rows leave 変更年月日 empty and carry 収載年月日; many 継続 rows
//!   leave 変更年月日 empty as well.
//! - The March 2022 診療行為 差分 are cumulative re-publications (each repeats the previous
//!   one's rows, sometimes corrected), and later 差分 carry 変更 rows without 変更年月日
//!   (corrections of the current row). Both are handled; see `MasterSet::apply_diff`.

#![forbid(unsafe_code)]

pub mod canon;
pub mod demo;
mod error;
pub mod labels;
mod parse;
mod set;

pub use error::MasterError;
pub use parse::{Layout, MasterRow, layout, parse_ssk, parse_ssk_named};
pub use set::{Decoder, DiffStats, MasterSet, Source, SourceRole};
