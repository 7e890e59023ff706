//! The canonical master row (`tenken_model::CanonRow`) and the SSK CSV format in both
//! directions, plus the field-by-field comparison the conversion proof uses.
//!
//! Why here: the SSK layout tables live in this crate; the `ssk-csv` converter plugin is
//! built from this same code for wasm, and the native reader stays the test oracle.

use tenken_model::{CanonRow, Date, MasterKind};

use crate::MasterError;
use crate::parse::{MasterRow, layout, parse_ssk_named};

/// The canonical name of SSK column `i`.
pub fn column_name(i: usize) -> String {
    format!("c{i:03}")
}

fn named_columns(kind: MasterKind) -> Vec<usize> {
    let l = layout(kind);
    let mut v = vec![0, l.code, l.name];
    v.extend(l.value_kind);
    v.extend(l.value);
    v
}

pub fn to_canon(row: &MasterRow) -> CanonRow {
    let l = layout(row.kind);
    let skip = named_columns(row.kind);
    CanonRow {
        kind: row.kind,
        change: row.change,
        code: row.code.clone(),
        name: row.col(l.name).to_owned(),
        value_kind: l.value_kind.map(|i| row.col(i).to_owned()).unwrap_or_default(),
        value: l.value.map(|i| row.col(i).to_owned()).unwrap_or_default(),
        changed_on: Date::parse_yyyymmdd(row.col(l.changed)),
        abolished_on: Date::parse_yyyymmdd(row.col(l.abolished)),
        extra: row
            .columns
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.contains(i))
            .map(|(i, v)| (column_name(i), v.clone()))
            .collect(),
    }
}

/// Rebuilds the SSK columns of a canonical row.
pub fn from_canon(row: &CanonRow) -> Result<MasterRow, String> {
    let l = layout(row.kind);
    let mut cols: Vec<(usize, String)> =
        vec![(0, row.change.to_string()), (l.code, row.code.clone()), (l.name, row.name.clone())];
    if let Some(i) = l.value_kind {
        cols.push((i, row.value_kind.clone()));
    }
    if let Some(i) = l.value {
        cols.push((i, row.value.clone()));
    }
    for (name, v) in &row.extra {
        let i: usize = name
            .strip_prefix('c')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("{}: unknown canonical column {name:?}", row.code))?;
        cols.push((i, v.clone()));
    }
    let n = cols.iter().map(|(i, _)| i + 1).max().unwrap_or(0).max(l.min_columns);
    let mut columns = vec![String::new(); n];
    for (i, v) in cols {
        columns[i] = v;
    }
    Ok(MasterRow { kind: row.kind, change: row.change, code: row.code.clone(), columns })
}

/// Decodes an SSK CSV file (full or 差分) into canonical rows.
pub fn decode_ssk(kind: MasterKind, name: &str, bytes: &[u8]) -> Result<Vec<CanonRow>, MasterError> {
    Ok(parse_ssk_named(kind, name, bytes)?.iter().map(to_canon).collect())
}

/// Encodes canonical rows as an SSK CSV file: CP932, CRLF, every field double-quoted.
pub fn encode_ssk(rows: &[CanonRow]) -> Result<Vec<u8>, String> {
    let mut text = String::new();
    for r in rows {
        let m = from_canon(r)?;
        let line: Vec<String> = m.columns.iter().map(|c| format!("\"{}\"", c.replace('"', "\"\""))).collect();
        text.push_str(&line.join(","));
        text.push_str("\r\n");
    }
    let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(&text);
    if unmappable {
        return Err("a field has a character that Shift_JIS (CP932) cannot encode".into());
    }
    Ok(bytes.into_owned())
}

/// One difference found by a round-trip proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDiff {
    pub code: String,
    pub field: String,
    pub expected: String,
    pub got: String,
}

/// A date as reports show it: `YYYY-MM-DD`, or `-` for none (`99999999`, empty).
pub fn date_text(d: Option<Date>) -> String {
    d.map(|d| d.to_string()).unwrap_or_else(|| "-".to_owned())
}

/// Compares rows field by field (in order); at most `max` differences are reported.
pub fn compare(expected: &[CanonRow], got: &[CanonRow], max: usize) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    if expected.len() != got.len() {
        out.push(FieldDiff {
            code: "*".into(),
            field: "rows".into(),
            expected: expected.len().to_string(),
            got: got.len().to_string(),
        });
    }
    for (e, g) in expected.iter().zip(got) {
        let mut push = |field: &str, a: String, b: String| {
            if a != b && out.len() < max {
                out.push(FieldDiff { code: e.code.clone(), field: field.to_owned(), expected: a, got: b });
            }
        };
        push("code", e.code.clone(), g.code.clone());
        push("change", e.change.to_string(), g.change.to_string());
        push("name", e.name.clone(), g.name.clone());
        push("value_kind", e.value_kind.clone(), g.value_kind.clone());
        push("value", e.value.clone(), g.value.clone());
        push("changed_on", date_text(e.changed_on), date_text(g.changed_on));
        push("abolished_on", date_text(e.abolished_on), date_text(g.abolished_on));
        let ge: std::collections::HashMap<&str, &str> = g.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        for (k, v) in &e.extra {
            push(k, v.clone(), ge.get(k.as_str()).map(|s| s.to_string()).unwrap_or_else(|| "(missing)".into()));
        }
        if out.len() >= max {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_masters_round_trip_through_ssk_csv() {
        for (name, bytes) in crate::demo::demo_files() {
            let kind = crate::demo::demo_file_kind(&name).unwrap();
            let rows = decode_ssk(kind, &name, &bytes).unwrap();
            assert!(!rows.is_empty());
            let again = decode_ssk(kind, &name, &encode_ssk(&rows).unwrap()).unwrap();
            assert_eq!(compare(&rows, &again, 10), vec![], "{name}");
            assert_eq!(rows, again);
        }
    }
}

/// What changed for one master kind between two versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindDiff {
    pub kind: Option<MasterKind>,
    pub added: Vec<String>,
    /// Listed in the old version, gone (抹消) in the new.
    pub removed: Vec<String>,
    /// 廃止年月日 newly set.
    pub abolished: Vec<String>,
    /// 廃止年月日 cleared again (復活).
    pub restored: Vec<String>,
    /// Field by field (canonical names; `value` is the 点数/金額).
    pub changed: Vec<(String, Vec<FieldDiff>)>,
}

/// The semantic diff of two master versions, kind by kind (latest row of each code).
pub fn semantic_diff(old: &crate::MasterSet, new: &crate::MasterSet) -> Vec<KindDiff> {
    let mut out = Vec::new();
    for kind in MasterKind::ALL {
        let a: std::collections::BTreeMap<&str, CanonRow> =
            old.rows(kind).map(|r| (r.code.as_str(), to_canon(r))).collect();
        let b: std::collections::BTreeMap<&str, CanonRow> =
            new.rows(kind).map(|r| (r.code.as_str(), to_canon(r))).collect();
        let mut d = KindDiff { kind: Some(kind), ..Default::default() };
        for (code, nb) in &b {
            match a.get(code) {
                None => d.added.push(code.to_string()),
                Some(na) => {
                    if na.abolished_on.is_none() && nb.abolished_on.is_some() {
                        d.abolished.push(code.to_string());
                    } else if na.abolished_on.is_some() && nb.abolished_on.is_none() {
                        d.restored.push(code.to_string());
                    }
                    // 変更区分 says how the row arrived, not what it is: not a change.
                    let (mut x, mut y) = (na.clone(), nb.clone());
                    x.change = '0';
                    y.change = '0';
                    let mut fields = compare(std::slice::from_ref(&x), std::slice::from_ref(&y), 64);
                    // 変更年月日 / 廃止年月日 are compared as dates; their raw columns (kept for
                    // the round trip) would say the same thing twice.
                    let l = layout(kind);
                    let (ch, ab) = (column_name(l.changed), column_name(l.abolished));
                    fields.retain(|f| f.field != ch && f.field != ab);
                    if !fields.is_empty() {
                        d.changed.push((code.to_string(), fields));
                    }
                }
            }
        }
        d.removed = a.keys().filter(|c| !b.contains_key(*c)).map(|c| c.to_string()).collect();
        if !(d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty()) || !a.is_empty() || !b.is_empty() {
            out.push(d);
        }
    }
    out
}
