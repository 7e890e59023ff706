//! Relative markdown links in the docs must point somewhere: the file (or directory) must
//! exist, and an anchor into a markdown file must name one of its headings.
//!
//! Scope: `README.md`, `ARCHITECTURE.md`, `docs/**/*.md`, `examples/**/*.md`. Links are
//! inline links and images `[text](target "title")` and reference definitions
//! `[label]: target`; text in fenced code blocks and code spans is not a link (a backticked
//! path is prose, not a promise). Skipped: targets with a scheme (`https:`, `mailto:`) and
//! `<…>`-less targets that contain a space (not links in CommonMark).
//!
//! Anchors are GitHub's heading slugs: the heading's text (code spans, emphasis markers and
//! link targets removed) lower-cased, each space a `-`, everything that is not a letter, a
//! digit, `-` or `_` dropped (so Japanese headings keep their characters), and `-1`, `-2`
//! appended to repeats; explicit `<a id="…">` / `<a name="…">` anchors count too. Anchors
//! into files that are not markdown (`#L10`) are not checked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::{Violation, rel};

/// The markdown files whose links are checked.
pub fn doc_files(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        ["README.md", "ARCHITECTURE.md"].iter().map(|f| root.join(f)).filter(|p| p.is_file()).collect();
    out.extend(crate::files_with_ext(root, &["docs", "examples"], "md"));
    out
}

/// Lines outside fenced code blocks, with code spans blanked, as (1-based line, text).
fn prose_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fence: Option<(char, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let indent = line.len() - t.len();
        let run = |c: char| t.chars().take_while(|&x| x == c).count();
        let fence_here =
            if indent <= 3 { ['`', '~'].into_iter().map(|c| (c, run(c))).find(|&(_, n)| n >= 3) } else { None };
        match (fence, fence_here) {
            (None, Some(f)) => {
                fence = Some(f);
                continue;
            }
            (Some((c, n)), Some((c2, n2))) if c == c2 && n2 >= n && t.trim_end().chars().all(|x| x == c) => {
                fence = None;
                continue;
            }
            (Some(_), _) => continue,
            (None, None) => {}
        }
        out.push((i + 1, blank_code_spans(line)));
    }
    out
}

/// Replaces the contents of code spans (`` `x` ``, ``` ``x`` ```) by spaces.
fn blank_code_spans(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = chars.clone();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            i += 1;
            continue;
        }
        let n = chars[i..].iter().take_while(|&&c| c == '`').count();
        // The closing run: exactly n backticks.
        let mut j = i + n;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let m = chars[j..].iter().take_while(|&&c| c == '`').count();
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                for c in &mut out[i..j + n] {
                    *c = ' ';
                }
                i = j + n;
            }
            None => i += n,
        }
    }
    out.into_iter().collect()
}

/// The link targets of a markdown text, as (line, target).
pub fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (line, t) in prose_lines(text) {
        // Reference definitions: `[label]: target`.
        let trimmed = t.trim_start();
        if trimmed.starts_with('[')
            && !trimmed.starts_with("[^")
            && let Some(p) = trimmed.find("]:")
        {
            let target = trimmed[p + 2..].split_whitespace().next().unwrap_or("");
            if !target.is_empty() {
                out.push((line, target.trim_start_matches('<').trim_end_matches('>').to_owned()));
            }
            continue;
        }
        // Inline links and images: `](target)`, balanced parentheses inside.
        let mut rest = t.as_str();
        while let Some(p) = rest.find("](") {
            let after = &rest[p + 2..];
            let mut depth = 1;
            let mut end = None;
            for (i, c) in after.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(end) = end else { break };
            let inside = after[..end].trim();
            let target = if let Some(t) = inside.strip_prefix('<') {
                t.split('>').next().unwrap_or("").to_owned()
            } else {
                // A title may follow the target: `(path "title")`.
                let mut parts = inside.split_whitespace();
                let target = parts.next().unwrap_or("");
                let title = parts.collect::<Vec<_>>().join(" ");
                if !title.is_empty() && !title.starts_with(['"', '\'', '(']) {
                    rest = &after[end..];
                    continue; // `[a](b c)` is not a link
                }
                target.to_owned()
            };
            if !target.is_empty() {
                out.push((line, target));
            }
            rest = &after[end..];
        }
    }
    out
}

/// GitHub's slug of a heading's text.
pub fn slug(heading: &str) -> String {
    // Link targets go, their text stays: `[a](b)` → `a`.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(p) = rest.find("](") {
        text.push_str(&rest[..p]);
        let after = &rest[p + 2..];
        rest = after.find(')').map_or("", |e| &after[e + 1..]);
    }
    text.push_str(rest);
    text.chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors a markdown text defines: heading slugs (repeats numbered) and explicit ids.
pub fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    let mut add = |s: String, out: &mut BTreeSet<String>| {
        let n = seen.entry(s.clone()).or_insert(0);
        out.insert(if *n == 0 { s.clone() } else { format!("{s}-{n}") });
        *n += 1;
    };
    // Headings are read from the text with code spans kept (their text is part of the slug).
    let lines: Vec<&str> = text.lines().collect();
    let prose: BTreeSet<usize> = prose_lines(text).into_iter().map(|(l, _)| l).collect();
    for (i, line) in lines.iter().enumerate() {
        if !prose.contains(&(i + 1)) {
            continue;
        }
        let t = line.trim_start();
        if line.len() - t.len() <= 3 {
            let hashes = t.chars().take_while(|&c| c == '#').count();
            if (1..=6).contains(&hashes) && t[hashes..].starts_with([' ', '\t']) {
                let h = t[hashes..].trim().trim_end_matches('#').trim();
                add(slug(h), &mut out);
            }
            // Setext: a paragraph line underlined with === or ---.
            if let Some(next) = lines.get(i + 1) {
                let u = next.trim();
                let para = !t.is_empty() && !t.starts_with(['#', '-', '*', '+', '|', '>', '<']) && hashes == 0;
                if para
                    && !u.is_empty()
                    && prose.contains(&(i + 2))
                    && (u.chars().all(|c| c == '=') || u.chars().all(|c| c == '-'))
                {
                    add(slug(t.trim()), &mut out);
                }
            }
        }
        for key in ["id=\"", "name=\""] {
            let mut rest = *line;
            while let Some(p) = rest.find(key) {
                let after = &rest[p + key.len()..];
                if let Some(e) = after.find('"')
                    && rest[..p].contains("<a")
                {
                    out.insert(after[..e].to_owned());
                }
                rest = after;
            }
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True for `https:`, `mailto:` and any other scheme.
fn has_scheme(target: &str) -> bool {
    match target.find(':') {
        Some(p) => {
            let scheme = &target[..p];
            !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

/// Every broken link in `file` (absolute), with `root` for root-relative targets.
pub fn check_file(root: &Path, file: &Path) -> Vec<Violation> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return vec![Violation { file: rel(root, file), line: 1, message: "cannot read the file".into() }];
    };
    let mut out = Vec::new();
    let dir = file.parent().unwrap_or(root);
    for (line, target) in links(&text) {
        if has_scheme(&target) {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target.as_str(), None),
        };
        let path = percent_decode(path);
        let resolved = if path.is_empty() {
            file.to_path_buf()
        } else if let Some(abs) = path.strip_prefix('/') {
            root.join(abs)
        } else {
            dir.join(&path)
        };
        let v = |message: String| Violation { file: rel(root, file), line, message };
        if !resolved.exists() {
            out.push(v(format!("link `{target}` points nowhere: {} does not exist", rel(root, &resolved))));
            continue;
        }
        let Some(anchor) = anchor.filter(|a| !a.is_empty()) else { continue };
        if resolved.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let target_text = std::fs::read_to_string(&resolved).unwrap_or_default();
        let anchor = percent_decode(anchor).to_lowercase();
        if !anchors(&target_text).contains(&anchor) {
            out.push(v(format!("link `{target}`: {} has no heading with the anchor #{anchor}", rel(root, &resolved))));
        }
    }
    out
}

/// The whole check over [`doc_files`].
pub fn check(root: &Path) -> Vec<Violation> {
    doc_files(root).iter().flat_map(|f| check_file(root, f)).collect()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn links_outside_code_only() {
        let md = "See [arch](../ARCHITECTURE.md#invariants) and ![img](a.png \"t\").\n\
                  `[not](a-link.md)` and a `path/in/backticks.md`\n\
                  ```\n[not](in-a-fence.md)\n```\n\
                  [ref]: docs/x.md\n[web](https://example.com) [a](b c)";
        let got: Vec<(usize, String)> = links(md);
        let want = [(1, "../ARCHITECTURE.md#invariants"), (1, "a.png"), (6, "docs/x.md"), (7, "https://example.com")];
        assert_eq!(got, want.iter().map(|(l, t)| (*l, t.to_string())).collect::<Vec<_>>());
        assert!(has_scheme("https://example.com") && has_scheme("mailto:a@b") && !has_scheme("docs/a:b.md"));
    }

    #[test]
    fn missing_files_and_anchors_are_reported() {
        let root = std::env::temp_dir().join(format!("tenken-tidy-links-{}", std::process::id()));
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(root.join("docs/b.md"), "# Real heading\n").unwrap();
        let a = root.join("docs/a.md");
        std::fs::write(
            &a,
            "[ok](b.md#real-heading) [dir](.) [root](/docs/b.md) [self](#top)\n# Top\n\
             [gone](missing.md) [bad anchor](b.md#nope) [web](https://x.invalid/missing.md)\n",
        )
        .unwrap();
        let got: Vec<String> = check_file(&root, &a).iter().map(|v| v.to_string()).collect();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].starts_with("docs/a.md:3: link `missing.md` points nowhere"), "{}", got[0]);
        assert!(
            got[1].starts_with("docs/a.md:3: link `b.md#nope`: docs/b.md has no heading with the anchor #nope"),
            "{}",
            got[1]
        );
    }

    #[test]
    fn github_slugs() {
        assert_eq!(
            slug("Test it: `tenken plugin describe` and `tenken plugin test`"),
            "test-it-tenken-plugin-describe-and-tenken-plugin-test"
        );
        assert_eq!(slug("From a fresh clone to a deployed plugin"), "from-a-fresh-clone-to-a-deployed-plugin");
        assert_eq!(slug("受付 (acceptance) と点検"), "受付-acceptance-と点検");
        assert_eq!(slug("The [contract](x.md) v1.0"), "the-contract-v10");
        let md = "# A\n## A\n```\n# Not a heading\n```\nSetext\n---\n<a id=\"custom\"></a>\n";
        let a = anchors(md);
        assert_eq!(a.into_iter().collect::<Vec<_>>(), ["a", "a-1", "custom", "setext"]);
    }
}
