//! A fake hypercall page for host tests of the typed wrappers.
//!
//! The page has the real layout (one 32-byte stub per hypercall number, `eax` = number), so
//! [`HypercallPage::call`] runs unchanged: each stub jumps to a dispatcher that saves what
//! the hypercall ABI promises to preserve but a Rust function may clobber (r9, the x87/SSE
//! state), then calls the test's handler with the five argument registers and the number.
//! The handler plays Xen: it checks the arguments and writes results through the pointers
//! it was given, as Xen would.

use std::boxed::Box;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::vec::Vec;

use super::hypercall::HypercallPage;

core::arch::global_asm!(
    ".pushsection .text.janus_fake_xen,\"ax\",@progbits",
    ".balign 4096",
    ".globl janus_fake_hypercall_page",
    ".hidden janus_fake_hypercall_page",
    "janus_fake_hypercall_page:",
    ".set janus_fake_slot, 0",
    ".rept 128",
    ".balign 32",
    "movl $janus_fake_slot, %eax",
    "jmp janus_fake_xen_dispatch",
    ".set janus_fake_slot, janus_fake_slot + 1",
    ".endr",
    "janus_fake_xen_dispatch:",
    "pushq %rbp",
    "movq %rsp, %rbp",
    "pushq %r9",
    "subq $520, %rsp",
    "andq $-16, %rsp",
    "fxsave64 (%rsp)",
    // sysv64: (rdi, rsi, rdx, rcx, r8, r9) = (a0, a1, a2, a3, a4, nr).
    "movq %r10, %rcx",
    "movl %eax, %r9d",
    "call {entry}",
    "fxrstor64 (%rsp)",
    "movq -8(%rbp), %r9",
    "movq %rbp, %rsp",
    "popq %rbp",
    "ret",
    ".popsection",
    entry = sym fake_xen_entry,
    options(att_syntax)
);

unsafe extern "C" {
    static janus_fake_hypercall_page: u8;
}

/// One hypercall as the fake hypervisor saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Call {
    pub nr: u32,
    pub args: [u64; 5],
}

type Handler = Box<dyn FnMut(&Call) -> i64>;

#[derive(Default)]
struct State {
    handler: Option<Handler>,
    calls: Vec<Call>,
    panic: Option<Box<dyn std::any::Any + Send>>,
}

std::thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

extern "sysv64" fn fake_xen_entry(a0: u64, a1: u64, a2: u64, a3: u64, a4: u64, nr: u64) -> i64 {
    let call = Call {
        nr: nr as u32,
        args: [a0, a1, a2, a3, a4],
    };
    STATE.with(|state| {
        let mut handler = {
            let mut state = state.borrow_mut();
            state.calls.push(call);
            state.handler.take()
        };
        // A panicking assertion must not unwind through the assembly: keep it for later.
        let result = catch_unwind(AssertUnwindSafe(|| match handler.as_mut() {
            Some(handler) => handler(&call),
            None => -38,
        }));
        let mut state = state.borrow_mut();
        state.handler = handler;
        match result {
            Ok(value) => value,
            Err(panic) => {
                state.panic.get_or_insert(panic);
                -38
            }
        }
    })
}

/// The fake hypervisor for the current test thread; uninstalled when dropped.
pub(crate) struct FakeXen {
    page: HypercallPage,
}

impl FakeXen {
    /// Installs `handler` as this thread's hypervisor.
    pub fn new(handler: impl FnMut(&Call) -> i64 + 'static) -> Self {
        STATE.with(|state| {
            *state.borrow_mut() = State {
                handler: Some(Box::new(handler)),
                ..State::default()
            }
        });
        // SAFETY: the symbol is the 4 KiB stub page defined above, in executable text.
        let page = unsafe { HypercallPage::new(&raw const janus_fake_hypercall_page) };
        Self { page }
    }

    pub fn page(&self) -> &HypercallPage {
        &self.page
    }

    /// The hypercalls made so far; re-raises a panic of the handler.
    pub fn calls(&self) -> Vec<Call> {
        STATE.with(|state| {
            let mut state = state.borrow_mut();
            if let Some(panic) = state.panic.take() {
                drop(state);
                resume_unwind(panic);
            }
            state.calls.clone()
        })
    }
}

impl Drop for FakeXen {
    fn drop(&mut self) {
        let panic = STATE.with(|state| state.replace(State::default()).panic);
        if let (Some(panic), false) = (panic, std::thread::panicking()) {
            resume_unwind(panic);
        }
    }
}

/// Writes `value` at guest address `addr`, as Xen's `copy_to_guest` would.
///
/// # Safety
/// `addr` must be a live, aligned `T` the hypercall's caller handed over for writing.
pub(crate) unsafe fn write_guest<T>(addr: u64, value: T) {
    // SAFETY: forwarded from the caller.
    unsafe { (addr as *mut T).write(value) }
}

/// Reads a `T` from guest address `addr`, as Xen's `copy_from_guest` would.
///
/// # Safety
/// `addr` must be a live, aligned `T` the hypercall's caller handed over.
pub(crate) unsafe fn read_guest<T>(addr: u64) -> T {
    // SAFETY: forwarded from the caller.
    unsafe { (addr as *const T).read() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xen::error::XenError;

    #[test]
    fn every_slot_reaches_the_handler_with_its_number_and_arguments() {
        let fake = FakeXen::new(|call| call.nr as i64 * 10);
        for nr in [0, 1, 17, 33, 127] {
            // SAFETY: the fake hypervisor reads no memory.
            let r = unsafe { fake.page().call(nr, [1, 2, 3, 4, 5]) };
            assert_eq!(r, nr as i64 * 10);
        }
        let calls = fake.calls();
        assert_eq!(calls.len(), 5);
        assert_eq!(
            calls[2],
            Call {
                nr: 17,
                args: [1, 2, 3, 4, 5]
            }
        );
    }

    #[test]
    fn the_unknown_hypercall_comes_back_as_enosys() {
        let fake = FakeXen::new(|call| if call.nr == 127 { -38 } else { 0 });
        assert_eq!(fake.page().unknown_hypercall(), Err(XenError::Enosys));
    }

    #[test]
    #[should_panic(expected = "handler saw")]
    fn a_failing_handler_assertion_fails_the_test() {
        let fake = FakeXen::new(|call| panic!("handler saw {}", call.nr));
        // SAFETY: the fake hypervisor reads no memory.
        let _ = unsafe { fake.page().call(3, [0; 5]) };
        fake.calls();
    }
}
