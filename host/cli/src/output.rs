//! How `tenken check` prints a report: JSON for machines, grouped coloured text for people.

use std::io::Write;
use std::path::Path;

use owo_colors::OwoColorize;
use tenken_check::Report;
use tenken_model::Severity;

/// The JSON shape documented in the README (`file`, `plugins`, `findings`).
pub fn json_report(report: &Report) -> serde_json::Value {
    serde_json::json!({
        "file": report.file,
        "plugins": report.plugins,
        "findings": report.findings.iter().map(|f| serde_json::json!({
            "receipt": f.receipt,
            "line": f.line,
            "record": f.record,
            "field": f.field,
            "rule": f.rule,
            "severity": f.severity,
            "message": f.message,
        })).collect::<Vec<_>>(),
        "summary": {
            "error": report.count(Severity::Error),
            "warning": report.count(Severity::Warning),
            "info": report.count(Severity::Info),
            "dropped": report.findings_dropped,
        },
    })
}

/// Text grouped by receipt; colours only when stdout is a terminal (anstream strips them).
pub fn print_text(report: &Report, path: &Path) -> anyhow::Result<()> {
    let mut out = anstream::stdout().lock();
    let f = &report.file;
    writeln!(
        out,
        "{} — payer {}, institution {}, billing month {}, {} receipts",
        path.display().bold(),
        f.payer,
        f.institution.as_deref().unwrap_or("?"),
        f.billing_month.as_deref().unwrap_or("?"),
        f.receipts
    )?;
    let mut current: Option<Option<u32>> = None;
    for finding in &report.findings {
        if current != Some(finding.receipt) {
            current = Some(finding.receipt);
            match finding.receipt {
                None => writeln!(out, "\n{}", "file".bold())?,
                Some(n) => writeln!(out, "\n{}", format!("receipt {n}").bold())?,
            }
        }
        // Pad before colouring: escape codes would count towards the width.
        let word = format!("{:7}", finding.severity.as_str());
        let sev = match finding.severity {
            Severity::Error => format!("{}", word.red().bold()),
            Severity::Warning => format!("{}", word.yellow().bold()),
            Severity::Info => format!("{}", word.blue()),
        };
        let place = match (finding.line, &finding.record, finding.field) {
            (Some(l), Some(r), Some(fld)) => format!("line {l} {r}[{fld}]"),
            (Some(l), Some(r), None) => format!("line {l} {r}"),
            (Some(l), None, _) => format!("line {l}"),
            _ => String::new(),
        };
        writeln!(out, "  {sev} {} {place:22} {}", format!("{:38}", finding.rule).dimmed(), finding.message)?;
    }
    writeln!(
        out,
        "\n{} errors, {} warnings, {} info{}",
        report.count(Severity::Error),
        report.count(Severity::Warning),
        report.count(Severity::Info),
        if report.findings_dropped > 0 {
            format!(" ({} more not kept)", report.findings_dropped)
        } else {
            String::new()
        }
    )?;
    Ok(())
}
