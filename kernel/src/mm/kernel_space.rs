//! The kernel's address space: the frame allocator, the page tables, and the heap. One lock
//! guards them together, since mapping a page needs both the tables and frames.
//!
//! After a PVH entry the kernel builds its own tables and replaces the boot stub's. After a
//! Xen PV entry it keeps Xen's bootstrap L4 (the one Xen pinned and loaded) and reshapes
//! what it maps, by hypercall, into the same layout: identity-mapped RAM, image sections with
//! their own permissions, page 0 and the stack guards unmapped.

use core::fmt;
use core::ops::Range;

use spin::Mutex;
use x86_64::structures::paging::{Page, PageTableFlags as Flags, PhysFrame, Size2MiB, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

use janus_hypercall::xen::frame::Pfn;
use janus_hypercall::xen::hypercall::HypercallPage;

use super::backend::KernelBackend;
use super::frame_allocator::{self, FrameAllocator, FrameAllocatorError};
use super::layout::{self, phys_to_virt};
use super::memory_map::{MemoryMap, RegionKind};
use super::paging::xen_pv_mmu::{XenHypercalls, XenPvMmu};
use super::paging::{FrameSource, Mapper, MapperError, PageTableBackend};
use crate::arch::paging::DirectBackend;
use crate::arch::stack;
use crate::boot::pvh::{BootInfo, MAX_MODULES};
use crate::boot::xen_pv::XenPvBoot;

pub struct KernelSpace {
    pub mapper: Mapper<KernelBackend>,
    pub frames: FrameAllocator<'static>,
}

/// How page tables are to be updated, decided by the boot entry.
pub enum Paging<'a> {
    /// Build fresh tables and write them directly (PVH entry).
    Direct,
    /// Keep Xen's tables and update them by hypercall (Xen PV entry).
    XenPv {
        boot: &'a XenPvBoot,
        hypercalls: &'static HypercallPage,
        /// Xen's machine-to-physical table, read-only.
        m2p: &'static [u64],
        /// `false` to issue one hypercall per update (`mmu-batch=off`).
        batching: bool,
    },
}

static SPACE: Mutex<Option<KernelSpace>> = Mutex::new(None);

impl FrameSource for FrameAllocator<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.allocate()
    }
}

/// Runs `f` with the kernel's mapper and frame allocator.
///
/// # Panics
/// Before [`init`], or when called from inside `f` (the lock is not reentrant).
pub fn with<R>(f: impl FnOnce(&mut KernelSpace) -> R) -> R {
    let mut space = SPACE.lock();
    f(space
        .as_mut()
        .expect("kernel address space not initialized"))
}

#[derive(Debug)]
pub enum InitError {
    NoRoomForBitmap {
        bytes: u64,
    },
    FrameAllocator(FrameAllocatorError),
    Map(MapperError),
    /// A page-table frame landed where the boot stub's tables do not reach.
    TableAboveBootWindow(PhysAddr),
    /// Xen's bootstrap mappings do not cover the image.
    ImageNotMapped(VirtAddr),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRoomForBitmap { bytes } => write!(
                f,
                "no usable RAM below 4 GiB has room for the {bytes}-byte frame bitmap"
            ),
            Self::FrameAllocator(e) => write!(f, "frame allocator: {e}"),
            Self::Map(e) => write!(f, "building the kernel page tables: {e}"),
            Self::TableAboveBootWindow(a) => write!(
                f,
                "page-table frame {:#x} lies above what the boot tables map",
                a.as_u64()
            ),
            Self::ImageNotMapped(a) => write!(
                f,
                "Xen's bootstrap page tables do not map the kernel image at {:#x}",
                a.as_u64()
            ),
        }
    }
}

impl From<MapperError> for InitError {
    fn from(e: MapperError) -> Self {
        Self::Map(e)
    }
}

/// Maps one page of device registers at `page` (a slot reserved in [`layout`]), uncached,
/// writable and not executable, and returns its virtual address.
pub fn map_mmio(page: u64, paddr: PhysAddr) -> Result<VirtAddr, MapperError> {
    let page = Page::<Size4KiB>::containing_address(VirtAddr::new(page));
    let frame = PhysFrame::containing_address(paddr);
    let flags = Flags::WRITABLE | Flags::NO_EXECUTE | Flags::NO_CACHE | Flags::WRITE_THROUGH;
    with(|space| space.mapper.map(page, frame, flags, &mut space.frames))?;
    Ok(page.start_address() + (paddr.as_u64() & 0xfff))
}

/// Copies physical memory that the identity map may not cover (firmware tables in reserved
/// RAM or the BIOS area) into `buf`, one page at a time through a read-only window.
pub fn read_physical(paddr: PhysAddr, buf: &mut [u8]) -> Result<(), MapperError> {
    let window = Page::<Size4KiB>::containing_address(VirtAddr::new(layout::FIRMWARE_WINDOW));
    let mut done = 0;
    while done < buf.len() {
        let addr = paddr + done as u64;
        let offset = (addr.as_u64() & 0xfff) as usize;
        let len = (4096 - offset).min(buf.len() - done);
        with(|space| {
            space.mapper.map(
                window,
                PhysFrame::containing_address(addr),
                Flags::NO_EXECUTE,
                &mut space.frames,
            )?;
            let source: *const u8 = (window.start_address() + offset as u64).as_ptr();
            // SAFETY: the window maps the page just now, readable, and `len` stays inside
            // it; reading memory has no side effects.
            unsafe { core::ptr::copy_nonoverlapping(source, buf[done..].as_mut_ptr(), len) };
            space.mapper.unmap(window).map(|_| ())
        })?;
        done += len;
    }
    Ok(())
}

/// The boot stub identity-maps only the first 4 GiB: until the kernel's own tables are live,
/// every frame it touches must lie there.
const BOOT_WINDOW_END: u64 = 4 << 30;

unsafe extern "C" {
    static __kernel_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __kernel_end: u8;
}

/// Where the kernel image lies (virtual == physical, or pseudo-physical under Xen PV).
pub fn image() -> Range<u64> {
    (&raw const __kernel_start as u64)..(&raw const __kernel_end as u64)
}

fn image_sections() -> [(Range<u64>, Flags); 3] {
    let start = &raw const __kernel_start as u64;
    let text_end = &raw const __text_end as u64;
    let rodata_end = &raw const __rodata_end as u64;
    let end = &raw const __kernel_end as u64;
    [
        (start..text_end, Flags::empty()),
        (text_end..rodata_end, Flags::NO_EXECUTE),
        (rodata_end..end, Flags::WRITABLE | Flags::NO_EXECUTE),
    ]
}

/// Frames for the tables built while only part of memory is mapped: each must lie below
/// `window_end`, where the kernel can reach it to zero it.
struct EarlyFrames<'a> {
    frames: &'a mut FrameAllocator<'static>,
    window_end: u64,
    out_of_window: Option<PhysAddr>,
}

impl FrameSource for EarlyFrames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        let frame = self.frames.allocate()?;
        if frame.start_address().as_u64() >= self.window_end {
            self.out_of_window = Some(frame.start_address());
            return None;
        }
        Some(frame)
    }
}

/// Identity-maps `[start, end)` (4 KiB aligned) with the largest pages that fit.
fn map_identity<B: PageTableBackend>(
    mapper: &mut Mapper<B>,
    frames: &mut impl FrameSource,
    range: Range<u64>,
    flags: Flags,
) -> Result<(), MapperError> {
    const HUGE: u64 = 2 << 20;
    let mut addr = range.start;
    while addr < range.end {
        if addr.is_multiple_of(HUGE) && addr + HUGE <= range.end {
            mapper.map_2mib(
                Page::<Size2MiB>::containing_address(VirtAddr::new(addr)),
                PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(addr)),
                flags,
                frames,
            )?;
            addr += HUGE;
        } else {
            mapper.map(
                Page::<Size4KiB>::containing_address(VirtAddr::new(addr)),
                PhysFrame::containing_address(PhysAddr::new(addr)),
                flags,
                frames,
            )?;
            addr += 4096;
        }
    }
    Ok(())
}

fn build_tables<B: PageTableBackend>(
    mapper: &mut Mapper<B>,
    frames: &mut impl FrameSource,
    map: &MemoryMap,
) -> Result<(), MapperError> {
    let sections = image_sections();
    let image = image();
    for (range, flags) in sections {
        for addr in range.step_by(4096) {
            if stack::guard_hit(addr).is_some() {
                continue;
            }
            mapper.map(
                Page::containing_address(VirtAddr::new(addr)),
                PhysFrame::containing_address(PhysAddr::new(addr)),
                flags,
                frames,
            )?;
        }
    }
    for region in map.regions() {
        let flags = match region.kind {
            RegionKind::Usable => Flags::WRITABLE | Flags::NO_EXECUTE,
            RegionKind::AcpiReclaimable | RegionKind::AcpiNvs => Flags::NO_EXECUTE,
            _ => continue,
        };
        // Page 0 stays unmapped; the image is mapped above with its own permissions.
        let start = region.start.max(4096).next_multiple_of(4096);
        let end = region.end() & !4095;
        for part in [start..end.min(image.start), start.max(image.end)..end] {
            if part.start < part.end {
                map_identity(mapper, frames, part, flags)?;
            }
        }
    }
    Ok(())
}

/// What [`init`] set up, for the boot log and the env line.
pub struct Report {
    pub usable_bytes: u64,
    pub free_frames: u64,
    pub heap_bytes: u64,
}

/// Takes over physical memory, sets up the kernel's page tables as `paging` says, and maps
/// the heap.
pub fn init(
    boot: &BootInfo,
    features: &crate::arch::cpu::Features,
    paging: Paging<'_>,
) -> Result<Report, InitError> {
    let (mapper, frames) = match paging {
        Paging::Direct => init_direct(boot, features)?,
        Paging::XenPv {
            boot: pv,
            hypercalls,
            m2p,
            batching,
        } => init_xen_pv(boot, pv, hypercalls, m2p, batching)?,
    };
    map_heap(boot, mapper, frames)
}

/// The frame allocator over `boot`'s memory map, its bitmap placed below `window_end`.
fn frame_allocator(boot: &BootInfo, window_end: u64) -> Result<FrameAllocator<'static>, InitError> {
    let map = &boot.memory_map;
    let mut reserved: [Range<u64>; MAX_MODULES + 8] = core::array::from_fn(|_| 0..0);
    let mut count = 0;
    reserved[count] = image();
    count += 1;
    for range in boot.reserved_ranges() {
        reserved[count] = range;
        count += 1;
    }
    let words = frame_allocator::bitmap_words(map);
    let bytes = words as u64 * 8;
    let bitmap = frame_allocator::place_bitmap(map, &reserved[..count], bytes, window_end)
        .ok_or(InitError::NoRoomForBitmap { bytes })?;
    reserved[count] = bitmap..bitmap + bytes;
    count += 1;
    // SAFETY: place_bitmap returned usable RAM below `window_end` (identity-mapped by the
    // boot tables and, later, by the kernel's) that no reserved range overlaps; it is reserved
    // from the allocator itself and used for nothing else, for the kernel's whole life.
    let storage: &'static mut [u64] = unsafe {
        core::slice::from_raw_parts_mut(
            phys_to_virt(PhysAddr::new(bitmap)).as_mut_ptr::<u64>(),
            words,
        )
    };
    FrameAllocator::new(storage, map, &reserved[..count]).map_err(InitError::FrameAllocator)
}

fn init_direct(
    boot: &BootInfo,
    features: &crate::arch::cpu::Features,
) -> Result<(Mapper<KernelBackend>, FrameAllocator<'static>), InitError> {
    let mut frames = frame_allocator(boot, BOOT_WINDOW_END)?;
    let mut early = EarlyFrames {
        frames: &mut frames,
        window_end: BOOT_WINDOW_END,
        out_of_window: None,
    };
    let root = early
        .allocate_frame()
        .ok_or(InitError::Map(MapperError::OutOfFrames))?;
    // SAFETY: root and every later table frame come fresh from the allocator, below 4 GiB
    // (EarlyFrames), hence mapped by the boot tables at their physical address.
    let mut mapper = Mapper::new(unsafe { DirectBackend::new(root) });
    let built = mapper.batch(|m| build_tables(m, &mut early, &boot.memory_map));
    if let Some(addr) = early.out_of_window {
        return Err(InitError::TableAboveBootWindow(addr));
    }
    built?;

    crate::arch::cpu::enable_no_execute();
    // SAFETY: the new tables map the image (the code running now, its stacks and statics)
    // and all usable RAM at the same addresses as the boot tables did.
    unsafe { mapper.backend_mut().activate() };
    crate::arch::cpu::enable_protection(features);
    let backend = KernelBackend::Direct(mapper.into_backend());
    Ok((Mapper::new(backend), frames))
}

/// Reshapes Xen's bootstrap mappings into the kernel's layout, page by page in address
/// order. Xen mapped the image and its boot structures (RWX); the rest of RAM is mapped
/// here, and the level-1 tables that needs come from frames already passed, so they are
/// mapped and can be zeroed before Xen is asked to pin them.
fn init_xen_pv(
    boot: &BootInfo,
    pv: &XenPvBoot,
    hypercalls: &'static HypercallPage,
    m2p: &'static [u64],
    batching: bool,
) -> Result<(Mapper<KernelBackend>, FrameAllocator<'static>), InitError> {
    // SAFETY: `xen_pv::parse` checked that the P2M list lies in the domain's memory, clear
    // of the image, and is readable; Xen never changes a PV guest's P2M list behind it.
    let p2m = unsafe { core::slice::from_raw_parts(pv.p2m as *const u64, pv.nr_pages as usize) };
    // SAFETY: this is the domain's hypercall page; Xen maps its page tables readable and
    // the identity map reaches every frame the mapper names (tables come from mapped memory,
    // see `EarlyFrames`); the layout built below keeps what the kernel relies on mapped.
    let ops = unsafe { XenHypercalls::new(hypercalls) };
    let backend = XenPvMmu::new(Pfn::new(pv.root_pfn), p2m, m2p, ops);
    let mut mapper = Mapper::new(KernelBackend::XenPv(backend));
    mapper.backend_mut().set_batching(batching);

    let sections = image_sections();
    let image = image();
    let ram_end = pv.nr_pages * 4096;
    // Xen maps its bootstrap region contiguously from VIRT_BASE 0.
    let mapped_end = (image.start..ram_end)
        .step_by(4096)
        .find(|&addr| mapper.translate(VirtAddr::new(addr)).is_none())
        .unwrap_or(ram_end);
    if mapped_end < image.end {
        return Err(InitError::ImageNotMapped(VirtAddr::new(mapped_end)));
    }
    let mut frames = frame_allocator(boot, mapped_end)?;
    let mut early = EarlyFrames {
        frames: &mut frames,
        window_end: 0,
        out_of_window: None,
    };
    let built = mapper.batch(|m| -> Result<(), MapperError> {
        for addr in (0..ram_end).step_by(4096) {
            let page = Page::containing_address(VirtAddr::new(addr));
            let flags = if addr == 0 || stack::guard_hit(addr).is_some() {
                None
            } else if let Some((_, flags)) = sections.iter().find(|(r, _)| r.contains(&addr)) {
                Some(*flags)
            } else if pv.page_tables.contains(&addr) {
                Some(Flags::NO_EXECUTE)
            } else {
                Some(Flags::WRITABLE | Flags::NO_EXECUTE)
            };
            let mapped = addr < mapped_end && m.translate(page.start_address()).is_some();
            match (mapped, flags) {
                (true, Some(flags)) => m.protect(page, flags)?,
                (true, None) => {
                    m.unmap(page)?;
                }
                (false, Some(flags)) => {
                    early.window_end = addr;
                    m.map(
                        page,
                        PhysFrame::containing_address(PhysAddr::new(addr)),
                        flags,
                        &mut early,
                    )?
                }
                (false, None) => {}
            }
        }
        Ok(())
    });
    if let Some(addr) = early.out_of_window {
        return Err(InitError::TableAboveBootWindow(addr));
    }
    built?;
    Ok((mapper, frames))
}

fn map_heap(
    boot: &BootInfo,
    mut mapper: Mapper<KernelBackend>,
    mut frames: FrameAllocator<'static>,
) -> Result<Report, InitError> {
    let map = &boot.memory_map;
    let heap_bytes =
        (frames.free_frames() * 4096 / 4).clamp(layout::MIN_HEAP_SIZE, layout::MAX_HEAP_SIZE);
    mapper.batch(|m| -> Result<(), MapperError> {
        for offset in (0..heap_bytes).step_by(4096) {
            let frame = frames.allocate().ok_or(MapperError::OutOfFrames)?;
            m.map(
                Page::containing_address(VirtAddr::new(layout::HEAP_START + offset)),
                frame,
                Flags::WRITABLE | Flags::NO_EXECUTE,
                &mut frames,
            )?;
        }
        Ok(())
    })?;
    // SAFETY: the heap range was just mapped RW to frames taken from the allocator, and
    // nothing else uses that virtual range.
    unsafe { super::heap::init(layout::HEAP_START as *mut u8, heap_bytes as usize) };

    let report = Report {
        usable_bytes: map.usable_bytes(),
        free_frames: frames.free_frames(),
        heap_bytes,
    };
    *SPACE.lock() = Some(KernelSpace { mapper, frames });
    Ok(report)
}
