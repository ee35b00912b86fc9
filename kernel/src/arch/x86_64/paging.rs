//! The direct page-table backend: the kernel writes entries in place and invalidates single
//! TLB entries with `invlpg`. Right on bare metal, under hardware-assisted paging (EPT/NPT),
//! under TCG, and under shadow-paging KVM (which traps the writes behind the guest's back).

use x86_64::VirtAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;

use crate::mm::layout::phys_to_virt;
use crate::mm::paging::entry::ENTRIES;
use crate::mm::paging::{PageTableBackend, PageTableEntry};

pub struct DirectBackend {
    root: PhysFrame,
    /// Whether `root` is in CR3; invalidating the TLB for tables not in use is pointless.
    active: bool,
}

impl DirectBackend {
    /// # Safety
    /// `root` must be a frame the caller owns exclusively, reachable through
    /// [`phys_to_virt`]; it is zeroed here. So must every frame later passed to `init_table`.
    pub unsafe fn new(root: PhysFrame) -> Self {
        let mut backend = Self {
            root,
            active: false,
        };
        backend.init_table(root, 4);
        backend
    }

    fn entry_ptr(table: PhysFrame, index: usize) -> *mut PageTableEntry {
        assert!(index < ENTRIES);
        let table = phys_to_virt(table.start_address()).as_mut_ptr::<PageTableEntry>();
        table.wrapping_add(index)
    }

    /// Loads `root` into CR3.
    ///
    /// # Safety
    /// The tables must map everything the kernel touches from now on: its image, stacks,
    /// the physical memory window and the heap.
    pub unsafe fn activate(&mut self) {
        // SAFETY: forwarded from the caller.
        unsafe { Cr3::write(self.root, Cr3Flags::empty()) };
        self.active = true;
    }
}

impl PageTableBackend for DirectBackend {
    fn root(&self) -> PhysFrame {
        self.root
    }

    fn read(&self, table: PhysFrame, index: usize) -> PageTableEntry {
        // SAFETY: tables are frames owned by this backend (constructor contract), mapped
        // through the physical window; index < 512 is asserted.
        unsafe { Self::entry_ptr(table, index).read_volatile() }
    }

    fn write(&mut self, table: PhysFrame, index: usize, entry: PageTableEntry) {
        // SAFETY: as in `read`; the mapper keeps entries consistent with what it maps.
        unsafe { Self::entry_ptr(table, index).write_volatile(entry) }
    }

    fn init_table(&mut self, frame: PhysFrame, _level: u8) {
        // SAFETY: the frame was just allocated for this backend (constructor contract).
        unsafe { core::ptr::write_bytes(Self::entry_ptr(frame, 0), 0, ENTRIES) }
    }

    fn release_table(&mut self, _frame: PhysFrame) {}

    fn invalidate(&mut self, page: VirtAddr) {
        if self.active {
            x86_64::instructions::tlb::flush(page);
        }
    }

    fn flush(&mut self) {}
}
