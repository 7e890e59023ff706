//! The one way an async handler runs blocking work (store calls, plugin loads, checks): on
//! tokio's blocking pool, never on a runtime thread.
//!
//! Why it matters: the store's reads wait for a pooled SQLite connection and its writes for
//! the group commit; on a runtime thread that wait stalls every request scheduled there
//! (and under load all of them). The test below keeps the handlers honest.

use crate::error::ApiError;

/// Runs `f` on the blocking pool and returns its result. `f` may fail with an [`ApiError`]
/// or anything that converts into one (a `StoreError` becomes its HTTP answer); a panic in
/// `f` is a 500, logged.
pub async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(Into::into),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// A source scan (tidy-style) for store calls made directly in `async fn` bodies.
#[cfg(test)]
mod scan {
    /// Method calls that read or write the store: `store.x(…)` (except `clone`), and the
    /// registry methods that load from it (plugin bytes, master versions, converters).
    const REGISTRY_BLOCKING: &[&str] = &["reload", "converter", "plugin", "master_set", "checker", "checker_with"];

    fn ident(c: u8) -> bool {
        c.is_ascii_alphanumeric() || c == b'_'
    }

    /// `src` with comments and the contents of string and char literals blanked (same length,
    /// newlines kept), so that braces and words inside them cannot confuse the scan.
    pub fn code_only(src: &str) -> Vec<u8> {
        let b = src.as_bytes();
        let mut out = b.to_vec();
        let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
            for c in &mut out[from..to.min(b.len())] {
                if *c != b'\n' {
                    *c = b' ';
                }
            }
        };
        let mut i = 0;
        while i < b.len() {
            let prev_ident = i > 0 && ident(b[i - 1]);
            match b[i] {
                b'/' if b.get(i + 1) == Some(&b'/') => {
                    let end = b[i..].iter().position(|&c| c == b'\n').map_or(b.len(), |p| i + p);
                    blank(&mut out, i, end);
                    i = end;
                }
                b'/' if b.get(i + 1) == Some(&b'*') => {
                    let end = src[i + 2..].find("*/").map_or(b.len(), |p| i + 2 + p + 2);
                    blank(&mut out, i, end);
                    i = end;
                }
                // Raw strings r"…", r#"…"#, br"…".
                b'r' if (!prev_ident || (b[i - 1] == b'b' && (i < 2 || !ident(b[i - 2]))))
                    && matches!(b.get(i + 1), Some(b'"' | b'#')) =>
                {
                    let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                    if b.get(i + 1 + hashes) != Some(&b'"') {
                        i += 1;
                        continue;
                    }
                    let close = format!("\"{}", "#".repeat(hashes));
                    let start = i + 2 + hashes;
                    let end = src[start..].find(&close).map_or(b.len(), |p| start + p + close.len());
                    blank(&mut out, i, end);
                    i = end;
                }
                b'"' => {
                    let mut j = i + 1;
                    while j < b.len() && b[j] != b'"' {
                        j += if b[j] == b'\\' { 2 } else { 1 };
                    }
                    blank(&mut out, i, j + 1);
                    i = j + 1;
                }
                b'\'' => {
                    // A char literal ('x', '\n', '{', 'あ') or else a lifetime ('static).
                    let len = if b.get(i + 1) == Some(&b'\\') {
                        b[i + 2..].iter().position(|&c| c == b'\'').map(|p| p + 3)
                    } else {
                        src.get(i + 1..)
                            .and_then(|s| s.chars().next())
                            .map(char::len_utf8)
                            .filter(|l| b.get(i + 1 + l) == Some(&b'\''))
                            .map(|l| l + 2)
                    };
                    match len {
                        Some(l) => {
                            blank(&mut out, i, i + l);
                            i += l;
                        }
                        None => i += 1,
                    }
                }
                _ => i += 1,
            }
        }
        out
    }

    fn matching(code: &[u8], open: usize) -> usize {
        let (o, c) = (code[open], if code[open] == b'{' { b'}' } else { b')' });
        let mut depth = 0usize;
        for (k, &ch) in code.iter().enumerate().skip(open) {
            if ch == o {
                depth += 1;
            } else if ch == c {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
        }
        code.len()
    }

    fn word_at(code: &[u8], at: usize, word: &str) -> bool {
        code[at..].starts_with(word.as_bytes()) && (at == 0 || !ident(code[at - 1]))
    }

    fn ident_after(code: &[u8], at: usize) -> &str {
        let end = code[at..].iter().position(|&c| !ident(c)).map_or(code.len(), |p| at + p);
        std::str::from_utf8(&code[at..end]).unwrap_or("")
    }

    /// At `receiver` (a whole word) followed by `.method` (rustfmt may break the line
    /// before the dot): the method's name and whether a call's `(` follows.
    fn method_after<'c>(code: &'c [u8], at: usize, receiver: &str) -> Option<(&'c str, bool)> {
        if !code[at..].starts_with(receiver.as_bytes()) || (at > 0 && ident(code[at - 1])) {
            return None;
        }
        let skip = |k: usize| k + code[k..].iter().take_while(|c| c.is_ascii_whitespace()).count();
        let dot = skip(at + receiver.len());
        if code.get(dot) != Some(&b'.') {
            return None;
        }
        let m_at = skip(dot + 1);
        let m = ident_after(code, m_at);
        (!m.is_empty()).then(|| (m, code.get(skip(m_at + m.len())) == Some(&b'(')))
    }

    pub struct Func {
        pub name: String,
        pub is_async: bool,
        /// Byte range of the body, braces included.
        pub body: std::ops::Range<usize>,
    }

    /// Every `fn` with a body.
    pub fn functions(code: &[u8]) -> Vec<Func> {
        let mut out = Vec::new();
        for at in 0..code.len() {
            if !word_at(code, at, "fn ") {
                continue;
            }
            let name_at = at + 3 + code[at + 3..].iter().take_while(|c| c.is_ascii_whitespace()).count();
            let name = ident_after(code, name_at).to_owned();
            let before = std::str::from_utf8(&code[..at]).unwrap_or("").trim_end();
            let is_async = before.ends_with("async") && !before.ends_with("_async");
            // The body starts after the parameter list, whose patterns may hold braces
            // (`Staff { payer, who }: Staff`).
            let Some(params) = code[name_at..].iter().position(|&c| c == b'(').map(|p| name_at + p) else { continue };
            let after = matching(code, params);
            let Some(open) = code[after..].iter().position(|&c| c == b'{' || c == b';').map(|p| after + p) else {
                continue;
            };
            if code[open] == b';' {
                continue;
            }
            out.push(Func { name, is_async, body: open..matching(code, open) + 1 });
        }
        out
    }

    /// Positions in `range` of calls that touch the store: `store.x(` (not `clone`), the
    /// loading registry methods, and free calls of the sync functions in `touching`.
    pub fn store_calls(code: &[u8], range: std::ops::Range<usize>, touching: &[String]) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        for at in range {
            if let Some((m, open)) = method_after(code, at, "store") {
                if m != "clone" && open {
                    out.push((at, format!("store.{m}")));
                }
            } else if let Some((m, open)) = method_after(code, at, "registry") {
                if REGISTRY_BLOCKING.contains(&m) && open {
                    out.push((at, format!("registry.{m}")));
                }
            } else if at > 0 && code[at - 1] != b'.' && !ident(code[at - 1]) {
                let w = ident_after(code, at);
                let defined_here = std::str::from_utf8(&code[..at]).unwrap_or("").trim_end().ends_with("fn");
                if touching.iter().any(|t| t == w) && code.get(at + w.len()) == Some(&b'(') && !defined_here {
                    out.push((at, format!("{w}(…) (reaches the store)")));
                }
            }
        }
        out
    }

    /// Byte ranges of the arguments of `blocking(…)` / `spawn_blocking(…)` calls.
    pub fn blocking_spans(code: &[u8], range: std::ops::Range<usize>) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        for at in range {
            let open = if word_at(code, at, "blocking(") {
                at + 8
            } else if word_at(code, at, "spawn_blocking(") {
                at + 14
            } else if word_at(code, at, "jobs.submit(") {
                // A job's work runs on its payer's job runner thread, never on the runtime.
                at + 11
            } else {
                continue;
            };
            out.push(open..matching(code, open));
        }
        out
    }

    /// "file: async fn name calls X outside blocking(…)" for every violation in `files`.
    pub fn violations(files: &[(&str, &str)]) -> Vec<String> {
        let parsed: Vec<(&str, Vec<u8>, Vec<Func>)> = files
            .iter()
            .map(|(name, src)| {
                let code = code_only(src);
                let fns = functions(&code);
                (*name, code, fns)
            })
            .collect();
        // The sync functions that reach the store, directly or through each other.
        let mut touching: Vec<String> = Vec::new();
        loop {
            let before = touching.len();
            for (_, code, fns) in &parsed {
                for f in fns.iter().filter(|f| !f.is_async) {
                    if !touching.contains(&f.name) && !store_calls(code, f.body.clone(), &touching).is_empty() {
                        touching.push(f.name.clone());
                    }
                }
            }
            if touching.len() == before {
                break;
            }
        }
        let mut out = Vec::new();
        for (name, code, fns) in &parsed {
            for f in fns.iter().filter(|f| f.is_async) {
                let spans = blocking_spans(code, f.body.clone());
                for (at, what) in store_calls(code, f.body.clone(), &touching) {
                    if !spans.iter().any(|s| s.contains(&at)) {
                        let line = code[..at].iter().filter(|&&c| c == b'\n').count() + 1;
                        out.push(format!("{name}:{line}: async fn {} calls {what} outside blocking(…)", f.name));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::scan;

    /// The scan finds what it must (so the test below can fail), and nothing in strings,
    /// comments, `store.clone()` or blocking closures.
    #[test]
    fn the_scan_finds_direct_and_indirect_store_calls_and_nothing_else() {
        let src = r##"
            fn lookup(app: &App) -> Result<V, E> { app.store.get(1) }
            fn pure(x: u32) -> u32 { x + 1 }
            async fn good(app: &App) -> R {
                let store = app.store.clone();
                // store.get(1) in a comment
                let m = "store.get(1) {";
                let c = '{';
                let r = r#"registry.reload("#;
                blocking(move || { store.get(1)?; lookup(&app) }).await
            }
            async fn direct(app: &App) -> R { app.store.get(2) }
            async fn indirect(app: &App) -> R { let v = lookup(&app)?; pure(3); Ok(v) }
            async fn loads<'a>(app: &'a App) -> R { app.work.registry.reload(payer, cause) }
        "##;
        let v = scan::violations(&[("x.rs", src)]);
        assert_eq!(v.len(), 3, "{v:#?}");
        assert!(v[0].contains("async fn direct calls store.get"), "{v:#?}");
        assert!(v[1].contains("async fn indirect calls lookup("), "{v:#?}");
        assert!(v[2].contains("async fn loads calls registry.reload"), "{v:#?}");
    }

    /// Every store call of the HTTP handlers runs through `blocking`.
    #[test]
    fn handlers_call_the_store_only_inside_blocking() {
        let files = [
            ("host/server/src/submissions.rs", include_str!("submissions.rs")),
            ("host/server/src/access.rs", include_str!("access.rs")),
            ("host/server/src/auth.rs", include_str!("auth.rs")),
            ("host/server/src/extract.rs", include_str!("extract.rs")),
            ("host/server/src/masters.rs", include_str!("masters.rs")),
            ("host/server/src/plugins.rs", include_str!("plugins.rs")),
        ];
        // The scan saw the handlers (a scan that finds nothing proves nothing).
        for (name, src) in files.iter().filter(|(n, _)| !n.ends_with("auth.rs") && !n.ends_with("extract.rs")) {
            let code = scan::code_only(src);
            let fns = scan::functions(&code);
            assert!(fns.iter().filter(|f| f.is_async).count() >= 5, "{name}: too few async fns found");
            let spans: usize = fns.iter().map(|f| scan::blocking_spans(&code, f.body.clone()).len()).sum();
            assert!(spans >= 3, "{name}: too few blocking(…) calls found");
        }
        let v = scan::violations(&files);
        assert!(
            v.is_empty(),
            "store calls on a runtime thread (wrap them in crate::blocking::blocking):\n{}",
            v.join("\n")
        );
    }
}
