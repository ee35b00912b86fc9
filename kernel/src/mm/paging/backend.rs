//! How the [`Mapper`](super::Mapper) reaches page-table memory.
//!
//! With hardware-assisted paging (or none at all) the kernel writes entries in place and
//! invalidates the TLB with `invlpg`. A Xen PV guest may not: its page-table pages are mapped
//! read-only by Xen, every update is a validated `mmu_update` request, and requests are cheap
//! only when batched. The trait covers both: a write may be queued until [`flush`], and a
//! new table is handed to the backend before it is linked so it can be zeroed and
//! write-protected/pinned as the hypervisor requires.
//!
//! [`flush`]: PageTableBackend::flush

use x86_64::VirtAddr;
use x86_64::structures::paging::PhysFrame;

use super::PageTableEntry;

pub trait PageTableBackend {
    /// The top-level (PML4) table.
    fn root(&self) -> PhysFrame;

    /// Entry `index` of `table`, including writes queued and not yet flushed.
    fn read(&self, table: PhysFrame, index: usize) -> PageTableEntry;

    /// Sets entry `index` of `table`. It may only take effect at the next [`Self::flush`]
    /// (but [`Self::read`] sees it at once).
    fn write(&mut self, table: PhysFrame, index: usize, entry: PageTableEntry);

    /// Turns a newly allocated frame into an empty table, before anything links it.
    fn init_table(&mut self, frame: PhysFrame);

    /// The translation of `page` changed: stale TLB entries must be gone once [`Self::flush`]
    /// returns (a backend may invalidate at once).
    fn invalidate(&mut self, page: VirtAddr);

    /// Applies queued writes and invalidations. The mapper calls it at the end of every
    /// operation outside a batch, and once at the end of a batch.
    fn flush(&mut self);
}
