//! The benchmarks. Every sample brackets one operation with ordered TSC reads; the first
//! `WARMUP` samples are dropped (cold caches, lazily built state), the rest summarized.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::hint::black_box;

use x86_64::VirtAddr;

use super::stats;
use crate::arch::cpu::rdtsc_ordered;
use crate::arch::extable::{HypercallFaulted, probe_kvm_hypercall, probe_read_u8};
use crate::mm::layout::UNMAPPED_PROBE_PAGE;
use janus_hypercall::kvm::hypercall::{KvmHypercalls, check, nr};

use crate::platform::xen::Xen;
use crate::println;
use crate::time::boot::TimeInfo;
use crate::time::tsc::Frequency;

/// How many times an operation runs: warm-up runs, then measured ones.
#[derive(Clone, Copy)]
pub struct Runs {
    pub warmup: usize,
    pub samples: usize,
}

/// For operations of a microsecond or less.
pub const QUICK: Runs = Runs {
    warmup: 100,
    samples: 2_000,
};

fn measure(operation: impl FnMut()) -> Vec<u64> {
    measure_runs(QUICK, operation)
}

pub fn measure_runs(runs: Runs, mut operation: impl FnMut()) -> Vec<u64> {
    measure_undone(runs, &mut (), |_| operation(), |_| {})
}

/// Times `operation` on `state`, running `undo` on it untimed after each run.
pub fn measure_undone<S: ?Sized>(
    runs: Runs,
    state: &mut S,
    mut operation: impl FnMut(&mut S),
    mut undo: impl FnMut(&mut S),
) -> Vec<u64> {
    let mut samples = Vec::with_capacity(runs.samples);
    for i in 0..runs.warmup + runs.samples {
        let start = rdtsc_ordered();
        operation(state);
        let end = rdtsc_ordered();
        undo(state);
        if i >= runs.warmup {
            samples.push(end.wrapping_sub(start));
        }
    }
    samples
}

pub fn report(id: &str, samples: Vec<u64>, tsc: Option<Frequency>) {
    report_with(id, samples, tsc, |_| alloc::string::String::new());
}

/// Prints the `@janus bench` line; `extra` turns the summary into more ` k=v` pairs.
pub fn report_with(
    id: &str,
    mut samples: Vec<u64>,
    tsc: Option<Frequency>,
    extra: impl FnOnce(&stats::Summary) -> alloc::string::String,
) {
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
                "@janus bench {id} unit=ns n={} min={} median={} p99={} median_cycles={}{}",
                s.n,
                ns(s.min),
                ns(s.median),
                ns(s.p99),
                s.median,
                extra(&s)
            );
        }
        None => println!(
            "@janus bench {id} unit=cycles n={} min={} median={} p99={}{}",
            s.n,
            s.min,
            s.median,
            s.p99,
            extra(&s)
        ),
    }
}

/// Runs every benchmark that applies here. `tsc` converts cycles to ns; without it results
/// stay in cycles.
pub fn run_all(time: &TimeInfo, xen: Option<&Xen>, kvm: Option<&KvmHypercalls>) {
    let tsc = time.tsc;
    super::clock::run_all(tsc, time);

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
        let instruction = kvm.instruction();
        match probe_kvm_hypercall(instruction, nr::VAPIC_POLL_IRQ).map(check) {
            Ok(Ok(_)) => report(
                "hypercall",
                measure(|| {
                    black_box(kvm.vapic_poll_irq()).expect("KVM_HC_VAPIC_POLL_IRQ worked once");
                }),
                tsc,
            ),
            Ok(Err(e)) => println!("janus: no hypercall benchmark: KVM_HC_VAPIC_POLL_IRQ: {e}"),
            Err(HypercallFaulted) => println!(
                "janus: no hypercall benchmark: {instruction:?} faulted, so this KVM does not \
                 take hypercalls that way"
            ),
        }
    }

    super::paging::run_all(tsc);
    super::io::run_all(tsc);

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
