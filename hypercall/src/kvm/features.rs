//! KVM's feature leaf (`KVM_CPUID_FEATURES`, base + 1; Linux
//! `arch/x86/include/uapi/asm/kvm_para.h`): `eax` lists the paravirtual features the host
//! offers, `edx` performance hints.

use core::fmt;

use crate::cpuid::{CpuidResult, Detection, Hypervisor};
use crate::flag_names::write_flag_names;

/// `KVM_HINTS_REALTIME` in `edx`: vCPUs are never preempted for long, so spinning beats
/// halting.
pub const KVM_HINTS_REALTIME: u32 = 1 << 0;

/// The `KVM_FEATURE_*` bits of the feature leaf's `eax`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KvmFeatures(u32);

impl KvmFeatures {
    /// `KVM_FEATURE_CLOCKSOURCE`: kvmclock through the old MSRs 0x11/0x12.
    pub const CLOCKSOURCE: Self = Self(1 << 0);
    /// `KVM_FEATURE_NOP_IO_DELAY`: port 0x80 delays are unnecessary.
    pub const NOP_IO_DELAY: Self = Self(1 << 1);
    /// `KVM_FEATURE_MMU_OP`: the deprecated `KVM_HC_MMU_OP`.
    pub const MMU_OP: Self = Self(1 << 2);
    /// `KVM_FEATURE_CLOCKSOURCE2`: kvmclock through `MSR_KVM_SYSTEM_TIME_NEW`.
    pub const CLOCKSOURCE2: Self = Self(1 << 3);
    /// `KVM_FEATURE_ASYNC_PF`: asynchronous page faults.
    pub const ASYNC_PF: Self = Self(1 << 4);
    /// `KVM_FEATURE_STEAL_TIME`: `MSR_KVM_STEAL_TIME`.
    pub const STEAL_TIME: Self = Self(1 << 5);
    /// `KVM_FEATURE_PV_EOI`: paravirtual end of interrupt.
    pub const PV_EOI: Self = Self(1 << 6);
    /// `KVM_FEATURE_PV_UNHALT`: `KVM_HC_KICK_CPU` wakes a halted vCPU.
    pub const PV_UNHALT: Self = Self(1 << 7);
    /// `KVM_FEATURE_PV_TLB_FLUSH`: flush requests through the steal-time page.
    pub const PV_TLB_FLUSH: Self = Self(1 << 9);
    /// `KVM_FEATURE_ASYNC_PF_VMEXIT`.
    pub const ASYNC_PF_VMEXIT: Self = Self(1 << 10);
    /// `KVM_FEATURE_PV_SEND_IPI`: `KVM_HC_SEND_IPI`.
    pub const PV_SEND_IPI: Self = Self(1 << 11);
    /// `KVM_FEATURE_POLL_CONTROL`: `MSR_KVM_POLL_CONTROL`.
    pub const POLL_CONTROL: Self = Self(1 << 12);
    /// `KVM_FEATURE_PV_SCHED_YIELD`: `KVM_HC_SCHED_YIELD`.
    pub const PV_SCHED_YIELD: Self = Self(1 << 13);
    /// `KVM_FEATURE_ASYNC_PF_INT`: "page ready" events as interrupts.
    pub const ASYNC_PF_INT: Self = Self(1 << 14);
    /// `KVM_FEATURE_MSI_EXT_DEST_ID`: 15-bit MSI destination ids.
    pub const MSI_EXT_DEST_ID: Self = Self(1 << 15);
    /// `KVM_FEATURE_HC_MAP_GPA_RANGE`: `KVM_HC_MAP_GPA_RANGE`.
    pub const HC_MAP_GPA_RANGE: Self = Self(1 << 16);
    /// `KVM_FEATURE_MIGRATION_CONTROL`: `MSR_KVM_MIGRATION_CONTROL`.
    pub const MIGRATION_CONTROL: Self = Self(1 << 17);
    /// `KVM_FEATURE_CLOCKSOURCE_STABLE_BIT` (bit 24): kvmclock may set
    /// `PVCLOCK_TSC_STABLE_BIT`, and then time is monotonic across vCPUs.
    pub const CLOCKSOURCE_STABLE: Self = Self(1 << 24);

    const NAMES: [(Self, &'static str); 18] = [
        (Self::CLOCKSOURCE, "clocksource"),
        (Self::NOP_IO_DELAY, "nop_io_delay"),
        (Self::MMU_OP, "mmu_op"),
        (Self::CLOCKSOURCE2, "clocksource2"),
        (Self::ASYNC_PF, "async_pf"),
        (Self::STEAL_TIME, "steal_time"),
        (Self::PV_EOI, "pv_eoi"),
        (Self::PV_UNHALT, "pv_unhalt"),
        (Self::PV_TLB_FLUSH, "pv_tlb_flush"),
        (Self::ASYNC_PF_VMEXIT, "async_pf_vmexit"),
        (Self::PV_SEND_IPI, "pv_send_ipi"),
        (Self::POLL_CONTROL, "poll_control"),
        (Self::PV_SCHED_YIELD, "pv_sched_yield"),
        (Self::ASYNC_PF_INT, "async_pf_int"),
        (Self::MSI_EXT_DEST_ID, "msi_ext_dest_id"),
        (Self::HC_MAP_GPA_RANGE, "hc_map_gpa_range"),
        (Self::MIGRATION_CONTROL, "migration_control"),
        (Self::CLOCKSOURCE_STABLE, "clocksource_stable"),
    ];

    pub const fn empty() -> Self {
        Self(0)
    }

    /// All bits as the host set them, named or not.
    pub const fn from_bits_retain(bits: u32) -> Self {
        Self(bits)
    }

    pub const fn bits(self) -> u32 {
        self.0
    }

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl core::ops::BitOr for KvmFeatures {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        self.union(other)
    }
}

/// The value of the `kvm_features=` key of the `@janus env` line: lower-case names joined
/// by `,` without spaces (`clocksource,clocksource2,steal_time,pv_eoi`), bits Linux does not
/// name as `bit<N>`, nothing as `none`.
impl fmt::Display for KvmFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_flag_names(f, self.0, &Self::NAMES.map(|(flag, name)| (flag.0, name)))
    }
}

impl fmt::Debug for KvmFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KvmFeatures({self})")
    }
}

/// The decoded feature leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvmFeatureLeaf {
    pub features: KvmFeatures,
    /// `KVM_HINTS_*` bits of `edx`.
    pub hints: u32,
}

/// Reads KVM's feature leaf (base + 1), if `detection` found KVM and its range has the
/// leaf.
pub fn read_features(
    detection: &Detection,
    mut cpuid: impl FnMut(u32, u32) -> CpuidResult,
) -> Option<KvmFeatureLeaf> {
    if detection.hypervisor != Hypervisor::Kvm {
        return None;
    }
    let leaf = detection.base_leaf.checked_add(1)?;
    if leaf > detection.max_leaf {
        return None;
    }
    let r = cpuid(leaf, 0);
    Some(KvmFeatureLeaf {
        features: KvmFeatures(r.eax),
        hints: r.edx,
    })
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    /// CPUID 0x4000_0001 as read on this project's development host (a KVM guest on an
    /// Intel CPU, "Hypervisor detected: KVM").
    const RECORDED_EAX: u32 = 0x0100_7efb;

    fn kvm(max_leaf: u32) -> Detection {
        Detection {
            hypervisor: Hypervisor::Kvm,
            base_leaf: 0x4000_0000,
            max_leaf,
        }
    }

    fn recorded_cpu(leaf: u32, _subleaf: u32) -> CpuidResult {
        match leaf {
            0x4000_0001 => CpuidResult {
                eax: RECORDED_EAX,
                ..CpuidResult::default()
            },
            _ => CpuidResult::default(),
        }
    }

    #[test]
    fn the_recorded_leaf_decodes_and_prints_for_the_env_line() {
        let leaf = read_features(&kvm(0x4000_0001), recorded_cpu).unwrap();
        let f = leaf.features;
        assert!(f.contains(KvmFeatures::CLOCKSOURCE2 | KvmFeatures::CLOCKSOURCE_STABLE));
        assert!(f.contains(KvmFeatures::STEAL_TIME));
        assert!(!f.contains(KvmFeatures::MMU_OP));
        assert!(!f.contains(KvmFeatures::MSI_EXT_DEST_ID));
        assert_eq!(leaf.hints, 0);
        assert_eq!(
            f.to_string(),
            "clocksource,nop_io_delay,clocksource2,async_pf,steal_time,pv_eoi,pv_unhalt,\
             pv_tlb_flush,async_pf_vmexit,pv_send_ipi,poll_control,pv_sched_yield,\
             async_pf_int,clocksource_stable"
        );
    }

    #[test]
    fn bit_numbers_match_kvm_para_h() {
        let expected = [
            (KvmFeatures::CLOCKSOURCE, 0),
            (KvmFeatures::NOP_IO_DELAY, 1),
            (KvmFeatures::MMU_OP, 2),
            (KvmFeatures::CLOCKSOURCE2, 3),
            (KvmFeatures::ASYNC_PF, 4),
            (KvmFeatures::STEAL_TIME, 5),
            (KvmFeatures::PV_EOI, 6),
            (KvmFeatures::PV_UNHALT, 7),
            (KvmFeatures::PV_TLB_FLUSH, 9),
            (KvmFeatures::ASYNC_PF_VMEXIT, 10),
            (KvmFeatures::PV_SEND_IPI, 11),
            (KvmFeatures::POLL_CONTROL, 12),
            (KvmFeatures::PV_SCHED_YIELD, 13),
            (KvmFeatures::ASYNC_PF_INT, 14),
            (KvmFeatures::MSI_EXT_DEST_ID, 15),
            (KvmFeatures::HC_MAP_GPA_RANGE, 16),
            (KvmFeatures::MIGRATION_CONTROL, 17),
            (KvmFeatures::CLOCKSOURCE_STABLE, 24),
        ];
        for (flag, bit) in expected {
            assert_eq!(flag.bits(), 1 << bit, "{flag:?}");
        }
    }

    #[test]
    fn display_is_a_valid_env_value_for_any_bits() {
        assert_eq!(KvmFeatures::empty().to_string(), "none");
        assert_eq!(
            KvmFeatures::from_bits_retain(1 << 8 | 1 << 31 | 1).to_string(),
            "clocksource,bit8,bit31"
        );
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..1000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let shown = KvmFeatures::from_bits_retain(state as u32).to_string();
            assert!(!shown.is_empty());
            assert!(
                shown.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'_'
                    || b == b',')
            );
        }
    }

    #[test]
    fn no_leaf_without_kvm_or_beyond_max_leaf() {
        assert_eq!(read_features(&kvm(0x4000_0000), recorded_cpu), None);
        let xen = Detection {
            hypervisor: Hypervisor::Xen,
            ..kvm(0x4000_0005)
        };
        assert_eq!(read_features(&xen, recorded_cpu), None);
    }

    #[test]
    fn hints_come_from_edx() {
        let cpu = |_, _| CpuidResult {
            eax: 0,
            ebx: 0,
            ecx: 0,
            edx: KVM_HINTS_REALTIME,
        };
        assert_eq!(
            read_features(&kvm(0x4000_0001), cpu).unwrap().hints,
            KVM_HINTS_REALTIME
        );
    }
}
