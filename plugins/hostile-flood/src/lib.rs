//! Hostile test fixture: floods stdout (the bounded output pipe must stop it).
const NAME: &str = "hostile-flood";
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
    loop {
        println!(
            "hostile-flood: {n} receipts, and a very long line of noise to fill the pipe quickly ................................."
        );
    }
}
