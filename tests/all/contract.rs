//! The host refuses components it cannot run, with errors that say why.

use tenken_runtime::{Plugin, RuntimeError};

use crate::common;

#[test]
fn incompatible_contract_version_is_refused_naming_both_versions() {
    let path = tenken_test_artifacts::hostile_plugin_path("fixture-contract-v2").unwrap();
    let err = Plugin::load(&common::runtime(), &std::fs::read(path).unwrap()).unwrap_err();
    assert!(matches!(err, RuntimeError::IncompatibleContract { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("tenken:plugin@2.0.0") && msg.contains("tenken:plugin@1.0.0"), "{msg}");
}

#[test]
fn garbage_and_oversized_components_are_refused() {
    let rt = common::runtime();
    let err = Plugin::load(&rt, b"not a component").unwrap_err();
    assert!(matches!(err, RuntimeError::Compile(_)), "{err:?}");
    let big = vec![0u8; rt.limits().plugin_component_bytes_max as usize + 1];
    assert!(matches!(Plugin::load(&rt, &big).unwrap_err(), RuntimeError::TooLarge { .. }));
}

#[test]
fn bundled_plugins_describe_themselves() {
    let rt = common::runtime();
    let mut names = Vec::new();
    for (crate_name, bytes) in tenken_bundled::DEFAULT_PLUGINS {
        let p = Plugin::load(&rt, bytes).unwrap();
        assert_eq!(p.contract, tenken_runtime::CONTRACT_VERSION, "{crate_name}");
        assert!(!p.info.rules.is_empty(), "{crate_name} declares no rules");
        assert_eq!(p.digest, tenken_store::digest(bytes), "{crate_name}: the digest is the sha256 of the bytes");
        for r in &p.info.rules {
            let prefix = r.id.split('.').next().unwrap();
            assert!(
                ["format", "totals", "id", "master", "diagnosis"].contains(&prefix),
                "{}: bad rule id {}",
                p.info.name,
                r.id
            );
        }
        names.push(p.info.name);
    }
    assert_eq!(names.len(), 5);
}

/// More workers than pool slots: calls wait for a slot instead of failing (a full pool must
/// never be reported as the plugin's fault).
#[test]
fn a_full_instance_pool_makes_calls_wait_not_fail() {
    let limits = tenken_limits::Limits {
        plugin_instances_max: 1,
        check_workers_max: 4,
        check_batch_receipts_max: 8,
        ..tenken_limits::Limits::default()
    };
    let rt = std::sync::Arc::new(tenken_runtime::Runtime::new(&limits, Some(&common::cache_dir())).unwrap());
    let engine = tenken_check::Engine::bundled(rt).unwrap();
    let masters = common::demo_masters();
    let opts = tenken_gen::GenOptions { receipts: 200, institutions: 1, seed: 9, ..Default::default() };
    let file = tenken_gen::generate(&opts, &masters).unwrap().remove(0);
    let wasm = tenken_check::Checker::new(engine, masters.clone(), limits).check_bytes(&file.bytes, None).unwrap();
    assert!(wasm.findings.iter().all(|f| !f.rule.starts_with("plugin.")), "{:#?}", wasm.findings);
    let native = common::native_checker(masters).check_bytes(&file.bytes, None).unwrap();
    assert_eq!(wasm.findings, native.findings);
}
