//! The page-table backend chosen at boot: direct writes, or Xen PV MMU hypercalls. One enum
//! rather than a trait object so the kernel's one `Mapper` has a concrete type and every
//! call dispatches with a `match`.

use x86_64::VirtAddr;
use x86_64::structures::paging::PhysFrame;

use super::paging::xen_pv_mmu::{XenHypercalls, XenPvMmu};
use super::paging::{PageTableBackend, PageTableEntry};
use crate::arch::paging::DirectBackend;

#[expect(
    clippy::large_enum_variant,
    reason = "the kernel has exactly one, in a static; boxing the Xen PV queue would need the \
              heap, which is mapped through this very backend"
)]
pub enum KernelBackend {
    Direct(DirectBackend),
    XenPv(XenPvMmu<'static, XenHypercalls>),
}

impl KernelBackend {
    /// The env line's `paging=` value.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Direct(_) => "direct",
            Self::XenPv(_) => "xen-pv-mmu",
        }
    }
}

macro_rules! each {
    ($self:ident, $backend:ident => $call:expr) => {
        match $self {
            KernelBackend::Direct($backend) => $call,
            KernelBackend::XenPv($backend) => $call,
        }
    };
}

impl PageTableBackend for KernelBackend {
    fn root(&self) -> PhysFrame {
        each!(self, b => b.root())
    }

    fn read(&self, table: PhysFrame, index: usize) -> PageTableEntry {
        each!(self, b => b.read(table, index))
    }

    fn write(&mut self, table: PhysFrame, index: usize, entry: PageTableEntry) {
        each!(self, b => b.write(table, index, entry))
    }

    fn write_leaf(
        &mut self,
        table: PhysFrame,
        index: usize,
        entry: PageTableEntry,
        page: VirtAddr,
    ) {
        each!(self, b => b.write_leaf(table, index, entry, page))
    }

    fn init_table(&mut self, frame: PhysFrame, level: u8) {
        each!(self, b => b.init_table(frame, level))
    }

    fn release_table(&mut self, frame: PhysFrame) {
        each!(self, b => b.release_table(frame))
    }

    fn invalidate(&mut self, page: VirtAddr) {
        each!(self, b => b.invalidate(page))
    }

    fn flush(&mut self) {
        each!(self, b => b.flush())
    }

    fn batching(&self) -> bool {
        each!(self, b => b.batching())
    }

    fn set_batching(&mut self, on: bool) -> bool {
        each!(self, b => b.set_batching(on))
    }
}
