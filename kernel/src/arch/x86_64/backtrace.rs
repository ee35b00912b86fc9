//! Frame-pointer backtraces (the kernel is built with `-C force-frame-pointers=yes`): each
//! frame starts with the caller's rbp, then the return address.

use super::stack;

const MAX_FRAMES: usize = 32;

/// Calls `visit(depth, address)` for `rip`, then for each return address found by following
/// the rbp chain from `rbp`. It only reads inside the kernel stacks and stops at anything
/// that does not look like a frame, so a corrupt chain cannot fault the fault handler.
pub fn walk(rip: u64, rbp: u64, mut visit: impl FnMut(usize, u64)) {
    visit(0, rip);
    let mut frame = rbp;
    for depth in 1..MAX_FRAMES {
        let Some(stack) = stack::containing(frame) else {
            return;
        };
        if !frame.is_multiple_of(8) || !stack.contains(frame + 15) {
            return;
        }
        let words = frame as *const u64;
        // SAFETY: both words lie inside a mapped kernel stack (checked above).
        let (caller_frame, return_address) = unsafe { (words.read(), words.add(1).read()) };
        if return_address == 0 {
            return;
        }
        visit(depth, return_address);
        // Frames move towards the stack top; anything else is a broken chain.
        if caller_frame <= frame {
            return;
        }
        frame = caller_frame;
    }
}

/// The caller's rbp, to start a backtrace from the current position.
#[inline(always)]
pub fn current_frame() -> u64 {
    let rbp: u64;
    // SAFETY: reads a register.
    unsafe { core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack)) };
    rbp
}
