// The WIT glue shared (via include!) by every master-format converter in this repository:
// the including crate defines FORMAT_NAME, format_decode and format_encode over canonical
// rows; this file exports them as the `converter` interface.

wit_bindgen::generate!({
    path: "../../wit",
    world: "master-format",
});

use exports::tenken::plugin::converter::Guest;
use tenken::plugin::master_rows::{ChangeKind, DecodeError, FormatInfo, MasterRow};
use tenken::plugin::types::{Date as WDate, MasterKind as WKind};
use tenken_model::{CanonRow, Date, MasterKind};

fn kind_from(k: WKind) -> MasterKind {
    match k {
        WKind::Procedure => MasterKind::Procedure,
        WKind::Drug => MasterKind::Drug,
        WKind::Material => MasterKind::Material,
        WKind::Comment => MasterKind::Comment,
        WKind::Disease => MasterKind::Disease,
        WKind::Modifier => MasterKind::Modifier,
    }
}

fn kind_to(k: MasterKind) -> WKind {
    match k {
        MasterKind::Procedure => WKind::Procedure,
        MasterKind::Drug => WKind::Drug,
        MasterKind::Material => WKind::Material,
        MasterKind::Comment => WKind::Comment,
        MasterKind::Disease => WKind::Disease,
        MasterKind::Modifier => WKind::Modifier,
    }
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

fn date_to(d: Option<Date>) -> Option<WDate> {
    d.map(|d| WDate { year: d.year, month: d.month, day: d.day })
}

fn date_from(d: Option<WDate>) -> Option<Date> {
    d.map(|d| Date { year: d.year, month: d.month, day: d.day })
}

fn row_to(r: CanonRow) -> MasterRow {
    MasterRow {
        kind: kind_to(r.kind),
        change: change_to(r.change),
        code: r.code,
        name: r.name,
        value_kind: r.value_kind,
        value: r.value,
        changed_on: date_to(r.changed_on),
        abolished_on: date_to(r.abolished_on),
        extra: r.extra,
    }
}

fn row_from(kind: MasterKind, r: MasterRow) -> CanonRow {
    CanonRow {
        kind,
        change: change_from(r.change),
        code: r.code,
        name: r.name,
        value_kind: r.value_kind,
        value: r.value,
        changed_on: date_from(r.changed_on),
        abolished_on: date_from(r.abolished_on),
        extra: r.extra,
    }
}

struct Converter;

impl Guest for Converter {
    fn describe() -> FormatInfo {
        FormatInfo {
            name: FORMAT_NAME.into(),
            version: "1.0.0".into(),
            kinds: MasterKind::ALL.into_iter().map(kind_to).collect(),
        }
    }

    fn decode(kind: WKind, bytes: Vec<u8>) -> Result<Vec<MasterRow>, DecodeError> {
        format_decode(kind_from(kind), &bytes)
            .map(|rows| rows.into_iter().map(row_to).collect())
            .map_err(|(message, line)| DecodeError { message, line, column: None })
    }

    fn encode(kind: WKind, rows: Vec<MasterRow>) -> Result<Vec<u8>, String> {
        let kind = kind_from(kind);
        format_encode(kind, rows.into_iter().map(|r| row_from(kind, r)).collect())
    }
}

export!(Converter);
