//! The `Hal` virtio-drivers runs on: DMA memory from the frame allocator, device registers
//! from the device window, and buffer sharing through the page tables.
//!
//! Devices see physical addresses. Usable RAM is identity-mapped, so memory from
//! [`FrameAllocator::allocate_contiguous`] is physically contiguous and its virtual address
//! is its physical one. A buffer elsewhere (the heap) is translated page by page through the
//! Mapper, whichever backend writes the tables; when its pages are not physically
//! consecutive it is bounced through DMA memory, so a device never reads past a page into
//! someone else's frame.
//!
//! Under Xen PV, devices would need machine addresses and machine-contiguous memory
//! (`XENMEM_exchange`); the kernel probes no devices there (see `devices::probe`).
//!
//! [`FrameAllocator::allocate_contiguous`]: crate::mm::frame_allocator::FrameAllocator::allocate_contiguous

use core::ptr::NonNull;

use virtio_drivers::{BufferDirection, Hal, PhysAddr as DmaAddr};
use x86_64::structures::paging::PhysFrame;
use x86_64::{PhysAddr, VirtAddr};

use crate::mm::device_memory;
use crate::mm::frame_allocator::FRAME_SIZE;
use crate::mm::kernel_space;
use crate::mm::layout::phys_to_virt;

pub struct JanusHal;

/// `count` zeroed, physically consecutive frames, or `None` when RAM has no such run.
pub fn allocate(count: u64) -> Option<(PhysAddr, NonNull<u8>)> {
    let first = kernel_space::with(|space| space.frames.allocate_contiguous(count))?;
    let paddr = first.start_address();
    let vaddr = phys_to_virt(paddr);
    // SAFETY: the frames were just handed out, so nothing else uses them, and usable RAM is
    // identity-mapped writable.
    unsafe { core::ptr::write_bytes(vaddr.as_mut_ptr::<u8>(), 0, (count * FRAME_SIZE) as usize) };
    Some((paddr, NonNull::new(vaddr.as_mut_ptr())?))
}

/// Gives back what [`allocate`] returned.
pub fn free(paddr: PhysAddr, count: u64) -> bool {
    kernel_space::with(|space| {
        space
            .frames
            .free_contiguous(PhysFrame::containing_address(paddr), count)
            .is_ok()
    })
}

/// Whole pages a device reaches directly (no bounce), zeroed, freed on drop.
pub struct DmaBuffer {
    paddr: PhysAddr,
    ptr: NonNull<u8>,
    pages: u64,
}

impl DmaBuffer {
    /// At least `bytes` bytes; `None` when RAM has no such contiguous run.
    pub fn new(bytes: usize) -> Option<Self> {
        let pages = (bytes as u64).div_ceil(FRAME_SIZE);
        let (paddr, ptr) = allocate(pages)?;
        Some(Self { paddr, ptr, pages })
    }

    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `pages` frames, identity-mapped and ours until drop.
        unsafe {
            core::slice::from_raw_parts_mut(self.ptr.as_ptr(), (self.pages * FRAME_SIZE) as usize)
        }
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        free(self.paddr, self.pages);
    }
}

/// The physical address of `buffer` when it is physically contiguous.
fn contiguous_physical(buffer: NonNull<[u8]>) -> Option<PhysAddr> {
    let start = VirtAddr::from_ptr(buffer.as_ptr().cast::<u8>());
    let len = buffer.len().max(1) as u64;
    kernel_space::with(|space| {
        let first = space.mapper.translate(start)?.phys;
        let mut page = start.align_down(FRAME_SIZE);
        while page < start + len {
            let expected = first + (page.max(start) - start);
            (space.mapper.translate(page.max(start))?.phys == expected).then_some(())?;
            page += FRAME_SIZE;
        }
        Some(first)
    })
}

// SAFETY: dma_alloc returns zeroed, page-aligned, physically contiguous memory that nothing
// else uses until dma_dealloc; mmio_phys_to_virt maps what it is asked for uncached; share
// returns an address the device may use for the whole buffer until unshare.
unsafe impl Hal for JanusHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (DmaAddr, NonNull<u8>) {
        match allocate(pages as u64) {
            Some((paddr, vaddr)) => (paddr.as_u64(), vaddr),
            // virtio-drivers turns a zero address into Error::DmaError.
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: DmaAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        if free(PhysAddr::new(paddr), pages as u64) {
            0
        } else {
            -1
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: DmaAddr, size: usize) -> NonNull<u8> {
        let mapped = device_memory::find(PhysAddr::new(paddr), size as u64)
            .map(Ok)
            .unwrap_or_else(|| device_memory::map(PhysAddr::new(paddr), size as u64));
        match mapped {
            Ok(vaddr) => NonNull::new(vaddr.as_mut_ptr()).expect("the device window is not 0"),
            // The trait has no way to fail; BARs are mapped before transports are built, so
            // this means a device named a region outside its BARs.
            Err(e) => panic!("virtio: device region {paddr:#x}+{size:#x}: {e}"),
        }
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> DmaAddr {
        if let Some(paddr) = contiguous_physical(buffer) {
            return paddr.as_u64();
        }
        let pages = (buffer.len() as u64).div_ceil(FRAME_SIZE);
        let (paddr, bounce) =
            allocate(pages).expect("no DMA memory left to bounce a scattered buffer");
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller lends `buffer` for reading; the bounce frames are ours and at
            // least as long.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    buffer.as_ptr().cast::<u8>(),
                    bounce.as_ptr(),
                    buffer.len(),
                )
            };
        }
        paddr.as_u64()
    }

    unsafe fn unshare(paddr: DmaAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        if contiguous_physical(buffer).is_some_and(|p| p.as_u64() == paddr) {
            return;
        }
        let bounce = phys_to_virt(PhysAddr::new(paddr));
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: `share` bounced this buffer into the frames at `paddr`, which the device
            // has finished with; the caller owns `buffer` again.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    bounce.as_ptr::<u8>(),
                    buffer.as_ptr().cast::<u8>(),
                    buffer.len(),
                )
            };
        }
        free(
            PhysAddr::new(paddr),
            (buffer.len() as u64).div_ceil(FRAME_SIZE),
        );
    }
}
