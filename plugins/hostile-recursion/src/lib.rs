//! Hostile test fixture: unbounded recursion (the wasm stack limit must stop it).
const NAME: &str = "hostile-recursion";
use tenken_guest::bindings::exports::tenken::plugin::checker::Guest;
use tenken_guest::bindings::tenken::plugin::types::{CheckContext, FileView, Finding, PluginInfo, Receipt};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo { name: NAME.into(), version: "0.0.1".into(), rules: vec![] }
    }

    fn check_file(_ctx: CheckContext, _file: FileView) -> Vec<Finding> {
        vec![]
    }

    fn check_receipts(_ctx: CheckContext, receipts: Vec<Receipt>) -> Vec<Finding> {
        misbehave(receipts.len());
        vec![]
    }
}

tenken_guest::bindings::export!(Plugin);

fn misbehave(n: usize) {
    std::hint::black_box(deep(n as u64 + 1));
}

/// Recursion whose frames live on the wasm stack (scalars only, no shadow-stack arrays), so
/// it is the engine's `max_wasm_stack` that stops it.
fn deep(x: u64) -> u64 {
    if x == 0 {
        return 0;
    }
    deep(std::hint::black_box(x.wrapping_add(1))).wrapping_add(std::hint::black_box(x))
}
