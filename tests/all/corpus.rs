//! The real corpus claim file through the sandboxed default plugins with the real masters.

use std::collections::BTreeSet;

use tenken_model::Severity;

use crate::common;

#[test]
fn corpus_claim_findings_match_the_known_facts() {
    let Some(corpus) = common::corpus() else { return };
    let bytes = std::fs::read(corpus.join("receipts/RECEIPTC_GAIRAI_SAMPLE.UKE")).unwrap();
    let checker = common::wasm_checker(common::corpus_masters(&corpus));
    let report = checker.check_bytes(&bytes, None).unwrap();
    assert_eq!(report.file.receipts, 75);
    assert_eq!(report.file.billing_month.as_deref(), Some("2021-11"));
    assert_eq!(report.plugins.len(), 5);
    let by_prefix = |p: &str| report.findings.iter().filter(|f| f.rule.starts_with(p)).collect::<Vec<_>>();

    // Exactly one id. finding: the 公費負担者番号 83136019 with a wrong check digit.
    let ids = by_prefix("id.");
    assert_eq!(ids.len(), 1, "id findings: {ids:#?}");
    assert!(ids[0].message.contains("83136019"), "{:?}", ids[0]);

    // Totals are consistent in this file.
    assert!(by_prefix("totals.").is_empty(), "{:#?}", by_prefix("totals."));
    // No plugin failed, no format error.
    assert!(by_prefix("plugin.").is_empty(), "{:#?}", by_prefix("plugin."));
    // One genuine format error in this synthetic file: receipt 66's patient is born
    // 2021-11-11, after the service month 2021-10 (checked by hand).
    let format_errors: Vec<_> = by_prefix("format.").into_iter().filter(|f| f.severity == Severity::Error).collect();
    assert_eq!(format_errors.len(), 1, "{format_errors:#?}");
    assert_eq!((format_errors[0].rule.as_str(), format_errors[0].receipt), ("format.re.birth-date", Some(66)));

    // master. findings exactly on the lines using the four codes missing from the masters.
    let lines = encoding_rs::SHIFT_JIS.decode(&bytes).0.into_owned();
    let missing = ["111014070", "113033370", "820190040", "850190040"];
    let expected_lines: BTreeSet<u32> = lines
        .lines()
        .enumerate()
        .filter(|(_, l)| l.split(',').any(|f| missing.contains(&f)))
        .map(|(i, _)| i as u32 + 1)
        .collect();
    assert!(!expected_lines.is_empty());
    let master_errors: BTreeSet<u32> =
        by_prefix("master.").iter().filter(|f| f.severity == Severity::Error).filter_map(|f| f.line).collect();
    assert_eq!(master_errors, expected_lines, "master. error lines");

    // A diagnosis. finding for each of the 70 receipts without SY (all but 1, 2, 3, 38, 39).
    let with_sy = [1, 2, 3, 38, 39];
    let diag: BTreeSet<u32> =
        report.findings.iter().filter(|f| f.rule == "diagnosis.missing").filter_map(|f| f.receipt).collect();
    let expected: BTreeSet<u32> = (1..=75).filter(|n| !with_sy.contains(n)).collect();
    assert_eq!(diag, expected);
}

#[test]
fn corpus_claim_same_findings_native_and_wasm() {
    let Some(corpus) = common::corpus() else { return };
    let bytes = std::fs::read(corpus.join("receipts/RECEIPTC_GAIRAI_SAMPLE.UKE")).unwrap();
    let masters = common::corpus_masters(&corpus);
    let wasm = common::wasm_checker(masters.clone()).check_bytes(&bytes, None).unwrap();
    let native = common::native_checker(masters).check_bytes(&bytes, None).unwrap();
    assert_eq!(wasm.findings, native.findings);
}
