//! The live registry in-process: concurrent reloads of one payer's table (defect 8: the
//! older table must never be published over a newer one).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use tenken_model::Payer;
use tenken_server::registry::{Registry, Reloaded, SwapCause};

use crate::common;

/// A registry over a fresh data directory (demo masters, bundled plugins), as `serve` builds it.
fn registry(dir: &std::path::Path) -> Registry {
    registry_with(dir, |_| {})
}

fn registry_with(dir: &std::path::Path, configure: impl FnOnce(&mut tenken_server::Config)) -> Registry {
    let mut config = tenken_server::Config {
        data_dir: dir.to_path_buf(),
        cache_dir: Some(common::cache_dir()),
        demo_masters: true,
        ..tenken_server::Config::default()
    };
    configure(&mut config);
    tenken_server::seed(&config).unwrap();
    let store = tenken_server::open_store(&config).unwrap();
    tenken_server::build_registry(&config, store).unwrap()
}

#[test]
fn a_reload_that_started_first_and_finishes_last_does_not_undo_the_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = registry(dir.path());
    // Reload 1 stops after building its table and waits until reload 2 has published.
    let (built_tx, built_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let hold = Mutex::new((built_tx, go_rx));
    reg.before_publish = Some(Box::new(move |_, cause: &SwapCause| {
        if cause.subject == 1 {
            let h = hold.lock().unwrap();
            h.0.send(()).unwrap();
            h.1.recv().unwrap();
        }
    }));
    let reg = Arc::new(reg);
    let first = {
        let reg = reg.clone();
        std::thread::spawn(move || reg.reload(Payer::Ssk, SwapCause::now("activate", 1)).unwrap())
    };
    built_rx.recv().unwrap();
    let second = reg.reload(Payer::Ssk, SwapCause::now("activate", 2)).unwrap();
    go_tx.send(()).unwrap();
    let first = first.join().unwrap();

    assert_eq!(second, Reloaded::Published);
    assert_eq!(first, Reloaded::Superseded, "the older table must be dropped, not published last");
    let live = reg.table(Payer::Ssk);
    assert_eq!(live.cause.as_ref().map(|c| c.subject), Some(2), "the newer reload's table stays live");
    let swaps: Vec<i64> = reg.swaps(Payer::Ssk).iter().map(|s| s.subject).collect();
    assert_eq!(swaps, vec![2], "only the published table is recorded as a swap");
    // The other payer is a bulkhead: untouched.
    assert!(reg.table(Payer::Kokuho).cause.is_none());
}

#[test]
fn reloads_one_after_another_each_publish() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry(dir.path());
    for subject in [1, 2, 3] {
        assert_eq!(reg.reload(Payer::Kokuho, SwapCause::now("activate", subject)).unwrap(), Reloaded::Published);
        assert_eq!(reg.table(Payer::Kokuho).cause.as_ref().map(|c| c.subject), Some(subject));
    }
    assert_eq!(reg.swaps(Payer::Kokuho).len(), 3);
}

/// Defect 13: every plugin ever loaded (uploads, validations) stayed in memory. Idle entries
/// are now bounded; those a live table uses are never evicted.
#[test]
fn loaded_plugins_beyond_the_live_tables_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry_with(dir.path(), |c| c.schedule.registry_plugins_idle_max = 1);
    let live = reg.cache_sizes().plugins;
    assert_eq!(live, tenken_bundled::DEFAULT_PLUGINS.len(), "the live table's plugins are loaded at start");
    let names = ["hostile-trap", "hostile-loop", "hostile-memory", "hostile-flood", "hostile-recursion"];
    for name in names {
        let bytes = std::fs::read(tenken_test_artifacts::hostile_plugin_path(name).unwrap()).unwrap();
        let p = tenken_runtime::Plugin::load(&reg.runtime, &bytes).unwrap();
        reg.store
            .put_plugin(tenken_store::NewPlugin {
                payer: Payer::Ssk,
                digest: p.digest.clone(),
                bytes,
                name: p.info.name.clone(),
                version: p.info.version.clone(),
                contract: p.contract.clone(),
                described: tenken_server::plugins::described(&p),
                uploaded_by: 1,
                signed_by: None,
                state: tenken_store::PluginState::Uploaded,
                now_ms: 0,
            })
            .unwrap();
        let loaded = reg.plugin(&p.digest).unwrap();
        assert_eq!(loaded.digest, p.digest);
        // While held (a validation running it), an entry stays.
        assert!(reg.cache_sizes().plugins <= live + 2, "{:?}", reg.cache_sizes());
    }
    assert!(reg.cache_sizes().plugins <= live + 1, "idle plugins beyond the bound were kept: {:?}", reg.cache_sizes());
    // The live ones were never evicted: the table still checks.
    let table = reg.table(Payer::Ssk);
    for d in &table.sets[0].plugins {
        let again = reg.plugin(d).unwrap();
        assert_eq!(&again.digest, d);
    }
}
