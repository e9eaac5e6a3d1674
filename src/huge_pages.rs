//! The process allocator: the system one, except that on Linux large blocks (the dedupe
//! table, the call states, log batches, checkpoint buffers) are placed on whole
//! transparent huge pages.
//!
//! Fresh memory is expensive on the machines netwait runs on (a page fault and a kernel
//! clear per 4 KiB page: about 0.9 ms per MB, five times the cost of writing warm
//! memory), and a hash table filled in random order also takes a TLB miss on most
//! probes. With 2 MiB pages both mostly go away. A large block is therefore aligned to
//! 2 MiB and rounded up to whole huge pages (a 4 KiB-page edge would cost 512 faults),
//! and marked `MADV_HUGEPAGE` (THP's usual mode is `madvise`). Small blocks are left alone.

use std::alloc::{GlobalAlloc, Layout, System};

pub struct HugePageAlloc;

const HUGE: usize = 2 << 20;
/// Blocks from this size on go on huge pages (at most 1/3 of such a block is padding).
const HUGE_FROM: usize = 2 * HUGE;

/// The layout a block of `layout` is actually allocated with.
fn placed(layout: Layout) -> Layout {
    if cfg!(target_os = "linux") && layout.size() >= HUGE_FROM {
        let size = layout.size().next_multiple_of(HUGE);
        Layout::from_size_align(size, layout.align().max(HUGE)).unwrap_or(layout)
    } else {
        layout
    }
}

#[cfg(target_os = "linux")]
fn advise(ptr: *mut u8, layout: Layout) {
    if !ptr.is_null() && layout.align() >= HUGE {
        // SAFETY: the block is ours and exactly `layout.size()` long; MADV_HUGEPAGE only
        // sets a paging policy and never changes its contents.
        unsafe {
            libc::madvise(ptr.cast(), layout.size(), libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_ptr: *mut u8, _layout: Layout) {}

// SAFETY: every block is allocated and freed by `System` with the same `placed` layout
// (a pure function of the caller's layout), which is at least as large and as aligned
// as the caller's; `advise` only adds a hint.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let placed = placed(layout);
        // SAFETY: `placed` has a non-zero size when `layout` has (the caller's contract).
        let p = unsafe { System.alloc(placed) };
        advise(p, placed);
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let placed = placed(layout);
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(placed) };
        advise(p, placed);
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` with this layout, so from `System` with `placed`.
        unsafe { System.dealloc(ptr, placed(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = placed(layout);
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        let new = placed(new_layout);
        if old == layout && new == new_layout {
            // SAFETY: both small: plain `System` blocks, the caller's contract holds.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if new == old {
            return ptr; // the same block as placed (a size change within its huge pages)
        }
        // SAFETY: `new` has a non-zero size; on success both blocks are valid for the
        // bytes copied, and the old one is freed with the layout it was allocated with.
        unsafe {
            let p = System.alloc(new);
            if !p.is_null() {
                advise(p, new);
                std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                System.dealloc(ptr, old);
            }
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_sit_on_huge_pages_and_keep_their_bytes_across_reallocs() {
        let a = HugePageAlloc;
        let small = Layout::from_size_align(1000, 8).expect("layout");
        let large = Layout::from_size_align(5 << 20, 8).expect("layout");
        // SAFETY: layouts are non-zero; every block is used within its size and freed
        // with the layout it has at that moment.
        unsafe {
            let p = a.alloc(small);
            assert!(!p.is_null());
            p.write_bytes(7, small.size());
            // small -> large -> larger -> large (same huge pages) -> small
            let mut layout = small;
            let mut p = p;
            for size in [5 << 20, 9 << 20, (9 << 20) - 100, 3000] {
                p = a.realloc(p, layout, size);
                assert!(!p.is_null());
                if size >= HUGE_FROM {
                    assert_eq!(p as usize % HUGE, 0, "huge block aligned");
                }
                let kept = layout.size().min(size);
                assert!((0..kept).all(|i| *p.add(i) == 7), "bytes kept up to {kept}");
                p.write_bytes(7, size);
                layout = Layout::from_size_align(size, 8).expect("layout");
            }
            a.dealloc(p, layout);
            let z = a.alloc_zeroed(large);
            assert!((0..large.size()).step_by(4096).all(|i| *z.add(i) == 0));
            a.dealloc(z, large);
        }
    }
}
