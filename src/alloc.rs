//! The process's global allocator: mimalloc, counting per thread the bytes allocated
//! net of those freed. The script runtime reads the count to stop a run that
//! grows its memory past its budget (`ScriptLimits::max_memory`) — rhai's own limits do
//! not count map keys, so without this a script could build a map of gigabytes.
//!
//! mimalloc rather than the system allocator (issue 16): under Inbound API load glibc's
//! malloc and free took about a tenth of the samples of a profile, and mimalloc's
//! thread-local free lists suit the pattern here (small objects made on one thread,
//! often freed on another).

use mimalloc::MiMalloc;
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

thread_local! {
    /// Net bytes allocated by this thread (frees of memory another thread allocated
    /// count here too; only a run's growth on its own thread is read).
    static NET: Cell<isize> = const { Cell::new(0) };
}

fn add(bytes: isize) {
    // `try_with`: never panics, also while the thread's locals are being torn down.
    let _ = NET.try_with(|net| net.set(net.get().wrapping_add(bytes)));
}

/// Net bytes allocated by the current thread so far.
pub fn net_allocated() -> isize {
    NET.try_with(Cell::get).unwrap_or(0)
}

/// mimalloc with a per-thread count.
pub struct Counting;

// SAFETY: every method forwards to `MiMalloc` with the caller's arguments unchanged and
// returns its result; the count is bookkeeping that never allocates (a `const`
// thread-local `Cell` of an integer).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is (see above).
        let ptr = unsafe { MiMalloc.alloc(layout) };
        if !ptr.is_null() {
            add(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let ptr = unsafe { MiMalloc.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { MiMalloc.dealloc(ptr, layout) };
        add(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is.
        let new = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            add(new_size as isize - layout.size() as isize);
        }
        new
    }
}
