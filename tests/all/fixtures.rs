//! Every rule's fixtures (tests/fixtures/rules: claim + expected findings) through the
//! sandboxed plugins with the demo masters. Re-bless with TENKEN_BLESS=1.

use tenken_model::Payer;

use crate::common;

#[test]
fn rule_fixtures_through_wasm() {
    let checker = common::wasm_checker(common::demo_masters());
    let dir = common::root().join("tests/fixtures/rules");
    let report = tenken_fixtures::check_dir(&dir, |fx| {
        let payer =
            fx.payer.or_else(|| tenken_claim::parse(&fx.bytes, &common::limits()).payer()).unwrap_or(Payer::Ssk);
        checker.check_bytes(&fx.bytes, Some(payer)).expect("check").findings
    });
    assert!(report.fixtures.len() >= 10, "expected the rule fixtures in {}", dir.display());
    report.assert_ok();
}

/// The example shipped for newcomers reports exactly the errors it was made with.
#[test]
fn demo_example_reports_its_injections() {
    let dir = common::root().join("examples/demo");
    let bytes = std::fs::read(dir.join("RECEIPTC.UKE")).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("injections.json")).unwrap()).unwrap();
    let report = common::wasm_checker(common::demo_masters()).check_bytes(&bytes, None).unwrap();
    let injections = manifest[0]["injections"].as_array().unwrap();
    assert!(!injections.is_empty());
    for inj in injections {
        let (rule, receipt) = (inj["rule"].as_str().unwrap(), inj["receipt"].as_u64().unwrap() as u32);
        assert!(report.findings.iter().any(|f| f.rule == rule && f.receipt == Some(receipt)), "{inj}");
    }
    let errors: Vec<_> = report.findings.iter().filter(|f| f.severity == tenken_model::Severity::Error).collect();
    assert!(
        errors.iter().all(|f| injections.iter().any(|i| i["receipt"].as_u64() == f.receipt.map(u64::from))),
        "{errors:#?}"
    );
}
