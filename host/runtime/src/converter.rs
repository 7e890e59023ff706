//! A loaded master-format converter (world `master-format`) and its sandboxed calls:
//! `decode` a master file into canonical rows, `encode` rows back into a file.
//!
//! Same sandbox as rule plugins (fresh store, memory/table limits, no capabilities), with
//! its own deadline (`converter_call_ms_max`): a converter handles whole master files.

use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use tenken_model::{self as m, CanonRow};
use wasmtime::Store;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::engine::{HostState, Runtime, RuntimeError};
use crate::plugin::{CallFailure, NoMasters, check_contract, classify};

use crate::convert::{kind_from, kind_to, row_from, row_to};
use crate::converter_bindings::{MasterFormat, MasterFormatPre};

/// What a converter declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatInfo {
    pub name: String,
    pub version: String,
    pub kinds: Vec<m::MasterKind>,
}

/// Why a conversion failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConvertError {
    #[error("the converter failed: {0}")]
    Call(CallFailure),
    #[error("the converter refused the input: {message}{}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Decode { message: String, line: Option<u32> },
    #[error("the converter could not encode: {0}")]
    Encode(String),
}

pub struct Converter {
    pub info: FormatInfo,
    pub digest: tenken_model::Digest,
    pub contract: String,
    pre: MasterFormatPre<HostState>,
    runtime: Arc<Runtime>,
}

impl Converter {
    /// Validates, compiles (artifact cache), links and describes a converter component,
    /// waiting as long as it takes for a compile slot and the compile.
    pub fn load(runtime: &Arc<Runtime>, bytes: &[u8]) -> Result<Converter, RuntimeError> {
        Converter::load_inner(runtime, bytes, None)
    }

    /// [`Converter::load`], giving up at `deadline` as [`crate::Plugin::load_until`] does
    /// (`CompileBusy` / `CompileTimeout`; a timed-out compile runs on in its slot).
    pub fn load_until(runtime: &Arc<Runtime>, bytes: &[u8], deadline: Instant) -> Result<Converter, RuntimeError> {
        Converter::load_inner(runtime, bytes, Some(deadline))
    }

    fn load_inner(runtime: &Arc<Runtime>, bytes: &[u8], deadline: Option<Instant>) -> Result<Converter, RuntimeError> {
        let max = runtime.limits.plugin_component_bytes_max;
        if bytes.len() as u64 > max {
            return Err(RuntimeError::TooLarge { size: bytes.len() as u64, max });
        }
        let digest = tenken_model::Digest::from_sha256(Sha256::digest(bytes).into());
        let component = runtime.compile(bytes, &digest.to_string(), deadline)?;
        let contract = check_contract(runtime, &component, "converter")?;
        let instance_pre =
            runtime.linker.instantiate_pre(&component).map_err(|e| RuntimeError::Link(format!("{e:#}")))?;
        let pre = MasterFormatPre::new(instance_pre).map_err(|e| RuntimeError::NotOfficeCheck(format!("{e:#}")))?;
        let mut c = Converter {
            info: FormatInfo { name: String::new(), version: String::new(), kinds: Vec::new() },
            digest,
            contract,
            pre,
            runtime: runtime.clone(),
        };
        let info = c
            .call(|b, s| b.tenken_plugin_converter().call_describe(s))
            .map_err(|f| RuntimeError::Describe(f.to_string()))?;
        c.info = FormatInfo {
            name: info.name,
            version: info.version,
            kinds: info.kinds.into_iter().map(kind_from).collect(),
        };
        Ok(c)
    }

    pub fn decode(&self, kind: m::MasterKind, bytes: &[u8]) -> Result<Vec<CanonRow>, ConvertError> {
        let out = self
            .call(|b, s| b.tenken_plugin_converter().call_decode(s, kind_to(kind), bytes))
            .map_err(ConvertError::Call)?;
        match out {
            Ok(rows) => Ok(rows.into_iter().map(row_from).collect()),
            Err(e) => Err(ConvertError::Decode { message: e.message, line: e.line }),
        }
    }

    pub fn encode(&self, kind: m::MasterKind, rows: &[CanonRow]) -> Result<Vec<u8>, ConvertError> {
        let wrows: Vec<_> = rows.iter().map(row_to).collect();
        let out = self
            .call(|b, s| b.tenken_plugin_converter().call_encode(s, kind_to(kind), &wrows))
            .map_err(ConvertError::Call)?;
        out.map_err(ConvertError::Encode)
    }

    fn call<R>(
        &self,
        f: impl FnOnce(&MasterFormat, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallFailure> {
        let limits = &self.runtime.limits;
        let _slot = self.runtime.slots.acquire();
        let out = MemoryOutputPipe::new(limits.plugin_output_bytes_max as usize);
        let masters: Arc<dyn m::Masters + Send + Sync> = Arc::new(NoMasters);
        let state = self.runtime.new_store_state(masters, out.clone());
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = limits.converter_call_ms_max.div_ceil(limits.plugin_epoch_tick_ms.max(1)).max(1);
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        let result = self.pre.instantiate(&mut store).and_then(|b| f(&b, &mut store));
        drop(store);
        result.map_err(|e| classify(e, &out, limits, (limits.converter_call_ms_max, "converter_call_ms_max")))
    }
}
