//! The default rule plugins, embedded so `tenken check` and `tenken serve` need no extra step.
//!
//! The bytes come from `build.rs`, which compiles `plugins/check-*` for wasm32-wasip2. The
//! hostile fixtures (`plugins/hostile-*`) are built too but only their paths are exported,
//! for the runtime's tests.

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// Path of a hostile fixture component (`hostile-loop`, `hostile-memory`, ...), for tests.
pub fn hostile_plugin_path(name: &str) -> Option<&'static str> {
    HOSTILE_PLUGIN_PATHS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}
