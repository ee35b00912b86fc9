//! Memory probes that survive a page fault: the faulting instruction's address is listed, and
//! the page-fault handler resumes at the probe's fixup instead of reporting a fatal fault
//! (the same idea as Linux's exception tables). Used to time a page-fault round trip and to
//! test that unmapped memory really faults.

use x86_64::VirtAddr;

core::arch::global_asm!(
    r#"
    .section .text.probe, "ax"
    .global janus_probe_read_u8
janus_probe_read_u8:
    xor eax, eax
    xor edx, edx
    .global janus_probe_read_u8_access
janus_probe_read_u8_access:
    mov al, byte ptr [rdi]
    ret
    .global janus_probe_read_u8_fixup
janus_probe_read_u8_fixup:
    mov edx, 1
    ret
    "#
);

/// Returned in rax:rdx by the SysV ABI.
#[repr(C)]
struct ProbeResult {
    value: u64,
    faulted: u64,
}

unsafe extern "C" {
    fn janus_probe_read_u8(addr: u64) -> ProbeResult;
    static janus_probe_read_u8_access: u8;
    static janus_probe_read_u8_fixup: u8;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFaulted;

/// Reads one byte, or reports that reading it page-faulted.
///
/// # Safety
/// If `addr` is mapped, reading it must have no side effects (not MMIO with read effects).
pub unsafe fn probe_read_u8(addr: VirtAddr) -> Result<u8, PageFaulted> {
    // SAFETY: the probe touches only `addr` (caller contract) and a fault there is caught
    // by `fixup_for` below.
    let result = unsafe { janus_probe_read_u8(addr.as_u64()) };
    if result.faulted != 0 {
        Err(PageFaulted)
    } else {
        Ok(result.value as u8)
    }
}

/// Where to resume after a page fault at `rip`, if `rip` is a probe.
pub fn fixup_for(rip: u64) -> Option<u64> {
    let access = &raw const janus_probe_read_u8_access as u64;
    let fixup = &raw const janus_probe_read_u8_fixup as u64;
    (rip == access).then_some(fixup)
}
