//! Shared helpers: one runtime per test binary, corpus paths, engines.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use tenken_check::{Checker, Engine};
use tenken_limits::Limits;
use tenken_runtime::Runtime;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `../shared/corpus` beside the repository, if present. When it is missing the test
/// returns early, except under `TENKEN_REQUIRE_CORPUS=1` (set by `.ci/run`), where it fails:
/// CI never skips the corpus tests silently.
pub fn corpus() -> Option<PathBuf> {
    let dir = root().join("../shared/corpus");
    if dir.join("README.md").exists() {
        return Some(dir);
    }
    if std::env::var("TENKEN_REQUIRE_CORPUS").as_deref() == Ok("1") {
        panic!("TENKEN_REQUIRE_CORPUS=1 but {} is missing", dir.display());
    }
    eprintln!("note: {} is missing; corpus test skipped", dir.display());
    None
}

/// Where compiled plugin artifacts are cached across tests (and runs).
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tenken-artifacts")
}

/// Default limits, shared by the default runtime.
pub fn limits() -> Limits {
    Limits::default()
}

/// The process-wide runtime with default limits (one Engine per process, as in production).
pub fn runtime() -> Arc<Runtime> {
    static RT: OnceLock<Arc<Runtime>> = OnceLock::new();
    RT.get_or_init(|| Arc::new(Runtime::new(&limits(), Some(&cache_dir())).expect("runtime"))).clone()
}

/// The bundled default plugins, in the sandbox.
pub fn wasm_engine() -> Engine {
    Engine::bundled(runtime()).expect("bundled plugins load")
}

pub fn demo_masters() -> Arc<tenken_master::MasterSet> {
    static M: OnceLock<Arc<tenken_master::MasterSet>> = OnceLock::new();
    M.get_or_init(|| Arc::new(tenken_master::demo::demo_master_set())).clone()
}

pub fn corpus_masters(corpus: &std::path::Path) -> Arc<tenken_master::MasterSet> {
    static M: OnceLock<Arc<tenken_master::MasterSet>> = OnceLock::new();
    M.get_or_init(|| {
        Arc::new(tenken_master::MasterSet::load_dir(&corpus.join("ssk-master/full")).expect("corpus masters"))
    })
    .clone()
}

pub fn wasm_checker(masters: Arc<tenken_master::MasterSet>) -> Checker {
    Checker::new(wasm_engine(), masters, limits())
}

pub fn native_checker(masters: Arc<tenken_master::MasterSet>) -> Checker {
    Checker::new(Engine::native(), masters, limits())
}
