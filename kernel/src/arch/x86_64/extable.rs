//! Probes that survive a fault: each probing instruction's address is listed with a fixup,
//! and the handlers of #UD, #GP and #PF resume there instead of reporting a fatal fault (the
//! same idea as Linux's exception tables). A byte read times a page-fault round trip and
//! tests that unmapped memory really faults; a KVM hypercall finds out whether this KVM takes
//! hypercalls the usual way before a benchmark relies on it; an MSR write lets a paravirtual
//! MSR the hypervisor refuses cost only its feature.

use janus_hypercall::kvm::hypercall::HypercallInstruction;
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

    .global janus_probe_vmcall
janus_probe_vmcall:
    mov eax, edi
    .global janus_probe_vmcall_access
janus_probe_vmcall_access:
    vmcall
    xor edx, edx
    ret

    .global janus_probe_vmmcall
janus_probe_vmmcall:
    mov eax, edi
    .global janus_probe_vmmcall_access
janus_probe_vmmcall_access:
    vmmcall
    xor edx, edx
    ret

    .global janus_probe_hypercall_fixup
janus_probe_hypercall_fixup:
    mov edx, 1
    ret

    .global janus_probe_wrmsr
janus_probe_wrmsr:
    mov ecx, edi
    mov eax, esi
    mov rdx, rsi
    shr rdx, 32
    .global janus_probe_wrmsr_access
janus_probe_wrmsr_access:
    wrmsr
    xor eax, eax
    ret
    .global janus_probe_wrmsr_fixup
janus_probe_wrmsr_fixup:
    mov eax, 1
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
    fn janus_probe_vmcall(nr: u32) -> ProbeResult;
    static janus_probe_vmcall_access: u8;
    fn janus_probe_vmmcall(nr: u32) -> ProbeResult;
    static janus_probe_vmmcall_access: u8;
    static janus_probe_hypercall_fixup: u8;
    fn janus_probe_wrmsr(msr: u32, value: u64) -> u64;
    static janus_probe_wrmsr_access: u8;
    static janus_probe_wrmsr_fixup: u8;
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

/// The hypercall instruction raised an exception instead of reaching the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypercallFaulted;

/// Makes KVM hypercall `nr`, which must take no arguments (the argument registers hold
/// whatever the probe left there), with `instruction`; KVM's raw result, or that the
/// instruction faulted. Under a KVM that takes hypercalls another way (this machine kind's
/// shadow-paging `kvm_pvm` was read to turn `vmcall` into a fault) that is an answer,
/// not a crash.
pub fn probe_kvm_hypercall(
    instruction: HypercallInstruction,
    nr: u32,
) -> Result<i64, HypercallFaulted> {
    // SAFETY: the kernel runs at CPL 0, where the instruction either exits to the
    // hypervisor, which writes only rax, or faults at the listed address and resumes at the
    // fixup; an argument-less hypercall lets the host write no guest memory.
    let result = unsafe {
        match instruction {
            HypercallInstruction::Vmcall => janus_probe_vmcall(nr),
            HypercallInstruction::Vmmcall => janus_probe_vmmcall(nr),
        }
    };
    if result.faulted != 0 {
        Err(HypercallFaulted)
    } else {
        Ok(result.value as i64)
    }
}

/// The MSR write raised #GP: the MSR is not there, or refused the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsrRefused;

/// Writes `value` to `msr`, or reports that the write faulted. For MSRs a hypervisor
/// advertises but may still refuse (KVM turns steal time down where the host lacks the
/// accounting), so a refusal costs the feature, not the boot.
///
/// # Safety
/// Writing `value` to `msr` must be sound for the kernel when it succeeds (e.g. the memory
/// it hands the hypervisor is the kernel's to give).
pub unsafe fn probe_wrmsr(msr: u32, value: u64) -> Result<(), MsrRefused> {
    // SAFETY: the write itself is the caller's promise; a #GP at it is caught by
    // `fixup_for`.
    let faulted = unsafe { janus_probe_wrmsr(msr, value) };
    if faulted != 0 {
        Err(MsrRefused)
    } else {
        Ok(())
    }
}

/// Where to resume after a #UD, #GP or #PF at `rip`, if `rip` is a probe.
pub fn fixup_for(rip: u64) -> Option<u64> {
    let probes = [
        (
            &raw const janus_probe_read_u8_access,
            &raw const janus_probe_read_u8_fixup,
        ),
        (
            &raw const janus_probe_vmcall_access,
            &raw const janus_probe_hypercall_fixup,
        ),
        (
            &raw const janus_probe_vmmcall_access,
            &raw const janus_probe_hypercall_fixup,
        ),
        (
            &raw const janus_probe_wrmsr_access,
            &raw const janus_probe_wrmsr_fixup,
        ),
    ];
    probes
        .into_iter()
        .find(|&(access, _)| access as u64 == rip)
        .map(|(_, fixup)| fixup as u64)
}
