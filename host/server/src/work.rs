//! Checking accepted submissions: per-payer worker pools (bulkheads) that claim chunks from
//! the store, fair across institutions, each receipt checked by the release set in force for
//! its 診療年月, results recorded once under the claim's fencing token.
//!
//! Why per-payer pools: in 2022 one side's broken master stalled both payers. A payer's
//! workers claim only that payer's chunks, so a plugin that hangs on one side costs that side
//! its own workers and nothing else. Within a payer, idle workers claim; none idles while the
//! payer has a backlog. Why claims in the store (not a queue in memory): the same path works
//! for one node on SQLite and several on PostgreSQL — a dead node's claims lapse with its
//! lease and another node's workers take them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use crate::registry::{LiveMaster, LiveSet};
use std::time::{Duration, Instant};

use tenken_check::FileJob;
use tenken_model::{self as m, Finding, Payer, Severity};
use tenken_store::{
    ChunkClaim, ChunkOutcome, ChunkResult, Counts, DecisionEntry, DecisionRecord, NodeId, ReleaseSet, Store,
    StoreError, Submission, SubmissionId, chunk_range,
};

use crate::metrics::{FailureLabel, Metrics, PayerLabel, WorkerLabel};

/// The wall clock (code without a handed-in clock; handlers use `App::now_ms`).
pub use crate::clock::system_now_ms as now_ms;

/// A file being checked: parsed once, prepared once per release set.
struct Active {
    claim: Arc<m::Claim>,
    /// Prepared per (release set id, master version id).
    jobs: Mutex<HashMap<(i64, i64), Arc<FileJob>>>,
}

pub struct PayerWork {
    pub payer: Payer,
    pub workers: u32,
    pub queue_chunks_max: u32,
    active: Mutex<HashMap<SubmissionId, Arc<OnceLock<Result<Arc<Active>, String>>>>>,
    /// Bumped when work may have arrived; idle workers wait on it (at most `idle_poll_ms`,
    /// the fallback for work that arrives through another node).
    wake: (Mutex<u64>, Condvar),
    /// The payer's backlog in chunks as last seen (admission reads it without a store call).
    backlog: AtomicU64,
    /// Chunks this node checked for the payer in the stats window: (when it finished,
    /// receipts, seconds it took), oldest first (the heartbeat's figures).
    done: Mutex<std::collections::VecDeque<(Instant, u32, f64)>>,
}

/// Chunk records kept per payer for the heartbeat's figures, at most (a bound beyond the
/// stats window, for a node checking very many small chunks).
const DONE_RECORDS_MAX: usize = 100_000;

impl PayerWork {
    /// Chunks waiting for a worker, as last counted.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    fn notify(&self) {
        *self.wake.0.lock().unwrap() += 1;
        self.wake.1.notify_all();
    }

    fn wait(&self, seen: u64, timeout: Duration) {
        let guard = self.wake.0.lock().unwrap();
        if *guard == seen {
            let _ = self.wake.1.wait_timeout(guard, timeout);
        }
    }
}

pub struct WorkOptions {
    pub chunk_receipts: u32,
    pub active_files_max: u32,
    pub lease_ms: u64,
    /// How long an idle worker waits before asking the store again when nothing woke it.
    pub idle_poll_ms: u64,
    pub findings_per_file_max: u32,
    /// Auto-rollback: the sliding window, in receipts, over which a release set's plugin
    /// failures are counted, and the failure rate (failed receipts / receipts) beyond which
    /// the payer's previous release set for the same months is restored.
    pub auto_rollback_window_receipts: u32,
    pub auto_rollback_failure_rate_max: f64,
    /// Niceness of the worker threads (see `schedule.check_worker_nice`).
    pub worker_nice: u8,
    /// This node's name (decision records, `nodes`).
    pub node_name: String,
    /// How often to look for other nodes' registry changes without a notification, ms.
    pub change_poll_ms: u64,
    /// The window the heartbeat's per-payer figures cover, ms.
    pub stats_window_ms: u64,
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
    /// "Now" for leases, claims and records (injected: see `crate::clock`).
    clock: Arc<dyn crate::clock::Clock>,
    store: Arc<dyn Store>,
    pub registry: Arc<crate::registry::Registry>,
    health: Mutex<HashMap<i64, Health>>,
    metrics: Arc<Metrics>,
    payers: Vec<Arc<PayerWork>>,
    node: AtomicI64,
    options: WorkOptions,
    shutdown: AtomicBool,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Why the database is unavailable and since when (ms), as the heartbeat last found.
    db_trouble: Mutex<Option<(String, i64)>>,
}

impl Work {
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        registry: Arc<crate::registry::Registry>,
        payers: Vec<(Payer, u32, u32)>,
        options: WorkOptions,
        node: NodeId,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Arc<Work> {
        let payers = payers
            .into_iter()
            .map(|(payer, workers, queue_chunks_max)| {
                Arc::new(PayerWork {
                    payer,
                    workers,
                    queue_chunks_max,
                    active: Mutex::new(HashMap::new()),
                    wake: (Mutex::new(0), Condvar::new()),
                    backlog: AtomicU64::new(0),
                    done: Mutex::new(std::collections::VecDeque::new()),
                })
            })
            .collect();
        Arc::new(Work {
            clock,
            store,
            registry,
            health: Mutex::new(HashMap::new()),
            metrics,
            payers,
            node: AtomicI64::new(node.0),
            options,
            shutdown: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            db_trouble: Mutex::new(None),
        })
    }

    pub fn payer(&self, p: Payer) -> &Arc<PayerWork> {
        self.payers.iter().find(|w| w.payer == p).expect("every payer has a pool")
    }

    pub fn options(&self) -> &WorkOptions {
        &self.options
    }

    /// Why the database is unavailable and since when (ms), if the last heartbeat failed
    /// for that reason.
    pub fn database_trouble(&self) -> Option<(String, i64)> {
        self.db_trouble.lock().unwrap().clone()
    }

    fn note_database(&self, result: &Result<bool, StoreError>) {
        let mut t = self.db_trouble.lock().unwrap();
        match result {
            Err(StoreError::Unavailable(why)) => {
                if t.is_none() {
                    tracing::error!(error = %why, "the database is unavailable; answering submissions 503 until it is back");
                }
                let since = t.as_ref().map_or(self.clock.now_ms(), |(_, s)| *s);
                *t = Some((why.clone(), since));
            }
            Ok(_) if t.is_some() => {
                tracing::info!("the database is back");
                *t = None;
            }
            _ => {}
        }
    }

    fn node(&self) -> NodeId {
        NodeId(self.node.load(Ordering::SeqCst))
    }

    /// Starts the worker threads and the lease keeper.
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
        match self.store.subscribe() {
            Ok(None) => {}
            Ok(Some(feed)) => {
                let work = self.clone();
                threads.push(
                    std::thread::Builder::new()
                        .name("tenken-changes".into())
                        .spawn(move || work.changes_loop(Some(feed)))
                        .expect("spawn change listener"),
                );
            }
            Err(e) => {
                // The database is away at start: the listener subscribes when it is back.
                tracing::warn!(error = %e, "subscribing to other nodes' changes failed; retrying");
                let work = self.clone();
                threads.push(
                    std::thread::Builder::new()
                        .name("tenken-changes".into())
                        .spawn(move || work.changes_loop(None))
                        .expect("spawn change listener"),
                );
            }
        }
    }

    /// A cluster node hears of other nodes' changes: new work wakes this node's idle workers
    /// of that payer; a registry change reloads the payer's live table (activation,
    /// rollback, auto-rollback, master swap through any node are in force here within a
    /// notification's delay). While the feed is broken it looks at the audit log's head
    /// every `change_poll_ms` instead, and once it subscribes again it reloads, so nothing
    /// announced meanwhile is missed.
    fn changes_loop(&self, mut feed: Option<Box<dyn tenken_store::ChangeFeed>>) {
        let poll = Duration::from_millis(self.options.change_poll_ms.max(10));
        let mut heads: HashMap<Payer, i64> = HashMap::new();
        let mut looked = Instant::now() - poll;
        while !self.shutdown.load(Ordering::SeqCst) {
            // Without a feed (the database went away), look at the audit heads instead.
            if feed.is_none() && looked.elapsed() >= poll {
                looked = Instant::now();
                for pw in &self.payers {
                    match self.store.audit(pw.payer, 1) {
                        Ok(a) => {
                            let head = a.first().map_or(0, |e| e.id);
                            if heads.insert(pw.payer, head).is_some_and(|h| h != head) {
                                self.reload_for_other_node(pw.payer);
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "looking for registry changes failed"),
                    }
                }
                match self.store.subscribe() {
                    Ok(f) => {
                        feed = f;
                        // Whatever was announced while unsubscribed: look for it.
                        for pw in &self.payers {
                            self.reload_for_other_node(pw.payer);
                            pw.notify();
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "subscribing again failed"),
                }
            }
            let Some(f) = feed.as_mut() else {
                std::thread::sleep(poll.min(Duration::from_millis(200)));
                continue;
            };
            match f.wait(poll.min(Duration::from_millis(200))) {
                Ok(changes) => {
                    for c in changes {
                        match c {
                            tenken_store::Change::Work(p) => self.payer(p).notify(),
                            tenken_store::Change::Swap(p) => self.reload_for_other_node(p),
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the change feed broke; looking every change_poll_ms until it is back");
                    feed = None;
                }
            }
        }
    }

    fn reload_for_other_node(&self, payer: Payer) {
        let cause = crate::registry::SwapCause::now("other-node", 0);
        match self.registry.reload_if_changed(payer, cause) {
            Ok(crate::registry::Reloaded::Published) => {
                tracing::info!(%payer, "live rules or masters changed through another node; in force here now");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(%payer, error = %e, "reloading after another node's change failed"),
        }
    }

    /// What this node reports with its heartbeat: per payer, the chunks and receipts it
    /// checked in the stats window and its workers' busy share.
    pub fn stats(&self) -> tenken_store::NodeStats {
        let window = Duration::from_millis(self.options.stats_window_ms.max(1));
        let payers = self
            .payers
            .iter()
            .map(|pw| {
                let mut done = pw.done.lock().unwrap();
                while done.front().is_some_and(|(t, _, _)| t.elapsed() > window) {
                    done.pop_front();
                }
                let busy: f64 = done.iter().map(|(_, _, s)| s).sum();
                tenken_store::PayerLoad {
                    payer: pw.payer,
                    workers: pw.workers,
                    chunks: done.len() as u64,
                    receipts: done.iter().map(|(_, r, _)| *r as u64).sum(),
                    busy: (busy / (window.as_secs_f64() * pw.workers.max(1) as f64)).min(1.0),
                }
            })
            .collect();
        tenken_store::NodeStats { window_ms: window.as_millis() as i64, payers }
    }

    /// Stops claiming chunks; running chunks finish; unclaimed ones stay in the store, and
    /// this node's claims lapse with its lease (or are claimed again at the next start).
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        for pw in &self.payers {
            pw.notify();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap());
        for t in threads {
            let _ = t.join();
        }
    }

    /// A submission was accepted (its chunks are claimable in the store): wake its payer's
    /// idle workers.
    pub fn enqueue(&self, s: &Submission) {
        let pw = self.payer(s.payer);
        pw.backlog.fetch_add(s.chunks as u64, Ordering::Relaxed);
        self.metrics.queue_chunks.get_or_create(&PayerLabel { payer: s.payer.to_string() }).set(pw.backlog() as i64);
        pw.notify();
    }

    /// A submission was withdrawn or superseded (the store dropped its chunks): drop its parse.
    pub fn forget(&self, payer: Payer, id: SubmissionId) {
        self.payer(payer).active.lock().unwrap().remove(&id);
    }

    /// After a rollback: the files still being checked with a release set or master version
    /// that was live in `before` and is now rolled back start over on the live tables (a
    /// file is checked with one set and one master, but never finished with a version staff
    /// or the auto-rollback took back). Returns how many files were restarted.
    pub fn restart_rolled_back(&self, payer: Payer, before: &crate::registry::Releases) -> Result<usize, StoreError> {
        let now = self.registry.table(payer);
        let gone_sets: Vec<i64> =
            before.sets.iter().map(|s| s.id).filter(|id| !now.sets.iter().any(|s| s.id == *id)).collect();
        let gone_masters: Vec<i64> =
            before.masters.iter().map(|m| m.id).filter(|id| !now.masters.iter().any(|m| m.id == *id)).collect();
        let mut restarted = std::collections::BTreeSet::new();
        let sets = self.store.release_sets(payer)?;
        for id in gone_sets {
            if sets.iter().any(|s| s.id == id && s.state == tenken_store::ReleaseState::RolledBack) {
                restarted.extend(self.store.restart_pinned(payer, Some(id), None)?);
            }
        }
        for id in gone_masters {
            if self.store.master_version(payer, id)?.is_some_and(|v| v.state == tenken_store::MasterState::RolledBack) {
                restarted.extend(self.store.restart_pinned(payer, None, Some(id))?);
            }
        }
        let pw = self.payer(payer);
        for id in &restarted {
            self.forget(payer, *id);
            if let Some(s) = self.store.get(*id)? {
                pw.backlog.fetch_add(s.chunks as u64, Ordering::Relaxed);
            }
        }
        if !restarted.is_empty() {
            tracing::warn!(%payer, files = restarted.len(), "files being checked with a rolled-back version start over");
            pw.notify();
        }
        Ok(restarted.len())
    }

    /// Finalizes what is fully checked but not finalized (a crash in between); returns how
    /// many submissions still wait for checking, per the store's backlog.
    pub fn recover(&self) -> Result<usize, StoreError> {
        for s in self.store.unfinalized()? {
            self.finalize(&s);
        }
        let mut waiting = 0;
        for pw in &self.payers {
            let n = self.store.backlog(pw.payer, self.clock.now_ms())?;
            pw.backlog.store(n, Ordering::Relaxed);
            self.metrics.queue_chunks.get_or_create(&PayerLabel { payer: pw.payer.to_string() }).set(n as i64);
            waiting += n as usize;
        }
        Ok(waiting)
    }

    fn housekeeping_loop(&self) {
        let lease = self.options.lease_ms as i64;
        let tick = Duration::from_millis((self.options.lease_ms / 3).max(50));
        let mut last = Instant::now();
        while !self.shutdown.load(Ordering::SeqCst) {
            std::thread::sleep(tick.min(Duration::from_millis(200)));
            if last.elapsed() < tick {
                continue;
            }
            last = Instant::now();
            let renewed = self.store.renew_node(self.node(), self.clock.now_ms(), lease, &self.stats());
            self.note_database(&renewed);
            match renewed {
                Ok(true) => {}
                Ok(false) => {
                    // Our lease lapsed (a long pause): our claims are fenced and may be
                    // running elsewhere. Take a new lease; what is left is claimed again.
                    tracing::error!(node = %self.node(), "node lease lapsed; registering again");
                    if let Ok(n) = self.store.register_node(&self.options.node_name, self.clock.now_ms(), lease) {
                        self.node.store(n.0, Ordering::SeqCst);
                    }
                }
                Err(e) => tracing::error!(error = %e, "renewing node lease failed"),
            }
            // Lapsed claims of other nodes, stragglers to finalize, the backlog gauge.
            match self.recover() {
                Ok(n) if n > 0 => {
                    for pw in &self.payers {
                        pw.notify();
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "housekeeping failed"),
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
        let idle = Duration::from_millis(self.options.idle_poll_ms.max(1));
        while !self.shutdown.load(Ordering::SeqCst) {
            let seen = *pw.wake.0.lock().unwrap();
            // A payer without masters or rules claims nothing: its work waits (a data
            // directory from before, or one whose masters an operator is installing).
            let ready = self.registry.table(pw.payer).not_ready().is_none();
            let claimed = if ready {
                self.store.claim_chunks(self.node(), pw.payer, 1, self.clock.now_ms())
            } else {
                Ok(Vec::new())
            };
            let claim = match claimed {
                Ok(mut c) => c.pop(),
                Err(e) => {
                    tracing::warn!(payer = %pw.payer, error = %e, "claiming chunks failed; retrying");
                    None
                }
            };
            let Some(chunk) = claim else {
                pw.backlog.store(0, Ordering::Relaxed);
                depth.set(0);
                pw.wait(seen, idle);
                continue;
            };
            let _ = pw.backlog.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b.saturating_sub(1)));
            depth.set(pw.backlog() as i64);
            let t0 = Instant::now();
            let span =
                tracing::info_span!("chunk", payer = %pw.payer, submission = chunk.submission, index = chunk.index);
            let _g = span.enter();
            let receipts = match self.run_chunk(pw, chunk) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "chunk failed; it is given back to be claimed again");
                    self.release(pw, chunk);
                    0
                }
            };
            let took = t0.elapsed().as_secs_f64();
            busy.inc_by(took);
            let mut done = pw.done.lock().unwrap();
            if done.len() >= DONE_RECORDS_MAX {
                done.pop_front();
            }
            done.push_back((Instant::now(), receipts, took));
        }
    }

    /// Gives a failed chunk's claim back, retrying while the store cannot be reached (the
    /// usual cause of the failure) until it is released, the claim is gone, or shutdown. A
    /// live node would otherwise hold it for ever: its lease never lapses.
    fn release(&self, pw: &PayerWork, chunk: ChunkClaim) {
        let mut backoff = Duration::from_millis(100);
        while !self.shutdown.load(Ordering::SeqCst) {
            std::thread::sleep(backoff);
            match self.store.release_chunk(self.node(), chunk.submission, chunk.index, chunk.fence) {
                Ok(released) => {
                    if released {
                        pw.backlog.fetch_add(1, Ordering::Relaxed);
                        pw.notify();
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "giving the chunk back failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
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
        let out = cell
            .get_or_init(|| {
                let bytes = self.store.bytes(&s.digest).map_err(|e| e.to_string())?;
                let claim = Arc::new(tenken_claim::parse(&bytes, &self.registry.limits));
                Ok(Arc::new(Active { claim, jobs: Mutex::new(HashMap::new()) }))
            })
            .clone();
        if out.is_err() {
            // A failed read (the database away for a moment) is not the file's fate: the
            // next claim of one of its chunks reads it again. (Kept, the error failed every
            // later chunk of the file, which then was never checked.)
            let mut map = pw.active.lock().unwrap();
            if map.get(&s.id).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                map.remove(&s.id);
            }
        }
        out
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

    /// Checks one claimed chunk and records it; returns the receipts it covered.
    fn run_chunk(&self, pw: &PayerWork, chunk: ChunkClaim) -> Result<u32, String> {
        let Some(s) = self.store.get(chunk.submission).map_err(|e| e.to_string())? else {
            return Err(format!("submission {} vanished", chunk.submission));
        };
        if !s.state.is_pending() {
            return Ok(0);
        }
        let active = self.active(pw, &s)?;
        // The table in force when the file's checking started (its pin, stored, so every
        // node and every restart agrees): one file, one master and one set per 診療年月,
        // whatever is swapped in while it is checked. New files start on the live table.
        let live = self.registry.table_for_work(pw.payer);
        // Read for every chunk, never cached: a rollback may have dropped the pin and
        // restarted the file since the last chunk.
        let pin = match self.store.check_pin(s.id).map_err(|e| e.to_string())? {
            Some(p) => p,
            None => self.store.pin_check(s.id, &live.pin(self.clock.now_ms())).map_err(|e| e.to_string())?,
        };
        // Not before the pin: another worker (or node) may have stored the file's pin a
        // moment after this one read the clock, and the chunk runs under that pin.
        let started_ms = self.clock.now_ms().max(pin.taken_ms);
        let table = self.registry.table_for_pin(pw.payer, live, &pin).map_err(|e| e.to_string())?;
        let claim = &active.claim;
        let mut findings: Vec<Finding> = Vec::new();
        let mut receipts = 0usize;
        let mut decision: Vec<DecisionEntry> = Vec::new();
        let mut per_set: Vec<(i64, u32, u32)> = Vec::new();
        if chunk.index == 0 {
            findings.extend(claim.parse_findings.iter().cloned());
            let billing = claim.file.header.as_ref().and_then(|h| h.billing_month);
            let (k, m) = table.pick(billing);
            let (set, master) = (&table.sets[k], &table.masters[m]);
            let job = self.job(pw, &active, set, m, master)?;
            findings.extend(set.checkers[m].check_file_level(&job));
            decision.push(decision_entry(set, master, None, started_ms, pin.taken_ms));
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
                // Every kind of plugin failure counts (timeouts, traps, memory, stack overflow,
                // output floods, contract violations, skips): any of them may be a broken set.
                let failed = found
                    .iter()
                    .filter(|f| f.plugin_failure().is_some_and(|k| k.counts_as_failure()))
                    .filter_map(|f| f.receipt)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len() as u32;
                per_set.push((set.id, (j - i) as u32, failed));
                findings.extend(found);
                decision.push(decision_entry(set, master, Some((i as u32, j as u32)), started_ms, pin.taken_ms));
                i = j;
            }
        }
        let payer = pw.payer.to_string();
        for kind in findings.iter().filter_map(|f| f.plugin_failure()) {
            let kind = kind.rule_id().trim_start_matches(m::HOST_RULE_PREFIX).to_owned();
            self.metrics.plugin_failures.get_or_create(&FailureLabel { payer: payer.clone(), kind }).inc();
        }
        let counts = count(&findings);
        let result = ChunkResult {
            submission: s.id,
            index: chunk.index,
            node: self.node(),
            fence: chunk.fence,
            findings,
            decision: DecisionRecord { node: Some(self.options.node_name.clone()), sets: decision },
            counts,
            now_ms: self.clock.now_ms(),
            pin: Some(pin.clone()),
        };
        let outcome = self.record(result).map_err(|e| e.to_string())?;
        self.metrics.chunks_checked.get_or_create(&PayerLabel { payer: payer.clone() }).inc();
        self.metrics.receipts_checked.get_or_create(&PayerLabel { payer }).inc_by(receipts as u64);
        for (set, n, failed) in per_set {
            self.watch_health(pw.payer, set, n, failed);
        }
        match outcome {
            ChunkOutcome::Recorded { all_done: true } => self.finalize(&s),
            ChunkOutcome::Recorded { all_done: false } => {}
            ChunkOutcome::Duplicate => {
                tracing::warn!("chunk result dropped: the chunk was recorded already (under a later claim)")
            }
            ChunkOutcome::Fenced => {
                tracing::warn!("chunk result fenced (lease lapsed or submission no longer pending)")
            }
        }
        Ok(receipts as u32)
    }

    /// Records a chunk's result, retrying while the store is busy (a full write queue):
    /// the work is done and its claim is ours until the lease lapses.
    fn record(&self, result: ChunkResult) -> Result<ChunkOutcome, StoreError> {
        let mut backoff = Duration::from_millis(5);
        loop {
            let r = ChunkResult { now_ms: self.clock.now_ms(), ..result.clone() };
            match self.store.complete_chunk(r) {
                // Busy, or the database away for a moment: the claim stays ours until the
                // lease lapses (after that the result is fenced, and another node has it).
                Err(StoreError::Busy { .. } | StoreError::Unavailable(_)) if !self.shutdown.load(Ordering::SeqCst) => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// Merges the chunks' findings into the file's final, sorted list (as `tenken check`
    /// reports it) and marks the submission checked.
    fn finalize(&self, s: &Submission) {
        let result = (|| -> Result<(), String> {
            let chunks = self.store.chunk_findings(s.id).map_err(|e| e.to_string())?;
            let mut all: Vec<Finding> = Vec::new();
            for (_, findings) in chunks {
                all.extend(findings);
            }
            m::sort_findings(&mut all);
            // Counted before the cap: an error cut from the stored list still blocks 請求確定.
            let counts = count(&all);
            let max = self.options.findings_per_file_max as usize;
            let dropped = all.len().saturating_sub(max) as u64;
            all.truncate(max);
            let now = self.clock.now_ms();
            self.store.finalize(s.id, &all, counts, dropped, now).map_err(|e| e.to_string())?;
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
    receipts: Option<(u32, u32)>,
    started_ms: i64,
    pinned_ms: i64,
) -> DecisionEntry {
    DecisionEntry {
        release_set: set.id,
        started_ms,
        plugins: set.plugins.clone(),
        master_version: master.id,
        masters: master.digest,
        receipts,
        pinned_ms: Some(pinned_ms),
    }
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
        if current.state != tenken_store::ReleaseState::Active {
            return Ok(());
        }
        // The last good set: the newest earlier set for the same months that is not itself
        // rolled back.
        let Some(good) = sets.iter().find(|s: &&ReleaseSet| {
            s.id < set && s.from_month == current.from_month && s.state != tenken_store::ReleaseState::RolledBack
        }) else {
            tracing::error!(%payer, set, "plugin failures beyond the auto-rollback threshold, but no earlier release set");
            return Ok(());
        };
        let reason = format!(
            "auto-rollback: {:.0}% of the receipts checked by release set {set} failed (plugin failures of any kind) in the last {} receipts",
            rate * 100.0,
            self.options.auto_rollback_window_receipts
        );
        self.store.rollback(payer, good.id, 0, &reason, self.clock.now_ms()).map_err(|e| e.to_string())?;
        let cause = crate::registry::SwapCause::now("auto-rollback", good.id);
        let before = self.registry.table(payer);
        self.registry.reload(payer, cause).map_err(|e| e.to_string())?;
        self.restart_rolled_back(payer, &before).map_err(|e| e.to_string())?;
        let _ = self.store.add_notice(
            Some(payer),
            tenken_store::Audience::Staff,
            &format!("release set {set} was rolled back automatically to {}: {reason}", good.id),
            0,
            self.clock.now_ms(),
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
