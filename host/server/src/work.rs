//! Checking accepted submissions: per-payer queues and worker pools (bulkheads), chunks
//! pulled by idle workers, fair across institutions (deficit round robin), each receipt
//! checked by the release set in force for its 診療年月, results recorded once under a
//! node lease.
//!
//! Why per-payer pools: in 2022 one side's broken master stalled both payers. A payer's
//! workers take only that payer's chunks, so a plugin that hangs on one side costs that side
//! its own workers and nothing else. Within a payer, workers pull; none idles while the
//! payer has a backlog.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::registry::{LiveMaster, LiveSet};
use std::time::{Duration, Instant};

use tenken_check::FileJob;
use tenken_model::{self as m, Finding, Payer, Severity};
use tenken_sched::{ChunkRef, SharedQueue};
use tenken_store::{ChunkOutcome, ChunkResult, Counts, Store, Submission, SubmissionId};

use crate::metrics::{FailureLabel, Metrics, PayerLabel, WorkerLabel};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A file being checked: parsed once, prepared once per release set.
struct Active {
    claim: Arc<m::Claim>,
    /// Prepared per (release set id, master version id).
    jobs: Mutex<HashMap<(i64, i64), Arc<FileJob>>>,
}

pub struct PayerWork {
    pub payer: Payer,
    pub queue: SharedQueue<String>,
    pub workers: u32,
    pub queue_chunks_max: u32,
    active: Mutex<HashMap<SubmissionId, Arc<OnceLock<Result<Arc<Active>, String>>>>>,
    /// Chunks queued or running, so sweeps do not queue them twice.
    scheduled: Mutex<HashSet<(SubmissionId, u32)>>,
}

pub struct WorkOptions {
    pub chunk_receipts: u32,
    pub quantum_receipts: u32,
    pub active_files_max: u32,
    pub lease_ms: u64,
    pub findings_per_file_max: u32,
    /// Auto-rollback: the sliding window, in receipts, over which a release set's plugin
    /// failures are counted, and the failure rate (failed receipts / receipts) beyond which
    /// the payer's previous release set for the same months is restored.
    pub auto_rollback_window_receipts: u32,
    pub auto_rollback_failure_rate_max: f64,
    /// Niceness of the worker threads (see `schedule.check_worker_nice`).
    pub worker_nice: u8,
}

/// Failures of one release set over its last receipts.
#[derive(Default)]
struct Health {
    window: std::collections::VecDeque<(u32, u32)>,
    receipts: u64,
    failed: u64,
    rolled_back: bool,
}

pub struct Work {
    store: Arc<dyn Store>,
    pub registry: Arc<crate::registry::Registry>,
    health: Mutex<HashMap<i64, Health>>,
    metrics: Arc<Metrics>,
    payers: Vec<Arc<PayerWork>>,
    owner: AtomicI64,
    options: WorkOptions,
    shutdown: AtomicBool,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// How a submission of `receipts` receipts is split: chunk 0 is the file-level work, chunks
/// 1.. cover `chunk_receipts` receipts each (the last one is open-ended, so a parser that
/// finds more receipts than the acceptance scan counted still covers them all).
pub fn chunk_count(receipts: u32, chunk_receipts: u32) -> u32 {
    1 + receipts.div_ceil(chunk_receipts.max(1)).max(1)
}

fn chunk_range(index: u32, chunks: u32, chunk_receipts: u32) -> std::ops::Range<usize> {
    let b = chunk_receipts.max(1) as usize;
    let start = (index as usize - 1) * b;
    let end = if index + 1 >= chunks { usize::MAX } else { start + b };
    start..end
}

fn chunk_cost(index: u32, receipts: u32, chunks: u32, chunk_receipts: u32) -> u32 {
    if index == 0 {
        return 1;
    }
    let r = chunk_range(index, chunks, chunk_receipts);
    (receipts as usize).min(r.end).saturating_sub(r.start).max(1) as u32
}

impl Work {
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        registry: Arc<crate::registry::Registry>,
        payers: Vec<(Payer, u32, u32)>,
        options: WorkOptions,
        owner: i64,
    ) -> Arc<Work> {
        let payers = payers
            .into_iter()
            .map(|(payer, workers, queue_chunks_max)| {
                Arc::new(PayerWork {
                    payer,
                    queue: SharedQueue::new(options.quantum_receipts, (queue_chunks_max as usize).saturating_mul(2)),
                    workers,
                    queue_chunks_max,
                    active: Mutex::new(HashMap::new()),
                    scheduled: Mutex::new(HashSet::new()),
                })
            })
            .collect();
        Arc::new(Work {
            store,
            registry,
            health: Mutex::new(HashMap::new()),
            metrics,
            payers,
            owner: AtomicI64::new(owner),
            options,
            shutdown: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        })
    }

    pub fn payer(&self, p: Payer) -> &Arc<PayerWork> {
        self.payers.iter().find(|w| w.payer == p).expect("every payer has a pool")
    }

    pub fn options(&self) -> &WorkOptions {
        &self.options
    }

    /// Starts the worker threads, the lease keeper and the sweeper.
    pub fn start(self: &Arc<Self>) {
        let mut threads = self.threads.lock().unwrap();
        for pw in &self.payers {
            for w in 0..pw.workers {
                let (work, pw) = (self.clone(), pw.clone());
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("tenken-{}-{w}", pw.payer))
                        .stack_size(8 << 20)
                        .spawn(move || {
                            lower_priority(work.options.worker_nice);
                            work.worker_loop(&pw, w)
                        })
                        .expect("spawn worker"),
                );
            }
        }
        let work = self.clone();
        threads.push(
            std::thread::Builder::new()
                .name("tenken-lease".into())
                .spawn(move || work.housekeeping_loop())
                .expect("spawn lease keeper"),
        );
    }

    /// Stops taking chunks; running chunks finish; queued ones stay pending in the store
    /// and are resumed at the next start.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for pw in &self.payers {
            pw.queue.close();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap());
        for t in threads {
            let _ = t.join();
        }
    }

    /// Queues the missing chunks of a pending submission (all when `missing` is None).
    pub fn enqueue(&self, s: &Submission, missing: Option<Vec<u32>>) {
        let pw = self.payer(s.payer);
        let missing = missing.unwrap_or_else(|| (0..s.chunks).collect());
        let mut scheduled = pw.scheduled.lock().unwrap();
        let chunks: Vec<ChunkRef> = missing
            .into_iter()
            .filter(|&i| scheduled.insert((s.id, i)))
            .map(|i| ChunkRef {
                submission: s.id,
                index: i,
                cost: chunk_cost(i, s.receipts, s.chunks, s.chunk_receipts),
            })
            .collect();
        drop(scheduled);
        if chunks.is_empty() {
            return;
        }
        let n = chunks.len();
        if let Err(e) = pw.queue.push_all(s.institution.clone(), chunks.clone()) {
            // Admission keeps the queue below its bound; if it is full anyway, the chunks
            // stay pending in the store and the sweeper queues them later.
            tracing::warn!(submission = s.id, error = %e, "queue full; chunks left for the sweeper");
            let mut scheduled = pw.scheduled.lock().unwrap();
            for c in chunks {
                scheduled.remove(&(c.submission, c.index));
            }
            return;
        }
        self.metrics.queue_chunks.get_or_create(&PayerLabel { payer: s.payer.to_string() }).inc_by(n as i64);
    }

    /// Drops the queued chunks of a withdrawn or superseded submission.
    pub fn forget(&self, payer: Payer, id: SubmissionId) {
        let pw = self.payer(payer);
        let n = pw.queue.remove_submission(id);
        pw.scheduled.lock().unwrap().retain(|(s, _)| *s != id);
        pw.active.lock().unwrap().remove(&id);
        self.metrics.queue_chunks.get_or_create(&PayerLabel { payer: payer.to_string() }).dec_by(n as i64);
    }

    /// Queues everything the store says is pending and finalizes what is fully checked.
    pub fn recover(&self) -> Result<usize, tenken_store::StoreError> {
        let pending = self.store.pending()?;
        let n = pending.len();
        for (s, missing) in pending {
            if missing.is_empty() {
                self.finalize(&s);
            } else {
                self.enqueue(&s, Some(missing));
            }
        }
        Ok(n)
    }

    fn housekeeping_loop(&self) {
        let lease = self.options.lease_ms as i64;
        let tick = Duration::from_millis((self.options.lease_ms / 3).max(50));
        let mut last_sweep = Instant::now();
        while !self.shutdown.load(Ordering::SeqCst) {
            std::thread::sleep(tick.min(Duration::from_millis(200)));
            let owner = self.owner.load(Ordering::SeqCst);
            if last_sweep.elapsed() < tick {
                continue;
            }
            last_sweep = Instant::now();
            match self.store.renew_node(owner, now_ms(), lease) {
                Ok(true) => {}
                Ok(false) => {
                    // Our lease lapsed (a long pause): results recorded under it are refused.
                    // Take a new one and queue again whatever is still pending.
                    tracing::error!(owner, "node lease lapsed; re-registering");
                    if let Ok(o) = self.store.register_node(now_ms(), lease) {
                        self.owner.store(o, Ordering::SeqCst);
                    }
                }
                Err(e) => tracing::error!(error = %e, "renewing node lease failed"),
            }
            // Sweep: anything pending that is not queued or running (store errors, a full
            // queue, a lapsed lease) goes back to the queue.
            if let Err(e) = self.recover() {
                tracing::error!(error = %e, "sweep failed");
            }
        }
    }

    fn worker_loop(&self, pw: &PayerWork, w: u32) {
        let busy = self
            .metrics
            .worker_busy
            .get_or_create(&WorkerLabel { payer: pw.payer.to_string(), worker: w.to_string() })
            .clone();
        let depth = self.metrics.queue_chunks.get_or_create(&PayerLabel { payer: pw.payer.to_string() }).clone();
        while !self.shutdown.load(Ordering::SeqCst) {
            let Some((_, chunk)) = pw.queue.pop_wait(Duration::from_millis(200)) else { continue };
            depth.dec();
            let t0 = Instant::now();
            let span =
                tracing::info_span!("chunk", payer = %pw.payer, submission = chunk.submission, index = chunk.index);
            let _g = span.enter();
            if let Err(e) = self.run_chunk(pw, chunk) {
                tracing::error!(error = %e, "chunk failed; it stays pending and the sweeper retries it");
            }
            pw.scheduled.lock().unwrap().remove(&(chunk.submission, chunk.index));
            busy.inc_by(t0.elapsed().as_secs_f64());
        }
    }

    fn active(&self, pw: &PayerWork, s: &Submission) -> Result<Arc<Active>, String> {
        let cell = {
            let mut map = pw.active.lock().unwrap();
            if !map.contains_key(&s.id) && map.len() >= self.options.active_files_max.max(1) as usize {
                // Bounded: drop another file's parse; it is parsed again if still needed.
                if let Some(k) = map.keys().next().copied() {
                    map.remove(&k);
                }
            }
            map.entry(s.id).or_default().clone()
        };
        cell.get_or_init(|| {
            let bytes = self.store.bytes(&s.digest).map_err(|e| e.to_string())?;
            let claim = Arc::new(tenken_claim::parse(&bytes, &self.registry.limits));
            Ok(Arc::new(Active { claim, jobs: Mutex::new(HashMap::new()) }))
        })
        .clone()
    }

    fn job(
        &self,
        pw: &PayerWork,
        active: &Active,
        set: &LiveSet,
        m: usize,
        master: &LiveMaster,
    ) -> Result<Arc<FileJob>, String> {
        let key = (set.id, master.id);
        if let Some(j) = active.jobs.lock().unwrap().get(&key) {
            return Ok(j.clone());
        }
        let job = Arc::new(set.checkers[m].prepare(active.claim.clone(), Some(pw.payer)).map_err(|e| e.to_string())?);
        Ok(active.jobs.lock().unwrap().entry(key).or_insert(job).clone())
    }

    fn run_chunk(&self, pw: &PayerWork, chunk: ChunkRef) -> Result<(), String> {
        let Some(s) = self.store.get(chunk.submission).map_err(|e| e.to_string())? else {
            return Err(format!("submission {} vanished", chunk.submission));
        };
        if !s.state.is_pending() {
            return Ok(());
        }
        let active = self.active(pw, &s)?;
        // The table in force when this chunk started: kept for the whole chunk (hot swap).
        let table = self.registry.table_for_work(pw.payer);
        let started_ms = now_ms();
        let claim = &active.claim;
        let mut findings: Vec<Finding> = Vec::new();
        let mut receipts = 0usize;
        let mut decision: Vec<serde_json::Value> = Vec::new();
        let mut per_set: Vec<(i64, u32, u32)> = Vec::new();
        if chunk.index == 0 {
            findings.extend(claim.parse_findings.iter().cloned());
            let billing = claim.file.header.as_ref().and_then(|h| h.billing_month);
            let (k, m) = table.pick(billing);
            let (set, master) = (&table.sets[k], &table.masters[m]);
            let job = self.job(pw, &active, set, m, master)?;
            findings.extend(set.checkers[m].check_file_level(&job));
            decision.push(decision_entry(set, master, None, started_ms));
        } else {
            let r = chunk_range(chunk.index, s.chunks, s.chunk_receipts);
            let n = claim.receipts.len();
            let (start, end) = (r.start.min(n), r.end.min(n));
            receipts = end - start;
            // Runs of receipts with the same release set (by 診療年月) go together.
            let mut i = start;
            while i < end {
                let (k, m) = table.pick(claim.receipts[i].service_month);
                let mut j = i + 1;
                while j < end && table.pick(claim.receipts[j].service_month) == (k, m) {
                    j += 1;
                }
                let (set, master) = (&table.sets[k], &table.masters[m]);
                let job = self.job(pw, &active, set, m, master)?;
                let found = set.checkers[m].check_range(&job, i..j);
                let failed = found
                    .iter()
                    .filter(|f| matches!(f.rule.as_str(), "plugin.trap" | "plugin.timeout" | "plugin.skipped"))
                    .filter_map(|f| f.receipt)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len() as u32;
                per_set.push((set.id, (j - i) as u32, failed));
                findings.extend(found);
                decision.push(decision_entry(set, master, Some((i, j)), started_ms));
                i = j;
            }
        }
        let payer = pw.payer.to_string();
        for f in findings.iter().filter(|f| f.rule.starts_with("plugin.")) {
            let kind = f.rule.trim_start_matches("plugin.").to_owned();
            self.metrics.plugin_failures.get_or_create(&FailureLabel { payer: payer.clone(), kind }).inc();
        }
        let counts = count(&findings);
        let json = serde_json::to_string(&findings).map_err(|e| e.to_string())?;
        let outcome = self
            .store
            .complete_chunk(ChunkResult {
                submission: s.id,
                index: chunk.index,
                owner: self.owner.load(Ordering::SeqCst),
                findings: json,
                decision: serde_json::json!({ "sets": decision }).to_string(),
                counts,
                now_ms: now_ms(),
            })
            .map_err(|e| e.to_string())?;
        self.metrics.chunks_checked.get_or_create(&PayerLabel { payer: payer.clone() }).inc();
        self.metrics.receipts_checked.get_or_create(&PayerLabel { payer }).inc_by(receipts as u64);
        for (set, n, failed) in per_set {
            self.watch_health(pw.payer, set, n, failed);
        }
        match outcome {
            ChunkOutcome::Recorded { all_done: true } => self.finalize(&s),
            ChunkOutcome::Recorded { all_done: false } | ChunkOutcome::Duplicate => {}
            ChunkOutcome::Fenced => {
                tracing::warn!("chunk result fenced (lease lapsed or submission no longer pending)")
            }
        }
        Ok(())
    }

    /// Merges the chunks' findings into the file's final, sorted list (as `tenken check`
    /// reports it) and marks the submission checked.
    fn finalize(&self, s: &Submission) {
        let result = (|| -> Result<(), String> {
            let chunks = self.store.chunk_findings(s.id).map_err(|e| e.to_string())?;
            let mut all: Vec<Finding> = Vec::new();
            for (_, json) in chunks {
                all.extend(serde_json::from_str::<Vec<Finding>>(&json).map_err(|e| e.to_string())?);
            }
            m::sort_findings(&mut all);
            let max = self.options.findings_per_file_max as usize;
            let dropped = all.len().saturating_sub(max) as u64;
            all.truncate(max);
            let counts = count(&all);
            let json = serde_json::to_string(&all).map_err(|e| e.to_string())?;
            let now = now_ms();
            self.store.finalize(s.id, json, counts, dropped, now).map_err(|e| e.to_string())?;
            self.metrics
                .check_latency
                .get_or_create(&PayerLabel { payer: s.payer.to_string() })
                .observe((now - s.accepted_ms).max(0) as f64 / 1000.0);
            Ok(())
        })();
        if let Err(e) = result {
            tracing::error!(submission = s.id, error = %e, "finalizing failed; the sweeper retries it");
        }
        self.payer(s.payer).active.lock().unwrap().remove(&s.id);
    }
}

/// Gives the calling thread a lower CPU priority (Linux: per-thread niceness). Failure is
/// logged, never fatal: it only changes who waits when both want a CPU.
fn lower_priority(nice: u8) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread's own id; no memory is shared.
        let rc = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, nice as libc::c_int)
        };
        if rc != 0 {
            tracing::warn!(nice, error = %std::io::Error::last_os_error(), "could not lower the check worker's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    tracing::debug!(nice, "check_worker_nice is applied on Linux only");
}

fn decision_entry(
    set: &LiveSet,
    master: &LiveMaster,
    receipts: Option<(usize, usize)>,
    started_ms: i64,
) -> serde_json::Value {
    serde_json::json!({
        "release_set": set.id,
        "started_ms": started_ms,
        "plugins": set.plugins,
        "master_version": master.id,
        "masters": master.digest,
        "receipts": receipts.map(|(a, b)| [a, b]),
    })
}

impl Work {
    /// Counts a release set's failed receipts over a sliding window; beyond the configured
    /// rate, restores the payer's previous release set for the same months (once), with an
    /// audit event and a notice for staff.
    fn watch_health(&self, payer: Payer, set: i64, receipts: u32, failed: u32) {
        let window = self.options.auto_rollback_window_receipts.max(1) as u64;
        let trip = {
            let mut h = self.health.lock().unwrap();
            let e = h.entry(set).or_default();
            e.window.push_back((receipts, failed));
            e.receipts += receipts as u64;
            e.failed += failed as u64;
            while e.receipts > window
                && let Some((r, f)) = e.window.pop_front()
            {
                e.receipts -= r as u64;
                e.failed -= f as u64;
            }
            let rate = e.failed as f64 / e.receipts.max(1) as f64;
            let trip =
                !e.rolled_back && e.receipts >= window.min(50) && rate > self.options.auto_rollback_failure_rate_max;
            if trip {
                e.rolled_back = true;
            }
            trip.then_some(rate)
        };
        let Some(rate) = trip else { return };
        if let Err(e) = self.auto_rollback(payer, set, rate) {
            tracing::error!(%payer, set, error = %e, "auto-rollback failed");
        }
    }

    fn auto_rollback(&self, payer: Payer, set: i64, rate: f64) -> Result<(), String> {
        let sets = self.store.release_sets(payer).map_err(|e| e.to_string())?;
        let Some(current) = sets.iter().find(|s| s.id == set) else { return Ok(()) };
        if current.state != "active" {
            return Ok(());
        }
        // The last good set: the newest earlier set for the same months that is not itself
        // rolled back.
        let Some(good) =
            sets.iter().find(|s| s.id < set && s.from_month == current.from_month && s.state != "rolled-back")
        else {
            tracing::error!(%payer, set, "plugin failures beyond the auto-rollback threshold, but no earlier release set");
            return Ok(());
        };
        let reason = format!(
            "auto-rollback: {:.0}% of the receipts checked by release set {set} failed (plugin trap/timeout) in the last {} receipts",
            rate * 100.0,
            self.options.auto_rollback_window_receipts
        );
        self.store.rollback(payer, good.id, 0, &reason, now_ms()).map_err(|e| e.to_string())?;
        let cause = crate::registry::SwapCause::now("auto-rollback", good.id);
        self.registry.reload(payer, cause).map_err(|e| e.to_string())?;
        let _ = self.store.add_notice(
            Some(payer),
            &format!("[staff] release set {set} was rolled back automatically to {}: {reason}", good.id),
            0,
            now_ms(),
        );
        tracing::error!(%payer, from = set, to = good.id, "{reason}");
        Ok(())
    }
}

pub fn count(findings: &[Finding]) -> Counts {
    let mut c = Counts::default();
    for f in findings {
        match f.severity {
            Severity::Error => c.error += 1,
            Severity::Warning => c.warning += 1,
            Severity::Info => c.info += 1,
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_receipt() {
        assert_eq!(chunk_count(0, 256), 2);
        assert_eq!(chunk_count(256, 256), 2);
        assert_eq!(chunk_count(257, 256), 3);
        assert_eq!(chunk_range(1, 3, 256), 0..256);
        assert_eq!(chunk_range(2, 3, 256), 256..usize::MAX);
        assert_eq!(chunk_cost(2, 257, 3, 256), 1);
        assert_eq!(chunk_cost(1, 257, 3, 256), 256);
        assert_eq!(chunk_cost(0, 257, 3, 256), 1);
    }
}
