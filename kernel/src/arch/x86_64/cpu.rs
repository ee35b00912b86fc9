//! CPU features the kernel relies on or turns on, and the timestamp counter.

use core::arch::x86_64::{__cpuid_count, _rdtsc};

use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};

#[derive(Clone, Copy, Debug)]
pub struct Features {
    pub nx: bool,
    pub smep: bool,
    pub smap: bool,
    pub umip: bool,
}

pub fn features() -> Features {
    let max_extended = __cpuid_count(0x8000_0000, 0).eax;
    let max_basic = __cpuid_count(0, 0).eax;
    let ext1 = (max_extended >= 0x8000_0001).then(|| __cpuid_count(0x8000_0001, 0));
    let leaf7 = (max_basic >= 7).then(|| __cpuid_count(7, 0));
    Features {
        nx: ext1.is_some_and(|r| r.edx & (1 << 20) != 0),
        smep: leaf7.is_some_and(|r| r.ebx & (1 << 7) != 0),
        smap: leaf7.is_some_and(|r| r.ebx & (1 << 20) != 0),
        umip: leaf7.is_some_and(|r| r.ecx & (1 << 2) != 0),
    }
}

/// Sets EFER.NXE so NO_EXECUTE in a page-table entry is honoured rather than a reserved bit.
/// Must happen before tables using NO_EXECUTE are loaded.
pub fn enable_no_execute() {
    // SAFETY: NXE only changes how the NX bit is interpreted; the boot tables do not set it.
    unsafe { Efer::update(|f| f.insert(EferFlags::NO_EXECUTE_ENABLE)) }
}

/// Write protection in ring 0 (so read-only kernel mappings hold against the kernel itself),
/// plus SMEP, SMAP and UMIP where the CPU has them. The kernel has no user mappings, so
/// SMEP/SMAP only turn a stray user-page access into a fault.
pub fn enable_protection(features: &Features) {
    // SAFETY: WP only makes read-only pages read-only for ring 0 too; the kernel never writes
    // through a read-only mapping on purpose.
    unsafe { Cr0::update(|f| f.insert(Cr0Flags::WRITE_PROTECT)) }
    let mut cr4 = Cr4Flags::empty();
    cr4.set(
        Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION,
        features.smep,
    );
    cr4.set(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION, features.smap);
    cr4.set(Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION, features.umip);
    // SAFETY: each bit is set only when CPUID reports it; none affects kernel-only mappings.
    unsafe { Cr4::update(|f| f.insert(cr4)) }
}

/// The TSC, ordered against surrounding instructions by `lfence` on both sides so a timed
/// region neither starts early nor ends late.
#[inline(always)]
pub fn rdtsc_ordered() -> u64 {
    // SAFETY: lfence has no effect but ordering.
    unsafe { core::arch::x86_64::_mm_lfence() };
    // SAFETY: rdtsc only reads the counter (CR4.TSD is never set).
    let tsc = unsafe { _rdtsc() };
    // SAFETY: as above.
    unsafe { core::arch::x86_64::_mm_lfence() };
    tsc
}
