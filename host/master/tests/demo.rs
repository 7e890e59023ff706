//! The demo masters: exact SSK layouts, round-trip through the reader, lookups behave.

use tenken_master::{MasterSet, demo, parse_ssk};
use tenken_model::{Date, Lookup, MasterKind, Masters};

fn d(y: u16, m: u8, day: u8) -> Date {
    Date::new(y, m, day).unwrap()
}

#[test]
fn demo_files_have_the_ssk_layouts() {
    let files = demo::demo_files();
    assert_eq!(files, demo::demo_files(), "deterministic");
    let mut total = 0;
    for (name, bytes) in &files {
        let kind = demo::demo_file_kind(name).unwrap();
        let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(bytes);
        assert!(!bad, "{name} is CP932");
        assert!(text.ends_with("\r\n") && !text.replace("\r\n", "").contains('\n'), "{name}: CRLF");
        let rows = parse_ssk(kind, bytes).unwrap();
        let want = match kind {
            MasterKind::Procedure => 150,
            MasterKind::Drug => 42,
            MasterKind::Material => 38,
            MasterKind::Comment => 30,
            MasterKind::Disease => 46,
            MasterKind::Modifier => 19,
        };
        for (row, line) in rows.iter().zip(text.lines()) {
            assert_eq!(row.columns.len(), want, "{name}");
            assert!(
                line.starts_with('"') && line.ends_with('"') && line.matches("\",\"").count() == want - 1,
                "{name}: every field quoted"
            );
            if name != demo::DIFF_FILE {
                assert!(row.name().contains("（デモ）"), "{name}: {}", row.name());
            }
        }
        // Re-serialising the parsed columns gives the same bytes.
        let again: String = rows
            .iter()
            .map(|r| r.columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(",") + "\r\n")
            .collect();
        assert_eq!(again, text, "{name} round-trips");
        total += rows.len();
    }
    assert!(total > 300, "{total} entries");
}

#[test]
fn demo_lookups_behave() {
    let set = demo::demo_master_set();
    assert_eq!(set.kinds_loaded(), MasterKind::ALL.to_vec());
    for kind in MasterKind::ALL {
        assert!(set.len(kind) >= 15, "{kind:?}: {}", set.len(kind));
    }
    let on = d(2021, 10, 15);
    // Everything ordinary is in force from 2018-04-01.
    for kind in MasterKind::ALL {
        let n = set.in_force(kind, d(2018, 4, 1)).len();
        assert!(n + 4 >= set.len(kind), "{kind:?}");
    }
    let e = match set.lookup(MasterKind::Procedure, "111000110", d(2022, 5, 1)) {
        Lookup::InForce(e) => e,
        other => panic!("{other:?}"),
    };
    assert_eq!((e.name.as_str(), e.value), ("初診料（デモ）", Some(288.0)));
    // Revised 2022-04-01: the old points before.
    match set.lookup(MasterKind::Procedure, "111000110", on) {
        Lookup::InForce(e) => assert_eq!(e.value, Some(282.0)),
        other => panic!("{other:?}"),
    }
    match set.lookup(MasterKind::Procedure, "112007410", on) {
        Lookup::InForce(e) => assert_eq!((e.inout.as_str(), e.value), ("2", Some(72.0))),
        other => panic!("{other:?}"),
    }
    match set.lookup(MasterKind::Procedure, "111000370", on) {
        Lookup::InForce(e) => assert_eq!(e.age_max, "06"),
        other => panic!("{other:?}"),
    }
    match set.lookup(MasterKind::Procedure, "113001810", on) {
        Lookup::InForce(e) => assert_eq!(e.count_max, 2),
        other => panic!("{other:?}"),
    }
    for code in demo::ABOLISHED_PROCEDURES {
        assert!(matches!(set.lookup(MasterKind::Procedure, code, d(2022, 4, 1)), Lookup::Abolished(_)), "{code}");
        assert!(matches!(set.lookup(MasterKind::Procedure, code, d(2019, 4, 1)), Lookup::InForce(_)), "{code}");
    }
    for code in demo::NEW_PROCEDURES {
        assert!(matches!(set.lookup(MasterKind::Procedure, code, on), Lookup::NotYetListed(_)), "{code}");
        assert!(matches!(set.lookup(MasterKind::Procedure, code, d(2024, 6, 1)), Lookup::InForce(_)), "{code}");
    }
    assert!(matches!(set.lookup(MasterKind::Disease, demo::NEW_DISEASE, on), Lookup::NotYetListed(_)));
    assert!(matches!(set.lookup(MasterKind::Disease, demo::ABOLISHED_DISEASE, on), Lookup::Abolished(_)));
    assert!(matches!(set.lookup(MasterKind::Drug, demo::NEW_DRUG, on), Lookup::NotYetListed(_)));
    assert!(matches!(set.lookup(MasterKind::Drug, demo::ABOLISHED_DRUG, on), Lookup::Abolished(_)));
    assert!(matches!(set.lookup(MasterKind::Material, demo::ABOLISHED_MATERIAL, on), Lookup::Abolished(_)));
    assert!(matches!(set.lookup(MasterKind::Comment, demo::NEW_COMMENT, on), Lookup::NotYetListed(_)));
    assert!(set.rows(MasterKind::Disease).any(|r| r.single_use_forbidden()));
    assert!(set.rows(MasterKind::Drug).all(|r| r.code.starts_with('6') && r.code.len() == 9));
    assert!(set.rows(MasterKind::Material).all(|r| r.code.starts_with('7') && r.code.len() == 9));
    assert!(set.rows(MasterKind::Comment).all(|r| r.code.starts_with('8') && r.code.len() == 9));
    assert!(set.rows(MasterKind::Disease).all(|r| r.code.len() == 7));
    assert!(set.rows(MasterKind::Modifier).all(|r| r.code.len() == 4));
    match set.lookup(MasterKind::Disease, "8890001", on) {
        Lookup::InForce(e) => assert_eq!((e.name.as_str(), e.flags.as_str()), ("高血圧症（デモ）", "00")),
        other => panic!("{other:?}"),
    }
    assert_eq!(set.lookup(MasterKind::Procedure, "999999999", on), Lookup::Unknown);

    // The demo 差分: a revision from 2024-06-01 and an abolition after 2024-05-31.
    let rev = demo::DIFF_REVISED_PROCEDURE;
    match (
        set.lookup(MasterKind::Procedure, rev, d(2024, 5, 31)),
        set.lookup(MasterKind::Procedure, rev, d(2024, 6, 1)),
    ) {
        (Lookup::InForce(a), Lookup::InForce(b)) => {
            assert_eq!((a.value, b.value, b.name.as_str()), (Some(26.0), Some(28.0), "尿一般（デモ）"))
        }
        other => panic!("{other:?}"),
    }
    let ab = demo::DIFF_ABOLISHED_PROCEDURE;
    assert!(matches!(set.lookup(MasterKind::Procedure, ab, d(2024, 5, 31)), Lookup::InForce(_)));
    assert!(matches!(set.lookup(MasterKind::Procedure, ab, d(2024, 6, 1)), Lookup::Abolished(_)));
    // in_force leaves out what is not in force.
    let rows = set.in_force(MasterKind::Procedure, d(2022, 6, 1));
    assert!(
        rows.iter().all(|r| !demo::NEW_PROCEDURES.contains(&r.code.as_str())
            && !demo::ABOLISHED_PROCEDURES.contains(&r.code.as_str()))
    );
    assert!(rows.iter().any(|r| r.inout() == "1") && rows.iter().any(|r| r.inout() == "2"));
}

#[test]
fn demo_masters_written_and_reloaded() {
    let dir = std::env::temp_dir().join(format!("tenken-master-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    demo::write_demo_masters(&dir).unwrap();
    // A 差分 in a sub-directory is found too.
    std::fs::create_dir_all(dir.join("diff")).unwrap();
    std::fs::rename(dir.join(demo::DIFF_FILE), dir.join("diff").join(demo::DIFF_FILE)).unwrap();
    let loaded = MasterSet::load_dir(&dir).unwrap();
    let mem = demo::demo_master_set();
    assert_eq!(loaded.digest(), mem.digest());
    for kind in MasterKind::ALL {
        assert_eq!(loaded.len(kind), mem.len(kind));
    }
    assert_eq!(loaded.sources().len(), 7);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn diff_semantics_delete_and_restore() {
    let mut set = demo::demo_master_set();
    let row = |change: &str, code: &str| {
        let mut c = vec![String::new(); 19];
        c[0] = change.into();
        c[1] = "Z".into();
        c[2] = code.into();
        c.iter().map(|x| format!("\"{x}\"")).collect::<Vec<_>>().join(",") + "\r\n"
    };
    let on = d(2021, 10, 15);
    let st = set.apply_diff(MasterKind::Modifier, &encoding_rs::SHIFT_JIS.encode(&row("1", "1001")).0).unwrap();
    assert_eq!(st.deleted, 1);
    assert_eq!(set.lookup(MasterKind::Modifier, "1001", on), Lookup::Unknown);
    let st = set.apply_diff(MasterKind::Modifier, &encoding_rs::SHIFT_JIS.encode(&row("2", "1001")).0).unwrap();
    assert_eq!(st.restored, 1);
    assert!(matches!(set.lookup(MasterKind::Modifier, "1001", on), Lookup::InForce(_)));
    let st = set.apply_diff(MasterKind::Modifier, &encoding_rs::SHIFT_JIS.encode(&row("5", "0000")).0).unwrap();
    assert_eq!(st.unmatched, 1);
    // An empty set answers Unknown and says nothing is loaded.
    let empty = MasterSet::new();
    assert!(empty.kinds_loaded().is_empty());
    assert_eq!(empty.lookup(MasterKind::Drug, "610406079", on), Lookup::Unknown);
}

/// Issue 11, item 4: shifted columns used to pass ("proven: 62 rows", impact 0). A row with
/// more columns than the layout, a file whose rows disagree on their column count, and a
/// 差分 whose rows do not have its full file's columns are each refused, naming the file.
#[test]
fn shifted_columns_are_refused_naming_the_file() {
    let files = demo::demo_files();
    let (full_name, full) = files.iter().find(|(n, _)| n.starts_with("s_")).unwrap();
    let row = parse_ssk(MasterKind::Procedure, full).unwrap().remove(0);
    let line = |columns: &[String]| -> Vec<u8> {
        let text = format!("\"{}\"\r\n", columns.join("\",\""));
        encoding_rs::SHIFT_JIS.encode(&text).0.into_owned()
    };
    let mut changed = row.columns.clone();
    changed[0] = "5".into();
    let layout = tenken_master::layout(MasterKind::Procedure).columns;
    assert_eq!(changed.len(), layout, "the demo row has the layout's columns");
    let set =
        |diff: Vec<u8>| MasterSet::from_files(&[(full_name.clone(), full.clone()), ("s_20990101.csv".into(), diff)]);
    // The same 差分, unshifted, applies.
    assert!(set(line(&changed)).is_ok());

    let mut wide = changed.clone();
    wide.insert(20, String::new());
    let e = set(line(&wide)).unwrap_err().to_string();
    assert!(e.contains("s_20990101.csv") && e.contains(&format!("{}", layout + 1)) && e.contains("shifted"), "{e}");

    let narrow = changed[..layout - 1].to_vec();
    let e = set(line(&narrow)).unwrap_err().to_string();
    assert!(e.contains("s_20990101.csv") && e.contains(full_name.as_str()) && e.contains("149"), "{e}");

    let mut ragged = line(&changed);
    ragged.extend(line(&narrow));
    let e = set(ragged).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("line 1") && e.contains("shifted"), "{e}");
}
