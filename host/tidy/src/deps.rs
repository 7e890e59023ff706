//! Dependency boundaries: which crates may depend directly on wasmtime and on the HTTP stack
//! (ARCHITECTURE.md, Invariants). Read from every `Cargo.toml` under `host/` and `plugins/`
//! with the `toml` crate; transitive dependencies are the point of the boundary (everyone
//! reaches wasmtime through `tenken-runtime`), so only direct ones count.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{Violation, rel};

/// A boundary: only `allowed` crates may depend on any of `deps`.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub deps: &'static [&'static str],
    pub allowed: &'static [&'static str],
    pub why: &'static str,
}

/// The boundaries of ARCHITECTURE.md.
pub const RULES: &[Rule] = &[
    Rule {
        deps: &["wasmtime", "wasmtime-wasi"],
        allowed: &["tenken-runtime"],
        why: "only tenken-runtime imports wasmtime; everything else speaks tenken-model (ARCHITECTURE.md, Invariants)",
    },
    Rule {
        deps: &["axum", "hyper", "hyper-util", "tower-http"],
        allowed: &["tenken-server", "tenken"],
        why: "only tenken-server (and the tenken binary that serves it) knows HTTP (ARCHITECTURE.md, Invariants)",
    },
];

/// One direct dependency of a crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    /// The depending crate's package name.
    pub krate: String,
    /// Its manifest, relative to the root.
    pub manifest: String,
    /// The line declaring the dependency.
    pub line: usize,
    /// The real package name (after `package = "…"` renames, also through the workspace).
    pub package: String,
    /// `dependencies`, `dev-dependencies`, `build-dependencies` or `target.<cfg>.…`.
    pub table: String,
}

/// Every `Cargo.toml` under `host/` and `plugins/`.
pub fn manifests(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in ["host", "plugins"] {
        out.extend(crate::walk(&root.join(d), &|p| p.file_name().is_some_and(|n| n == "Cargo.toml")));
    }
    out
}

/// `[workspace.dependencies]` key → package name, for `{ workspace = true }` entries.
pub fn workspace_packages(root_manifest: &str) -> Result<BTreeMap<String, String>, String> {
    let t: toml::Table = root_manifest.parse().map_err(|e| format!("root Cargo.toml: {e}"))?;
    let mut out = BTreeMap::new();
    if let Some(deps) = t.get("workspace").and_then(|w| w.get("dependencies")).and_then(|d| d.as_table()) {
        for (k, v) in deps {
            out.insert(k.clone(), package_of(k, v));
        }
    }
    Ok(out)
}

fn package_of(key: &str, v: &toml::Value) -> String {
    v.get("package").and_then(|p| p.as_str()).unwrap_or(key).to_owned()
}

/// The direct dependencies a manifest declares, in every dependency table. A manifest without
/// `[package]` (a virtual workspace) declares none.
pub fn direct_deps(manifest_rel: &str, text: &str, workspace: &BTreeMap<String, String>) -> Result<Vec<Dep>, String> {
    let t: toml::Table = text.parse().map_err(|e| format!("{manifest_rel}: {e}"))?;
    let Some(krate) = t.get("package").and_then(|p| p.get("name")).and_then(|n| n.as_str()) else {
        return Ok(Vec::new());
    };
    let mut tables: Vec<(String, &toml::Table)> = Vec::new();
    for kind in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(d) = t.get(kind).and_then(|d| d.as_table()) {
            tables.push((kind.to_owned(), d));
        }
    }
    if let Some(targets) = t.get("target").and_then(|d| d.as_table()) {
        for (cfg, tt) in targets {
            for kind in ["dependencies", "dev-dependencies", "build-dependencies"] {
                if let Some(d) = tt.get(kind).and_then(|d| d.as_table()) {
                    tables.push((format!("target.{cfg}.{kind}"), d));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (table, deps) in tables {
        for (key, v) in deps {
            let inherited = v.get("workspace").and_then(|w| w.as_bool()) == Some(true);
            let package =
                if inherited { workspace.get(key).cloned().unwrap_or_else(|| key.clone()) } else { package_of(key, v) };
            out.push(Dep {
                krate: krate.to_owned(),
                manifest: manifest_rel.to_owned(),
                line: key_line(text, key),
                package,
                table: table.clone(),
            });
        }
    }
    out.sort_by_key(|d| d.line);
    Ok(out)
}

/// The line declaring dependency `key`: `key = …`, `key.workspace = …` or a
/// `[….dependencies.key]` header. Line 1 when not found (the message still names the file).
fn key_line(text: &str, key: &str) -> usize {
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_start();
        let quoted = format!("\"{key}\"");
        let rest = l.strip_prefix(key).or_else(|| l.strip_prefix(quoted.as_str()));
        if let Some(rest) = rest {
            let rest = rest.trim_start();
            if rest.starts_with('=') || rest.starts_with('.') {
                return i + 1;
            }
        }
        if l.starts_with('[') && (l.trim_end().ends_with(&format!(".{key}]"))) {
            return i + 1;
        }
    }
    1
}

/// Every dependency that breaks one of `rules`.
pub fn violations(deps: &[Dep], rules: &[Rule]) -> Vec<Violation> {
    let mut out = Vec::new();
    for d in deps {
        for r in rules {
            if r.deps.contains(&d.package.as_str()) && !r.allowed.contains(&d.krate.as_str()) {
                out.push(Violation {
                    file: d.manifest.clone(),
                    line: d.line,
                    message: format!(
                        "crate `{}` depends on `{}` ([{}]); only {} may: {}",
                        d.krate,
                        d.package,
                        d.table,
                        r.allowed.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", "),
                        r.why
                    ),
                });
            }
        }
    }
    out
}

/// Reads every manifest under `root` and returns the direct dependencies, or the manifests
/// that could not be read or parsed (themselves violations: tidy must see every crate).
pub fn all_deps(root: &Path) -> (Vec<Dep>, Vec<Violation>) {
    let mut errors = Vec::new();
    let workspace = match std::fs::read_to_string(root.join("Cargo.toml")).map_err(|e| e.to_string()) {
        Ok(text) => workspace_packages(&text).unwrap_or_else(|e| {
            errors.push(Violation { file: "Cargo.toml".into(), line: 1, message: e });
            BTreeMap::new()
        }),
        Err(e) => {
            errors.push(Violation { file: "Cargo.toml".into(), line: 1, message: e });
            BTreeMap::new()
        }
    };
    let mut deps = Vec::new();
    for m in manifests(root) {
        let r = rel(root, &m);
        match std::fs::read_to_string(&m).map_err(|e| e.to_string()).and_then(|t| direct_deps(&r, &t, &workspace)) {
            Ok(d) => deps.extend(d),
            Err(e) => errors.push(Violation { file: r, line: 1, message: format!("cannot read the manifest: {e}") }),
        }
    }
    (deps, errors)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn renames_targets_and_lines_are_seen() {
        let ws =
            workspace_packages("[workspace.dependencies]\nrt = { package = \"wasmtime\", version = \"1\" }\n").unwrap();
        let text = "[package]\nname = \"tenken-x\"\n\n[dependencies]\nserde = \"1\"\nrt = { workspace = true }\n\n\
                    [target.'cfg(unix)'.dev-dependencies]\nhttp = { package = \"hyper\", version = \"1\" }\n\n\
                    [build-dependencies.axum]\nversion = \"0.8\"\n";
        let deps = direct_deps("host/x/Cargo.toml", text, &ws).unwrap();
        let got: Vec<(&str, usize, &str)> =
            deps.iter().map(|d| (d.package.as_str(), d.line, d.table.as_str())).collect();
        assert_eq!(
            got,
            [
                ("serde", 5, "dependencies"),
                ("wasmtime", 6, "dependencies"),
                ("hyper", 9, "target.cfg(unix).dev-dependencies"),
                ("axum", 11, "build-dependencies"),
            ]
        );
        let v = violations(&deps, RULES);
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(
            v[0].to_string().starts_with("host/x/Cargo.toml:6: crate `tenken-x` depends on `wasmtime`"),
            "{}",
            v[0]
        );
    }

    #[test]
    fn allowed_crates_and_virtual_manifests_pass() {
        let text = "[package]\nname = \"tenken-runtime\"\n[dependencies]\nwasmtime = \"48\"\n";
        let deps = direct_deps("host/runtime/Cargo.toml", text, &BTreeMap::new()).unwrap();
        assert_eq!(deps.len(), 1);
        assert!(violations(&deps, RULES).is_empty());
        assert!(direct_deps("Cargo.toml", "[workspace]\nmembers = []\n", &BTreeMap::new()).unwrap().is_empty());
    }
}
