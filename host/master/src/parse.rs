//! The native SSK master CSV reader: CP932 bytes in, one `MasterRow` per row out, columns verbatim.
//!
//! This reader is the test oracle for the sandboxed converter plugins that will take over
//! decoding, so it is a pure function of (kind, bytes) with no I/O and no state.

use tenken_model::{Date, MasterKind};

use crate::MasterError;

/// Column positions (0-based) of the fields tenken reads, per master kind.
///
/// Verified against the real files in the shared corpus (s 2022-02, y 2024-03, t 2024-03,
/// c 2023-08, b 2024-06, z 2025-06); see the crate docs for where the domain notes differ.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Columns of the current published layout (what the demo writer produces).
    pub columns: usize,
    /// Fewest columns a row may have: enough to reach every required index below. Older
    /// layouts (e.g. the 35-column 医薬品 master before 2024) are accepted.
    pub min_columns: usize,
    pub code: usize,
    pub name: usize,
    /// 点数識別 / 金額種別 and 新又は現点数 / 新又は現金額.
    pub value_kind: Option<usize>,
    pub value: Option<usize>,
    /// 旧点数識別 / 旧金額種別 and 旧点数 / 旧金額.
    pub old_value_kind: Option<usize>,
    pub old_value: Option<usize>,
    /// 入外適用区分.
    pub inout: Option<usize>,
    pub age_min: Option<usize>,
    pub age_max: Option<usize>,
    /// 上限回数.
    pub count_max: Option<usize>,
    /// 変更年月日 / 廃止年月日.
    pub changed: usize,
    pub abolished: usize,
    /// 収載年月日 (薬価基準収載年月日 for 医薬品); optional column in older layouts.
    pub listed: Option<usize>,
    /// Per-kind flag reported as `MasterEntry::flags`: 単独使用禁止区分 (傷病名),
    /// パターン (コメント), 修飾語区分 (修飾語).
    pub flags: Option<usize>,
}

const PROCEDURE: Layout = Layout {
    columns: 150,
    min_columns: 88,
    code: 2,
    name: 4,
    value_kind: Some(10),
    value: Some(11),
    old_value_kind: Some(56),
    old_value: Some(57),
    inout: Some(12),
    age_min: Some(40),
    age_max: Some(41),
    count_max: Some(35),
    changed: 86,
    abolished: 87,
    listed: None,
    flags: None,
};

const DRUG: Layout = Layout {
    columns: 42,
    min_columns: 35,
    code: 2,
    name: 4,
    value_kind: Some(10),
    value: Some(11),
    old_value_kind: Some(23),
    old_value: Some(24),
    inout: None,
    age_min: None,
    age_max: None,
    count_max: None,
    changed: 29,
    abolished: 30,
    listed: Some(35),
    flags: None,
};

const MATERIAL: Layout = Layout {
    columns: 38,
    min_columns: 30,
    code: 2,
    name: 4,
    value_kind: Some(10),
    value: Some(11),
    old_value_kind: Some(16),
    old_value: Some(17),
    inout: None,
    age_min: Some(14),
    age_max: Some(15),
    count_max: None,
    changed: 27,
    abolished: 29,
    listed: None,
    flags: None,
};

const COMMENT: Layout = Layout {
    columns: 30,
    min_columns: 22,
    code: 22,
    name: 6,
    value_kind: None,
    value: None,
    old_value_kind: None,
    old_value: None,
    inout: None,
    age_min: None,
    age_max: None,
    count_max: None,
    changed: 20,
    abolished: 21,
    listed: None,
    flags: Some(3),
};

const DISEASE: Layout = Layout {
    columns: 46,
    min_columns: 24,
    code: 2,
    // 基本名称 (the full name); 省略名称 is column 7.
    name: 5,
    value_kind: None,
    value: None,
    old_value_kind: None,
    old_value: None,
    inout: None,
    age_min: None,
    age_max: None,
    count_max: None,
    changed: 22,
    abolished: 23,
    listed: Some(21),
    flags: Some(18),
};

const MODIFIER: Layout = Layout {
    columns: 19,
    min_columns: 16,
    code: 2,
    name: 6,
    value_kind: None,
    value: None,
    old_value_kind: None,
    old_value: None,
    inout: None,
    age_min: None,
    age_max: None,
    count_max: None,
    changed: 14,
    abolished: 15,
    listed: Some(13),
    flags: Some(18),
};

/// The column layout of one master kind.
pub fn layout(kind: MasterKind) -> &'static Layout {
    match kind {
        MasterKind::Procedure => &PROCEDURE,
        MasterKind::Drug => &DRUG,
        MasterKind::Material => &MATERIAL,
        MasterKind::Comment => &COMMENT,
        MasterKind::Disease => &DISEASE,
        MasterKind::Modifier => &MODIFIER,
    }
}

/// One row of an SSK master file, all columns kept verbatim.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterRow {
    pub kind: MasterKind,
    /// 変更区分: '0' 継続, '1' 抹消, '2' 復活, '3' 新規, '5' 変更, '9' 廃止.
    pub change: char,
    /// The code as claims record it (for コメント: column 22, or 区分+パターン+一連番号).
    pub code: String,
    /// Every column of the row, verbatim (column 0 is 変更区分).
    pub columns: Vec<String>,
}

fn parse_amount(s: &str) -> Option<f64> {
    if s.is_empty() { None } else { s.trim().parse().ok() }
}

/// `YYYYMMDD` → date; `99999999`, `00000000`, `0`, empty → None.
fn parse_date(s: &str) -> Option<Date> {
    Date::parse_yyyymmdd(s)
}

impl MasterRow {
    pub fn layout(&self) -> &'static Layout {
        layout(self.kind)
    }

    /// Column `i` (0-based), or "" when the row is shorter.
    pub fn col(&self, i: usize) -> &str {
        self.columns.get(i).map(String::as_str).unwrap_or("")
    }

    fn opt(&self, i: Option<usize>) -> &str {
        i.map(|i| self.col(i)).unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.col(self.layout().name)
    }

    /// 点数識別 / 金額種別 ("" for masters without a value).
    pub fn value_kind(&self) -> &str {
        self.opt(self.layout().value_kind)
    }

    /// 新又は現点数 / 新又は現金額.
    pub fn value(&self) -> Option<f64> {
        parse_amount(self.opt(self.layout().value))
    }

    /// 旧点数識別 / 旧金額種別 ("" where the master has none).
    pub fn old_value_kind(&self) -> &str {
        self.opt(self.layout().old_value_kind)
    }

    /// 旧点数 / 旧金額; None when there is no old value (識別 empty or `0`, as for codes that
    /// were new at their 変更年月日).
    pub fn old_value(&self) -> Option<f64> {
        match self.old_value_kind() {
            "" | "0" => None,
            _ => parse_amount(self.opt(self.layout().old_value)),
        }
    }

    /// 入外適用区分 (診療行為): "0" both, "1" 入院のみ, "2" 入院外のみ; "0" for other masters,
    /// which carry no such restriction.
    pub fn inout(&self) -> &str {
        match self.layout().inout {
            Some(i) => self.col(i),
            None => "0",
        }
    }

    /// 下限年齢 as recorded ("00" = none; also "00" for masters without the column).
    pub fn age_min(&self) -> &str {
        match self.layout().age_min {
            Some(i) => self.col(i),
            None => "00",
        }
    }

    /// 上限年齢 as recorded ("00" = none; also "00" for masters without the column).
    pub fn age_max(&self) -> &str {
        match self.layout().age_max {
            Some(i) => self.col(i),
            None => "00",
        }
    }

    /// 上限回数 (診療行為); 0 = none.
    pub fn count_max(&self) -> u32 {
        self.opt(self.layout().count_max).trim().parse().unwrap_or(0)
    }

    /// 変更年月日 as recorded (may be empty: 傷病名/修飾語 rows often leave it empty).
    pub fn changed_raw(&self) -> &str {
        self.col(self.layout().changed)
    }

    pub fn changed_on(&self) -> Option<Date> {
        parse_date(self.changed_raw())
    }

    /// 廃止年月日 as recorded (`99999999` = not abolished).
    pub fn abolished_raw(&self) -> &str {
        self.col(self.layout().abolished)
    }

    /// 廃止年月日: the last day the code is in force; None when not abolished.
    pub fn abolished_on(&self) -> Option<Date> {
        parse_date(self.abolished_raw())
    }

    /// 収載年月日 where the master has one (医薬品 column 35 records `0` for "not stated").
    pub fn listed_on(&self) -> Option<Date> {
        parse_date(self.opt(self.layout().listed))
    }

    /// The per-kind flag (see `Layout::flags`).
    pub fn flags(&self) -> &str {
        self.opt(self.layout().flags)
    }

    /// 単独使用禁止区分 set (傷病名 only): the name may not be used without a modifier.
    pub fn single_use_forbidden(&self) -> bool {
        self.kind == MasterKind::Disease && !matches!(self.flags(), "" | "0" | "00")
    }
}

/// Reads an SSK master file held in memory. Errors name the file `(in-memory)`.
pub fn parse_ssk(kind: MasterKind, bytes: &[u8]) -> Result<Vec<MasterRow>, MasterError> {
    parse_ssk_named(kind, "(in-memory)", bytes)
}

/// Reads an SSK master file; `file` is only used in error messages.
///
/// CP932, one row per line (CRLF or LF), every field double-quoted with `""` as the escape
/// for a quote (unquoted fields are accepted too), a trailing EOF byte 0x1A is ignored.
pub fn parse_ssk_named(kind: MasterKind, file: &str, bytes: &[u8]) -> Result<Vec<MasterRow>, MasterError> {
    let text = decode(file, bytes)?;
    let lay = layout(kind);
    let letter = kind.letter().to_ascii_uppercase();
    let mut rows = Vec::with_capacity(text.len() / (lay.columns * 4).max(1) + 1);
    // (line, columns) of the first row: every later row must have as many.
    let mut first: Option<(usize, usize)> = None;
    for (idx, raw) in text.split('\n').enumerate() {
        let line_no = idx + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let line = line.trim_end_matches('\u{1a}');
        if line.is_empty() {
            continue;
        }
        let columns = split_fields(file, line_no, line, lay.columns)?;
        if columns.len() < lay.min_columns {
            return Err(MasterError::Columns {
                file: file.into(),
                line: line_no,
                kind,
                found: columns.len(),
                needed: lay.min_columns,
            });
        }
        if columns.len() > lay.columns {
            return Err(MasterError::TooManyColumns {
                file: file.into(),
                line: line_no,
                kind,
                found: columns.len(),
                layout: lay.columns,
            });
        }
        match first {
            None => first = Some((line_no, columns.len())),
            Some((first_line, n)) if n != columns.len() => {
                return Err(MasterError::RaggedColumns {
                    file: file.into(),
                    line: line_no,
                    found: columns.len(),
                    first_line,
                    first: n,
                });
            }
            Some(_) => {}
        }
        let change = match columns[0].as_str() {
            c @ ("0" | "1" | "2" | "3" | "5" | "9") => c.chars().next().unwrap_or('0'),
            other => return Err(MasterError::BadChange { file: file.into(), line: line_no, found: other.into() }),
        };
        if !columns[1].eq_ignore_ascii_case(letter.encode_utf8(&mut [0; 4])) {
            return Err(MasterError::WrongKind {
                file: file.into(),
                line: line_no,
                kind,
                found: columns[1].clone(),
                expected: letter,
            });
        }
        let code = row_code(kind, &columns);
        if code.is_empty() {
            return Err(MasterError::EmptyCode { file: file.into(), line: line_no, column: lay.code + 1 });
        }
        rows.push(MasterRow { kind, change, code, columns });
    }
    Ok(rows)
}

/// The code of a row. コメント: column 22 (コメントコード) when present, else
/// 区分 (col 2) + パターン (col 3, 2 digits) + 一連番号 (col 4, zero-padded to 6 digits) —
/// checked on c_ALL20230801: the two agree on all 3,065 rows (e.g. "8","40","109" → 840000109).
fn row_code(kind: MasterKind, columns: &[String]) -> String {
    let lay = layout(kind);
    if kind == MasterKind::Comment {
        if let Some(c) = columns.get(lay.code).filter(|c| !c.is_empty()) {
            return c.clone();
        }
        let (k, p, n) = (&columns[2], &columns[3], &columns[4]);
        if k.is_empty() || p.is_empty() || n.is_empty() {
            return String::new();
        }
        return format!("{k}{p:0>2}{n:0>6}");
    }
    columns[lay.code].clone()
}

fn decode(file: &str, bytes: &[u8]) -> Result<String, MasterError> {
    // encoding_rs's Shift_JIS is the WHATWG one, i.e. Windows-31J (CP932) with the NEC/IBM
    // extensions the masters use (①, ㈱ …).
    if let Some(text) = encoding_rs::SHIFT_JIS.decode_without_bom_handling_and_without_replacement(bytes) {
        return Ok(text.into_owned());
    }
    // Locate the first bad byte for the message: decode line by line.
    for (idx, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let (text, had_errors) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(line);
        if had_errors {
            let before = text.split('\u{fffd}').next().unwrap_or("");
            let column = before.matches(',').count() + 1;
            return Err(MasterError::Encoding { file: file.into(), line: idx + 1, column });
        }
    }
    Err(MasterError::Encoding { file: file.into(), line: 1, column: 1 })
}

fn split_fields(file: &str, line_no: usize, line: &str, expected: usize) -> Result<Vec<String>, MasterError> {
    let b = line.as_bytes();
    let mut fields = Vec::with_capacity(expected);
    let mut i = 0;
    loop {
        let column = fields.len() + 1;
        if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut field = String::new();
            loop {
                let Some(q) = line[i..].find('"').map(|q| q + i) else {
                    return Err(MasterError::Csv {
                        file: file.into(),
                        line: line_no,
                        column,
                        problem: "a quoted field is not closed before the end of the line".into(),
                    });
                };
                field.push_str(&line[i..q]);
                if b.get(q + 1) == Some(&b'"') {
                    field.push('"');
                    i = q + 2;
                } else {
                    i = q + 1;
                    break;
                }
            }
            fields.push(field);
            match b.get(i) {
                None => break,
                Some(b',') => i += 1,
                Some(_) => {
                    return Err(MasterError::Csv {
                        file: file.into(),
                        line: line_no,
                        column,
                        problem: "text after the closing quote of a field (expected a comma)".into(),
                    });
                }
            }
        } else {
            let end = line[i..].find(',').map(|c| c + i);
            let field = &line[i..end.unwrap_or(b.len())];
            if field.contains('"') {
                return Err(MasterError::Csv {
                    file: file.into(),
                    line: line_no,
                    column,
                    problem: "a quote inside an unquoted field".into(),
                });
            }
            fields.push(field.to_string());
            match end {
                Some(c) => i = c + 1,
                None => break,
            }
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sjis(s: &str) -> Vec<u8> {
        encoding_rs::SHIFT_JIS.encode(s).0.into_owned()
    }

    #[test]
    fn quoted_fields_escapes_and_line_endings() {
        let mut cols = vec!["".to_string(); 30];
        cols[0] = "0".into();
        cols[1] = "C".into();
        cols[2] = "8".into();
        cols[3] = "40".into();
        cols[4] = "109".into();
        cols[6] = "服薬\"管理\"日".into();
        let line = cols.iter().map(|c| format!("\"{}\"", c.replace('"', "\"\""))).collect::<Vec<_>>().join(",");
        let text = format!("{line}\r\n{line}\n\u{1a}");
        let rows = parse_ssk(MasterKind::Comment, &sjis(&text)).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].code, "840000109");
        assert_eq!(rows[0].name(), "服薬\"管理\"日");
        assert_eq!(rows[1].columns.len(), 30);
    }

    #[test]
    fn errors_say_where() {
        let e = parse_ssk(MasterKind::Modifier, &sjis("\"0\",\"Z\",\"8282\n")).unwrap_err();
        assert!(matches!(e, MasterError::Csv { line: 1, column: 3, .. }), "{e}");
        let e = parse_ssk(MasterKind::Modifier, &sjis("\"0\",\"Z\",\"8282\"")).unwrap_err();
        assert!(matches!(e, MasterError::Columns { found: 3, .. }), "{e}");
        let row19 = |c: &str, k: &str| {
            (0..19)
                .map(|i| {
                    if i == 0 {
                        format!("\"{c}\"")
                    } else if i == 1 {
                        format!("\"{k}\"")
                    } else {
                        "\"1\"".into()
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let e =
            parse_ssk(MasterKind::Modifier, &sjis(&format!("{}\n{}", row19("0", "Z"), row19("0", "B")))).unwrap_err();
        assert!(matches!(e, MasterError::WrongKind { line: 2, .. }), "{e}");
        let e = parse_ssk(MasterKind::Modifier, &sjis(&row19("7", "Z"))).unwrap_err();
        assert!(matches!(e, MasterError::BadChange { .. }), "{e}");
        let e = parse_ssk(MasterKind::Modifier, b"\"0\",\"Z\",\"\x82\"").unwrap_err();
        assert!(matches!(e, MasterError::Encoding { line: 1, column: 3, .. }), "{e}");
    }
}
