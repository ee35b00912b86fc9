//! The kernel heap: a linked-list allocator over pages the kernel maps at boot.

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Hands `[start, start + size)` to the allocator.
///
/// # Safety
/// The range must be mapped writable, unused by anything else for the rest of the kernel's
/// life, and this must be called once.
pub unsafe fn init(start: *mut u8, size: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { HEAP.lock().init(start, size) }
}

/// Bytes currently handed out, for the heap self-test's leak check.
pub fn used() -> usize {
    HEAP.lock().used()
}
