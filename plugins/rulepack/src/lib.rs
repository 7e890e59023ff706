//! The default office-check rules (事務点検) of tenken, as five packs of pure functions.
//!
//! Why pure functions over `tenken-model` types: the same code is wrapped into five guest
//! components (one `tenken_guest::Pack` per pack) and also linked natively into the host as the
//! performance baseline and differential oracle. So: no I/O, no clocks, no randomness, no
//! global state; output depends only on the arguments. Per-receipt rules look only at the
//! receipts they are given (the host batches receipts arbitrarily); file-level facts come
//! from `FileView` and `CheckContext`.
//!
//! Rule ids start with the pack's category (`format.`, `totals.`, `id.`, `master.`,
//! `diagnosis.`); every id a pack can emit is declared by its `rules()` (the native test
//! checks this). `docs/RULES.md` lists them all.

#![forbid(unsafe_code)]

/// The SDK's pack type (`tenken_guest::Pack`), re-exported for the host's native use.
pub use tenken_guest::Pack;
use tenken_model::{CheckContext, FileView, Finding, Masters, Receipt};

pub mod diagnosis;
pub mod format;
pub mod id;
pub mod master;
pub mod totals;
mod util;

const VERSION: &str = "1.0.0";

/// Record structure and order, field counts, required/numeric/date fields, code-table values,
/// レセプト種別 consistency, レセプト番号 contiguity, 診療年月 vs 請求年月.
pub const FORMAT: Pack = Pack {
    name: "tenken-format",
    version: VERSION,
    rules: format::rules,
    check_file: format::check_file,
    check_receipts: format::check_receipts,
};

/// GO totals, HO/KO 合計点数 by 負担区分, 回数 = Σ算定日, 負担区分 validity.
pub const TOTALS: Pack = Pack {
    name: "tenken-totals",
    version: VERSION,
    rules: totals::rules,
    check_file: totals::check_file,
    check_receipts: totals::check_receipts,
};

/// Check digits and formats of 保険者番号, 公費負担者番号, 受給者番号, 医療機関コード;
/// the receiving payer vs IR and insurer numbers.
pub const ID: Pack = Pack {
    name: "tenken-id",
    version: VERSION,
    rules: id::rules,
    check_file: id::check_file,
    check_receipts: id::check_receipts,
};

/// Codes against the SSK masters: existence, validity on the service date, fixed points,
/// age limits, 上限回数, 入外適用区分.
pub const MASTER: Pack = Pack {
    name: "tenken-master",
    version: VERSION,
    rules: master::rules,
    check_file: master::check_file,
    check_receipts: master::check_receipts,
};

/// 傷病名: presence, 未コード化傷病名, 主傷病, 診療開始日, duplicates.
pub const DIAGNOSIS: Pack = Pack {
    name: "tenken-diagnosis",
    version: VERSION,
    rules: diagnosis::rules,
    check_file: diagnosis::check_file,
    check_receipts: diagnosis::check_receipts,
};

/// The five packs, in the order their findings are usually presented.
pub fn packs() -> [Pack; 5] {
    [FORMAT, TOTALS, ID, MASTER, DIAGNOSIS]
}

/// Runs every pack natively over a whole file (file rules once, receipt rules on all receipts
/// in one batch). Convenience for the host's native baseline and tests; findings unsorted.
pub fn check_all(ctx: &CheckContext, file: &FileView, receipts: &[Receipt], masters: &dyn Masters) -> Vec<Finding> {
    let mut out = Vec::new();
    for pack in packs() {
        out.extend((pack.check_file)(ctx, file));
        out.extend((pack.check_receipts)(ctx, receipts, masters));
    }
    out
}

/// A file-level rule that needs nothing: packs without file rules use it.
pub(crate) fn no_file_rules(_: &CheckContext, _: &FileView) -> Vec<Finding> {
    Vec::new()
}
