//! Device memory (PCI BARs and ECAM, virtio-mmio registers) mapped uncached into one window.
//!
//! Devices stay for the kernel's life, so the window only grows (a bump pointer), and a table
//! of what is mapped answers "where is this physical range?" for code that only knows the
//! physical address, such as virtio-drivers' `Hal::mmio_phys_to_virt`.

use alloc::vec::Vec;
use core::fmt;

use spin::Mutex;
use x86_64::structures::paging::{Page, PageTableFlags as Flags, PhysFrame, Size2MiB, Size4KiB};
use x86_64::{PhysAddr, VirtAddr};

use super::kernel_space;
use super::layout::{DEVICE_WINDOW, DEVICE_WINDOW_SIZE};
use super::paging::MapperError;

const SMALL: u64 = 4096;
const HUGE: u64 = 2 << 20;

#[derive(Clone, Copy, Debug)]
struct Mapping {
    phys: u64,
    len: u64,
    virt: u64,
}

struct Window {
    next: u64,
    mappings: Vec<Mapping>,
}

static WINDOW: Mutex<Window> = Mutex::new(Window {
    next: DEVICE_WINDOW,
    mappings: Vec::new(),
});

#[derive(Debug)]
pub enum DeviceMapError {
    /// The range is empty, wraps, or lies beyond what a physical address can be.
    BadRange {
        paddr: u64,
        size: u64,
    },
    /// The window has no room left for `size` more bytes.
    WindowFull {
        size: u64,
    },
    Map(MapperError),
}

impl fmt::Display for DeviceMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadRange { paddr, size } => write!(
                f,
                "device range of {size:#x} bytes at {paddr:#x} is empty or outside physical memory"
            ),
            Self::WindowFull { size } => write!(
                f,
                "no room for {size:#x} more bytes of device memory in the {DEVICE_WINDOW_SIZE:#x}-byte window"
            ),
            Self::Map(e) => write!(f, "mapping device memory: {e}"),
        }
    }
}

/// Maps `size` bytes of device memory at `paddr` uncached, writable, not executable, and
/// returns the virtual address of `paddr`. A range inside one mapped before is not mapped
/// twice. Ranges aligned to 2 MiB use 2 MiB pages (an ECAM window is 256 MiB).
pub fn map(paddr: PhysAddr, size: u64) -> Result<VirtAddr, DeviceMapError> {
    let start = paddr.as_u64();
    let bad = DeviceMapError::BadRange { paddr: start, size };
    let end = start.checked_add(size).filter(|_| size > 0).ok_or(bad)?;
    PhysAddr::try_new(end - 1).map_err(|_| DeviceMapError::BadRange { paddr: start, size })?;
    let mut window = WINDOW.lock();
    if let Some(virt) = lookup(&window.mappings, start, size) {
        return Ok(virt);
    }
    let huge = start.is_multiple_of(HUGE) && size.is_multiple_of(HUGE);
    let page = if huge { HUGE } else { SMALL };
    let first = start & !(page - 1);
    let len = (end - first).div_ceil(page) * page;
    let virt = window.next.next_multiple_of(page);
    if virt + len > DEVICE_WINDOW + DEVICE_WINDOW_SIZE {
        return Err(DeviceMapError::WindowFull { size: len });
    }
    let flags = Flags::WRITABLE | Flags::NO_EXECUTE | Flags::NO_CACHE | Flags::WRITE_THROUGH;
    kernel_space::with(|space| {
        for offset in (0..len).step_by(page as usize) {
            let (v, p) = (VirtAddr::new(virt + offset), PhysAddr::new(first + offset));
            if huge {
                space.mapper.map_2mib(
                    Page::<Size2MiB>::containing_address(v),
                    PhysFrame::containing_address(p),
                    flags,
                    &mut space.frames,
                )?;
            } else {
                space.mapper.map(
                    Page::<Size4KiB>::containing_address(v),
                    PhysFrame::containing_address(p),
                    flags,
                    &mut space.frames,
                )?;
            }
        }
        Ok(())
    })
    .map_err(DeviceMapError::Map)?;
    window.next = virt + len;
    window.mappings.push(Mapping {
        phys: first,
        len,
        virt,
    });
    Ok(VirtAddr::new(virt + (start - first)))
}

/// Where `size` bytes at `paddr` are mapped, if one earlier [`map`] covers them all.
pub fn find(paddr: PhysAddr, size: u64) -> Option<VirtAddr> {
    lookup(&WINDOW.lock().mappings, paddr.as_u64(), size)
}

fn lookup(mappings: &[Mapping], start: u64, size: u64) -> Option<VirtAddr> {
    let end = start.checked_add(size)?;
    mappings
        .iter()
        .find(|m| m.phys <= start && end <= m.phys + m.len)
        .map(|m| VirtAddr::new(m.virt + (start - m.phys)))
}
