//! A finding: what a check reports, pointing at the receipt, line, record and field concerned.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Severity {
    /// Ordered so that `Error` is the largest.
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One reported problem. `receipt` is the RE レセプト番号 (None for file-level findings),
/// `line` the 1-based physical line, `field` the 0-based CSV index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Finding {
    pub receipt: Option<u32>,
    pub line: Option<u32>,
    pub record: Option<String>,
    pub field: Option<u32>,
    pub rule: String,
    pub severity: Severity,
    pub message: String,
}

impl Finding {
    pub fn new(rule: impl Into<String>, severity: Severity, message: impl Into<String>) -> Finding {
        Finding {
            receipt: None,
            line: None,
            record: None,
            field: None,
            rule: rule.into(),
            severity,
            message: message.into(),
        }
    }

    pub fn error(rule: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding::new(rule, Severity::Error, message)
    }

    pub fn warning(rule: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding::new(rule, Severity::Warning, message)
    }

    pub fn info(rule: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding::new(rule, Severity::Info, message)
    }

    pub fn receipt(mut self, receipt: Option<u32>) -> Finding {
        self.receipt = receipt;
        self
    }

    /// Points the finding at a record (line + record id) and optionally a field.
    pub fn at(mut self, line: u32, record: &str, field: Option<u32>) -> Finding {
        self.line = Some(line);
        self.record = Some(record.to_string());
        self.field = field;
        self
    }

    pub fn at_line(mut self, line: u32) -> Finding {
        self.line = Some(line);
        self
    }

    /// The plugin failure this finding reports, if it is one of the host's `plugin.`
    /// findings (what the server counts for auto-rollback).
    pub fn plugin_failure(&self) -> Option<crate::PluginFailure> {
        crate::PluginFailure::from_rule(&self.rule)
    }

    /// Sort key used everywhere findings are printed or compared: receipt, line, field, rule.
    pub fn sort_key(&self) -> (Option<u32>, Option<u32>, Option<u32>, &str, &str) {
        (self.receipt, self.line, self.field, &self.rule, &self.message)
    }
}

/// Sorts findings into the canonical order (file-level first, then by receipt and line).
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
}

/// What a plugin declares about itself (`describe`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub rules: Vec<RuleInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RuleInfo {
    pub id: String,
    pub severity: Severity,
    pub description: String,
}
