//! The benchmarks. Every sample brackets one operation with ordered TSC reads; the first
//! `WARMUP` samples are dropped (cold caches, lazily built state), the rest summarized.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::hint::black_box;

use x86_64::VirtAddr;
use x86_64::structures::paging::{Page, PageTableFlags as Flags};

use super::stats;
use crate::arch::cpu::rdtsc_ordered;
use crate::arch::extable::probe_read_u8;
use crate::mm::kernel_space;
use crate::mm::layout::{BENCH_PAGE, UNMAPPED_PROBE_PAGE};
use janus_hypercall::kvm::hypercall::KvmHypercalls;

use crate::platform::xen::Xen;
use crate::println;
use crate::time::tsc::Frequency;

const WARMUP: usize = 100;
const SAMPLES: usize = 2_000;

fn measure(mut operation: impl FnMut()) -> Vec<u64> {
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..WARMUP + SAMPLES {
        let start = rdtsc_ordered();
        operation();
        let end = rdtsc_ordered();
        if i >= WARMUP {
            samples.push(end.wrapping_sub(start));
        }
    }
    samples
}

fn report(id: &str, mut samples: Vec<u64>, tsc: Option<Frequency>) {
    let Some(s) = stats::summarize(&mut samples) else {
        return;
    };
    match tsc {
        Some(f) => {
            let ns = |cycles| {
                let d = f.deci_ns(cycles);
                alloc::format!("{}.{}", d / 10, d % 10)
            };
            println!(
                "@janus bench {id} unit=ns n={} min={} median={} p99={} median_cycles={}",
                s.n,
                ns(s.min),
                ns(s.median),
                ns(s.p99),
                s.median
            );
        }
        None => println!(
            "@janus bench {id} unit=cycles n={} min={} median={} p99={}",
            s.n, s.min, s.median, s.p99
        ),
    }
}

/// Runs every benchmark that applies here. `tsc` converts cycles to ns; without it results
/// stay in cycles.
pub fn run_all(tsc: Option<Frequency>, xen: Option<&Xen>, kvm: Option<&KvmHypercalls>) {
    report("rdtsc", measure(|| {}), tsc);

    report(
        "cpuid",
        measure(|| {
            black_box(core::arch::x86_64::__cpuid_count(0, 0));
        }),
        tsc,
    );

    // The cheapest round trip to the hypervisor each offers: xen_version, and KVM's
    // VAPIC_POLL_IRQ, which only makes the host re-check interrupts.
    if let Some(xen) = xen {
        report(
            "hypercall",
            measure(|| {
                black_box(xen.hypercalls.xen_version()).expect("xen_version worked at boot");
            }),
            tsc,
        );
    } else if let Some(kvm) = kvm {
        report(
            "hypercall",
            measure(|| {
                black_box(kvm.vapic_poll_irq()).expect("KVM_HC_VAPIC_POLL_IRQ failed");
            }),
            tsc,
        );
    }

    let page = Page::containing_address(VirtAddr::new(BENCH_PAGE));
    let samples = kernel_space::with(|space| {
        let frame = space.frames.allocate()?;
        let flags = Flags::WRITABLE | Flags::NO_EXECUTE;
        let samples = measure(|| {
            space
                .mapper
                .map(page, frame, flags, &mut space.frames)
                .expect("benchmark page is free");
            space
                .mapper
                .unmap(page)
                .expect("benchmark page was just mapped");
        });
        space.frames.free(frame).ok()?;
        Some(samples)
    });
    match samples {
        Some(samples) => report("pte-map-unmap", samples, tsc),
        None => println!("warning: no free frame for the pte-map-unmap benchmark"),
    }

    report(
        "page-fault",
        measure(|| {
            // SAFETY: the probe page is never mapped; the probe catches the fault.
            let result = unsafe { probe_read_u8(VirtAddr::new(UNMAPPED_PROBE_PAGE)) };
            black_box(result).expect_err("the probe page must stay unmapped");
        }),
        tsc,
    );

    report(
        "heap-alloc-free",
        measure(|| {
            drop(black_box(Box::new([0u8; 64])));
        }),
        tsc,
    );
}
