//! Xen's CPUID leaves (xen/include/public/arch-x86/cpuid.h), relative to the base that
//! [`crate::cpuid::detect_with`] found (0x4000_0000, or 0x4000_0100 behind Viridian):
//!
//! | leaf | content |
//! |---|---|
//! | base + 1 | version: `eax` = major << 16 \| minor |
//! | base + 2 | hypercall pages (`eax`), hypercall-page MSR (`ebx`), features (`ecx`) |
//! | base + 3 | TSC mode and frequencies (sub-leaves 0 and 2) |
//! | base + 4 | HVM features (`XEN_HVM_CPUID_*`), vCPU id, domain id |
//! | base + 5 | PV: machine address width |
//!
//! The decoders take the CPUID instruction as a parameter, as `detect_with` does: the plain
//! [`crate::cpuid::cpuid`] for PVH/HVM, [`PvCpuid::cpuid`] for a PV guest (whose plain
//! CPUID is not intercepted, see [`pv_cpuid`]). Leaves beyond the hypervisor's `max_leaf`
//! decode to `None`.

use core::fmt;

use crate::cpuid::{CpuidResult, Detection, Hypervisor, detect_with};
use crate::flag_names::write_flag_names;

use super::ops::Version;

/// `XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD` in base + 2 `ecx`.
pub const XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD: u32 = 1 << 0;
/// `XEN_CPUID_MACHINE_ADDRESS_WIDTH_MASK` in base + 5 `ebx`.
pub const XEN_CPUID_MACHINE_ADDRESS_WIDTH_MASK: u32 = 0xff;

/// The Xen leaf range of a detected Xen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XenLeaves {
    base: u32,
    max: u32,
}

/// Base + 2: how to install the hypercall page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypercallLeaf {
    /// Number of hypercall pages; the header guarantees at least one, so zero means a
    /// broken host.
    pub pages: u32,
    /// The MSR to write the hypercall page's guest-physical address to (PVH/HVM).
    pub msr: u32,
    /// The host supports `MMU_PT_UPDATE_PRESERVE_AD` for this guest.
    pub mmu_pt_update_preserve_ad: bool,
}

/// Base + 3, sub-leaves 0 and 2: the guest's TSC as Xen presents it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TscLeaf {
    /// Sub-leaf 0 `eax` bit 0: Xen emulates `rdtsc`.
    pub emulated: bool,
    /// Sub-leaf 0 `eax` bit 1: the host TSC is known to be reliable.
    pub host_tsc_reliable: bool,
    /// Sub-leaf 0 `eax` bit 2: `rdtscp` is available.
    pub rdtscp: bool,
    /// Sub-leaf 0 `ebx`: 0 default, 1 always emulate, 2 never emulate, 3 native with
    /// TSC_AUX.
    pub tsc_mode: u32,
    /// Sub-leaf 0 `ecx`: guest TSC frequency in kHz (0 if Xen does not say).
    pub guest_khz: u32,
    /// Sub-leaf 0 `edx`: how many times the guest was migrated.
    pub incarnation: u32,
    /// Sub-leaf 2 `eax`: host TSC frequency in kHz.
    pub host_khz: u32,
}

/// `XEN_HVM_CPUID_*` bits of base + 4 `eax`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HvmFeatures(u32);

impl HvmFeatures {
    /// `XEN_HVM_CPUID_APIC_ACCESS_VIRT`: virtualized APIC registers.
    pub const APIC_ACCESS_VIRT: Self = Self(1 << 0);
    /// `XEN_HVM_CPUID_X2APIC_VIRT`: virtualized x2APIC accesses.
    pub const X2APIC_VIRT: Self = Self(1 << 1);
    /// `XEN_HVM_CPUID_IOMMU_MAPPINGS`: memory mapped from other domains has valid IOMMU
    /// entries.
    pub const IOMMU_MAPPINGS: Self = Self(1 << 2);
    /// `XEN_HVM_CPUID_VCPU_ID_PRESENT`: `ebx` holds the vCPU id.
    pub const VCPU_ID_PRESENT: Self = Self(1 << 3);
    /// `XEN_HVM_CPUID_DOMID_PRESENT`: `ecx` holds the domain id.
    pub const DOMID_PRESENT: Self = Self(1 << 4);
    /// `XEN_HVM_CPUID_EXT_DEST_ID`: 15-bit destination ids in IO-APIC RTEs and MSIs.
    pub const EXT_DEST_ID: Self = Self(1 << 5);
    /// `XEN_HVM_CPUID_UPCALL_VECTOR`: per-vCPU upcall vectors work with physical IRQs.
    pub const UPCALL_VECTOR: Self = Self(1 << 6);

    const NAMES: [(Self, &'static str); 7] = [
        (Self::APIC_ACCESS_VIRT, "apic_access_virt"),
        (Self::X2APIC_VIRT, "x2apic_virt"),
        (Self::IOMMU_MAPPINGS, "iommu_mappings"),
        (Self::VCPU_ID_PRESENT, "vcpu_id_present"),
        (Self::DOMID_PRESENT, "domid_present"),
        (Self::EXT_DEST_ID, "ext_dest_id"),
        (Self::UPCALL_VECTOR, "upcall_vector"),
    ];

    pub const fn from_bits_retain(bits: u32) -> Self {
        Self(bits)
    }

    pub const fn bits(self) -> u32 {
        self.0
    }

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Lower-case names joined by `,` (no spaces, for `key=value` lines); bits the header
/// does not name print as `bit<N>`; the empty set prints as `none`.
impl fmt::Display for HvmFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_flag_names(f, self.0, &Self::NAMES.map(|(flag, name)| (flag.0, name)))
    }
}

impl fmt::Debug for HvmFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HvmFeatures({self})")
    }
}

/// Base + 4: what an HVM/PVH guest may rely on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HvmLeaf {
    pub features: HvmFeatures,
    /// This vCPU's id, when [`HvmFeatures::VCPU_ID_PRESENT`].
    pub vcpu_id: Option<u32>,
    /// This domain's id, when [`HvmFeatures::DOMID_PRESENT`]. Domain ids are 16-bit
    /// (`domid_t`); a wider value is dropped as nonsense.
    pub domid: Option<u16>,
}

/// Base + 5: PV-specific parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PvLeaf {
    /// Sub-leaf 0 `eax`: the highest sub-leaf.
    pub max_subleaf: u32,
    /// Machine address width in bits, counting memory hotplug.
    pub machine_address_width: u8,
}

impl XenLeaves {
    /// Xen's leaves, if `detection` found Xen.
    pub fn new(detection: &Detection) -> Option<Self> {
        (detection.hypervisor == Hypervisor::Xen).then_some(Self {
            base: detection.base_leaf,
            max: detection.max_leaf,
        })
    }

    pub fn base(&self) -> u32 {
        self.base
    }

    fn leaf(
        &self,
        offset: u32,
        subleaf: u32,
        cpuid: &mut impl FnMut(u32, u32) -> CpuidResult,
    ) -> Option<CpuidResult> {
        let leaf = self.base.checked_add(offset)?;
        (leaf <= self.max).then(|| cpuid(leaf, subleaf))
    }

    /// Base + 1: Xen's version.
    pub fn version(&self, mut cpuid: impl FnMut(u32, u32) -> CpuidResult) -> Option<Version> {
        let r = self.leaf(1, 0, &mut cpuid)?;
        Some(Version::from_raw(u64::from(r.eax)))
    }

    /// Base + 2: the hypercall page's MSR.
    pub fn hypercall(
        &self,
        mut cpuid: impl FnMut(u32, u32) -> CpuidResult,
    ) -> Option<HypercallLeaf> {
        let r = self.leaf(2, 0, &mut cpuid)?;
        Some(HypercallLeaf {
            pages: r.eax,
            msr: r.ebx,
            mmu_pt_update_preserve_ad: r.ecx & XEN_CPUID_FEAT1_MMU_PT_UPDATE_PRESERVE_AD != 0,
        })
    }

    /// Base + 3: TSC mode and frequencies.
    pub fn tsc(&self, mut cpuid: impl FnMut(u32, u32) -> CpuidResult) -> Option<TscLeaf> {
        let r0 = self.leaf(3, 0, &mut cpuid)?;
        let r2 = self.leaf(3, 2, &mut cpuid)?;
        Some(TscLeaf {
            emulated: r0.eax & (1 << 0) != 0,
            host_tsc_reliable: r0.eax & (1 << 1) != 0,
            rdtscp: r0.eax & (1 << 2) != 0,
            tsc_mode: r0.ebx,
            guest_khz: r0.ecx,
            incarnation: r0.edx,
            host_khz: r2.eax,
        })
    }

    /// Base + 4: HVM features, vCPU id and domain id.
    pub fn hvm(&self, mut cpuid: impl FnMut(u32, u32) -> CpuidResult) -> Option<HvmLeaf> {
        let r = self.leaf(4, 0, &mut cpuid)?;
        let features = HvmFeatures(r.eax);
        Some(HvmLeaf {
            features,
            vcpu_id: features
                .contains(HvmFeatures::VCPU_ID_PRESENT)
                .then_some(r.ebx),
            domid: features
                .contains(HvmFeatures::DOMID_PRESENT)
                .then(|| u16::try_from(r.ecx).ok())
                .flatten(),
        })
    }

    /// Base + 5: PV parameters.
    pub fn pv(&self, mut cpuid: impl FnMut(u32, u32) -> CpuidResult) -> Option<PvLeaf> {
        let r = self.leaf(5, 0, &mut cpuid)?;
        Some(PvLeaf {
            max_subleaf: r.eax,
            machine_address_width: (r.ebx & XEN_CPUID_MACHINE_ADDRESS_WIDTH_MASK) as u8,
        })
    }
}

/// `XEN_EMULATE_PREFIX` (xen/include/public/arch-x86/xen.h): `ud2a` followed by "xen".
/// Xen's #UD handler recognises it in a PV guest and emulates the next instruction
/// (`XEN_CPUID` = prefix + `cpuid`) with the guest's policy instead of the raw CPU's.
pub const XEN_EMULATE_PREFIX: [u8; 5] = [0x0f, 0x0b, 0x78, 0x65, 0x6e];

/// CPUID through Xen's forced-emulation prefix.
///
/// A 64-bit PV guest runs in ring 3 on the real CPU, where `cpuid` is not intercepted unless
/// the hardware supports CPUID faulting (and under TCG it shows the emulator's leaves), so
/// it would not see Xen's leaves or policy.
///
/// # Safety
/// Only valid in a Xen PV guest: anywhere else `ud2` raises #UD (an invalid-opcode fault).
pub unsafe fn pv_cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    let (eax, ebx, ecx, edx): (u32, u64, u32, u32);
    // SAFETY: in a PV guest (caller's promise) Xen emulates the prefixed `cpuid`, which
    // only writes eax..edx. LLVM reserves rbx, so it is saved in a scratch register and
    // swapped back; `out(reg)` (not lateout) keeps that register apart from the inputs.
    unsafe {
        core::arch::asm!(
            "mov {rbx_save}, rbx",
            ".byte {p0}, {p1}, {p2}, {p3}, {p4}",
            "cpuid",
            "xchg {rbx_save}, rbx",
            rbx_save = out(reg) ebx,
            inout("eax") leaf => eax,
            inout("ecx") subleaf => ecx,
            lateout("edx") edx,
            p0 = const XEN_EMULATE_PREFIX[0],
            p1 = const XEN_EMULATE_PREFIX[1],
            p2 = const XEN_EMULATE_PREFIX[2],
            p3 = const XEN_EMULATE_PREFIX[3],
            p4 = const XEN_EMULATE_PREFIX[4],
            options(nostack, preserves_flags),
        );
    }
    CpuidResult {
        eax,
        ebx: ebx as u32,
        ecx,
        edx,
    }
}

/// Proof that the kernel runs as a Xen PV guest, so [`pv_cpuid`] is safe to call; its
/// [`PvCpuid::cpuid`] method plugs into [`detect_with`] and the [`XenLeaves`] decoders.
#[derive(Clone, Copy, Debug)]
pub struct PvCpuid(());

impl PvCpuid {
    /// # Safety
    /// The kernel must be running as a Xen PV guest (e.g. it was entered through
    /// `XEN_ELFNOTE_ENTRY` with a `start_info` whose magic checked out).
    pub const unsafe fn new() -> Self {
        Self(())
    }

    pub fn cpuid(self, leaf: u32, subleaf: u32) -> CpuidResult {
        // SAFETY: constructing `self` promised a Xen PV guest.
        unsafe { pv_cpuid(leaf, subleaf) }
    }

    /// Hypervisor detection through the forced-emulation CPUID.
    pub fn detect(self) -> Detection {
        detect_with(|leaf, subleaf| self.cpuid(leaf, subleaf))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    /// Xen's leaves at `base`, built from the header's definitions (not captured from a
    /// live Xen): version 4.17, one hypercall page at MSR 0x4000_0000, PRESERVE_AD, native
    /// TSC at 2.1 GHz, x2APIC virtualisation, vCPU 0 of domain 0, 46-bit machine addresses.
    fn xen_cpu(base: u32, max_offset: u32) -> impl FnMut(u32, u32) -> CpuidResult {
        move |leaf, subleaf| {
            let r = |eax, ebx, ecx, edx| CpuidResult { eax, ebx, ecx, edx };
            match (leaf.wrapping_sub(base), subleaf) {
                _ if leaf == 1 => r(0, 0, 1 << 31, 0),
                (0, _) => r(base + max_offset, 0x566e_6558, 0x6558_4d4d, 0x4d4d_566e),
                (1, _) => r(0x0004_0011, 0, 0, 0),
                (2, _) => r(1, 0x4000_0000, 1, 0),
                (3, 0) => r(0b110, 0, 2_100_000, 0),
                (3, 2) => r(2_100_000, 0, 0, 0),
                (4, _) => r(0x1a, 0, 0, 0),
                (5, _) => r(0, 46, 0, 0),
                _ => r(0, 0, 0, 0),
            }
        }
    }

    fn leaves(base: u32, max_offset: u32) -> XenLeaves {
        let detection = detect_with(xen_cpu(base, max_offset));
        XenLeaves::new(&detection).expect("Xen detected")
    }

    #[test]
    fn version_and_hypercall_leaves_decode() {
        let xen = leaves(0x4000_0000, 5);
        assert_eq!(
            xen.version(xen_cpu(0x4000_0000, 5)),
            Some(Version {
                major: 4,
                minor: 17
            })
        );
        assert_eq!(
            xen.hypercall(xen_cpu(0x4000_0000, 5)),
            Some(HypercallLeaf {
                pages: 1,
                msr: 0x4000_0000,
                mmu_pt_update_preserve_ad: true
            })
        );
    }

    #[test]
    fn leaves_follow_a_moved_base() {
        let xen = leaves(0x4000_0100, 5);
        assert_eq!(xen.base(), 0x4000_0100);
        assert_eq!(
            xen.version(xen_cpu(0x4000_0100, 5)).map(|v| v.minor),
            Some(17)
        );
    }

    #[test]
    fn tsc_leaf_decodes_both_subleaves() {
        let xen = leaves(0x4000_0000, 5);
        let tsc = xen.tsc(xen_cpu(0x4000_0000, 5)).unwrap();
        assert!(!tsc.emulated && tsc.host_tsc_reliable && tsc.rdtscp);
        assert_eq!((tsc.guest_khz, tsc.host_khz), (2_100_000, 2_100_000));
    }

    #[test]
    fn hvm_leaf_decodes_features_and_only_present_ids() {
        let xen = leaves(0x4000_0000, 5);
        let hvm = xen.hvm(xen_cpu(0x4000_0000, 5)).unwrap();
        assert!(hvm.features.contains(HvmFeatures::X2APIC_VIRT));
        assert!(hvm.features.contains(HvmFeatures::VCPU_ID_PRESENT));
        assert!(hvm.features.contains(HvmFeatures::DOMID_PRESENT));
        assert!(!hvm.features.contains(HvmFeatures::APIC_ACCESS_VIRT));
        assert_eq!(hvm.vcpu_id, Some(0));
        assert_eq!(hvm.domid, Some(0));
        assert_eq!(
            hvm.features.to_string(),
            "x2apic_virt,vcpu_id_present,domid_present"
        );

        let absent = |leaf: u32, _| CpuidResult {
            eax: if leaf == 0x4000_0004 { 0x3 } else { 0 },
            ebx: 9,
            ecx: 9,
            edx: 0,
        };
        let hvm = xen.hvm(absent).unwrap();
        assert_eq!((hvm.vcpu_id, hvm.domid), (None, None));
    }

    #[test]
    fn a_domid_wider_than_16_bits_is_dropped() {
        let xen = leaves(0x4000_0000, 5);
        let wide = |_, _| CpuidResult {
            eax: HvmFeatures::DOMID_PRESENT.bits(),
            ebx: 0,
            ecx: 0x1_0000,
            edx: 0,
        };
        assert_eq!(xen.hvm(wide).unwrap().domid, None);
    }

    #[test]
    fn pv_leaf_reads_the_address_width() {
        let xen = leaves(0x4000_0000, 5);
        assert_eq!(
            xen.pv(xen_cpu(0x4000_0000, 5)),
            Some(PvLeaf {
                max_subleaf: 0,
                machine_address_width: 46
            })
        );
    }

    #[test]
    fn leaves_beyond_max_leaf_are_none() {
        let xen = leaves(0x4000_0000, 2);
        assert!(xen.hypercall(xen_cpu(0x4000_0000, 2)).is_some());
        assert_eq!(xen.tsc(xen_cpu(0x4000_0000, 2)), None);
        assert_eq!(xen.hvm(xen_cpu(0x4000_0000, 2)), None);
        assert_eq!(xen.pv(xen_cpu(0x4000_0000, 2)), None);
    }

    #[test]
    fn not_xen_means_no_xen_leaves() {
        let kvm = Detection {
            hypervisor: Hypervisor::Kvm,
            base_leaf: 0x4000_0000,
            max_leaf: 0x4000_0001,
        };
        assert_eq!(XenLeaves::new(&kvm), None);
    }

    #[test]
    fn flag_names_print_unknown_bits_and_none() {
        assert_eq!(HvmFeatures::from_bits_retain(0).to_string(), "none");
        assert_eq!(
            HvmFeatures::from_bits_retain(1 | 1 << 9).to_string(),
            "apic_access_virt,bit9"
        );
        assert_eq!(
            std::format!("{:?}", HvmFeatures::UPCALL_VECTOR),
            "HvmFeatures(upcall_vector)"
        );
    }

    #[test]
    fn the_emulate_prefix_is_ud2a_then_xen() {
        assert_eq!(XEN_EMULATE_PREFIX[..2], [0x0f, 0x0b]);
        assert_eq!(&XEN_EMULATE_PREFIX[2..], b"xen");
    }
}
