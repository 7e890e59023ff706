//! Native run of the five rule packs over the rule fixtures and the real corpus claim file,
//! through the real parser (`tenken-claim`) and the real masters (`tenken-master`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tenken_model::{CheckContext, Finding, Masters, Payer, Severity};
use tenken_rulepack::{Pack, packs};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Parser findings + every pack, receipts in batches of `batch`. Also checks that each
/// finding's rule is declared (id, severity) by the pack that emitted it.
fn run(bytes: &[u8], payer: Option<Payer>, masters: &dyn Masters, batch: usize) -> Vec<Finding> {
    let claim = tenken_claim::parse(bytes, &tenken_limits::Limits::default());
    let payer = payer.or(claim.payer()).unwrap_or(Payer::Ssk);
    let ctx = CheckContext { payer, header: claim.file.header.clone() };
    let mut out = claim.parse_findings.clone();
    for pack in packs() {
        let mut mine = (pack.check_file)(&ctx, &claim.file);
        for chunk in claim.receipts.chunks(batch.max(1)) {
            mine.extend((pack.check_receipts)(&ctx, chunk, masters));
        }
        assert_declared(&pack, &mine);
        out.extend(mine);
    }
    tenken_model::sort_findings(&mut out);
    out
}

fn assert_declared(pack: &Pack, findings: &[Finding]) {
    let rules = (pack.rules)();
    for f in findings {
        let decl = rules.iter().find(|r| r.id == f.rule);
        assert!(decl.is_some(), "{} emitted undeclared rule {}", pack.name, f.rule);
        assert_eq!(decl.unwrap().severity, f.severity, "{}: severity of {}", pack.name, f.rule);
        if f.receipt.is_some() {
            assert!(f.line.is_some() && f.record.is_some(), "receipt finding without a place: {f:?}");
        }
    }
}

fn demo() -> tenken_master::MasterSet {
    tenken_master::demo::demo_master_set()
}

#[test]
fn rule_fixtures() {
    let masters = demo();
    let dir = root().join("tests/fixtures/rules");
    // Batches of 2 receipts: rules must not depend on how the host batches.
    tenken_fixtures::check_dir(&dir, |fx| run(&fx.bytes, fx.payer, &masters, 2)).assert_ok();
}

#[test]
fn batching_does_not_change_findings() {
    let masters = demo();
    let dir = root().join("tests/fixtures/rules");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "uke") {
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(run(&bytes, None, &masters, 1), run(&bytes, None, &masters, 10_000), "{}", p.display());
            n += 1;
        }
    }
    assert!(n > 0);
}

#[test]
fn packs_are_well_formed() {
    let prefixes = ["format.", "totals.", "id.", "master.", "diagnosis."];
    let names = ["tenken-format", "tenken-totals", "tenken-id", "tenken-master", "tenken-diagnosis"];
    let doc = std::fs::read_to_string(root().join("docs/RULES.md")).unwrap_or_default();
    for ((pack, prefix), name) in packs().iter().zip(prefixes).zip(names) {
        assert_eq!(pack.name, name);
        assert_eq!(pack.version, "1.0.0");
        let rules = (pack.rules)();
        assert!(!rules.is_empty());
        for r in &rules {
            assert!(r.id.starts_with(prefix), "{} declares {}", pack.name, r.id);
            assert!(!r.description.is_empty());
            assert!(doc.contains(&format!("`{}`", r.id)), "docs/RULES.md does not list {}", r.id);
            assert_eq!(rules.iter().filter(|x| x.id == r.id).count(), 1, "duplicate {}", r.id);
        }
    }
}

/// Every declared rule fires in at least one fixture (so every rule has a bad claim).
#[test]
fn every_rule_has_a_firing_fixture() {
    // The demo masters hold no 特定器材 listed after 2018-04-01, so this one cannot fire there.
    let exempt: [&str; 0] = [];
    let dir = root().join("tests/fixtures/rules");
    let mut fired = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".expected.json") {
            let text = std::fs::read_to_string(&p).unwrap();
            let items: Vec<tenken_fixtures::Expected> = serde_json::from_str(&text).unwrap();
            fired.extend(items.into_iter().map(|e| e.rule));
        }
    }
    for pack in packs() {
        for r in (pack.rules)() {
            if !exempt.contains(&r.id.as_str()) {
                assert!(fired.contains(&r.id), "no fixture makes {} fire", r.id);
            }
        }
    }
}

/// Expectations on the real corpus claim file, checked by hand (see docs/RULES.md).
#[test]
fn corpus_claim() {
    let corpus = root().join("../shared/corpus");
    let uke = corpus.join("receipts/RECEIPTC_GAIRAI_SAMPLE.UKE");
    let masters_dir = corpus.join("ssk-master/full");
    if !uke.exists() || !masters_dir.exists() {
        if std::env::var("TENKEN_REQUIRE_CORPUS").is_ok_and(|v| v == "1") {
            panic!("corpus missing at {} and TENKEN_REQUIRE_CORPUS=1", corpus.display());
        }
        eprintln!("note: corpus not found at {}; skipping corpus_claim", corpus.display());
        return;
    }
    let masters = tenken_master::MasterSet::load_dir(&masters_dir).expect("corpus masters load");
    let bytes = std::fs::read(&uke).unwrap();
    let findings = run(&bytes, None, &masters, 64);
    let claim = tenken_claim::parse(&bytes, &tenken_limits::Limits::default());
    let raw = |line: u32| -> Vec<String> {
        claim
            .receipts
            .iter()
            .flat_map(|r| r.records.iter())
            .find(|rec| rec.line == line)
            .map(|rec| rec.fields().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };

    let mut per_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &findings {
        *per_rule.entry(&f.rule).or_default() += 1;
    }
    eprintln!("corpus findings per rule: {per_rule:#?}");

    // id.: exactly one, the synthetic invalid 公費負担者番号.
    let id: Vec<_> = findings.iter().filter(|f| f.rule.starts_with("id.")).collect();
    assert_eq!(id.len(), 1, "{id:#?}");
    assert_eq!(id[0].rule, "id.public.check-digit");
    assert_eq!(raw(id[0].line.unwrap())[1], "83136019");

    // totals.: the file is consistent.
    let totals: Vec<_> = findings.iter().filter(|f| f.rule.starts_with("totals.")).collect();
    assert!(totals.is_empty(), "{totals:#?}");

    // format. errors (parser included): only the one genuine defect of the synthetic data,
    // receipt 66 born 2021-11-11 for service month 2021-10 (checked by hand).
    let format: Vec<_> = findings
        .iter()
        .filter(|f| f.rule.starts_with("format.") && f.severity == Severity::Error)
        .map(|f| (f.rule.as_str(), f.receipt))
        .collect();
    assert_eq!(format, vec![("format.re.birth-date", Some(66))]);

    // master. errors: exactly the lines using the two unknown 診療行為 and two unknown comments.
    let mut master_errors: Vec<(String, String)> = findings
        .iter()
        .filter(|f| f.rule.starts_with("master.") && f.severity == Severity::Error)
        .map(|f| (f.rule.clone(), raw(f.line.unwrap())[f.field.unwrap() as usize].clone()))
        .collect();
    master_errors.sort();
    master_errors.dedup();
    let want: Vec<(String, String)> = [
        ("master.comment.unknown", "820190040"),
        ("master.comment.unknown", "850190040"),
        ("master.procedure.unknown", "111014070"),
        ("master.procedure.unknown", "113033370"),
    ]
    .iter()
    .map(|(r, c)| (r.to_string(), c.to_string()))
    .collect();
    assert_eq!(master_errors, want);
    // Every line using those codes is reported.
    for code in ["111014070", "113033370", "820190040", "850190040"] {
        let lines: Vec<u32> = claim
            .receipts
            .iter()
            .flat_map(|r| r.records.iter())
            .filter(|rec| matches!(rec.id(), "SI" | "IY" | "TO" | "CO") && rec.fields().any(|f| f == code))
            .map(|rec| rec.line)
            .collect();
        assert!(!lines.is_empty(), "{code}");
        for l in lines {
            assert!(
                findings.iter().any(|f| f.line == Some(l) && f.rule.ends_with(".unknown")),
                "line {l} uses {code} but has no unknown finding"
            );
        }
    }
    // master. warnings, each checked by hand against the master (genuine in the synthetic data):
    // - 160155390 乳幼児加算（生体検査）（３歳未満）×4 for a 29-year-old (receipt 3),
    // - 113033270 乳幼児感染予防策加算 (6歳未満) for a 6-year-old (receipt 9),
    // - 170034170 幼児加算（画像診断）(3歳以上) for a 2-year-old (receipt 53),
    // - 113002850 てんかん指導料 and 160061910 生化学的検査（１）判断料 with 回数 2 against
    //   上限回数 1 (both are 月1回 in the 点数表).
    let mut warnings: Vec<(String, String)> = findings
        .iter()
        .filter(|f| f.rule.starts_with("master.") && f.severity != Severity::Error)
        .map(|f| (f.rule.clone(), raw(f.line.unwrap())[3].clone()))
        .collect();
    warnings.sort();
    let want: Vec<(String, String)> = [
        ("master.age.max", "113033270"),
        ("master.age.max", "160155390"),
        ("master.age.max", "160155390"),
        ("master.age.max", "160155390"),
        ("master.age.max", "160155390"),
        ("master.age.min", "170034170"),
        ("master.procedure.count-max", "113002850"),
        ("master.procedure.count-max", "160061910"),
    ]
    .iter()
    .map(|(r, c)| (r.to_string(), c.to_string()))
    .collect();
    assert_eq!(warnings, want);

    // diagnosis.missing: the 70 receipts without SY (all but 1, 2, 3, 38, 39).
    let mut missing: Vec<u32> =
        findings.iter().filter(|f| f.rule == "diagnosis.missing").map(|f| f.receipt.unwrap()).collect();
    missing.sort();
    let want: Vec<u32> = (1..=75).filter(|n| ![1, 2, 3, 38, 39].contains(n)).collect();
    assert_eq!(missing, want);
}
