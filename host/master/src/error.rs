//! Errors of master loading: each says which file, where in it, what was wrong and what to do.

use std::path::PathBuf;

use tenken_model::MasterKind;

/// Everything that can go wrong reading SSK master files.
///
/// `file` is the file name (or `(in-memory)` for bytes handed in without a name); `line` and
/// `column` are 1-based, `column` counting CSV fields, so a user can open the file and find it.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("{file}: the master-format converter could not decode it: {message}")]
    Converter { file: String, message: String },

    #[error("cannot read {path}: {source}; check that the path exists and is readable")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{file}: line {line}, column {column}: bytes that are not valid CP932 (Shift_JIS); \
         SSK masters are published in CP932 — re-download the file or convert it back to CP932"
    )]
    Encoding { file: String, line: usize, column: usize },

    #[error(
        "{file}: line {line}, column {column}: {problem}; the file is not a well-formed SSK master CSV (every field double-quoted)"
    )]
    Csv { file: String, line: usize, column: usize, problem: String },

    #[error(
        "{file}: line {line}: {found} columns, but a {kind} master row needs at least {needed}; \
         is this the right file for the {kind} master, or a truncated download?",
        kind = .kind.japanese()
    )]
    Columns { file: String, line: usize, kind: MasterKind, found: usize, needed: usize },

    #[error(
        "{file}: line {line} has {found} columns, more than the {layout} of the {kind} master's layout; \
         a column was inserted or a separator doubled — the file is shifted and is refused",
        kind = .kind.japanese()
    )]
    TooManyColumns { file: String, line: usize, kind: MasterKind, found: usize, layout: usize },

    #[error(
        "{file}: line {line} has {found} columns but line {first_line} has {first}; every row of a master \
         file has the same columns — the file is shifted (a column lost or added) and is refused"
    )]
    RaggedColumns { file: String, line: usize, found: usize, first_line: usize, first: usize },

    #[error(
        "{file}: its rows have {found} columns but the full file it revises, {full}, has {expected}; \
         a 差分 has the layout of its full file — the 差分 is shifted or of another layout and is refused"
    )]
    DiffColumns { file: String, found: usize, full: String, expected: usize },

    #[error(
        "{file}: line {line}, column 2: マスター種別 is `{found}`, expected `{expected}` for the {kind} master; \
         the file belongs to another master — check its name prefix (s_/y_/t_/c_/b_/z_)",
        kind = .kind.japanese()
    )]
    WrongKind { file: String, line: usize, kind: MasterKind, found: String, expected: char },

    #[error(
        "{file}: line {line}, column 1: 変更区分 is `{found}`, expected one of 0 1 2 3 5 9; \
         the row is damaged or the file is not an SSK master"
    )]
    BadChange { file: String, line: usize, found: String },

    #[error("{file}: line {line}, column {column}: the code is empty; every master row needs its code")]
    EmptyCode { file: String, line: usize, column: usize },
}
