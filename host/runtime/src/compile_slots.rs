//! The bounded compile slots (`plugin_compiles_max`): a counting semaphore whose permits
//! move to the compile thread, so a compile holds its slot to the end (see `compile.rs`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// A counting semaphore of compile slots, whose permits can move to another thread.
pub(crate) struct CompileSlots {
    pub(crate) size: u32,
    free: Mutex<u32>,
    freed: Condvar,
    /// Compiles running now (counted by the compile threads themselves, around the work).
    pub(crate) running: AtomicU32,
    /// Tests only: called on the compile thread, holding its slot, before it compiles, so a
    /// test can hold compiles in flight and observe the bound without sleeping.
    #[cfg(test)]
    pub(crate) gate: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
}

/// One compile slot; it returns when dropped (also when its thread unwinds).
pub(crate) struct CompilePermit(Arc<CompileSlots>);

impl Drop for CompilePermit {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

/// Counts a compile as running while alive.
pub(crate) struct Running<'a>(&'a AtomicU32);

impl<'a> Running<'a> {
    pub(crate) fn start(n: &'a AtomicU32) -> Running<'a> {
        n.fetch_add(1, Ordering::SeqCst);
        Running(n)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl CompileSlots {
    pub(crate) fn new(size: u32) -> Arc<CompileSlots> {
        let size = size.max(1);
        Arc::new(CompileSlots {
            size,
            free: Mutex::new(size),
            freed: Condvar::new(),
            running: AtomicU32::new(0),
            #[cfg(test)]
            gate: Mutex::new(None),
        })
    }

    /// Waits for a free slot, until `deadline` if there is one; `None` when it passed first.
    pub(crate) fn acquire(self: &Arc<Self>, deadline: Option<Instant>) -> Option<CompilePermit> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if *free > 0 {
                *free -= 1;
                return Some(CompilePermit(self.clone()));
            }
            free = match deadline {
                None => self.freed.wait(free).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.freed.wait_timeout(free, left).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }
}
