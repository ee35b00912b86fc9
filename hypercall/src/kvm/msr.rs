//! KVM's paravirtual MSRs (Linux `arch/x86/include/uapi/asm/kvm_para.h`,
//! `Documentation/virt/kvm/x86/msr.rst`) and the structures they point at.
//!
//! The guest writes the guest-physical address of a structure (plus an enable bit for most)
//! to an MSR, and KVM keeps that structure up to date. The value builders here check the
//! alignment each MSR requires; writing the MSR is the kernel's job.

use core::fmt;
use core::mem::{offset_of, size_of};

use super::features::KvmFeatures;
use crate::xen::shared_info::VcpuTimeInfo;

/// `MSR_KVM_WALL_CLOCK` (deprecated; with `KVM_FEATURE_CLOCKSOURCE`).
pub const MSR_KVM_WALL_CLOCK: u32 = 0x11;
/// `MSR_KVM_SYSTEM_TIME` (deprecated; with `KVM_FEATURE_CLOCKSOURCE`).
pub const MSR_KVM_SYSTEM_TIME: u32 = 0x12;
/// `MSR_KVM_WALL_CLOCK_NEW`: address of a [`PvclockWallClock`], filled once per write.
pub const MSR_KVM_WALL_CLOCK_NEW: u32 = 0x4b56_4d00;
/// `MSR_KVM_SYSTEM_TIME_NEW`: address of this vCPU's [`PvclockVcpuTimeInfo`] | enable.
pub const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
/// `MSR_KVM_ASYNC_PF_EN`.
pub const MSR_KVM_ASYNC_PF_EN: u32 = 0x4b56_4d02;
/// `MSR_KVM_STEAL_TIME`: address of this vCPU's [`KvmStealTime`] | enable.
pub const MSR_KVM_STEAL_TIME: u32 = 0x4b56_4d03;
/// `MSR_KVM_PV_EOI_EN`: address of a 4-byte EOI flag | enable.
pub const MSR_KVM_PV_EOI_EN: u32 = 0x4b56_4d04;
/// `MSR_KVM_POLL_CONTROL`: bit 0 enables host-side halt polling.
pub const MSR_KVM_POLL_CONTROL: u32 = 0x4b56_4d05;
/// `MSR_KVM_ASYNC_PF_INT`: vector for "page ready" events.
pub const MSR_KVM_ASYNC_PF_INT: u32 = 0x4b56_4d06;
/// `MSR_KVM_ASYNC_PF_ACK`.
pub const MSR_KVM_ASYNC_PF_ACK: u32 = 0x4b56_4d07;
/// `MSR_KVM_MIGRATION_CONTROL`.
pub const MSR_KVM_MIGRATION_CONTROL: u32 = 0x4b56_4d08;

/// `KVM_MSR_ENABLED`: bit 0 of an address MSR turns the feature on.
pub const KVM_MSR_ENABLED: u64 = 1;

/// `KVM_VCPU_PREEMPTED` in [`KvmStealTime::preempted`].
pub const KVM_VCPU_PREEMPTED: u8 = 1 << 0;
/// `KVM_VCPU_FLUSH_TLB` in [`KvmStealTime::preempted`].
pub const KVM_VCPU_FLUSH_TLB: u8 = 1 << 1;

/// `struct pvclock_vcpu_time_info` (Linux `arch/x86/include/asm/pvclock-abi.h`): the same
/// 32-byte layout as Xen's `vcpu_time_info` ("Both Xen and KVM are using this"), so the
/// same type and reader ([`crate::xen::shared_info::read_time_info`]) serve kvmclock.
pub type PvclockVcpuTimeInfo = VcpuTimeInfo;

/// `struct pvclock_wall_clock` (Linux `arch/x86/include/asm/pvclock-abi.h`, packed),
/// 12 bytes: the wallclock at KVM system time zero, under the same version protocol as the
/// time record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PvclockWallClock {
    pub version: u32,
    pub sec: u32,
    pub nsec: u32,
}

const _: () = assert!(size_of::<PvclockWallClock>() == 12);
const _: () = assert!(offset_of!(PvclockWallClock, version) == 0);
const _: () = assert!(offset_of!(PvclockWallClock, sec) == 4);
const _: () = assert!(offset_of!(PvclockWallClock, nsec) == 8);

/// `struct kvm_steal_time` (Linux `arch/x86/include/uapi/asm/kvm_para.h`), 64 bytes.
/// `MSR_KVM_STEAL_TIME` requires 64-byte alignment, which the type carries. The guest must
/// zero it before registering.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmStealTime {
    /// Nanoseconds this vCPU was runnable but not running.
    pub steal: u64,
    /// Odd while KVM updates the record.
    pub version: u32,
    pub flags: u32,
    /// `KVM_VCPU_PREEMPTED` / `KVM_VCPU_FLUSH_TLB`.
    pub preempted: u8,
    pub u8_pad: [u8; 3],
    pub pad: [u32; 11],
}

const _: () = assert!(size_of::<KvmStealTime>() == 64);
const _: () = assert!(offset_of!(KvmStealTime, steal) == 0);
const _: () = assert!(offset_of!(KvmStealTime, version) == 8);
const _: () = assert!(offset_of!(KvmStealTime, flags) == 12);
const _: () = assert!(offset_of!(KvmStealTime, preempted) == 16);
const _: () = assert!(offset_of!(KvmStealTime, pad) == 20);

/// `struct kvm_clock_pairing` (Linux `arch/x86/include/uapi/asm/kvm_para.h`), 64 bytes,
/// written by `KVM_HC_CLOCK_PAIRING`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmClockPairing {
    pub sec: i64,
    pub nsec: i64,
    /// The guest TSC at which `sec`/`nsec` held.
    pub tsc: u64,
    pub flags: u32,
    pub pad: [u32; 9],
}

const _: () = assert!(size_of::<KvmClockPairing>() == 64);
const _: () = assert!(offset_of!(KvmClockPairing, nsec) == 8);
const _: () = assert!(offset_of!(KvmClockPairing, tsc) == 16);
const _: () = assert!(offset_of!(KvmClockPairing, flags) == 24);

/// An address an MSR cannot take: not aligned as `msr.rst` requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MisalignedMsrAddress {
    pub msr: u32,
    pub addr: u64,
    pub align: u64,
}

impl fmt::Display for MisalignedMsrAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "address {:#x} for KVM MSR {:#x} is not {}-byte aligned",
            self.addr, self.msr, self.align
        )
    }
}

fn aligned(msr: u32, addr: u64, align: u64) -> Result<u64, MisalignedMsrAddress> {
    if addr.is_multiple_of(align) {
        Ok(addr)
    } else {
        Err(MisalignedMsrAddress { msr, addr, align })
    }
}

/// The kvmclock MSRs a host offers, as `msr.rst` says to pick them:
/// `(system_time, wall_clock)`, the new pair with `CLOCKSOURCE2`, the deprecated pair
/// with only `CLOCKSOURCE`, `None` without kvmclock.
pub fn kvmclock_msrs(features: KvmFeatures) -> Option<(u32, u32)> {
    if features.contains(KvmFeatures::CLOCKSOURCE2) {
        Some((MSR_KVM_SYSTEM_TIME_NEW, MSR_KVM_WALL_CLOCK_NEW))
    } else if features.contains(KvmFeatures::CLOCKSOURCE) {
        Some((MSR_KVM_SYSTEM_TIME, MSR_KVM_WALL_CLOCK))
    } else {
        None
    }
}

/// The value enabling kvmclock with the [`PvclockVcpuTimeInfo`] at guest-physical `paddr`
/// (4-byte aligned).
pub fn system_time_msr_value(paddr: u64) -> Result<u64, MisalignedMsrAddress> {
    Ok(aligned(MSR_KVM_SYSTEM_TIME_NEW, paddr, 4)? | KVM_MSR_ENABLED)
}

/// The value asking KVM to fill the [`PvclockWallClock`] at guest-physical `paddr` (4-byte
/// aligned; no enable bit: KVM writes once per MSR write).
pub fn wall_clock_msr_value(paddr: u64) -> Result<u64, MisalignedMsrAddress> {
    aligned(MSR_KVM_WALL_CLOCK_NEW, paddr, 4)
}

/// The value enabling steal-time accounting into the [`KvmStealTime`] at guest-physical
/// `paddr` (64-byte aligned).
pub fn steal_time_msr_value(paddr: u64) -> Result<u64, MisalignedMsrAddress> {
    Ok(aligned(MSR_KVM_STEAL_TIME, paddr, 64)? | KVM_MSR_ENABLED)
}

/// The value enabling paravirtual EOI with the zeroed 4-byte flag at guest-physical
/// `paddr` (4-byte aligned; bit 1 stays reserved).
pub fn pv_eoi_msr_value(paddr: u64) -> Result<u64, MisalignedMsrAddress> {
    Ok(aligned(MSR_KVM_PV_EOI_EN, paddr, 4)? | KVM_MSR_ENABLED)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    #[test]
    fn msr_numbers_match_kvm_para_h() {
        assert_eq!((MSR_KVM_WALL_CLOCK, MSR_KVM_SYSTEM_TIME), (0x11, 0x12));
        let new = [
            MSR_KVM_WALL_CLOCK_NEW,
            MSR_KVM_SYSTEM_TIME_NEW,
            MSR_KVM_ASYNC_PF_EN,
            MSR_KVM_STEAL_TIME,
            MSR_KVM_PV_EOI_EN,
            MSR_KVM_POLL_CONTROL,
            MSR_KVM_ASYNC_PF_INT,
            MSR_KVM_ASYNC_PF_ACK,
            MSR_KVM_MIGRATION_CONTROL,
        ];
        for (i, msr) in new.into_iter().enumerate() {
            // "KVM" in ASCII, then the index.
            assert_eq!(msr, 0x4b56_4d00 + i as u32);
        }
    }

    #[test]
    fn kvmclock_prefers_the_new_msrs() {
        let both = KvmFeatures::CLOCKSOURCE | KvmFeatures::CLOCKSOURCE2;
        assert_eq!(kvmclock_msrs(both), Some((0x4b56_4d01, 0x4b56_4d00)));
        assert_eq!(kvmclock_msrs(KvmFeatures::CLOCKSOURCE), Some((0x12, 0x11)));
        assert_eq!(kvmclock_msrs(KvmFeatures::STEAL_TIME), None);
    }

    #[test]
    fn msr_values_carry_the_enable_bit_and_check_alignment() {
        assert_eq!(system_time_msr_value(0x10_0040), Ok(0x10_0041));
        assert_eq!(wall_clock_msr_value(0x10_0080), Ok(0x10_0080));
        assert_eq!(steal_time_msr_value(0x20_0000), Ok(0x20_0001));
        assert_eq!(pv_eoi_msr_value(0x20_0044), Ok(0x20_0045));
        let err = steal_time_msr_value(0x20_0020).unwrap_err();
        assert_eq!(
            err,
            MisalignedMsrAddress {
                msr: MSR_KVM_STEAL_TIME,
                addr: 0x20_0020,
                align: 64
            }
        );
        assert_eq!(
            err.to_string(),
            "address 0x200020 for KVM MSR 0x4b564d03 is not 64-byte aligned"
        );
        assert!(system_time_msr_value(0x10_0042).is_err());
    }

    #[test]
    fn steal_time_is_64_byte_aligned_by_type() {
        assert_eq!(core::mem::align_of::<KvmStealTime>(), 64);
    }
}
