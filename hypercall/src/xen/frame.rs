//! Frame numbers and machine addresses as distinct types.
//!
//! A Xen PV guest deals in two address spaces: its own contiguous pseudo-physical frames
//! (PFNs, what the kernel calls physical memory) and the host's machine frames (MFNs), which
//! page-table entries, `mmu_update` and most PV hypercalls expect
//! (xen/include/public/xen.h, "start-of-day memory layout"; arch-x86/xen.h `xen_pfn_t`).
//! Passing one where the other is meant corrupts memory silently, so they are separate types
//! here and mixing them does not compile. The translation (P2M list, M2P table) lives in the
//! kernel, which owns those tables.
//!
//! On an auto-translated guest (PVH, HVM) Xen translates every frame the guest names, so the
//! "machine" frames of those interfaces are the guest's own frames:
//! [`Mfn::auto_translated`] says so at the call site.

use core::fmt;

/// The size of a frame: Xen's x86 page size (`XEN_PAGE_SHIFT` 12).
pub const PAGE_SIZE: u64 = 4096;
const PAGE_SHIFT: u32 = 12;

/// A machine frame number: the host's frame, as page-table entries under PV hold it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Mfn(u64);

/// A guest pseudo-physical frame number: the guest's own view of its memory.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Pfn(u64);

/// A machine address: a byte address in the host's machine memory (e.g. `mmu_update`'s
/// `ptr`, `start_info.shared_info`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct MachineAddr(u64);

impl Mfn {
    pub const fn new(mfn: u64) -> Self {
        Self(mfn)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The frame Xen expects where an interface says "mfn" on an auto-translated guest
    /// (PVH/HVM): there, Xen translates the number through the guest's physical map, so it
    /// is the guest frame itself. Wrong on a PV guest, which must look the MFN up in its P2M.
    pub const fn auto_translated(pfn: Pfn) -> Self {
        Self(pfn.0)
    }

    /// The machine address of the frame's first byte.
    pub const fn start_address(self) -> MachineAddr {
        MachineAddr(self.0 << PAGE_SHIFT)
    }
}

impl Pfn {
    pub const fn new(pfn: u64) -> Self {
        Self(pfn)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The frame holding guest-physical address `addr`.
    pub const fn containing(addr: u64) -> Self {
        Self(addr >> PAGE_SHIFT)
    }

    /// The guest-physical address of the frame's first byte.
    pub const fn start_address(self) -> u64 {
        self.0 << PAGE_SHIFT
    }
}

impl MachineAddr {
    pub const fn new(addr: u64) -> Self {
        Self(addr)
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The machine frame holding this address.
    pub const fn frame(self) -> Mfn {
        Mfn(self.0 >> PAGE_SHIFT)
    }

    /// The offset of this address within its frame.
    pub const fn page_offset(self) -> u64 {
        self.0 & (PAGE_SIZE - 1)
    }
}

impl fmt::Debug for Mfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mfn({:#x})", self.0)
    }
}

impl fmt::Debug for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pfn({:#x})", self.0)
    }
}

impl fmt::Debug for MachineAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MachineAddr({:#x})", self.0)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::format;

    #[test]
    fn frames_and_addresses_convert_by_page_shift() {
        let addr = MachineAddr::new(0x1234_5678);
        assert_eq!(addr.frame(), Mfn::new(0x12345));
        assert_eq!(addr.page_offset(), 0x678);
        assert_eq!(
            Mfn::new(0x12345).start_address(),
            MachineAddr::new(0x1234_5000)
        );
        assert_eq!(Pfn::containing(0x20_0fff), Pfn::new(0x200));
        assert_eq!(Pfn::new(0x200).start_address(), 0x20_0000);
        assert_eq!(Mfn::auto_translated(Pfn::new(7)), Mfn::new(7));
    }

    #[test]
    fn debug_output_is_hex_and_names_the_space() {
        assert_eq!(format!("{:?}", Mfn::new(255)), "Mfn(0xff)");
        assert_eq!(format!("{:?}", Pfn::new(16)), "Pfn(0x10)");
        assert_eq!(format!("{:?}", MachineAddr::new(0)), "MachineAddr(0x0)");
    }
}
