//! The `kokuho-fixed` master-format converter (docs/formats/kokuho-fixed.md): a fixed-width
//! Shift_JIS layout with 和暦 dates and numbers in fixed units, both directions.

use tenken_guest::tenken_model::{CanonRow, Date, MasterKind};
use tenken_guest::{DecodeError, MasterFormat};

struct KokuhoFixed;

impl MasterFormat for KokuhoFixed {
    const NAME: &'static str = "kokuho-fixed";

    fn decode(kind: MasterKind, bytes: &[u8]) -> Result<Vec<CanonRow>, DecodeError> {
        decode(kind, bytes).map_err(|(message, line)| DecodeError { message, line: Some(line), column: None })
    }

    fn encode(kind: MasterKind, rows: Vec<CanonRow>) -> Result<Vec<u8>, String> {
        encode(kind, rows)
    }
}

tenken_guest::master_format!(KokuhoFixed);

const NAME_BYTES: usize = 200;
const CODE_BYTES: usize = 12;
/// Bytes before the name: D, kind, change, two dates, code, value flag, value, decimals, value kind.
const HEAD: usize = 1 + 1 + 1 + 7 + 7 + CODE_BYTES + 1 + 15 + 1 + 2;
const FIXED: usize = HEAD + NAME_BYTES + 4;

/// (era digit, first day, Gregorian year of era year 1 minus 1)
const ERAS: [(u8, (u16, u8, u8), u16); 5] = [
    (5, (2019, 5, 1), 2018),
    (4, (1989, 1, 8), 1988),
    (3, (1926, 12, 25), 1925),
    (2, (1912, 7, 30), 1911),
    (1, (1868, 1, 25), 1867),
];

fn wareki(d: Option<Date>) -> Result<String, String> {
    let Some(d) = d else { return Ok("0000000".into()) };
    for (g, first, base) in ERAS {
        if (d.year, d.month, d.day) >= first {
            return Ok(format!("{g}{:02}{:02}{:02}", d.year - base, d.month, d.day));
        }
    }
    Err(format!("date {}-{}-{} is before 明治", d.year, d.month, d.day))
}

fn seireki(s: &str) -> Result<Option<Date>, String> {
    if s == "0000000" {
        return Ok(None);
    }
    let bad = || format!("{s:?} is not a 和暦 date GYYMMDD");
    if s.len() != 7 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let g = s.as_bytes()[0] - b'0';
    let base = ERAS.iter().find(|e| e.0 == g).ok_or_else(bad)?.2;
    let n = |r: std::ops::Range<usize>| s[r].parse::<u16>().map_err(|_| bad());
    Ok(Some(Date { year: base + n(1..3)?, month: n(3..5)? as u8, day: n(5..7)? as u8 }))
}

/// "12.50" → (12500 thousandths, 2 decimals).
fn to_units(code: &str, v: &str) -> Result<(u64, u8), String> {
    let bad = |why: &str| format!("{code}: value {v:?} {why}");
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("is not a non-negative number"));
    }
    if frac.len() > 3 || (v.contains('.') && frac.is_empty()) {
        return Err(bad("has more than 3 decimals or a bare point"));
    }
    let i: u64 = int.parse().map_err(|_| bad("is too large"))?;
    let f: u64 = format!("{frac:0<3}").parse().unwrap_or(0);
    // Leading zeros ("0288") would not come back as written.
    if int.len() > 1 && int.starts_with('0') {
        return Err(bad("has leading zeros"));
    }
    Ok((i.checked_mul(1000).and_then(|x| x.checked_add(f)).ok_or_else(|| bad("is too large"))?, frac.len() as u8))
}

fn from_units(units: u64, decimals: u8) -> String {
    let (i, f) = (units / 1000, units % 1000);
    match decimals {
        0 => i.to_string(),
        d => format!("{i}.{}", &format!("{f:03}")[..d as usize]),
    }
}

fn sjis(s: &str) -> Result<Vec<u8>, String> {
    let (b, _, bad) = encoding_rs::SHIFT_JIS.encode(s);
    if bad {
        return Err(format!("{s:?} has a character Shift_JIS cannot encode"));
    }
    Ok(b.into_owned())
}

fn pad(out: &mut Vec<u8>, bytes: &[u8], width: usize, code: &str, field: &str) -> Result<(), String> {
    if bytes.len() > width {
        return Err(format!("{code}: {field} is {} bytes; kokuho-fixed holds {width}", bytes.len()));
    }
    out.extend_from_slice(bytes);
    out.extend(std::iter::repeat_n(b' ', width - bytes.len()));
    Ok(())
}

fn encode(kind: MasterKind, rows: Vec<CanonRow>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for r in &rows {
        let code = r.code.as_str();
        out.push(b'D');
        out.push(kind.letter() as u8);
        out.push(r.change as u8);
        out.extend_from_slice(wareki(r.changed_on).map_err(|e| format!("{code}: {e}"))?.as_bytes());
        out.extend_from_slice(wareki(r.abolished_on).map_err(|e| format!("{code}: {e}"))?.as_bytes());
        pad(&mut out, code.as_bytes(), CODE_BYTES, code, "code")?;
        if r.value.is_empty() {
            out.extend_from_slice(b"0");
            out.extend_from_slice(&[b'0'; 15]);
            out.push(b'0');
        } else {
            let (units, dec) = to_units(code, &r.value)?;
            out.push(b'1');
            out.extend_from_slice(format!("{units:015}").as_bytes());
            out.push(b'0' + dec);
        }
        pad(&mut out, &sjis(&r.value_kind)?, 2, code, "value kind")?;
        pad(&mut out, &sjis(&r.name)?, NAME_BYTES, code, "name")?;
        out.extend_from_slice(format!("{:04}", r.extra.len()).as_bytes());
        for (k, v) in &r.extra {
            let n: u16 =
                k.strip_prefix('c').and_then(|n| n.parse().ok()).ok_or_else(|| format!("{code}: column {k:?}"))?;
            let bytes = sjis(v)?;
            if bytes.len() > 9999 || bytes.contains(&b'\n') || bytes.contains(&b'\r') {
                return Err(format!("{code}: column {k} cannot be stored (too long or a line break)"));
            }
            out.extend_from_slice(format!("{n:04}{:04}", bytes.len()).as_bytes());
            out.extend_from_slice(&bytes);
        }
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

fn text(b: &[u8]) -> String {
    encoding_rs::SHIFT_JIS.decode(b).0.into_owned()
}

fn decode(kind: MasterKind, bytes: &[u8]) -> Result<Vec<CanonRow>, (String, u32)> {
    let mut rows = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let n = (i + 1) as u32;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let err = |m: String| (m, n);
        if line.len() < FIXED || line[0] != b'D' {
            return Err(err(format!("not a kokuho-fixed record ({} bytes, needs {FIXED})", line.len())));
        }
        if line[1] != kind.letter() as u8 {
            return Err(err(format!("master kind {:?}, expected {:?}", line[1] as char, kind.letter())));
        }
        let change = line[2] as char;
        if !"012359".contains(change) {
            return Err(err(format!("変更区分 {change:?}")));
        }
        let mut at = 3;
        // (where the field starts, its bytes)
        let mut take = |w: usize| {
            let s = &line[at..at + w];
            at += w;
            (at - w, s)
        };
        // A field that does not hold what the layout puts there almost always means the
        // record is shifted (a byte added or lost before it, e.g. a name edited by hand in an
        // editor that re-encoded it): say which field, where, and what it held.
        let shifted = |field: &str, from: usize, width: usize, held: &[u8], why: String| {
            err(format!(
                "the {field} field (bytes {}–{} of the record) holds {:?}: {why}. The record does not line up with the kokuho-fixed layout (docs/formats/kokuho-fixed.md) — a byte was added or lost before this field, or this is not a kokuho-fixed file; export it again instead of editing it",
                from + 1,
                from + width,
                text(held)
            ))
        };
        let date = |name: &str, (from, b): (usize, &[u8])| seireki(&text(b)).map_err(|e| shifted(name, from, 7, b, e));
        let changed_on = date("変更年月日", take(7))?;
        let abolished_on = date("廃止年月日", take(7))?;
        let code = text(take(CODE_BYTES).1).trim_end_matches(' ').to_owned();
        let present = take(1).1 == b"1";
        let (from, b) = take(15);
        let units: u64 =
            text(b).parse().map_err(|_| shifted("点数/金額", from, 15, b, "not a 15-digit number".into()))?;
        let dec = take(1).1[0].wrapping_sub(b'0');
        let value = if present { from_units(units, dec.min(3)) } else { String::new() };
        let value_kind = text(take(2).1).trim_end_matches(' ').to_owned();
        let name = text(take(NAME_BYTES).1).trim_end_matches(' ').to_owned();
        let (from, b) = take(4);
        let count: usize = text(b).parse().map_err(|_| {
            shifted("列数 (column count, after the 200-byte name)", from, 4, b, "not a 4-digit number".into())
        })?;
        let mut extra = Vec::with_capacity(count);
        for _ in 0..count {
            if at + 8 > line.len() {
                return Err(err("the record ends inside its column list".into()));
            }
            let col: u16 = text(&line[at..at + 4]).parse().map_err(|_| err("column number".into()))?;
            let len: usize = text(&line[at + 4..at + 8]).parse().map_err(|_| err("column length".into()))?;
            at += 8;
            if at + len > line.len() {
                return Err(err(format!("column c{col:03} runs past the end of the record")));
            }
            extra.push((format!("c{col:03}"), text(&line[at..at + len])));
            at += len;
        }
        rows.push(CanonRow { kind, change, code, name, value_kind, value, changed_on, abolished_on, extra });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record with one byte added inside its name: the message names the file's layout
    /// and the field that no longer lines up, not just "not a number".
    #[test]
    fn a_shifted_record_is_named_as_shifted() {
        let row = CanonRow {
            kind: MasterKind::Procedure,
            change: '0',
            code: "111000110".into(),
            name: "初診料".into(),
            value_kind: "3".into(),
            value: "288.00".into(),
            changed_on: Some(Date { year: 2022, month: 4, day: 1 }),
            abolished_on: None,
            extra: vec![("c012".into(), "0".into())],
        };
        let mut bytes = encode(MasterKind::Procedure, vec![row.clone()]).unwrap();
        assert_eq!(decode(MasterKind::Procedure, &bytes).unwrap(), vec![row]);
        bytes.insert(HEAD + 10, b' ');
        let (msg, line) = decode(MasterKind::Procedure, &bytes).unwrap_err();
        assert_eq!(line, 1);
        assert!(msg.contains("列数") && msg.contains("does not line up") && msg.contains("bytes 249–252"), "{msg}");
    }
}
