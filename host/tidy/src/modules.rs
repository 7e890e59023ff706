//! Module layering: within a crate, the top-level modules (`src/x.rs` or `src/x/mod.rs` is
//! module `x`) must not import each other in a cycle (ARCHITECTURE.md, Invariants: "no module
//! cycles"). A cycle is where a crate stops being changeable piece by piece: `App` living in
//! the submissions module made `api ↔ auth ↔ masters ↔ plugins` one knot.
//!
//! An edge `a → b` is any `crate::b` path in `a`'s code, including `use crate::{b, c::d}`
//! groups; comments, strings and `#[cfg(test)]` items are not code. `lib.rs`/`main.rs` are the
//! crate root (they assemble modules; edges from them do not count). Limits: a path through a
//! re-export (`crate::x` re-exporting `y`) counts as an edge to `x`, and `super::` paths
//! inside nested modules are not followed (they stay within one top-level module anyway).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::lex::{self, Masked};
use crate::{Violation, line_of, rel};

/// One module's use of another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// Where the first such use is.
    pub file: String,
    pub line: usize,
}

/// The module a source file belongs to, if it is a top-level module file of a `src/` dir.
fn module_of(src_dir: &Path, path: &Path) -> Option<String> {
    let r = path.strip_prefix(src_dir).ok()?;
    let first = r.components().next()?.as_os_str().to_string_lossy().into_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib" && name != "main" && name != "bin").then_some(name)
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn ident_at(code: &[u8], pos: usize) -> String {
    let pos = lex::skip_ws(code, pos);
    code[pos..].iter().take_while(|&&b| is_ident(b)).map(|&b| b as char).collect()
}

/// The modules `m`'s code names after `crate::`, with the offset of each first use.
pub fn uses(m: &Masked) -> BTreeMap<String, usize> {
    let code = m.code.as_bytes();
    let tests = lex::cfg_test_spans(&m.code);
    let mut out = BTreeMap::new();
    let mut from = 0;
    while let Some(p) = m.code[from..].find("crate::") {
        let pos = from + p;
        from = pos + 1;
        if (pos > 0 && (is_ident(code[pos - 1]) || code[pos - 1] == b'$'))
            || tests.iter().any(|&(a, b)| a <= pos && pos < b)
        {
            continue; // `tenken_crate::…`, `$crate::…`, or test code
        }
        let after = pos + "crate::".len();
        let at = lex::skip_ws(code, after);
        if code.get(at) == Some(&b'{') {
            let Some(close) = lex::matching(code, at) else { continue };
            for (a, _) in lex::split_top(code, at + 1, close, b",") {
                let name = ident_at(code, a);
                if !name.is_empty() && name != "self" {
                    out.entry(name).or_insert(pos);
                }
            }
        } else {
            let name = ident_at(code, at);
            if !name.is_empty() {
                out.entry(name).or_insert(pos);
            }
        }
    }
    out
}

/// Every edge between top-level modules of the crate whose sources are under `src_dir`.
pub fn edges(root: &Path, src_dir: &Path, files: &[std::path::PathBuf]) -> Vec<Edge> {
    let modules: BTreeSet<String> = files.iter().filter_map(|p| module_of(src_dir, p)).collect();
    let mut out: BTreeMap<(String, String), Edge> = BTreeMap::new();
    for p in files {
        let Some(from) = module_of(src_dir, p) else { continue };
        let Ok(src) = std::fs::read_to_string(p) else { continue };
        let m = lex::mask(&src);
        for (to, pos) in uses(&m) {
            if to != from && modules.contains(&to) {
                out.entry((from.clone(), to.clone())).or_insert(Edge {
                    from: from.clone(),
                    to,
                    file: rel(root, p),
                    line: line_of(&m.src, pos),
                });
            }
        }
    }
    out.into_values().collect()
}

/// The strongly connected components with more than one module (Tarjan's algorithm).
pub fn cycles(edges: &[Edge]) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&str> = edges.iter().flat_map(|e| [e.from.as_str(), e.to.as_str()]).collect();
    let index_of: BTreeMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let names: Vec<&str> = nodes.iter().copied().collect();
    let mut adj = vec![Vec::new(); names.len()];
    for e in edges {
        adj[index_of[e.from.as_str()]].push(index_of[e.to.as_str()]);
    }
    struct T<'a> {
        adj: &'a [Vec<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(t: &mut T, v: usize) {
        t.index[v] = Some(t.next);
        t.low[v] = t.next;
        t.next += 1;
        t.stack.push(v);
        t.on[v] = true;
        for i in 0..t.adj[v].len() {
            let w = t.adj[v][i];
            match t.index[w] {
                None => {
                    visit(t, w);
                    t.low[v] = t.low[v].min(t.low[w]);
                }
                Some(iw) if t.on[w] => t.low[v] = t.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(t.low[v]) == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on[w] = false;
                scc.push(w);
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                t.out.push(scc);
            }
        }
    }
    let n = names.len();
    let mut t = T {
        adj: &adj,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..n {
        if t.index[v].is_none() {
            visit(&mut t, v);
        }
    }
    let mut out: Vec<Vec<String>> = t
        .out
        .into_iter()
        .map(|scc| {
            let mut s: Vec<String> = scc.into_iter().map(|i| names[i].to_owned()).collect();
            s.sort();
            s
        })
        .collect();
    out.sort();
    out
}

/// One violation per cycle, naming its modules and the uses that close it.
pub fn violations(edges: &[Edge]) -> Vec<Violation> {
    cycles(edges)
        .into_iter()
        .map(|scc| {
            let inside: Vec<&Edge> = edges.iter().filter(|e| scc.contains(&e.from) && scc.contains(&e.to)).collect();
            let first = inside[0];
            Violation {
                file: first.file.clone(),
                line: first.line,
                message: format!(
                    "modules {} import each other in a cycle: {}; move what both need into a module of its own",
                    scc.join(", "),
                    inside
                        .iter()
                        .map(|e| format!("{} → {} ({}:{})", e.from, e.to, e.file, e.line))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        })
        .collect()
}

/// Every crate's module graph under `host/` and `plugins/`: (crate dir, edges).
pub fn all_edges(root: &Path) -> Vec<(String, Vec<Edge>)> {
    let mut out = Vec::new();
    for (dir, paths) in crate::testfns::crates(root) {
        let src = dir.join("src");
        let files: Vec<_> = paths.into_iter().filter(|p| p.starts_with(&src)).collect();
        if !files.is_empty() {
            out.push((rel(root, &dir), edges(root, &src, &files)));
        }
    }
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    fn edge(from: &str, to: &str) -> Edge {
        Edge { from: from.into(), to: to.into(), file: format!("src/{from}.rs"), line: 1 }
    }

    #[test]
    fn uses_reads_paths_and_groups_but_not_comments_strings_or_tests() {
        let m = lex::mask(
            "use crate::app::App;\nuse crate::{error::ApiError, auth, self};\n// crate::comment\nlet s = \"crate::string\";\n\
             fn f() { tenken_crate::x(); crate::clock::now(); }\n#[cfg(test)]\nmod tests { use crate::only_tests; }\n",
        );
        let got: Vec<String> = uses(&m).into_keys().collect();
        assert_eq!(got, vec!["app", "auth", "clock", "error"]);
    }

    #[test]
    fn cycles_are_found_and_a_layered_graph_passes() {
        let layered = [edge("routes", "app"), edge("app", "work"), edge("work", "registry"), edge("routes", "work")];
        assert!(cycles(&layered).is_empty());
        let knot = [
            edge("api", "auth"),
            edge("auth", "api"),
            edge("masters", "api"),
            edge("x", "y"),
            edge("y", "z"),
            edge("z", "x"),
        ];
        assert_eq!(
            cycles(&knot),
            vec![vec!["api".to_string(), "auth".to_string()], vec!["x".into(), "y".into(), "z".into()]]
        );
        let v = violations(&knot);
        assert_eq!(v.len(), 2);
        assert!(v[0].message.contains("api → auth") && v[0].message.contains("auth → api"), "{}", v[0].message);
    }
}
