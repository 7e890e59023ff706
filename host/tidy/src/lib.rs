//! Tidy: repository-wide rules checked by reading the source tree, run as ordinary tests
//! (`cargo test -p tenken-tidy`), after rust-analyzer's `xtask tidy`.
//!
//! Why: the invariants of ARCHITECTURE.md ("only `tenken-runtime` imports wasmtime", "only
//! `tenken-server` knows HTTP"), the OpenAPI document and the docs' links are promises that
//! nothing else keeps. Each module here reads files and returns [`Violation`]s naming file and
//! line; `tests/tidy.rs` runs them on this repository. The parsers are textual (no rustc, no
//! `cargo metadata`, no network), so the checks need nothing built and take well under a
//! second; their limits are documented where they are.
//!
//! - [`deps`]: who may depend on wasmtime and on the HTTP stack.
//! - [`routes`]: the axum router and the OpenAPI route table list the same (method, path)s.
//! - [`links`]: relative markdown links in the docs point at files (and headings) that exist.
//! - [`testfns`]: every `#[test]` asserts something, and no assertion is trivially true.
//! - [`modules`]: within a crate, no two modules import each other, directly or round about.
//! - [`includes`]: no guest crate under `plugins/` textually includes another crate's files.

#![forbid(unsafe_code)]

pub mod deps;
pub mod includes;
pub mod lex;
pub mod links;
pub mod modules;
pub mod routes;
pub mod testfns;

use std::fmt;
use std::path::{Path, PathBuf};

/// One broken rule, at a place in the repository.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// Path relative to the workspace root, `/`-separated.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

/// The workspace root: this crate lives at `host/tidy`.
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// `path` relative to `root`, `/`-separated (stable in messages whatever the platform).
pub fn rel(root: &Path, path: &Path) -> String {
    let r = path.strip_prefix(root).unwrap_or(path);
    r.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
}

/// 1-based line of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Directories never scanned: build output, installed JS toolchains, VCS and hidden dirs.
fn skipped_dir(name: &str) -> bool {
    name == "target" || name == "node_modules" || name.starts_with('.')
}

/// Every file under `dir` (recursively, sorted) whose name satisfies `keep`. A missing
/// directory yields nothing: callers decide whether that is an error.
pub fn walk(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            match e.file_type() {
                Ok(t) if t.is_dir() && !skipped_dir(&name) => {
                    stack.push(p);
                }
                Ok(t) if t.is_file() && keep(&p) => out.push(p),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// Files with extension `ext` under each of `dirs` (relative to `root`).
pub fn files_with_ext(root: &Path, dirs: &[&str], ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in dirs {
        out.extend(walk(&root.join(d), &|p| p.extension().is_some_and(|e| e == ext)));
    }
    out
}

/// Renders violations one per line, for an assertion message.
pub fn render(vs: &[Violation]) -> String {
    vs.iter().map(|v| format!("  {v}\n")).collect()
}
