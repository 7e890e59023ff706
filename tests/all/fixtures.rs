//! Every rule's fixtures (tests/fixtures/rules: claim + expected findings) through the
//! sandboxed plugins with the demo masters. Re-bless with TENKEN_BLESS=1.

use tenken_model::Payer;

use crate::common;

#[test]
fn rule_fixtures_through_wasm() {
    let checker = common::wasm_checker(common::demo_masters());
    let dir = common::root().join("tests/fixtures/rules");
    let report = tenken_fixtures::check_dir(&dir, |fx| {
        let payer = fx.payer.or_else(|| tenken_claim::parse(&fx.bytes, &common::limits()).payer()).unwrap_or(Payer::Ssk);
        checker.check_bytes(&fx.bytes, Some(payer)).expect("check").findings
    });
    assert!(report.fixtures.len() >= 10, "expected the rule fixtures in {}", dir.display());
    report.assert_ok();
}
