//! The plugin registry as the server runs it: each payer's live release sets, hot-swapped.
//!
//! Why `ArcSwap`: a worker takes the payer's release table once per chunk and keeps that
//! `Arc` until the chunk is recorded, so work already started finishes on the versions it
//! started with, while the next chunk pulled after an activation sees the new table (the
//! swap is a pointer store: well under the 100 ms the lifecycle promises). Plugins are
//! loaded from the store by digest, compiled once at upload (artifact cache), and kept in
//! memory by digest so activation and rollback never compile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tenken_check::{Checker, Engine};
use tenken_limits::Limits;
use tenken_model::{Payer, YearMonth};
use tenken_runtime::{Plugin, Runtime};
use tenken_store::{ReleaseSet, Store};

/// One live release set, ready to check.
pub struct LiveSet {
    pub id: i64,
    /// None = from the beginning.
    pub from: Option<YearMonth>,
    pub plugins: Vec<String>,
    pub masters: String,
    pub checker: Arc<Checker>,
}

/// A payer's live release sets, sorted by `from`.
pub struct Releases {
    pub sets: Vec<LiveSet>,
}

impl Releases {
    /// The index of the set in force for `month` (the earliest set when unknown).
    pub fn index_for(&self, month: Option<YearMonth>) -> usize {
        let Some(month) = month else { return 0 };
        self.sets.iter().rposition(|s| s.from.is_none_or(|f| f <= month)).unwrap_or(0)
    }
}

pub fn parse_from(s: &str) -> Option<YearMonth> {
    if s == "0000-01" {
        return None;
    }
    let (y, m) = s.split_once('-')?;
    YearMonth::new(y.parse().ok()?, m.parse().ok()?)
}

pub struct PayerMasters {
    pub set: Arc<tenken_master::MasterSet>,
    pub digest: String,
}

pub struct Registry {
    pub store: Arc<dyn Store>,
    pub runtime: Arc<Runtime>,
    pub limits: Limits,
    loaded: Mutex<HashMap<String, Arc<Plugin>>>,
    masters: HashMap<Payer, PayerMasters>,
    tables: HashMap<Payer, ArcSwap<Releases>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Store(#[from] tenken_store::StoreError),
    #[error("plugin {digest} could not be loaded: {source}")]
    Load { digest: String, source: tenken_runtime::RuntimeError },
    #[error("{payer} has no active release set")]
    NoRelease { payer: Payer },
}

impl Registry {
    pub fn new(
        store: Arc<dyn Store>,
        runtime: Arc<Runtime>,
        limits: Limits,
        masters: HashMap<Payer, PayerMasters>,
    ) -> Result<Registry, RegistryError> {
        let mut r = Registry {
            store,
            runtime,
            limits,
            loaded: Mutex::new(HashMap::new()),
            masters,
            tables: HashMap::new(),
        };
        for payer in Payer::ALL {
            let t = r.build(payer)?;
            r.tables.insert(payer, ArcSwap::from_pointee(t));
        }
        Ok(r)
    }

    /// The payer's live table (hold it for the duration of one unit of work).
    pub fn table(&self, payer: Payer) -> Arc<Releases> {
        self.tables[&payer].load_full()
    }

    pub fn masters(&self, payer: Payer) -> &PayerMasters {
        &self.masters[&payer]
    }

    /// Loads (once per process) the plugin with this digest from the store.
    pub fn plugin(&self, digest: &str) -> Result<Arc<Plugin>, RegistryError> {
        if let Some(p) = self.loaded.lock().unwrap().get(digest) {
            return Ok(p.clone());
        }
        let bytes = self.store.plugin_bytes(digest)?;
        let p = Arc::new(
            Plugin::load(&self.runtime, &bytes).map_err(|source| RegistryError::Load { digest: digest.into(), source })?,
        );
        self.loaded.lock().unwrap().insert(digest.to_owned(), p.clone());
        Ok(p)
    }

    /// A checker running `plugins` (digests) with the payer's masters.
    pub fn checker(&self, payer: Payer, plugins: &[String]) -> Result<Checker, RegistryError> {
        let list = plugins.iter().map(|d| self.plugin(d)).collect::<Result<Vec<_>, _>>()?;
        let engine = Engine::Wasm { runtime: self.runtime.clone(), plugins: list };
        Ok(Checker::new(engine, self.masters[&payer].set.clone(), self.limits.clone()))
    }

    fn live(&self, payer: Payer, s: &ReleaseSet) -> Result<LiveSet, RegistryError> {
        Ok(LiveSet {
            id: s.id,
            from: parse_from(&s.from_month),
            plugins: s.plugins.clone(),
            masters: self.masters[&payer].digest.clone(),
            checker: Arc::new(self.checker(payer, &s.plugins)?),
        })
    }

    fn build(&self, payer: Payer) -> Result<Releases, RegistryError> {
        let mut sets: Vec<LiveSet> = Vec::new();
        for s in self.store.release_sets(payer)?.iter().filter(|s| s.state == "active") {
            sets.push(self.live(payer, s)?);
        }
        if sets.is_empty() {
            return Err(RegistryError::NoRelease { payer });
        }
        sets.sort_by_key(|s| s.from);
        Ok(Releases { sets })
    }

    /// Rebuilds the payer's table from the store and swaps it in. Everything is loaded
    /// before the swap, so a failure leaves the old table serving.
    pub fn reload(&self, payer: Payer) -> Result<(), RegistryError> {
        let t = self.build(payer)?;
        self.tables[&payer].store(Arc::new(t));
        Ok(())
    }
}
