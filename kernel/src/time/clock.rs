//! The one clock: monotonic nanoseconds ([`now`]) and wall time ([`wall_ns`]), read from
//! the source chosen at boot, plus every other source that works here, for comparison
//! (benchmarks, drift, `clock=`).
//!
//! Each source counts from its own epoch: pvclock from the hypervisor's system time zero,
//! the TSC from reset, HPET and PM timer from whenever their counter started. Only
//! differences between readings of one source mean anything, except for [`wall_ns`], which
//! pairs one wall-clock reading with the chosen source.

use alloc::vec::Vec;

use janus_drivers::acpi_pm_timer::{self, IoPort, PmTimer};
use janus_drivers::hpet::{Hpet, MmioRegisters};
use janus_drivers::pvclock::{self, Monotonic, PvclockError, TSC_STABLE_BIT};
use janus_drivers::wrapping_counter::WrappingCounter;
use janus_hypercall::xen::shared_info::{SEQLOCK_MAX_ATTEMPTS, VcpuTimeInfo, VcpuTimeInfoRef};
use spin::{Mutex, Once};

use super::selection::{self, Kind};
use super::tsc::Frequency;
use crate::arch::cpu::rdtsc_ordered;

/// A pvclock record the hypervisor keeps current: kvmclock's or Xen's.
pub struct Pvclock {
    kind: Kind,
    record: VcpuTimeInfoRef,
    monotonic: Monotonic,
}

impl Pvclock {
    /// Checks that the record can be read and scales time before trusting it.
    pub fn new(kind: Kind, record: VcpuTimeInfoRef) -> Result<Self, PvclockError> {
        let clock = Self {
            kind,
            record,
            monotonic: Monotonic::new(),
        };
        clock.snapshot()?;
        Ok(clock)
    }

    /// One consistent record and the TSC read inside the same seqlock round, so the two
    /// belong together even when the hypervisor updates the record meanwhile.
    fn snapshot_with_tsc(&self) -> Result<(VcpuTimeInfo, u64), PvclockError> {
        let mut tsc = 0;
        let record = pvclock::read(
            || self.record.read_version(),
            || {
                tsc = rdtsc_ordered();
                self.record.read_record()
            },
            SEQLOCK_MAX_ATTEMPTS,
        )?;
        Ok((record, tsc))
    }

    pub fn snapshot(&self) -> Result<VcpuTimeInfo, PvclockError> {
        self.snapshot_with_tsc().map(|(record, _)| record)
    }

    /// The hypervisor's system time in ns, and the TSC it was computed from.
    pub fn read_with_tsc(&self) -> Result<(u64, u64), PvclockError> {
        let (record, tsc) = self.snapshot_with_tsc()?;
        let ns = pvclock::system_time(&record, tsc);
        let stable = record.flags & TSC_STABLE_BIT != 0;
        Ok((self.monotonic.fix(ns, stable), tsc))
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }
}

/// The HPET's main counter, extended to 64 bits.
pub struct HpetClock {
    hpet: Hpet<MmioRegisters>,
    counter: WrappingCounter,
}

impl HpetClock {
    pub fn new(hpet: Hpet<MmioRegisters>) -> Self {
        let counter = WrappingCounter::new(hpet.counter_bits());
        Self { hpet, counter }
    }

    pub fn frequency_hz(&self) -> u64 {
        self.hpet.frequency_hz()
    }

    /// The raw counter, for the read-cost benchmark.
    pub fn counter(&self) -> u64 {
        self.hpet.counter()
    }

    fn now(&self) -> u64 {
        self.hpet
            .ticks_to_ns(self.counter.extend(self.hpet.counter()))
    }
}

/// The ACPI PM timer, extended to 64 bits: read at least every 4.6 s (24-bit) or it loses
/// wraps, which every user of the clock does by far.
pub struct PmTimerClock {
    timer: Mutex<PmTimer<IoPort>>,
    counter: WrappingCounter,
}

impl PmTimerClock {
    pub fn new(timer: PmTimer<IoPort>) -> Self {
        let counter = WrappingCounter::new(timer.bits());
        Self {
            timer: Mutex::new(timer),
            counter,
        }
    }

    /// The raw counter, for the read-cost benchmark.
    pub fn counter(&self) -> u32 {
        self.timer.lock().read()
    }

    fn now(&self) -> u64 {
        let raw = self.counter();
        acpi_pm_timer::ticks_to_ns(self.counter.extend(u64::from(raw)))
    }
}

/// Every source that works here.
#[derive(Default)]
pub struct Sources {
    pub pvclock: Option<Pvclock>,
    pub tsc: Option<Frequency>,
    pub hpet: Option<HpetClock>,
    pub pm_timer: Option<PmTimerClock>,
}

impl Sources {
    pub fn kinds(&self) -> Vec<Kind> {
        let mut kinds = Vec::new();
        if let Some(pvclock) = &self.pvclock {
            kinds.push(pvclock.kind);
        }
        if self.tsc.is_some() {
            kinds.push(Kind::Tsc);
        }
        if self.hpet.is_some() {
            kinds.push(Kind::Hpet);
        }
        if self.pm_timer.is_some() {
            kinds.push(Kind::PmTimer);
        }
        kinds
    }

    /// Monotonic ns of `kind`, `None` if that source is not here.
    pub fn read(&self, kind: Kind) -> Option<u64> {
        match kind {
            Kind::Kvmclock | Kind::XenPvclock => {
                let pvclock = self.pvclock.as_ref().filter(|p| p.kind == kind)?;
                Some(read_pvclock(pvclock))
            }
            Kind::Tsc => self
                .tsc
                .map(|f| selection::ticks_to_ns(rdtsc_ordered(), f.hz)),
            Kind::Hpet => self.hpet.as_ref().map(HpetClock::now),
            Kind::PmTimer => self.pm_timer.as_ref().map(PmTimerClock::now),
        }
    }
}

/// A record that validated at boot and then never settles again leaves no correct answer:
/// stop with the reason instead of returning a wrong time.
fn read_pvclock(pvclock: &Pvclock) -> u64 {
    match pvclock.read_with_tsc() {
        Ok((ns, _)) => ns,
        Err(e) => panic!("{}: {e}", pvclock.kind),
    }
}

struct Clock {
    sources: Sources,
    chosen: Kind,
    /// A wall-clock reading in ns since the Unix epoch and [`now`] when it was taken.
    wall: Option<(u64, u64)>,
}

static CLOCK: Once<Clock> = Once::new();

/// Why no clock could be installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoClock;

impl core::fmt::Display for NoClock {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(
            "no clock source works here: no pvclock, no TSC frequency, no HPET and no ACPI PM \
             timer",
        )
    }
}

/// Picks the clock (see [`selection::choose`]), warning when a forced one is not there.
/// `wall` reads wall time in ns since the Unix epoch, once, against the chosen clock.
pub fn install(
    sources: Sources,
    forced: Option<Kind>,
    wall: impl FnOnce(&Sources) -> Option<u64>,
    mut warn: impl FnMut(core::fmt::Arguments<'_>),
) -> Result<Kind, NoClock> {
    let kinds = sources.kinds();
    let chosen = match selection::choose(&kinds, forced).ok_or(NoClock)? {
        Ok(kind) => kind,
        Err(default) => {
            if let Some(forced) = forced {
                warn(format_args!(
                    "clock={forced} is not available here; using clock={default}"
                ));
            }
            default
        }
    };
    let wall_ns = wall(&sources);
    let taken_at = sources.read(chosen).ok_or(NoClock)?;
    CLOCK.call_once(|| Clock {
        sources,
        chosen,
        wall: wall_ns.map(|ns| (ns, taken_at)),
    });
    Ok(chosen)
}

fn clock() -> &'static Clock {
    CLOCK
        .get()
        .expect("the clock is installed at boot, before anything reads it")
}

/// Whether [`install`] has run.
pub fn is_installed() -> bool {
    CLOCK.get().is_some()
}

/// Monotonic nanoseconds of the chosen clock.
pub fn now() -> u64 {
    let clock = clock();
    clock
        .sources
        .read(clock.chosen)
        .expect("the chosen source exists")
}

pub fn chosen() -> Kind {
    clock().chosen
}

/// Every source that works here.
pub fn sources() -> &'static Sources {
    &clock().sources
}

/// Nanoseconds since the Unix epoch, when a wall clock was found at boot.
pub fn wall_ns() -> Option<u64> {
    let (wall_ns, taken_at) = clock().wall?;
    Some(selection::wall_at(wall_ns, taken_at, now()))
}
