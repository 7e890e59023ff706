//! Guest crates share code as crates, not as text: no file under `plugins/` may
//! `include!`, `include_str!` or `include_bytes!` a literal path outside its own crate
//! (ARCHITECTURE.md, code map: converters use the SDK's `master_format!`; shared format code
//! is a dependency). Textual inclusion of another crate's source hides the dependency from
//! cargo (no rebuild when it changes) and from readers.
//!
//! Limits: only literal paths are checked (`include!(concat!(env!("OUT_DIR"), …))` is a
//! build script's output, inside the crate's build); `#[path = …]` is not checked.

use std::path::{Component, Path, PathBuf};

use crate::lex;
use crate::{Violation, line_of, rel};

const MACROS: &[&str] = &["include!", "include_str!", "include_bytes!"];

/// Every violation in the crates under `root/plugins/`.
pub fn check(root: &Path) -> Vec<Violation> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root.join("plugins")) else { return out };
    let mut crates: Vec<PathBuf> = dirs.flatten().map(|e| e.path()).filter(|p| p.join("Cargo.toml").exists()).collect();
    crates.sort();
    for krate in crates {
        for file in crate::walk(&krate, &|p| p.extension().is_some_and(|e| e == "rs")) {
            let Ok(src) = std::fs::read_to_string(&file) else { continue };
            for (line, target) in outside_includes(&src, file.parent().unwrap_or(&krate), &krate) {
                out.push(Violation {
                    file: rel(root, &file),
                    line,
                    message: format!(
                        "includes {target:?}, outside its crate {}: depend on a crate instead",
                        rel(root, &krate)
                    ),
                });
            }
        }
    }
    out
}

/// (line, literal path) of each include of a literal path that leaves `krate` when resolved
/// against `dir` (the including file's directory).
pub fn outside_includes(src: &str, dir: &Path, krate: &Path) -> Vec<(usize, String)> {
    let masked = lex::mask(src);
    let mut out = Vec::new();
    for m in MACROS {
        let mut from = 0;
        while let Some(p) = masked.code[from..].find(m) {
            let at = from + p;
            from = at + m.len();
            let before = masked.code[..at].bytes().next_back();
            if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
                continue;
            }
            let open = lex::skip_ws(masked.code.as_bytes(), from);
            if masked.code.as_bytes().get(open) != Some(&b'(') {
                continue;
            }
            let Some(lit) = masked.string_after(open + 1) else { continue };
            if !inside(&normalize(&dir.join(&lit.value)), &normalize(krate)) {
                out.push((line_of(src, at), lit.value.clone()));
            }
        }
    }
    out.sort();
    out
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

fn inside(p: &Path, dir: &Path) -> bool {
    p.starts_with(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_includes_that_leave_the_crate_only() {
        let src = "include!(\"glue.rs\");\ninclude!(\"../../convert-ssk-csv/src/glue.rs\");\n\
                   // include!(\"../../x.rs\");\nconst B: &[u8] = include_bytes!(\"../data/a.bin\");\n\
                   include!(concat!(env!(\"OUT_DIR\"), \"/g.rs\"));\nmy_include!(\"../../y.rs\");\n";
        let found = outside_includes(src, Path::new("/r/plugins/a/src"), Path::new("/r/plugins/a"));
        assert_eq!(found, vec![(2, "../../convert-ssk-csv/src/glue.rs".to_string())]);
    }
}
