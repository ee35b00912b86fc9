//! Clock benchmarks: what one read of each source costs, how late the timer interrupt
//! arrives after its deadline, and how far each source drifts from the chosen clock over
//! one second. The ids are the same wherever a source exists.

use alloc::vec::Vec;
use core::hint::black_box;

use janus_drivers::pit::{Channel0, PortPit};
use janus_drivers::rtc::{self, PortCmos};

use super::cases::{QUICK, Runs, measure_runs, report, report_with};
use crate::println;
use crate::time::boot::TimeInfo;
use crate::time::selection::{Kind, drift_ppb, ppm_text};
use crate::time::tsc::Frequency;
use crate::time::{clock, timer};

/// How far ahead the latency benchmark arms the timer: more than arming takes anywhere
/// (about 0.4 ms under Xen PVH on TCG, where reading the clock is two emulated `rdtsc`s).
const LATENCY_DELAY_NS: u64 = 1_000_000;
/// Each sample halts for a timer interrupt, which under Xen on TCG takes milliseconds.
const LATENCY_RUNS: Runs = Runs {
    warmup: 5,
    samples: 50,
};
const DRIFT_WINDOW_NS: u64 = 1_000_000_000;

pub fn run_all(tsc: Option<Frequency>, time: &TimeInfo) {
    report(
        "clock-read-rdtsc",
        measure_runs(QUICK, || {
            // SAFETY: rdtsc only reads the counter.
            black_box(unsafe { core::arch::x86_64::_rdtsc() });
        }),
        tsc,
    );
    if time.rdtscp {
        report(
            "clock-read-rdtscp",
            measure_runs(QUICK, || {
                let mut aux = 0;
                // SAFETY: CPUID says rdtscp exists; it only reads the counter and TSC_AUX.
                black_box(unsafe { core::arch::x86_64::__rdtscp(&mut aux) });
            }),
            tsc,
        );
    }
    let sources = clock::sources();
    if let Some(pvclock) = &sources.pvclock {
        report_with(
            "clock-read-pvclock",
            measure_runs(QUICK, || {
                black_box(pvclock.read_with_tsc()).expect("the pvclock read at boot");
            }),
            tsc,
            |_| alloc::format!(" source={}", pvclock.kind()),
        );
    }
    if let Some(hpet) = &sources.hpet {
        report(
            "clock-read-hpet",
            measure_runs(QUICK, || {
                black_box(hpet.counter());
            }),
            tsc,
        );
    }
    if let Some(pm_timer) = &sources.pm_timer {
        report(
            "clock-read-pmtimer",
            measure_runs(QUICK, || {
                black_box(pm_timer.counter());
            }),
            tsc,
        );
    }
    if time.pit {
        // SAFETY: nothing else uses the PIT; its interrupt is masked; a latched read does
        // not disturb the count.
        let mut pit = unsafe { PortPit::new() };
        report(
            "clock-read-pit",
            measure_runs(QUICK, || {
                black_box(pit.read());
            }),
            tsc,
        );
    }
    if time.rtc {
        // SAFETY: nothing else uses the CMOS ports.
        let mut cmos = unsafe { PortCmos::new() };
        report(
            "clock-read-rtc",
            measure_runs(QUICK, || {
                black_box(rtc::seconds_register(&mut cmos));
            }),
            tsc,
        );
    }
    timer_latency(tsc);
    drift();
}

/// From the deadline the timer was armed for to the handler's first instruction. A sample
/// whose deadline passed while arming is dropped (`n` says how many remain).
fn timer_latency(tsc: Option<Frequency>) {
    if timer::name() == "none" {
        println!("janus: no timer interrupt, so no timer-latency benchmark");
        return;
    }
    let samples: Vec<u64> = (0..LATENCY_RUNS.warmup + LATENCY_RUNS.samples)
        .filter_map(|_| timer::latency_cycles(LATENCY_DELAY_NS))
        .skip(LATENCY_RUNS.warmup)
        .collect();
    report_with("timer-latency", samples, tsc, |_| {
        alloc::format!(" timer={} delay_ns={LATENCY_DELAY_NS}", timer::name())
    });
}

/// Every other source against the chosen clock, over one sleep of [`DRIFT_WINDOW_NS`]:
/// `clock-drift-<source>` in ppm, positive when the source ran fast.
fn drift() {
    let sources = clock::sources();
    let chosen = clock::chosen();
    let others: Vec<Kind> = sources
        .kinds()
        .into_iter()
        .filter(|&kind| kind != chosen)
        .collect();
    if others.is_empty() {
        return;
    }
    // Once untimed: see `read_all`.
    read_all(&others);
    let (start, start_readings) = read_all(&others);
    timer::sleep_ns(DRIFT_WINDOW_NS);
    let (end, end_readings) = read_all(&others);
    for (i, kind) in others.iter().enumerate() {
        let Some(ppb) = drift_ppb(end_readings[i] - start_readings[i], end - start) else {
            continue;
        };
        let ppm = ppm_text(ppb);
        println!(
            "@janus bench clock-drift-{kind} unit=ppm n=1 min={ppm} median={ppm} p99={ppm} \
             against={chosen} window_ns={}",
            end - start
        );
    }
}

/// The chosen clock and each of `others`, back to back, by one piece of code that is run
/// once before it is used: under TCG, translating code run for the first time between two
/// readings would show as tens of ppm of drift.
#[inline(never)]
fn read_all(others: &[Kind]) -> (u64, Vec<u64>) {
    let sources = clock::sources();
    let readings = others
        .iter()
        .map(|&kind| sources.read(kind).expect("listed in kinds()"))
        .collect();
    (clock::now(), readings)
}
