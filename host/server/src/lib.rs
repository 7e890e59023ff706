//! The tenken server: what institutions connect to during the monthly submission window.
//!
//! Start-up: open the store (SQLite + blobs) in the data directory, seed the demo masters on
//! first start, load each payer's masters and plugins, take a node lease, resume every
//! pending submission, then listen. Shutdown: stop accepting, finish in-flight requests
//! (bounded by `shutdown_grace_ms`), let running chunks finish, leave queued ones pending
//! for the next start.

pub mod access;
pub mod app;
pub mod auth;
mod blocking;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod extract;
pub mod job_status;
pub mod jobs;
pub mod masters;
pub mod metrics;
pub mod openapi;
pub mod plugins;
pub mod registry;
pub mod replay;
pub mod routes;
mod serve;
pub mod submissions;
pub mod window;
pub mod work;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use anyhow::Context;
use tenken_model::Payer;
use tenken_store::Store;
use tenken_store_sqlite::{SqliteStore, StoreOptions};

pub use config::Config;
pub use serve::shutdown_signal;

/// The masters directory of a payer.
pub fn masters_dir(config: &Config, payer: Payer) -> PathBuf {
    config.payer(payer).masters_dir.clone().unwrap_or_else(|| config.data_dir.join("masters").join(payer.as_str()))
}

/// Opens the store: PostgreSQL when `store.url` names one (a node of a cluster), else
/// SQLite in the data directory (the CLI's token and master commands use it too). Callers
/// get the backend-neutral trait object: only this function knows the backend.
pub fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if !config.store.url.is_empty() {
        let c = &config.store;
        let options = tenken_store_postgres::PgOptions {
            connections_max: c.connections_max.max(1) as usize,
            connection_wait_ms_max: c.connection_wait_ms_max,
            statement_ms_max: c.statement_ms_max,
            transaction_idle_ms_max: c.transaction_idle_ms_max,
        };
        let store = tenken_store_postgres::PgStore::open(&c.url, options)
            .with_context(|| format!("opening the PostgreSQL store at {}", redact_url(&c.url)))?;
        return Ok(Arc::new(store));
    }
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

/// The file in a node's data directory that names its cluster's database, so that
/// `tenken token …`, `master import`, `replay` given only `--data-dir` reach the cluster
/// instead of creating an empty SQLite store beside it.
pub const DATABASE_URL_FILE: &str = "database-url";

/// Records `store.url` in the data directory (owner-only: it may hold a password).
pub fn write_database_url(config: &Config) -> anyhow::Result<()> {
    let path = config.data_dir.join(DATABASE_URL_FILE);
    if config.store.url.is_empty() {
        return Ok(());
    }
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    use std::io::Write;
    writeln!(f, "{}", config.store.url)?;
    Ok(())
}

/// The database URL a node recorded in `data_dir` (see [`DATABASE_URL_FILE`]).
pub fn recorded_database_url(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join(DATABASE_URL_FILE)).ok()?;
    let url = text.trim();
    (!url.is_empty()).then(|| url.to_owned())
}

/// A database URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{}{user}{hidden}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// With `demo_masters`: the project's demo masters for each payer whose masters directory is
/// the default and does not exist yet (first start). Without it nothing is written: a payer
/// without masters refuses claims (see `Releases::not_ready`).
pub fn seed(config: &Config) -> anyhow::Result<()> {
    if !config.demo_masters {
        return Ok(());
    }
    for payer in Payer::ALL {
        let dir = masters_dir(config, payer);
        if config.payer(payer).masters_dir.is_none() && !dir.exists() {
            tenken_master::demo::write_demo_masters(&dir)
                .with_context(|| format!("writing the demo masters to {}", dir.display()))?;
            tracing::warn!(%payer, dir = %dir.display(), "installed the DEMO masters (made-up tariffs; replace with `tenken master import`)");
        }
    }
    Ok(())
}

/// Loads each payer's masters, registers the bundled plugins (and `plugins_extra`) as
/// approved system plugins, activates them as the first release set when the payer has
/// none, and builds the live registry.
pub fn build_registry(config: &Config, store: Arc<dyn Store>) -> anyhow::Result<registry::Registry> {
    let cache = config.cache_dir.clone().unwrap_or_else(|| config.data_dir.join("artifacts"));
    let runtime = Arc::new(tenken_runtime::Runtime::new(&config.limits, Some(&cache))?);
    let now = work::now_ms();
    // Masters are decoded only through the sandboxed converter plugins (the native reader is
    // the test oracle), so a master file that breaks a converter cannot break the host.
    let mut converters = std::collections::HashMap::new();
    for (name, bytes) in tenken_bundled::DEFAULT_CONVERTERS {
        let c =
            tenken_runtime::Converter::load(&runtime, bytes).with_context(|| format!("loading converter {name}"))?;
        converters.insert(c.info.name.clone(), Arc::new(c));
    }
    let converters = Arc::new(converters);
    let loader = master_loader(store.clone(), converters.clone());
    for payer in Payer::ALL {
        let dir = masters_dir(config, payer);
        let configured = config.payer(payer).masters_dir.is_some();
        anyhow::ensure!(
            !configured || dir.exists(),
            "{payer}.masters_dir {} does not exist; fix the setting or remove it",
            dir.display()
        );
        let has_masters = store.master_versions(payer)?.iter().any(|v| v.state == tenken_store::MasterState::Active);
        if !has_masters && !dir.exists() {
            tracing::warn!(
                %payer,
                dir = %dir.display(),
                "no masters: claims to {payer} are refused until `tenken master import --payer {payer} DIR` installs them (or start with --demo-masters to try tenken out)"
            );
        } else if !has_masters {
            let v = install_masters_dir(
                &*store,
                &dir,
                payer,
                &loader,
                0,
                "installed from the masters directory (first start)",
                now,
                false,
            )?;
            tracing::info!(%payer, version = v.id, digest = %v.digest, "first master version activated");
        }
        if !store.release_sets(payer)?.is_empty() {
            continue;
        }
        let mut components: Vec<(String, Vec<u8>)> =
            tenken_bundled::DEFAULT_PLUGINS.iter().map(|(n, b)| (n.to_string(), b.to_vec())).collect();
        for p in &config.payer(payer).plugins_extra {
            components.push((
                p.display().to_string(),
                std::fs::read(p).with_context(|| format!("reading plugin {}", p.display()))?,
            ));
        }
        let mut digests = Vec::new();
        for (name, bytes) in components {
            let plugin = tenken_runtime::Plugin::load(&runtime, &bytes)
                .with_context(|| format!("loading plugin {name} for {payer}"))?;
            store.put_plugin(tenken_store::NewPlugin {
                payer,
                digest: plugin.digest,
                bytes,
                name: plugin.info.name.clone(),
                version: plugin.info.version.clone(),
                contract: plugin.contract.clone(),
                described: plugins::described(&plugin),
                uploaded_by: 0,
                signed_by: None,
                state: tenken_store::PluginState::Approved,
                now_ms: now,
            })?;
            digests.push(plugin.digest);
        }
        store.activate(payer, None, &digests, 0, "bundled defaults (first start)", now)?;
        tracing::info!(%payer, plugins = digests.len(), "first release set activated");
    }
    let cache_limits = registry::CacheLimits {
        plugins_idle_max: config.schedule.registry_plugins_idle_max as usize,
        master_sets_idle_max: config.schedule.registry_master_sets_idle_max as usize,
        pinned_tables_max: config.schedule.registry_pinned_tables_max as usize,
    };
    let reg =
        registry::Registry::new(store, runtime, config.limits.clone(), Box::new(loader), converters, cache_limits)?;
    for payer in Payer::ALL {
        let t = reg.table(payer);
        tracing::info!(%payer, sets = t.sets.len(), masters = t.masters.len(), "rules ready");
    }
    Ok(reg)
}

/// Builds a master set from a version's source files, each decoded by the converter plugin
/// of its format.
pub fn master_loader(
    store: Arc<dyn Store>,
    converters: Arc<std::collections::HashMap<String, Arc<tenken_runtime::Converter>>>,
) -> impl Fn(&[tenken_store::MasterSource]) -> Result<tenken_master::MasterSet, String> + Send + Sync + 'static {
    move |sources: &[tenken_store::MasterSource]| {
        let mut files = Vec::new();
        // Each source keeps its own format: a version proposed with `base` holds the base's
        // files (e.g. the first-start ssk-csv files) next to 差分 in the payer's own format.
        let mut decoders: Vec<Arc<tenken_runtime::Converter>> = Vec::new();
        for src in sources {
            let name = src.name.clone();
            let bytes = store.bytes(&src.blob).map_err(|e| format!("{name}: {e}"))?;
            let format = &src.format;
            let converter =
                converters.get(format).ok_or_else(|| format!("{name}: no converter for format {format:?}"))?.clone();
            decoders.push(converter);
            files.push((name, bytes));
        }
        let decode =
            |kind, name: &str, bytes: &[u8]| -> Result<Vec<tenken_master::MasterRow>, tenken_master::MasterError> {
                let err = |message: String| tenken_master::MasterError::Converter { file: name.to_owned(), message };
                // The source by name (and by its bytes, should two sources share a name).
                let mut same_name = files.iter().zip(&decoders).filter(|((n, _), _)| n == name).peekable();
                let first = *same_name.peek().ok_or_else(|| err("not among the version's sources".into()))?;
                let ((_, _), converter) = same_name.find(|((_, b), _)| b == bytes).unwrap_or(first);
                converter
                    .decode(kind, bytes)
                    .map_err(|e| err(e.to_string()))?
                    .iter()
                    .map(|r| tenken_master::canon::from_canon(r).map_err(err))
                    .collect()
            };
        tenken_master::MasterSet::from_files_with(&files, &decode).map_err(|e| e.to_string())
    }
}

/// Stores every file of a masters directory and makes them the payer's active master
/// version (the operator's bootstrap: first start and `tenken master import`), or — with
/// `force_proposal`, `master import --force` on a store that has masters — a *proposed*
/// version, audited as `master-import-forced`, that staff re-check and approve like any
/// other (kokuho's needs ssk's approval too).
pub fn install_masters_dir(
    store: &dyn Store,
    dir: &Path,
    payer: Payer,
    loader: &dyn Fn(&[tenken_store::MasterSource]) -> Result<tenken_master::MasterSet, String>,
    actor: i64,
    reason: &str,
    now: i64,
    force_proposal: bool,
) -> anyhow::Result<tenken_store::MasterVersion> {
    let mut sources = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> =
            std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
                let blob = store.put_file(&bytes)?;
                let name = e.file_name().to_string_lossy().into_owned();
                sources.push(tenken_store::MasterSource { name, blob, format: "ssk-csv".into() });
            }
        }
    }
    let set = loader(&sources).map_err(|e| anyhow::anyhow!("{payer} masters in {}: {e}", dir.display()))?;
    anyhow::ensure!(!set.is_empty(), "no master rows in {}", dir.display());
    if force_proposal {
        // Not active: a proposal like any other, with no report yet (staff re-check it on the
        // server for its diff and impact, then approve it; kokuho's needs ssk too).
        let provided_by = (payer == Payer::Kokuho).then_some(Payer::Ssk);
        let v = store.add_master_version(
            payer,
            None,
            &set.digest(),
            &sources,
            provided_by,
            &tenken_store::MasterReport::default(),
            actor,
            reason,
            now,
        )?;
        store.add_audit(tenken_store::AuditEvent {
            id: 0,
            payer,
            actor,
            at_ms: now,
            action: "master-import-forced".into(),
            digest: Some(v.digest),
            release_set: None,
            reason: format!("master version {}: {reason}", v.id),
        })?;
        return Ok(v);
    }
    Ok(store.install_master(payer, None, &set.digest(), &sources, actor, reason, now)?)
}

/// Runs the server on `listener` until `shutdown` completes (mini-redis's `server::run`
/// shape: `tenken serve` passes [`shutdown_signal`], a test a channel). `config.listen` is
/// not used here: the caller bound the listener.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    run_with(config, listener, shutdown, Arc::new(clock::SystemClock)).await
}

/// `run` on the given clock (tests move a [`clock::ManualClock`] instead of waiting).
pub async fn run_with(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    clock: Arc<dyn clock::Clock>,
) -> anyhow::Result<()> {
    // Start-up does blocking store work (and the PostgreSQL client must not run on the
    // runtime's threads): all of it on a blocking thread.
    let (store, work, registry, metrics) = {
        let (config, clock) = (config.clone(), clock.clone());
        tokio::task::spawn_blocking(move || start_up(&config, clock)).await??
    };
    let dyn_store = store.clone();
    let adm = &config.admission;
    let per_minute = std::num::NonZeroU32::new(adm.submissions_per_institution_per_minute_max.max(1)).unwrap();
    let burst = std::num::NonZeroU32::new(adm.submissions_per_institution_burst_max.max(1)).unwrap();
    let limiter = governor::RateLimiter::keyed(governor::Quota::per_minute(per_minute).allow_burst(burst));
    let boot = (work::now_ms() as u64) & 0xffff_ffff;
    let app = Arc::new(app::App {
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
        converters: registry.converters.clone(),
        next_request: AtomicU64::new(0),
        boot,
        config: config.clone(),
        jobs: Arc::new(jobs::Jobs::start(
            config.schedule.jobs_queued_max as usize,
            config.schedule.jobs_kept_max as usize,
        )?),
        clock,
    });
    let result = serve::serve(app, listener, shutdown).await;
    tracing::info!("stopping workers; queued chunks stay pending for the next start");
    tokio::task::spawn_blocking(move || {
        work.shutdown();
        store.close();
    })
    .await?;
    result
}

/// What `run_with` starts before it serves: the store, the registry, the workers.
type Started = (Arc<dyn Store>, Arc<work::Work>, Arc<registry::Registry>, Arc<metrics::Metrics>);

/// Opens the store, bootstraps a new one (under the cluster-wide bootstrap lock), builds
/// the registry, registers this node and starts its workers. Blocking.
fn start_up(config: &Config, clock: Arc<dyn clock::Clock>) -> anyhow::Result<Started> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    seed(config)?;
    let store = open_store(config)?;
    write_database_url(config)?;
    let dyn_store = store.clone();
    // Nodes starting together on an empty database: one bootstraps, the others wait and
    // find masters, release sets and seeds in place.
    let bootstrap = dyn_store.bootstrap_lock()?;
    let metrics = Arc::new(metrics::Metrics::for_node(&config.schedule.node_name));
    let registry = {
        let mut r = build_registry(config, dyn_store.clone())?;
        let m = metrics.clone();
        r.on_first_use = Some(Box::new(move |payer, seconds| {
            m.first_use_latency.get_or_create(&metrics::PayerLabel { payer: payer.to_string() }).observe(seconds);
        }));
        Arc::new(r)
    };
    let lease = config.schedule.lease_ms as i64;
    let node = dyn_store.register_node(&config.schedule.node_name, clock.now_ms(), lease)?;
    let pools = Payer::ALL
        .into_iter()
        .map(|payer| {
            let pc = config.payer(payer);
            (payer, pc.workers.max(1), pc.queue_chunks_max)
        })
        .collect();
    let work = work::Work::new(
        dyn_store.clone(),
        metrics.clone(),
        registry.clone(),
        pools,
        work::WorkOptions {
            chunk_receipts: config.schedule.chunk_receipts.max(1),
            active_files_max: config.schedule.active_files_max,
            lease_ms: config.schedule.lease_ms,
            idle_poll_ms: config.schedule.idle_poll_ms,
            node_name: config.schedule.node_name.clone(),
            findings_per_file_max: config.limits.check_findings_per_file_max,
            auto_rollback_window_receipts: config.schedule.auto_rollback_window_receipts,
            auto_rollback_failure_rate_max: config.schedule.auto_rollback_failure_rate_max,
            worker_nice: config.schedule.check_worker_nice.min(19),
            change_poll_ms: config.store.change_poll_ms,
            stats_window_ms: config.store.stats_window_ms,
        },
        node,
        clock.clone(),
    );
    seed_regression(&config.limits, &work, &dyn_store)?;
    drop(bootstrap);
    let resumed = work.recover()?;
    if resumed > 0 {
        tracing::info!(submissions = resumed, "resumed pending submissions");
    }
    work.start();

    Ok((store, work, registry, metrics))
}

/// First start: each payer's regression corpus gets two generated claim files (the
/// project's own demo data) with the findings of its first release set as expectations.
fn seed_regression(limits: &tenken_limits::Limits, work: &work::Work, store: &Arc<dyn Store>) -> anyhow::Result<()> {
    for payer in Payer::ALL {
        if !store.regression(payer)?.is_empty() {
            continue;
        }
        // A payer without masters gets its seeds once masters are installed (next start).
        let Some(masters) = work.registry.table(payer).masters_now().cloned() else { continue };
        let files = match tenken_lifecycle::seed_cases(payer, &masters) {
            Ok(f) => f,
            Err(e) => {
                // Real masters the generator cannot use: staff add cases through the API.
                tracing::warn!(%payer, error = %e, "could not generate regression seeds");
                continue;
            }
        };
        let table = work.registry.table(payer);
        for f in &files {
            let expected = table.expected(&f.bytes, payer, limits)?;
            store.add_regression(payer, &f.name, &f.bytes, &expected, 0, work::now_ms())?;
        }
        tracing::info!(%payer, cases = files.len(), "seeded the regression corpus");
    }
    Ok(())
}

/// A bundled master-format converter by the format name its `describe` reports (`ssk-csv`,
/// `kokuho-fixed`).
pub fn bundled_converter(name: &str) -> Option<&'static [u8]> {
    tenken_bundled::converter(name)
}

/// Writes `<data_dir>/serve.addr` (tmp + rename) so scripts and tests find a port-0 server.
pub fn write_addr_file(data_dir: &Path, addr: SocketAddr) -> std::io::Result<()> {
    let tmp = data_dir.join("serve.addr.tmp");
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::rename(tmp, data_dir.join("serve.addr"))
}
