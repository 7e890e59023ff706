//! Differential test: the same rules compiled to wasm and linked natively give the same
//! findings on generated claims (with injected errors, so there is something to find).

use crate::common;

#[test]
fn wasm_and_native_agree_on_generated_claims() {
    let masters = common::demo_masters();
    let wasm = common::wasm_checker(masters.clone());
    let native = common::native_checker(masters.clone());
    let inject: Vec<(tenken_gen::InjectKind, f64)> = tenken_gen::InjectKind::ALL.iter().map(|k| (*k, 0.02)).collect();
    let opts = tenken_gen::GenOptions { receipts: 3_000, institutions: 12, seed: 42, inject, ..Default::default() };
    let files = tenken_gen::generate(&opts, &masters).unwrap();
    let mut compared = 0;
    for f in &files {
        let a = wasm.check_bytes(&f.bytes, None).unwrap();
        let b = native.check_bytes(&f.bytes, None).unwrap();
        assert_eq!(a.findings, b.findings, "file of {}", f.institution_code);
        // Every injected error is found, by the rule the generator expected.
        for inj in &f.injections {
            assert!(
                a.findings.iter().any(|x| x.rule == inj.expected_rule && x.receipt == Some(inj.receipt)),
                "injection {inj:?} not reported"
            );
        }
        compared += a.findings.len();
    }
    assert!(compared > 0, "injections should have produced findings");
}
