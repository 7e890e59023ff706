//! Server configuration: defaults ← TOML file ← `TENKEN_CFG__…` environment ← flags.
//!
//! Every limit is named with its unit and documented here; `tenken serve --print-config`
//! prints the effective configuration, and docs/LIMITS.md lists the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tenken_limits::Limits;
use tenken_model::Payer;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (printed at start and written to
    /// `<data_dir>/serve.addr`).
    pub listen: SocketAddr,
    /// The SQLite database and blob files (unless `store.url` names PostgreSQL), the
    /// masters directory and the plugin artifact cache live here.
    pub data_dir: PathBuf,
    /// Where compiled plugin artifacts are cached; default `<data_dir>/artifacts`.
    pub cache_dir: Option<PathBuf>,
    /// Install the project's demo masters (made-up tariffs, for trying tenken out) for a
    /// payer that has none. Off by default: a server without masters refuses claims with a
    /// message saying how to install them, instead of checking them against demo tariffs.
    pub demo_masters: bool,
    pub windows: WindowConfig,
    pub admission: Admission,
    pub api: Api,
    pub schedule: Schedule,
    pub store: StoreConfig,
    pub ssk: PayerConfig,
    pub kokuho: PayerConfig,
    /// The check pipeline's limits (plugin deadline, memory, batch size, ...).
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".parse().expect("literal address"),
            data_dir: PathBuf::from("tenken-data"),
            cache_dir: None,
            demo_masters: false,
            windows: WindowConfig::default(),
            admission: Admission::default(),
            api: Api::default(),
            schedule: Schedule::default(),
            store: StoreConfig::default(),
            ssk: PayerConfig::default(),
            kokuho: PayerConfig {
                master_format: "kokuho-fixed".into(),
                proposes_masters: false,
                ..PayerConfig::default()
            },
            limits: Limits::default(),
        }
    }
}

/// Acceptance windows (Asia/Tokyo; Japan has no daylight saving, so a fixed +09:00).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowConfig {
    /// `calendar`: a file for 請求年月 M is accepted from M/`open_day` 00:00 to
    /// M/`close_day` 24:00 (staff may extend per payer and month). `always-open`: for demos
    /// and development only.
    pub mode: WindowMode,
    pub open_day: u8,
    pub close_day: u8,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig { mode: WindowMode::Calendar, open_day: 5, close_day: 10 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowMode {
    Calendar,
    AlwaysOpen,
}

/// Admission control: what keeps a surge from taking the server down (2022-05).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Admission {
    /// Largest claim file accepted over HTTP, in bytes (413 beyond).
    pub submission_bytes_max: u64,
    /// Uploads being received or stored at once; more get 503 at once.
    pub uploads_inflight_max: u32,
    /// Open connections; beyond, a connection is answered 503 and closed.
    pub connections_max: u32,
    /// Connections being refused (answered 503) at once; beyond, a connection is closed
    /// without an answer, so a surge can never grow the server's task count unbounded.
    pub refusals_inflight_max: u32,
    /// Longest a refusal may take (reading the request, writing the 503), in milliseconds.
    pub refusal_timeout_ms: u64,
    /// Bytes of an oversized body read and discarded before answering 413, so that an
    /// ordinary client that sends its whole body first gets the answer instead of a broken
    /// connection; larger bodies are answered at once and the connection closed.
    pub body_drain_bytes_max: u64,
    /// Time to receive the request headers, in milliseconds (slowloris).
    pub header_read_timeout_ms: u64,
    /// Time to receive a request body, in milliseconds (408 beyond).
    pub body_read_timeout_ms: u64,
    /// Submissions one institution may make per minute (429 beyond).
    pub submissions_per_institution_per_minute_max: u32,
    /// Burst allowed above the per-minute rate.
    pub submissions_per_institution_burst_max: u32,
    /// Base of the Retry-After answered with 503/429, in seconds; a random 0..base jitter
    /// is added so refused clients do not come back together.
    pub retry_after_s: u64,
    /// Time given to in-flight requests at shutdown, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Token lookups cached, and for how long (revocation takes effect within this), in ms.
    pub token_cache_entries_max: u32,
    pub token_cache_ms: u64,
    /// Findings per page of the findings API.
    pub findings_page_max: u32,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            submission_bytes_max: 64 * 1024 * 1024,
            uploads_inflight_max: 512,
            body_drain_bytes_max: 16 * 1024 * 1024,
            connections_max: 4096,
            refusals_inflight_max: 256,
            refusal_timeout_ms: 2_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 60_000,
            submissions_per_institution_per_minute_max: 60,
            submissions_per_institution_burst_max: 20,
            retry_after_s: 5,
            shutdown_grace_ms: 10_000,
            token_cache_entries_max: 100_000,
            token_cache_ms: 5_000,
            findings_page_max: 1_000,
        }
    }
}

/// Bounds of what one API request reads, lists or accepts (beyond admission).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Api {
    /// Submissions listed per page when the request does not say, entries.
    pub list_page_default: u32,
    /// Submissions listed per page at most, entries.
    pub list_page_max: u32,
    /// Audit events listed when the request does not say, entries.
    pub audit_page_default: u32,
    /// Audit events listed at most, entries.
    pub audit_page_max: u32,
    /// Notices listed, newest first, entries.
    pub notices_listed_max: u32,
    /// Longest notice a payer may post, characters.
    pub notice_chars_max: u32,
    /// Longest `Idempotency-Key` header, bytes.
    pub idempotency_key_bytes_max: u32,
    /// Plugins in one release set, entries.
    pub release_set_plugins_max: u32,
    /// Newest submissions looked at when the master impact check samples real files
    /// (the sample itself is bounded per payer by `master_impact_sample_*`), entries.
    pub impact_sample_scan_max: u32,
    /// Differences a refused conversion names in its 422, entries.
    pub conversion_diffs_shown_max: u32,
    /// Entries a master version's stored diff lists per kind and list (added, 点数 changes,
    /// abolished, restored, removed; the counts are always totals), entries.
    pub master_diff_codes_listed_max: u32,
    /// Changed entries a stored diff shows field by field per kind, entries.
    pub master_diff_examples_max: u32,
}

impl Default for Api {
    fn default() -> Self {
        Api {
            list_page_default: 100,
            list_page_max: 1_000,
            audit_page_default: 200,
            audit_page_max: 10_000,
            notices_listed_max: 100,
            notice_chars_max: 2_000,
            idempotency_key_bytes_max: 200,
            release_set_plugins_max: 64,
            impact_sample_scan_max: 200,
            conversion_diffs_shown_max: 20,
            master_diff_codes_listed_max: 5_000,
            master_diff_examples_max: 50,
        }
    }
}

/// Splitting files into chunks and pulling them fairly.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedule {
    /// Receipts per chunk (the unit a worker claims).
    pub chunk_receipts: u32,
    /// This node's name (in `nodes`, decision records and logs); default `node-<pid>`.
    pub node_name: String,
    /// Longest an idle worker waits before asking the store for work again, milliseconds
    /// (work accepted on this node wakes it at once).
    pub idle_poll_ms: u64,
    /// Parsed files kept in memory while their chunks are being checked.
    pub active_files_max: u32,
    /// Node lease, in milliseconds: a node whose lease lapsed loses its claims to other
    /// workers and cannot record results under them.
    pub lease_ms: u64,
    /// Store writes queued; beyond it a write is refused at once (503 + Retry-After).
    pub store_write_queue_max: u32,
    /// Auto-rollback window, in receipts checked by one release set.
    pub auto_rollback_window_receipts: u32,
    /// Auto-rollback threshold: share of those receipts with a plugin failure of any kind.
    pub auto_rollback_failure_rate_max: f64,
    /// Writes committed together (one fsync).
    pub store_group_commit_max: u32,
    /// Scheduling niceness of the check worker threads (0 = as the request threads, up to
    /// 19). Above 0, a CPU that both want goes to accepting submissions first: acceptance
    /// must stay quick under a surge, checking is asynchronous and catches up after.
    pub check_worker_nice: u8,
    /// Loaded plugins (and, separately, converters) kept in memory beyond those in a live
    /// release set, entries (least recently used go first).
    pub registry_plugins_idle_max: u32,
    /// Decoded master sets kept beyond those in force, entries (each is tens of MB for the
    /// real masters).
    pub registry_master_sets_idle_max: u32,
    /// Tables kept for files pinned to release sets or master versions that are no longer
    /// live (a swap while they were being checked), entries (each holds its checkers).
    pub registry_pinned_tables_max: u32,
    /// Lifecycle jobs (validation, proposal, conversion) queued per payer beyond the one
    /// running; beyond it a request is refused at once (503 + Retry-After), entries.
    pub jobs_queued_max: u32,
    /// Jobs kept per payer for reading their result (the newest; running ones always),
    /// entries.
    pub jobs_kept_max: u32,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            chunk_receipts: 256,
            node_name: format!("node-{}", std::process::id()),
            idle_poll_ms: 200,
            active_files_max: 64,
            lease_ms: 15_000,
            store_write_queue_max: 4096,
            auto_rollback_window_receipts: 500,
            auto_rollback_failure_rate_max: 0.5,
            store_group_commit_max: 512,
            check_worker_nice: 5,
            registry_plugins_idle_max: 32,
            registry_master_sets_idle_max: 4,
            registry_pinned_tables_max: 4,
            jobs_queued_max: 16,
            jobs_kept_max: 200,
        }
    }
}

/// Which store, and how a node of a cluster talks to it (docs/CLUSTER.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgresql://USER@HOST:PORT/DB`: run as one node of a cluster on that database
    /// (also `--database-url`, `TENKEN_DATABASE_URL`). Empty: the embedded SQLite store in
    /// `data_dir`, for one node.
    pub url: String,
    /// PostgreSQL connections this node holds at most, connections.
    pub connections_max: u32,
    /// Longest wait for a free connection (or for the database to answer a connect) before
    /// a request is answered 503 + Retry-After, milliseconds.
    pub connection_wait_ms_max: u64,
    /// Longest a statement may run (`statement_timeout`), milliseconds.
    pub statement_ms_max: u64,
    /// Longest a node's session may sit idle inside a transaction before PostgreSQL ends it
    /// (`idle_in_transaction_session_timeout`), milliseconds: a node frozen inside a claim
    /// must not hold the other nodes' claims up for longer.
    pub transaction_idle_ms_max: u64,
    /// While a node's LISTEN connection is broken (the database went away), how often it
    /// looks at the audit log for registry changes made through other nodes and tries to
    /// subscribe again, milliseconds.
    pub change_poll_ms: u64,
    /// The window the cluster view's per-node figures cover (chunks, receipts, busy),
    /// milliseconds.
    pub stats_window_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: String::new(),
            connections_max: 16,
            connection_wait_ms_max: 2_000,
            statement_ms_max: 30_000,
            transaction_idle_ms_max: 2_000,
            change_poll_ms: 1_000,
            stats_window_ms: 60_000,
        }
    }
}

/// One payer's bulkhead.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PayerConfig {
    /// Worker threads that check this payer's chunks and nothing else.
    pub workers: u32,
    /// Chunks queued for this payer; a submission that would exceed it gets 503.
    pub queue_chunks_max: u32,
    /// Masters directory (SSK file layout); default `<data_dir>/masters/<payer>` (seeded with
    /// the demo masters on first start).
    pub masters_dir: Option<PathBuf>,
    /// Extra plugin components added after the bundled defaults to the first release set
    /// (first start only; later changes go through the plugin lifecycle).
    pub plugins_extra: Vec<PathBuf>,
    /// Approvals by staff other than the uploader needed before a plugin can be activated.
    pub approvals_required: u32,
    /// Validation gate: most findings changed (new + vanished) over the regression corpus.
    pub validation_delta_max: u32,
    /// Validation gate: most `plugin.` findings (traps, timeouts) over the regression corpus.
    pub validation_plugin_failures_max: u32,
    /// Largest plugin upload, bytes.
    pub plugin_upload_bytes_max: u64,
    /// Time allowed to compile an uploaded plugin, milliseconds.
    pub plugin_compile_ms_max: u64,
    /// The format of this payer's own master files (a converter name: `ssk-csv`,
    /// `kokuho-fixed`): masters converted for this payer are encoded in it.
    pub master_format: String,
    /// Whether this payer's staff may propose master files of their own. Off for kokuho:
    /// every master kind tenken checks is published by 支払基金, so kokuho's masters come
    /// only as proven conversions of ssk versions, approved by both payers (the route the
    /// May 2022 outage bypassed with hand-supplied files).
    pub proposes_masters: bool,
    /// Impact check: findings changed over the regression corpus beyond which a proposed
    /// master version is flagged (a master that suddenly makes a rule fire is the 2022 error).
    pub master_impact_delta_max: u32,
    /// Impact check: the payer's most recent checked submissions re-checked too (besides
    /// the regression corpus), at most this many files…
    pub master_impact_sample_files_max: u32,
    /// …and at most this many receipts in all (larger files are left out of the sample).
    pub master_impact_sample_receipts_max: u32,
}

impl Default for PayerConfig {
    fn default() -> Self {
        PayerConfig {
            workers: 2,
            queue_chunks_max: 100_000,
            masters_dir: None,
            plugins_extra: Vec::new(),
            approvals_required: 1,
            validation_delta_max: 1_000,
            validation_plugin_failures_max: 0,
            plugin_upload_bytes_max: 64 * 1024 * 1024,
            plugin_compile_ms_max: 120_000,
            master_format: "ssk-csv".into(),
            proposes_masters: true,
            master_impact_delta_max: 50,
            master_impact_sample_files_max: 20,
            master_impact_sample_receipts_max: 20_000,
        }
    }
}

impl Config {
    pub fn payer(&self, p: Payer) -> &PayerConfig {
        match p {
            Payer::Ssk => &self.ssk,
            Payer::Kokuho => &self.kokuho,
        }
    }

    /// Reads the TOML file (if any), then overlays `TENKEN_CFG__SECTION__KEY=value`
    /// environment variables (value parsed as TOML, else taken as a string).
    pub fn load(file: Option<&std::path::Path>, env: impl Iterator<Item = (String, String)>) -> anyhow::Result<Config> {
        // Layered over the whole default configuration, not over each section's type
        // default: `[kokuho]` with one key must keep kokuho's own defaults (its master format,
        // converted-only masters), not become ssk's.
        let mut value = match toml::Value::try_from(Config::default())? {
            toml::Value::Table(t) => t,
            _ => anyhow::bail!("the default configuration is not a table"),
        };
        if let Some(p) = file {
            let text = std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", p.display()))?;
            let over = text.parse::<toml::Table>().map_err(|e| anyhow::anyhow!("config file {}: {e}", p.display()))?;
            merge(&mut value, over);
        }
        for (k, v) in env {
            let Some(path) = k.strip_prefix("TENKEN_CFG__") else { continue };
            let keys: Vec<String> = path.split("__").map(|s| s.to_ascii_lowercase()).collect();
            let parsed = format!("x = {v}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("x"))
                .unwrap_or(toml::Value::String(v.clone()));
            set_path(&mut value, &keys, parsed);
        }
        let config: Config =
            toml::Value::Table(value).try_into().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        Ok(config)
    }
}

/// `over` on top of `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn set_path(table: &mut toml::Table, keys: &[String], v: toml::Value) {
    match keys {
        [] => {}
        [last] => {
            table.insert(last.clone(), v);
        }
        [first, rest @ ..] => {
            let entry = table.entry(first.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(t) = entry {
                set_path(t, rest, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_documented() {
        // A setting added to the struct but not to docs/SERVER.md would be undocumented.
        let doc = include_str!("../../../docs/SERVER.md");
        let value = toml::Value::try_from(Config::default()).unwrap();
        let mut missing = Vec::new();
        for (section, v) in value.as_table().unwrap() {
            if section == "limits" {
                continue; // docs/LIMITS.md, checked by tenken-limits
            }
            match v.as_table() {
                Some(t) => {
                    for key in t.keys() {
                        let plain = format!("`{section}.{key}`");
                        let shared = format!("`ssk.{key}`, `kokuho.{key}`");
                        if !doc.contains(&plain) && !doc.contains(&shared) {
                            missing.push(format!("{section}.{key}"));
                        }
                    }
                }
                None => {
                    if !doc.contains(&format!("`{section}`")) {
                        missing.push(section.clone());
                    }
                }
            }
        }
        assert!(missing.is_empty(), "docs/SERVER.md does not document {missing:?}");
    }

    /// Overriding one key of `[kokuho]` (file or env) used to rebuild the whole section from
    /// the type's default, silently turning kokuho's master format into ssk-csv.
    #[test]
    fn a_section_override_keeps_that_sections_other_defaults() {
        let env = [("TENKEN_CFG__KOKUHO__WORKERS".to_owned(), "1".to_owned())];
        let c = Config::load(None, env.into_iter()).unwrap();
        assert_eq!(c.kokuho.workers, 1);
        assert_eq!(c.kokuho.master_format, "kokuho-fixed");
        assert!(!c.kokuho.proposes_masters);
        assert_eq!(c.ssk.master_format, "ssk-csv");
        let dir = std::env::temp_dir().join(format!("tenken-config-sections-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.toml");
        std::fs::write(&file, "[kokuho]\nproposes_masters = true\n").unwrap();
        let c = Config::load(Some(&file), std::iter::empty()).unwrap();
        assert!(c.kokuho.proposes_masters);
        assert_eq!(c.kokuho.master_format, "kokuho-fixed");
        std::fs::write(&file, "[kokuho]\nno_such_key = 1\n").unwrap();
        let e = Config::load(Some(&file), std::iter::empty()).unwrap_err().to_string();
        assert!(e.contains("no_such_key"), "unknown keys are still refused: {e}");
    }

    #[test]
    fn env_overrides_file_values() {
        let dir = std::env::temp_dir().join(format!("tenken-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:0\"\n[admission]\nretry_after_s = 9\n[kokuho]\nworkers = 1\n")
            .unwrap();
        let env = vec![
            ("TENKEN_CFG__ADMISSION__RETRY_AFTER_S".to_string(), "3".to_string()),
            ("TENKEN_CFG__WINDOWS__MODE".to_string(), "always-open".to_string()),
            ("TENKEN_CFG__LIMITS__PLUGIN_CALL_MS_MAX".to_string(), "400".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = Config::load(Some(&file), env.into_iter()).unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.admission.retry_after_s, 3);
        assert_eq!(c.kokuho.workers, 1);
        assert_eq!(c.windows.mode, WindowMode::AlwaysOpen);
        assert_eq!(c.limits.plugin_call_ms_max, 400);
        let bad = Config::load(None, vec![("TENKEN_CFG__NOPE".to_string(), "1".to_string())].into_iter());
        assert!(bad.unwrap_err().to_string().contains("nope"));
    }
}
