//! What the kernel runs on, decided once at boot: hypervisor, console, and how to stop.
pub mod exit;
pub mod xen;
pub mod xen_events;

use janus_hypercall::cpuid::CpuidResult;
use janus_hypercall::xen::cpuid::PvCpuid;

/// CPUID as the hypervisor answers it. A Xen PV kernel runs at CPL 3 where a plain `cpuid`
/// is not always intercepted (never under QEMU TCG), so it may show the host's leaves;
/// Xen's forced-emulation prefix gets Xen's.
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    if xen::is_pv() {
        // SAFETY: is_pv() is only set by the Xen PV entry.
        unsafe { PvCpuid::new() }.cpuid(leaf, subleaf)
    } else {
        janus_hypercall::cpuid::cpuid(leaf, subleaf)
    }
}
