//! A Rust lexer just good enough for tidy: it blanks comments and the contents of string and
//! char literals, keeping every byte offset, so that textual searches (`#[test]`, `.route(`,
//! `assert!`) never match inside them and bracket matching is not fooled by `"("`.
//!
//! Handled: line and (nested) block comments, doc comments, `"…"` with escapes, `b"…"`,
//! `c"…"`, raw strings `r#"…"#` / `br"…"`, char and byte literals (`'x'`, `'\''`, `b'x'`) as
//! opposed to lifetimes and labels (`'a`, `'outer:`). Not handled: anything needing a real
//! parser (macros are plain tokens, generics' `<`/`>` are not brackets).

/// A string literal of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lit {
    /// Offset of the literal's first byte (its prefix or opening quote).
    pub start: usize,
    /// Offset just past the closing quote (and hashes).
    pub end: usize,
    /// The contents, with the common escapes resolved.
    pub value: String,
}

/// A source file with comments and literals blanked.
#[derive(Debug, Clone)]
pub struct Masked {
    /// The source as written.
    pub src: String,
    /// Comments and literal contents replaced by spaces (newlines kept); quotes and literal
    /// prefixes stay, so `.route("` still reads as such. Same byte offsets as `src`.
    pub code: String,
    /// Only comments blanked: for comparing two expressions as written (in `code`,
    /// `f("a")` and `f("b")` would look alike).
    pub nocomment: String,
    /// String literals (not char literals), by `start`.
    pub strings: Vec<Lit>,
}

impl Masked {
    /// The string literal starting at `pos` (its prefix or quote), if any.
    pub fn string_at(&self, pos: usize) -> Option<&Lit> {
        self.strings.binary_search_by_key(&pos, |l| l.start).ok().map(|i| &self.strings[i])
    }

    /// The string literal starting at the first non-blank byte at or after `pos`.
    pub fn string_after(&self, pos: usize) -> Option<&Lit> {
        self.string_at(skip_ws(self.code.as_bytes(), pos))
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// First offset at or after `pos` that is not ASCII whitespace.
pub fn skip_ws(code: &[u8], mut pos: usize) -> usize {
    while pos < code.len() && code[pos].is_ascii_whitespace() {
        pos += 1;
    }
    pos
}

/// Length in bytes of the UTF-8 sequence starting with `b`.
fn utf8_len(b: u8) -> usize {
    match b {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('\n') => {
                while it.peek().is_some_and(|c| c.is_whitespace()) {
                    it.next();
                }
            }
            Some('u') => {
                let hex: String = it.by_ref().skip(1).take_while(|&c| c != '}').collect();
                out.extend(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32));
            }
            Some('x') => {
                let hex: String = it.by_ref().take(2).collect();
                out.extend(u8::from_str_radix(&hex, 16).ok().map(char::from));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Lexes `src`; malformed input (an unterminated literal) blanks to the end of the file
/// rather than failing: tidy reports what it can find.
pub fn mask(src: &str) -> Masked {
    let b = src.as_bytes();
    let n = b.len();
    let mut code = b.to_vec();
    let mut nocomment = b.to_vec();
    let mut strings = Vec::new();
    let blank = |buf: &mut Vec<u8>, from: usize, to: usize| {
        for x in &mut buf[from..to.min(n)] {
            if *x != b'\n' {
                *x = b' ';
            }
        }
    };
    let at = |i: usize| if i < n { b[i] } else { 0 };
    let prev_ident = |i: usize| i > 0 && is_ident(b[i - 1]);
    let mut i = 0;
    while i < n {
        let c = b[i];
        // Comments.
        if c == b'/' && at(i + 1) == b'/' {
            let end = src[i..].find('\n').map_or(n, |e| i + e);
            blank(&mut code, i, end);
            blank(&mut nocomment, i, end);
            i = end;
            continue;
        }
        if c == b'/' && at(i + 1) == b'*' {
            let (mut depth, mut j) = (1, i + 2);
            while j < n && depth > 0 {
                if b[j] == b'/' && at(j + 1) == b'*' {
                    depth += 1;
                    j += 2;
                } else if b[j] == b'*' && at(j + 1) == b'/' {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            blank(&mut code, i, j);
            blank(&mut nocomment, i, j);
            i = j;
            continue;
        }
        // Raw strings: r"…", r#"…"#, br"…", cr"…".
        if !prev_ident(i) && (c == b'r' || ((c == b'b' || c == b'c') && at(i + 1) == b'r')) {
            let mut j = i + if c == b'r' { 1 } else { 2 };
            let hashes = b[j.min(n)..].iter().take_while(|&&x| x == b'#').count();
            j += hashes;
            if at(j) == b'"' {
                let body = j + 1;
                let closer: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
                let close =
                    b[body..].windows(closer.len()).position(|w| w == closer.as_slice()).map_or(n, |p| body + p);
                let end = (close + closer.len()).min(n);
                strings.push(Lit { start: i, end, value: src[body..close].to_owned() });
                blank(&mut code, body, close);
                i = end;
                continue;
            }
        }
        // Strings: "…", b"…", c"…".
        if c == b'"' || (!prev_ident(i) && (c == b'b' || c == b'c') && at(i + 1) == b'"') {
            let q = if c == b'"' { i } else { i + 1 };
            let mut j = q + 1;
            while j < n && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let close = j.min(n);
            strings.push(Lit { start: i, end: (close + 1).min(n), value: unescape(&src[q + 1..close]) });
            blank(&mut code, q + 1, close);
            i = close + 1;
            continue;
        }
        // Char and byte literals, as opposed to lifetimes and labels.
        if c == b'\'' || (!prev_ident(i) && c == b'b' && at(i + 1) == b'\'') {
            let q = if c == b'\'' { i } else { i + 1 };
            if at(q + 1) == b'\\' {
                let mut j = q + 3;
                while j < n && b[j] != b'\'' && b[j] != b'\n' {
                    j += 1;
                }
                blank(&mut code, q + 1, j);
                i = j + 1;
                continue;
            }
            let len = utf8_len(at(q + 1));
            if q + 1 < n && at(q + 1 + len) == b'\'' {
                blank(&mut code, q + 1, q + 1 + len);
                i = q + 2 + len;
                continue;
            }
            // A lifetime or label: the identifier after it is ordinary code.
            i = q + 1;
            continue;
        }
        i += 1;
    }
    Masked {
        src: src.to_owned(),
        code: String::from_utf8(code).expect("blanking keeps UTF-8"),
        nocomment: String::from_utf8(nocomment).expect("blanking keeps UTF-8"),
        strings,
    }
}

/// Offset of the bracket closing the one at `open` (`(`, `[` or `{`), counting all three
/// kinds together (masked code has no brackets inside literals or comments).
pub fn matching(code: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in code.iter().enumerate().skip(open) {
        match c {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// The ranges of `code[from..to]` separated by top-level commas (not inside brackets);
/// empty trailing pieces (a trailing comma) are dropped.
pub fn split_top(code: &[u8], from: usize, to: usize, sep: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut depth, mut start, mut i) = (0i32, from, from);
    while i < to {
        match code[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ if depth == 0 && code[i..to].starts_with(sep) => {
                out.push((start, i));
                i += sep.len();
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.push((start, to));
    out.retain(|&(a, b)| code[a..b].iter().any(|c| !c.is_ascii_whitespace()));
    out
}

/// An identifier or path use followed by a call: `name(`, `a::b::name(`, `name!(`, `.name(`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Offset of the name's first byte.
    pub pos: usize,
    /// The path segments before the name (`["crate", "plugins"]` for `crate::plugins::routes(`).
    pub path: Vec<String>,
    pub name: String,
    /// `.name(`: a method call.
    pub method: bool,
    /// `name!(`: a macro invocation.
    pub macro_: bool,
    /// Offset of the opening bracket of the arguments.
    pub open: usize,
}

/// Every call in `code[from..to]` (at any depth), in order.
pub fn calls(code: &str, from: usize, to: usize) -> Vec<Call> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = from;
    while i < to {
        if !is_ident(b[i]) || (i > 0 && is_ident(b[i - 1])) || b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < to && is_ident(b[i]) {
            i += 1;
        }
        let name = &code[start..i];
        let mut j = skip_ws(b, i);
        let macro_ = j < to && b[j] == b'!';
        if macro_ {
            j = skip_ws(b, j + 1);
        }
        let opens = if macro_ { j < to && matches!(b[j], b'(' | b'[' | b'{') } else { j < to && b[j] == b'(' };
        if !opens {
            continue;
        }
        // What precedes the name: `.` (method), `::` (path), else a free call.
        let mut path = Vec::new();
        let mut k = start;
        let mut method = false;
        loop {
            let p = skip_back_ws(b, k);
            if p >= 2 && &b[p - 2..p] == b"::" {
                let seg_end = skip_back_ws(b, p - 2);
                let mut seg_start = seg_end;
                while seg_start > 0 && is_ident(b[seg_start - 1]) {
                    seg_start -= 1;
                }
                if seg_start == seg_end {
                    break;
                }
                path.insert(0, code[seg_start..seg_end].to_owned());
                k = seg_start;
            } else {
                method = path.is_empty() && p >= 1 && b[p - 1] == b'.';
                break;
            }
        }
        out.push(Call { pos: start, path, name: name.to_owned(), method, macro_, open: j });
    }
    out
}

/// Offset just past the last non-whitespace byte before `pos`.
fn skip_back_ws(code: &[u8], mut pos: usize) -> usize {
    while pos > 0 && code[pos - 1].is_ascii_whitespace() {
        pos -= 1;
    }
    pos
}

/// A function item with its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FnItem {
    pub name: String,
    /// Offset of the `fn` keyword.
    pub pos: usize,
    /// Offsets of the body's `{` and `}`.
    pub open: usize,
    pub close: usize,
}

/// Every `fn` with a body (declarations ending in `;` are skipped). Names may be macro
/// metavariables (`$name`).
pub fn fn_items(code: &str) -> Vec<FnItem> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = code[from..].find("fn") {
        let pos = from + p;
        from = pos + 2;
        if (pos > 0 && (is_ident(b[pos - 1]) || b[pos - 1] == b'$'))
            || !b.get(pos + 2).is_some_and(|c| c.is_ascii_whitespace())
        {
            continue;
        }
        let name_start = skip_ws(b, pos + 2);
        let mut name_end = name_start;
        if b.get(name_end) == Some(&b'$') {
            name_end += 1;
        }
        while name_end < b.len() && is_ident(b[name_end]) {
            name_end += 1;
        }
        if name_end == name_start {
            continue;
        }
        // The body: the first `{` outside the signature's parentheses and brackets.
        let mut depth = 0i32;
        let mut open = None;
        for (i, &c) in b.iter().enumerate().skip(name_end) {
            match c {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b';' if depth == 0 => break,
                b'{' if depth == 0 => {
                    open = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let Some(close) = matching(b, open) else { continue };
        out.push(FnItem { name: code[name_start..name_end].to_owned(), pos, open, close });
    }
    out
}

/// Ranges of items under `#[cfg(test)]` (a test module's body, a test-only function): code
/// that is not the product. An out-of-line `#[cfg(test)] mod tests;` is not a range; its
/// file is excluded by name instead (see [`is_test_file`]).
pub fn cfg_test_spans(code: &str) -> Vec<(usize, usize)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(p) = code[from..].find("#[cfg(test)]") {
        let pos = from + p;
        from = pos + 1;
        let mut depth = 0i32;
        for (i, &c) in b.iter().enumerate().skip(pos + "#[cfg(test)]".len()) {
            match c {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b';' if depth == 0 => break,
                b'{' if depth == 0 => {
                    if let Some(close) = matching(b, i) {
                        out.push((pos, close + 1));
                    }
                    break;
                }
                _ => {}
            }
        }
    }
    out
}

/// A source file that holds only tests by convention (`tests.rs`, `foo/tests/…`).
pub fn is_test_file(path: &std::path::Path) -> bool {
    path.file_stem().is_some_and(|s| s == "tests") || path.components().any(|c| c.as_os_str() == "tests")
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn comments_and_literals_are_blanked_offsets_kept() {
        let src = r##"let a = "x(\"y"; // .route("/no")
/* outer /* inner */ still */ let b = r#"raw "# ;"##;
        let m = mask(src);
        assert_eq!(m.code.len(), src.len());
        assert!(!m.code.contains(".route"), "{}", m.code);
        assert!(!m.code.contains("inner") && !m.code.contains("still"), "{}", m.code);
        assert!(m.code.contains("let b"));
        let values: Vec<&str> = m.strings.iter().map(|l| l.value.as_str()).collect();
        assert_eq!(values, ["x(\"y", "raw "]);
        assert_eq!(m.string_at(8).map(|l| l.value.as_str()), Some("x(\"y"));
        assert!(m.nocomment.contains("\"x(\\\"y\"") && !m.nocomment.contains("inner"));
    }

    #[test]
    fn chars_and_lifetimes() {
        let m = mask("fn f<'a>(x: &'a str) -> char { let c = '('; let q = '\\''; let u = 'ü'; 'l: loop {} ; b'{' }");
        assert!(m.code.contains("&'a str"), "{}", m.code);
        assert!(m.code.contains("'l: loop"), "{}", m.code);
        assert!(!m.code.contains("'('") && !m.code.contains("b'{'"), "{}", m.code);
        let open = m.code.find('{').unwrap();
        assert_eq!(matching(m.code.as_bytes(), open), Some(m.code.len() - 1));
    }

    #[test]
    fn calls_with_paths_methods_and_macros() {
        let code = "x.merge(crate::plugins::routes()).get(h); assert_eq!(a, b); foo (1)";
        let got: Vec<(String, Vec<String>, bool, bool)> =
            calls(code, 0, code.len()).into_iter().map(|c| (c.name, c.path, c.method, c.macro_)).collect();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                ("merge".into(), vec![], true, false),
                ("routes".into(), s(&["crate", "plugins"]), false, false),
                ("get".into(), vec![], true, false),
                ("assert_eq".into(), vec![], false, true),
                ("foo".into(), vec![], false, false),
            ]
        );
    }

    #[test]
    fn fn_items_and_cfg_test() {
        let code = "fn a(x: [u8; 2]) -> u8 { { 1 } }\ntrait T { fn decl(&self); }\n#[cfg(test)]\nmod t { fn b() {} }";
        let names: Vec<String> = fn_items(code).into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["a", "b"]);
        let spans = cfg_test_spans(code);
        assert_eq!(spans.len(), 1);
        assert!(code[spans[0].0..spans[0].1].ends_with("fn b() {} }"));
        assert_eq!(split_top(b"a, f(b, c), [d, e],", 0, 19, b","), vec![(0, 1), (2, 10), (11, 18)]);
    }
}
