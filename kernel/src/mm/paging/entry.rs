//! One page-table entry, as the hardware reads it (Intel SDM vol. 3, 4.5 "4-level paging").

use x86_64::PhysAddr;
use x86_64::structures::paging::PageTableFlags;

/// Entries per table at every level.
pub const ENTRIES: usize = 512;

/// Software bit 9 of a leaf: its address is a machine frame, not one of this guest's
/// (pseudo-)physical frames. Only a Xen PV guest tells the two apart, for frames Xen owns
/// such as `shared_info`; the hardware ignores the bit, so other backends need not look.
pub const MACHINE_FRAME: PageTableFlags = PageTableFlags::BIT_9;

/// Bits 12..52: the physical address of the next table or of a 4 KiB page.
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;
/// In a 2 MiB or 1 GiB leaf, bit 12 is PAT, not an address bit.
const HUGE_ADDRESS_MASK: u64 = 0x000f_ffff_ffe0_0000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct PageTableEntry(u64);

impl PageTableEntry {
    pub const EMPTY: Self = Self(0);

    /// An entry pointing at `addr` (4 KiB aligned; 2 MiB aligned for a huge leaf) with `flags`.
    pub fn new(addr: PhysAddr, flags: PageTableFlags) -> Self {
        debug_assert_eq!(addr.as_u64() & !ADDRESS_MASK, 0, "unaligned {addr:?}");
        Self((addr.as_u64() & ADDRESS_MASK) | flags.bits())
    }

    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    pub const fn raw(self) -> u64 {
        self.0
    }

    pub fn flags(self) -> PageTableFlags {
        PageTableFlags::from_bits_truncate(self.0 & !ADDRESS_MASK)
    }

    pub fn is_present(self) -> bool {
        self.flags().contains(PageTableFlags::PRESENT)
    }

    /// A 2 MiB or 1 GiB leaf at level 2 or 3 (the bit means PAT in a level-1 entry).
    pub fn is_huge(self) -> bool {
        self.flags().contains(PageTableFlags::HUGE_PAGE)
    }

    /// The next table, or the 4 KiB page, this entry points at.
    pub fn addr(self) -> PhysAddr {
        PhysAddr::new(self.0 & ADDRESS_MASK)
    }

    /// The page a huge leaf points at.
    pub fn huge_addr(self) -> PhysAddr {
        PhysAddr::new(self.0 & HUGE_ADDRESS_MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_and_flags_round_trip() {
        let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
        let e = PageTableEntry::new(PhysAddr::new(0x1234_5000), flags);
        assert_eq!(e.addr(), PhysAddr::new(0x1234_5000));
        assert_eq!(e.flags(), flags);
        assert!(e.is_present());
        assert!(!e.is_huge());
        assert_eq!(e.raw() >> 63, 1);
    }

    #[test]
    fn huge_address_ignores_pat_bit() {
        let e = PageTableEntry::from_raw(0x4000_0000 | 1 << 12 | 0x83);
        assert!(e.is_huge());
        assert_eq!(e.huge_addr(), PhysAddr::new(0x4000_0000));
    }
}
