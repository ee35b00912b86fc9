//! The physical 4 KiB frame allocator.
//!
//! Two bitmaps with one bit per frame, from frame 0 up to the top of usable RAM, in storage
//! the caller provides (no heap exists yet when this runs):
//! - `managed`: the frame is usable RAM that nothing else owns. Fixed after [`FrameAllocator::new`].
//! - `allocated`: the frame is currently handed out.
//!
//! Keeping `managed` separately lets [`FrameAllocator::free`] refuse a frame it never handed
//! out (a kernel-image or start-info frame, say) instead of silently adopting it.
//! At 2 bits per 4 KiB frame the storage costs 64 KiB per GiB of RAM.

use core::fmt;
use core::ops::Range;

use x86_64::PhysAddr;
use x86_64::structures::paging::{PhysFrame, Size4KiB};

use crate::mm::memory_map::MemoryMap;

/// Size of a frame.
pub const FRAME_SIZE: u64 = 4096;

/// Frames below 1 MiB are never handed out: real-mode and firmware structures (BIOS data,
/// EBDA, option ROMs) live there, and some VMMs report parts of it as RAM anyway.
const LOW_MEMORY_END: u64 = 1 << 20;

const BITS_PER_WORD: u64 = u64::BITS as u64;

/// Why the allocator could not be built or a frame could not be freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameAllocatorError {
    /// The storage slice is shorter than [`bitmap_words`] says it must be.
    StorageTooSmall {
        needed_words: usize,
        provided_words: usize,
    },
    /// The frame lies below 1 MiB, which this allocator never hands out.
    BelowFirstMib { frame: PhysFrame<Size4KiB> },
    /// The frame lies above the top of usable RAM (`limit`, exclusive).
    OutOfRange {
        frame: PhysFrame<Size4KiB>,
        limit: u64,
    },
    /// The frame is not currently allocated: a double free, or a frame that this allocator
    /// never handed out (reserved, or not RAM).
    NotAllocated { frame: PhysFrame<Size4KiB> },
}

impl FrameAllocatorError {
    /// Short kebab-case tag for machine-readable lines.
    pub const fn reason(&self) -> &'static str {
        match self {
            FrameAllocatorError::StorageTooSmall { .. } => "frame-bitmap-too-small",
            FrameAllocatorError::BelowFirstMib { .. } => "frame-below-1mib",
            FrameAllocatorError::OutOfRange { .. } => "frame-out-of-range",
            FrameAllocatorError::NotAllocated { .. } => "frame-not-allocated",
        }
    }
}

impl fmt::Display for FrameAllocatorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameAllocatorError::StorageTooSmall {
                needed_words,
                provided_words,
            } => write!(
                f,
                "frame bitmap storage has {provided_words} words, the memory map needs \
                 {needed_words}: size it with frame_allocator::bitmap_words"
            ),
            FrameAllocatorError::BelowFirstMib { frame } => write!(
                f,
                "cannot free frame {:#x}: frames below 1 MiB are never allocated",
                frame.start_address().as_u64()
            ),
            FrameAllocatorError::OutOfRange { frame, limit } => write!(
                f,
                "cannot free frame {:#x}: it lies above the top of usable RAM at {limit:#x}",
                frame.start_address().as_u64()
            ),
            FrameAllocatorError::NotAllocated { frame } => write!(
                f,
                "cannot free frame {:#x}: it is not currently allocated (double free, or a \
                 frame this allocator never handed out)",
                frame.start_address().as_u64()
            ),
        }
    }
}

/// Frames covered by the bitmaps: every frame below the top of usable RAM. A partial last
/// frame cannot be usable, so the division rounds down.
fn frame_count(map: &MemoryMap) -> u64 {
    map.usable_end() / FRAME_SIZE
}

fn words_per_bitmap(frames: u64) -> usize {
    usize::try_from(frames.div_ceil(BITS_PER_WORD)).unwrap_or(usize::MAX)
}

/// How many `u64` words of storage [`FrameAllocator::new`] needs for `map` (both bitmaps).
pub fn bitmap_words(map: &MemoryMap) -> usize {
    words_per_bitmap(frame_count(map)).saturating_mul(2)
}

const fn align_up(addr: u64) -> Option<u64> {
    match addr.checked_add(FRAME_SIZE - 1) {
        Some(a) => Some(a & !(FRAME_SIZE - 1)),
        None => None,
    }
}

const fn align_down(addr: u64) -> u64 {
    addr & !(FRAME_SIZE - 1)
}

/// The usable RAM as maximal runs: adjacent usable regions merge, so a frame straddling
/// their boundary is still usable.
fn usable_runs(map: &MemoryMap) -> impl Iterator<Item = Range<u64>> + '_ {
    let mut regions = map.usable().peekable();
    core::iter::from_fn(move || {
        let first = regions.next()?;
        let mut run = first.start..first.end();
        while let Some(next) = regions.next_if(|r| r.start == run.end) {
            run.end = next.end();
        }
        Some(run)
    })
}

/// Finds where to put the allocator's storage: the lowest 4 KiB-aligned start of a
/// `bytes`-long range inside usable RAM (one run of adjacent usable regions), at or above
/// 1 MiB, ending at or below `below`, overlapping none of the `reserved` ranges (empty ranges
/// are ignored). The caller must then pass that range among the reserved ranges to
/// [`FrameAllocator::new`].
pub fn place_bitmap(
    map: &MemoryMap,
    reserved: &[Range<u64>],
    bytes: u64,
    below: u64,
) -> Option<u64> {
    for run in usable_runs(map) {
        let Some(mut start) = align_up(run.start.max(LOW_MEMORY_END)) else {
            continue;
        };
        while let Some(end) = start.checked_add(bytes) {
            if end > run.end || end > below {
                break;
            }
            let blocker = reserved
                .iter()
                .filter(|r| r.start < r.end)
                .find(|r| r.start < end && start < r.end);
            match blocker {
                None => return Some(start),
                // Every aligned start below the blocker's end would overlap it too.
                Some(r) => match align_up(r.end) {
                    Some(next) => start = next,
                    None => break,
                },
            }
        }
    }
    None
}

/// Sets (`value` true) or clears the bits `[first, last)` of `bitmap`, a word at a time where
/// it can. Bits past the end of `bitmap` are ignored.
fn write_bits(bitmap: &mut [u64], first: u64, last: u64, value: bool) {
    let limit = (bitmap.len() as u64).saturating_mul(BITS_PER_WORD);
    let last = last.min(limit);
    let mut bit = first;
    while bit < last {
        let word = (bit / BITS_PER_WORD) as usize;
        let offset = bit % BITS_PER_WORD;
        let count = (BITS_PER_WORD - offset).min(last - bit);
        let mask = if count == BITS_PER_WORD {
            u64::MAX
        } else {
            ((1u64 << count) - 1) << offset
        };
        if value {
            bitmap[word] |= mask;
        } else {
            bitmap[word] &= !mask;
        }
        bit += count;
    }
}

/// The physical frame allocator. See the module documentation for its layout.
pub struct FrameAllocator<'a> {
    managed: &'a mut [u64],
    allocated: &'a mut [u64],
    frames: u64,
    total: u64,
    free: u64,
    /// Word index where the next search starts (next fit): recently freed frames below it
    /// wait until the search wraps, which spreads reuse and keeps allocation O(1) amortized.
    cursor: usize,
}

impl<'a> FrameAllocator<'a> {
    /// Takes charge of the usable RAM in `map`, except the first MiB and the `reserved`
    /// ranges (rounded outward to whole frames). `reserved` must cover everything already in
    /// use: the kernel image, boot stack, start info, command line, modules, and `storage`
    /// itself. Usable regions are rounded inward to whole frames.
    pub fn new(
        storage: &'a mut [u64],
        map: &MemoryMap,
        reserved: &[Range<u64>],
    ) -> Result<Self, FrameAllocatorError> {
        let frames = frame_count(map);
        let words = words_per_bitmap(frames);
        let needed_words = bitmap_words(map);
        if storage.len() < needed_words {
            return Err(FrameAllocatorError::StorageTooSmall {
                needed_words,
                provided_words: storage.len(),
            });
        }
        let (managed, rest) = storage.split_at_mut(words);
        let allocated = &mut rest[..words];
        managed.fill(0);
        allocated.fill(0);

        for run in usable_runs(map) {
            if let Some(first) = align_up(run.start) {
                write_bits(managed, first / FRAME_SIZE, run.end / FRAME_SIZE, true);
            }
        }
        write_bits(managed, 0, LOW_MEMORY_END / FRAME_SIZE, false);
        for range in reserved.iter().filter(|r| r.start < r.end) {
            let last = align_up(range.end).map_or(frames, |end| end / FRAME_SIZE);
            write_bits(managed, align_down(range.start) / FRAME_SIZE, last, false);
        }

        let total = managed.iter().map(|w| u64::from(w.count_ones())).sum();
        Ok(FrameAllocator {
            managed,
            allocated,
            frames,
            total,
            free: total,
            cursor: 0,
        })
    }

    /// Hands out a free frame, or `None` when every managed frame is allocated. The frame's
    /// contents are whatever was there: zeroing needs a mapping, which the caller has.
    pub fn allocate(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let words = self.allocated.len();
        for step in 0..words {
            let index = (self.cursor + step) % words;
            let available = self.managed[index] & !self.allocated[index];
            if available == 0 {
                continue;
            }
            let bit = u64::from(available.trailing_zeros());
            let number = index as u64 * BITS_PER_WORD + bit;
            let addr = PhysAddr::try_new(number * FRAME_SIZE).ok()?;
            let frame = PhysFrame::from_start_address(addr).ok()?;
            self.allocated[index] |= 1 << bit;
            self.free -= 1;
            self.cursor = index;
            return Some(frame);
        }
        None
    }

    /// Returns `frame` to the pool. Refuses frames that are not currently allocated.
    pub fn free(&mut self, frame: PhysFrame<Size4KiB>) -> Result<(), FrameAllocatorError> {
        let addr = frame.start_address().as_u64();
        if addr < LOW_MEMORY_END {
            return Err(FrameAllocatorError::BelowFirstMib { frame });
        }
        let number = addr / FRAME_SIZE;
        if number >= self.frames {
            return Err(FrameAllocatorError::OutOfRange {
                frame,
                limit: self.frames * FRAME_SIZE,
            });
        }
        let index = (number / BITS_PER_WORD) as usize;
        let mask = 1u64 << (number % BITS_PER_WORD);
        if self.allocated[index] & mask == 0 {
            return Err(FrameAllocatorError::NotAllocated { frame });
        }
        self.allocated[index] &= !mask;
        self.free += 1;
        Ok(())
    }

    /// Hands out `count` physically consecutive free frames and returns the first: DMA
    /// buffers a device walks by physical address need that. First fit from the bottom, so
    /// it costs a scan of the bitmap; only device setup asks.
    pub fn allocate_contiguous(&mut self, count: u64) -> Option<PhysFrame<Size4KiB>> {
        if count == 0 {
            return None;
        }
        let mut run_start = 0;
        let mut run = 0;
        for number in LOW_MEMORY_END / FRAME_SIZE..self.frames {
            if self.is_available(number) {
                if run == 0 {
                    run_start = number;
                }
                run += 1;
                if run == count {
                    write_bits(self.allocated, run_start, run_start + count, true);
                    self.free -= count;
                    let addr = PhysAddr::try_new(run_start * FRAME_SIZE).ok()?;
                    return PhysFrame::from_start_address(addr).ok();
                }
            } else {
                run = 0;
            }
        }
        None
    }

    /// Returns `count` frames from `first` on, as [`Self::allocate_contiguous`] gave them.
    /// Checks every frame before freeing any, so a wrong range changes nothing.
    pub fn free_contiguous(
        &mut self,
        first: PhysFrame<Size4KiB>,
        count: u64,
    ) -> Result<(), FrameAllocatorError> {
        let frames = || (0..count).map(|i| first + i);
        if let Some(frame) = frames().find(|f| !self.is_allocated(f.start_address().as_u64())) {
            return Err(FrameAllocatorError::NotAllocated { frame });
        }
        for frame in frames() {
            self.free(frame)?;
        }
        Ok(())
    }

    fn is_available(&self, number: u64) -> bool {
        let index = (number / BITS_PER_WORD) as usize;
        let mask = 1u64 << (number % BITS_PER_WORD);
        self.managed[index] & !self.allocated[index] & mask != 0
    }

    fn is_allocated(&self, addr: u64) -> bool {
        let number = addr / FRAME_SIZE;
        number < self.frames
            && self.allocated[(number / BITS_PER_WORD) as usize] & (1 << (number % BITS_PER_WORD))
                != 0
    }

    /// Frames that [`Self::allocate`] can still hand out.
    pub fn free_frames(&self) -> u64 {
        self.free
    }

    /// One past the highest frame number the bitmaps cover (the top of usable RAM in
    /// frames): every frame [`Self::allocate`] returns has a smaller number.
    pub fn frame_limit(&self) -> u64 {
        self.frames
    }

    /// Frames under management: usable RAM above 1 MiB minus the reserved ranges. A full
    /// drain hands out exactly this many.
    pub fn total_frames(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::memory_map::MemoryMap;
    use crate::rng::XorShift64 as Rng;
    use alloc::string::ToString;
    use alloc::vec;
    use alloc::vec::Vec;
    use std::collections::HashSet;

    const RAM: u32 = 1;
    const RESERVED: u32 = 2;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;

    fn qemu_microvm() -> MemoryMap {
        MemoryMap::from_entries([
            (0, 0x9_fc00, RAM),
            (0x9_fc00, 0x400, RESERVED),
            (0xf_0000, 0x1_0000, RESERVED),
            (0x10_0000, 0x7f0_0000, RAM),
        ])
        .unwrap()
    }

    /// `-M q35 -m 3G`: 2 GiB below the PCI hole, 1 GiB above 4 GiB.
    fn q35_3g() -> MemoryMap {
        MemoryMap::from_entries([
            (0, 0x9_fc00, RAM),
            (0x9_fc00, 0x400, RESERVED),
            (0xf_0000, 0x1_0000, RESERVED),
            (0x10_0000, 2 * GIB - 0x10_0000, RAM),
            (0xb000_0000, 0x1000_0000, RESERVED),
            (0xfeff_c000, 0x4000, RESERVED),
            (0xfffc_0000, 0x4_0000, RESERVED),
            (4 * GIB, GIB, RAM),
        ])
        .unwrap()
    }

    fn frame(addr: u64) -> PhysFrame<Size4KiB> {
        PhysFrame::from_start_address(PhysAddr::new(addr)).unwrap()
    }

    /// A one-range reserved list (clippy reads `[a..b]` as a mistyped `a..b` collection).
    fn only(range: Range<u64>) -> [Range<u64>; 1] {
        [range]
    }

    fn drain(allocator: &mut FrameAllocator<'_>) -> Vec<u64> {
        core::iter::from_fn(|| allocator.allocate())
            .map(|f| f.start_address().as_u64())
            .collect()
    }

    fn overlaps(addr: u64, range: &Range<u64>) -> bool {
        range.start < addr + FRAME_SIZE && addr < range.end
    }

    #[test]
    fn full_drain_hands_out_each_frame_once_and_never_reserved_ones() {
        let map = qemu_microvm();
        // Kernel image, and an unaligned start info that must keep its whole frame.
        let reserved = [0x10_0000..0x30_0000, 0x40_0010..0x40_0048];
        let mut storage = vec![0u64; bitmap_words(&map)];
        let mut allocator = FrameAllocator::new(&mut storage, &map, &reserved).unwrap();
        let total = allocator.total_frames();
        assert_eq!(total, (0x800_0000 - 0x30_0000) / FRAME_SIZE - 1);
        assert_eq!(allocator.free_frames(), total);

        let frames = drain(&mut allocator);
        assert_eq!(frames.len() as u64, total);
        assert_eq!(
            frames.iter().copied().collect::<HashSet<_>>().len(),
            frames.len()
        );
        for &addr in &frames {
            assert!(addr >= MIB && addr + FRAME_SIZE <= 0x800_0000, "{addr:#x}");
            assert!(!reserved.iter().any(|r| overlaps(addr, r)), "{addr:#x}");
        }
        assert_eq!(allocator.free_frames(), 0);
        assert_eq!(allocator.allocate(), None);
        assert_eq!(allocator.frame_limit(), 0x800_0000 / FRAME_SIZE);
    }

    #[test]
    fn freed_frames_are_reused() {
        let map = qemu_microvm();
        let mut storage = vec![0u64; bitmap_words(&map)];
        let mut allocator = FrameAllocator::new(&mut storage, &map, &[]).unwrap();
        let frames = drain(&mut allocator);
        let victim = frame(frames[frames.len() / 2]);
        allocator.free(victim).unwrap();
        assert_eq!(allocator.free_frames(), 1);
        assert_eq!(allocator.allocate(), Some(victim));
        assert_eq!(allocator.allocate(), None);
    }

    #[test]
    fn next_fit_moves_on_and_wraps_around() {
        let map = qemu_microvm();
        let mut storage = vec![0u64; bitmap_words(&map)];
        let mut allocator = FrameAllocator::new(&mut storage, &map, &[]).unwrap();
        let first = allocator.allocate().unwrap();
        assert_eq!(first.start_address().as_u64(), MIB);
        let mut last = first;
        for _ in 0..200 {
            last = allocator.allocate().unwrap();
        }
        allocator.free(first).unwrap();
        // The cursor is past `first`: the next frame comes after `last`, not `first` again.
        let next = allocator.allocate().unwrap();
        assert_eq!(
            next.start_address().as_u64(),
            last.start_address().as_u64() + FRAME_SIZE
        );
        // Once everything above is gone, the search wraps and finds `first`.
        let rest = drain(&mut allocator);
        assert_eq!(rest.last(), Some(&first.start_address().as_u64()));
    }

    #[test]
    fn double_free_and_foreign_frames_are_refused() {
        let map = qemu_microvm();
        let reserved = only(0x10_0000..0x30_0000);
        let mut storage = vec![0u64; bitmap_words(&map)];
        let mut allocator = FrameAllocator::new(&mut storage, &map, &reserved).unwrap();
        let f = allocator.allocate().unwrap();
        allocator.free(f).unwrap();
        let err = allocator.free(f).unwrap_err();
        assert_eq!(err, FrameAllocatorError::NotAllocated { frame: f });
        assert_eq!(err.reason(), "frame-not-allocated");
        assert!(err.to_string().contains("double free"));

        // A kernel-image frame was never handed out.
        assert_eq!(
            allocator.free(frame(0x20_0000)),
            Err(FrameAllocatorError::NotAllocated {
                frame: frame(0x20_0000)
            })
        );
        assert_eq!(
            allocator.free(frame(0x9_f000)).unwrap_err().reason(),
            "frame-below-1mib"
        );
        assert_eq!(
            allocator.free(frame(0x800_0000)),
            Err(FrameAllocatorError::OutOfRange {
                frame: frame(0x800_0000),
                limit: 0x800_0000
            })
        );
        assert_eq!(allocator.free_frames(), allocator.total_frames());
    }

    #[test]
    fn storage_too_small_is_refused() {
        let map = qemu_microvm();
        let needed = bitmap_words(&map);
        // 128 MiB = 32768 frames = 512 words per bitmap.
        assert_eq!(needed, 1024);
        let mut storage = vec![0u64; needed - 1];
        let err = FrameAllocator::new(&mut storage, &map, &[]).err().unwrap();
        assert_eq!(
            err,
            FrameAllocatorError::StorageTooSmall {
                needed_words: needed,
                provided_words: needed - 1
            }
        );
        assert_eq!(err.reason(), "frame-bitmap-too-small");
    }

    #[test]
    fn larger_storage_is_fine_and_its_tail_unused() {
        let map = qemu_microvm();
        let mut storage = vec![0xdead_beefu64; bitmap_words(&map) + 10];
        {
            let mut allocator = FrameAllocator::new(&mut storage, &map, &[]).unwrap();
            assert_eq!(drain(&mut allocator).len() as u64, allocator.total_frames());
        }
        assert!(
            storage[bitmap_words(&map)..]
                .iter()
                .all(|&w| w == 0xdead_beef)
        );
    }

    #[test]
    fn the_hole_below_4gib_is_never_handed_out() {
        let map = q35_3g();
        let mut storage = vec![0u64; bitmap_words(&map)];
        let mut allocator = FrameAllocator::new(&mut storage, &map, &[]).unwrap();
        assert_eq!(allocator.total_frames(), (3 * GIB - MIB) / FRAME_SIZE);
        let frames = drain(&mut allocator);
        assert_eq!(frames.len() as u64, allocator.total_frames());
        assert!(
            frames
                .iter()
                .all(|&a| (MIB..2 * GIB).contains(&a) || (4 * GIB..5 * GIB).contains(&a))
        );
        assert!(frames.iter().any(|&a| a >= 4 * GIB));
    }

    #[test]
    fn adjacent_usable_regions_with_unaligned_boundary_lose_no_frame() {
        let map =
            MemoryMap::from_entries([(0x10_0000, 0x10_0800, RAM), (0x20_0800, 0xf_f800, RAM)])
                .unwrap();
        let mut storage = vec![0u64; bitmap_words(&map)];
        let allocator = FrameAllocator::new(&mut storage, &map, &[]).unwrap();
        assert_eq!(allocator.total_frames(), 0x20_0000 / FRAME_SIZE);
    }

    #[test]
    fn unaligned_usable_regions_are_rounded_inward() {
        let map = MemoryMap::from_entries([(0x10_0010, 0x20_0000, RAM)]).unwrap();
        let mut storage = vec![0u64; bitmap_words(&map)];
        let mut allocator = FrameAllocator::new(&mut storage, &map, &[]).unwrap();
        let frames = drain(&mut allocator);
        assert_eq!(frames.first(), Some(&0x10_1000));
        assert_eq!(frames.last(), Some(&0x2f_f000));
    }

    #[test]
    fn placement_avoids_reserved_ranges_and_low_memory() {
        let map = qemu_microvm();
        let bytes = bitmap_words(&map) as u64 * 8;
        assert_eq!(place_bitmap(&map, &[], bytes, u64::MAX), Some(MIB));
        let reserved = [0x10_0000..0x25_0123, 0x25_2000..0x25_3000];
        let at = place_bitmap(&map, &reserved, 0x2000, u64::MAX).unwrap();
        assert_eq!(at, 0x25_3000);
        let at = place_bitmap(&map, &reserved, 0x1000, u64::MAX).unwrap();
        assert_eq!(at, 0x25_1000);
        // Empty reserved ranges block nothing.
        assert_eq!(
            place_bitmap(&map, &only(0x20_0000..0x20_0000), 0x1000, u64::MAX),
            Some(MIB)
        );
    }

    #[test]
    fn placement_respects_below_and_region_bounds() {
        let map = qemu_microvm();
        assert_eq!(place_bitmap(&map, &[], 0x1000, MIB + 0xfff), None);
        assert_eq!(place_bitmap(&map, &[], 0x1000, MIB + 0x1000), Some(MIB));
        assert_eq!(place_bitmap(&map, &[], 0x800_0000, u64::MAX), None);
        assert_eq!(place_bitmap(&map, &[], u64::MAX, u64::MAX), None);
        let whole = 0x800_0000 - MIB;
        assert_eq!(place_bitmap(&map, &[], whole, u64::MAX), Some(MIB));
        assert_eq!(
            place_bitmap(&map, &only(0x7ff_ffff..0x800_0000), whole, u64::MAX),
            None
        );
    }

    #[test]
    fn placement_skips_to_the_next_region_past_a_hole() {
        let map = q35_3g();
        let reserved = only(MIB..2 * GIB);
        assert_eq!(
            place_bitmap(&map, &reserved, 0x1000, u64::MAX),
            Some(4 * GIB)
        );
        assert_eq!(place_bitmap(&map, &reserved, 0x1000, 4 * GIB), None);
    }

    #[test]
    fn a_placed_bitmap_reserved_is_never_handed_out() {
        let map = q35_3g();
        let kernel = MIB..3 * MIB;
        let bytes = bitmap_words(&map) as u64 * 8;
        let at = place_bitmap(&map, core::slice::from_ref(&kernel), bytes, 4 * GIB).unwrap();
        assert_eq!(at, 3 * MIB);
        let reserved = [kernel, at..at + bytes];
        let mut storage = vec![0u64; bitmap_words(&map)];
        let mut allocator = FrameAllocator::new(&mut storage, &map, &reserved).unwrap();
        let frames = drain(&mut allocator);
        assert!(
            frames
                .iter()
                .all(|&a| !reserved.iter().any(|r| overlaps(a, r)))
        );
    }

    #[test]
    fn contiguous_runs_skip_holes_and_free_back() {
        let map = qemu_microvm();
        let mut storage = vec![0u64; bitmap_words(&map)];
        // A reserved frame at 1 MiB + 8 KiB splits the bottom of RAM.
        let reserved = only(MIB + 0x2000..MIB + 0x3000);
        let mut allocator = FrameAllocator::new(&mut storage, &map, &reserved).unwrap();
        let free = allocator.free_frames();
        let small = allocator.allocate_contiguous(2).unwrap();
        assert_eq!(small.start_address().as_u64(), MIB);
        let big = allocator.allocate_contiguous(4).unwrap();
        assert_eq!(big.start_address().as_u64(), MIB + 0x3000);
        assert_eq!(allocator.free_frames(), free - 6);
        // Freeing a range that runs past what was handed out changes nothing.
        assert_eq!(
            allocator.free_contiguous(big, 5),
            Err(FrameAllocatorError::NotAllocated {
                frame: frame(MIB + 0x7000)
            })
        );
        allocator.free_contiguous(big, 4).unwrap();
        allocator.free_contiguous(small, 2).unwrap();
        assert_eq!(allocator.free_frames(), free);
        assert_eq!(allocator.allocate_contiguous(0), None);
        assert_eq!(allocator.allocate_contiguous(1 << 20), None);
    }

    #[test]
    fn write_bits_handles_partial_and_whole_words() {
        let mut bitmap = [0u64; 3];
        write_bits(&mut bitmap, 3, 130, true);
        assert_eq!(bitmap, [!0b111, u64::MAX, 0b11]);
        write_bits(&mut bitmap, 60, 70, false);
        assert_eq!(bitmap[0], !0b111 & !(0b1111 << 60));
        assert_eq!(bitmap[1], !0b11_1111);
        // Past the end: ignored, not a panic.
        write_bits(&mut bitmap, 190, 1000, true);
        assert_eq!(bitmap[2], 0b11 | (0b11 << 62));
    }

    fn random_map(rng: &mut Rng) -> MemoryMap {
        loop {
            let mut cursor = rng.below(2 * MIB);
            let mut entries = Vec::new();
            for _ in 0..1 + rng.below(10) {
                cursor += rng.below(3) * rng.below(4 * MIB);
                let len = 1 + rng.below(8 * MIB);
                let kind = if rng.below(3) == 0 { RESERVED } else { RAM };
                entries.push((cursor, len, kind));
                cursor += len;
            }
            if let Ok(map) = MemoryMap::from_entries(entries) {
                return map;
            }
        }
    }

    #[test]
    fn random_maps_and_operations_keep_the_allocator_consistent() {
        let mut rng = Rng::new(0x0123_4567_89ab_cdef);
        for _ in 0..300 {
            let map = random_map(&mut rng);
            let top = map.usable_end();
            let reserved: Vec<Range<u64>> = (0..rng.below(5))
                .map(|_| {
                    let start = rng.below(top + MIB);
                    start..start + rng.below(2 * MIB)
                })
                .collect();
            let mut storage = vec![0u64; bitmap_words(&map)];
            let mut allocator = FrameAllocator::new(&mut storage, &map, &reserved).unwrap();
            let is_manageable = |addr: u64| {
                addr >= MIB
                    && usable_runs(&map).any(|r| r.start <= addr && addr + FRAME_SIZE <= r.end)
                    && !reserved.iter().any(|r| overlaps(addr, r))
            };
            let mut live = HashSet::new();
            let mut handed_out = 0u64;
            for _ in 0..2000 {
                if rng.below(3) != 0 || live.is_empty() {
                    match allocator.allocate() {
                        Some(f) => {
                            let addr = f.start_address().as_u64();
                            assert!(is_manageable(addr), "{addr:#x} in {map:?}");
                            assert!(live.insert(addr), "{addr:#x} handed out twice");
                            handed_out += 1;
                        }
                        None => assert_eq!(live.len() as u64, allocator.total_frames()),
                    }
                } else {
                    let &addr = live.iter().next().unwrap();
                    live.remove(&addr);
                    allocator.free(frame(addr)).unwrap();
                    assert!(allocator.free(frame(addr)).is_err());
                }
                assert_eq!(
                    allocator.free_frames() + live.len() as u64,
                    allocator.total_frames()
                );
            }
            // A random frame that is not live must be refused.
            let probe = rng.below(top + MIB) & !(FRAME_SIZE - 1);
            if !live.contains(&probe) {
                assert!(allocator.free(frame(probe)).is_err());
            }
            assert!(handed_out > 0 || allocator.total_frames() == 0);
        }
    }
}
