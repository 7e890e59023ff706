//! `MasterSet`: the six masters as code-indexed tables with per-code history, 差分 application
//! and the effective-dated lookup rule code calls for every claim line.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;

use sha2::{Digest, Sha256};
use tenken_model::{Date, Lookup, MasterEntry, MasterKind, Masters, days_in_month};

use crate::MasterError;
use crate::parse::{MasterRow, parse_ssk_named};

/// FNV-1a: codes are short ASCII strings and the lookup runs ~1M times per big claim file, so
/// a cheap non-cryptographic hash beats SipHash here. The keys come from master files, not
/// from an adversary, so hash flooding is not a concern.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

fn kind_index(kind: MasterKind) -> usize {
    match kind {
        MasterKind::Procedure => 0,
        MasterKind::Drug => 1,
        MasterKind::Material => 2,
        MasterKind::Comment => 3,
        MasterKind::Disease => 4,
        MasterKind::Modifier => 5,
    }
}

fn prev_day(d: Date) -> Date {
    if d.day > 1 {
        Date { day: d.day - 1, ..d }
    } else if d.month > 1 {
        Date { year: d.year, month: d.month - 1, day: days_in_month(d.year, d.month - 1) }
    } else {
        Date { year: d.year - 1, month: 12, day: 31 }
    }
}

/// One version of a code: the row as it stood from its 変更年月日, with the fields the lookup
/// needs parsed once at load time so the hot path does no parsing.
#[derive(Debug, Clone)]
struct Version {
    row: MasterRow,
    changed_on: Option<Date>,
    /// Last day in force (廃止年月日, or the day before 変更年月日 of a 廃止 row without one).
    abolished_on: Option<Date>,
    value: Option<f64>,
    old_value: Option<f64>,
    count_max: u32,
}

impl Version {
    fn new(row: MasterRow) -> Version {
        let changed_on = row.changed_on();
        let abolished_on =
            row.abolished_on().or_else(|| if row.change == '9' { changed_on.map(prev_day) } else { None });
        Version {
            changed_on,
            abolished_on,
            value: row.value(),
            old_value: row.old_value(),
            count_max: row.count_max(),
            row,
        }
    }

    fn entry(&self, old: bool) -> MasterEntry {
        let r = &self.row;
        let (value_kind, value) = if old { (r.old_value_kind(), self.old_value) } else { (r.value_kind(), self.value) };
        MasterEntry {
            kind: r.kind,
            code: r.code.clone(),
            name: r.name().to_string(),
            value_kind: value_kind.to_string(),
            value,
            inout: r.inout().to_string(),
            age_min: r.age_min().to_string(),
            age_max: r.age_max().to_string(),
            count_max: self.count_max,
            changed_on: self.changed_on,
            abolished_on: self.abolished_on,
            flags: r.flags().to_string(),
        }
    }
}

/// Every version of one code, oldest 変更年月日 first (rows without a 変更年月日 sort first).
#[derive(Debug, Clone)]
struct History {
    versions: Vec<Version>,
    /// First day listed: 変更年月日 of a 新規 row, or 収載年月日 where the master has one.
    first_listed: Option<Date>,
    /// 抹消 (変更区分 1): answers Unknown, kept so that a later 復活 can restore it.
    deleted: bool,
}

impl History {
    fn from_row(row: MasterRow) -> History {
        let first_listed = if row.change == '3' { row.changed_on().or(row.listed_on()) } else { row.listed_on() };
        let deleted = row.change == '1';
        History { versions: vec![Version::new(row)], first_listed, deleted }
    }

    fn latest(&self) -> &Version {
        self.versions.last().expect("a history has at least one version")
    }

    fn latest_mut(&mut self) -> &mut Version {
        self.versions.last_mut().expect("a history has at least one version")
    }

    /// Index of the version in force on `on`, or None when `on` is before every version.
    fn in_force_at(&self, on: Date) -> Option<usize> {
        let pos = self.versions.partition_point(|v| v.changed_on.is_none_or(|d| d <= on));
        pos.checked_sub(1)
    }

    /// Inserts (or, for the same 変更年月日, replaces) a whole-row version.
    fn put(&mut self, v: Version) {
        match self.versions.iter().position(|x| x.changed_on == v.changed_on) {
            Some(i) => self.versions[i] = v,
            None => {
                let pos = self.versions.partition_point(|x| x.changed_on <= v.changed_on);
                self.versions.insert(pos, v);
            }
        }
    }
}

/// Copies the non-empty columns of a 差分 row onto `target` (empty = unchanged), except the
/// columns listed in `keep`.
fn overlay(target: &mut MasterRow, diff: &MasterRow, keep: &[usize]) {
    if target.columns.len() < diff.columns.len() {
        target.columns.resize(diff.columns.len(), String::new());
    }
    for (i, c) in diff.columns.iter().enumerate() {
        if i >= 1 && !c.is_empty() && !keep.contains(&i) {
            target.columns[i].clone_from(c);
        }
    }
    target.change = diff.change;
    target.columns[0] = diff.change.to_string();
}

#[derive(Debug, Clone, Default)]
struct Table {
    loaded: bool,
    index: FnvMap<Box<str>, u32>,
    codes: Vec<History>,
}

impl Table {
    fn get_mut(&mut self, code: &str) -> Option<&mut History> {
        let i = *self.index.get(code)? as usize;
        Some(&mut self.codes[i])
    }

    fn insert_new(&mut self, h: History) {
        let code: Box<str> = h.latest().row.code.as_str().into();
        match self.index.get(&code) {
            Some(&i) => self.codes[i as usize] = h,
            None => {
                self.index.insert(code, self.codes.len() as u32);
                self.codes.push(h);
            }
        }
    }
}

/// Whether a source file was loaded as a full master or applied as a 差分.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceRole {
    Full,
    Diff,
}

/// One file that went into a `MasterSet`, in the order applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: MasterKind,
    pub name: String,
    pub role: SourceRole,
    /// SHA-256 of the file's bytes.
    pub sha256: tenken_model::Digest,
    pub rows: usize,
}

/// What a 差分 file did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// 新規 rows (3).
    pub added: usize,
    /// 変更 rows (5), and 継続 rows (0) found in a 差分.
    pub changed: usize,
    /// 廃止 rows (9).
    pub abolished: usize,
    /// 抹消 rows (1).
    pub deleted: usize,
    /// 復活 rows (2).
    pub restored: usize,
    /// Rows naming a code the set does not have (5, 9, 1 rows cannot be applied then).
    pub unmatched: usize,
}

/// Decodes one master file (kind, file name, bytes) into rows.
pub type Decoder<'a> = dyn Fn(MasterKind, &str, &[u8]) -> Result<Vec<MasterRow>, MasterError> + 'a;

/// The six SSK masters, each a code-indexed table with per-code history.
#[derive(Debug, Clone, Default)]
pub struct MasterSet {
    tables: [Table; 6],
    sources: Vec<Source>,
}

/// A master file name split into its parts: `s_ALL20220218.csv` → (Procedure, true, "20220218").
fn classify_name(name: &str) -> Option<(MasterKind, bool, String)> {
    let lower = name.to_ascii_lowercase();
    let stem = lower.strip_suffix(".csv").or_else(|| lower.strip_suffix(".txt"))?;
    let mut chars = stem.chars();
    let letter = chars.next()?;
    let kind = MasterKind::ALL.into_iter().find(|k| k.letter() == letter)?;
    let rest = chars.as_str().strip_prefix('_')?;
    let (full, digits) = match rest.strip_prefix("all") {
        Some(d) => (true, d),
        None => (false, rest),
    };
    (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit())).then(|| (kind, full, digits.to_string()))
}

struct Candidate {
    kind: MasterKind,
    name: String,
    date: String,
    top_level: bool,
    named_full: bool,
    bytes: Vec<u8>,
}

impl MasterSet {
    /// An empty set: every lookup answers Unknown.
    pub fn new() -> MasterSet {
        MasterSet::default()
    }

    /// Loads every full master file in `dir` (`s_ALL*.csv`, `y_ALL*.csv`, `t_ALL*.csv`,
    /// `c_ALL*.csv`, `b_*.txt`, `z_*.txt`, any case, `.csv` or `.txt`), the newest by the date
    /// in the name per kind, then applies the 差分 files found in `dir` or any sub-directory
    /// dated after that full file, in date order.
    ///
    /// A file without `ALL` in its name is a full file if it has 継続 (変更区分 0) rows — the
    /// 傷病名/修飾語 full files are named `b_YYYYMMDD.txt` — and a 差分 otherwise. Full files
    /// count only in `dir` itself; 差分 of a kind without a full file are skipped.
    pub fn load_dir(dir: &Path) -> Result<MasterSet, MasterError> {
        MasterSet::load_dir_with(dir, &|kind, name, bytes| parse_ssk_named(kind, name, bytes))
    }

    /// Like `load_dir`, decoding every file with `decode` (the server passes its sandboxed
    /// converter plugin; the native reader stays the oracle).
    pub fn load_dir_with(dir: &Path, decode: &Decoder<'_>) -> Result<MasterSet, MasterError> {
        let mut files = Vec::new();
        collect(dir, true, &mut files)?;
        MasterSet::from_candidates(files, decode)
    }

    /// Like `load_dir`, over files held in memory: (file name, bytes), all as if in one
    /// directory.
    pub fn from_files(files: &[(String, Vec<u8>)]) -> Result<MasterSet, MasterError> {
        MasterSet::from_files_with(files, &|kind, name, bytes| parse_ssk_named(kind, name, bytes))
    }

    /// Like `from_files`, decoding with `decode`.
    pub fn from_files_with(files: &[(String, Vec<u8>)], decode: &Decoder<'_>) -> Result<MasterSet, MasterError> {
        let candidates = files
            .iter()
            .filter_map(|(name, bytes)| {
                let (kind, named_full, date) = classify_name(name)?;
                Some(Candidate { kind, name: name.clone(), date, top_level: true, named_full, bytes: bytes.clone() })
            })
            .collect();
        MasterSet::from_candidates(candidates, decode)
    }

    fn from_candidates(files: Vec<Candidate>, decode: &Decoder<'_>) -> Result<MasterSet, MasterError> {
        let mut set = MasterSet::new();
        // Parse the files whose role the name does not tell, once.
        let mut parsed: Vec<(Candidate, Option<Vec<MasterRow>>)> = Vec::new();
        for c in files {
            if c.named_full {
                parsed.push((c, None));
            } else {
                let rows = decode(c.kind, &c.name, &c.bytes)?;
                parsed.push((c, Some(rows)));
            }
        }
        let is_full = |c: &Candidate, rows: &Option<Vec<MasterRow>>| {
            let full = match rows {
                None => true,
                Some(rows) => rows.iter().any(|r| r.change == '0'),
            };
            full && c.top_level
        };
        for kind in MasterKind::ALL {
            // Newest full file by the date in its name; an `ALL` name wins a tie.
            let full = parsed
                .iter()
                .filter(|(c, rows)| c.kind == kind && is_full(c, rows))
                .max_by(|(a, _), (b, _)| (&a.date, a.named_full, &a.name).cmp(&(&b.date, b.named_full, &b.name)));
            let Some((fc, frows)) = full else { continue };
            let rows = match frows {
                Some(rows) => rows.clone(),
                None => decode(kind, &fc.name, &fc.bytes)?,
            };
            set.load_rows(kind, &fc.name, &fc.bytes, rows, SourceRole::Full);
            let full_date = fc.date.clone();
            let mut diffs: Vec<&(Candidate, Option<Vec<MasterRow>>)> = parsed
                .iter()
                .filter(|(c, rows)| {
                    c.kind == kind
                        && !c.named_full
                        && c.date > full_date
                        && rows.as_ref().is_some_and(|r| !r.iter().any(|r| r.change == '0'))
                })
                .collect();
            diffs.sort_by(|(a, _), (b, _)| (&a.date, &a.name).cmp(&(&b.date, &b.name)));
            let full_columns = set.rows(kind).next().map(|r| r.columns.len());
            for (c, rows) in diffs {
                let rows = rows.clone().unwrap_or_default();
                if let (Some(expected), Some(found)) = (full_columns, rows.first().map(|r| r.columns.len()))
                    && expected != found
                {
                    return Err(MasterError::DiffColumns {
                        file: c.name.clone(),
                        found,
                        full: fc.name.clone(),
                        expected,
                    });
                }
                set.apply_rows(kind, &c.name, &c.bytes, rows);
            }
        }
        Ok(set)
    }

    /// Loads one full master file from memory, replacing whatever the set had for `kind`.
    /// Returns the number of rows.
    pub fn load_full(&mut self, kind: MasterKind, name: &str, bytes: &[u8]) -> Result<usize, MasterError> {
        let rows = parse_ssk_named(kind, name, bytes)?;
        let n = rows.len();
        self.load_rows(kind, name, bytes, rows, SourceRole::Full);
        Ok(n)
    }

    /// Loads rows decoded elsewhere (a converter plugin) as the full master of `kind`;
    /// `bytes` are the source file's bytes (its digest becomes part of the set's version).
    pub fn load_full_rows(&mut self, kind: MasterKind, name: &str, bytes: &[u8], rows: Vec<MasterRow>) -> usize {
        let n = rows.len();
        self.load_rows(kind, name, bytes, rows, SourceRole::Full);
        n
    }

    /// Applies 差分 rows decoded elsewhere (a converter plugin).
    pub fn apply_diff_rows(&mut self, kind: MasterKind, name: &str, bytes: &[u8], rows: Vec<MasterRow>) -> DiffStats {
        self.apply_rows(kind, name, bytes, rows)
    }

    /// Builds a set from full master files in memory: (kind, file name, bytes).
    pub fn from_full_bytes(files: &[(MasterKind, &str, &[u8])]) -> Result<MasterSet, MasterError> {
        let mut set = MasterSet::new();
        for (kind, name, bytes) in files {
            set.load_full(*kind, name, bytes)?;
        }
        Ok(set)
    }

    fn record_source(&mut self, kind: MasterKind, name: &str, bytes: &[u8], role: SourceRole, rows: usize) {
        let sha256 = tenken_model::Digest::from_sha256(Sha256::digest(bytes).into());
        self.sources.push(Source { kind, name: name.to_string(), role, sha256, rows });
    }

    fn load_rows(&mut self, kind: MasterKind, name: &str, bytes: &[u8], rows: Vec<MasterRow>, role: SourceRole) {
        let n = rows.len();
        let mut table = Table { loaded: true, index: FnvMap::default(), codes: Vec::with_capacity(n) };
        table.index.reserve(n);
        for row in rows {
            // A full file lists each code once; should one appear twice, keep both as versions.
            match table.get_mut(&row.code) {
                Some(h) => h.put(Version::new(row)),
                None => table.insert_new(History::from_row(row)),
            }
        }
        self.tables[kind_index(kind)] = table;
        self.sources.retain(|s| s.kind != kind);
        self.record_source(kind, name, bytes, role, n);
    }

    /// Applies one 差分 file held in memory (errors name it `(in-memory)`).
    pub fn apply_diff(&mut self, kind: MasterKind, bytes: &[u8]) -> Result<DiffStats, MasterError> {
        self.apply_diff_named(kind, "(in-memory)", bytes)
    }

    /// Applies one 差分 file; `name` is used in error messages and in `sources()`.
    pub fn apply_diff_named(&mut self, kind: MasterKind, name: &str, bytes: &[u8]) -> Result<DiffStats, MasterError> {
        let rows = parse_ssk_named(kind, name, bytes)?;
        Ok(self.apply_rows(kind, name, bytes, rows))
    }

    fn apply_rows(&mut self, kind: MasterKind, name: &str, bytes: &[u8], rows: Vec<MasterRow>) -> DiffStats {
        let n = rows.len();
        let table = &mut self.tables[kind_index(kind)];
        table.loaded = true;
        let changed_col = crate::parse::layout(kind).changed;
        let abolished_col = crate::parse::layout(kind).abolished;
        let mut st = DiffStats::default();
        for row in rows {
            match row.change {
                // 新規: the code is listed from its 変更年月日. The March 2022 差分 are cumulative
                // re-publications, so the same 新規 row can arrive again: replace, don't stack.
                '3' => {
                    st.added += 1;
                    match table.get_mut(&row.code).filter(|h| !h.deleted) {
                        Some(h) => {
                            let v = Version::new(row);
                            if h.versions.iter().all(|x| x.changed_on >= v.changed_on) {
                                h.first_listed = v.changed_on.or(v.row.listed_on());
                            }
                            h.put(v);
                        }
                        None => table.insert_new(History::from_row(row)),
                    }
                }
                // 変更: only non-empty columns change. With a 変更年月日 the change starts a new
                // version (the previous stays as history); without one it corrects the latest.
                '5' | '0' => {
                    let Some(h) = table.get_mut(&row.code).filter(|h| !h.deleted) else {
                        st.unmatched += 1;
                        continue;
                    };
                    st.changed += 1;
                    let date = row.changed_on();
                    let slot = match date {
                        None => Some(h.versions.len() - 1),
                        Some(d) => h.versions.iter().position(|v| v.changed_on == Some(d)),
                    };
                    match slot {
                        Some(i) => {
                            let v = &mut h.versions[i];
                            overlay(&mut v.row, &row, &[]);
                            *v = Version::new(v.row.clone());
                        }
                        None => {
                            let d = date.expect("dated change");
                            let base = h.in_force_at(prev_day(d)).unwrap_or(0);
                            let mut r = h.versions[base].row.clone();
                            overlay(&mut r, &row, &[]);
                            h.put(Version::new(r));
                        }
                    }
                }
                // 廃止: abolished from its 廃止年月日 (or from its 変更年月日). The values before
                // stay those of the latest version, so its 変更年月日 is kept.
                '9' => {
                    let Some(h) = table.get_mut(&row.code).filter(|h| !h.deleted) else {
                        st.unmatched += 1;
                        continue;
                    };
                    st.abolished += 1;
                    let v = h.latest_mut();
                    overlay(&mut v.row, &row, &[changed_col]);
                    if let (None, Some(d)) = (v.row.abolished_on(), row.changed_on()) {
                        v.row.columns[abolished_col] = prev_day(d).compact();
                    }
                    *v = Version::new(v.row.clone());
                }
                // 抹消: gone (Unknown), kept aside for a later 復活.
                '1' => match table.get_mut(&row.code) {
                    Some(h) => {
                        st.deleted += 1;
                        h.deleted = true;
                    }
                    None => st.unmatched += 1,
                },
                // 復活: restored, and no longer abolished unless the row says otherwise.
                '2' => {
                    st.restored += 1;
                    match table.get_mut(&row.code) {
                        Some(h) => {
                            h.deleted = false;
                            let v = h.latest_mut();
                            overlay(&mut v.row, &row, &[]);
                            if row.abolished_raw().is_empty() {
                                v.row.columns[abolished_col] = "99999999".into();
                            }
                            *v = Version::new(v.row.clone());
                        }
                        None => table.insert_new(History::from_row(row)),
                    }
                }
                _ => st.unmatched += 1,
            }
        }
        self.record_source(kind, name, bytes, SourceRole::Diff, n);
        st
    }

    /// The kinds that have a master loaded (a missing kind answers Unknown to every lookup).
    pub fn kinds_loaded(&self) -> Vec<MasterKind> {
        MasterKind::ALL.into_iter().filter(|k| self.is_loaded(*k)).collect()
    }

    pub fn is_loaded(&self, kind: MasterKind) -> bool {
        self.tables[kind_index(kind)].loaded
    }

    /// The files that went into the set, in the order applied.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// The master version id: `sha256:` over the source files' digests, in order.
    pub fn digest(&self) -> tenken_model::Digest {
        let mut h = Sha256::new();
        for s in &self.sources {
            let role = match s.role {
                SourceRole::Full => "full",
                SourceRole::Diff => "diff",
            };
            // The hex spelling of each file's digest: what versions were always keyed by.
            h.update(format!("{}:{}:{}\n", s.kind.letter(), role, s.sha256.hex()).as_bytes());
        }
        tenken_model::Digest::from_sha256(h.finalize().into())
    }

    /// Current rows (the latest version of every code not 抹消), in file order.
    pub fn rows(&self, kind: MasterKind) -> impl Iterator<Item = &MasterRow> + '_ {
        self.tables[kind_index(kind)].codes.iter().filter(|h| !h.deleted).map(|h| &h.latest().row)
    }

    /// Number of codes (not 抹消) of `kind`.
    pub fn len(&self, kind: MasterKind) -> usize {
        self.tables[kind_index(kind)].codes.iter().filter(|h| !h.deleted).count()
    }

    /// True when no master of any kind holds a code.
    pub fn is_empty(&self) -> bool {
        MasterKind::ALL.into_iter().all(|k| self.len(k) == 0)
    }

    /// The rows in force on `on`, each the version whose values apply on that date. Codes whose
    /// only rows are dated after `on` are left out (their rows' values are not those of `on`),
    /// as are abolished and not yet listed codes. For claim generators.
    pub fn in_force(&self, kind: MasterKind, on: Date) -> Vec<&MasterRow> {
        let mut out = Vec::new();
        for h in &self.tables[kind_index(kind)].codes {
            if h.deleted || h.latest().abolished_on.is_some_and(|a| a < on) || h.first_listed.is_some_and(|f| on < f) {
                continue;
            }
            if let Some(i) = h.in_force_at(on) {
                out.push(&h.versions[i].row);
            }
        }
        out
    }

    /// Every stored version of a code, oldest first (empty when unknown).
    pub fn versions(&self, kind: MasterKind, code: &str) -> Vec<&MasterRow> {
        let t = &self.tables[kind_index(kind)];
        match t.index.get(code) {
            Some(&i) => t.codes[i as usize].versions.iter().map(|v| &v.row).collect(),
            None => Vec::new(),
        }
    }

    /// The current row of a code, if the set has it (and it is not 抹消).
    pub fn row(&self, kind: MasterKind, code: &str) -> Option<&MasterRow> {
        let t = &self.tables[kind_index(kind)];
        let h = &t.codes[*t.index.get(code)? as usize];
        (!h.deleted).then(|| &h.latest().row)
    }
}

impl Masters for MasterSet {
    /// One hash lookup; the only allocations are the returned entry's strings.
    fn lookup(&self, kind: MasterKind, code: &str, on: Date) -> Lookup {
        let t = &self.tables[kind_index(kind)];
        let Some(&i) = t.index.get(code) else { return Lookup::Unknown };
        let h = &t.codes[i as usize];
        if h.deleted {
            return Lookup::Unknown;
        }
        let last = h.latest();
        if last.abolished_on.is_some_and(|a| a < on) {
            return Lookup::Abolished(last.entry(false));
        }
        if h.first_listed.is_some_and(|f| on < f) {
            return Lookup::NotYetListed(h.versions[0].entry(false));
        }
        match h.in_force_at(on) {
            Some(i) => Lookup::InForce(h.versions[i].entry(false)),
            // Before the earliest row's 変更年月日: the code existed (a full file lists it
            // and nothing says it was new), so it is in force, with the 旧点数/旧金額 the row
            // keeps — or no value when it keeps none.
            None => Lookup::InForce(h.versions[0].entry(true)),
        }
    }
}

fn collect(dir: &Path, top_level: bool, out: &mut Vec<Candidate>) -> Result<(), MasterError> {
    let io = |e| MasterError::Io { path: dir.to_path_buf(), source: e };
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(io)?.collect::<Result<_, _>>().map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let ft = e.file_type().map_err(|source| MasterError::Io { path: path.clone(), source })?;
        if ft.is_dir() {
            collect(&path, false, out)?;
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((kind, named_full, date)) = classify_name(&name) else { continue };
        // Full files count only at the top; don't read full files lying in sub-directories.
        if named_full && !top_level {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|source| MasterError::Io { path: path.clone(), source })?;
        out.push(Candidate { kind, name, date, top_level, named_full, bytes });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_classify() {
        assert_eq!(classify_name("s_ALL20220218.csv"), Some((MasterKind::Procedure, true, "20220218".into())));
        assert_eq!(classify_name("S_all20220218.CSV"), Some((MasterKind::Procedure, true, "20220218".into())));
        assert_eq!(classify_name("b_20240601.txt"), Some((MasterKind::Disease, false, "20240601".into())));
        assert_eq!(classify_name("s_20220304.csv"), Some((MasterKind::Procedure, false, "20220304".into())));
        assert_eq!(classify_name("x_20220304.csv"), None);
        assert_eq!(classify_name("s_2022030.csv"), None);
        assert_eq!(classify_name("README.md"), None);
    }

    #[test]
    fn prev_day_crosses_months() {
        assert_eq!(prev_day(Date::new(2022, 4, 1).unwrap()), Date::new(2022, 3, 31).unwrap());
        assert_eq!(prev_day(Date::new(2024, 3, 1).unwrap()), Date::new(2024, 2, 29).unwrap());
        assert_eq!(prev_day(Date::new(2022, 1, 1).unwrap()), Date::new(2021, 12, 31).unwrap());
    }
}
