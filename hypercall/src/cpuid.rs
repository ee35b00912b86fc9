//! Hypervisor detection through CPUID.
//!
//! A hypervisor announces itself by setting CPUID.1:ECX bit 31 and answering leaves in
//! `0x4000_0000..0x4001_0000`: leaf `base` gives the highest leaf of its range in `eax` and
//! a 12-byte signature in `ebx`, `ecx`, `edx`. Xen documents that it may move its leaves up
//! in steps of 0x100 (`xen/include/public/arch-x86/cpuid.h`), which it does when it also
//! offers the Hyper-V (Viridian) interface at the base; KVM does the same with its
//! Hyper-V enlightenments. Hence the scan over all bases rather than one read.
//!
//! The decision logic, [`detect_with`], takes the CPUID instruction as a parameter so host
//! tests can feed it fake tables.

use core::fmt;

/// The four registers a CPUID leaf returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidResult {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// Executes CPUID for `leaf` / `subleaf` on the current CPU.
///
/// Under a Xen PV guest a plain CPUID is not intercepted (under TCG it shows the emulator's
/// own leaves); the Xen PV path needs Xen's forced-emulation prefix instead of this function.
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    // `__cpuid_count` is a safe function since CPUID exists on every x86_64 CPU.
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    CpuidResult {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

/// The hypervisor, as named by its CPUID signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hypervisor {
    /// `KVMKVMKVM\0\0\0`
    Kvm,
    /// `XenVMMXenVMM`
    Xen,
    /// `TCGTCGTCGTCG`: QEMU without an accelerator.
    Tcg,
    /// `Microsoft Hv`, also the Hyper-V-compatible face of Xen (Viridian) and KVM.
    HyperV,
    /// `VMwareVMware`
    VMware,
    /// `bhyve bhyve `
    Bhyve,
    /// `ACRNACRNACRN`
    Acrn,
    /// A signature not in this list, raw.
    Other([u8; 12]),
    /// No hypervisor announced itself.
    None,
}

const SIGNATURES: [(&[u8; 12], Hypervisor); 7] = [
    (b"KVMKVMKVM\0\0\0", Hypervisor::Kvm),
    (b"XenVMMXenVMM", Hypervisor::Xen),
    (b"TCGTCGTCGTCG", Hypervisor::Tcg),
    (b"Microsoft Hv", Hypervisor::HyperV),
    (b"VMwareVMware", Hypervisor::VMware),
    (b"bhyve bhyve ", Hypervisor::Bhyve),
    (b"ACRNACRNACRN", Hypervisor::Acrn),
];

/// Names the hypervisor that `signature` (ebx, ecx, edx of its base leaf) belongs to.
pub fn classify(signature: &[u8; 12]) -> Hypervisor {
    SIGNATURES
        .iter()
        .find(|(known, _)| *known == signature)
        .map_or(Hypervisor::Other(*signature), |&(_, hypervisor)| hypervisor)
}

/// The value of the `hypervisor=` key on the `@janus env` line. `Other` prints as
/// `other:<signature>` with trailing NULs dropped and every byte that is not an ASCII letter
/// or digit replaced by `_`, so the value never breaks the line's `key=value` syntax.
impl fmt::Display for Hypervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Hypervisor::Kvm => "kvm",
            Hypervisor::Xen => "xen",
            Hypervisor::Tcg => "tcg",
            Hypervisor::HyperV => "hyperv",
            Hypervisor::VMware => "vmware",
            Hypervisor::Bhyve => "bhyve",
            Hypervisor::Acrn => "acrn",
            Hypervisor::None => "none",
            Hypervisor::Other(signature) => {
                f.write_str("other:")?;
                let len = signature.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                for &byte in &signature[..len] {
                    let shown = if byte.is_ascii_alphanumeric() {
                        char::from(byte)
                    } else {
                        '_'
                    };
                    fmt::Write::write_char(f, shown)?;
                }
                return Ok(());
            }
        };
        f.write_str(name)
    }
}

/// What [`detect`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Detection {
    pub hypervisor: Hypervisor,
    /// The leaf holding the signature (e.g. 0x4000_0100 for Xen behind Viridian); the
    /// hypervisor's own leaves are `base_leaf + n`. Zero when `hypervisor` is `None`.
    pub base_leaf: u32,
    /// The highest leaf of the hypervisor's range (`eax` of `base_leaf`). Zero when
    /// `hypervisor` is `None`.
    pub max_leaf: u32,
}

impl Detection {
    const NONE: Detection = Detection {
        hypervisor: Hypervisor::None,
        base_leaf: 0,
        max_leaf: 0,
    };
}

const HYPERVISOR_PRESENT: u32 = 1 << 31;
const FIRST_BASE: u32 = 0x4000_0000;
const END_BASE: u32 = 0x4001_0000;
const BASE_STEP: u32 = 0x100;

/// Finds the hypervisor through `cpuid`, which stands for the instruction.
///
/// A base leaf counts only if its `eax` lies in `base..=base + 0xff`: on a CPU without
/// leaves there, Intel parts answer with the data of the highest basic leaf, whose `eax` is
/// unrelated. Among the bases that count, the first known hypervisor other than Hyper-V wins
/// (Xen and KVM hide behind a Hyper-V-compatible base when they offer that interface), then
/// Hyper-V, then the first unknown signature.
pub fn detect_with(mut cpuid: impl FnMut(u32, u32) -> CpuidResult) -> Detection {
    if cpuid(1, 0).ecx & HYPERVISOR_PRESENT == 0 {
        return Detection::NONE;
    }
    let mut hyperv = None;
    let mut other = None;
    for base in (FIRST_BASE..END_BASE).step_by(BASE_STEP as usize) {
        let leaf = cpuid(base, 0);
        if !(base..=base + (BASE_STEP - 1)).contains(&leaf.eax) {
            continue;
        }
        let mut signature = [0; 12];
        signature[0..4].copy_from_slice(&leaf.ebx.to_le_bytes());
        signature[4..8].copy_from_slice(&leaf.ecx.to_le_bytes());
        signature[8..12].copy_from_slice(&leaf.edx.to_le_bytes());
        let found = Detection {
            hypervisor: classify(&signature),
            base_leaf: base,
            max_leaf: leaf.eax,
        };
        match found.hypervisor {
            Hypervisor::HyperV => {
                hyperv.get_or_insert(found);
            }
            Hypervisor::Other(_) => {
                other.get_or_insert(found);
            }
            _ => return found,
        }
    }
    hyperv.or(other).unwrap_or(Detection::NONE)
}

/// Finds the hypervisor this CPU runs under.
pub fn detect() -> Detection {
    detect_with(cpuid)
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::string::ToString;

    /// A fake CPU: leaf 1 with the hypervisor bit as given, the listed hypervisor leaves,
    /// and every other leaf echoing `fallback` the way Intel CPUs echo their highest basic
    /// leaf.
    fn fake_cpu<'a>(
        hypervisor_bit: bool,
        leaves: &'a [(u32, u32, &'a [u8; 12])],
        fallback: CpuidResult,
    ) -> impl FnMut(u32, u32) -> CpuidResult + 'a {
        move |leaf, _subleaf| {
            if leaf == 1 {
                return CpuidResult {
                    ecx: if hypervisor_bit {
                        HYPERVISOR_PRESENT
                    } else {
                        0
                    },
                    ..CpuidResult::default()
                };
            }
            match leaves.iter().find(|(l, _, _)| *l == leaf) {
                Some(&(_, eax, sig)) => CpuidResult {
                    eax,
                    ebx: u32::from_le_bytes([sig[0], sig[1], sig[2], sig[3]]),
                    ecx: u32::from_le_bytes([sig[4], sig[5], sig[6], sig[7]]),
                    edx: u32::from_le_bytes([sig[8], sig[9], sig[10], sig[11]]),
                },
                None => fallback,
            }
        }
    }

    const ZEROS: CpuidResult = CpuidResult {
        eax: 0,
        ebx: 0,
        ecx: 0,
        edx: 0,
    };

    #[test]
    fn kvm_at_the_first_base() {
        let d = detect_with(fake_cpu(
            true,
            &[(0x4000_0000, 0x4000_0001, b"KVMKVMKVM\0\0\0")],
            ZEROS,
        ));
        assert_eq!(
            d,
            Detection {
                hypervisor: Hypervisor::Kvm,
                base_leaf: 0x4000_0000,
                max_leaf: 0x4000_0001
            }
        );
        assert_eq!(d.hypervisor.to_string(), "kvm");
    }

    #[test]
    fn xen_behind_viridian_is_found_at_0x100() {
        let d = detect_with(fake_cpu(
            true,
            &[
                (0x4000_0000, 0x4000_0006, b"Microsoft Hv"),
                (0x4000_0100, 0x4000_0105, b"XenVMMXenVMM"),
            ],
            ZEROS,
        ));
        assert_eq!(d.hypervisor, Hypervisor::Xen);
        assert_eq!((d.base_leaf, d.max_leaf), (0x4000_0100, 0x4000_0105));
    }

    #[test]
    fn kvm_behind_hyperv_enlightenments_is_preferred() {
        let d = detect_with(fake_cpu(
            true,
            &[
                (0x4000_0000, 0x4000_000b, b"Microsoft Hv"),
                (0x4000_0100, 0x4000_0101, b"KVMKVMKVM\0\0\0"),
            ],
            ZEROS,
        ));
        assert_eq!(d.hypervisor, Hypervisor::Kvm);
        assert_eq!(d.base_leaf, 0x4000_0100);
    }

    #[test]
    fn hyperv_alone_is_hyperv() {
        let d = detect_with(fake_cpu(
            true,
            &[(0x4000_0000, 0x4000_000b, b"Microsoft Hv")],
            ZEROS,
        ));
        assert_eq!(d.hypervisor, Hypervisor::HyperV);
        assert_eq!(d.hypervisor.to_string(), "hyperv");
    }

    #[test]
    fn tcg() {
        let d = detect_with(fake_cpu(
            true,
            &[(0x4000_0000, 0x4000_0001, b"TCGTCGTCGTCG")],
            ZEROS,
        ));
        assert_eq!(d.hypervisor, Hypervisor::Tcg);
        assert_eq!(d.hypervisor.to_string(), "tcg");
    }

    #[test]
    fn unknown_signature_is_other_and_prints_sanitized() {
        let d = detect_with(fake_cpu(
            true,
            &[(0x4000_0000, 0x4000_0010, b"My hv=1.0\0\0\0")],
            ZEROS,
        ));
        assert_eq!(d.hypervisor, Hypervisor::Other(*b"My hv=1.0\0\0\0"));
        assert_eq!(d.hypervisor.to_string(), "other:My_hv_1_0");
    }

    #[test]
    fn a_known_hypervisor_beats_an_earlier_unknown_one() {
        let d = detect_with(fake_cpu(
            true,
            &[
                (0x4000_0000, 0x4000_0001, b"SomethingNew"),
                (0x4000_0200, 0x4000_0201, b"XenVMMXenVMM"),
            ],
            ZEROS,
        ));
        assert_eq!(d.hypervisor, Hypervisor::Xen);
    }

    #[test]
    fn garbage_eax_is_the_cpu_echoing_a_basic_leaf_not_a_hypervisor() {
        // eax below the base, above base + 0xff, and the echo of basic leaf 0x16.
        for eax in [0, 0x16, 0x3fff_ffff, 0x4000_0100, u32::MAX] {
            let d = detect_with(fake_cpu(
                true,
                &[(0x4000_0000, eax, b"KVMKVMKVM\0\0\0")],
                ZEROS,
            ));
            assert_eq!(d, Detection::NONE, "eax {eax:#x}");
        }
        let echo = CpuidResult {
            eax: 0x16,
            ebx: 0x756e_6547,
            ecx: 0x6c65_746e,
            edx: 0x4965_6e69,
        };
        assert_eq!(detect_with(fake_cpu(true, &[], echo)), Detection::NONE);
    }

    #[test]
    fn a_cleared_hypervisor_bit_means_no_hypervisor_even_with_leaves() {
        let d = detect_with(fake_cpu(
            false,
            &[(0x4000_0000, 0x4000_0001, b"KVMKVMKVM\0\0\0")],
            ZEROS,
        ));
        assert_eq!(d.hypervisor, Hypervisor::None);
        assert_eq!(d.hypervisor.to_string(), "none");
    }

    #[test]
    fn every_known_signature_classifies_and_prints_its_env_name() {
        let expected = ["kvm", "xen", "tcg", "hyperv", "vmware", "bhyve", "acrn"];
        for ((signature, hypervisor), name) in SIGNATURES.iter().zip(expected) {
            assert_eq!(classify(signature), *hypervisor);
            assert_eq!(hypervisor.to_string(), name);
        }
    }

    #[test]
    fn other_display_never_contains_spaces_or_equals() {
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            let mut signature = [0u8; 12];
            for byte in &mut signature {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            let shown = Hypervisor::Other(signature).to_string();
            let value = shown.strip_prefix("other:").unwrap();
            assert!(
                value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            );
            assert!(value.len() <= 12);
        }
        assert_eq!(Hypervisor::Other([0; 12]).to_string(), "other:");
        assert_eq!(
            Hypervisor::Other(*b"a\0b\0\0\0\0\0\0\0\0\0").to_string(),
            "other:a_b"
        );
    }

    #[test]
    fn detect_on_the_build_host_does_not_panic() {
        let d = detect();
        assert!(d.hypervisor == Hypervisor::None || d.base_leaf >= FIRST_BASE);
    }
}
