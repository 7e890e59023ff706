//! The axum router and the OpenAPI document must list the same (method, path)s: a route
//! missing from `/v1/openapi.json` is undocumented, a documented one nobody serves is a lie.
//!
//! Both sides are read textually from `host/server/src/**/*.rs` (not only `api.rs` and
//! `openapi.rs`: the router may be split over several files):
//!
//! - Router: every `.route("PATH", METHODS)` and `.route_service("PATH", _)` (any method).
//!   `METHODS` is read at its top level: `get(a)`, `post(a).get(b)`, `axum::routing::put(a)`,
//!   `get_service(s)`, `any(a)`, `on(MethodFilter::PUT, a)`. Prefixes of `.nest("/p", X)` are
//!   applied to the routes written inside `X` and, when `X` calls a function of the server
//!   (`crate::plugins::routes()`, `routes()`), to the routes of that function; `.merge(X)`
//!   mounts the called function's routes where the merge is (so a merge inside a nested
//!   router gets the nest's prefix). A function call is resolved by name, narrowed by its
//!   module qualifier (`plugins::routes` → `plugins.rs` or `plugins/mod.rs`) or, unqualified,
//!   to the same file when it defines one. A function nobody nests or merges is a root.
//!   Limits: a path or prefix that is not a string literal is reported as unreadable rather
//!   than guessed; a router built in a `let` and nested by variable is not followed (its
//!   routes are taken as mounted at the root).
//! - OpenAPI: the route table's `(HttpMethod::Get, "PATH", …)` entries, and
//!   `#[utoipa::path(get, path = "PATH")]` attributes should the document move to those.
//!
//! Code under `#[cfg(test)]` and files named `tests.rs` or under `tests/` are ignored: a
//! test router is not the API. Paths are compared after normalising parameter syntax
//! (axum 0.7 `:id` / `*rest`, axum 0.8 `{id}` / `{*rest}`, OpenAPI `{id}` all become `{id}`);
//! parameter names are kept, so `{id}` against `{digest}` shows as a difference.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::lex::{self, Masked};
use crate::{Violation, line_of, rel};

/// One (method, path) as found on one side.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// Upper case; `ANY` for a route that serves every method.
    pub method: String,
    /// Normalised (see [`normalize`]).
    pub path: String,
    pub file: String,
    pub line: usize,
}

/// A source file of the server, lexed.
pub struct Source {
    pub rel: String,
    pub m: Masked,
    excluded: Vec<(usize, usize)>,
    fns: Vec<lex::FnItem>,
}

impl Source {
    pub fn new(rel: &str, text: &str) -> Source {
        let m = lex::mask(text);
        let excluded = lex::cfg_test_spans(&m.code);
        let fns = lex::fn_items(&m.code);
        Source { rel: rel.to_owned(), m, excluded, fns }
    }

    fn excluded(&self, pos: usize) -> bool {
        self.excluded.iter().any(|&(a, b)| a <= pos && pos < b)
    }

    fn line(&self, pos: usize) -> usize {
        line_of(&self.m.src, pos)
    }

    /// Index of the innermost function whose body holds `pos`.
    fn enclosing(&self, pos: usize) -> Option<usize> {
        self.fns
            .iter()
            .enumerate()
            .filter(|(_, f)| f.open < pos && pos < f.close)
            .max_by_key(|(_, f)| f.open)
            .map(|(i, _)| i)
    }

    /// The module name a qualifier would use for this file: `plugins` for `src/plugins.rs`
    /// and `src/plugins/mod.rs`.
    fn module(&self) -> String {
        let p = Path::new(&self.rel);
        let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if stem == "mod" {
            p.parent().and_then(|d| d.file_name()).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
        } else {
            stem
        }
    }
}

/// `{id}` for `:id`, `*rest`, `{*rest}`; everything else as written.
pub fn normalize(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if let Some(name) = seg.strip_prefix(':').or_else(|| seg.strip_prefix('*')) {
                format!("{{{name}}}")
            } else if let Some(name) = seg.strip_prefix("{*").and_then(|s| s.strip_suffix('}')) {
                format!("{{{name}}}")
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Joins a nest prefix and a path as axum does (`/p` + `/` is `/p`).
fn join(prefix: &str, path: &str) -> String {
    if prefix.is_empty() {
        return path.to_owned();
    }
    if path == "/" || path.is_empty() {
        return prefix.to_owned();
    }
    format!("{}{}", prefix.trim_end_matches('/'), path)
}

const METHODS: &[&str] = &["get", "post", "put", "delete", "patch", "head", "options", "trace", "connect"];

/// The methods of a method-router expression `code[from..to]`, read at its top level.
fn methods_of(m: &Masked, from: usize, to: usize) -> Vec<String> {
    let code = m.code.as_bytes();
    let mut out = Vec::new();
    for c in lex::calls(&m.code, from, to) {
        if c.macro_ || depth(code, from, c.pos) != 0 {
            continue;
        }
        let name = c.name.strip_suffix("_service").unwrap_or(&c.name);
        if METHODS.contains(&name) {
            out.push(name.to_ascii_uppercase());
        } else if name == "any" {
            out.push("ANY".to_owned());
        } else if name == "on" {
            let Some(close) = lex::matching(code, c.open) else { continue };
            let args = &m.code[c.open..close];
            let mut rest = args;
            while let Some(p) = rest.find("MethodFilter::") {
                rest = &rest[p + "MethodFilter::".len()..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                out.push(name.to_ascii_uppercase());
            }
        }
    }
    out
}

/// Bracket depth at `pos`, counted from `from`.
fn depth(code: &[u8], from: usize, pos: usize) -> i32 {
    code[from..pos].iter().fold(0, |d, &c| match c {
        b'(' | b'[' | b'{' => d + 1,
        b')' | b']' | b'}' => d - 1,
        _ => d,
    })
}

/// A `.nest(…)` or `.merge(…)`: where its router argument is and the prefix it adds.
struct Mount {
    prefix: String,
    from: usize,
    to: usize,
}

struct RawRoute {
    methods: Vec<String>,
    path: String,
    pos: usize,
}

struct Parsed {
    routes: Vec<RawRoute>,
    mounts: Vec<Mount>,
}

fn parse_router_file(s: &Source, problems: &mut Vec<Violation>) -> Parsed {
    let code = s.m.code.as_bytes();
    let mut p = Parsed { routes: Vec::new(), mounts: Vec::new() };
    for c in lex::calls(&s.m.code, 0, code.len()) {
        if !c.method || c.macro_ || s.excluded(c.pos) {
            continue;
        }
        let kind = c.name.as_str();
        if !matches!(kind, "route" | "route_service" | "nest" | "nest_service" | "merge") {
            continue;
        }
        let Some(close) = lex::matching(code, c.open) else { continue };
        let args = lex::split_top(code, c.open + 1, close, b",");
        let unreadable = |what: &str| Violation {
            file: s.rel.clone(),
            line: s.line(c.pos),
            message: format!(
                "`.{kind}(…)` whose {what} tidy cannot read; write it as a string literal, or teach \
                 host/tidy/src/routes.rs this shape"
            ),
        };
        if kind == "merge" {
            p.mounts.push(Mount { prefix: String::new(), from: c.open + 1, to: close });
            continue;
        }
        let lit = s.m.string_after(c.open + 1).filter(|l| args.first().is_some_and(|a| l.start <= a.1));
        let Some(lit) = lit else {
            problems.push(unreadable("path is not a string literal"));
            continue;
        };
        if args.len() < 2 {
            problems.push(unreadable("second argument is missing"));
            continue;
        }
        let (from, to) = args[1];
        match kind {
            "nest" | "nest_service" => p.mounts.push(Mount { prefix: normalize(&lit.value), from, to }),
            _ => {
                let methods = if kind == "route_service" { vec!["ANY".to_owned()] } else { methods_of(&s.m, from, to) };
                if methods.is_empty() {
                    problems.push(unreadable(&format!("method router (for {:?})", lit.value)));
                    continue;
                }
                p.routes.push(RawRoute { methods, path: normalize(&lit.value), pos: c.pos });
            }
        }
    }
    p
}

/// The router's routes, with nest prefixes applied, plus what could not be read.
pub fn router_routes(sources: &[Source]) -> (Vec<Route>, Vec<Violation>) {
    let mut problems = Vec::new();
    let parsed: Vec<Parsed> = sources.iter().map(|s| parse_router_file(s, &mut problems)).collect();

    // Server functions called inside nest/merge arguments: fn (file, index) → the calls'
    // (file, pos); a set, since a merge inside a nest sees the same call twice.
    let mut refs: BTreeMap<(usize, usize), BTreeSet<(usize, usize)>> = BTreeMap::new();
    for (fi, (s, p)) in sources.iter().zip(&parsed).enumerate() {
        for mnt in &p.mounts {
            for c in lex::calls(&s.m.code, mnt.from, mnt.to) {
                if c.method || c.macro_ {
                    continue;
                }
                for target in resolve(sources, fi, &c) {
                    refs.entry(target).or_default().insert((fi, c.pos));
                }
            }
        }
    }
    // Prefixes of the nests around `pos` in file `fi`, outermost first.
    let inner = |fi: usize, pos: usize| -> String {
        let mut ms: Vec<&Mount> = parsed[fi].mounts.iter().filter(|m| m.from <= pos && pos < m.to).collect();
        ms.sort_by_key(|m| m.from);
        ms.iter().fold(String::new(), |acc, m| join(&acc, &m.prefix))
    };
    fn mounts_of(
        key: Option<(usize, usize)>,
        sources: &[Source],
        refs: &BTreeMap<(usize, usize), BTreeSet<(usize, usize)>>,
        inner: &dyn Fn(usize, usize) -> String,
        visiting: &mut Vec<(usize, usize)>,
    ) -> Vec<String> {
        let Some(key) = key else { return vec![String::new()] };
        let Some(callers) = refs.get(&key) else { return vec![String::new()] };
        visiting.push(key);
        let mut out = Vec::new();
        for &(fi, pos) in callers {
            let caller = sources[fi].enclosing(pos).map(|i| (fi, i));
            if caller.is_some_and(|c| visiting.contains(&c)) {
                continue;
            }
            for m in mounts_of(caller, sources, refs, inner, visiting) {
                out.push(join(&m, &inner(fi, pos)));
            }
        }
        visiting.pop();
        out
    }

    let mut routes = Vec::new();
    for (fi, (s, p)) in sources.iter().zip(&parsed).enumerate() {
        for r in &p.routes {
            let key = s.enclosing(r.pos).map(|i| (fi, i));
            for m in mounts_of(key, sources, &refs, &inner, &mut Vec::new()) {
                let path = join(&join(&m, &inner(fi, r.pos)), &r.path);
                for method in &r.methods {
                    routes.push(Route {
                        method: method.clone(),
                        path: path.clone(),
                        file: s.rel.clone(),
                        line: s.line(r.pos),
                    });
                }
            }
        }
    }
    (routes, problems)
}

/// The functions a call inside a nest/merge may name.
fn resolve(sources: &[Source], from_file: usize, c: &lex::Call) -> Vec<(usize, usize)> {
    let mut cands: Vec<(usize, usize)> = Vec::new();
    for (fi, s) in sources.iter().enumerate() {
        for (i, f) in s.fns.iter().enumerate() {
            if f.name == c.name && !s.excluded(f.pos) {
                cands.push((fi, i));
            }
        }
    }
    match c.path.last().map(String::as_str) {
        Some("crate" | "super") | None | Some("self") => {
            if c.path.len() <= 1 && cands.iter().any(|&(fi, _)| fi == from_file) {
                cands.retain(|&(fi, _)| fi == from_file);
            }
        }
        Some(module) => cands.retain(|&(fi, _)| sources[fi].module() == module),
    }
    cands
}

/// The OpenAPI document's routes, plus what could not be read.
pub fn openapi_routes(sources: &[Source]) -> (Vec<Route>, Vec<Violation>) {
    let mut routes = Vec::new();
    let mut problems = Vec::new();
    for s in sources {
        let code = s.m.code.as_bytes();
        // The route table: (HttpMethod::Get, "/path", …).
        let mut from = 0;
        while let Some(p) = s.m.code[from..].find("HttpMethod::") {
            let pos = from + p;
            from = pos + 1;
            if s.excluded(pos) {
                continue;
            }
            let name_at = pos + "HttpMethod::".len();
            let name: String =
                s.m.code[name_at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let after = lex::skip_ws(code, name_at + name.len());
            if code.get(after) != Some(&b',') {
                continue; // a use of HttpMethod elsewhere (an import, a match)
            }
            match s.m.string_after(after + 1) {
                Some(l) => routes.push(Route {
                    method: name.to_ascii_uppercase(),
                    path: normalize(&l.value),
                    file: s.rel.clone(),
                    line: s.line(pos),
                }),
                None => problems.push(Violation {
                    file: s.rel.clone(),
                    line: s.line(pos),
                    message: "an OpenAPI route entry whose path is not a string literal".into(),
                }),
            }
        }
        // utoipa attributes: #[utoipa::path(get, path = "/path", …)].
        let mut from = 0;
        while let Some(p) = s.m.code[from..].find("utoipa::path") {
            let pos = from + p;
            from = pos + 1;
            let open = lex::skip_ws(code, pos + "utoipa::path".len());
            if s.excluded(pos) || code.get(open) != Some(&b'(') {
                continue;
            }
            let Some(close) = lex::matching(code, open) else { continue };
            let mut methods = Vec::new();
            let mut path = None;
            for (a, b) in lex::split_top(code, open + 1, close, b",") {
                let piece = s.m.code[a..b].trim();
                if METHODS.contains(&piece) {
                    methods.push(piece.to_ascii_uppercase());
                } else if let Some(rest) = piece.strip_prefix("path")
                    && rest.trim_start().starts_with('=')
                {
                    let eq = a + s.m.code[a..b].find('=').unwrap_or(0);
                    path = s.m.string_after(eq + 1).map(|l| l.value.clone());
                }
            }
            let Some(path) = path else {
                problems.push(Violation {
                    file: s.rel.clone(),
                    line: s.line(pos),
                    message: "a #[utoipa::path] without a string literal `path = …`".into(),
                });
                continue;
            };
            for m in methods {
                routes.push(Route { method: m, path: normalize(&path), file: s.rel.clone(), line: s.line(pos) });
            }
        }
    }
    (routes, problems)
}

/// Every route on one side only, and every (method, path) listed twice on one side.
pub fn differences(router: &[Route], openapi: &[Route]) -> Vec<Violation> {
    let mut out = Vec::new();
    let by_key = |rs: &[Route], side: &str, out: &mut Vec<Violation>| {
        let mut m: BTreeMap<(String, String), Route> = BTreeMap::new();
        for r in rs {
            let k = (r.method.clone(), r.path.clone());
            if let Some(first) = m.get(&k) {
                out.push(Violation {
                    file: r.file.clone(),
                    line: r.line,
                    message: format!(
                        "{} {} is listed twice in the {side} (first at {}:{})",
                        r.method, r.path, first.file, first.line
                    ),
                });
            } else {
                m.insert(k, r.clone());
            }
        }
        m
    };
    let r = by_key(router, "router", &mut out);
    let o = by_key(openapi, "OpenAPI route table", &mut out);
    let any_paths: BTreeSet<&str> = r.keys().filter(|(m, _)| m == "ANY").map(|(_, p)| p.as_str()).collect();
    let documented_paths: BTreeSet<&str> = o.keys().map(|(_, p)| p.as_str()).collect();
    for ((method, path), route) in &r {
        let documented = if method == "ANY" {
            documented_paths.contains(path.as_str())
        } else {
            o.contains_key(&(method.clone(), path.clone()))
        };
        if !documented {
            out.push(Violation {
                file: route.file.clone(),
                line: route.line,
                message: format!(
                    "{method} {path} is routed here but is not in the OpenAPI document (host/server/src/openapi.rs)"
                ),
            });
        }
    }
    for ((method, path), route) in &o {
        if !r.contains_key(&(method.clone(), path.clone())) && !any_paths.contains(path.as_str()) {
            out.push(Violation {
                file: route.file.clone(),
                line: route.line,
                message: format!("{method} {path} is in the OpenAPI document but no `.route(…)` serves it"),
            });
        }
    }
    out
}

/// Reads `host/server/src/**/*.rs` under `root`.
pub fn server_sources(root: &Path) -> Vec<Source> {
    let src = root.join("host/server/src");
    crate::files_with_ext(root, &["host/server/src"], "rs")
        .into_iter()
        .filter(|p| !lex::is_test_file(p.strip_prefix(&src).unwrap_or(p)))
        .filter_map(|p| Some(Source::new(&rel(root, &p), &std::fs::read_to_string(&p).ok()?)))
        .collect()
}

/// The whole check: what differs, plus anything tidy could not read (a parser that silently
/// found nothing would pass everything).
pub fn check(sources: &[Source]) -> Vec<Violation> {
    let (router, mut problems) = router_routes(sources);
    let (openapi, p2) = openapi_routes(sources);
    problems.extend(p2);
    if router.is_empty() {
        problems.push(Violation {
            file: "host/server/src".into(),
            line: 1,
            message: "found no `.route(\"…\", …)` calls: the router changed shape; update host/tidy/src/routes.rs"
                .into(),
        });
    }
    if openapi.is_empty() {
        problems.push(Violation {
            file: "host/server/src/openapi.rs".into(),
            line: 1,
            message: "found no OpenAPI routes (`(HttpMethod::…, \"/path\", …)` or `#[utoipa::path]`): the \
                      document changed shape; update host/tidy/src/routes.rs"
                .into(),
        });
    }
    problems.extend(differences(&router, &openapi));
    problems
}

#[cfg(test)]
mod unit {
    use super::*;

    fn keys(rs: &[Route]) -> Vec<String> {
        let mut v: Vec<String> = rs.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
        v.sort();
        v
    }

    #[test]
    fn routes_chains_merges_and_nests() {
        let api = Source::new(
            "host/server/src/api.rs",
            r#"
            pub fn router() -> Router {
                Router::new()
                    .route("/healthz", get(healthz))
                    .route("/v1/things", post(make).get(list)) // .route("/commented", get(x))
                    .route("/v1/things/:id", axum::routing::put(replace).delete(remove))
                    .route("/v1/f", on(MethodFilter::PATCH, f))
                    .merge(crate::plugins::routes())
                    .nest("/v2", Router::new().route("/", get(root)).merge(inner()))
                    .fallback(|| async { "no" })
            }
            fn inner() -> Router { Router::new().route("/inner/{*rest}", get(x)) }
            #[cfg(test)]
            mod tests { fn r() { Router::new().route("/test-only", get(t)); } }
            "#,
        );
        let plugins = Source::new(
            "host/server/src/plugins.rs",
            r#"pub fn routes() -> Router { Router::new().route("/v1/plugins/{digest}", get(show)) }
               pub fn other() -> Router { Router::new().nest("/n", super::masters::routes()) }"#,
        );
        let masters = Source::new(
            "host/server/src/masters.rs",
            r#"pub fn routes() -> Router { Router::new().route("/m", get(m)) }"#,
        );
        let (routes, problems) = router_routes(&[api, plugins, masters]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            keys(&routes),
            [
                "DELETE /v1/things/{id}",
                "GET /healthz",
                "GET /n/m",
                "GET /v1/plugins/{digest}",
                "GET /v1/things",
                "GET /v2",
                "GET /v2/inner/{rest}",
                "PATCH /v1/f",
                "POST /v1/things",
                "PUT /v1/things/{id}",
            ]
        );
        let healthz = routes.iter().find(|r| r.path == "/healthz").unwrap();
        assert_eq!((healthz.file.as_str(), healthz.line), ("host/server/src/api.rs", 4));
    }

    #[test]
    fn unreadable_routes_are_reported_not_skipped() {
        let s = Source::new(
            "host/server/src/api.rs",
            "fn r() { Router::new().route(PATH, get(x)).route(\"/a\", handler) }",
        );
        let (routes, problems) = router_routes(&[s]);
        assert!(routes.is_empty());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].message.contains("not a string literal"), "{}", problems[0]);
    }

    #[test]
    fn openapi_table_and_differences() {
        let doc = Source::new(
            "host/server/src/openapi.rs",
            r#"use utoipa::openapi::path::HttpMethod;
            const ROUTES: &[(HttpMethod, &str)] = &[
                (HttpMethod::Get, "/healthz", "Liveness."),
                (HttpMethod::Post, "/v1/things"),
                (HttpMethod::Post, "/v1/things"),
                (HttpMethod::Get, "/v1/things/{id}"),
            ];
            #[utoipa::path(put, path = "/v1/put")]
            fn p() {}"#,
        );
        let (openapi, problems) = openapi_routes(&[doc]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            keys(&openapi),
            ["GET /healthz", "GET /v1/things/{id}", "POST /v1/things", "POST /v1/things", "PUT /v1/put"]
        );
        let api = Source::new(
            "host/server/src/api.rs",
            r#"fn r() { R::new().route("/healthz", get(h)).route("/v1/things", post(a)).route("/v1/things/:id", get(b)).route("/v1/openapi.json", get(o)).route("/v1/put", put(p)) }"#,
        );
        let (router, _) = router_routes(&[api]);
        let d = differences(&router, &openapi);
        let msgs: Vec<String> = d.iter().map(|v| v.to_string()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:#?}");
        assert!(msgs[0].starts_with("host/server/src/openapi.rs:5: POST /v1/things is listed twice"), "{}", msgs[0]);
        assert!(
            msgs[1]
                .starts_with("host/server/src/api.rs:1: GET /v1/openapi.json is routed here but is not in the OpenAPI"),
            "{}",
            msgs[1]
        );
        let only_doc = differences(&[], &openapi[..1]);
        assert!(only_doc[0].message.contains("no `.route(…)` serves it"), "{only_doc:?}");
    }

    #[test]
    fn normalize_parameter_syntax() {
        assert_eq!(normalize("/a/:id/b/*rest"), "/a/{id}/b/{rest}");
        assert_eq!(normalize("/a/{id}/{*rest}"), "/a/{id}/{rest}");
        assert_eq!(join("/v2", "/"), "/v2");
        assert_eq!(join("/v2/", "/x"), "/v2/x");
    }
}
