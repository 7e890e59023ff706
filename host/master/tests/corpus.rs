//! The real SSK masters of the shared corpus: full files of all six kinds, and the 13 real
//! 差分 files of the 2022-04 fee revision applied in order on `s_ALL20220218.csv`.

use std::path::PathBuf;

use tenken_master::MasterSet;
use tenken_model::{Date, Lookup, MasterKind, Masters};

fn corpus() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus/ssk-master"));
    if dir.exists() {
        return Some(dir);
    }
    if std::env::var("TENKEN_REQUIRE_CORPUS").as_deref() == Ok("1") {
        panic!("TENKEN_REQUIRE_CORPUS=1 but {} is missing", dir.display());
    }
    eprintln!("note: {} missing; corpus test skipped", dir.display());
    None
}

fn d(y: u16, m: u8, day: u8) -> Date {
    Date::new(y, m, day).unwrap()
}

fn value(l: &Lookup) -> Option<f64> {
    match l {
        Lookup::InForce(e) => e.value,
        _ => None,
    }
}

#[test]
fn full_files_of_all_six_kinds() {
    let Some(dir) = corpus() else { return };
    let set = MasterSet::load_dir(&dir.join("full")).unwrap();
    let counts: Vec<usize> = MasterKind::ALL.iter().map(|k| set.len(*k)).collect();
    assert_eq!(counts, vec![8_735, 19_686, 1_334, 3_065, 27_437, 2_375]);
    assert!(set.digest().to_string().starts_with("sha256:"));
    let oct = d(2021, 10, 15);
    // Codes used by the 2021-10 corpus claim exist, even though the masters are newer.
    for code in ["111000110", "112007410", "120002910", "160155390"] {
        assert!(matches!(set.lookup(MasterKind::Procedure, code, oct), Lookup::InForce(_)), "{code}");
    }
    for code in ["111014070", "113033370"] {
        assert_eq!(set.lookup(MasterKind::Procedure, code, oct), Lookup::Unknown, "{code}");
    }
    for code in ["820190040", "850190040"] {
        assert_eq!(set.lookup(MasterKind::Comment, code, oct), Lookup::Unknown, "{code}");
    }
}

#[test]
fn the_2022_revision_diffs_apply_in_order() {
    let Some(dir) = corpus() else { return };
    let full = std::fs::read(dir.join("full/s_ALL20220218.csv")).unwrap();
    let mut files = vec![("s_ALL20220218.csv".to_string(), full)];
    let mut diffs: Vec<_> = std::fs::read_dir(dir.join("diff-2022")).unwrap().map(|e| e.unwrap().path()).collect();
    diffs.sort();
    assert_eq!(diffs.len(), 13);
    // Given in reverse order: the set must apply them by date, not by argument order.
    for p in diffs.iter().rev() {
        files.push((p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(p).unwrap()));
    }
    let set = MasterSet::from_files(&files).unwrap();
    assert_eq!(set.sources().len(), 14);

    let (before, after) = (d(2022, 3, 31), d(2022, 4, 1));
    // New in 2022-04 (変更区分 3 in s_20220304): listed from 2022-04-01, not before.
    let new = set.lookup(MasterKind::Procedure, "111014210", after);
    match &new {
        Lookup::InForce(e) => {
            assert_eq!(e.changed_on, Some(after));
            assert_eq!(e.value, Some(251.0));
        }
        other => panic!("111014210 on 2022-04-01: {other:?}"),
    }
    assert!(matches!(set.lookup(MasterKind::Procedure, "111014210", before), Lookup::NotYetListed(_)));
    // Points changed by the revision (変更区分 5): new points from 2022-04-01, old before.
    assert_eq!(value(&set.lookup(MasterKind::Procedure, "113002510", after)), Some(2211.0));
    assert_eq!(value(&set.lookup(MasterKind::Procedure, "113002510", before)), Some(2250.0));
    assert_eq!(value(&set.lookup(MasterKind::Procedure, "113029510", after)), Some(235.0));
    assert_eq!(value(&set.lookup(MasterKind::Procedure, "113029510", before)), Some(100.0));
    // Abolished (変更区分 9, 廃止年月日 2022-03-31): in force that day, abolished after.
    assert!(matches!(set.lookup(MasterKind::Procedure, "112023210", before), Lookup::InForce(_)));
    assert!(matches!(set.lookup(MasterKind::Procedure, "112023210", after), Lookup::Abolished(_)));
    // The last diff (s_20220531) lists codes from 2022-06-01.
    assert!(matches!(set.lookup(MasterKind::Procedure, "160234350", d(2022, 6, 1)), Lookup::InForce(_)));
    assert!(matches!(set.lookup(MasterKind::Procedure, "160234350", d(2022, 5, 31)), Lookup::NotYetListed(_)));
    // Untouched codes keep answering as in the full file.
    assert!(matches!(set.lookup(MasterKind::Procedure, "111000110", after), Lookup::InForce(_)));
}

#[test]
fn demo_masters_round_trip_through_the_reader() {
    let set = tenken_master::demo::demo_master_set();
    for kind in MasterKind::ALL {
        assert!(set.len(kind) > 0, "demo set has no {kind:?}");
        assert!(set.rows(kind).all(|r| r.name().contains("デモ")), "every demo name is labelled demo");
    }
    let total: usize = MasterKind::ALL.iter().map(|k| set.len(*k)).sum();
    assert!((200..5_000).contains(&total), "a few hundred demo entries, got {total}");
    // Written to disk and loaded back: the same set.
    let dir = tempfile::tempdir().unwrap();
    tenken_master::demo::write_demo_masters(dir.path()).unwrap();
    let again = MasterSet::load_dir(dir.path()).unwrap();
    for kind in MasterKind::ALL {
        assert_eq!(again.len(kind), set.len(kind));
    }
}
