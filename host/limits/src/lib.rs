//! Every limit tenken enforces, named with its unit, documented and configurable, in one place.
//!
//! Why one struct: a limit that lives next to the loop it bounds is easy to forget when the
//! operator asks "what are all the knobs?". Each field name ends in its unit (`_bytes`,
//! `_ms`, `_count`, ...) and `_max`. The server issue loads these from TOML / env / flags;
//! `tenken check` takes the defaults. `docs/LIMITS.md` lists them (generated from
//! [`Limits::describe`]).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    // --- claim parser -------------------------------------------------------------------
    /// Largest claim file accepted, in bytes. The largest real hospitals send tens of MB.
    pub claim_bytes_max: u64,
    /// Longest physical line, in bytes (SJ 症状詳記 is ≤ 2400 bytes of text; margin for CSV).
    pub claim_line_bytes_max: u32,
    /// Most records (lines) in one file.
    pub claim_records_max: u32,
    /// Most CSV fields in one record (TO has 48).
    pub claim_fields_per_record_max: u32,
    /// Most file-level parser findings before the parser stops reporting (and says so).
    pub claim_parse_findings_max: u32,

    // --- plugin runtime -----------------------------------------------------------------
    /// Largest component accepted, in bytes (componentize-js guests are ~12 MB).
    pub plugin_component_bytes_max: u64,
    /// Linear memory one plugin instance may grow to, in bytes.
    pub plugin_memory_bytes_max: u64,
    /// Wasm stack one plugin call may use, in bytes.
    pub plugin_stack_bytes_max: u64,
    /// Table elements per plugin instance.
    pub plugin_table_elements_max: u32,
    /// Wall-clock deadline of one plugin call, in milliseconds (epoch interruption).
    pub plugin_call_ms_max: u64,
    /// The file-level call (`check-file`) gets one summary per receipt, so its deadline grows:
    /// `plugin_call_ms_max` + this many microseconds per receipt (JavaScript guests spend
    /// ~8 µs per summary on this machine: docs/PERFORMANCE.md).
    pub plugin_file_call_us_per_receipt: u64,
    /// Cap of the file-level call's deadline, in milliseconds.
    pub plugin_file_call_ms_max: u64,
    /// Epoch tick, in milliseconds: the deadline's granularity.
    pub plugin_epoch_tick_ms: u64,
    /// Captured guest stdout+stderr per call, in bytes; writes beyond fail.
    pub plugin_output_bytes_max: u64,
    /// Findings one plugin call may return; the rest are dropped with a `plugin.` finding.
    pub plugin_findings_per_call_max: u32,
    /// Characters of one finding message kept.
    pub plugin_message_chars_max: u32,
    /// Longest rule id a plugin may declare in `describe` or return, in bytes; a longer one
    /// breaks the contract (refused at load, or the finding dropped with `plugin.contract`).
    pub plugin_rule_id_bytes_max: u32,
    /// Longest finding message a plugin may return, in bytes; a longer one breaks the
    /// contract (the finding is dropped with `plugin.contract`). Messages under it are still
    /// cut to `plugin_message_chars_max` characters. Keep it above 3 × `claim_line_bytes_max`:
    /// a rule may quote a field, and one CP932 byte (半角カナ) is three bytes of UTF-8.
    pub plugin_finding_message_bytes_max: u32,
    /// Longest record id (`SI`, `HO`, ...) a finding may name, in bytes; a longer one breaks
    /// the contract. Above 3 × `claim_line_bytes_max` for the same reason: the format rules
    /// name an unknown record by whatever precedes the first comma of its line.
    pub plugin_finding_record_bytes_max: u32,
    /// Failed calls (trap / timeout) of one plugin within one file after which its remaining
    /// batches are skipped and reported, so a looping plugin costs at most this many deadlines.
    pub plugin_failures_per_file_max: u32,
    /// Wall-clock deadline of one master-format converter call (a whole master file), ms.
    pub converter_call_ms_max: u64,
    /// Concurrently live plugin instances in the pooling allocator (per process).
    pub plugin_instances_max: u32,
    /// Components compiled at the same time by one runtime; further loads wait for a slot
    /// (a load with a deadline gives up at it). Cranelift already uses every core for one
    /// compile, so more slots only pile up memory.
    pub plugin_compiles_max: u32,
    /// Receipts passed to one plugin call (measured: see docs/PERFORMANCE.md).
    pub check_batch_receipts_max: u32,
    /// Worker threads running checks (0 = number of CPUs).
    pub check_workers_max: u32,
    /// Findings kept for one file; further ones are counted but not stored.
    pub check_findings_per_file_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            claim_bytes_max: 256 * 1024 * 1024,
            claim_line_bytes_max: 8 * 1024,
            claim_records_max: 10_000_000,
            claim_fields_per_record_max: 256,
            claim_parse_findings_max: 1_000,
            plugin_component_bytes_max: 64 * 1024 * 1024,
            plugin_memory_bytes_max: 256 * 1024 * 1024,
            plugin_stack_bytes_max: 1024 * 1024,
            plugin_table_elements_max: 100_000,
            plugin_call_ms_max: 2_000,
            plugin_file_call_us_per_receipt: 50,
            plugin_file_call_ms_max: 30_000,
            plugin_epoch_tick_ms: 10,
            plugin_output_bytes_max: 64 * 1024,
            plugin_findings_per_call_max: 100_000,
            plugin_message_chars_max: 1_000,
            plugin_rule_id_bytes_max: 128,
            plugin_finding_message_bytes_max: 64 * 1024,
            plugin_finding_record_bytes_max: 32 * 1024,
            plugin_failures_per_file_max: 3,
            converter_call_ms_max: 120_000,
            plugin_instances_max: 64,
            plugin_compiles_max: 2,
            check_batch_receipts_max: 256,
            check_workers_max: 0,
            check_findings_per_file_max: 1_000_000,
        }
    }
}

impl Limits {
    /// (name, default value, meaning) for every limit, for docs and `tenken limits`.
    pub fn describe() -> Vec<(&'static str, String, &'static str)> {
        let d = Limits::default();
        vec![
            ("claim_bytes_max", d.claim_bytes_max.to_string(), "largest claim file accepted, bytes"),
            ("claim_line_bytes_max", d.claim_line_bytes_max.to_string(), "longest physical line, bytes"),
            ("claim_records_max", d.claim_records_max.to_string(), "most records in one file"),
            ("claim_fields_per_record_max", d.claim_fields_per_record_max.to_string(), "most CSV fields in one record"),
            (
                "claim_parse_findings_max",
                d.claim_parse_findings_max.to_string(),
                "parser findings reported before it stops reporting",
            ),
            ("plugin_component_bytes_max", d.plugin_component_bytes_max.to_string(), "largest plugin component, bytes"),
            (
                "plugin_memory_bytes_max",
                d.plugin_memory_bytes_max.to_string(),
                "linear memory per plugin instance, bytes",
            ),
            ("plugin_stack_bytes_max", d.plugin_stack_bytes_max.to_string(), "wasm stack per plugin call, bytes"),
            (
                "plugin_table_elements_max",
                d.plugin_table_elements_max.to_string(),
                "table elements per plugin instance",
            ),
            ("plugin_call_ms_max", d.plugin_call_ms_max.to_string(), "deadline of one plugin call, ms"),
            (
                "plugin_file_call_us_per_receipt",
                d.plugin_file_call_us_per_receipt.to_string(),
                "added to the check-file deadline per receipt of the file, µs",
            ),
            ("plugin_file_call_ms_max", d.plugin_file_call_ms_max.to_string(), "cap of the check-file deadline, ms"),
            ("plugin_epoch_tick_ms", d.plugin_epoch_tick_ms.to_string(), "epoch tick (deadline granularity), ms"),
            (
                "plugin_output_bytes_max",
                d.plugin_output_bytes_max.to_string(),
                "captured guest stdout+stderr per call, bytes",
            ),
            (
                "plugin_findings_per_call_max",
                d.plugin_findings_per_call_max.to_string(),
                "findings one plugin call may return",
            ),
            (
                "plugin_message_chars_max",
                d.plugin_message_chars_max.to_string(),
                "characters of a finding message kept",
            ),
            (
                "plugin_rule_id_bytes_max",
                d.plugin_rule_id_bytes_max.to_string(),
                "longest rule id a plugin may declare or return, bytes",
            ),
            (
                "plugin_finding_message_bytes_max",
                d.plugin_finding_message_bytes_max.to_string(),
                "longest finding message a plugin may return, bytes",
            ),
            (
                "plugin_finding_record_bytes_max",
                d.plugin_finding_record_bytes_max.to_string(),
                "longest record id a finding may name, bytes",
            ),
            (
                "plugin_failures_per_file_max",
                d.plugin_failures_per_file_max.to_string(),
                "failed calls of one plugin per file before it is skipped",
            ),
            (
                "converter_call_ms_max",
                d.converter_call_ms_max.to_string(),
                "deadline of one master-format converter call, ms",
            ),
            ("plugin_instances_max", d.plugin_instances_max.to_string(), "live plugin instances in the pool"),
            ("plugin_compiles_max", d.plugin_compiles_max.to_string(), "components compiled at the same time"),
            ("check_batch_receipts_max", d.check_batch_receipts_max.to_string(), "receipts per plugin call"),
            ("check_workers_max", d.check_workers_max.to_string(), "check worker threads (0 = CPUs)"),
            ("check_findings_per_file_max", d.check_findings_per_file_max.to_string(), "findings stored per file"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_lists_every_field() {
        // A limit added to the struct but not to `describe` would be undocumented.
        let json = serde_json_like_field_count();
        assert_eq!(Limits::describe().len(), json);
    }

    #[test]
    fn a_finding_can_quote_the_longest_line() {
        // A legitimate finding quoting a field (or naming an unknown record id) must never
        // break the contract: the longest line's UTF-8 is at most 3 bytes per CP932 byte.
        let d = Limits::default();
        assert!(d.plugin_finding_message_bytes_max > 3 * d.claim_line_bytes_max);
        assert!(d.plugin_finding_record_bytes_max > 3 * d.claim_line_bytes_max);
    }

    fn serde_json_like_field_count() -> usize {
        // Count the struct's fields through its Debug output: one `name: value` per field.
        let dbg = format!("{:?}", Limits::default());
        dbg.matches(": ").count()
    }
}

#[cfg(test)]
mod doc_sync {
    #[test]
    fn docs_limits_md_lists_every_limit() {
        let doc = include_str!("../../../docs/LIMITS.md");
        for (name, _, _) in super::Limits::describe() {
            assert!(doc.contains(&format!("`{name}`")), "docs/LIMITS.md does not document {name}");
        }
    }
}
