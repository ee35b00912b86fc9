//! Page-table benchmarks, with the same ids under every backend: what changing one PTE
//! costs when the kernel writes it, when a shadow-paging hypervisor traps the write, or when
//! Xen applies it from a hypercall, one at a time or in batches. Region benchmarks report
//! `cycles_per_pte` next to the time of the whole operation.

use x86_64::VirtAddr;
use x86_64::structures::paging::{Page, PageTableFlags as Flags, PhysFrame, Size4KiB};

use super::cases::{QUICK, Runs, measure_runs, measure_undone, report, report_with};
use super::stats::Summary;
use crate::mm::kernel_space::{self, KernelSpace};
use crate::mm::layout::{BENCH_PAGE, BENCH_REGION};
use crate::mm::paging::{MapperError, PageTableBackend};
use crate::println;
use crate::time::tsc::Frequency;

/// One level-1 table's worth of entries.
const PTES: u64 = 512;

/// A region operation costs up to milliseconds when every PTE is a hypercall.
const REGION: Runs = Runs {
    warmup: 5,
    samples: 100,
};

const RW_NX: Flags = Flags::WRITABLE.union(Flags::NO_EXECUTE);

fn region_page(i: u64) -> Page<Size4KiB> {
    Page::containing_address(VirtAddr::new(BENCH_REGION + i * 4096))
}

pub fn run_all(tsc: Option<Frequency>) {
    let frame = match kernel_space::with(|space| space.frames.allocate()) {
        Some(frame) => frame,
        None => {
            println!("warning: no free frame for the page-table benchmarks");
            return;
        }
    };
    map_unmap(frame, tsc);
    region(frame, tsc, "");
    // Where updates can be batched, the same work one hypercall per PTE, for comparison.
    let batching = kernel_space::with(|space| space.mapper.backend().batching());
    if batching {
        kernel_space::with(|space| space.mapper.backend_mut().set_batching(false));
        region(frame, tsc, "-single");
        kernel_space::with(|space| space.mapper.backend_mut().set_batching(true));
    }
    if kernel_space::with(|space| space.frames.free(frame)).is_err() {
        println!("warning: the page-table benchmark frame could not be freed");
    }
}

fn map_unmap(frame: PhysFrame, tsc: Option<Frequency>) {
    let page = Page::containing_address(VirtAddr::new(BENCH_PAGE));
    let samples = kernel_space::with(|space| {
        measure_runs(QUICK, || {
            space
                .mapper
                .map(page, frame, RW_NX, &mut space.frames)
                .expect("benchmark page is free");
            space
                .mapper
                .unmap(page)
                .expect("benchmark page was just mapped");
        })
    });
    report("pte-map-unmap", samples, tsc);
}

fn map_region(space: &mut KernelSpace, frame: PhysFrame) -> Result<(), MapperError> {
    space.mapper.batch(|m| {
        (0..PTES).try_for_each(|i| m.map(region_page(i), frame, RW_NX, &mut space.frames))
    })
}

fn unmap_region(space: &mut KernelSpace) -> Result<(), MapperError> {
    space
        .mapper
        .batch(|m| (0..PTES).try_for_each(|i| m.unmap(region_page(i)).map(|_| ())))
}

fn protect_region(space: &mut KernelSpace, flags: Flags) -> Result<(), MapperError> {
    space
        .mapper
        .batch(|m| (0..PTES).try_for_each(|i| m.protect(region_page(i), flags)))
}

/// `pte-map-2mib-4k`: 512 pages mapped in one batch (all to the same frame: only the PTEs
/// matter); `pte-protect-512`: those 512 PTEs made read-only in one batch.
fn region(frame: PhysFrame, tsc: Option<Frequency>, suffix: &str) {
    let per_pte = |s: &Summary| alloc::format!(" ptes={PTES} cycles_per_pte={}", s.median / PTES);
    let samples = kernel_space::with(|space| {
        measure_undone(
            REGION,
            space,
            |space| map_region(space, frame).expect("benchmark region is free"),
            |space| unmap_region(space).expect("benchmark region is mapped"),
        )
    });
    report_with(
        &alloc::format!("pte-map-2mib-4k{suffix}"),
        samples,
        tsc,
        per_pte,
    );

    let samples = kernel_space::with(|space| {
        map_region(space, frame).expect("benchmark region is free");
        let samples = measure_undone(
            REGION,
            space,
            |space| protect_region(space, Flags::NO_EXECUTE).expect("region is mapped"),
            |space| protect_region(space, RW_NX).expect("region is mapped"),
        );
        unmap_region(space).expect("benchmark region is mapped");
        samples
    });
    report_with(
        &alloc::format!("pte-protect-512{suffix}"),
        samples,
        tsc,
        per_pte,
    );
}
