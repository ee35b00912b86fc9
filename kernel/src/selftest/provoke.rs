//! Faults and panics on purpose, selected by `selftest=` on the command line, to prove that
//! they are reported and stop the machine with the fatal status instead of hanging or triple-faulting.

use crate::arch::stack;
use crate::boot::cmdline::SelfTest;
use crate::println;

pub fn run(test: SelfTest) -> ! {
    match test {
        SelfTest::Fault => {
            let guard = stack::all()[0].guard;
            println!(
                "selftest=fault: writing to the main stack's guard page at {:#x}",
                guard.as_u64()
            );
            // SAFETY: deliberately not sound: the guard page is unmapped, so this write
            // faults and the fault handler stops the machine.
            unsafe { guard.as_mut_ptr::<u64>().write_volatile(0) };
        }
        SelfTest::StackOverflow => {
            println!("selftest=stack-overflow: recursing until the main stack runs out");
            recurse(0);
        }
        SelfTest::Panic => panic!("selftest=panic: panicking on purpose"),
    }
    panic!("selftest={test:?} did not fault")
}

/// Uses a page of stack per call, so the guard page is hit after a few dozen calls.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    if core::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    let mut frame = [depth; 512];
    core::hint::black_box(&mut frame);
    frame[1] + recurse(depth + 1)
}
