//! Bringing time up at boot: find every clock source that works, learn the TSC's
//! frequency, pick the clock, read the wall time once, and start a timer.
//!
//! Every source is checked before it is trusted, and one that fails is reported once with
//! the reason and left out, so the next one in the preference order takes its place: a
//! pvclock record stuck mid-update or with a zero multiplier, an HPET table pointing at
//! nothing, a FADT without a PM timer.

use janus_drivers::acpi_pm_timer::{self, PmTimer};
use janus_drivers::hpet::{self, Hpet};
use janus_drivers::pit::{Channel0, PortPit};
use janus_drivers::pvclock;
use janus_drivers::rtc::{self, PortCmos};
use janus_hypercall::cpuid::Detection;
use janus_hypercall::kvm::features::KvmFeatures;
use x86_64::PhysAddr;

use super::clock::{self, HpetClock, PmTimerClock, Pvclock, Sources};
use super::kvmclock;
use super::selection::Kind;
use super::timer;
use super::tsc::{self, Frequency};
use crate::arch::cpu::rdtsc_ordered;
use crate::boot::cmdline::ClockChoice;
use crate::mm::kernel_space;
use crate::mm::layout::HPET_PAGE;
use crate::platform::acpi::Platform;
use crate::platform::xen::{self, Xen};
use crate::{platform, println};

/// What the boot found, for the env line.
pub struct TimeInfo {
    pub clock: Kind,
    pub tsc: Option<Frequency>,
    /// CPUID.80000007H:EDX bit 8: the TSC ticks at a constant rate in every power state.
    pub invariant_tsc: bool,
    /// Whether `rdtscp` exists (CPUID.80000001H:EDX bit 27).
    pub rdtscp: bool,
    /// Whether a PIT answers on ports 0x40-0x43.
    pub pit: bool,
    /// Whether the CMOS RTC gave a valid time.
    pub rtc: bool,
}

/// Where the kernel runs, as far as time is concerned.
pub struct Platforms<'a> {
    pub hypervisor: &'a Detection,
    pub xen: Option<&'a Xen>,
    pub pv: bool,
    pub kvm: Option<KvmFeatures>,
    pub acpi: Option<&'a Platform>,
    pub forced: Option<ClockChoice>,
}

fn warn(args: core::fmt::Arguments<'_>) {
    println!("warning: {args}");
}

pub fn init(platforms: &Platforms<'_>) -> TimeInfo {
    let mut sources = Sources::default();
    let mut kvm_wall_at_zero = None;
    if let Some(features) = platforms.kvm {
        match kvmclock::init(features) {
            Ok(kvmclock) => {
                kvm_wall_at_zero = Some(kvmclock.wall_at_zero_ns);
                sources.pvclock = Some(kvmclock.clock);
            }
            Err(e) => warn(format_args!("kvmclock not used: {e}")),
        }
    }
    if platforms.xen.is_some() {
        match xen::shared_info().and_then(|shared| shared.vcpu_time(0)) {
            Some(record) => match Pvclock::new(Kind::XenPvclock, record) {
                Ok(pvclock) => sources.pvclock = Some(pvclock),
                Err(e) => warn(format_args!("xen-pvclock not used: {e}")),
            },
            None => warn(format_args!(
                "xen-pvclock not used: the shared info page is not mapped"
            )),
        }
    }
    // Xen owns the platform timers: a dom0 may read them, but must not program the HPET
    // Xen's own timekeeping runs on.
    let acpi = platforms.acpi.filter(|_| platforms.xen.is_none());
    if let Some(table) = acpi.and_then(|acpi| acpi.hpet) {
        match start_hpet(table.base) {
            Ok(hpet) => sources.hpet = Some(hpet),
            Err(e) => warn(format_args!("HPET at {:#x} not used: {e}", table.base)),
        }
    }
    if let Some(block) = platforms.acpi.and_then(|acpi| acpi.pm_timer) {
        // SAFETY: the FADT names this port as the PM timer, which is only ever read.
        let port = unsafe { acpi_pm_timer::IoPort::new(block.port) };
        match PmTimer::new(port, block.bits32) {
            Ok(timer) => sources.pm_timer = Some(PmTimerClock::new(timer)),
            Err(e) => warn(format_args!(
                "ACPI PM timer at port {:#x} not used: {e}",
                block.port
            )),
        }
    }
    let pit = !platforms.pv && platforms.xen.is_none() && pit_answers();
    sources.tsc = tsc_frequency(platforms.hypervisor, &sources, pit);

    let forced = platforms.forced.map(|choice| match choice {
        ClockChoice::Kvmclock => Kind::Kvmclock,
        ClockChoice::XenPvclock => Kind::XenPvclock,
        ClockChoice::Tsc => Kind::Tsc,
        ClockChoice::Hpet => Kind::Hpet,
        ClockChoice::PmTimer => Kind::PmTimer,
    });
    let century = platforms.acpi.and_then(|acpi| acpi.century_register);
    let mut rtc = false;
    let wall = |sources: &Sources| {
        if let Some(xen_clock) = sources.read(Kind::XenPvclock) {
            let shared = xen::shared_info()?;
            return match shared.read_wallclock() {
                Ok(wc) => Some(wc.sec * 1_000_000_000 + u64::from(wc.nsec) + xen_clock),
                Err(e) => {
                    warn(format_args!("Xen wall clock: {e}"));
                    None
                }
            };
        }
        if let (Some(at_zero), Some(kvm_clock)) = (kvm_wall_at_zero, sources.read(Kind::Kvmclock)) {
            return Some(at_zero + kvm_clock);
        }
        if platforms.xen.is_some() {
            return None;
        }
        // SAFETY: nothing else uses the CMOS index port.
        let mut cmos = unsafe { PortCmos::new() };
        match rtc::read_time(&mut cmos, century) {
            Ok(time) => {
                rtc = true;
                Some(time.unix_seconds() * 1_000_000_000)
            }
            Err(e) => {
                warn(format_args!("CMOS RTC: {e}; no wall clock"));
                None
            }
        }
    };
    let tsc_frequency = sources.tsc;
    let clock = match clock::install(sources, forced, wall, warn) {
        Ok(kind) => kind,
        Err(e) => {
            println!("janus: cannot keep time: {e}");
            println!("@janus abort kind=clock reason=no-clock-source");
            crate::platform::exit::exit(crate::platform::exit::ExitCode::Fatal)
        }
    };

    start_timer(platforms, tsc_frequency);

    let rdtscp = platform::cpuid(0x8000_0000, 0).eax >= 0x8000_0001
        && platform::cpuid(0x8000_0001, 0).edx & (1 << 27) != 0;
    TimeInfo {
        clock,
        tsc: tsc_frequency,
        invariant_tsc: invariant_tsc(),
        rdtscp,
        pit,
        rtc,
    }
}

/// CPUID.80000007H:EDX bit 8: the TSC ticks at a constant rate in every power state, so a
/// hypervisor has no reason to steer a clock away from it.
pub fn invariant_tsc() -> bool {
    platform::cpuid(0x8000_0000, 0).eax >= 0x8000_0007
        && platform::cpuid(0x8000_0007, 0).edx & (1 << 8) != 0
}

fn start_hpet(base: u64) -> Result<HpetClock, alloc::string::String> {
    let page = kernel_space::map_mmio(HPET_PAGE, PhysAddr::new(base))
        .map_err(|e| alloc::format!("mapping its registers: {e}"))?;
    // SAFETY: the 1 KiB register block was just mapped uncached at a slot reserved for it,
    // and nothing else uses the HPET.
    let registers = unsafe { hpet::MmioRegisters::new(page.as_mut_ptr()) };
    let hpet = Hpet::new(registers).map_err(|e| alloc::format!("{e}"))?;
    Ok(HpetClock::new(hpet))
}

/// A PIT whose channel 0 counter moves. The firmware leaves it running; where nothing
/// decodes the ports every read gives the same value.
fn pit_answers() -> bool {
    // SAFETY: nothing else uses the PIT, and interrupts are off (IRQ 0 is masked anyway),
    // so only reading the counter is at stake.
    let mut pit = unsafe { PortPit::new() };
    let first = pit.read();
    (0..10_000).any(|_| pit.read() != first)
}

/// The TSC frequency from the first source that gives one: CPUID, a pvclock's scale, or a
/// measurement against the HPET, the PM timer or the PIT.
fn tsc_frequency(hypervisor: &Detection, sources: &Sources, pit: bool) -> Option<Frequency> {
    if let Some(f) = tsc::from_cpuid(platform::cpuid, hypervisor) {
        return Some(f);
    }
    // A Xen PV guest's time leaf may say 0 kHz (native TSC mode); its pvclock scale does not.
    if let Some(hz) = sources
        .pvclock
        .as_ref()
        .and_then(|p| p.snapshot().ok())
        .and_then(|record| pvclock::tsc_hz(&record))
    {
        return Some(Frequency {
            hz,
            source: tsc::Source::Pvclock,
        });
    }
    for (kind, source) in [
        (Kind::Hpet, tsc::Source::Hpet),
        (Kind::PmTimer, tsc::Source::PmTimer),
    ] {
        if sources.kinds().contains(&kind) {
            let reference = || sources.read(kind).expect("listed in kinds()");
            if let Some(f) = tsc::from_reference(reference, rdtsc_ordered, source) {
                return Some(f);
            }
            warn(format_args!("TSC calibration against {kind} failed"));
        }
    }
    if !pit {
        warn(format_args!(
            "TSC frequency unknown: no CPUID leaf, pvclock, HPET, PM timer or PIT gives it; \
             benchmarks are reported in cycles"
        ));
        return None;
    }
    // SAFETY: nothing else uses the PIT, and interrupts are off, so reprogramming channel 0
    // raises nothing.
    let mut pit = unsafe { PortPit::new() };
    match tsc::from_pit(&mut pit, rdtsc_ordered) {
        Ok(f) => Some(f),
        Err(e) => {
            warn(format_args!(
                "TSC calibration failed: {e}; benchmarks are reported in cycles"
            ));
            None
        }
    }
}

/// Starts the timer `sleep` halts on: Xen's singleshot timer under Xen, the local APIC's
/// otherwise. Without one, sleep polls the clock, which the sleep self-test reports.
fn start_timer(platforms: &Platforms<'_>, tsc: Option<Frequency>) {
    let tsc_hz = tsc.map(|f| f.hz);
    let started = match platforms.xen {
        Some(xen) => timer::init_xen(xen.hypercalls, platforms.pv, tsc_hz),
        None => {
            let io_apics = platforms.acpi.map_or(&[][..], |acpi| &acpi.ioapics[..]);
            match platform::apic::init(io_apics, warn) {
                Ok(apic) => timer::init_apic(apic.capabilities.tsc_deadline, tsc_hz),
                Err(e) => {
                    warn(format_args!("interrupt controllers: {e}"));
                    return;
                }
            }
        }
    };
    if let Err(e) = started {
        warn(format_args!(
            "no timer interrupt: {e}; sleep polls the clock instead of halting"
        ));
    }
}
