//! `tenken replay`: re-runs a stored submission under exactly the plugin digests and master
//! version its decision records name, and compares with the stored findings.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use tenken_check::{Checker, Engine};
use tenken_model::Finding;
use tenken_store::Store;

use crate::Config;

pub struct ReplayOutcome {
    pub chunks: usize,
    pub findings: usize,
    /// (chunk, what differs)
    pub mismatches: Vec<(u32, String)>,
}

pub fn replay(config: &Config, id: i64) -> anyhow::Result<ReplayOutcome> {
    let store = crate::open_store(config)?;
    let s = store.get(id)?.with_context(|| format!("no submission {id}"))?;
    let bytes = store.bytes(&s.digest)?;
    let claim = Arc::new(tenken_claim::parse(&bytes, &config.limits));
    let cache = config.cache_dir.clone().unwrap_or_else(|| config.data_dir.join("artifacts"));
    let runtime = Arc::new(tenken_runtime::Runtime::new(&config.limits, Some(&cache))?);
    let mut converters = HashMap::new();
    for (name, bytes) in tenken_bundled::DEFAULT_CONVERTERS {
        let c =
            tenken_runtime::Converter::load(&runtime, bytes).with_context(|| format!("loading converter {name}"))?;
        converters.insert(c.info.name.clone(), Arc::new(c));
    }
    let dyn_store: Arc<dyn Store> = store.clone();
    let loader = crate::master_loader(dyn_store, Arc::new(converters));
    let versions = store.master_versions(s.payer)?;
    let mut master_sets: HashMap<i64, Arc<tenken_master::MasterSet>> = HashMap::new();
    let mut plugins: HashMap<String, Arc<tenken_runtime::Plugin>> = HashMap::new();
    let stored: HashMap<u32, String> = store.chunk_findings(id)?.into_iter().collect();
    let mut jobs: HashMap<(Vec<String>, i64), (Arc<Checker>, Arc<tenken_check::FileJob>)> = HashMap::new();
    let mut out = ReplayOutcome { chunks: 0, findings: 0, mismatches: Vec::new() };
    for (idx, decision) in store.decisions(id)? {
        let d: serde_json::Value = serde_json::from_str(&decision).context("decision record unreadable")?;
        let mut got: Vec<Finding> = Vec::new();
        if idx == 0 {
            got.extend(claim.parse_findings.iter().cloned());
        }
        for e in d["sets"].as_array().into_iter().flatten() {
            let mv =
                e["master_version"].as_i64().with_context(|| format!("chunk {idx}: no master version recorded"))?;
            if !master_sets.contains_key(&mv) {
                let v = versions
                    .iter()
                    .find(|v| v.id == mv)
                    .with_context(|| format!("master version {mv} is not in the store"))?;
                let set = loader(v).map_err(anyhow::Error::msg)?;
                if Some(set.digest().as_str()) != e["masters"].as_str() {
                    bail!("master version {mv} no longer has the recorded digest {}", e["masters"]);
                }
                master_sets.insert(mv, Arc::new(set));
            }
            let masters = master_sets[&mv].clone();
            let digests: Vec<String> =
                e["plugins"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect();
            let key = (digests.clone(), mv);
            if !jobs.contains_key(&key) {
                let mut list = Vec::new();
                for dg in &digests {
                    if !plugins.contains_key(dg) {
                        let b =
                            store.plugin_bytes(dg).with_context(|| format!("plugin {dg} is not in the registry"))?;
                        plugins.insert(dg.clone(), Arc::new(tenken_runtime::Plugin::load(&runtime, &b)?));
                    }
                    list.push(plugins[dg].clone());
                }
                let checker = Arc::new(Checker::new(
                    Engine::Wasm { runtime: runtime.clone(), plugins: list },
                    masters.clone(),
                    config.limits.clone(),
                ));
                let job = Arc::new(checker.prepare(claim.clone(), Some(s.payer))?);
                jobs.insert(key.clone(), (checker, job));
            }
            let (checker, job) = &jobs[&key];
            match receipts(idx, e)? {
                Some(r) => got.extend(checker.check_range(job, r)),
                None => got.extend(checker.check_file_level(job)),
            }
        }
        let want: Vec<Finding> = serde_json::from_str(stored.get(&idx).map(String::as_str).unwrap_or("[]"))?;
        out.chunks += 1;
        out.findings += got.len();
        if got != want {
            let extra = got.iter().filter(|f| !want.contains(f)).count();
            let missing = want.iter().filter(|f| !got.contains(f)).count();
            out.mismatches
                .push((idx, format!("{extra} finding(s) not stored, {missing} stored finding(s) not reproduced")));
        }
    }
    if out.chunks == 0 {
        bail!("submission {id} has no recorded chunks yet (state {})", s.state);
    }
    Ok(out)
}

/// The receipt range a decision entry names (None: the file-level checks).
fn receipts(idx: u32, e: &serde_json::Value) -> anyhow::Result<Option<std::ops::Range<usize>>> {
    let _ = idx;
    Ok(match e["receipts"].as_array() {
        Some(r) => Some(r[0].as_u64().unwrap_or(0) as usize..r[1].as_u64().unwrap_or(0) as usize),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored decision records that are short or malformed are errors naming the chunk and
    /// what is wrong, never a panic.
    #[test]
    fn a_short_or_malformed_decision_entry_is_an_error_not_a_panic() {
        for (bad, says) in [
            (r#"{"receipts": [3]}"#, "receipts"),
            (r#"{"receipts": []}"#, "receipts"),
            (r#"{"receipts": [5, 2]}"#, "receipts"),
            (r#"{"receipts": ["a", 9]}"#, "receipts"),
            (r#"{"receipts": [1, 2, 3]}"#, "receipts"),
            (r#"{"receipts": 7}"#, "receipts"),
        ] {
            let e: serde_json::Value = serde_json::from_str(bad).unwrap();
            let r = std::panic::catch_unwind(|| receipts(4, &e));
            let err = r.unwrap_or_else(|_| panic!("{bad}: panicked")).expect_err(bad).to_string();
            assert!(err.contains("chunk 4") && err.contains(says), "{bad}: {err}");
        }
        let ok: serde_json::Value = serde_json::from_str(r#"{"receipts": [2, 5]}"#).unwrap();
        assert_eq!(receipts(1, &ok).unwrap(), Some(2..5));
        let file: serde_json::Value = serde_json::from_str(r#"{"receipts": null}"#).unwrap();
        assert_eq!(receipts(0, &file).unwrap(), None);
    }
}
