//! The kernel's address space: the frame allocator, the page tables the kernel builds for
//! itself (replacing the boot stub's), and the heap. One lock guards them together, since
//! mapping a page needs both the tables and frames.

use core::fmt;
use core::ops::Range;

use spin::Mutex;
use x86_64::structures::paging::{Page, PageTableFlags as Flags, PhysFrame, Size2MiB, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

use super::frame_allocator::{self, FrameAllocator, FrameAllocatorError};
use super::layout::{self, phys_to_virt};
use super::memory_map::{MemoryMap, RegionKind};
use super::paging::{FrameSource, Mapper, MapperError};
use crate::arch::paging::DirectBackend;
use crate::arch::stack;
use crate::boot::pvh::{BootInfo, MAX_MODULES};

pub struct KernelSpace {
    pub mapper: Mapper<DirectBackend>,
    pub frames: FrameAllocator<'static>,
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
                "page-table frame {:#x} lies above the 4 GiB the boot tables map",
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

/// The boot stub identity-maps only the first 4 GiB: until the kernel's own tables are live,
/// every frame it touches must lie there.
const BOOT_WINDOW_END: u64 = 4 << 30;

unsafe extern "C" {
    static __kernel_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __kernel_end: u8;
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

/// Frames for the tables built while the boot tables are still live.
struct EarlyFrames<'a> {
    frames: &'a mut FrameAllocator<'static>,
    out_of_window: Option<PhysAddr>,
}

impl FrameSource for EarlyFrames<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        let frame = self.frames.allocate()?;
        if frame.start_address().as_u64() >= BOOT_WINDOW_END {
            self.out_of_window = Some(frame.start_address());
            return None;
        }
        Some(frame)
    }
}

/// Identity-maps `[start, end)` (4 KiB aligned) with the largest pages that fit.
fn map_identity(
    mapper: &mut Mapper<DirectBackend>,
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

fn build_tables(
    mapper: &mut Mapper<DirectBackend>,
    frames: &mut impl FrameSource,
    map: &MemoryMap,
) -> Result<(), MapperError> {
    let sections = image_sections();
    let image = sections[0].0.start..sections[2].0.end;
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

/// Takes over physical memory, switches to the kernel's own page tables and maps the heap.
pub fn init(boot: &BootInfo, features: &crate::arch::cpu::Features) -> Result<Report, InitError> {
    let map = &boot.memory_map;
    let sections = image_sections();
    let mut reserved: [Range<u64>; MAX_MODULES + 8] = core::array::from_fn(|_| 0..0);
    let mut count = 0;
    reserved[count] = sections[0].0.start..sections[2].0.end;
    count += 1;
    for range in boot.reserved_ranges() {
        reserved[count] = range;
        count += 1;
    }
    let words = frame_allocator::bitmap_words(map);
    let bytes = words as u64 * 8;
    let bitmap = frame_allocator::place_bitmap(map, &reserved[..count], bytes, BOOT_WINDOW_END)
        .ok_or(InitError::NoRoomForBitmap { bytes })?;
    reserved[count] = bitmap..bitmap + bytes;
    count += 1;
    // SAFETY: place_bitmap returned usable RAM below 4 GiB (identity-mapped by the boot
    // tables and, later, by the kernel's) that no reserved range overlaps; it is reserved
    // from the allocator itself and used for nothing else, for the kernel's whole life.
    let storage: &'static mut [u64] = unsafe {
        core::slice::from_raw_parts_mut(
            phys_to_virt(PhysAddr::new(bitmap)).as_mut_ptr::<u64>(),
            words,
        )
    };
    let mut frames =
        FrameAllocator::new(storage, map, &reserved[..count]).map_err(InitError::FrameAllocator)?;

    let mut early = EarlyFrames {
        frames: &mut frames,
        out_of_window: None,
    };
    let root = early
        .allocate_frame()
        .ok_or(InitError::Map(MapperError::OutOfFrames))?;
    // SAFETY: root and every later table frame come fresh from the allocator, below 4 GiB
    // (EarlyFrames), hence mapped by the boot tables at their physical address.
    let mut mapper = Mapper::new(unsafe { DirectBackend::new(root) });
    let built = mapper.batch(|m| build_tables(m, &mut early, map));
    if let Some(addr) = early.out_of_window {
        return Err(InitError::TableAboveBootWindow(addr));
    }
    built?;

    crate::arch::cpu::enable_no_execute();
    // SAFETY: the new tables map the image (the code running now, its stacks and statics)
    // and all usable RAM at the same addresses as the boot tables did.
    unsafe { mapper.backend_mut().activate() };
    crate::arch::cpu::enable_protection(features);

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
