//! Map, unmap, protect and translate virtual pages, over any [`PageTableBackend`].

use core::fmt;

use x86_64::structures::paging::{Page, PageTableFlags, PhysFrame, Size2MiB, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

use super::entry::ENTRIES;
use super::{PageTableBackend, PageTableEntry};

/// Where new page-table frames come from.
pub trait FrameSource {
    fn allocate_frame(&mut self) -> Option<PhysFrame>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSize {
    Size4KiB,
    Size2MiB,
    Size1GiB,
}

impl PageSize {
    pub const fn bytes(self) -> u64 {
        match self {
            Self::Size4KiB => 1 << 12,
            Self::Size2MiB => 1 << 21,
            Self::Size1GiB => 1 << 30,
        }
    }

    fn of_leaf_level(level: u8) -> Self {
        match level {
            1 => Self::Size4KiB,
            2 => Self::Size2MiB,
            _ => Self::Size1GiB,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address the virtual address maps to.
    pub phys: PhysAddr,
    /// The leaf's flags.
    pub flags: PageTableFlags,
    pub size: PageSize,
}

/// One mapped page as seen by a full walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub virt: VirtAddr,
    pub phys: PhysAddr,
    pub size: PageSize,
    /// What the CPU enforces: WRITABLE only if every level allows writes, NO_EXECUTE if any
    /// level forbids execution.
    pub effective: PageTableFlags,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapperError {
    /// The page is mapped already; unmap it first.
    AlreadyMapped(VirtAddr),
    /// Nothing is mapped there.
    NotMapped(VirtAddr),
    /// A 2 MiB or 1 GiB page covers the address; 4 KiB operations do not split it.
    HugePage(VirtAddr),
    /// No frame left for a new page table.
    OutOfFrames,
}

impl fmt::Display for MapperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyMapped(a) => write!(f, "{:#x} is already mapped", a.as_u64()),
            Self::NotMapped(a) => write!(f, "{:#x} is not mapped", a.as_u64()),
            Self::HugePage(a) => write!(f, "{:#x} lies in a huge page", a.as_u64()),
            Self::OutOfFrames => write!(f, "out of physical frames for page tables"),
        }
    }
}

/// Flags of entries that point at a lower table: permissions are decided at the leaf.
const TABLE_FLAGS: PageTableFlags = PageTableFlags::PRESENT.union(PageTableFlags::WRITABLE);

fn index(addr: VirtAddr, level: u8) -> usize {
    ((addr.as_u64() >> (12 + 9 * (u64::from(level) - 1))) & 0x1ff) as usize
}

fn frame_of(entry: PageTableEntry) -> PhysFrame {
    PhysFrame::containing_address(entry.addr())
}

pub struct Mapper<B> {
    backend: B,
    batch_depth: u32,
}

impl<B: PageTableBackend> Mapper<B> {
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            batch_depth: 0,
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The backend, once no batch is open (a batch's writes are flushed at its end).
    pub fn into_backend(self) -> B {
        debug_assert_eq!(self.batch_depth, 0, "a batch is still open");
        self.backend
    }

    /// Runs `f` as one batch: the backend flushes once at its end instead of after every
    /// operation. Batches nest; only the outermost flushes.
    pub fn batch<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        self.batch_depth += 1;
        let result = f(self);
        self.batch_depth -= 1;
        if self.batch_depth == 0 {
            self.backend.flush();
        }
        result
    }

    /// The table at `level` that holds `addr`'s entry, creating missing tables on the way.
    fn table_for(
        &mut self,
        addr: VirtAddr,
        level: u8,
        frames: &mut impl FrameSource,
    ) -> Result<PhysFrame, MapperError> {
        let mut table = self.backend.root();
        for upper in ((level + 1)..=4).rev() {
            let i = index(addr, upper);
            let entry = self.backend.read(table, i);
            table = if !entry.is_present() {
                let new = frames.allocate_frame().ok_or(MapperError::OutOfFrames)?;
                self.backend.init_table(new, upper - 1);
                self.backend.write(
                    table,
                    i,
                    PageTableEntry::new(new.start_address(), TABLE_FLAGS),
                );
                new
            } else if entry.is_huge() {
                return Err(MapperError::HugePage(addr));
            } else {
                frame_of(entry)
            };
        }
        Ok(table)
    }

    /// The existing table at `level` that holds `addr`'s entry.
    fn existing_table_for(&self, addr: VirtAddr, level: u8) -> Result<PhysFrame, MapperError> {
        let mut table = self.backend.root();
        for upper in ((level + 1)..=4).rev() {
            let entry = self.backend.read(table, index(addr, upper));
            if !entry.is_present() {
                return Err(MapperError::NotMapped(addr));
            }
            if entry.is_huge() {
                return Err(MapperError::HugePage(addr));
            }
            table = frame_of(entry);
        }
        Ok(table)
    }

    fn map_leaf(
        &mut self,
        addr: VirtAddr,
        level: u8,
        entry: PageTableEntry,
        frames: &mut impl FrameSource,
    ) -> Result<(), MapperError> {
        self.batch(|m| {
            let table = m.table_for(addr, level, frames)?;
            let i = index(addr, level);
            if m.backend.read(table, i).is_present() {
                return Err(MapperError::AlreadyMapped(addr));
            }
            // Not-present entries are never cached by the TLB: no invalidation needed.
            if level == 1 {
                m.backend.write_leaf(table, i, entry, addr);
            } else {
                m.backend.write(table, i, entry);
            }
            Ok(())
        })
    }

    /// Maps a 4 KiB page. `flags` are the leaf's; PRESENT is added.
    pub fn map(
        &mut self,
        page: Page<Size4KiB>,
        frame: PhysFrame<Size4KiB>,
        flags: PageTableFlags,
        frames: &mut impl FrameSource,
    ) -> Result<(), MapperError> {
        let entry = PageTableEntry::new(
            frame.start_address(),
            (flags | PageTableFlags::PRESENT) - PageTableFlags::HUGE_PAGE,
        );
        self.map_leaf(page.start_address(), 1, entry, frames)
    }

    /// Maps a 2 MiB page. `flags` are the leaf's; PRESENT and HUGE_PAGE are added.
    pub fn map_2mib(
        &mut self,
        page: Page<Size2MiB>,
        frame: PhysFrame<Size2MiB>,
        flags: PageTableFlags,
        frames: &mut impl FrameSource,
    ) -> Result<(), MapperError> {
        let entry = PageTableEntry::new(
            frame.start_address(),
            flags | PageTableFlags::PRESENT | PageTableFlags::HUGE_PAGE,
        );
        self.map_leaf(page.start_address(), 2, entry, frames)
    }

    /// Removes a 4 KiB mapping and returns the frame it pointed at. Page tables that become
    /// empty are kept for the next mapping.
    pub fn unmap(&mut self, page: Page<Size4KiB>) -> Result<PhysFrame, MapperError> {
        let addr = page.start_address();
        self.batch(|m| {
            let table = m.existing_table_for(addr, 1)?;
            let i = index(addr, 1);
            let entry = m.backend.read(table, i);
            if !entry.is_present() {
                return Err(MapperError::NotMapped(addr));
            }
            m.backend.write_leaf(table, i, PageTableEntry::EMPTY, addr);
            m.backend.invalidate(addr);
            Ok(frame_of(entry))
        })
    }

    /// Replaces the flags of a mapped 4 KiB page, keeping its frame.
    pub fn protect(
        &mut self,
        page: Page<Size4KiB>,
        flags: PageTableFlags,
    ) -> Result<(), MapperError> {
        let addr = page.start_address();
        self.batch(|m| {
            let table = m.existing_table_for(addr, 1)?;
            let i = index(addr, 1);
            let entry = m.backend.read(table, i);
            if !entry.is_present() {
                return Err(MapperError::NotMapped(addr));
            }
            let flags = (flags | PageTableFlags::PRESENT) - PageTableFlags::HUGE_PAGE;
            m.backend
                .write_leaf(table, i, PageTableEntry::new(entry.addr(), flags), addr);
            m.backend.invalidate(addr);
            Ok(())
        })
    }

    /// Unlinks and hands to `free` every level-1 table that maps nothing and whose whole
    /// 2 MiB span lies in `range`; returns how many. Tables are otherwise kept once created.
    pub fn release_empty_tables(
        &mut self,
        range: core::ops::Range<VirtAddr>,
        mut free: impl FnMut(PhysFrame),
    ) -> usize {
        let span = PageSize::Size2MiB.bytes();
        let start = range.start.as_u64().next_multiple_of(span);
        let end = range.end.as_u64() & !(span - 1);
        self.batch(|m| {
            let mut released = 0;
            for base in (start..end).step_by(span as usize) {
                let addr = VirtAddr::new(base);
                let Ok(upper) = m.existing_table_for(addr, 2) else {
                    continue;
                };
                let i = index(addr, 2);
                let entry = m.backend.read(upper, i);
                if !entry.is_present() || entry.is_huge() {
                    continue;
                }
                let table = frame_of(entry);
                if (0..ENTRIES).any(|j| m.backend.read(table, j).is_present()) {
                    continue;
                }
                m.backend.write(upper, i, PageTableEntry::EMPTY);
                // Drops the paging-structure caches' copy of the unlinked entry too.
                m.backend.invalidate(addr);
                m.backend.release_table(table);
                free(table);
                released += 1;
            }
            released
        })
    }

    pub fn translate(&self, addr: VirtAddr) -> Option<Translation> {
        let mut table = self.backend.root();
        for level in (1..=4).rev() {
            let entry = self.backend.read(table, index(addr, level));
            if !entry.is_present() {
                return None;
            }
            if level == 1 || entry.is_huge() {
                let size = PageSize::of_leaf_level(level);
                let base = if level == 1 {
                    entry.addr()
                } else {
                    entry.huge_addr()
                };
                return Some(Translation {
                    phys: base + (addr.as_u64() & (size.bytes() - 1)),
                    flags: entry.flags(),
                    size,
                });
            }
            table = frame_of(entry);
        }
        None
    }

    /// Calls `visit` for every present leaf, in address order.
    pub fn for_each_leaf(&self, mut visit: impl FnMut(Leaf)) {
        let all = PageTableFlags::WRITABLE;
        self.visit_table(self.backend.root(), 4, 0, all, &mut visit);
    }

    fn visit_table(
        &self,
        table: PhysFrame,
        level: u8,
        base: u64,
        inherited: PageTableFlags,
        visit: &mut impl FnMut(Leaf),
    ) {
        let span = 1u64 << (12 + 9 * (u64::from(level) - 1));
        for i in 0..ENTRIES {
            let entry = self.backend.read(table, i);
            if !entry.is_present() {
                continue;
            }
            let virt = base + i as u64 * span;
            let mut effective = entry.flags();
            if !inherited.contains(PageTableFlags::WRITABLE) {
                effective.remove(PageTableFlags::WRITABLE);
            }
            effective |= inherited & PageTableFlags::NO_EXECUTE;
            if level == 1 || entry.is_huge() {
                let phys = if level == 1 {
                    entry.addr()
                } else {
                    entry.huge_addr()
                };
                visit(Leaf {
                    virt: VirtAddr::new_truncate(virt),
                    phys,
                    size: PageSize::of_leaf_level(level),
                    effective,
                });
            } else {
                self.visit_table(frame_of(entry), level - 1, virt, effective, visit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    use super::*;

    /// Page tables in host memory, keyed by frame address.
    #[derive(Default)]
    struct Arena {
        tables: BTreeMap<u64, [PageTableEntry; ENTRIES]>,
        root: u64,
        invalidated: Vec<VirtAddr>,
        flushes: usize,
    }

    impl Arena {
        fn new(frames: &mut Frames) -> Self {
            let root = frames.allocate_frame().unwrap();
            let mut arena = Self {
                root: root.start_address().as_u64(),
                ..Self::default()
            };
            arena.init_table(root, 4);
            arena
        }
    }

    impl PageTableBackend for Arena {
        fn root(&self) -> PhysFrame {
            PhysFrame::containing_address(PhysAddr::new(self.root))
        }
        fn read(&self, table: PhysFrame, index: usize) -> PageTableEntry {
            self.tables[&table.start_address().as_u64()][index]
        }
        fn write(&mut self, table: PhysFrame, index: usize, entry: PageTableEntry) {
            self.tables
                .get_mut(&table.start_address().as_u64())
                .expect("write to a frame that is not a table")[index] = entry;
        }
        fn init_table(&mut self, frame: PhysFrame, _level: u8) {
            let old = self.tables.insert(
                frame.start_address().as_u64(),
                [PageTableEntry::EMPTY; ENTRIES],
            );
            assert!(old.is_none(), "frame reused as a table");
        }
        fn release_table(&mut self, frame: PhysFrame) {
            let table = self
                .tables
                .remove(&frame.start_address().as_u64())
                .expect("released a frame that is not a table");
            assert!(table.iter().all(|e| !e.is_present()));
        }
        fn invalidate(&mut self, page: VirtAddr) {
            self.invalidated.push(page);
        }
        fn flush(&mut self) {
            self.flushes += 1;
        }
    }

    /// Like a Xen PV backend: writes are queued until `flush`; reads see the queue.
    struct Queued {
        arena: Arena,
        queue: Vec<(PhysFrame, usize, PageTableEntry)>,
        reads_of_queued: Cell<usize>,
    }

    impl PageTableBackend for Queued {
        fn root(&self) -> PhysFrame {
            self.arena.root()
        }
        fn read(&self, table: PhysFrame, index: usize) -> PageTableEntry {
            match self
                .queue
                .iter()
                .rev()
                .find(|q| q.0 == table && q.1 == index)
            {
                Some(q) => {
                    self.reads_of_queued.set(self.reads_of_queued.get() + 1);
                    q.2
                }
                None => self.arena.read(table, index),
            }
        }
        fn write(&mut self, table: PhysFrame, index: usize, entry: PageTableEntry) {
            self.queue.push((table, index, entry));
        }
        fn init_table(&mut self, frame: PhysFrame, level: u8) {
            self.arena.init_table(frame, level);
        }
        fn release_table(&mut self, frame: PhysFrame) {
            self.flush();
            self.arena.release_table(frame);
        }
        fn invalidate(&mut self, page: VirtAddr) {
            self.arena.invalidate(page);
        }
        fn flush(&mut self) {
            for (table, index, entry) in self.queue.drain(..) {
                self.arena.write(table, index, entry);
            }
            self.arena.flush();
        }
    }

    struct Frames {
        next: u64,
        left: usize,
    }

    impl FrameSource for Frames {
        fn allocate_frame(&mut self) -> Option<PhysFrame> {
            self.left = self.left.checked_sub(1)?;
            self.next += 4096;
            Some(PhysFrame::containing_address(PhysAddr::new(self.next)))
        }
    }

    fn frames() -> Frames {
        Frames {
            next: 0x10_0000,
            left: usize::MAX,
        }
    }

    fn page(addr: u64) -> Page<Size4KiB> {
        Page::from_start_address(VirtAddr::new(addr)).unwrap()
    }

    fn frame(addr: u64) -> PhysFrame {
        PhysFrame::from_start_address(PhysAddr::new(addr)).unwrap()
    }

    const RW_NX: PageTableFlags = PageTableFlags::WRITABLE.union(PageTableFlags::NO_EXECUTE);

    #[test]
    fn map_translate_protect_unmap() {
        let mut f = frames();
        let mut m = Mapper::new(Arena::new(&mut f));
        let va = 0xffff_a000_0012_3000;
        m.map(page(va), frame(0x5000_0000), RW_NX, &mut f).unwrap();
        let t = m.translate(VirtAddr::new(va + 0x10)).unwrap();
        assert_eq!(t.phys, PhysAddr::new(0x5000_0010));
        assert_eq!(t.size, PageSize::Size4KiB);
        assert!(t.flags.contains(RW_NX | PageTableFlags::PRESENT));

        m.protect(page(va), PageTableFlags::NO_EXECUTE).unwrap();
        let t = m.translate(VirtAddr::new(va)).unwrap();
        assert!(!t.flags.contains(PageTableFlags::WRITABLE));
        assert_eq!(t.phys, PhysAddr::new(0x5000_0000));

        assert_eq!(m.unmap(page(va)), Ok(frame(0x5000_0000)));
        assert_eq!(m.translate(VirtAddr::new(va)), None);
        assert_eq!(m.backend().invalidated, [VirtAddr::new(va); 2]);
    }

    #[test]
    fn errors_are_reported_not_ignored() {
        let mut f = frames();
        let mut m = Mapper::new(Arena::new(&mut f));
        let va = VirtAddr::new(0x40_0000);
        assert_eq!(m.unmap(page(va.as_u64())), Err(MapperError::NotMapped(va)));
        assert_eq!(
            m.protect(page(va.as_u64()), RW_NX),
            Err(MapperError::NotMapped(va))
        );
        m.map(page(va.as_u64()), frame(0x9000), RW_NX, &mut f)
            .unwrap();
        assert_eq!(
            m.map(page(va.as_u64()), frame(0xa000), RW_NX, &mut f),
            Err(MapperError::AlreadyMapped(va))
        );
        // The neighbour in the same table unmaps cleanly while the table stays.
        assert_eq!(
            m.unmap(page(va.as_u64() + 4096)),
            Err(MapperError::NotMapped(va + 4096u64))
        );
    }

    #[test]
    fn huge_pages_translate_and_block_4k_operations() {
        let mut f = frames();
        let mut m = Mapper::new(Arena::new(&mut f));
        let va = 0x20_0000u64;
        m.map_2mib(
            Page::from_start_address(VirtAddr::new(va)).unwrap(),
            PhysFrame::from_start_address(PhysAddr::new(0x4000_0000)).unwrap(),
            RW_NX,
            &mut f,
        )
        .unwrap();
        let t = m.translate(VirtAddr::new(va + 0x1234)).unwrap();
        assert_eq!(t.phys, PhysAddr::new(0x4000_1234));
        assert_eq!(t.size, PageSize::Size2MiB);
        let inside = VirtAddr::new(va + 0x3000);
        assert_eq!(
            m.map(page(inside.as_u64()), frame(0x1000), RW_NX, &mut f),
            Err(MapperError::HugePage(inside))
        );
        assert_eq!(
            m.unmap(page(inside.as_u64())),
            Err(MapperError::HugePage(inside))
        );
    }

    #[test]
    fn running_out_of_frames_is_an_error() {
        let mut f = frames();
        let mut m = Mapper::new(Arena::new(&mut f));
        f.left = 2;
        assert_eq!(
            m.map(page(0x1000), frame(0x1000), RW_NX, &mut f),
            Err(MapperError::OutOfFrames)
        );
        f.left = 1;
        m.map(page(0x1000), frame(0x1000), RW_NX, &mut f).unwrap();
    }

    #[test]
    fn each_operation_flushes_but_a_batch_flushes_once() {
        let mut f = frames();
        let mut m = Mapper::new(Arena::new(&mut f));
        m.map(page(0x1000), frame(0x1000), RW_NX, &mut f).unwrap();
        m.unmap(page(0x1000)).unwrap();
        assert_eq!(m.backend().flushes, 2);
        m.batch(|m| {
            for i in 0..100 {
                m.map(page(0x10_0000 + i * 4096), frame(0x1000), RW_NX, &mut f)
                    .unwrap();
            }
            m.batch(|m| m.unmap(page(0x10_0000)).unwrap());
        });
        assert_eq!(m.backend().flushes, 3);
    }

    #[test]
    fn queued_backend_sees_its_own_writes_inside_a_batch() {
        let mut f = frames();
        let arena = Arena::new(&mut f);
        let mut m = Mapper::new(Queued {
            arena,
            queue: Vec::new(),
            reads_of_queued: Cell::new(0),
        });
        m.batch(|m| {
            // Two pages under the same new tables: the second walk must find the tables the
            // first one queued, not allocate them again.
            m.map(page(0x7000_0000), frame(0x1000), RW_NX, &mut f)
                .unwrap();
            m.map(page(0x7000_1000), frame(0x2000), RW_NX, &mut f)
                .unwrap();
            assert_eq!(
                m.translate(VirtAddr::new(0x7000_1000))
                    .unwrap()
                    .phys
                    .as_u64(),
                0x2000
            );
            assert!(!m.backend().queue.is_empty());
        });
        assert!(m.backend().queue.is_empty());
        assert!(m.backend().reads_of_queued.get() > 0);
        // root + PDPT + PD + PT, nothing allocated twice.
        assert_eq!(m.backend().arena.tables.len(), 4);
        assert_eq!(
            m.translate(VirtAddr::new(0x7000_0000))
                .unwrap()
                .phys
                .as_u64(),
            0x1000
        );
    }

    #[test]
    fn empty_tables_are_released_and_full_ones_kept() {
        let mut f = frames();
        let mut m = Mapper::new(Arena::new(&mut f));
        let base = 0xffff_a000_0000_0000u64;
        // Three 2 MiB spans get a level-1 table each; the middle one keeps a page.
        for span in 0..3 {
            m.map(page(base + span * 0x20_0000), frame(0x1000), RW_NX, &mut f)
                .unwrap();
        }
        m.unmap(page(base)).unwrap();
        m.unmap(page(base + 0x40_0000)).unwrap();
        let tables = m.backend().tables.len();
        let mut freed = Vec::new();
        let range = VirtAddr::new(base)..VirtAddr::new(base + 0x60_0000);
        assert_eq!(m.release_empty_tables(range.clone(), |f| freed.push(f)), 2);
        assert_eq!(freed.len(), 2);
        assert_eq!(m.backend().tables.len(), tables - 2);
        assert!(m.translate(VirtAddr::new(base + 0x20_0000)).is_some());
        // Mapping again into a released span builds a fresh table, which stays while used.
        m.map(page(base), frame(0x2000), RW_NX, &mut f).unwrap();
        assert_eq!(
            m.translate(VirtAddr::new(base)).unwrap().phys.as_u64(),
            0x2000
        );
        assert_eq!(m.release_empty_tables(range.clone(), |_| {}), 0);
        m.unmap(page(base)).unwrap();
        assert_eq!(m.release_empty_tables(range, |_| {}), 1);
    }

    #[test]
    fn walk_reports_effective_permissions() {
        let mut f = frames();
        let mut m = Mapper::new(Arena::new(&mut f));
        m.map(page(0x1000), frame(0x1000), RW_NX, &mut f).unwrap();
        m.map(page(0x2000), frame(0x2000), PageTableFlags::empty(), &mut f)
            .unwrap();
        m.map(page(0xffff_8000_0000_0000), frame(0x3000), RW_NX, &mut f)
            .unwrap();
        let mut leaves = Vec::new();
        m.for_each_leaf(|l| leaves.push(l));
        assert_eq!(leaves.len(), 3);
        assert_eq!(leaves[0].virt.as_u64(), 0x1000);
        assert!(leaves[0].effective.contains(RW_NX));
        assert!(!leaves[1].effective.contains(PageTableFlags::WRITABLE));
        assert!(!leaves[1].effective.contains(PageTableFlags::NO_EXECUTE));
        assert_eq!(leaves[2].virt.as_u64(), 0xffff_8000_0000_0000);
    }

    /// A deterministic random sequence of operations checked against a model.
    #[test]
    fn random_operations_match_a_model() {
        let mut f = frames();
        let mut m = Mapper::new(Arena::new(&mut f));
        let mut model: BTreeMap<u64, (u64, bool)> = BTreeMap::new();
        let mut rng = crate::rng::XorShift64::new(0x2545_f491_4f6c_dd1d);
        let mut next = || rng.next_u64();
        for _ in 0..20_000 {
            let va = 0xffff_a000_0000_0000 + (next() % 4096) * 4096;
            let pa = (next() % 0x10_0000) * 4096;
            match next() % 4 {
                0 | 1 => {
                    let r = m.map(page(va), frame(pa), RW_NX, &mut f);
                    match model.entry(va) {
                        std::collections::btree_map::Entry::Occupied(_) => {
                            assert_eq!(r, Err(MapperError::AlreadyMapped(VirtAddr::new(va))));
                        }
                        std::collections::btree_map::Entry::Vacant(slot) => {
                            r.unwrap();
                            slot.insert((pa, true));
                        }
                    }
                }
                2 => match (m.unmap(page(va)), model.remove(&va)) {
                    (Ok(got), Some((pa, _))) => assert_eq!(got, frame(pa)),
                    (Err(MapperError::NotMapped(_)), None) => {}
                    other => panic!("unmap disagrees with model: {other:?}"),
                },
                _ => {
                    let r = m.protect(page(va), PageTableFlags::NO_EXECUTE);
                    match model.get_mut(&va) {
                        Some(e) => {
                            r.unwrap();
                            e.1 = false;
                        }
                        None => assert!(r.is_err()),
                    }
                }
            }
        }
        let mut seen = 0;
        m.for_each_leaf(|leaf| {
            let (pa, writable) = model[&leaf.virt.as_u64()];
            assert_eq!(leaf.phys.as_u64(), pa);
            assert_eq!(leaf.effective.contains(PageTableFlags::WRITABLE), writable);
            seen += 1;
        });
        assert_eq!(seen, model.len());
    }
}
