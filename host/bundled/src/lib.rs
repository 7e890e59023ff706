//! The default rule plugins and master-format converters, embedded so `tenken check` and
//! `tenken serve` need no extra step.
//!
//! The bytes come from `build.rs`, which compiles `plugins/check-*` and `plugins/convert-*`
//! for wasm32-wasip2. Test fixtures are not here: `tenken-test-artifacts` (a dev-dependency)
//! builds them.

use std::sync::{Arc, OnceLock};

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The bundled converter whose `describe` reports format `name` (`ssk-csv`,
/// `kokuho-fixed`). Why by the described name: it is the name the host, the store and the
/// masters' `master_format` use; a crate name is only how this repository builds it.
pub fn converter(name: &str) -> Option<&'static [u8]> {
    converters().iter().find(|(n, _)| n == name).map(|(_, b)| *b)
}

/// (described format name, component bytes) of every bundled converter, in build order.
/// Computed once per process: each converter is loaded in a small sandbox of its own and
/// asked to `describe` itself. A bundled converter that cannot is a build defect: panics.
pub fn converters() -> &'static [(String, &'static [u8])] {
    static BY_NAME: OnceLock<Vec<(String, &'static [u8])>> = OnceLock::new();
    BY_NAME.get_or_init(|| {
        let limits = tenken_limits::Limits { plugin_instances_max: 1, ..Default::default() };
        let runtime = Arc::new(tenken_runtime::Runtime::new(&limits, None).expect("a sandbox to describe converters"));
        DEFAULT_CONVERTERS
            .iter()
            .map(|(crate_name, bytes)| {
                let c = tenken_runtime::Converter::load(&runtime, bytes)
                    .unwrap_or_else(|e| panic!("bundled converter {crate_name} does not load: {e}"));
                (c.info.name, *bytes)
            })
            .collect()
    })
}
