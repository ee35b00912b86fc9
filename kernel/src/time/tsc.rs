//! The TSC's frequency, from the first source that gives one: CPUID leaf 0x15 (crystal clock
//! ratio), the hypervisor's timing leaf (KVM/VMware: base + 0x10, TSC kHz in eax; Xen:
//! base + 3 sub-leaf 0, guest TSC kHz in ecx, xen/include/public/arch-x86/cpuid.h), or a
//! bounded measurement against the PIT (which a Xen PVH guest does not have). `-M microvm` has neither HPET nor ACPI PM timer, so the PIT
//! (channel 0, no port 0x61 needed) is the last resort, and it fails with an error rather than
//! hanging when absent.

use core::fmt;

use janus_drivers::pit::{self, Channel0, PitError};
use janus_hypercall::cpuid::{CpuidResult, Detection, Hypervisor};
use janus_hypercall::xen::cpuid::XenLeaves;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    CpuidCrystal,
    HypervisorLeaf,
    /// The scale factors of a pvclock record (kvmclock or Xen `vcpu_time_info`).
    Pvclock,
    /// Measured against the HPET.
    Hpet,
    /// Measured against the ACPI PM timer.
    PmTimer,
    Pit,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CpuidCrystal => "cpuid-0x15",
            Self::HypervisorLeaf => "hypervisor-leaf",
            Self::Pvclock => "pvclock",
            Self::Hpet => "hpet",
            Self::PmTimer => "pmtimer",
            Self::Pit => "pit",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frequency {
    pub hz: u64,
    pub source: Source,
}

impl Frequency {
    /// `cycles` in tenths of a nanosecond (benchmarks print one decimal).
    pub fn deci_ns(&self, cycles: u64) -> u64 {
        self.scale(cycles, 10_000_000_000)
    }

    pub fn micros(&self, cycles: u64) -> u64 {
        self.scale(cycles, 1_000_000)
    }

    /// `cycles * per_second / hz`, saturating instead of wrapping.
    fn scale(&self, cycles: u64, per_second: u128) -> u64 {
        let scaled = u128::from(cycles) * per_second / u128::from(self.hz.max(1));
        u64::try_from(scaled).unwrap_or(u64::MAX)
    }
}

/// PIT ticks to measure over: 20 ms.
const PIT_WINDOW: u64 = pit::PIT_HZ / 50;
/// Counter reads before giving up: a read costs well under 10 us even when each port access
/// exits to the VMM, so this bounds the calibration to well under a minute in the worst case.
const PIT_MAX_READINGS: u64 = 5_000_000;

/// The frequency CPUID states, if any.
pub fn from_cpuid(
    mut cpuid: impl FnMut(u32, u32) -> CpuidResult,
    hypervisor: &Detection,
) -> Option<Frequency> {
    if cpuid(0, 0).eax >= 0x15 {
        let leaf = cpuid(0x15, 0);
        let (denominator, numerator, crystal_hz) = (leaf.eax, leaf.ebx, leaf.ecx);
        if denominator != 0 && numerator != 0 && crystal_hz != 0 {
            return Some(Frequency {
                hz: u64::from(crystal_hz) * u64::from(numerator) / u64::from(denominator),
                source: Source::CpuidCrystal,
            });
        }
    }
    let khz = match hypervisor.hypervisor {
        Hypervisor::Kvm | Hypervisor::VMware
            if hypervisor.max_leaf >= hypervisor.base_leaf + 0x10 =>
        {
            cpuid(hypervisor.base_leaf + 0x10, 0).eax
        }
        Hypervisor::Xen => XenLeaves::new(hypervisor)
            .and_then(|leaves| leaves.tsc(&mut cpuid))
            .map_or(0, |leaf| leaf.guest_khz),
        _ => 0,
    };
    (khz != 0).then(|| Frequency {
        hz: u64::from(khz) * 1000,
        source: Source::HypervisorLeaf,
    })
}

/// How long the TSC is measured against a nanosecond reference (HPET, PM timer): 20 ms,
/// like the PIT window.
pub const REFERENCE_WINDOW_NS: u64 = 20_000_000;
/// Reference reads before giving up: a reference that stopped must not hang the boot.
const REFERENCE_MAX_READS: u64 = 10_000_000;

/// Measures the TSC against a clock that counts nanoseconds (`reference`) over
/// [`REFERENCE_WINDOW_NS`]; `None` if the reference does not get there within a bounded
/// number of reads, or the TSC did not move.
pub fn from_reference(
    mut reference: impl FnMut() -> u64,
    mut read_tsc: impl FnMut() -> u64,
    source: Source,
) -> Option<Frequency> {
    // A reference read bracketed by two TSC reads, the TSC taken at their midpoint. The
    // first pair is thrown away: under TCG, translating the code of a first call can take
    // longer than the whole window's error budget.
    let mut sample = || {
        let before = read_tsc();
        let ns = reference();
        let after = read_tsc();
        (ns, before + after.wrapping_sub(before) / 2)
    };
    sample();
    let (start_ns, start_tsc) = sample();
    for _ in 0..REFERENCE_MAX_READS {
        let (ns, tsc) = sample();
        let elapsed_ns = ns.wrapping_sub(start_ns);
        if elapsed_ns >= REFERENCE_WINDOW_NS {
            let cycles = tsc.wrapping_sub(start_tsc);
            let hz = u128::from(cycles) * 1_000_000_000 / u128::from(elapsed_ns);
            return u64::try_from(hz)
                .ok()
                .filter(|&hz| hz > 0)
                .map(|hz| Frequency { hz, source });
        }
    }
    None
}

/// Measures the TSC against the PIT.
pub fn from_pit(
    pit: &mut impl Channel0,
    read_tsc: impl FnMut() -> u64,
) -> Result<Frequency, PitError> {
    let m = pit::measure(pit, PIT_WINDOW, PIT_MAX_READINGS, read_tsc)?;
    Ok(Frequency {
        hz: m.clock_hz(),
        source: Source::Pit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_hypervisor() -> Detection {
        Detection {
            hypervisor: Hypervisor::None,
            base_leaf: 0,
            max_leaf: 0,
        }
    }

    fn result(eax: u32, ebx: u32, ecx: u32) -> CpuidResult {
        CpuidResult {
            eax,
            ebx,
            ecx,
            edx: 0,
        }
    }

    #[test]
    fn crystal_leaf_gives_frequency() {
        let f = from_cpuid(
            |leaf, _| match leaf {
                0 => result(0x16, 0, 0),
                0x15 => result(2, 176, 24_000_000),
                _ => result(0, 0, 0),
            },
            &no_hypervisor(),
        )
        .unwrap();
        assert_eq!(f.hz, 2_112_000_000);
        assert_eq!(f.source, Source::CpuidCrystal);
    }

    #[test]
    fn crystal_leaf_without_crystal_is_skipped() {
        let f = from_cpuid(
            |leaf, _| match leaf {
                0 => result(0x16, 0, 0),
                0x15 => result(2, 176, 0),
                _ => result(0, 0, 0),
            },
            &no_hypervisor(),
        );
        assert_eq!(f, None);
    }

    #[test]
    fn kvm_timing_leaf_is_used_only_when_present() {
        let kvm = |max_leaf| Detection {
            hypervisor: Hypervisor::Kvm,
            base_leaf: 0x4000_0000,
            max_leaf,
        };
        let cpuid = |leaf, _| match leaf {
            0 => result(0xd, 0, 0),
            0x4000_0010 => result(2_500_000, 0, 0),
            _ => result(0, 0, 0),
        };
        assert_eq!(from_cpuid(cpuid, &kvm(0x4000_0001)), None);
        assert_eq!(
            from_cpuid(cpuid, &kvm(0x4000_0010)),
            Some(Frequency {
                hz: 2_500_000_000,
                source: Source::HypervisorLeaf
            })
        );
    }

    #[test]
    fn xen_time_leaf_gives_guest_tsc_khz() {
        let xen = Detection {
            hypervisor: Hypervisor::Xen,
            base_leaf: 0x4000_0100,
            max_leaf: 0x4000_0105,
        };
        let cpuid = |leaf, subleaf| match (leaf, subleaf) {
            (0, _) => result(0xd, 0, 0),
            (0x4000_0103, 0) => result(1, 0, 2_496_000),
            _ => result(0, 0, 0),
        };
        assert_eq!(
            from_cpuid(cpuid, &xen),
            Some(Frequency {
                hz: 2_496_000_000,
                source: Source::HypervisorLeaf
            })
        );
        let older = Detection {
            max_leaf: 0x4000_0102,
            ..xen
        };
        assert_eq!(from_cpuid(cpuid, &older), None);
    }

    #[test]
    fn reference_measurement_scales_cycles_by_elapsed_ns() {
        // A 3 GHz TSC against a reference that advances 1 ms per read.
        let now_ns = core::cell::Cell::new(0u64);
        let f = from_reference(
            || {
                now_ns.set(now_ns.get() + 1_000_000);
                now_ns.get()
            },
            || now_ns.get() * 3,
            Source::Hpet,
        )
        .unwrap();
        assert_eq!(
            f,
            Frequency {
                hz: 3_000_000_000,
                source: Source::Hpet
            }
        );
    }

    #[test]
    fn a_stopped_reference_or_tsc_gives_nothing() {
        assert_eq!(from_reference(|| 5, || 0, Source::PmTimer), None);
        let mut ns = 0;
        let stopped_tsc = from_reference(
            || {
                ns += REFERENCE_WINDOW_NS;
                ns
            },
            || 42,
            Source::Hpet,
        );
        assert_eq!(stopped_tsc, None);
    }

    #[test]
    fn conversions() {
        let f = Frequency {
            hz: 2_000_000_000,
            source: Source::Pit,
        };
        assert_eq!(f.deci_ns(3), 15);
        assert_eq!(f.micros(2_000_000_000), 1_000_000);
        assert_eq!(f.deci_ns(u64::MAX), u64::MAX);
        assert_eq!(f.micros(u64::MAX), u64::MAX / 2000);
    }
}
