//! Hostile plugins (infinite loop, memory bomb, deep recursion, trap, output flood) next to
//! the default rule pack: each yields `plugin.` findings on the receipts it failed on, within
//! its deadline budget, while the default rules still report and the host stays healthy.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tenken_check::{Checker, Engine};
use tenken_limits::Limits;
use tenken_runtime::{Plugin, Runtime};

use crate::common;

const CALL_MS: u64 = 400;

fn hostile_limits() -> Limits {
    Limits {
        plugin_call_ms_max: CALL_MS,
        plugin_memory_bytes_max: 64 << 20,
        check_batch_receipts_max: 16,
        check_workers_max: 2,
        ..Limits::default()
    }
}

fn hostile_runtime() -> Arc<Runtime> {
    static RT: OnceLock<Arc<Runtime>> = OnceLock::new();
    RT.get_or_init(|| Arc::new(Runtime::new(&hostile_limits(), Some(&common::cache_dir())).unwrap())).clone()
}

fn run_with(hostile: &str, expected_rule: &str) {
    let rt = hostile_runtime();
    let mut plugins: Vec<Arc<Plugin>> =
        tenken_bundled::DEFAULT_PLUGINS.iter().map(|(_, bytes)| Arc::new(Plugin::load(&rt, bytes).unwrap())).collect();
    let path = tenken_test_artifacts::hostile_plugin_path(hostile).unwrap();
    let bad = Arc::new(Plugin::load(&rt, &std::fs::read(path).unwrap()).unwrap());
    assert_eq!(bad.info.name, hostile);
    plugins.push(bad);
    let masters = common::demo_masters();
    let checker = Checker::new(Engine::Wasm { runtime: rt.clone(), plugins }, masters.clone(), hostile_limits());

    // 60 receipts in 4 batches, with some missing 傷病名 so the default rules have findings.
    let opts = tenken_gen::GenOptions {
        receipts: 60,
        institutions: 1,
        seed: 3,
        inject: vec![(tenken_gen::InjectKind::MissingDiagnosis, 0.3)],
        ..Default::default()
    };
    let file = tenken_gen::generate(&opts, &masters).unwrap().remove(0);
    let t = Instant::now();
    let report = checker.check_bytes(&file.bytes, None).unwrap();
    let elapsed = t.elapsed();

    // Within the budget: at most plugin_failures_per_file_max deadlines per worker, plus slack.
    let budget =
        Duration::from_millis(CALL_MS * hostile_limits().plugin_failures_per_file_max as u64) + Duration::from_secs(5);
    assert!(elapsed < budget, "{hostile}: took {elapsed:?}, budget {budget:?}");

    // Every receipt carries a plugin. finding, and the expected kind appears.
    for n in 1..=60u32 {
        assert!(
            report.findings.iter().any(|f| f.receipt == Some(n) && f.rule.starts_with("plugin.")),
            "{hostile}: receipt {n} has no plugin. finding"
        );
    }
    assert!(
        report.findings.iter().any(|f| f.rule == expected_rule),
        "{hostile}: no {expected_rule} finding: {:#?}",
        report.findings.iter().filter(|f| f.rule.starts_with("plugin.")).take(5).collect::<Vec<_>>()
    );
    // The default rules still ran: every injected missing diagnosis is reported.
    assert!(!file.injections.is_empty());
    for inj in &file.injections {
        assert!(
            report.findings.iter().any(|f| f.rule == inj.expected_rule && f.receipt == Some(inj.receipt)),
            "{hostile}: default rule finding for {inj:?} missing"
        );
    }
    // And the plugin. findings name only the hostile plugin.
    assert!(report.findings.iter().filter(|f| f.rule.starts_with("plugin.")).all(|f| f.message.contains(hostile)));

    // The host is still healthy: the same runtime checks a clean file with no plugin findings.
    let clean = Checker::new(
        Engine::Wasm {
            runtime: rt.clone(),
            plugins: tenken_bundled::DEFAULT_PLUGINS
                .iter()
                .map(|(_, b)| Arc::new(Plugin::load(&rt, b).unwrap()))
                .collect(),
        },
        masters,
        hostile_limits(),
    );
    let again = clean.check_bytes(&file.bytes, None).unwrap();
    assert!(again.findings.iter().all(|f| !f.rule.starts_with("plugin.")));
}

#[test]
fn infinite_loop_times_out() {
    run_with("hostile-loop", "plugin.timeout");
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    run_with("hostile-memory", "plugin.memory");
}

#[test]
fn deep_recursion_overflows_the_stack() {
    run_with("hostile-recursion", "plugin.stack-overflow");
}

#[test]
fn trap_is_contained() {
    run_with("hostile-trap", "plugin.trap");
}

#[test]
fn output_flood_is_cut_off() {
    run_with("hostile-flood", "plugin.output");
}
