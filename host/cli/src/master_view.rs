//! Master versions and their reports as staff read them: what changed (codes with their
//! names, fields in words, old → new, totals), what the impact check found, who proposed and
//! approved, and what to look at before approving. `--json` prints the API's answer as is.

use tenken_store::{CodeEntry, KindDiff, MasterReport};

/// Which list of a diff to print in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffList {
    /// New codes (新規).
    Added,
    /// 点数 / 金額 changes.
    Points,
    /// Changed codes, field by field.
    Changed,
    /// Abolished codes (廃止).
    Abolished,
    /// Restored codes (復活).
    Restored,
    /// Codes gone from the new version (抹消).
    Removed,
}

fn kind_name(d: &KindDiff) -> &'static str {
    d.kind.map(|k| k.as_str()).unwrap_or("?")
}

/// "first 10 of 975" / "all 3": so a shortened list never hides its total.
fn shown(listed: usize, total: usize, limit: usize) -> String {
    let n = listed.min(limit);
    if n == total { format!("all {total}") } else { format!("first {n} of {total}") }
}

fn entry_line(e: &CodeEntry, what: &str) -> String {
    let mut s = format!("    {}  {}", e.code, e.name);
    if !e.value.is_empty() {
        s.push_str(&format!("  {}", e.value));
    }
    if let Some(d) = e.date {
        s.push_str(&format!("  ({what} {d})"));
    }
    s
}

/// The diff: a table of totals per kind, then each list (at most `show` entries per list
/// unless `full` names one list, which is printed whole).
pub fn print_diff(diff: &[KindDiff], show: usize, full: Option<DiffList>) {
    println!("{:10} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}", "KIND", "新規", "変更", "(点数)", "廃止", "復活", "抹消");
    for d in diff {
        println!(
            "{:10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            kind_name(d),
            d.added,
            d.changed,
            d.value_changed,
            d.abolished,
            d.restored,
            d.removed
        );
    }
    let limit = |l: DiffList| if full == Some(l) { usize::MAX } else { show };
    let wanted = |l: DiffList| full.is_none() || full == Some(l);
    for d in diff {
        let k = kind_name(d);
        let lists: [(DiffList, &str, usize, &[CodeEntry], &str); 4] = [
            (DiffList::Added, "new codes", d.added, &d.added_codes, "from"),
            (DiffList::Abolished, "abolished", d.abolished, &d.abolished_codes, "until"),
            (DiffList::Restored, "restored", d.restored, &d.restored_codes, "from"),
            (DiffList::Removed, "removed (抹消)", d.removed, &d.removed_codes, ""),
        ];
        for (list, title, total, entries, date) in lists {
            if wanted(list) && total > 0 {
                println!("\n{k}: {title} ({})", shown(entries.len(), total, limit(list)));
                for e in entries.iter().take(limit(list)) {
                    println!("{}", entry_line(e, date));
                }
            }
        }
        if wanted(DiffList::Points) && d.value_changed > 0 {
            println!(
                "\n{k}: 点数/金額 changes ({})",
                shown(d.value_changes.len(), d.value_changed, limit(DiffList::Points))
            );
            for c in d.value_changes.iter().take(limit(DiffList::Points)) {
                println!("    {}  {}  {} → {}", c.code, c.name, c.old, c.new);
            }
        }
        if wanted(DiffList::Changed) && d.changed > 0 {
            println!(
                "\n{k}: changed, field by field ({})",
                shown(d.examples.len(), d.changed, limit(DiffList::Changed))
            );
            for c in d.examples.iter().take(limit(DiffList::Changed)) {
                let fields: Vec<String> =
                    c.fields.iter().map(|f| format!("{} {} → {}", f.label, f.old, f.new)).collect();
                println!("    {}  {}: {}", c.code, c.name, fields.join("; "));
            }
        }
    }
}

/// The whole report: diff, impact, proof.
pub fn print_report(r: &MasterReport, show: usize, full: Option<DiffList>) {
    if let Some(c) = r.compared_with {
        println!("compared with master version {c} (in force for its first month when it was checked)");
    }
    if let Some(f) = r.from_version {
        println!("converted from the other payer's master version {f}");
    }
    if !r.diff.is_empty() {
        println!();
        print_diff(&r.diff, show, full);
    }
    if full.is_some() {
        return;
    }
    if let Some(i) = &r.impact {
        println!();
        let files = i.sampled_submissions + i.cases;
        let as_of = match i.as_of {
            Some(m) => format!(", re-checked as if of {m} ({} file(s) re-dated)", i.redated_files),
            None => ", at their own months".into(),
        };
        println!(
            "impact: {} finding(s) change over {files} file(s): {} real submission(s) ({} receipts), {} regression case(s){as_of}; threshold {}: {}",
            i.changed,
            i.sampled_submissions,
            i.sampled_receipts,
            i.cases,
            i.threshold,
            if i.flagged {
                "FLAGGED — look at the rules below before approving (approve needs --accept-impact --reason)"
            } else {
                "within"
            }
        );
        for rule in &i.rules {
            let mut ex: Vec<String> = rule.receipts.iter().take(5).cloned().collect();
            ex.dedup();
            println!("    {:40} +{:<5} -{:<5} {}", rule.rule, rule.new, rule.vanished, ex.join(", "));
        }
    }
    if !r.proof.is_empty() {
        println!();
        for p in &r.proof {
            println!("proven conversion: {} ({} rows), {} → {}", p.name, p.rows, p.source_blob, p.blob);
        }
    }
}

/// A version as the API answers it (`VersionView`), for people.
pub fn print_version(v: &serde_json::Value, show: usize, full: Option<DiffList>) -> anyhow::Result<()> {
    let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    let person = |p: &serde_json::Value| {
        format!(
            "{} (token {}{})",
            p["label"].as_str().unwrap_or("?"),
            p["token"],
            p["payer"].as_str().map(|x| format!(", {x}")).unwrap_or_default()
        )
    };
    if full.is_none() {
        println!(
            "master version {} of {}: {}, 診療年月 {}",
            v["id"],
            s("payer"),
            s("state"),
            v["from_month"].as_str().map(|m| format!("{m} onward")).unwrap_or_else(|| "all months".into())
        );
        let files: Vec<String> = v["sources"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| format!("{} ({})", f["name"].as_str().unwrap_or("?"), f["format"].as_str().unwrap_or("?")))
            .collect();
        println!("  files: {}", files.join(", "));
        println!("  digest: {}", s("digest"));
        if let Some(p) = v["provided_by"].as_str() {
            println!("  provided by {p}: approval by both payers' staff is needed");
        }
        println!("  proposed by {}: {}", person(&v["proposed_by"]), s("reason"));
        let approvers: Vec<String> = v["approved_by"].as_array().into_iter().flatten().map(person).collect();
        println!("  approved by: {}", if approvers.is_empty() { "nobody yet".into() } else { approvers.join(", ") });
        for w in v["warnings"].as_array().into_iter().flatten() {
            println!("  WARNING: {}", w.as_str().unwrap_or(""));
        }
    }
    let report: MasterReport = serde_json::from_value(v["report"].clone())?;
    print_report(&report, show, full);
    Ok(())
}
