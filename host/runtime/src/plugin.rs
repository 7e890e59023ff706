//! A loaded office-check plugin and the sandboxed calls into it.

use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tenken_model::{self as m, PluginFailure};
use wasmtime::Store;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::bindings::{OfficeCheck, OfficeCheckPre};
use crate::convert::{self, Batch, FileInput};
use crate::engine::{HostState, Runtime, RuntimeError};

/// The WIT package this host implements.
pub const CONTRACT_PACKAGE: &str = "tenken:plugin";
/// The contract version this host implements (see the versioning policy in `wit/types.wit`).
pub const CONTRACT_VERSION: &str = "1.0.0";

/// A compiled, linked, pre-instantiated plugin. Cheap to share (`Arc`); each call
/// instantiates it afresh in its own store.
pub struct Plugin {
    pub info: m::PluginInfo,
    /// `sha256:<hex>` of the component bytes.
    pub digest: tenken_model::Digest,
    /// The contract version the component was built for.
    pub contract: String,
    pre: OfficeCheckPre<HostState>,
    runtime: Arc<Runtime>,
    /// The rule ids `describe` declared, sorted: the only ones a finding may carry (kept
    /// apart from the public `info`, which a caller could change).
    declared: Vec<String>,
    /// Largest linear memory (bytes, all memories of one store) any call has used since the
    /// last [`Plugin::take_peak_memory_bytes`].
    peak_memory: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("info", &self.info).field("digest", &self.digest).finish()
    }
}

/// Why a plugin call produced no findings: the runtime's name for [`PluginFailure`], of
/// which a call fails with `Timeout`, `StackOverflow`, `Memory`, `Output` or `Trap`.
pub type FailureKind = PluginFailure;

#[derive(Debug, Clone)]
pub struct CallFailure {
    pub kind: FailureKind,
    pub message: String,
    /// The last bytes the guest wrote to stdout/stderr, for the operator.
    pub output_tail: String,
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.rule_id(), self.message)
    }
}

/// Finds the contract version a component was built for from its export names
/// (`tenken:plugin/checker@1.0.0`) and checks it against ours.
pub(crate) fn check_contract(
    runtime: &Runtime,
    component: &wasmtime::component::Component,
    interface: &str,
) -> Result<String, RuntimeError> {
    let ty = component.component_type();
    let wanted = format!("{CONTRACT_PACKAGE}/{interface}@");
    let exports: Vec<String> = ty.exports(&runtime.engine).map(|(n, _)| n.to_string()).collect();
    let Some(name) = exports.iter().find(|n| n.starts_with(&wanted)) else {
        let same_pkg: Vec<&String> = exports.iter().filter(|n| n.starts_with(CONTRACT_PACKAGE)).collect();
        return Err(RuntimeError::NotOfficeCheck(format!(
            "it exports {:?} but not `{CONTRACT_PACKAGE}/{interface}`{}",
            exports,
            if same_pkg.is_empty() { "" } else { " (wrong world?)" }
        )));
    };
    let found = &name[wanted.len()..];
    let host = semver::Version::parse(CONTRACT_VERSION).expect("valid constant");
    let compatible = semver::Version::parse(found)
        .map(|v| v.major == host.major && v.minor <= host.minor && v.pre.is_empty())
        .unwrap_or(false);
    if !compatible {
        return Err(RuntimeError::IncompatibleContract {
            found: format!("{CONTRACT_PACKAGE}@{found}"),
            expected: format!("{CONTRACT_PACKAGE}@{CONTRACT_VERSION}"),
        });
    }
    // Imports from our package must be from the same major too (a 2.x `master` import
    // would not link; say why instead of "import not found").
    for (import, _) in ty.imports(&runtime.engine) {
        if let Some(rest) = import.strip_prefix(&format!("{CONTRACT_PACKAGE}/")) {
            let ver = rest.split('@').nth(1).unwrap_or("");
            if semver::Version::parse(ver).map(|v| v.major != host.major || v.minor > host.minor).unwrap_or(true) {
                return Err(RuntimeError::IncompatibleContract {
                    found: format!("{import}"),
                    expected: format!("{CONTRACT_PACKAGE}@{CONTRACT_VERSION}"),
                });
            }
        }
    }
    Ok(found.to_string())
}

impl Runtime {
    /// The import and export names a component declares (`tenken:plugin/checker@1.0.0`,
    /// `wasi:cli/stderr@0.2.6`, ...), for `tenken plugin describe`. Compiles it (or takes
    /// the cached artifact) under the same size bound as [`Plugin::load`]; checks nothing else.
    pub fn component_interfaces(&self, bytes: &[u8]) -> Result<(Vec<String>, Vec<String>), RuntimeError> {
        let max = self.limits.plugin_component_bytes_max;
        if bytes.len() as u64 > max {
            return Err(RuntimeError::TooLarge { size: bytes.len() as u64, max });
        }
        let digest = tenken_model::Digest::from_sha256(Sha256::digest(bytes).into());
        let ty = self.compile(bytes, &digest.to_string(), None)?.component_type();
        let imports = ty.imports(&self.engine).map(|(n, _)| n.to_string()).collect();
        let exports = ty.exports(&self.engine).map(|(n, _)| n.to_string()).collect();
        Ok((imports, exports))
    }
}

impl Plugin {
    /// Validates, compiles (or loads from the artifact cache), links and describes a
    /// component. Every failure says what is wrong with the component. Waits as long as it
    /// takes for a compile slot and for the compile (trusted, local loads); a load on behalf
    /// of someone else (an upload) should use [`Plugin::load_until`].
    pub fn load(runtime: &Arc<Runtime>, bytes: &[u8]) -> Result<Plugin, RuntimeError> {
        Plugin::load_inner(runtime, bytes, None)
    }

    /// [`Plugin::load`], giving up at `deadline`: [`RuntimeError::CompileBusy`] when no
    /// compile slot (`plugin_compiles_max`) came free by then, [`RuntimeError::CompileTimeout`]
    /// when the compile did not finish by then. A timed-out compile cannot be interrupted: it
    /// runs on to the end on its own thread, in its slot (so compiles never pile up beyond
    /// `plugin_compiles_max`), and caches its artifact for a retry. The deadline covers the
    /// compile only; `describe` has its own (`plugin_call_ms_max`).
    pub fn load_until(runtime: &Arc<Runtime>, bytes: &[u8], deadline: Instant) -> Result<Plugin, RuntimeError> {
        Plugin::load_inner(runtime, bytes, Some(deadline))
    }

    fn load_inner(runtime: &Arc<Runtime>, bytes: &[u8], deadline: Option<Instant>) -> Result<Plugin, RuntimeError> {
        let max = runtime.limits.plugin_component_bytes_max;
        if bytes.len() as u64 > max {
            return Err(RuntimeError::TooLarge { size: bytes.len() as u64, max });
        }
        let digest = tenken_model::Digest::from_sha256(Sha256::digest(bytes).into());
        let component = runtime.compile(bytes, &digest.to_string(), deadline)?;
        let contract = check_contract(runtime, &component, "checker")?;
        let instance_pre =
            runtime.linker.instantiate_pre(&component).map_err(|e| RuntimeError::Link(format!("{e:#}")))?;
        let pre = OfficeCheckPre::new(instance_pre).map_err(|e| RuntimeError::NotOfficeCheck(format!("{e:#}")))?;
        let mut plugin = Plugin {
            info: m::PluginInfo { name: String::new(), version: String::new(), rules: vec![] },
            digest,
            contract,
            pre,
            runtime: runtime.clone(),
            declared: Vec::new(),
            peak_memory: std::sync::atomic::AtomicU64::new(0),
        };
        let masters: Arc<dyn m::Masters + Send + Sync> = Arc::new(NoMasters);
        plugin.info = plugin
            .call(&masters, (runtime.limits.plugin_call_ms_max, "plugin_call_ms_max"), |bindings, store| {
                bindings.tenken_plugin_checker().call_describe(store)
            })
            .map(convert::info_from)
            .map_err(|f| RuntimeError::Describe(f.to_string()))?;
        crate::contract::check_declared(&plugin.info, &runtime.limits).map_err(RuntimeError::Declares)?;
        plugin.declared = plugin.info.rules.iter().map(|r| r.id.clone()).collect();
        plugin.declared.sort();
        plugin.declared.dedup();
        Ok(plugin)
    }

    /// The most linear memory (bytes) one call used since the last time this was asked, and
    /// resets it: what `tenken plugin test` reports as a plugin's peak memory.
    pub fn take_peak_memory_bytes(&self) -> u64 {
        self.peak_memory.swap(0, std::sync::atomic::Ordering::Relaxed)
    }

    /// File-level rules.
    pub fn check_file(
        &self,
        masters: &Arc<dyn m::Masters + Send + Sync>,
        input: &FileInput,
    ) -> Result<Vec<m::Finding>, CallFailure> {
        let deadline_ms = file_call_deadline_ms(&self.runtime.limits, input.file.receipts.len());
        let of = "plugin_call_ms_max + plugin_file_call_us_per_receipt per receipt, at most plugin_file_call_ms_max";
        let out = self.call(masters, (deadline_ms, of), |b, store| {
            b.tenken_plugin_checker().call_check_file(store, &input.ctx, &input.file)
        })?;
        Ok(self.findings(out, &input.scope))
    }

    /// Receipt-level rules on a batch.
    pub fn check_receipts(
        &self,
        masters: &Arc<dyn m::Masters + Send + Sync>,
        input: &FileInput,
        batch: &Batch,
    ) -> Result<Vec<m::Finding>, CallFailure> {
        let out = self.call(masters, (self.runtime.limits.plugin_call_ms_max, "plugin_call_ms_max"), |b, store| {
            b.tenken_plugin_checker().call_check_receipts(store, &input.ctx, &batch.receipts)
        })?;
        Ok(self.findings(out, &batch.scope))
    }

    /// Converts, checks and bounds what the plugin returned: at most
    /// `plugin_findings_per_call_max` findings (one extra `plugin.output` finding says how
    /// many were dropped); findings that break the contract (`contract.rs`: a `plugin.` or
    /// undeclared rule id, a receipt not in `scope`, an over-long string) dropped, with one
    /// `plugin.contract` finding per kind of violation; messages cut to
    /// `plugin_message_chars_max` characters.
    fn findings(
        &self,
        out: Vec<crate::bindings::tenken::plugin::types::Finding>,
        scope: &crate::contract::Scope,
    ) -> Vec<m::Finding> {
        let limits = &self.runtime.limits;
        let max = limits.plugin_findings_per_call_max as usize;
        let total = out.len();
        let mut findings: Vec<m::Finding> = out.into_iter().take(max).map(convert::finding_from).collect();
        let contract = crate::contract::enforce(&self.info.name, &self.declared, scope, limits, &mut findings);
        for f in &mut findings {
            convert::cut_message(&mut f.message, limits.plugin_message_chars_max as usize);
        }
        findings.extend(contract);
        if total > max {
            findings.push(m::Finding::error(
                PluginFailure::Output.rule_id(),
                format!(
                    "{} returned {total} findings in one call; only {max} kept (plugin_findings_per_call_max)",
                    self.info.name
                ),
            ));
        }
        findings
    }

    /// One sandboxed call: fresh store, limits, a deadline of `deadline_ms`, bounded output.
    fn call<R>(
        &self,
        masters: &Arc<dyn m::Masters + Send + Sync>,
        (deadline_ms, deadline_of): (u64, &str),
        f: impl FnOnce(&OfficeCheck, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        let limits = &self.runtime.limits;
        let _slot = self.runtime.slots.acquire();
        let out = MemoryOutputPipe::new(limits.plugin_output_bytes_max as usize);
        let state = self.runtime.new_store_state(masters.clone(), out.clone());
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = deadline_ms.div_ceil(limits.plugin_epoch_tick_ms.max(1)).max(1);
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let result = self.pre.instantiate(&mut store).and_then(|bindings| f(&bindings, &mut store));
        self.peak_memory.fetch_max(store.data().limits.memory_bytes, std::sync::atomic::Ordering::Relaxed);
        // The store is dropped here on every path: after a trap it must not be reused.
        drop(store);
        result.map_err(|e| classify(e, &out, limits, (deadline_ms, deadline_of)))
    }
}

/// The deadline of a `check-file` call on a file of `receipts` receipts: it gets one summary
/// per receipt, so a guest that is slow per summary (JavaScript: ~8 µs) must not time out
/// on a legitimately large file. Never below `plugin_call_ms_max`, never above
/// `plugin_file_call_ms_max` (unless that is set lower than `plugin_call_ms_max`).
pub fn file_call_deadline_ms(limits: &tenken_limits::Limits, receipts: usize) -> u64 {
    let grown = (receipts as u64).saturating_mul(limits.plugin_file_call_us_per_receipt) / 1000;
    limits.plugin_call_ms_max.saturating_add(grown).min(limits.plugin_file_call_ms_max.max(limits.plugin_call_ms_max))
}

#[cfg(test)]
mod tests {
    use super::file_call_deadline_ms;

    #[test]
    fn the_file_call_deadline_grows_with_the_file_and_is_capped() {
        let l = tenken_limits::Limits::default();
        assert_eq!(file_call_deadline_ms(&l, 0), l.plugin_call_ms_max);
        assert_eq!(
            file_call_deadline_ms(&l, 100_000),
            l.plugin_call_ms_max + 100_000 * l.plugin_file_call_us_per_receipt / 1000
        );
        assert_eq!(file_call_deadline_ms(&l, usize::MAX), l.plugin_file_call_ms_max);
        // A cap set below the per-call deadline never shortens it.
        let low = tenken_limits::Limits { plugin_file_call_ms_max: 10, ..l.clone() };
        assert_eq!(file_call_deadline_ms(&low, 1_000_000), l.plugin_call_ms_max);
    }
}

/// `deadline`: the call's deadline in ms and the limits it came from (a timeout names both).
pub(crate) fn classify(
    e: wasmtime::Error,
    out: &MemoryOutputPipe,
    limits: &tenken_limits::Limits,
    deadline: (u64, &str),
) -> CallFailure {
    let contents = out.contents();
    let tail_start = contents.len().saturating_sub(512);
    let output_tail = String::from_utf8_lossy(&contents[tail_start..]).into_owned();
    let text = format!("{e:#}");
    // The top-level message is "error while executing at wasm backtrace: ..."; the cause is
    // what an operator needs.
    let cause = e.root_cause().to_string();
    let trap = e.downcast_ref::<wasmtime::Trap>();
    let (kind, message) = if trap == Some(&wasmtime::Trap::Interrupt) {
        (PluginFailure::Timeout, format!("did not finish within {} ms ({})", deadline.0, deadline.1))
    } else if trap == Some(&wasmtime::Trap::StackOverflow) {
        (
            PluginFailure::StackOverflow,
            format!("exceeded the wasm stack of {} bytes (plugin_stack_bytes_max)", limits.plugin_stack_bytes_max),
        )
    } else if text.contains("write beyond capacity") || contents.len() as u64 >= limits.plugin_output_bytes_max {
        (
            PluginFailure::Output,
            format!(
                "wrote more than {} bytes to stdout/stderr (plugin_output_bytes_max)",
                limits.plugin_output_bytes_max
            ),
        )
    } else if text.contains("memory") && (text.contains("grow") || text.contains("limit")) {
        (
            PluginFailure::Memory,
            format!(
                "tried to use more than {} bytes of memory (plugin_memory_bytes_max): {}",
                limits.plugin_memory_bytes_max,
                first_line(&cause)
            ),
        )
    } else {
        let message = match output_tail.lines().rev().find(|l| !l.trim().is_empty()) {
            // A Rust guest's panic message goes to stderr just before the trap.
            Some(said) => format!("trapped: {} (guest output: {})", first_line(&cause), first_line(said)),
            None => format!("trapped: {}", first_line(&cause)),
        };
        (PluginFailure::Trap, message)
    };
    CallFailure { kind, message, output_tail }
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").to_string();
    line.chars().take(300).collect()
}

/// Masters for `describe`, which must not look anything up.
pub(crate) struct NoMasters;

impl m::Masters for NoMasters {
    fn lookup(&self, _: m::MasterKind, _: &str, _: m::Date) -> m::Lookup {
        m::Lookup::Unknown
    }
}
