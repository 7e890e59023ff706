//! Test-only plugin components: the hostile fixtures (`plugins/hostile-*`), the contract and
//! converter fixtures (`plugins/fixture-*`) and the Rust twins of the language examples
//! (`plugins/twin-*`), built for wasm32-wasip2 by `build.rs`; only their paths are exported.
//!
//! Why a crate of its own (wasmtime's test-programs artifacts pattern): it is a
//! dev-dependency only, so building the shipped binary never compiles these.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

/// Path of a test component by its directory name under `plugins/` (`hostile-loop`,
/// `fixture-contract-v2`, `twin-js-rule`, ...).
pub fn hostile_plugin_path(name: &str) -> Option<&'static str> {
    PATHS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}
