//! Hostile test fixture: allocates until memory runs out (the store limit must stop it).
const NAME: &str = "hostile-memory";
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
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![n as u8; 16 << 20];
        block[0] = 1;
        hoard.push(std::hint::black_box(block));
    }
}
