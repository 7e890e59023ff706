//! Master entries as the host answers them to rule plugins, resolved for one date.

use crate::Date;

/// The six SSK basic masters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum MasterKind {
    /// 医科診療行為 (`s_`).
    Procedure,
    /// 医薬品 (`y_`).
    Drug,
    /// 特定器材 (`t_`).
    Material,
    /// コメント (`c_`).
    Comment,
    /// 傷病名 (`b_`).
    Disease,
    /// 修飾語 (`z_`).
    Modifier,
}

impl MasterKind {
    pub const ALL: [MasterKind; 6] = [
        MasterKind::Procedure,
        MasterKind::Drug,
        MasterKind::Material,
        MasterKind::Comment,
        MasterKind::Disease,
        MasterKind::Modifier,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MasterKind::Procedure => "procedure",
            MasterKind::Drug => "drug",
            MasterKind::Material => "material",
            MasterKind::Comment => "comment",
            MasterKind::Disease => "disease",
            MasterKind::Modifier => "modifier",
        }
    }

    /// The SSK file prefix / マスター種別 letter (lower case).
    pub fn letter(self) -> char {
        match self {
            MasterKind::Procedure => 's',
            MasterKind::Drug => 'y',
            MasterKind::Material => 't',
            MasterKind::Comment => 'c',
            MasterKind::Disease => 'b',
            MasterKind::Modifier => 'z',
        }
    }

    pub fn japanese(self) -> &'static str {
        match self {
            MasterKind::Procedure => "診療行為",
            MasterKind::Drug => "医薬品",
            MasterKind::Material => "特定器材",
            MasterKind::Comment => "コメント",
            MasterKind::Disease => "傷病名",
            MasterKind::Modifier => "修飾語",
        }
    }
}

/// A master entry with the values that applied on the date asked about.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct MasterEntry {
    pub kind: MasterKind,
    pub code: String,
    pub name: String,
    /// 点数識別 / 金額種別 in force on the date (e.g. "3" = 点数(プラス), "1" = 金額).
    pub value_kind: String,
    /// 新又は現点数 / 新又は現金額 in force on the date; None when the master does not say
    /// (e.g. the date is before the last change and the master keeps no older value).
    pub value: Option<f64>,
    /// 入外適用区分 (診療行為): "0" both, "1" 入院のみ, "2" 入院外のみ.
    pub inout: String,
    /// 下限年齢 / 上限年齢 as two-character codes ("00" = none).
    pub age_min: String,
    pub age_max: String,
    /// 上限回数 (診療行為), 0 = none.
    pub count_max: u32,
    /// 変更年月日 of the row the answer comes from.
    pub changed_on: Option<Date>,
    /// 廃止年月日, None when not abolished.
    pub abolished_on: Option<Date>,
    /// 単独使用禁止区分 (傷病名), or other per-kind flags, as recorded.
    pub flags: String,
}

/// Why a code is not in force on a date.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Lookup {
    /// In force on the date, with the values that applied then.
    InForce(MasterEntry),
    /// Abolished (廃止年月日) before the date.
    Abolished(MasterEntry),
    /// First listed after the date (新規 row, 収載年月日).
    NotYetListed(MasterEntry),
    /// No such code in this master.
    Unknown,
}

/// The master lookups rule code needs. The host implements it over its master tables; the
/// guest implements it over the imported `master` interface.
pub trait Masters {
    fn lookup(&self, kind: MasterKind, code: &str, on: Date) -> Lookup;
}

/// One master row in the canonical form every master-format converter decodes to and
/// encodes from (WIT `master-row`): the fields every format must carry, then every other
/// column by its canonical name (`c` + the SSK column number, 0-based), so a round trip
/// through any format loses nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CanonRow {
    pub kind: MasterKind,
    /// 変更区分: '0' 継続, '1' 抹消, '2' 復活, '3' 新規, '5' 変更, '9' 廃止.
    pub change: char,
    pub code: String,
    pub name: String,
    /// 点数識別 / 金額種別 ("" when the kind has none).
    pub value_kind: String,
    /// 新又は現点数 / 金額, as written ("" when none).
    pub value: String,
    pub changed_on: Option<Date>,
    pub abolished_on: Option<Date>,
    pub extra: Vec<(String, String)>,
}
