//! The kernel's stacks. They live in the image's `.stacks` section, each with a guard page
//! below it that the kernel's page tables leave unmapped, so an overflow faults instead of
//! silently overwriting whatever lies below.

use x86_64::VirtAddr;

const PAGE: usize = 4096;
const MAIN_STACK_SIZE: usize = 256 * 1024;
const PAGE_FAULT_STACK_SIZE: usize = 32 * 1024;
const SMALL_IST_STACK_SIZE: usize = 16 * 1024;

core::arch::global_asm!(
    r#"
    .section .stacks, "aw", @nobits
    .balign 4096
__stack_main_guard:         .skip {page}
__stack_main_bottom:        .skip {main}
    .global __stack_main_top
__stack_main_top:
__stack_double_fault_guard: .skip {page}
__stack_double_fault_bottom: .skip {small}
__stack_double_fault_top:
__stack_nmi_guard:          .skip {page}
__stack_nmi_bottom:         .skip {small}
__stack_nmi_top:
__stack_machine_check_guard: .skip {page}
__stack_machine_check_bottom: .skip {small}
__stack_machine_check_top:
__stack_page_fault_guard:   .skip {page}
__stack_page_fault_bottom:  .skip {pf}
__stack_page_fault_top:
    "#,
    page = const PAGE,
    main = const MAIN_STACK_SIZE,
    small = const SMALL_IST_STACK_SIZE,
    pf = const PAGE_FAULT_STACK_SIZE,
);

unsafe extern "C" {
    static __stack_main_guard: u8;
    static __stack_main_top: u8;
    static __stack_double_fault_guard: u8;
    static __stack_double_fault_top: u8;
    static __stack_nmi_guard: u8;
    static __stack_nmi_top: u8;
    static __stack_machine_check_guard: u8;
    static __stack_machine_check_top: u8;
    static __stack_page_fault_guard: u8;
    static __stack_page_fault_top: u8;
}

/// One kernel stack: `[guard, guard + 4 KiB)` is the unmapped guard page, `[guard + 4 KiB, top)`
/// the usable stack.
#[derive(Clone, Copy, Debug)]
pub struct Stack {
    pub name: &'static str,
    pub guard: VirtAddr,
    pub top: VirtAddr,
}

impl Stack {
    pub fn bottom(&self) -> VirtAddr {
        self.guard + PAGE as u64
    }

    pub fn contains(&self, addr: u64) -> bool {
        (self.bottom().as_u64()..self.top.as_u64()).contains(&addr)
    }

    pub fn guard_contains(&self, addr: u64) -> bool {
        (self.guard.as_u64()..self.bottom().as_u64()).contains(&addr)
    }
}

fn stack(name: &'static str, guard: *const u8, top: *const u8) -> Stack {
    Stack {
        name,
        guard: VirtAddr::from_ptr(guard),
        top: VirtAddr::from_ptr(top),
    }
}

/// Interrupt-stack-table slots (1-based in the IDT, 0-based in the TSS array).
pub const IST_DOUBLE_FAULT: u16 = 1;
pub const IST_NMI: u16 = 2;
pub const IST_MACHINE_CHECK: u16 = 3;
pub const IST_PAGE_FAULT: u16 = 4;

/// Every kernel stack: the main stack first, then the IST stacks in IST-slot order.
pub fn all() -> [Stack; 5] {
    // Only the symbols' addresses are taken, never their contents.
    [
        stack(
            "main",
            &raw const __stack_main_guard,
            &raw const __stack_main_top,
        ),
        stack(
            "double-fault",
            &raw const __stack_double_fault_guard,
            &raw const __stack_double_fault_top,
        ),
        stack(
            "nmi",
            &raw const __stack_nmi_guard,
            &raw const __stack_nmi_top,
        ),
        stack(
            "machine-check",
            &raw const __stack_machine_check_guard,
            &raw const __stack_machine_check_top,
        ),
        stack(
            "page-fault",
            &raw const __stack_page_fault_guard,
            &raw const __stack_page_fault_top,
        ),
    ]
}

/// The stack whose guard page holds `addr`, if any: a fault there is a stack overflow.
pub fn guard_hit(addr: u64) -> Option<Stack> {
    all().into_iter().find(|s| s.guard_contains(addr))
}

/// The stack holding `addr`, if any (the backtrace only follows frame pointers into stacks).
pub fn containing(addr: u64) -> Option<Stack> {
    all().into_iter().find(|s| s.contains(addr))
}
