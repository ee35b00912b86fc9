//! What the kernel runs on, decided once at boot: hypervisor, console, and how to stop.
//!
//! Only the firmware-table parser is pure logic; the rest runs on the kernel target alone.
pub mod acpi;
#[cfg(target_os = "none")]
pub mod apic;
#[cfg(target_os = "none")]
pub mod exit;
#[cfg(target_os = "none")]
pub mod xen;
#[cfg(target_os = "none")]
pub mod xen_events;

#[cfg(target_os = "none")]
use janus_hypercall::cpuid::CpuidResult;
#[cfg(target_os = "none")]
use janus_hypercall::xen::cpuid::PvCpuid;

/// CPUID as the hypervisor answers it. A Xen PV kernel runs at CPL 3 where a plain `cpuid`
/// is not always intercepted (never under QEMU TCG), so it may show the host's leaves;
/// Xen's forced-emulation prefix gets Xen's.
#[cfg(target_os = "none")]
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    if xen::is_pv() {
        // SAFETY: is_pv() is only set by the Xen PV entry.
        unsafe { PvCpuid::new() }.cpuid(leaf, subleaf)
    } else {
        janus_hypercall::cpuid::cpuid(leaf, subleaf)
    }
}
