//! The tenken server: what institutions connect to during the monthly submission window.
//!
//! Start-up: open the store (SQLite + blobs) in the data directory, seed the demo masters on
//! first start, load each payer's masters and plugins, take a node lease, resume every
//! pending submission, then listen. Shutdown: stop accepting, finish in-flight requests
//! (bounded by `shutdown_grace_ms`), let running chunks finish, leave queued ones pending
//! for the next start.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod metrics;
pub mod openapi;
mod serve;
pub mod window;
pub mod work;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use anyhow::Context;
use tenken_check::{Checker, Engine};
use tenken_model::Payer;
use tenken_store::{SqliteStore, Store, StoreOptions};

pub use config::Config;

/// The masters directory of a payer.
pub fn masters_dir(config: &Config, payer: Payer) -> PathBuf {
    config.payer(payer).masters_dir.clone().unwrap_or_else(|| config.data_dir.join("masters").join(payer.as_str()))
}

/// Opens the store in the data directory (the CLI's token and master commands use it too).
pub fn open_store(config: &Config) -> anyhow::Result<Arc<SqliteStore>> {
    let s = &config.schedule;
    let store = SqliteStore::open(
        &config.data_dir,
        StoreOptions {
            write_queue_max: s.store_write_queue_max as usize,
            group_commit_max: s.store_group_commit_max as usize,
            ..StoreOptions::default()
        },
    )
    .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    Ok(Arc::new(store))
}

/// First start: the demo masters for each payer whose masters directory is the default.
fn seed(config: &Config) -> anyhow::Result<()> {
    for payer in Payer::ALL {
        let dir = masters_dir(config, payer);
        if config.payer(payer).masters_dir.is_none() && !dir.exists() {
            tenken_master::demo::write_demo_masters(&dir)
                .with_context(|| format!("writing the demo masters to {}", dir.display()))?;
            tracing::info!(%payer, dir = %dir.display(), "installed the demo masters (replace with `tenken master import`)");
        }
    }
    Ok(())
}

fn build_checkers(config: &Config) -> anyhow::Result<Vec<(Payer, Arc<Checker>)>> {
    let cache = config.cache_dir.clone().unwrap_or_else(|| config.data_dir.join("artifacts"));
    let runtime = Arc::new(tenken_runtime::Runtime::new(&config.limits, Some(&cache))?);
    let Engine::Wasm { plugins: bundled, .. } = Engine::bundled(runtime.clone())? else {
        anyhow::bail!("bundled engine is not wasm");
    };
    let mut out = Vec::new();
    for payer in Payer::ALL {
        let dir = masters_dir(config, payer);
        let masters = tenken_master::MasterSet::load_dir(&dir)
            .with_context(|| format!("loading {payer} masters from {}", dir.display()))?;
        let mut plugins = bundled.clone();
        for p in &config.payer(payer).plugins_extra {
            let bytes = std::fs::read(p).with_context(|| format!("reading plugin {}", p.display()))?;
            let plugin = tenken_runtime::Plugin::load(&runtime, &bytes)
                .with_context(|| format!("loading plugin {} for {payer}", p.display()))?;
            plugins.push(Arc::new(plugin));
        }
        tracing::info!(%payer, plugins = plugins.len(), masters = %masters.digest(), "rules ready");
        let engine = Engine::Wasm { runtime: runtime.clone(), plugins };
        out.push((payer, Arc::new(Checker::new(engine, Arc::new(masters), config.limits.clone()))));
    }
    Ok(out)
}

/// Runs the server until SIGINT/SIGTERM. `on_listening` gets the bound address.
pub async fn run(config: Config, on_listening: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    seed(&config)?;
    let store = open_store(&config)?;
    let dyn_store: Arc<dyn Store> = store.clone();
    let checkers = {
        let c = config.clone();
        tokio::task::spawn_blocking(move || build_checkers(&c)).await??
    };
    let metrics = Arc::new(metrics::Metrics::new());
    let lease = config.schedule.lease_ms as i64;
    let owner = dyn_store.register_node(work::now_ms(), lease)?;
    let pools = checkers
        .into_iter()
        .map(|(payer, checker)| {
            let pc = config.payer(payer);
            (payer, work::Releases::single(checker), pc.workers.max(1), pc.queue_chunks_max)
        })
        .collect();
    let work = work::Work::new(
        dyn_store.clone(),
        metrics.clone(),
        pools,
        work::WorkOptions {
            chunk_receipts: config.schedule.chunk_receipts.max(1),
            quantum_receipts: config.schedule.quantum_receipts.max(1),
            active_files_max: config.schedule.active_files_max,
            lease_ms: config.schedule.lease_ms,
            findings_per_file_max: config.limits.check_findings_per_file_max,
        },
        owner,
    );
    let resumed = work.recover()?;
    if resumed > 0 {
        tracing::info!(submissions = resumed, "resumed pending submissions");
    }
    work.start();

    let adm = &config.admission;
    let per_minute = std::num::NonZeroU32::new(adm.submissions_per_institution_per_minute_max.max(1)).unwrap();
    let burst = std::num::NonZeroU32::new(adm.submissions_per_institution_burst_max.max(1)).unwrap();
    let limiter = governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute).allow_burst(burst));
    let boot = (work::now_ms() as u64) & 0xffff_ffff;
    let app = Arc::new(api::App {
        auth: Box::new(auth::TokenAuth::new(
            dyn_store.clone(),
            Duration::from_millis(adm.token_cache_ms),
            adm.token_cache_entries_max as usize,
        )),
        uploads: Arc::new(tokio::sync::Semaphore::new(adm.uploads_inflight_max.max(1) as usize)),
        limiter,
        store: dyn_store.clone(),
        work: work.clone(),
        metrics,
        ready: AtomicBool::new(false),
        next_request: AtomicU64::new(0),
        boot,
        config: config.clone(),
    });
    let result = serve::serve(app, on_listening).await;
    tracing::info!("stopping workers; queued chunks stay pending for the next start");
    tokio::task::spawn_blocking(move || {
        work.shutdown();
        store.close();
    })
    .await?;
    result
}

/// Writes `<data_dir>/serve.addr` (tmp + rename) so scripts and tests find a port-0 server.
pub fn write_addr_file(data_dir: &Path, addr: SocketAddr) -> std::io::Result<()> {
    let tmp = data_dir.join("serve.addr.tmp");
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::rename(tmp, data_dir.join("serve.addr"))
}
