//! Generated files against the parser and the five rulepack packs: clean files give no error,
//! and every recorded injection gives its expected finding on its receipt and line.

use std::collections::BTreeMap;
use std::path::Path;

use tenken_gen::{GenOptions, GeneratedFile, InjectKind, generate};
use tenken_master::MasterSet;
use tenken_model::{CheckContext, Finding, Severity, YearMonth};

/// Parses one file and runs every pack natively (file rules, then receipt rules on all
/// receipts in one batch); returns (parser findings, rule findings).
fn check(file: &GeneratedFile, masters: &MasterSet) -> (Vec<Finding>, Vec<Finding>) {
    let claim = tenken_claim::parse(&file.bytes, &tenken_limits::Limits::default());
    let ctx = CheckContext { payer: file.payer, header: claim.file.header.clone() };
    let mut out = Vec::new();
    for pack in tenken_rulepack::packs() {
        out.extend((pack.check_file)(&ctx, &claim.file));
        out.extend((pack.check_receipts)(&ctx, &claim.receipts, masters));
    }
    assert_eq!(claim.receipts.len(), file.receipts, "receipt count of {}", file.institution_code);
    (claim.parse_findings, out)
}

/// Asserts no parser finding and no error finding; returns the other findings by rule.
fn assert_clean(files: &[GeneratedFile], masters: &MasterSet) -> BTreeMap<String, usize> {
    let mut others = BTreeMap::new();
    for f in files {
        let (parse, rules) = check(f, masters);
        assert!(parse.is_empty(), "parser findings in {}: {parse:#?}", f.institution_code);
        let errors: Vec<&Finding> = rules.iter().filter(|x| x.severity == Severity::Error).collect();
        if !errors.is_empty() {
            let text = encoding_rs::SHIFT_JIS.decode(&f.bytes).0.into_owned();
            let lines: Vec<&str> = text.split("\r\n").collect();
            for e in errors.iter().take(10) {
                let l = e.line.map(|l| lines[l as usize - 1]).unwrap_or("");
                eprintln!("{e:?}\n    {l}");
            }
            panic!("{} error findings in {}", errors.len(), f.institution_code);
        }
        for x in rules {
            *others.entry(format!("{} {}", x.severity.as_str(), x.rule)).or_insert(0) += 1;
        }
    }
    others
}

fn demo() -> MasterSet {
    tenken_master::demo::demo_master_set()
}

#[test]
fn demo_masters_give_clean_files() {
    let masters = demo();
    let opts = GenOptions { receipts: 2000, institutions: 20, seed: 42, ..GenOptions::default() };
    let files = generate(&opts, &masters).unwrap();
    assert_eq!(files.len(), 20);
    assert_eq!(files.iter().map(|f| f.receipts).sum::<usize>(), 2000);
    assert!(files.iter().all(|f| f.injections.is_empty()));
    let others = assert_clean(&files, &masters);
    eprintln!("non-error findings: {others:?}");
    // Only the informational 未コード化傷病名 (a few receipts use 0000999 with a name).
    assert!(others.keys().all(|k| k == "info diagnosis.uncoded"), "{others:?}");
    // Both payers, several sizes, inpatient and outpatient receipts.
    let payers: std::collections::BTreeSet<_> = files.iter().map(|f| f.payer).collect();
    assert_eq!(payers.len(), 2);
    let mut sizes: Vec<usize> = files.iter().map(|f| f.receipts).collect();
    sizes.sort();
    assert!(sizes[19] > 4 * sizes[10], "{sizes:?}");
}

#[test]
fn generation_is_deterministic() {
    let masters = demo();
    let opts = GenOptions { receipts: 300, institutions: 3, seed: 9, ..GenOptions::default() };
    let a = generate(&opts, &masters).unwrap();
    let b = generate(&opts, &masters).unwrap();
    assert_eq!(a, b);
    let c = generate(&GenOptions { seed: 10, ..opts }, &masters).unwrap();
    assert_ne!(a[0].bytes, c[0].bytes);
}

#[test]
fn one_institution_gives_one_file_with_crlf_and_eof() {
    let masters = demo();
    let opts = GenOptions {
        receipts: 50,
        institutions: 1,
        seed: 1,
        payer: Some(tenken_model::Payer::Kokuho),
        ..GenOptions::default()
    };
    let files = generate(&opts, &masters).unwrap();
    assert_eq!(files.len(), 1);
    let f = &files[0];
    assert_eq!(f.payer, tenken_model::Payer::Kokuho);
    assert!(f.bytes.starts_with(b"IR,2,"));
    assert!(f.bytes.ends_with(b"\r\n\x1A"));
    assert!(!f.bytes[..f.bytes.len() - 1].windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
    let (_, bad) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(f.bytes.as_slice());
    assert!(!bad);
    assert_clean(&files, &masters);
}

/// Every recorded injection has a finding with its rule on its receipt and line.
fn assert_injections_found(files: &[GeneratedFile], masters: &MasterSet) -> BTreeMap<String, usize> {
    let mut per_kind = BTreeMap::new();
    for f in files {
        let (parse, rules) = check(f, masters);
        assert!(parse.is_empty(), "{parse:#?}");
        for inj in &f.injections {
            let hit = rules
                .iter()
                .any(|x| x.rule == inj.expected_rule && x.receipt == Some(inj.receipt) && x.line == Some(inj.line));
            assert!(
                hit,
                "{inj:?} not reported; findings on that receipt: {:#?}",
                rules.iter().filter(|x| x.receipt == Some(inj.receipt)).collect::<Vec<_>>()
            );
            *per_kind.entry(inj.kind.clone()).or_insert(0) += 1;
        }
        // Every error is explained by an injection on the same receipt.
        for x in rules.iter().filter(|x| x.severity == Severity::Error) {
            assert!(f.injections.iter().any(|i| Some(i.receipt) == x.receipt), "unexplained error {x:?}");
        }
    }
    per_kind
}

#[test]
fn every_injection_is_reported_where_recorded() {
    let masters = demo();
    let inject = InjectKind::ALL.iter().map(|k| (*k, 0.03)).collect();
    let opts = GenOptions { receipts: 2000, institutions: 20, seed: 5, inject, ..GenOptions::default() };
    let files = generate(&opts, &masters).unwrap();
    let per_kind = assert_injections_found(&files, &masters);
    eprintln!("injections: {per_kind:?}");
    for k in InjectKind::ALL {
        assert!(per_kind.get(k.name()).copied().unwrap_or(0) >= 10, "{k}: {per_kind:?}");
    }
}

#[test]
fn unavailable_injections_are_refused() {
    let masters = demo();
    // 2024-07 billing: the demo's 新規 codes (2024-06-01) are listed by then, nothing after.
    let opts = GenOptions {
        billing_month: YearMonth::new(2024, 7).unwrap(),
        inject: vec![(InjectKind::NotYetListed, 0.1)],
        ..GenOptions::default()
    };
    assert!(generate(&opts, &masters).is_err());
    let opts = GenOptions { inject: vec![], ..opts };
    let files = generate(&GenOptions { receipts: 500, ..opts }, &masters).unwrap();
    assert_clean(&files, &masters);
}

fn corpus_dir() -> Option<&'static Path> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus/ssk-master/full"));
    if dir.is_dir() {
        Some(dir)
    } else if std::env::var("TENKEN_REQUIRE_CORPUS").as_deref() == Ok("1") {
        panic!("corpus missing at {} and TENKEN_REQUIRE_CORPUS=1", dir.display());
    } else {
        eprintln!("note: corpus not found at {}; skipping", dir.display());
        None
    }
}

#[test]
fn corpus_masters_give_clean_files() {
    let Some(dir) = corpus_dir() else { return };
    let masters = MasterSet::load_dir(dir).unwrap();
    let opts = GenOptions { receipts: 1000, institutions: 10, seed: 3, ..GenOptions::default() };
    let files = generate(&opts, &masters).unwrap();
    let others = assert_clean(&files, &masters);
    eprintln!("non-error findings: {others:?}");
    assert!(others.keys().all(|k| k == "info diagnosis.uncoded"), "{others:?}");
}

#[test]
fn corpus_injections_are_reported() {
    let Some(dir) = corpus_dir() else { return };
    let masters = MasterSet::load_dir(dir).unwrap();
    let kinds = tenken_gen::injectable(&masters, GenOptions::default().billing_month).unwrap();
    eprintln!("injectable with the corpus masters: {kinds:?}");
    let inject = kinds.iter().map(|k| (*k, 0.05)).collect();
    let opts = GenOptions { receipts: 1000, institutions: 5, seed: 4, inject, ..GenOptions::default() };
    let files = generate(&opts, &masters).unwrap();
    let per_kind = assert_injections_found(&files, &masters);
    eprintln!("injections: {per_kind:?}");
}
