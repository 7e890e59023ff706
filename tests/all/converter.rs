//! Master-format converter plugins in the sandbox: the bundled `ssk-csv` converter decodes
//! every real SSK master kind exactly as the native reader (the oracle) does, the 13 real
//! 2022 差分 files applied through it give the native result, and the round-trip proof
//! blocks a faulty converter with a report naming the field.

use tenken_master::MasterSet;
use tenken_master::canon::{compare, decode_ssk, from_canon};
use tenken_model::MasterKind;
use tenken_runtime::Converter;

use crate::common;

fn ssk_csv() -> Converter {
    let (_, bytes) = tenken_bundled::DEFAULT_CONVERTERS.iter().find(|(n, _)| *n == "tenken-convert-ssk-csv").unwrap();
    Converter::load(&common::runtime(), bytes).expect("ssk-csv loads")
}

fn kind_of(name: &str) -> MasterKind {
    match name.as_bytes()[0] {
        b's' => MasterKind::Procedure,
        b'y' => MasterKind::Drug,
        b't' => MasterKind::Material,
        b'c' => MasterKind::Comment,
        b'b' => MasterKind::Disease,
        _ => MasterKind::Modifier,
    }
}

#[test]
fn ssk_csv_converter_describes_itself_and_round_trips_the_demo_masters() {
    let c = ssk_csv();
    assert_eq!(c.info.name, "ssk-csv");
    assert_eq!(c.info.kinds.len(), 6);
    assert_eq!(c.contract, "1.0.0");
    for (name, bytes) in tenken_master::demo::demo_files() {
        let kind = tenken_master::demo::demo_file_kind(&name).unwrap();
        let rows = c.decode(kind, &bytes).unwrap();
        assert_eq!(rows, decode_ssk(kind, &name, &bytes).unwrap(), "{name}");
        let again = c.decode(kind, &c.encode(kind, &rows).unwrap()).unwrap();
        assert_eq!(compare(&rows, &again, 5), vec![], "{name}");
    }
    // Input that is not a master file is refused with the reason, not a trap.
    let e = c.decode(MasterKind::Procedure, b"not,a,master\r\n").unwrap_err();
    assert!(e.to_string().contains("refused"), "{e}");
}

#[test]
fn real_masters_through_the_converter_equal_the_native_oracle() {
    let Some(corpus) = common::corpus() else { return };
    let c = ssk_csv();
    let full = corpus.join("ssk-master/full");
    let mut names: Vec<String> =
        std::fs::read_dir(&full).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    for name in &names {
        let bytes = std::fs::read(full.join(name)).unwrap();
        let kind = kind_of(name);
        let t = std::time::Instant::now();
        let rows = c.decode(kind, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let decode = t.elapsed();
        let oracle = decode_ssk(kind, name, &bytes).unwrap();
        assert_eq!(rows.len(), oracle.len(), "{name}");
        assert_eq!(compare(&oracle, &rows, 5), vec![], "{name}");
        // Round-trip proof: encode with the plugin, decode again, same rows.
        let again = c.decode(kind, &c.encode(kind, &rows).unwrap()).unwrap();
        assert_eq!(compare(&rows, &again, 5), vec![], "{name}");
        eprintln!("{name}: {} rows decoded in the sandbox in {decode:?}", rows.len());
    }

    // The 13 real 2022 差分 files applied in order through the converter equal the native
    // oracle, version for version.
    let s_all = std::fs::read(full.join("s_ALL20220218.csv")).unwrap();
    let mut native = MasterSet::new();
    native.load_full(MasterKind::Procedure, "s_ALL20220218.csv", &s_all).unwrap();
    let mut via = MasterSet::new();
    let rows = c.decode(MasterKind::Procedure, &s_all).unwrap().iter().map(|r| from_canon(r).unwrap()).collect();
    via.load_full_rows(MasterKind::Procedure, "s_ALL20220218.csv", &s_all, rows);
    let diffs = corpus.join("ssk-master/diff-2022");
    let mut files: Vec<String> =
        std::fs::read_dir(&diffs).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files.len(), 13);
    for f in &files {
        let bytes = std::fs::read(diffs.join(f)).unwrap();
        let a = native.apply_diff_named(MasterKind::Procedure, f, &bytes).unwrap();
        let rows = c.decode(MasterKind::Procedure, &bytes).unwrap().iter().map(|r| from_canon(r).unwrap()).collect();
        let b = via.apply_diff_rows(MasterKind::Procedure, f, &bytes, rows);
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "{f}");
    }
    assert_eq!(native.digest(), via.digest());
    // The semantic diff of the 2022 revision: 新規 codes, changed 点数, 廃止.
    let mut before = MasterSet::new();
    before.load_full(MasterKind::Procedure, "s_ALL20220218.csv", &s_all).unwrap();
    let diff = tenken_master::canon::semantic_diff(&before, &native);
    let s = diff.iter().find(|d| d.kind == Some(MasterKind::Procedure)).unwrap();
    let points = s.changed.iter().filter(|(_, f)| f.iter().any(|f| f.field == "value")).count();
    eprintln!(
        "2022 revision: {} added, {} changed ({points} in 点数), {} abolished, {} restored, {} removed",
        s.added.len(),
        s.changed.len(),
        s.abolished.len(),
        s.restored.len(),
        s.removed.len()
    );
    assert!(
        !s.added.is_empty() && points > 0 && !s.abolished.is_empty(),
        "{:?}",
        (s.added.len(), points, s.abolished.len())
    );
    let (n, v): (Vec<_>, Vec<_>) =
        (native.rows(MasterKind::Procedure).collect(), via.rows(MasterKind::Procedure).collect());
    assert_eq!(n.len(), v.len());
    assert!(n.iter().zip(&v).all(|(a, b)| a == b), "the converter path differs from the native oracle");
}

#[test]
fn the_round_trip_proof_blocks_a_faulty_converter_naming_the_field() {
    let path = tenken_test_artifacts::hostile_plugin_path("fixture-converter-shift").unwrap();
    let faulty = Converter::load(&common::runtime(), &std::fs::read(path).unwrap()).unwrap();
    let good = ssk_csv();
    let (name, bytes) = tenken_master::demo::demo_files().into_iter().find(|(n, _)| n.starts_with("s_")).unwrap();
    let kind = tenken_master::demo::demo_file_kind(&name).unwrap();
    let source = good.decode(kind, &bytes).unwrap();
    let encoded = faulty.encode(kind, &source).unwrap();
    let back = good.decode(kind, &encoded).unwrap();
    let report = compare(&source, &back, 10);
    assert!(!report.is_empty(), "the faulty converter passed the proof");
    assert!(report.iter().all(|d| d.field == "name"), "{report:?}");
    assert!(report[0].expected.chars().count() > 8 && report[0].got.chars().count() == 8, "{report:?}");
}

fn kokuho_fixed() -> Converter {
    let (_, bytes) =
        tenken_bundled::DEFAULT_CONVERTERS.iter().find(|(n, _)| *n == "tenken-convert-kokuho-fixed").unwrap();
    Converter::load(&common::runtime(), bytes).expect("kokuho-fixed loads")
}

/// SSK CSV → rows → kokuho-fixed → rows: the conversion for the other payer, proven.
fn prove(ssk: &Converter, fixed: &Converter, kind: MasterKind, name: &str, bytes: &[u8]) -> (usize, usize) {
    let rows = ssk.decode(kind, bytes).unwrap();
    let encoded = fixed.encode(kind, &rows).unwrap_or_else(|e| panic!("{name}: {e}"));
    let back = fixed.decode(kind, &encoded).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(compare(&rows, &back, 5), vec![], "{name}");
    (rows.len(), encoded.len())
}

#[test]
fn kokuho_fixed_round_trips_every_master_kind() {
    let (ssk, fixed) = (ssk_csv(), kokuho_fixed());
    assert_eq!(fixed.info.name, "kokuho-fixed");
    for (name, bytes) in tenken_master::demo::demo_files() {
        let kind = tenken_master::demo::demo_file_kind(&name).unwrap();
        prove(&ssk, &fixed, kind, &name, &bytes);
    }
    // 和暦 dates and fixed units in the file itself.
    let (name, bytes) = tenken_master::demo::demo_files().into_iter().find(|(n, _)| n.starts_with("s_")).unwrap();
    let rows = ssk.decode(MasterKind::Procedure, &bytes).unwrap();
    let text = encoding_rs::SHIFT_JIS.decode(&fixed.encode(MasterKind::Procedure, &rows).unwrap()).0.into_owned();
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("Ds"), "{name}: {first}");
    // Garbage is refused with the line, not a trap.
    let e = fixed.decode(MasterKind::Procedure, b"Dsx\r\n").unwrap_err();
    assert!(e.to_string().contains("line 1"), "{e}");
    let Some(corpus) = common::corpus() else { return };
    let full = corpus.join("ssk-master/full");
    for e in std::fs::read_dir(&full).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        let bytes = std::fs::read(full.join(&name)).unwrap();
        let (rows, size) = prove(&ssk, &fixed, kind_of(&name), &name, &bytes);
        eprintln!("{name}: {rows} rows proven through kokuho-fixed ({size} bytes)");
    }
}

fn tenken(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tenken")).args(args).output().unwrap()
}

#[test]
fn master_cli_converts_with_proof_diffs_and_checks_impact() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old");
    tenken_master::demo::write_demo_masters(&old).unwrap();
    let s_name = std::fs::read_dir(&old)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("s_ALL"))
        .unwrap();
    let s_path = old.join(&s_name);
    let os = |s: &str| std::ffi::OsString::from(s);

    // Conversion for the other payer, proven.
    let out = dir.path().join("s.fixed");
    let r = tenken(&[&os("master"), &os("convert"), &os("--kind"), &os("s"), s_path.as_os_str(), out.as_os_str()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stderr).contains("proven"));
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
    // A faulty converter is blocked: nothing written, the report names the field.
    let faulty = tenken_test_artifacts::hostile_plugin_path("fixture-converter-shift").unwrap();
    let blocked = dir.path().join("blocked.csv");
    let r = tenken(&[
        &os("master"),
        &os("convert"),
        &os("--kind"),
        &os("s"),
        &os("--to"),
        &os(faulty),
        s_path.as_os_str(),
        blocked.as_os_str(),
    ]);
    assert_eq!(r.status.code(), Some(1));
    let report = String::from_utf8_lossy(&r.stdout);
    assert!(report.contains("name"), "{report}");
    assert!(!blocked.exists());

    // A new master whose points change: +3 点 on every procedure.
    let new = dir.path().join("new");
    tenken_master::demo::write_demo_masters(&new).unwrap();
    let mut rows = decode_ssk(MasterKind::Procedure, &s_name, &std::fs::read(&s_path).unwrap()).unwrap();
    for r in &mut rows {
        if let Ok(v) = r.value.parse::<f64>() {
            r.value = format!("{:.2}", v + 3.0);
        }
    }
    std::fs::write(new.join(&s_name), tenken_master::canon::encode_ssk(&rows).unwrap()).unwrap();
    let r = tenken(&[&os("master"), &os("diff"), &os("--json"), old.as_os_str(), new.as_os_str()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let diff: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let procedure = diff.as_array().unwrap().iter().find(|d| d["kind"] == "procedure").unwrap();
    // Totals, then the entries: every changed procedure is a 点数 change, named.
    let changed = procedure["examples"].as_array().unwrap();
    assert!(!changed.is_empty());
    assert_eq!(procedure["changed"], changed.len(), "--json lists every entry");
    assert_eq!(procedure["value_changed"], procedure["changed"], "{procedure}");
    let f = &changed[0]["fields"][0];
    assert_eq!((f["field"].as_str(), f["label"].as_str()), (Some("value"), Some("新又は現点数")));
    assert!(!changed[0]["name"].as_str().unwrap().is_empty(), "{}", changed[0]);
    assert_eq!(
        f["new"].as_str().unwrap().parse::<f64>().unwrap(),
        f["old"].as_str().unwrap().parse::<f64>().unwrap() + 3.0
    );
    assert_eq!(procedure["value_changes"][0]["new"], f["new"]);
    assert!(diff.as_array().unwrap().iter().filter(|d| d["kind"] != "procedure").all(|d| d["changed"] == 0));
    // The readable form: names, fields in words, totals.
    let r = tenken(&[&os("master"), &os("diff"), &os("--show"), &os("2"), old.as_os_str(), new.as_os_str()]);
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(text.contains("点数/金額 changes (first 2 of") && text.contains("新又は現点数"), "{text}");

    // Impact: the claims that were clean under the old master now fail the points rule.
    let claim = dir.path().join("claim.UKE");
    let opts = tenken_gen::GenOptions { receipts: 30, payer: Some(tenken_model::Payer::Ssk), ..Default::default() };
    std::fs::write(&claim, &tenken_gen::generate(&opts, &common::demo_masters()).unwrap()[0].bytes).unwrap();
    let r = tenken(&[
        &os("master"),
        &os("impact"),
        &os("--json"),
        &os("--threshold"),
        &os("5"),
        &os("--old"),
        old.as_os_str(),
        &os("--new"),
        new.as_os_str(),
        claim.as_os_str(),
    ]);
    assert_eq!(r.status.code(), Some(1), "{}", String::from_utf8_lossy(&r.stderr));
    let impact: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(impact["flagged"], true);
    let rule = impact["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "master.procedure.points")
        .expect("points rule in the impact report");
    assert!(rule["new"].as_u64().unwrap() > 0);
    assert!(rule["receipts"][0].as_str().unwrap().starts_with("claim.UKE#"));
}
