//! The Xen PV page-table backend: every change to a page table is a request Xen validates.
//!
//! A classic (not auto-translated) PV guest runs on page tables whose entries hold machine
//! frame numbers (MFNs), while it sees its memory as contiguous pseudo-physical frames (PFNs).
//! The P2M list (`start_info.mfn_list`, one MFN per PFN) and Xen's read-only M2P table
//! translate between the two. The [`Mapper`](super::Mapper) works in pseudo-physical terms
//! only; this backend translates at its boundary, as Linux does in `pte_val`/`__pte` under
//! Xen (arch/x86/xen/mmu_pv.c, `pte_mfn_to_pfn` / `pte_pfn_to_mfn`).
//!
//! Xen's rules (xen/arch/x86/mm.c unless noted), and what this backend does about each:
//! - Page-table pages are read-only to the guest. An entry changes only through
//!   `mmu_update` (any table, addressed by the machine address of the entry) or
//!   `update_va_mapping` (the level-1 entry that maps a virtual address in the page tables
//!   loaded now, `__do_update_va_mapping`, which can also invalidate that TLB entry).
//! - A frame is either writable memory or a page table of one level, never both at once
//!   (`_get_page_type`): mapping a table frame writable fails with `EBUSY`
//!   (`get_page_from_l1e`), and a frame with a writable mapping cannot become a table
//!   (`EINVAL`). So [`init_table`](PageTableBackend::init_table) zeroes a new table through
//!   its identity mapping, write-protects that mapping and pins the frame
//!   (`MMUEXT_PIN_Ln_TABLE`: Xen validates it once and keeps it typed) before anything links
//!   it; [`release_table`](PageTableBackend::release_table) undoes this in reverse order.
//! - Root slots 256..=271 (`0xffff800000000000..0xffff880000000000`) are Xen's
//!   (`is_guest_l4_slot`, `ROOT_PAGETABLE_FIRST/LAST_XEN_SLOT`): they read as empty here, so
//!   no walk enters Xen's area, and writing them is a kernel bug.
//! - No superpages: `_PAGE_PSE` is in `base_disallow_mask`, hence in `L2_DISALLOW_MASK`.
//! - Xen rewrites flags of every entry it accepts (`adjust_guest_l{1,2,3,4}e`,
//!   xen/arch/x86/pv/mm.h), because a 64-bit PV kernel runs in ring 3: `_PAGE_USER` on every
//!   level, and on a kernel L1 entry also `_PAGE_GUEST_KERNEL` (PTE bit 52) to tell it from
//!   a user page; `_PAGE_ACCESSED` on L4 entries. Janus maps nothing for user mode, so reads
//!   drop USER and bit 52 and the mapper sees what it wrote (and refuses to write them).
//!   ACCESSED is left alone, as the CPU may set it on any backend.
//!
//! Batching follows Linux's lazy MMU mode (`arch_enter_lazy_mmu_mode` → queued
//! `MMU_NORMAL_PT_UPDATE`s → one multicall at `arch_leave_lazy_mmu_mode`): writes are queued
//! until [`flush`](PageTableBackend::flush), reads see the queue, and a flush makes as few
//! hypercalls as possible: a lone leaf update goes through `update_va_mapping` (one exit that
//! also invalidates its TLB entry), a lone kind of request goes as that one hypercall (as
//! Linux's `xen_mc_flush` does for a single entry, arch/x86/xen/multicalls.c), and only
//! updates plus invalidations need a multicall.

use core::fmt;
use core::ops::RangeInclusive;

use janus_hypercall::xen::error::XenError;
use janus_hypercall::xen::frame::{MachineAddr, Mfn, Pfn};
use janus_hypercall::xen::mmu::{MmuUpdate, MmuextOp, PartialBatch, TableLevel, UvmFlags};
use x86_64::structures::paging::{PageTableFlags, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

use super::entry::ENTRIES;
use super::{MACHINE_FRAME, PageTableBackend, PageTableEntry};

#[cfg(target_os = "none")]
pub use self::hypercalls::XenHypercalls;

/// Queued entry updates before a flush is forced: one level-1 table's worth.
pub const QUEUE_CAPACITY: usize = 512;

/// Slots of the hash index over the queue, twice its capacity so probes stay short.
const INDEX_SLOTS: usize = 2 * QUEUE_CAPACITY;

/// Queued single-page invalidations; beyond this many, one flush of the whole (local) TLB
/// is cheaper for Xen than a list of `invlpg`s.
const INVALIDATION_CAPACITY: usize = 16;

/// Root slots that map Xen itself (`ROOT_PAGETABLE_FIRST_XEN_SLOT` ..=
/// `ROOT_PAGETABLE_LAST_XEN_SLOT`, xen/arch/x86/include/asm/config.h).
const XEN_ROOT_SLOTS: RangeInclusive<usize> = 256..=271;

/// `_PAGE_GUEST_KERNEL` (xen/arch/x86/include/asm/x86_64/page.h): flag bit 12 of Xen's
/// 24-bit flags, PTE bit 52. Xen sets it, with USER, on every kernel L1 entry.
const GUEST_KERNEL: PageTableFlags = PageTableFlags::BIT_52;

/// The flags Xen adds to entries of a 64-bit PV kernel and this backend hides again.
const XEN_ADDED: PageTableFlags = PageTableFlags::USER_ACCESSIBLE.union(GUEST_KERNEL);

/// Machine frame numbers fit the 40 address bits of an entry (bits 12..52); anything larger
/// in the P2M list is a marker (Xen's `INVALID_MFN` is all ones), not a frame.
const MFN_LIMIT: u64 = 1 << 40;

/// What [`XenPvMmu`] needs from Xen and from memory, so host tests can play Xen.
///
/// Frames are named by [`Pfn`] (what the guest calls them) or inside requests by machine
/// address, as the hypercalls take them; the implementation does no translation.
pub trait PvMmuHypervisor {
    /// Where the kernel reaches frame `pfn`: its identity mapping, the one [`XenPvMmu`]
    /// write-protects while the frame is a page table.
    fn frame_va(&self, pfn: Pfn) -> VirtAddr;

    /// The raw entry `index` (a machine address inside) of the page-table page at `pfn`.
    /// Page tables are mapped read-only, which is enough to read them.
    fn read_raw(&self, pfn: Pfn, index: usize) -> u64;

    /// Zeroes frame `pfn` through its writable identity mapping.
    fn zero_frame(&mut self, pfn: Pfn);

    /// `HYPERVISOR_mmu_update(updates, DOMID_SELF)`: how many were applied, or where it
    /// stopped.
    fn mmu_update(&mut self, updates: &[MmuUpdate]) -> Result<usize, PartialBatch>;

    /// `HYPERVISOR_mmuext_op(ops, DOMID_SELF)`.
    fn mmuext_op(&mut self, ops: &[MmuextOp]) -> Result<usize, PartialBatch>;

    /// `HYPERVISOR_update_va_mapping(va, pte, flags)` on the page tables loaded now.
    fn update_va_mapping(
        &mut self,
        va: VirtAddr,
        pte: u64,
        flags: UvmFlags,
    ) -> Result<(), XenError>;

    /// One multicall: `mmu_update(updates)`, then `mmuext_op(ops)`. Xen runs the second even
    /// when the first fails (xen/common/multicall.c); the first failure is reported.
    fn mmu_update_and_ext(
        &mut self,
        updates: &[MmuUpdate],
        ops: &[MmuextOp],
    ) -> Result<(), FlushError>;
}

/// How a flush multicall failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushError {
    /// The multicall itself failed (e.g. an unreadable list): no result can be trusted.
    Multicall(XenError),
    /// Xen stopped the batch of entry updates.
    MmuUpdate(PartialBatch),
    /// Xen stopped the batch of TLB operations (the updates all took effect).
    MmuextOp(PartialBatch),
}

impl fmt::Display for FlushError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Multicall(e) => write!(
                f,
                "the multicall failed ({e}); which requests took effect is unknown"
            ),
            Self::MmuUpdate(p) => write!(f, "mmu_update: {p}"),
            Self::MmuextOp(p) => write!(f, "mmuext_op: {p}"),
        }
    }
}

/// What the backend asked of Xen, for benchmarks and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PvMmuStats {
    /// Exits to Xen: every hypercall, a multicall counting once.
    pub hypercalls: u64,
    /// Of those, multicalls.
    pub multicalls: u64,
    /// Entries Xen wrote for this backend, the write-protection of table frames included.
    pub pte_updates: u64,
    /// Frames pinned as page tables.
    pub pins: u64,
    /// Frames unpinned.
    pub unpins: u64,
}

/// What a queued update looked like to the mapper, for reads before the flush.
#[derive(Clone, Copy, Debug, Default)]
struct QueuedWrite {
    entry: PageTableEntry,
    /// For a leaf: the page it maps, so a lone update can go by `update_va_mapping`.
    page: Option<VirtAddr>,
}

/// The Xen PV page-table backend over the page tables loaded now (see the module docs).
pub struct XenPvMmu<'a, H: PvMmuHypervisor> {
    /// The active top-level table: `update_va_mapping` works on the loaded tables only.
    root: Pfn,
    /// PFN → MFN, `start_info.mfn_list`.
    p2m: &'a [u64],
    /// MFN → PFN, Xen's read-only machine-to-phys table (other domains' frames included).
    m2p: &'a [u64],
    ops: H,
    /// Requests in the order Xen gets them; `queued` holds the same writes as the mapper
    /// gave them.
    updates: [MmuUpdate; QUEUE_CAPACITY],
    queued: [QueuedWrite; QUEUE_CAPACITY],
    len: usize,
    /// Open-addressing index from an entry's machine address to its latest queued write
    /// (position + 1; 0 is empty). Every mapper step reads up to four entries, so a linear
    /// search of a full queue would cost more than the hypercalls batching saves.
    index: [u16; INDEX_SLOTS],
    invalidations: [VirtAddr; INVALIDATION_CAPACITY],
    invalidation_count: usize,
    /// More pages changed than `invalidations` holds: flush the whole local TLB instead.
    flush_whole_tlb: bool,
    /// With batching off: the page the last `update_va_mapping` already invalidated, so the
    /// mapper's following `invalidate` of it costs nothing.
    invalidated_by_last_update: Option<VirtAddr>,
    batching: bool,
    stats: PvMmuStats,
}

fn pfn_of(frame: PhysFrame) -> Pfn {
    Pfn::containing(frame.start_address().as_u64())
}

/// The address bits of `raw` replaced by `addr` (both 4 KiB aligned), flags kept.
fn with_address(raw: u64, addr: u64) -> u64 {
    let old = PageTableEntry::from_raw(raw).addr().as_u64();
    (raw & !old) | addr
}

/// What Xen's refusal of an entry means, for the panic message.
fn meaning(error: XenError) -> &'static str {
    match error {
        XenError::Ebusy => {
            "the entry maps a page-table frame writable (Xen keeps page tables read-only)"
        }
        XenError::Einval => {
            "Xen's validation rejected it: a frame this domain does not own, a flag Xen \
             forbids (PSE: PV guests have no superpages; GLOBAL above L1; cache bits), a \
             lower table that still has a writable mapping, or a slot Xen reserves"
        }
        XenError::Eperm => "the entry maps I/O memory this domain may not use",
        XenError::Enomem => "Xen ran out of memory",
        _ => "unexpected for a page-table update",
    }
}

fn refused_update(updates: &[MmuUpdate], batch: PartialBatch) -> ! {
    let PartialBatch { error, done } = batch;
    match updates.get(done) {
        Some(u) => panic!(
            "Xen refused page-table update {done} of {} (ptr {:#x}, val {:#x}): {error}; {}",
            updates.len(),
            u.ptr,
            u.val,
            meaning(error)
        ),
        None => panic!(
            "Xen failed a batch of {} page-table updates after {done}: {error}",
            updates.len()
        ),
    }
}

fn refused_op(ops: &[MmuextOp], batch: PartialBatch) -> ! {
    let PartialBatch { error, done } = batch;
    match ops.get(done) {
        Some(op) => panic!(
            "Xen refused TLB operation {done} of {} (mmuext cmd {}, arg {:#x}): {error}",
            ops.len(),
            op.cmd,
            op.arg1
        ),
        None => panic!(
            "Xen failed a batch of {} TLB operations after {done}: {error}",
            ops.len()
        ),
    }
}

impl<'a, H: PvMmuHypervisor> XenPvMmu<'a, H> {
    /// A backend for the page tables whose top-level table is pseudo-physical frame
    /// `root_pfn`, which must be the one loaded now (`start_info.pt_base`'s frame at boot).
    /// Batching is on.
    ///
    /// # Panics
    /// If `root_pfn` has no machine frame in `p2m`.
    pub fn new(root_pfn: Pfn, p2m: &'a [u64], m2p: &'a [u64], ops: H) -> Self {
        let mmu = Self {
            root: root_pfn,
            p2m,
            m2p,
            ops,
            updates: [MmuUpdate::default(); QUEUE_CAPACITY],
            queued: [QueuedWrite::default(); QUEUE_CAPACITY],
            len: 0,
            index: [0; INDEX_SLOTS],
            invalidations: [VirtAddr::zero(); INVALIDATION_CAPACITY],
            invalidation_count: 0,
            flush_whole_tlb: false,
            invalidated_by_last_update: None,
            batching: true,
            stats: PvMmuStats::default(),
        };
        mmu.mfn(mmu.root);
        mmu
    }

    pub fn stats(&self) -> PvMmuStats {
        self.stats
    }

    /// The machine frame backing `pfn`.
    ///
    /// # Panics
    /// When there is none: the kernel named memory Xen did not give it.
    fn mfn(&self, pfn: Pfn) -> Mfn {
        let Some(&mfn) = self.p2m.get(pfn.as_u64() as usize) else {
            panic!(
                "pfn {:#x} lies beyond this domain's {} pseudo-physical frames (its P2M list)",
                pfn.as_u64(),
                self.p2m.len()
            );
        };
        assert!(
            mfn < MFN_LIMIT,
            "pfn {:#x} has no machine frame (its P2M entry is {mfn:#x})",
            pfn.as_u64()
        );
        Mfn::new(mfn)
    }

    /// The pseudo-physical frame of `mfn`, if this domain owns it: the M2P says which PFN,
    /// and the P2M must agree (the M2P also holds stale or other domains' entries).
    fn pfn_of_mfn(&self, mfn: Mfn) -> Option<Pfn> {
        let pfn = *self.m2p.get(mfn.as_u64() as usize)?;
        (self.p2m.get(pfn as usize) == Some(&mfn.as_u64())).then_some(Pfn::new(pfn))
    }

    fn frame_of(pfn: Pfn) -> PhysFrame {
        PhysFrame::containing_address(PhysAddr::new(pfn.start_address()))
    }

    /// The machine address of entry `index` of table `table`: what `mmu_update` names.
    fn entry_address(&self, table: Pfn, index: usize) -> MachineAddr {
        assert!(index < ENTRIES, "page-table index {index} out of range");
        MachineAddr::new(self.mfn(table).start_address().as_u64() + index as u64 * 8)
    }

    /// The entry as Xen must get it: the frame translated to its MFN.
    fn machine_entry(&self, entry: PageTableEntry) -> u64 {
        if !entry.is_present() {
            return entry.raw();
        }
        assert!(
            !entry.flags().intersects(XEN_ADDED),
            "entry {:#x} asks for a user page (USER or bit 52): a 64-bit PV kernel has no use \
             for them and reads could not tell them from Xen's own marks",
            entry.raw()
        );
        if entry.flags().contains(MACHINE_FRAME) {
            // Xen accepts the software bits (`_PAGE_AVAIL`), so the marker is stored too
            // and the entry reads back as written.
            return entry.raw();
        }
        let mfn = self.mfn(Pfn::containing(entry.addr().as_u64()));
        with_address(entry.raw(), mfn.start_address().as_u64())
    }

    /// The entry as the mapper must see it: pseudo-physical, without Xen's marks.
    fn guest_entry(&self, raw: u64) -> PageTableEntry {
        let entry = PageTableEntry::from_raw(raw);
        if !entry.is_present() {
            return entry;
        }
        let raw = raw & !XEN_ADDED.bits();
        let entry = PageTableEntry::from_raw(raw);
        // Bit 7 is PSE above L1 (or PAT in an L1). Janus never sets it, but Xen builds
        // dom0's P2M window with 2 MiB/1 GiB pages (xen/arch/x86/pv/dom0_build.c) whose
        // pseudo-physical frames need not be contiguous: such entries stay machine frames.
        if entry.flags().contains(MACHINE_FRAME) || entry.is_huge() {
            return PageTableEntry::from_raw(raw | MACHINE_FRAME.bits());
        }
        // Only leaves can point outside the domain: Xen links only the domain's own
        // frames as tables (`get_page_and_type_from_mfn` with the domain as owner).
        match self.pfn_of_mfn(MachineAddr::new(entry.addr().as_u64()).frame()) {
            Some(pfn) => PageTableEntry::from_raw(with_address(raw, pfn.start_address())),
            None => PageTableEntry::from_raw(raw | MACHINE_FRAME.bits()),
        }
    }

    fn queued_entry(&self, at: MachineAddr) -> Option<PageTableEntry> {
        let slot = self.index[self.index_slot(at.as_u64())];
        (slot != 0).then(|| self.queued[usize::from(slot) - 1].entry)
    }

    /// The index slot that holds `ptr`'s queue position, or the empty one where it goes.
    fn index_slot(&self, ptr: u64) -> usize {
        // Fibonacci hashing of the entry number; the table is a power of two.
        const BITS: u32 = INDEX_SLOTS.trailing_zeros();
        const _: () = assert!(INDEX_SLOTS.is_power_of_two() && INDEX_SLOTS > QUEUE_CAPACITY);
        let mut slot = ((ptr >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - BITS)) as usize;
        loop {
            let position = self.index[slot];
            if position == 0 || self.updates[usize::from(position) - 1].ptr == ptr {
                return slot;
            }
            slot = (slot + 1) % INDEX_SLOTS;
        }
    }

    fn is_xen_slot(&self, table: Pfn, index: usize) -> bool {
        table == self.root && XEN_ROOT_SLOTS.contains(&index)
    }

    /// Sets entry `index` of `table`: queued, or at once with batching off.
    fn update(
        &mut self,
        table: PhysFrame,
        index: usize,
        entry: PageTableEntry,
        page: Option<VirtAddr>,
    ) {
        let table = pfn_of(table);
        assert!(
            !self.is_xen_slot(table, index),
            "root slot {index} belongs to Xen (0xffff800000000000..0xffff880000000000): a PV \
             guest cannot map anything there"
        );
        let request = MmuUpdate::normal_pt_update(
            self.entry_address(table, index),
            self.machine_entry(entry),
        );
        self.invalidated_by_last_update = None;
        if self.batching {
            if self.len == QUEUE_CAPACITY {
                self.flush();
            }
            self.updates[self.len] = request;
            self.queued[self.len] = QueuedWrite { entry, page };
            self.len += 1;
            let slot = self.index_slot(request.ptr);
            self.index[slot] = self.len as u16;
        } else if let Some(page) = page {
            self.update_va_mapping(page, request.val, UvmFlags::INVLPG_LOCAL);
            self.invalidated_by_last_update = Some(page);
        } else {
            self.stats.hypercalls += 1;
            self.stats.pte_updates += 1;
            if let Err(batch) = self.ops.mmu_update(&[request]) {
                refused_update(&[request], batch);
            }
        }
    }

    fn update_va_mapping(&mut self, page: VirtAddr, val: u64, flags: UvmFlags) {
        self.stats.hypercalls += 1;
        self.stats.pte_updates += 1;
        if let Err(error) = self.ops.update_va_mapping(page, val, flags) {
            panic!(
                "Xen refused update_va_mapping({:#x}, {val:#x}): {error}; {}",
                page.as_u64(),
                meaning(error)
            );
        }
    }

    /// One `mmuext_op` at once; a refusal panics with `what` was asked and `why` Xen would
    /// refuse it.
    fn mmuext_op(&mut self, op: MmuextOp, what: fmt::Arguments<'_>, why: &str) {
        self.stats.hypercalls += 1;
        if let Err(batch) = self.ops.mmuext_op(&[op]) {
            panic!("Xen refused to {what}: {}; {why}", batch.error);
        }
    }

    /// Points the identity mapping of page-table frame `pfn` (its machine frame `mfn`) at
    /// it with `flags`, invalidating the old translation.
    fn map_table_frame(&mut self, pfn: Pfn, mfn: Mfn, flags: PageTableFlags, why: &str) {
        let va = self.ops.frame_va(pfn);
        let pte = mfn.start_address().as_u64() | flags.bits();
        self.stats.hypercalls += 1;
        self.stats.pte_updates += 1;
        if let Err(error) = self.ops.update_va_mapping(va, pte, UvmFlags::INVLPG_LOCAL) {
            let how = if flags.contains(PageTableFlags::WRITABLE) {
                "writable"
            } else {
                "read-only"
            };
            panic!(
                "Xen refused to map page-table frame pfn {:#x} (mfn {:#x}) {how} at {:#x}: \
                 {error}; {why}",
                pfn.as_u64(),
                mfn.as_u64(),
                va.as_u64()
            );
        }
    }

    /// The flags with which the one queued update, a leaf of `page`, also covers the queued
    /// invalidations; `None` when it cannot.
    fn single_update_flags(&self, page: VirtAddr) -> Option<UvmFlags> {
        if self.flush_whole_tlb {
            return Some(UvmFlags::TLB_FLUSH_LOCAL);
        }
        match &self.invalidations[..self.invalidation_count] {
            [] => Some(UvmFlags::NONE),
            [only] if *only == page => Some(UvmFlags::INVLPG_LOCAL),
            _ => None,
        }
    }

    fn clear_queue(&mut self) {
        self.len = 0;
        self.index = [0; INDEX_SLOTS];
        self.invalidation_count = 0;
        self.flush_whole_tlb = false;
    }
}

impl<H: PvMmuHypervisor> PageTableBackend for XenPvMmu<'_, H> {
    fn root(&self) -> PhysFrame {
        Self::frame_of(self.root)
    }

    fn read(&self, table: PhysFrame, index: usize) -> PageTableEntry {
        let table = pfn_of(table);
        if self.is_xen_slot(table, index) {
            return PageTableEntry::EMPTY;
        }
        if self.len > 0
            && let Some(entry) = self.queued_entry(self.entry_address(table, index))
        {
            return entry;
        }
        self.guest_entry(self.ops.read_raw(table, index))
    }

    fn write(&mut self, table: PhysFrame, index: usize, entry: PageTableEntry) {
        // The mapper writes every 4 KiB leaf with `write_leaf`: here bit 7 is PSE.
        assert!(
            !(entry.is_present() && entry.is_huge()),
            "entry {index} of table pfn {:#x} would map a 2 MiB or 1 GiB page ({:#x}): Xen PV \
             guests have no superpages (PSE is in Xen's L2_DISALLOW_MASK); map 4 KiB pages",
            pfn_of(table).as_u64(),
            entry.raw()
        );
        self.update(table, index, entry, None);
    }

    fn write_leaf(
        &mut self,
        table: PhysFrame,
        index: usize,
        entry: PageTableEntry,
        page: VirtAddr,
    ) {
        debug_assert_eq!(
            index,
            usize::from(page.p1_index()),
            "{page:?} is not at {index}"
        );
        self.update(table, index, entry, Some(page));
    }

    fn init_table(&mut self, frame: PhysFrame, level: u8) {
        let level_name = match level {
            1 => TableLevel::L1,
            2 => TableLevel::L2,
            3 => TableLevel::L3,
            4 => TableLevel::L4,
            _ => panic!("there is no page-table level {level}"),
        };
        // Xen must see requests in program order: a queued write may still concern this
        // frame or its mapping.
        self.flush();
        self.invalidated_by_last_update = None;
        let pfn = pfn_of(frame);
        let mfn = self.mfn(pfn);
        self.ops.zero_frame(pfn);
        self.map_table_frame(
            pfn,
            mfn,
            PageTableFlags::PRESENT | PageTableFlags::NO_EXECUTE,
            "it needs a 4 KiB mapping in the loaded page tables",
        );
        self.stats.pins += 1;
        self.mmuext_op(
            MmuextOp::pin_table(level_name, mfn),
            format_args!(
                "pin pfn {:#x} (mfn {:#x}) as a level-{level} page table",
                pfn.as_u64(),
                mfn.as_u64()
            ),
            "it must have no writable mapping left (Xen types a frame as writable memory or \
             as a page table, never both)",
        );
    }

    /// Only for a table [`init_table`](PageTableBackend::init_table) pinned: Xen pins only
    /// the root of the tables it builds for a PV guest, so releasing one of its other
    /// bootstrap tables is refused (unpinning a frame that is not pinned).
    fn release_table(&mut self, frame: PhysFrame) {
        // The unlink must reach Xen first: a linked table keeps its type, pinned or not.
        self.flush();
        self.invalidated_by_last_update = None;
        let pfn = pfn_of(frame);
        let mfn = self.mfn(pfn);
        self.stats.unpins += 1;
        self.mmuext_op(
            MmuextOp::unpin_table(mfn),
            format_args!(
                "unpin page-table frame pfn {:#x} (mfn {:#x})",
                pfn.as_u64(),
                mfn.as_u64()
            ),
            "it is not pinned: only tables init_table set up can be released",
        );
        self.map_table_frame(
            pfn,
            mfn,
            PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE,
            "something still links it as a table",
        );
    }

    fn invalidate(&mut self, page: VirtAddr) {
        if !self.batching {
            if self.invalidated_by_last_update.take() != Some(page) {
                self.mmuext_op(
                    MmuextOp::invlpg_local(page.as_u64()),
                    format_args!("invalidate the TLB entry of {:#x}", page.as_u64()),
                    "an invalidation changes no mapping and should never fail",
                );
            }
            return;
        }
        let queued = &self.invalidations[..self.invalidation_count];
        if self.flush_whole_tlb || queued.contains(&page) {
            return;
        }
        if self.invalidation_count == INVALIDATION_CAPACITY {
            self.flush_whole_tlb = true;
            self.invalidation_count = 0;
        } else {
            self.invalidations[self.invalidation_count] = page;
            self.invalidation_count += 1;
        }
    }

    fn flush(&mut self) {
        let count = self.len;
        if count == 0 && self.invalidation_count == 0 && !self.flush_whole_tlb {
            return;
        }
        if count == 1
            && let Some(page) = self.queued[0].page
            && let Some(flags) = self.single_update_flags(page)
        {
            let val = self.updates[0].val;
            self.clear_queue();
            self.update_va_mapping(page, val, flags);
            return;
        }
        let mut ops = [MmuextOp::default(); INVALIDATION_CAPACITY];
        let op_count = if self.flush_whole_tlb {
            ops[0] = MmuextOp::tlb_flush_local();
            1
        } else {
            for (op, page) in ops
                .iter_mut()
                .zip(&self.invalidations[..self.invalidation_count])
            {
                *op = MmuextOp::invlpg_local(page.as_u64());
            }
            self.invalidation_count
        };
        let ops = &ops[..op_count];
        let updates = &self.updates[..count];
        self.stats.hypercalls += 1;
        self.stats.pte_updates += count as u64;
        if ops.is_empty() {
            if let Err(batch) = self.ops.mmu_update(updates) {
                refused_update(updates, batch);
            }
        } else if updates.is_empty() {
            if let Err(batch) = self.ops.mmuext_op(ops) {
                refused_op(ops, batch);
            }
        } else {
            self.stats.multicalls += 1;
            match self.ops.mmu_update_and_ext(updates, ops) {
                Ok(()) => {}
                Err(FlushError::MmuUpdate(batch)) => refused_update(updates, batch),
                Err(FlushError::MmuextOp(batch)) => refused_op(ops, batch),
                Err(FlushError::Multicall(error)) => panic!(
                    "Xen rejected the page-table multicall ({count} updates, {op_count} TLB \
                     operations): {error}"
                ),
            }
        }
        self.clear_queue();
    }

    fn batching(&self) -> bool {
        self.batching
    }

    fn set_batching(&mut self, on: bool) -> bool {
        if !on {
            self.flush();
        }
        self.batching = on;
        self.invalidated_by_last_update = None;
        on
    }
}

/// The real [`PvMmuHypervisor`]: Xen's hypercalls, frames through the physical window.
#[cfg(target_os = "none")]
mod hypercalls {
    use janus_hypercall::xen::error::XenError;
    use janus_hypercall::xen::frame::Pfn;
    use janus_hypercall::xen::hypercall::{HypercallPage, number};
    use janus_hypercall::xen::mmu::{MmuUpdate, MmuextOp, PartialBatch, UvmFlags};
    use janus_hypercall::xen::multicall::MulticallEntry;
    use janus_hypercall::xen::ops::DOMID_SELF;
    use x86_64::{PhysAddr, VirtAddr};

    use super::{FlushError, PvMmuHypervisor};
    use crate::mm::layout::phys_to_virt;
    use crate::mm::paging::entry::ENTRIES;

    /// Xen keeps the top bit of an `mmu_update`/`mmuext_op` count for its continuations
    /// (`MMU_UPDATE_PREEMPTED`); a multicall entry carries one count, so it must fit below.
    const MAX_BATCH: usize = (u32::MAX >> 1) as usize;

    /// Xen's PV MMU hypercalls through the hypercall page; page-table frames read and
    /// zeroed through the physical-memory window ([`phys_to_virt`]).
    pub struct XenHypercalls {
        page: &'static HypercallPage,
    }

    impl XenHypercalls {
        /// # Safety
        /// 1. `page` is the hypercall page of the Xen PV domain whose page tables the
        ///    [`XenPvMmu`](super::XenPvMmu) using this manages.
        /// 2. Every frame named to it is mapped at [`phys_to_virt`] of its address:
        ///    readable for page tables, writable for frames given to `zero_frame`.
        /// 3. The requests made through it keep every mapping the kernel relies on intact
        ///    (the mapper's contract, as for writing entries directly); Xen's checks only
        ///    protect Xen and other domains.
        pub const unsafe fn new(page: &'static HypercallPage) -> Self {
            Self { page }
        }
    }

    fn table_ptr(pfn: Pfn) -> *mut u64 {
        phys_to_virt(PhysAddr::new(pfn.start_address())).as_mut_ptr()
    }

    impl PvMmuHypervisor for XenHypercalls {
        fn frame_va(&self, pfn: Pfn) -> VirtAddr {
            phys_to_virt(PhysAddr::new(pfn.start_address()))
        }

        fn read_raw(&self, pfn: Pfn, index: usize) -> u64 {
            assert!(index < ENTRIES, "page-table index {index} out of range");
            // SAFETY: the table is mapped readable at its window address (constructor
            // contract 2) and index < 512 keeps the read inside its page. Volatile: Xen
            // writes the page behind the compiler's back.
            unsafe { table_ptr(pfn).add(index).read_volatile() }
        }

        fn zero_frame(&mut self, pfn: Pfn) {
            // SAFETY: frames given to zero_frame are mapped writable at their window address
            // (constructor contract 2) and are fresh page-table frames nothing else uses;
            // 512 entries are exactly the page.
            unsafe { core::ptr::write_bytes(table_ptr(pfn), 0, ENTRIES) }
        }

        fn mmu_update(&mut self, updates: &[MmuUpdate]) -> Result<usize, PartialBatch> {
            // SAFETY: constructor contract 3.
            unsafe { self.page.mmu_update(updates) }
        }

        fn mmuext_op(&mut self, ops: &[MmuextOp]) -> Result<usize, PartialBatch> {
            // SAFETY: constructor contract 3.
            unsafe { self.page.mmuext_op(ops) }
        }

        fn update_va_mapping(
            &mut self,
            va: VirtAddr,
            pte: u64,
            flags: UvmFlags,
        ) -> Result<(), XenError> {
            // SAFETY: constructor contract 3.
            unsafe { self.page.update_va_mapping(va.as_u64(), pte, flags) }
        }

        fn mmu_update_and_ext(
            &mut self,
            updates: &[MmuUpdate],
            ops: &[MmuextOp],
        ) -> Result<(), FlushError> {
            assert!(
                updates.len() <= MAX_BATCH && ops.len() <= MAX_BATCH,
                "a batch of {} updates and {} operations does not fit one multicall",
                updates.len(),
                ops.len()
            );
            // `pdone` may be NULL (do_mmu_update/do_mmuext_op check
            // `guest_handle_is_null`), but with it a refusal names the failing request.
            let mut updates_done: u32 = 0;
            let mut ops_done: u32 = 0;
            let domid = u64::from(DOMID_SELF);
            let mut entries = [
                MulticallEntry::new(
                    number::MMU_UPDATE,
                    [
                        updates.as_ptr() as u64,
                        updates.len() as u64,
                        &raw mut updates_done as u64,
                        domid,
                        0,
                        0,
                    ],
                ),
                MulticallEntry::new(
                    number::MMUEXT_OP,
                    [
                        ops.as_ptr() as u64,
                        ops.len() as u64,
                        &raw mut ops_done as u64,
                        domid,
                        0,
                        0,
                    ],
                ),
            ];
            // SAFETY: both entries are the hypercalls the typed wrappers make, with live
            // request slices of the counts given and live `done` counters that outlive the
            // call; what the requests do is constructor contract 3.
            let mut results = unsafe { self.page.multicall(&mut entries) }
                .map_err(FlushError::Multicall)?
                .map(Result::err);
            let (updated, extended) = (results.next().flatten(), results.next().flatten());
            // `done` comes from the host: never report more than was submitted.
            if let Some(error) = updated {
                let done = (updates_done as usize).min(updates.len());
                return Err(FlushError::MmuUpdate(PartialBatch { error, done }));
            }
            if let Some(error) = extended {
                let done = (ops_done as usize).min(ops.len());
                return Err(FlushError::MmuextOp(PartialBatch { error, done }));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::boxed::Box;
    use std::collections::btree_map::Entry;
    use std::collections::{BTreeMap, HashMap};
    use std::ops::Range;
    use std::vec;
    use std::vec::Vec;

    use janus_hypercall::xen::mmu::mmuext;
    use x86_64::structures::paging::{Page, Size2MiB, Size4KiB};

    use super::*;
    use crate::mm::paging::{FrameSource, Mapper, MapperError};
    use crate::rng::XorShift64;

    /// The fake domain's pseudo-physical frames, all identity-mapped at boot as Xen's
    /// domain builder leaves a PV guest (16 MiB: 8 level-1 tables).
    const FRAMES: u64 = 4096;
    /// The fake host's machine frames; those beyond the domain's belong to Xen or others.
    const MACHINE_FRAMES: u64 = FRAMES + 16;
    /// The bootstrap tables Xen built, as pfns: root, L3, L2, then the L1s.
    const BOOT_ROOT: u64 = 1;
    const BOOT_L3: u64 = 2;
    const BOOT_L2: u64 = 3;
    const BOOT_L1: u64 = 4;
    /// Frames the tests hand the mapper for new tables, and frames they map.
    const TABLE_POOL: Range<u64> = 16..512;
    const DATA: Range<u64> = 512..FRAMES;
    /// Root slot 320, far from the identity map and from Xen's slots.
    const WINDOW: u64 = 0xffff_a000_0000_0000;

    const P: u64 = PageTableFlags::PRESENT.bits();
    const RW: u64 = PageTableFlags::WRITABLE.bits();
    const US: u64 = PageTableFlags::USER_ACCESSIBLE.bits();
    const A: u64 = PageTableFlags::ACCESSED.bits();
    const D: u64 = PageTableFlags::DIRTY.bits();
    const PSE: u64 = PageTableFlags::HUGE_PAGE.bits();
    const G: u64 = PageTableFlags::GLOBAL.bits();
    const GK: u64 = GUEST_KERNEL.bits();
    const NX: u64 = PageTableFlags::NO_EXECUTE.bits();
    const AVAIL: u64 = 0xe00;
    const AVAIL_HIGH: u64 = 0x7ff0_0000_0000_0000;
    const ADDR: u64 = 0x000f_ffff_ffff_f000;

    const RW_NX: PageTableFlags = PageTableFlags::WRITABLE.union(PageTableFlags::NO_EXECUTE);

    /// What a frame is to Xen (`PGT_writable_page` or `PGT_ln_page_table`) and how many
    /// references hold that type.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Kind {
        Writable,
        Table(u8),
    }

    #[derive(Clone, Copy, Debug)]
    struct PageType {
        kind: Kind,
        count: u32,
        pinned: bool,
    }

    /// What the guest did, in order: hypercalls, and the zeroing of frames.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Event {
        Zero(u64),
        MmuUpdate(Vec<MmuUpdate>),
        MmuextOp(Vec<MmuextOp>),
        UpdateVaMapping { va: u64, pte: u64, flags: UvmFlags },
        Multicall(Vec<MmuUpdate>, Vec<MmuextOp>),
    }

    /// Plays Xen's PV MMU for what the backend uses (xen/arch/x86/mm.c): machine memory
    /// holds only what was written (data frames are never read), frames carry Xen's type
    /// and type count, and every update is validated the way Xen does — a writable mapping
    /// of a table frame is `EBUSY`, pinning a frame with a writable mapping `EINVAL`, PSE
    /// above L1, GLOBAL above L1 and Xen's root slots `EINVAL`, `update_va_mapping` without
    /// a level-1 table `EINVAL`. Two things are stricter than Xen, on purpose: requests
    /// addressed to a frame that is not a page table are refused (Xen would write it as
    /// plain memory; Janus never asks), and a table must be pinned before it is linked
    /// (Xen would validate it on the spot; Janus always pins first).
    struct FakeXen {
        p2m: Vec<u64>,
        m2p: Vec<u64>,
        memory: HashMap<u64, Box<[u64; ENTRIES]>>,
        types: HashMap<u64, PageType>,
        root: u64,
        /// Machine frames outside the domain it may map (like `shared_info`).
        shared: Vec<u64>,
        /// A machine frame outside the domain whose M2P entry claims a pfn of it.
        stale: u64,
        events: Vec<Event>,
    }

    fn index(va: u64, level: u8) -> usize {
        ((va >> (12 + 9 * (u32::from(level) - 1))) & 0x1ff) as usize
    }

    /// The x86 form of a virtual address: bits 48..64 copy bit 47.
    fn canonical(va: u64) -> u64 {
        (((va << 16) as i64) >> 16) as u64
    }

    /// `adjust_guest_l{1,2,3,4}e` for a 64-bit PV guest (xen/arch/x86/pv/mm.h).
    fn adjust(level: u8, val: u64) -> u64 {
        if val & P == 0 {
            return val;
        }
        match level {
            1 => {
                let mut val = val;
                if val & US == 0 {
                    val |= GK | US;
                }
                if val & GK == 0 {
                    val |= G | US;
                }
                val
            }
            2 | 3 => val | US,
            _ => val | A | US,
        }
    }

    impl FakeXen {
        /// A domain as Xen's domain builder leaves it: every pfn but 0 mapped at its own
        /// address by tables Xen built, typed and mapped read-only, the root pinned.
        fn boot(seed: u64) -> Self {
            let mut rng = XorShift64::new(seed);
            let mut machine: Vec<u64> = (0..MACHINE_FRAMES).collect();
            for i in (1..machine.len()).rev() {
                machine.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let p2m = machine[..FRAMES as usize].to_vec();
            let mut m2p = vec![u64::MAX; MACHINE_FRAMES as usize];
            for (pfn, &mfn) in p2m.iter().enumerate() {
                m2p[mfn as usize] = pfn as u64;
            }
            let stale = machine[FRAMES as usize];
            m2p[stale as usize] = 600;
            let xen_l3 = machine[FRAMES as usize + 1];
            let shared = machine[FRAMES as usize + 2..].to_vec();
            let mut xen = Self {
                root: p2m[BOOT_ROOT as usize],
                p2m,
                m2p,
                memory: HashMap::new(),
                types: HashMap::new(),
                shared,
                stale,
                events: Vec::new(),
            };
            let l1_tables = FRAMES / 512;
            let is_table = |pfn: u64| (BOOT_ROOT..BOOT_L1 + l1_tables).contains(&pfn);
            for pfn in 1..FRAMES {
                let l1 = xen.p2m[(BOOT_L1 + pfn / 512) as usize];
                // L1_PROT | _PAGE_DIRTY (xen/arch/x86/pv/dom0_build.c), tables read-only.
                let rw = if is_table(pfn) { 0 } else { RW };
                xen.set(
                    l1,
                    (pfn % 512) as usize,
                    xen.mfn(pfn) << 12 | P | rw | A | D | US | GK,
                );
                if rw != 0 {
                    xen.types.insert(
                        xen.mfn(pfn),
                        PageType {
                            kind: Kind::Writable,
                            count: 1,
                            pinned: false,
                        },
                    );
                }
            }
            let l2 = xen.mfn(BOOT_L2);
            for i in 0..l1_tables {
                xen.set(
                    l2,
                    i as usize,
                    xen.mfn(BOOT_L1 + i) << 12 | P | RW | A | D | US,
                );
                xen.types.insert(
                    xen.mfn(BOOT_L1 + i),
                    PageType {
                        kind: Kind::Table(1),
                        count: 1,
                        pinned: false,
                    },
                );
            }
            let l3 = xen.mfn(BOOT_L3);
            xen.set(l3, 0, l2 << 12 | P | RW | A | D | US);
            xen.types.insert(
                l2,
                PageType {
                    kind: Kind::Table(2),
                    count: 1,
                    pinned: false,
                },
            );
            xen.set(xen.root, 0, l3 << 12 | P | RW | A | D | US);
            xen.types.insert(
                l3,
                PageType {
                    kind: Kind::Table(3),
                    count: 1,
                    pinned: false,
                },
            );
            for slot in XEN_ROOT_SLOTS {
                xen.set(xen.root, slot, xen_l3 << 12 | P | RW | A | D);
            }
            // Pinned, and loaded in CR3.
            xen.types.insert(
                xen.root,
                PageType {
                    kind: Kind::Table(4),
                    count: 2,
                    pinned: true,
                },
            );
            xen
        }

        fn mfn(&self, pfn: u64) -> u64 {
            self.p2m[pfn as usize]
        }

        fn owned(&self, mfn: u64) -> bool {
            let pfn = self.m2p.get(mfn as usize).copied().unwrap_or(u64::MAX);
            self.p2m.get(pfn as usize) == Some(&mfn)
        }

        fn entry(&self, mfn: u64, index: usize) -> u64 {
            self.memory.get(&mfn).map_or(0, |table| table[index])
        }

        fn set(&mut self, mfn: u64, index: usize, val: u64) {
            self.memory
                .entry(mfn)
                .or_insert_with(|| Box::new([0; ENTRIES]))[index] = val;
        }

        fn table_level(&self, mfn: u64) -> Option<u8> {
            match self.types.get(&mfn) {
                Some(PageType {
                    kind: Kind::Table(level),
                    count,
                    ..
                }) if *count > 0 => Some(*level),
                _ => None,
            }
        }

        /// The frame an entry of a `level` table holds a type reference on.
        fn reference(&self, level: u8, val: u64) -> Option<u64> {
            let target = (val & ADDR) >> 12;
            let counts = val & P != 0 && self.owned(target) && (level > 1 || val & RW != 0);
            counts.then_some(target)
        }

        fn get_writable(&mut self, mfn: u64) -> Result<(), XenError> {
            let t = self.types.entry(mfn).or_insert(PageType {
                kind: Kind::Writable,
                count: 0,
                pinned: false,
            });
            if t.count > 0 && t.kind != Kind::Writable {
                return Err(XenError::Ebusy);
            }
            t.kind = Kind::Writable;
            t.count += 1;
            Ok(())
        }

        fn get_table(&mut self, mfn: u64, level: u8) -> Result<(), XenError> {
            if self.table_level(mfn) != Some(level) {
                return Err(XenError::Einval);
            }
            self.types.get_mut(&mfn).unwrap().count += 1;
            Ok(())
        }

        fn put(&mut self, mfn: u64) {
            let t = self.types.get_mut(&mfn).unwrap();
            assert!(
                t.count > 0,
                "fake Xen: type count of mfn {mfn:#x} underflows"
            );
            t.count -= 1;
        }

        /// `mod_l{1,2,3,4}_entry`: validate, take the new reference, adjust, store, drop the
        /// old reference.
        fn apply(&mut self, table: u64, index: usize, val: u64) -> Result<(), XenError> {
            let level = self.table_level(table).ok_or(XenError::Einval)?;
            if level == 4 && XEN_ROOT_SLOTS.contains(&index) {
                return Err(XenError::Einval);
            }
            if val & P != 0 {
                let global = if level == 1 { G } else { 0 };
                let allowed = ADDR | P | RW | US | A | D | AVAIL | AVAIL_HIGH | NX | global;
                if val & !allowed != 0 {
                    return Err(XenError::Einval);
                }
                let target = (val & ADDR) >> 12;
                match (level, self.owned(target)) {
                    (1, true) if val & RW != 0 => self.get_writable(target)?,
                    (1, true) => {}
                    (1, false) if self.shared.contains(&target) => {}
                    (_, true) => self.get_table(target, level - 1)?,
                    _ => return Err(XenError::Einval),
                }
            }
            let old = self.entry(table, index);
            self.set(table, index, adjust(level, val));
            if let Some(target) = self.reference(level, old) {
                self.put(target);
            }
            Ok(())
        }

        /// The level-1 table and index that map `va` (`map_guest_l1e`).
        fn walk(&self, va: u64) -> Result<(u64, usize), XenError> {
            let mut table = self.root;
            for level in (2..=4).rev() {
                let e = self.entry(table, index(va, level));
                if e & P == 0 || e & PSE != 0 {
                    return Err(XenError::Einval);
                }
                table = (e & ADDR) >> 12;
            }
            Ok((table, index(va, 1)))
        }

        fn pin(&mut self, level: u8, mfn: u64) -> Result<(), XenError> {
            if !self.owned(mfn) {
                return Err(XenError::Einval);
            }
            let empty = self
                .memory
                .get(&mfn)
                .is_none_or(|t| t.iter().all(|&e| e == 0));
            let t = self.types.entry(mfn).or_insert(PageType {
                kind: Kind::Writable,
                count: 0,
                pinned: false,
            });
            if t.pinned || (t.count > 0 && t.kind != Kind::Table(level)) {
                return Err(XenError::Einval);
            }
            if t.count == 0 {
                // Validation; the fake only knows how to validate an empty table.
                if !empty {
                    return Err(XenError::Einval);
                }
                t.kind = Kind::Table(level);
            }
            t.count += 1;
            t.pinned = true;
            Ok(())
        }

        fn unpin(&mut self, mfn: u64) -> Result<(), XenError> {
            match self.types.get_mut(&mfn) {
                Some(t) if t.pinned => {
                    t.pinned = false;
                    t.count -= 1;
                    Ok(())
                }
                _ => Err(XenError::Einval),
            }
        }

        fn do_mmu_update(&mut self, updates: &[MmuUpdate]) -> Result<usize, PartialBatch> {
            for (done, u) in updates.iter().enumerate() {
                let table = u.ptr >> 12;
                let result = if u.ptr & 7 != 0 {
                    Err(XenError::Enosys)
                } else if !self.owned(table) {
                    Err(XenError::Einval)
                } else {
                    self.apply(table, (u.ptr & 0xfff) as usize / 8, u.val)
                };
                result.map_err(|error| PartialBatch { error, done })?;
            }
            Ok(updates.len())
        }

        fn do_mmuext_op(&mut self, ops: &[MmuextOp]) -> Result<usize, PartialBatch> {
            for (done, op) in ops.iter().enumerate() {
                let result = match op.cmd {
                    mmuext::PIN_L1_TABLE..=mmuext::PIN_L4_TABLE => {
                        self.pin((op.cmd - mmuext::PIN_L1_TABLE + 1) as u8, op.arg1)
                    }
                    mmuext::UNPIN_TABLE => self.unpin(op.arg1),
                    mmuext::INVLPG_LOCAL | mmuext::TLB_FLUSH_LOCAL => Ok(()),
                    _ => Err(XenError::Enosys),
                };
                result.map_err(|error| PartialBatch { error, done })?;
            }
            Ok(ops.len())
        }

        fn do_update_va_mapping(&mut self, va: u64, pte: u64) -> Result<(), XenError> {
            let (table, i) = self.walk(va)?;
            if self.table_level(table) != Some(1) {
                return Err(XenError::Einval);
            }
            self.apply(table, i, pte)
        }

        /// The guest reaches frames through its identity window: without a mapping (a
        /// writable one to write), a real guest would fault.
        fn check_mapped(&self, pfn: Pfn, write: bool) {
            let va = pfn.start_address();
            let e = self
                .walk(va)
                .map(|(table, i)| self.entry(table, i))
                .unwrap_or(0);
            assert!(
                e & P != 0,
                "fake Xen: pfn {pfn:?} touched without a mapping"
            );
            assert!(
                !write || e & RW != 0,
                "fake Xen: pfn {pfn:?} written through a read-only mapping"
            );
        }

        fn hypercalls(&self) -> usize {
            self.events
                .iter()
                .filter(|e| !matches!(e, Event::Zero(_)))
                .count()
        }

        /// Every present leaf under root slot `slot`, by virtual address, as stored.
        fn leaves(&self, slot: usize) -> BTreeMap<u64, u64> {
            let mut leaves = BTreeMap::new();
            let visit = |table: u64, level: u8, base: u64, visit: &mut dyn FnMut(u64, u8, u64)| {
                for i in 0..ENTRIES {
                    let e = self.entry(table, i);
                    if e & P != 0 {
                        visit(
                            e,
                            level,
                            base + ((i as u64) << (12 + 9 * (u32::from(level) - 1))),
                        );
                    }
                }
            };
            let l4e = self.entry(self.root, slot);
            if l4e & P == 0 {
                return leaves;
            }
            let base = canonical((slot as u64) << 39);
            visit((l4e & ADDR) >> 12, 3, base, &mut |l3e, _, va3| {
                visit((l3e & ADDR) >> 12, 2, va3, &mut |l2e, _, va2| {
                    visit((l2e & ADDR) >> 12, 1, va2, &mut |l1e, _, va1| {
                        leaves.insert(va1, l1e);
                    });
                });
            });
            leaves
        }

        /// Xen's bookkeeping agrees with the tables: every type count is the number of
        /// references that hold it (entries, pins, CR3).
        fn assert_consistent(&self) {
            let mut expected: HashMap<u64, u32> = HashMap::new();
            *expected.entry(self.root).or_default() += 1;
            for (&mfn, t) in &self.types {
                if t.pinned {
                    *expected.entry(mfn).or_default() += 1;
                }
                let (Kind::Table(level), Some(table)) = (t.kind, self.memory.get(&mfn)) else {
                    continue;
                };
                if t.count == 0 {
                    assert!(table.iter().all(|&e| e & P == 0), "a dead table still maps");
                    continue;
                }
                for (i, &e) in table.iter().enumerate() {
                    if level == 4 && XEN_ROOT_SLOTS.contains(&i) {
                        continue;
                    }
                    if let Some(target) = self.reference(level, e) {
                        *expected.entry(target).or_default() += 1;
                    }
                }
            }
            for (&mfn, t) in &self.types {
                let want = expected.get(&mfn).copied().unwrap_or(0);
                assert_eq!(t.count, want, "type count of mfn {mfn:#x} ({t:?})");
            }
        }
    }

    impl PvMmuHypervisor for FakeXen {
        fn frame_va(&self, pfn: Pfn) -> VirtAddr {
            VirtAddr::new(pfn.start_address())
        }

        fn read_raw(&self, pfn: Pfn, index: usize) -> u64 {
            self.check_mapped(pfn, false);
            self.entry(self.mfn(pfn.as_u64()), index)
        }

        fn zero_frame(&mut self, pfn: Pfn) {
            self.check_mapped(pfn, true);
            self.events.push(Event::Zero(pfn.as_u64()));
            self.memory
                .insert(self.mfn(pfn.as_u64()), Box::new([0; ENTRIES]));
        }

        fn mmu_update(&mut self, updates: &[MmuUpdate]) -> Result<usize, PartialBatch> {
            self.events.push(Event::MmuUpdate(updates.to_vec()));
            self.do_mmu_update(updates)
        }

        fn mmuext_op(&mut self, ops: &[MmuextOp]) -> Result<usize, PartialBatch> {
            self.events.push(Event::MmuextOp(ops.to_vec()));
            self.do_mmuext_op(ops)
        }

        fn update_va_mapping(
            &mut self,
            va: VirtAddr,
            pte: u64,
            flags: UvmFlags,
        ) -> Result<(), XenError> {
            let va = va.as_u64();
            self.events.push(Event::UpdateVaMapping { va, pte, flags });
            self.do_update_va_mapping(va, pte)
        }

        fn mmu_update_and_ext(
            &mut self,
            updates: &[MmuUpdate],
            ops: &[MmuextOp],
        ) -> Result<(), FlushError> {
            self.events
                .push(Event::Multicall(updates.to_vec(), ops.to_vec()));
            let updated = self.do_mmu_update(updates);
            let extended = self.do_mmuext_op(ops);
            updated.map_err(FlushError::MmuUpdate)?;
            extended.map_err(FlushError::MmuextOp)?;
            Ok(())
        }
    }

    /// Frames for new tables; released ones go back.
    struct Pool(Vec<PhysFrame>);

    impl FrameSource for Pool {
        fn allocate_frame(&mut self) -> Option<PhysFrame> {
            self.0.pop()
        }
    }

    fn pool() -> Pool {
        Pool(TABLE_POOL.rev().map(pfn_frame).collect())
    }

    fn pfn_frame(pfn: u64) -> PhysFrame {
        PhysFrame::from_start_address(PhysAddr::new(pfn << 12)).unwrap()
    }

    fn page(va: u64) -> Page<Size4KiB> {
        Page::from_start_address(VirtAddr::new(va)).unwrap()
    }

    type Pv<'a> = Mapper<XenPvMmu<'a, FakeXen>>;

    /// The P2M and M2P a test's mapper borrows, and the fake Xen it gets.
    fn domain() -> (Vec<u64>, Vec<u64>, FakeXen) {
        let xen = FakeXen::boot(0x9e37_79b9_7f4a_7c15);
        let unmoved = (0..FRAMES).filter(|&pfn| xen.mfn(pfn) == pfn).count();
        assert!(unmoved < 8, "the P2M must really translate");
        (xen.p2m.clone(), xen.m2p.clone(), xen)
    }

    fn mapper<'a>(p2m: &'a [u64], m2p: &'a [u64], xen: FakeXen) -> Pv<'a> {
        Mapper::new(XenPvMmu::new(Pfn::new(BOOT_ROOT), p2m, m2p, xen))
    }

    fn fake<'m>(m: &'m Pv<'_>) -> &'m FakeXen {
        &m.backend().ops
    }

    /// Forgets what happened so far, so a test can look at one step.
    fn take_events(m: &mut Pv<'_>) -> Vec<Event> {
        core::mem::take(&mut m.backend_mut().ops.events)
    }

    /// The pfn a new table went to, by elimination from the pool.
    fn tables_taken(frames: &Pool) -> Vec<u64> {
        let left: Vec<u64> = frames.0.iter().map(|f| pfn_of(*f).as_u64()).collect();
        TABLE_POOL.filter(|pfn| !left.contains(pfn)).collect()
    }

    /// Virtual page `k` of the random test: 16 one-GiB regions of 512 pages, so the walk
    /// builds and releases tables at every level below the root.
    fn slot_va(k: u64) -> u64 {
        WINDOW + (k >> 9) * (1 << 30) + (k & 511) * 4096
    }

    fn random_operations_match_a_model(batching: bool) {
        let (p2m, m2p, xen) = domain();
        let mut m = mapper(&p2m, &m2p, xen);
        assert_eq!(m.backend_mut().set_batching(batching), batching);
        assert_eq!(m.backend().batching(), batching);
        let mut frames = pool();
        let mut model: BTreeMap<u64, (u64, bool)> = BTreeMap::new();
        let mut rng = XorShift64::new(0x2545_f491_4f6c_dd1d);
        let (mut writes, mut batches) = (0usize, 0usize);
        // 10,000 operations that change an entry (attempts on absent pages do not count).
        while writes < 10_000 {
            // Mostly small batches, some single operations, some longer than the queue.
            let size = match rng.below(8) {
                0 => 1 + rng.below(3000),
                1..=3 => 1,
                _ => 1 + rng.below(64),
            };
            m.batch(|m| {
                for _ in 0..size {
                    let va = slot_va(rng.below(16 * 512));
                    match rng.below(4) {
                        0 | 1 => {
                            let pfn = DATA.start + rng.below(DATA.end - DATA.start);
                            let r = m.map(page(va), pfn_frame(pfn), RW_NX, &mut frames);
                            match model.entry(va) {
                                Entry::Occupied(_) => {
                                    let already = MapperError::AlreadyMapped(VirtAddr::new(va));
                                    assert_eq!(r, Err(already));
                                }
                                Entry::Vacant(slot) => {
                                    r.unwrap();
                                    slot.insert((pfn, true));
                                    writes += 1;
                                }
                            }
                        }
                        2 => match (m.unmap(page(va)), model.remove(&va)) {
                            (Ok(got), Some((pfn, _))) => {
                                assert_eq!(got, pfn_frame(pfn));
                                writes += 1;
                            }
                            (Err(MapperError::NotMapped(_)), None) => {}
                            other => panic!("unmap disagrees with the model: {other:?}"),
                        },
                        _ => {
                            let writable = rng.below(2) == 0;
                            let flags = if writable {
                                RW_NX
                            } else {
                                PageTableFlags::NO_EXECUTE
                            };
                            let r = m.protect(page(va), flags);
                            match model.get_mut(&va) {
                                Some(e) => {
                                    r.unwrap();
                                    e.1 = writable;
                                    writes += 1;
                                }
                                None => assert!(r.is_err()),
                            }
                        }
                    }
                }
            });
            batches += 1;
            // Now and then one region is emptied and its level-1 table given back.
            if rng.below(12) == 0 {
                let region = rng.below(16);
                let range = slot_va(region * 512)..slot_va(region * 512) + (2 << 20);
                let had_table = m.translate(VirtAddr::new(range.start)).is_some()
                    || model.keys().any(|va| range.contains(va));
                let inside: Vec<u64> = model.range(range.clone()).map(|(va, _)| *va).collect();
                m.batch(|m| {
                    for va in &inside {
                        m.unmap(page(*va)).unwrap();
                        model.remove(va);
                        writes += 1;
                    }
                });
                let released = m.release_empty_tables(
                    VirtAddr::new(range.start)..VirtAddr::new(range.end),
                    |f| frames.0.push(f),
                );
                assert!(released <= 1 && (released == 1 || !had_table));
            }
            if batches % 16 == 0 {
                fake(&m).assert_consistent();
            }
        }

        // The mapper's view: pseudo-physical frames, no trace of Xen's marks.
        for (&va, &(pfn, writable)) in &model {
            let t = m.translate(VirtAddr::new(va)).unwrap();
            assert_eq!(t.phys.as_u64(), pfn << 12);
            assert_eq!(t.flags.contains(PageTableFlags::WRITABLE), writable);
            assert!(
                !t.flags.intersects(XEN_ADDED | MACHINE_FRAME),
                "{:?}",
                t.flags
            );
        }
        // What the "hardware" would walk: machine frames, through the P2M.
        let leaves = fake(&m).leaves(index(WINDOW, 4));
        assert_eq!(leaves.len(), model.len());
        for (va, raw) in &leaves {
            let (pfn, writable) = model[va];
            assert_eq!((raw & ADDR) >> 12, p2m[pfn as usize], "{va:#x}");
            assert_eq!(raw & RW != 0, writable, "{va:#x}");
            assert_eq!(
                raw & (P | US | GK | NX),
                P | US | GK | NX,
                "{va:#x}: {raw:#x}"
            );
        }
        fake(&m).assert_consistent();

        let stats = m.backend().stats();
        assert_eq!(stats.hypercalls, fake(&m).hypercalls() as u64);
        let leaf_calls = fake(&m)
            .events
            .iter()
            .filter(|e| match e {
                Event::UpdateVaMapping { va, .. } => *va >= WINDOW,
                _ => false,
            })
            .count();
        if batching {
            assert!(stats.multicalls > 0);
            assert!(
                leaf_calls <= batches,
                "{leaf_calls} update_va_mapping calls"
            );
            assert!(
                stats.hypercalls * 10 < writes as u64,
                "{stats:?} for {writes} writes"
            );
        } else {
            assert_eq!(stats.multicalls, 0);
            assert_eq!(leaf_calls, writes, "one update_va_mapping per leaf write");
        }
    }

    #[test]
    fn random_batched_operations_match_a_model_and_the_machine_tables() {
        random_operations_match_a_model(true);
    }

    #[test]
    fn random_unbatched_operations_match_a_model_and_the_machine_tables() {
        random_operations_match_a_model(false);
    }

    /// Maps and unmaps one page at `va` so the tables above it exist.
    fn prepare_tables(m: &mut Pv<'_>, frames: &mut Pool, va: u64) {
        m.map(page(va), pfn_frame(DATA.start), RW_NX, frames)
            .unwrap();
        m.unmap(page(va)).unwrap();
        take_events(m);
    }

    #[test]
    fn a_single_update_outside_a_batch_is_one_update_va_mapping() {
        let (p2m, m2p, xen) = domain();
        let mut m = mapper(&p2m, &m2p, xen);
        let mut frames = pool();
        prepare_tables(&mut m, &mut frames, WINDOW);
        let before = m.backend().stats();

        let pfn = DATA.start + 7;
        m.map(page(WINDOW + 4096), pfn_frame(pfn), RW_NX, &mut frames)
            .unwrap();
        let pte = p2m[pfn as usize] << 12 | P | RW | NX;
        // The entry was not present: nothing to invalidate.
        let expected = Event::UpdateVaMapping {
            va: WINDOW + 4096,
            pte,
            flags: UvmFlags::NONE,
        };
        assert_eq!(take_events(&mut m), [expected]);

        m.protect(page(WINDOW + 4096), PageTableFlags::NO_EXECUTE)
            .unwrap();
        let pte = p2m[pfn as usize] << 12 | P | NX;
        let flags = UvmFlags::INVLPG_LOCAL;
        assert_eq!(
            take_events(&mut m),
            [Event::UpdateVaMapping {
                va: WINDOW + 4096,
                pte,
                flags
            }]
        );

        m.unmap(page(WINDOW + 4096)).unwrap();
        assert_eq!(
            take_events(&mut m),
            [Event::UpdateVaMapping {
                va: WINDOW + 4096,
                pte: 0,
                flags
            }]
        );

        let after = m.backend().stats();
        assert_eq!(after.hypercalls - before.hypercalls, 3);
        assert_eq!(after.pte_updates - before.pte_updates, 3);
        assert_eq!(after.multicalls, before.multicalls);
    }

    #[test]
    fn a_batch_of_512_maps_is_one_hypercall_and_protects_add_one_tlb_flush() {
        let (p2m, m2p, xen) = domain();
        let mut m = mapper(&p2m, &m2p, xen);
        let mut frames = pool();
        prepare_tables(&mut m, &mut frames, WINDOW);
        let pages = || (0..512).map(|i| page(WINDOW + i * 4096));

        m.batch(|m| {
            for (i, p) in pages().enumerate() {
                m.map(p, pfn_frame(DATA.start + i as u64), RW_NX, &mut frames)
                    .unwrap();
            }
        });
        let events = take_events(&mut m);
        assert!(
            matches!(&events[..], [Event::MmuUpdate(u)] if u.len() == 512),
            "{events:?}"
        );

        // 512 changed translations: more than the invalidation list holds.
        m.batch(|m| pages().for_each(|p| m.protect(p, PageTableFlags::NO_EXECUTE).unwrap()));
        let events = take_events(&mut m);
        let flush = [MmuextOp::tlb_flush_local()];
        assert!(matches!(&events[..], [Event::Multicall(u, o)] if u.len() == 512 && o == &flush));

        // A few stay a list of single-page invalidations.
        m.batch(|m| {
            pages().take(3).for_each(|p| {
                m.unmap(p).unwrap();
            })
        });
        let events = take_events(&mut m);
        let invlpg: Vec<_> = pages()
            .take(3)
            .map(|p| MmuextOp::invlpg_local(p.start_address().as_u64()))
            .collect();
        assert!(matches!(&events[..], [Event::Multicall(u, o)] if u.len() == 3 && o == &invlpg));
        assert_eq!(m.backend().stats().multicalls, 2);

        // In a fresh region each new table is zeroed, write-protected and pinned first,
        // which flushes the queue: the link to the table above goes out alone. Then the
        // queue fills at 512 (the last link and 511 leaves), and the lone last leaf goes by
        // update_va_mapping.
        let fresh = WINDOW + (1 << 39);
        m.batch(|m| {
            for i in 0..512 {
                let frame = pfn_frame(DATA.start + i);
                m.map(page(fresh + i * 4096), frame, RW_NX, &mut frames)
                    .unwrap();
            }
        });
        let events = take_events(&mut m);
        let pins = events
            .iter()
            .filter(|e| matches!(e, Event::MmuextOp(o) if o[0].cmd <= mmuext::PIN_L4_TABLE))
            .count();
        assert_eq!(pins, 3);
        let updates: Vec<(&str, usize)> = events
            .iter()
            .filter_map(|e| match e {
                Event::MmuUpdate(u) => Some(("mmu_update", u.len())),
                Event::UpdateVaMapping { va, .. } if *va >= fresh => Some(("update_va", 1)),
                Event::Multicall(u, _) => Some(("multicall", u.len())),
                _ => None,
            })
            .collect();
        let expected = [
            ("mmu_update", 1),
            ("mmu_update", 1),
            ("mmu_update", QUEUE_CAPACITY),
            ("update_va", 1),
        ];
        assert_eq!(updates, expected);
        fake(&m).assert_consistent();
    }

    #[test]
    fn batching_off_makes_one_hypercall_per_pte() {
        let (p2m, m2p, xen) = domain();
        let mut m = mapper(&p2m, &m2p, xen);
        let mut frames = pool();
        prepare_tables(&mut m, &mut frames, WINDOW);
        assert!(!m.backend_mut().set_batching(false));
        let before = m.backend().stats().hypercalls;
        m.batch(|m| {
            for i in 0..100 {
                m.map(
                    page(WINDOW + i * 4096),
                    pfn_frame(DATA.start + i),
                    RW_NX,
                    &mut frames,
                )
                .unwrap();
            }
            for i in 0..100 {
                m.unmap(page(WINDOW + i * 4096)).unwrap();
            }
        });
        let events = take_events(&mut m);
        assert_eq!(events.len(), 200);
        for (i, e) in events.iter().enumerate() {
            let Event::UpdateVaMapping { va, flags, .. } = e else {
                panic!("{e:?}")
            };
            assert_eq!(*va, WINDOW + (i as u64 % 100) * 4096);
            // The unmap's invalidation rides on its update: no extra mmuext_op.
            assert_eq!(*flags, UvmFlags::INVLPG_LOCAL);
        }
        assert_eq!(m.backend().stats().hypercalls - before, 200);

        // An invalidation the update did not cover is one mmuext_op.
        m.backend_mut().invalidate(VirtAddr::new(WINDOW));
        assert_eq!(
            take_events(&mut m),
            [Event::MmuextOp(vec![MmuextOp::invlpg_local(WINDOW)])]
        );
        assert!(m.backend_mut().set_batching(true));
    }

    #[test]
    fn a_new_table_is_zeroed_protected_and_pinned_before_it_is_linked_and_undone_on_release() {
        let (p2m, m2p, mut xen) = domain();
        // Garbage in every pool frame: a table that was not zeroed could not be pinned.
        for pfn in TABLE_POOL {
            xen.memory
                .insert(xen.mfn(pfn), Box::new([0xdead_beef_0000_0000; ENTRIES]));
        }
        let mut m = mapper(&p2m, &m2p, xen);
        let mut frames = pool();
        let va = WINDOW + 0x40_0000;
        m.map(page(va), pfn_frame(DATA.start), RW_NX, &mut frames)
            .unwrap();
        let events = take_events(&mut m);
        let tables = tables_taken(&frames);
        assert_eq!(tables.len(), 3);
        let position = |what: &dyn Fn(&Event) -> bool| events.iter().position(what).unwrap();
        for (&pfn, level) in tables.iter().zip([3u8, 2, 1]) {
            let mfn = p2m[pfn as usize];
            let zeroed = position(&|e| *e == Event::Zero(pfn));
            let protected = position(&|e| {
                *e == Event::UpdateVaMapping {
                    va: pfn << 12,
                    pte: mfn << 12 | P | NX,
                    flags: UvmFlags::INVLPG_LOCAL,
                }
            });
            let level_name = [TableLevel::L1, TableLevel::L2, TableLevel::L3][level as usize - 1];
            let pin = MmuextOp::pin_table(level_name, Mfn::new(mfn));
            let pinned = position(&|e| *e == Event::MmuextOp(vec![pin]));
            let linked = position(&|e| match e {
                Event::MmuUpdate(u) | Event::Multicall(u, _) => {
                    u.iter().any(|u| u.val & ADDR == mfn << 12)
                }
                _ => false,
            });
            assert!(
                zeroed < protected && protected < pinned && pinned < linked,
                "{events:?}"
            );
        }
        let stats = m.backend().stats();
        assert_eq!((stats.pins, stats.unpins), (3, 0));

        m.unmap(page(va)).unwrap();
        take_events(&mut m);
        let range = VirtAddr::new(WINDOW)..VirtAddr::new(WINDOW + (1 << 30));
        let mut freed = Vec::new();
        assert_eq!(m.release_empty_tables(range, |f| freed.push(f)), 1);
        let l1 = tables[2];
        assert_eq!(freed, [pfn_frame(l1)]);
        let mfn = p2m[l1 as usize];
        let events = take_events(&mut m);
        // Unlinked (with the invalidation) first, then unpinned, then writable again.
        let unlink = MmuUpdate::normal_pt_update(
            MachineAddr::new((p2m[tables[1] as usize] << 12) + 8 * index(va, 2) as u64),
            0,
        );
        let expected = [
            Event::Multicall(vec![unlink], vec![MmuextOp::invlpg_local(va)]),
            Event::MmuextOp(vec![MmuextOp::unpin_table(Mfn::new(mfn))]),
            Event::UpdateVaMapping {
                va: l1 << 12,
                pte: mfn << 12 | P | RW | NX,
                flags: UvmFlags::INVLPG_LOCAL,
            },
        ];
        assert_eq!(events, expected);
        let t = fake(&m).types[&mfn];
        assert_eq!((t.kind, t.count, t.pinned), (Kind::Writable, 1, false));
        assert_eq!(m.backend().stats().unpins, 1);
        fake(&m).assert_consistent();

        // The frame is plain memory again: it can be a table once more.
        frames.0.push(pfn_frame(l1));
        m.map(page(va), pfn_frame(DATA.start), RW_NX, &mut frames)
            .unwrap();
        assert_eq!(fake(&m).types[&mfn].kind, Kind::Table(1));
    }

    #[test]
    fn foreign_frames_round_trip_and_unknown_machine_frames_read_as_foreign() {
        let (p2m, m2p, xen) = domain();
        let shared = xen.shared[0];
        let stale = xen.stale;
        let mut m = mapper(&p2m, &m2p, xen);
        let mut frames = pool();
        let machine = PhysFrame::from_start_address(PhysAddr::new(shared << 12)).unwrap();
        m.map(page(WINDOW), machine, RW_NX | MACHINE_FRAME, &mut frames)
            .unwrap();
        let t = m.translate(VirtAddr::new(WINDOW + 8)).unwrap();
        assert_eq!(t.phys.as_u64(), (shared << 12) + 8);
        assert!(t.flags.contains(MACHINE_FRAME | RW_NX));
        let raw = fake(&m).leaves(index(WINDOW, 4))[&WINDOW];
        assert_eq!(raw & ADDR, shared << 12, "not translated");

        // An entry Xen (or anyone) wrote for a frame the domain does not own, whose M2P
        // entry names one of the domain's pfns: the P2M check exposes it.
        let victim = 100u64;
        let (l1, i) = fake(&m).walk(victim << 12).unwrap();
        m.backend_mut()
            .ops
            .set(l1, i, stale << 12 | P | A | US | GK);
        let t = m.translate(VirtAddr::new(victim << 12)).unwrap();
        assert_eq!(t.phys.as_u64(), stale << 12);
        assert!(t.flags.contains(MACHINE_FRAME));
        assert_eq!(m2p[stale as usize], 600);
    }

    #[test]
    fn xen_root_slots_read_empty_and_walks_never_enter_them() {
        let (p2m, m2p, xen) = domain();
        let m = mapper(&p2m, &m2p, xen);
        let root = m.backend().root();
        for slot in XEN_ROOT_SLOTS {
            assert_ne!(fake(&m).entry(fake(&m).root, slot), 0);
            assert_eq!(m.backend().read(root, slot), PageTableEntry::EMPTY);
        }
        assert_eq!(m.translate(VirtAddr::new(0xffff_8000_0000_0000)), None);
        let mut leaves = 0;
        m.for_each_leaf(|leaf| {
            assert!(leaf.virt.as_u64() < FRAMES << 12);
            leaves += 1;
        });
        assert_eq!(leaves, FRAMES - 1);
    }

    #[test]
    #[should_panic(expected = "root slot 256 belongs to Xen")]
    fn writing_a_xen_root_slot_is_a_bug() {
        let (p2m, m2p, xen) = domain();
        let mut m = mapper(&p2m, &m2p, xen);
        let _ = m.map(
            page(0xffff_8000_0000_0000),
            pfn_frame(DATA.start),
            RW_NX,
            &mut pool(),
        );
    }

    #[test]
    fn the_marks_xen_adds_are_hidden() {
        let (p2m, m2p, xen) = domain();
        let mut m = mapper(&p2m, &m2p, xen);
        // Xen's own bootstrap entries carry USER and _PAGE_GUEST_KERNEL.
        let raw = {
            let (l1, i) = fake(&m).walk(DATA.start << 12).unwrap();
            fake(&m).entry(l1, i)
        };
        assert_eq!(raw & (US | GK), US | GK);
        let t = m.translate(VirtAddr::new(DATA.start << 12)).unwrap();
        assert_eq!(t.phys.as_u64(), DATA.start << 12);
        assert!(!t.flags.intersects(XEN_ADDED));

        m.map(page(WINDOW), pfn_frame(DATA.start), RW_NX, &mut pool())
            .unwrap();
        let raw = fake(&m).leaves(index(WINDOW, 4))[&WINDOW];
        assert_eq!(raw & (US | GK | G), US | GK);
        let t = m.translate(VirtAddr::new(WINDOW)).unwrap();
        assert_eq!(t.flags, PageTableFlags::PRESENT | RW_NX);
        let root = m.backend().root();
        let l4e = m.backend().read(root, index(WINDOW, 4));
        assert_eq!(
            l4e.flags(),
            PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::ACCESSED
        );
    }

    #[test]
    #[should_panic(expected = "no superpages")]
    fn a_2mib_page_is_refused_with_a_clear_message() {
        let (p2m, m2p, xen) = domain();
        let mut m = mapper(&p2m, &m2p, xen);
        let huge = Page::<Size2MiB>::from_start_address(VirtAddr::new(WINDOW)).unwrap();
        let frame = PhysFrame::<Size2MiB>::from_start_address(PhysAddr::new(2 << 20)).unwrap();
        let _ = m.map_2mib(huge, frame, RW_NX, &mut pool());
    }

    #[test]
    #[should_panic(expected = "pfn 0x2000 lies beyond this domain's 4096 pseudo-physical frames")]
    fn a_frame_beyond_the_p2m_is_a_bug() {
        let (p2m, m2p, xen) = domain();
        let mut m = mapper(&p2m, &m2p, xen);
        let _ = m.map(page(WINDOW), pfn_frame(0x2000), RW_NX, &mut pool());
    }

    #[test]
    #[should_panic(expected = "maps a page-table frame writable")]
    fn mapping_a_page_table_writable_is_refused_by_xen() {
        let (p2m, m2p, xen) = domain();
        let mut m = mapper(&p2m, &m2p, xen);
        let _ = m.map(page(WINDOW), pfn_frame(BOOT_L1), RW_NX, &mut pool());
    }

    #[test]
    #[should_panic(expected = "only tables init_table set up can be released")]
    fn releasing_a_table_xen_built_is_refused() {
        let (p2m, m2p, xen) = domain();
        let mut m = mapper(&p2m, &m2p, xen);
        // The last bootstrap L1 maps only data frames: empty it, then give it back.
        let span = (FRAMES - 512) << 12..FRAMES << 12;
        m.batch(|m| {
            for va in span.clone().step_by(4096) {
                m.unmap(page(va)).unwrap();
            }
        });
        let range = VirtAddr::new(span.start)..VirtAddr::new(span.end);
        m.release_empty_tables(range, |_| {});
    }
}
