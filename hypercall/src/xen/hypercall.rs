//! Calling Xen: the hypercall page and the raw calling convention.
//!
//! Xen fills a guest page with one 32-byte stub per hypercall (`call page + 32 * nr`), so the
//! guest need not know whether `vmcall`, `vmmcall` or `syscall` is right. A PVH guest asks
//! for it by writing the page's guest-physical address to the MSR named in CPUID leaf
//! base + 2; a PV guest names the page in its `XEN_ELFNOTE_HYPERCALL_PAGE` note.
//!
//! x86_64 ABI (xen/include/public/arch-x86/xen-x86_64.h): arguments in rdi, rsi, rdx, r10,
//! r8; result in rax, a negative Xen errno on failure. The stubs clobber rcx and r11, and the
//! argument registers are not preserved.

/// Hypercall numbers (`__HYPERVISOR_*`, xen/include/public/xen.h).
pub mod number {
    pub const SET_TRAP_TABLE: u32 = 0;
    pub const MMU_UPDATE: u32 = 1;
    pub const STACK_SWITCH: u32 = 3;
    /// x86_64 `set_callbacks(event, failsafe, syscall)`: not wrapped, because Xen 4.17
    /// ignores its errors (`do_set_callbacks`, xen/arch/x86/pv/callback.c); Janus uses
    /// [`CALLBACK_OP`], which reports them.
    pub const SET_CALLBACKS: u32 = 4;
    pub const MEMORY_OP: u32 = 12;
    pub const MULTICALL: u32 = 13;
    pub const UPDATE_VA_MAPPING: u32 = 14;
    pub const XEN_VERSION: u32 = 17;
    pub const CONSOLE_IO: u32 = 18;
    /// Never `call`ed: its stub is jumped to, see [`crate::xen::traps`].
    pub const IRET: u32 = 23;
    pub const VCPU_OP: u32 = 24;
    pub const MMUEXT_OP: u32 = 26;
    pub const SCHED_OP: u32 = 29;
    pub const CALLBACK_OP: u32 = 30;
    pub const EVENT_CHANNEL_OP: u32 = 32;
    pub const PHYSDEV_OP: u32 = 33;
    pub const HVM_OP: u32 = 34;
    /// One past the last hypercall this kernel knows; the page has 128 slots.
    pub const SLOTS: u32 = 128;
}

/// The hypercall page, filled in by Xen.
#[derive(Clone, Copy, Debug)]
pub struct HypercallPage {
    base: *const u8,
}

// SAFETY: the page is read-only code once Xen has filled it; calling it from any CPU is fine.
unsafe impl Send for HypercallPage {}
// SAFETY: as above.
unsafe impl Sync for HypercallPage {}

impl HypercallPage {
    /// # Safety
    /// `base` must be the virtual address of a mapped, executable 4 KiB page that Xen has
    /// filled with hypercall stubs.
    pub const unsafe fn new(base: *const u8) -> Self {
        Self { base }
    }

    /// Makes hypercall `nr` with five arguments and returns Xen's raw result.
    ///
    /// # Safety
    /// The arguments must be valid for hypercall `nr`: pointers must point at live buffers
    /// of the size the hypercall reads or writes, for the whole call.
    pub unsafe fn call(&self, nr: u32, args: [u64; 5]) -> i64 {
        assert!(
            nr < number::SLOTS,
            "hypercall {nr} is outside the hypercall page"
        );
        let entry = self.base.wrapping_add(nr as usize * 32);
        let result: i64;
        // SAFETY: the page holds Xen's stubs (constructor contract); the registers follow
        // the hypercall ABI above and everything the stub may clobber is declared.
        unsafe {
            core::arch::asm!(
                "call {entry}",
                entry = in(reg) entry,
                inlateout("rdi") args[0] => _,
                inlateout("rsi") args[1] => _,
                inlateout("rdx") args[2] => _,
                inlateout("r10") args[3] => _,
                inlateout("r8") args[4] => _,
                lateout("rax") result,
                lateout("rcx") _,
                lateout("r11") _,
            );
        }
        result
    }
}

/// Asks Xen to fill the page at guest-physical `paddr` with hypercall stubs (PVH/HVM).
///
/// # Safety
/// `msr` must be the MSR from CPUID leaf base + 2 (ebx) of a Xen hypervisor, and `paddr` a
/// page-aligned guest-physical page the kernel owns and maps executable: Xen overwrites it.
pub unsafe fn install_hypercall_page(msr: u32, paddr: u64) {
    // SAFETY: forwarded from the caller; wrmsr of Xen's hypercall MSR only writes the page.
    unsafe {
        core::arch::asm!(
            "wrmsr",
            in("ecx") msr,
            in("eax") paddr as u32,
            in("edx") (paddr >> 32) as u32,
            options(nostack),
        );
    }
}
