//! The plugin registry as the server runs it: each payer's live release sets, hot-swapped.
//!
//! Why `ArcSwap`: a worker takes the payer's release table once per chunk and keeps that
//! `Arc` until the chunk is recorded, so work already started finishes on the versions it
//! started with, while the next chunk pulled after an activation sees the new table (the
//! swap is a pointer store: well under the 100 ms the lifecycle promises). Plugins are
//! loaded from the store by digest, compiled once at upload (artifact cache), and kept in
//! memory by digest so activation and rollback never compile.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tenken_check::{Checker, Engine};
use tenken_limits::Limits;
use tenken_model::{Digest, Payer, YearMonth};
use tenken_runtime::{Plugin, Runtime};
use tenken_store::Store;

/// One live release set, ready to check: one checker per live master version.
pub struct LiveSet {
    pub id: i64,
    /// None = from the beginning.
    pub from: Option<YearMonth>,
    pub plugins: Vec<Digest>,
    /// Indexed like `Releases::masters`.
    pub checkers: Vec<Arc<Checker>>,
}

/// One live master version.
pub struct LiveMaster {
    pub id: i64,
    pub from: Option<YearMonth>,
    pub digest: Digest,
    pub set: Arc<tenken_master::MasterSet>,
}

/// A payer's live release sets and master versions, each sorted by `from`: a receipt is
/// checked by the rule set and the master version in force for its 診療年月.
pub struct Releases {
    pub sets: Vec<LiveSet>,
    pub masters: Vec<LiveMaster>,
    /// The change that made this table (None for the table built at start).
    pub cause: Option<SwapCause>,
    /// Set by the first unit of work that takes this table.
    first_used: AtomicBool,
    /// The reload ticket this table was built under (0 for the table built at start): a
    /// table is published only over one with a lower ticket, see `Registry::reload`.
    ticket: u64,
}

/// What asked for a table swap, and when: to measure activation-to-first-use.
#[derive(Debug, Clone)]
pub struct SwapCause {
    /// `activate`, `rollback`, `auto-rollback`, `master-activate`, `master-rollback`.
    pub action: &'static str,
    /// The release set or master version that the change made effective.
    pub subject: i64,
    pub requested: Instant,
    pub requested_ms: i64,
}

impl SwapCause {
    /// A change asked for now.
    pub fn now(action: &'static str, subject: i64) -> SwapCause {
        SwapCause::since(action, subject, Instant::now(), crate::clock::system_now_ms())
    }

    /// A change asked for at `requested` (`requested_ms` on the wall clock).
    pub fn since(action: &'static str, subject: i64, requested: Instant, requested_ms: i64) -> SwapCause {
        SwapCause { action, subject, requested, requested_ms }
    }
}

/// One table swap as `GET /v1/payers/{payer}/swaps` reports it (this process only, the
/// newest `SWAPS_KEPT_MAX`).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SwapRecord {
    pub action: String,
    /// The release set (or master version, for `master-*` actions) made effective.
    pub subject: i64,
    /// When the change was asked for (ms since the epoch).
    pub requested_ms: i64,
    /// Request → new table live (loading, recording, the swap itself).
    pub swapped_after_ms: f64,
    /// Request → the first chunk that started on the new table (null: none yet, or the
    /// table was replaced before any chunk took it).
    pub first_use_after_ms: Option<f64>,
}

/// Swap records kept per payer (a bounded ring: the oldest go first).
pub const SWAPS_KEPT_MAX: usize = 1024;

impl Releases {
    /// The index of the rule set in force for `month` (the earliest when unknown).
    pub fn index_for(&self, month: Option<YearMonth>) -> usize {
        let Some(month) = month else { return 0 };
        self.sets.iter().rposition(|s| s.from.is_none_or(|f| f <= month)).unwrap_or(0)
    }

    /// The index of the master version in force for `month`.
    pub fn master_for(&self, month: Option<YearMonth>) -> usize {
        let Some(month) = month else { return 0 };
        self.masters.iter().rposition(|m| m.from.is_none_or(|f| f <= month)).unwrap_or(0)
    }

    /// The live master version a version starting at `from` would replace: the one in force
    /// for that 診療年月 (for a version without a month, the newest without one, else the
    /// earliest). None while the payer has no master.
    pub fn master_in_force_for(&self, from: Option<YearMonth>) -> Option<&LiveMaster> {
        match from {
            Some(_) => self.masters.get(self.master_for(from)),
            None => self.masters.iter().rev().find(|m| m.from.is_none()).or(self.masters.first()),
        }
    }

    /// (rule set index, master index) for a 診療年月.
    pub fn pick(&self, month: Option<YearMonth>) -> (usize, usize) {
        (self.index_for(month), self.master_for(month))
    }

    /// The pin a file whose checking starts now gets: these sets and masters.
    pub fn pin(&self, taken_ms: i64) -> tenken_store::CheckPin {
        tenken_store::CheckPin {
            taken_ms,
            sets: self.sets.iter().map(|s| tenken_store::Pinned { id: s.id, from: s.from }).collect(),
            masters: self.masters.iter().map(|m| tenken_store::Pinned { id: m.id, from: m.from }).collect(),
        }
    }

    /// True when this table holds exactly the pinned sets and masters.
    pub fn holds(&self, pin: &tenken_store::CheckPin) -> bool {
        self.sets.len() == pin.sets.len()
            && self.masters.len() == pin.masters.len()
            && self.sets.iter().zip(&pin.sets).all(|(s, p)| s.id == p.id && s.from == p.from)
            && self.masters.iter().zip(&pin.masters).all(|(m, p)| m.id == p.id && m.from == p.from)
    }

    /// What the rules in force find in a claim file: a regression case's expectations.
    pub fn expected(
        &self,
        bytes: &[u8],
        payer: Payer,
        limits: &Limits,
    ) -> Result<Vec<tenken_model::Finding>, tenken_check::CheckError> {
        let claim = Arc::new(tenken_claim::parse(bytes, limits));
        let (k, m) = self.pick(claim.file.header.as_ref().and_then(|h| h.billing_month));
        Ok(self.sets[k].checkers[m].check_claim(claim, Some(payer))?.findings)
    }

    /// The newest master version (for tools that need "the current master"); None while
    /// the payer has no masters (`not_ready`).
    pub fn masters_now(&self) -> Option<&Arc<tenken_master::MasterSet>> {
        self.masters.last().map(|m| &m.set)
    }

    /// The newest master version. Callers check `not_ready` first (a payer without masters
    /// accepts no claims, so no check or proposal reaches here).
    pub fn current_masters(&self) -> &Arc<tenken_master::MasterSet> {
        &self.masters.last().expect("at least one master version").set
    }

    /// Why this payer cannot check claims yet, if it cannot: no master version or no
    /// release set is active. Claims to it are refused with this message.
    pub fn not_ready(&self) -> Option<NotReady> {
        if self.masters.is_empty() {
            Some(NotReady::NoMasters)
        } else if self.sets.is_empty() {
            Some(NotReady::NoRules)
        } else {
            None
        }
    }
}

/// Why a payer's table cannot check claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    NoMasters,
    NoRules,
}

impl NotReady {
    /// What the payer's clients and operator are told.
    pub fn message(self, payer: Payer) -> String {
        match self {
            NotReady::NoMasters => format!(
                "{payer} has no master files installed, so its claims cannot be checked; the operator installs them with \
                 `tenken master import --payer {payer} DIR` and restarts the server (or starts it with --demo-masters to try tenken out)"
            ),
            NotReady::NoRules => format!(
                "{payer} has no active rule set, so its claims cannot be checked; {payer} staff activate one \
                 (`tenken plugin activate`)"
            ),
        }
    }
}

pub struct Registry {
    pub store: Arc<dyn Store>,
    pub runtime: Arc<Runtime>,
    pub limits: Limits,
    loaded: Mutex<Cache<Plugin>>,
    loaded_converters: Mutex<Cache<tenken_runtime::Converter>>,
    /// Master sets by digest, loaded once.
    master_sets: Mutex<Cache<tenken_master::MasterSet>>,
    /// Decodes a master version's sources (through the converter plugins).
    load_masters: Box<MasterLoader>,
    pub converters: Arc<HashMap<String, Arc<tenken_runtime::Converter>>>,
    tables: HashMap<Payer, ArcSwap<Releases>>,
    swaps: HashMap<Payer, Mutex<VecDeque<SwapRecord>>>,
    /// Observes activation-to-first-use (seconds), per payer.
    pub on_first_use: Option<Box<dyn Fn(Payer, f64) + Send + Sync>>,
    /// Tables rebuilt for pinned files whose sets or masters are no longer the live ones
    /// (a swap while they were being checked), newest last, at most `pinned_tables_max`.
    pinned: Mutex<VecDeque<(Payer, Arc<Releases>)>>,
    pinned_tables_max: usize,
    /// Reload tickets, taken before a reload reads the store.
    tickets: AtomicU64,
    /// Called by `reload` after building a table and before publishing it: a fault
    /// injection point, so a test can hold one reload back while another one completes.
    pub before_publish: Option<Box<dyn Fn(Payer, &SwapCause) + Send + Sync>>,
}

/// What a reload did with the table it built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    /// The table is live.
    Published,
    /// A reload that started later had already published: its table was read after this
    /// one's and so holds at least this one's change; this one was dropped.
    Superseded,
    /// The store holds the live table's release sets and master versions already (a
    /// change another node announced that this node had reloaded for, or one that changes
    /// no live table, such as an approval): nothing was swapped.
    Unchanged,
}

/// How many loaded things the registry keeps beyond those the live tables use.
#[derive(Debug, Clone, Copy)]
pub struct CacheLimits {
    /// Loaded plugins and converters (each kind) not in a live table, entries.
    pub plugins_idle_max: usize,
    /// Decoded master sets not in a live table, entries (a real master set is tens of MB).
    pub master_sets_idle_max: usize,
    /// Tables kept for files pinned to sets or masters that are no longer live, entries.
    pub pinned_tables_max: usize,
}

impl Default for CacheLimits {
    fn default() -> CacheLimits {
        CacheLimits { plugins_idle_max: 32, master_sets_idle_max: 4, pinned_tables_max: 4 }
    }
}

/// How many entries each registry cache holds now (`GET /metrics` and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSizes {
    pub plugins: usize,
    pub converters: usize,
    pub master_sets: usize,
}

/// Loaded things by digest. Bounded by what is *idle*: an entry that something else still
/// holds (a live table's checker, a validation in progress) is in use and never evicted, so
/// the cache is at most the live tables' contents plus `idle_max` entries; over that, the
/// least recently used idle entries go first.
struct Cache<T> {
    entries: HashMap<Digest, (Arc<T>, u64)>,
    clock: u64,
    idle_max: usize,
}

impl<T> Cache<T> {
    fn new(idle_max: usize) -> Cache<T> {
        Cache { entries: HashMap::new(), clock: 0, idle_max }
    }

    fn get(&mut self, key: &Digest) -> Option<Arc<T>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|(v, used)| {
            *used = clock;
            v.clone()
        })
    }

    /// Inserts `value` (which the caller keeps using) and evicts idle entries over the bound.
    fn insert(&mut self, key: Digest, value: Arc<T>) {
        self.clock += 1;
        // The new entry counts as idle (its caller lets go soon) but is never the one evicted.
        let mut idle: Vec<(u64, Digest)> = self
            .entries
            .iter()
            .filter(|(k, (v, _))| Arc::strong_count(v) == 1 && **k != key)
            .map(|(k, (_, used))| (*used, *k))
            .collect();
        self.entries.insert(key, (value, self.clock));
        let keep = self.idle_max.saturating_sub(1);
        if idle.len() > keep {
            idle.sort();
            for (_, k) in idle.drain(..idle.len() - keep) {
                self.entries.remove(&k);
            }
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Builds a master set from a version's source files.
pub type MasterLoader = dyn Fn(&[tenken_store::MasterSource]) -> Result<tenken_master::MasterSet, String> + Send + Sync;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("master version {id} could not be loaded: {message}")]
    Masters { id: i64, message: String },
    #[error("{0}")]
    Store(#[from] tenken_store::StoreError),
    #[error("plugin {digest} could not be loaded: {source}")]
    Load { digest: Digest, source: tenken_runtime::RuntimeError },
}

impl Registry {
    pub fn new(
        store: Arc<dyn Store>,
        runtime: Arc<Runtime>,
        limits: Limits,
        load_masters: Box<MasterLoader>,
        converters: Arc<HashMap<String, Arc<tenken_runtime::Converter>>>,
        cache: CacheLimits,
    ) -> Result<Registry, RegistryError> {
        let mut r = Registry {
            store,
            runtime,
            limits,
            loaded: Mutex::new(Cache::new(cache.plugins_idle_max)),
            loaded_converters: Mutex::new(Cache::new(cache.plugins_idle_max)),
            master_sets: Mutex::new(Cache::new(cache.master_sets_idle_max)),
            load_masters,
            converters,
            tables: HashMap::new(),
            swaps: HashMap::new(),
            on_first_use: None,
            pinned: Mutex::new(VecDeque::new()),
            pinned_tables_max: cache.pinned_tables_max.max(1),
            tickets: AtomicU64::new(0),
            before_publish: None,
        };
        for payer in Payer::ALL {
            let t = r.build(payer, None, 0)?;
            r.tables.insert(payer, ArcSwap::from_pointee(t));
            r.swaps.insert(payer, Mutex::new(VecDeque::new()));
        }
        Ok(r)
    }

    /// The payer's live table (hold it for the duration of one unit of work).
    pub fn table(&self, payer: Payer) -> Arc<Releases> {
        self.tables[&payer].load_full()
    }

    /// `table`, for a worker about to start a unit of work on it: the first such use of a
    /// swapped-in table is recorded (activation-to-first-use).
    pub fn table_for_work(&self, payer: Payer) -> Arc<Releases> {
        let t = self.table(payer);
        if let Some(cause) = &t.cause
            && !t.first_used.swap(true, Ordering::Relaxed)
        {
            let after = cause.requested.elapsed().as_secs_f64();
            if let Some(r) = self.swaps[&payer].lock().unwrap().iter_mut().rev().find(|r| {
                r.requested_ms == cause.requested_ms && r.subject == cause.subject && r.first_use_after_ms.is_none()
            }) {
                r.first_use_after_ms = Some(after * 1000.0);
            }
            if let Some(f) = &self.on_first_use {
                f(payer, after);
            }
        }
        t
    }

    /// How many entries each cache holds now.
    pub fn cache_sizes(&self) -> CacheSizes {
        CacheSizes {
            plugins: self.loaded.lock().unwrap().len(),
            converters: self.loaded_converters.lock().unwrap().len(),
            master_sets: self.master_sets.lock().unwrap().len(),
        }
    }

    /// The payer's recent swaps, oldest first.
    pub fn swaps(&self, payer: Payer) -> Vec<SwapRecord> {
        self.swaps[&payer].lock().unwrap().iter().cloned().collect()
    }

    /// The master set of a stored version (decoded once per version digest).
    pub fn master_set(&self, v: &tenken_store::MasterVersion) -> Result<Arc<tenken_master::MasterSet>, RegistryError> {
        if let Some(s) = self.master_sets.lock().unwrap().get(&v.digest) {
            return Ok(s.clone());
        }
        let set =
            Arc::new((self.load_masters)(&v.sources).map_err(|message| RegistryError::Masters { id: v.id, message })?);
        self.master_sets.lock().unwrap().insert(v.digest, set.clone());
        Ok(set)
    }

    /// Decodes source files that are not a stored version yet (what a proposal is about to
    /// become), every time: their digest is only known once they are decoded. The result is
    /// then cached under that digest, so activating the version it becomes does not decode
    /// it again (a swap of real masters: seconds saved while claims wait).
    pub fn decode_sources(
        &self,
        sources: &[tenken_store::MasterSource],
    ) -> Result<Arc<tenken_master::MasterSet>, String> {
        let set = Arc::new((self.load_masters)(sources)?);
        self.master_sets.lock().unwrap().insert(set.digest(), set.clone());
        Ok(set)
    }

    /// Loads (once per process) a registered converter plugin.
    pub fn converter(&self, digest: &Digest) -> Result<Arc<tenken_runtime::Converter>, RegistryError> {
        if let Some(c) = self.loaded_converters.lock().unwrap().get(digest) {
            return Ok(c.clone());
        }
        let bytes = self.store.plugin_bytes(digest)?;
        let c = Arc::new(
            tenken_runtime::Converter::load(&self.runtime, &bytes)
                .map_err(|source| RegistryError::Load { digest: *digest, source })?,
        );
        self.loaded_converters.lock().unwrap().insert(*digest, c.clone());
        Ok(c)
    }

    /// Loads (once per process) the plugin with this digest from the store.
    pub fn plugin(&self, digest: &Digest) -> Result<Arc<Plugin>, RegistryError> {
        if let Some(p) = self.loaded.lock().unwrap().get(digest) {
            return Ok(p.clone());
        }
        let bytes = self.store.plugin_bytes(digest)?;
        let p = Arc::new(
            Plugin::load(&self.runtime, &bytes).map_err(|source| RegistryError::Load { digest: *digest, source })?,
        );
        self.loaded.lock().unwrap().insert(*digest, p.clone());
        Ok(p)
    }

    /// A checker running `plugins` (digests) with `masters`.
    pub fn checker_with(
        &self,
        plugins: &[Digest],
        masters: Arc<tenken_master::MasterSet>,
    ) -> Result<Checker, RegistryError> {
        let list = plugins.iter().map(|d| self.plugin(d)).collect::<Result<Vec<_>, _>>()?;
        let engine = Engine::Wasm { runtime: self.runtime.clone(), plugins: list };
        Ok(Checker::new(engine, masters, self.limits.clone()))
    }

    /// A checker running `plugins` with the payer's current master.
    pub fn checker(&self, payer: Payer, plugins: &[Digest]) -> Result<Checker, RegistryError> {
        self.checker_with(plugins, self.table(payer).current_masters().clone())
    }

    fn build(&self, payer: Payer, cause: Option<SwapCause>, ticket: u64) -> Result<Releases, RegistryError> {
        let mut masters: Vec<LiveMaster> = Vec::new();
        for v in self.store.master_versions(payer)?.iter().filter(|v| v.state == tenken_store::MasterState::Active) {
            masters.push(LiveMaster { id: v.id, from: v.from_month, digest: v.digest, set: self.master_set(v)? });
        }
        // Newest last among equal months: `pick` takes the last one in force.
        masters.sort_by_key(|m| (m.from, m.id));
        let mut sets: Vec<LiveSet> = Vec::new();
        for s in self.store.release_sets(payer)?.iter().filter(|s| s.state == tenken_store::ReleaseState::Active) {
            let checkers = masters
                .iter()
                .map(|m| self.checker_with(&s.plugins, m.set.clone()).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()?;
            sets.push(LiveSet { id: s.id, from: s.from_month, plugins: s.plugins.clone(), checkers });
        }
        // An empty table is kept (not an error): the payer's claims are refused with
        // `Releases::not_ready` until masters and rules are installed.
        sets.sort_by_key(|s| (s.from, s.id));
        Ok(Releases { sets, masters, cause, first_used: AtomicBool::new(false), ticket })
    }

    /// The table a pinned file is checked with: `current` when it holds the pin (nearly
    /// always), else one rebuilt from the pinned ids (kept for the file's other chunks).
    pub fn table_for_pin(
        &self,
        payer: Payer,
        current: Arc<Releases>,
        pin: &tenken_store::CheckPin,
    ) -> Result<Arc<Releases>, RegistryError> {
        if current.holds(pin) {
            return Ok(current);
        }
        if let Some((_, t)) = self.pinned.lock().unwrap().iter().find(|(p, t)| *p == payer && t.holds(pin)) {
            return Ok(t.clone());
        }
        let mut masters: Vec<LiveMaster> = Vec::new();
        for p in &pin.masters {
            let v = self.store.master_version(payer, p.id)?.ok_or_else(|| RegistryError::Masters {
                id: p.id,
                message: "the pinned master version is gone from the store".into(),
            })?;
            masters.push(LiveMaster { id: v.id, from: p.from, digest: v.digest, set: self.master_set(&v)? });
        }
        let mut sets: Vec<LiveSet> = Vec::new();
        for p in &pin.sets {
            let s = self.store.release_set(payer, p.id)?.ok_or_else(|| RegistryError::Masters {
                id: p.id,
                message: "the pinned release set is gone from the store".into(),
            })?;
            let checkers = masters
                .iter()
                .map(|m| self.checker_with(&s.plugins, m.set.clone()).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()?;
            sets.push(LiveSet { id: s.id, from: p.from, plugins: s.plugins.clone(), checkers });
        }
        let t = Arc::new(Releases { sets, masters, cause: None, first_used: AtomicBool::new(true), ticket: 0 });
        let mut kept = self.pinned.lock().unwrap();
        if kept.len() >= self.pinned_tables_max {
            kept.pop_front();
        }
        kept.push_back((payer, t.clone()));
        Ok(t)
    }

    /// Rebuilds the payer's table from the store and swaps it in. Everything is loaded
    /// before the swap, so a failure leaves the old table serving. `cause` says what asked
    /// for it (recorded, see `swaps`).
    ///
    /// Two reloads of one payer may run at once (two staff activating, an auto-rollback):
    /// each takes a ticket before it reads the store and publishes only over a table with a
    /// lower ticket. Every change reloads after it commits, so the reload with the highest
    /// ticket read every committed change; an older table finishing last is dropped
    /// (`Reloaded::Superseded`) instead of undoing a newer activation.
    pub fn reload(&self, payer: Payer, cause: SwapCause) -> Result<Reloaded, RegistryError> {
        self.reload_with(payer, cause, false)
    }

    /// `reload` for a change another node made (heard through the store's change feed, or
    /// found by looking): publishes only when the live sets or master versions differ, so
    /// an approval or upload elsewhere records no swap here.
    pub fn reload_if_changed(&self, payer: Payer, cause: SwapCause) -> Result<Reloaded, RegistryError> {
        self.reload_with(payer, cause, true)
    }

    fn reload_with(&self, payer: Payer, cause: SwapCause, only_if_changed: bool) -> Result<Reloaded, RegistryError> {
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut t = self.build(payer, Some(cause.clone()), ticket)?;
        let mut cause = cause;
        if only_if_changed {
            // Another node's change: what it made effective is the newest live set (or,
            // without sets, master version), as far as this node can tell.
            cause.subject = t.sets.iter().map(|s| s.id).max().or(t.masters.iter().map(|m| m.id).max()).unwrap_or(0);
            t.cause = Some(cause.clone());
            let ids = |r: &Releases| {
                (
                    r.sets.iter().map(|s| (s.id, s.from)).collect::<Vec<_>>(),
                    r.masters.iter().map(|m| (m.id, m.from)).collect::<Vec<_>>(),
                )
            };
            if ids(&self.tables[&payer].load()) == ids(&t) {
                return Ok(Reloaded::Unchanged);
            }
        }
        if let Some(hook) = &self.before_publish {
            hook(payer, &cause);
        }
        // The ring's lock serializes publishing: the ticket check and the store are one step.
        // Recorded before the swap (a pointer store, so "live" is now), so that the first use
        // always finds its record and never precedes it.
        let mut ring = self.swaps[&payer].lock().unwrap();
        if self.tables[&payer].load().ticket > ticket {
            return Ok(Reloaded::Superseded);
        }
        if ring.len() >= SWAPS_KEPT_MAX {
            ring.pop_front();
        }
        ring.push_back(SwapRecord {
            action: cause.action.to_owned(),
            subject: cause.subject,
            requested_ms: cause.requested_ms,
            swapped_after_ms: cause.requested.elapsed().as_secs_f64() * 1000.0,
            first_use_after_ms: None,
        });
        self.tables[&payer].store(Arc::new(t));
        Ok(Reloaded::Published)
    }
}
