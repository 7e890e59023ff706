//! The tidy checks on this repository: one test per rule (the rules themselves, and their
//! limits, are documented in the modules of `tenken-tidy`).

use tenken_tidy::{Violation, deps, includes, links, modules, render, routes, testfns, workspace_root};

/// Violations that exist today and belong to another crate's owner to fix: (check, file, a
/// substring of the message). They are listed, not hidden: each test prints the ones it
/// tolerates, and an entry that no longer matches anything fails the test, so the list only
/// ever shrinks.
const KNOWN_VIOLATIONS: &[(&str, &str, &str)] = &[];

/// Fails on every violation not in [`KNOWN_VIOLATIONS`] and on every stale entry there.
fn enforce(check: &str, found: Vec<Violation>) {
    let known: Vec<&(&str, &str, &str)> = KNOWN_VIOLATIONS.iter().filter(|k| k.0 == check).collect();
    let matches = |k: &(&str, &str, &str), v: &Violation| v.file == k.1 && v.message.contains(k.2);
    let (tolerated, new): (Vec<Violation>, Vec<Violation>) =
        found.into_iter().partition(|v| known.iter().any(|k| matches(k, v)));
    let stale: Vec<String> = known
        .iter()
        .filter(|k| !tolerated.iter().any(|v| matches(k, v)))
        .map(|k| format!("  {} {:?}\n", k.1, k.2))
        .collect();
    if !tolerated.is_empty() {
        eprintln!("tidy {check}: {} known violation(s), to be fixed:\n{}", tolerated.len(), render(&tolerated));
    }
    assert!(
        new.is_empty() && stale.is_empty(),
        "tidy {check}: {} violation(s):\n{}{}",
        new.len(),
        render(&new),
        if stale.is_empty() {
            String::new()
        } else {
            format!(
                "KNOWN_VIOLATIONS entries that no longer occur (remove them from host/tidy/tests/tidy.rs):\n{}",
                stale.concat()
            )
        }
    );
}

#[test]
fn only_the_runtime_depends_on_wasmtime_and_only_the_server_on_http() {
    let root = workspace_root();
    let (all, unreadable) = deps::all_deps(&root);
    // The scan must have seen the crates the rules are about, or it proves nothing.
    for krate in ["tenken-runtime", "tenken-server", "tenken", "tenken-check", "tenken-guest"] {
        assert!(all.iter().any(|d| d.krate == krate), "no dependencies read for {krate}: {unreadable:?}");
    }
    assert!(all.iter().any(|d| d.krate == "tenken-runtime" && d.package == "wasmtime"));
    let mut found = unreadable;
    found.extend(deps::violations(&all, deps::RULES));
    enforce("deps", found);
}

#[test]
fn router_and_openapi_list_the_same_routes() {
    let sources = routes::server_sources(&workspace_root());
    let (router, _) = routes::router_routes(&sources);
    // Sanity: the parser sees the server's routes (all in routes.rs, the one place they are
    // assembled).
    assert!(router.len() >= 30, "the router parser found only {router:?}");
    assert!(router.iter().all(|r| r.file == "host/server/src/routes.rs"), "routes outside routes.rs: {router:?}");
    enforce("routes", routes::check(&sources));
}

#[test]
fn doc_links_point_at_files_and_headings_that_exist() {
    let root = workspace_root();
    assert!(links::doc_files(&root).len() >= 5, "the docs were not found under {}", root.display());
    enforce("links", links::check(&root));
}

#[test]
fn every_test_asserts_something_that_could_be_false() {
    let root = workspace_root();
    let crates = testfns::crates(&root);
    assert!(crates.len() >= 10, "only {} crates found under {}", crates.len(), root.display());
    enforce("testfns", testfns::check(&root));
}

#[test]
fn no_crate_has_a_module_cycle() {
    let all = modules::all_edges(&workspace_root());
    // The scan saw the server's modules and their uses, or it proves nothing.
    let server = all.iter().find(|(dir, _)| dir == "host/server").map(|(_, e)| e.clone()).unwrap_or_default();
    let from: std::collections::BTreeSet<&str> = server.iter().map(|e| e.from.as_str()).collect();
    assert!(from.len() >= 10 && server.iter().any(|e| e.from == "routes" && e.to == "app"), "{server:?}");
    enforce("modules", all.iter().flat_map(|(_, e)| modules::violations(e)).collect());
}

#[test]
fn no_plugin_includes_another_crates_files() {
    let root = workspace_root();
    // The scan must reach the guest crates, or it proves nothing.
    assert!(root.join("plugins/guest/src/lib.rs").exists(), "no plugins/ under {}", root.display());
    enforce("includes", includes::check(&root));
}
