//! The plugin contract enforced end to end: a real component (`plugins/hostile-contract`)
//! that returns a host-reserved rule id, an undeclared rule id, receipts outside its input
//! and a 100 KB message gets each bad finding dropped and reported as `plugin.contract`,
//! in the same report (and so in `tenken plugin test`) as its good finding.

use std::sync::Arc;

use tenken_check::{Checker, Engine};
use tenken_limits::Limits;
use tenken_model::{Finding, PluginFailure};
use tenken_runtime::{Plugin, Runtime};

const BATCH: u32 = 16;
const RECEIPTS: usize = 20;

fn limits() -> Limits {
    Limits { check_batch_receipts_max: BATCH, check_workers_max: 1, plugin_instances_max: 4, ..Limits::default() }
}

fn contract_findings(findings: &[Finding]) -> Vec<&Finding> {
    findings.iter().filter(|f| f.plugin_failure() == Some(PluginFailure::Contract)).collect()
}

#[test]
fn contract_breaking_findings_are_dropped_and_reported() {
    let rt = Arc::new(Runtime::new(&limits(), None).unwrap());
    let path =
        tenken_test_artifacts::hostile_plugin_path("hostile-contract").expect("fixture built by tenken-test-artifacts");
    let plugin = Arc::new(Plugin::load(&rt, &std::fs::read(path).unwrap()).unwrap());
    assert_eq!(plugin.info.rules.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["x.ok"]);

    let masters = Arc::new(tenken_master::demo::demo_master_set());
    let opts = tenken_gen::GenOptions { receipts: RECEIPTS, seed: 7, ..Default::default() };
    let file = tenken_gen::generate(&opts, &masters).unwrap().remove(0);
    let checker = Checker::new(Engine::Wasm { runtime: rt.clone(), plugins: vec![plugin] }, masters, limits());
    let report = checker.check_bytes(&file.bytes, None).unwrap();
    let findings = &report.findings;

    // Nothing that breaks the contract got through.
    assert!(findings.iter().all(|f| f.rule != "x.undeclared"), "{findings:#?}");
    assert!(findings.iter().all(|f| f.rule != "plugin.trap"), "a guest's plugin.trap passed as the host's");
    let numbers: Vec<u32> = checker
        .prepare(Arc::new(tenken_claim::parse(&file.bytes, &limits())), None)
        .unwrap()
        .claim()
        .receipts
        .iter()
        .filter_map(|r| r.number)
        .collect();
    let ok: Vec<&Finding> = findings.iter().filter(|f| f.rule == "x.ok").collect();
    assert!(ok.iter().all(|f| f.receipt.is_some_and(|n| numbers.contains(&n))), "{ok:#?}");
    assert!(ok.iter().all(|f| f.message.chars().count() <= limits().plugin_message_chars_max as usize + 1));
    // The finding that keeps the contract did get through, once per batch.
    let batches = RECEIPTS.div_ceil(BATCH as usize);
    assert_eq!(ok.len(), batches, "{ok:#?}");
    assert!(ok.iter().all(|f| f.message == "keeps the contract"));

    // One plugin.contract per kind of violation per call: four per batch, one for the file.
    let contract = contract_findings(findings);
    assert_eq!(contract.len(), 4 * batches + 1, "{contract:#?}");
    for c in &contract {
        assert_eq!(c.severity, tenken_model::Severity::Error);
        assert!(c.message.starts_with("plugin hostile-contract broke the plugin contract: "), "{}", c.message);
        assert!(c.message.len() < 500, "a contract message must stay short: {}", c.message.len());
    }
    let has = |needle: &str| contract.iter().filter(|c| c.message.contains(needle)).count();
    assert_eq!(has("rule id `plugin.trap` is reserved for the host"), batches);
    assert_eq!(has("rule `x.undeclared` was not declared in describe"), batches);
    assert_eq!(has("which is not in this batch ("), batches);
    let message_max = limits().plugin_finding_message_bytes_max;
    assert_eq!(has(&format!("messages are at most {message_max} bytes (plugin_finding_message_bytes_max)")), batches);
    let max = numbers.iter().max().unwrap();
    assert_eq!(has(&format!("receipt {}, which is not in this file (", max + 1000)), 1, "{contract:#?}");
}

#[test]
fn one_call_gets_one_contract_finding_per_kind() {
    let rt = Arc::new(Runtime::new(&limits(), None).unwrap());
    let path = tenken_test_artifacts::hostile_plugin_path("hostile-contract").unwrap();
    let plugin = Arc::new(Plugin::load(&rt, &std::fs::read(path).unwrap()).unwrap());
    let masters = Arc::new(tenken_master::demo::demo_master_set());
    let opts = tenken_gen::GenOptions { receipts: 4, seed: 1, ..Default::default() };
    let file = tenken_gen::generate(&opts, &masters).unwrap().remove(0);
    let checker = Checker::new(Engine::Wasm { runtime: rt, plugins: vec![plugin] }, masters, limits());
    let job = checker.prepare(Arc::new(tenken_claim::parse(&file.bytes, checker.limits())), None).unwrap();
    let numbers: Vec<u32> = job.claim().receipts.iter().filter_map(|r| r.number).collect();
    let got = checker.check_range(&job, 0..4);
    let contract = contract_findings(&got);
    assert_eq!(contract.len(), 4, "{got:#?}");
    let (first, last) = (numbers[0], numbers[3]);
    assert!(
        contract.iter().any(|c| c
            .message
            .contains(&format!("receipt {}, which is not in this batch ({first}..={last})", last + 1000))),
        "{contract:#?}"
    );
    // Contract findings on a receipt of the batch point at it; the foreign one is file-level.
    assert!(contract.iter().all(|c| c.receipt.is_none() || c.receipt == Some(first)), "{contract:#?}");
}

/// The default plugins keep the contract, also on a file whose content they quote: every
/// injected error and an unknown record whose id is 3,000 半角カナ (9,000 bytes of UTF-8) are
/// reported as findings, never as `plugin.contract`.
#[test]
fn the_default_plugins_keep_the_contract() {
    let rt = Arc::new(Runtime::new(&limits(), None).unwrap());
    let masters = Arc::new(tenken_master::demo::demo_master_set());
    let engine = Engine::bundled(rt).unwrap();
    let checker = Checker::new(engine, masters.clone(), limits());
    let opts = tenken_gen::GenOptions {
        receipts: 40,
        seed: 11,
        inject: tenken_gen::InjectKind::ALL.iter().map(|k| (*k, 0.2)).collect(),
        ..Default::default()
    };
    let file = tenken_gen::generate(&opts, &masters).unwrap().remove(0);
    let mut bytes = file.bytes.clone();
    let at = bytes.windows(4).position(|w| w == b"\r\nSY").expect("a SY record") + 2;
    let mut unknown = vec![0xB1u8; 3_000]; // ｱ in CP932
    unknown.extend_from_slice(b",1\r\n");
    bytes.splice(at..at, unknown);

    let report = checker.check_bytes(&bytes, None).unwrap();
    let host: Vec<&Finding> = report.findings.iter().filter(|f| f.plugin_failure().is_some()).collect();
    assert!(host.is_empty(), "{host:#?}");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.rule == "format.record.unknown" && f.record.as_ref().is_some_and(|r| r.len() == 9_000)),
        "the unknown record is reported under its full id"
    );
    for inj in &file.injections {
        assert!(
            report.findings.iter().any(|f| f.rule == inj.expected_rule && f.receipt == Some(inj.receipt)),
            "{inj:?} not reported"
        );
    }
}
