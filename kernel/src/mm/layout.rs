//! The kernel's virtual address space.
//!
//! | range | what |
//! |---|---|
//! | `0x0` | page 0, never mapped (null dereferences fault) |
//! | `0x1000..` | physical memory, identity-mapped RW+NX (usable RAM and ACPI tables) |
//! | `0x100000..__kernel_end` | the kernel image: text RX, rodata R, data/bss/stacks RW+NX |
//! | `HEAP_START..` | the heap |
//! | `MAPPER_TEST_WINDOW..` | scratch pages of the mapper self-test |
//! | `BENCH_PAGE`, `BENCH_REGION`, `UNMAPPED_PROBE_PAGE` | benchmark pages |
//! | `XEN_CONSOLE_PAGE` | a Xen domU's console ring |
//! | `XEN_SHARED_INFO_PAGE` | Xen's shared info page, under Xen PV (a machine frame) |
//! | `LOCAL_APIC_PAGE`, `HPET_PAGE`, `IO_APIC_PAGES..` | device registers, uncached |
//! | `FIRMWARE_WINDOW` | one page of firmware memory at a time, read-only (ACPI tables) |
//! | `DEVICE_WINDOW..` | device memory: PCI BARs and ECAM, virtio-mmio registers, uncached |
//!
//! Identity is the natural choice for both entries: PVH starts with paging off, and a Xen PV
//! guest starts with its pseudo-physical memory mapped at `VIRT_BASE` 0.

use x86_64::{PhysAddr, VirtAddr};

pub const HEAP_START: u64 = 0xffff_9000_0000_0000;
pub const MAX_HEAP_SIZE: u64 = 64 << 20;
pub const MIN_HEAP_SIZE: u64 = 1 << 20;

pub const MAPPER_TEST_WINDOW: u64 = 0xffff_a000_0000_0000;
/// 128 MiB: 32768 slots, so 10,000 random pages rarely collide, and at most 64 level-1 tables.
pub const MAPPER_TEST_WINDOW_SIZE: u64 = 128 << 20;

pub const BENCH_PAGE: u64 = 0xffff_b000_0000_0000;
/// 2 MiB, one level-1 table's worth: the page-table benchmarks map and protect it whole.
pub const BENCH_REGION: u64 = 0xffff_b000_4000_0000;

/// Never mapped: the page-fault benchmark and self-test read it.
pub const UNMAPPED_PROBE_PAGE: u64 = 0xffff_b000_0020_0000;

/// A Xen domU's console ring page, which lies outside RAM.
pub const XEN_CONSOLE_PAGE: u64 = 0xffff_b000_0040_0000;

/// Xen's shared info page as a PV guest maps it: Xen's frame, not one of the guest's.
pub const XEN_SHARED_INFO_PAGE: u64 = 0xffff_b000_0060_0000;

/// The local APIC's registers in xAPIC mode.
pub const LOCAL_APIC_PAGE: u64 = 0xffff_b000_0080_0000;
/// The HPET's registers.
pub const HPET_PAGE: u64 = 0xffff_b000_0080_1000;
/// The IOAPICs' registers, a page each.
pub const IO_APIC_PAGES: u64 = 0xffff_b000_0081_0000;
pub const MAX_IO_APICS: usize = 16;

/// Where `kernel_space::read_physical` maps the page it copies from.
pub const FIRMWARE_WINDOW: u64 = 0xffff_b000_0080_2000;

/// Device memory mapped by `device_memory::map`, in the order devices are found.
pub const DEVICE_WINDOW: u64 = 0xffff_c000_0000_0000;
/// 1 GiB: a PCI segment's whole ECAM (256 MiB) and every BAR QEMU's devices have fit.
pub const DEVICE_WINDOW_SIZE: u64 = 1 << 30;

/// Where the kernel reaches physical memory.
pub fn phys_to_virt(addr: PhysAddr) -> VirtAddr {
    VirtAddr::new(addr.as_u64())
}
