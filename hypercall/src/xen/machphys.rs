//! Where a 64-bit PV guest finds Xen's machine-to-physical table
//! (`XENMEM_machphys_mapping`, xen/include/public/memory.h; addresses from
//! arch-x86/xen-x86_64.h).
//!
//! The M2P holds, for every machine frame, the guest frame it backs (`u64` per MFN). Xen
//! maps it read-only into every 64-bit PV guest at `MACH2PHYS_VIRT_START`
//! (0xffff_8000_0000_0000, Xen's `RO_MPT_VIRT_START`), inside the range Xen reserves for
//! itself, so the kernel reads it without mapping anything. Auto-translated guests (PVH,
//! HVM) have none: Xen 4.17 answers them `ENOSYS` (`hvm_memory_op`,
//! xen/arch/x86/hvm/hypercall.c).

use core::fmt;
use core::mem::{offset_of, size_of};

use super::error::{XenError, check};
use super::hypercall::{HypercallPage, number};

/// `XENMEM_machphys_mapping`.
pub const XENMEM_MACHPHYS_MAPPING: u64 = 12;

/// `__HYPERVISOR_VIRT_START`: the start of the virtual range Xen reserves in every 64-bit
/// PV guest (PML4 slots 256..272).
pub const HYPERVISOR_VIRT_START: u64 = 0xffff_8000_0000_0000;
/// `__HYPERVISOR_VIRT_END`.
pub const HYPERVISOR_VIRT_END: u64 = 0xffff_8800_0000_0000;
/// `__MACH2PHYS_VIRT_START`: where the read-only M2P is mapped.
pub const MACH2PHYS_VIRT_START: u64 = 0xffff_8000_0000_0000;
/// `__MACH2PHYS_VIRT_END`: the end of the M2P window (256 GiB, 2^35 entries).
pub const MACH2PHYS_VIRT_END: u64 = 0xffff_8040_0000_0000;

/// The size of one M2P entry (`unsigned long`).
const M2P_ENTRY_SIZE: u64 = 8;

/// `struct xen_machphys_mapping` (xen/include/public/memory.h), x86_64: 24 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XenMachphysMapping {
    /// The first byte of the M2P.
    pub v_start: u64,
    /// One past its last byte.
    pub v_end: u64,
    /// The largest MFN that can be looked up.
    pub max_mfn: u64,
}

const _: () = assert!(size_of::<XenMachphysMapping>() == 24);
const _: () = assert!(offset_of!(XenMachphysMapping, v_start) == 0);
const _: () = assert!(offset_of!(XenMachphysMapping, v_end) == 8);
const _: () = assert!(offset_of!(XenMachphysMapping, max_mfn) == 16);

/// An M2P location the kernel will not read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum M2pMappingError {
    /// `v_end` is not above `v_start`.
    Empty { v_start: u64, v_end: u64 },
    /// An end is not 8-byte aligned, so entries would straddle it.
    Misaligned { v_start: u64, v_end: u64 },
    /// The window leaves Xen's reserved range: there it could overlap the kernel's own
    /// mappings, which Xen never does.
    OutsideXenRange { v_start: u64, v_end: u64 },
}

impl fmt::Display for M2pMappingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Empty { v_start, v_end } => {
                write!(f, "Xen's M2P window {v_start:#x}..{v_end:#x} is empty")
            }
            Self::Misaligned { v_start, v_end } => write!(
                f,
                "Xen's M2P window {v_start:#x}..{v_end:#x} is not 8-byte aligned"
            ),
            Self::OutsideXenRange { v_start, v_end } => write!(
                f,
                "Xen's M2P window {v_start:#x}..{v_end:#x} is outside Xen's reserved range \
                 {HYPERVISOR_VIRT_START:#x}..{HYPERVISOR_VIRT_END:#x}"
            ),
        }
    }
}

impl XenMachphysMapping {
    /// How many M2P entries, from `v_start`, the kernel may read: `max_mfn + 1`, but no more
    /// than the window holds. The answer comes from the host, so the window must be
    /// non-empty, 8-byte aligned and inside Xen's reserved range (hence canonical).
    pub fn readable_entries(&self) -> Result<u64, M2pMappingError> {
        let Self { v_start, v_end, .. } = *self;
        if v_end <= v_start {
            return Err(M2pMappingError::Empty { v_start, v_end });
        }
        if !v_start.is_multiple_of(M2P_ENTRY_SIZE) || !v_end.is_multiple_of(M2P_ENTRY_SIZE) {
            return Err(M2pMappingError::Misaligned { v_start, v_end });
        }
        if v_start < HYPERVISOR_VIRT_START || v_end > HYPERVISOR_VIRT_END {
            return Err(M2pMappingError::OutsideXenRange { v_start, v_end });
        }
        let window = (v_end - v_start) / M2P_ENTRY_SIZE;
        Ok(self.max_mfn.saturating_add(1).min(window))
    }
}

impl HypercallPage {
    /// Where Xen maps the M2P for this guest (`XENMEM_machphys_mapping`); check it with
    /// [`XenMachphysMapping::readable_entries`] before reading.
    pub fn machphys_mapping(&self) -> Result<XenMachphysMapping, XenError> {
        let mut mapping = XenMachphysMapping::default();
        let args = [XENMEM_MACHPHYS_MAPPING, &raw mut mapping as u64, 0, 0, 0];
        // SAFETY: Xen writes one live `xen_machphys_mapping`.
        check(unsafe { self.call(number::MEMORY_OP, args) })?;
        Ok(mapping)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use crate::xen::fake_hypervisor::{FakeXen, write_guest};
    use std::string::ToString;

    /// What Xen 4.17 answers a domU (`arch_memory_op`, xen/arch/x86/mm.c).
    const DOMU: XenMachphysMapping = XenMachphysMapping {
        v_start: MACH2PHYS_VIRT_START,
        v_end: MACH2PHYS_VIRT_END,
        max_mfn: (1 << 35) - 1,
    };

    #[test]
    fn the_wrapper_returns_what_xen_wrote() {
        let fake = FakeXen::new(|call| {
            assert_eq!((call.nr, call.args[0]), (number::MEMORY_OP, 12));
            // SAFETY: the wrapper passed a live `xen_machphys_mapping`.
            unsafe { write_guest(call.args[1], DOMU) };
            0
        });
        assert_eq!(fake.page().machphys_mapping(), Ok(DOMU));
    }

    #[test]
    fn an_auto_translated_guest_gets_enosys() {
        let fake = FakeXen::new(|_| -38);
        assert_eq!(fake.page().machphys_mapping(), Err(XenError::Enosys));
    }

    #[test]
    fn entries_are_max_mfn_plus_one_within_the_window() {
        assert_eq!(DOMU.readable_entries(), Ok(1 << 35));
        // dom0 without memory hotplug: `max_page - 1`.
        let dom0 = XenMachphysMapping {
            max_mfn: 0x7_ffff,
            ..DOMU
        };
        assert_eq!(dom0.readable_entries(), Ok(0x8_0000));
        // A host claiming more frames than the window holds is clipped, not overflowed.
        let greedy = XenMachphysMapping {
            max_mfn: u64::MAX,
            ..DOMU
        };
        assert_eq!(greedy.readable_entries(), Ok(1 << 35));
    }

    #[test]
    fn nonsense_windows_are_refused() {
        let bad = |v_start, v_end| {
            XenMachphysMapping {
                v_start,
                v_end,
                max_mfn: 0,
            }
            .readable_entries()
            .unwrap_err()
        };
        let start = MACH2PHYS_VIRT_START;
        assert!(matches!(bad(start, start), M2pMappingError::Empty { .. }));
        assert!(matches!(
            bad(start + 8, start),
            M2pMappingError::Empty { .. }
        ));
        assert!(matches!(
            bad(start + 4, start + 4096),
            M2pMappingError::Misaligned { .. }
        ));
        assert!(matches!(
            bad(start, start + 12),
            M2pMappingError::Misaligned { .. }
        ));
        // Below Xen's range: the guest's own (lower half or non-canonical) addresses.
        assert!(matches!(
            bad(0, 0x1000),
            M2pMappingError::OutsideXenRange { .. }
        ));
        assert!(matches!(
            bad(0x0000_8000_0000_0000, start + 8),
            M2pMappingError::OutsideXenRange { .. }
        ));
        // Running past Xen's range into the kernel's.
        assert!(matches!(
            bad(start, HYPERVISOR_VIRT_END + 8),
            M2pMappingError::OutsideXenRange { .. }
        ));
        assert_eq!(
            bad(0, 0x1000).to_string(),
            "Xen's M2P window 0x0..0x1000 is outside Xen's reserved range \
             0xffff800000000000..0xffff880000000000"
        );
    }

    #[test]
    fn a_window_filling_xen_s_whole_range_is_accepted() {
        let whole = XenMachphysMapping {
            v_start: HYPERVISOR_VIRT_START,
            v_end: HYPERVISOR_VIRT_END,
            max_mfn: 9,
        };
        assert_eq!(whole.readable_entries(), Ok(10));
    }
}
