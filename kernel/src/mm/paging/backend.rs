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

    /// Sets the level-1 entry (`index` of `table`) that maps `page`. Knowing the virtual
    /// address lets a backend use an update addressed by it (Xen's `update_va_mapping`, which
    /// also invalidates the TLB entry in the same call); the default is [`Self::write`].
    fn write_leaf(
        &mut self,
        table: PhysFrame,
        index: usize,
        entry: PageTableEntry,
        page: VirtAddr,
    ) {
        let _ = page;
        self.write(table, index, entry);
    }

    /// Turns a newly allocated frame into an empty table of `level` (1 = page table,
    /// 4 = PML4), before anything links it.
    fn init_table(&mut self, frame: PhysFrame, level: u8);

    /// `frame`, a table [`Self::init_table`] set up, has been unlinked (the write may still be
    /// queued) and is handed back as plain memory: the backend undoes what `init_table` did.
    fn release_table(&mut self, frame: PhysFrame);

    /// The translation of `page` changed: stale TLB entries must be gone once [`Self::flush`]
    /// returns (a backend may invalidate at once).
    fn invalidate(&mut self, page: VirtAddr);

    /// Applies queued writes and invalidations. The mapper calls it at the end of every
    /// operation outside a batch, and once at the end of a batch.
    fn flush(&mut self);

    /// Whether writes are queued until [`Self::flush`] (the default: they take effect at
    /// once).
    fn batching(&self) -> bool {
        false
    }

    /// Sets whether writes are queued until [`Self::flush`]. A backend that can batch may
    /// be told to stop and issue one update per write instead, so the two can be compared
    /// (queued work is flushed first); one that cannot batch ignores the request. Returns
    /// whether batching is on now.
    fn set_batching(&mut self, on: bool) -> bool {
        let _ = on;
        false
    }
}
