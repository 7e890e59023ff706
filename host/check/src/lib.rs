//! The check pipeline: parse a claim file, run every rule plugin on it, collect findings.
//!
//! Work is split into jobs (one file-level job per plugin, then batches of
//! `check_batch_receipts_max` receipts) that idle worker threads pull from a shared counter,
//! so no worker idles while another has a backlog. The same loop drives either the wasm
//! plugins (the product) or the same rules linked natively (`Engine::Native`: the
//! performance baseline and the differential-test oracle).
//!
//! A plugin that fails (trap, timeout, memory, stack, output flood) gets `plugin.` findings
//! on the receipts it failed on; after `plugin_failures_per_file_max` failed calls it is
//! skipped for the rest of the file, so a looping plugin costs at most that many deadlines.
//! Other plugins are unaffected.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tenken_limits::Limits;
use tenken_model::{self as m, Finding, Payer, PluginFailure};
use tenken_runtime::{Batch, FileInput, Plugin, Runtime};

pub use tenken_runtime::RuntimeError;

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(
        "cannot tell which payer receives this file: its IR record does not say 1 (ssk) or 2 (kokuho); pass --payer ssk|kokuho"
    )]
    NoPayer,
    #[error("could not load plugin {name}: {source}")]
    Plugin { name: String, source: RuntimeError },
    #[error("no plugins to run")]
    NoPlugins,
}

/// Which implementation of the rules runs.
pub enum Engine {
    /// Sandboxed components (the product).
    Wasm { runtime: Arc<Runtime>, plugins: Vec<Arc<Plugin>> },
    /// The same rule pack linked into the host: baseline and oracle, never for untrusted rules.
    Native { packs: Vec<tenken_rulepack::Pack> },
}

impl Engine {
    /// The bundled default plugins in the sandbox.
    pub fn bundled(runtime: Arc<Runtime>) -> Result<Engine, CheckError> {
        let plugins = tenken_bundled::DEFAULT_PLUGINS
            .iter()
            .map(|(name, bytes)| {
                Plugin::load(&runtime, bytes)
                    .map(Arc::new)
                    .map_err(|source| CheckError::Plugin { name: name.to_string(), source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Engine::Wasm { runtime, plugins })
    }

    /// The default rule pack linked natively.
    pub fn native() -> Engine {
        Engine::Native { packs: tenken_rulepack::packs().into_iter().collect() }
    }

    pub fn plugin_refs(&self) -> Vec<PluginRef> {
        match self {
            Engine::Wasm { plugins, .. } => plugins
                .iter()
                .map(|p| PluginRef {
                    name: p.info.name.clone(),
                    version: p.info.version.clone(),
                    digest: p.digest.to_string(),
                })
                .collect(),
            Engine::Native { packs } => packs
                .iter()
                .map(|p| PluginRef {
                    name: p.name.to_string(),
                    version: p.version.to_string(),
                    digest: "native".into(),
                })
                .collect(),
        }
    }

    /// Every rule the engine's plugins declare (for `tenken rules` and docs).
    pub fn rules(&self) -> Vec<(String, m::RuleInfo)> {
        match self {
            Engine::Wasm { plugins, .. } => {
                plugins.iter().flat_map(|p| p.info.rules.iter().map(|r| (p.info.name.clone(), r.clone()))).collect()
            }
            Engine::Native { packs } => {
                packs.iter().flat_map(|p| (p.rules)().into_iter().map(|r| (p.name.to_string(), r))).collect()
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Engine::Wasm { plugins, .. } => plugins.len(),
            Engine::Native { packs } => packs.len(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginRef {
    pub name: String,
    pub version: String,
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileSummary {
    pub payer: Payer,
    pub institution: Option<String>,
    /// `YYYY-MM`.
    pub billing_month: Option<String>,
    pub receipts: usize,
}

/// The result of checking one file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub file: FileSummary,
    pub plugins: Vec<PluginRef>,
    pub findings: Vec<Finding>,
    /// Findings beyond `check_findings_per_file_max`, counted but not kept.
    #[serde(skip_serializing_if = "is_zero")]
    pub findings_dropped: u64,
    #[serde(skip)]
    pub timings: Timings,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub parse: Duration,
    pub check: Duration,
}

impl Report {
    pub fn count(&self, severity: m::Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == severity).count()
    }

    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == m::Severity::Error)
    }
}

/// Checks claim files with one engine and one master set. Reusable across files.
pub struct Checker {
    engine: Engine,
    masters: Arc<dyn m::Masters + Send + Sync>,
    limits: Limits,
}

enum Job {
    File(usize),
    Batch(std::ops::Range<usize>),
}

/// One file prepared for checking by one [`Checker`]: the parsed claim, the context every
/// plugin call gets, the file view already converted for the sandbox, and each plugin's
/// failure count in this file. The server keeps one per file being checked so that chunks
/// of the file can be checked by different workers at different times.
pub struct FileJob {
    claim: Arc<m::Claim>,
    ctx: m::CheckContext,
    file_input: Option<FileInput>,
    failures: Vec<AtomicU32>,
}

impl FileJob {
    pub fn claim(&self) -> &m::Claim {
        &self.claim
    }

    pub fn payer(&self) -> Payer {
        self.ctx.payer
    }
}

impl Checker {
    pub fn new(engine: Engine, masters: Arc<dyn m::Masters + Send + Sync>, limits: Limits) -> Checker {
        Checker { engine, masters, limits }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Parses and checks one file. `payer` overrides the IR's 審査支払機関.
    pub fn check_bytes(&self, bytes: &[u8], payer: Option<Payer>) -> Result<Report, CheckError> {
        let t0 = Instant::now();
        let claim = Arc::new(tenken_claim::parse(bytes, &self.limits));
        let parse = t0.elapsed();
        let mut report = self.check_claim(claim, payer)?;
        report.timings.parse = parse;
        Ok(report)
    }

    /// Prepares a parsed claim for checking in pieces ([`Checker::check_file_level`],
    /// [`Checker::check_range`]). `payer` overrides the IR's 審査支払機関.
    pub fn prepare(&self, claim: Arc<m::Claim>, payer: Option<Payer>) -> Result<FileJob, CheckError> {
        let payer = payer.or(claim.payer()).ok_or(CheckError::NoPayer)?;
        if self.engine.len() == 0 {
            return Err(CheckError::NoPlugins);
        }
        let ctx = m::CheckContext { payer, header: claim.file.header.clone() };
        let file_input = match &self.engine {
            Engine::Wasm { .. } => Some(FileInput::new(&ctx, &claim.file)),
            Engine::Native { .. } => None,
        };
        let failures = (0..self.engine.len()).map(|_| AtomicU32::new(0)).collect();
        Ok(FileJob { claim, ctx, file_input, failures })
    }

    /// The file-level checks of every plugin (not the parser's findings, which are in
    /// `job.claim().parse_findings`).
    pub fn check_file_level(&self, job: &FileJob) -> Vec<Finding> {
        let mut out = Vec::new();
        for p in 0..self.engine.len() {
            self.run_job(&Job::File(p), job, &mut out);
        }
        out
    }

    /// The receipt checks of every plugin on receipts `range` (indices into
    /// `job.claim().receipts`, clamped to it), in batches of `check_batch_receipts_max`.
    pub fn check_range(&self, job: &FileJob, range: std::ops::Range<usize>) -> Vec<Finding> {
        let n = job.claim.receipts.len();
        let (start, end) = (range.start.min(n), range.end.min(n));
        let batch = self.limits.check_batch_receipts_max.max(1) as usize;
        let mut out = Vec::new();
        for s in (start..end).step_by(batch) {
            self.run_job(&Job::Batch(s..(s + batch).min(end)), job, &mut out);
        }
        out
    }

    /// Sorts the findings of a whole file and keeps at most `check_findings_per_file_max`.
    pub fn report(&self, job: &FileJob, mut findings: Vec<Finding>, check: Duration) -> Report {
        m::sort_findings(&mut findings);
        let max = self.limits.check_findings_per_file_max as usize;
        let dropped = findings.len().saturating_sub(max) as u64;
        findings.truncate(max);
        let claim = &job.claim;
        let header = claim.file.header.as_ref();
        Report {
            file: FileSummary {
                payer: job.ctx.payer,
                institution: header.map(|h| h.institution_code.clone()),
                billing_month: header.and_then(|h| h.billing_month).map(|b| b.to_string()),
                receipts: claim.receipts.len(),
            },
            plugins: self.engine.plugin_refs(),
            findings,
            findings_dropped: dropped,
            timings: Timings { parse: Duration::ZERO, check },
        }
    }

    /// Checks an already parsed claim, spreading the work over worker threads.
    pub fn check_claim(&self, claim: Arc<m::Claim>, payer: Option<Payer>) -> Result<Report, CheckError> {
        let t0 = Instant::now();
        let job = self.prepare(claim, payer)?;
        let batch = self.limits.check_batch_receipts_max.max(1) as usize;
        let mut jobs: Vec<Job> = (0..self.engine.len()).map(Job::File).collect();
        let n = job.claim.receipts.len();
        jobs.extend((0..n).step_by(batch).map(|s| Job::Batch(s..(s + batch).min(n))));

        let workers = match self.limits.check_workers_max {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            w => w as usize,
        }
        .min(jobs.len())
        .max(1);
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Finding>> = Mutex::new(job.claim.parse_findings.clone());

        std::thread::scope(|scope| {
            for w in 0..workers {
                let (next, jobs, results, job) = (&next, &jobs, &results, &job);
                std::thread::Builder::new()
                    .name(format!("tenken-check-{w}"))
                    // Room for the wasm stack limit plus host frames.
                    .stack_size(8 << 20)
                    .spawn_scoped(scope, move || {
                        let mut local = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(j) = jobs.get(i) else { break };
                            self.run_job(j, job, &mut local);
                        }
                        results.lock().unwrap().extend(local);
                    })
                    .expect("spawn check worker");
            }
        });

        let findings = results.into_inner().unwrap();
        Ok(self.report(&job, findings, t0.elapsed()))
    }

    fn run_job(&self, job: &Job, s: &FileJob, out: &mut Vec<Finding>) {
        match (&self.engine, job) {
            (Engine::Wasm { plugins, .. }, Job::File(p)) => {
                let plugin = &plugins[*p];
                match plugin.check_file(&self.masters, s.file_input.as_ref().expect("wasm input")) {
                    Ok(f) => out.extend(f),
                    Err(e) => {
                        s.failures[*p].fetch_add(1, Ordering::Relaxed);
                        out.push(failure_finding(&plugin.info.name, e.kind, &e.message, None));
                    }
                }
            }
            (Engine::Native { packs }, Job::File(p)) => {
                let pack = &packs[*p];
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    (pack.check_file)(&s.ctx, &s.claim.file)
                })) {
                    Ok(f) => out.extend(f),
                    Err(_) => out.push(failure_finding(pack.name, PluginFailure::Trap, "panicked", None)),
                }
            }
            (Engine::Wasm { plugins, .. }, Job::Batch(range)) => {
                let receipts = &s.claim.receipts[range.clone()];
                let batch = Batch::new(receipts);
                for (p, plugin) in plugins.iter().enumerate() {
                    self.run_wasm_batch(plugin, p, receipts, &batch, s, out);
                }
            }
            (Engine::Native { packs }, Job::Batch(range)) => {
                let receipts = &s.claim.receipts[range.clone()];
                for pack in packs {
                    let masters: &dyn m::Masters = &*self.masters;
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        (pack.check_receipts)(&s.ctx, receipts, masters)
                    })) {
                        Ok(f) => out.extend(f),
                        Err(_) => {
                            for r in receipts {
                                out.push(failure_finding(pack.name, PluginFailure::Trap, "panicked", Some(r)));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Runs one plugin on one batch; on a trap, retries receipt by receipt (while the
    /// plugin's failure budget lasts) so only the receipts it really fails on are marked.
    fn run_wasm_batch(
        &self,
        plugin: &Plugin,
        p: usize,
        receipts: &[m::Receipt],
        batch: &Batch,
        s: &FileJob,
        out: &mut Vec<Finding>,
    ) {
        let budget = self.limits.plugin_failures_per_file_max;
        let input = s.file_input.as_ref().expect("wasm input");
        if s.failures[p].load(Ordering::Relaxed) >= budget {
            for r in receipts {
                out.push(skipped_finding(&plugin.info.name, budget, r));
            }
            return;
        }
        let failure = match plugin.check_receipts(&self.masters, input, batch) {
            Ok(f) => {
                out.extend(f);
                return;
            }
            Err(e) => e,
        };
        s.failures[p].fetch_add(1, Ordering::Relaxed);
        tracing::warn!(plugin = %plugin.info.name, kind = failure.kind.rule_id(), output = %failure.output_tail, "plugin call failed");
        let retry = receipts.len() > 1 && failure.kind != PluginFailure::Timeout;
        if !retry {
            for r in receipts {
                out.push(failure_finding(&plugin.info.name, failure.kind, &failure.message, Some(r)));
            }
            return;
        }
        for r in receipts {
            if s.failures[p].load(Ordering::Relaxed) >= budget {
                out.push(skipped_finding(&plugin.info.name, budget, r));
                continue;
            }
            match plugin.check_receipts(&self.masters, input, &Batch::new(std::slice::from_ref(r))) {
                Ok(f) => out.extend(f),
                Err(e) => {
                    s.failures[p].fetch_add(1, Ordering::Relaxed);
                    out.push(failure_finding(&plugin.info.name, e.kind, &e.message, Some(r)));
                }
            }
        }
    }
}

fn failure_finding(plugin: &str, kind: PluginFailure, message: &str, receipt: Option<&m::Receipt>) -> Finding {
    let f = Finding::error(
        kind.rule_id(),
        format!(
            "plugin {plugin} {message}; its checks did not run on this {}",
            if receipt.is_some() { "receipt" } else { "file" }
        ),
    );
    match receipt {
        Some(r) => f.receipt(r.number).at(r.line, "RE", None),
        None => f,
    }
}

fn skipped_finding(plugin: &str, budget: u32, r: &m::Receipt) -> Finding {
    Finding::error(
        PluginFailure::Skipped.rule_id(),
        format!("plugin {plugin} failed {budget} times in this file (plugin_failures_per_file_max) and was not run on this receipt"),
    )
    .receipt(r.number)
    .at(r.line, "RE", None)
}
