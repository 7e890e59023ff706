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

#[allow(unconditional_recursion)]
fn deep(x: u64) -> u64 {
    let pad = std::hint::black_box([x; 16]);
    deep(pad[3].wrapping_add(1)).wrapping_add(pad[7])
}
