//! Component compilation: the artifact cache, and the bounded compile slots that a load with
//! a deadline waits for.
//!
//! Why a dedicated thread per compile: Cranelift compilation cannot be interrupted (wasmtime
//! offers no way to cancel `Component::new` or `Engine::precompile_component`), so a deadline
//! cannot stop a compile. Each compile therefore runs on its own thread, which holds one of
//! the `plugin_compiles_max` slots from start to finish. A caller whose deadline passes gets
//! [`RuntimeError::CompileTimeout`] and returns at once, while the thread compiles on to the
//! end (writing the artifact cache, so a retry of the same bytes loads it) and only then
//! frees its slot. So however often a slow component is uploaded, at most
//! `plugin_compiles_max` compiles run at once; callers beyond that wait for a slot, and a
//! caller with a deadline gives up at it with [`RuntimeError::CompileBusy`].
//!
//! A cached artifact is loaded without a slot: it is not compiled.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::compile_slots::Running;
use crate::engine::{Runtime, RuntimeError};

impl Runtime {
    /// Components being compiled right now (at most `plugin_compiles_max`); includes
    /// compiles whose caller gave up at its deadline and that are still running.
    pub fn compiles_in_flight(&self) -> u32 {
        self.compiles.running.load(Ordering::SeqCst)
    }

    /// Compiles a component, or loads the artifact this host compiled earlier.
    ///
    /// The cache key is the component's sha256 plus the engine's compatibility hash, so a
    /// wasmtime upgrade or a config change never loads a stale artifact. Artifacts are
    /// only ever written by this function, and their own sha256 is kept beside them and
    /// checked before `deserialize` (which trusts its input).
    ///
    /// A compile takes one of the `plugin_compiles_max` slots (see the module doc).
    /// `deadline`: when the caller stops waiting, for a slot ([`RuntimeError::CompileBusy`])
    /// or for the compile itself ([`RuntimeError::CompileTimeout`]); `None` waits as long as
    /// it takes.
    pub(crate) fn compile(
        &self,
        bytes: &[u8],
        digest: &str,
        deadline: Option<Instant>,
    ) -> Result<Component, RuntimeError> {
        let key = self.cache_dir.as_ref().map(|_| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.engine.precompile_compatibility_hash().hash(&mut h);
            format!("{}-{:016x}", digest.trim_start_matches("sha256:"), h.finish())
        });
        let cached = || load_cached(&self.engine, self.cache_dir.as_deref()?, key.as_deref()?);
        if let Some(c) = cached() {
            return Ok(c);
        }
        let t0 = Instant::now();
        let Some(permit) = self.compiles.acquire(deadline) else {
            return Err(RuntimeError::CompileBusy {
                slots: self.compiles.size,
                waited_ms: t0.elapsed().as_millis() as u64,
            });
        };
        // The same component may have been compiled by the load this one waited behind
        // (an upload retried after a timeout): then its artifact is there now.
        if let Some(c) = cached() {
            return Ok(c);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (engine, dir, bytes, slots) =
            (self.engine.clone(), self.cache_dir.clone(), bytes.to_vec(), self.compiles.clone());
        #[cfg(test)]
        let gate = self.compiles.gate.lock().unwrap().clone();
        std::thread::Builder::new()
            .name("tenken-compile".into())
            // Cranelift recursion on large functions wants more than the default 2 MiB.
            .stack_size(8 << 20)
            .spawn(move || {
                // Declared first, so dropped last: the slot is freed only after the work.
                let _permit = permit;
                let running = Running::start(&slots.running);
                #[cfg(test)]
                if let Some(gate) = gate {
                    gate();
                }
                let result = compile_now(&engine, &bytes, dir.as_deref().zip(key.as_deref()));
                drop(running);
                // The caller may have given up (deadline): then nobody is listening.
                let _ = tx.send(result);
            })
            .map_err(|e| RuntimeError::Engine(format!("cannot start a compile thread: {e}")))?;
        let panicked = || RuntimeError::Compile("the compiler panicked".into());
        match deadline {
            None => rx.recv().map_err(|_| panicked())?,
            Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                Ok(result) => result,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    Err(RuntimeError::CompileTimeout { waited_ms: t0.elapsed().as_millis() as u64 })
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(panicked()),
            },
        }
    }
}

/// The artifact cached under `key`, if it is there, intact and loads.
fn load_cached(engine: &Engine, dir: &Path, key: &str) -> Option<Component> {
    let art = std::fs::read(dir.join(format!("{key}.cwasm"))).ok()?;
    let sum = std::fs::read_to_string(dir.join(format!("{key}.sha256"))).ok()?;
    if hex::encode(Sha256::digest(&art)) != sum.trim() {
        return None;
    }
    // SAFETY: the artifact was produced by `precompile_component` of an engine with the same
    // compatibility hash (it is in the key), and its digest matches the one recorded when
    // this process family wrote it.
    unsafe { Component::deserialize(engine, &art) }.ok()
}

/// The compile itself (on the compile thread): in memory, or precompiled into the cache
/// (`cache`: directory and key) and loaded from the bytes just written.
fn compile_now(engine: &Engine, bytes: &[u8], cache: Option<(&Path, &str)>) -> Result<Component, RuntimeError> {
    let err = |e: wasmtime::Error| RuntimeError::Compile(format!("{e:#}"));
    let Some((dir, key)) = cache else { return Component::new(engine, bytes).map_err(err) };
    let art = engine.precompile_component(bytes).map_err(err)?;
    // The cache is an optimisation: failing to write it is logged, never fatal.
    if let Err(e) = write_artifact(dir, key, &art) {
        tracing::warn!(cache = %dir.display(), error = %e, "could not cache a compiled plugin");
    }
    // SAFETY: produced just above by this engine.
    unsafe { Component::deserialize(engine, &art) }.map_err(err)
}

/// Writes `<key>.cwasm` and its digest `<key>.sha256`. The artifact goes to a unique
/// temporary name first and is renamed into place, so a concurrent reader (another thread or
/// process) never sees half a file; the digest is written last, so an artifact without a
/// matching digest is simply recompiled.
fn write_artifact(dir: &Path, key: &str, art: &[u8]) -> std::io::Result<()> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    std::fs::create_dir_all(dir)?;
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!("{key}.{}.{seq}.tmp", std::process::id()));
    std::fs::write(&tmp, art)?;
    std::fs::rename(&tmp, dir.join(format!("{key}.cwasm")))?;
    let sum_tmp = dir.join(format!("{key}.{}.{seq}.sha.tmp", std::process::id()));
    std::fs::write(&sum_tmp, hex::encode(Sha256::digest(art)))?;
    std::fs::rename(&sum_tmp, dir.join(format!("{key}.sha256")))
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use std::sync::{Arc, Condvar, Mutex};

    /// The smallest valid component (preamble only: magic, version 0x0d, layer 1). It
    /// compiles, with no cache, afresh on every call.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\x00\x01\x00";

    fn runtime(compiles: u32) -> Arc<Runtime> {
        let limits =
            tenken_limits::Limits { plugin_compiles_max: compiles, plugin_instances_max: 2, ..Default::default() };
        Arc::new(Runtime::new(&limits, None).unwrap())
    }

    /// A gate that holds every compile (on its thread, in its slot) until opened, and tells
    /// the test each time one arrives, with how many were running then.
    struct Gate {
        open: Mutex<bool>,
        opened: Condvar,
    }

    impl Gate {
        fn install(rt: &Arc<Runtime>) -> (Arc<Gate>, mpsc::Receiver<u32>) {
            let gate = Arc::new(Gate { open: Mutex::new(false), opened: Condvar::new() });
            let (tx, rx) = mpsc::channel();
            let (g, weak_rt) = (gate.clone(), Arc::downgrade(rt));
            let tx = Mutex::new(tx);
            *rt.compiles.gate.lock().unwrap() = Some(Arc::new(move || {
                let running = weak_rt.upgrade().map_or(0, |rt| rt.compiles_in_flight());
                let _ = tx.lock().unwrap().send(running);
                let mut open = g.open.lock().unwrap();
                while !*open {
                    open = g.opened.wait(open).unwrap();
                }
            }));
            (gate, rx)
        }

        fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.opened.notify_all();
        }
    }

    /// Opens the gate even when an assertion fails, so no compile thread is left blocked.
    struct OpenOnDrop(Arc<Gate>);

    impl Drop for OpenOnDrop {
        fn drop(&mut self) {
            self.0.open();
        }
    }

    #[test]
    fn concurrent_compiles_never_exceed_the_slots() {
        const MAX: u32 = 2;
        const LOADS: usize = 6;
        let rt = runtime(MAX);
        let (gate, arrived) = Gate::install(&rt);
        let open_on_drop = OpenOnDrop(gate.clone());
        let loaders: Vec<_> = (0..LOADS)
            .map(|_| {
                let rt = rt.clone();
                std::thread::spawn(move || rt.compile(EMPTY_COMPONENT, "sha256:empty", None).map(|_| ()))
            })
            .collect();
        // Both slots fill (six loads want them) and are held at the gate.
        let mut seen = vec![arrived.recv().unwrap(), arrived.recv().unwrap()];
        assert_eq!(rt.compiles_in_flight(), MAX);
        // With every slot held, a load with a deadline gets "busy" (here: already due).
        let err = rt.compile(EMPTY_COMPONENT, "sha256:empty", Some(Instant::now())).unwrap_err();
        assert!(matches!(err, RuntimeError::CompileBusy { slots: MAX, .. }), "{err:?}");
        assert!(err.to_string().contains("plugin_compiles_max") && err.to_string().contains("retry"), "{err}");
        drop(open_on_drop);
        for l in loaders {
            l.join().unwrap().unwrap();
        }
        seen.extend(arrived.try_iter());
        assert_eq!(seen.len(), LOADS, "every load compiled once: {seen:?}");
        assert!(seen.iter().all(|&n| n <= MAX), "more than {MAX} compiles in flight: {seen:?}");
        assert_eq!(rt.compiles_in_flight(), 0);
    }

    #[test]
    fn a_timed_out_compile_keeps_its_slot_until_it_really_ends() {
        let rt = runtime(1);
        let (gate, arrived) = Gate::install(&rt);
        let open_on_drop = OpenOnDrop(gate.clone());
        // The compile is held at the gate, so its 50 ms deadline passes first, whatever the
        // machine's speed: the caller is told, and gets its thread back.
        let err = rt.compile(EMPTY_COMPONENT, "sha256:empty", Some(Instant::now() + Duration::from_millis(50)));
        let err = err.unwrap_err();
        assert!(matches!(err, RuntimeError::CompileTimeout { .. }), "{err:?}");
        assert!(err.to_string().contains("in the background"), "{err}");
        assert_eq!(arrived.recv().unwrap(), 1);
        // The abandoned compile still runs and still holds the only slot.
        assert_eq!(rt.compiles_in_flight(), 1);
        let busy = rt.compile(EMPTY_COMPONENT, "sha256:empty", Some(Instant::now())).unwrap_err();
        assert!(matches!(busy, RuntimeError::CompileBusy { slots: 1, .. }), "{busy:?}");
        // Once it ends, the slot is free again: a load without a deadline waits for it.
        drop(open_on_drop);
        rt.compile(EMPTY_COMPONENT, "sha256:empty", None).unwrap();
        assert_eq!(arrived.try_iter().count(), 1, "the second load compiled too");
    }
}
