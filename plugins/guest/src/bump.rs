//! A bump allocator for guests: allocation is a pointer increment, `dealloc` does nothing.
//!
//! Why this is sound here: the host instantiates every plugin afresh for each call and
//! drops the instance afterwards (see `tenken-runtime`), so nothing a call allocates needs
//! to outlive it, and all of it is reclaimed at once with the instance. Lifting a batch of
//! receipts allocates tens of thousands of small strings; dlmalloc's bookkeeping for them
//! was measurable (docs/PERFORMANCE.md). Memory still counts against the host's
//! `plugin_memory_bytes_max`: a runaway plugin traps the same way.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;

const PAGE: usize = 65_536;
/// Grow at least this many pages at a time, so growth is rare.
const CHUNK_PAGES: usize = 16;

pub struct Bump {
    next: Cell<usize>,
    end: Cell<usize>,
}

// SAFETY: wasm32 guests here are single-threaded; no two calls run in one instance.
unsafe impl Sync for Bump {}

impl Bump {
    pub const fn new() -> Bump {
        Bump { next: Cell::new(0), end: Cell::new(0) }
    }
}

impl Default for Bump {
    fn default() -> Self {
        Bump::new()
    }
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let align = layout.align();
        let mut start = (self.next.get() + align - 1) & !(align - 1);
        let mut new_next = start.wrapping_add(layout.size());
        if self.end.get() == 0 || new_next > self.end.get() || new_next < start {
            let need = layout.size() + align;
            let pages = need.div_ceil(PAGE).max(CHUNK_PAGES);
            let prev = core::arch::wasm32::memory_grow(0, pages);
            if prev == usize::MAX {
                return core::ptr::null_mut();
            }
            let base = prev * PAGE;
            // Continue the current region if the new pages follow it, else start afresh.
            if self.end.get() != base || self.end.get() == 0 {
                self.next.set(base);
            }
            self.end.set(base + pages * PAGE);
            start = (self.next.get() + align - 1) & !(align - 1);
            new_next = start + layout.size();
        }
        self.next.set(new_next);
        start as *mut u8
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Give back the most recent allocation (cheap, and common for temporaries).
        if ptr as usize + layout.size() == self.next.get() {
            self.next.set(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Growing the most recent allocation in place is the common case (Vec::push).
        if ptr as usize + layout.size() == self.next.get() && ptr as usize + new_size <= self.end.get() {
            self.next.set(ptr as usize + new_size);
            return ptr;
        }
        // SAFETY: the caller guarantees `layout` describes `ptr`; a new block of the same
        // alignment is valid for `new_size` bytes.
        unsafe {
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}
