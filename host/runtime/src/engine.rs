//! The process-wide engine: pooling allocator, epoch ticker, linker, artifact cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tenken_limits::Limits;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::OfficeCheck;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("could not set up the wasm engine: {0}")]
    Engine(String),
    #[error("plugin is {size} bytes; the limit is {max} bytes (plugin_component_bytes_max)")]
    TooLarge { size: u64, max: u64 },
    #[error("not a valid component: {0}")]
    Compile(String),
    #[error(
        "all {slots} compile slots (plugin_compiles_max) stayed busy for the {waited_ms} ms this load could \
         wait: other components are being compiled; retry later"
    )]
    CompileBusy { slots: u32, waited_ms: u64 },
    #[error(
        "the component did not compile within {waited_ms} ms; its compile goes on in the background, in one \
         of the compile slots (plugin_compiles_max), and with an artifact cache a retry of the same component \
         then loads quickly"
    )]
    CompileTimeout { waited_ms: u64 },
    #[error(
        "plugin was built for {found}; this host serves {expected}: rebuild the plugin against \
         the host's wit/ (compatible = same major version, minor not newer)"
    )]
    IncompatibleContract { found: String, expected: String },
    #[error("plugin does not fit the office-check world: {0}")]
    NotOfficeCheck(String),
    #[error("plugin does not link: {0}")]
    Link(String),
    #[error("plugin's describe() failed: {0}")]
    Describe(String),
    #[error("plugin's describe() breaks the plugin contract: {0}")]
    Declares(String),
}

/// Per-store state: the WASI context (granting nothing), the resource table, store limits
/// and the masters the `master` import answers from.
pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: MeteredLimits,
    pub(crate) masters: Arc<dyn tenken_model::Masters + Send + Sync>,
}

/// The store limits, plus the linear memory the guest was granted in this store (initial
/// sizes and every successful grow, over all its memories; memories never shrink, so this
/// is the store's peak). Reported by `tenken plugin test`.
pub(crate) struct MeteredLimits {
    inner: StoreLimits,
    pub(crate) memory_bytes: u64,
    last_grow: u64,
}

impl wasmtime::ResourceLimiter for MeteredLimits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let ok = self.inner.memory_growing(current, desired, maximum)?;
        self.last_grow = if ok { desired.saturating_sub(current) as u64 } else { 0 };
        self.memory_bytes += self.last_grow;
        Ok(ok)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // Permitted above but not done: it was not granted after all.
        self.memory_bytes -= std::mem::take(&mut self.last_grow);
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// One per process: create it once and share it (`Arc`); it owns the epoch ticker thread.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) limits: Limits,
    pub(crate) cache_dir: Option<PathBuf>,
    ticker_stop: Arc<std::sync::atomic::AtomicBool>,
    /// Free instance slots: a full pool makes instantiation fail, which would be reported
    /// as the plugin's fault, so callers wait for a slot instead.
    pub(crate) slots: Slots,
    /// Compile slots (`plugin_compiles_max`): see `compile.rs`.
    pub(crate) compiles: Arc<crate::compile_slots::CompileSlots>,
}

/// A counting semaphore sized to the pooling allocator's instance count.
pub(crate) struct Slots {
    free: std::sync::Mutex<u32>,
    freed: std::sync::Condvar,
}

impl Slots {
    fn new(n: u32) -> Slots {
        Slots { free: std::sync::Mutex::new(n), freed: std::sync::Condvar::new() }
    }

    /// Blocks until a slot is free; the slot returns when the guard drops.
    pub(crate) fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        SlotGuard(self)
    }
}

pub(crate) struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

impl Runtime {
    /// Builds the engine with every pooling bound set from `limits`.
    pub fn new(limits: &Limits, cache_dir: Option<&Path>) -> Result<Runtime, RuntimeError> {
        let err = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
        let instances = limits.plugin_instances_max.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // A Rust wasip2 component is one main core module plus a handful of shims; 16
        // core instances and 2 memories per component leave room for other languages'
        // guests without letting one component take the pool.
        pool.total_component_instances(instances)
            .total_core_instances(instances * 16)
            .max_core_instances_per_component(16)
            .total_memories(instances * 2)
            .max_memories_per_component(2)
            .total_tables(instances * 8)
            .max_tables_per_component(8)
            .total_stacks(instances)
            .table_elements(limits.plugin_table_elements_max as usize)
            .max_memory_size(limits.plugin_memory_bytes_max as usize)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .epoch_interruption(true)
            .max_wasm_stack(limits.plugin_stack_bytes_max as usize)
            .wasm_component_model(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).map_err(err)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(err)?;
        OfficeCheck::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s).map_err(err)?;

        // The epoch ticker: deadlines are counted in ticks. It holds only a weak handle so
        // it never keeps the engine alive.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weak = engine.weak();
        let tick = Duration::from_millis(limits.plugin_epoch_tick_ms.max(1));
        let stop2 = stop.clone();
        std::thread::Builder::new()
            .name("tenken-epoch".into())
            .spawn(move || {
                while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| RuntimeError::Engine(format!("cannot start the epoch thread: {e}")))?;

        Ok(Runtime {
            engine,
            linker,
            limits: limits.clone(),
            cache_dir: cache_dir.map(Path::to_path_buf),
            ticker_stop: stop,
            slots: Slots::new(instances),
            compiles: crate::compile_slots::CompileSlots::new(limits.plugin_compiles_max),
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn new_store_state(
        &self,
        masters: Arc<dyn tenken_model::Masters + Send + Sync>,
        out: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
    ) -> HostState {
        let mut b = wasmtime_wasi::WasiCtxBuilder::new();
        // No preopens, no env, no args, no network: the builder grants nothing unless asked.
        // Clocks and randomness are fixed so a plugin cannot observe time or differ between
        // a check and its replay.
        b.stdout(out.clone())
            .stderr(out)
            .wall_clock(FixedClock)
            .monotonic_clock(FixedClock)
            .secure_random(ZeroRng)
            .insecure_random(ZeroRng)
            .insecure_random_seed(0);
        let limits = wasmtime::StoreLimitsBuilder::new()
            .memory_size(self.limits.plugin_memory_bytes_max as usize)
            .table_elements(self.limits.plugin_table_elements_max as usize)
            .instances(32)
            .tables(16)
            .memories(4)
            .trap_on_grow_failure(true)
            .build();
        HostState {
            wasi: b.build(),
            table: ResourceTable::new(),
            limits: MeteredLimits { inner: limits, memory_bytes: 0, last_grow: 0 },
            masters,
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A clock stuck at the epoch: plugins get no time source.
struct FixedClock;

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Deterministic "randomness" (all zeros): rule plugins must be pure functions.
struct ZeroRng;

impl rand_core::TryRng for ZeroRng {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(0)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(0)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        dst.fill(0);
        Ok(())
    }
}
